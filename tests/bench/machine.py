"""Machine-side helpers for tests/bench: process stats from /proc, a minimal Kafka
Metadata client (readiness), the loopback and disk-write ceilings, and the machine
description written into results.json. Standard library only."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import platform
import re
import socket
import statistics
import struct
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024

# --- small helpers -----------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class ProcStats:
    """CPU time and memory of one process, from /proc."""

    def __init__(self, pid: int):
        self.pid = pid

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # after "pid (comm)": state is field 3, utime 14, stime 15 (1-based) -> indices 11, 12
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def _status_kb(self, key: str) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return 0

    def hwm_mb(self) -> float:
        return self._status_kb("VmHWM") / 1024

    def rss_mb(self) -> float:
        return self._status_kb("VmRSS") / 1024


class ProcStatsSum:
    """ProcStats summed over several processes (the brokers of one cluster).

    `hwm_mb` is the sum of each process's own peak, an upper bound of the peak of the sum.
    """

    def __init__(self, pids: list[int]):
        self.parts = [ProcStats(pid) for pid in pids]

    def cpu_seconds(self) -> float:
        return sum(p.cpu_seconds() for p in self.parts)

    def hwm_mb(self) -> float:
        return sum(p.hwm_mb() for p in self.parts)

    def rss_mb(self) -> float:
        return sum(p.rss_mb() for p in self.parts)


# --- Kafka protocol: just enough Metadata v4 to tell when partitions have leaders ---------


def _kstr(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


class _Reader:
    def __init__(self, buf: bytes):
        self.buf, self.pos = buf, 0

    def take(self, fmt: str):
        v = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return v[0]

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.buf[self.pos:self.pos + n].decode()
        self.pos += n
        return s

    def int32_array(self):
        return [self.take(">i") for _ in range(self.take(">i"))]


def metadata(port: int, topics: list[str] | None, timeout: float = 5.0) -> dict[str, list[tuple[int, int]]]:
    """Metadata v4 on 127.0.0.1:port; returns {topic: [(error_code, leader), ...]} (raises on failure)."""
    return _metadata(port, topics, timeout)[1]


def metadata_brokers(port: int, timeout: float = 5.0) -> list[int]:
    """The node ids of the brokers a Metadata v4 answer on 127.0.0.1:port lists (raises on failure)."""
    return _metadata(port, [], timeout)[0]


def _metadata(port: int, topics: list[str] | None, timeout: float) -> tuple[list[int], dict]:
    body = struct.pack(">i", -1) if topics is None else struct.pack(">i", len(topics)) + b"".join(map(_kstr, topics))
    body += b"\x00"  # allow_auto_topic_creation = false
    req = struct.pack(">hhi", 3, 4, 7) + _kstr("tideway-bench") + body
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(struct.pack(">i", len(req)) + req)
        head = _recv_exact(s, 4)
        data = _recv_exact(s, struct.unpack(">i", head)[0])
    r = _Reader(data)
    r.take(">i")  # correlation id
    r.take(">i")  # throttle
    brokers = []
    for _ in range(r.take(">i")):
        brokers.append(r.take(">i")); r.string(); r.take(">i"); r.string()
    r.string()  # cluster id
    r.take(">i")  # controller id
    out = {}
    for _ in range(r.take(">i")):
        err = r.take(">h")
        name = r.string()
        r.take(">b")
        parts = []
        for _ in range(r.take(">i")):
            perr = r.take(">h"); r.take(">i"); leader = r.take(">i")
            r.int32_array(); r.int32_array()
            parts.append((perr, leader))
        out[name] = parts if err == 0 else []
    return brokers, out


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return bytes(buf)


def topics_ready(port: int, topics: list[str] | None, partitions: int | None = None) -> bool:
    try:
        md = metadata(port, topics, timeout=2.0)
    except (OSError, struct.error, UnicodeDecodeError):
        return False
    if topics is None:
        return True
    for t in topics:
        parts = md.get(t, [])
        if not parts or (partitions is not None and len(parts) != partitions):
            return False
        if any(err != 0 or leader < 0 for err, leader in parts):
            return False
    return True


def brokers_listed(port: int, count: int) -> bool:
    """True once the Metadata answer on `port` lists at least `count` brokers."""
    try:
        return len(metadata_brokers(port, timeout=2.0)) >= count
    except (OSError, struct.error, UnicodeDecodeError):
        return False


def http_status(url: str, timeout: float = 2.0) -> int:
    """The HTTP status of GET `url`, or 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, ValueError):
        return 0


def wait_for(cond, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --- ceilings -----------------------------------------------------------------------------


def _loopback_receiver(port_q, total: int) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port_q.put(srv.getsockname()[1])
    conn, _ = srv.accept()
    buf = bytearray(MIB)
    view = memoryview(buf)
    got = 0
    while got < total:
        n = conn.recv_into(view)
        if n == 0:
            break
        got += n
    conn.sendall(b"k")
    conn.close()
    srv.close()


def loopback_mb_per_s(total: int) -> float:
    """One TCP stream over 127.0.0.1 between two processes (one per core), 1 MiB writes."""
    q = multiprocessing.Queue()
    p = multiprocessing.Process(target=_loopback_receiver, args=(q, total))
    p.start()
    port = q.get(timeout=10)
    chunk = b"x" * MIB
    with socket.create_connection(("127.0.0.1", port)) as s:
        t0 = time.monotonic()
        sent = 0
        while sent < total:
            s.sendall(chunk)
            sent += len(chunk)
        s.recv(1)
        elapsed = time.monotonic() - t0
    p.join(10)
    return total / MIB / elapsed


def disk_write_mb_per_s(directory: Path, total: int, fdatasync: bool) -> float:
    """Sequential 1 MiB writes to a new file in `directory`; with `fdatasync`, the final flush is timed too."""
    path = directory / f"ceiling-{os.getpid()}.bin"
    chunk = os.urandom(MIB)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        t0 = time.monotonic()
        written = 0
        while written < total:
            written += os.write(fd, chunk)
        if fdatasync:
            os.fdatasync(fd)
        elapsed = time.monotonic() - t0
        os.close(fd)
    finally:
        path.unlink(missing_ok=True)
    return total / MIB / elapsed


def measure_ceilings(workdir: Path, loopback_bytes: int, disk_bytes: int, repeats: int, say) -> dict:
    """Median of `repeats` measurements of each ceiling; disk files go to `workdir` (the brokers' filesystem)."""
    say(f"ceiling: loopback TCP, {loopback_bytes >> 20} MiB x {repeats}")
    loop = statistics.median(loopback_mb_per_s(loopback_bytes) for _ in range(repeats))
    say(f"  {loop:.0f} MB/s")
    say(f"ceiling: sequential write to {workdir}, {disk_bytes >> 20} MiB x {repeats} (no fsync, and with fdatasync)")
    cache, synced = [], []
    for _ in range(repeats):
        cache.append(disk_write_mb_per_s(workdir, disk_bytes, fdatasync=False))
        synced.append(disk_write_mb_per_s(workdir, disk_bytes, fdatasync=True))
    cache_mb, synced_mb = statistics.median(cache), statistics.median(synced)
    say(f"  {cache_mb:.0f} MB/s into the page cache (the brokers' policy), {synced_mb:.0f} MB/s with fdatasync")
    return {"loopback_mb_per_s": round(loop, 1), "disk_write_mb_per_s": round(cache_mb, 1),
            "disk_write_fdatasync_mb_per_s": round(synced_mb, 1),
            "disk_write_note": "disk_write_mb_per_s is the brokers' fsync policy (never: the OS page cache "
                               "writes back); disk_write_fdatasync_mb_per_s includes a final fdatasync"}


def machine_description(workdir: Path, repo: Path, kafka_version: str) -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    fs = subprocess.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE", "-T", str(workdir)],
                        capture_output=True, text=True).stdout.strip()
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "broker"],
                           capture_output=True, text=True).stdout.strip()
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kb / (1 << 20), 1),
        "kernel": platform.release(), "filesystem": fs, "java": java, "kafka_version": kafka_version,
        "tideway_revision": rev + ("+uncommitted broker changes" if dirty else ""),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "load_avg_at_start": list(os.getloadavg()),
    }


