#!/usr/bin/env bash
# Removes what tests/e2e/install.sh installed: the Helm release (CRDs stay: crds.keep) and,
# with TIDEWAY_DELETE_CRDS=1, the CRDs (and so every MessageCluster and Topic). Safe to repeat.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export TIDEWAY_CACHE="${TIDEWAY_CACHE:-${HOME:-/root}/.cache/tideway}"
export KUBECONFIG="${KUBECONFIG:-$root/target/test-cluster/kubeconfig}"
bin="${TIDEWAY_K8S_BIN:-$(ls -d "$TIDEWAY_CACHE"/k8s-*/bin 2>/dev/null | sort | tail -1)}"

"$bin/helm" uninstall tideway-operator --namespace tideway-system --wait 2>/dev/null || true
"$bin/kubectl" delete namespace tideway-system --ignore-not-found --wait=true --timeout=120s
if [ "${TIDEWAY_DELETE_CRDS:-0}" = 1 ]; then
    "$bin/kubectl" delete -f "$root/crds/" --ignore-not-found
fi
echo "[uninstall] done"
