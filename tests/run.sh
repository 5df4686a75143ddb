#!/usr/bin/env bash
# berth's test command (README "Tests"; CI runs it through .ci/run): installs what the build and
# the tests need from Debian, builds and starts a local Kubernetes control plane, runs the
# format, lint and test checks against it, and stops the control plane again.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/control-plane.sh install
# the dashboard tests drive Debian's Chromium through playwright-core and check pages with
# axe-core, both pinned in tests/browser/package-lock.json
if ! command -v npm >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
dir=$(mktemp -d)
trap 'bash tests/control-plane.sh stop "$dir"; rm -rf "$dir"' EXIT
KUBECONFIG=$(bash tests/control-plane.sh start "$dir")
export KUBECONFIG

if cargo fmt --version >/dev/null 2>&1; then cargo fmt --check; else echo "tests: rustfmt not installed, skipping format check" >&2; fi
if cargo clippy --version >/dev/null 2>&1; then cargo clippy --all-targets -- -D warnings; else echo "tests: clippy not installed, skipping lints" >&2; fi
cargo test "$@"

# the image users install: built by tests/image.sh from the Dockerfile, then run as a cluster
# runs it by tests/image.rs; where podman cannot run containers, both are skipped, saying why
if [ $# -eq 0 ]; then
  status=0; image=$(bash tests/image.sh) || status=$?
  case $status in
    0) BERTH_IMAGE=$image cargo test --test image -- --ignored ;;
    77) echo "tests: SKIPPED the image build and the container test: podman cannot run here (above)" >&2 ;;
    *) exit "$status" ;;
  esac
fi
