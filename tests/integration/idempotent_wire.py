"""Hand-built idempotent Produce requests (v3), for tests that need exact control over
producer id, epoch and sequence numbers, which no client library exposes."""

from __future__ import annotations

import struct
import time

from kafka_wire import API_PRODUCE, Reader, crc32c, frame, request_header, string, varint


def idempotent_batch(values: list[bytes], producer_id: int, epoch: int, base_sequence: int) -> bytes:
    ts = int(time.time() * 1000)
    records = b""
    for i, value in enumerate(values):
        body = b"\x00" + varint(0) + varint(i) + varint(-1) + varint(len(value)) + value + varint(0)
        records += varint(len(body)) + body
    after_crc = struct.pack(">hiqqqhii", 0, len(values) - 1, ts, ts, producer_id, epoch, base_sequence, len(values)) + records
    crc_part = struct.pack(">ibI", 0, 2, crc32c(after_crc)) + after_crc
    return struct.pack(">qi", 0, len(crc_part)) + crc_part


def idempotent_produce_request(correlation_id: int, topic: str, partition: int, *, producer_id: int, epoch: int,
                               base_sequence: int, values: list[bytes]) -> bytes:
    batch = idempotent_batch(values, producer_id, epoch, base_sequence)
    body = string(None) + struct.pack(">hi", -1, 30_000)
    body += struct.pack(">i", 1) + string(topic)
    body += struct.pack(">i", 1) + struct.pack(">i", partition) + struct.pack(">i", len(batch)) + batch
    return frame(request_header(API_PRODUCE, 3, correlation_id) + body)


def parse_produce_response(payload: bytes) -> tuple[int, int]:
    """(error_code, base_offset) of the single partition in a Produce v3 response."""
    r = Reader(payload)
    r.int32()  # correlation id
    r.int32()  # topics
    r.string()
    r.int32()  # partitions
    r.int32()  # index
    error, base_offset = r.int16(), r.int64()
    return error, base_offset
