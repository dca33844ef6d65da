#!/usr/bin/env bash
# The single test command: installs test tools, builds the broker, runs the Rust tests,
# then the integration tests against the real binary. Works from any directory.
# Extra arguments go to pytest, e.g. `tests/run.sh -k admin -x`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export TIDEWAY_CACHE="${TIDEWAY_CACHE:-${HOME:-/root}/.cache/tideway}"
venv_python="$TIDEWAY_CACHE/venv/bin/python"
command -v cargo >/dev/null 2>&1 || export PATH="$PATH:${HOME:-/root}/.cargo/bin"

step() { echo; echo "==> [run.sh] $*"; }

step "1/4 setup (kcat, Python venv at $TIDEWAY_CACHE/venv)"
bash tests/setup.sh

step "2/4 cargo build --release -p tideway-broker"
cargo build --release -p tideway-broker
target_dir="$(cargo metadata --format-version 1 --no-deps \
    | "$venv_python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
broker_bin="$target_dir/release/tideway-broker"
[ -x "$broker_bin" ] || { echo "[run.sh] FAILED: no broker binary at $broker_bin"; exit 1; }

step "3/4 cargo test --workspace"
cargo test --workspace

step "4/4 pytest tests/integration (broker: $broker_bin)"
if [ -x "$TIDEWAY_CACHE/bin/franzgo" ]; then export TIDEWAY_FRANZGO_BIN="$TIDEWAY_CACHE/bin/franzgo"; fi
set +e
TIDEWAY_BROKER_BIN="$broker_bin" "$venv_python" -m pytest tests/integration "$@"
status=$?
set -e
case "$status" in
    0) echo "[run.sh] all steps passed" ;;
    5) echo "[run.sh] FAILED: pytest collected no tests (exit 5)"; exit 1 ;;
    *) echo "[run.sh] FAILED: pytest exited $status"; exit "$status" ;;
esac
