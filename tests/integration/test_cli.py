"""Command line, environment configuration, HTTP endpoints and shutdown of the broker binary."""

import subprocess

import pytest

from clients import admin_client, assert_roundtrip
from harness import Broker, broker_binary, free_loopback_ports, is_root

EXIT_TIMEOUT_S = 30


def run_until_exit(tmp_path, env=None, settings=None) -> subprocess.CompletedProcess:
    """Runs the broker with the harness's flags changed by `settings`; it is expected to exit on its own."""
    broker = Broker(broker_binary(), tmp_path, env=env, settings=settings)
    cmd, full_env = broker.command_and_env()
    try:
        return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:  # subprocess.run has killed it
        pytest.fail(f"{' '.join(cmd)} still running after {EXIT_TIMEOUT_S}s; expected it to refuse to start\n{e.stderr}")


def assert_refused(proc: subprocess.CompletedProcess, *names: str) -> None:
    """Non-zero exit with stderr naming at least one of `names`."""
    assert proc.returncode != 0, f"exit 0 for {proc.args}\nstderr:\n{proc.stderr}"
    assert any(n in proc.stderr for n in names), f"stderr does not name any of {names}:\n{proc.stderr}"


@pytest.mark.parametrize(
    "flag, value",
    [("fsync", "sometimes"), ("listen", "notanaddress"), ("segment-bytes", "-5"), ("max-message-bytes", "lots")],
)
def test_bad_flag_value_exits_naming_the_flag(tmp_path, flag, value):
    proc = run_until_exit(tmp_path, settings={flag: value})
    env_name = "TIDEWAY_" + flag.upper().replace("-", "_")
    assert_refused(proc, f"--{flag}", env_name)


def test_bad_value_from_the_environment_exits_naming_it(tmp_path):
    proc = run_until_exit(tmp_path, env={"TIDEWAY_FSYNC": "sometimes"})
    assert_refused(proc, "--fsync", "TIDEWAY_FSYNC")


@pytest.fixture
def read_only_dir(request, tmp_path):
    """A directory the broker cannot write to: a read-only tmpfs for root, mode 0555 otherwise."""
    if is_root():  # root ignores permission bits
        return request.getfixturevalue("tmpfs_factory")("1m", read_only=True)
    path = tmp_path / "read-only"
    path.mkdir(mode=0o555)
    return path


@pytest.mark.parametrize("kind", ["regular-file", "under-a-file", "read-only"])
def test_unusable_data_dir_exits_naming_the_path(tmp_path, request, kind):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory\n")
    if kind == "regular-file":
        data_dir = a_file
    elif kind == "under-a-file":
        data_dir = a_file / "data"
    else:
        data_dir = request.getfixturevalue("read_only_dir")
    proc = run_until_exit(tmp_path / "run", settings={"data-dir": str(data_dir)})
    assert_refused(proc, str(data_dir))


def test_http_endpoints(broker):
    assert broker.http("/livez")[0] == 200
    assert broker.http("/readyz")[0] == 200
    status, body = broker.http("/metrics")
    assert status == 200
    assert any(line.startswith("# TYPE ") for line in body.splitlines()), body[:2000]
    assert "tideway" in body, body[:2000]


def test_configuration_from_environment_only(start_broker):
    broker = start_broker(config_via_env=True)
    assert_roundtrip(broker.bootstrap)


def test_metadata_returns_the_advertised_address(start_broker):
    [advertised_port] = free_loopback_ports(1)
    broker = start_broker(f"--advertised-address=localhost:{advertised_port}")
    brokers = admin_client(broker.bootstrap).list_topics(timeout=30).brokers
    assert [(b.host, b.port) for b in brokers.values()] == [("localhost", advertised_port)]


def test_sigterm_shuts_down_cleanly(broker):
    assert broker.stop() == 0
