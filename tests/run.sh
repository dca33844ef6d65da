#!/usr/bin/env bash
# The single test command: installs test tools, builds the broker, runs the Rust tests,
# the integration tests against the real binary with real Kafka clients, the operator's
# checks against a real kube-apiserver, and on a local Kubernetes the smoke test and the
# operator's end-to-end test (three brokers installed by Helm).
# Works from any directory. Extra arguments go to pytest, e.g. `tests/run.sh -k admin -x`.
# TIDEWAY_SKIP_CLUSTER=1 skips the Kubernetes tests (they need root).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export TIDEWAY_CACHE="${TIDEWAY_CACHE:-${HOME:-/root}/.cache/tideway}"
venv_python="$TIDEWAY_CACHE/venv/bin/python"
command -v cargo >/dev/null 2>&1 || export PATH="$PATH:${HOME:-/root}/.cargo/bin"
command -v go >/dev/null 2>&1 || export PATH="$PATH:/usr/local/go/bin"

started=$SECONDS
step() { echo; echo "==> [run.sh +$((SECONDS - started))s] $*"; }
fail() { echo "[run.sh] FAILED: $*"; exit 1; }

step "1/7 setup (kcat, Python venv and franz-go client in $TIDEWAY_CACHE)"
bash tests/setup.sh

step "2/7 Kubernetes binaries from the Go module proxy (cached in $TIDEWAY_CACHE)"
k8s_bin="$(bash tests/cluster/build-binaries.sh | tail -n 1)"
[ -x "$k8s_bin/helm" ] || fail "no helm in $k8s_bin"
export TIDEWAY_K8S_BIN="$k8s_bin" TIDEWAY_HELM="$k8s_bin/helm" TIDEWAY_REQUIRE_HELM=1

step "3/7 cargo build --release -p tideway-broker -p tideway-operator -p tideway-cli"
cargo build --release -p tideway-broker -p tideway-operator -p tideway-cli
target_dir="$(cargo metadata --format-version 1 --no-deps \
    | "$venv_python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
broker_bin="$target_dir/release/tideway-broker"
[ -x "$broker_bin" ] || fail "no broker binary at $broker_bin"
# The `tideway` CLI: pytest runs it, images/build.sh puts it into the broker image (step 7).
export TIDEWAY_CLI_BIN="$target_dir/release/tideway"
[ -x "$TIDEWAY_CLI_BIN" ] || fail "no CLI binary at $TIDEWAY_CLI_BIN"

step "4/7 cargo test --workspace (helm chart checks included)"
cargo test --workspace

step "5/7 operator CRDs and chart against a real kube-apiserver"
bash operator/tests/apiserver-check.sh

step "6/7 pytest tests/integration (broker: $broker_bin)"
if [ -x "$TIDEWAY_CACHE/bin/franzgo" ]; then export TIDEWAY_FRANZGO_BIN="$TIDEWAY_CACHE/bin/franzgo"; fi
set +e
TIDEWAY_BROKER_BIN="$broker_bin" "$venv_python" -m pytest tests/integration "$@"
status=$?
set -e
case "$status" in
    0) ;;
    5) fail "pytest collected no tests (exit 5)" ;;
    *) fail "pytest exited $status" ;;
esac

if [ "${TIDEWAY_SKIP_CLUSTER:-0}" = 1 ]; then
    step "7/7 Kubernetes tests skipped (TIDEWAY_SKIP_CLUSTER=1)"
else
    step "7/7 Kubernetes smoke test and operator e2e on a local cluster (brought up and torn down here)"
    TIDEWAY_BROKER_BIN="$broker_bin" TIDEWAY_OPERATOR_E2E=1 bash tests/cluster/test.sh
fi
echo "[run.sh] all steps passed in $((SECONDS - started))s"
