"""Configured limits: the maximum record batch size and log retention by bytes and by time."""

import pytest

from clients import (
    CLIENT_AUTO_OFFSET_RESET,
    MESSAGE_TOO_LARGE,
    OFFSET_OUT_OF_RANGE,
    assert_consumed_matches,
    consume_all,
    create_topic,
    first_consume_error,
    keyed_records,
    make_consumer,
    produce,
    produce_ok,
    unique_topic,
    watermarks,
)
from harness import wait_until


def test_batch_over_max_message_bytes_is_rejected_by_the_broker(start_broker):
    broker = start_broker("--max-message-bytes=10000")
    topic = unique_topic("big")
    create_topic(broker.bootstrap, topic)

    # The client's own limit is far higher, so only the broker can refuse the record.
    result = produce(broker.bootstrap, topic, [(b"big", b"0|" + b"x" * 20_000)], {"message.max.bytes": 1_000_000})
    assert not result.acked
    assert result.error_codes() == {MESSAGE_TOO_LARGE}, result.errors

    # The broker still takes records under the limit, and kept nothing of the rejected one.
    small = produce_ok(broker.bootstrap, topic, [(b"small", b"1|" + b"y" * 5_000)])
    assert small.acked[0].offset == 0
    assert_consumed_matches(small.acked, consume_all(broker.bootstrap, topic))


@pytest.mark.parametrize(
    "retention_flags, keeps_newest",
    [
        (["--retention-bytes=50000"], True),  # the newest 50 KB stay
        (["--retention-ms=1000"], False),  # everything expires, possibly the active segment too
    ],
    ids=["by-bytes", "by-time"],
)
def test_retention_deletes_old_segments(start_broker, retention_flags, keeps_newest):
    broker = start_broker("--segment-bytes=16384", "--retention-check-interval-ms=100", *retention_flags)
    topic = unique_topic("retention")
    create_topic(broker.bootstrap, topic)
    # Small batches, so that the ~200 KB spread over many segments.
    result = produce_ok(
        broker.bootstrap, topic, keyed_records(400, payload=b"r" * 400), {"linger.ms": 0, "batch.num.messages": 10}
    )

    consumer = make_consumer(broker.bootstrap)
    try:
        low = wait_until(lambda: watermarks(consumer, topic, 0)[0], 60, "the low watermark to advance past 0")
        assert low <= watermarks(consumer, topic, 0)[1] == 400
    finally:
        consumer.close()

    error = first_consume_error(broker.bootstrap, topic, 0, 0, {"auto.offset.reset": "error"})
    assert error.code() in (CLIENT_AUTO_OFFSET_RESET, OFFSET_OUT_OF_RANGE), error

    # What is left is an unbroken run of the newest acknowledged records.
    remaining = consume_all(broker.bootstrap, topic)[0]
    first = 400 - len(remaining)
    assert [r.offset for r in remaining] == list(range(first, 400))
    assert_consumed_matches([r for r in result.acked if r.offset >= first], {0: remaining})
    if keeps_newest:
        assert remaining, "retention by size deleted the newest records too"
