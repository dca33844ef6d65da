"""Consumer lag as the broker computes it (the autoscaler's input): per partition,
max(0, high watermark - committed), counting from the log start when nothing is
committed or the commit points at records retention already deleted. Served as JSON
on GET /v1/groups/{group}/lag and as tideway_consumer_group_lag metrics."""

from __future__ import annotations

import json

from clients import create_topic, keyed_records, produce_ok, unique_topic, watermarks, make_consumer
from groups import commit
from harness import wait_until


def lag(broker, group: str) -> dict:
    status, body = broker.http(f"/v1/groups/{group}/lag")
    assert status == 200, (status, body)
    return json.loads(body)


def by_partition(report: dict) -> dict[int, tuple[int | None, int, int, int]]:
    return {p["partition"]: (p["committed_offset"], p["high_watermark"], p["log_start_offset"], p["lag"]) for p in report["partitions"]}


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

    status, metrics = broker.http("/metrics")
    assert status == 200
    line = next(l for l in metrics.splitlines() if l.startswith("tideway_consumer_group_lag{") and f'group="{group}"' in l and 'partition="2"' in l)
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
