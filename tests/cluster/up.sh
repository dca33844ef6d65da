#!/usr/bin/env bash
# Brings up a single-node Kubernetes cluster on this machine, without Docker:
#   etcd, kube-apiserver (own CA + service-account keys), kube-controller-manager, kube-scheduler,
#   containerd (Debian's, private config/root/socket) + runc, kubelet, a CNI bridge that keeps
#   pod traffic on a bridge created here (no forwarding, no NAT), a StorageClass with a pool of
#   hostPath PersistentVolumes under the state dir, and the locally built images.
# Writes the kubeconfig to target/test-cluster/kubeconfig (state dir: $TIDEWAY_CLUSTER_DIR).
# Idempotent: components already running are left alone. On failure it names the component
# and its log. tests/cluster/down.sh stops everything it started and removes the state.
# Env: TIDEWAY_CACHE (binary cache), TIDEWAY_SKIP_IMAGES=1 (do not build/load project images),
#      TIDEWAY_CONTROL_PLANE_ONLY=1 (no containerd/kubelet: API tests only).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tests/cluster/lib.sh
. "$here/lib.sh"

[ "$(id -u)" -eq 0 ] || die "up.sh must run as root (it creates a bridge, cgroups and mounts)"
started=$(date +%s)

PKI="$CLUSTER_DIR/pki"
LOGS="$CLUSTER_DIR/logs"
PIDS="$CLUSTER_DIR/pids"
RUN="$CLUSTER_DIR/run"
mkdir -p "$PKI" "$LOGS" "$PIDS" "$RUN" "$CLUSTER_DIR/kubeconfigs" "$CLUSTER_DIR/volumes"

# ---------------------------------------------------------------- host packages + binaries
say "host packages (tests/cluster/setup-host.sh)"
bash "$here/setup-host.sh" >&2 || die "host packages: setup-host.sh failed"
say "binaries for Kubernetes v$K8S_VERSION (cache: $K8S_BIN)"
bash "$here/build-binaries.sh" >/dev/null || die "binaries: build-binaries.sh failed (logs: $K8S_BUILD_LOGS)"
export PATH="$K8S_BIN:$PATH"

kubectl_() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

# start_component <name> <command...>: start in the background (own session) unless running.
start_component() {
    local name="$1"; shift
    local pidfile="$PIDS/$name.pid" log="$LOGS/$name.log"
    if pid_alive "$pidfile"; then
        say "$name already running (pid $(cat "$pidfile"))"
        return 0
    fi
    say "starting $name (log: $log)"
    setsid "$@" >>"$log" 2>&1 </dev/null &
    echo $! >"$pidfile"
}

# ---------------------------------------------------------------- network: the bridge
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    # Refuse a subnet that clashes with an existing route (other than our own bridge).
    if ip -4 route show | grep -v "dev $BRIDGE" | grep -q "^${NODE_SUBNET%.*}\."; then
        die "network: $NODE_SUBNET clashes with an existing route (set TIDEWAY_NODE_SUBNET)"
    fi
    say "network: creating bridge $BRIDGE $NODE_IP/${NODE_SUBNET#*/}"
    ip link add "$BRIDGE" type bridge
    echo "$BRIDGE" >"$CLUSTER_DIR/bridge.created"
fi
ip addr show dev "$BRIDGE" | grep -q "inet $NODE_IP/" || ip addr add "$NODE_IP/${NODE_SUBNET#*/}" dev "$BRIDGE"
ip link set "$BRIDGE" up

# ---------------------------------------------------------------- PKI (openssl, EC P-256)
newkey() { [ -f "$PKI/$1.key" ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$1.key" 2>/dev/null; }
# sign <name> <subject> <extendedKeyUsage> [subjectAltName]
sign() {
    local name="$1" subj="$2" eku="$3" san="${4:-}"
    [ -f "$PKI/$name.crt" ] && return 0
    newkey "$name"
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$eku"
        [ -n "$san" ] && echo "subjectAltName=$san"
    } >"$PKI/$name.ext"
    openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
    openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
        -days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
}
if [ ! -f "$PKI/ca.crt" ]; then
    say "pki: CA, serving and client certificates, service-account keys ($PKI)"
    newkey ca
    openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=tideway-test-ca" -days 3650 -sha256 \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$PKI/ca.crt" 2>/dev/null
fi
svc_ip="${SERVICE_CIDR%.*}.1"
sign apiserver "/CN=kube-apiserver" serverAuth \
    "IP:$NODE_IP,IP:127.0.0.1,IP:$svc_ip,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
sign admin "/O=system:masters/CN=tideway-admin" clientAuth
sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
sign controller-manager "/CN=system:kube-controller-manager" clientAuth
sign scheduler "/CN=system:kube-scheduler" clientAuth
sign kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
sign kubelet-serving "/CN=$NODE_NAME" serverAuth "IP:$NODE_IP,DNS:$NODE_NAME"
newkey sa
[ -f "$PKI/sa.pub" ] || openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null

server="https://$NODE_IP:$APISERVER_PORT"
b64() { base64 -w0 <"$1"; }
# write_kubeconfig <file> <cert name>
write_kubeconfig() {
    cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tideway-test
  cluster:
    server: $server
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(b64 "$PKI/$2.crt")
    client-key-data: $(b64 "$PKI/$2.key")
contexts:
- name: tideway-test
  context: {cluster: tideway-test, user: $2}
current-context: tideway-test
EOF
}
write_kubeconfig "$KUBECONFIG_FILE" admin
for c in controller-manager scheduler kubelet-client; do
    write_kubeconfig "$CLUSTER_DIR/kubeconfigs/$c.kubeconfig" "$c"
done

# ---------------------------------------------------------------- etcd
start_component etcd etcd --name tideway --data-dir "$CLUSTER_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "tideway=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --log-level warn
wait_for etcd 60 "$LOGS/etcd.log" curl -fsS "http://127.0.0.1:$ETCD_CLIENT_PORT/health"
say "etcd ready"

# ---------------------------------------------------------------- kube-apiserver
start_component kube-apiserver kube-apiserver \
    --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$APISERVER_PORT" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" \
    --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=true --profiling=false --v=1
wait_for kube-apiserver 120 "$LOGS/kube-apiserver.log" kubectl_ get --raw /readyz
say "kube-apiserver ready ($server)"

# ---------------------------------------------------------------- cluster DNS (tests/cluster/dns.py)
# No CoreDNS image here: a small responder on the node IP answers pod and headless-Service
# names from the apiserver, and nothing else (no forwarding off the machine).
start_component dns python3 "$REPO_ROOT/tests/cluster/dns.py" --listen "$NODE_IP" \
    --kubectl "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE"
wait_for dns 30 "$LOGS/dns.log" grep -q "dns: serving" "$LOGS/dns.log"
say "cluster DNS ready ($NODE_IP:53)"

# ---------------------------------------------------------------- controller-manager, scheduler
cm_kc="$CLUSTER_DIR/kubeconfigs/controller-manager.kubeconfig"
start_component kube-controller-manager kube-controller-manager \
    --kubeconfig "$cm_kc" --authentication-kubeconfig "$cm_kc" --authorization-kubeconfig "$cm_kc" \
    --bind-address 127.0.0.1 --secure-port 16257 --leader-elect=false \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --use-service-account-credentials=true --service-cluster-ip-range "$SERVICE_CIDR" \
    --allocate-node-cidrs=false --profiling=false --v=1
sch_kc="$CLUSTER_DIR/kubeconfigs/scheduler.kubeconfig"
start_component kube-scheduler kube-scheduler \
    --kubeconfig "$sch_kc" --authentication-kubeconfig "$sch_kc" --authorization-kubeconfig "$sch_kc" \
    --bind-address 127.0.0.1 --secure-port 16259 --leader-elect=false --profiling=false --v=1
wait_for kube-controller-manager 90 "$LOGS/kube-controller-manager.log" \
    curl -fsSk https://127.0.0.1:16257/healthz
wait_for kube-scheduler 90 "$LOGS/kube-scheduler.log" curl -fsSk https://127.0.0.1:16259/healthz
say "kube-controller-manager and kube-scheduler ready"

# ---------------------------------------------------------------- storage: class + PV pool
pv_count="${TIDEWAY_PV_COUNT:-12}"
{
    cat <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: tideway-local
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain
EOF
    for i in $(seq -w 1 "$pv_count"); do
        dir="$CLUSTER_DIR/volumes/pv-$i"
        mkdir -p "$dir" && chmod 0777 "$dir"   # any pod uid may write, like local-path-provisioner
        cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: tideway-pv-$i
  labels: {tideway.io/test-volume: "true"}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: tideway-local
  hostPath: {path: $dir, type: Directory}
EOF
    done
} >"$CLUSTER_DIR/storage.yaml"
kubectl_ apply -f "$CLUSTER_DIR/storage.yaml" >"$LOGS/storage-apply.log" 2>&1 \
    || die "storage: kubectl apply failed; log: $LOGS/storage-apply.log"
say "storage: StorageClass tideway-local (default), $pv_count PersistentVolumes under $CLUSTER_DIR/volumes"

if [ "${TIDEWAY_CONTROL_PLANE_ONLY:-0}" = 1 ]; then
    say "control plane up in $(( $(date +%s) - started ))s (TIDEWAY_CONTROL_PLANE_ONLY=1: no node)"
    echo "export KUBECONFIG=$KUBECONFIG_FILE"
    exit 0
fi

# ---------------------------------------------------------------- node: cgroups of our own
# kubelet's cgroupRoot is nested under the memory cgroup this script runs in; in every other
# v1 hierarchy, and in the cgroup2 (unified) mount of this hybrid host, where runc also
# creates it, the same path is created fresh. Only directories created here are recorded (and
# removed by down.sh); no existing cgroup is modified.
if [ ! -f "$CLUSTER_DIR/cgroup-root" ]; then
    base="$(awk -F: '$2=="memory"{print $3}' /proc/self/cgroup)"
    [ -n "$base" ] || base="/"
    cg_root="${base%/}/tideway-$(basename "$CLUSTER_DIR" | tr -c 'a-zA-Z0-9-\n' '-')-$$"
    echo "$cg_root" >"$CLUSTER_DIR/cgroup-root"
fi
cg_root="$(cat "$CLUSTER_DIR/cgroup-root")"
for mnt in $(awk '$3=="cgroup" || $3=="cgroup2" {print $2}' /proc/mounts); do
    path="$mnt"
    IFS=/ read -ra parts <<<"${cg_root#/}"
    for part in "${parts[@]}"; do
        parent="$path"; path="$path/$part"
        if [ ! -d "$path" ]; then
            mkdir "$path"
            echo "$path" >>"$CLUSTER_DIR/cgroups.created"
            if [ -f "$path/cpuset.cpus" ]; then   # cpuset children start empty in v1
                cat "$parent/cpuset.cpus" >"$path/cpuset.cpus"
                cat "$parent/cpuset.mems" >"$path/cpuset.mems"
            fi
        fi
    done
done
say "node: cgroup root $cg_root"

# ---------------------------------------------------------------- node: CNI + containerd
# Pods get an address on the bridge and only the on-link route of its subnet: no default route,
# no NAT, no forwarding (isGateway=false keeps the plugin from enabling ip_forward), so pod
# traffic can reach the host (NODE_IP) and other pods, and nothing else.
CNI_CONF="$CLUSTER_DIR/cni/net.d"
mkdir -p "$CNI_CONF"
cat >"$CNI_CONF/10-tideway.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "tideway",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$CLUSTER_DIR/cni/ipam",
        "ranges": [[{"subnet": "$NODE_SUBNET", "rangeStart": "$POD_RANGE_START", "rangeEnd": "$POD_RANGE_END", "gateway": "$NODE_IP"}]]
      }
    },
    {"type": "loopback"}
  ]
}
EOF
CONTAINERD_SOCK="$RUN/containerd.sock"
# unix socket paths are limited to 107 bytes (plus ".ttrpc")
[ "${#CONTAINERD_SOCK}" -le 100 ] \
    || die "containerd: socket path too long ($CONTAINERD_SOCK); set TIDEWAY_CLUSTER_DIR to a shorter directory"
mkdir -p "$CLUSTER_DIR/containerd/root" "$RUN/containerd-state"
cat >"$CLUSTER_DIR/containerd/config.toml" <<EOF
version = 2
root = "$CLUSTER_DIR/containerd/root"
state = "$RUN/containerd-state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$RUN/containerd.sock.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  # This host withholds CAP_SYS_RESOURCE even from root: runc cannot lower oom_score_adj below
  # containerd's own (the pause container asks for -998), so cap it there.
  restrict_oom_score_adj = true
  tolerate_missing_hugetlb_controller = true
  disable_hugetlb_controller = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "${TIDEWAY_RUNC:-/usr/bin/runc}"
        SystemdCgroup = false
        Root = "$RUN/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CNI_CONF"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
EOF
# containerd 1.6 keeps shim sockets in the fixed /run/containerd/s: remember if we create it
[ -e /run/containerd ] || [ -f "$CLUSTER_DIR/run-containerd.created" ] || touch "$CLUSTER_DIR/run-containerd.created"
start_component containerd containerd --config "$CLUSTER_DIR/containerd/config.toml"
ctr_() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }
wait_for containerd 60 "$LOGS/containerd.log" ctr_ version
say "containerd ready ($CONTAINERD_SOCK)"

# ---------------------------------------------------------------- images
say "images: pause (+ project images unless TIDEWAY_SKIP_IMAGES=1)"
images_args=(pause)
[ "${TIDEWAY_SKIP_IMAGES:-0}" = 1 ] || images_args+=(toolbox broker)
bash "$REPO_ROOT/images/build.sh" --import "$CONTAINERD_SOCK" "${images_args[@]}" >"$LOGS/images.log" 2>&1 \
    || { tail -20 "$LOGS/images.log" >&2; die "images: images/build.sh failed; log: $LOGS/images.log"; }

# ---------------------------------------------------------------- kubelet
KUBELET_DIR="$CLUSTER_DIR/kubelet"
mkdir -p "$KUBELET_DIR/root" "$CLUSTER_DIR/pod-logs"
: >"$KUBELET_DIR/resolv.conf"
cat >"$KUBELET_DIR/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 16248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
cgroupRoot: $cg_root
cgroupsPerQOS: true
failCgroupV1: false
failSwapOn: false
makeIPTablesUtilChains: false
protectKernelDefaults: false
resolvConf: $KUBELET_DIR/resolv.conf
clusterDomain: cluster.local
clusterDNS: [$NODE_IP]
podLogsDir: $CLUSTER_DIR/pod-logs
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "0%", nodefs.available: "0%", nodefs.inodesFree: "0%", imagefs.available: "0%"}
evictionPressureTransitionPeriod: 5s
maxPods: 60
serializeImagePulls: false
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
registerNode: true
EOF
start_component kubelet kubelet --config "$KUBELET_DIR/config.yaml" \
    --kubeconfig "$CLUSTER_DIR/kubeconfigs/kubelet-client.kubeconfig" \
    --root-dir "$KUBELET_DIR/root" --cert-dir "$KUBELET_DIR/pki" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v=1
wait_for kubelet 90 "$LOGS/kubelet.log" curl -fsS http://127.0.0.1:16248/healthz
wait_for "node $NODE_NAME Ready" 120 "$LOGS/kubelet.log" \
    kubectl_ wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s
say "node $NODE_NAME Ready"

say "cluster up in $(( $(date +%s) - started ))s; state: $CLUSTER_DIR"
echo "export KUBECONFIG=$KUBECONFIG_FILE"
