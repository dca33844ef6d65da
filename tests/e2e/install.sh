#!/usr/bin/env bash
# Installs tideway-operator into the local test cluster (tests/cluster/up.sh must have run):
# builds the operator (release) and broker images with images/build.sh, imports them into the
# cluster's containerd, and `helm upgrade --install`s charts/tideway-operator with pod-IP
# advertising and KUBERNETES_SERVICE_HOST/PORT pointing at the apiserver (no kube-proxy; DNS is tests/cluster/dns.py).
# Waits until the operator Deployment is Available. Idempotent.
# Env: KUBECONFIG (default target/test-cluster/kubeconfig), TIDEWAY_RESYNC_PERIOD (default 10s),
#      TIDEWAY_SKIP_BUILD=1 uses the binaries already in target/.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
export TIDEWAY_CACHE="${TIDEWAY_CACHE:-${HOME:-/root}/.cache/tideway}"
export KUBECONFIG="${KUBECONFIG:-$root/target/test-cluster/kubeconfig}"
command -v cargo >/dev/null 2>&1 || export PATH="$PATH:${HOME:-/root}/.cargo/bin"
bin="${TIDEWAY_K8S_BIN:-$(ls -d "$TIDEWAY_CACHE"/k8s-*/bin 2>/dev/null | sort | tail -1)}"
kubectl="$bin/kubectl"
helm="$bin/helm"
sock="$root/target/test-cluster/run/containerd.sock"
release=tideway-operator
namespace=tideway-system

say() { echo "[install] $*"; }
die() { echo "[install] FAILED: $*" >&2; exit 1; }

[ -x "$kubectl" ] && [ -x "$helm" ] || die "kubectl/helm not found in '$bin' (tests/cluster/build-binaries.sh)"
[ -f "$KUBECONFIG" ] || die "no kubeconfig at $KUBECONFIG: run tests/cluster/up.sh first"
[ -S "$sock" ] || die "no containerd socket at $sock: run tests/cluster/up.sh first"

if [ "${TIDEWAY_SKIP_BUILD:-0}" != 1 ]; then
    say "cargo build --release -p tideway-operator -p tideway-broker -p tideway-cli"
    nice cargo build --release -p tideway-operator -p tideway-broker -p tideway-cli
fi
say "images (operator, broker) → containerd"
TIDEWAY_OPERATOR_BIN="$root/target/release/tideway-operator" \
TIDEWAY_BROKER_BIN="${TIDEWAY_BROKER_BIN:-$root/target/release/tideway-broker}" \
TIDEWAY_CLI_BIN="${TIDEWAY_CLI_BIN:-$root/target/release/tideway}" \
    bash images/build.sh --import "$sock" operator broker

say "helm upgrade --install $release ($namespace)"
"$helm" upgrade --install "$release" charts/tideway-operator \
    --namespace "$namespace" --create-namespace \
    --set image.pullPolicy=Never \
    --set broker.advertisePodIp=true \
    --set broker.controlledShutdownTimeoutSeconds=10 \
    --set resyncPeriod="${TIDEWAY_RESYNC_PERIOD:-10s}" \
    --set logLevel=info \
    --set-json 'extraEnv=[{"name":"KUBERNETES_SERVICE_HOST","value":"172.31.250.1"},{"name":"KUBERNETES_SERVICE_PORT","value":"16443"}]'
# A new image under the same tag: restart the pods so they run it.
"$kubectl" -n "$namespace" rollout restart deployment -l "app.kubernetes.io/instance=$release" >/dev/null
"$kubectl" -n "$namespace" rollout status deployment -l "app.kubernetes.io/instance=$release" --timeout=180s \
    || { "$kubectl" -n "$namespace" logs -l "app.kubernetes.io/instance=$release" --tail=50 || true; die "operator not available"; }
"$kubectl" -n "$namespace" wait --for=condition=Available deployment -l "app.kubernetes.io/instance=$release" --timeout=60s >/dev/null
say "operator is running"
