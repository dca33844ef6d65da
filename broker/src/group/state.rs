//! One consumer group's membership and rebalance state machine (Kafka's
//! classic protocol), pure: events in with the current time, replies out.
//! No sockets, clocks or locks; the coordinator delivers the replies.
//!
//! States: Empty → PreparingRebalance → CompletingRebalance → Stable, and
//! back to PreparingRebalance on any membership or subscription change.
//!
//! A rebalance:
//! 1. starts ([`Group::prepare_rebalance`]) when a member joins, leaves,
//!    expires or changes its protocols; members waiting for an assignment are
//!    told REBALANCE_IN_PROGRESS so they rejoin;
//! 2. completes ([`Group::maybe_complete_join`]) once every known member has
//!    rejoined and no MEMBER_ID_REQUIRED member is outstanding (after the
//!    initial delay for a group that was empty), or when the rebalance
//!    timeout passes, removing members that did not rejoin;
//! 3. on completion the generation is bumped, a protocol every member
//!    supports is chosen by vote, the leader is kept if still a member, and
//!    every member gets its JoinGroup answer (the leader with all members'
//!    metadata);
//! 4. the leader's SyncGroup carries the assignments; the group is Stable and
//!    every member waiting in SyncGroup gets its own assignment.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;

/// Group settings from the broker's flags.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
    pub initial_rebalance_delay: Duration,
    /// Members at most (group.max.size): a new one gets GROUP_MAX_SIZE_REACHED.
    pub max_size: usize,
    /// Bytes of protocol names and metadata one member may send in JoinGroup.
    pub max_member_metadata_bytes: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    session_deadline: Instant,
    /// Has a JoinGroup waiting for the current rebalance to complete.
    awaiting_join: bool,
    /// Has a SyncGroup waiting for the leader's assignment.
    awaiting_sync: bool,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// What a JoinGroup asks.
#[derive(Clone, Debug)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new member first gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Only for the leader: (member id, instance id, metadata) of every member.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    pub fn error(code: ResponseError, member_id: &str) -> Self {
        Self {
            error: code.code(),
            generation: -1,
            member_id: member_id.to_string(),
            ..Self::default()
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(code: ResponseError) -> Self {
        Self {
            error: code.code(),
            ..Self::default()
        }
    }
}

/// A reply to a request that is waiting on the group.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Join(String, JoinResult),
    Sync(String, SyncResult),
}

/// The immediate outcome of a JoinGroup or SyncGroup.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome<T> {
    Now(T),
    /// Wait for a [`Reply`] for this member id (it may be among the replies
    /// returned with this outcome).
    Wait(String),
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they join or expire.
    pending: HashMap<String, Instant>,
    /// group.instance.id → member id of static members.
    statics: HashMap<String, String>,
    rebalance_deadline: Option<Instant>,
    rebalance_not_before: Option<Instant>,
}

type Replies = Vec<Reply>;

impl Group {
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            statics: HashMap::new(),
            rebalance_deadline: None,
            rebalance_not_before: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    /// Checks the member id / instance id pair: Err(code) when unknown or fenced.
    fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        if let Some(instance) = instance_id
            && let Some(current) = self.statics.get(instance)
            && current != member_id
        {
            return Err(ResponseError::FencedInstanceId);
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(ResponseError::UnknownMemberId)
        }
    }

    fn touch(&mut self, member_id: &str, now: Instant) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.session_deadline = now + m.session_timeout;
        }
    }

    fn protocols_compatible(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    /// JoinGroup. `new_id` makes a fresh member id.
    pub fn join(
        &mut self,
        req: JoinRequest,
        now: Instant,
        config: &GroupConfig,
        new_id: impl FnOnce() -> String,
    ) -> (Outcome<JoinResult>, Replies) {
        let mut replies = Vec::new();
        let fail = |code| {
            (
                Outcome::Now(JoinResult::error(code, &req.member_id)),
                Vec::new(),
            )
        };
        if req.session_timeout < config.min_session_timeout
            || req.session_timeout > config.max_session_timeout
        {
            return fail(ResponseError::InvalidSessionTimeout);
        }
        let metadata_bytes: usize = req.protocols.iter().map(|(n, m)| n.len() + m.len()).sum();
        if metadata_bytes > config.max_member_metadata_bytes {
            return fail(ResponseError::InvalidRequest);
        }
        // Only current members (and a static member taking its place back) are
        // exempt: a pending id from MEMBER_ID_REQUIRED is not a member yet.
        let known = self.members.contains_key(&req.member_id)
            || req
                .instance_id
                .as_ref()
                .is_some_and(|i| self.statics.contains_key(i));
        if !known && self.members.len() >= config.max_size {
            return fail(ResponseError::GroupMaxSizeReached);
        }
        let replacing_self = self.members.len() == 1 && self.members.contains_key(&req.member_id);
        if !replacing_self && !self.protocols_compatible(&req.protocol_type, &req.protocols) {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        let member_id = if req.member_id.is_empty() {
            match req
                .instance_id
                .as_ref()
                .and_then(|i| self.statics.get(i))
                .cloned()
            {
                // A static member rejoining under a new member id (KIP-345).
                Some(old_id) => {
                    let id = new_id();
                    self.replace_static_member(&old_id, &id, &mut replies);
                    let unchanged = self
                        .members
                        .get(&id)
                        .is_some_and(|m| m.protocols == req.protocols);
                    if self.state == GroupState::Stable
                        && unchanged
                        && self.leader.as_deref() != Some(&id)
                    {
                        self.touch(&id, now);
                        let result = self.join_result_for(&id, false);
                        return (Outcome::Now(result), replies);
                    }
                    id
                }
                None if req.instance_id.is_none() && req.require_known_member_id => {
                    let id = new_id();
                    self.pending.insert(id.clone(), now + req.session_timeout);
                    return (
                        Outcome::Now(JoinResult::error(ResponseError::MemberIdRequired, &id)),
                        replies,
                    );
                }
                None => new_id(),
            }
        } else {
            if let Err(code) = self.check_member(&req.member_id, req.instance_id.as_deref())
                && !self.pending.contains_key(&req.member_id)
            {
                return fail(code);
            }
            req.member_id.clone()
        };
        self.pending.remove(&member_id);

        let (known, changed, assignment) = match self.members.get(&member_id) {
            Some(m) => (true, m.protocols != req.protocols, m.assignment.clone()),
            None => (false, true, Bytes::new()),
        };
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        match (self.state, known, changed) {
            // Nothing changed for a follower: hand back the current generation.
            (GroupState::Stable, true, false) if !is_leader => {
                self.touch(&member_id, now);
                return (
                    Outcome::Now(self.join_result_for(&member_id, false)),
                    replies,
                );
            }
            (GroupState::CompletingRebalance, true, false) => {
                self.touch(&member_id, now);
                return (
                    Outcome::Now(self.join_result_for(&member_id, true)),
                    replies,
                );
            }
            _ => {}
        }
        let member = Member {
            id: member_id.clone(),
            instance_id: req.instance_id.clone(),
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout: req.session_timeout,
            rebalance_timeout: req.rebalance_timeout,
            protocols: req.protocols,
            assignment,
            session_deadline: now + req.session_timeout,
            awaiting_join: true,
            awaiting_sync: false,
        };
        if let Some(instance) = &req.instance_id {
            self.statics.insert(instance.clone(), member_id.clone());
        }
        self.members.insert(member_id.clone(), member);
        self.protocol_type = Some(req.protocol_type);
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now, config, &mut replies);
        }
        self.maybe_complete_join(now, &mut replies);
        (Outcome::Wait(member_id), replies)
    }

    /// A static member's new member id takes over the old one's place.
    fn replace_static_member(&mut self, old_id: &str, new_id: &str, replies: &mut Replies) {
        if let Some(mut m) = self.members.remove(old_id) {
            if m.awaiting_join {
                replies.push(Reply::Join(
                    old_id.to_string(),
                    JoinResult::error(ResponseError::FencedInstanceId, old_id),
                ));
                m.awaiting_join = false;
            }
            if m.awaiting_sync {
                replies.push(Reply::Sync(
                    old_id.to_string(),
                    SyncResult::error(ResponseError::FencedInstanceId),
                ));
                m.awaiting_sync = false;
            }
            m.id = new_id.to_string();
            if let Some(instance) = &m.instance_id {
                self.statics.insert(instance.clone(), new_id.to_string());
            }
            self.members.insert(new_id.to_string(), m);
        }
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.to_string());
        }
    }

    fn join_result_for(&self, member_id: &str, with_members_if_leader: bool) -> JoinResult {
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if with_members_if_leader && leader == member_id {
            self.members
                .values()
                .map(|m| {
                    (
                        m.id.clone(),
                        m.instance_id.clone(),
                        m.metadata_for(&protocol),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: 0,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader,
            member_id: member_id.to_string(),
            members,
        }
    }

    /// Step 1 of a rebalance.
    fn prepare_rebalance(&mut self, now: Instant, config: &GroupConfig, replies: &mut Replies) {
        for m in self.members.values_mut() {
            if m.awaiting_sync {
                m.awaiting_sync = false;
                replies.push(Reply::Sync(
                    m.id.clone(),
                    SyncResult::error(ResponseError::RebalanceInProgress),
                ));
            }
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.rebalance_deadline = Some(now + timeout);
        self.rebalance_not_before =
            (self.state == GroupState::Empty).then(|| now + config.initial_rebalance_delay);
        self.state = GroupState::PreparingRebalance;
    }

    /// Steps 2 and 3 of a rebalance.
    fn maybe_complete_join(&mut self, now: Instant, replies: &mut Replies) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|m| m.awaiting_join) && self.pending.is_empty();
        let delay_over = self.rebalance_not_before.is_none_or(|t| now >= t);
        let timed_out = self.rebalance_deadline.is_some_and(|t| now >= t);
        if !(timed_out || all_joined && delay_over) {
            return;
        }
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.awaiting_join)
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.generation += 1;
        self.rebalance_deadline = None;
        self.rebalance_not_before = None;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.protocol_type = None;
            self.leader = None;
            return;
        }
        self.protocol = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        tracing::info!(group = %self.id, generation = self.generation, members = self.members.len(), protocol = ?self.protocol, "rebalance completed");
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.join_result_for(&id, true);
            if let Some(m) = self.members.get_mut(&id) {
                m.awaiting_join = false;
                m.session_deadline = now + m.session_timeout;
            }
            replies.push(Reply::Join(id, result));
        }
    }

    /// The protocol every member supports that most members prefer; ties go
    /// to the earlier preference of the first member.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
            })
            .collect();
        let votes = |name: &String| {
            self.members
                .values()
                .filter(|m| {
                    m.protocols
                        .iter()
                        .map(|(n, _)| n)
                        .find(|n| candidates.contains(n))
                        == Some(name)
                })
                .count()
        };
        let mut best: Option<(&String, usize)> = None;
        for c in &candidates {
            let v = votes(c);
            if best.is_none_or(|(_, bv)| v > bv) {
                best = Some((c, v));
            }
        }
        best.map(|(n, _)| n.clone())
    }

    fn remove_member(&mut self, id: &str) -> Option<Member> {
        let m = self.members.remove(id)?;
        if let Some(instance) = &m.instance_id
            && self.statics.get(instance).is_some_and(|cur| cur == id)
        {
            self.statics.remove(instance);
        }
        Some(m)
    }

    /// SyncGroup.
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> (Outcome<SyncResult>, Replies) {
        let fail = |code| (Outcome::Now(SyncResult::error(code)), Vec::new());
        if let Err(code) = self.check_member(member_id, instance_id) {
            return fail(code);
        }
        if generation != self.generation {
            return fail(ResponseError::IllegalGeneration);
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol_name.is_some_and(|n| Some(n) != self.protocol.as_deref())
        {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        self.touch(member_id, now);
        let mut replies = Vec::new();
        match self.state {
            GroupState::Empty | GroupState::PreparingRebalance => {
                fail(ResponseError::RebalanceInProgress)
            }
            GroupState::Stable => (Outcome::Now(self.sync_result_for(member_id)), replies),
            GroupState::CompletingRebalance => {
                if self.leader.as_deref() != Some(member_id) {
                    if let Some(m) = self.members.get_mut(member_id) {
                        m.awaiting_sync = true;
                    }
                    return (Outcome::Wait(member_id.to_string()), replies);
                }
                let mut assigned: HashMap<String, Bytes> = assignments.into_iter().collect();
                for m in self.members.values_mut() {
                    m.assignment = assigned.remove(&m.id).unwrap_or_default();
                }
                self.state = GroupState::Stable;
                let waiting: Vec<String> = self
                    .members
                    .values()
                    .filter(|m| m.awaiting_sync)
                    .map(|m| m.id.clone())
                    .collect();
                for id in waiting {
                    if let Some(m) = self.members.get_mut(&id) {
                        m.awaiting_sync = false;
                    }
                    replies.push(Reply::Sync(id.clone(), self.sync_result_for(&id)));
                }
                (Outcome::Now(self.sync_result_for(member_id)), replies)
            }
        }
    }

    fn sync_result_for(&self, member_id: &str) -> SyncResult {
        SyncResult {
            error: 0,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    /// Heartbeat: keeps the session alive and tells the member whether to rejoin.
    pub fn heartbeat(
        &mut self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> ResponseError {
        if let Err(code) = self.check_member(member_id, instance_id) {
            return code;
        }
        if generation != self.generation {
            return ResponseError::IllegalGeneration;
        }
        self.touch(member_id, now);
        match self.state {
            GroupState::PreparingRebalance => ResponseError::RebalanceInProgress,
            GroupState::Empty => ResponseError::UnknownMemberId,
            GroupState::CompletingRebalance | GroupState::Stable => ResponseError::Unknown(0),
        }
    }

    /// LeaveGroup for one member (by member id, or by instance id for a static member).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
        config: &GroupConfig,
    ) -> (ResponseError, Replies) {
        let mut replies = Vec::new();
        let id = match instance_id {
            Some(instance) => match self.statics.get(instance) {
                Some(current) if member_id.is_empty() || current == member_id => current.clone(),
                Some(_) => return (ResponseError::FencedInstanceId, replies),
                None => return (ResponseError::UnknownMemberId, replies),
            },
            None => member_id.to_string(),
        };
        if self.pending.remove(&id).is_some() {
            self.maybe_complete_join(now, &mut replies);
            return (ResponseError::Unknown(0), replies);
        }
        let Some(m) = self.remove_member(&id) else {
            return (ResponseError::UnknownMemberId, replies);
        };
        if m.awaiting_join {
            replies.push(Reply::Join(
                id.clone(),
                JoinResult::error(ResponseError::UnknownMemberId, &id),
            ));
        }
        if m.awaiting_sync {
            replies.push(Reply::Sync(
                id.clone(),
                SyncResult::error(ResponseError::UnknownMemberId),
            ));
        }
        self.membership_changed(now, config, &mut replies);
        (ResponseError::Unknown(0), replies)
    }

    fn membership_changed(&mut self, now: Instant, config: &GroupConfig, replies: &mut Replies) {
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now, config, replies);
        }
        self.maybe_complete_join(now, replies);
    }

    /// Time passes: expire sessions and MEMBER_ID_REQUIRED ids, and complete
    /// a rebalance whose delay or timeout is over.
    pub fn tick(&mut self, now: Instant, config: &GroupConfig) -> Replies {
        let mut replies = Vec::new();
        self.pending.retain(|_, deadline| *deadline > now);
        let preparing = self.state == GroupState::PreparingRebalance;
        // A member waiting in JoinGroup is not expected to heartbeat.
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.session_deadline <= now && !(preparing && m.awaiting_join))
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            if let Some(m) = self.remove_member(id) {
                tracing::info!(group = %self.id, member = %id, "member session expired");
                if m.awaiting_sync {
                    replies.push(Reply::Sync(
                        id.clone(),
                        SyncResult::error(ResponseError::UnknownMemberId),
                    ));
                }
            }
        }
        if !expired.is_empty() {
            self.membership_changed(now, config, &mut replies);
        } else {
            self.maybe_complete_join(now, &mut replies);
        }
        replies
    }

    /// May this member commit offsets for this generation? A generation of
    /// -1 with no member id is a commit by a consumer that assigns its own
    /// partitions, allowed while the group has no members.
    pub fn validate_commit(
        &mut self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> Result<(), ResponseError> {
        if generation < 0 && member_id.is_empty() {
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId)
            };
        }
        self.check_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        self.touch(member_id, now);
        // Commits during PreparingRebalance are allowed: consumers commit while revoking.
        match self.state {
            GroupState::CompletingRebalance => Err(ResponseError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// Topics the members subscribe to, for consumer-protocol groups.
    pub fn subscribed_topics(&self) -> Option<std::collections::BTreeSet<String>> {
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::protocol::Decodable;
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol.as_deref()?;
        let mut topics = std::collections::BTreeSet::new();
        for m in self.members.values() {
            let mut metadata = m.metadata_for(protocol);
            if metadata.len() < 2 {
                continue;
            }
            let version = i16::from_be_bytes([metadata[0], metadata[1]]);
            bytes::Buf::advance(&mut metadata, 2);
            if let Ok(sub) =
                ConsumerProtocolSubscription::decode(&mut metadata, version.clamp(0, 3))
            {
                topics.extend(sub.topics.iter().map(|t| t.to_string()));
            }
        }
        Some(topics)
    }
}

#[cfg(test)]
mod tests;
