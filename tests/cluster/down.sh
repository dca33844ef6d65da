#!/usr/bin/env bash
# Stops everything tests/cluster/up.sh started (by the PIDs it recorded, never by name),
# kills the pod processes left in the cluster's own cgroups, unmounts what the node mounted
# under the state dir, deletes the bridge and cgroups it created, and removes the state dir.
# Safe to run twice, or after a partial up.sh. Keeps the binary and image caches.
# Env: TIDEWAY_KEEP_STATE=1 keeps the state dir (logs) after stopping.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tests/cluster/lib.sh
. "$here/lib.sh"

PIDS="$CLUSTER_DIR/pids"
RUN="$CLUSTER_DIR/run"
if [ ! -d "$CLUSTER_DIR" ]; then
    say "down: nothing to do ($CLUSTER_DIR does not exist)"
    exit 0
fi

# stop_pid <name>: SIGTERM, wait up to 20s, then SIGKILL; only the PID recorded by up.sh
stop_pid() {
    local name="$1" pidfile="$PIDS/$1.pid" pid
    [ -f "$pidfile" ] || return 0
    pid="$(cat "$pidfile")"
    if proc_alive "$pid"; then
        say "down: stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 200); do proc_alive "$pid" || break; sleep 0.1; done
        if proc_alive "$pid"; then
            say "down: $name did not stop in 20s, SIGKILL"
            kill -KILL "$pid" 2>/dev/null
        fi
    fi
    rm -f "$pidfile"
}

cg_root="$(cat "$CLUSTER_DIR/cgroup-root" 2>/dev/null || true)"
# pids_in_cluster_cgroups: every process in the cgroups below our own cgroup root
pids_in_cluster_cgroups() {
    [ -n "$cg_root" ] || return 0
    local mnt
    for mnt in $(awk '$3=="cgroup" || $3=="cgroup2" {print $2}' /proc/mounts); do
        [ -d "$mnt$cg_root" ] && find "$mnt$cg_root" -name cgroup.procs -exec cat {} + 2>/dev/null
    done | sort -un
}

# 1. kubelet first, so it restarts nothing; then the pod processes (in our cgroups only)
stop_pid kubelet
# the node agent substitute, when used instead of the kubelet
stop_pid node-agent
pod_pids="$(pids_in_cluster_cgroups)"
if [ -n "$pod_pids" ]; then
    say "down: stopping pod processes in $cg_root: $(echo $pod_pids)"
    # shellcheck disable=SC2086
    kill -TERM $pod_pids 2>/dev/null
    for _ in $(seq 1 50); do [ -z "$(pids_in_cluster_cgroups)" ] && break; sleep 0.1; done
    left="$(pids_in_cluster_cgroups)"
    # shellcheck disable=SC2086
    [ -z "$left" ] || kill -KILL $left 2>/dev/null
fi

# 2. delete the (now stopped) tasks so their shims exit cleanly and remove their sockets,
#    then containerd, then any shim still running for our socket (identified by its -address)
if pid_alive "$PIDS/containerd.pid"; then
    ctr_() { timeout 10 ctr --address "$RUN/containerd.sock" --namespace k8s.io "$@"; }
    for task in $(ctr_ tasks ls -q 2>/dev/null); do
        ctr_ tasks delete --force "$task" >/dev/null 2>&1
    done
fi
stop_pid containerd
for p in /proc/[0-9]*; do
    cmd="$( { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null)" || continue
    case "$cmd" in
        *containerd-shim*"-address $RUN/containerd.sock"*)
            say "down: stopping shim ${p#/proc/}"; kill -KILL "${p#/proc/}" 2>/dev/null ;;
    esac
done

# the empty socket dir containerd made, if up.sh saw it created (rmdir leaves non-empty alone)
if [ -f "$CLUSTER_DIR/run-containerd.created" ]; then
    rmdir /run/containerd/s /run/containerd 2>/dev/null
fi

# 3. control plane (and the cluster DNS responder)
stop_pid dns
stop_pid kube-scheduler
stop_pid kube-controller-manager
stop_pid kube-apiserver
stop_pid etcd

# 4. mounts under the state dir (pod volumes, rootfs, netns, shm), deepest first
for attempt in 1 2 3; do
    mounts="$(awk -v a="$CLUSTER_DIR/" '{ if (index($5, a) == 1) print $5 }' /proc/self/mountinfo | sort -r)"
    [ -z "$mounts" ] && break
    while read -r m; do
        [ -n "$m" ] || continue
        umount "$m" 2>/dev/null || { [ "$attempt" = 3 ] && umount -l "$m" 2>/dev/null; }
    done <<<"$mounts"
done
left_mounts="$(awk -v a="$CLUSTER_DIR/" '{ if (index($5, a) == 1) print $5 }' /proc/self/mountinfo)"
[ -z "$left_mounts" ] || say "down: WARNING: still mounted: $left_mounts"

# 5. the bridge (only if up.sh created it); pod veths went away with their namespaces
if [ -f "$CLUSTER_DIR/bridge.created" ]; then
    br="$(cat "$CLUSTER_DIR/bridge.created")"
    if ip link show "$br" >/dev/null 2>&1; then
        say "down: deleting bridge $br"
        ip link del "$br"
    fi
fi

# 6. cgroups: everything below our root (created by us or by our kubelet/runc), then the
#    ancestors up.sh created; rmdir only removes empty cgroups, never touches others
if [ -n "$cg_root" ]; then
    for mnt in $(awk '$3=="cgroup" || $3=="cgroup2" {print $2}' /proc/mounts); do
        [ -d "$mnt$cg_root" ] && find "$mnt$cg_root" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
fi
if [ -f "$CLUSTER_DIR/cgroups.created" ]; then
    sort -r "$CLUSTER_DIR/cgroups.created" | while read -r d; do
        [ -d "$d" ] && { rmdir "$d" 2>/dev/null || say "down: WARNING: cgroup $d not removed"; }
    done
fi

# 7. state
if [ "${TIDEWAY_KEEP_STATE:-0}" = 1 ]; then
    rm -f "$CLUSTER_DIR/cgroups.created" "$CLUSTER_DIR/bridge.created" "$CLUSTER_DIR/cgroup-root"
    say "down: stopped; state kept in $CLUSTER_DIR (TIDEWAY_KEEP_STATE=1)"
elif [ -z "$left_mounts" ]; then
    rm -rf "$CLUSTER_DIR"
    say "down: stopped and removed $CLUSTER_DIR"
else
    say "down: stopped; $CLUSTER_DIR kept because of the mounts above"
    exit 1
fi
