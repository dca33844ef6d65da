#!/usr/bin/env bash
# Builds the pinned Kubernetes binaries (and etcd, helm) from the Go module proxy into a cache
# outside the repo, and reuses them when present:
#   ${TIDEWAY_CACHE:-$HOME/.cache/tideway}/k8s-v<version>/bin/{etcd,kube-apiserver,...}
# Usage: tests/cluster/build-binaries.sh [name...]   (default: every binary the cluster needs)
# Prints the bin directory on its last line. Builds one binary at a time, niced, GOMAXPROCS=2,
# so it shares the 2 cores politely with other work.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tests/cluster/lib.sh
. "$here/lib.sh"

all=(etcd kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet helm)
want=("$@")
[ ${#want[@]} -gt 0 ] || want=("${all[@]}")

command -v go >/dev/null || die "go is not installed (need Go >= 1.26 for Kubernetes v$K8S_VERSION)"
grep -q "k8s.io/kubernetes v$K8S_VERSION\$" "$here/build/go.mod" \
    || die "tests/cluster/build/go.mod does not pin k8s.io/kubernetes v$K8S_VERSION (lib.sh K8S_VERSION)"
mkdir -p "$K8S_BIN" "$K8S_BUILD_LOGS"

major="${K8S_VERSION%%.*}"
minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
ldflags="-s -w"
for key_val in "gitVersion=v$K8S_VERSION" "gitMajor=$major" "gitMinor=$minor" \
               "gitTreeState=clean" "buildDate=$build_date"; do
    ldflags+=" -X k8s.io/component-base/version.$key_val -X k8s.io/client-go/pkg/version.$key_val"
done

gobuild() { # gobuild <module dir> <output> <package> <log>
    (cd "$1" && nice -n 19 env GOMAXPROCS=2 CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" \
        go build -p 2 -trimpath -ldflags "$ldflags" -o "$2.tmp" "$3") >"$4" 2>&1 \
        && mv "$2.tmp" "$2"
}

for name in "${want[@]}"; do
    out="$K8S_BIN/$name"
    if [ -x "$out" ]; then
        say "build: $name present ($out)"
        continue
    fi
    log="$K8S_BUILD_LOGS/$name.log"
    start=$(date +%s)
    say "build: $name (log: $log) ..."
    case "$name" in
        etcd)
            gobuild "$here/build" "$out" ./cmd/etcd "$log" ;;
        kube-apiserver|kube-controller-manager|kube-scheduler|kubectl|kubelet)
            gobuild "$here/build" "$out" "k8s.io/kubernetes/cmd/$name" "$log" ;;
        helm)
            gobuild "$here/build/helm" "$out" helm.sh/helm/v3/cmd/helm "$log" ;;
        *) die "build: unknown binary '$name'" ;;
    esac || { tail -20 "$log" >&2; die "build: $name FAILED; full log: $log"; }
    say "build: $name done in $(( $(date +%s) - start ))s"
done
echo "$K8S_BIN"
