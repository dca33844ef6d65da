//! Deterministic simulation of one partition replicated on three brokers:
//! leaders ([`LeaderState`]), followers that fetch and truncate divergent
//! tails, and the controller's decisions (`metadata::controller`) under
//! random crashes, restarts and quick leader changes. Proptest generates the
//! event sequences; every step checks:
//! 1. no acknowledged (acks=all) record is lost: it is in the current
//!    leader's log at its offset with its epoch;
//! 2. the leader is in the ISR, the ISR within the replicas;
//! 3. leader epochs only grow; the high watermark never exceeds the leader's log.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::state::{AckResult, Decision, LeaderState, follower_high_watermark};
use crate::metadata::controller::{
    BrokerId, PartitionRecord, plan_broker_failure, plan_isr_change,
};

const REPLICAS: [BrokerId; 3] = [0, 1, 2];
const MIN_ISR: usize = 2;
const LAG_MS: i64 = 100;

#[derive(Clone, Debug)]
enum Event {
    Append(u8),
    Fetch(BrokerId),
    Tick(u16),
    Crash(BrokerId),
    Restart(BrokerId),
    /// The controller commits the ISR proposals it received so far.
    Controller,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (1u8..4).prop_map(Event::Append),
        6 => (0..3i32).prop_map(Event::Fetch),
        2 => (1u16..150).prop_map(Event::Tick),
        1 => (0..3i32).prop_map(Event::Crash),
        2 => (0..3i32).prop_map(Event::Restart),
        3 => Just(Event::Controller),
    ]
}

struct Cluster {
    now: i64,
    /// Each broker's log: the leader epoch of the record at each offset.
    logs: BTreeMap<BrokerId, Vec<i32>>,
    follower_hw: BTreeMap<BrokerId, i64>,
    alive: BTreeSet<BrokerId>,
    record: PartitionRecord,
    leader: Option<LeaderState>,
    /// (offset, epoch) of every record acknowledged to an acks=all producer.
    acked: Vec<(i64, i32)>,
    waiting: BTreeMap<u64, (i64, i64, i32)>,
    /// ISR proposals (leader, epoch, ISR) the controller has not committed yet.
    proposals: Vec<(BrokerId, i32, Vec<BrokerId>)>,
    next_waiter: u64,
    max_epoch_seen: i32,
}

impl Cluster {
    fn new() -> Self {
        let record = PartitionRecord {
            replicas: REPLICAS.to_vec(),
            isr: REPLICAS.to_vec(),
            leader: 0,
            leader_epoch: 0,
        };
        let mut c = Self {
            now: 0,
            logs: REPLICAS.iter().map(|&b| (b, Vec::new())).collect(),
            follower_hw: REPLICAS.iter().map(|&b| (b, 0)).collect(),
            alive: REPLICAS.iter().copied().collect(),
            record,
            leader: None,
            acked: Vec::new(),
            waiting: BTreeMap::new(),
            proposals: Vec::new(),
            next_waiter: 0,
            max_epoch_seen: 0,
        };
        c.become_leader();
        c
    }

    fn become_leader(&mut self) {
        let r = &self.record;
        self.leader = (r.leader >= 0).then(|| {
            let leo = self.logs[&r.leader].len() as i64;
            LeaderState::new(
                r.leader,
                r.leader_epoch,
                &r.replicas,
                &r.isr,
                MIN_ISR,
                LAG_MS,
                leo,
                self.follower_hw[&r.leader],
                self.now,
            )
        });
    }

    fn handle(&mut self, decisions: Vec<Decision>) {
        for d in decisions {
            match d {
                Decision::Acks(acks) => {
                    for (id, result) in acks {
                        let (first, end, epoch) = self.waiting.remove(&id).expect("known waiter");
                        if result == AckResult::Committed {
                            self.acked.extend((first..end).map(|o| (o, epoch)));
                        }
                    }
                }
                Decision::ProposeIsr(isr) => {
                    if let Some(l) = &self.leader {
                        self.proposals.push((l.leader, l.epoch, isr));
                    }
                }
            }
        }
    }

    fn step(&mut self, e: &Event) {
        match *e {
            Event::Append(n) => {
                let Some(l) = &mut self.leader else { return };
                if !l.can_accept_acks_all() {
                    return;
                }
                let log = self.logs.get_mut(&l.leader).expect("leader log");
                let first = log.len() as i64;
                log.extend(std::iter::repeat_n(l.epoch, n as usize));
                let end = log.len() as i64;
                let id = self.next_waiter;
                self.next_waiter += 1;
                self.waiting.insert(id, (first, end, l.epoch));
                let d = l.on_append(end, Some(id));
                self.handle(d);
            }
            Event::Fetch(f) => {
                let Some(l) = &self.leader else { return };
                if f == l.leader || !self.alive.contains(&f) {
                    return;
                }
                let leader_log = self.logs[&l.leader].clone();
                let log = self.logs.get_mut(&f).expect("follower log");
                // Truncate to the end of the last common epoch (KIP-101/279), then copy.
                let common = log
                    .iter()
                    .zip(&leader_log)
                    .take_while(|(a, b)| a == b)
                    .count();
                log.truncate(common);
                let fetch_offset = log.len() as i64;
                log.extend_from_slice(&leader_log[common..]);
                let (now, leader_hw) = (self.now, l.high_watermark());
                let d =
                    self.leader
                        .as_mut()
                        .expect("leader")
                        .on_follower_fetch(f, fetch_offset, now);
                self.handle(d);
                self.follower_hw
                    .insert(f, follower_high_watermark(leader_hw, fetch_offset));
            }
            Event::Tick(ms) => {
                self.now += i64::from(ms);
                let now = self.now;
                let d = self
                    .leader
                    .as_mut()
                    .map(|l| l.tick(now))
                    .unwrap_or_default();
                self.handle(d);
            }
            Event::Crash(b) => {
                if !self.alive.remove(&b) {
                    return;
                }
                if let Some(l) = &self.leader
                    && l.leader == b
                {
                    self.follower_hw.insert(b, l.high_watermark());
                    // Requests waiting on the dead leader are never answered.
                    self.waiting.clear();
                }
                self.apply_controller(b);
            }
            Event::Controller => {
                for (leader, epoch, isr) in std::mem::take(&mut self.proposals) {
                    // A proposal from a deposed leader is fenced by its epoch.
                    if let Ok(change) =
                        plan_isr_change(&self.record, leader, epoch, &isr, &self.alive)
                    {
                        self.record = change.apply(&self.record);
                        let now = self.now;
                        let more = self
                            .leader
                            .as_mut()
                            .map(|l| l.on_isr_committed(&change.isr, now))
                            .unwrap_or_default();
                        self.handle(more);
                    }
                }
            }
            Event::Restart(b) => {
                if self.alive.insert(b) {
                    // An offline partition may elect it again.
                    self.apply_controller(-1);
                }
            }
        }
    }

    fn apply_controller(&mut self, dead: BrokerId) {
        let mut parts = BTreeMap::new();
        parts.insert(("t".to_string(), 0), self.record.clone());
        for (_, change) in plan_broker_failure(&parts, dead, &self.alive, |_| false) {
            let leader_changed = change.leader != self.record.leader
                || change.leader_epoch != self.record.leader_epoch;
            self.record = change.apply(&self.record);
            if leader_changed {
                self.waiting.clear();
                self.become_leader();
            } else {
                let now = self.now;
                let d = self
                    .leader
                    .as_mut()
                    .map(|l| l.on_isr_committed(&change.isr, now))
                    .unwrap_or_default();
                self.handle(d);
            }
        }
    }

    fn check(&mut self) -> Result<(), TestCaseError> {
        let r = &self.record;
        prop_assert!(r.leader_epoch >= self.max_epoch_seen, "epoch went back");
        self.max_epoch_seen = r.leader_epoch;
        prop_assert!(r.isr.iter().all(|b| r.replicas.contains(b)));
        if r.leader >= 0 {
            prop_assert!(
                r.isr.contains(&r.leader),
                "leader {} outside ISR {:?}",
                r.leader,
                r.isr
            );
            let log = &self.logs[&r.leader];
            for &(offset, epoch) in &self.acked {
                prop_assert_eq!(
                    log.get(offset as usize).copied(),
                    Some(epoch),
                    "acknowledged offset {} lost on leader {}",
                    offset,
                    r.leader
                );
            }
            if let Some(l) = &self.leader {
                prop_assert!(l.high_watermark() <= log.len() as i64);
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn no_acknowledged_record_is_lost_across_crashes_and_leader_changes(events in proptest::collection::vec(event(), 1..200)) {
        let mut c = Cluster::new();
        for e in &events {
            c.step(e);
            c.check()?;
        }
    }
}

/// Leader changes in quick succession: each broker crashes and returns in turn
/// while records keep arriving.
#[test]
fn rolling_crashes_keep_every_acknowledged_record() {
    let mut c = Cluster::new();
    for round in 0..30 {
        let victim = round % 3;
        for e in [
            Event::Append(2),
            Event::Fetch((victim + 1) % 3),
            Event::Fetch((victim + 2) % 3),
            Event::Controller,
            Event::Crash(victim),
            Event::Append(1),
        ] {
            c.step(&e);
            c.check().expect("invariants");
        }
        for e in [
            Event::Fetch(0),
            Event::Fetch(1),
            Event::Fetch(2),
            Event::Restart(victim),
            Event::Fetch(victim),
            Event::Fetch(victim),
            Event::Controller,
        ] {
            c.step(&e);
            c.check().expect("invariants");
        }
    }
    assert!(
        c.acked.len() > 30,
        "the scenario should acknowledge writes, got {}",
        c.acked.len()
    );
    assert!(
        c.record.leader_epoch >= 20,
        "leaders changed {} times",
        c.record.leader_epoch
    );
}

/// KIP-497's case: broker 1 rejoins, its ISR addition waits at the
/// controller while the leader keeps committing; when the leader then dies,
/// broker 1 (first in replica order) is elected. It must hold every
/// acknowledged record, so the pending addition has to hold the watermark.
#[test]
fn an_isr_expansion_pending_at_the_controller_holds_the_watermark() {
    use Event::*;
    let mut c = Cluster::new();
    let script = [
        Append(1),
        Fetch(1),
        Fetch(2),
        Fetch(1),
        Fetch(2),
        Controller,
        Crash(1),
        Append(1),
        Fetch(2),
        Fetch(2),
        Restart(1),
        Fetch(1),
        Fetch(1),
        Append(2),
        Fetch(2),
        Fetch(2),
        Controller,
        Crash(0),
    ];
    for e in &script {
        c.step(e);
        c.check().unwrap_or_else(|err| panic!("after {e:?}: {err}"));
    }
    assert_eq!(
        c.record.leader, 1,
        "the scenario must elect the rejoined broker"
    );
}
