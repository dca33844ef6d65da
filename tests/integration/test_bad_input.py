"""Malformed and hostile bytes on the Kafka port: the broker answers or drops the connection, and lives on."""

import random
import struct

import pytest

import kafka_wire as wire
from clients import (
    CORRUPT_MESSAGE,
    UNSUPPORTED_VERSION,
    assert_roundtrip,
    consume_all,
    create_topic,
    unique_topic,
)


def assert_still_serving(broker) -> None:
    assert broker.is_running(), f"broker exited with {broker.proc.returncode}"
    assert_roundtrip(broker.bootstrap)


def send_and_close(broker, data: bytes) -> None:
    with wire.connect(broker.bootstrap) as s:
        s.sendall(data)


def test_crc32c_matches_the_castagnoli_check_value():
    assert wire.crc32c(b"123456789") == 0xE3069283


@pytest.mark.parametrize(
    "garbage",
    [
        random.Random(7).randbytes(4096),
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"\xff" * 64,
        b"\x00\x00\x00\x08" + b"\xff" * 8,  # a short frame with a nonsense header
    ],
    ids=["random", "http-request", "all-ones", "short-frame"],
)
def test_garbage_bytes(broker, garbage):
    send_and_close(broker, garbage)
    assert_still_serving(broker)


def test_truncated_frame_then_close(broker):
    send_and_close(broker, struct.pack(">i", 100) + wire.request_header(wire.API_METADATA, 4, 1))
    assert_still_serving(broker)


def test_oversized_length_prefix_closes_the_connection(broker):
    with wire.connect(broker.bootstrap) as s:
        s.sendall(struct.pack(">i", 0x7FFFFFFF) + b"\x00" * 64)
        assert wire.closed_by_peer(s, timeout=10), "the broker kept a connection that announced a 2 GiB request"
    assert_still_serving(broker)


def test_unknown_api_key(broker):
    send_and_close(broker, wire.frame(wire.request_header(9999, 0, 1)))
    assert_still_serving(broker)


def test_produce_with_a_bad_crc_is_rejected(broker):
    topic = unique_topic("crc")
    create_topic(broker.bootstrap, topic)
    batch = wire.record_batch([(b"k", b"0|good"), (b"k", b"1|good")])

    good = wire.call(broker.bootstrap, wire.produce_request_v3(1, topic, 0, batch))
    assert wire.parse_produce_response_v3(good) == {(topic, 0): 0}, "the hand-built batch should be valid"

    corrupt = bytearray(batch)
    corrupt[-3] ^= 0x01  # a bit inside the last record's value, after the CRC
    bad = wire.call(broker.bootstrap, wire.produce_request_v3(2, topic, 0, bytes(corrupt)))
    assert wire.parse_produce_response_v3(bad) == {(topic, 0): CORRUPT_MESSAGE}

    # Only the good batch was stored.
    records = consume_all(broker.bootstrap, topic)[0]
    assert [(r.offset, r.key, r.value) for r in records] == [(0, b"k", b"0|good"), (1, b"k", b"1|good")]
    assert_still_serving(broker)


def test_api_versions_too_new_gets_a_v0_answer_and_the_connection_stays_open(broker):
    with wire.connect(broker.bootstrap) as s:
        s.sendall(wire.api_versions_request(correlation_id=11, version=99))
        correlation_id, error, apis = wire.parse_api_versions_v0(wire.recv_response(s))
        assert (correlation_id, error) == (11, UNSUPPORTED_VERSION)
        assert wire.API_VERSIONS in apis, f"ApiVersions missing from the fallback list: {apis}"

        s.sendall(wire.api_versions_request(correlation_id=12, version=0))
        correlation_id, error, apis = wire.parse_api_versions_v0(wire.recv_response(s))
        assert (correlation_id, error) == (12, 0)
        for api in (wire.API_PRODUCE, wire.API_FETCH, wire.API_METADATA, wire.API_VERSIONS):
            assert api in apis, f"api key {api} not advertised: {apis}"
    assert_still_serving(broker)
