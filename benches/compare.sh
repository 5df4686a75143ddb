#!/usr/bin/env bash
# berth's performance harness (README "Performance"): starts a local control plane, generates
# the workloads, runs berth and the tool a user would use instead side by side, and prints a
# table of medians and berth/reference ratios. Not part of the tests; nothing here asserts.
#
#   bash benches/compare.sh            # RUNS=5 by default
#   RUNS=3 bash benches/compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
RUNS=${RUNS:-5}
log() { printf 'compare: %s\n' "$*" >&2; }

bash tests/control-plane.sh install
# the reference: kubectl of the control plane's own release, built beside it
KUBECTL=$(bash tests/control-plane.sh kubectl)
kubectl() { "$KUBECTL" "$@"; }
log "kubectl $("$KUBECTL" version --client -o json | jq -r .clientVersion.gitVersion)"
log "building berth (release)"
cargo build --release --quiet --bin berth --benches
berth=$root/target/release/berth

work=$(mktemp -d)
agent=""
cleanup() {
  [ -n "$agent" ] && kill "$agent" 2>/dev/null; wait 2>/dev/null || true
  bash "$root/tests/control-plane.sh" stop "$work/cp"
  [ -d "$work/cp16" ] && bash "$root/tests/control-plane.sh" stop "$work/cp16"
  rm -rf "$work"
}
trap cleanup EXIT
KUBECONFIG=$(bash tests/control-plane.sh start "$work/cp")
export KUBECONFIG
export BERTH_CACHE_DIR=$work/cache BERTH_NAMESPACE=berth-bench RUST_LOG=warn NO_COLOR=1
kubectl create namespace berth-bench >/dev/null

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }
median() { python3 -c "import statistics, sys; print(f'{statistics.median(map(float, sys.argv[1:])):.3f}')" "$@"; }
rvs() { kubectl get configmaps,deployments,services -n "$1" -o json | jq -c '[.items[] | .metadata.resourceVersion] | sort'; }
# What only a writer of the object itself changes: the resourceVersion of ConfigMaps and
# Services (no controller touches them), and for Deployments (whose status the deployment
# controller keeps updating) the generation and the time of berth's field-manager entry.
own_writes() {
  kubectl get configmaps,deployments,services -n "$1" -o json --show-managed-fields | jq -c '[.items[] |
    if .kind == "Deployment"
    then "\(.metadata.name) \(.metadata.generation) \([.metadata.managedFields[] | select(.manager == "berth") | .time] | join(","))"
    else "\(.metadata.name) \(.metadata.resourceVersion)" end] | sort'
}
settle() { # waits until nothing in the namespace changes for 2 s
  local a b; a=$(rvs "$1")
  while sleep 2; b=$(rvs "$1"); [ "$a" != "$b" ]; do a=$b; done
}

# ---- workload: 1000 objects, one file each, in a git repository ------------------------------
# Ports name their protocol, as manifests commonly do (the server defaults it to TCP)
# (berth fills it in itself).
log "generating 1000 objects (334 ConfigMaps, 333 Deployments, 333 Services)"
repo=$work/config
mkdir -p "$repo/apps"
python3 - "$repo/apps" <<'PY'
import sys, os
out = sys.argv[1]
for i in range(1000):
    kind = ("cm", "deploy", "svc")[i % 3]
    if kind == "cm":
        doc = f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:04d}\ndata:\n  value: \"{i}\"\n  greeting: hello\n"
    elif kind == "deploy":
        doc = (f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i:04d}\nspec:\n  replicas: 0\n"
               f"  selector:\n    matchLabels: {{app: app-{i:04d}}}\n  template:\n    metadata:\n      labels: {{app: app-{i:04d}}}\n"
               f"    spec:\n      containers:\n      - name: app\n        image: nginx:1.27\n        ports:\n        - containerPort: 80\n          protocol: TCP\n")
    else:
        doc = (f"apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{i:04d}\nspec:\n  selector: {{app: app-{i:04d}}}\n"
               f"  ports:\n  - port: 80\n    targetPort: 80\n    protocol: TCP\n")
    with open(os.path.join(out, f"{i:04d}-{kind}.yaml"), "w") as f:
        f.write(doc)
PY
git -C "$repo" init -q -b main
git -C "$repo" add -A
git -C "$repo" -c user.name=bench -c user.email=b@example.com commit -qm "1000 objects"

mapping() { # mapping SYNC NAMESPACE
  cat >"$work/$1.yaml" <<YAML
apiVersion: berth.dev/v1alpha1
kind: Mapping
repositories: [{name: config, url: "file://$repo", interval: 0}]
syncs: [{name: $1, repository: config, path: apps, namespace: $2}]
YAML
  echo "$work/$1.yaml"
}

declare -A B K
p1b=(); p1k=(); p2b=(); p2k=(); p3b=(); p3k=(); writes=()
for run in $(seq "$RUNS"); do
  kubectl create namespace "b$run" >/dev/null
  kubectl create namespace "k$run" >/dev/null
  m=$(mapping "p$run" "b$run")
  # P1: first sync into an empty namespace
  t0=$(now); "$berth" -c "$m" sync >/dev/null; t1=$(now); p1b+=("$(elapsed "$t0" "$t1")")
  t0=$(now); kubectl apply --server-side -n "k$run" -f "$repo/apps" >/dev/null; t1=$(now); p1k+=("$(elapsed "$t0" "$t1")")
  settle "b$run"; settle "k$run" # the deployment controller's writes are not berth's
  # P2: no-op resync
  before=$(own_writes "b$run")
  t0=$(now); "$berth" -c "$m" sync >/dev/null; t1=$(now); p2b+=("$(elapsed "$t0" "$t1")")
  after=$(own_writes "b$run")
  if [ "$before" = "$after" ]; then writes+=(0); else writes+=("$(python3 -c "import json,sys; a=set(json.loads(sys.argv[1])); b=set(json.loads(sys.argv[2])); print(len(b-a))" "$before" "$after")"); fi
  t0=$(now); kubectl apply --server-side -n "k$run" -f "$repo/apps" >/dev/null; t1=$(now); p2k+=("$(elapsed "$t0" "$t1")")
done

# P3: diff with 10 of 1000 changed (against the last run's namespaces)
for i in $(seq 0 3 27); do sed -i 's/greeting: hello/greeting: changed/' "$repo/apps/$(printf %04d "$i")-cm.yaml"; done
git -C "$repo" -c user.name=bench -c user.email=b@example.com commit -qam "10 changes"
m=$(mapping "p$RUNS" "b$RUNS")
for run in $(seq "$RUNS"); do
  t0=$(now); "$berth" -c "$m" diff >"$work/berth.diff" || true; t1=$(now); p3b+=("$(elapsed "$t0" "$t1")")
  t0=$(now); kubectl diff --server-side -n "k$RUNS" -f "$repo/apps" >"$work/kubectl.diff" || true; t1=$(now); p3k+=("$(elapsed "$t0" "$t1")")
done
log "berth diff: $(grep -c '^+++ ' "$work/berth.diff") objects differ; kubectl diff: $(grep -c '^+++ ' "$work/kubectl.diff")"

# ---- P6: incremental fetch of one new commit, repository of 5000 commits and 2000 files -------
log "P6: building a repository with 5000 commits and 2000 files"
big=$work/big
python3 - "$big" <<'PY'
import os, subprocess, sys
path = sys.argv[1]
os.makedirs(path)
subprocess.run(["git", "init", "-q", "-b", "main", path], check=True)
# a fast-import stream: 2000 files in the first commit, then 4999 commits touching one file each
lines = []
def blob(data):
    return f"data {len(data.encode())}\n{data}\n"
ts = 1700000000
lines.append(f"commit refs/heads/main\ncommitter b <b@example.com> {ts} +0000\n" + blob("initial") )
for i in range(2000):
    lines.append(f"M 100644 inline files/{i // 100:02d}/f{i:04d}.yaml\n" + blob(f"value: {i}\n"))
for c in range(1, 5000):
    lines.append(f"commit refs/heads/main\ncommitter b <b@example.com> {ts + c} +0000\n" + blob(f"change {c}"))
    lines.append(f"M 100644 inline files/{c % 20:02d}/f{c % 2000:04d}.yaml\n" + blob(f"value: {c}\n"))
subprocess.run(["git", "-C", path, "fast-import", "--quiet"], input="".join(lines).encode(), check=True)
subprocess.run(["git", "-C", path, "reset", "-q", "--hard", "main"], check=True)
PY
p6b=(); p6g=()
for run in $(seq "$RUNS"); do
  echo "change $run" >"$big/files/00/f0000.yaml"
  git -C "$big" -c user.name=bench -c user.email=b@example.com commit -qam "bench $run"
  if [ "$run" = 1 ]; then
    cargo bench --quiet --bench fetch -- "file://$big" "$work/mirror" >/dev/null
    git clone -q --bare "file://$big" "$work/clone.git"
    echo "change warm" >"$big/files/00/f0000.yaml"
    git -C "$big" -c user.name=bench -c user.email=b@example.com commit -qam "warm"
  fi
  p6b+=("$(cargo bench --quiet --bench fetch -- "file://$big" "$work/mirror")")
  t0=$(now); git -C "$work/clone.git" fetch -q "file://$big" '+refs/heads/main:refs/heads/main'; t1=$(now); p6g+=("$(elapsed "$t0" "$t1")")
  # the next round fetches one commit again, for both
done

# ---- P7: peak RSS of berth run with 10 syncs x 100 objects over 20 cycles --------------------
log "P7: berth run with 10 syncs x 100 objects, selfHeal every second"
rss=$work/rss
mkdir -p "$rss/apps"
python3 - "$rss/apps" <<'PY'
import os, sys
for s in range(10):
    d = os.path.join(sys.argv[1], f"s{s}")
    os.makedirs(d)
    for i in range(100):
        with open(os.path.join(d, f"cm-{i:03d}.yaml"), "w") as f:
            f.write(f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:03d}\ndata:\n  value: \"{i}\"\n  payload: \"{'x' * 200}\"\n")
PY
git -C "$rss" init -q -b main; git -C "$rss" add -A; git -C "$rss" -c user.name=b -c user.email=b@example.com commit -qm rss
{
  echo "apiVersion: berth.dev/v1alpha1"; echo "kind: Mapping"
  echo "repositories: [{name: config, url: \"file://$rss\", interval: 1s}]"
  echo "syncs:"
  for s in $(seq 0 9); do kubectl create namespace "rss$s" >/dev/null; echo "  - {name: rss$s, repository: config, path: apps/s$s, namespace: rss$s, selfHeal: true}"; done
} >"$work/rss.yaml"
port=$(bash "$root/tests/control-plane.sh" port)
"$berth" -c "$work/rss.yaml" run --listen "127.0.0.1:$port" --admin-listen 127.0.0.1:0 2>/dev/null &
agent=$!
cycles() { curl -fs "http://127.0.0.1:$port/metrics" | awk '/^berth_syncs_total/ {s += $2} END {print int(s / 10)}'; }
peak=0; rss5=0; rss20=0
until [ "$(cycles 2>/dev/null || echo 0)" -ge 20 ]; do
  kb=$(awk '/VmRSS/ {print $2}' "/proc/$agent/status")
  [ "$kb" -gt "$peak" ] && peak=$kb
  c=$(cycles 2>/dev/null || echo 0)
  [ "$c" -ge 5 ] && [ "$rss5" = 0 ] && rss5=$kb
  sleep 0.2
done
rss20=$(awk '/VmRSS/ {print $2}' "/proc/$agent/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$agent/status")
kill "$agent"; wait "$agent" 2>/dev/null || true; agent=""

# ---- P8/P9: drift repair latency and RSS with 10 000 watched objects ---------------------------
log "P8/P9: berth run watching 10 syncs x 1000 objects; hand edits reverted by selfHeal"
big=$work/watched
mkdir -p "$big/apps"
python3 - "$big/apps" <<'PY'
import os, sys
for s in range(10):
    d = os.path.join(sys.argv[1], f"w{s}")
    os.makedirs(d)
    with open(os.path.join(d, "all.yaml"), "w") as f:
        for i in range(1000):
            f.write(f"---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:04d}\ndata:\n  value: \"{i}\"\n")
PY
git -C "$big" init -q -b main; git -C "$big" add -A; git -C "$big" -c user.name=b -c user.email=b@example.com commit -qm watched
{
  echo "apiVersion: berth.dev/v1alpha1"; echo "kind: Mapping"
  echo "repositories: [{name: config, url: \"file://$big\", interval: 1h}]"
  echo "syncs:"
  for s in $(seq 0 9); do kubectl create namespace "w$s" >/dev/null; echo "  - {name: w$s, repository: config, path: apps/w$s, namespace: w$s, selfHeal: true}"; done
} >"$work/watched.yaml"
port=$(bash "$root/tests/control-plane.sh" port)
"$berth" -c "$work/watched.yaml" run --listen "127.0.0.1:$port" --admin-listen 127.0.0.1:0 2>/dev/null &
agent=$!
# one number, 0 until the agent listens
passes() { { curl -fs "http://127.0.0.1:$port/metrics" || true; } | awk '/^berth_syncs_total/ {s += $2} END {print int(s)}'; }
until [ "$(passes)" -ge 10 ]; do sleep 0.5; done
sleep 12  # the watches pick up the recorded inventories
p8=()
for i in $(seq 1 15); do
  t0=$(now)
  kubectl -n w3 patch configmap cm-0042 --type=merge -p '{"data":{"value":"by hand"}}' >/dev/null
  until [ "$(kubectl -n w3 get configmap cm-0042 -o jsonpath='{.data.value}')" = "42" ]; do :; done
  t1=$(now); p8+=("$(elapsed "$t0" "$t1")")
done
watched_rss=$(awk '/VmRSS/ {print $2}' "/proc/$agent/status")
watched_hwm=$(awk '/VmHWM/ {print $2}' "/proc/$agent/status")
kill "$agent"; wait "$agent" 2>/dev/null || true; agent=""

# ---- P10: a commit shown on an open dashboard page ---------------------------------------------
log "P10: commit -> new revision on the open dashboard overview (server-sent events, as the page does)"
live=$work/live
mkdir -p "$live/app"
printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: live}\ndata: {n: "0"}\n' >"$live/app/live.yaml"
git -C "$live" init -q -b main; git -C "$live" add -A; git -C "$live" -c user.name=b -c user.email=b@example.com commit -qm live
kubectl create namespace live >/dev/null
printf 'apiVersion: berth.dev/v1alpha1\nkind: Mapping\nrepositories: [{name: config, url: "file://%s", interval: 1h}]\nsyncs: [{name: live, repository: config, path: app, namespace: live}]\n' "$live" >"$work/live.yaml"
admin=$(bash "$root/tests/control-plane.sh" port)
"$berth" -c "$work/live.yaml" run --listen 127.0.0.1:0 --admin-listen "127.0.0.1:$admin" 2>/dev/null &
agent=$!
p10=$(python3 - "$live" "$admin" <<'PY'
import subprocess, sys, threading, time, urllib.request
repo, port = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}"
for _ in range(200):
    try:
        if b"live" in urllib.request.urlopen(base + "/?fragment=1").read():
            break
    except OSError:
        pass
    time.sleep(0.1)
events = threading.Event()
def listen():
    with urllib.request.urlopen(base + "/live") as r:
        for line in r:
            if line.startswith(b"data:"):
                events.set()
threading.Thread(target=listen, daemon=True).start()
time.sleep(1)
samples = []
for i in range(1, 11):
    with open(f"{repo}/app/live.yaml", "w") as f:
        f.write(f'apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: live}}\ndata: {{n: "{i}"}}\n')
    git = ["git", "-C", repo, "-c", "user.name=b", "-c", "user.email=b@example.com"]
    subprocess.run(git + ["commit", "-qam", f"live {i}"], check=True)
    sha = subprocess.run(["git", "-C", repo, "rev-parse", "--short=7", "HEAD"], capture_output=True, text=True).stdout.strip()
    t0 = time.monotonic()
    while True:
        events.wait(10)
        events.clear()
        if sha.encode() in urllib.request.urlopen(base + "/?fragment=1").read():
            break
    samples.append(time.monotonic() - t0)
    time.sleep(0.5)
samples.sort()
print(f"{samples[len(samples) // 2]:.3f}")
PY
)
kill "$agent"; wait "$agent" 2>/dev/null || true; agent=""

# ---- P13: an operator-sized CRD bundle ---------------------------------------------------------
# one 12 MB file of 16 CRDs (300 000 YAML nodes); berth and kubectl each install their own
# copy (another API group), once: CRDs are cluster-scoped and a second install changes nothing
log "P13: first sync of one 12 MB file of 16 CRDs (kubectl apply --server-side of its own copy)"
bundle=$work/bundle
python3 benches/crd_bundle.py "$bundle/crds" p13-berth.bench.berth.dev
python3 benches/crd_bundle.py "$work/bundle-kubectl" p13-kubectl.bench.berth.dev
git -C "$bundle" init -q -b main; git -C "$bundle" add -A
git -C "$bundle" -c user.name=bench -c user.email=b@example.com commit -qm bundle
cat >"$work/bundle.yaml" <<YAML
apiVersion: berth.dev/v1alpha1
kind: Mapping
repositories: [{name: bundle, url: "file://$bundle", interval: 0}]
syncs: [{name: bundle, repository: bundle, path: crds}]
YAML
# seconds and peak RSS (MiB) of a command, from getrusage of the child
measured() {
  python3 -c 'import resource, subprocess, sys, time
t = time.time(); p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(f"{time.time() - t:.2f} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024} {p.returncode}")' "$@"
}
read -r p13b p13b_rss p13b_rc < <(measured "$berth" -c "$work/bundle.yaml" sync)
read -r p13k p13k_rss p13k_rc < <(measured "$KUBECTL" apply --server-side -f "$work/bundle-kubectl/bundle.yaml")
log "P13 exit codes: berth $p13b_rc, kubectl $p13k_rc"

# ---- P16a/P16b: the first sync of a real operator install ---------------------------------------
# Argo Workflows' own install from its Go module (its 8 full CRDs, the controller and the
# server, as the tests sync it), on a second control plane without Argo, so that every run installs the CRDs anew;
# everything is deleted again between runs. P16b adds custom resources of the new kinds, which
# kubectl can only apply on a second try: all of its tries are counted.
log "P16: first sync of the Argo Workflows install (a second control plane, without Argo)"
argo_mod=$(bash tests/control-plane.sh module "github.com/argoproj/argo-workflows/v3@v$(bash tests/control-plane.sh versions | awk '$1 == "argo-workflows" {print $2}')")
op=$work/operator
for variant in a b; do
  for part in base/crds/full base/workflow-controller base/argo-server; do
    mkdir -p "$op/$variant/$(basename "$part")"
    find "$argo_mod/manifests/$part" -maxdepth 1 -name '*.yaml' ! -name kustomization.yaml -exec cp {} "$op/$variant/$(basename "$part")/" \;
  done
done
cat >"$op/b/resources.yaml" <<'YAML'
apiVersion: argoproj.io/v1alpha1
kind: WorkflowTemplate
metadata: {name: hello}
spec:
  entrypoint: main
  templates: [{name: main, container: {image: busybox, command: [echo, hello]}}]
---
apiVersion: argoproj.io/v1alpha1
kind: ClusterWorkflowTemplate
metadata: {name: hello-cluster}
spec:
  entrypoint: main
  templates: [{name: main, container: {image: busybox, command: [echo, hello]}}]
---
apiVersion: argoproj.io/v1alpha1
kind: CronWorkflow
metadata: {name: nightly}
spec:
  schedules: ["0 3 * * *"]
  suspend: true
  workflowSpec: {workflowTemplateRef: {name: hello}}
YAML
git -C "$op" init -q -b main; git -C "$op" add -A
git -C "$op" -c user.name=bench -c user.email=b@example.com commit -qm operator
second=$work/cp16
KUBECONFIG16=$(BERTH_NO_ARGO=1 bash tests/control-plane.sh start "$second")
k16() { KUBECONFIG=$KUBECONFIG16 kubectl "$@"; }
cat >"$work/operator.yaml" <<YAML
apiVersion: berth.dev/v1alpha1
kind: Mapping
repositories: [{name: operator, url: "file://$op", interval: 0}]
syncs:
  - {name: p16a, repository: operator, path: a, namespace: argo}
  - {name: p16b, repository: operator, path: b, namespace: argo}
YAML
# removes an install, CRDs and cluster-scoped objects included, and waits until it is gone
# (once its CRDs are Established: the API server cannot delete a CRD whose storage is still
# initializing, and would retry for minutes)
uninstall() {
  k16 wait --for condition=established --timeout=60s crd --all >/dev/null 2>&1 || true
  k16 delete -n argo -R -f "$op/$1" --ignore-not-found --wait=true >/dev/null 2>&1 || true
  k16 delete configmap -n berth-bench -l app.kubernetes.io/managed-by=berth --ignore-not-found >/dev/null 2>&1 || true
  k16 delete configmap -n berth-bench berth-sync-p16a berth-sync-p16b --ignore-not-found >/dev/null 2>&1 || true
}
# kubectl until it succeeds (at most 5 tries); prints the seconds of all tries and their count
kubectl_tries() {
  python3 -c 'import subprocess, sys, time
t = time.time()
for n in range(1, 6):
    if subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
        break
print(f"{time.time() - t:.3f} {n}")' "$KUBECTL" --kubeconfig "$KUBECONFIG16" apply --server-side -n argo -R -f "$op/$1"
}
k16 create namespace berth-bench >/dev/null
k16 create namespace argo >/dev/null
p16ab=(); p16ak=(); p16bb=(); p16bk=(); p16tries=()
for run in $(seq "$RUNS"); do
  for variant in a b; do
    t0=$(now); KUBECONFIG=$KUBECONFIG16 "$berth" -c "$work/operator.yaml" sync "p16$variant" >/dev/null; t1=$(now)
    eval "p16${variant}b+=(\"$(elapsed "$t0" "$t1")\")"
    uninstall "$variant"
    read -r seconds tries < <(kubectl_tries "$variant")
    eval "p16${variant}k+=(\"$seconds\")"
    [ "$variant" = b ] && p16tries+=("$tries")
    uninstall "$variant"
  done
done
bash tests/control-plane.sh stop "$second"

# ---- P4/P5: reaction latency ------------------------------------------------------------------
latency=$(cargo bench --quiet --bench latency 2>/dev/null | grep -E '^P[45]' || true)
# ---- P11/P12: pull requests and commit statuses, against a real Gitea ---------------------------
log "P11/P12: pull request delivery -> Workflow, Workflow finished -> status on the commit (Gitea)"
pulls=$(cargo bench --quiet --bench pull_requests 2>/dev/null | grep -E '^P1[12]' || true)
# ---- P17/P18: notifications, to a receiver on loopback ------------------------------------------
log "P17/P18: breaking commit -> notification delivered; 100 syncs broken at once -> one message"
notifications=$(cargo bench --quiet --bench notifications 2>/dev/null | grep -E '^(P1[78]|    )' || true)
# ---- P19: pull request previews, against a real Gitea -------------------------------------------
log "P19: pull request delivery -> preview comment on it, 1000 objects with 10 changed (Gitea)"
previews=$(cargo bench --quiet --bench previews 2>/dev/null | grep -E '^P19' || true)
# ---- P20/P21: SOPS decryption, and varsFrom changes -----------------------------------------------
log "P20/P21: first sync of 100 SOPS-encrypted Secrets vs plain; varsFrom ConfigMap edit -> applied"
secrets=$(cargo bench --quiet --bench sops 2>/dev/null | grep -E '^P2[01]' || true)

ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }
b1=$(median "${p1b[@]}"); k1=$(median "${p1k[@]}")
b2=$(median "${p2b[@]}"); k2=$(median "${p2k[@]}")
b3=$(median "${p3b[@]}"); k3=$(median "${p3k[@]}")
b6=$(median "${p6b[@]}"); g6=$(median "${p6g[@]}")
echo
echo "berth vs reference on $(nproc) cores, $(uname -m), kube-apiserver $("$KUBECTL" version -o json | jq -r .serverVersion.gitVersion) on loopback; medians of $RUNS runs (seconds)"
printf '%-4s %-58s %9s %9s %7s %s\n' id workload berth ref ratio target
printf '%-4s %-58s %9s %9s %7s %s\n' P1 "first sync, 1000 objects (kubectl apply --server-side)" "$b1" "$k1" "$(ratio "$b1" "$k1")" "<= 0.5"
printf '%-4s %-58s %9s %9s %7s %s\n' P2 "no-op resync, 1000 objects (kubectl apply --server-side)" "$b2" "$k2" "$(ratio "$b2" "$k2")" "<= 0.1, writes per run: ${writes[*]}"
printf '%-4s %-58s %9s %9s %7s %s\n' P3 "diff, 10 of 1000 changed (kubectl diff --server-side)" "$b3" "$k3" "$(ratio "$b3" "$k3")" "<= 0.5"
printf '%-4s %-58s %9s %9s %7s %s\n' P6 "fetch 1 new commit, 5000 commits/2000 files (git fetch)" "$b6" "$g6" "$(ratio "$b6" "$g6")" "<= 1.0"
echo "P7 berth run, 10 syncs x 100 objects, 20 cycles: peak RSS $((hwm / 1024)) MiB; RSS after 5 cycles $((rss5 / 1024)) MiB, after 20 $((rss20 / 1024)) MiB (target <= 40 MiB, flat)"
echo "P8 drift -> repaired by selfHeal (kubectl patch to value back, via kubectl polling; an upper bound): p50 $(median "${p8[@]}") s over ${#p8[@]} edits (target p50 <= 2 s)"
echo "P9 berth run watching 10 000 objects: RSS $((watched_rss / 1024)) MiB, peak $((watched_hwm / 1024)) MiB (target <= 64 MiB)"
echo "P10 commit -> shown on the open dashboard overview (file event, pass, server-sent event, page fetch): p50 $p10 s over 10 commits (target <= 1 s)"
echo "P13 first sync of a 12 MB file of 16 CRDs: berth $p13b s, peak RSS $p13b_rss MiB; kubectl apply --server-side $p13k s, $p13k_rss MiB (targets: berth RSS <= 128 MiB, time <= kubectl's)"
b16a=$(median "${p16ab[@]}"); k16a=$(median "${p16ak[@]}")
b16b=$(median "${p16bb[@]}"); k16b=$(median "${p16bk[@]}")
printf '%-4s %-58s %9s %9s %7s %s\n' P16a "first sync, Argo Workflows install, 8 CRDs (kubectl apply)" "$b16a" "$k16a" "$(ratio "$b16a" "$k16a")" "<= 0.5"
printf '%-4s %-58s %9s %9s %7s %s\n' P16b "the same with 3 custom resources (kubectl, all tries)" "$b16b" "$k16b" "$(ratio "$b16b" "$k16b")" "<= 1.0, kubectl tries: ${p16tries[*]}"
echo "$latency" | sed 's/^/    /'
echo "$pulls" | sed 's/^/    /'
echo "    (targets: P11 p50 <= 200 ms, P12 p50 <= 1 s)"
echo "$notifications" | sed 's/^/    /'
echo "    (targets: P17 p50 <= 1 s, P18 one message per notification within 5 s)"
echo "$previews" | sed 's/^/    /'
echo "    (target: P19 p50 <= 3 s; argocd-diff-preview needs about 90 s before it starts)"
echo "$secrets" | sed 's/^/    /'
echo "    (targets: P20 ratio <= 1.5, P21 p50 <= 2 s, P8's drift budget)"
