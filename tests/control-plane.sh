#!/usr/bin/env bash
# Local Kubernetes control plane for berth's tests and quick start: etcd + kube-apiserver +
# kube-controller-manager on loopback, built from Debian's packages (see README "Tests").
#
#   tests/control-plane.sh install          apt packages (build, tests, control plane) + build
#                                           the binaries once (cached)
#   tests/control-plane.sh start DIR        start in DIR, write DIR/kubeconfig, print its path
#   tests/control-plane.sh stop DIR         stop what `start DIR` started
#
# Env: BERTH_K8S_CACHE (default ~/.cache/berth/k8s-1.20.2) holds the built binaries;
#      BERTH_WATCH_PID, when set at start, stops the control plane once that process exits.
set -euo pipefail

K8S_VERSION=1.20.2
CACHE=${BERTH_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth/k8s-$K8S_VERSION}
log() { printf 'control-plane: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# everything berth's build, tests and quick start need besides Rust (Chromium drives the
# dashboard tests)
PACKAGES="etcd-server golang-go rsync jq openssl golang-github-modern-go-reflect2-dev dpkg-dev
  pkg-config libssl-dev zlib1g-dev git python3 curl openssh-server openssh-client
  chromium chromium-driver"

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

enable_sources() {
  if grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ || grep -qs '^deb-src' /etc/apt/sources.list; then
    return
  fi
  log "enabling deb-src entries"
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
    | as_root tee /etc/apt/sources.list.d/berth-debian-src.sources >/dev/null
  as_root apt-get update -qq
}

build() {
  if [ -x "$CACHE/kube-apiserver" ] && [ -x "$CACHE/kube-controller-manager" ]; then return; fi
  enable_sources
  local work; work=$(mktemp -d)
  log "building kube-apiserver and kube-controller-manager $K8S_VERSION in $work (5-8 min, once)"
  (
    cd "$work"
    apt-get source --download-only kubernetes >/dev/null 2>&1 || die "apt-get source kubernetes failed"
    tar xzf kubernetes_*.orig.tar.gz
    cd kubernetes-$K8S_VERSION
    mkdir -p .go/src/k8s.io && ln -sfn ../../.. .go/src/k8s.io/kubernetes
    # The vendored reflect2 1.0.1 faults under Go >= 1.18; Debian's 1.0.2 works.
    V=vendor/github.com/modern-go/reflect2; rm -f $V/*.go $V/*.s
    cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go /usr/share/gocode/src/github.com/modern-go/reflect2/*.s $V/
    GOPATH=$PWD/.go CGO_ENABLED=0 HOME=$work/home GOCACHE=$work/gocache \
      make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$work/build.log" 2>&1 \
      || { tail -30 "$work/build.log" >&2; die "build failed (log: $work/build.log)"; }
    mkdir -p "$CACHE"
    for b in kube-apiserver kube-controller-manager; do
      [ -s _output/local/bin/linux/amd64/$b ] || die "build produced no $b"
      cp _output/local/bin/linux/amd64/$b "$CACHE/$b.tmp" && mv "$CACHE/$b.tmp" "$CACHE/$b"
    done
  )
  rm -rf "$work"
  log "binaries cached in $CACHE"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

start() {
  local dir=${1:?usage: start DIR}
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  [ -x "$CACHE/kube-apiserver" ] || die "binaries missing in $CACHE; run: $0 install"
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

  etcd --data-dir "$dir/etcd" --name default \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "default=http://127.0.0.1:$peer_port" >etcd.log 2>&1 &
  echo $! >etcd.pid

  "$CACHE/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
    --tls-cert-file=apiserver.crt --tls-private-key-file=apiserver.key --client-ca-file=ca.crt \
    --token-auth-file=tokens.csv --authorization-mode=RBAC --service-cluster-ip-range=10.0.0.0/16 \
    --service-account-key-file=sa.pub --service-account-signing-key-file=sa.key \
    --service-account-issuer=https://kubernetes.default.svc \
    --disable-admission-plugins=ServiceAccount --allow-privileged=true \
    --endpoint-reconciler-type=none >apiserver.log 2>&1 &
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
  if ! wait_for 60 "api server" curl -fsS --cacert ca.crt -H "Authorization: Bearer $token" \
      "https://127.0.0.1:$api_port/readyz"; then
    tail -20 apiserver.log >&2; stop "$dir"; die "kube-apiserver did not become ready"
  fi

  "$CACHE/kube-controller-manager" --kubeconfig="$dir/kubeconfig" --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port=0 --port=0 \
    --controllers=garbagecollector,namespace,serviceaccount,serviceaccount-token,deployment,replicaset,job,statefulset,daemonset \
    --service-account-private-key-file=sa.key --root-ca-file=ca.crt >controller-manager.log 2>&1 &
  echo $! >controller-manager.pid

  if [ -n "${BERTH_WATCH_PID:-}" ]; then
    # stop everything once the process that asked for this control plane is gone
    ( trap '' HUP; while kill -0 "$BERTH_WATCH_PID" 2>/dev/null && [ -f "$dir/apiserver.pid" ]; do sleep 1; done
      "$0" stop "$dir" ) </dev/null >/dev/null 2>&1 &
  fi
  log "ready: https://127.0.0.1:$api_port (kubeconfig $dir/kubeconfig)"
  echo "$dir/kubeconfig"
}

stop() {
  local dir=${1:?usage: stop DIR} p
  for p in controller-manager apiserver etcd; do
    if [ -f "$dir/$p.pid" ]; then
      kill "$(cat "$dir/$p.pid")" 2>/dev/null || true
    fi
  done
  for p in controller-manager apiserver etcd; do
    if [ -f "$dir/$p.pid" ]; then
      local pid; pid=$(cat "$dir/$p.pid")
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$dir/$p.pid"
    fi
  done
}

case "${1:-}" in
  install) install_packages; build ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) echo "usage: $0 install | start DIR | stop DIR" >&2; exit 2 ;;
esac
