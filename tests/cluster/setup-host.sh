#!/usr/bin/env bash
# Installs the Debian packages the local test cluster needs (run as root; idempotent):
#   containerd + runc (the node's container runtime), containernetworking-plugins (CNI bridge,
#   host-local, loopback in /usr/lib/cni), buildah (builds the project's images without a
#   Docker engine), openssl (cluster CA and certificates), iproute2 (the bridge), gcc + libc6-dev
#   (the static pause binary), curl (health checks, the smoke test), util-linux (mount, nsenter),
#   busybox-static (a static busybox for the small test toolbox image).
# No iptables: the kubelet is configured not to touch iptables and the CNI bridge does no NAT.
# The Debian containerd package is installed but never started as a service here: up.sh runs
# its own containerd with a private config, root and socket under the cluster state dir.
set -euo pipefail

say() { echo "[setup-host] $*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

packages=(containerd runc containernetworking-plugins buildah openssl iproute2 gcc libc6-dev
          curl util-linux busybox-static)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    say "all packages present"
else
    say "installing: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # policy-rc.d 101: do not start any packaged service (containerd) during the install;
    # the cluster scripts start their own instances.
    restore_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
        as_root chmod +x /usr/sbin/policy-rc.d
        restore_policy=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
    [ "$restore_policy" = 1 ] && as_root rm -f /usr/sbin/policy-rc.d
    say "installed"
fi
for tool in containerd runc buildah openssl ip gcc; do
    command -v "$tool" >/dev/null || { echo "[setup-host] FAILED: $tool missing after install" >&2; exit 1; }
done
[ -x /usr/lib/cni/bridge ] || { echo "[setup-host] FAILED: /usr/lib/cni/bridge missing" >&2; exit 1; }
say "containerd $(containerd --version | awk '{print $3}'), $(runc --version | head -1), buildah $(buildah --version | awk '{print $3}')"
