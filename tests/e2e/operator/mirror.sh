# Mirror policies (issue 16), sourced by tests/e2e/operator/e2e.sh after autoscale.sh: it
# uses e2e.sh's helpers (k, ok, fail, until_true, $python) and the MessageCluster demo.
# (roll.sh already proved mode All across scaling 3 -> 4 -> 3 and that deleting a policy
# leaves its topic as it is.)
#   12a. a MirrorPolicy orders (Prefix "orders.", Exactly 3, min-ISR 2, Reject) becomes
#        Ready; a Kafka client's CreateTopics of orders.x with RF 1 fails with
#        POLICY_VIOLATION naming the policy;
#   12b. a Topic resource orders.bad asking for RF 1 is Ready=False PolicyViolation with the
#        brokers' message, never silently overridden; a Topic orders.good that leaves RF
#        and min-ISR unset gets the policy's (RF 3, min-ISR 2) and names its policy;
#   12c. onCreate Adjust: the same CreateTopics creates orders.y with RF 3 and min-ISR 2;
#   12d. deleting the policy lets orders.bad be created with RF 1.
bootstrap="$(k get mc demo -o jsonpath='{.status.bootstrapServers}')"
mirror_policy() { # mirror_policy <onCreate>
    k apply -f - >/dev/null <<Y
apiVersion: tideway.dev/v1alpha1
kind: MirrorPolicy
metadata: {name: orders}
spec:
  clusterRef: {name: demo}
  match: {topics: [{type: Prefix, value: "orders."}]}
  replicas: {mode: Exactly, count: 3}
  minInSyncReplicas: 2
  onCreate: $1
Y
}
client_create() { "$python" "$root/tests/e2e/operator/workload.py" create-topic --bootstrap "$bootstrap" --topic "$1" --replication-factor 1 2>&1; }
topic_condition() { k get topic "$1" -o jsonpath="{.status.conditions[?(@.type==\"Ready\")].$2}"; }

mirror_policy Reject
if k wait --for=condition=Ready mirrorpolicy/orders --timeout=120s >/dev/null; then
    ok "MirrorPolicy orders Ready"
else
    fail "MirrorPolicy orders: $(k get mirrorpolicy orders -o jsonpath='{.status}')"
fi
answer="$(client_create orders.x)"
if [[ "$answer" == POLICY_VIOLATION\ 44:*"$ns/orders"* ]]; then
    ok "a client's CreateTopics of orders.x with RF 1: $answer"
else
    fail "CreateTopics orders.x under Reject: $answer"
fi

k apply -f - >/dev/null <<Y
apiVersion: tideway.dev/v1alpha1
kind: Topic
metadata: {name: orders-bad}
spec: {clusterRef: {name: demo}, topicName: orders.bad, partitions: 1, replicationFactor: 1, minInSyncReplicas: 1}
---
apiVersion: tideway.dev/v1alpha1
kind: Topic
metadata: {name: orders-good}
spec: {clusterRef: {name: demo}, topicName: orders.good, partitions: 2}
Y
violation() { [ "$(topic_condition orders-bad reason)" = PolicyViolation ] && topic_condition orders-bad message | grep -q "$ns/orders"; }
if until_true 90 violation; then
    ok "Topic orders.bad (RF 1) is Ready=False PolicyViolation: $(topic_condition orders-bad message)"
else
    fail "orders-bad: $(k get topic orders-bad -o jsonpath='{.status}')"
fi
good() {
    [ "$(k get topic orders-good -o jsonpath='{.status.replicationFactor}/{.status.minInSyncReplicas}/{.status.mirrorPolicy}')" = "3/2/$ns/orders" ] \
        && [ "$(topic_condition orders-good status)" = True ]
}
if until_true 90 good; then
    ok "Topic orders.good without RF or min-ISR got the policy's: RF 3, min-ISR 2, status.mirrorPolicy $ns/orders"
else
    fail "orders-good: $(k get topic orders-good -o jsonpath='{.status}')"
fi
governed() { [ "$(k get mirrorpolicy orders -o jsonpath='{.status.governedTopicCount}')" = 1 ] \
    && [ "$(k get mirrorpolicy orders -o jsonpath='{.status.conditions[?(@.type=="Compliant")].status}')" = True ]; }
if until_true 60 governed; then
    ok "MirrorPolicy orders status: governs 1 topic, Compliant"
else
    fail "orders status: $(k get mirrorpolicy orders -o jsonpath='{.status}')"
fi

mirror_policy Adjust
adjusted() { [ "$(client_create orders.y)" = created ] || [ "$(client_create orders.y)" = "TOPIC_ALREADY_EXISTS 36: Topic 'orders.y' already exists." ]; }
y_rf() { kcat -b "$bootstrap" -L -t orders.y -m 5 2>/dev/null | grep -c 'replicas: [0-9],[0-9],[0-9],'; }
if until_true 60 adjusted && [ "$(y_rf)" = 1 ] \
    && [ "$("$python" "$root/tests/e2e/operator/workload.py" topic-config --bootstrap "$bootstrap" --topic orders.y --config min.insync.replicas 2>/dev/null)" = 2 ]; then
    ok "onCreate Adjust: the client's CreateTopics of orders.y (RF 1) created it with RF 3 and min-ISR 2"
else
    fail "Adjust: $(client_create orders.y); $(kcat -b "$bootstrap" -L -t orders.y 2>&1 | tail -2)"
fi

k delete mirrorpolicy orders --wait=true --timeout=60s >/dev/null || true
bad_ready() { [ "$(topic_condition orders-bad status)" = True ] && [ "$(k get topic orders-bad -o jsonpath='{.status.replicationFactor}')" = 1 ]; }
if until_true 120 bad_ready; then
    ok "policy deleted: orders.bad is created with RF 1; orders.good keeps RF $(k get topic orders-good -o jsonpath='{.status.replicationFactor}')"
else
    fail "after deleting the policy: $(k get topic orders-bad -o jsonpath='{.status}')"
fi
k delete topic orders-bad orders-good --wait=true --timeout=60s >/dev/null || true
