#!/usr/bin/env bash
# Runs the e2e suite on a kind cluster, for machines with a Docker engine (not this CI machine,
# which uses tests/cluster/test.sh instead). Needs: docker, kind, kubectl on PATH.
#   1. create a kind cluster (name: $KIND_CLUSTER, default tideway-e2e) with its own kubeconfig;
#   2. build the broker (and, once it exists, operator) images with Docker and the small toolbox
#      image, and `kind load docker-image` them into the cluster's node(s);
#   3. run the same suite as tests/cluster/test.sh (tests/e2e/smoke/smoke.sh) against it;
#   4. delete the cluster (TIDEWAY_KEEP_CLUSTER=1 keeps it).
# Env: KIND_CLUSTER, KIND_NODE_IMAGE (e.g. kindest/node:v1.36.x; default: kind's own default),
#      TIDEWAY_KIND_REUSE=1 (use an existing cluster of that name instead of creating one).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cluster="${KIND_CLUSTER:-tideway-e2e}"
kubeconfig="$root/target/kind-$cluster.kubeconfig"
say() { echo "[kind.sh $(date +%H:%M:%S)] $*"; }

for tool in docker kind kubectl; do
    command -v "$tool" >/dev/null || { say "FAILED: $tool not found on PATH"; exit 1; }
done
mkdir -p "$root/target"

created=0
cleanup() {
    local status=$?
    if [ "$created" = 1 ] && [ "${TIDEWAY_KEEP_CLUSTER:-0}" != 1 ]; then
        say "deleting kind cluster $cluster"
        kind delete cluster --name "$cluster" --kubeconfig "$kubeconfig" || status=1
        rm -f "$kubeconfig"
    fi
    exit "$status"
}
trap cleanup EXIT

if kind get clusters 2>/dev/null | grep -qx "$cluster" && [ "${TIDEWAY_KIND_REUSE:-0}" = 1 ]; then
    say "reusing kind cluster $cluster"
    kind export kubeconfig --name "$cluster" --kubeconfig "$kubeconfig"
else
    say "creating kind cluster $cluster"
    args=(create cluster --name "$cluster" --kubeconfig "$kubeconfig" --wait 180s)
    [ -z "${KIND_NODE_IMAGE:-}" ] || args+=(--image "$KIND_NODE_IMAGE")
    created=1
    kind "${args[@]}"
fi

say "building images with Docker"
docker build -f "$root/images/broker/Dockerfile" -t tideway-broker:0.1.0 "$root"
images=(tideway-broker:0.1.0 tideway-toolbox:0.1.0)
if [ -d "$root/operator" ] && grep -q 'tideway-operator' "$root/operator/Cargo.toml" 2>/dev/null; then
    docker build -f "$root/images/operator/Dockerfile" -t tideway-operator:0.1.0 "$root"
    images+=(tideway-operator:0.1.0)
fi
docker build -t tideway-toolbox:0.1.0 "$root/images/toolbox"

say "loading images into kind: ${images[*]}"
for image in "${images[@]}"; do
    kind load docker-image "$image" --name "$cluster"
done

# kind's pod IPs live inside the node containers' network: reach pods through port-forward.
say "running the e2e suite"
KUBECONFIG="$kubeconfig" TIDEWAY_SMOKE_ACCESS=port-forward bash "$root/tests/e2e/smoke/smoke.sh"
