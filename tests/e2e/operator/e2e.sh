#!/usr/bin/env bash
# End-to-end test of tideway-operator on the local cluster (after tests/cluster/up.sh and
# tests/e2e/install.sh): a one-broker MessageCluster becomes Ready; a Topic becomes Ready;
# kcat produces and consumes through status.bootstrapServers; a topic deleted behind the
# operator's back comes back (Event DriftRepaired); deletionPolicy Delete deletes the Kafka
# topic, Retain keeps it. One broker, RF 1, min-ISR 1: brokers cannot form multi-broker
# clusters yet. Ends with `e2e-operator: N passed, N failed`. Not part of tests/run.sh.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
export TIDEWAY_CACHE="${TIDEWAY_CACHE:-${HOME:-/root}/.cache/tideway}"
export KUBECONFIG="${KUBECONFIG:-$root/target/test-cluster/kubeconfig}"
bin="${TIDEWAY_K8S_BIN:-$(ls -d "$TIDEWAY_CACHE"/k8s-*/bin 2>/dev/null | sort | tail -1)}"
python="$TIDEWAY_CACHE/venv/bin/python"
ns="${TIDEWAY_E2E_NAMESPACE:-tideway-e2e}"
k() { "$bin/kubectl" -n "$ns" "$@"; }

command -v kcat >/dev/null || { echo "e2e-operator: kcat missing (tests/setup.sh)"; exit 1; }
[ -x "$python" ] || { echo "e2e-operator: $python missing (tests/setup.sh)"; exit 1; }

passed=0; failed=0
ok()   { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
# until_true <seconds> <command...>: polls every second until the command succeeds
until_true() {
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 1
    done
}
cleanup() {
    if [ "${TIDEWAY_KEEP_E2E:-0}" != 1 ]; then
        # Topics first (their finalizers need the brokers), then the cluster and its PVCs.
        k delete topics --all --wait=true --timeout=60s >/dev/null 2>&1 || true
        "$bin/kubectl" delete namespace "$ns" --wait=true --timeout=120s >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

"$bin/kubectl" delete namespace "$ns" --ignore-not-found --wait=true --timeout=120s >/dev/null
"$bin/kubectl" create namespace "$ns" >/dev/null

# 1. a one-broker cluster
k apply -f - >/dev/null <<Y
apiVersion: tideway.dev/v1alpha1
kind: MessageCluster
metadata: {name: demo}
spec:
  brokers: 1
  storage: {size: 1Gi}
  config: {defaultReplicationFactor: 1, minInSyncReplicas: 1, autoCreateTopics: false}
Y
if k wait --for=condition=Ready mc/demo --timeout=180s >/dev/null; then
    ok "MessageCluster demo Ready"
else
    fail "MessageCluster demo not Ready: $(k get mc demo -o jsonpath='{.status.conditions}')"
    k get pods -o wide || true
    exit 1
fi
bootstrap="$(k get mc demo -o jsonpath='{.status.bootstrapServers}')"
if [[ "$bootstrap" =~ ^[0-9.]+:9092$ ]]; then ok "bootstrapServers is the pod IP ($bootstrap)"; else fail "bootstrapServers '$bootstrap'"; fi
if [ "$(k get mc demo -o jsonpath='{.status.observedGeneration}')" = "$(k get mc demo -o jsonpath='{.metadata.generation}')" ]; then
    ok "observedGeneration follows generation"
else
    fail "observedGeneration"
fi

# 2. topics
topic() { # topic <name> <deletionPolicy>
    k apply -f - >/dev/null <<Y
apiVersion: tideway.dev/v1alpha1
kind: Topic
metadata: {name: $1}
spec:
  clusterRef: {name: demo}
  partitions: 2
  replicationFactor: 1
  minInSyncReplicas: 1
  config: {retention.ms: "3600000"}
  deletionPolicy: $2
Y
}
topic orders Delete
topic audit Retain
if k wait --for=condition=Ready topic/orders topic/audit --timeout=60s >/dev/null; then ok "Topics Ready"; else fail "Topics not Ready: $(k get topics -o yaml)"; fi
if [ "$(k get topic orders -o jsonpath='{.status.partitions}')" = 2 ]; then ok "status.partitions = 2"; else fail "status.partitions"; fi
on_broker() { kcat -b "$bootstrap" -L -t "$1" -m 5 2>/dev/null | grep -q "topic \"$1\" with [1-9][0-9]* partitions"; }
if until_true 20 on_broker orders; then ok "topic orders exists on the broker"; else fail "orders not on the broker"; fi

# 3. produce and consume
printf 'one\ntwo\nthree\n' | kcat -b "$bootstrap" -P -t orders -p 0 -m 10
got="$(kcat -b "$bootstrap" -C -t orders -p 0 -o beginning -e -q -m 10 | tr '\n' ' ')"
if [ "$got" = "one two three " ]; then ok "produce/consume through bootstrapServers"; else fail "consumed '$got'"; fi

# 4. drift: the topic deleted behind the operator's back comes back
"$python" - "$bootstrap" <<'P'
import sys
from confluent_kafka.admin import AdminClient
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
for f in admin.delete_topics(["orders"], operation_timeout=10).values():
    f.result()
P
gone() { ! on_broker orders; }
until_true 10 gone || true
if until_true 60 on_broker orders; then ok "deleted topic recreated by the operator"; else fail "orders not recreated"; fi
if until_true 20 sh -c "'$bin/kubectl' -n '$ns' get events --field-selector reason=DriftRepaired -o name | grep -q ."; then
    ok "DriftRepaired event"
else
    fail "no DriftRepaired event"
fi

# 5. Delete vs Retain
k delete topic orders --wait=true --timeout=60s >/dev/null
if until_true 20 gone; then ok "deletionPolicy Delete removed the Kafka topic"; else fail "orders still on the broker"; fi
k delete topic audit --wait=true --timeout=60s >/dev/null
if on_broker audit; then ok "deletionPolicy Retain kept the Kafka topic"; else fail "audit deleted despite Retain"; fi

echo "e2e-operator: $passed passed, $failed failed"
[ "$failed" = 0 ]
