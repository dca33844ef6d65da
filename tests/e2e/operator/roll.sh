# Rolling restarts by the operator (issue 14), sourced by tests/e2e/operator/e2e.sh at its end:
# it uses e2e.sh's helpers (k, op, ok, fail, until_true, topic settings) and its three-broker
# MessageCluster demo. A keyed, idempotent, acks=all producer and a consumer group that commits
# after processing (workload.py) run from the host for the whole section, through:
#   9a. the restart annotation on the MessageCluster, with the operator pod deleted mid-roll;
#   9b. a broker default (retentionMs) and the log level applied at runtime with no restart,
#       then spec.rack,
#       which rolls and gives each broker its node's zone as rack;
#   9c. an image that crash-loops: the roll halts after the first broker; a working image resumes it;
#   9d. a roll blocked by a frozen follower (its container paused through the test cluster's own
#       containerd): nothing restarts, status names the partitions, and it goes on once thawed;
#   9e. scaling 3 -> 4 (no broker restarts) -> 3: refused while a topic needs four brokers,
#       then broker 3's replicas move away, it leaves, its volume claim is deleted.
# Then the topic is read back: every acknowledged record exactly once in per-key order, committed
# offsets never went back, no producer error reached the application. Timings and duplicate
# counts are printed for docs/operations.md.
# shellcheck shell=bash

sock="$root/target/test-cluster/run/containerd.sock"
ctr_() { ctr --address "$sock" --namespace k8s.io "$@"; }
work="$root/target/test-cluster/roll-workload"
rm -rf "$work" && mkdir -p "$work"

pod_uid() { k get pod "$1" -o jsonpath='{.metadata.uid}' 2>/dev/null; }
target_rev() { k get statefulset demo -o jsonpath='{.spec.template.metadata.annotations.tideway\.dev/pod-template-hash}'; }
rollout() { k get mc demo -o jsonpath="{.status.rollout.$1}"; }
# every pod on the StatefulSet's revision, Ready, and the roll Done for that revision
roll_done() {
    local want; want="$(target_rev)"
    [ -n "$want" ] && [ "$(rollout phase)" = Done ] && [ "$(rollout targetRevision)" = "$want" ] \
        && [ "$(k get pods -l app.kubernetes.io/instance=demo -o jsonpath='{range .items[*]}{.metadata.annotations.tideway\.dev/pod-template-hash}{"\n"}{end}' | grep -c "^$want$")" = 3 ] \
        && [ "$(k get mc demo -o jsonpath='{.status.readyBrokers}')" = 3 ]
}
rolling() { local p; p="$(rollout phase)"; [ -n "$p" ] && [ "$p" != Done ]; }
# events <reason> [kind name]: occurrences of Events with that reason on an object, by default
# MessageCluster demo (a repeated Event is one object with series.count, so a restart recorded
# twice counts twice)
events() {
    k get events.v1.events.k8s.io -o json | "$python" -c '
import json, sys
items = json.load(sys.stdin)["items"]
print(sum((e.get("series") or {}).get("count", 1) for e in items
          if e["reason"] == sys.argv[1] and e["regarding"].get("name") == sys.argv[3]
          and e["regarding"].get("kind") == sys.argv[2]))' "$1" "${2:-MessageCluster}" "${3:-demo}"
}
# restarts_of_each <before uids...>: every broker pod now has another uid than before
all_replaced() {
    local i=0 u
    for u in "$@"; do [ "$(pod_uid "demo-$i")" != "$u" ] || return 1; i=$((i + 1)); done
}

# pod watcher: records every uid each broker pod had, to prove none restarted twice in a roll
uid_log="$work/uids"
( while [ ! -f "$work/stop" ]; do
    k get pods -l app.kubernetes.io/instance=demo -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.uid}{"\n"}{end}' 2>/dev/null
    sleep 1
  done >>"$uid_log" ) &
watcher=$!
# mark <name> <start seconds>: a section for the per-section produce stall in the report
mark() { echo "$1 $2 $(date +%s.%N)" >>"$work/sections"; }
distinct_uids() { sort -u "$uid_log" | awk -v p="$1" '$1 == p' | wc -l; }

# 9. a topic and the workload
k apply -f - >/dev/null <<Y
apiVersion: tideway.dev/v1alpha1
kind: Topic
metadata: {name: rolling}
spec:
  clusterRef: {name: demo}
  partitions: 6
  replicationFactor: 3
  minInSyncReplicas: 2
  deletionPolicy: Delete
Y
rolling_isr_full() { [ "$(kcat -b "$bootstrap" -L -t rolling -m 5 2>/dev/null | grep -c 'isrs: [0-9]*,[0-9]*,[0-9]*$')" = 6 ]; }
if k wait --for=condition=Ready topic/rolling --timeout=120s >/dev/null && until_true 120 rolling_isr_full; then
    ok "topic rolling: 6 partitions, RF 3, min-ISR 2, all in sync"
else
    fail "topic rolling: $(k get topic rolling -o jsonpath='{.status}')"
fi
"$python" -X faulthandler "$root/tests/e2e/operator/workload.py" run --bootstrap "$bootstrap" --topic rolling \
    --group rolling-consumers --out "$work" >"$work/run.log" 2>&1 &
workload=$!
flowing() { # acked and consumed both past $1
    local a c e; read -r a c e <"$work/progress" || return 1
    [ "$a" -gt "$1" ] && [ "$c" -gt "$1" ]
}
if until_true 120 flowing 200; then ok "workload: producing and consuming"; else fail "workload did not start: $(cat "$work/run.log")"; fi
acked_now() { local a c e; read -r a c e <"$work/progress"; echo "$a"; }

# 9a. the restart annotation, and the operator deleted in the middle of the roll
before=("$(pod_uid demo-0)" "$(pod_uid demo-1)" "$(pod_uid demo-2)")
: >"$uid_log"
t0=$SECONDS; w0="$(date +%s.%N)"
k annotate mc demo tideway.dev/restart=e2e-1 --overwrite >/dev/null
if until_true 60 rolling; then ok "annotation: the roll started (phase $(rollout phase))"; else fail "annotation: no roll: $(k get mc demo -o jsonpath='{.status.rollout}')"; fi
one_updated() { [ -n "$(rollout updatedBrokers | tr -d '[]')" ]; }
if until_true 300 one_updated; then
    op delete pod -l app.kubernetes.io/name=tideway-operator --wait=false >/dev/null
    ok "first broker updated ($(rollout updatedBrokers)); operator pod deleted mid-roll"
else
    fail "no broker updated: $(k get mc demo -o jsonpath='{.status.rollout}')"
fi
if until_true 600 roll_done && all_replaced "${before[@]}"; then
    ok "annotation roll done in $((SECONDS - t0)) s: every broker restarted, acked so far $(acked_now)"
else
    fail "annotation roll: $(k get mc demo -o jsonpath='{.status.rollout}') $(k get pods -o wide)"
fi
mark annotation-roll "$w0"
twice=0
for i in 0 1 2; do [ "$(distinct_uids "demo-$i")" = 2 ] || twice=$((twice + 1)); done
if [ "$twice" = 0 ]; then ok "no broker restarted twice across the operator restart"; else fail "pods with other than 2 uids: $(sort -u "$uid_log")"; fi
if [ "$(events ManualRestart)" = 3 ]; then ok "ManualRestart events: $(events ManualRestart)"; else fail "ManualRestart events: $(events ManualRestart)"; fi
progressing_reason() { k get mc demo -o jsonpath='{.status.conditions[?(@.type=="Progressing")].reason}'; }

# 9b. a broker default changes at runtime and restarts nothing; a pod template change rolls
bootstrap="$(k get mc demo -o jsonpath='{.status.bootstrapServers}')"   # new pod IPs
before=("$(pod_uid demo-0)" "$(pod_uid demo-1)" "$(pod_uid demo-2)")
k patch mc demo --type merge -p '{"spec":{"config":{"retentionMs":172800000},"logLevel":"info,tideway_broker::admin=debug"}}' >/dev/null
retention_applied() { [ "$("$python" "$root/tests/e2e/operator/workload.py" topic-config --bootstrap "$bootstrap" --topic rolling --config retention.ms 2>/dev/null)" = 172800000 ]; }
if until_true 60 retention_applied && [ "$(events ConfigApplied)" -ge 1 ]; then
    unchanged=0
    for i in 0 1 2; do [ "$(pod_uid "demo-$i")" = "${before[$i]}" ] && unchanged=$((unchanged + 1)); done
    log_filter_set() { [ "$(events LogLevelApplied)" -ge 1 ] && k logs demo-0 | grep -q 'log filter changed.*tideway_broker::admin=debug'; }
    if [ "$unchanged" = 3 ] && [ "$(rollout phase)" = Done ] && until_true 60 log_filter_set; then
        ok "retentionMs and logLevel reached the running brokers (topic rolling: retention.ms 172800000; demo-0 logged its new filter) with no restart"
    else
        fail "retention change restarted $((3 - unchanged)) brokers, rollout $(rollout phase)"
    fi
else
    fail "retention not applied: $("$python" "$root/tests/e2e/operator/workload.py" topic-config --bootstrap "$bootstrap" --topic rolling --config retention.ms 2>&1 | tail -2), ConfigApplied events $(events ConfigApplied)"
fi
# spec.rack changes the pod template (spread constraint, the node's rack file): it rolls,
# and each broker comes back registered with its node's zone label as its rack
node="$("$bin/kubectl" get nodes -o jsonpath='{.items[0].metadata.name}')"
"$bin/kubectl" label node "$node" topology.kubernetes.io/zone=e2e-zone-a --overwrite >/dev/null
t0=$SECONDS; w0="$(date +%s.%N)"
k patch mc demo --type merge -p '{"spec":{"rack":{"topologyKey":"topology.kubernetes.io/zone"}}}' >/dev/null
racks_known() { [ "$(k get mc demo -o jsonpath='{.status.brokers[*].rack}')" = "e2e-zone-a e2e-zone-a e2e-zone-a" ]; }
if until_true 60 rolling && until_true 600 roll_done && all_replaced "${before[@]}" && [ "$(events TemplateChanged)" = 3 ]; then
    ok "spec.rack rolled every broker in $((SECONDS - t0)) s (3 TemplateChanged events)"
else
    fail "template roll: $(events TemplateChanged) TemplateChanged events; $(k get mc demo -o jsonpath='{.status.rollout}')"
fi
mark template-roll "$w0"
if until_true 60 racks_known; then
    ok "every broker registered rack e2e-zone-a, its node's topology.kubernetes.io/zone"
else
    fail "racks: $(k get mc demo -o jsonpath='{.status.brokers}')"
fi

# 9c. a crash-looping image halts the roll after one broker; a working one resumes it
ctr_ images tag --force docker.io/library/tideway-toolbox:0.1.0 docker.io/library/tideway-broker:e2e-crashloop >/dev/null
ctr_ images tag --force docker.io/library/tideway-broker:0.1.0 docker.io/library/tideway-broker:e2e-b >/dev/null
before=("$(pod_uid demo-0)" "$(pod_uid demo-1)" "$(pod_uid demo-2)")
t0=$SECONDS; w0="$(date +%s.%N)"
k patch mc demo --type merge -p '{"spec":{"image":"tideway-broker:e2e-crashloop"}}' >/dev/null
halted() { [ "$(rollout phase)" = Halted ] && [ "$(progressing_reason)" = RollHalted ]; }
if until_true 300 halted; then
    replaced=0
    for i in 0 1 2; do [ "$(pod_uid "demo-$i")" = "${before[$i]}" ] || replaced=$((replaced + 1)); done
    if [ "$replaced" = 1 ]; then ok "crash-looping image: the roll halted after one broker ($(rollout message))"; else fail "crash loop: $replaced pods replaced"; fi
else
    fail "no halt: $(k get mc demo -o jsonpath='{.status.rollout}')"
fi
t0=$SECONDS
k patch mc demo --type merge -p '{"spec":{"image":"tideway-broker:e2e-b"}}' >/dev/null
on_image_b() { [ "$(k get pods -l app.kubernetes.io/instance=demo -o jsonpath='{range .items[*]}{.spec.containers[0].image}{"\n"}{end}' | grep -c ':e2e-b$')" = 3 ]; }
# broker 1 (crash-looping, now outdated and not Ready) goes first as PodStuck; 0 and 2 follow
if until_true 600 roll_done && on_image_b && [ "$(events PodStuck)" = 1 ] && [ "$(events ImageChanged)" = 3 ]; then
    ok "fixed image: the roll resumed and finished in $((SECONDS - t0)) s ($(events ImageChanged) ImageChanged, $(events PodStuck) PodStuck events)"
else
    fail "image roll: $(events ImageChanged) ImageChanged, $(events PodStuck) PodStuck events; $(k get mc demo -o jsonpath='{.status.rollout}') $(k get pods -o wide)"
fi
mark crashloop-and-image-roll "$w0"

# 9d. blocked: broker 2 frozen, a restart of broker 0 asked; nothing restarts until 2 is back
cid="$(k get pod demo-2 -o jsonpath='{.status.containerStatuses[0].containerID}')"
cid="${cid#containerd://}"
before0="$(pod_uid demo-0)"
w0="$(date +%s.%N)"
ctr_ task pause "$cid"
# Frozen for longer than the readiness probe allows (3 x 5 s): by then the controller has
# fenced broker 2 (9 s without heartbeats) and the ISRs it was in have shrunk to min-ISR.
# The kubelet's liveness probe would restart it after about a minute: everything below
# that depends on the freeze happens well before.
demo2_unready() { [ "$(k get pod demo-2 -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = False ]; }
until_true 40 demo2_unready || true
k annotate pod demo-0 tideway.dev/restart=e2e-blocked --overwrite >/dev/null
blocked_on_partitions() { [ "$(rollout phase)" = Blocked ] && rollout blockedBy | grep -q 'rolling-[0-5]'; }
if until_true 30 blocked_on_partitions; then
    blocked_by="$(rollout blockedBy)"
    ctr_ task resume "$cid"
    if [ "$(pod_uid demo-0)" = "$before0" ]; then ok "blocked roll restarted nothing; blockedBy $blocked_by"; else fail "broker 0 restarted while blocked"; fi
else
    ctr_ task resume "$cid" || true
    fail "not blocked: $(k get mc demo -o jsonpath='{.status.rollout}')"
fi
if until_true 600 roll_done && [ "$(pod_uid demo-0)" != "$before0" ]; then
    ok "once broker 2 was back the blocked roll went on and restarted broker 0"
else
    fail "after the block: $(k get mc demo -o jsonpath='{.status.rollout}')"
fi
mark frozen-follower-and-blocked-roll "$w0"

# 9e. with the workload still running: scaling up adds a broker that joins the quorum and
# restarts no other; scaling down is refused while a topic needs four brokers, then moves
# broker 3's replicas away before removing it
bootstrap="$(k get mc demo -o jsonpath='{.status.bootstrapServers}')"
w0="$(date +%s.%N)"
broker_pods() { k get pods -l app.kubernetes.io/instance=demo -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.uid}{"\n"}{end}'; }
pods_before="$(broker_pods)"
restart_events_before="$(( $(events ManualRestart) + $(events PodStuck) + $(events ImageChanged) + $(events ConfigChanged) + $(events TemplateChanged) ))"
# a MirrorPolicy with mode All over the topic mirrored (issue 16): it follows the broker count
k apply -f - >/dev/null <<Y
apiVersion: tideway.dev/v1alpha1
kind: MirrorPolicy
metadata: {name: everywhere}
spec:
  clusterRef: {name: demo}
  match: {topics: [{type: Literal, value: mirrored}]}
  replicas: {mode: All}
  minInSyncReplicas: 2
  onExisting: Reconcile
---
apiVersion: tideway.dev/v1alpha1
kind: Topic
metadata: {name: mirrored}
spec: {clusterRef: {name: demo}, partitions: 2, deletionPolicy: Delete}
Y
mirrored_on() { # mirrored_on <brokers>: every partition of mirrored has exactly these replicas, all in sync
    local md; md="$(kcat -b "$bootstrap" -L -t mirrored -m 5 2>/dev/null)"
    [ "$(echo "$md" | grep -c 'partition ')" = 2 ] || return 1
    [ "$(echo "$md" | grep 'partition ' | sed -E 's/.*replicas: ([0-9,]*), isrs: ([0-9,]*).*/\1 \2/' \
        | while read -r r i; do echo "$(echo "$r" | tr , '\n' | sort | tr '\n' ,) $(echo "$i" | tr , '\n' | sort | tr '\n' ,)"; done \
        | sort -u)" = "$1, $1," ]
}
mirror_policy_of() { k get topic mirrored -o jsonpath='{.status.mirrorPolicy}'; }
if k wait --for=condition=Ready mirrorpolicy/everywhere topic/mirrored --timeout=120s >/dev/null && until_true 60 mirrored_on 0,1,2 \
    && [ "$(mirror_policy_of)" = "$ns/everywhere" ]; then
    ok "MirrorPolicy everywhere (mode All): topic mirrored has a replica on each of the 3 brokers, status.mirrorPolicy $ns/everywhere"
else
    fail "mirrored: $(k get mirrorpolicy everywhere -o jsonpath='{.status}') $(k get topic mirrored -o jsonpath='{.status}') $(kcat -b "$bootstrap" -L -t mirrored 2>&1 | tail -3)"
fi
k patch mc demo --type merge -p '{"spec":{"brokers":4}}' >/dev/null
four_ready() {
    [ "$(k get mc demo -o jsonpath='{.status.readyBrokers}')" = 4 ] \
        && [ "$(kcat -b "$bootstrap" -L -m 5 2>/dev/null | grep -c '^  broker ')" = 4 ]
}
if until_true 240 four_ready; then ok "scaled up to 4 brokers: the new one joined the cluster"; else fail "scale up: $(k get mc demo -o jsonpath='{.status}')"; k get pods -o wide || true; fi
# one read of the pods after, compared by name: a broker replaced has another uid
pods_after="$(broker_pods)"
replaced_pods="$(echo "$pods_before" | while read -r name uid; do
    echo "$pods_after" | grep -qx "$name $uid" || echo "$name"; done)"
restart_events="$(( $(events ManualRestart) + $(events PodStuck) + $(events ImageChanged) + $(events ConfigChanged) + $(events TemplateChanged) - restart_events_before ))"
if [ -z "$replaced_pods" ] && [ "$restart_events" = 0 ] && [ "$(rollout phase)" = Done ]; then
    ok "scaling 3 -> 4 restarted none of the 3 brokers (no roll)"
else
    fail "scaling 3 -> 4: replaced [$(echo $replaced_pods)], $restart_events restart events, rollout $(k get mc demo -o jsonpath='{.status.rollout}'); before: $(echo $pods_before); after: $(echo $pods_after); uids seen: $(sort -u "$uid_log" | tr '\n' ' ')"
    k get events --sort-by=.lastTimestamp | tail -25 || true
fi
mirrored_on_four() { mirrored_on 0,1,2,3 && [ "$(k get mirrorpolicy everywhere -o jsonpath='{.status.requiredReplicas}')" = 4 ]; }
if until_true 120 mirrored_on_four; then
    ok "mode All: after scaling to 4 every partition of mirrored has a fourth replica, in sync"
else
    fail "mode All at 4 brokers: $(kcat -b "$bootstrap" -L -t mirrored 2>&1 | tail -3) $(k get mirrorpolicy everywhere -o jsonpath='{.status}')"
fi
topic wide4 Delete 4 2
if k wait --for=condition=Ready topic/wide4 --timeout=120s >/dev/null; then ok "a replication factor 4 topic on 4 brokers is Ready"; else fail "wide4: $(k get topic wide4 -o jsonpath='{.status.conditions}')"; fi
# a topic spread over all four brokers, with records, must survive the scale-down
k apply -f - >/dev/null <<Y
apiVersion: tideway.dev/v1alpha1
kind: Topic
metadata: {name: spread}
spec: {clusterRef: {name: demo}, partitions: 4, replicationFactor: 3, minInSyncReplicas: 2, deletionPolicy: Delete}
Y
on_broker_3() { kcat -b "$bootstrap" -L -t spread -m 5 2>/dev/null | grep -q 'replicas: \([0-9],\)*3'; }
if k wait --for=condition=Ready topic/spread --timeout=120s >/dev/null && until_true 60 on_broker_3; then
    ok "topic spread has replicas on broker 3"
else
    fail "spread: $(kcat -b "$bootstrap" -L -t spread 2>&1 | tail -5)"
fi
seq 1 400 | sed 's/^/s/' | kcat -b "$bootstrap" -P -t spread -X acks=all -X message.timeout.ms=120000
spread_count() { kcat -b "$bootstrap" -C -t spread -o beginning -e -q -m 30 2>/dev/null | grep -c '^s'; }
k patch mc demo --type merge -p '{"spec":{"brokers":3,"claimsOnScaleDown":"Delete"}}' >/dev/null
blocked() { [ "$(k get mc demo -o jsonpath='{.status.conditions[?(@.type=="Progressing")].reason}')" = ScaleDownBlocked ]; }
if until_true 60 blocked && [ "$(k get statefulset demo -o jsonpath='{.spec.replicas}')" = 4 ] \
    && k get mc demo -o jsonpath='{.status.conditions[?(@.type=="Progressing")].message}' | grep -q wide4; then
    ok "scale down refused while topic wide4 needs 4 brokers (ScaleDownBlocked names it; nothing moved)"
else
    fail "scale down: $(k get mc demo -o jsonpath='{.status.conditions}')"
fi

# without wide4, the replicas on broker 3 move to the other brokers first, then it goes
k delete topic wide4 --wait=true --timeout=60s >/dev/null || true
three_again() {
    [ "$(k get statefulset demo -o jsonpath='{.spec.replicas}')" = 3 ] \
        && [ "$(kcat -b "$bootstrap" -L -m 5 2>/dev/null | grep -c '^  broker ')" = 3 ]
}
if until_true 240 three_again; then ok "scaled down to 3: broker 3's replicas moved away, then it left the cluster"; else fail "scale down: $(k get mc demo -o jsonpath='{.status.conditions}') $(kcat -b "$bootstrap" -L -m 5 2>&1 | grep broker)"; fi
spread_moved() {
    local md; md="$(kcat -b "$bootstrap" -L -t spread -m 5 2>/dev/null)"
    [ "$(echo "$md" | grep -c 'isrs: [0-2],[0-2],[0-2]$')" = 4 ] && ! echo "$md" | grep -q 'replicas: \([0-9],\)*3'
}
if until_true 60 spread_moved && [ "$(spread_count)" = 400 ]; then
    ok "spread: RF 3 in sync on brokers 0-2, all 400 records readable"
else
    fail "spread after the scale-down: $(spread_count) records; $(kcat -b "$bootstrap" -L -t spread 2>&1 | tail -5)"
fi
if until_true 60 mirrored_on 0,1,2; then
    ok "mode All: the scale-down dropped mirrored's replicas on broker 3 (3 in sync on brokers 0-2)"
else
    fail "mode All after the scale-down: $(kcat -b "$bootstrap" -L -t mirrored 2>&1 | tail -3)"
fi
# deleting the policy leaves the topic as it is
k delete mirrorpolicy everywhere --wait=true --timeout=60s >/dev/null || true
no_policy() { [ -z "$(mirror_policy_of)" ]; }
if until_true 60 no_policy && mirrored_on 0,1,2 \
    && [ "$("$python" "$root/tests/e2e/operator/workload.py" topic-config --bootstrap "$bootstrap" --topic mirrored --config min.insync.replicas 2>/dev/null)" = 2 ]; then
    ok "MirrorPolicy deleted: mirrored keeps its 3 replicas and min-ISR 2; its Topic names no policy"
else
    fail "after deleting the policy: mirrorPolicy '$(mirror_policy_of)', $(kcat -b "$bootstrap" -L -t mirrored 2>&1 | tail -3)"
fi
k delete topic mirrored --wait=true --timeout=60s >/dev/null || true
claim_gone() { ! k get pvc data-demo-3 >/dev/null 2>&1; }
if until_true 60 claim_gone; then ok "claimsOnScaleDown Delete: broker 3's volume claim was deleted"; else fail "pvc data-demo-3 still there"; fi
k delete topic spread --wait=true --timeout=60s >/dev/null || true

mark scale-3-4-3 "$w0"

# 10. the workload stops; the topic is read back (through the pods' new addresses)
touch "$work/stop"
bootstrap="$(k get mc demo -o jsonpath='{.status.bootstrapServers}')"
kill "$watcher" 2>/dev/null || true
wait "$watcher" 2>/dev/null || true
wait "$workload" 2>/dev/null || true
if report="$("$python" "$root/tests/e2e/operator/workload.py" verify --bootstrap "$bootstrap" --topic rolling --group rolling-consumers --out "$work" 2>&1)"; then
    ok "after the rolls and the scaling: every acknowledged record exactly once, in per-key order; commits never went back; $report"
else
    fail "read back: $report $(tail -5 "$work/run.log")"
fi
k delete topic rolling --wait=true --timeout=60s >/dev/null || true
"$bin/kubectl" label node "$node" topology.kubernetes.io/zone- >/dev/null || true
