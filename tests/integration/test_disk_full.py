"""A full disk: the broker refuses writes with KAFKA_STORAGE_ERROR, stays up and keeps what it acknowledged."""

from clients import (
    KAFKA_STORAGE_ERROR,
    ProduceResult,
    assert_consumed_matches,
    consume_all,
    create_topic,
    delivery_collector,
    flush,
    keyed_records,
    make_producer,
    produce_one,
    unique_topic,
)

TMPFS_SIZE = "8m"
MAX_RECORDS = 20_000  # 20 MB of values: more than the tmpfs holds


def test_disk_full_keeps_acknowledged_records(tmpfs_factory, start_broker):
    # tmpfs_factory is set up first, so its unmount runs after the broker has stopped.
    broker = start_broker("--segment-bytes=1048576", data_dir=tmpfs_factory(TMPFS_SIZE))
    topic = unique_topic("full")
    create_topic(broker.bootstrap, topic)

    result = ProduceResult()
    on_delivery = delivery_collector(result)
    # No retries: the first refusal is reported as the broker's own error code.
    producer = make_producer(broker.bootstrap, {"retries": 0, "message.timeout.ms": 30_000})
    for key, value in keyed_records(MAX_RECORDS, payload=b"d" * 1000):
        produce_one(producer, topic, on_delivery, key=key, value=value)
        if result.errors:
            break
    flush(producer, result, timeout=60)

    assert result.errors, f"all {len(result.acked)} records acknowledged; the {TMPFS_SIZE} disk never filled"
    assert KAFKA_STORAGE_ERROR in result.error_codes(), result.errors[:3]
    assert result.acked, "nothing was acknowledged before the disk filled"

    assert broker.is_running()
    assert broker.http("/livez")[0] == 200
    assert_consumed_matches(result.acked, consume_all(broker.bootstrap, topic), exact=False)
