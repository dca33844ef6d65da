"""The client side of the rolling-restart e2e (tests/e2e/operator/roll.sh),
`group-caught-up` for the autoscaling e2e (tests/e2e/operator/autoscale.sh) and
`create-topic` for the mirror-policy e2e (tests/e2e/operator/mirror.sh).

`run` keeps a keyed, idempotent, acks=all producer and a consumer group that
commits after processing going until the file `<out>/stop` appears, while a
sampler reads the group's committed offsets every second. It writes
`<out>/progress` (acked and consumed counts, for the shell to wait on) and, at
the end, `<out>/summary.json`. `verify` then reads the whole topic back and
checks it against what the producer saw acknowledged. Exit status 0 means
every check passed; the summary says why not otherwise.

Checks: every acknowledged record is in the topic exactly once and each key's
records are in the order they were sent; committed offsets never went back;
no delivery error reached the application. Reported, not asserted (numbers
for docs/operations.md): the longest time between two acknowledgements (the
produce stall), overall and within each section roll.sh marks in
`<out>/sections`, and how many records the group received more than once.
"""

import argparse
import json
import os
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

KEYS = 12


def run(args):
    out = args.out
    os.makedirs(out, exist_ok=True)
    stop = threading.Event()
    lock = threading.Lock()
    state = {
        "acked": [],  # (key, seq, partition, offset)
        "ack_times": [],  # wall clock of each acknowledgement
        "errors": [],
        "max_stall_s": 0.0,
        "last_ack": None,
        "consumed": 0,
        "received": {},  # (partition, offset) -> times received
        "regressions": [],
        "committed_samples": 0,
    }

    def on_delivery(err, msg):
        now = time.monotonic()
        with lock:
            if err is not None:
                state["errors"].append(str(err))
                return
            key, seq = msg.value().decode().split(":")
            state["acked"].append((key, int(seq), msg.partition(), msg.offset()))
            state["ack_times"].append(time.time())
            if state["last_ack"] is not None:
                state["max_stall_s"] = max(state["max_stall_s"], now - state["last_ack"])
            state["last_ack"] = now

    def produce():
        producer = Producer({
            "bootstrap.servers": args.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            # Never give up on a record: a delivery error must not reach the application.
            "message.timeout.ms": 600000,
            "metadata.max.age.ms": 5000,
        })
        seq = [0] * KEYS
        i = 0
        while not stop.is_set():
            k = i % KEYS
            producer.produce(args.topic, key=f"k{k}", value=f"k{k}:{seq[k]}", on_delivery=on_delivery)
            seq[k] += 1
            i += 1
            producer.poll(0)
            time.sleep(1.0 / args.rate)
        producer.flush(600)

    def consume():
        consumer = Consumer({
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 30000,
            "metadata.max.age.ms": 5000,
        })
        consumer.subscribe([args.topic])
        drained_since = None
        while True:
            msgs = consumer.consume(200, 1.0)
            for m in msgs:
                if m.error():
                    continue
                with lock:
                    key = (m.partition(), m.offset())
                    state["received"][key] = state["received"].get(key, 0) + 1
                    state["consumed"] = len(state["received"])
            if msgs:
                try:
                    consumer.commit(asynchronous=False)  # after processing
                except KafkaException:
                    pass  # retried with the next batch; a commit lost here only means duplicates
            if stop.is_set() and producer_done.is_set():
                with lock:
                    done = state["consumed"] >= len(state["acked"])
                if done or (drained_since and time.monotonic() - drained_since > 120):
                    break
                drained_since = drained_since or time.monotonic()
        consumer.close()

    def sample():
        # A consumer that never subscribes does not join the group: committed()
        # is a plain OffsetFetch of the group's offsets.
        reader = Consumer({
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "enable.auto.commit": False,
        })
        partitions = None
        last = {}
        while not consumer_done.is_set():
            try:
                if partitions is None:
                    meta = reader.list_topics(args.topic, timeout=10).topics[args.topic]
                    partitions = [TopicPartition(args.topic, p) for p in meta.partitions]
                res = reader.committed(partitions, timeout=10)
                with lock:
                    state["committed_samples"] += 1
                    for tp in res:
                        if tp.offset < 0:
                            continue
                        prev = last.get(tp.partition)
                        if prev is not None and tp.offset < prev:
                            state["regressions"].append(f"partition {tp.partition}: {prev} -> {tp.offset}")
                        last[tp.partition] = max(prev or 0, tp.offset)
            except Exception:  # a coordinator moving: sample again
                pass
            time.sleep(1)
        reader.close()

    producer_done = threading.Event()
    consumer_done = threading.Event()

    def produce_then_mark():
        try:
            produce()
        finally:
            producer_done.set()

    def consume_then_mark():
        try:
            consume()
        finally:
            consumer_done.set()

    threads = [threading.Thread(target=f, daemon=True) for f in (produce_then_mark, consume_then_mark, sample)]
    for t in threads:
        t.start()
    stop_file = os.path.join(out, "stop")
    while not os.path.exists(stop_file):
        with lock:
            line = f"{len(state['acked'])} {state['consumed']} {len(state['errors'])}\n"
        with open(os.path.join(out, "progress.tmp"), "w") as f:
            f.write(line)
        os.replace(os.path.join(out, "progress.tmp"), os.path.join(out, "progress"))
        time.sleep(1)
    stop.set()
    for t in threads:
        t.join(900)
    with lock:
        summary = {
            "acked": len(state["acked"]),
            "producer_errors": state["errors"][:20],
            "max_produce_stall_s": round(state["max_stall_s"], 2),
            "consumed": state["consumed"],
            "received_twice": sum(1 for n in state["received"].values() if n > 1),
            "commit_regressions": state["regressions"][:20],
            "committed_samples": state["committed_samples"],
        }
        with open(os.path.join(out, "acked.json"), "w") as f:
            json.dump(state["acked"], f)
        with open(os.path.join(out, "ack_times.json"), "w") as f:
            json.dump(state["ack_times"], f)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary))


def section_stalls(out):
    """The longest gap between two acknowledgements within each section that
    roll.sh marked in `<out>/sections` (lines `name start end`, Unix seconds)."""
    path = os.path.join(out, "sections")
    if not os.path.exists(path):
        return {}
    with open(os.path.join(out, "ack_times.json")) as f:
        times = json.load(f)
    stalls = {}
    with open(path) as f:
        for line in f:
            name, start, end = line.split()
            inside = [t for t in times if float(start) <= t <= float(end)]
            edges = [float(start)] + inside + [float(end)]
            stalls[name] = round(max(b - a for a, b in zip(edges, edges[1:])), 2)
    return stalls


def verify(args):
    with open(os.path.join(args.out, "acked.json")) as f:
        acked = [tuple(a) for a in json.load(f)]
    with open(os.path.join(args.out, "summary.json")) as f:
        summary = json.load(f)
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group + "-verify",
        "enable.auto.commit": False,
    })
    meta = consumer.list_topics(args.topic, timeout=30).topics[args.topic]
    assignment = []
    ends = {}
    for p in meta.partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(args.topic, p), timeout=30)
        ends[p] = high
        assignment.append(TopicPartition(args.topic, p, low))
    consumer.assign(assignment)
    seen = {}  # (key, seq) -> count
    order = {}  # key -> list of seq in log order (partition is fixed per key)
    done = {p for p, h in ends.items() if h == 0}
    deadline = time.monotonic() + 300
    while len(done) < len(ends) and time.monotonic() < deadline:
        for m in consumer.consume(500, 1.0):
            if m.error():
                continue
            key, seq = m.value().decode().split(":")
            seen[(key, int(seq))] = seen.get((key, int(seq)), 0) + 1
            order.setdefault(key, []).append(int(seq))
            if m.offset() + 1 >= ends[m.partition()]:
                done.add(m.partition())
    consumer.close()
    problems = []
    missing = [a for a in acked if seen.get((a[0], a[1]), 0) == 0]
    twice = [k for k, n in seen.items() if n > 1]
    if missing:
        problems.append(f"{len(missing)} acknowledged records missing, e.g. {missing[:5]}")
    if twice:
        problems.append(f"{len(twice)} records in the log more than once, e.g. {twice[:5]}")
    for key, seqs in order.items():
        if seqs != sorted(seqs):
            problems.append(f"key {key} out of order")
    if summary["producer_errors"]:
        problems.append(f"producer errors reached the application: {summary['producer_errors'][:3]}")
    if summary["commit_regressions"]:
        problems.append(f"committed offsets went back: {summary['commit_regressions'][:3]}")
    if summary["committed_samples"] == 0:
        problems.append("the committed offsets were never sampled")
    report = dict(summary, read_back=sum(seen.values()), stalls_s=section_stalls(args.out), problems=problems)
    print(json.dumps(report))
    return 1 if problems else 0


def topic_config(args):
    """Prints the effective value of one config of a topic."""
    from confluent_kafka.admin import AdminClient, ConfigResource

    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    resource = ConfigResource("TOPIC", args.topic)
    configs = admin.describe_configs([resource])[resource].result(30)
    print(configs[args.config].value)


def create_topic(args):
    """CreateTopics as a Kafka client does it; prints "created" or the Kafka error's name,
    code and message (exit 0 either way: the caller checks which)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    new = NewTopic(args.topic, num_partitions=1, replication_factor=args.replication_factor)
    try:
        admin.create_topics([new], operation_timeout=30)[args.topic].result(60)
        print("created")
    except KafkaException as e:
        err = e.args[0]
        print(f"{err.name()} {err.code()}: {err.str()}")


def group_caught_up(args):
    """Exit 0 when the group's committed offset equals the high watermark on
    every partition of the topic (every record consumed and committed);
    prints the per-partition numbers either way."""
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.group, "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(args.topic, timeout=30).topics[args.topic].partitions
        tps = [TopicPartition(args.topic, p) for p in sorted(partitions)]
        committed = {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=30)}
        highs = {tp.partition: consumer.get_watermark_offsets(tp, timeout=30)[1] for tp in tps}
    finally:
        consumer.close()
    behind = {p: highs[p] - committed[p] for p in highs if committed[p] != highs[p]}
    total = sum(highs.values())
    if behind:
        print(f"not caught up: committed {committed}, high watermarks {highs}")
        return 1
    print(f"{args.group} committed the high watermark of all {len(highs)} partitions ({total} records in the topic)")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["run", "verify", "topic-config", "group-caught-up", "create-topic"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group")
    parser.add_argument("--out")
    parser.add_argument("--config", help="topic-config: the config to print")
    parser.add_argument("--rate", type=float, default=100.0, help="records per second")
    parser.add_argument("--replication-factor", type=int, default=1, help="create-topic: the replication factor")
    args = parser.parse_args()
    if args.mode == "run":
        run(args)
    elif args.mode == "topic-config":
        topic_config(args)
    elif args.mode == "create-topic":
        create_topic(args)
    elif args.mode == "group-caught-up":
        raise SystemExit(group_caught_up(args))
    else:
        raise SystemExit(verify(args))


if __name__ == "__main__":
    main()
