#!/usr/bin/env bash
# Builds the project's container images without a Docker engine (buildah, from scratch) and
# optionally imports them into a containerd. The layout matches images/*/Dockerfile, which users
# build with Docker; here the binary comes from the local cargo build instead of a build stage.
#
# Usage: images/build.sh [--import CONTAINERD_SOCKET] [image...]
#   images: pause    localhost/tideway/pause:3.10   (static, from images/pause/pause.c)
#           toolbox  tideway-toolbox:0.1.0          (static busybox, for tests that need a shell)
#           broker   tideway-broker:0.1.0           (target/{release,debug}/tideway-broker, or
#                                                    $TIDEWAY_BROKER_BIN; with the `tideway` CLI
#                                                    beside it: target/{release,debug}/tideway,
#                                                    or $TIDEWAY_CLI_BIN)
#           operator tideway-operator:0.1.0         (once a tideway-operator binary exists)
#   default: pause toolbox broker
# Image archives (docker-archive) are cached in $TIDEWAY_CACHE/images and rebuilt only when
# their input changed. buildah keeps its own storage there too (vfs), apart from the host's.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${TIDEWAY_CACHE:-${HOME:-/root}/.cache/tideway}"
out_dir="$cache/images"
store=(--root "$cache/buildah/storage" --runroot "$cache/buildah/run" --storage-driver vfs)
mkdir -p "$out_dir"

say() { echo "[images] $*" >&2; }
die() { echo "[images] FAILED: $*" >&2; exit 1; }

import_sock=""
if [ "${1:-}" = "--import" ]; then import_sock="$2"; shift 2; fi
want=("$@")
[ ${#want[@]} -gt 0 ] || want=(pause toolbox broker)

command -v buildah >/dev/null || die "buildah not installed (tests/cluster/setup-host.sh installs it)"

# newest of the candidate binaries that exists
find_bin() { # find_bin <name> <override> [cargo package, default <name>]
    local name="$1" override="$2" package="${3:-$1}" best="" c
    if [ -n "$override" ]; then [ -x "$override" ] && { echo "$override"; return; }; die "$override not executable"; fi
    for c in "$root/target/release/$name" "$root/target/debug/$name"; do
        [ -x "$c" ] || continue
        if [ -z "$best" ] || [ "$c" -nt "$best" ]; then best="$c"; fi
    done
    [ -n "$best" ] || die "no $name binary in $root/target/{release,debug}: run cargo build --release -p $package"
    echo "$best"
}

# add_with_libs <mountpoint> <binary> <dest path>: copy a binary and the shared libraries it needs
add_with_libs() {
    local mnt="$1" bin="$2" dest="$3" lib
    install -D -m 0755 "$bin" "$mnt$dest"
    # release builds keep debug info (profile.release debug=1): drop it from the image copy
    if command -v strip >/dev/null; then strip --strip-debug "$mnt$dest"; fi
    for lib in $(ldd "$bin" 2>/dev/null | grep -oE '/[^ ]+\.so[^ ]*' | sort -u); do
        cp --parents -L "$lib" "$mnt/"
    done
}

# build_image <name> <ref> <input hash> <populate fn> [buildah config args...]
build_image() {
    local name="$1" ref="$2" hash="$3" populate="$4"; shift 4
    local tar="$out_dir/$name.tar" stamp="$out_dir/$name.input"
    if [ -f "$tar" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$hash" ]; then
        say "$ref up to date ($tar)"
    else
        say "building $ref"
        local ctr mnt
        ctr="$(buildah "${store[@]}" from scratch)"
        mnt="$(buildah "${store[@]}" mount "$ctr")"
        mkdir -p "$mnt/tmp" && chmod 1777 "$mnt/tmp"
        "$populate" "$mnt"
        buildah "${store[@]}" umount "$ctr" >/dev/null
        buildah "${store[@]}" config "$@" "$ctr"
        buildah "${store[@]}" commit -q --rm "$ctr" "$ref" >/dev/null
        rm -f "$tar"
        buildah "${store[@]}" push -q "$ref" "docker-archive:$tar:$ref"
        buildah "${store[@]}" rmi -f "$ref" >/dev/null 2>&1 || true
        echo "$hash" >"$stamp"
        say "built $ref -> $tar ($(du -h "$tar" | cut -f1))"
    fi
    if [ -n "$import_sock" ]; then
        ctr --address "$import_sock" --namespace k8s.io images import --no-unpack=false "$tar" >/dev/null \
            || die "importing $tar into containerd at $import_sock"
        say "imported $ref into containerd ($import_sock)"
    fi
}

populate_pause() { install -D -m 0755 "$pause_bin" "$1/pause"; }
populate_toolbox() {
    install -D -m 0755 /bin/busybox "$1/bin/busybox"
    local applet
    for applet in sh cat echo ls mkdir rm sleep date wget nc hostname id env test sed grep httpd; do
        ln -sf busybox "$1/bin/$applet"
    done
}
populate_broker() {
    add_with_libs "$1" "$broker_bin" /usr/local/bin/tideway-broker
    add_with_libs "$1" "$cli_bin" /usr/local/bin/tideway
    install -d -o 65532 -g 65532 "$1/var/lib/tideway"
}
populate_operator() { add_with_libs "$1" "$operator_bin" /usr/local/bin/tideway-operator; }

for image in "${want[@]}"; do
    case "$image" in
        pause)
            pause_bin="$cache/images/pause.bin"
            src="$root/images/pause/pause.c"
            h="$(sha256sum "$src" | cut -d' ' -f1)"
            if [ ! -x "$pause_bin" ] || [ "$(cat "$out_dir/pause.input" 2>/dev/null)" != "$h" ]; then
                gcc -static -Os -s -o "$pause_bin" "$src" || die "compiling $src (needs gcc, libc6-dev)"
            fi
            build_image pause localhost/tideway/pause:3.10 "$h" populate_pause \
                --entrypoint '["/pause"]' --user 65535:65535 ;;
        toolbox)
            [ -x /bin/busybox ] && file -L /bin/busybox | grep -q 'statically linked' \
                || die "a static /bin/busybox is needed (apt-get install busybox-static)"
            build_image toolbox tideway-toolbox:0.1.0 "$(sha256sum /bin/busybox | cut -d' ' -f1)-1" \
                populate_toolbox --entrypoint '["/bin/sh"]' --env PATH=/bin ;;
        broker)
            broker_bin="$(find_bin tideway-broker "${TIDEWAY_BROKER_BIN:-}")"
            cli_bin="$(find_bin tideway "${TIDEWAY_CLI_BIN:-}" tideway-cli)"
            say "broker binary: $broker_bin; CLI binary: $cli_bin"
            build_image broker tideway-broker:0.1.0 \
                "$(cat "$broker_bin" "$cli_bin" | sha256sum | cut -d' ' -f1)-2" \
                populate_broker --entrypoint '["/usr/local/bin/tideway-broker"]' \
                --env TIDEWAY_LISTEN=0.0.0.0:9092 --env TIDEWAY_HTTP_LISTEN=0.0.0.0:9644 \
                --env TIDEWAY_DATA_DIR=/var/lib/tideway --workingdir /var/lib/tideway \
                --user 65532:65532 --port 9092 --port 9644 ;;
        operator)
            operator_bin="$(find_bin tideway-operator "${TIDEWAY_OPERATOR_BIN:-}")"
            build_image operator tideway-operator:0.1.0 "$(sha256sum "$operator_bin" | cut -d' ' -f1)-1" \
                populate_operator --entrypoint '["/usr/local/bin/tideway-operator"]' --user 65532:65532 ;;
        *) die "unknown image '$image' (pause, toolbox, broker, operator)" ;;
    esac
done
