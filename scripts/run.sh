#!/usr/bin/env bash
# Installs the dependencies, builds the all-in-one gateway and runs it on port 20128.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/install-deps.sh
bash scripts/build.sh omniroute
export DATA_DIR="${DATA_DIR:-$HOME/.omniroute}"
mkdir -p "$DATA_DIR"
if [ -z "${OMNIROUTE_CONFIG:-}" ] && [ ! -f "$DATA_DIR/omniroute.yaml" ]; then
  cp config/omniroute.example.yaml "$DATA_DIR/omniroute.yaml"
  echo "wrote a sample configuration to $DATA_DIR/omniroute.yaml"
fi
exec build/apps/omniroute/omniroute "$@"
