#!/usr/bin/env bash
# berth's test command (README "Tests"; CI runs it through .ci/run): installs what the build and
# the tests need from Debian, builds and starts a local Kubernetes control plane, runs the
# format, lint and test checks against it, and stops the control plane again.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need=()
for p in pkg-config libssl-dev zlib1g-dev git python3 openssl curl; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "tests: installing ${need[*]}" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

bash tests/control-plane.sh install
dir=$(mktemp -d)
trap 'bash tests/control-plane.sh stop "$dir"; rm -rf "$dir"' EXIT
KUBECONFIG=$(bash tests/control-plane.sh start "$dir")
export KUBECONFIG

if cargo fmt --version >/dev/null 2>&1; then cargo fmt --check; else echo "tests: rustfmt not installed, skipping format check" >&2; fi
if cargo clippy --version >/dev/null 2>&1; then cargo clippy --all-targets -- -D warnings; else echo "tests: clippy not installed, skipping lints" >&2; fi
cargo test "$@"
