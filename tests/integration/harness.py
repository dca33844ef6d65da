"""Runs the real tideway-broker binary as a subprocess for the integration tests.

`Broker` owns one broker process: a data dir, two loopback ports (Kafka and HTTP)
and a log file. It only ever signals the PID it started itself. Synchronisation
is by polling a condition until a deadline (`wait_until`), never by sleeping.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def wait_until(cond: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Polls `cond` until it returns a truthy value and returns that value.

    Raises AssertionError naming `what` when `timeout` seconds pass first. An exception
    raised by `cond` counts as "not yet"; the last one is shown on time-out.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = cond()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"
            last_error = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(interval)


def free_loopback_ports(count: int) -> list[int]:
    """Returns `count` distinct ports that were free on 127.0.0.1 a moment ago (bound to port 0)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """GET `url`; returns (status, body) for any HTTP status, raises on connection errors."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def is_root() -> bool:
    return os.geteuid() == 0


def broker_binary() -> Path:
    """The binary under test: $TIDEWAY_BROKER_BIN, else target/release/tideway-broker."""
    return Path(os.environ.get("TIDEWAY_BROKER_BIN", REPO_ROOT / "target/release/tideway-broker")).resolve()


class Broker:
    """One tideway-broker process with its own data dir, ports and log file.

    The harness sets --data-dir, --listen and --http-listen itself; `settings` overrides
    them by flag name (None leaves one out). `args` are extra command-line flags (e.g.
    "--max-message-bytes=10000"); `env` adds environment variables. With `config_via_env`,
    the harness settings go in as TIDEWAY_* variables instead of flags.
    """

    def __init__(
        self,
        binary: Path,
        workdir: Path,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        data_dir: Path | None = None,
        settings: dict[str, str | None] | None = None,
        config_via_env: bool = False,
        name: str = "broker",
    ):
        self.binary = binary
        self.name = name
        self.workdir = workdir
        self.data_dir = data_dir if data_dir is not None else workdir / "data"
        self.log_path = workdir / f"{name}.log"
        self.extra_args = list(args)
        self.extra_env = dict(env or {})
        self.settings_override = dict(settings or {})
        self.config_via_env = config_via_env
        self.kafka_port, self.http_port, self.admin_port = free_loopback_ports(3)
        self.proc: subprocess.Popen | None = None

    # -- addresses -------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def http(self, path: str) -> tuple[int, str]:
        return http_get(self.http_base + path)

    # -- process control -------------------------------------------------------------

    def _settings(self) -> dict[str, str]:
        settings = {
            "data-dir": str(self.data_dir),
            "listen": self.bootstrap,
            "http-listen": f"127.0.0.1:{self.http_port}",
            "admin-listen": f"127.0.0.1:{self.admin_port}",
            **self.settings_override,
        }
        return {flag: value for flag, value in settings.items() if value is not None}

    def command_and_env(self) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        env.update(self.extra_env)
        cmd = [str(self.binary)]
        for flag, value in self._settings().items():
            if self.config_via_env:
                env["TIDEWAY_" + flag.upper().replace("-", "_")] = value
            else:
                cmd.append(f"--{flag}={value}")
        return cmd + self.extra_args, env

    def start(self, wait_ready: bool = True) -> "Broker":
        assert not self.is_running(), f"{self.name} is already running (pid {self.proc.pid})"
        assert self.binary.is_file(), (
            f"broker binary {self.binary} not found: build it with "
            "`cargo build --release -p tideway-broker` or set TIDEWAY_BROKER_BIN"
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd, env = self.command_and_env()
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== harness: starting {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        if wait_ready:
            self.wait_ready()
        return self

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Waits until GET /readyz answers 200; fails at once if the process exits."""

        def ready() -> bool:
            if not self.is_running():
                raise BrokerExited(f"{self.name} exited with {self.proc.returncode} before ready")
            status, _ = self.http("/readyz")
            return status == 200

        deadline = time.monotonic() + timeout
        while True:
            try:
                if ready():
                    return
            except BrokerExited as e:
                raise AssertionError(f"{e}\n{self.log_tail()}") from None
            except OSError:
                pass  # HTTP listener not up yet
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{self.name} not ready (GET /readyz != 200) within {timeout}s\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def _signal_and_wait(self, sig: signal.Signals, timeout: float) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        if self.proc.poll() is None:
            self.proc.send_signal(sig)  # only ever the PID this harness started
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then waits for exit; SIGKILLs and fails if it does not exit in time."""
        try:
            return self._signal_and_wait(signal.SIGTERM, timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.name} did not exit within {timeout}s of SIGTERM\n{self.log_tail()}"
            ) from None

    def kill(self) -> int:
        """SIGKILL and wait: a crash without any chance to clean up."""
        return self._signal_and_wait(signal.SIGKILL, STOP_TIMEOUT_S)

    def restart(self, hard: bool = False) -> "Broker":
        """Stops (SIGTERM, or SIGKILL when `hard`) and starts again on the same data dir and ports."""
        if hard:
            self.kill()
        else:
            self.stop()
        return self.start()

    def ensure_stopped(self) -> None:
        """Teardown: stops the process if it still runs, killing it if SIGTERM does not work."""
        if not self.is_running():
            return
        try:
            self._signal_and_wait(signal.SIGTERM, STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()

    # -- diagnostics -----------------------------------------------------------------

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return f"--- {self.name}: no log at {self.log_path}"
        tail = "\n".join(text[-lines:])
        return f"--- last {min(lines, len(text))} lines of {self.log_path}:\n{tail}"


class BrokerExited(Exception):
    """The broker process ended while the harness waited for it."""
