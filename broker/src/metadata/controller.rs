//! Controller decisions, pure: what the controller (the Raft leader of the
//! metadata quorum) commits when topics are created, brokers fail, leaders
//! propose ISR changes or a broker shuts down. Each `plan_*` function takes
//! the current state and returns the partition changes to commit; the
//! caller writes them as metadata records. No I/O, no clocks.
//!
//! Invariants every plan keeps (checked by the tests and the simulation in
//! `replication::sim`):
//! - a leader is always a member of its ISR, and the ISR a subset of the replicas;
//! - every leader change bumps the leader epoch;
//! - only an in-sync replica becomes leader, unless unclean election is
//!   enabled for the topic (then the change is marked unclean).

use std::collections::{BTreeMap, BTreeSet};

pub type BrokerId = i32;

/// (topic, partition).
pub type PartitionKey = (String, i32);

/// A broker as the controller sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: BrokerId,
    pub rack: Option<String>,
    pub alive: bool,
}

/// A partition's replication state as committed in the metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionRecord {
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    /// -1 when offline.
    pub leader: BrokerId,
    pub leader_epoch: i32,
}

/// A change to commit for one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionChange {
    pub leader: BrokerId,
    pub leader_epoch: i32,
    pub isr: Vec<BrokerId>,
    /// The new leader was not in the ISR: acknowledged data may be lost.
    pub unclean: bool,
}

impl PartitionChange {
    pub fn apply(&self, p: &PartitionRecord) -> PartitionRecord {
        PartitionRecord {
            replicas: p.replicas.clone(),
            isr: self.isr.clone(),
            leader: self.leader,
            leader_epoch: self.leader_epoch,
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("replication factor {rf} is larger than the {live} live brokers")]
    TooFewBrokers { rf: i32, live: usize },
    #[error("replication factor must be at least 1, got {0}")]
    InvalidReplicationFactor(i32),
    #[error("min.insync.replicas {min_isr} is larger than the replication factor {rf}")]
    MinIsrAboveReplicationFactor { min_isr: i32, rf: i32 },
}

/// Checks RF against the live brokers and min-ISR against RF.
pub fn validate_replication(
    rf: i32,
    min_isr: i32,
    live_brokers: usize,
) -> Result<(), PlacementError> {
    if rf < 1 {
        return Err(PlacementError::InvalidReplicationFactor(rf));
    }
    if rf as usize > live_brokers {
        return Err(PlacementError::TooFewBrokers {
            rf,
            live: live_brokers,
        });
    }
    if min_isr > rf {
        return Err(PlacementError::MinIsrAboveReplicationFactor { min_isr, rf });
    }
    Ok(())
}

/// Replica lists for `partitions` new partitions.
///
/// 1. Order the live brokers so that racks alternate (rack A's first broker,
///    rack B's first, ..., rack A's second, ...), as Kafka's rack-aware
///    assignment does; brokers without a rack form one group.
/// 2. Partition p's replicas are `rf` consecutive brokers of that ring
///    starting at (`start` + p), so leaders (the first replica) spread evenly
///    and, with enough racks, a partition's replicas sit on different racks.
pub fn plan_replica_placement(
    brokers: &[BrokerInfo],
    partitions: i32,
    rf: i32,
    start: usize,
) -> Result<Vec<Vec<BrokerId>>, PlacementError> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<BrokerId>> = BTreeMap::new();
    for b in brokers.iter().filter(|b| b.alive) {
        by_rack.entry(b.rack.as_deref()).or_default().push(b.id);
    }
    let live: usize = by_rack.values().map(Vec::len).sum();
    validate_replication(rf, 1, live)?;
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
    }
    let mut ring = Vec::with_capacity(live);
    for i in 0.. {
        let before = ring.len();
        for ids in by_rack.values() {
            if let Some(&id) = ids.get(i) {
                ring.push(id);
            }
        }
        if ring.len() == before {
            break;
        }
    }
    Ok((0..partitions as usize)
        .map(|p| {
            (0..rf as usize)
                .map(|r| ring[(start + p + r) % live])
                .collect()
        })
        .collect())
}

/// A new leader for a partition whose leader is gone or must move.
///
/// 1. The first replica (in replica order, the preferred order) that is
///    alive, in the ISR and not `excluded` becomes leader.
/// 2. The ISR keeps only live members (minus `excluded`).
/// 3. Without such a replica: an unclean election picks the first live
///    replica if `unclean_allowed`; otherwise the partition goes offline
///    (leader -1) with its last ISR kept, so the data's owner can come back.
/// 4. The epoch is bumped in every case.
pub fn plan_leader_election(
    p: &PartitionRecord,
    alive: &BTreeSet<BrokerId>,
    excluded: Option<BrokerId>,
    unclean_allowed: bool,
) -> PartitionChange {
    let eligible = |b: &BrokerId| alive.contains(b) && Some(*b) != excluded;
    let isr: Vec<BrokerId> = p.isr.iter().copied().filter(eligible).collect();
    let epoch = p.leader_epoch + 1;
    if let Some(&leader) = p.replicas.iter().find(|r| isr.contains(r)) {
        return PartitionChange {
            leader,
            leader_epoch: epoch,
            isr,
            unclean: false,
        };
    }
    if unclean_allowed && let Some(&leader) = p.replicas.iter().find(|r| eligible(r)) {
        return PartitionChange {
            leader,
            leader_epoch: epoch,
            isr: vec![leader],
            unclean: true,
        };
    }
    // Offline: keep the last ISR so its members remain the only legal leaders.
    let last_isr = if p.isr.is_empty() {
        vec![]
    } else {
        p.isr.clone()
    };
    PartitionChange {
        leader: -1,
        leader_epoch: epoch,
        isr: last_isr,
        unclean: false,
    }
}

/// The same leader and epoch with `follower` out of the ISR.
fn without_follower(p: &PartitionRecord, follower: BrokerId) -> PartitionChange {
    let isr = p.isr.iter().copied().filter(|&b| b != follower).collect();
    PartitionChange {
        leader: p.leader,
        leader_epoch: p.leader_epoch,
        isr,
        unclean: false,
    }
}

/// Changes after `dead` stopped heartbeating: partitions it led elect a new
/// leader; partitions where it was a follower in the ISR drop it (the
/// leader keeps its epoch: only the ISR changes).
pub fn plan_broker_failure(
    partitions: &BTreeMap<PartitionKey, PartitionRecord>,
    dead: BrokerId,
    alive: &BTreeSet<BrokerId>,
    unclean_allowed: impl Fn(&str) -> bool,
) -> Vec<(PartitionKey, PartitionChange)> {
    let mut changes = Vec::new();
    for (key, p) in partitions {
        if p.leader == dead {
            changes.push((
                key.clone(),
                plan_leader_election(p, alive, Some(dead), unclean_allowed(&key.0)),
            ));
        } else if p.isr.contains(&dead) && p.leader >= 0 {
            changes.push((key.clone(), without_follower(p, dead)));
        } else if p.leader < 0 && p.isr.iter().any(|b| alive.contains(b)) {
            // An offline partition whose in-sync replica is back.
            changes.push((key.clone(), plan_leader_election(p, alive, None, false)));
        }
    }
    changes
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum IsrChangeError {
    #[error(
        "leader {leader} proposed an ISR change for epoch {proposed}, but the partition is at epoch {current}"
    )]
    FencedLeaderEpoch {
        leader: BrokerId,
        proposed: i32,
        current: i32,
    },
    #[error("broker {0} is not the leader of this partition")]
    NotLeader(BrokerId),
    #[error("proposed ISR {0:?} must contain the leader and only replicas")]
    InvalidIsr(Vec<BrokerId>),
}

/// Validates a leader's ISR proposal (shrink after replica.lag.time.max.ms,
/// expand when a follower caught up). A stale leader is fenced by epoch.
pub fn plan_isr_change(
    p: &PartitionRecord,
    leader: BrokerId,
    leader_epoch: i32,
    proposed: &[BrokerId],
    alive: &BTreeSet<BrokerId>,
) -> Result<PartitionChange, IsrChangeError> {
    if leader_epoch != p.leader_epoch {
        return Err(IsrChangeError::FencedLeaderEpoch {
            leader,
            proposed: leader_epoch,
            current: p.leader_epoch,
        });
    }
    if p.leader != leader {
        return Err(IsrChangeError::NotLeader(leader));
    }
    if !proposed.contains(&leader) || proposed.iter().any(|b| !p.replicas.contains(b)) {
        return Err(IsrChangeError::InvalidIsr(proposed.to_vec()));
    }
    // A broker the controller already knows is dead cannot rejoin.
    let mut isr: Vec<BrokerId> = proposed
        .iter()
        .copied()
        .filter(|b| *b == leader || alive.contains(b))
        .collect();
    isr.sort_unstable();
    isr.dedup();
    Ok(PartitionChange {
        leader,
        leader_epoch: p.leader_epoch,
        isr,
        unclean: false,
    })
}

/// Controlled shutdown of `broker`: its leaderships move to other in-sync
/// replicas and it leaves every ISR it is in, so the partitions keep taking
/// writes while it stops. Partitions it leads with no other in-sync replica
/// are returned as blocked and left as they are.
pub fn plan_controlled_shutdown(
    partitions: &BTreeMap<PartitionKey, PartitionRecord>,
    broker: BrokerId,
    alive: &BTreeSet<BrokerId>,
) -> (Vec<(PartitionKey, PartitionChange)>, Vec<PartitionKey>) {
    let mut changes = Vec::new();
    let mut blocked = Vec::new();
    for (key, p) in partitions {
        if p.leader == broker {
            let change = plan_leader_election(p, alive, Some(broker), false);
            if change.leader < 0 {
                blocked.push(key.clone());
            } else {
                changes.push((key.clone(), change));
            }
        } else if p.isr.contains(&broker) && p.leader >= 0 {
            changes.push((key.clone(), without_follower(p, broker)));
        }
    }
    (changes, blocked)
}

/// One pass of the controller over the whole image, level-triggered (so a
/// pass that failed or ran on a stale image is simply repeated):
/// - a partition whose leader is not `alive` elects a new one
///   ([`plan_leader_election`], unclean only if the topic allows it);
/// - an offline partition with a live in-sync replica (or, if the topic
///   allows unclean election, any live replica) elects it;
/// - followers that are not alive leave the ISR;
/// - a partition led by a draining broker moves to another live in-sync
///   replica that is not draining (none: it stays, reported as blocked).
///
/// Returns `PartitionChanged` records guarded by the state they were
/// computed from, and whether each election was unclean.
pub fn plan_partition_repairs(
    image: &crate::metadata::MetadataImage,
    alive: &BTreeSet<BrokerId>,
) -> Vec<crate::metadata::MetadataRecord> {
    use crate::metadata::{MetadataRecord, PartitionState};
    let mut records = Vec::new();
    for t in image.topics.values() {
        let unclean_allowed = t
            .configs
            .get("unclean.leader.election.enable")
            .is_some_and(|v| v == "true");
        for p in 0..t.partitions {
            let st = t.state(p);
            let record = PartitionRecord {
                replicas: t.replicas(p).to_vec(),
                isr: st.isr.clone(),
                leader: st.leader,
                leader_epoch: st.leader_epoch,
            };
            let change = if st.leader >= 0 && !alive.contains(&st.leader) {
                Some(plan_leader_election(
                    &record,
                    alive,
                    Some(st.leader),
                    unclean_allowed,
                ))
            } else if st.leader < 0 {
                Some(plan_leader_election(&record, alive, None, unclean_allowed))
                    .filter(|c| c.leader >= 0)
            } else if image.draining.contains(&st.leader) {
                // Drain: the first live in-sync replica that is not draining
                // takes over; the ISR stays as it is.
                st.isr
                    .iter()
                    .copied()
                    .filter(|b| alive.contains(b) && !image.draining.contains(b))
                    .min_by_key(|b| t.replicas(p).iter().position(|r| r == b))
                    .map(|leader| PartitionChange {
                        leader,
                        leader_epoch: st.leader_epoch + 1,
                        isr: st.isr.clone(),
                        unclean: false,
                    })
            } else if st.isr.iter().any(|b| !alive.contains(b)) {
                let isr = st
                    .isr
                    .iter()
                    .copied()
                    .filter(|b| *b == st.leader || alive.contains(b))
                    .collect();
                Some(PartitionChange {
                    leader: st.leader,
                    leader_epoch: st.leader_epoch,
                    isr,
                    unclean: false,
                })
            } else {
                None
            };
            if let Some(c) = change {
                records.push(MetadataRecord::PartitionChanged {
                    topic: t.name.clone(),
                    partition: p,
                    expect: st,
                    state: PartitionState {
                        leader: c.leader,
                        leader_epoch: c.leader_epoch,
                        isr: c.isr,
                    },
                    unclean: c.unclean,
                });
            }
        }
    }
    records
}

/// Kafka's automatic preferred-leader election (`auto.leader.rebalance.enable`):
/// a partition led by another replica while its preferred replica (the first
/// in replica order) is alive, in the ISR and not draining moves back to it,
/// epoch bumped, ISR unchanged. After a broker restarts or is undrained, this
/// gives it back the leaderships placement assigned it, so a rolling restart
/// does not leave one broker leading everything. Records are guarded like
/// [`plan_partition_repairs`]'s.
pub fn plan_preferred_leaders(
    image: &crate::metadata::MetadataImage,
    alive: &BTreeSet<BrokerId>,
) -> Vec<crate::metadata::MetadataRecord> {
    use crate::metadata::{MetadataRecord, PartitionState};
    let mut records = Vec::new();
    for t in image.topics.values() {
        for p in 0..t.partitions {
            let st = t.state(p);
            let Some(&preferred) = t.replicas(p).first() else {
                continue;
            };
            if st.leader < 0
                || st.leader == preferred
                || !alive.contains(&preferred)
                || !st.isr.contains(&preferred)
                || image.draining.contains(&preferred)
            {
                continue;
            }
            records.push(MetadataRecord::PartitionChanged {
                topic: t.name.clone(),
                partition: p,
                expect: st.clone(),
                state: PartitionState {
                    leader: preferred,
                    leader_epoch: st.leader_epoch + 1,
                    isr: st.isr.clone(),
                },
                unclean: false,
            });
        }
    }
    records
}

#[cfg(test)]
mod tests;

/// Why a leader election that was asked for (Kafka's ElectLeaders) did not happen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ElectLeaderError {
    #[error("partition {1} of topic '{0}' does not exist")]
    UnknownPartition(String, i32),
    #[error("the partition already has the leader asked for")]
    NotNeeded,
    #[error("the preferred replica {0} is not alive, not in sync or draining")]
    PreferredNotAvailable(BrokerId),
    #[error("no live replica can lead the partition")]
    NoEligibleLeader,
}

/// Elections asked for by an operator (ElectLeaders), pure:
/// - preferred (`unclean` false): the first replica leads if it is alive, in
///   the ISR and not draining (epoch bumped, ISR unchanged);
/// - unclean: a partition without a leader elects one from its ISR if it
///   can, else from any live replica (marked unclean); a led partition is
///   left alone.
///
/// Returns the guarded records to commit and, per partition, the leader it
/// will have or why not.
#[allow(clippy::type_complexity)]
pub fn plan_elect_leaders(
    image: &crate::metadata::MetadataImage,
    alive: &BTreeSet<BrokerId>,
    partitions: &[PartitionKey],
    unclean: bool,
) -> (
    Vec<crate::metadata::MetadataRecord>,
    Vec<(PartitionKey, Result<BrokerId, ElectLeaderError>)>,
) {
    use crate::metadata::{MetadataRecord, PartitionState};
    let mut records = Vec::new();
    let mut results = Vec::new();
    for (topic, p) in partitions {
        let key = (topic.clone(), *p);
        let Some(t) = image
            .topics
            .get(topic)
            .filter(|t| (0..t.partitions).contains(p))
        else {
            results.push((
                key,
                Err(ElectLeaderError::UnknownPartition(topic.clone(), *p)),
            ));
            continue;
        };
        let st = t.state(*p);
        let change = if unclean {
            if st.leader >= 0 {
                Err(ElectLeaderError::NotNeeded)
            } else {
                let record = PartitionRecord {
                    replicas: t.replicas(*p).to_vec(),
                    isr: st.isr.clone(),
                    leader: st.leader,
                    leader_epoch: st.leader_epoch,
                };
                let c = plan_leader_election(&record, alive, None, true);
                if c.leader < 0 {
                    Err(ElectLeaderError::NoEligibleLeader)
                } else {
                    Ok(c)
                }
            }
        } else {
            let preferred = t.replicas(*p).first().copied().unwrap_or(-1);
            if st.leader == preferred {
                Err(ElectLeaderError::NotNeeded)
            } else if !alive.contains(&preferred)
                || !st.isr.contains(&preferred)
                || image.draining.contains(&preferred)
            {
                Err(ElectLeaderError::PreferredNotAvailable(preferred))
            } else {
                Ok(PartitionChange {
                    leader: preferred,
                    leader_epoch: st.leader_epoch + 1,
                    isr: st.isr.clone(),
                    unclean: false,
                })
            }
        };
        match change {
            Ok(c) => {
                results.push((key, Ok(c.leader)));
                records.push(MetadataRecord::PartitionChanged {
                    topic: topic.clone(),
                    partition: *p,
                    expect: st,
                    state: PartitionState {
                        leader: c.leader,
                        leader_epoch: c.leader_epoch,
                        isr: c.isr,
                    },
                    unclean: c.unclean,
                });
            }
            Err(e) => results.push((key, Err(e))),
        }
    }
    (records, results)
}
