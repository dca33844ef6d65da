#!/usr/bin/env bash
# End-to-end test of tideway-operator on the local cluster (after tests/cluster/up.sh and
# tests/e2e/install.sh): a three-broker MessageCluster becomes Ready (the brokers find each
# other's Raft voters through the cluster DNS); replicated Topics become Ready, one with a
# replication factor above the broker count reports InvalidReplicationFactor; kcat produces
# with acks=all and consumes through status.bootstrapServers, also after a broker pod is
# deleted; a replication factor change completes; a topic deleted behind the operator's back
# comes back (Event DriftRepaired); the operator restarted mid-reconcile converges; two
# operator replicas never both act; deletionPolicy Delete deletes the Kafka topic, Retain
# keeps it; then tests/e2e/operator/roll.sh, with clients producing and consuming throughout:
# rolling restarts, and scaling up to 4 (no broker restarts) and back down to 3 (replicas
# moved off broker 3 first; a MirrorPolicy with mode All gives a topic a fourth replica and
# drops it again); then tests/e2e/operator/autoscale.sh: a ConsumerAutoscaler scales a
# consumer Deployment on its group's lag; then tests/e2e/operator/mirror.sh: a MirrorPolicy
# refuses a client's topic and a Topic resource that break it, Adjust creates them its way.
# Ends with `e2e-operator: N passed, N failed`. Run by tests/run.sh (through
# tests/cluster/test.sh with TIDEWAY_OPERATOR_E2E=1).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
export TIDEWAY_CACHE="${TIDEWAY_CACHE:-${HOME:-/root}/.cache/tideway}"
export KUBECONFIG="${KUBECONFIG:-$root/target/test-cluster/kubeconfig}"
bin="${TIDEWAY_K8S_BIN:-$(ls -d "$TIDEWAY_CACHE"/k8s-*/bin 2>/dev/null | sort | tail -1)}"
python="$TIDEWAY_CACHE/venv/bin/python"
ns="${TIDEWAY_E2E_NAMESPACE:-tideway-e2e}"
# k <kubectl args>: in the test namespace. A `get` that fails on the way to the API server (a
# busy 2-core machine: connection refused, timeouts, etcd leader changes) is asked again, up
# to 5 times; any other failure (NotFound, a bad query) is returned at once. Without this, a
# check that compares pod uids counted a failed read as a restarted pod.
k() {
    [ "$1" = get ] || { "$bin/kubectl" -n "$ns" "$@"; return; }
    local out rc err
    err="$(mktemp)"
    for _ in 1 2 3 4 5; do
        rc=0; out="$("$bin/kubectl" -n "$ns" "$@" 2>"$err")" || rc=$?
        if [ "$rc" = 0 ] || ! grep -qiE 'unable to connect|connection refused|connection reset|timeout|timed out|TLS handshake|currently unable|etcdserver|unexpected EOF|too many requests' "$err"; then
            break
        fi
        sleep 1
    done
    [ -z "$out" ] || printf '%s\n' "$out"
    cat "$err" >&2; rm -f "$err"
    return "$rc"
}

command -v kcat >/dev/null || { echo "e2e-operator: kcat missing (tests/setup.sh)"; exit 1; }
[ -x "$python" ] || { echo "e2e-operator: $python missing (tests/setup.sh)"; exit 1; }

passed=0; failed=0
ok()   { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
# until_true <seconds> <command...>: polls every second until the command succeeds
# or the deadline passes. Deadlines are generous: a loaded 2-core machine runs it all (issue 13).
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

# 1. a three-broker cluster
k apply -f - >/dev/null <<Y
apiVersion: tideway.dev/v1alpha1
kind: MessageCluster
metadata: {name: demo}
spec:
  brokers: 3
  storage: {size: 1Gi}
  config: {defaultReplicationFactor: 3, minInSyncReplicas: 2, autoCreateTopics: false}
Y
if k wait --for=condition=Ready mc/demo --timeout=240s >/dev/null; then
    ok "MessageCluster demo Ready (3 brokers)"
else
    fail "MessageCluster demo not Ready: $(k get mc demo -o jsonpath='{.status.conditions}')"
    k get pods -o wide || true
    for p in demo-0 demo-1 demo-2; do k logs "$p" --tail=30 2>/dev/null | sed "s/^/$p: /" || true; done
    exit 1
fi
bootstrap="$(k get mc demo -o jsonpath='{.status.bootstrapServers}')"
if [[ "$bootstrap" =~ ^[0-9.]+:9092,[0-9.]+:9092,[0-9.]+:9092$ ]]; then ok "bootstrapServers lists the 3 pod IPs ($bootstrap)"; else fail "bootstrapServers '$bootstrap'"; fi
if [ "$(k get mc demo -o jsonpath='{.status.readyBrokers}')" = 3 ]; then ok "readyBrokers = 3"; else fail "readyBrokers"; fi
if [ "$(k get mc demo -o jsonpath='{.status.observedGeneration}')" = "$(k get mc demo -o jsonpath='{.metadata.generation}')" ]; then
    ok "observedGeneration follows generation"
else
    fail "observedGeneration"
fi
brokers_listed() { [ "$(kcat -b "$bootstrap" -L -m 5 2>/dev/null | grep -c '^  broker ')" = 3 ]; }
if until_true 60 brokers_listed; then ok "every broker is in the cluster metadata"; else fail "brokers: $(kcat -b "$bootstrap" -L -m 5 2>&1 | head -8)"; fi

# 2. topics
topic() { # topic <name> <deletionPolicy> <replicationFactor> <minInSyncReplicas>
    k apply -f - >/dev/null <<Y
apiVersion: tideway.dev/v1alpha1
kind: Topic
metadata: {name: $1}
spec:
  clusterRef: {name: demo}
  partitions: 3
  replicationFactor: $3
  minInSyncReplicas: $4
  config: {retention.ms: "3600000"}
  deletionPolicy: $2
Y
}
topic orders Delete 3 2
topic audit Retain 1 1
topic wide Delete 4 1
if k wait --for=condition=Ready topic/orders topic/audit --timeout=90s >/dev/null; then ok "Topics Ready"; else fail "Topics not Ready: $(k get topics -o yaml)"; fi
if [ "$(k get topic orders -o jsonpath='{.status.partitions}/{.status.replicationFactor}/{.status.underReplicatedPartitions}')" = 3/3/0 ]; then
    ok "orders: 3 partitions, RF 3, none under-replicated"
else
    fail "orders status: $(k get topic orders -o jsonpath='{.status}')"
fi
wide_reason() { [ "$(k get topic wide -o jsonpath='{.status.conditions[?(@.type=="Ready")].reason}')" = InvalidReplicationFactor ]; }
if until_true 60 wide_reason; then ok "RF 4 on 3 brokers: InvalidReplicationFactor"; else fail "wide: $(k get topic wide -o jsonpath='{.status.conditions}')"; fi
k delete topic wide --wait=true --timeout=60s >/dev/null || true
on_broker() { kcat -b "$bootstrap" -L -t "$1" -m 5 2>/dev/null | grep -q "topic \"$1\" with [1-9][0-9]* partitions"; }
if until_true 60 on_broker orders; then ok "topic orders exists on the brokers"; else fail "orders not on the brokers"; fi
isr_full() { # every partition of $1 lists 3 in-sync replicas
    local md; md="$(kcat -b "$bootstrap" -L -t "$1" -m 5 2>/dev/null)"
    [ "$(echo "$md" | grep -c 'isrs: [0-9]*,[0-9]*,[0-9]*$')" = 3 ]
}
if until_true 60 isr_full orders; then ok "orders: 3 in-sync replicas per partition"; else fail "ISR: $(kcat -b "$bootstrap" -L -t orders 2>&1 | tail -4)"; fi

# 3. produce with acks=all and consume, also across the loss of a broker pod
seq 1 300 | sed 's/^/r/' | kcat -b "$bootstrap" -P -t orders -p 0 -X acks=all -m 30
count() { kcat -b "$bootstrap" -C -t orders -p 0 -o beginning -e -q -m 30 2>/dev/null | grep -c '^r'; }
if [ "$(count)" = 300 ]; then ok "produce (acks=all) / consume through bootstrapServers"; else fail "consumed $(count) of 300"; fi
old_uid="$(k get pod demo-1 -o jsonpath='{.metadata.uid}')"
k delete pod demo-1 --wait=false >/dev/null
seq 301 600 | sed 's/^/r/' | kcat -b "$bootstrap" -P -t orders -p 0 -X acks=all -X message.timeout.ms=120000 -m 150 \
    && ok "acks=all writes succeed while a broker pod restarts" || fail "produce during the pod restart"
# the replacement pod (another UID) Ready, then broker 1 back in every ISR (only an unfenced
# broker rejoins an ISR, so this also waits for the controller to count it alive again)
replaced() {
    local uid; uid="$(k get pod demo-1 -o jsonpath='{.metadata.uid}' 2>/dev/null)"
    [ -n "$uid" ] && [ "$uid" != "$old_uid" ] && k wait --for=condition=Ready pod/demo-1 --timeout=5s
}
if until_true 180 replaced && until_true 120 isr_full orders; then
    ok "the restarted broker is back in every ISR"
else
    fail "after the pod restart: $(k get mc demo -o jsonpath='{.status.conditions}') $(kcat -b "$bootstrap" -L -t orders 2>&1 | tail -4)"
fi
if [ "$(count)" = 600 ]; then ok "every acknowledged record is readable after the restart"; else fail "consumed $(count) of 600"; fi

# replication factor change: audit 1 -> 3, reassignment completes
k patch topic audit --type merge -p '{"spec":{"replicationFactor":3}}' >/dev/null
rf3() { [ "$(k get topic audit -o jsonpath='{.status.replicationFactor}/{.status.underReplicatedPartitions}')" = 3/0 ] && isr_full audit; }
if until_true 120 rf3; then ok "audit: replication factor 1 -> 3, all replicas in sync"; else fail "audit status: $(k get topic audit -o jsonpath='{.status}')"; fi

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
if until_true 60 sh -c "'$bin/kubectl' -n '$ns' get events --field-selector reason=DriftRepaired -o name | grep -q ."; then
    ok "DriftRepaired event"
else
    fail "no DriftRepaired event"
fi

# 5. the operator restarted in the middle of a reconcile converges
opns=tideway-system
op() { "$bin/kubectl" -n "$opns" "$@"; }
topic late Delete 3 2
op delete pod -l app.kubernetes.io/name=tideway-operator --wait=false >/dev/null
if k wait --for=condition=Ready topic/late --timeout=180s >/dev/null && until_true 60 on_broker late; then
    ok "operator restarted mid-reconcile: topic late converges"
else
    fail "late: $(k get topic late -o jsonpath='{.status.conditions}')"
fi

# 6. two operator replicas: one Lease holder, the other never reconciles
op scale deployment -l app.kubernetes.io/name=tideway-operator --replicas=2 >/dev/null
two_running() { [ "$(op get pods -l app.kubernetes.io/name=tideway-operator --field-selector=status.phase=Running -o name | wc -l)" = 2 ]; }
reconciles() { curl -fsS "http://$1:8080/metrics" 2>/dev/null | awk '/^tideway_operator_reconciles_total/ {s += $2} END {print s + 0}'; }
if until_true 120 two_running; then
    k patch topic late --type merge -p '{"spec":{"config":{"retention.ms":"7200000"}}}' >/dev/null
    retention_applied() { kcat -b "$bootstrap" -L -t late >/dev/null 2>&1 && [ "$(k get topic late -o jsonpath='{.status.observedGeneration}')" = "$(k get topic late -o jsonpath='{.metadata.generation}')" ]; }
    until_true 60 retention_applied || true
    holder="$(op get lease tideway-operator -o jsonpath='{.spec.holderIdentity}')"
    acting=0
    for ip in $(op get pods -l app.kubernetes.io/name=tideway-operator -o jsonpath='{.items[*].status.podIP}'); do
        [ "$(reconciles "$ip")" -gt 0 ] && acting=$((acting + 1))
    done
    if [ -n "$holder" ] && [ "$acting" = 1 ]; then
        ok "two operator replicas: one holds the Lease ($holder) and only one reconciles"
    else
        fail "two operator replicas: holder '$holder', replicas reconciling: $acting"
    fi
else
    fail "the second operator replica did not start"
fi
op scale deployment -l app.kubernetes.io/name=tideway-operator --replicas=1 >/dev/null

# 7. Delete vs Retain
k delete topic late --wait=true --timeout=60s >/dev/null || true
k delete topic orders --wait=true --timeout=60s >/dev/null
if until_true 60 gone; then ok "deletionPolicy Delete removed the Kafka topic"; else fail "orders still on the broker"; fi
k delete topic audit --wait=true --timeout=60s >/dev/null
if on_broker audit; then ok "deletionPolicy Retain kept the Kafka topic"; else fail "audit deleted despite Retain"; fi

# 8-10. rolling restarts and scaling with clients running (issue 14)
bootstrap="$(k get mc demo -o jsonpath='{.status.bootstrapServers}')"
# shellcheck source=tests/e2e/operator/roll.sh
. "$root/tests/e2e/operator/roll.sh"

# 11. consumer autoscaling on lag (issue 15)
# shellcheck source=tests/e2e/operator/autoscale.sh
. "$root/tests/e2e/operator/autoscale.sh"

# 12. mirror policies (issue 16; mode All across the scaling is in roll.sh)
# shellcheck source=tests/e2e/operator/mirror.sh
. "$root/tests/e2e/operator/mirror.sh"

echo "e2e-operator: $passed passed, $failed failed"
[ "$failed" = 0 ]
