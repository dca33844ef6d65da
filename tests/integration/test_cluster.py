"""A cluster of three brokers on one machine, its metadata on a Raft quorum
(--voters). DescribeCluster names them and the controller. Partitions are spread over the brokers (replication factor 1 until
data replication lands: docs/replication.md), clients find every leader through
any broker, the quorum keeps accepting metadata changes with one broker down
and refuses them without a majority, and metadata survives restarts."""

from __future__ import annotations

import pytest

from clients import (
    admin_client,
    admin_error_code,
    consume_all,
    create_topic,
    flatten,
    keyed_records,
    produce_ok,
    unique_topic,
)
from confluent_kafka import KafkaException
from confluent_kafka.admin import NewTopic
from groups import commit, committed
from harness import free_loopback_ports, wait_until

REQUEST_TIMED_OUT = 7


def start_cluster(start_broker, tmp_path, size: int = 3):
    """Starts `size` brokers voting in one quorum and waits until all are ready."""
    admin_ports = free_loopback_ports(size)
    voters = ",".join(f"{i}@127.0.0.1:{p}" for i, p in enumerate(admin_ports))
    brokers = [
        start_broker(f"--node-id={i}", f"--voters={voters}", wait_ready=False, name=f"b{i}", settings={"admin-listen": f"127.0.0.1:{admin_ports[i]}"})
        for i in range(size)
    ]
    for b in brokers:
        b.wait_ready(90)
    return brokers


def leaders(bootstrap: str, topic: str) -> dict[int, int]:
    md = admin_client(bootstrap).list_topics(timeout=30)
    t = md.topics.get(topic)
    return {} if t is None or t.error else {p.id: p.leader for p in t.partitions.values()}


def test_three_brokers_share_partitions_and_route_clients(start_broker, tmp_path):
    b = start_cluster(start_broker, tmp_path)
    # Registrations replicate to every broker's metadata (eventually, as in Kafka).
    md = wait_until(
        lambda: (m := admin_client(b[1].bootstrap).list_topics(timeout=30)) and sorted(m.brokers) == [0, 1, 2] and m,
        60,
        "broker 1 to list all three brokers",
    )
    assert {br.port for br in md.brokers.values()} == {x.kafka_port for x in b}
    # DescribeCluster (AdminClient.describe_cluster): the cluster id, a controller among the brokers, all three.
    admin = admin_client(b[2].bootstrap)  # must outlive its future
    described = admin.describe_cluster().result(timeout=30)
    assert described.cluster_id == md.cluster_id and described.controller.id in (0, 1, 2)
    assert sorted((n.id, n.port) for n in described.nodes) == [(i, x.kafka_port) for i, x in enumerate(b)]

    topic = unique_topic()
    create_topic(b[2].bootstrap, topic, 6)
    # Every broker answers the same placement, spread over all three.
    spread = wait_until(lambda: len({tuple(sorted(leaders(x.bootstrap, topic).items())) for x in b}) == 1 and leaders(b[0].bootstrap, topic), 60, "one placement seen by all")
    assert set(spread.values()) == {0, 1, 2}

    acked = produce_ok(b[1].bootstrap, topic, keyed_records(6000)).acked
    got = flatten(consume_all(b[0].bootstrap, topic))
    assert sorted((r.partition, r.offset) for r in got) == sorted((r.partition, r.offset) for r in acked)

    # Committed offsets go to the coordinator, wherever it is, from any bootstrap broker.
    group = unique_topic("g")
    commit(b[2].bootstrap, group, topic, {0: 5, 3: 7})
    assert committed(b[0].bootstrap, group, topic, [0, 3]) == {0: 5, 3: 7}


def test_the_quorum_survives_one_broker_and_metadata_survives_restarts(start_broker, tmp_path):
    b = start_cluster(start_broker, tmp_path)
    first = unique_topic()
    create_topic(b[0].bootstrap, first, 3)
    acked = produce_ok(b[0].bootstrap, first, keyed_records(900)).acked

    b[2].kill()
    # Two of three voters are a majority: metadata changes still commit.
    second = unique_topic()
    new = NewTopic(second, num_partitions=2, replication_factor=1)
    assert admin_error_code(b[1].bootstrap, lambda a: a.create_topics([new], operation_timeout=30), second) is None
    b[2].start()
    # The restarted broker catches up on what it missed and keeps its data.
    wait_until(lambda: leaders(b[2].bootstrap, second), 60, "the restarted broker to learn the new topic")
    got = flatten(consume_all(b[2].bootstrap, first))
    assert sorted((r.partition, r.offset) for r in got) == sorted((r.partition, r.offset) for r in acked)

    # A graceful restart of every broker keeps all metadata (Raft log and snapshot).
    for x in b:
        x.stop()
    for x in b:
        x.start(wait_ready=False)
    for x in b:
        x.wait_ready(90)
    assert set(leaders(b[1].bootstrap, first)) == {0, 1, 2}
    assert set(leaders(b[1].bootstrap, second)) == {0, 1}


def test_without_a_majority_metadata_changes_are_refused(start_broker, tmp_path):
    b = start_cluster(start_broker, tmp_path)
    b[1].kill()
    b[2].kill()
    topic = unique_topic()
    new = NewTopic(topic, num_partitions=1, replication_factor=1)
    code = admin_error_code(b[0].bootstrap, lambda a: a.create_topics([new], operation_timeout=40, request_timeout=40), topic)
    assert code == REQUEST_TIMED_OUT, code
    assert topic not in admin_client(b[0].bootstrap).list_topics(timeout=30).topics


def test_elect_leaders_moves_leadership_back_to_preferred_replicas(start_broker, tmp_path):
    """ElectLeaders (kafka-leader-election, AdminClient.elect_leaders) with the automatic
    rebalance off: after a broker's restart its partitions stay led elsewhere until asked."""
    from confluent_kafka import ElectionType, TopicPartition

    ports = free_loopback_ports(3)
    voters = ",".join(f"{i}@127.0.0.1:{p}" for i, p in enumerate(ports))
    b = [
        start_broker(f"--node-id={i}", f"--voters={voters}", "--leader-imbalance-check-interval-ms=0", wait_ready=False, name=f"b{i}", settings={"admin-listen": f"127.0.0.1:{ports[i]}"})
        for i in range(3)
    ]
    for x in b:
        x.wait_ready(90)
    topic = unique_topic("elect")
    admin = admin_client(b[0].bootstrap)  # must outlive its futures
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3)])[topic].result(30)

    def partitions():
        t = admin.list_topics(topic, timeout=30).topics[topic]
        return {p.id: (p.leader, p.replicas, sorted(p.isrs)) for p in t.partitions.values()}

    wait_until(lambda: all(len(isr) == 3 and leader == r[0] for leader, r, isr in partitions().values()), 60, "3 in sync, preferred leaders")
    # Broker 0 restarts: the partition it prefers is led by another replica meanwhile.
    preferred_by_0 = next(p for p, (_, r, _) in partitions().items() if r[0] == 0)
    b[0].stop()
    wait_until(lambda: partitions()[preferred_by_0][0] not in (-1, 0), 60, "another leader")
    b[0].start()
    wait_until(lambda: all(len(isr) == 3 for _, _, isr in partitions().values()), 60, "broker 0 back in sync")
    assert partitions()[preferred_by_0][0] != 0, "no automatic rebalance here"

    tp = TopicPartition(topic, preferred_by_0)
    result = admin.elect_leaders(ElectionType.PREFERRED, [tp]).result(30)
    assert list(result.values()) == [None], result
    wait_until(lambda: partitions()[preferred_by_0][0] == 0, 30, "broker 0 to lead again")
    # Asked again: nothing to do, said with ELECTION_NOT_NEEDED (84).
    again = admin.elect_leaders(ElectionType.PREFERRED, [tp]).result(30)
    assert [e.code() for e in again.values()] == [84], again


def test_delete_records_moves_the_log_start_on_every_replica(start_broker, tmp_path):
    """DeleteRecords (kafka-delete-records, AdminClient.delete_records): the leader's log
    start moves, the followers follow it, and a new leader after a kill -9 keeps it."""
    from confluent_kafka import TopicPartition

    from admin_api import admin_stub, pb

    ports = free_loopback_ports(3)
    voters = ",".join(f"{i}@127.0.0.1:{p}" for i, p in enumerate(ports))
    b = [
        start_broker(f"--node-id={i}", f"--voters={voters}", wait_ready=False, name=f"b{i}", settings={"admin-listen": f"127.0.0.1:{ports[i]}"})
        for i in range(3)
    ]
    for x in b:
        x.wait_ready(90)
    topic = unique_topic("trim")
    admin = admin_client(b[0].bootstrap)  # must outlive its futures
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3)])[topic].result(30)
    acked = produce_ok(b[0].bootstrap, topic, keyed_records(100)).acked

    tp = TopicPartition(topic, 0, 40)
    assert admin.delete_records([tp])[tp].result(30).low_watermark == 40
    # Every replica's log starts at 40 (the followers follow the leader's log start).
    def starts():
        return [
            admin_stub(f"127.0.0.1:{p}").DescribePartitions(pb.DescribePartitionsRequest(topics=[topic], broker=-1)).partitions[0].log_start_offset
            for p in ports
        ]

    wait_until(lambda: starts() == [40, 40, 40], 30, "every replica's log start at 40")
    got = flatten(consume_all(b[1].bootstrap, topic))
    assert sorted(r.offset for r in got) == sorted(r.offset for r in acked if r.offset >= 40)
    # Past the high watermark: OFFSET_OUT_OF_RANGE.
    beyond = TopicPartition(topic, 0, 1000)
    try:
        admin.delete_records([beyond])[beyond].result(30)
        raise AssertionError("deleting past the high watermark must fail")
    except KafkaException as e:
        assert e.args[0].code() == 1, e

    # The leader dies: the new one keeps the log start.
    leader = admin.list_topics(topic, timeout=30).topics[topic].partitions[0].leader
    b[leader].kill()
    survivor = b[(leader + 1) % 3]
    wait_until(lambda: leaders(survivor.bootstrap, topic).get(0, -1) not in (-1, leader), 60, "a new leader")
    got = flatten(consume_all(survivor.bootstrap, topic))
    assert sorted(r.offset for r in got) == sorted(r.offset for r in acked if r.offset >= 40)
