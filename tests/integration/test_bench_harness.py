"""The benchmark harness (tests/bench) still loads and its pure parts still work.

The benchmark itself needs Kafka and a quiet machine and is not part of the suite; this keeps a
change that breaks the harness (it once failed at import) from waiting for the next person who
runs it.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import bench  # noqa: E402
import report  # noqa: E402


def java_string_hash(s: str) -> int:
    h = 0
    for ch in s:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h


def test_scenario_6_topic_names_do_not_collide_in_java_hash_maps():
    names = bench.s6_topic_names()
    assert len(set(names)) == 100
    # TopicPartition.hashCode(): 31 * (31 + partition) + topic.hashCode()
    codes = {(31 * (31 + p) + java_string_hash(t)) & 0xFFFFFFFF for t in names for p in range(10)}
    assert len(codes) == 1000


def test_sizes_scale_and_scenario_6_matches_scenario_2():
    assert bench.FULL.s6_records == bench.FULL.s2_records
    half = bench.scaled(bench.FULL, 0.5)
    assert half.s2_records == bench.FULL.s2_records // 2
    assert bench.scaled(bench.FULL, 1.0) is bench.FULL


def test_the_steady_state_line_wins():
    out = (
        "2000000 records sent, 200000.0 records/sec (195.31 MB/sec), 10.00 ms avg latency, 90.00 ms max latency, "
        "5 ms 50th, 20 ms 95th, 40 ms 99th, 80 ms 99.9th.\n"
        "1800000 steady state records sent, 250000.0 records/sec (244.14 MB/sec), 8.00 ms avg latency, "
        "70.00 ms max latency, 4 ms 50th, 15 ms 95th, 30 ms 99th, 60 ms 99.9th.\n"
    )
    r = bench.parse_producer_perf(out, 1024)
    assert r["records_per_s"] == 250000.0
    assert r["p99_ms"] == 30.0


def test_report_renders_every_metric_it_is_given():
    side = {"mb_per_s": 100.0, "mb_per_s_min": 90.0, "mb_per_s_max": 110.0, "franz_relative_to_8p": 0.9,
            "tool_cpu_seconds": 5.0}
    results = {"machine": {}, "ceilings": {}, "settings": {},
               "scenarios": [{"name": "6 produce over 100 topics x 10 partitions", "tideway": side,
                              "kafka": dict(side, mb_per_s=50.0)}]}
    md = report.markdown(results)
    assert "franz-go: throughput / 8 partitions" in md
    assert "load tool CPU s" in md
    assert "100 (90.0–110)" in md
