//! `tideway lag`: a group's lag per partition from the client side: its
//! committed offsets (OffsetFetch, by a consumer configured with the
//! group's id that never subscribes, so the group is not joined or
//! disturbed) against each partition's watermarks (ListOffsets).
//!
//! The arithmetic ([`partition_lag`]) is the broker's
//! (`GET /v1/groups/{group}/lag`): records below the log start were deleted
//! by retention and are not lag.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::Offset;

use crate::args::{Common, LagArgs};
use crate::client::{LogContext, build_config};
use crate::table;

/// One partition's line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// None when the group never committed for this partition.
    pub committed: Option<i64>,
    pub low_watermark: i64,
    pub high_watermark: i64,
    pub lag: i64,
}

/// Records the group has yet to consume on one partition:
/// `max(0, high − max(committed, low))`, and `high − low` when nothing is
/// committed (a new member starts at the earliest record it can read). A
/// commit past the high watermark (a client bug) is lag 0, never negative.
pub fn partition_lag(committed: Option<i64>, low_watermark: i64, high_watermark: i64) -> i64 {
    let from = committed.map_or(low_watermark, |c| c.max(low_watermark));
    (high_watermark - from).max(0)
}

pub fn total_lag(partitions: &[PartitionLag]) -> i64 {
    partitions.iter().map(|p| p.lag).sum()
}

pub fn build_report(partitions: &[PartitionLag]) -> String {
    let rows: Vec<Vec<String>> = partitions
        .iter()
        .map(|p| {
            vec![
                p.topic.clone(),
                p.partition.to_string(),
                p.committed
                    .map_or_else(|| "-".to_string(), |c| c.to_string()),
                p.high_watermark.to_string(),
                p.lag.to_string(),
            ]
        })
        .collect();
    let mut out = table::render(
        &["TOPIC", "PARTITION", "COMMITTED", "HIGH-WATERMARK", "LAG"],
        &rows,
    );
    out.push_str(&format!("TOTAL LAG {}\n", total_lag(partitions)));
    out
}

pub fn run(common: &Common, args: &LagArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(common.timeout_ms);
    let settings = [
        ("group.id", args.group.clone()),
        ("enable.auto.commit", "false".to_string()),
    ];
    let consumer: BaseConsumer<LogContext> = build_config(common, &settings)
        .create_with_context(LogContext::default())
        .context("creating the consumer that reads committed offsets")?;
    let partitions = fetch_lag(&consumer, &args.topics, timeout)?;
    out.write_all(build_report(&partitions).as_bytes())?;
    Ok(())
}

/// Committed offsets and watermarks of every partition of `topics`.
fn fetch_lag(
    consumer: &BaseConsumer<LogContext>,
    topics: &[String],
    timeout: Duration,
) -> anyhow::Result<Vec<PartitionLag>> {
    // All topics: asking for one by name could auto-create it.
    let metadata = consumer.fetch_metadata(None, timeout).context(
        "fetching the cluster's metadata from the brokers (--bootstrap) within --timeout-ms",
    )?;
    let mut wanted = TopicPartitionList::new();
    for topic in topics {
        let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
            bail!("topic '{topic}' does not exist (--topic)");
        };
        let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        ids.sort_unstable();
        for id in ids {
            wanted.add_partition(topic, id);
        }
    }
    let committed = consumer
        .committed_offsets(wanted, timeout)
        .context("fetching the group's committed offsets within --timeout-ms")?;
    let mut out = Vec::new();
    for elem in committed.elements() {
        elem.error().with_context(|| {
            format!("committed offset of {}[{}]", elem.topic(), elem.partition())
        })?;
        let committed = match elem.offset() {
            Offset::Offset(n) => Some(n),
            _ => None,
        };
        let (low, high) = consumer
            .fetch_watermarks(elem.topic(), elem.partition(), timeout)
            .with_context(|| {
                format!(
                    "fetching the watermarks of {}[{}]",
                    elem.topic(),
                    elem.partition()
                )
            })?;
        out.push(PartitionLag {
            topic: elem.topic().to_string(),
            partition: elem.partition(),
            committed,
            low_watermark: low,
            high_watermark: high,
            lag: partition_lag(committed, low, high),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_from_the_commit_or_from_the_log_start() {
        assert_eq!(partition_lag(Some(10), 0, 100), 90);
        assert_eq!(partition_lag(Some(100), 0, 100), 0);
        assert_eq!(
            partition_lag(None, 0, 100),
            100,
            "nothing committed: the whole log"
        );
        assert_eq!(
            partition_lag(None, 40, 100),
            60,
            "nothing committed: what retention kept"
        );
        assert_eq!(
            partition_lag(Some(5), 40, 100),
            60,
            "a commit below the log start: deleted records are not lag"
        );
        assert_eq!(
            partition_lag(Some(150), 0, 100),
            0,
            "a commit past the end is never negative"
        );
        assert_eq!(partition_lag(None, 0, 0), 0);
    }

    #[test]
    fn the_report_has_a_line_per_partition_and_the_total() {
        let p = |partition, committed, high| PartitionLag {
            topic: "t".into(),
            partition,
            committed,
            low_watermark: 0,
            high_watermark: high,
            lag: partition_lag(committed, 0, high),
        };
        let report = build_report(&[p(0, Some(3), 10), p(1, None, 4)]);
        assert_eq!(
            report,
            "TOPIC  PARTITION  COMMITTED  HIGH-WATERMARK  LAG\n\
             t      0          3          10              7\n\
             t      1          -          4               4\n\
             TOTAL LAG 11\n"
        );
    }
}
