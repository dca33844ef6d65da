#!/usr/bin/env bash
# Smoke test proving a Kubernetes cluster is real, against whatever KUBECONFIG points to:
#   1. the node(s) are Ready;
#   2. a Deployment of the locally built broker image runs and answers /readyz on its pod IP
#      from the host (TIDEWAY_SMOKE_ACCESS=port-forward uses kubectl port-forward instead, for
#      clusters whose pod IPs the host cannot reach, e.g. kind);
#   3. a StatefulSet pod keeps its PersistentVolume's data across a pod deletion;
#   4. a CRD with a CEL rule (x-kubernetes-validations) rejects a bad object with the rule's message.
# Needs the images tideway-broker:0.1.0 and tideway-toolbox:0.1.0 on the node(s).
# Every wait is a condition poll with a deadline. Ends with "smoke: N passed, N failed".
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${KUBECONFIG:?set KUBECONFIG to the cluster to test}"
export KUBECONFIG
cache="${TIDEWAY_CACHE:-${HOME:-/root}/.cache/tideway}"
if ! command -v kubectl >/dev/null; then
    # the binaries built by tests/cluster/build-binaries.sh
    kbin="$(ls -d "$cache"/k8s-v*/bin 2>/dev/null | sort -V | tail -1)"
    [ -n "$kbin" ] && export PATH="$kbin:$PATH"
fi
command -v kubectl >/dev/null || { echo "smoke: kubectl not found"; exit 1; }

ns="tideway-smoke-$(date +%s)-$$"
access="${TIDEWAY_SMOKE_ACCESS:-podip}"
broker_image="${TIDEWAY_BROKER_IMAGE:-tideway-broker:0.1.0}"
toolbox_image="${TIDEWAY_TOOLBOX_IMAGE:-tideway-toolbox:0.1.0}"
passed=0 failed=0
pf_pid=""

log() { echo "[smoke $(date +%H:%M:%S)] $*"; }
k() { kubectl -n "$ns" "$@"; }
pass() { passed=$((passed + 1)); log "PASS: $*"; }
fail() { failed=$((failed + 1)); log "FAIL: $*"; }

# poll <timeout s> <command...>: retry until it succeeds or the deadline passes
poll() {
    local deadline=$(( $(date +%s) + $1 )); shift
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 1
    done
}

diagnose() {
    log "diagnostics for namespace $ns:"
    k get all,pvc -o wide 2>&1 | sed 's/^/    /'
    k get events --sort-by=.lastTimestamp 2>&1 | tail -25 | sed 's/^/    /'
}

cleanup() {
    [ -z "$pf_pid" ] || kill "$pf_pid" 2>/dev/null
    # TIDEWAY_SMOKE_CLEANUP_WAIT=0 (set by tests/cluster/test.sh when it tears the cluster down
    # anyway) only asks for the deletion instead of waiting for it
    local wait=true
    [ "${TIDEWAY_SMOKE_CLEANUP_WAIT:-1}" = 0 ] && wait=false
    kubectl delete namespace "$ns" --wait="$wait" --timeout=90s >/dev/null 2>&1 \
        || log "warning: namespace $ns not deleted within 90s"
    kubectl delete crd smoketests.smoke.tideway.io --ignore-not-found --wait="$wait" --timeout=60s >/dev/null 2>&1
}
trap cleanup EXIT

log "cluster: $(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}'), namespace $ns"
kubectl create namespace "$ns" >/dev/null || { echo "smoke: cannot create namespace"; echo "smoke: 0 passed, 1 failed"; exit 1; }

# ---------------------------------------------------------------- 1. node Ready
if kubectl wait --for=condition=Ready nodes --all --timeout=120s >/dev/null; then
    pass "nodes Ready: $(kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name} ({.status.nodeInfo.kubeletVersion}, {.status.nodeInfo.containerRuntimeVersion}) {end}')"
else
    fail "nodes not Ready within 120s"; kubectl get nodes -o wide
fi

# ---------------------------------------------------------------- 2. broker Deployment
k apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: broker}
spec:
  replicas: 1
  selector: {matchLabels: {app: smoke-broker}}
  template:
    metadata: {labels: {app: smoke-broker}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: broker
        image: $broker_image
        imagePullPolicy: IfNotPresent
        args: [--listen, "0.0.0.0:9092", --http-listen, "0.0.0.0:9644"]
        ports: [{containerPort: 9092, name: kafka}, {containerPort: 9644, name: http}]
        readinessProbe:
          httpGet: {path: /readyz, port: 9644}
          periodSeconds: 2
EOF
if k wait --for=condition=Available deployment/broker --timeout=180s >/dev/null; then
    pod="$(k get pods -l app=smoke-broker -o jsonpath='{.items[0].metadata.name}')"
    pod_ip="$(k get pod "$pod" -o jsonpath='{.status.podIP}')"
    if [ "$access" = port-forward ]; then
        # let kubectl pick a free local port and read it from its first line
        pf_out="$(mktemp)"
        k port-forward "pod/$pod" :9644 >"$pf_out" 2>&1 &
        pf_pid=$!
        poll 30 grep -q 'Forwarding from 127.0.0.1:' "$pf_out"
        local_port="$(sed -n 's/^Forwarding from 127.0.0.1:\([0-9]*\) .*/\1/p' "$pf_out" | head -1)"
        rm -f "$pf_out"
        url="http://127.0.0.1:${local_port:-0}/readyz"
    else
        url="http://$pod_ip:9644/readyz"
    fi
    if poll 30 curl -fsS --max-time 3 "$url"; then
        pass "broker pod $pod ($broker_image) answers $url: $(curl -sS --max-time 3 "$url" | head -c 100)"
    else
        fail "broker pod $pod is Available but $url does not answer"; diagnose
    fi
else
    fail "broker Deployment not Available within 180s"; diagnose
    k logs deployment/broker --tail=20 2>&1 | sed 's/^/    /'
fi

# ---------------------------------------------------------------- 3. StatefulSet volume survives
k apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: store}
spec:
  serviceName: store
  replicas: 1
  selector: {matchLabels: {app: smoke-store}}
  template:
    metadata: {labels: {app: smoke-store}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: store
        image: $toolbox_image
        imagePullPolicy: IfNotPresent
        command: [/bin/sh, -c]
        args:
        - |
          [ -f /data/marker ] || cat /proc/sys/kernel/random/uuid > /data/marker
          trap 'exit 0' TERM
          while :; do sleep 1 & wait \$!; done
        readinessProbe:
          exec: {command: [/bin/cat, /data/marker]}
          periodSeconds: 1
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
EOF
store_ready() { k wait --for=condition=Ready pod/store-0 --timeout=5s; }
if poll 180 store_ready; then
    uid1="$(k get pod store-0 -o jsonpath='{.metadata.uid}')"
    before="$(k exec store-0 -- cat /data/marker 2>&1)"
    pv="$(k get pvc data-store-0 -o jsonpath='{.spec.volumeName}')"
    k delete pod store-0 --wait=true --timeout=60s >/dev/null
    new_pod_ready() {
        [ "$(k get pod store-0 -o jsonpath='{.metadata.uid}')" != "$uid1" ] && store_ready
    }
    if poll 120 new_pod_ready; then
        after="$(k exec store-0 -- cat /data/marker 2>&1)"
        if [ -n "$before" ] && [ "$before" = "$after" ]; then
            pass "StatefulSet pod store-0 recreated (uid changed) and still reads '$after' from PV $pv"
        else
            fail "volume data changed across pod deletion: before '$before', after '$after'"
        fi
    else
        fail "store-0 not Ready again within 120s after deletion"; diagnose
    fi
else
    fail "StatefulSet pod store-0 not Ready within 180s"; diagnose
fi

# ---------------------------------------------------------------- 4. CRD with a CEL rule
kubectl apply -f "$here/crd.yaml" >/dev/null
crd_ok() { kubectl wait --for=condition=Established crd/smoketests.smoke.tideway.io --timeout=5s; }
if poll 60 crd_ok; then
    good_ok=0
    good() {
        k apply -f - <<EOF
apiVersion: smoke.tideway.io/v1
kind: SmokeTest
metadata: {name: good}
spec: {replicas: 3, minReplicas: 1}
EOF
    }
    # discovery of a fresh CRD can lag Established by a moment: poll the good object in
    poll 30 good && good_ok=1
    bad_out="$(k apply -f - 2>&1 <<EOF
apiVersion: smoke.tideway.io/v1
kind: SmokeTest
metadata: {name: bad}
spec: {replicas: 1, minReplicas: 2}
EOF
)"
    if [ "$good_ok" = 1 ] && grep -q "minReplicas must not exceed replicas" <<<"$bad_out"; then
        pass "CRD CEL rule rejects a bad object: $(grep -o 'spec: Invalid value.*' <<<"$bad_out" | head -1)"
    else
        fail "CEL rule check: good object accepted=$good_ok; bad object answer: $bad_out"
    fi
else
    fail "CRD smoketests.smoke.tideway.io not Established within 60s"
fi

[ "$failed" = 0 ] || diagnose
echo "smoke: $passed passed, $failed failed"
[ "$failed" = 0 ]
