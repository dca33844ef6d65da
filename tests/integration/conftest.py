"""Fixtures for the integration tests: real tideway-broker processes and a tmpfs for disk-full.

- `start_broker(*flags, **kw)` starts a broker (see harness.Broker) and stops it at teardown.
- `broker` is one broker with default settings.
- When a test fails, the tail of each of its brokers' logs is added to the report.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import Broker, broker_binary, is_root  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for broker in getattr(item, "tideway_brokers", []):
            report.sections.append((f"{broker.name} log ({report.when})", broker.log_tail()))


@pytest.fixture
def start_broker(request, tmp_path):
    """Factory: start_broker("--flag=value", ..., env=..., data_dir=..., config_via_env=...)."""
    brokers: list[Broker] = []
    request.node.tideway_brokers = brokers

    def start(*args: str, wait_ready: bool = True, **kwargs) -> Broker:
        name = kwargs.pop("name", f"broker{len(brokers)}")
        b = Broker(broker_binary(), tmp_path / name, args=args, name=name, **kwargs)
        brokers.append(b)
        return b.start(wait_ready=wait_ready)

    yield start
    for b in reversed(brokers):
        b.ensure_stopped()


@pytest.fixture
def broker(start_broker) -> Broker:
    return start_broker()


def mounted(path: Path) -> bool:
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == str(path) for line in f)


@pytest.fixture
def tmpfs_factory(tmp_path):
    """Factory: mounts a tmpfs of `size` (e.g. "8m") at a new dir; unmounts exactly those at teardown.

    Request it before `start_broker` so brokers are stopped before their mount goes away.
    """
    if not is_root():
        pytest.skip("mounting a tmpfs needs root")
    mounts: list[Path] = []

    def mount(size: str, read_only: bool = False) -> Path:
        target = tmp_path / f"tmpfs{len(mounts)}"
        target.mkdir()
        opts = f"size={size}" + (",ro" if read_only else "")
        subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tideway-test", str(target)], check=True, timeout=30)
        mounts.append(target)
        return target

    yield mount
    for target in reversed(mounts):
        if mounted(target):
            result = subprocess.run(["umount", str(target)], capture_output=True, timeout=30)
            if result.returncode != 0:  # still busy: detach it so the machine is left clean
                subprocess.run(["umount", "-l", str(target)], check=True, timeout=30)
