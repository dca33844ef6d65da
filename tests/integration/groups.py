"""Helpers for consumer-group tests: worker processes and group introspection."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from confluent_kafka import ConsumerGroupState, TopicPartition
from confluent_kafka.admin import AdminClient

from clients import CLIENT_TIMEOUT_S, make_consumer

WORKER = Path(__file__).with_name("group_worker.py")


class Worker:
    """One group_worker.py process; only ever signals the PID it started."""

    def __init__(self, bootstrap: str, group: str, topic: str, out: Path, session_ms: int = 3000):
        self.out = out
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), bootstrap, group, topic, str(out), str(session_ms)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(out.with_suffix(".err"), "wb"),
        )

    def lines(self) -> list[tuple[int, int, bytes]]:
        if not self.out.exists():
            return []
        rows = []
        for line in self.out.read_bytes().splitlines():
            p, o, v = line.split(b" ", 2)
            rows.append((int(p), int(o), v))
        return rows

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def describe_group(bootstrap: str, group: str):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.describe_consumer_groups([group], request_timeout=CLIENT_TIMEOUT_S)[group].result(CLIENT_TIMEOUT_S)


def stable_assignment(bootstrap: str, group: str, members: int) -> dict[str, set[int]] | None:
    """The group's partition ownership when it is Stable with `members` members, else None.

    Fails the test if any partition is owned by two members at once.
    """
    d = describe_group(bootstrap, group)
    if d.state != ConsumerGroupState.STABLE or len(d.members) != members:
        return None
    owners: dict[int, list[str]] = defaultdict(list)
    by_member = {}
    for m in d.members:
        parts = {tp.partition for tp in m.assignment.topic_partitions}
        by_member[m.member_id] = parts
        for p in parts:
            owners[p].append(m.member_id)
    doubly = {p: o for p, o in owners.items() if len(o) > 1}
    assert not doubly, f"partitions owned by several members at once: {doubly}"
    return by_member


def committed(bootstrap: str, group: str, topic: str, partitions: list[int]) -> dict[int, int]:
    consumer = make_consumer(bootstrap, {"group.id": group})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=CLIENT_TIMEOUT_S)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()


def commit(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commits offsets as a consumer that assigns partitions itself (generation -1)."""
    consumer = make_consumer(bootstrap, {"group.id": group})
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()
