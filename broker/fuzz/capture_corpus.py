"""Records the requests real Kafka clients send, as seeds for the fuzz target.

Starts a tideway-broker behind a recording proxy on loopback (the broker
advertises the proxy, so clients stay on it), runs librdkafka (confluent-kafka),
kcat, franz-go and, with --kafka-home, the Java client (Kafka's own
ProducerPerformance, ConsumerPerformance and TopicCommand) through their usual work (metadata, topic admin, produce with
every codec, the idempotent producer, consumer groups with commits, configs),
and writes each distinct request frame (without its length prefix) to
broker/fuzz/corpus/requests/<api>-v<version>-<hash>.bin.

Run from the repository root with the test venv, after `tests/run.sh` set up
the tools and built the broker:

    ~/.cache/tideway/venv/bin/python broker/fuzz/capture_corpus.py \
        [--kafka-home ~/.cache/tideway/kafka-4.3.1]

(tests/bench/run.sh fetches that Kafka from Maven Central.)

The corpus is committed; rerun this when clients or advertised versions change.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic  # noqa: E402
from fault_proxy import _recv_exact as recv_exact  # noqa: E402
from harness import Broker, broker_binary, free_loopback_ports  # noqa: E402

OUT = ROOT / "broker" / "fuzz" / "corpus" / "requests"


class RecordingProxy:
    """Forwards loopback connections to the broker and keeps every request frame."""

    def __init__(self, port: int, target: tuple[str, int]):
        self.target = target
        self.frames: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", port))
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self.requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self.copy, args=(upstream, client), daemon=True).start()

    def requests(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while True:
                head = recv_exact(client, 4)
                if head is None:
                    break
                body = recv_exact(client, struct.unpack(">i", head)[0])
                if body is None:
                    break
                api, version = struct.unpack(">hh", body[:4])
                # The correlation id differs on every request: hash without it.
                digest = hashlib.sha256(body[:4] + body[8:]).hexdigest()[:12]
                with self.lock:
                    self.frames.setdefault(f"{api:02d}-v{version:02d}-{digest}", body)
                upstream.sendall(head + body)
        except OSError:
            pass
        finally:
            upstream.close()
            client.close()

    @staticmethod
    def copy(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            dst.close()


def librdkafka_work(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic("corpus", 3, 1), NewTopic("corpus-admin", 1, 1), NewTopic("corpus-franz", 2, 1)]).values():
        f.result(30)
    for f in admin.create_partitions([NewPartitions("corpus-admin", 2)]).values():
        f.result(30)
    res = ConfigResource(ConfigResource.Type.TOPIC, "corpus")
    for f in admin.describe_configs([res]).values():
        f.result(30)
    for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
        p = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 5})
        for i in range(200):
            p.produce("corpus", key=f"k{i % 7}".encode(), value=f"{codec}-{i}".encode() * 3,
                      headers=[("h", b"v")] if i % 2 else None)
        assert p.flush(30) == 0
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    for i in range(50):
        p.produce("corpus", value=f"idem-{i}".encode())
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "corpus-group", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe(["corpus"])
    seen = 0
    for _ in range(200):
        msg = c.poll(0.5)
        if msg is not None and msg.error() is None:
            seen += 1
            c.commit(msg, asynchronous=False)
        if seen >= 20:
            break
    c.close()
    list(admin.list_consumer_groups().result(30).valid)
    for f in admin.delete_topics(["corpus-admin"]).values():
        f.result(30)


def java_work(bootstrap: str, kafka_home: Path) -> None:
    def tool(main: str, *args: str) -> None:
        done = subprocess.run(["java", "-Xmx256M", "-cp", f"{kafka_home}/lib/*", main, *args],
                              capture_output=True, timeout=300)
        assert done.returncode == 0, f"{main}: {done.stderr.decode()[-2000:]}"

    tool("org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bootstrap, "--create",
         "--topic", "corpus-java", "--partitions", "2", "--config", "retention.ms=3600000")
    tool("org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bootstrap, "--describe",
         "--topic", "corpus-java")
    for codec in ("none", "lz4", "zstd"):
        tool("org.apache.kafka.tools.ProducerPerformance", "--topic", "corpus-java", "--num-records", "2000",
             "--record-size", "100", "--throughput", "-1", "--producer-props", f"bootstrap.servers={bootstrap}",
             "acks=all", f"compression.type={codec}")
    tool("org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", bootstrap, "--topic", "corpus-java",
         "--messages", "2000", "--group", "corpus-java-group")


def main() -> None:
    kafka_home = None
    if "--kafka-home" in sys.argv:
        kafka_home = Path(sys.argv[sys.argv.index("--kafka-home") + 1]).expanduser()
    proxy_port, = free_loopback_ports(1)
    work = ROOT / "target" / "fuzz-capture"
    subprocess.run(["rm", "-rf", str(work)], check=True)
    broker = Broker(broker_binary(), work, name="capture",
                    args=("--advertised-address", f"127.0.0.1:{proxy_port}"))
    broker.start()
    try:
        proxy = RecordingProxy(proxy_port, ("127.0.0.1", broker.kafka_port))
        bootstrap = f"127.0.0.1:{proxy_port}"
        librdkafka_work(bootstrap)
        subprocess.run(["kcat", "-b", bootstrap, "-L"], check=True, capture_output=True, timeout=60)
        subprocess.run(["kcat", "-b", bootstrap, "-t", "corpus-kcat", "-P", "-K:"], input=b"a:1\nb:2\n",
                       check=True, capture_output=True, timeout=60)
        subprocess.run(["kcat", "-b", bootstrap, "-t", "corpus-kcat", "-C", "-e"], check=True,
                       capture_output=True, timeout=60)
        franzgo = os.environ.get("TIDEWAY_FRANZGO_BIN", str(Path.home() / ".cache/tideway/bin/franzgo"))
        franz = subprocess.run([franzgo, bootstrap, "corpus-franz", "corpus-franz-group", "100"],
                               capture_output=True, timeout=180)
        assert franz.returncode == 0, franz.stderr.decode()[-2000:]
        if kafka_home is not None:
            java_work(bootstrap, kafka_home)
    finally:
        broker.ensure_stopped()
    OUT.mkdir(parents=True, exist_ok=True)
    with proxy.lock:
        frames = dict(proxy.frames)
    for name, body in sorted(frames.items()):
        (OUT / f"{name}.bin").write_bytes(body)
    apis = sorted({name[:2] for name in frames})
    print(f"wrote {len(frames)} request frames of {len(apis)} APIs to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
