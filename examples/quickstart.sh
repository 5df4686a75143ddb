#!/usr/bin/env bash
# berth quick start: builds berth, starts a local Kubernetes control plane, creates a config
# repository from examples/config-repo, syncs it, then commits a change and lets `berth run`
# apply it. Everything it starts is stopped at the end; its files live in one temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "installing Debian packages and building the control plane (first run: ~8 min)"
bash tests/control-plane.sh install
step "building berth"
cargo build --quiet
berth_bin=$root/target/debug/berth

work=$(mktemp -d)
agent=""
cleanup() {
  [ -n "$agent" ] && kill "$agent" 2>/dev/null && wait "$agent" 2>/dev/null || true
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

step "creating the config repository from examples/config-repo"
cp -r examples/config-repo "$work/config"
git -C "$work/config" init -q -b main
git -C "$work/config" -c user.name=quickstart -c user.email=qs@example.com add -A
git -C "$work/config" -c user.name=quickstart -c user.email=qs@example.com commit -qm "demo app"
sed "s|@CONFIG_URL@|file://$work/config|" examples/quickstart/berth.yaml >"$work/berth.yaml"
export BERTH_CONFIG=$work/berth.yaml BERTH_CACHE_DIR=$work/cache

step "berth validate"
"$berth_bin" validate
step "berth diff (everything is new)"
"$berth_bin" diff | head -40 || true
step "berth sync"
"$berth_bin" sync
step "the Deployment carries berth's labels and annotations"
api /apis/apps/v1/namespaces/demo/deployments/web | jq '.metadata | {labels, annotations}'
step "berth status"
"$berth_bin" status

step "commit a change (greeting, replicas) and let 'berth run' apply it"
sed -i 's/greeting: hello from git/greeting: hello again/' "$work/config/apps/demo/settings.yaml"
sed -i 's/replicas: 2/replicas: 3/' "$work/config/apps/demo/web.yaml"
git -C "$work/config" -c user.name=quickstart -c user.email=qs@example.com commit -qam "more replicas"
"$berth_bin" diff || true
"$berth_bin" run &
agent=$!
for _ in $(seq 60); do
  replicas=$(api /apis/apps/v1/namespaces/demo/deployments/web | jq .spec.replicas)
  [ "$replicas" = 3 ] && break
  sleep 0.5
done
[ "$replicas" = 3 ] || { echo "quick start: the change was not applied" >&2; exit 1; }
kill -TERM "$agent"; wait "$agent" || true; agent=""
api /api/v1/namespaces/demo/configmaps/web-settings | jq '{data: .data, revision: .metadata.annotations["berth.dev/revision"]}'
"$berth_bin" status
step "done: the control plane is stopped and $work removed"
