# Consumer autoscaling on lag (issue 15), sourced by tests/e2e/operator/e2e.sh after roll.sh:
# it uses e2e.sh's helpers (k, ok, fail, until_true) and its three-broker MessageCluster demo.
#   11a. a 6-partition topic with a backlog of 200,000 records; a consumer Deployment at 0
#        replicas (`tideway consume` from the broker image, bounded rate, commits after
#        processing); a ConsumerAutoscaler min 0, max 10, lagPerReplica 10,000: it scales
#        0 -> 6 (capped at the partitions, ScalingLimited), the backlog drains to lag 0,
#        every record was consumed (the group's commits reach every high watermark), and
#        the workload goes back to 0 after its stabilization window and cooldown;
#   11b. a group that never committed, with offsetResetPolicy Latest, is not scaled up; an
#        HPA on its workload makes the ConsumerAutoscaler refuse (HpaConflict);
#   11c. a new backlog scales it up again; once drained, the MessageCluster rolls: no
#        scale-down while it rolls (ScaleDownFrozen), to 0 once it is done;
#   11d. a new backlog scales it up again; deleting the ConsumerAutoscaler then leaves the
#        Deployment's replicas as they are.
cli="${TIDEWAY_CLI_BIN:-$root/target/release/tideway}"
[ -x "$cli" ] || { fail "autoscale: no tideway CLI at $cli (cargo build --release -p tideway-cli)"; return 0; }
bootstrap="$(k get mc demo -o jsonpath='{.status.bootstrapServers}')"
in_cluster_bootstrap="demo-brokers.$ns.svc.cluster.local:9092"
# group names of this run only (a kept cluster still has the commits of an earlier run)
run_id="$(date +%s)"
group="backlog-workers-$run_id"
idle_group="never-committed-$run_id"
cas() { k get consumerautoscaler "$1" -o jsonpath="{.status.$2}"; }
cas_condition() { k get consumerautoscaler "$1" -o jsonpath="{.status.conditions[?(@.type==\"$2\")].$3}"; }
replicas_of() { k get deployment "$1" -o jsonpath='{.spec.replicas}'; }
ready_of() { local r; r="$(k get deployment "$1" -o jsonpath='{.status.readyReplicas}')"; echo "${r:-0}"; }

k apply -f - >/dev/null <<Y
apiVersion: tideway.dev/v1alpha1
kind: Topic
metadata: {name: backlog}
spec: {clusterRef: {name: demo}, partitions: 6, replicationFactor: 3, minInSyncReplicas: 2, deletionPolicy: Delete}
Y
k wait --for=condition=Ready topic/backlog --timeout=120s >/dev/null || fail "topic backlog not Ready"
if "$cli" produce --bootstrap "$bootstrap" --topic backlog --count 200000 --size 100 >"$work/produce.log" 2>&1; then
    ok "backlog: 200000 records produced to 6 partitions ($(tail -1 "$work/produce.log"))"
else
    fail "produce: $(tail -5 "$work/produce.log")"
fi

consumer() { # consumer <deployment> <group> <from>
    k apply -f - >/dev/null <<Y
apiVersion: apps/v1
kind: Deployment
metadata: {name: $1}
spec:
  replicas: 0
  selector: {matchLabels: {app: $1}}
  template:
    metadata: {labels: {app: $1}}
    spec:
      terminationGracePeriodSeconds: 30
      containers:
        - name: consume
          image: tideway-broker:0.1.0
          imagePullPolicy: IfNotPresent
          command: [/usr/local/bin/tideway, consume, --bootstrap, "$in_cluster_bootstrap",
                    --group, $2, --topic, backlog, --max-rate, "2000", --from, $3]
Y
}
autoscaler() { # autoscaler <name> <deployment> <group> <policy>
    k apply -f - >/dev/null <<Y
apiVersion: tideway.dev/v1alpha1
kind: ConsumerAutoscaler
metadata: {name: $1}
spec:
  clusterRef: {name: demo}
  consumerGroup: $3
  topics: [backlog]
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: $2}
  minReplicas: 0
  maxReplicas: 10
  lagPerReplica: 10000
  offsetResetPolicy: $4
  behavior:
    scaleDown: {stabilizationWindowSeconds: 15}
    cooldownSeconds: 20
Y
}
consumer backlog-workers "$group" earliest
consumer idle-workers "$idle_group" latest

# 11a. 0 -> 6, drained, back to 0
t0=$SECONDS
autoscaler backlog backlog-workers "$group" Earliest
autoscaler idle idle-workers "$idle_group" Latest
first_ready() { [ "$(ready_of backlog-workers)" -ge 1 ]; }
if until_true 180 first_ready; then
    first_ready_s=$((SECONDS - t0))
    ok "a consumer was Ready ${first_ready_s} s after the ConsumerAutoscaler was created on the backlog"
else
    fail "no consumer Ready: $(k get consumerautoscaler backlog -o jsonpath='{.status}')"
fi
six() { [ "$(replicas_of backlog-workers)" = 6 ]; }
if until_true 120 six && [ "$(cas_condition backlog ScalingLimited reason)" = PartitionCount ]; then
    ok "scaled to 6 (the partition count, not maxReplicas 10): $(cas_condition backlog ScalingLimited message)"
else
    fail "not 6: replicas $(replicas_of backlog-workers), $(k get consumerautoscaler backlog -o jsonpath='{.status}')"
fi
max_seen=0
lag_is_zero() { # lag_is_zero: the autoscaler read 0, and no replica count above 6 was ever asked
    local r; r="$(replicas_of backlog-workers)"; [ "${r:-0}" -gt "$max_seen" ] && max_seen="$r"
    [ "$(cas backlog totalLag)" = 0 ]
}
if until_true 600 lag_is_zero; then
    lag_zero_at=$SECONDS
    ok "the backlog drained: lag 0 (most replicas seen: $max_seen)"
else
    fail "lag did not reach 0: $(k get consumerautoscaler backlog -o jsonpath='{.status}')"
fi
[ "$max_seen" -le 6 ] || fail "scaled beyond the partitions: $max_seen"
committed_all() { fresh_bootstrap; "$python" "$root/tests/e2e/operator/workload.py" group-caught-up --bootstrap "$bootstrap" --topic backlog --group "$group"; }
if committed_all >"$work/caught-up.log" 2>&1; then
    ok "every record consumed: $(tail -1 "$work/caught-up.log")"
else
    fail "commits after draining: $(tail -3 "$work/caught-up.log")"
fi
at_zero() { [ "$(replicas_of backlog-workers)" = 0 ]; }
if until_true 300 at_zero; then
    zero_after_s=$((SECONDS - lag_zero_at))
    ok "back to 0 replicas ${zero_after_s} s after lag 0 (stabilization 15 s, cooldown 20 s)"
else
    fail "not back to 0: $(k get consumerautoscaler backlog -o jsonpath='{.status}')"
fi
scaled_events="$(events Scaled ConsumerAutoscaler backlog)"
if [ "$scaled_events" -ge 2 ] && [ -n "$(cas backlog lastScaleReason)" ]; then
    ok "Scaled events ($scaled_events); status.lastScaleReason: $(cas backlog lastScaleReason)"
else
    fail "Scaled events: $scaled_events, lastScaleReason '$(cas backlog lastScaleReason)'"
fi

# 11b.
if [ "$(cas idle totalLag)" = 0 ] && [ "$(cas_condition idle Ready status)" = True ] && [ "$(replicas_of idle-workers)" = 0 ]; then
    ok "a group that never committed, offsetResetPolicy Latest: lag 0, not scaled up"
else
    fail "idle group: replicas $(replicas_of idle-workers), $(k get consumerautoscaler idle -o jsonpath='{.status}')"
fi

# an HPA on the same workload: refused, nothing written; gone again: back to normal
k apply -f - >/dev/null <<Y
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: idle-workers}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: idle-workers}
  minReplicas: 1
  maxReplicas: 2
  metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}}]
Y
hpa_refused() { [ "$(cas_condition idle Ready reason)" = HpaConflict ]; }
if until_true 60 hpa_refused; then
    ok "an HPA on the same workload: $(cas_condition idle Ready message)"
else
    fail "no HpaConflict: $(k get consumerautoscaler idle -o jsonpath='{.status.conditions}')"
fi
k delete hpa idle-workers --wait=true >/dev/null
lag_read() { [ "$(cas_condition idle Ready reason)" = LagRead ]; }
until_true 60 lag_read || fail "idle autoscaler not back to LagRead after the HPA went: $(cas_condition idle Ready message)"

# 11c. 30,000 more: up again; drained; a roll starts before the 15 s window can pass
# the host reaches the brokers by pod IP: read the addresses again after a roll
fresh_bootstrap() { bootstrap="$(k get mc demo -o jsonpath='{.status.bootstrapServers}')"; }
more() { fresh_bootstrap; "$cli" produce --bootstrap "$bootstrap" --topic backlog --count 30000 --size 100 >"$work/produce-more.log" 2>&1 || fail "produce 30000: $(tail -3 "$work/produce-more.log")"; }
# a longer window and cooldown for this part, so that the drained workload is still up when
# the roll begins (a scale-down then stays due, and withheld, for the whole roll)
behavior() { k patch consumerautoscaler backlog --type merge -p "{\"spec\":{\"behavior\":{\"scaleDown\":{\"stabilizationWindowSeconds\":$1},\"cooldownSeconds\":$2}}}" >/dev/null; }
behavior 60 120
more
scaled_up() { [ "$(replicas_of backlog-workers)" -ge 1 ]; }
if until_true 120 scaled_up && until_true 600 lag_is_zero; then
    k annotate mc demo "tideway.dev/restart=e2e-autoscale-$run_id" --overwrite >/dev/null
    up_to="$(replicas_of backlog-workers)"
    rolling_now() { local p; p="$(k get mc demo -o jsonpath='{.status.rollout.phase}')"; [ -n "$p" ] && [ "$p" != Done ]; }
    until_true 60 rolling_now || fail "the roll for 11c did not start"
    frozen_seen=0; shrank_while_rolling=0
    watch_roll() {
        # ScaleDownFrozen with "not scaling down": a smaller count was due and withheld
        if [ "$(cas_condition backlog Ready reason)" = ScaleDownFrozen ] \
            && cas_condition backlog Ready message | grep -q 'not scaling down'; then frozen_seen=1; fi
        if rolling_now && [ "$(replicas_of backlog-workers)" -lt "$up_to" ]; then shrank_while_rolling=1; fi
        ! rolling_now
    }
    if until_true 600 watch_roll && [ "$frozen_seen" = 1 ] && [ "$shrank_while_rolling" = 0 ]; then
        ok "while the MessageCluster rolled, the drained workload kept its $up_to replicas although fewer were due (ScaleDownFrozen)"
    else
        fail "during the roll: frozen seen $frozen_seen, shrank $shrank_while_rolling, $(k get consumerautoscaler backlog -o jsonpath='{.status}')"
    fi
    behavior 15 20
    if until_true 300 at_zero; then ok "after the roll: scaled to 0"; else fail "not 0 after the roll: $(k get consumerautoscaler backlog -o jsonpath='{.status}')"; fi
else
    fail "the second backlog: $(k get consumerautoscaler backlog -o jsonpath='{.status}')"
fi

# 11d. 30,000 more: up again; the ConsumerAutoscaler deleted: the replicas stay
more
if until_true 120 scaled_up; then
    k delete consumerautoscaler backlog --wait=true --timeout=60s >/dev/null
    kept="$(replicas_of backlog-workers)"
    if until_true 300 committed_all && [ "$(replicas_of backlog-workers)" = "$kept" ] \
        && [ -z "$(k get deployment backlog-workers -o jsonpath='{.metadata.ownerReferences}')" ]; then
        ok "ConsumerAutoscaler deleted: the Deployment kept its $kept replicas after the lag was gone"
    else
        fail "after deleting the ConsumerAutoscaler: replicas $(replicas_of backlog-workers), were $kept"
    fi
else
    fail "the third backlog did not scale up"
fi
echo "autoscale: first consumer Ready ${first_ready_s:-?} s after the backlog; 0 replicas ${zero_after_s:-?} s after lag 0"
k delete consumerautoscaler idle --wait=true --timeout=60s >/dev/null || true
k delete deployment backlog-workers idle-workers --wait=true --timeout=120s >/dev/null || true
k delete topic backlog --wait=true --timeout=60s >/dev/null || true
