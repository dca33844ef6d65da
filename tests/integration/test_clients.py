"""Real clients (confluent-kafka, kcat) produce and consume; data survives restarts and SIGKILL."""

import pytest

from clients import (
    ProduceResult,
    Record,
    assert_consumed_matches,
    consume_all,
    create_topic,
    delivery_collector,
    flatten,
    flush,
    kcat_consume,
    kcat_produce,
    keyed_records,
    make_producer,
    parse_kcat_lines,
    produce_ok,
    produce_one,
    unique_topic,
)

CODECS = ["gzip", "snappy", "lz4", "zstd"]  # all four are in Debian's kcat and confluent-kafka's wheel


def test_keyed_records_round_trip_and_survive_restart(broker):
    topic = unique_topic("keyed")
    create_topic(broker.bootstrap, topic, partitions=6)

    result = produce_ok(broker.bootstrap, topic, keyed_records(100_000, payload=b"p" * 40))
    assert {r.partition for r in result.acked} == set(range(6)), "keys should spread over all partitions"
    assert_consumed_matches(result.acked, consume_all(broker.bootstrap, topic))

    broker.restart()
    assert_consumed_matches(result.acked, consume_all(broker.bootstrap, topic))


def test_acknowledged_records_survive_sigkill_while_producing(broker):
    topic = unique_topic("sigkill")
    create_topic(broker.bootstrap, topic, partitions=6)
    result = ProduceResult()
    on_delivery = delivery_collector(result)
    producer = make_producer(broker.bootstrap, {"message.timeout.ms": 10_000})

    kill_after_acks, produce_after_kill = 20_000, 5_000
    killed_at = None
    for i, (key, value) in enumerate(keyed_records(500_000)):
        produce_one(producer, topic, on_delivery, key=key, value=value)
        if killed_at is None and len(result.acked) >= kill_after_acks:
            broker.kill()
            killed_at = i
        if killed_at is not None and i >= killed_at + produce_after_kill:
            break
    assert killed_at is not None, f"only {len(result.acked)} records acknowledged; the kill never happened"
    # Let every record in flight be acknowledged or fail before the broker comes back,
    # so no retry can write a record twice.
    flush(producer, result, timeout=60)
    assert result.pending == 0

    broker.start()
    assert_consumed_matches(result.acked, consume_all(broker.bootstrap, topic), exact=False)


def kcat_lines(count: int) -> list[bytes]:
    """kcat -K: input: "key:value" lines whose values carry a sequence number."""
    return [b"%s:%s" % (key, value) for key, value in keyed_records(count, keys=50, payload=b"kcat")]


def key_values(records: list[Record]) -> list[tuple[bytes, bytes]]:
    return sorted((r.key, r.value) for r in records)


def assert_kcat_and_confluent_agree(bootstrap: str, topic: str, expected_lines: list[bytes]) -> None:
    """Both clients read the same records, matching the keyed input lines exactly once."""
    by_confluent = consume_all(bootstrap, topic)
    by_kcat = parse_kcat_lines(kcat_consume(bootstrap, topic))
    assert_consumed_matches(flatten(by_confluent), by_kcat)
    expected = sorted(tuple(line.split(b":", 1)) for line in expected_lines)
    assert key_values(flatten(by_confluent)) == expected


def test_kcat_produce_and_consume(broker):
    topic = unique_topic("kcat")
    create_topic(broker.bootstrap, topic, partitions=3)
    lines = kcat_lines(2_000)
    kcat_produce(broker.bootstrap, topic, lines, "-K:")
    assert_kcat_and_confluent_agree(broker.bootstrap, topic, lines)


def test_kcat_reads_what_confluent_kafka_wrote(broker):
    topic = unique_topic("cross")
    create_topic(broker.bootstrap, topic, partitions=3)
    result = produce_ok(broker.bootstrap, topic, keyed_records(2_000, keys=50))
    assert_consumed_matches(result.acked, parse_kcat_lines(kcat_consume(broker.bootstrap, topic)))


@pytest.mark.parametrize("codec", CODECS)
def test_compressed_batches_round_trip(broker, codec):
    topic = unique_topic(codec)
    create_topic(broker.bootstrap, topic, partitions=2)
    compressible = b"tideway compresses well " * 40
    result = produce_ok(
        broker.bootstrap, topic, keyed_records(5_000, keys=100, payload=compressible),
        {"compression.type": codec, "linger.ms": 20},
    )
    assert_consumed_matches(result.acked, consume_all(broker.bootstrap, topic))


@pytest.mark.parametrize("codec", CODECS)
def test_kcat_compressed_produce(broker, codec):
    topic = unique_topic("kcat-" + codec)
    create_topic(broker.bootstrap, topic, partitions=2)
    lines = kcat_lines(1_000)
    kcat_produce(broker.bootstrap, topic, lines, "-K:", "-z", codec)
    assert_kcat_and_confluent_agree(broker.bootstrap, topic, lines)
