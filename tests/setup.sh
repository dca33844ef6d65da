#!/usr/bin/env bash
# Installs what the integration tests need on a fresh Debian machine (run as root):
#   - kcat from Debian's packages
#   - a Python venv outside the repo with the pinned packages of tests/requirements.txt
#   - the franz-go test client (tests/integration/franzgo) at $cache/bin/franzgo
# Idempotent: a second run only checks (go build reuses its cache).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${TIDEWAY_CACHE:-${HOME:-/root}/.cache/tideway}"
venv="$cache/venv"
requirements="$here/requirements.txt"

say() { echo "[setup] $*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if command -v kcat >/dev/null 2>&1; then
    say "kcat present: $(kcat -V 2>&1 | grep -m1 Version || true)"
else
    say "installing kcat (apt-get update + install)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat
    say "kcat installed: $(kcat -V 2>&1 | grep -m1 Version || true)"
fi

python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    say "creating venv at $venv with $("$python" --version 2>&1)"
    mkdir -p "$cache"
    "$python" -m venv "$venv"
fi

# Reinstall only when requirements.txt changed since the last successful install.
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    say "installing Python packages from $requirements"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$requirements"
    echo "$want" > "$stamp"
else
    say "Python packages up to date"
fi

"$venv/bin/python" - <<'PY'
import confluent_kafka, pytest
print(f"[setup] confluent-kafka {confluent_kafka.__version__}, "
      f"librdkafka {confluent_kafka.libversion()[0]}, pytest {pytest.__version__}")
PY
say "venv ready: $venv"

franzgo_src="$here/integration/franzgo"
if [ -d "$franzgo_src" ]; then
    say "building the franz-go client into $cache/bin/franzgo"
    mkdir -p "$cache/bin"
    command -v go >/dev/null 2>&1 || export PATH="$PATH:/usr/local/go/bin"
    (cd "$franzgo_src" && go build -o "$cache/bin/franzgo" .)
fi
