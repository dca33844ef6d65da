//! The group coordinator: owns every group's [`Group`] state machine, parks
//! JoinGroup/SyncGroup requests until their reply is decided, ticks timers,
//! validates and stores offset commits, expires the offsets of groups that
//! stayed empty, and answers consumer lag (the arithmetic is [`super::lag`],
//! the leaders' offsets come from [`super::leader_offsets`]).
//!
//! One lock guards all groups; it is never held across an await. Offset
//! writes go through [`OffsetStore`] after the commit was validated.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use super::lag::{self, GroupLag, GroupSnapshot, LagError, LagQuery, ResetPolicy, TopicPartition};
use super::leader_offsets;
use super::offsets::{Committed, OffsetError, OffsetStore};
use super::state::{
    Group, GroupConfig, GroupState, JoinRequest, JoinResult, Outcome, Reply, SyncResult,
};
use crate::broker::{Broker, now_ms};
use crate::metadata::MetadataImage;

/// Largest metadata string kept with a commit (Kafka's offset.metadata.max.bytes).
pub const MAX_OFFSET_METADATA: usize = 4096;

type Key = (String, String);

#[derive(Default)]
struct Inner {
    groups: HashMap<String, Group>,
    join_waiters: HashMap<Key, oneshot::Sender<JoinResult>>,
    sync_waiters: HashMap<Key, oneshot::Sender<SyncResult>>,
    /// When a group last became empty (ms), for offset retention.
    empty_since: HashMap<String, i64>,
}

impl Inner {
    fn deliver(&mut self, group: &str, replies: Vec<Reply>) {
        for reply in replies {
            match reply {
                Reply::Join(member, r) => {
                    if let Some(tx) = self.join_waiters.remove(&(group.to_string(), member)) {
                        let _ = tx.send(r);
                    }
                }
                Reply::Sync(member, r) => {
                    if let Some(tx) = self.sync_waiters.remove(&(group.to_string(), member)) {
                        let _ = tx.send(r);
                    }
                }
            }
        }
    }

    fn note_emptiness(&mut self, group: &str) {
        match self.groups.get(group) {
            Some(g) if !g.is_empty() => {
                self.empty_since.remove(group);
            }
            _ => {
                self.empty_since
                    .entry(group.to_string())
                    .or_insert_with(now_ms);
            }
        }
    }
}

/// A group as DescribeGroups shows it.
pub struct GroupDescription {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    /// (member id, instance id, client id, client host, metadata, assignment)
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

pub struct GroupCoordinator {
    broker: Arc<Broker>,
    pub offsets: OffsetStore,
    config: GroupConfig,
    offsets_retention_ms: i64,
    inner: Mutex<Inner>,
    /// The metadata image `forget_deleted_topics` last looked at.
    seen_image: Mutex<Option<Arc<MetadataImage>>>,
}

impl GroupCoordinator {
    pub fn open(
        broker: Arc<Broker>,
        partition: Arc<crate::broker::Partition>,
        config: GroupConfig,
        offsets_retention_ms: i64,
    ) -> Result<Self, OffsetError> {
        let offsets = OffsetStore::open(broker.clone(), partition)?;
        let mut inner = Inner::default();
        for g in offsets.groups() {
            inner.empty_since.insert(g, now_ms());
        }
        Ok(Self {
            broker,
            offsets,
            config,
            offsets_retention_ms,
            inner: Mutex::new(inner),
            seen_image: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn join(&self, group_id: &str, req: JoinRequest) -> JoinResult {
        if group_id.is_empty() {
            return JoinResult::error(ResponseError::InvalidGroupId, &req.member_id);
        }
        let wait = req.rebalance_timeout + Duration::from_secs(5);
        let client_id = req.client_id.clone();
        let rx = {
            let mut inner = self.lock();
            let group = inner
                .groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id));
            let (outcome, replies) = group.join(req, Instant::now(), &self.config, || {
                format!("{client_id}-{}", uuid::Uuid::new_v4())
            });
            let rx = match outcome {
                Outcome::Now(r) => {
                    inner.deliver(group_id, replies);
                    inner.note_emptiness(group_id);
                    return r;
                }
                Outcome::Wait(member) => {
                    let (tx, rx) = oneshot::channel();
                    // A retried JoinGroup replaces the earlier one's waiter.
                    inner
                        .join_waiters
                        .insert((group_id.to_string(), member.clone()), tx);
                    (rx, member)
                }
            };
            inner.deliver(group_id, replies);
            inner.note_emptiness(group_id);
            rx
        };
        let (rx, member) = rx;
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(r)) => r,
            _ => JoinResult::error(ResponseError::RebalanceInProgress, &member),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncResult {
        let rx = {
            let mut inner = self.lock();
            let Some(group) = inner.groups.get_mut(group_id) else {
                return SyncResult::error(ResponseError::UnknownMemberId);
            };
            let session = group
                .members
                .get(member_id)
                .map(|m| m.session_timeout)
                .unwrap_or_default();
            let (outcome, replies) = group.sync(
                generation,
                member_id,
                instance_id,
                protocol_type,
                protocol_name,
                assignments,
                Instant::now(),
            );
            let rx = match outcome {
                Outcome::Now(r) => {
                    inner.deliver(group_id, replies);
                    return r;
                }
                Outcome::Wait(member) => {
                    let (tx, rx) = oneshot::channel();
                    inner
                        .sync_waiters
                        .insert((group_id.to_string(), member), tx);
                    (rx, session)
                }
            };
            inner.deliver(group_id, replies);
            rx
        };
        let (rx, session) = rx;
        match tokio::time::timeout(session + Duration::from_secs(5), rx).await {
            Ok(Ok(r)) => r,
            _ => SyncResult::error(ResponseError::RebalanceInProgress),
        }
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> ResponseError {
        let mut inner = self.lock();
        match inner.groups.get_mut(group_id) {
            Some(g) => g.heartbeat(generation, member_id, instance_id, Instant::now()),
            None => ResponseError::UnknownMemberId,
        }
    }

    /// LeaveGroup for each (member id, instance id); one code each.
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Vec<ResponseError> {
        let mut inner = self.lock();
        let mut codes = Vec::with_capacity(members.len());
        for (member_id, instance_id) in members {
            let Some(g) = inner.groups.get_mut(group_id) else {
                codes.push(ResponseError::UnknownMemberId);
                continue;
            };
            let (code, replies) = g.leave(
                member_id,
                instance_id.as_deref(),
                Instant::now(),
                &self.config,
            );
            codes.push(code);
            inner.deliver(group_id, replies);
        }
        inner.note_emptiness(group_id);
        codes
    }

    /// Validates and writes an OffsetCommit; returns the group-level error
    /// (applied to every partition) or Ok after the offsets are durable.
    pub async fn commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        entries: Vec<((String, i32), Committed)>,
    ) -> Result<(), ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        {
            let mut inner = self.lock();
            let group = inner
                .groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id));
            group.validate_commit(generation, member_id, instance_id, Instant::now())?;
            inner.note_emptiness(group_id);
        }
        let entries = entries.into_iter().map(|(tp, c)| (tp, Some(c))).collect();
        self.offsets.write(group_id, entries).await.map_err(|e| {
            tracing::error!(group = group_id, error = %e, "offset commit failed");
            match e {
                // Kafka's mapping for commits to the offsets topic.
                OffsetError::NotCommitted {
                    code: ResponseError::NotLeaderOrFollower,
                    ..
                } => ResponseError::NotCoordinator,
                OffsetError::NotCommitted {
                    code: ResponseError::RequestTimedOut,
                    ..
                } => ResponseError::RequestTimedOut,
                OffsetError::NotCommitted { .. } => ResponseError::CoordinatorNotAvailable,
                _ => ResponseError::KafkaStorageError,
            }
        })
    }

    pub fn describe(&self, group_id: &str) -> GroupDescription {
        let inner = self.lock();
        match inner.groups.get(group_id) {
            Some(g) => GroupDescription {
                state: g.state.name(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                protocol: if g.state == GroupState::Stable {
                    g.protocol.clone().unwrap_or_default()
                } else {
                    String::new()
                },
                members: g
                    .members
                    .values()
                    .map(|m| {
                        let metadata = g
                            .protocol
                            .as_ref()
                            .and_then(|p| m.protocols.iter().find(|(n, _)| n == p))
                            .map(|(_, md)| md.clone())
                            .unwrap_or_default();
                        (
                            m.id.clone(),
                            m.instance_id.clone(),
                            m.client_id.clone(),
                            m.client_host.clone(),
                            metadata,
                            m.assignment.clone(),
                        )
                    })
                    .collect(),
            },
            None if !self.offsets.group(group_id).is_empty() => GroupDescription {
                state: "Empty",
                protocol_type: String::new(),
                protocol: String::new(),
                members: vec![],
            },
            None => GroupDescription {
                state: "Dead",
                protocol_type: String::new(),
                protocol: String::new(),
                members: vec![],
            },
        }
    }

    /// (group id, protocol type, state) of every group with members or offsets.
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        let inner = self.lock();
        let mut out: BTreeMap<String, (String, &'static str)> = BTreeMap::new();
        for g in self.offsets.groups() {
            out.insert(g, (String::new(), "Empty"));
        }
        for (id, g) in &inner.groups {
            if !g.is_empty() || out.contains_key(id) {
                out.insert(
                    id.clone(),
                    (g.protocol_type.clone().unwrap_or_default(), g.state.name()),
                );
            }
        }
        out.into_iter().map(|(id, (pt, st))| (id, pt, st)).collect()
    }

    /// DeleteGroups for one group: only an empty group, with its offsets.
    pub async fn delete_group(&self, group_id: &str) -> ResponseError {
        let offsets = self.offsets.group(group_id);
        {
            let mut inner = self.lock();
            match inner.groups.get(group_id) {
                Some(g) if !g.is_empty() => return ResponseError::NonEmptyGroup,
                None if offsets.is_empty() => return ResponseError::GroupIdNotFound,
                _ => {}
            }
            inner.groups.remove(group_id);
            inner.empty_since.remove(group_id);
        }
        let tombstones = offsets.into_keys().map(|tp| (tp, None)).collect();
        match self.offsets.write(group_id, tombstones).await {
            Ok(()) => ResponseError::Unknown(0),
            Err(_) => ResponseError::KafkaStorageError,
        }
    }

    /// OffsetDelete: a group may not delete offsets of a topic it consumes.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<ResponseError>, ResponseError> {
        let subscribed: BTreeSet<String> = {
            let inner = self.lock();
            match inner.groups.get(group_id) {
                Some(g) if !g.is_empty() => g.subscribed_topics().unwrap_or_default(),
                Some(_) => BTreeSet::new(),
                None if self.offsets.group(group_id).is_empty() => {
                    return Err(ResponseError::GroupIdNotFound);
                }
                None => BTreeSet::new(),
            }
        };
        let mut codes = Vec::with_capacity(partitions.len());
        let mut tombstones = Vec::new();
        for (topic, partition) in partitions {
            if subscribed.contains(&topic) {
                codes.push(ResponseError::GroupSubscribedToTopic);
            } else {
                codes.push(ResponseError::Unknown(0));
                tombstones.push(((topic, partition), None));
            }
        }
        self.offsets
            .write(group_id, tombstones)
            .await
            .map_err(|_| ResponseError::KafkaStorageError)?;
        Ok(codes)
    }

    /// Advances every group's timers.
    pub fn tick(&self) {
        let now = Instant::now();
        let mut inner = self.lock();
        let ids: Vec<String> = inner.groups.keys().cloned().collect();
        for id in ids {
            let replies = match inner.groups.get_mut(&id) {
                Some(g) => g.tick(now, &self.config),
                None => continue,
            };
            inner.deliver(&id, replies);
            inner.note_emptiness(&id);
        }
        // Forget empty groups with no offsets; they hold nothing.
        let offsets = &self.offsets;
        inner
            .groups
            .retain(|id, g| !g.is_empty() || !offsets.group(id).is_empty());
    }

    /// Deletes the committed offsets of deleted topics, as Kafka does: a topic
    /// created again under the same name starts with no commits (otherwise its
    /// consumers would skip its first records and its lag would read 0). A
    /// commit carries the id of its topic; the metadata image keeps the ids of
    /// deleted topics, so the rule holds in any order of events, also on a
    /// coordinator that just took over with an older image (it deletes once
    /// its image has the deletion). Called every 100 ms; does work only when
    /// the image changed.
    pub async fn forget_deleted_topics(&self) {
        let image = self.broker.image();
        {
            let mut seen = self.seen_image.lock().unwrap_or_else(|p| p.into_inner());
            if seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &image)) {
                return;
            }
            *seen = Some(image.clone());
        }
        if image.deleted_topic_ids.is_empty() {
            return;
        }
        for g in self.offsets.groups() {
            let tombstones: Vec<_> = self
                .offsets
                .group(&g)
                .into_iter()
                .filter(|(_, c)| {
                    c.topic_id
                        .is_some_and(|id| image.deleted_topic_ids.contains(&id))
                })
                .map(|(tp, _)| (tp, None))
                .collect();
            if tombstones.is_empty() {
                continue;
            }
            tracing::info!(group = %g, partitions = tombstones.len(), "deleting the committed offsets of deleted topics");
            if let Err(e) = self.offsets.write(&g, tombstones).await {
                tracing::error!(group = %g, error = %e, "deleting the offsets of deleted topics failed");
            }
        }
    }

    /// Deletes the offsets of groups that stayed empty past the retention.
    pub async fn expire_offsets(&self) {
        if self.offsets_retention_ms < 0 {
            return;
        }
        let cutoff = now_ms() - self.offsets_retention_ms;
        let expired: Vec<String> = {
            let inner = self.lock();
            self.offsets
                .groups()
                .into_iter()
                .filter(|g| inner.groups.get(g).is_none_or(|grp| grp.is_empty()))
                .filter(|g| {
                    let last_commit = self
                        .offsets
                        .group(g)
                        .values()
                        .map(|c| c.commit_ms)
                        .max()
                        .unwrap_or(0);
                    let since = inner
                        .empty_since
                        .get(g)
                        .copied()
                        .unwrap_or(0)
                        .max(last_commit);
                    since <= cutoff
                })
                .collect()
        };
        for g in expired {
            tracing::info!(group = %g, "expiring the offsets of a group empty for longer than the offsets retention");
            let tombstones = self
                .offsets
                .group(&g)
                .into_keys()
                .map(|tp| (tp, None))
                .collect();
            if let Err(e) = self.offsets.write(&g, tombstones).await {
                tracing::error!(group = %g, error = %e, "expiring offsets failed");
            }
        }
    }

    /// What this coordinator knows of a group now: its state, members,
    /// subscribed topics and one snapshot of its committed offsets.
    fn lag_snapshot(&self, group_id: &str) -> GroupSnapshot {
        let (state, members, subscribed) = {
            let inner = self.lock();
            match inner.groups.get(group_id) {
                Some(g) => (
                    Some(g.state.name()),
                    g.members.len(),
                    g.subscribed_topics().unwrap_or_default(),
                ),
                None => (None, 0, BTreeSet::new()),
            }
        };
        let committed: BTreeMap<TopicPartition, i64> = self
            .offsets
            .group(group_id)
            .into_iter()
            .map(|(tp, c)| (tp, c.offset))
            .collect();
        let state = match state {
            Some(s) => s,
            None if committed.is_empty() => "Dead",
            None => "Empty",
        };
        GroupSnapshot {
            group: group_id.to_string(),
            state,
            members,
            subscribed,
            committed,
        }
    }

    /// The lag of a group (see [`lag`] for which partitions and how):
    ///
    /// 1. One snapshot of the group and its committed offsets.
    /// 2. The partitions it covers, from the current metadata.
    /// 3. Their high watermarks and log starts from their leaders, within
    ///    [`leader_offsets::READ_TIMEOUT`].
    /// 4. The report, or OffsetsUnreadable if any partition is missing.
    pub async fn lag(&self, group_id: &str, query: &LagQuery) -> Result<GroupLag, LagError> {
        let snapshot = self.lag_snapshot(group_id);
        let partitions = lag::plan_partitions(&snapshot, &query.topics, &self.broker.image())?;
        let offsets = leader_offsets::fetch_leader_offsets(
            &self.broker,
            &partitions,
            leader_offsets::READ_TIMEOUT,
        )
        .await;
        lag::build_group_lag(&snapshot, &partitions, &offsets, query.reset)
    }

    /// The default lag (no topics, earliest) of every group with offsets or
    /// members, for the metrics: the steps of [`Self::lag`], with the
    /// offsets of all their partitions read in one round.
    pub async fn lag_of_every_group(&self) -> Vec<Result<GroupLag, LagError>> {
        let image = self.broker.image();
        let planned: Vec<_> = self
            .group_ids()
            .into_iter()
            .map(|g| {
                let snapshot = self.lag_snapshot(&g);
                let partitions = lag::plan_partitions(&snapshot, &[], &image);
                (snapshot, partitions)
            })
            .collect();
        let all: BTreeSet<TopicPartition> = planned
            .iter()
            .filter_map(|(_, p)| p.as_ref().ok())
            .flatten()
            .cloned()
            .collect();
        let offsets =
            leader_offsets::fetch_leader_offsets(&self.broker, &all, leader_offsets::READ_TIMEOUT)
                .await;
        planned
            .into_iter()
            .map(|(snapshot, partitions)| {
                lag::build_group_lag(&snapshot, &partitions?, &offsets, ResetPolicy::Earliest)
            })
            .collect()
    }

    /// Every group that has offsets or members.
    pub fn group_ids(&self) -> Vec<String> {
        self.list().into_iter().map(|(id, ..)| id).collect()
    }
}
