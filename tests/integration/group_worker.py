"""A consumer-group member for the integration tests, run as its own process so a
test can SIGKILL it. Commit-after-processing: each record is appended to the output
file (flushed) and only then its offset is committed synchronously.

usage: group_worker.py BOOTSTRAP GROUP TOPIC OUTFILE [SESSION_TIMEOUT_MS]
Output lines: "<partition> <offset> <value>". Exits cleanly (closing the consumer,
which leaves the group) on SIGTERM.
"""

from __future__ import annotations

import signal
import sys

from confluent_kafka import Consumer, KafkaException

stop = False


def on_term(signum, frame):
    global stop
    stop = True


def main() -> None:
    bootstrap, group, topic, outfile = sys.argv[1:5]
    session_ms = int(sys.argv[5]) if len(sys.argv) > 5 else 6000
    signal.signal(signal.SIGTERM, on_term)
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": session_ms,
        "heartbeat.interval.ms": max(100, session_ms // 6),
        "partition.assignment.strategy": "range",
    })
    consumer.subscribe([topic])
    with open(outfile, "ab", buffering=0) as out:
        while not stop:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            out.write(b"%d %d %s\n" % (msg.partition(), msg.offset(), msg.value()))
            try:
                # Per-partition errors come back in the result, not as an exception.
                for tp in consumer.commit(message=msg, asynchronous=False) or []:
                    if tp.error is not None:
                        print(f"commit of {tp.partition}@{tp.offset} failed: {tp.error}", file=sys.stderr, flush=True)
            except KafkaException as e:
                # A rebalance took the partition away: the record is re-read by its new owner.
                print(f"commit failed: {e}", file=sys.stderr, flush=True)
    consumer.close()


if __name__ == "__main__":
    main()
