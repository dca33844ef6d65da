//! Consumer lag, the autoscaler's input: which partitions a lag question
//! covers ([`plan_partitions`]), the arithmetic per partition
//! ([`partition_lag`]) and the report ([`build_group_lag`]). Pure: the
//! coordinator supplies the group and its committed offsets
//! ([`GroupSnapshot`]), [`super::leader_offsets`] the high watermarks and log
//! start offsets read from the partitions' leaders.
//!
//! A lag is never a guess: when any covered partition's offsets could not be
//! read, the whole answer is [`LagError::OffsetsUnreadable`] naming them, so
//! a scaler freezes instead of acting on an under-counted backlog.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::metadata::MetadataImage;

/// (topic, partition index)
pub type TopicPartition = (String, i32);

/// Where a consumer without a committed offset starts (its
/// `auto.offset.reset`), which decides the lag of a partition it never
/// committed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResetPolicy {
    /// From the log start: everything retained is backlog. The default.
    #[default]
    Earliest,
    /// From the high watermark: nothing is backlog until it commits.
    Latest,
}

#[derive(Debug, thiserror::Error)]
#[error("reset policy '{0}' is neither 'earliest' nor 'latest'")]
pub struct UnknownResetPolicy(pub String);

impl FromStr for ResetPolicy {
    type Err = UnknownResetPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "earliest" => Ok(Self::Earliest),
            "latest" => Ok(Self::Latest),
            _ => Err(UnknownResetPolicy(s.to_string())),
        }
    }
}

/// What a lag question asks besides the group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LagQuery {
    /// Empty: the partitions with a commit plus every partition of the
    /// topics the members subscribe to. Otherwise exactly every partition of
    /// these topics, whether the group exists or not.
    pub topics: Vec<String>,
    pub reset: ResetPolicy,
}

/// A partition's offsets as its leader reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub log_start_offset: i64,
    /// What consumers may read up to (not the log end offset: records above
    /// it are not yet replicated to the ISR and not delivered).
    pub high_watermark: i64,
}

/// The offsets of each partition asked for, or why they could not be read.
pub type OffsetsByPartition = BTreeMap<TopicPartition, Result<PartitionOffsets, String>>;

/// One partition's lag, from one snapshot of the committed offsets.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub committed_offset: Option<i64>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub lag: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct GroupLag {
    pub group: String,
    pub state: &'static str,
    pub members: usize,
    pub total_lag: i64,
    pub partitions: Vec<PartitionLag>,
}

/// What the coordinator knew of a group when the question came, taken in
/// one go before any partition offset is read.
#[derive(Clone, Debug, Default)]
pub struct GroupSnapshot {
    pub group: String,
    /// The rebalance state; "Empty" for a group with only offsets, "Dead"
    /// for one with neither members nor offsets.
    pub state: &'static str,
    pub members: usize,
    /// Topics the members subscribe to (consumer protocol groups).
    pub subscribed: BTreeSet<String>,
    pub committed: BTreeMap<TopicPartition, i64>,
}

/// A partition whose offsets could not be read, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    pub topic: String,
    pub partition: i32,
    pub reason: String,
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{} ({})", self.topic, self.partition, self.reason)
    }
}

struct List<'a>(&'a [Unreadable]);

impl fmt::Display for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, u) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{u}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LagError {
    #[error("group '{0}' has no members and no committed offsets")]
    GroupNotFound(String),
    #[error("topic '{0}' does not exist")]
    TopicNotFound(String),
    #[error(
        "the lag of group '{group}' is unknown: the offsets of {} partition(s) could not be read from their leaders: {}",
        partitions.len(),
        List(partitions)
    )]
    OffsetsUnreadable {
        group: String,
        partitions: Vec<Unreadable>,
    },
}

/// A partition's lag: `max(0, HW − max(committed, log start))`.
///
/// 1. A commit below the log start counts from the log start: records that
///    retention deleted are gone, not backlog (KEDA #7936 computed them).
/// 2. No commit: per the consumer's reset policy, everything retained
///    (earliest) or nothing (latest) (KEDA #2612/#2033).
/// 3. Never negative, also for a commit past the high watermark.
///
/// There are no transactions (no control records) in this broker yet, so
/// every offset below the high watermark is a record a consumer will get.
/// When transactions come, control records (and aborted data under
/// read_committed) after the commit must not count.
pub fn partition_lag(committed: Option<i64>, offsets: PartitionOffsets, reset: ResetPolicy) -> i64 {
    let from = match (committed, reset) {
        (Some(c), _) => c.max(offsets.log_start_offset),
        (None, ResetPolicy::Earliest) => offsets.log_start_offset,
        (None, ResetPolicy::Latest) => offsets.high_watermark,
    };
    offsets.high_watermark.saturating_sub(from).max(0)
}

/// Every partition of a topic with `count` partitions.
fn all_of(topic: &str, count: i32) -> impl Iterator<Item = TopicPartition> + '_ {
    (0..count).map(move |p| (topic.to_string(), p))
}

/// Which partitions the lag of `snapshot` covers under `topics`:
///
/// - `topics` given: every partition of each (NOT_FOUND for one that does
///   not exist), and nothing else, whether the group exists or not.
/// - none given: the partitions with a commit plus every partition of the
///   subscribed topics. A group with neither members nor commits is not
///   found. Commits of topics (or partitions) that no longer exist are no
///   partition to lag on: they stay until the group's offsets expire. A
///   subscribed topic that does not exist yet has no backlog either.
pub fn plan_partitions(
    snapshot: &GroupSnapshot,
    topics: &[String],
    image: &MetadataImage,
) -> Result<BTreeSet<TopicPartition>, LagError> {
    if !topics.is_empty() {
        let mut out = BTreeSet::new();
        for topic in topics {
            let meta = image
                .topics
                .get(topic)
                .ok_or_else(|| LagError::TopicNotFound(topic.clone()))?;
            out.extend(all_of(topic, meta.partitions));
        }
        return Ok(out);
    }
    if snapshot.committed.is_empty() && snapshot.members == 0 {
        return Err(LagError::GroupNotFound(snapshot.group.clone()));
    }
    let exists = |(topic, p): &TopicPartition| {
        image
            .topics
            .get(topic)
            .is_some_and(|t| (0..t.partitions).contains(p))
    };
    let mut out: BTreeSet<TopicPartition> = snapshot
        .committed
        .keys()
        .filter(|tp| exists(tp))
        .cloned()
        .collect();
    for topic in &snapshot.subscribed {
        if let Some(t) = image.topics.get(topic) {
            out.extend(all_of(topic, t.partitions));
        }
    }
    Ok(out)
}

/// The group's lag over `partitions`, or OffsetsUnreadable naming every
/// partition without offsets in `offsets` (a missing one counts as
/// unreadable: nothing is dropped silently).
pub fn build_group_lag(
    snapshot: &GroupSnapshot,
    partitions: &BTreeSet<TopicPartition>,
    offsets: &OffsetsByPartition,
    reset: ResetPolicy,
) -> Result<GroupLag, LagError> {
    let mut lags = Vec::with_capacity(partitions.len());
    let mut unreadable = Vec::new();
    for tp in partitions {
        let (topic, partition) = tp.clone();
        match offsets.get(tp) {
            Some(Ok(o)) => {
                let committed = snapshot.committed.get(tp).copied();
                lags.push(PartitionLag {
                    topic,
                    partition,
                    committed_offset: committed,
                    high_watermark: o.high_watermark,
                    log_start_offset: o.log_start_offset,
                    lag: partition_lag(committed, *o, reset),
                });
            }
            Some(Err(reason)) => unreadable.push(Unreadable {
                topic,
                partition,
                reason: reason.clone(),
            }),
            None => unreadable.push(Unreadable {
                topic,
                partition,
                reason: "not read".to_string(),
            }),
        }
    }
    if !unreadable.is_empty() {
        return Err(LagError::OffsetsUnreadable {
            group: snapshot.group.clone(),
            partitions: unreadable,
        });
    }
    Ok(GroupLag {
        group: snapshot.group.clone(),
        state: snapshot.state,
        members: snapshot.members,
        total_lag: lags.iter().map(|p| p.lag).fold(0i64, i64::saturating_add),
        partitions: lags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::MetadataRecord;

    fn at(log_start_offset: i64, high_watermark: i64) -> PartitionOffsets {
        PartitionOffsets {
            log_start_offset,
            high_watermark,
        }
    }

    use ResetPolicy::{Earliest, Latest};

    #[test]
    fn lag_counts_from_the_commit_up_to_the_high_watermark() {
        assert_eq!(partition_lag(Some(5), at(0, 10), Earliest), 5);
        assert_eq!(partition_lag(Some(10), at(0, 10), Earliest), 0);
        // The policy only matters without a commit.
        assert_eq!(partition_lag(Some(5), at(0, 10), Latest), 5);
    }

    #[test]
    fn lag_is_never_negative() {
        // A commit past the HW (a client bug, or a HW read from a new
        // leader behind the old one's) is no negative lag.
        assert_eq!(partition_lag(Some(12), at(0, 10), Earliest), 0);
        assert_eq!(partition_lag(Some(12), at(0, 10), Latest), 0);
        // A log start above the HW cannot happen, but is no negative lag either.
        assert_eq!(partition_lag(None, at(15, 10), Earliest), 0);
        assert_eq!(
            partition_lag(Some(i64::MIN), at(0, i64::MAX), Earliest),
            i64::MAX
        );
    }

    #[test]
    fn records_deleted_by_retention_are_not_lag() {
        // KEDA #7936: a commit below the log start counted the deleted records.
        assert_eq!(partition_lag(Some(2), at(7, 10), Earliest), 3);
        assert_eq!(partition_lag(Some(2), at(7, 10), Latest), 3);
        assert_eq!(partition_lag(Some(-1), at(7, 10), Earliest), 3);
    }

    #[test]
    fn a_partition_never_committed_follows_the_reset_policy() {
        // KEDA #2612/#2033: partitions without a commit were skipped or
        // counted wrong; they are what a consumer starting now would read.
        assert_eq!(
            partition_lag(None, at(4, 10), Earliest),
            6,
            "everything retained"
        );
        assert_eq!(
            partition_lag(None, at(4, 10), Latest),
            0,
            "a latest consumer starts at the end"
        );
        assert_eq!(partition_lag(None, at(0, 0), Earliest), 0);
        assert_eq!(
            ResetPolicy::default(),
            Earliest,
            "UNSPECIFIED keeps earliest"
        );
    }

    #[test]
    fn reset_policy_parses_case_insensitively() {
        assert_eq!("earliest".parse::<ResetPolicy>().ok(), Some(Earliest));
        assert_eq!("LATEST".parse::<ResetPolicy>().ok(), Some(Latest));
        assert!("none".parse::<ResetPolicy>().is_err());
    }

    fn image(topics: &[(&str, i32)]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for (name, partitions) in topics {
            image.apply(&MetadataRecord::TopicCreated {
                name: name.to_string(),
                topic_id: uuid::Uuid::new_v4(),
                partitions: *partitions,
                configs: Default::default(),
                assignments: vec![vec![0]; *partitions as usize],
                origin: Default::default(),
            });
        }
        image
    }

    fn snapshot(
        committed: &[(&str, i32, i64)],
        members: usize,
        subscribed: &[&str],
    ) -> GroupSnapshot {
        GroupSnapshot {
            group: "g".into(),
            state: if members > 0 { "Stable" } else { "Empty" },
            members,
            subscribed: subscribed.iter().map(|s| s.to_string()).collect(),
            committed: committed
                .iter()
                .map(|(t, p, o)| ((t.to_string(), *p), *o))
                .collect(),
        }
    }

    fn tps(list: &[(&str, i32)]) -> BTreeSet<TopicPartition> {
        list.iter().map(|(t, p)| (t.to_string(), *p)).collect()
    }

    #[test]
    fn without_topics_the_commits_and_subscriptions_are_covered() {
        let image = image(&[("a", 2), ("b", 3), ("c", 1)]);
        let s = snapshot(
            &[("a", 1, 5), ("gone", 0, 3), ("a", 9, 1)],
            1,
            &["b", "later"],
        );
        let planned = plan_partitions(&s, &[], &image).expect("plan");
        assert_eq!(planned, tps(&[("a", 1), ("b", 0), ("b", 1), ("b", 2)]));

        let nobody = snapshot(&[], 0, &[]);
        assert!(matches!(
            plan_partitions(&nobody, &[], &image),
            Err(LagError::GroupNotFound(g)) if g == "g"
        ));
    }

    #[test]
    fn with_topics_exactly_their_partitions_are_covered_group_or_not() {
        let image = image(&[("a", 2), ("b", 3)]);
        let s = snapshot(&[("a", 1, 5), ("b", 0, 3)], 1, &["b"]);
        let planned = plan_partitions(&s, &["a".into()], &image).expect("plan");
        assert_eq!(planned, tps(&[("a", 0), ("a", 1)]));

        let nobody = snapshot(&[], 0, &[]);
        let planned = plan_partitions(&nobody, &["b".into()], &image).expect("plan");
        assert_eq!(planned, tps(&[("b", 0), ("b", 1), ("b", 2)]));

        assert!(matches!(
            plan_partitions(&nobody, &["b".into(), "zz".into()], &image),
            Err(LagError::TopicNotFound(t)) if t == "zz"
        ));
    }

    #[test]
    fn the_report_sums_the_partitions() {
        let s = snapshot(&[("a", 0, 4)], 1, &["a"]);
        let partitions = tps(&[("a", 0), ("a", 1)]);
        let offsets: OffsetsByPartition = [
            (("a".to_string(), 0), Ok(at(0, 10))),
            (("a".to_string(), 1), Ok(at(2, 7))),
        ]
        .into();
        let lag = build_group_lag(&s, &partitions, &offsets, Earliest).expect("lag");
        assert_eq!(
            (lag.total_lag, lag.members, lag.state),
            (6 + 5, 1, "Stable")
        );
        assert_eq!(
            lag.partitions[0],
            PartitionLag {
                topic: "a".into(),
                partition: 0,
                committed_offset: Some(4),
                high_watermark: 10,
                log_start_offset: 0,
                lag: 6,
            }
        );
        let lag = build_group_lag(&s, &partitions, &offsets, Latest).expect("lag");
        assert_eq!(lag.total_lag, 6);
    }

    #[test]
    fn one_unreadable_partition_fails_the_whole_answer_naming_it() {
        let s = snapshot(&[("a", 0, 4)], 1, &["a"]);
        let partitions = tps(&[("a", 0), ("a", 1), ("a", 2)]);
        let offsets: OffsetsByPartition = [
            (("a".to_string(), 0), Ok(at(0, 10))),
            (("a".to_string(), 1), Err("no leader".to_string())),
        ]
        .into();
        let err = build_group_lag(&s, &partitions, &offsets, Earliest).expect_err("unreadable");
        let LagError::OffsetsUnreadable { partitions, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(
            partitions.iter().map(|u| u.partition).collect::<Vec<_>>(),
            vec![1, 2],
            "a partition missing from the offsets is unreadable too"
        );
        let message = err.to_string();
        assert!(
            message.contains("a-1 (no leader)") && message.contains("a-2 (not read)"),
            "{message}"
        );
    }
}
