#!/usr/bin/env bash
# Checks the operator's generated YAML against a real kube-apiserver (no nodes):
#   1. the CRDs install and become Established (structural schema, CEL rules compile);
#   2. `helm template` output and the builders' golden output pass `kubectl apply --dry-run=server`;
#   3. the CEL admission rules reject what they should, with their messages;
#   4. `kubectl get tideway` lists the kinds (category), and their printer columns.
# Starts its own etcd and kube-apiserver on 127.0.0.1 (ports 24790/24800/17443 unless
# TIDEWAY_CHECK_{ETCD,ETCD_PEER,APISERVER}_PORT say otherwise), stops them by PID on exit.
# Binaries: $TIDEWAY_K8S_BIN, else the newest ~/.cache/tideway/k8s-*/bin (tests/cluster/build-binaries.sh).
# Usage: operator/tests/apiserver-check.sh    (from anywhere; needs openssl)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="${TIDEWAY_K8S_BIN:-$(ls -d "${TIDEWAY_CACHE:-$HOME/.cache/tideway}"/k8s-*/bin 2>/dev/null | sort | tail -1)}"
for b in etcd kube-apiserver kubectl helm; do
    [ -x "$bin/$b" ] || { echo "apiserver-check: $b not found in '$bin' (run tests/cluster/build-binaries.sh)"; exit 1; }
done
etcd_port="${TIDEWAY_CHECK_ETCD_PORT:-24790}"
etcd_peer_port="${TIDEWAY_CHECK_ETCD_PEER_PORT:-24800}"
api_port="${TIDEWAY_CHECK_APISERVER_PORT:-17443}"

work="$(mktemp -d -t tideway-apiserver-check.XXXXXX)"
pids=()
cleanup() { # newest first (kube-apiserver before etcd), SIGKILL after 30s
    local i pid
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        pid="${pids[$i]}"
        kill -TERM "$pid" 2>/dev/null || continue
        for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    [ -n "${TIDEWAY_KEEP_STATE:-}" ] && echo "apiserver-check: state kept in $work" || rm -rf "$work"
}
trap cleanup EXIT

openssl genrsa -out "$work/sa.key" 2048 2>/dev/null
openssl rsa -in "$work/sa.key" -pubout -out "$work/sa.pub" 2>/dev/null
token="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
echo "$token,admin,admin,system:masters" > "$work/tokens.csv"

"$bin/etcd" --name check --data-dir "$work/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "check=http://127.0.0.1:$etcd_peer_port" >"$work/etcd.log" 2>&1 &
pids+=($!); disown $!
"$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" --cert-dir "$work/certs" \
    --token-auth-file "$work/tokens.csv" --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$work/sa.pub" \
    --service-account-signing-key-file "$work/sa.key" --service-cluster-ip-range 172.31.252.0/24 \
    --profiling=false >"$work/kube-apiserver.log" 2>&1 &
pids+=($!); disown $!

cat > "$work/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: check, cluster: {server: "https://127.0.0.1:$api_port", insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: "$token"}}]
contexts: [{name: check, context: {cluster: check, user: admin, namespace: default}}]
current-context: check
KC
k() { "$bin/kubectl" --kubeconfig "$work/kubeconfig" "$@"; }

for i in $(seq 1 120); do
    k get --raw /readyz >/dev/null 2>&1 && break
    [ "$i" = 120 ] && { echo "apiserver-check: kube-apiserver not ready in 60s"; tail -20 "$work/kube-apiserver.log"; exit 1; }
    sleep 0.5
done

passed=0; failed=0
ok()   { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
# expect_reject <description> <message fragment> <kubectl args...> (stdin: manifest)
expect_reject() {
    local what="$1" fragment="$2"; shift 2
    local out
    if out="$(k "$@" 2>&1)"; then fail "$what: accepted"; elif grep -qF -- "$fragment" <<<"$out"; then ok "$what"; else fail "$what: rejected without '$fragment': $out"; fi
}

# 1. CRDs
if k apply --server-side -f "$root/crds/" >/dev/null && \
   k wait --for=condition=Established --timeout=60s crd/messageclusters.tideway.dev crd/topics.tideway.dev crd/consumerautoscalers.tideway.dev crd/mirrorpolicies.tideway.dev >/dev/null; then
    ok "CRDs install and are Established"
else
    fail "CRDs install"; exit 1
fi

# 2. dry runs
k create namespace tideway-system >/dev/null
for ns in team-a team-b; do k create namespace "$ns" >/dev/null; done
helm_out="$("$bin/helm" template tideway "$root/charts/tideway-operator" --namespace tideway-system --kube-version 1.36.0)"
if k apply --dry-run=server -f - <<<"$helm_out" >"$work/dry.log" 2>&1; then ok "helm template (defaults) passes server dry-run"; else fail "helm template dry-run: $(cat "$work/dry.log")"; fi
helm_ns="$("$bin/helm" template tideway "$root/charts/tideway-operator" --namespace tideway-system --kube-version 1.36.0 \
    --set 'watchNamespaces={team-a,team-b}' --set crds.install=false)"
if k apply --dry-run=server -f - <<<"$helm_ns" >"$work/dry.log" 2>&1; then ok "helm template (watchNamespaces) passes server dry-run"; else fail "helm template (namespaced) dry-run: $(cat "$work/dry.log")"; fi
if k apply --dry-run=server -f "$root/operator/tests/golden/demo-resources.yaml" >"$work/dry.log" 2>&1; then ok "built broker resources pass server dry-run"; else fail "golden resources dry-run: $(cat "$work/dry.log")"; fi

# 3. CEL and schema rules
cluster_yaml() { cat <<Y
apiVersion: tideway.dev/v1alpha1
kind: MessageCluster
metadata: {name: demo}
spec:
  brokers: ${1:-3}
  storage: {size: ${2:-1Gi}}
  config: {defaultReplicationFactor: ${3:-3}, minInSyncReplicas: ${4:-2}, defaultPartitions: 6}
Y
}
topic_yaml() { # topic_yaml <cluster> <partitions> <rf> <min-isr> [topicName]
    cat <<Y
apiVersion: tideway.dev/v1alpha1
kind: Topic
metadata: {name: orders}
spec:
  clusterRef: {name: $1}
  partitions: $2
  replicationFactor: $3
  minInSyncReplicas: $4
  config: {retention.ms: "86400000"}
${5:+  topicName: \"$5\"}
Y
}
if cluster_yaml | k apply -f - >/dev/null; then ok "valid MessageCluster accepted"; else fail "valid MessageCluster rejected"; fi
expect_reject "brokers 0 rejected" "spec.brokers" apply --dry-run=server -f - < <(cluster_yaml 0)
expect_reject "cluster min-ISR > RF rejected" "config.minInSyncReplicas must not exceed config.defaultReplicationFactor" \
    apply --dry-run=server -f - < <(cluster_yaml 3 1Gi 2 3)
if cluster_yaml 4 | k apply -f - >/dev/null; then ok "brokers increase accepted"; else fail "brokers increase rejected"; fi
expect_reject "storage change rejected" "storage cannot be changed" apply -f - < <(cluster_yaml 4 2Gi)
if cluster_yaml 3 | k apply -f - >/dev/null; then ok "brokers decrease admitted (the operator decides)"; else fail "brokers decrease rejected at admission"; fi
if topic_yaml demo 6 3 2 | k apply -f - >/dev/null; then ok "valid Topic accepted"; else fail "valid Topic rejected"; fi
expect_reject "topic min-ISR > RF rejected" "minInSyncReplicas must not exceed replicationFactor" apply -f - < <(topic_yaml demo 6 1 2)
expect_reject "partitions decrease rejected" "partitions cannot decrease" apply -f - < <(topic_yaml demo 3 3 2)
if topic_yaml demo 8 3 2 | k apply -f - >/dev/null; then ok "partitions increase accepted"; else fail "partitions increase rejected"; fi
expect_reject "clusterRef change rejected" "clusterRef is immutable" apply -f - < <(topic_yaml other 8 3 2)
expect_reject "topicName added later rejected" "topicName cannot be added or removed" apply -f - < <(topic_yaml demo 8 3 2 orders)
expect_reject "partitions 0 rejected" "spec.partitions" apply --dry-run=server -f - < <(topic_yaml demo 0 3 2 | sed 's/name: orders}/name: other}/')
expect_reject "topicName '..' rejected" "topicName cannot be '.' or '..'" \
    apply --dry-run=server -f - < <(topic_yaml demo 1 1 1 .. | sed 's/name: orders}/name: dots}/')
expect_reject "topicName with '/' rejected" "spec.topicName" \
    apply --dry-run=server -f - < <(topic_yaml demo 1 1 1 'a/b' | sed 's/name: orders}/name: slash}/')
expect_reject "deletionPolicy outside the enum rejected" "deletionPolicy" \
    apply --dry-run=server -f - < <(topic_yaml demo 1 1 1 | sed 's/name: orders}/name: policy}/'; echo "  deletionPolicy: Shred")

cas_yaml() { # cas_yaml <min> <max> [extra spec line]
    cat <<Y
apiVersion: tideway.dev/v1alpha1
kind: ConsumerAutoscaler
metadata: {name: workers}
spec:
  clusterRef: {name: demo}
  consumerGroup: workers
  scaleTargetRef: {name: workers}
  minReplicas: $1
  maxReplicas: $2
  lagPerReplica: 10000
${3:+  $3}
Y
}
if cas_yaml 0 10 | k apply -f - >/dev/null \
    && [ "$(k get cas workers -o jsonpath='{.spec.scaleTargetRef.kind}/{.spec.behavior.cooldownSeconds}/{.spec.offsetResetPolicy}')" = Deployment/300/Latest ]; then
    ok "valid ConsumerAutoscaler accepted, defaults filled (Deployment, cooldown 300 s, Latest)"
else
    fail "ConsumerAutoscaler: $(k get cas workers -o yaml 2>&1 | tail -20)"
fi
expect_reject "autoscaler minReplicas > maxReplicas rejected" "minReplicas must not exceed maxReplicas" apply --dry-run=server -f - < <(cas_yaml 5 3)
expect_reject "autoscaler lagPerReplica 0 rejected" "spec.lagPerReplica" apply --dry-run=server -f - < <(cas_yaml 0 3 | sed 's/lagPerReplica: 10000/lagPerReplica: 0/')
expect_reject "autoscaler offsetResetPolicy outside the enum rejected" "offsetResetPolicy" apply --dry-run=server -f - < <(cas_yaml 0 3 "offsetResetPolicy: Newest")

mp_yaml() { # mp_yaml <replicas> [extra spec line]
    cat <<Y
apiVersion: tideway.dev/v1alpha1
kind: MirrorPolicy
metadata: {name: orders}
spec:
  clusterRef: {name: demo}
  match: {topics: [{type: Prefix, value: orders.}]}
  replicas: $1
${2:+  $2}
Y
}
if mp_yaml '{mode: Exactly, count: 3}' 'minInSyncReplicas: 2' | k apply -f - >/dev/null \
    && [ "$(k get mirrorpolicy orders -o jsonpath='{.spec.match.priority}/{.spec.appliesTo}/{.spec.onCreate}/{.spec.onExisting}')" = '0/["TopicResources","ClientCreated"]/Reject/Audit' ]; then
    ok "valid MirrorPolicy accepted, defaults filled (priority 0, both appliesTo, Reject, Audit)"
else
    fail "MirrorPolicy: $(k get mirrorpolicy orders -o yaml 2>&1 | tail -20)"
fi
expect_reject "mirror policy count without Exactly rejected" "replicas.count is required with mode Exactly" \
    apply --dry-run=server -f - < <(mp_yaml '{mode: All, count: 3}')
expect_reject "mirror policy Exactly without count rejected" "replicas.count is required with mode Exactly" \
    apply --dry-run=server -f - < <(mp_yaml '{mode: Exactly}')
expect_reject "mirror policy Brokers with brokers and racks rejected" "mode Brokers takes exactly one of replicas.brokers or replicas.racks" \
    apply --dry-run=server -f - < <(mp_yaml '{mode: Brokers, brokers: [0], racks: [a]}')
expect_reject "mirror policy min-ISR > count rejected" "minInSyncReplicas must not exceed replicas.count" \
    apply --dry-run=server -f - < <(mp_yaml '{mode: Exactly, count: 1}' 'minInSyncReplicas: 2')
expect_reject "mirror policy min-ISR > brokers rejected" "minInSyncReplicas must not exceed the number of replicas.brokers" \
    apply --dry-run=server -f - < <(mp_yaml '{mode: Brokers, brokers: [0]}' 'minInSyncReplicas: 2')
expect_reject "mirror policy duplicate appliesTo rejected" "appliesTo lists an entry twice" \
    apply --dry-run=server -f - < <(mp_yaml '{mode: All}' 'appliesTo: [ClientCreated, ClientCreated]')
expect_reject "mirror policy negative broker id rejected" "spec.replicas.brokers" \
    apply --dry-run=server -f - < <(mp_yaml '{mode: Brokers, brokers: [-1]}')
expect_reject "mirror policy empty topics rejected" "spec.match.topics" \
    apply --dry-run=server -f - < <(mp_yaml '{mode: All}' | sed 's/topics: \[{type: Prefix, value: orders.}\]/topics: []/')
expect_reject "mirror policy clusterRef change rejected" "clusterRef is immutable" \
    apply -f - < <(mp_yaml '{mode: Exactly, count: 3}' 'minInSyncReplicas: 2' | sed 's/name: demo}/name: other}/')

# 4. category and printer columns
if out="$(k get tideway 2>&1)" && grep -q "messagecluster.tideway.dev/demo" <<<"$out" && grep -q "topic.tideway.dev/orders" <<<"$out"; then
    ok "kubectl get tideway lists both kinds"
else
    fail "kubectl get tideway: $out"
fi
if out="$(k get topics 2>&1)" && head -1 <<<"$out" | grep -q "PARTITIONS.*RF.*MIN-ISR"; then ok "Topic printer columns"; else fail "Topic printer columns: $out"; fi
if out="$(k get mc 2>&1)" && head -1 <<<"$out" | grep -q "READY.*BROKERS"; then ok "MessageCluster short name and columns"; else fail "kubectl get mc: $out"; fi
if out="$(k get cas 2>&1)" && head -1 <<<"$out" | grep -q "TARGET.*GROUP.*LAG.*REPLICAS.*DESIRED.*READY"; then ok "ConsumerAutoscaler short name and columns"; else fail "kubectl get cas: $out"; fi
if out="$(k get mirrorpolicies 2>&1)" && head -1 <<<"$out" | grep -q "READY.*CLUSTER.*PRIORITY.*MODE.*GOVERNED.*NONCOMPLIANT"; then ok "MirrorPolicy printer columns"; else fail "kubectl get mirrorpolicies: $out"; fi

echo "apiserver-check: $passed passed, $failed failed"
[ "$failed" = 0 ]
