#!/usr/bin/env bash
# Benchmark: tideway-broker side by side with Apache Kafka 4.3.1 on this machine.
#
#   tests/bench/run.sh                     full run (3 repeats, ~2 GB per scenario; see docs/benchmarks.md)
#   tests/bench/run.sh --quick             tiny sizes, 1 repeat (development)
#   tests/bench/run.sh --quick --only 1    smoke run (well under 2 minutes once Kafka is cached)
#   tests/bench/run.sh --repeats 5 --only 2,6 --log-gb 1
#   tests/bench/run.sh --scale 0.25        reduced run (a quarter of the full sizes)
#
# Own flags: --no-build (use the existing binary; also when TIDEWAY_BROKER_BIN is set).
# Every other flag goes to bench.py (--quick, --repeats N, --scale F, --only LIST, --log-gb G,
# --keep, --no-ceilings, --out DIR, --brokers tideway|kafka). Outputs: target/bench/results.{json,md,png}.
#
# Fetches Kafka with Maven into ${TIDEWAY_CACHE:-$HOME/.cache/tideway}/kafka-4.3.1 (outside
# the repository), compiles tests/bench/BenchTool.java against it, and keeps a venv with the
# pinned matplotlib at $TIDEWAY_CACHE/bench-venv. A second run only checks these.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${TIDEWAY_CACHE:-${HOME:-/root}/.cache/tideway}"
kafka_version=4.3.1
kafka_home="$cache/kafka-$kafka_version"
venv="$cache/bench-venv"

say() { echo "[bench.sh] $*"; }
die() { echo "[bench.sh] FAILED: $*" >&2; exit 1; }
sha() { cat "$@" | sha256sum | cut -d' ' -f1; }

build=1
args=()
for a in "$@"; do
    case "$a" in
        --no-build) build=0 ;;
        -h|--help)
            sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0 ;;
        *) args+=("$a") ;;
    esac
done

# 1. Java 17+ (Kafka 4 brokers and tools need it) and Maven.
command -v java >/dev/null || die "java not found (Kafka $kafka_version needs Java 17+)"
java_major="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)"
[ "${java_major:-0}" -ge 17 ] || die "Java $java_major found; Kafka $kafka_version needs Java 17+"

# 2. Kafka from Maven Central, cached outside the repository; re-fetched when pom.xml changes.
want="$(sha "$here/pom.xml")"
if [ "$(cat "$kafka_home/.pom.sha256" 2>/dev/null || true)" != "$want" ]; then
    command -v mvn >/dev/null || die "mvn not found (needed once to fetch Kafka $kafka_version)"
    say "fetching Apache Kafka $kafka_version (kafka_2.13, kafka-tools, log4j2) into $kafka_home"
    tmp="$kafka_home.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    nice mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$tmp/lib" -DincludeScope=runtime
    ls "$tmp/lib"/kafka_2.13-"$kafka_version".jar "$tmp/lib"/kafka-tools-"$kafka_version".jar >/dev/null \
        || die "Maven did not deliver the Kafka $kafka_version jars"
    echo "$want" > "$tmp/.pom.sha256"
    rm -rf "$kafka_home"
    mv "$tmp" "$kafka_home"
else
    say "Kafka $kafka_version cached at $kafka_home"
fi

# 3. BenchTool (scenarios 4, 5 and 6), compiled against that kafka-clients.
classes="$kafka_home/bench-classes"
want="$(sha "$here/BenchTool.java" "$here/pom.xml")"
if [ "$(cat "$classes/.sha256" 2>/dev/null || true)" != "$want" ]; then
    say "compiling BenchTool.java"
    rm -rf "$classes"
    mkdir -p "$classes"
    nice javac -nowarn -d "$classes" -cp "$kafka_home/lib/*" "$here/BenchTool.java"
    echo "$want" > "$classes/.sha256"
fi

# 3b. franzbench (scenario 6's franz-go part), with Go from the module proxy; skipped without Go.
franzbench=()
gobin="$(command -v go || true)"
[ -n "$gobin" ] || { [ -x /usr/local/go/bin/go ] && gobin=/usr/local/go/bin/go; }
if [ -n "$gobin" ]; then
    want="$(sha "$here"/franzbench/go.mod "$here"/franzbench/go.sum "$here"/franzbench/main.go)"
    if [ "$(cat "$cache/bin/.franzbench.sha256" 2>/dev/null || true)" != "$want" ]; then
        say "building tests/bench/franzbench"
        mkdir -p "$cache/bin"
        (cd "$here/franzbench" && nice "$gobin" build -o "$cache/bin/franzbench" .)
        echo "$want" > "$cache/bin/.franzbench.sha256"
    fi
    franzbench=(--franzbench "$cache/bin/franzbench")
else
    say "no Go toolchain: scenario 6 runs without its franz-go part"
fi

# 4. Python venv with the pinned matplotlib (the chart).
if [ ! -x "$venv/bin/python" ]; then
    say "creating venv at $venv"
    mkdir -p "$cache"
    "${PYTHON:-python3}" -m venv "$venv"
fi
want="$(sha "$here/requirements.txt")"
if [ "$(cat "$venv/.requirements.sha256" 2>/dev/null || true)" != "$want" ]; then
    say "installing $here/requirements.txt into $venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$here/requirements.txt"
    echo "$want" > "$venv/.requirements.sha256"
fi

# 5. The broker under test.
if [ -n "${TIDEWAY_BROKER_BIN:-}" ]; then
    broker_bin="$TIDEWAY_BROKER_BIN"
else
    broker_bin="${CARGO_TARGET_DIR:-$root/target}/release/tideway-broker"
    if [ "$build" = 1 ]; then
        command -v cargo >/dev/null 2>&1 || export PATH="$PATH:${HOME:-/root}/.cargo/bin"
        say "cargo build --release -p tideway-broker"
        (cd "$root" && nice cargo build --release -p tideway-broker)
    fi
fi
[ -x "$broker_bin" ] || die "no broker binary at $broker_bin (build it, or set TIDEWAY_BROKER_BIN)"

say "load average now: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
cd "$root"
PYTHONDONTWRITEBYTECODE=1 exec "$venv/bin/python" "$here/bench.py" --broker-bin "$broker_bin" --kafka-home "$kafka_home" \
    --classes "$classes" "${franzbench[@]}" "${args[@]}"
