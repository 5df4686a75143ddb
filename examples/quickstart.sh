#!/usr/bin/env bash
# berth quick start: builds berth, starts a local Kubernetes control plane, creates a config
# repository and a source repository from examples/, runs `berth run` against them, commits to
# each, and shows what happened: objects applied with berth's annotations, a Workflow launched
# with its parameters, and `berth status`. Everything it starts is stopped at the end and its
# files (one temp dir) are removed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
commit() { git -C "$1" -c user.name=quickstart -c user.email=qs@example.com commit -qam "$2" "${@:3}"; }

step "installing Debian packages and building the control plane from its Go modules (first run: ~12 min)"
bash tests/control-plane.sh install
step "building berth"
# cargo shows its progress on a terminal: the first build takes a few minutes
cargo build
berth_bin=$root/target/debug/berth

work=$(mktemp -d)
agent=""
cleanup() {
  if [ -n "$agent" ]; then kill "$agent" 2>/dev/null || true; wait "$agent" 2>/dev/null || true; fi
  bash "$root/tests/control-plane.sh" stop "$work/cp"
  rm -rf "$work"
}
trap cleanup EXIT
step "starting the control plane"
KUBECONFIG=$(bash tests/control-plane.sh start "$work/cp")
export KUBECONFIG
server=$(awk '/server:/ {print $2}' "$KUBECONFIG")
token=$(awk '/token:/ {print $2}' "$KUBECONFIG")
api() { curl -fsS --cacert "$work/cp/ca.crt" -H "Authorization: Bearer $token" "$server$1"; }
exists() { curl -fs -o /dev/null --cacert "$work/cp/ca.crt" -H "Authorization: Bearer $token" "$server$1"; }
until_true() { # until_true SECONDS COMMAND...: retries COMMAND every 0.5 s
  local tries=$(($1 * 2)); shift
  for _ in $(seq "$tries"); do "$@" && return 0; sleep 0.5; done
  echo "quick start: timed out waiting for: $*" >&2; return 1
}

step "creating the config and source repositories from examples/"
cp -r examples/config-repo "$work/config"
cp -r examples/source-repo "$work/web"
for repo in config web; do
  git -C "$work/$repo" init -q -b main
  git -C "$work/$repo" add -A
  commit "$work/$repo" "initial commit" --allow-empty
done
sed -e "s|@CONFIG_URL@|file://$work/config|" -e "s|@SOURCE_URL@|file://$work/web|" \
  examples/quickstart/berth.yaml >"$work/berth.yaml"
export BERTH_CONFIG=$work/berth.yaml BERTH_CACHE_DIR=$work/cache

step "berth validate"
"$berth_bin" validate

step "berth run (syncs, launches, watches; logs below)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$berth_bin" run --listen "127.0.0.1:$port" --admin-listen 127.0.0.1:0 &
agent=$!
first_source=$(git -C "$work/web" rev-parse --short=7 HEAD)
until_true 60 exists /apis/apps/v1/namespaces/demo/deployments/web
until_true 60 exists "/apis/argoproj.io/v1alpha1/namespaces/ci/workflows/web-ci-$first_source"

step "commit to each repository: the config repo scales web, the source repo changes code"
sed -i 's/greeting: hello from git/greeting: hello again/' "$work/config/apps/demo/settings.yaml"
sed -i 's/replicas: 2/replicas: 3/' "$work/config/apps/demo/web.yaml"
commit "$work/config" "web: 3 replicas"
sed -i 's/hello from the example source repository/hello, berth/' "$work/web/src/main.rs"
commit "$work/web" "say hello to berth"
second_source=$(git -C "$work/web" rev-parse --short=7 HEAD)
replicas3() { [ "$(api /apis/apps/v1/namespaces/demo/deployments/web | jq .spec.replicas)" = 3 ]; }
until_true 60 replicas3
until_true 60 exists "/apis/argoproj.io/v1alpha1/namespaces/ci/workflows/web-ci-$second_source"
sleep 1

step "the Deployment, applied by berth with its labels and annotations"
api /apis/apps/v1/namespaces/demo/deployments/web \
  | jq '{name: .metadata.name, replicas: .spec.replicas, labels: .metadata.labels, annotations: .metadata.annotations}'
step "the sync status ConfigMap"
api /api/v1/namespaces/berth-system/configmaps/berth-sync-demo | jq '.metadata.annotations'
step "the Workflow launched for the new source commit, with its parameters, as Argo's controller runs it"
echo "(the local control plane has no storage provisioner: the example's volume claim keeps its first step Pending)"
api "/apis/argoproj.io/v1alpha1/namespaces/ci/workflows/web-ci-$second_source" \
  | jq '{name: .metadata.name, labels: .metadata.labels, annotations: .metadata.annotations,
         parameters: .spec.arguments.parameters, serviceAccount: .spec.serviceAccountName,
         ttlStrategy: .spec.ttlStrategy, artifactGC: .spec.artifactGC,
         phase: .status.phase, steps: [.status.nodes // {} | .[] | {name: .displayName, phase, message}]}'
step "berth status"
"$berth_bin" status
step "metrics (excerpt)"
curl -fsS "http://127.0.0.1:$port/metrics" | grep -E '^berth_(syncs|pipeline_launches|objects_applied)_total' || true

kill -TERM "$agent"; wait "$agent" || true; agent=""
step "done: berth stopped, the control plane stopped, $work removed"
