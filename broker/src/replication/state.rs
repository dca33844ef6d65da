//! The leader's replication state for one partition, pure.
//!
//! - Each follower's log end offset is the offset it last fetched from (a
//!   follower fetching from X holds everything below X). It counts as caught
//!   up when it fetched from the leader's log end offset.
//! - High watermark = min log end offset over the ISR (leader included) and
//!   any follower whose addition is pending (the maximal ISR, KIP-497). It
//!   never moves backwards and does not advance while the ISR is smaller than
//!   min.insync.replicas.
//! - A follower in the ISR that has not caught up for `lag_time_max_ms` is
//!   proposed for removal; a follower outside it whose log end offset reached
//!   the high watermark (and this epoch's start) is proposed for addition.
//!   Proposals go to the controller; the ISR changes only when the
//!   controller's decision comes back ([`LeaderState::on_isr_committed`]).
//! - acks=all: an append needs ISR ≥ min-ISR before it is written
//!   (NOT_ENOUGH_REPLICAS); the request then waits until the high watermark
//!   passes its last offset, and fails with NOT_ENOUGH_REPLICAS_AFTER_APPEND
//!   if the ISR shrinks below min-ISR first.

use std::collections::{BTreeMap, BTreeSet};

use crate::metadata::controller::BrokerId;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Follower {
    log_end_offset: i64,
    last_caught_up_ms: i64,
}

/// The outcome of an acks=all request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckResult {
    Committed,
    NotEnoughReplicasAfterAppend,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Ask the controller for this ISR.
    ProposeIsr(Vec<BrokerId>),
    /// acks=all requests that are settled, by waiter id.
    Acks(Vec<(u64, AckResult)>),
}

#[derive(Debug)]
pub struct LeaderState {
    pub leader: BrokerId,
    pub epoch: i32,
    /// First offset written in this epoch (the leader's LEO when it took over).
    pub epoch_start_offset: i64,
    pub isr: BTreeSet<BrokerId>,
    pub min_isr: usize,
    pub lag_time_max_ms: i64,
    log_end_offset: i64,
    high_watermark: i64,
    followers: BTreeMap<BrokerId, Follower>,
    pending_proposal: Option<Vec<BrokerId>>,
    /// waiter id → offset that must be committed (the request's last offset + 1).
    waiters: BTreeMap<u64, i64>,
}

impl LeaderState {
    /// A replica becomes leader at `epoch` with its log end offset and the
    /// last high watermark it knew.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        leader: BrokerId,
        epoch: i32,
        replicas: &[BrokerId],
        isr: &[BrokerId],
        min_isr: usize,
        lag_time_max_ms: i64,
        log_end_offset: i64,
        high_watermark: i64,
        now_ms: i64,
    ) -> Self {
        let followers = replicas
            .iter()
            .filter(|&&r| r != leader)
            .map(|&r| {
                (
                    r,
                    Follower {
                        log_end_offset: -1,
                        last_caught_up_ms: now_ms,
                    },
                )
            })
            .collect();
        Self {
            leader,
            epoch,
            epoch_start_offset: log_end_offset,
            isr: isr.iter().copied().collect(),
            min_isr,
            lag_time_max_ms,
            log_end_offset,
            high_watermark: high_watermark.min(log_end_offset),
            followers,
            pending_proposal: None,
            waiters: BTreeMap::new(),
        }
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset
    }

    /// May an acks=all append be written now?
    pub fn can_accept_acks_all(&self) -> bool {
        self.isr.len() >= self.min_isr
    }

    /// The leader appended up to `log_end_offset`; an acks=all request with
    /// `waiter` waits for everything below it to commit.
    pub fn on_append(&mut self, log_end_offset: i64, waiter: Option<u64>) -> Vec<Decision> {
        self.log_end_offset = self.log_end_offset.max(log_end_offset);
        if let Some(id) = waiter {
            self.waiters.insert(id, log_end_offset);
        }
        self.advance()
    }

    /// An acks=all request (`waiter`) needs everything below `need`
    /// committed (a retried batch already in the log waits for its
    /// original offsets); settled at once if the watermark passed it.
    pub fn wait(&mut self, waiter: u64, need: i64) -> Vec<Decision> {
        self.waiters.insert(waiter, need);
        self.advance()
    }

    /// The partition's replica set changed (replication factor change):
    /// new followers start unknown, removed ones are forgotten.
    pub fn set_replicas(&mut self, replicas: &[BrokerId], now_ms: i64) -> Vec<Decision> {
        self.followers.retain(|id, _| replicas.contains(id));
        for &r in replicas.iter().filter(|&&r| r != self.leader) {
            self.followers.entry(r).or_insert(Follower {
                log_end_offset: -1,
                last_caught_up_ms: now_ms,
            });
        }
        self.isr.retain(|b| replicas.contains(b));
        self.advance()
    }

    pub fn replicas_match(&self, replicas: &[BrokerId]) -> bool {
        replicas.len() == self.followers.len() + 1
            && replicas
                .iter()
                .all(|r| *r == self.leader || self.followers.contains_key(r))
    }

    /// Whether an ISR change proposed by this leader awaits the controller.
    pub fn has_pending_proposal(&self) -> bool {
        self.pending_proposal.is_some()
    }

    /// A follower fetched from `fetch_offset`.
    pub fn on_follower_fetch(
        &mut self,
        follower: BrokerId,
        fetch_offset: i64,
        now_ms: i64,
    ) -> Vec<Decision> {
        let leo = self.log_end_offset;
        let Some(f) = self.followers.get_mut(&follower) else {
            return Vec::new();
        };
        f.log_end_offset = f.log_end_offset.max(fetch_offset.min(leo));
        if fetch_offset >= leo {
            f.last_caught_up_ms = now_ms;
        }
        let mut decisions = self.advance();
        let f_leo = self.followers[&follower].log_end_offset;
        let catches_up = f_leo >= self.high_watermark && f_leo >= self.epoch_start_offset;
        if !self.isr.contains(&follower) && catches_up {
            let mut proposed = self.isr.clone();
            proposed.insert(follower);
            decisions.extend(self.propose(proposed));
        }
        decisions
    }

    /// Time passed: propose removing followers that fell behind.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Decision> {
        let lagging: Vec<BrokerId> = self
            .followers
            .iter()
            .filter(|(id, f)| {
                self.isr.contains(id) && now_ms - f.last_caught_up_ms > self.lag_time_max_ms
            })
            .map(|(&id, _)| id)
            .collect();
        if lagging.is_empty() {
            return Vec::new();
        }
        let proposed = self
            .isr
            .iter()
            .copied()
            .filter(|b| !lagging.contains(b))
            .collect();
        self.propose(proposed)
    }

    fn propose(&mut self, proposed: BTreeSet<BrokerId>) -> Vec<Decision> {
        let proposed: Vec<BrokerId> = proposed.into_iter().collect();
        if self.pending_proposal.as_ref() == Some(&proposed)
            || proposed == self.isr.iter().copied().collect::<Vec<_>>()
        {
            return Vec::new();
        }
        self.pending_proposal = Some(proposed.clone());
        vec![Decision::ProposeIsr(proposed)]
    }

    /// The controller committed an ISR for this partition (our proposal or its own).
    pub fn on_isr_committed(&mut self, isr: &[BrokerId], now_ms: i64) -> Vec<Decision> {
        self.pending_proposal = None;
        let before = self.isr.clone();
        self.isr = isr.iter().copied().collect();
        for (id, f) in &mut self.followers {
            if self.isr.contains(id) && !before.contains(id) {
                f.last_caught_up_ms = now_ms;
            }
        }
        let mut decisions = self.advance();
        if self.isr.len() < self.min_isr && !self.waiters.is_empty() {
            let failed: Vec<(u64, AckResult)> = std::mem::take(&mut self.waiters)
                .into_keys()
                .map(|id| (id, AckResult::NotEnoughReplicasAfterAppend))
                .collect();
            decisions.push(Decision::Acks(failed));
        }
        decisions
    }

    /// Recomputes the high watermark and releases waiters it passed.
    fn advance(&mut self) -> Vec<Decision> {
        if self.isr.len() >= self.min_isr {
            // The maximal ISR (KIP-497): a follower whose addition is pending
            // already holds the watermark back, so it cannot be passed and then
            // elected without committed records.
            let mut effective = self.isr.clone();
            effective.extend(self.pending_proposal.iter().flatten().copied());
            let min_leo = effective
                .iter()
                .map(|b| {
                    if *b == self.leader {
                        self.log_end_offset
                    } else {
                        self.followers.get(b).map_or(-1, |f| f.log_end_offset)
                    }
                })
                .min()
                .unwrap_or(self.log_end_offset);
            self.high_watermark = self.high_watermark.max(min_leo);
        }
        let hw = self.high_watermark;
        let done: Vec<u64> = self
            .waiters
            .iter()
            .filter(|(_, need)| **need <= hw)
            .map(|(id, _)| *id)
            .collect();
        if done.is_empty() {
            return Vec::new();
        }
        for id in &done {
            self.waiters.remove(id);
        }
        vec![Decision::Acks(
            done.into_iter()
                .map(|id| (id, AckResult::Committed))
                .collect(),
        )]
    }
}

/// A follower's high watermark: the leader's, capped at what it holds.
pub fn follower_high_watermark(leader_high_watermark: i64, own_log_end_offset: i64) -> i64 {
    leader_high_watermark.min(own_log_end_offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(min_isr: usize) -> LeaderState {
        LeaderState::new(0, 1, &[0, 1, 2], &[0, 1, 2], min_isr, 30_000, 0, 0, 0)
    }

    fn acks(d: &[Decision]) -> Vec<(u64, AckResult)> {
        d.iter()
            .flat_map(|d| {
                if let Decision::Acks(a) = d {
                    a.clone()
                } else {
                    vec![]
                }
            })
            .collect()
    }

    #[test]
    fn the_high_watermark_is_the_minimum_over_the_isr_and_releases_acks_all() {
        let mut s = leader(2);
        assert!(acks(&s.on_append(10, Some(7))).is_empty());
        s.on_follower_fetch(1, 10, 1);
        assert_eq!(s.high_watermark(), 0, "follower 2 still at nothing");
        let d = s.on_follower_fetch(2, 6, 1);
        assert_eq!(s.high_watermark(), 6);
        assert!(acks(&d).is_empty());
        let d = s.on_follower_fetch(2, 10, 2);
        assert_eq!(s.high_watermark(), 10);
        assert_eq!(acks(&d), vec![(7, AckResult::Committed)]);
    }

    #[test]
    fn a_lagging_follower_is_proposed_out_and_the_watermark_moves_once_it_is_gone() {
        let mut s = leader(2);
        s.on_append(5, Some(1));
        s.on_follower_fetch(1, 5, 10);
        assert_eq!(s.tick(20_000), vec![]);
        assert_eq!(s.tick(30_001), vec![Decision::ProposeIsr(vec![0, 1])]);
        assert_eq!(s.tick(30_002), vec![], "no duplicate proposal");
        let d = s.on_isr_committed(&[0, 1], 30_003);
        assert_eq!(acks(&d), vec![(1, AckResult::Committed)]);
        assert_eq!(s.high_watermark(), 5);
    }

    #[test]
    fn a_caught_up_follower_is_proposed_back_in() {
        let mut s = LeaderState::new(0, 3, &[0, 1, 2], &[0, 1], 2, 30_000, 100, 100, 0);
        s.on_append(120, None);
        s.on_follower_fetch(1, 120, 1);
        assert_eq!(s.high_watermark(), 120);
        assert_eq!(
            s.on_follower_fetch(2, 110, 2),
            vec![],
            "below the high watermark"
        );
        assert_eq!(
            s.on_follower_fetch(2, 120, 3),
            vec![Decision::ProposeIsr(vec![0, 1, 2])]
        );
    }

    #[test]
    fn the_watermark_stalls_below_min_isr_and_waiters_fail_when_the_isr_shrinks() {
        let mut s = leader(2);
        s.on_append(4, Some(9));
        let d = s.on_isr_committed(&[0], 5);
        assert_eq!(acks(&d), vec![(9, AckResult::NotEnoughReplicasAfterAppend)]);
        assert!(!s.can_accept_acks_all());
        s.on_append(8, None);
        assert_eq!(s.high_watermark(), 0, "no progress while ISR < min-ISR");
    }

    #[test]
    fn followers_cap_the_leaders_watermark_at_what_they_hold() {
        assert_eq!(follower_high_watermark(50, 40), 40);
        assert_eq!(follower_high_watermark(50, 60), 50);
    }
}
