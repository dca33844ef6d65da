"""Data replication between three brokers (docs/replication.md): will a record that
was acknowledged with acks=all survive the loss of its leader?

Three brokers on loopback voting in one Raft quorum (--voters), topics with
replication factor 3, fast failure detection (--broker-session-timeout-ms and
--replica-lag-time-max-ms of 3 s) and real clients (librdkafka through
confluent-kafka, plus one hand-built Produce request). Leader, replicas and ISR
are read from Metadata as clients see them, and every wait polls with a deadline.

- kill -9 of each partition's leader in turn under an idempotent acks=all producer:
  every acknowledged record is read back exactly once and in order, the high
  watermark seen by a consumer never goes backwards, committed offsets survive.
- two of three brokers down: acks=all is refused with NOT_ENOUGH_REPLICAS before
  the append; after the restarts nothing acknowledged is lost and writes resume.
- a leader cut off from its followers (a FaultProxy on its replication address):
  the followers leave the ISR, acks=all with min.insync.replicas=1 keeps working,
  they rejoin after the heal and hold every acknowledged record.
- a leader cut off, then killed, with records only it acknowledged (acks=1): the
  new leader's log does not have them, and the old leader truncates that divergent
  tail when it rejoins, so its log equals the others' when it leads again.
- a rolling SIGTERM restart (controlled shutdown) under an idempotent producer
  causes no delivery error at all.
- kill -9 of the group coordinator's broker (the leader of __consumer_offsets-0):
  another in-sync replica takes over and answers exactly the acknowledged
  offsets, takes new commits, and still has them after the old one rejoins.
- the same kill under a librdkafka group member committing as it goes: it keeps
  consuming through the new coordinator, nothing is lost, nothing below an
  acknowledged commit is delivered again, and a fresh member starts at the end.

Broker ids are the index in the list `start_cluster` returns (--node-id=i).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter, defaultdict
from typing import Iterable

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

import kafka_wire as wire
from clients import (
    ProduceResult,
    Record,
    admin_client,
    admin_result,
    assert_consumed_matches,
    consume_all,
    flatten,
    keyed_records,
    make_consumer,
    make_producer,
    produce,
    produce_ok,
    produce_one,
    sequence_of,
    unique_topic,
    watermarks,
)
from fault_proxy import FaultProxy
from groups import commit, committed
from harness import Broker, free_loopback_ports, wait_until

# Several kills, restarts and catch-ups per test: more than the 300 s of pytest.ini.
pytestmark = pytest.mark.timeout(900)

NOT_ENOUGH_REPLICAS = 19

# Fast failure detection for loopback clusters (the defaults are 9 s and 30 s).
FAST_TIMINGS = {
    "broker-session-timeout-ms": "3000",
    "replica-lag-time-max-ms": "3000",
    # Below the harness's 30 s SIGTERM budget, so a stuck controlled shutdown still exits.
    "controlled-shutdown-timeout-ms": "20000",
}
WAIT_S = 120.0  # deadline of every wait on the cluster: generous, a 2-core machine is busy
READY_S = 90.0
STOP_S = 60.0
POLL_S = 0.25  # metadata polls create a client per broker: not every 50 ms


# -- cluster -----------------------------------------------------------------------------


@pytest.fixture
def proxies():
    """The FaultProxies a test puts in front of brokers; closed at teardown."""
    made: list[FaultProxy] = []
    yield made
    for proxy in made:
        proxy.close()


def start_cluster(start_broker, size: int = 3, proxies: list[FaultProxy] | None = None, **flags) -> list[Broker]:
    """Starts `size` brokers voting in one quorum with FAST_TIMINGS; waits until all are ready.

    `flags` add or override broker flags by name with underscores
    (replica_lag_time_max_ms=60000). With `proxies` (a list, filled here), each
    broker's --replication-advertised-address is a FaultProxy forwarding to its
    Kafka port: followers fetch through it, clients use the broker directly.
    """
    ports = free_loopback_ports(2 * size)  # one call, so admin and proxy ports are distinct
    admin_ports, replication_ports = ports[:size], ports[size:]
    voters = ",".join(f"{i}@127.0.0.1:{p}" for i, p in enumerate(admin_ports))
    timings = {**FAST_TIMINGS, **{k.replace("_", "-"): str(v) for k, v in flags.items()}}
    brokers = []
    for i in range(size):
        settings = {"node-id": str(i), "voters": voters, "admin-listen": f"127.0.0.1:{admin_ports[i]}", **timings}
        if proxies is not None:
            settings["replication-advertised-address"] = f"127.0.0.1:{replication_ports[i]}"
        brokers.append(start_broker(wait_ready=False, name=f"b{i}", settings=settings))
    if proxies is not None:
        # Followers that fetch before their proxy exists are refused and retry.
        proxies.extend(FaultProxy(replication_ports[i], "127.0.0.1", b.kafka_port) for i, b in enumerate(brokers))
    for b in brokers:
        b.wait_ready(READY_S)
    return brokers


def running(brokers: list[Broker]) -> list[tuple[int, Broker]]:
    return [(i, b) for i, b in enumerate(brokers) if b.is_running()]


def bootstrap_of(brokers: list[Broker], only_running: bool = True) -> str:
    """Bootstrap list for a client: the running brokers, or all (for clients that outlive kills)."""
    chosen = [b for _, b in running(brokers)] if only_running else brokers
    return ",".join(b.bootstrap for b in chosen)


def restart_together(*brokers: Broker) -> None:
    """Starts stopped brokers at once (a quorum may need more than one of them) and waits for all."""
    for b in brokers:
        b.start(wait_ready=False)
    for b in brokers:
        b.wait_ready(READY_S)


# -- metadata as clients see it ----------------------------------------------------------


def partitions_seen_by(broker: Broker, topic: str) -> dict:
    """partition id -> PartitionMetadata (.leader, .replicas, .isrs) from `broker`'s own Metadata."""
    md = admin_client(broker.bootstrap).list_topics(timeout=10)
    t = md.topics.get(topic)
    assert t is not None and t.error is None, f"{broker.name}: topic {topic} not in metadata ({t and t.error})"
    return dict(t.partitions)


def agreed(brokers: list[Broker], topic: str, partition: int, field: str):
    """`field` of `partition` when every running broker reports the same value, else None."""
    values = []
    for _, b in running(brokers):
        p = partitions_seen_by(b, topic).get(partition)
        if p is None:
            return None
        v = getattr(p, field)
        values.append(sorted(v) if isinstance(v, list) else v)
    return values[0] if values and all(v == values[0] for v in values) else None


def leader_of(brokers: list[Broker], topic: str, partition: int) -> int | None:
    """The leader every running broker reports, if it is a running broker; else None."""
    leader = agreed(brokers, topic, partition, "leader")
    alive = {i for i, _ in running(brokers)}
    return leader if leader in alive else None


def isr_of(brokers: list[Broker], topic: str, partition: int) -> list[int] | None:
    """The ISR (sorted) every running broker reports, or None while they disagree."""
    return agreed(brokers, topic, partition, "isrs")


def wait_leader(brokers: list[Broker], topic: str, partition: int, exclude: Iterable[int] = ()) -> int:
    """Waits until the running brokers agree on a running leader not in `exclude`; returns it."""
    excluded = set(exclude)

    def elected() -> tuple[int] | None:  # a tuple: broker 0 is a valid but falsy leader
        leader = leader_of(brokers, topic, partition)
        return (leader,) if leader is not None and leader not in excluded else None

    return wait_until(
        elected,
        WAIT_S,
        f"a leader of {topic}[{partition}] other than {sorted(excluded)} on every running broker",
        POLL_S,
    )[0]


def wait_isr(brokers: list[Broker], topic: str, partition: int, isr: list[int]) -> None:
    wait_until(
        lambda: isr_of(brokers, topic, partition) == sorted(isr),
        WAIT_S,
        f"ISR of {topic}[{partition}] == {sorted(isr)} on every running broker",
        POLL_S,
    )


def in_sync(brokers: list[Broker], topic: str, partitions: int) -> bool:
    """Every broker runs and reports every partition with a live leader and all replicas in the ISR."""
    everyone = list(range(len(brokers)))
    if len(running(brokers)) != len(brokers):
        return False
    for _, b in running(brokers):
        seen = partitions_seen_by(b, topic)
        if sorted(seen) != list(range(partitions)):
            return False
        for p in seen.values():
            if p.leader not in everyone or sorted(p.replicas) != everyone or sorted(p.isrs) != everyone:
                return False
    return True


def wait_in_sync(brokers: list[Broker], topic: str, partitions: int) -> None:
    wait_until(
        lambda: in_sync(brokers, topic, partitions),
        WAIT_S,
        f"every broker in the ISR of all {partitions} partitions of {topic}, as every broker reports",
        POLL_S,
    )


def wait_out_of_every_isr(brokers: list[Broker], topic: str, partitions: int, gone: int) -> None:
    """Waits until the running brokers show broker `gone` in no ISR and a running leader everywhere."""

    def out() -> bool:
        for p in range(partitions):
            isr = isr_of(brokers, topic, p)
            if isr is None or gone in isr or leader_of(brokers, topic, p) is None:
                return False
        return True

    wait_until(out, WAIT_S, f"broker {gone} out of every ISR of {topic}, with live leaders", POLL_S)


def create_replicated_topic(brokers: list[Broker], topic: str, partitions: int, min_isr: int, rf: int = 3) -> None:
    """CreateTopics with replication factor `rf` and min.insync.replicas; waits until all are in sync."""
    new = NewTopic(topic, num_partitions=partitions, replication_factor=rf, config={"min.insync.replicas": str(min_isr)})
    admin_result(bootstrap_of(brokers), lambda a: a.create_topics([new], operation_timeout=30), topic)
    wait_in_sync(brokers, topic, partitions)


# -- reading back ------------------------------------------------------------------------


def high_watermark(bootstrap: str, topic: str, partition: int) -> int:
    consumer = make_consumer(bootstrap)
    try:
        return watermarks(consumer, topic, partition)[1]
    finally:
        consumer.close()


def assert_log_is(brokers: list[Broker], topic: str, expected: list[Record], who: str) -> None:
    """The single partition of `topic`, read through the current leader, is exactly `expected`.

    Waits first until the leader's high watermark reaches the end of `expected`: a new
    leader may answer with an older one until its followers caught up (KIP-207).
    """
    boot = bootstrap_of(brokers)
    wait_until(
        lambda: high_watermark(boot, topic, 0) >= len(expected),
        WAIT_S,
        f"the high watermark of {topic}[0] to reach {len(expected)} with {who} leading",
        POLL_S,
    )
    consumed = consume_all(boot, topic)
    try:
        assert_consumed_matches(expected, consumed, exact=True)
    except AssertionError as e:
        raise AssertionError(f"with {who} leading: {e}") from None


def assert_every_ack_read_once_in_order(bootstrap: str, topic: str, result: ProduceResult, exact: bool = True) -> None:
    """Every acknowledged record is in the log once, where it was acknowledged, in production order."""
    consumed = consume_all(bootstrap, topic)
    seqs = Counter(sequence_of(r.value) for r in flatten(consumed))
    lost = sorted({sequence_of(r.value) for r in result.acked} - set(seqs))
    assert not lost, f"{len(lost)} acknowledged records not read back, e.g. sequence numbers {lost[:10]}"
    twice = sorted(s for s, n in seqs.items() if n > 1)
    assert not twice, f"{len(twice)} records read more than once, e.g. sequence numbers {twice[:10]}"
    assert_consumed_matches(result.acked, consumed, exact=exact)


# -- load --------------------------------------------------------------------------------


class ProducerThread(threading.Thread):
    """Produces keyed, numbered records (clients.keyed_records format) until `finish()`.

    Idempotent and acks=all unless `config` says otherwise, with a long
    message.timeout.ms so a leader change is ridden out by retries, not reported.
    Every acknowledgement and delivery error is recorded in `result`; fatal client
    errors in `fatal`. At most `max_unacked` records are outstanding at a time.
    """

    def __init__(self, bootstrap: str, topic: str, config: dict | None = None, keys: int = 60,
                 pace_s: float = 0.003, max_unacked: int = 5000, flush_timeout_s: float = 180.0):
        super().__init__(name=f"producer-{topic}", daemon=True)
        self.bootstrap, self.topic, self.keys = bootstrap, topic, keys
        self.pace_s, self.max_unacked, self.flush_timeout_s = pace_s, max_unacked, flush_timeout_s
        self.config = {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 180_000,
            "retry.backoff.ms": 100,
            **(config or {}),
        }
        self.result = ProduceResult()
        self.fatal: list[KafkaError] = []
        self.sent = 0  # records handed to the client so far; the next record's sequence number
        self.crashed: BaseException | None = None
        self._acked_by_partition: Counter = Counter()
        self._max_acked_seq: dict[int, int] = defaultdict(lambda: -1)
        self._lock = threading.Lock()
        self._halt = threading.Event()

    # callbacks run in this thread, inside poll()/flush()
    def _on_delivery(self, err, msg) -> None:
        with self._lock:
            if err is not None:
                self.result.errors.append((err, msg.key(), msg.value()))
                return
            _, ts = msg.timestamp()
            self.result.acked.append(Record(msg.partition(), msg.offset(), msg.key(), msg.value(), ts))
            self._acked_by_partition[msg.partition()] += 1
            seq = sequence_of(msg.value())
            self._max_acked_seq[msg.partition()] = max(self._max_acked_seq[msg.partition()], seq)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            with self._lock:
                self.fatal.append(err)

    def run(self) -> None:
        try:
            producer = make_producer(self.bootstrap, {**self.config, "error_cb": self._on_error})
            while not self._halt.is_set() and not self.fatal:
                with self._lock:
                    outstanding = self.sent - len(self.result.acked) - len(self.result.errors)
                if outstanding >= self.max_unacked:
                    producer.poll(0.05)
                    continue
                ((key, value),) = keyed_records(1, keys=self.keys, start=self.sent)
                produce_one(producer, self.topic, self._on_delivery, key=key, value=value)
                self.sent += 1
                producer.poll(self.pace_s)  # paces the load and serves delivery reports
            self.result.pending = producer.flush(self.flush_timeout_s)
        except BaseException as e:  # noqa: BLE001 - reported by finish()
            self.crashed = e

    # read from the test's thread
    def acked(self, partition: int | None = None) -> int:
        with self._lock:
            return len(self.result.acked) if partition is None else self._acked_by_partition[partition]

    def max_acked_seq(self, partition: int) -> int:
        """The highest sequence number acknowledged in `partition` (-1 before any)."""
        with self._lock:
            return self._max_acked_seq[partition]

    def acked_snapshot(self) -> list[Record]:
        with self._lock:
            return list(self.result.acked)

    def wait_progress(self, partitions: Iterable[int], what: str) -> None:
        """Waits until each partition acknowledged a record produced after this call.

        Such a record cannot have been acknowledged by a broker that was down at the call.
        """
        mark = self.sent

        def progressed(p: int) -> bool:
            assert not self.fatal and self.crashed is None, f"the producer stopped: {self.fatal or self.crashed!r}"
            return self.max_acked_seq(p) >= mark

        for p in partitions:
            wait_until(lambda: progressed(p), WAIT_S, f"{what}: an ack in partition {p} of a record sent after it")

    def finish(self) -> ProduceResult:
        """Stops producing, flushes (waits for outstanding acks) and returns the result."""
        self._halt.set()
        self.join(self.flush_timeout_s + 30)
        assert not self.is_alive(), f"the producer did not finish flushing within {self.flush_timeout_s + 30}s"
        if self.crashed is not None:
            raise AssertionError(f"the producer thread failed: {self.crashed!r}") from self.crashed
        return self.result

    def __enter__(self) -> "ProducerThread":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        # On a failure, don't leave a thread producing into the next test.
        self.flush_timeout_s = min(self.flush_timeout_s, 10.0)
        self._halt.set()
        self.join(60)


class WatermarkSampler(threading.Thread):
    """Reads one partition's high watermark through a consumer (ListOffsets) every `interval_s`."""

    def __init__(self, bootstrap: str, topic: str, partition: int, interval_s: float = 0.2):
        super().__init__(name=f"hw-{topic}-{partition}", daemon=True)
        self.bootstrap, self.topic, self.partition, self.interval_s = bootstrap, topic, partition, interval_s
        self.samples: list[int] = []
        self.failures = 0  # no answer (leader moving, broker down): no sample, not a failure
        self._halt = threading.Event()

    def run(self) -> None:
        consumer = make_consumer(self.bootstrap)
        try:
            tp = TopicPartition(self.topic, self.partition)
            while not self._halt.wait(self.interval_s):
                try:
                    _, high = consumer.get_watermark_offsets(tp, timeout=5, cached=False)
                    self.samples.append(high)
                except KafkaException:
                    self.failures += 1
        finally:
            consumer.close()

    def finish(self) -> list[int]:
        self._halt.set()
        self.join(30)
        return self.samples

    def __enter__(self) -> "WatermarkSampler":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.finish()


def final_high_watermark(bootstrap: str, topic: str, partition: int) -> int | None:
    """The partition's high watermark through ListOffsets, or None while it is not available."""
    consumer = make_consumer(bootstrap)
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5, cached=False)
        return high
    except KafkaException:
        return None
    finally:
        consumer.close()


def produce_refused_over_the_wire(bootstrap: str, topic: str, partition: int, seq: int) -> int:
    """One acks=all Produce v3 request; returns the partition's error code (0 = appended)."""
    batch = wire.record_batch([(b"wire", b"%d|wire|" % seq)])
    try:
        response = wire.call(bootstrap, wire.produce_request_v3(seq, topic, partition, batch, acks=-1))
    except socket.timeout:
        raise AssertionError(
            f"no Produce answer for {topic}[{partition}] within 10 s: an acks=all produce below "
            "min.insync.replicas must be refused at once (NOT_ENOUGH_REPLICAS), not parked"
        ) from None
    return wire.parse_produce_response_v3(response)[(topic, partition)]


# -- tests -------------------------------------------------------------------------------


def test_kill_9_of_each_partition_leader_loses_no_acknowledged_record(start_broker):
    b = start_cluster(start_broker)
    topic, group, partitions = unique_topic("repl"), unique_topic("g"), 3
    create_replicated_topic(b, topic, partitions, min_isr=2)

    with ProducerThread(bootstrap_of(b, only_running=False), topic) as producer, \
            WatermarkSampler(bootstrap_of(b, only_running=False), topic, 0) as hw:
        wait_until(lambda: all(producer.acked(p) >= 50 for p in range(partitions)), WAIT_S, "acks in every partition")

        # A group commits where the producer has got to; the offsets must outlive the kills.
        acked = producer.acked_snapshot()
        offsets = {p: 1 + max(r.offset for r in acked if r.partition == p) for p in range(partitions)}
        commit(bootstrap_of(b), group, topic, offsets)
        assert committed(bootstrap_of(b), group, topic, list(offsets)) == offsets

        for p in range(partitions):
            leader = wait_leader(b, topic, p)
            b[leader].kill()
            new = wait_leader(b, topic, p, exclude={leader})
            assert new != leader
            # Writes go on with one broker of three down (ISR 2 = min.insync.replicas).
            producer.wait_progress(range(partitions), f"partition {p}'s leader {leader} killed, {new} elected")
            restart_together(b[leader])
            wait_in_sync(b, topic, partitions)

        producer.wait_progress(range(partitions), "every broker back")
        result = producer.finish()
        samples = hw.finish()

    assert not producer.fatal, f"fatal producer errors: {producer.fatal}"
    assert result.pending == 0, f"{result.pending} records still unacknowledged after flush"
    # Delivery errors are not expected, but the promise checked here is about acks:
    # a failed record may or may not be in the log, so extras are allowed only then.
    assert_every_ack_read_once_in_order(bootstrap_of(b), topic, result, exact=not result.errors)

    # One more sample once everything settled, so progress never depends on how many
    # samples the run's timing allowed.
    final = wait_until(lambda: final_high_watermark(bootstrap_of(b), topic, 0), WAIT_S, f"{topic}[0]'s high watermark")
    samples = samples + [final]
    backwards = [(i, a, c) for i, (a, c) in enumerate(zip(samples, samples[1:])) if c < a]
    assert not backwards, f"the high watermark of {topic}[0] went backwards (sample index, before, after): {backwards[:5]}"
    assert len(samples) >= 2 and samples[-1] > samples[0], f"the sampler saw no progress: {samples[:3]}…{samples[-3:]}"

    wait_until(
        lambda: committed(bootstrap_of(b), group, topic, list(offsets)) == offsets,
        WAIT_S,
        f"the offsets committed before the kills ({offsets})",
        POLL_S,
    )


def test_with_two_of_three_brokers_down_acks_all_is_refused_and_nothing_acknowledged_is_lost(start_broker):
    b = start_cluster(start_broker)
    topic, partitions = unique_topic("repl"), 3
    create_replicated_topic(b, topic, partitions, min_isr=2)
    acked = produce_ok(bootstrap_of(b), topic, keyed_records(300)).acked

    # One at a time, because the brokers are also the metadata quorum: with two of three
    # gone nothing can be committed, so the second must leave while a majority remains.
    # Broker 2 crashes: the quorum (0 and 1) fences it, it leaves every ISR, writes go on.
    b[2].kill()
    wait_out_of_every_isr(b, topic, partitions, gone=2)
    acked += produce_ok(bootstrap_of(b), topic, keyed_records(100, start=300)).acked

    # Broker 1 stops gracefully while the quorum still has a majority: its controlled
    # shutdown hands its leaderships to broker 0 and takes it out of every ISR.
    assert b[1].stop(STOP_S) == 0
    for p in range(partitions):
        wait_until(
            lambda: leader_of(b, topic, p) == 0 and isr_of(b, topic, p) == [0],
            WAIT_S,
            f"broker 0 to report itself leader of {topic}[{p}] with ISR [0]",
            POLL_S,
        )

    # ISR 1 < min.insync.replicas 2: refused before the append.
    survivor = b[0].bootstrap
    for p in range(partitions):
        code = produce_refused_over_the_wire(survivor, topic, p, seq=20_000 + p)
        assert code == NOT_ENOUGH_REPLICAS, f"acks=all Produce to {topic}[{p}] with ISR [0]: error {code}"
    # librdkafka retries NOT_ENOUGH_REPLICAS; with retries=0 it reports the broker's error.
    refused = produce(survivor, topic, keyed_records(30, start=10_000), {"retries": 0, "message.timeout.ms": 30_000}, timeout=60)
    assert not refused.acked, f"{len(refused.acked)} acks=all records accepted with ISR [0] and min.insync.replicas=2"
    assert refused.pending == 0
    assert refused.error_codes() == {NOT_ENOUGH_REPLICAS}, [str(e) for e, _, _ in refused.errors[:3]]

    restart_together(b[1], b[2])
    wait_in_sync(b, topic, partitions)
    acked += produce_ok(bootstrap_of(b), topic, keyed_records(100, start=400)).acked
    # Exact: the refused records are nowhere, every acknowledged one is where it was acknowledged.
    assert_every_ack_read_once_in_order(bootstrap_of(b), topic, ProduceResult(acked=acked), exact=True)


def test_a_leader_cut_off_from_its_followers_shrinks_the_isr_and_they_rejoin_after_the_heal(start_broker, proxies):
    b = start_cluster(start_broker, proxies=proxies)
    topic = unique_topic("repl")
    create_replicated_topic(b, topic, 1, min_isr=1)
    idempotent = {"enable.idempotence": True}  # acks=all; a retried request must not duplicate
    acked = produce_ok(bootstrap_of(b), topic, keyed_records(200), idempotent).acked

    leader = wait_leader(b, topic, 0)
    proxies[leader].cut()
    # The followers can no longer fetch; records arrive, so they fall behind. These
    # acks=all produces complete once the leader has taken them out of the ISR.
    acked += produce_ok(bootstrap_of(b), topic, keyed_records(200, start=200), idempotent).acked
    wait_isr(b, topic, 0, [leader])
    assert leader_of(b, topic, 0) == leader, "cutting replication must not move the leadership"
    wait_until(lambda: proxies[leader].refused > 0, WAIT_S, "a follower's refused reconnect through the cut proxy")
    # ISR [leader] satisfies min.insync.replicas=1: acks=all goes on at once.
    acked += produce_ok(bootstrap_of(b), topic, keyed_records(200, start=400), idempotent).acked

    proxies[leader].heal()
    wait_in_sync(b, topic, 1)

    # The followers hold everything: with the old leader dead, a follower leads and serves it all.
    b[leader].kill()
    new = wait_leader(b, topic, 0, exclude={leader})
    assert_log_is(b, topic, acked, f"broker {new} (the old leader {leader} killed)")


def test_a_former_leader_truncates_the_divergent_tail_only_it_acknowledged(start_broker, proxies):
    # A long lag time: the cut-off followers stay in the ISR, so the leader's
    # acks=1 records stay above the high watermark, never committed.
    b = start_cluster(start_broker, proxies=proxies, replica_lag_time_max_ms=60_000)
    topic = unique_topic("repl")
    create_replicated_topic(b, topic, 1, min_isr=2)
    committed_log = produce_ok(bootstrap_of(b), topic, keyed_records(100)).acked
    base = len(committed_log)

    old = wait_leader(b, topic, 0)
    proxies[old].cut()
    tail = produce_ok(bootstrap_of(b), topic, keyed_records(200, start=100_000), {"acks": "1"}).acked
    assert min(r.offset for r in tail) == base, "the acks=1 records should follow the committed ones"
    # Only the leader has them: the high watermark stays, consumers do not see them.
    assert high_watermark(b[old].bootstrap, topic, 0) == base
    assert_consumed_matches(committed_log, consume_all(b[old].bootstrap, topic), exact=True)

    b[old].kill()
    new = wait_leader(b, topic, 0, exclude={old})
    majority = produce_ok(bootstrap_of(b), topic, keyed_records(100, start=200_000)).acked
    assert min(r.offset for r in majority) == base, "the new leader's records take the offsets of the lost tail"
    committed_log += majority
    assert_log_is(b, topic, committed_log, f"broker {new} (old leader {old} killed)")

    # The old leader comes back as a follower: it must drop its 200-record tail
    # (longer than the 100 records that replaced it) before it can be in sync.
    proxies[old].heal()
    restart_together(b[old])
    wait_in_sync(b, topic, 1)

    # Kill the leader until the old one leads (election: first live ISR member in
    # replica order), reading the whole log from each leader on the way.
    led = [new]
    for _ in range(4):
        if old in led:
            break
        current = wait_leader(b, topic, 0)
        b[current].kill()
        elected = wait_leader(b, topic, 0, exclude={current})
        led.append(elected)
        assert_log_is(b, topic, committed_log, f"broker {elected} (broker {current} killed)")
        restart_together(b[current])
        wait_in_sync(b, topic, 1)
    replicas = agreed(b, topic, 0, "replicas")
    assert old in led, f"the old leader {old} never led again; leaders in turn: {led}, replicas {replicas}"

    # It leads a consistent log: new writes continue right after the committed records.
    assert wait_leader(b, topic, 0) == old
    more = produce_ok(bootstrap_of(b), topic, keyed_records(50, start=300_000)).acked
    assert min(r.offset for r in more) == len(committed_log)
    assert_log_is(b, topic, committed_log + more, f"broker {old}, after new writes")


def test_a_rolling_sigterm_restart_causes_no_produce_errors(start_broker):
    b = start_cluster(start_broker)
    topic, partitions = unique_topic("repl"), 3
    create_replicated_topic(b, topic, partitions, min_isr=2)

    with ProducerThread(bootstrap_of(b, only_running=False), topic) as producer:
        producer.wait_progress(range(partitions), "the producer starting")
        for i, broker in enumerate(b):
            # Controlled shutdown: leaderships move to in-sync replicas before it stops.
            assert broker.stop(STOP_S) == 0, f"{broker.name} did not exit cleanly on SIGTERM"
            wait_out_of_every_isr(b, topic, partitions, gone=i)
            producer.wait_progress(range(partitions), f"{broker.name} stopped")
            restart_together(broker)
            wait_in_sync(b, topic, partitions)
        producer.wait_progress(range(partitions), "the rolling restart done")
        result = producer.finish()

    assert not producer.fatal, f"fatal producer errors: {producer.fatal}"
    assert not result.errors, (
        f"{len(result.errors)} delivery errors during a rolling restart, first: {result.errors[0][0]}; "
        f"codes {sorted(result.error_codes())}"
    )
    assert result.pending == 0, f"{result.pending} records still unacknowledged after flush"
    assert len(result.acked) == producer.sent
    assert_every_ack_read_once_in_order(bootstrap_of(b), topic, result, exact=True)


# -- group coordinator failover ----------------------------------------------------------

OFFSETS_TOPIC = "__consumer_offsets"  # its partition 0's leader runs the group coordinator


def commit_acknowledged(consumer: Consumer, topic: str, offsets: dict[int, int]) -> None:
    """A synchronous OffsetCommit; raises KafkaException unless every partition was acknowledged."""
    result = consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    refused = [tp for tp in result or [] if tp.error is not None]
    if refused:
        raise KafkaException(refused[0].error)


def commit_strictly(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """groups.commit, but a per-partition error in the answer fails the test too."""
    consumer = make_consumer(bootstrap, {"group.id": group})
    try:
        commit_acknowledged(consumer, topic, offsets)
    finally:
        consumer.close()


def first_committed_answer(bootstrap: str, group: str, topic: str, partitions: Iterable[int], what: str) -> dict[int, int]:
    """The first OffsetFetch answer without an error, as partition -> offset.

    Errors (no coordinator yet, NOT_COORDINATOR, a time-out while it moves) are
    retried until WAIT_S; the first error-free answer is returned as it is, so a
    coordinator that answers before it has loaded the offsets is caught, not waited out.
    """
    tps = [TopicPartition(topic, p) for p in partitions]

    def answer() -> dict[int, int]:
        consumer = make_consumer(bootstrap, {"group.id": group})
        try:
            got = consumer.committed(tps, timeout=10)
        finally:
            consumer.close()
        failed = [tp for tp in got if tp.error is not None]
        assert not failed, f"OffsetFetch error for {failed[0].partition}: {failed[0].error}"
        return {tp.partition: tp.offset for tp in got}

    return wait_until(answer, WAIT_S, what, POLL_S)


def test_committed_offsets_survive_the_loss_of_the_coordinator(start_broker):
    b = start_cluster(start_broker)
    topic, group, partitions = unique_topic("repl"), unique_topic("g"), 3
    create_replicated_topic(b, topic, partitions, min_isr=2)
    acked = produce_ok(bootstrap_of(b), topic, keyed_records(600)).acked
    ends = {p: 1 + max(r.offset for r in acked if r.partition == p) for p in range(partitions)}
    # The offsets topic exists with all three brokers as in-sync replicas.
    wait_in_sync(b, OFFSETS_TOPIC, 1)

    first = {p: ends[p] // (p + 2) for p in range(partitions)}  # distinct, inside the log
    commit_strictly(bootstrap_of(b), group, topic, first)
    assert first_committed_answer(bootstrap_of(b), group, topic, list(first), "the first commit read back") == first

    coordinator = wait_leader(b, OFFSETS_TOPIC, 0)
    b[coordinator].kill()
    successor = wait_leader(b, OFFSETS_TOPIC, 0, exclude={coordinator})
    assert successor != coordinator

    # Asked through the live brokers only, the new coordinator answers what was acknowledged.
    got = first_committed_answer(
        bootstrap_of(b), group, topic, list(first),
        f"an answer from the new coordinator (broker {successor}; broker {coordinator} killed)",
    )
    assert got == first, f"after broker {coordinator} (coordinator) died, broker {successor} answered {got}, committed {first}"

    # The new coordinator takes commits, with one replica of the offsets partition down.
    second = {p: ends[p] - p - 1 for p in range(partitions)}
    commit_strictly(bootstrap_of(b), group, topic, second)
    got = first_committed_answer(bootstrap_of(b), group, topic, list(second), "the commit to the new coordinator read back")
    assert got == second, f"broker {successor} acknowledged {second} but answers {got}"

    # The old coordinator rejoins as a follower and catches up; the offsets stay the new ones.
    restart_together(b[coordinator])
    wait_isr(b, OFFSETS_TOPIC, 0, [0, 1, 2])
    for via in [bootstrap_of(b), b[coordinator].bootstrap]:
        got = first_committed_answer(via, group, topic, list(second), f"the offsets after broker {coordinator} rejoined")
        assert got == second, f"after broker {coordinator} rejoined, asked via {via}: {got}, committed {second}"


class GroupMember:
    """One librdkafka consumer in a group, driven by the test's thread: commit-after-processing.

    `consume(until)` polls, records every delivered record and commits the offsets
    of processed records synchronously every `batch` records. A commit that fails
    (coordinator moving, rebalance) is kept and retried with the next one; `acked`
    holds, per partition, the highest offset whose commit the broker acknowledged.
    """

    def __init__(self, bootstrap: str, group: str, topic: str, batch: int = 20):
        self.topic, self.batch = topic, batch
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
        })
        self.consumer.subscribe([topic])
        self.delivered: list[tuple[int, int, bytes]] = []  # (partition, offset, value) in delivery order
        self.pending: dict[int, int] = {}  # partition -> next offset, processed but not yet committed
        self.since_commit = 0
        self.acked: dict[int, int] = {}
        self.commit_errors: list[str] = []
        self.client_errors: list[str] = []

    def commit_processed(self) -> None:
        """Commits what was processed and not yet committed; a failure is recorded, not raised."""
        offsets = {p: o for p, o in self.pending.items() if o > self.acked.get(p, -1)}
        if not offsets:
            self.pending.clear()
            return
        try:
            commit_acknowledged(self.consumer, self.topic, offsets)
        except KafkaException as e:
            self.commit_errors.append(f"{offsets}: {e.args[0]}")
            return
        for p, o in offsets.items():
            self.acked[p] = max(self.acked.get(p, -1), o)
        self.pending.clear()
        self.since_commit = 0

    def consume(self, until, what: str, timeout: float = WAIT_S) -> None:
        """Polls and commits until `until(self)` is true, or fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not until(self):
            assert time.monotonic() < deadline, (
                f"timed out after {timeout}s consuming until {what}: {len(self.delivered)} records delivered, "
                f"commits acknowledged up to {self.acked}, last commit errors {self.commit_errors[-3:]}, "
                f"last client errors {self.client_errors[-3:]}"
            )
            msg = self.consumer.poll(0.2)
            if msg is not None and msg.error() is not None:
                assert not msg.error().fatal(), f"fatal consumer error: {msg.error()}"
                self.client_errors.append(str(msg.error()))
            elif msg is not None:
                p, o = msg.partition(), msg.offset()
                self.delivered.append((p, o, msg.value()))
                self.pending[p] = max(self.pending.get(p, 0), o + 1)
                self.since_commit += 1
            if self.since_commit >= self.batch or (msg is None and self.pending):
                self.commit_processed()

    def close(self) -> None:
        self.consumer.close()


def test_a_consumer_group_keeps_consuming_when_the_coordinators_broker_dies(start_broker):
    b = start_cluster(start_broker, group_initial_rebalance_delay_ms=0)
    topic, group, partitions, n = unique_topic("repl"), unique_topic("g"), 3, 3000
    create_replicated_topic(b, topic, partitions, min_isr=2)
    acked = produce_ok(bootstrap_of(b), topic, keyed_records(n), {"enable.idempotence": True}).acked
    ends = {p: 1 + max((r.offset for r in acked if r.partition == p), default=-1) for p in range(partitions)}
    assert all(ends.values()), f"a partition got no records: {ends}"
    expected = {(r.partition, r.offset): r.value for r in acked}
    wait_in_sync(b, OFFSETS_TOPIC, 1)

    # Bootstrapped from all three: it must not matter which one dies.
    member = GroupMember(bootstrap_of(b, only_running=False), group, topic)
    try:
        member.consume(lambda m: len(m.delivered) >= n // 2, f"{n // 2} records delivered")
        member.commit_processed()
        assert not member.pending, f"the commit before the kill failed: {member.commit_errors[-1:]}"
        before_kill = dict(member.acked)
        delivered_before_kill = len(member.delivered)

        coordinator = wait_leader(b, OFFSETS_TOPIC, 0)
        b[coordinator].kill()

        def caught_up(m: GroupMember) -> bool:
            seen = {(p, o) for p, o, _ in m.delivered}
            return seen >= set(expected) and m.acked == ends and not m.pending

        member.consume(
            caught_up,
            f"every record delivered and committed after broker {coordinator} (coordinator) was killed",
            timeout=180,
        )
    finally:
        member.close()
    successor = wait_leader(b, OFFSETS_TOPIC, 0, exclude={coordinator})

    # Nothing lost, nothing changed; duplicates are allowed (at-least-once).
    wrong = [(p, o, v) for p, o, v in member.delivered if expected.get((p, o)) != v]
    assert not wrong, f"{len(wrong)} delivered records differ from what was acknowledged, e.g. {wrong[:3]}"
    # The commits acknowledged before the kill survived it: nothing below them came again.
    after = member.delivered[delivered_before_kill:]
    rewound = [(p, o) for p, o, _ in after if o < before_kill.get(p, 0)]
    assert not rewound, (
        f"{len(rewound)} records below the offsets committed before the kill ({before_kill}) "
        f"were delivered again after it, e.g. {rewound[:5]}"
    )

    # A fresh member of the group starts at the end: the commits after the failover landed.
    got = first_committed_answer(bootstrap_of(b), group, topic, range(partitions), "the group's final offsets")
    assert got == ends, f"committed offsets {got} != high watermarks {ends} (coordinator now broker {successor})"
    markers = produce_ok(
        bootstrap_of(b), topic, [{"key": b"marker", "value": b"marker-%d" % p, "partition": p} for p in range(partitions)]
    ).acked
    assert {r.partition: r.offset for r in markers} == ends
    fresh = GroupMember(bootstrap_of(b), group, topic)
    try:
        fresh.consume(lambda m: {p for p, _, _ in m.delivered} == set(range(partitions)), "a record from every partition")
        first_seen = {}
        for p, o, _ in fresh.delivered:
            first_seen.setdefault(p, o)
        assert first_seen == ends, f"a fresh member started at {first_seen}, the committed ends are {ends}"
    finally:
        fresh.close()
    print(
        f"coordinator {coordinator} -> {successor}; {len(member.delivered)} deliveries for {n} records; "
        f"{len(member.commit_errors)} failed commits, e.g. {member.commit_errors[:2]}; "
        f"client errors {member.client_errors[:3]}"
    )
