"""Hand-built Kafka wire messages for tests that bypass real clients.

Only what the bad-input tests need: request framing, ApiVersions, Metadata v4,
Produce v3 with a v2 record batch (CRC32C in pure Python), and response parsing.
"""

from __future__ import annotations

import socket
import struct
import time

API_PRODUCE = 0
API_FETCH = 1
API_METADATA = 3
API_VERSIONS = 18

# -- CRC32C (Castagnoli), table-driven, reflected polynomial 0x82F63B78 ---------------------


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# -- primitive encoders ------------------------------------------------------------------


def string(s: str | None) -> bytes:
    """Kafka STRING / NULLABLE_STRING: int16 length then UTF-8 bytes (-1 for null)."""
    if s is None:
        return struct.pack(">h", -1)
    raw = s.encode()
    return struct.pack(">h", len(raw)) + raw


def varint(n: int) -> bytes:
    """Zig-zag varint as used inside v2 records."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte = z & 0x7F
        z >>= 7
        if z:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def request_header(api_key: int, api_version: int, correlation_id: int, client_id: str = "tideway-it", flexible: bool = False) -> bytes:
    """Request header v1 (v2 with `flexible`: an empty tagged-field section after client_id)."""
    header = struct.pack(">hhi", api_key, api_version, correlation_id) + string(client_id)
    return header + (b"\x00" if flexible else b"")


def frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


# -- record batch v2 ---------------------------------------------------------------------

# Offset of the CRC field inside a batch: baseOffset(8) batchLength(4) leaderEpoch(4) magic(1).
BATCH_CRC_OFFSET = 17


def record_bytes(offset_delta: int, key: bytes | None, value: bytes, length: int | None = None) -> bytes:
    """One v2 record; `length` overrides its declared length (to make it lie)."""
    body = b"\x00" + varint(0) + varint(offset_delta)  # attributes, timestampDelta, offsetDelta
    body += varint(-1) if key is None else varint(len(key)) + key
    body += varint(len(value)) + value + varint(0)  # value, no headers
    return varint(len(body) if length is None else length) + body


def batch_around(records: bytes, count: int, attributes: int = 0, base_timestamp: int | None = None) -> bytes:
    """A v2 batch header with a correct CRC32C around `records` (which may lie), claiming `count`."""
    ts = base_timestamp if base_timestamp is not None else int(time.time() * 1000)
    after_crc = struct.pack(
        ">hiqqqhii", attributes, count - 1, ts, ts, -1, -1, -1, count
    ) + records  # attributes, lastOffsetDelta, base/max timestamp, producer id/epoch, base seq, count
    crc_part = struct.pack(">ibI", 0, 2, crc32c(after_crc)) + after_crc  # leaderEpoch, magic, crc
    return struct.pack(">qi", 0, len(crc_part)) + crc_part


def record_batch(values: list[tuple[bytes | None, bytes]], base_timestamp: int | None = None) -> bytes:
    """An uncompressed v2 record batch with a correct CRC32C."""
    records = b"".join(record_bytes(i, key, value) for i, (key, value) in enumerate(values))
    return batch_around(records, len(values), base_timestamp=base_timestamp)


def produce_request_v3(correlation_id: int, topic: str, partition: int, batch: bytes, acks: int = -1) -> bytes:
    body = string(None) + struct.pack(">hi", acks, 30_000)  # transactional_id, acks, timeout_ms
    body += struct.pack(">i", 1) + string(topic)
    body += struct.pack(">i", 1) + struct.pack(">i", partition) + struct.pack(">i", len(batch)) + batch
    return frame(request_header(API_PRODUCE, 3, correlation_id) + body)


def parse_produce_response_v3(payload: bytes) -> dict[tuple[str, int], int]:
    """(topic, partition) -> error_code from a Produce v3 response (after the length prefix)."""
    r = Reader(payload)
    r.int32()  # correlation id
    out = {}
    for _ in range(r.int32()):
        name = r.string()
        for _ in range(r.int32()):
            index, error = r.int32(), r.int16()
            r.int64()  # base_offset
            r.int64()  # log_append_time_ms
            out[(name, index)] = error
    return out


# -- ApiVersions, Metadata ---------------------------------------------------------------


def api_versions_request(correlation_id: int, version: int) -> bytes:
    """ApiVersions at `version`; v3+ carries header v2 and a client software name/version."""
    flexible = version >= 3
    body = b""
    if flexible:
        body = b"\x0btideway-it" + b"\x020" + b"\x00"  # compact strings, then no tagged fields
    return frame(request_header(API_VERSIONS, version, correlation_id, flexible=flexible) + body)


def parse_api_versions_v0(payload: bytes) -> tuple[int, int, dict[int, tuple[int, int]]]:
    """(correlation_id, error_code, api_key -> (min, max)) from a v0-bodied ApiVersions response."""
    r = Reader(payload)
    correlation_id, error = r.int32(), r.int16()
    apis = {}
    for _ in range(r.int32()):
        key, lo, hi = r.int16(), r.int16(), r.int16()
        apis[key] = (lo, hi)
    return correlation_id, error, apis


def metadata_request_v4(correlation_id: int, topics: list[str], allow_auto_create: bool) -> bytes:
    body = struct.pack(">i", len(topics)) + b"".join(string(t) for t in topics)
    body += struct.pack(">?", allow_auto_create)
    return frame(request_header(API_METADATA, 4, correlation_id) + body)


def parse_metadata_v4_topic_errors(payload: bytes) -> dict[str, int]:
    """topic -> error_code from a Metadata v4 response."""
    r = Reader(payload)
    r.int32()  # correlation id
    r.int32()  # throttle_time_ms
    for _ in range(r.int32()):  # brokers
        r.int32(), r.string(), r.int32(), r.string()
    r.string()  # cluster_id
    r.int32()  # controller_id
    out = {}
    for _ in range(r.int32()):
        error, name = r.int16(), r.string()
        r.bool()  # is_internal
        for _ in range(r.int32()):  # partitions
            r.int16(), r.int32(), r.int32()
            r.skip(4 * r.int32())  # replicas
            r.skip(4 * r.int32())  # isr
        out[name] = error
    return out


# -- decoding and sockets ----------------------------------------------------------------


class Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def _take(self, fmt: str):
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def int16(self) -> int:
        return self._take(">h")

    def int32(self) -> int:
        return self._take(">i")

    def int64(self) -> int:
        return self._take(">q")

    def bool(self) -> bool:
        return self._take(">?")

    def skip(self, n: int) -> None:
        self.pos += n

    def string(self) -> str | None:
        n = self.int16()
        if n < 0:
            return None
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        return raw.decode()


def connect(bootstrap: str, timeout: float = 10.0) -> socket.socket:
    host, port = bootstrap.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    s.settimeout(timeout)
    return s


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def recv_response(sock: socket.socket) -> bytes:
    """One length-prefixed response; returns the payload after the length."""
    (length,) = struct.unpack(">i", recv_exact(sock, 4))
    return recv_exact(sock, length)


def call(bootstrap: str, request: bytes) -> bytes:
    """Sends one framed request on a fresh connection and returns the response payload."""
    with connect(bootstrap) as s:
        s.sendall(request)
        return recv_response(s)


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """True when the peer closes (EOF or reset) within `timeout`; data received is discarded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
    return False
