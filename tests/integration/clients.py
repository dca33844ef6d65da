"""Real Kafka clients against the broker: confluent-kafka (librdkafka) and the kcat CLI.

Consumers use assign() to explicit partitions and no consumer group, since the broker
has no group coordinator yet (librdkafka still needs a group.id string to start).
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import wait_until

# Kafka protocol error codes the tests expect from the broker.
OFFSET_OUT_OF_RANGE = 1
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PART = 3
MESSAGE_TOO_LARGE = 10
INVALID_TOPIC_EXCEPTION = 17
UNSUPPORTED_VERSION = 35
TOPIC_ALREADY_EXISTS = 36
KAFKA_STORAGE_ERROR = 56
# librdkafka's own (negative) codes
CLIENT_UNKNOWN_TOPIC = -188
CLIENT_AUTO_OFFSET_RESET = -140

CLIENT_TIMEOUT_S = 30.0
KCAT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Record:
    """A record as acknowledged by the broker or read back from it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None = None


@dataclass
class ProduceResult:
    acked: list[Record] = field(default_factory=list)
    errors: list[tuple[KafkaError, bytes | None, bytes | None]] = field(default_factory=list)
    pending: int = 0  # still in the producer's queue when flush gave up

    def error_codes(self) -> set[int]:
        return {e.code() for e, _, _ in self.errors}


def unique_topic(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# -- admin -------------------------------------------------------------------------------


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def topic_partition_count(bootstrap: str, topic: str) -> int | None:
    """Partitions of `topic` with a leader, per a fresh all-topics Metadata; None when absent."""
    md = admin_client(bootstrap).list_topics(timeout=CLIENT_TIMEOUT_S)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return None
    if any(p.leader < 0 for p in t.partitions.values()):
        return None
    return len(t.partitions)


def wait_topic_partitions(bootstrap: str, topic: str, partitions: int, timeout: float = CLIENT_TIMEOUT_S) -> None:
    wait_until(
        lambda: topic_partition_count(bootstrap, topic) == partitions,
        timeout,
        f"metadata to show topic {topic} with {partitions} led partitions",
    )


def admin_result(bootstrap: str, request: Callable[[AdminClient], dict], key):
    """Runs `request(admin)`, which returns the admin call's futures, and waits for `futures[key]`.

    The AdminClient must outlive its futures (a destroyed client fails them), hence this helper.
    """
    admin = admin_client(bootstrap)
    futures = request(admin)
    return futures[key].result(timeout=CLIENT_TIMEOUT_S)


def admin_error_code(bootstrap: str, request: Callable[[AdminClient], dict], key) -> int | None:
    """Like `admin_result`, but returns None on success or the Kafka error code."""
    try:
        admin_result(bootstrap, request, key)
        return None
    except KafkaException as e:
        return e.args[0].code()


def create_topic(bootstrap: str, topic: str, partitions: int = 1, config: dict[str, str] | None = None) -> None:
    """CreateTopics and waits until the metadata shows every partition with a leader."""
    new_topic = NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})
    admin_result(bootstrap, lambda admin: admin.create_topics([new_topic], operation_timeout=CLIENT_TIMEOUT_S), topic)
    wait_topic_partitions(bootstrap, topic, partitions)


# -- produce -----------------------------------------------------------------------------


def make_producer(bootstrap: str, config: dict | None = None) -> Producer:
    """A producer with acks=all; `config` adds or overrides librdkafka properties."""
    return Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "message.timeout.ms": 60_000, **(config or {})}
    )


def delivery_collector(result: ProduceResult):
    def on_delivery(err, msg):
        if err is not None:
            result.errors.append((err, msg.key(), msg.value()))
        else:
            ts_type, ts = msg.timestamp()
            result.acked.append(Record(msg.partition(), msg.offset(), msg.key(), msg.value(), ts))

    return on_delivery


def produce_one(producer: Producer, topic: str, on_delivery, **kwargs) -> None:
    """producer.produce(topic, **kwargs), serving callbacks while the local queue is full."""
    while True:
        try:
            producer.produce(topic, on_delivery=on_delivery, **kwargs)
            producer.poll(0)
            return
        except BufferError:
            producer.poll(0.1)


def flush(producer: Producer, result: ProduceResult, timeout: float) -> ProduceResult:
    result.pending = producer.flush(timeout)
    return result


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes | None] | dict],
    config: dict | None = None,
    timeout: float = 120.0,
) -> ProduceResult:
    """Produces records with acks=all unless `config` overrides it; collects delivery reports.

    A record is a (key, value) pair or a dict of Producer.produce arguments
    (key, value, partition, timestamp, ...).
    """
    result = ProduceResult()
    producer = make_producer(bootstrap, config)
    on_delivery = delivery_collector(result)
    for record in records:
        kwargs = record if isinstance(record, dict) else {"key": record[0], "value": record[1]}
        produce_one(producer, topic, on_delivery, **kwargs)
    return flush(producer, result, timeout)


def produce_ok(bootstrap: str, topic: str, records, config: dict | None = None) -> ProduceResult:
    """`produce` that fails the test unless every record was acknowledged."""
    records = list(records)
    result = produce(bootstrap, topic, records, config)
    assert not result.errors, f"{len(result.errors)} delivery errors, first: {result.errors[0][0]}"
    assert result.pending == 0, f"{result.pending} records still unacknowledged after flush"
    assert len(result.acked) == len(records)
    return result


def keyed_records(count: int, keys: int = 1000, payload: bytes = b"", start: int = 0):
    """Deterministic (key, value) pairs; the value embeds the sequence number and key."""
    for seq in range(start, start + count):
        key = b"key-%d" % (seq % keys)
        yield key, b"%d|%s|%s" % (seq, key, payload)


def sequence_of(value: bytes) -> int:
    return int(value.split(b"|", 1)[0])


# -- consume -----------------------------------------------------------------------------


def make_consumer(bootstrap: str, config: dict | None = None) -> Consumer:
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "tideway-it-unused",  # required by the client; no group API is used
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "auto.offset.reset": "earliest",
        **(config or {}),
    })


def partitions_of(bootstrap: str, topic: str) -> list[int]:
    md = admin_client(bootstrap).list_topics(timeout=CLIENT_TIMEOUT_S)
    t = md.topics.get(topic)
    assert t is not None and t.error is None, f"topic {topic} not in metadata: {t and t.error}"
    return sorted(t.partitions)


def watermarks(consumer: Consumer, topic: str, partition: int) -> tuple[int, int]:
    """(low, high) from the broker via ListOffsets, not from a cache."""
    return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=CLIENT_TIMEOUT_S, cached=False)


def consume_all(bootstrap: str, topic: str, timeout: float = 120.0) -> dict[int, list[Record]]:
    """Reads every partition of `topic` from its beginning up to its current high watermark.

    Records deleted by retention meanwhile are skipped (auto.offset.reset=earliest).
    """
    consumer = make_consumer(bootstrap)
    try:
        partitions = partitions_of(bootstrap, topic)
        out: dict[int, list[Record]] = {p: [] for p in partitions}
        remaining = {}  # partition -> high watermark still to reach
        for p in partitions:
            low, high = watermarks(consumer, topic, p)
            if high > low:
                remaining[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in remaining])
        deadline = time.monotonic() + timeout
        while remaining:
            assert time.monotonic() < deadline, (
                f"timed out after {timeout}s consuming {topic}; partition -> high watermark not reached: {remaining}"
            )
            batch = consumer.consume(num_messages=10_000, timeout=0.5)
            if not batch:  # retention may have deleted what was left to read
                for p in [p for p, high in remaining.items() if watermarks(consumer, topic, p)[0] >= high]:
                    del remaining[p]
            for msg in batch:
                if msg.error() is not None:
                    if msg.topic() is None and not msg.error().fatal():
                        continue  # client-wide and informational, e.g. no group coordinator
                    raise KafkaException(msg.error())
                p = msg.partition()
                ts_type, ts = msg.timestamp()
                out[p].append(Record(p, msg.offset(), msg.key(), msg.value(), ts))
                if p in remaining and msg.offset() >= remaining[p] - 1:
                    del remaining[p]
        return out
    finally:
        consumer.close()


def first_consume_error(
    bootstrap: str, topic: str, partition: int, offset: int, config: dict | None = None, timeout: float = 30.0
) -> KafkaError:
    """Assigns (topic, partition, offset); returns the first error reported, failing on any record."""
    consumer = make_consumer(bootstrap, config)
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or (msg.topic() is None and msg.error() is not None and not msg.error().fatal()):
                continue
            assert msg.error() is not None, f"expected an error, got a record at offset {msg.offset()}"
            return msg.error()
        raise AssertionError(f"no error within {timeout}s consuming {topic}[{partition}] from offset {offset}")
    finally:
        consumer.close()


# -- checks ------------------------------------------------------------------------------


def flatten(by_partition: dict[int, list[Record]]) -> list[Record]:
    return [r for records in by_partition.values() for r in records]


def assert_consumed_matches(acked: list[Record], consumed: dict[int, list[Record]], exact: bool = True) -> None:
    """Checks consumed records against acknowledged ones.

    Every acknowledged record is present exactly once, at its acknowledged partition and
    offset, with its key and value; within a partition the values' sequence numbers grow
    with the offset (production order); one key lives in one partition. With `exact`,
    nothing else was consumed; without it, extra (unacknowledged) records are allowed
    but still no duplicates.
    """
    all_consumed = flatten(consumed)
    dupes = [v for v, n in Counter(r.value for r in all_consumed).items() if n > 1]
    assert not dupes, f"{len(dupes)} values consumed more than once, e.g. {dupes[:3]}"

    at = {(r.partition, r.offset): r for r in all_consumed}
    missing = [a for a in acked if (a.partition, a.offset) not in at]
    assert not missing, f"{len(missing)} acknowledged records missing, e.g. {missing[:3]}"
    changed = [(a, c) for a in acked if ((c := at[(a.partition, a.offset)]).key, c.value) != (a.key, a.value)]
    assert not changed, f"{len(changed)} records differ from what was acknowledged, e.g. {changed[:2]}"
    if exact:
        assert len(all_consumed) == len(acked), f"consumed {len(all_consumed)} records, acknowledged {len(acked)}"

    for p, records in consumed.items():
        offsets = [r.offset for r in records]
        assert offsets == sorted(set(offsets)), f"partition {p}: offsets not strictly increasing"
        seqs = [sequence_of(r.value) for r in records]
        assert seqs == sorted(seqs), f"partition {p}: records out of production order"

    partitions_by_key = defaultdict(set)
    for r in all_consumed:
        partitions_by_key[r.key].add(r.partition)
    spread = {k: ps for k, ps in partitions_by_key.items() if len(ps) > 1}
    assert not spread, f"{len(spread)} keys found in more than one partition, e.g. {list(spread.items())[:3]}"


# -- kcat --------------------------------------------------------------------------------


def kcat(bootstrap: str, *args: str, stdin: bytes | None = None, timeout: float = KCAT_TIMEOUT_S) -> bytes:
    """Runs kcat against the broker; fails the test on a non-zero exit, returns stdout."""
    cmd = ["kcat", "-b", bootstrap, *args]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} exited {proc.returncode}\nstderr:\n{proc.stderr.decode(errors='replace')[-4000:]}"
    )
    return proc.stdout


def kcat_produce(bootstrap: str, topic: str, lines: list[bytes], *extra: str) -> None:
    """kcat -P: one record per line; pass "-K:" to split key and value at the first ':'."""
    kcat(bootstrap, "-P", "-t", topic, *extra, stdin=b"".join(line + b"\n" for line in lines))


def kcat_consume(bootstrap: str, topic: str, fmt: str = "%p|%o|%k|%s\\n") -> list[bytes]:
    """kcat -C -e: reads the whole topic from the beginning without a group; one output line per record."""
    out = kcat(bootstrap, "-C", "-e", "-q", "-o", "beginning", "-t", topic, "-f", fmt)
    return out.splitlines()


def parse_kcat_lines(lines: list[bytes]) -> dict[int, list[Record]]:
    """Parses lines printed with the default `kcat_consume` format into records per partition."""
    out: dict[int, list[Record]] = defaultdict(list)
    for line in lines:
        p, o, k, v = line.split(b"|", 3)
        out[int(p)].append(Record(int(p), int(o), k, v))
    return dict(out)


def assert_roundtrip(bootstrap: str) -> None:
    """A fresh topic takes a record from a real producer and gives it back to a real consumer."""
    topic = unique_topic("roundtrip")
    create_topic(bootstrap, topic)
    result = produce_ok(bootstrap, topic, keyed_records(10))
    assert_consumed_matches(result.acked, consume_all(bootstrap, topic))
