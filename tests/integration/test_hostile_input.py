"""Hostile input on the Kafka port (issue 12): malformed frames for every API and
version the broker advertises, array counts and lengths far beyond the frame,
batches whose records lie, and the client-controlled limits. After each, the real
broker process still serves a real client, its memory stayed bounded (VmHWM from
/proc) and it logged no panic."""

from __future__ import annotations

import random
import socket
import struct

import kafka_wire as wire
from clients import CORRUPT_MESSAGE, assert_roundtrip, consume_all, create_topic, unique_topic
from harness import wait_until

INVALID_RECORD = 87
UNSUPPORTED_COMPRESSION_TYPE = 76
# Peak resident memory the broker may reach while being fed garbage. It idles at
# 10-50 MB; a decoder that reserves memory for a claimed count reserves gigabytes.
MAX_PEAK_RSS_KB = 400 * 1024


def peak_rss_kb(broker) -> int:
    with open(f"/proc/{broker.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def assert_healthy(broker) -> None:
    assert broker.is_running(), f"broker exited with {broker.proc.returncode}"
    assert peak_rss_kb(broker) < MAX_PEAK_RSS_KB, f"peak RSS {peak_rss_kb(broker)} kB"
    assert "panicked" not in broker.log_tail(400), "the broker logged a panic"


def api_versions_answer(broker) -> bool:
    reply = wire.call(broker.bootstrap, wire.api_versions_request(correlation_id=1, version=0))
    return wire.parse_api_versions_v0(reply)[1] == 0


def send_and_wait_for_close(broker, data: bytes) -> None:
    """Sends `data` on a fresh connection; the broker answers or closes it. Waits briefly
    for either (a request that decodes, like a long-polling Fetch, may legitimately wait)."""
    with wire.connect(broker.bootstrap) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            return  # closed while sending: that is an answer too
        wire.closed_by_peer(s, timeout=2)


def hostile_bodies(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [
        b"\x7f\xff\xff\xff" * 8,  # every int32 count/length two billion, int16 lengths 32767
        b"\xff\xff\xff\xff\x0f" * 6,  # every unsigned varint (compact count/length) 2^32 - 1
        b"\x00\x00" + b"\x7f\xff\xff\xff" * 6,  # same, shifted by a short field
        b"\xff\xff\xff\xff" * 8,  # -1 everywhere: nulls and negative lengths
        rng.randbytes(64),
        rng.randbytes(2048),
    ]


def test_the_21_byte_metadata_request_that_claims_two_billion_topics(broker):
    # Metadata v1: length, header (api 3, version 1, correlation 7, client id "x"), a
    # topic array count of 2^31 - 1 and two stray bytes: 21 bytes in all.
    body = struct.pack(">hhih", 3, 1, 7, 1) + b"x" + struct.pack(">i", 0x7FFFFFFF) + b"\x00\x00"
    assert len(wire.frame(body)) == 21
    for _ in range(3):  # the same packet again, as an attacker would
        send_and_wait_for_close(broker, wire.frame(body))
    # Metadata v9+ (flexible): compact array claiming 2^32 - 2 topics.
    body = struct.pack(">hhih", 3, 12, 8, 1) + b"x" + b"\x00" + b"\xff\xff\xff\xff\x0f"
    send_and_wait_for_close(broker, wire.frame(body))
    assert_healthy(broker)
    assert_roundtrip(broker.bootstrap)


def test_malformed_frames_for_every_advertised_api_and_version(broker):
    reply = wire.call(broker.bootstrap, wire.api_versions_request(correlation_id=1, version=0))
    _, error, apis = wire.parse_api_versions_v0(reply)
    assert error == 0 and len(apis) >= 20, apis
    sent = 0
    for api, (low, high) in sorted(apis.items()):
        for version in range(low, high + 1):
            header = struct.pack(">hhih", api, version, 1000 + version, 1) + b"x"
            for body in hostile_bodies(seed=api * 100 + version):
                # Header v1 and v2 (a flexible version's empty tagged fields) before the
                # body: one of the two reaches the body decoder of this version.
                for frame in (header + body, header + b"\x00" + body, header[: len(header) - 3]):
                    send_and_wait_for_close(broker, wire.frame(frame))
                    sent += 1
        assert wait_until(lambda: api_versions_answer(broker), 30, f"ApiVersions after API {api}")
        assert_healthy(broker)
    assert sent > 1000
    assert_roundtrip(broker.bootstrap)
    assert_healthy(broker)


def produce_code(broker, topic: str, batch: bytes) -> int:
    reply = wire.call(broker.bootstrap, wire.produce_request_v3(1, topic, 0, batch))
    return wire.parse_produce_response_v3(reply)[(topic, 0)]


def test_batches_whose_records_lie_are_refused_and_never_consumed(broker):
    topic = unique_topic("lies")
    create_topic(broker.bootstrap, topic)
    good = wire.record_batch([(b"k", b"0|good"), (b"k", b"1|good")])
    lies = {
        # A record that declares more bytes than its fields take, CRC correct.
        "record length": wire.batch_around(wire.record_bytes(0, b"k", b"v", length=40), 1),
        # Three records counted, one present.
        "record count": wire.batch_around(wire.record_bytes(0, b"k", b"v"), 3),
        # Records past the count.
        "trailing record": wire.batch_around(
            wire.record_bytes(0, b"k", b"v") + wire.record_bytes(1, b"k", b"w"), 1
        ),
        # Offset deltas that do not count 0, 1.
        "offset delta": wire.batch_around(
            wire.record_bytes(0, b"k", b"v") + wire.record_bytes(7, b"k", b"w"), 2
        ),
    }
    for name, batch in lies.items():
        assert produce_code(broker, topic, batch) == INVALID_RECORD, name
    # gzip (attributes 1) whose payload is not gzip: CRC correct, does not decompress.
    not_gzip = wire.batch_around(b"\x1f\x8b" + b"definitely not deflate" * 4, 1, attributes=1)
    assert produce_code(broker, topic, not_gzip) == CORRUPT_MESSAGE
    # zstd (attributes 4) in a Produce v3 request: Kafka needs v7 for it.
    zstd_v3 = wire.batch_around(b"\x28\xb5\x2f\xfd", 1, attributes=4)
    assert produce_code(broker, topic, zstd_v3) == UNSUPPORTED_COMPRESSION_TYPE
    assert produce_code(broker, topic, good) == 0
    records = consume_all(broker.bootstrap, topic)[0]
    assert [(r.offset, r.key, r.value) for r in records] == [(0, b"k", b"0|good"), (1, b"k", b"1|good")]
    assert_healthy(broker)


def limit_hits(broker, limit: str) -> float:
    status, text = broker.http("/metrics")
    assert status == 200
    for line in text.splitlines():
        if line.startswith(f'tideway_limit_hits_total{{limit="{limit}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_connections_per_ip_are_limited(start_broker):
    broker = start_broker("--max-connections-per-ip", "3")
    held = [wire.connect(broker.bootstrap) for _ in range(3)]
    try:
        for s in held:  # each of the three is served
            s.sendall(wire.api_versions_request(correlation_id=5, version=0))
            assert wire.parse_api_versions_v0(wire.recv_response(s))[1] == 0
        with wire.connect(broker.bootstrap) as fourth:
            assert wire.closed_by_peer(fourth, timeout=30), "a fourth connection from one IP was kept"
        assert limit_hits(broker, "max_connections_per_ip") >= 1
    finally:
        for s in held:
            s.close()
    # Closing them frees the slots.
    wait_until(lambda: api_versions_answer(broker), 30, "a connection after the others closed")
    assert_roundtrip(broker.bootstrap)


def test_a_request_naming_too_many_partitions_closes_only_its_connection(start_broker):
    broker = start_broker("--max-request-partitions", "10")
    topics = [f"t{i}" for i in range(11)]
    with wire.connect(broker.bootstrap) as s:
        s.sendall(wire.metadata_request_v4(correlation_id=3, topics=topics, allow_auto_create=False))
        assert wire.closed_by_peer(s, timeout=30)
    assert limit_hits(broker, "max_request_partitions") == 1
    reply = wire.call(broker.bootstrap, wire.metadata_request_v4(4, topics[:10], allow_auto_create=False))
    assert len(wire.parse_metadata_v4_topic_errors(reply)) == 10
    assert_healthy(broker)


def test_requests_wait_for_the_broker_wide_budget_instead_of_growing_memory(start_broker):
    # A budget of two largest requests: many connections each sending a frame of
    # just under the limit must queue, and the broker's memory stays near the budget.
    broker = start_broker(
        "--max-request-bytes", "4194304",
        "--queued-max-request-bytes", "8388608",
        "--connection-queued-max-bytes", "4194304",
    )
    big = struct.pack(">hhih", 3, 1, 9, 1) + b"x" + b"\x00" * (4_000_000)
    conns = []
    try:
        for _ in range(12):
            s = wire.connect(broker.bootstrap, timeout=1.0)
            conns.append(s)
            try:  # all but the last byte: the frame stays queued
                s.sendall(wire.frame(big)[:-1])
            except socket.timeout:
                pass  # the broker is not reading this connection: it waits for the budget
        wait_until(lambda: limit_hits(broker, "queued_max_request_bytes") >= 1, 60, "a connection waiting for the budget")
        assert peak_rss_kb(broker) < 200 * 1024, f"peak RSS {peak_rss_kb(broker)} kB"
    finally:
        for s in conns:
            s.close()
    wait_until(lambda: api_versions_answer(broker), 30, "ApiVersions after the big frames")
    assert_healthy(broker)


def test_a_frame_sent_too_slowly_is_cut_off_and_frees_its_budget(start_broker):
    broker = start_broker("--frame-read-timeout-ms", "1000", "--max-request-bytes", "4194304",
                          "--queued-max-request-bytes", "4194304", "--connection-queued-max-bytes", "4194304")
    with wire.connect(broker.bootstrap) as slow:
        # The whole budget announced, one byte of it sent, then nothing.
        slow.sendall(struct.pack(">i", 4_194_304) + b"\x00")
        assert wire.closed_by_peer(slow, timeout=30), "a stalled frame kept its connection"
    assert limit_hits(broker, "frame_read_timeout") == 1
    # Its budget is free again: a real client is served.
    wait_until(lambda: api_versions_answer(broker), 30, "ApiVersions after the stalled frame")
    assert_roundtrip(broker.bootstrap)
