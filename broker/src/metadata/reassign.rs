//! Moving replicas off brokers (before a scale-down removes them), as pure
//! decisions over the metadata image. A move is Kafka's reassignment in two
//! steps, so a partition never has fewer in-sync copies than before:
//! 1. [`plan_evacuation`] gives each partition with a replica on a broker
//!    to remove a target replica set (that broker replaced by another) and
//!    adds the new replicas; they fetch from the leader like any follower;
//! 2. once every target replica is in the ISR, [`plan_reassignment_completion`]
//!    (run by the controller every pass) moves the leadership into the target
//!    if needed and then shrinks the replicas to the target, which drops the
//!    old replica and ends the reassignment.

use std::collections::BTreeSet;

use super::controller::{BrokerId, BrokerInfo};
use super::mirror_policy::{PolicySet, ReplicaRule, replica_load};
use super::{MetadataImage, MetadataRecord, PartitionState};

/// Why brokers cannot be emptied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot move every replica off brokers {brokers:?}: topics {topics:?} have a replication factor above the {remaining} brokers that would remain"
)]
pub struct EvacuationError {
    pub brokers: Vec<BrokerId>,
    pub topics: Vec<String>,
    pub remaining: usize,
}

/// The records that start moving every replica off `evacuate`, or the
/// topics that make it impossible (then nothing is planned).
///
/// For each partition with a replica on an evacuated broker and no
/// reassignment running, each such replica is replaced, at the same
/// position of the replica list (so preferred leadership moves with it), by
/// a live broker that is not evacuated and not a replica yet: first one in a
/// rack the other replicas do not use, then the one holding the fewest
/// replicas, then the lowest id. A partition governed by a mirror policy
/// with mode All loses the replica instead (one fewer broker, one fewer copy).
pub fn plan_evacuation(
    image: &MetadataImage,
    brokers: &[BrokerInfo],
    evacuate: &BTreeSet<BrokerId>,
) -> Result<Vec<MetadataRecord>, EvacuationError> {
    let candidates: Vec<&BrokerInfo> = brokers
        .iter()
        .filter(|b| b.alive && !evacuate.contains(&b.id))
        .collect();
    let rack_of = |id: BrokerId| {
        brokers
            .iter()
            .find(|b| b.id == id)
            .and_then(|b| b.rack.clone())
    };
    let mut load = replica_load(image, candidates.iter().map(|b| b.id));
    let policies = PolicySet::of(image);
    let mut impossible = BTreeSet::new();
    let mut records = Vec::new();
    for t in image.topics.values() {
        for p in 0..t.partitions {
            let replicas = t.replicas(p);
            if t.targets.contains_key(&p) || !replicas.iter().any(|r| evacuate.contains(r)) {
                continue;
            }
            let mut target = replicas.to_vec();
            let follows_brokers = policies
                .governing(&t.name, t.origin)
                .is_some_and(|p| p.replicas == ReplicaRule::All);
            if follows_brokers {
                // Mode All: one replica fewer, on the brokers that stay.
                target.retain(|b| !evacuate.contains(b));
                if target.is_empty() {
                    impossible.insert(t.name.clone());
                    continue;
                }
            }
            for slot in 0..target.len() {
                if !evacuate.contains(&target[slot]) {
                    continue;
                }
                let used_racks: BTreeSet<Option<String>> = target
                    .iter()
                    .filter(|r| !evacuate.contains(r))
                    .map(|r| rack_of(*r))
                    .collect();
                let pick = candidates
                    .iter()
                    .filter(|b| !target.contains(&b.id))
                    .min_by_key(|b| {
                        let shares_rack = b.rack.is_some() && used_racks.contains(&b.rack);
                        (shares_rack, load[&b.id], b.id)
                    })
                    .map(|b| b.id);
                match pick {
                    Some(id) => {
                        *load.entry(id).or_default() += 1;
                        target[slot] = id;
                    }
                    None => {
                        impossible.insert(t.name.clone());
                        break;
                    }
                }
            }
            if impossible.contains(&t.name) {
                continue;
            }
            let mut grown = replicas.to_vec();
            grown.extend(target.iter().filter(|b| !replicas.contains(b)));
            records.push(MetadataRecord::ReassignmentChanged {
                topic: t.name.clone(),
                partition: p,
                target: Some(target),
            });
            if grown != replicas {
                records.push(MetadataRecord::ReplicasChanged {
                    topic: t.name.clone(),
                    partition: p,
                    replicas: grown,
                });
            }
        }
    }
    if impossible.is_empty() {
        Ok(records)
    } else {
        Err(EvacuationError {
            brokers: evacuate.iter().copied().collect(),
            topics: impossible.into_iter().collect(),
            remaining: candidates.len(),
        })
    }
}

/// Reassignments whose target replicas are all in sync make progress:
/// a leader outside the target hands over to the first live in-sync target
/// replica (epoch bumped, guarded like the controller's other changes);
/// a leader inside it shrinks the replicas to the target and ends it.
pub fn plan_reassignment_completion(
    image: &MetadataImage,
    alive: &BTreeSet<BrokerId>,
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for t in image.topics.values() {
        for (&p, target) in &t.targets {
            let st = t.state(p);
            if st.leader < 0 || !target.iter().all(|b| st.isr.contains(b)) {
                continue;
            }
            if !target.contains(&st.leader) {
                if let Some(&leader) = target.iter().find(|b| alive.contains(b)) {
                    records.push(MetadataRecord::PartitionChanged {
                        topic: t.name.clone(),
                        partition: p,
                        expect: st.clone(),
                        state: PartitionState {
                            leader,
                            leader_epoch: st.leader_epoch + 1,
                            isr: st.isr.clone(),
                        },
                        unclean: false,
                    });
                }
                continue;
            }
            if t.replicas(p) != target.as_slice() {
                records.push(MetadataRecord::ReplicasChanged {
                    topic: t.name.clone(),
                    partition: p,
                    replicas: target.clone(),
                });
            }
            records.push(MetadataRecord::ReassignmentChanged {
                topic: t.name.clone(),
                partition: p,
                target: None,
            });
        }
    }
    records
}

/// Replicas still on `brokers` (a pending target counts: its old replica is
/// still there until the reassignment completes).
pub fn replicas_on(image: &MetadataImage, brokers: &BTreeSet<BrokerId>) -> usize {
    image
        .topics
        .values()
        .flat_map(|t| t.assignments.iter())
        .map(|r| r.iter().filter(|b| brokers.contains(b)).count())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::MetadataRecord;

    fn image_with(assignments: Vec<Vec<i32>>) -> MetadataImage {
        let mut image = MetadataImage::default();
        image.apply(&MetadataRecord::TopicCreated {
            name: "t".into(),
            topic_id: uuid::Uuid::new_v4(),
            partitions: assignments.len() as i32,
            configs: std::collections::BTreeMap::new(),
            assignments,
            origin: Default::default(),
        });
        image
    }

    fn brokers(n: i32, racks: &[&str]) -> Vec<BrokerInfo> {
        (0..n)
            .map(|id| BrokerInfo {
                id,
                rack: racks.get(id as usize).map(|r| r.to_string()),
                alive: true,
            })
            .collect()
    }

    fn apply_all(image: &mut MetadataImage, records: &[MetadataRecord]) {
        for r in records {
            image.apply(r);
        }
    }

    #[test]
    fn a_replica_moves_in_two_steps_and_never_drops_a_copy_early() {
        let mut image = image_with(vec![vec![3, 0, 1], vec![1, 2, 0]]);
        let evacuate = BTreeSet::from([3]);
        let records = plan_evacuation(&image, &brokers(4, &[]), &evacuate).expect("plan");
        apply_all(&mut image, &records);
        let t = &image.topics["t"];
        // Broker 2 takes 3's place (the only broker not yet a replica); 3 stays until 2 is in sync.
        assert_eq!(t.targets[&0], vec![2, 0, 1]);
        assert_eq!(t.replicas(0), &[3, 0, 1, 2]);
        assert!(!t.targets.contains_key(&1));
        assert_eq!(replicas_on(&image, &evacuate), 1);
        let alive = BTreeSet::from([0, 1, 2, 3]);
        // 2 not in the ISR yet: nothing completes.
        assert!(plan_reassignment_completion(&image, &alive).is_empty());
        let st = image.topics["t"].state(0);
        image.apply(&MetadataRecord::PartitionChanged {
            topic: "t".into(),
            partition: 0,
            expect: st.clone(),
            state: PartitionState {
                isr: vec![0, 1, 2, 3],
                ..st
            },
            unclean: false,
        });
        // 3 leads and is not in the target: leadership moves to 2 first.
        let step = plan_reassignment_completion(&image, &alive);
        assert!(
            matches!(&step[..], [MetadataRecord::PartitionChanged { state, .. }] if state.leader == 2),
            "{step:?}"
        );
        apply_all(&mut image, &step);
        let step = plan_reassignment_completion(&image, &alive);
        apply_all(&mut image, &step);
        let t = &image.topics["t"];
        assert_eq!(t.replicas(0), &[2, 0, 1]);
        assert!(t.targets.is_empty());
        assert!(!t.state(0).isr.contains(&3));
        assert_eq!(replicas_on(&image, &evacuate), 0);
        // Done: planning again changes nothing.
        assert!(
            plan_evacuation(&image, &brokers(4, &[]), &evacuate)
                .expect("plan")
                .is_empty()
        );
    }

    #[test]
    fn a_new_replica_goes_to_an_unused_rack_first() {
        let image = image_with(vec![vec![0, 1, 3]]);
        // racks: 0 a, 1 b, 2 a, 3 c, 4 c: 3 (rack c) leaves; 4 keeps rack c in use.
        let records = plan_evacuation(
            &image,
            &brokers(5, &["a", "b", "a", "c", "c"]),
            &BTreeSet::from([3]),
        )
        .expect("plan");
        assert!(
            matches!(&records[0], MetadataRecord::ReassignmentChanged { target: Some(t), .. } if t == &vec![0, 1, 4]),
            "{records:?}"
        );
    }

    #[test]
    fn too_few_brokers_left_is_refused_naming_the_topics() {
        let image = image_with(vec![vec![0, 1, 2, 3]]);
        let err =
            plan_evacuation(&image, &brokers(4, &[]), &BTreeSet::from([3])).expect_err("rf 4");
        assert_eq!(err.topics, ["t"]);
        assert_eq!(err.remaining, 3);
        assert!(err.to_string().contains("replication factor"), "{err}");
    }
}
