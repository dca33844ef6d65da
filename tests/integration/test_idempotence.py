"""Will a producer retry write the same message twice?

A fault-injecting proxy drops Produce responses after the broker wrote the batch,
so the client retries batches that are already in the log. With
enable.idempotence=true every record must be in the log exactly once and in order;
the control test shows the same faults do duplicate records without idempotence, so
the first test can fail. Idempotent producers of librdkafka and franz-go (idempotent
by default) produce without errors, and deduplication survives a broker restart.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter

import pytest

from clients import consume_all, create_topic, flatten, keyed_records, produce, sequence_of, unique_topic
from fault_proxy import FaultProxy
from harness import free_loopback_ports
from idempotent_wire import idempotent_produce_request, parse_produce_response
from kafka_wire import call

OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47
UNKNOWN_PRODUCER_ID = 59

RECORDS = 5000


@pytest.fixture
def proxied(start_broker):
    """A broker whose advertised address is a fault-injecting proxy in front of it."""
    (proxy_port,) = free_loopback_ports(1)
    broker = start_broker(f"--advertised-address=127.0.0.1:{proxy_port}")
    proxy = FaultProxy(proxy_port, "127.0.0.1", broker.kafka_port, drop_every=7)
    yield broker, proxy, f"127.0.0.1:{proxy_port}"
    proxy.close()


def produce_through_faults(proxy: FaultProxy, bootstrap: str, topic: str, idempotent: bool):
    create_topic(bootstrap, topic, 3)
    proxy.drop_produce_responses = 10
    config = {
        "enable.idempotence": idempotent,
        "acks": "all",
        "linger.ms": 2,
        "batch.num.messages": 50,
        "max.in.flight.requests.per.connection": 5,
        "retry.backoff.ms": 50,
        "socket.timeout.ms": 10_000,
    }
    result = produce(bootstrap, topic, keyed_records(RECORDS, keys=30), config)
    assert proxy.dropped > 0, "the proxy dropped no Produce response: the test proves nothing"
    return result


def test_idempotent_retries_leave_every_record_exactly_once_in_order(proxied):
    _, proxy, bootstrap = proxied
    topic = unique_topic()
    result = produce_through_faults(proxy, bootstrap, topic, idempotent=True)
    assert not result.errors, result.errors[:3]
    assert len(result.acked) == RECORDS
    consumed = consume_all(bootstrap, topic)
    seqs = Counter(sequence_of(r.value) for r in flatten(consumed))
    assert set(seqs) == set(range(RECORDS)), "records lost"
    assert max(seqs.values()) == 1, f"duplicates: {[s for s, n in seqs.items() if n > 1][:10]}"
    for partition, records in consumed.items():
        s = [sequence_of(r.value) for r in records]
        assert s == sorted(s), f"partition {partition} out of production order"
    # Acknowledged offsets are where the records really are.
    at = {(r.partition, r.offset): r.value for r in flatten(consumed)}
    assert all(at[(r.partition, r.offset)] == r.value for r in result.acked)


def test_without_idempotence_the_same_faults_duplicate_records(proxied):
    _, proxy, bootstrap = proxied
    topic = unique_topic()
    produce_through_faults(proxy, bootstrap, topic, idempotent=False)
    seqs = Counter(sequence_of(r.value) for r in flatten(consume_all(bootstrap, topic)))
    assert max(seqs.values()) > 1, "no duplicates without idempotence: the faults did not cause retries"


@pytest.mark.parametrize("hard", [False, True], ids=["sigterm", "kill-9"])
def test_deduplication_and_sequence_checks_survive_a_broker_restart(start_broker, hard):
    """After a restart (producer state from the snapshot, or rebuilt from the log after
    kill -9) a retried batch gets its original offset, and sequence and epoch rules hold."""
    broker = start_broker()
    b = broker.bootstrap
    topic = unique_topic()
    create_topic(b, topic, 1)

    def send(correlation, *, pid=4242, epoch=0, seq, values=(b"x",)):
        request = idempotent_produce_request(correlation, topic, 0, producer_id=pid, epoch=epoch, base_sequence=seq, values=list(values))
        return parse_produce_response(call(b, request))

    assert send(1, seq=0, values=(b"a", b"b", b"c")) == (0, 0)
    broker.restart(hard=hard)
    assert send(2, seq=0, values=(b"a", b"b", b"c")) == (0, 0), "a retry after the restart gets its original offset"
    assert send(3, seq=7)[0] == OUT_OF_ORDER_SEQUENCE_NUMBER
    assert send(4, seq=3) == (0, 3)
    assert send(5, epoch=1, seq=0) == (0, 4), "a new epoch starts at sequence 0"
    assert send(6, epoch=0, seq=4)[0] == INVALID_PRODUCER_EPOCH
    assert send(7, pid=999, seq=5)[0] == UNKNOWN_PRODUCER_ID
    assert [r.value for r in flatten(consume_all(b, topic))] == [b"a", b"b", b"c", b"x", b"x"]


FRANZ_BIN = os.environ.get("TIDEWAY_FRANZGO_BIN")


@pytest.mark.skipif(not FRANZ_BIN, reason="TIDEWAY_FRANZGO_BIN not set (tests/setup.sh builds it)")
def test_franz_go_produces_idempotently_and_consumes_in_a_group(start_broker):
    broker = start_broker("--group-initial-rebalance-delay-ms=0")
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, 4)
    out = subprocess.run(
        [FRANZ_BIN, broker.bootstrap, topic, unique_topic("g"), "2000"], capture_output=True, timeout=180
    )
    assert out.returncode == 0, out.stderr.decode(errors="replace")[-3000:]
    assert b"produced 2000 consumed 2000" in out.stdout, out.stdout
    seqs = Counter(sequence_of(r.value) for r in flatten(consume_all(broker.bootstrap, topic)))
    assert set(seqs) == set(range(2000)) and max(seqs.values()) == 1


def test_librdkafka_idempotent_producer_produces_without_errors(broker):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, 6)
    result = produce(broker.bootstrap, topic, keyed_records(20_000), {"enable.idempotence": True})
    assert not result.errors and len(result.acked) == 20_000
    assert len(flatten(consume_all(broker.bootstrap, topic))) == 20_000
