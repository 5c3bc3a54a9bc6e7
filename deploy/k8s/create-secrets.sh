#!/usr/bin/env bash
# Creates (or updates) the Secrets of deploy/k8s with random keys:
#   omniroute-secrets        OMNIROUTE_ADMIN_KEY API_KEY_SECRET JWT_SECRET INITIAL_PASSWORD
#                            STORAGE_ENCRYPTION_KEY REDIS_URL DATABASE_URL (and
#                            POSTGRES_PASSWORD with --with-datastores)
#   omniroute-provider-keys  every NAME=value given with --provider-key (optional)
#
#   deploy/k8s/create-secrets.sh --redis-url URL --database-url URL [--provider-key NAME=VALUE]...
#   deploy/k8s/create-secrets.sh --with-datastores [--provider-key NAME=VALUE]...
#
# Options: -n NAMESPACE (default omniroute); --dry-run prints the objects instead of
# applying them (no cluster needed). Keys that already exist in the cluster are kept, so
# running it again changes neither the admin key nor STORAGE_ENCRYPTION_KEY (the key of the
# provider credentials the accounts service stores: a new one would make them unreadable;
# services/accounts/README.md says how to rotate it). STORAGE_ENCRYPTION_KEY_PREVIOUS, set
# during a rotation, is kept as well. Needs kubectl and openssl.
set -euo pipefail
ns=omniroute
redis_url=""
database_url=""
datastores=0
dry_run=0
provider=()
while [ $# -gt 0 ]; do
  case "$1" in
    -n|--namespace) ns=$2; shift 2 ;;
    --redis-url) redis_url=$2; shift 2 ;;
    --database-url) database_url=$2; shift 2 ;;
    --with-datastores) datastores=1; shift ;;
    --provider-key) provider+=("$2"); shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "create-secrets: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

# existing KEY: the value already in the cluster's omniroute-secrets, else empty
existing() {
  [ "$dry_run" = 1 ] && return 0
  kubectl -n "$ns" get secret omniroute-secrets -o "jsonpath={.data.$1}" 2>/dev/null \
    | base64 -d 2>/dev/null || true
}
keep_or() { local v; v=$(existing "$1"); if [ -n "$v" ]; then echo "$v"; else echo "$2"; fi; }

admin_key=$(keep_or OMNIROUTE_ADMIN_KEY "sk-admin-$(openssl rand -hex 24)")
api_key_secret=$(keep_or API_KEY_SECRET "$(openssl rand -hex 32)")
jwt_secret=$(keep_or JWT_SECRET "$(openssl rand -hex 32)")
initial_password=$(keep_or INITIAL_PASSWORD "$(openssl rand -hex 16)")
storage_key=$(keep_or STORAGE_ENCRYPTION_KEY "$(openssl rand -hex 32)")
extra=()
previous_storage_keys=$(existing STORAGE_ENCRYPTION_KEY_PREVIOUS)
if [ -n "$previous_storage_keys" ]; then
  extra+=(--from-literal=STORAGE_ENCRYPTION_KEY_PREVIOUS="$previous_storage_keys")
fi
if [ "$datastores" = 1 ]; then
  pg_password=$(keep_or POSTGRES_PASSWORD "$(openssl rand -hex 24)")
  redis_url=${redis_url:-redis://omniroute-redis:6379/0}
  database_url=${database_url:-postgresql://omniroute:${pg_password}@omniroute-postgres:5432/omniroute}
  extra+=(--from-literal=POSTGRES_PASSWORD="$pg_password")
fi
redis_url=${redis_url:-$(existing REDIS_URL)}
database_url=${database_url:-$(existing DATABASE_URL)}
if [ -z "$redis_url" ] || [ -z "$database_url" ]; then
  echo "create-secrets: give --redis-url and --database-url (or --with-datastores)" >&2
  exit 2
fi

labels=(app.kubernetes.io/name=omniroute app.kubernetes.io/instance=omniroute
        app.kubernetes.io/part-of=omniroute)
apply() {
  if [ "$dry_run" = 1 ]; then cat; echo "---"; else kubectl apply -f -; fi
}
label() {  # adds the labels to the object on stdin
  kubectl label --local -f - -o yaml "${labels[@]}"
}
kubectl create namespace "$ns" --dry-run=client -o yaml | apply
kubectl -n "$ns" create secret generic omniroute-secrets --dry-run=client -o yaml \
  --from-literal=OMNIROUTE_ADMIN_KEY="$admin_key" \
  --from-literal=API_KEY_SECRET="$api_key_secret" \
  --from-literal=JWT_SECRET="$jwt_secret" \
  --from-literal=INITIAL_PASSWORD="$initial_password" \
  --from-literal=STORAGE_ENCRYPTION_KEY="$storage_key" \
  --from-literal=REDIS_URL="$redis_url" \
  --from-literal=DATABASE_URL="$database_url" \
  "${extra[@]}" | label | apply
if [ ${#provider[@]} -gt 0 ]; then
  args=()
  for kv in "${provider[@]}"; do args+=(--from-literal="$kv"); done
  kubectl -n "$ns" create secret generic omniroute-provider-keys --dry-run=client -o yaml \
    "${args[@]}" | label | apply
fi
if [ "$dry_run" = 0 ]; then
  echo "admin key (Authorization: Bearer ...): $admin_key"
  echo "read it again: kubectl -n $ns get secret omniroute-secrets -o jsonpath='{.data.OMNIROUTE_ADMIN_KEY}' | base64 -d"
fi
