# Shared settings for the local test cluster scripts (sourced, not run).
# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables are used by the scripts that source this file

K8S_VERSION="${TIDEWAY_K8S_VERSION:-1.36.3}"   # must match tests/cluster/build/go.mod
TIDEWAY_CACHE="${TIDEWAY_CACHE:-${HOME:-/root}/.cache/tideway}"
K8S_BIN="$TIDEWAY_CACHE/k8s-v$K8S_VERSION/bin"
K8S_BUILD_LOGS="$TIDEWAY_CACHE/k8s-v$K8S_VERSION/logs"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# All cluster state (certs, etcd data, logs, pids, volumes) lives here; down.sh removes it.
CLUSTER_DIR="${TIDEWAY_CLUSTER_DIR:-$REPO_ROOT/target/test-cluster}"
KUBECONFIG_FILE="$CLUSTER_DIR/kubeconfig"

# Node network: a bridge this script creates; nothing is routed or masqueraded off the machine.
BRIDGE="${TIDEWAY_BRIDGE:-twbr0}"
NODE_SUBNET="${TIDEWAY_NODE_SUBNET:-172.31.250.0/24}"   # a /24
NODE_IP="${NODE_SUBNET%.*}.1"
POD_RANGE_START="${NODE_SUBNET%.*}.10"
POD_RANGE_END="${NODE_SUBNET%.*}.250"
SERVICE_CIDR="${TIDEWAY_SERVICE_CIDR:-172.31.251.0/24}"
NODE_NAME="${TIDEWAY_NODE_NAME:-tideway-node}"

PAUSE_IMAGE="localhost/tideway/pause:3.10"   # built from images/pause/pause.c by images/build.sh

ETCD_CLIENT_PORT=23790
ETCD_PEER_PORT=23800
APISERVER_PORT="${TIDEWAY_APISERVER_PORT:-16443}"

say() { echo "[cluster $(date +%H:%M:%S)] $*" >&2; }
die() { echo "[cluster $(date +%H:%M:%S)] FAILED: $*" >&2; exit 1; }

# wait_for <what> <timeout seconds> <log file> <command...>: poll until the command succeeds.
wait_for() {
    local what="$1" timeout="$2" log="$3"; shift 3
    local deadline=$(( $(date +%s) + timeout ))
    until "$@" >/dev/null 2>&1; do
        # a component that already exited will never become ready: fail at once
        if [ -n "${PIDS:-}" ] && [ -f "$PIDS/$what.pid" ] && ! pid_alive "$PIDS/$what.pid"; then
            [ -f "$log" ] && { echo "--- last lines of $log ---" >&2; tail -25 "$log" >&2; }
            die "$what exited during start-up; log: $log"
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            [ -f "$log" ] && { echo "--- last lines of $log ---" >&2; tail -25 "$log" >&2; }
            die "$what not ready after ${timeout}s; log: $log"
        fi
        sleep 0.5
    done
}

# running and not a zombie (daemons started by an earlier shell are reaped by PID 1 later)
proc_alive() { kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
pid_alive() { [ -f "$1" ] && proc_alive "$(cat "$1")"; }
