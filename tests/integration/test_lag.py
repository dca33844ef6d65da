"""Consumer lag as the broker computes it (the autoscaler's input): per partition,
max(0, high watermark - committed), counting from the log start when the commit points
at records retention already deleted, and, for a partition never committed, per the
reset policy (earliest: everything retained, latest: 0). The high watermark and log
start come from each partition's current leader, wherever it is; if any cannot be read
the answer is 503 naming the partitions, never an under-counted lag. Served as JSON on
GET /v1/groups/{group}/lag[?topic=a&topic=b&reset=earliest|latest] by the group
coordinator (the admin gRPC GroupLag asks the same question: broker/tests/it/admin.rs)
and as tideway_consumer_group_lag metrics."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from clients import CLIENT_TIMEOUT_S, admin_result, create_topic, keyed_records, make_consumer, produce_ok, topic_partition_count, unique_topic, watermarks
from groups import commit, committed
from harness import Broker, wait_until
# The three-broker cluster of the replication tests, with a FaultProxy on each
# broker's replication address (the address the coordinator asks leaders on too).
from test_replication import WAIT_S, bootstrap_of, create_replicated_topic, proxies, start_cluster, wait_leader  # noqa: F401 (proxies: fixture)

MISDIRECTED = 421


def lag_response(broker: Broker, group: str, topics: list[str] = (), reset: str | None = None) -> tuple[int, dict]:
    params = [("topic", t) for t in topics] + ([("reset", reset)] if reset else [])
    query = f"?{urlencode(params)}" if params else ""
    status, body = broker.http(f"/v1/groups/{group}/lag{query}")
    return status, json.loads(body)


def lag(broker: Broker, group: str, topics: list[str] = (), reset: str | None = None) -> dict:
    status, body = lag_response(broker, group, topics, reset)
    assert status == 200, (status, body)
    return body


def by_partition(report: dict) -> dict[int, tuple[int | None, int, int, int]]:
    return {p["partition"]: (p["committed_offset"], p["high_watermark"], p["log_start_offset"], p["lag"]) for p in report["partitions"]}


def lag_series(broker: Broker, group: str) -> list[str]:
    status, metrics = broker.http("/metrics")
    assert status == 200, status
    return [l for l in metrics.splitlines() if l.startswith("tideway_consumer_group_lag{") and f'group="{group}"' in l]


def test_lag_follows_commits_to_zero_and_is_never_negative(broker):
    b = broker.bootstrap
    topic, group = unique_topic(), unique_topic("g")
    create_topic(b, topic, 3)
    acked = produce_ok(b, topic, keyed_records(900)).acked
    high = {p: sum(1 for r in acked if r.partition == p) for p in range(3)}
    assert broker.http(f"/v1/groups/{group}/lag")[0] == 404, "an unknown group has no lag"

    commit(b, group, topic, {0: 10, 1: high[1], 2: 0})
    report = lag(broker, group)
    assert by_partition(report) == {
        0: (10, high[0], 0, high[0] - 10),
        1: (high[1], high[1], 0, 0),
        2: (0, high[2], 0, high[2]),
    }
    assert report["total_lag"] == high[0] - 10 + high[2]

    commit(b, group, topic, {p: h for p, h in high.items()})
    assert {p: v[3] for p, v in by_partition(lag(broker, group)).items()} == {0: 0, 1: 0, 2: 0}
    # A commit past the high watermark (a client bug) is lag 0, never negative.
    commit(b, group, topic, {0: high[0] + 50})
    assert by_partition(lag(broker, group))[0][3] == 0

    line = next(l for l in lag_series(broker, group) if 'partition="2"' in l)
    assert line.split()[-1] == "0"


def test_records_deleted_by_retention_are_not_lag(start_broker):
    broker = start_broker("--retention-check-interval-ms=200")
    b = broker.bootstrap
    topic, group = unique_topic(), unique_topic("g")
    create_topic(b, topic, 1, {"segment.bytes": "2000", "retention.bytes": "4000"})
    produce_ok(b, topic, keyed_records(400, payload=b"x" * 50), {"batch.num.messages": 10})
    commit(b, group, topic, {0: 1})
    consumer = make_consumer(b)
    try:
        low, high = wait_until(lambda: (w := watermarks(consumer, topic, 0))[0] > 1 and w, 60, "retention to delete old segments")
    finally:
        consumer.close()
    committed, hw, start, value = by_partition(lag(broker, group))[0]
    assert (committed, hw, start) == (1, high, low)
    assert value == high - low, "records below the log start are gone, not lag"


def test_a_group_that_never_committed_lags_per_reset_policy(broker):
    b = broker.bootstrap
    topic, other, group = unique_topic(), unique_topic(), unique_topic("g")
    create_topic(b, topic, 3)
    create_topic(b, other, 2)
    acked = produce_ok(b, topic, keyed_records(300)).acked
    high = {p: sum(1 for r in acked if r.partition == p) for p in range(3)}

    # A workload scaled to zero whose group never committed: the group does not exist
    # at all, yet named topics answer with their whole backlog (earliest, the default).
    assert lag_response(broker, group)[0] == 404, "no topics named: an unknown group is not found"
    for reset in (None, "earliest", "EARLIEST"):
        report = lag(broker, group, [topic], reset)
        assert (report["state"], report["members"], report["total_lag"]) == ("Dead", 0, 300), reset
        assert by_partition(report) == {p: (None, high[p], 0, high[p]) for p in range(3)}
    # A consumer starting at latest would read none of it.
    report = lag(broker, group, [topic], "latest")
    assert report["total_lag"] == 0
    assert by_partition(report) == {p: (None, high[p], 0, 0) for p in range(3)}

    # With topics named, exactly their partitions: not the other committed ones.
    commit(b, group, other, {0: 0})
    commit(b, group, topic, {1: 10})
    report = lag(broker, group, [topic], "latest")
    assert (report["state"], report["total_lag"]) == ("Empty", high[1] - 10)
    assert by_partition(report)[1] == (10, high[1], 0, high[1] - 10)
    assert {p["topic"] for p in report["partitions"]} == {topic}
    both = lag(broker, group, [topic, other], "earliest")
    assert sorted((p["topic"], p["partition"]) for p in both["partitions"]) == sorted([(topic, p) for p in range(3)] + [(other, p) for p in range(2)])
    assert both["total_lag"] == high[0] + (high[1] - 10) + high[2]
    # Without topics: the committed partitions.
    assert sorted((p["topic"], p["partition"]) for p in lag(broker, group)["partitions"]) == sorted([(other, 0), (topic, 1)])

    status, body = lag_response(broker, group, [topic, "no-such-topic"])
    assert status == 404 and "no-such-topic" in body["error"], (status, body)
    status, body = lag_response(broker, group, [topic], "sometimes")
    assert status == 400 and "sometimes" in body["error"], (status, body)
    status, body = broker.http(f"/v1/groups/{group}/lag?topics={topic}")
    assert status == 400 and "topics" in body, (status, body)


def coordinator_of(brokers: list[Broker]) -> int:
    """The broker answering lag (the leader of __consumer_offsets-0); the others say 421."""

    def answering() -> tuple[int] | None:  # a tuple: broker 0 is falsy
        for i, x in enumerate(brokers):
            if x.is_running() and x.http("/v1/groups/nobody/lag")[0] == 404:
                return (i,)
        return None

    return wait_until(answering, WAIT_S, "a broker coordinating groups", 0.25)[0]


def test_every_partition_counts_wherever_it_is_led_and_an_unreachable_leader_fails_the_answer(start_broker, proxies):
    b = start_cluster(start_broker, proxies=proxies)
    topic, group = unique_topic(), unique_topic("g")
    create_topic(b[0].bootstrap, topic, 6)  # replication factor 1: spread over the three brokers
    leaders = {p: wait_leader(b, topic, p) for p in range(6)}
    coord = coordinator_of(b)
    assert any(l != coord for l in leaders.values()), f"every partition led by the coordinator {coord}: {leaders}"
    acked = produce_ok(bootstrap_of(b), topic, keyed_records(1200)).acked
    high = {p: sum(1 for r in acked if r.partition == p) for p in range(6)}
    offsets = {p: p * 3 for p in range(6)}
    commit(bootstrap_of(b), group, topic, offsets)

    # Every partition, from its own leader's high watermark: before, the coordinator
    # only saw the ones it hosts.
    for others in (b[i] for i in range(3) if i != coord):
        assert lag_response(others, group)[0] == MISDIRECTED
    report = lag(b[coord], group)
    assert by_partition(report) == {p: (offsets[p], high[p], 0, high[p] - offsets[p]) for p in range(6)}, leaders
    assert report["total_lag"] == 1200 - sum(offsets.values())
    assert len(lag_series(b[coord], group)) == 6

    # A leader the coordinator cannot reach: no answer rather than a lag without its
    # partitions, and the metrics leave the group out (the scrape itself answers).
    cut = next(l for l in leaders.values() if l != coord)
    unreachable = sorted(p for p, l in leaders.items() if l == cut)
    proxies[cut].cut()
    status, body = lag_response(b[coord], group, [topic], "latest")
    assert status == 503, (status, body)
    for p in unreachable:
        assert f"{topic}-{p} (leader broker {cut}" in body["error"], body
    assert all(f"{topic}-{p} " not in body["error"] for p in range(6) if p not in unreachable), body
    assert lag_series(b[coord], group) == []

    proxies[cut].heal()
    healed = wait_until(lambda: (r := lag_response(b[coord], group))[0] == 200 and r[1], WAIT_S, "lag answered after the heal")
    assert healed["total_lag"] == 1200 - sum(offsets.values())


def test_lag_counts_to_the_high_watermark_not_the_log_end(start_broker, proxies):
    # A long lag time: followers cut off stay in the ISR, so records only the leader
    # has (acks=1) stay above the high watermark, not yet for consumers.
    b = start_cluster(start_broker, proxies=proxies, replica_lag_time_max_ms=60_000)
    topic, group = unique_topic("hw"), unique_topic("g")
    create_replicated_topic(b, topic, 6, min_isr=1)
    coord = coordinator_of(b)
    # The partition the coordinator leads is read locally; its followers fetch through
    # the coordinator's proxy, which is cut (the other leaders stay reachable).
    led = [p for p in range(6) if wait_leader(b, topic, p) == coord]
    assert led, f"the coordinator {coord} leads no partition of {topic}"
    p = led[0]
    produce_ok(bootstrap_of(b), topic, [{"key": k, "value": v, "partition": p} for k, v in keyed_records(50)])
    wait_until(lambda: by_partition(lag(b[coord], group, [topic]))[p][1] == 50, WAIT_S, "HW 50")

    proxies[coord].cut()
    tail = produce_ok(bootstrap_of(b), topic, [{"key": k, "value": v, "partition": p} for k, v in keyed_records(200, start=50)], {"acks": "1"}).acked
    assert max(r.offset for r in tail) == 249, "the leader's log ends at 250"
    consumer = make_consumer(b[coord].bootstrap)
    try:
        assert watermarks(consumer, topic, p)[1] == 50, "the high watermark stays while the followers are cut off"
    finally:
        consumer.close()
    assert by_partition(lag(b[coord], group, [topic]))[p] == (None, 50, 0, 50), "lag counts to the HW, not the log end"

    proxies[coord].heal()
    wait_until(lambda: by_partition(lag(b[coord], group, [topic]))[p] == (None, 250, 0, 250), WAIT_S, "HW 250 after the heal")


def test_a_deleted_topic_loses_its_commits(broker):
    """As in Kafka, deleting a topic deletes the group's commits on it: a topic created
    again under the same name has its whole backlog as lag, not the old commits' 0."""
    b = broker.bootstrap
    topic, group = unique_topic(), unique_topic("g")
    create_topic(b, topic, 2)
    produce_ok(b, topic, keyed_records(100))
    commit(b, group, topic, {0: 50, 1: 50})
    assert all(p["committed_offset"] == 50 for p in lag(broker, group, [topic], "earliest")["partitions"])

    admin_result(b, lambda admin: admin.delete_topics([topic], operation_timeout=CLIENT_TIMEOUT_S), topic)
    wait_until(lambda: topic_partition_count(b, topic) is None, WAIT_S, f"{topic} deleted")
    create_topic(b, topic, 2)
    acked = produce_ok(b, topic, keyed_records(20)).acked

    def fresh():
        report = lag(broker, group, [topic], "earliest")
        return report if all(p["committed_offset"] in (None, -1) for p in report["partitions"]) else None

    report = wait_until(fresh, WAIT_S, "the old commits gone")
    assert report["total_lag"] == len(acked), report
    assert all(o < 0 for o in committed(b, group, topic, [0, 1]).values())
