//! `tideway consume`: one member of a consumer group that commits only what
//! it has processed. This is the workload the operator's autoscaler scales,
//! so it must survive brokers restarting and leave the group cleanly when
//! Kubernetes stops it.
//!
//! Offsets: enable.auto.offset.store=false and enable.auto.commit=false.
//! A record's offset is stored after it is processed (printed or counted),
//! and stored offsets are committed
//! 1. every --commit-interval-ms (asynchronously, when anything new was stored),
//! 2. synchronously before partitions are revoked in a rebalance, so their
//!    next owner starts after the last processed record,
//! 3. synchronously on exit (SIGTERM, SIGINT, --count reached), before the
//!    consumer is closed, which leaves the group.
//!
//! Errors from the brokers (a broker restarting, all brokers briefly down,
//! a failed commit) are logged and consumption goes on: librdkafka
//! reconnects and rejoins by itself. Only a fatal client error, a failed
//! write to stdout or a failed final commit ends the process non-zero.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::MissedTickBehavior;
use tracing::{info, warn};

use crate::args::{Common, ConsumeArgs};
use crate::client::{LogContext, build_config, is_transport_error};
use crate::rate::{RateLimiter, rate_per_second};

/// Why the consume loop ended.
#[derive(Debug)]
pub enum Stop {
    Signal(&'static str),
    CountReached,
    /// Writing a record to stdout failed (e.g. the reader went away).
    Output(std::io::Error),
    /// librdkafka reported an error it cannot recover from.
    Fatal(String),
}

/// What a run did, for the summary line.
#[derive(Debug)]
pub struct ConsumeSummary {
    pub consumed: u64,
    pub stop: Stop,
    /// The final synchronous commit: Ok(false) when there was nothing to commit.
    pub final_commit: Result<bool, KafkaError>,
}

/// Consumer callbacks: logs assignments, commits before giving partitions up.
#[derive(Default)]
struct GroupContext {
    log: LogContext,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.log.log(level, facility, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            info!(
                "giving up {}",
                format_partitions(&list_partitions(partitions))
            );
            if let Err(e) = execute_commit(consumer, CommitMode::Sync) {
                warn!(
                    "committing before giving up partitions failed: {e}; their next owner re-reads from the previous commit"
                );
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                info!(
                    "assigned {}",
                    format_partitions(&list_partitions(partitions))
                )
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => warn!("rebalance failed: {e}"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => self
                .log
                .warn_limited(&format!("committing offsets failed: {e}")),
        }
    }
}

/// Commits the stored offsets of the current assignment. Ok(false) when
/// there was nothing new to commit.
fn execute_commit<C: ConsumerContext, T: Consumer<C>>(
    consumer: &T,
    mode: CommitMode,
) -> Result<bool, KafkaError> {
    match consumer.commit_consumer_state(mode) {
        Ok(()) => Ok(true),
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(false),
        Err(e) => Err(e),
    }
}

fn list_partitions(list: &TopicPartitionList) -> Vec<(String, i32)> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

/// "orders[0,1,2] audit[3]": partitions grouped by topic, sorted; "no partitions" when empty.
pub fn format_partitions(partitions: &[(String, i32)]) -> String {
    let mut sorted = partitions.to_vec();
    sorted.sort();
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for (topic, partition) in sorted {
        match groups.last_mut() {
            Some((t, ids)) if *t == topic => ids.push(partition.to_string()),
            _ => groups.push((topic, vec![partition.to_string()])),
        }
    }
    if groups.is_empty() {
        return "no partitions".to_string();
    }
    groups
        .iter()
        .map(|(t, ids)| format!("{t}[{}]", ids.join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `topic \t partition \t offset \t key \t value \n`, key and value as raw bytes.
fn write_record(out: &mut impl Write, message: &BorrowedMessage<'_>) -> std::io::Result<()> {
    write!(
        out,
        "{}\t{}\t{}\t",
        message.topic(),
        message.partition(),
        message.offset()
    )?;
    out.write_all(message.key().unwrap_or_default())?;
    out.write_all(b"\t")?;
    out.write_all(message.payload().unwrap_or_default())?;
    out.write_all(b"\n")
}

/// SIGTERM and SIGINT as one stream.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

struct Progress {
    at: Instant,
    consumed: u64,
}

pub async fn run(
    common: &Common,
    args: &ConsumeArgs,
    out: &mut impl Write,
) -> anyhow::Result<ConsumeSummary> {
    let settings = [
        ("group.id", args.group.clone()),
        ("enable.auto.commit", "false".to_string()),
        ("enable.auto.offset.store", "false".to_string()),
        ("auto.offset.reset", args.from.as_config().to_string()),
        ("session.timeout.ms", args.session_timeout_ms.to_string()),
    ];
    let consumer: StreamConsumer<GroupContext> = build_config(common, &settings)
        .create_with_context(GroupContext::default())
        .context("creating the consumer")?;
    let topics: Vec<&str> = args.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .context("subscribing to --topic")?;
    let mut signals = Signals::install()?;
    let rate = args.max_rate.map_or("unlimited".to_string(), |r| {
        format!("at most {r} records/s")
    });
    info!(
        "consuming {} as a member of group {} ({rate}, from {} where nothing is committed)",
        topics.join(","),
        args.group,
        args.from.as_config()
    );

    let mut limiter = args.max_rate.map(|r| RateLimiter::new(r, Instant::now()));
    let commit_every = Duration::from_millis(args.commit_interval_ms);
    let progress_every = Duration::from_millis(args.progress_interval_ms);
    let start = tokio::time::Instant::now();
    let mut commit_tick = tokio::time::interval_at(start + commit_every, commit_every);
    commit_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut progress_tick = tokio::time::interval_at(start + progress_every, progress_every);
    progress_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut progress = Progress {
        at: Instant::now(),
        consumed: 0,
    };
    let mut consumed = 0u64;
    let mut stored_since_commit = false;

    let stop = loop {
        tokio::select! {
            name = signals.recv() => break Stop::Signal(name),
            _ = commit_tick.tick() => {
                if stored_since_commit {
                    stored_since_commit = false;
                    if let Err(e) = execute_commit(&consumer, CommitMode::Async) {
                        consumer.context().log.warn_limited(&format!("committing offsets failed: {e}"));
                    }
                }
            }
            _ = progress_tick.tick() => {
                let now = Instant::now();
                let rate = rate_per_second(consumed - progress.consumed, now.duration_since(progress.at));
                let assigned = consumer.assignment().map(|a| a.count()).unwrap_or(0);
                info!("consumed {consumed} records so far ({rate:.1}/s lately), {assigned} partitions assigned");
                progress = Progress { at: now, consumed };
            }
            received = consumer.recv() => {
                let message = match received {
                    Ok(message) => message,
                    Err(e) => {
                        if let Some((code, reason)) = consumer.client().fatal_error() {
                            break Stop::Fatal(format!("{code}: {reason}"));
                        }
                        if !is_transport_error(&e) {
                            consumer.context().log.warn_limited(&format!("consuming: {e}"));
                        }
                        continue;
                    }
                };
                if let Some(limiter) = limiter.as_mut() {
                    let wait = limiter.acquire(Instant::now());
                    if !wait.is_zero() {
                        tokio::select! {
                            name = signals.recv() => break Stop::Signal(name),
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                }
                // Processing: print or count. Only then is the offset stored.
                if args.print
                    && let Err(e) = write_record(out, &message)
                {
                    break Stop::Output(e);
                }
                if let Err(e) = consumer.store_offset_from_message(&message) {
                    // The partition was revoked meanwhile: its next owner re-reads this record.
                    consumer.context().log.warn_limited(&format!("storing the offset of a processed record failed: {e}"));
                }
                consumed += 1;
                stored_since_commit = true;
                if args.count == Some(consumed) {
                    break Stop::CountReached;
                }
            }
        }
    };

    match &stop {
        Stop::Signal(name) => {
            info!("{name}: stopping; committing what was processed and leaving the group")
        }
        Stop::CountReached => info!("--count {consumed} reached; committing and leaving the group"),
        Stop::Output(e) => warn!(
            "writing to stdout failed ({e}); committing what was written and leaving the group"
        ),
        Stop::Fatal(e) => warn!("fatal consumer error ({e}); committing what was processed"),
    }
    // A signal now, while the commit or the close hangs (brokers down), ends at once.
    tokio::spawn(async move {
        let name = signals.recv().await;
        eprintln!(
            "tideway consume: {name} while finishing: exiting without waiting for the commit"
        );
        std::process::exit(130);
    });
    let _ = out.flush();
    let final_commit = execute_commit(&consumer, CommitMode::Sync);
    // Closing (on drop) revokes the assignment and sends LeaveGroup, so the
    // remaining members get these partitions without waiting for a session timeout.
    drop(consumer);
    Ok(ConsumeSummary {
        consumed,
        stop,
        final_commit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_grouped_by_topic_and_sorted() {
        let list = [
            ("b".to_string(), 3),
            ("a".to_string(), 2),
            ("a".to_string(), 0),
            ("b".to_string(), 1),
        ];
        assert_eq!(format_partitions(&list), "a[0,2] b[1,3]");
        assert_eq!(format_partitions(&[]), "no partitions");
    }
}
