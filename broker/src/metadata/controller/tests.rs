use super::*;

fn brokers(spec: &[(BrokerId, Option<&str>)]) -> Vec<BrokerInfo> {
    spec.iter()
        .map(|&(id, rack)| BrokerInfo {
            id,
            rack: rack.map(String::from),
            alive: true,
        })
        .collect()
}

fn alive(ids: &[BrokerId]) -> BTreeSet<BrokerId> {
    ids.iter().copied().collect()
}

fn part(replicas: &[BrokerId], isr: &[BrokerId], leader: BrokerId, epoch: i32) -> PartitionRecord {
    PartitionRecord {
        replicas: replicas.to_vec(),
        isr: isr.to_vec(),
        leader,
        leader_epoch: epoch,
    }
}

#[test]
fn placement_spreads_leaders_and_never_repeats_a_broker() {
    let plan = plan_replica_placement(&brokers(&[(0, None), (1, None), (2, None)]), 6, 3, 0)
        .expect("plan");
    for replicas in &plan {
        let distinct: BTreeSet<_> = replicas.iter().collect();
        assert_eq!(distinct.len(), 3, "{replicas:?}");
    }
    let leaders: Vec<_> = plan.iter().map(|r| r[0]).collect();
    assert_eq!(leaders, vec![0, 1, 2, 0, 1, 2]);
}

#[test]
fn placement_alternates_racks() {
    let b = brokers(&[
        (0, Some("a")),
        (1, Some("a")),
        (2, Some("b")),
        (3, Some("b")),
        (4, Some("c")),
        (5, Some("c")),
    ]);
    let rack = |id: BrokerId| b.iter().find(|x| x.id == id).and_then(|x| x.rack.clone());
    for replicas in plan_replica_placement(&b, 12, 3, 0).expect("plan") {
        let racks: BTreeSet<_> = replicas.iter().map(|&r| rack(r)).collect();
        assert_eq!(racks.len(), 3, "replicas {replicas:?} share a rack");
    }
}

#[test]
fn placement_refuses_more_replicas_than_live_brokers() {
    let mut b = brokers(&[(0, None), (1, None), (2, None)]);
    b[2].alive = false;
    assert_eq!(
        plan_replica_placement(&b, 1, 3, 0),
        Err(PlacementError::TooFewBrokers { rf: 3, live: 2 })
    );
    assert_eq!(
        validate_replication(2, 3, 3),
        Err(PlacementError::MinIsrAboveReplicationFactor { min_isr: 3, rf: 2 })
    );
}

#[test]
fn a_dead_leader_is_replaced_from_the_isr_and_the_epoch_bumps() {
    let p = part(&[0, 1, 2], &[0, 1, 2], 0, 4);
    let c = plan_leader_election(&p, &alive(&[1, 2]), Some(0), false);
    assert_eq!(
        c,
        PartitionChange {
            leader: 1,
            leader_epoch: 5,
            isr: vec![1, 2],
            unclean: false
        }
    );
}

#[test]
fn an_out_of_sync_replica_never_leads_unless_unclean_is_allowed() {
    let p = part(&[0, 1, 2], &[0], 0, 1);
    let clean = plan_leader_election(&p, &alive(&[1, 2]), Some(0), false);
    assert_eq!(
        (clean.leader, clean.leader_epoch, clean.isr.clone()),
        (-1, 2, vec![0]),
        "offline, last ISR kept"
    );
    let unclean = plan_leader_election(&p, &alive(&[1, 2]), Some(0), true);
    assert_eq!((unclean.leader, unclean.unclean), (1, true));
}

#[test]
fn broker_failure_elects_for_led_partitions_and_shrinks_isrs_elsewhere() {
    let mut parts = BTreeMap::new();
    parts.insert(("t".to_string(), 0), part(&[0, 1, 2], &[0, 1, 2], 0, 0));
    parts.insert(("t".to_string(), 1), part(&[1, 2, 0], &[1, 2, 0], 1, 3));
    parts.insert(("t".to_string(), 2), part(&[1, 2], &[1, 2], 1, 0));
    let changes: BTreeMap<_, _> = plan_broker_failure(&parts, 0, &alive(&[1, 2]), |_| false)
        .into_iter()
        .collect();
    assert_eq!(changes[&("t".to_string(), 0)].leader, 1);
    assert_eq!(
        changes[&("t".to_string(), 1)],
        PartitionChange {
            leader: 1,
            leader_epoch: 3,
            isr: vec![1, 2],
            unclean: false
        }
    );
    assert!(!changes.contains_key(&("t".to_string(), 2)));
}

#[test]
fn an_offline_partition_comes_back_when_its_in_sync_replica_returns() {
    let mut parts = BTreeMap::new();
    parts.insert(("t".to_string(), 0), part(&[0, 1], &[0], -1, 7));
    let changes = plan_broker_failure(&parts, 9, &alive(&[0, 1]), |_| false);
    assert_eq!(
        changes[0].1,
        PartitionChange {
            leader: 0,
            leader_epoch: 8,
            isr: vec![0],
            unclean: false
        }
    );
}

#[test]
fn isr_proposals_from_stale_leaders_are_fenced() {
    let p = part(&[0, 1, 2], &[0, 1, 2], 0, 5);
    assert_eq!(
        plan_isr_change(&p, 0, 4, &[0, 1], &alive(&[0, 1, 2])),
        Err(IsrChangeError::FencedLeaderEpoch {
            leader: 0,
            proposed: 4,
            current: 5
        })
    );
    assert_eq!(
        plan_isr_change(&p, 1, 5, &[1], &alive(&[0, 1, 2])),
        Err(IsrChangeError::NotLeader(1))
    );
    assert_eq!(
        plan_isr_change(&p, 0, 5, &[1, 2], &alive(&[0, 1, 2])),
        Err(IsrChangeError::InvalidIsr(vec![1, 2]))
    );
    assert_eq!(
        plan_isr_change(&p, 0, 5, &[0, 9], &alive(&[0, 1, 2])),
        Err(IsrChangeError::InvalidIsr(vec![0, 9]))
    );
    assert_eq!(
        plan_isr_change(&p, 0, 5, &[1, 0], &alive(&[0, 1, 2])).map(|c| c.isr),
        Ok(vec![0, 1])
    );
    // A dead follower cannot be added back.
    assert_eq!(
        plan_isr_change(&p, 0, 5, &[0, 2], &alive(&[0, 1])).map(|c| c.isr),
        Ok(vec![0])
    );
}

#[test]
fn controlled_shutdown_moves_leaderships_and_reports_what_cannot_move() {
    let mut parts = BTreeMap::new();
    parts.insert(("t".to_string(), 0), part(&[0, 1, 2], &[0, 1, 2], 0, 2));
    parts.insert(("t".to_string(), 1), part(&[0, 1], &[0], 0, 0));
    parts.insert(("t".to_string(), 2), part(&[1, 0], &[1, 0], 1, 1));
    let (changes, blocked) = plan_controlled_shutdown(&parts, 0, &alive(&[0, 1, 2]));
    let changes: BTreeMap<_, _> = changes.into_iter().collect();
    assert_eq!(
        changes[&("t".to_string(), 0)],
        PartitionChange {
            leader: 1,
            leader_epoch: 3,
            isr: vec![1, 2],
            unclean: false
        }
    );
    assert_eq!(
        changes[&("t".to_string(), 2)],
        PartitionChange {
            leader: 1,
            leader_epoch: 1,
            isr: vec![1],
            unclean: false
        }
    );
    assert_eq!(blocked, vec![("t".to_string(), 1)]);
}

/// The controller pass over a real image: a dead leader is replaced from the
/// ISR, a dead follower leaves it, a stale change is dropped by the
/// compare-and-set, a fenced broker never rejoins an ISR, and an offline
/// partition comes back when its last in-sync replica does.
#[test]
fn repairs_follow_liveness_and_stale_changes_are_dropped() {
    use crate::metadata::{MetadataImage, MetadataRecord, PartitionState};
    let mut image = MetadataImage::default();
    image.apply(&MetadataRecord::TopicCreated {
        name: "t".into(),
        topic_id: uuid::Uuid::new_v4(),
        partitions: 2,
        configs: Default::default(),
        assignments: vec![vec![0, 1, 2], vec![1, 2, 0]],
        origin: Default::default(),
    });
    let plan = plan_partition_repairs(&image, &alive(&[1, 2]));
    for r in &plan {
        image.apply(r);
    }
    let t = &image.topics["t"];
    assert_eq!(
        t.state(0),
        PartitionState {
            leader: 1,
            leader_epoch: 1,
            isr: vec![1, 2]
        }
    );
    assert_eq!(
        t.state(1),
        PartitionState {
            leader: 1,
            leader_epoch: 0,
            isr: vec![1, 2]
        }
    );
    // Applying the same plan again changes nothing: its expectations are stale.
    let before = image.clone();
    for r in &plan {
        image.apply(r);
    }
    assert_eq!(image, before);
    assert!(plan_partition_repairs(&image, &alive(&[1, 2])).is_empty());

    // A fenced broker cannot be added back by a leader's proposal.
    image.apply(&MetadataRecord::BrokerFenced { id: 0 });
    let expect = image.topics["t"].state(0);
    let mut state = expect.clone();
    state.isr = vec![0, 1, 2];
    let rejoin = MetadataRecord::PartitionChanged {
        topic: "t".into(),
        partition: 0,
        expect,
        state,
        unclean: false,
    };
    image.apply(&rejoin);
    assert_eq!(image.topics["t"].state(0).isr, vec![1, 2]);
    image.apply(&MetadataRecord::BrokerUnfenced { id: 0 });
    image.apply(&rejoin);
    assert_eq!(image.topics["t"].state(0).isr, vec![0, 1, 2]);

    // Everyone but 0 dies: 0 is in sync and leads; then 0 dies too.
    for r in plan_partition_repairs(&image, &alive(&[0])) {
        image.apply(&r);
    }
    assert_eq!(image.topics["t"].leader(0), 0);
    assert_eq!(image.topics["t"].leader(1), -1, "0 was not in p1's ISR");
    for r in plan_partition_repairs(&image, &alive(&[])) {
        image.apply(&r);
    }
    let offline = image.topics["t"].state(0);
    assert_eq!((offline.leader, offline.isr.clone()), (-1, vec![0]));
    assert!(
        plan_partition_repairs(&image, &alive(&[1, 2]))
            .iter()
            .all(|r| !matches!(r, MetadataRecord::PartitionChanged { partition: 0, .. })),
        "no unclean election unless the topic allows it"
    );
    for r in plan_partition_repairs(&image, &alive(&[0])) {
        image.apply(&r);
    }
    assert_eq!(
        image.topics["t"].leader(0),
        0,
        "the last in-sync replica is back"
    );
}

/// Drain: leadership moves to the first live in-sync replica that is not
/// draining, the ISR stays; with no such replica the partition stays put.
#[test]
fn a_draining_leader_hands_over_and_keeps_replicating() {
    use crate::metadata::{MetadataImage, MetadataRecord};
    let mut image = MetadataImage::default();
    image.apply(&MetadataRecord::TopicCreated {
        name: "t".into(),
        topic_id: uuid::Uuid::new_v4(),
        partitions: 2,
        configs: Default::default(),
        assignments: vec![vec![0, 2, 1], vec![0]],
        origin: Default::default(),
    });
    image.apply(&MetadataRecord::BrokerDrainChanged {
        id: 0,
        draining: true,
    });
    for r in plan_partition_repairs(&image, &alive(&[0, 1, 2])) {
        image.apply(&r);
    }
    let s = image.topics["t"].state(0);
    assert_eq!((s.leader, s.leader_epoch, s.isr), (2, 1, vec![0, 1, 2]));
    assert_eq!(image.topics["t"].leader(1), 0, "no other replica: stays");
    assert!(plan_partition_repairs(&image, &alive(&[0, 1, 2])).is_empty());
}

#[test]
fn leadership_goes_back_to_the_preferred_replica_once_it_is_in_sync_and_not_draining() {
    use crate::metadata::{MetadataImage, MetadataRecord};
    let mut image = MetadataImage::default();
    image.apply(&MetadataRecord::TopicCreated {
        name: "t".into(),
        topic_id: uuid::Uuid::new_v4(),
        partitions: 1,
        configs: Default::default(),
        assignments: vec![vec![0, 1, 2]],
        origin: Default::default(),
    });
    image.apply(&MetadataRecord::BrokerDrainChanged {
        id: 0,
        draining: true,
    });
    for r in plan_partition_repairs(&image, &alive(&[0, 1, 2])) {
        image.apply(&r);
    }
    assert_eq!(image.topics["t"].leader(0), 1);
    // Still draining: it stays away.
    assert!(plan_preferred_leaders(&image, &alive(&[0, 1, 2])).is_empty());
    image.apply(&MetadataRecord::BrokerDrainChanged {
        id: 0,
        draining: false,
    });
    // Not alive: it stays away too.
    assert!(plan_preferred_leaders(&image, &alive(&[1, 2])).is_empty());
    for r in plan_preferred_leaders(&image, &alive(&[0, 1, 2])) {
        image.apply(&r);
    }
    let s = image.topics["t"].state(0);
    assert_eq!((s.leader, s.leader_epoch, s.isr), (0, 2, vec![0, 1, 2]));
    assert!(plan_preferred_leaders(&image, &alive(&[0, 1, 2])).is_empty());
}

#[test]
fn asked_for_elections_move_to_the_preferred_replica_or_say_why_not() {
    use crate::metadata::{MetadataImage, MetadataRecord, PartitionState};
    let mut image = MetadataImage::default();
    image.apply(&MetadataRecord::TopicCreated {
        name: "t".into(),
        topic_id: uuid::Uuid::new_v4(),
        partitions: 3,
        configs: BTreeMap::new(),
        assignments: vec![vec![0, 1, 2], vec![1, 2, 0], vec![2, 0, 1]],
        origin: Default::default(),
    });
    let set = |image: &mut MetadataImage, p: i32, leader: BrokerId, isr: &[BrokerId]| {
        let st = image.topics["t"].state(p);
        image.apply(&MetadataRecord::PartitionChanged {
            topic: "t".into(),
            partition: p,
            expect: st.clone(),
            state: PartitionState {
                leader,
                leader_epoch: st.leader_epoch + 1,
                isr: isr.to_vec(),
            },
            unclean: false,
        });
    };
    set(&mut image, 0, 1, &[0, 1, 2]); // 0 preferred, in sync: back to 0
    set(&mut image, 2, 0, &[0, 1]); // 2 preferred, out of sync: not available
    let keys: Vec<PartitionKey> = (0..4).map(|p| ("t".to_string(), p)).collect();
    let (records, results) = plan_elect_leaders(&image, &alive(&[0, 1, 2]), &keys, false);
    assert_eq!(records.len(), 1);
    assert_eq!(results[0].1, Ok(0));
    assert_eq!(results[1].1, Err(ElectLeaderError::NotNeeded));
    assert_eq!(
        results[2].1,
        Err(ElectLeaderError::PreferredNotAvailable(2))
    );
    assert!(matches!(
        results[3].1,
        Err(ElectLeaderError::UnknownPartition(_, 3))
    ));
    // Unclean: only an offline partition elects, from any live replica.
    set(&mut image, 1, -1, &[1]);
    let (records, results) = plan_elect_leaders(&image, &alive(&[0, 2]), &keys[..2], true);
    assert_eq!(results[0].1, Err(ElectLeaderError::NotNeeded));
    assert_eq!(results[1].1, Ok(2));
    assert!(matches!(
        &records[..],
        [MetadataRecord::PartitionChanged { unclean: true, .. }]
    ));
}
