//! The replication role of one partition hosted here, as the metadata
//! assigns it: leader (with its [`LeaderState`] and the acks=all requests
//! waiting on it), follower of another broker at an epoch, or offline.
//!
//! The broker changes roles from metadata images ([`Replica::become_leader`],
//! [`Replica::become_follower`], [`Replica::go_offline`]); request handlers
//! ask it whether this broker leads ([`Replica::leader_epoch`]), feed it
//! appends and follower fetches, and wait on it for acks=all. ISR changes
//! the leader wants come back as [`Proposal`]s for the broker to commit
//! through the metadata quorum.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use kafka_protocol::ResponseError;
use tokio::sync::{oneshot, watch};

use super::state::{AckResult, Decision, LeaderState};
use crate::metadata::PartitionState;
use crate::metadata::controller::BrokerId;

/// Which broker leads, at which epoch, as this replica last learned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoleView {
    /// -1 while offline or not assigned yet.
    pub leader: BrokerId,
    pub epoch: i32,
}

/// How an acks=all request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckOutcome {
    Committed,
    NotEnoughReplicasAfterAppend,
    /// Leadership moved before the records committed.
    NotLeader,
}

/// An ISR change to commit: `state` if the partition is still in `expect`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub expect: PartitionState,
    pub state: PartitionState,
}

enum Role {
    None,
    Leader(Box<LeaderState>),
    Follower,
}

struct Inner {
    role: Role,
    next_waiter: u64,
    waiters: HashMap<u64, oneshot::Sender<AckOutcome>>,
}

pub struct Replica {
    inner: Mutex<Inner>,
    high_watermark: AtomicI64,
    view: watch::Sender<RoleView>,
    /// A follower fetcher task runs for this partition.
    fetcher: AtomicBool,
}

impl Default for Replica {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                role: Role::None,
                next_waiter: 0,
                waiters: HashMap::new(),
            }),
            high_watermark: AtomicI64::new(0),
            view: watch::Sender::new(RoleView {
                leader: -1,
                epoch: -1,
            }),
            fetcher: AtomicBool::new(false),
        }
    }
}

/// What a change did, for the caller to act on.
#[derive(Debug, Default)]
pub struct Effects {
    pub proposals: Vec<Proposal>,
    /// The high watermark moved (consumers waiting on it may read more).
    pub high_watermark_moved: bool,
}

impl Replica {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn view(&self) -> RoleView {
        *self.view.borrow()
    }

    /// Changes of leader or epoch (follower fetchers watch this).
    pub fn subscribe(&self) -> watch::Receiver<RoleView> {
        self.view.subscribe()
    }

    /// Claims the right to run this partition's fetcher; false if one runs.
    pub fn claim_fetcher(&self) -> bool {
        self.fetcher
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub fn release_fetcher(&self) {
        self.fetcher.store(false, Ordering::Release);
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// The epoch if this replica leads; NOT_LEADER_OR_FOLLOWER otherwise.
    /// With `acks_all`, NOT_ENOUGH_REPLICAS while the ISR is below
    /// min.insync.replicas (checked before the append, as Kafka does).
    pub fn leader_epoch(&self, acks_all: bool) -> Result<i32, ResponseError> {
        match &self.inner().role {
            Role::Leader(s) if acks_all && !s.can_accept_acks_all() => {
                Err(ResponseError::NotEnoughReplicas)
            }
            Role::Leader(s) => Ok(s.epoch),
            _ => Err(ResponseError::NotLeaderOrFollower),
        }
    }

    /// The high watermark consumers may be told about: a new leader's
    /// watermark can trail what the previous leader reported until its
    /// followers fetch again, so until it reaches this epoch's start it is
    /// OFFSET_NOT_AVAILABLE (KIP-207) rather than a watermark going back.
    pub fn visible_high_watermark(&self) -> Result<i64, ResponseError> {
        match &self.inner().role {
            Role::Leader(s) if s.high_watermark() < s.epoch_start_offset => {
                Err(ResponseError::OffsetNotAvailable)
            }
            Role::Leader(s) => Ok(s.high_watermark()),
            _ => Err(ResponseError::NotLeaderOrFollower),
        }
    }

    /// The leader's ISR and min-ISR (for describing), None unless leading.
    pub fn leader_isr(&self) -> Option<(Vec<BrokerId>, usize)> {
        match &self.inner().role {
            Role::Leader(s) => Some((s.isr.iter().copied().collect(), s.min_isr)),
            _ => None,
        }
    }

    /// This replica leads `state.leader_epoch` from log end offset `leo`.
    /// Requests waiting on an earlier leadership fail with NotLeader.
    #[allow(clippy::too_many_arguments)]
    pub fn become_leader(
        &self,
        me: BrokerId,
        state: &PartitionState,
        replicas: &[BrokerId],
        min_isr: usize,
        lag_time_max_ms: i64,
        leo: i64,
        now_ms: i64,
    ) -> Effects {
        let mut inner = self.inner();
        fail_waiters(&mut inner);
        let hw = self.high_watermark();
        let mut s = LeaderState::new(
            me,
            state.leader_epoch,
            replicas,
            &state.isr,
            min_isr,
            lag_time_max_ms,
            leo,
            hw,
            now_ms,
        );
        let decisions = s.on_append(leo, None);
        inner.role = Role::Leader(Box::new(s));
        let effects = self.settle(&mut inner, decisions);
        self.view.send_replace(RoleView {
            leader: me,
            epoch: state.leader_epoch,
        });
        effects
    }

    /// This replica follows `leader` at `epoch`.
    pub fn become_follower(&self, leader: BrokerId, epoch: i32) {
        let mut inner = self.inner();
        fail_waiters(&mut inner);
        inner.role = Role::Follower;
        self.view.send_replace(RoleView { leader, epoch });
    }

    /// No leader (or not assigned here any more).
    pub fn go_offline(&self, epoch: i32) {
        let mut inner = self.inner();
        fail_waiters(&mut inner);
        inner.role = Role::None;
        self.view.send_replace(RoleView { leader: -1, epoch });
    }

    /// The replicas and ISR as the metadata has them now, where they differ
    /// from what the leader holds; min.insync.replicas as configured now.
    pub fn on_metadata(
        &self,
        replicas: &[BrokerId],
        isr: &[BrokerId],
        min_isr: usize,
        now_ms: i64,
    ) -> Effects {
        let mut inner = self.inner();
        let Role::Leader(s) = &mut inner.role else {
            return Effects::default();
        };
        s.min_isr = min_isr;
        let mut decisions = Vec::new();
        if !s.replicas_match(replicas) {
            decisions.extend(s.set_replicas(replicas, now_ms));
        }
        let mut sorted = isr.to_vec();
        sorted.sort_unstable();
        if !s.isr.iter().copied().eq(sorted.iter().copied()) {
            decisions.extend(s.on_isr_committed(&sorted, now_ms));
        }
        self.settle(&mut inner, decisions)
    }

    /// The controller answered this leader's proposal (committed or
    /// dropped): `state` is the partition now. Clears the pending proposal.
    pub fn on_proposal_settled(&self, state: &PartitionState, now_ms: i64) -> Effects {
        let mut inner = self.inner();
        let Role::Leader(s) = &mut inner.role else {
            return Effects::default();
        };
        if state.leader != s.leader || state.leader_epoch != s.epoch {
            return Effects::default();
        }
        let decisions = s.on_isr_committed(&state.isr, now_ms);
        self.settle(&mut inner, decisions)
    }

    /// Records up to `leo` were appended here. On a leader, `wait_for` is an
    /// acks=all request needing everything below that offset committed.
    pub fn on_append(
        &self,
        leo: i64,
        wait_for: Option<i64>,
    ) -> (Effects, Option<oneshot::Receiver<AckOutcome>>) {
        let mut inner = self.inner();
        let Role::Leader(s) = &mut inner.role else {
            let rx = wait_for.map(|_| {
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(AckOutcome::NotLeader);
                rx
            });
            return (Effects::default(), rx);
        };
        let mut decisions = s.on_append(leo, None);
        let rx = match wait_for {
            Some(need) => {
                let id = inner.next_waiter;
                inner.next_waiter += 1;
                let (tx, rx) = oneshot::channel();
                inner.waiters.insert(id, tx);
                if let Role::Leader(s) = &mut inner.role {
                    decisions.extend(s.wait(id, need));
                }
                Some(rx)
            }
            None => None,
        };
        (self.settle(&mut inner, decisions), rx)
    }

    /// A follower fetched from `fetch_offset` (its log end offset).
    /// NOT_LEADER_OR_FOLLOWER unless leading; FENCED_LEADER_EPOCH /
    /// UNKNOWN_LEADER_EPOCH when the follower's epoch is older / newer.
    pub fn on_follower_fetch(
        &self,
        follower: BrokerId,
        epoch: i32,
        fetch_offset: i64,
        now_ms: i64,
    ) -> Result<Effects, ResponseError> {
        let mut inner = self.inner();
        let Role::Leader(s) = &mut inner.role else {
            return Err(ResponseError::NotLeaderOrFollower);
        };
        check_epoch(s.epoch, epoch)?;
        let decisions = s.on_follower_fetch(follower, fetch_offset, now_ms);
        Ok(self.settle(&mut inner, decisions))
    }

    /// Time passed: a leader proposes removing lagging followers.
    pub fn tick(&self, now_ms: i64) -> Effects {
        let mut inner = self.inner();
        let Role::Leader(s) = &mut inner.role else {
            return Effects::default();
        };
        let decisions = s.tick(now_ms);
        self.settle(&mut inner, decisions)
    }

    /// A follower learned the leader's high watermark.
    pub fn set_follower_high_watermark(&self, hw: i64) {
        self.high_watermark.store(hw, Ordering::Release);
    }

    /// Applies the leader state's decisions: settles waiters, turns ISR
    /// proposals into compare-and-set proposals, publishes the watermark.
    fn settle(&self, inner: &mut Inner, decisions: Vec<Decision>) -> Effects {
        let mut effects = Effects::default();
        let Role::Leader(s) = &inner.role else {
            return effects;
        };
        let (leader, epoch) = (s.leader, s.epoch);
        let current_isr: Vec<BrokerId> = s.isr.iter().copied().collect();
        let hw = s.high_watermark();
        for d in decisions {
            match d {
                Decision::ProposeIsr(isr) => effects.proposals.push(Proposal {
                    expect: PartitionState {
                        leader,
                        leader_epoch: epoch,
                        isr: current_isr.clone(),
                    },
                    state: PartitionState {
                        leader,
                        leader_epoch: epoch,
                        isr,
                    },
                }),
                Decision::Acks(acks) => {
                    for (id, result) in acks {
                        if let Some(tx) = inner.waiters.remove(&id) {
                            let _ = tx.send(match result {
                                AckResult::Committed => AckOutcome::Committed,
                                AckResult::NotEnoughReplicasAfterAppend => {
                                    AckOutcome::NotEnoughReplicasAfterAppend
                                }
                            });
                        }
                    }
                }
            }
        }
        if self.high_watermark.swap(hw, Ordering::AcqRel) != hw {
            effects.high_watermark_moved = true;
        }
        effects
    }
}

/// Kafka's leader epoch checks: a request from an older epoch is fenced, one
/// from a newer epoch than this broker knows is unknown (its metadata lags).
/// -1 means the client does not say.
pub fn check_epoch(current: i32, requested: i32) -> Result<(), ResponseError> {
    if requested < 0 || requested == current {
        Ok(())
    } else if requested < current {
        Err(ResponseError::FencedLeaderEpoch)
    } else {
        Err(ResponseError::UnknownLeaderEpoch)
    }
}

fn fail_waiters(inner: &mut Inner) {
    for (_, tx) in inner.waiters.drain() {
        let _ = tx.send(AckOutcome::NotLeader);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(leader: BrokerId, epoch: i32, isr: &[BrokerId]) -> PartitionState {
        PartitionState {
            leader,
            leader_epoch: epoch,
            isr: isr.to_vec(),
        }
    }

    #[test]
    fn acks_all_waits_for_the_followers_and_fails_when_leadership_moves() {
        let r = Replica::default();
        r.become_leader(0, &state(0, 3, &[0, 1]), &[0, 1], 2, 30_000, 10, 0);
        assert_eq!(r.leader_epoch(true), Ok(3));
        let (_, rx) = r.on_append(12, Some(12));
        let mut rx = rx.expect("a waiter");
        assert!(rx.try_recv().is_err(), "follower 1 has nothing yet");
        assert_eq!(
            r.on_follower_fetch(1, 2, 12, 1).err(),
            Some(ResponseError::FencedLeaderEpoch)
        );
        let e = r.on_follower_fetch(1, 3, 12, 1).expect("leading");
        assert!(e.high_watermark_moved);
        assert_eq!(rx.try_recv(), Ok(AckOutcome::Committed));
        assert_eq!(r.high_watermark(), 12);

        let (_, rx) = r.on_append(15, Some(15));
        r.become_follower(1, 4);
        assert_eq!(rx.expect("waiter").try_recv(), Ok(AckOutcome::NotLeader));
        assert_eq!(
            r.leader_epoch(false),
            Err(ResponseError::NotLeaderOrFollower)
        );
    }

    #[test]
    fn below_min_isr_acks_all_is_refused_and_lag_becomes_a_proposal() {
        let r = Replica::default();
        r.become_leader(0, &state(0, 1, &[0]), &[0, 1, 2], 2, 1_000, 0, 0);
        assert_eq!(r.leader_epoch(true), Err(ResponseError::NotEnoughReplicas));
        assert_eq!(r.leader_epoch(false), Ok(1));
        let e = r.on_follower_fetch(2, 1, 0, 5).expect("leading");
        assert_eq!(
            e.proposals,
            vec![Proposal {
                expect: state(0, 1, &[0]),
                state: state(0, 1, &[0, 2]),
            }]
        );
        r.on_proposal_settled(&state(0, 1, &[0, 2]), 6);
        assert_eq!(r.leader_epoch(true), Ok(1));
        let e = r.tick(2_000);
        assert_eq!(e.proposals[0].state.isr, vec![0]);
    }
}
