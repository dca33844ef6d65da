"""The `tideway` command-line client (cli/, on librdkafka) against a real broker:
topics, produce, consume as members of one group that commit after processing and
hand their partitions over on SIGTERM, and lag from the group's committed offsets.

The binary is $TIDEWAY_CLI_BIN (default target/release/tideway); a missing binary
fails these tests. Every wait is a condition with a deadline.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupState

from clients import make_consumer, unique_topic, watermarks
from groups import committed, describe_group
from harness import REPO_ROOT, free_loopback_ports, wait_until

CLI_TIMEOUT_S = 120
WAIT_S = 60
CONSUME_ALL_S = 180
STOP_S = 30


def cli_binary() -> Path:
    path = Path(os.environ.get("TIDEWAY_CLI_BIN", REPO_ROOT / "target/release/tideway")).resolve()
    assert path.is_file() and os.access(path, os.X_OK), (
        f"tideway CLI binary {path} not found: build it with `cargo build --release -p tideway-cli` "
        "or set TIDEWAY_CLI_BIN"
    )
    return path


def cli_env() -> dict[str, str]:
    """The test's environment without TIDEWAY_* variables, which the CLI reads as flags."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDEWAY_")}
    env["RUST_BACKTRACE"] = "1"
    return env


def tideway(bootstrap: str, *args: str, stdin: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [str(cli_binary()), "--bootstrap", bootstrap, *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, timeout=CLI_TIMEOUT_S, env={**cli_env(), **(env or {})})


def tideway_ok(bootstrap: str, *args: str, stdin: bytes | None = None) -> str:
    proc = tideway(bootstrap, *args, stdin=stdin)
    assert proc.returncode == 0, (
        f"tideway {' '.join(args)} exited {proc.returncode}\n"
        f"stdout:\n{proc.stdout.decode(errors='replace')}\nstderr:\n{proc.stderr.decode(errors='replace')[-4000:]}"
    )
    return proc.stdout.decode()


def cli_lag(bootstrap: str, group: str, topic: str) -> tuple[dict[int, tuple[int | None, int, int]], int]:
    """`tideway lag` parsed: partition -> (committed or None, high watermark, lag), and the total."""
    lines = tideway_ok(bootstrap, "lag", "--group", group, "--topic", topic).splitlines()
    assert lines[0].split() == ["TOPIC", "PARTITION", "COMMITTED", "HIGH-WATERMARK", "LAG"], lines
    partitions = {}
    for line in lines[1:-1]:
        t, p, c, hw, lag = line.split()
        assert t == topic, line
        partitions[int(p)] = (None if c == "-" else int(c), int(hw), int(lag))
    total = re.fullmatch(r"TOTAL LAG (\d+)", lines[-1])
    assert total, lines[-1]
    return partitions, int(total[1])


def high_watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = make_consumer(bootstrap)
    try:
        return {p: watermarks(consumer, topic, p)[1] for p in range(partitions)}
    finally:
        consumer.close()


def assignment_by_client(bootstrap: str, group: str, members: int) -> dict[str, set[int]] | None:
    """client.id -> partitions while the group is Stable with `members` members, else None."""
    d = describe_group(bootstrap, group)
    if d.state != ConsumerGroupState.STABLE or len(d.members) != members:
        return None
    return {m.client_id: {tp.partition for tp in m.assignment.topic_partitions} for m in d.members}


class CliConsumer:
    """One `tideway consume --print` process; only ever signals the PID it started."""

    def __init__(self, bootstrap: str, workdir: Path, name: str, group: str, topic: str, *extra: str):
        self.name = name
        self.out = workdir / f"{name}.out"
        self.err = workdir / f"{name}.err"
        cmd = [str(cli_binary()), "--bootstrap", bootstrap, "--client-id", name,
               "consume", "--group", group, "--topic", topic, "--print", *extra]
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=cli_env())

    def records(self) -> list[tuple[int, int]]:
        """(partition, offset) of every complete line printed so far."""
        rows = []
        for line in self.out.read_bytes().split(b"\n")[:-1]:
            _topic, partition, offset, _rest = line.split(b"\t", 3)
            rows.append((int(partition), int(offset)))
        return rows

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        """SIGTERM and the exit code; fails the test if it does not exit in time."""
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_S)
            raise AssertionError(f"{self.name} did not exit within {STOP_S}s of SIGTERM\n{self.stderr()[-4000:]}") from None

    def ensure_stopped(self) -> None:
        if self.running():
            self.proc.kill()
            self.proc.wait(timeout=STOP_S)

    def summary_count(self) -> int:
        found = re.findall(r"consumed (\d+) records from .* as a member of group", self.stderr())
        assert len(found) == 1, f"{self.name}: expected one summary line on stderr:\n{self.stderr()[-4000:]}"
        return int(found[0])


def test_topics_are_created_listed_and_described(broker):
    b = broker.bootstrap
    topic = unique_topic("cli")
    out = tideway_ok(b, "topics", "--create", topic, "--partitions", "3", "--replication-factor", "1",
                     "--config", "retention.ms=3600000")
    assert out.strip() == f"created topic {topic}: 3 partitions, replication factor 1", out

    listing = tideway_ok(b, "topics").splitlines()
    assert listing[0].split() == ["TOPIC", "PARTITIONS", "REPLICATION-FACTOR"], listing
    assert [topic, "3", "1"] in [line.split() for line in listing[1:]], listing

    described = [line.split() for line in tideway_ok(b, "topics", "--describe", "--topic", topic).splitlines()]
    assert described[0] == ["TOPIC", "PARTITION", "LEADER", "REPLICAS", "ISR"]
    assert [row[:2] for row in described[1:]] == [[topic, "0"], [topic, "1"], [topic, "2"]]
    for _, _, leader, replicas, isr in described[1:]:
        assert leader != "none" and replicas == leader and isr == leader, described

    again = tideway(b, "topics", "--create", topic)
    assert again.returncode != 0
    assert "already exists" in again.stderr.decode().lower(), again.stderr
    missing = tideway(b, "topics", "--topic", unique_topic("absent"))
    assert missing.returncode != 0 and "--topic" in missing.stderr.decode(), missing.stderr


def test_stdin_lines_are_produced_and_consumed_and_committed_on_exit(broker):
    b = broker.bootstrap
    topic, group = unique_topic("cli"), unique_topic("g")
    tideway_ok(b, "topics", "--create", topic, "--partitions", "1")
    out = tideway_ok(b, "produce", "--topic", topic, "--key-prefix", "k", stdin=b"first\nsecond line\r\nthird\n")
    assert re.match(r"acknowledged 3 of 3 records to \S+ in [\d.]+s; 0 failed$", out.strip()), out

    partitions, total = cli_lag(b, group, topic)
    assert (partitions, total) == ({0: (None, 3, 3)}, 3), "nothing committed: the whole log is lag"

    proc = tideway(b, "consume", "--group", group, "--topic", topic, "--print", "--count", "3")
    assert proc.returncode == 0, proc.stderr.decode()
    rows = [line.split(b"\t") for line in proc.stdout.splitlines()]
    assert rows == [[topic.encode(), b"0", b"0", b"k0", b"first"],
                    [topic.encode(), b"0", b"1", b"k1", b"second line"],
                    [topic.encode(), b"0", b"2", b"k2", b"third"]]
    assert re.search(rb"consumed 3 records from \S+ as a member of group \S+; offsets committed", proc.stderr), proc.stderr
    # The commit on exit is synchronous: the very next look finds it.
    assert cli_lag(b, group, topic) == ({0: (3, 3, 0)}, 0)


def test_two_members_split_the_partitions_and_sigterm_hands_over_what_was_committed(broker, tmp_path):
    b = broker.bootstrap
    topic, group = unique_topic("cli"), unique_topic("g")
    tideway_ok(b, "topics", "--create", topic, "--partitions", "6", "--replication-factor", "1")
    out = tideway_ok(b, "produce", "--topic", topic, "--count", "5000", "--size", "64")
    assert re.match(r"acknowledged 5000 of 5000 records", out), out
    high = high_watermarks(b, topic, 6)
    assert sum(high.values()) == 5000 and all(high.values()), f"keys did not spread over the partitions: {high}"
    everything = {(p, o) for p, h in high.items() for o in range(h)}

    # Rate-limited, so the members are still busy when one of them is stopped.
    a = CliConsumer(b, tmp_path, "cli-a", group, topic, "--max-rate", "150")
    c = CliConsumer(b, tmp_path, "cli-c", group, topic, "--max-rate", "150")
    try:
        split = wait_until(lambda: assignment_by_client(b, group, 2), WAIT_S, "two members sharing the partitions")
        assert set(split) == {"cli-a", "cli-c"}, split
        assert split["cli-a"] and split["cli-c"], f"one member got nothing: {split}"
        assert split["cli-a"] | split["cli-c"] == set(range(6)) and not split["cli-a"] & split["cli-c"], split
        # Enough processed on its own partitions that a missing commit would show.
        wait_until(lambda: sum(p in split["cli-a"] for p, _ in a.records()) >= 300, WAIT_S,
                   "cli-a processing 300 records of its partitions")

        assert a.stop() == 0, a.stderr()[-4000:]
        a_records = a.records()
        assert a.summary_count() == len(a_records)
        assert "FINAL COMMIT FAILED" not in a.stderr(), a.stderr()[-4000:]
        assert "leaving the group" in a.stderr()

        wait_until(lambda: (s := assignment_by_client(b, group, 1)) and s.get("cli-c") == set(range(6)), WAIT_S,
                   "the remaining member owning every partition")
        wait_until(lambda: everything <= set(a_records) | set(c.records()), CONSUME_ALL_S,
                   "every record consumed by one member or the other")
        assert c.running(), c.stderr()[-4000:]

        # Commits follow processing within --commit-interval-ms: the group's lag reaches 0.
        wait_until(lambda: cli_lag(b, group, topic)[1] == 0, WAIT_S, "tideway lag reporting 0")
        partitions, _ = cli_lag(b, group, topic)
        assert partitions == {p: (h, h, 0) for p, h in high.items()}, "committed offsets = high watermarks"
        assert committed(b, group, topic, list(range(6))) == high
    finally:
        a.ensure_stopped()
        if c.running():
            assert c.stop() == 0, c.stderr()[-4000:]
        c.ensure_stopped()

    c_records = c.records()
    assert c.summary_count() == len(c_records)
    # cli-a committed everything it processed before giving partitions up (when cli-c
    # joined) and before leaving (SIGTERM): cli-c never processed one of its records again.
    again = set(a_records) & set(c_records)
    assert not again, f"{len(again)} records processed by cli-a were processed again by cli-c, e.g. {sorted(again)[:5]}"


def test_a_consumer_rides_out_a_broker_restart(broker, tmp_path):
    b = broker.bootstrap
    topic, group = unique_topic("cli"), unique_topic("g")
    tideway_ok(b, "topics", "--create", topic, "--partitions", "2")
    tideway_ok(b, "produce", "--topic", topic, "--count", "100", "--size", "10")
    consumer = CliConsumer(b, tmp_path, "cli-r", group, topic, "--session-timeout-ms", "6000")
    try:
        wait_until(lambda: len(set(consumer.records())) >= 100, WAIT_S, "the first 100 records consumed")
        broker.restart()
        assert consumer.running(), consumer.stderr()[-4000:]
        tideway_ok(b, "produce", "--topic", topic, "--count", "100", "--size", "10", "--key-prefix", "after-")
        wait_until(lambda: len(set(consumer.records())) >= 200, CONSUME_ALL_S, "the records produced after the restart consumed")
        assert consumer.running(), consumer.stderr()[-4000:]
        wait_until(lambda: cli_lag(b, group, topic)[1] == 0, WAIT_S, "tideway lag reporting 0 after the restart")
        assert consumer.stop() == 0, consumer.stderr()[-4000:]
    finally:
        consumer.ensure_stopped()


def test_failed_deliveries_exit_non_zero_with_a_count(tmp_path):
    (port,) = free_loopback_ports(1)  # nothing listens there
    proc = tideway(f"127.0.0.1:{port}", "produce", "--topic", "t", "--count", "10", "--delivery-timeout-ms", "2000")
    assert proc.returncode == 1, proc.stderr.decode()
    assert "acknowledged 0 of 10 records" in proc.stdout.decode(), proc.stdout
    assert "10 of 10 records were not acknowledged" in proc.stderr.decode(), proc.stderr


@pytest.mark.parametrize(
    "args, env, named",
    [
        (["consume", "--group", "g", "--topic", "t", "--max-rate", "fast"], {}, "--max-rate"),
        (["consume", "--group", "g", "--topic", "t"], {"TIDEWAY_CONSUME_MAX_RATE": "0"}, "--max-rate"),
        (["consume", "--group", "g", "--topic", "t", "--from", "middle"], {}, "--from"),
        (["consume", "--group", "g"], {}, "--topic"),
        (["produce", "--topic", "t", "--count", "-3"], {}, "--count"),
        (["produce", "--topic", "t", "--size", "10"], {}, "--count"),
        (["lag", "--group", "g"], {}, "--topic"),
        (["topics", "--partitions", "3"], {}, "--create"),
        (["topics", "--create", "bad name"], {}, "--create"),
        (["--log", "info,[", "topics"], {}, "--log"),
    ],
)
def test_a_bad_flag_is_refused_naming_it(args, env, named):
    proc = tideway("127.0.0.1:9", *args, env=env)  # refused before any connection
    stderr = proc.stderr.decode()
    assert proc.returncode == 2, f"exit {proc.returncode} for {args}\n{stderr}"
    assert named in stderr, f"stderr does not name {named}:\n{stderr}"
