//! `tideway produce`: stdin's lines or `--count` generated records into one
//! topic with acks=all and the idempotent producer, waiting for every
//! delivery report. What a generated record looks like is pure
//! ([`build_key`], [`build_value`]); librdkafka does batching, retries and
//! partitioning (by key).

use std::io::{BufRead, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use tracing::info;

use crate::args::{Common, ProduceArgs};
use crate::client::{LogContext, build_config};
use crate::rate::rate_per_second;

/// Progress goes to stderr this often while records are outstanding.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Generated values are this long unless --size says otherwise.
const DEFAULT_SIZE_BYTES: u64 = 100;
/// Key prefix of generated records unless --key-prefix says otherwise.
const DEFAULT_KEY_PREFIX: &str = "key-";

/// How a run ended: records handed to librdkafka, acknowledged, failed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProduceSummary {
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    pub first_error: Option<String>,
}

impl ProduceSummary {
    pub fn succeeded(&self) -> bool {
        self.failed == 0 && self.acked == self.sent
    }
}

/// Counts delivery reports; logs through [`LogContext`].
#[derive(Default)]
struct DeliveryCounter {
    log: LogContext,
    acked: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryCounter {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.log.log(level, facility, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| error.to_string());
                }
            }
        }
    }
}

/// The key of generated record `seq`: `<prefix><seq % keys>`.
pub fn build_key(prefix: &str, seq: u64, keys: u64) -> String {
    format!("{prefix}{}", seq % keys.max(1))
}

/// The value of generated record `seq` into `buf`: exactly `size` bytes,
/// the sequence number and '|' first (cut when `size` is smaller), then '.'.
pub fn build_value(seq: u64, size: usize, buf: &mut Vec<u8>) {
    buf.clear();
    let _ = write!(buf, "{seq}|");
    buf.resize(size, b'.');
}

/// One line of stdin without its line ending ("\n" or "\r\n").
fn strip_line_ending(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
}

struct Progress {
    started: Instant,
    last_at: Instant,
    last_acked: u64,
}

impl Progress {
    fn new() -> Self {
        let now = Instant::now();
        Progress {
            started: now,
            last_at: now,
            last_acked: 0,
        }
    }

    /// Logs sent/acknowledged counts when PROGRESS_EVERY has passed.
    fn maybe_log(&mut self, sent: u64, counter: &DeliveryCounter, total: Option<u64>) {
        let now = Instant::now();
        if now.duration_since(self.last_at) < PROGRESS_EVERY {
            return;
        }
        let acked = counter.acked.load(Ordering::Relaxed);
        let failed = counter.failed.load(Ordering::Relaxed);
        let rate = rate_per_second(
            acked.saturating_sub(self.last_acked),
            now.duration_since(self.last_at),
        );
        let of = total.map(|t| format!(" of {t}")).unwrap_or_default();
        info!("sent {sent}{of}, acknowledged {acked}, failed {failed} ({rate:.0} records/s)");
        self.last_at = now;
        self.last_acked = acked;
    }
}

pub fn run(
    common: &Common,
    args: &ProduceArgs,
    out: &mut impl Write,
) -> anyhow::Result<ProduceSummary> {
    let settings = [
        ("acks", "all".to_string()),
        ("enable.idempotence", "true".to_string()),
        ("message.timeout.ms", args.delivery_timeout_ms.to_string()),
    ];
    let producer: BaseProducer<DeliveryCounter> = build_config(common, &settings)
        .create_with_context(DeliveryCounter::default())
        .context("creating the producer")?;
    let mut progress = Progress::new();
    let topic = args.topic.as_str();
    let mut sent = 0u64;

    match args.count {
        Some(count) => {
            let size =
                usize::try_from(args.size.unwrap_or(DEFAULT_SIZE_BYTES)).context("--size")?;
            let prefix = args.key_prefix.as_deref().unwrap_or(DEFAULT_KEY_PREFIX);
            info!(
                "producing {count} records of {size} bytes to {topic} (keys {prefix}0..{prefix}{})",
                args.keys.min(count) - 1
            );
            let mut value = Vec::with_capacity(size);
            for seq in 0..count {
                build_value(seq, size, &mut value);
                let key = build_key(prefix, seq, args.keys);
                execute_send(&producer, topic, Some(key.as_bytes()), &value)?;
                sent += 1;
                progress.maybe_log(sent, producer.context(), Some(count));
            }
        }
        None => {
            info!("producing one record per line of stdin to {topic}");
            let stdin = std::io::stdin();
            let mut input = stdin.lock();
            let mut line = Vec::new();
            loop {
                line.clear();
                if input
                    .read_until(b'\n', &mut line)
                    .context("reading stdin")?
                    == 0
                {
                    break;
                }
                strip_line_ending(&mut line);
                let key = args
                    .key_prefix
                    .as_deref()
                    .map(|p| build_key(p, sent, args.keys));
                execute_send(&producer, topic, key.as_ref().map(String::as_bytes), &line)?;
                sent += 1;
                progress.maybe_log(sent, producer.context(), None);
            }
        }
    }

    // Every record ends acknowledged or failed within --delivery-timeout-ms.
    loop {
        match producer.flush(PROGRESS_EVERY) {
            Ok(()) => break,
            Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) => {
                fail_on_fatal_error(&producer)?;
                progress.maybe_log(sent, producer.context(), args.count);
            }
            Err(e) => return Err(e).context("waiting for delivery reports"),
        }
    }
    let counter = producer.context();
    let summary = ProduceSummary {
        sent,
        acked: counter.acked.load(Ordering::Relaxed),
        failed: counter.failed.load(Ordering::Relaxed),
        first_error: counter.first_error.lock().ok().and_then(|e| e.clone()),
    };
    let secs = progress.started.elapsed().as_secs_f64();
    writeln!(
        out,
        "acknowledged {} of {} records to {topic} in {secs:.1}s; {} failed",
        summary.acked, summary.sent, summary.failed
    )?;
    Ok(summary)
}

/// Hands one record to librdkafka, serving delivery reports while its
/// queue is full.
fn execute_send(
    producer: &BaseProducer<DeliveryCounter>,
    topic: &str,
    key: Option<&[u8]>,
    value: &[u8],
) -> anyhow::Result<()> {
    let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).payload(value);
    if let Some(key) = key {
        record = record.key(key);
    }
    loop {
        match producer.send(record) {
            Ok(()) => {
                producer.poll(Duration::ZERO);
                return Ok(());
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                producer.poll(Duration::from_millis(100));
                fail_on_fatal_error(producer)?;
            }
            Err((e, _)) => {
                return Err(e).with_context(|| format!("producing to {topic} (--topic)"));
            }
        }
    }
}

/// The idempotent producer can fail for good (e.g. fenced); stop then.
fn fail_on_fatal_error(producer: &BaseProducer<DeliveryCounter>) -> anyhow::Result<()> {
    if let Some((code, reason)) = producer.client().fatal_error() {
        bail!("the producer failed for good: {code}: {reason}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_values_have_the_exact_size_and_start_with_the_sequence() {
        let mut buf = Vec::new();
        build_value(42, 8, &mut buf);
        assert_eq!(buf, b"42|.....");
        build_value(123_456, 3, &mut buf);
        assert_eq!(buf, b"123", "cut to --size");
        build_value(7, 0, &mut buf);
        assert!(buf.is_empty());
    }

    #[test]
    fn keys_cycle_over_the_key_count() {
        assert_eq!(build_key("key-", 1003, 1000), "key-3");
        assert_eq!(build_key("k", 5, 1), "k0");
    }

    #[test]
    fn line_endings_are_stripped_once() {
        for (input, want) in [
            (&b"a\n"[..], &b"a"[..]),
            (b"a\r\n", b"a"),
            (b"a", b"a"),
            (b"\n", b""),
            (b"a\n\n", b"a\n"),
        ] {
            let mut line = input.to_vec();
            strip_line_ending(&mut line);
            assert_eq!(line, want, "{input:?}");
        }
    }

    #[test]
    fn a_run_succeeds_only_when_every_record_was_acknowledged() {
        let ok = ProduceSummary {
            sent: 3,
            acked: 3,
            failed: 0,
            first_error: None,
        };
        assert!(ok.succeeded());
        assert!(
            !ProduceSummary {
                acked: 2,
                failed: 1,
                ..ok.clone()
            }
            .succeeded()
        );
        assert!(!ProduceSummary { acked: 2, ..ok }.succeeded());
    }
}
