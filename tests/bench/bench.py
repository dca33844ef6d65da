"""Side-by-side benchmark of tideway-broker and Apache Kafka on this machine.

Started by tests/bench/run.sh, which fetches Kafka, builds the broker and provides a Python
with matplotlib; see docs/benchmarks.md for what each scenario measures.

How a measurement runs (one scenario, one repeat, one broker):
 1. a fresh work directory and free loopback ports; the broker starts alone (scenario 5: three
    brokers of the same kind, one cluster, and nothing else);
 2. topics are created (and pre-filled where the scenario needs it) with the same tool for
    both brokers; nothing of this is measured;
 3. the broker's CPU time is read from /proc/PID/stat, the load tool (a JVM beside the
    broker) runs, the CPU time is read again; the peak RSS is VmHWM from /proc/PID/status
    (scenario 5: both summed over the three processes);
 4. the broker is stopped (SIGTERM, then SIGKILL after a deadline; only the PID we started)
    and its directory removed.
Repeats alternate the order of the two brokers. Each metric is the median of the repeats;
the raw repeats are kept beside it. Nothing fails on the numbers: this is a benchmark.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from machine import (MIB, ProcStats, ProcStatsSum, brokers_listed, free_ports, http_status, machine_description,
                     measure_ceilings, topics_ready, wait_for)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
KAFKA_VERSION = "4.3.1"
FRANZ_GO_VERSION = "v1.22.3"  # tests/bench/franzbench/go.mod

# Topic and broker settings both brokers get (Kafka's defaults, written out for both).
SEGMENT_BYTES = 1073741824
RETENTION_MS = 604800000
MAX_MESSAGE_BYTES = 1048588

# Kafka's own start script defaults (kafka-server-start.sh / kafka-run-class.sh).
KAFKA_BROKER_JVM = [
    "-Xmx1G", "-Xms1G", "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true",
]
TOOL_JVM = ["-Xmx512M", "-server", "-XX:+UseG1GC", "-Djava.awt.headless=true"]


def kafka_cluster_id() -> str:
    """A random KRaft cluster id (base64url of a UUID). One starting with '-'
    is drawn again: kafka-storage would read it as an option and fail."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


@dataclass(frozen=True)
class Sizes:
    """How much work each scenario does; `quick` is for development and CI smoke runs."""

    s1_records: int          # 100-byte records, 1 partition
    s2_records: int          # 1 KiB records, 8 partitions
    s3_records: int          # 1 KiB records consumed from 8 partitions
    s4_seconds: int          # measured seconds at 10,000 records/s (after s4_warmup_s)
    s4_warmup_s: int
    s4_serial_records: int   # EndToEndLatency round trips
    s5_records: int          # 1 KiB records, 8 partitions, RF 3 (its latency part uses s4_seconds, s4_warmup_s)
    s6_records: int          # 1 KiB records over 1,000 partitions (as many as scenario 2)
    s7_idle_s: int
    loopback_bytes: int
    disk_bytes: int


FULL = Sizes(
    s1_records=5_000_000, s2_records=2_000_000, s3_records=2_000_000,
    s4_seconds=30, s4_warmup_s=5, s4_serial_records=5_000, s5_records=1_000_000, s6_records=2_000_000,
    s7_idle_s=10, loopback_bytes=4 << 30, disk_bytes=2 << 30,
)
QUICK = Sizes(
    s1_records=200_000, s2_records=50_000, s3_records=50_000,
    s4_seconds=3, s4_warmup_s=1, s4_serial_records=300, s5_records=20_000, s6_records=50_000,
    s7_idle_s=2, loopback_bytes=256 << 20, disk_bytes=256 << 20,
)

def scaled(s: Sizes, f: float) -> Sizes:
    """The full sizes times `f` (record counts, measured seconds, ceiling bytes), with small floors."""
    if f == 1.0:
        return s
    n = lambda v, lo: max(lo, int(v * f))  # noqa: E731
    return Sizes(
        s1_records=n(s.s1_records, 10_000), s2_records=n(s.s2_records, 10_000), s3_records=n(s.s3_records, 10_000),
        s4_seconds=n(s.s4_seconds, 3), s4_warmup_s=n(s.s4_warmup_s, 1), s4_serial_records=n(s.s4_serial_records, 100),
        s5_records=n(s.s5_records, 10_000), s6_records=n(s.s6_records, 10_000), s7_idle_s=s.s7_idle_s,
        loopback_bytes=n(s.loopback_bytes, 64 * MIB), disk_bytes=n(s.disk_bytes, 64 * MIB),
    )


SCENARIOS = {
    "1": "1 produce, 1 partition, 100 B, acks=1",
    "2": "2 produce, 8 partitions, 1 KiB, acks=all",
    "3": "3 consume 8 partitions from the start, 1 KiB",
    "4": "4 end-to-end latency at 10,000 records/s",
    "5": "5 three brokers, RF=3, min.insync.replicas=2, acks=all",
    "6": "6 produce over 100 topics x 10 partitions, 1 KiB, acks=all",
    "7a": "7a idle memory after start-up",
    "7b": "7b start-up after kill -9 with a full log",
}
# Scenario 5: brokers per cluster, and the settings of its topics (both brokers).
CLUSTER_SIZE = 3
REPLICATED_TOPIC = {"replication_factor": 3, "configs": {"min.insync.replicas": "2"}}

T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[bench {time.monotonic() - T0:7.1f}s] {msg}", flush=True)


# --- brokers ------------------------------------------------------------------------------


class Broker:
    kind = "?"

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.started_at = 0.0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def stats(self) -> ProcStats:
        assert self.proc is not None
        return ProcStats(self.proc.pid)

    def prepare(self) -> None:
        """One-time set-up before the first start (ports, config, formatting)."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        log = open(self.workdir / f"{self.kind}.out", "ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir)
        log.close()

    def wait_ready(self, topics: list[str] | None = None, timeout: float = 600) -> float:
        """Waits until the broker answers Metadata (with leaders for `topics`); returns seconds since start."""
        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}; see {self.workdir}")
            return topics_ready(self.port, topics)
        wait_for(ready, timeout, f"{self.kind} to be ready")
        return time.monotonic() - self.started_at

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            say(f"{self.kind} (pid {self.proc.pid}) did not stop in {timeout:.0f}s; SIGKILL")
            self.kill9()

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


class Tideway(Broker):
    kind = "tideway"

    def __init__(self, workdir: Path, binary: Path, node_id: int = 0, voters: str | None = None):
        super().__init__(workdir)
        self.binary = binary
        self.node_id = node_id
        self.voters = voters  # id@host:admin_port,...; None: a cluster of one

    def prepare(self) -> None:
        if not self.port:  # a TidewayCluster assigns the ports of its nodes itself
            self.port, self.http_port, self.admin_port = free_ports(3)

    def command(self) -> list[str]:
        quorum = [f"--node-id={self.node_id}", f"--voters={self.voters}"] if self.voters else []
        return [
            str(self.binary),
            *quorum,
            f"--data-dir={self.data_dir}",
            f"--listen=127.0.0.1:{self.port}",
            f"--http-listen=127.0.0.1:{self.http_port}",
            f"--admin-listen=127.0.0.1:{self.admin_port}",
            # Kafka leaves flushing to the OS page cache; compare like with like.
            "--fsync=never",
            f"--segment-bytes={SEGMENT_BYTES}",
            f"--retention-ms={RETENTION_MS}",
            "--retention-bytes=-1",
            f"--max-message-bytes={MAX_MESSAGE_BYTES}",
            "--default-partitions=1",
            "--group-initial-rebalance-delay-ms=0",
            "--log=info",
        ]


class Kafka(Broker):
    kind = "kafka"

    def __init__(self, workdir: Path, home: Path, node_id: int = 1, voters: str | None = None,
                 cluster_id: str | None = None):
        super().__init__(workdir)
        self.home = home
        self.node_id = node_id
        # controller.quorum.voters (id@host:controller_port,...) of a static quorum; None: a
        # single combined node formatted with --standalone.
        self.voters = voters
        self.cluster_id = cluster_id or kafka_cluster_id()

    def prepare(self) -> None:
        if not self.port:  # a KafkaCluster assigns the ports of its nodes itself
            self.port, self.controller_port = free_ports(2)
        self.write_properties()
        self.format().wait_checked()

    def write_properties(self) -> None:
        if self.voters:
            quorum = f"controller.quorum.voters={self.voters}"
            rf, min_isr = CLUSTER_SIZE, REPLICATED_TOPIC["configs"]["min.insync.replicas"]
        else:
            quorum = f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}"
            rf, min_isr = 1, 1
        # min.insync.replicas stays 1 at the broker level on both sides (Tideway's default);
        # scenario 5 sets 2 on its topics.
        props = f"""\
process.roles=broker,controller
node.id={self.node_id}
{quorum}
listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={self.data_dir}
num.partitions=1
auto.create.topics.enable=true
log.segment.bytes={SEGMENT_BYTES}
log.retention.ms={RETENTION_MS}
log.retention.bytes=-1
message.max.bytes={MAX_MESSAGE_BYTES}
offsets.topic.replication.factor={rf}
transaction.state.log.replication.factor={rf}
transaction.state.log.min.isr={min_isr}
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
"""
        (self.workdir / "server.properties").write_text(props)

    def format(self) -> "Formatting":
        """Starts kafka-storage format of this node's log directory (a static quorum needs no flag)."""
        args = ["kafka.tools.StorageTool", "format", "-t", self.cluster_id, "-c", "server.properties"]
        if not self.voters:
            args.append("--standalone")
        out = open(self.workdir / "format.out", "wb")
        proc = subprocess.Popen(self._java() + args, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        out.close()
        return Formatting(proc, self.workdir / "format.out")

    def _java(self) -> list[str]:
        return ["java", "-cp", f"{self.home}/lib/*",
                f"-Dlog4j2.configurationFile={HERE / 'log4j2-broker.properties'}",
                f"-Dkafka.logs.dir={self.workdir}"]

    def command(self) -> list[str]:
        return ["java", *KAFKA_BROKER_JVM] + self._java()[1:] + ["kafka.Kafka", "server.properties"]


class Formatting:
    """A running kafka-storage format."""

    def __init__(self, proc: subprocess.Popen, log: Path):
        self.proc, self.log = proc, log

    def wait_checked(self) -> None:
        if self.proc.wait(300) != 0:
            raise RuntimeError(f"kafka-storage format exited {self.proc.returncode}:\n"
                               f"{self.log.read_text(errors='replace')[-2000:]}")


class Cluster:
    """CLUSTER_SIZE brokers of one kind on loopback, each with its own ports, work and data directory,
    seen by a scenario as one Broker: a bootstrap list of all of them, CPU time and peak RSS summed
    over the processes (`stats`), started together and stopped together."""

    kind = "?"

    def __init__(self, workdir: Path, nodes: list[Broker]):
        self.workdir = workdir
        self.nodes = nodes
        self.started_at = 0.0
        self.stop_s = 0.0

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    @property
    def stats(self) -> ProcStatsSum:
        return ProcStatsSum([n.proc.pid for n in self.nodes])

    def start(self) -> None:
        self.started_at = time.monotonic()
        for n in self.nodes:
            n.start()

    def check_running(self) -> None:
        for n in self.nodes:
            if n.proc.poll() is not None:
                raise RuntimeError(f"{n.kind} node {n.node_id} exited with {n.proc.returncode}; see {n.workdir}")

    def node_ready(self, n: Broker) -> bool:
        raise NotImplementedError

    def wait_ready(self, topics: list[str] | None = None, timeout: float = 600) -> float:
        """Waits until every node is ready and lists all the cluster's brokers in Metadata; returns
        seconds since the first start. (Scenario 5 creates its topics after this.)"""
        def ready():
            self.check_running()
            return all(self.node_ready(n) and brokers_listed(n.port, len(self.nodes)) for n in self.nodes)
        wait_for(ready, timeout, f"{self.kind} cluster to be ready", interval=0.1)
        ready_s = time.monotonic() - self.started_at
        say(f"  {len(self.nodes)} {self.kind} brokers ready in {ready_s:.1f}s")
        return ready_s

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM to every node at once (each runs its own controlled shutdown), then waits for all
        up to `timeout`; SIGKILL only for a node still running then (only the PIDs we started)."""
        live = [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]
        if not live:
            return
        t0 = time.monotonic()
        for n in live:
            n.proc.send_signal(signal.SIGTERM)
        for n in live:
            try:
                n.proc.wait(max(0.1, t0 + timeout - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{n.kind} node {n.node_id} (pid {n.proc.pid}) did not stop in {timeout:.0f}s; SIGKILL")
                n.kill9()
        self.stop_s = time.monotonic() - t0

    def kill9(self) -> None:
        for n in self.nodes:
            n.kill9()


class TidewayCluster(Cluster):
    """Three tideway-broker processes voting in one metadata quorum (--node-id, --voters), each with
    the single broker's flags; ready when every /readyz answers 200."""

    kind = "tideway"

    def __init__(self, workdir: Path, binary: Path):
        super().__init__(workdir, [Tideway(workdir / f"n{i}", binary, node_id=i) for i in range(CLUSTER_SIZE)])

    def prepare(self) -> None:
        ports = free_ports(3 * len(self.nodes))  # one call: all distinct
        voters = ",".join(f"{n.node_id}@127.0.0.1:{ports[3 * i + 2]}" for i, n in enumerate(self.nodes))
        for i, n in enumerate(self.nodes):
            n.workdir.mkdir(parents=True, exist_ok=True)
            n.port, n.http_port, n.admin_port = ports[3 * i:3 * i + 3]
            n.voters = voters

    def node_ready(self, n: Tideway) -> bool:
        return http_status(f"http://127.0.0.1:{n.http_port}/readyz") == 200


class KafkaCluster(Cluster):
    """Three KRaft nodes, each broker+controller (the single-node set-up, times three), voting in one
    static controller quorum, formatted with the same cluster id."""

    kind = "kafka"

    def __init__(self, workdir: Path, home: Path):
        cluster_id = kafka_cluster_id()
        super().__init__(workdir, [Kafka(workdir / f"n{i}", home, node_id=i, cluster_id=cluster_id)
                                   for i in range(CLUSTER_SIZE)])

    def prepare(self) -> None:
        ports = free_ports(2 * len(self.nodes))
        voters = ",".join(f"{n.node_id}@127.0.0.1:{ports[2 * i + 1]}" for i, n in enumerate(self.nodes))
        for i, n in enumerate(self.nodes):
            n.workdir.mkdir(parents=True, exist_ok=True)
            n.port, n.controller_port = ports[2 * i:2 * i + 2]
            n.voters = voters
            n.write_properties()
        for f in [n.format() for n in self.nodes]:  # three JVMs at once
            f.wait_checked()

    def node_ready(self, n: Kafka) -> bool:
        return topics_ready(n.port, None)


# --- load tools ---------------------------------------------------------------------------


class Tools:
    """Kafka's load tools and BenchTool, as JVMs beside the broker."""

    def __init__(self, kafka_home: Path, classes: Path, franzbench: Path | None):
        self.cp = f"{classes}:{kafka_home}/lib/*"
        self.franzbench = franzbench  # tests/bench/franzbench, built by run.sh; None without Go

    def run(self, main: str, args: list[str], timeout: float = 1800) -> str:
        return self._exec(main, ["java", *TOOL_JVM, "-cp", self.cp,
                                 f"-Dlog4j2.configurationFile={HERE / 'log4j2-tools.properties'}", main,
                                 *map(str, args)], timeout)

    @staticmethod
    def _exec(name: str, cmd: list[str], timeout: float) -> str:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise RuntimeError(f"{name} exited {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        return p.stdout

    def producer_perf(self, bootstrap: str, topic: str, records: int, size: int, acks: str,
                      warmup: bool = True) -> dict:
        args = ["--bootstrap-server", bootstrap, "--topic", topic, "--num-records", records,
                "--record-size", size, "--throughput", -1]
        if warmup:
            args += ["--warmup-records", records // 10]
        args += ["--command-property", f"acks={acks}"]
        return parse_producer_perf(self.run("org.apache.kafka.tools.ProducerPerformance", args), size)

    def multi_produce(self, bootstrap: str, records: int, topics: list[str]) -> dict:
        """BenchTool multi-produce, 1 KiB, acks=all, with ProducerPerformance's 10 % warm-up."""
        return parse_producer_perf(self.run("BenchTool", ["multi-produce", "--warmup-records", records // 10,
                                                          bootstrap, records, 1024, "all", *topics]), 1024)

    def franz_produce(self, bootstrap: str, records: int, topics: list[str]) -> dict:
        """tests/bench/franzbench: the same load with franz-go (16 KiB batches, as the Java default)."""
        assert self.franzbench is not None
        cmd = [str(self.franzbench), "--warmup-records", str(records // 10), "--batch-bytes", "16384",
               bootstrap, str(records), "1024", *topics]
        return parse_producer_perf(self._exec("franzbench", cmd, 1800), 1024)

    def create_topics(self, bootstrap: str, partitions: int, topics: list[str], replication_factor: int = 1,
                      configs: dict[str, str] | None = None) -> None:
        flags = ["--replication-factor", replication_factor]
        for k, v in (configs or {}).items():
            flags += ["--config", f"{k}={v}"]
        self.run("BenchTool", ["create-topics", *flags, bootstrap, partitions, *topics])


PERF_LINE = re.compile(
    r"(\d+) (?:steady state )?records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
    r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th")


def parse_producer_perf(out: str, size: int) -> dict:
    """ProducerPerformance's summary; the steady-state line (after warm-up) when there is one."""
    lines = [m for m in PERF_LINE.finditer(out)]
    if not lines:
        raise RuntimeError(f"no ProducerPerformance summary in:\n{out[-2000:]}")
    m = lines[-1]
    rps = float(m.group(2))
    return {
        "records_per_s": rps,
        "mb_per_s": rps * size / MIB,
        "avg_ms": float(m.group(4)),
        "p50_ms": float(m.group(6)),
        "p99_ms": float(m.group(8)),
        "p999_ms": float(m.group(9)),
        "max_ms": float(m.group(5)),
    }


def parse_consumer_perf(out: str) -> dict:
    rows = [ln for ln in out.splitlines() if ln.count(",") >= 9 and not ln.startswith("start.time")]
    if not rows:
        raise RuntimeError(f"no ConsumerPerformance result in:\n{out[-2000:]}")
    f = [x.strip() for x in rows[-1].split(",")]
    # start, end, MB, MB/s, nMsg, nMsg/s, rebalance ms, fetch ms, fetch MB/s, fetch nMsg/s
    return {
        "records_per_s": float(f[9]),
        "mb_per_s": float(f[8]),
        "records": int(f[4]),
        "rebalance_ms": float(f[6]),
        "fetch_ms": float(f[7]),
    }


def parse_fixed_rate(out: str) -> dict:
    m = re.search(r"fixed-rate-e2e records=(\d+) rate=(\d+) p50_ms=([\d.]+) p99_ms=([\d.]+) "
                  r"p999_ms=([\d.]+) max_ms=([\d.]+)", out)
    if not m:
        raise RuntimeError(f"no fixed-rate-e2e result in:\n{out[-2000:]}")
    return {"records_per_s": float(m.group(2)), "p50_ms": float(m.group(3)), "p99_ms": float(m.group(4)),
            "p999_ms": float(m.group(5)), "max_ms": float(m.group(6))}


def parse_end_to_end(out: str) -> dict:
    avg = re.search(r"Avg latency: ([\d.]+) ms", out)
    pct = re.search(r"50th = ([\d.]+), 99th = ([\d.]+), 99.9th = ([\d.]+)", out)
    if not (avg and pct):
        raise RuntimeError(f"no EndToEndLatency result in:\n{out[-2000:]}")
    return {"serial_avg_ms": float(avg.group(1)), "serial_p50_ms": float(pct.group(1)),
            "serial_p99_ms": float(pct.group(2)), "serial_p999_ms": float(pct.group(3))}


# --- scenarios ----------------------------------------------------------------------------


def children_cpu_seconds() -> float:
    """CPU time of this process's children that have exited (the load tools, once they are done)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class Measure:
    """Broker CPU seconds over a block, and its peak RSS at the end (a cluster: summed over its
    brokers, with each broker's share beside it); also the CPU time of the load tools that ran and
    exited inside the block (`tool_cpu_seconds`: with broker and tool on the same two cores, a
    side's throughput is bounded by what both need)."""

    def __init__(self, broker: Broker | Cluster):
        self.stats = broker.stats
        self.parts = getattr(self.stats, "parts", None)

    def __enter__(self):
        # Start with no dirty pages from earlier writes: the kernel throttles writers once dirty data
        # passes dirty_ratio (~4 GiB here), and scenario 6 writes 8 GiB per broker in four runs; one
        # of its fourth runs took 3x the usual broker CPU before this. Not measured.
        os.sync()
        self.cpu0 = self.stats.cpu_seconds()
        self.tool0 = children_cpu_seconds()
        self.cpu0_parts = [p.cpu_seconds() for p in self.parts] if self.parts else None
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.result = {"cpu_seconds": self.stats.cpu_seconds() - self.cpu0,
                           "tool_cpu_seconds": children_cpu_seconds() - self.tool0,
                           "rss_peak_mb": self.stats.hwm_mb(),
                           "wall_seconds": time.monotonic() - self.t0}
            if self.parts:  # lists, in node-id order: kept in the raw repeats, not aggregated
                self.result["cpu_seconds_per_broker"] = [
                    round(p.cpu_seconds() - c0, 2) for p, c0 in zip(self.parts, self.cpu0_parts)]
                self.result["rss_peak_mb_per_broker"] = [round(p.hwm_mb(), 1) for p in self.parts]


def scenario_1(b: Broker, tools: Tools, sz: Sizes, opts) -> dict:
    tools.create_topics(b.bootstrap, 1, ["s1"])
    with Measure(b) as m:
        r = tools.producer_perf(b.bootstrap, "s1", sz.s1_records, 100, "1")
    return {**r, **m.result}


def scenario_2(b: Broker, tools: Tools, sz: Sizes, opts) -> dict:
    tools.create_topics(b.bootstrap, 8, ["s2"])
    with Measure(b) as m:
        r = tools.producer_perf(b.bootstrap, "s2", sz.s2_records, 1024, "all")
    return {**r, **m.result}


def scenario_3(b: Broker, tools: Tools, sz: Sizes, opts) -> dict:
    tools.create_topics(b.bootstrap, 8, ["s3"])
    tools.producer_perf(b.bootstrap, "s3", sz.s3_records, 1024, "1", warmup=False)
    with Measure(b) as m:
        out = tools.run("org.apache.kafka.tools.ConsumerPerformance",
                        ["--bootstrap-server", b.bootstrap, "--topic", "s3", "--num-records", sz.s3_records,
                         "--group", "bench-s3", "--timeout", 60000])
    return {**parse_consumer_perf(out), **m.result}


def scenario_4(b: Broker, tools: Tools, sz: Sizes, opts) -> dict:
    tools.create_topics(b.bootstrap, 1, ["s4", "s4serial"])
    with Measure(b) as m:
        out = tools.run("BenchTool", ["fixed-rate-e2e", b.bootstrap, "s4", 10_000, sz.s4_seconds, 100,
                                      sz.s4_warmup_s])
    r = {**parse_fixed_rate(out), **m.result}
    r["mb_per_s"] = r["records_per_s"] * 100 / MIB
    out = tools.run("org.apache.kafka.tools.EndToEndLatency",
                    ["--bootstrap-server", b.bootstrap, "--topic", "s4serial", "--num-records",
                     sz.s4_serial_records, "--producer-acks", "all", "--record-size", 100])
    r.update(parse_end_to_end(out))
    return r


def scenario_5(c: Cluster, tools: Tools, sz: Sizes, opts) -> dict:
    """Scenario 4's fixed-rate run and scenario 2's ProducerPerformance on a three-broker cluster,
    topics with RF 3 and min.insync.replicas=2. Latency first: the throughput run leaves its bytes
    (three copies) as dirty pages the kernel writes back for a while after, which would land in a
    latency run that followed it."""
    tools.create_topics(c.bootstrap, 1, ["s5e2e"], **REPLICATED_TOPIC)
    tools.create_topics(c.bootstrap, 8, ["s5"], **REPLICATED_TOPIC)
    say(f"  end-to-end latency at 10,000 records/s, {sz.s4_warmup_s}+{sz.s4_seconds} s (1 partition, RF 3)")
    with Measure(c) as m:
        out = tools.run("BenchTool", ["fixed-rate-e2e", c.bootstrap, "s5e2e", 10_000, sz.s4_seconds, 100,
                                      sz.s4_warmup_s])
    e2e = parse_fixed_rate(out)
    say(f"    p50 {e2e['p50_ms']:.3f} ms, p99 {e2e['p99_ms']:.3f} ms, p99.9 {e2e['p999_ms']:.3f} ms; "
        f"now producing {sz.s5_records:,} x 1 KiB (8 partitions, RF 3, acks=all)")
    with Measure(c) as t:
        r = tools.producer_perf(c.bootstrap, "s5", sz.s5_records, 1024, "all")
    r.update(t.result)
    r.update({f"e2e_{k}": v for k, v in e2e.items() if k != "records_per_s"})
    r["e2e_cpu_seconds"] = m.result["cpu_seconds"]
    r["e2e_cpu_seconds_per_broker"] = m.result["cpu_seconds_per_broker"]
    r["brokers"] = len(c.nodes)
    return r


def s6_topic_names(n: int = 100) -> list[str]:
    """Scenario 6's topics: `s6-` and 8 hex digits. Numbered names (s6-000 ... s6-099) give 1,000
    partitions only 190 distinct Java TopicPartition hash codes (String.hashCode of names that differ
    in their last digits, plus 31 x partition), so the client's and Kafka's hash maps degrade into
    tree bins: that measured hash collisions, not partitions."""
    return [f"s6-{hashlib.sha1(str(i).encode()).hexdigest()[:8]}" for i in range(n)]


def scenario_6(b: Broker, tools: Tools, sz: Sizes, opts) -> dict:
    """Produce over 1,000 partitions, and the same tool on one 8-partition topic of the same broker
    (the like-for-like ratio); then both again with franz-go, whose producer does not scan every
    partition on each send loop as the Java producer does (see docs/benchmarks.md)."""
    topics = s6_topic_names()
    tools.create_topics(b.bootstrap, 10, topics)
    with Measure(b) as m:
        r = tools.multi_produce(b.bootstrap, sz.s6_records, topics)
    r.update(m.result)
    # Same tool, same broker, one 8-partition topic: separates the cost of 1,000 partitions
    # from the difference between BenchTool and ProducerPerformance (scenario 2).
    tools.create_topics(b.bootstrap, 8, ["s6-base"])
    with Measure(b) as mb:
        base = tools.multi_produce(b.bootstrap, sz.s6_records, ["s6-base"])
    r["baseline_8p_mb_per_s"] = base["mb_per_s"]
    r["baseline_8p_cpu_seconds"] = mb.result["cpu_seconds"]
    r["relative_to_8p_same_tool"] = r["mb_per_s"] / base["mb_per_s"]
    if tools.franzbench is not None:
        with Measure(b) as fm:
            franz = tools.franz_produce(b.bootstrap, sz.s6_records, topics)
        tools.create_topics(b.bootstrap, 8, ["s6-franz-base"])
        with Measure(b) as fb:
            franz_base = tools.franz_produce(b.bootstrap, sz.s6_records, ["s6-franz-base"])
        r.update({
            "franz_mb_per_s": franz["mb_per_s"],
            "franz_p99_ms": franz["p99_ms"],
            "franz_baseline_8p_mb_per_s": franz_base["mb_per_s"],
            "franz_relative_to_8p": franz["mb_per_s"] / franz_base["mb_per_s"],
            "franz_cpu_seconds": fm.result["cpu_seconds"],
            "franz_baseline_8p_cpu_seconds": fb.result["cpu_seconds"],
        })
    return r


def scenario_7a(b: Broker, tools: Tools, sz: Sizes, opts) -> dict:
    # The broker was just started on an empty directory by run_one; ready time is from there.
    time.sleep(sz.s7_idle_s)
    return {"idle_rss_mb": b.stats.rss_mb(), "rss_peak_mb": b.stats.hwm_mb(),
            "startup_s": b.ready_s, "cpu_seconds": b.stats.cpu_seconds()}


def scenario_7b(b: Broker, tools: Tools, sz: Sizes, opts) -> dict:
    records = int(opts.log_gb * (1 << 30)) // 1024
    tools.create_topics(b.bootstrap, 8, ["s7"])
    say(f"  filling {records * 1024 / (1 << 30):.2f} GiB into 8 partitions")
    tools.producer_perf(b.bootstrap, "s7", records, 1024, "1", warmup=False)
    log_bytes = sum(f.stat().st_size for f in b.data_dir.rglob("*.log") if f.is_file())
    b.kill9()
    b.start()
    ready_s = b.wait_ready(["s7"])
    r = {"startup_s": ready_s, "log_gib": log_bytes / (1 << 30), "rss_peak_mb": b.stats.hwm_mb(),
         "cpu_seconds": b.stats.cpu_seconds()}
    if isinstance(b, Kafka):
        # Kafka's own figure for the log loading (recovery) part of its start-up.
        loads = re.findall(r"Loaded \d+ logs in (\d+)ms", (b.workdir / "server.log").read_text(errors="replace"))
        if loads:
            r["log_load_s"] = int(loads[-1]) / 1000
    return r


RUNNERS = {"1": scenario_1, "2": scenario_2, "3": scenario_3, "4": scenario_4, "5": scenario_5, "6": scenario_6,
           "7a": scenario_7a, "7b": scenario_7b}


def run_one(key: str, kind: str, ctx) -> dict:
    workdir = ctx.workroot / f"s{key}-{kind}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    if key == "5":
        b = TidewayCluster(workdir, ctx.broker_bin) if kind == "tideway" else KafkaCluster(workdir, ctx.kafka_home)
    else:
        b = Tideway(workdir, ctx.broker_bin) if kind == "tideway" else Kafka(workdir, ctx.kafka_home)
    try:
        b.prepare()
        b.start()
        b.ready_s = b.wait_ready()
        r = RUNNERS[key](b, ctx.tools, ctx.sizes, ctx.opts)
        # The machine is shared: keep the load beside each measurement (it includes our own ~2).
        r["load_1m_after"] = os.getloadavg()[0]
        if isinstance(b, Cluster):
            # Informative, not in the table: start-up to all brokers listed, and a stop of all of
            # them at once (SIGTERM to each, controlled shutdowns overlapping).
            r["cluster_ready_s"] = b.ready_s
            b.stop()
            r["cluster_stop_s"] = b.stop_s
        return r
    finally:
        b.stop()
        if not ctx.opts.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def aggregate(raw: list[dict]) -> dict:
    """Median of each numeric metric over the repeats, plus min/max and the raw repeats."""
    out: dict = {}
    keys = [k for k in raw[0] if isinstance(raw[0][k], (int, float))]
    for k in keys:
        vals = [r[k] for r in raw if k in r]
        out[k] = round(statistics.median(vals), 3)
        out[f"{k}_min"] = round(min(vals), 3)
        out[f"{k}_max"] = round(max(vals), 3)
    out["repeats"] = raw
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes and 1 repeat (development, CI smoke)")
    ap.add_argument("--repeats", type=int, default=None, help="repeats per scenario and broker (default 3, quick 1)")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiply the full run's record counts and durations (e.g. 0.25 for a reduced run)")
    ap.add_argument("--only", default="", help="comma-separated scenarios, e.g. 1,2,7 (default: all)")
    ap.add_argument("--log-gb", type=float, default=None, help="log size in GiB for scenario 7b (default 2 x --scale, quick 0.0625)")
    ap.add_argument("--broker-bin", type=Path, required=True)
    ap.add_argument("--kafka-home", type=Path, required=True)
    ap.add_argument("--classes", type=Path, required=True, help="directory with the compiled BenchTool")
    ap.add_argument("--franzbench", type=Path, default=None,
                    help="the built tests/bench/franzbench (scenario 6's franz-go part; skipped without it)")
    ap.add_argument("--out", type=Path, default=REPO / "target" / "bench")
    ap.add_argument("--no-ceilings", action="store_true", help="skip the loopback and disk ceilings")
    ap.add_argument("--keep", action="store_true", help="keep broker work directories")
    ap.add_argument("--brokers", default="tideway,kafka", help="which sides to run (development aid)")
    opts = ap.parse_args()
    if opts.repeats is None:
        opts.repeats = 1 if opts.quick else 3
    if opts.log_gb is None:
        opts.log_gb = 0.0625 if opts.quick else round(2.0 * opts.scale, 3)
    wanted = [s.strip() for s in opts.only.split(",") if s.strip()] or ["1", "2", "3", "4", "5", "6", "7"]
    keys = [k for k in SCENARIOS if any(k == w or (w == "7" and k.startswith("7")) for w in wanted)]
    unknown = [w for w in wanted if w not in SCENARIOS and w != "7"]
    if unknown:
        ap.error(f"--only: unknown scenario(s) {unknown}; known: 1,2,3,4,5,6,7 (7a, 7b)")

    class Ctx:
        pass
    ctx = Ctx()
    ctx.opts = opts
    ctx.sizes = QUICK if opts.quick else scaled(FULL, opts.scale)
    ctx.broker_bin = opts.broker_bin.resolve()
    ctx.kafka_home = opts.kafka_home.resolve()
    ctx.tools = Tools(ctx.kafka_home, opts.classes.resolve(),
                      opts.franzbench.resolve() if opts.franzbench else None)
    opts.out = opts.out.resolve()  # brokers run with their work directory as cwd: paths must be absolute
    opts.out.mkdir(parents=True, exist_ok=True)
    ctx.workroot = opts.out / "work"
    shutil.rmtree(ctx.workroot, ignore_errors=True)
    ctx.workroot.mkdir(parents=True)

    mode = "quick" if opts.quick else ("full" if opts.scale == 1.0 else f"reduced (scale {opts.scale:g})")
    say(f"{mode} run: scenarios {','.join(keys)}, {opts.repeats} repeat(s), load {os.getloadavg()[0]:.2f}")
    results = {"machine": machine_description(ctx.workroot, REPO, KAFKA_VERSION), "ceilings": {}, "scenarios": [],
               "settings": {
                   "mode": mode, "repeats": opts.repeats, "sizes": ctx.sizes.__dict__, "log_gb_7b": opts.log_gb,
                   "tideway_flags": "--fsync=never, segment.bytes 1 GiB, retention 7 d, max.message.bytes 1048588, "
                                    "group initial rebalance delay 0",
                   "kafka": f"Apache Kafka {KAFKA_VERSION}, KRaft combined broker+controller, "
                            f"JVM {' '.join(KAFKA_BROKER_JVM)}, same topic settings, log.flush left to the OS",
                   "load_tools": "Kafka 4.3.1 ProducerPerformance, ConsumerPerformance, EndToEndLatency; "
                                 "tests/bench/BenchTool.java for scenarios 4 and 5 (fixed rate) and 6 (many topics, 10 % "
                                 "warm-up as ProducerPerformance); tests/bench/franzbench (franz-go "
                                 f"{FRANZ_GO_VERSION}, 16 KiB batches, no compression) beside it in 6; "
                                 f"tool JVM {' '.join(TOOL_JVM)}; producer defaults otherwise (linger.ms 5, "
                                 "batch.size 16 KiB)",
                   "scenario_5": f"{CLUSTER_SIZE} brokers per side on 127.0.0.1 (Tideway: --node-id/--voters, "
                                 f"same flags as above; Kafka: {CLUSTER_SIZE} combined broker+controller JVMs, "
                                 "static controller.quorum.voters, offsets/transaction topics RF 3); topics RF 3, "
                                 "min.insync.replicas=2; the fixed-rate latency run first, then ProducerPerformance "
                                 "acks=all on 8 partitions; CPU and peak RSS summed over the three processes",
               }}
    if not opts.no_ceilings:
        results["ceilings"] = measure_ceilings(ctx.workroot, ctx.sizes.loopback_bytes, ctx.sizes.disk_bytes,
                                               1 if opts.quick else 3, say)

    failures = 0
    for key in keys:
        name = SCENARIOS[key]
        raw = {"tideway": [], "kafka": []}
        errors = {"tideway": [], "kafka": []}
        for rep in range(opts.repeats):
            order = ["tideway", "kafka"] if rep % 2 == 0 else ["kafka", "tideway"]
            for kind in [k for k in order if k in opts.brokers.split(",")]:
                say(f"scenario {name} | repeat {rep + 1}/{opts.repeats} | {kind}")
                try:
                    r = run_one(key, kind, ctx)
                except Exception as e:  # noqa: BLE001 - a failed run is recorded, the benchmark goes on
                    failures += 1
                    msg = str(e).strip().splitlines()
                    say(f"  FAILED: {' | '.join(msg[:6])}")
                    errors[kind].append(str(e)[-2000:])
                    continue
                raw[kind].append({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()})
                say("  " + ", ".join(f"{k}={v:.4g}" for k, v in r.items() if isinstance(v, (int, float))
                                     and not k.endswith("_ms") or k in ("p99_ms", "p999_ms", "e2e_p99_ms",
                                                                          "e2e_p999_ms")))
        entry = {"name": name}
        for kind in ("tideway", "kafka"):
            entry[kind] = aggregate(raw[kind]) if raw[kind] else {"failed": errors[kind] or ["no run"]}
            if errors[kind] and raw[kind]:
                entry[kind]["errors"] = errors[kind]
        results["scenarios"].append(entry)
        write_outputs(results, opts.out)  # keep partial results if a later scenario breaks

    add_relations(results)
    results["machine"]["load_avg_at_end"] = list(os.getloadavg())
    write_outputs(results, opts.out, chart=True)
    if not opts.keep:
        shutil.rmtree(ctx.workroot, ignore_errors=True)
    say(f"done: {opts.out / 'results.json'}, {opts.out / 'results.md'}, {opts.out / 'results.png'}"
        + (f" ({failures} failed run(s), recorded in results.json)" if failures else ""))
    return 0


def add_relations(results: dict) -> None:
    """Scenarios 5 (the cost of replication) and 6 (of many partitions) relative to scenario 2, and
    throughput relative to the machine's ceilings (not for 5: three brokers move each byte three times)."""
    by = {s["name"].split()[0]: s for s in results["scenarios"]}
    for kind in ("tideway", "kafka"):
        s2 = by.get("2", {}).get(kind, {})
        for other in ("5", "6"):
            so = by.get(other, {}).get(kind, {})
            if "mb_per_s" in s2 and "mb_per_s" in so and s2["mb_per_s"]:
                so["relative_to_scenario_2"] = round(so["mb_per_s"] / s2["mb_per_s"], 3)
        ceil = results.get("ceilings", {})
        for s in results["scenarios"]:
            side = s.get(kind, {})
            if "mb_per_s" in side and s["name"].split()[0] not in ("4", "5"):
                if ceil.get("loopback_mb_per_s"):
                    side["share_of_loopback"] = round(side["mb_per_s"] / ceil["loopback_mb_per_s"], 5)
                if ceil.get("disk_write_mb_per_s") and not s["name"].startswith("3"):
                    side["share_of_disk_write"] = round(side["mb_per_s"] / ceil["disk_write_mb_per_s"], 5)


def write_outputs(results: dict, out: Path, chart: bool = False) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    import report  # same directory
    (out / "results.md").write_text(report.markdown(results))
    if chart:
        try:
            report.chart(results, out / "results.png")
        except ImportError as e:
            say(f"no chart ({e}); run tests/bench/run.sh to get matplotlib")


if __name__ == "__main__":
    sys.exit(main())
