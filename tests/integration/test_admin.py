"""Topic administration, auto-creation, ListOffsets and metadata persistence, through real clients."""

import time

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic

import kafka_wire
from clients import (
    CLIENT_TIMEOUT_S,
    CLIENT_UNKNOWN_TOPIC,
    INVALID_TOPIC_EXCEPTION,
    TOPIC_ALREADY_EXISTS,
    UNKNOWN_TOPIC_OR_PART,
    admin_error_code,
    admin_result,
    assert_consumed_matches,
    consume_all,
    create_topic,
    keyed_records,
    make_consumer,
    produce,
    produce_ok,
    topic_partition_count,
    unique_topic,
    wait_topic_partitions,
    watermarks,
)
from harness import wait_until

INVALID_CONFIG = 40


def describe_topic_configs(bootstrap: str, topic: str) -> dict[str, str | None]:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin_result(bootstrap, lambda admin: admin.describe_configs([resource]), resource)
    return {name: entry.value for name, entry in entries.items()}


def set_topic_config(bootstrap: str, topic: str, name: str, value: str) -> None:
    entry = ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])
    admin_result(bootstrap, lambda admin: admin.incremental_alter_configs([resource]), resource)


def delete_topic(bootstrap: str, topic: str) -> None:
    admin_result(bootstrap, lambda admin: admin.delete_topics([topic], operation_timeout=CLIENT_TIMEOUT_S), topic)
    wait_until(lambda: topic_partition_count(bootstrap, topic) is None, CLIENT_TIMEOUT_S, f"{topic} to disappear")


def add_partitions(bootstrap: str, topic: str, total: int) -> None:
    admin_result(bootstrap, lambda admin: admin.create_partitions([NewPartitions(topic, total)]), topic)
    wait_topic_partitions(bootstrap, topic, total)


def test_create_and_delete_topic(broker):
    topic = unique_topic("lifecycle")
    create_topic(broker.bootstrap, topic, partitions=3)
    produce_ok(broker.bootstrap, topic, keyed_records(30))

    delete_topic(broker.bootstrap, topic)

    # The name can be reused, and the new topic starts empty.
    create_topic(broker.bootstrap, topic, partitions=1)
    consumer = make_consumer(broker.bootstrap)
    try:
        assert watermarks(consumer, topic, 0) == (0, 0)
    finally:
        consumer.close()


def test_creating_an_existing_topic_fails(broker):
    topic = unique_topic("twice")
    create_topic(broker.bootstrap, topic)
    code = admin_error_code(broker.bootstrap, lambda admin: admin.create_topics([NewTopic(topic, 1)]), topic)
    assert code == TOPIC_ALREADY_EXISTS


def test_create_partitions_adds_writable_partitions(broker):
    topic = unique_topic("grow")
    create_topic(broker.bootstrap, topic, partitions=2)

    add_partitions(broker.bootstrap, topic, 5)
    wait_topic_partitions(broker.bootstrap, topic, 5)

    records = [{"key": b"k%d" % p, "value": b"%d|to-partition-%d" % (p, p), "partition": p} for p in range(5)]
    result = produce_ok(broker.bootstrap, topic, records)
    assert sorted(r.partition for r in result.acked) == list(range(5))
    assert_consumed_matches(result.acked, consume_all(broker.bootstrap, topic))


def test_describe_configs_lists_topic_settings(broker):
    topic = unique_topic("configs")
    create_topic(broker.bootstrap, topic, config={"retention.ms": "86400000"})
    configs = describe_topic_configs(broker.bootstrap, topic)
    for name in ("retention.ms", "retention.bytes", "segment.bytes", "max.message.bytes"):
        assert name in configs, f"{name} missing from DescribeConfigs: {sorted(configs)}"
    assert configs["retention.ms"] == "86400000"


def test_incremental_alter_configs_changes_retention(broker):
    topic = unique_topic("alter")
    create_topic(broker.bootstrap, topic)
    set_topic_config(broker.bootstrap, topic, "retention.ms", "123456")
    assert describe_topic_configs(broker.bootstrap, topic)["retention.ms"] == "123456"


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated")
def test_alter_configs_replaces_every_override(broker):
    """The older AlterConfigs API (confluent-kafka's alter_configs): the configs given become the
    topic's overrides; those left out go back to their defaults."""
    topic = unique_topic("replace")
    create_topic(broker.bootstrap, topic, config={"retention.ms": "86400000", "segment.bytes": "1048576"})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"retention.ms": "123456"})
    admin_result(broker.bootstrap, lambda admin: admin.alter_configs([resource]), resource)
    configs = describe_topic_configs(broker.bootstrap, topic)
    assert configs["retention.ms"] == "123456"
    assert configs["segment.bytes"] == describe_topic_configs(broker.bootstrap, unique_default_topic(broker))["segment.bytes"]
    bad = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"no.such.config": "1"})
    assert admin_error_code(broker.bootstrap, lambda admin: admin.alter_configs([bad]), bad) == INVALID_CONFIG


def unique_default_topic(broker) -> str:
    """A new topic with no overrides: its configs are the defaults."""
    topic = unique_topic("defaults")
    create_topic(broker.bootstrap, topic)
    return topic


@pytest.mark.parametrize("name", ["bad topic!", "..", "x" * 300], ids=["space-and-bang", "dotdot", "300-chars"])
def test_invalid_topic_names_are_rejected(broker, name):
    code = admin_error_code(broker.bootstrap, lambda admin: admin.create_topics([NewTopic(name, 1)]), name)
    assert code == INVALID_TOPIC_EXCEPTION


def test_produce_to_unknown_topic_creates_it(broker):
    topic = unique_topic("auto")
    result = produce_ok(broker.bootstrap, topic, keyed_records(10))
    assert topic_partition_count(broker.bootstrap, topic) == 1  # --default-partitions defaults to 1
    assert_consumed_matches(result.acked, consume_all(broker.bootstrap, topic))


def test_no_auto_creation_when_disabled(start_broker):
    broker = start_broker("--auto-create-topics=false")
    topic = unique_topic("noauto")

    # Wire level: a Metadata request asking for auto-creation gets UNKNOWN_TOPIC_OR_PART.
    response = kafka_wire.call(broker.bootstrap, kafka_wire.metadata_request_v4(7, [topic], allow_auto_create=True))
    assert kafka_wire.parse_metadata_v4_topic_errors(response) == {topic: UNKNOWN_TOPIC_OR_PART}

    # Client level: the producer's records fail and the topic does not appear.
    result = produce(
        broker.bootstrap, topic, keyed_records(3),
        {"topic.metadata.propagation.max.ms": 1000, "message.timeout.ms": 20_000},
    )
    assert not result.acked and len(result.errors) == 3, result
    assert result.error_codes() <= {UNKNOWN_TOPIC_OR_PART, CLIENT_UNKNOWN_TOPIC}, result.errors
    assert topic_partition_count(broker.bootstrap, topic) is None


def test_list_offsets_earliest_latest_and_by_timestamp(broker):
    topic = unique_topic("offsets")
    create_topic(broker.bootstrap, topic)
    base = int(time.time() * 1000) - 100_000
    records = [{"value": b"%d|ts" % i, "timestamp": base + i * 1000} for i in range(10)]
    result = produce_ok(broker.bootstrap, topic, records)
    assert [r.offset for r in result.acked] == list(range(10))

    consumer = make_consumer(broker.bootstrap)
    try:
        assert watermarks(consumer, topic, 0) == (0, 10)
        queries = {
            base - 5: 0,  # before everything: the first record
            base + 3000: 3,  # exact timestamp of record 3
            base + 3001: 4,  # first record with a timestamp at or after it
            base + 9000: 9,
            base + 9001: -1,  # after everything: no offset
            -2: 0,  # EARLIEST
            -1: 10,  # LATEST
        }
        for ts, expected in queries.items():
            [answer] = consumer.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=CLIENT_TIMEOUT_S)
            assert answer.error is None, (ts, answer.error)
            assert answer.offset == expected, f"offsets_for_times({ts - base if ts > 0 else ts}): {answer.offset}"
    finally:
        consumer.close()


def test_topic_metadata_persists_across_restart(broker):
    kept, configured, deleted = unique_topic("kept"), unique_topic("configured"), unique_topic("deleted")
    create_topic(broker.bootstrap, kept, partitions=3)
    create_topic(broker.bootstrap, configured)
    create_topic(broker.bootstrap, deleted)
    add_partitions(broker.bootstrap, configured, 2)
    set_topic_config(broker.bootstrap, configured, "retention.ms", "7200000")
    delete_topic(broker.bootstrap, deleted)

    broker.restart()

    assert topic_partition_count(broker.bootstrap, kept) == 3
    assert topic_partition_count(broker.bootstrap, configured) == 2
    assert describe_topic_configs(broker.bootstrap, configured)["retention.ms"] == "7200000"
    assert topic_partition_count(broker.bootstrap, deleted) is None
