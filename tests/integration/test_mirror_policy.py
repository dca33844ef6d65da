"""Mirror policies (docs/mirror-policies.md) on a real three-broker cluster: stored through
the admin gRPC API, enforced by the brokers on what real Kafka clients do (confluent-kafka's
CreateTopics, a producer's auto-create, CreatePartitions, IncrementalAlterConfigs), and an
existing topic brought to its policy while an acks=all producer writes to it."""

from __future__ import annotations

import threading

import pytest

from confluent_kafka import KafkaException
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic

from admin_api import admin_stub, pb
from clients import (
    CLIENT_TIMEOUT_S,
    admin_client,
    admin_result,
    consume_all,
    flatten,
    make_producer,
    produce,
    unique_topic,
)
from harness import free_loopback_ports, wait_until

POLICY_VIOLATION = 44


def start_cluster(start_broker, size: int = 3):
    """`size` brokers in one quorum; returns (brokers, admin stub of broker 0)."""
    ports = free_loopback_ports(size)
    voters = ",".join(f"{i}@127.0.0.1:{p}" for i, p in enumerate(ports))
    brokers = [
        start_broker(f"--node-id={i}", f"--voters={voters}", wait_ready=False, name=f"b{i}", settings={"admin-listen": f"127.0.0.1:{ports[i]}"})
        for i in range(size)
    ]
    for b in brokers:
        b.wait_ready(90)
    wait_until(lambda: sorted(admin_client(brokers[0].bootstrap).list_topics(timeout=30).brokers) == list(range(size)), 60, "every broker registered")
    return brokers, admin_stub(f"127.0.0.1:{ports[0]}")


def policy(name: str, prefix: str, **fields) -> pb.MirrorPolicy:
    """A policy over topics starting with `prefix`: Exactly 3, min-ISR 2, Reject, for both origins."""
    base = dict(
        name=name,
        topics=[pb.NamePattern(type=pb.NAME_PATTERN_TYPE_PREFIX, value=prefix)],
        applies_to_topic_resources=True,
        applies_to_client_created=True,
        mode=pb.REPLICA_MODE_EXACTLY,
        count=3,
        min_insync_replicas=2,
        on_create=pb.ON_CREATE_REJECT,
        on_existing=pb.ON_EXISTING_AUDIT,
    )
    base.update(fields)
    return pb.MirrorPolicy(**base)


def kafka_error(call) -> tuple[int, str] | None:
    try:
        call()
        return None
    except KafkaException as e:
        return e.args[0].code(), e.args[0].str()


def create(bootstrap: str, topic: str, rf: int, config: dict[str, str] | None = None, partitions: int = 1):
    new = NewTopic(topic, num_partitions=partitions, replication_factor=rf, config=config or {})
    return admin_result(bootstrap, lambda a: a.create_topics([new], operation_timeout=CLIENT_TIMEOUT_S), topic)


def replicas(bootstrap: str, topic: str) -> dict[int, list[int]] | None:
    t = admin_client(bootstrap).list_topics(topic, timeout=30).topics.get(topic)
    return None if t is None or t.error is not None else {p.id: sorted(p.replicas) for p in t.partitions.values()}


def min_isr(bootstrap: str, topic: str) -> str:
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return admin_result(bootstrap, lambda a: a.describe_configs([res]), res)["min.insync.replicas"].value


def set_min_isr(bootstrap: str, topic: str, value: str) -> None:
    entry = ConfigEntry("min.insync.replicas", value, incremental_operation=AlterConfigOpType.SET)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])
    admin_result(bootstrap, lambda a: a.incremental_alter_configs([res]), res)


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated")
def test_reject_refuses_clients_topics_and_adjust_creates_them_with_the_policy(start_broker):
    (b0, b1, b2), admin = start_cluster(start_broker)
    prefix = unique_topic("orders") + "."
    admin.PutMirrorPolicy(pb.PutMirrorPolicyRequest(policy=policy("default/orders", prefix)))

    # CreateTopics with RF 1: POLICY_VIOLATION naming the policy, from any broker.
    code, message = kafka_error(lambda: create(b1.bootstrap, prefix + "x", 1))
    assert code == POLICY_VIOLATION and "default/orders" in message, message
    assert replicas(b0.bootstrap, prefix + "x") is None
    # A topic that keeps the policy is created as asked.
    create(b2.bootstrap, prefix + "ok", 3, {"min.insync.replicas": "2"})
    assert replicas(b0.bootstrap, prefix + "ok") == {0: [0, 1, 2]}
    # min-ISR under the policy's: refused too (the cluster default here is 1).
    code, message = kafka_error(lambda: create(b0.bootstrap, prefix + "low", 3))
    assert code == POLICY_VIOLATION and "min.insync.replicas 1" in message, message
    # A producer's auto-create (cluster default RF 1) is refused the same way.
    result = produce(b0.bootstrap, prefix + "y", [(b"k", b"v")], config={"message.timeout.ms": 10_000})
    assert result.errors and not result.acked, "auto-create must be refused"
    assert replicas(b0.bootstrap, prefix + "y") is None
    # Lowering min.insync.replicas below the policy's is refused, also by the older AlterConfigs
    # (which resets every override it does not name: here min.insync.replicas to the default 1).
    code, message = kafka_error(lambda: set_min_isr(b0.bootstrap, prefix + "ok", "1"))
    assert code == POLICY_VIOLATION and "default/orders" in message, message
    whole = ConfigResource(ConfigResource.Type.TOPIC, prefix + "ok", set_config={"retention.ms": "3600000"})
    code, message = kafka_error(lambda: admin_result(b0.bootstrap, lambda a: a.alter_configs([whole]), whole))
    assert code == POLICY_VIOLATION and "default/orders" in message, message

    # Adjust: the same requests create the topics with the policy's settings.
    admin.PutMirrorPolicy(pb.PutMirrorPolicyRequest(policy=policy("default/orders", prefix, on_create=pb.ON_CREATE_ADJUST)))
    create(b1.bootstrap, prefix + "z", 1)
    assert replicas(b0.bootstrap, prefix + "z") == {0: [0, 1, 2]}
    assert min_isr(b0.bootstrap, prefix + "z") == "2"
    acked = produce(b2.bootstrap, prefix + "w", [(b"k", b"v")]).acked
    assert len(acked) == 1
    assert replicas(b0.bootstrap, prefix + "w") == {0: [0, 1, 2]}
    assert min_isr(b0.bootstrap, prefix + "w") == "2"
    # New partitions follow the policy.
    admin_result(b0.bootstrap, lambda a: a.create_partitions([NewPartitions(prefix + "z", 3)]), prefix + "z")
    wait_until(lambda: (r := replicas(b0.bootstrap, prefix + "z")) and len(r) == 3 and all(v == [0, 1, 2] for v in r.values()), 30, "3 partitions, 3 replicas each")

    # Status: the governed topics, each compliant.
    status = admin.DescribeMirrorPolicies(pb.DescribeMirrorPoliciesRequest(names=["default/orders"])).policies[0]
    assert sorted(status.governed_topics) == sorted(prefix + s for s in ["ok", "w", "z"])
    assert list(status.non_compliant) == [] and status.required_replicas == 3
    # A topic outside the prefix is not governed.
    other = unique_topic("free")
    create(b0.bootstrap, other, 1)
    assert replicas(b0.bootstrap, other) == {0: [replicas(b0.bootstrap, other)[0][0]]}

    # Deleting the policy leaves the topics as they are; RF 1 is allowed again.
    assert admin.DeleteMirrorPolicy(pb.DeleteMirrorPolicyRequest(name="default/orders")).deleted
    assert replicas(b0.bootstrap, prefix + "z") == {p: [0, 1, 2] for p in range(3)}
    assert min_isr(b0.bootstrap, prefix + "z") == "2"
    create(b0.bootstrap, prefix + "x", 1)


def test_reconcile_brings_an_existing_topic_to_its_policy_while_acks_all_writes_go_on(start_broker):
    (b0, _, _), admin = start_cluster(start_broker)
    topic = unique_topic("legacy")
    create(b0.bootstrap, topic, 1, partitions=3)
    assert all(len(r) == 1 for r in replicas(b0.bootstrap, topic).values())

    # An acks=all producer writes throughout; every acknowledged record is checked at the end.
    acked, errors, stop = [], [], threading.Event()

    def write():
        producer = make_producer(b0.bootstrap, {"enable.idempotence": True, "linger.ms": 2})

        def done(err, msg):
            (errors if err else acked).append(err or (msg.partition(), msg.offset(), msg.value()))

        seq = 0
        while not stop.is_set():
            producer.produce(topic, key=str(seq % 30).encode(), value=f"v{seq}".encode(), on_delivery=done)
            producer.poll(0.002)
            seq += 1
        producer.flush(60)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        wait_until(lambda: len(acked) > 500, 60, "the producer to get going")
        admin.PutMirrorPolicy(
            pb.PutMirrorPolicyRequest(
                policy=policy("default/legacy", topic, on_existing=pb.ON_EXISTING_RECONCILE, throttle_bytes_per_second=10_000_000)
            )
        )
        seen_moving = []

        def compliant():
            s = admin.DescribeMirrorPolicies(pb.DescribeMirrorPoliciesRequest(names=["default/legacy"])).policies[0]
            if s.reassignments:
                seen_moving.append([(r.topic, r.percent) for r in s.reassignments])
            return not s.non_compliant and not s.reassignments

        wait_until(compliant, 120, f"{topic} to reach its policy", interval=0.2)
        assert seen_moving, "status never showed the reassignment in progress"
        wait_until(lambda: len(acked) > 500 + 1000, 60, "more writes after the move")
    finally:
        stop.set()
        writer.join(120)
    assert not errors, f"{len(errors)} produce errors, first: {errors[0]}"
    assert replicas(b0.bootstrap, topic) == {p: [0, 1, 2] for p in range(3)}
    assert min_isr(b0.bootstrap, topic) == "2"
    got = flatten(consume_all(b0.bootstrap, topic))
    assert sorted((r.partition, r.offset, r.value) for r in got) == sorted(acked), "every acknowledged record, once"
