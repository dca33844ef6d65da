#!/usr/bin/env bash
# Runs the Kubernetes smoke test (tests/e2e/smoke/smoke.sh).
# With KUBECONFIG unset it first brings up the local cluster (tests/cluster/up.sh) and always
# tears down what it started (tests/cluster/down.sh), even when the test or up.sh fails.
# With KUBECONFIG set it only runs the test against that cluster.
# Env: TIDEWAY_KEEP_CLUSTER=1 leaves a cluster it started running (for debugging);
#      TIDEWAY_OPERATOR_E2E=1 then installs the operator (tests/e2e/install.sh, with the release
#      binaries already built) and runs tests/e2e/operator/e2e.sh (three brokers).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tests/cluster/lib.sh
. "$here/lib.sh"
t0=$(date +%s)

if [ -z "${KUBECONFIG:-}" ]; then
    teardown() {
        local status=$?
        if [ "${TIDEWAY_KEEP_CLUSTER:-0}" = 1 ]; then
            say "test: leaving the cluster running (TIDEWAY_KEEP_CLUSTER=1); stop it with tests/cluster/down.sh"
        else
            # keep the logs of a failed run: copy them out of the state dir before it is removed
            if [ "$status" != 0 ] && [ -d "$CLUSTER_DIR/logs" ]; then
                rm -rf "$CLUSTER_DIR.logs" && cp -r "$CLUSTER_DIR/logs" "$CLUSTER_DIR.logs" \
                    && say "test: cluster logs kept in $CLUSTER_DIR.logs"
            fi
            bash "$here/down.sh" || status=1
        fi
        say "test: finished in $(( $(date +%s) - t0 ))s (exit $status)"
        exit "$status"
    }
    trap teardown EXIT
    trap 'exit 130' INT TERM
    bash "$here/up.sh"
    export KUBECONFIG="$KUBECONFIG_FILE"
    [ "${TIDEWAY_KEEP_CLUSTER:-0}" = 1 ] || export TIDEWAY_SMOKE_CLEANUP_WAIT=0
fi

bash "$REPO_ROOT/tests/e2e/smoke/smoke.sh"
if [ "${TIDEWAY_OPERATOR_E2E:-0}" = 1 ]; then
    say "test: operator end-to-end (install, then tests/e2e/operator/e2e.sh)"
    TIDEWAY_SKIP_BUILD=1 bash "$REPO_ROOT/tests/e2e/install.sh"
    bash "$REPO_ROOT/tests/e2e/operator/e2e.sh"
fi
