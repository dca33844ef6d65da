use super::*;
use crate::metadata::PartitionState;

fn policy(
    name: &str,
    priority: i32,
    created_ms: i64,
    prefix: &str,
    replicas: ReplicaRule,
) -> MirrorPolicy {
    MirrorPolicy {
        name: name.into(),
        priority,
        created_ms,
        topics: vec![NamePattern {
            kind: PatternType::Prefix,
            value: prefix.into(),
        }],
        exclude: vec![],
        applies_to_admin: true,
        applies_to_clients: true,
        replicas,
        min_insync_replicas: None,
        max_per_rack: None,
        on_create: OnCreate::Reject,
        on_existing: OnExisting::Reconcile,
        throttle_bytes_per_sec: None,
    }
}

fn exactly(n: i32) -> ReplicaRule {
    ReplicaRule::Exactly { count: n }
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

fn image_with(topics: &[(&str, Vec<Vec<i32>>)], policies: &[MirrorPolicy]) -> MetadataImage {
    let mut image = MetadataImage::default();
    for (name, assignments) in topics {
        image.apply(&MetadataRecord::TopicCreated {
            name: name.to_string(),
            topic_id: uuid::Uuid::new_v4(),
            partitions: assignments.len() as i32,
            configs: BTreeMap::new(),
            assignments: assignments.clone(),
            origin: TopicOrigin::Client,
        });
    }
    for p in policies {
        image.apply(&MetadataRecord::MirrorPolicySet { policy: p.clone() });
    }
    image
}

fn min_isr(t: &TopicMeta) -> i32 {
    t.configs
        .get("min.insync.replicas")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

#[test]
fn patterns_match_literally_by_prefix_or_whole_regex_minus_excludes() {
    let mut p = policy("p", 0, 0, "orders.", exactly(3));
    p.topics.push(NamePattern {
        kind: PatternType::Literal,
        value: "payments".into(),
    });
    p.topics.push(NamePattern {
        kind: PatternType::Regex,
        value: "audit-[0-9]+".into(),
    });
    p.exclude.push(NamePattern {
        kind: PatternType::Regex,
        value: r"orders\.tmp.*".into(),
    });
    let set = PolicySet::new([&p]);
    let hit = |t: &str| set.governing(t, TopicOrigin::Client).is_some();
    assert!(hit("orders.eu") && hit("payments") && hit("audit-42"));
    assert!(!hit("payments2"), "a literal is the exact name");
    assert!(
        !hit("xaudit-42") && !hit("audit-42x"),
        "a regex matches the whole name"
    );
    assert!(!hit("orders.tmp1"), "excluded");
    assert!(!hit("order"));
}

#[test]
fn the_highest_priority_governs_and_a_tie_goes_to_the_older() {
    let low = policy("low", 1, 0, "orders.", exactly(2));
    let high = policy("high", 5, 9, "orders.", exactly(3));
    let set = PolicySet::new([&low, &high]);
    assert_eq!(
        set.governing("orders.x", TopicOrigin::Client)
            .map(|p| p.name.as_str()),
        Some("high")
    );
    assert!(set.ties("orders.x", TopicOrigin::Client).is_empty());

    let older = policy("b-older", 5, 1, "orders.", exactly(2));
    let newer = policy("a-newer", 5, 2, "orders.eu", exactly(3));
    let set = PolicySet::new([&newer, &older]);
    assert_eq!(
        set.governing("orders.eu", TopicOrigin::Client)
            .map(|p| p.name.as_str()),
        Some("b-older")
    );
    let tied: Vec<&str> = set
        .ties("orders.eu", TopicOrigin::Client)
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(tied, ["b-older", "a-newer"]);
    assert!(
        set.ties("orders.us", TopicOrigin::Client).is_empty(),
        "only the older one matches"
    );

    let image = image_with(&[("orders.eu", vec![vec![0, 1]])], &[older, newer]);
    let all = brokers(3, &[]);
    let b = Brokers {
        all: &all,
        leaving: &BTreeSet::new(),
    };
    let reports = describe_policies(&image, &b, min_isr);
    assert_eq!(
        reports["a-newer"].ties,
        BTreeSet::from(["b-older".to_string()])
    );
    assert_eq!(
        reports["b-older"].ties,
        BTreeSet::from(["a-newer".to_string()])
    );
    assert_eq!(reports["b-older"].governed, ["orders.eu"]);
    assert!(reports["a-newer"].governed.is_empty());
}

#[test]
fn policies_apply_by_origin_and_never_to_internal_topics() {
    let mut p = policy("p", 0, 0, "", exactly(3));
    p.applies_to_admin = false;
    let set = PolicySet::new([&p]);
    assert!(set.governing("t", TopicOrigin::Client).is_some());
    assert!(set.governing("t", TopicOrigin::Admin).is_none());
    assert!(
        set.governing("__consumer_offsets", TopicOrigin::Internal)
            .is_none()
    );
}

#[test]
fn requirements_follow_the_mode() {
    let all = brokers(4, &["a", "a", "b", "c"]);
    let leaving = BTreeSet::from([3]);
    let b = Brokers {
        all: &all,
        leaving: &leaving,
    };
    let req = |r: ReplicaRule| plan_requirement(&policy("p", 0, 0, "", r), &b);
    assert_eq!(
        req(ReplicaRule::All).expect("all").count,
        3,
        "a leaving broker does not count"
    );
    assert_eq!(req(exactly(2)).expect("exactly").count, 2);
    let on = req(ReplicaRule::Brokers { ids: vec![0, 2] }).expect("brokers");
    assert_eq!((on.count, on.allowed), (2, BTreeSet::from([0, 2])));
    assert!(
        req(ReplicaRule::Brokers { ids: vec![0, 7] })
            .expect_err("refused")
            .contains("broker 7")
    );
    let racks = req(ReplicaRule::Racks {
        racks: vec!["a".into()],
    })
    .expect("racks");
    assert_eq!((racks.count, racks.allowed), (2, BTreeSet::from([0, 1])));
    assert!(
        req(ReplicaRule::Racks {
            racks: vec!["z".into()]
        })
        .is_err()
    );
}

#[test]
fn a_partition_target_grows_shrinks_and_respects_racks() {
    let all = brokers(4, &["a", "a", "b", "c"]);
    let b = Brokers {
        all: &all,
        leaving: &BTreeSet::new(),
    };
    let mut load = BTreeMap::new();
    let req = plan_requirement(&policy("p", 0, 0, "", exactly(3)), &b).expect("req");
    // Grows into unused racks first: 0 is in a; b and c are free.
    assert_eq!(
        plan_partition_target(&req, &[0], 0, &[0], &b, &mut load),
        Ok(vec![0, 2, 3])
    );
    // Shrinks: the out-of-sync follower goes, never the leader.
    let req2 = plan_requirement(&policy("p", 0, 0, "", exactly(2)), &b).expect("req");
    assert_eq!(
        plan_partition_target(&req2, &[1, 0, 2], 1, &[1, 0], &b, &mut load),
        Ok(vec![1, 0])
    );
    // At most one per rack: 0 and 1 share rack a; the follower 1 goes, c or b comes.
    let mut p = policy("p", 0, 0, "", exactly(3));
    p.max_per_rack = Some(1);
    let req3 = plan_requirement(&p, &b).expect("req");
    assert_eq!(
        plan_partition_target(&req3, &[0, 1, 2], 0, &[0, 1, 2], &b, &mut load),
        Ok(vec![0, 2, 3])
    );
    assert_eq!(check_replicas(&req3, &[0, 2, 3], &b), None);
    assert!(
        check_replicas(&req3, &[0, 1, 2], &b)
            .expect("two in a")
            .contains("rack a")
    );
    // Impossible: 4 replicas with one per rack over 3 racks.
    let mut p = policy("p", 0, 0, "", exactly(4));
    p.max_per_rack = Some(1);
    let req4 = plan_requirement(&p, &b).expect("req");
    assert!(plan_partition_target(&req4, &[0], 0, &[0], &b, &mut load).is_err());
}

#[test]
fn the_controller_reconciles_one_topic_at_a_time_raising_min_isr_last() {
    let mut p = policy("p", 0, 0, "orders.", exactly(3));
    p.min_insync_replicas = Some(2);
    let mut image = image_with(
        &[
            ("orders.a", vec![vec![0], vec![1]]),
            ("orders.b", vec![vec![2]]),
            ("other", vec![vec![0]]),
        ],
        &[p],
    );
    let all = brokers(3, &[]);
    let b = Brokers {
        all: &all,
        leaving: &BTreeSet::new(),
    };
    let step = plan_policy_step(&image, &b, min_isr);
    // orders.a only: both partitions get a target and their new replicas.
    assert!(
        step.iter().all(|r| match r {
            MetadataRecord::ReassignmentChanged { topic, .. }
            | MetadataRecord::ReplicasChanged { topic, .. } => topic == "orders.a",
            _ => false,
        }),
        "{step:?}"
    );
    assert_eq!(step.len(), 4);
    for r in &step {
        image.apply(r);
    }
    assert_eq!(image.topics["orders.a"].replicas(0).len(), 3);
    assert!(
        plan_policy_step(&image, &b, min_isr).is_empty(),
        "nothing new while a reassignment runs"
    );
    // The new replicas catch up; the reassignment completes.
    for p in 0..2 {
        let t = &image.topics["orders.a"];
        let st = t.state(p);
        image.apply(&MetadataRecord::PartitionChanged {
            topic: "orders.a".into(),
            partition: p,
            expect: st.clone(),
            state: PartitionState {
                isr: t.replicas(p).to_vec(),
                ..st
            },
            unclean: false,
        });
    }
    for r in
        crate::metadata::reassign::plan_reassignment_completion(&image, &BTreeSet::from([0, 1, 2]))
    {
        image.apply(&r);
    }
    assert!(image.topics["orders.a"].targets.is_empty());
    // Then min-ISR 2 for orders.a, before orders.b moves.
    let step = plan_policy_step(&image, &b, min_isr);
    assert!(
        matches!(&step[..], [MetadataRecord::TopicConfigsReplaced { name, configs }] if name == "orders.a" && configs["min.insync.replicas"] == "2"),
        "{step:?}"
    );
    for r in &step {
        image.apply(r);
    }
    let step = plan_policy_step(&image, &b, min_isr);
    assert!(
        matches!(&step[0], MetadataRecord::ReassignmentChanged { topic, .. } if topic == "orders.b"),
        "{step:?}"
    );
    let reports = describe_policies(&image, &b, min_isr);
    assert_eq!(reports["p"].governed, ["orders.a", "orders.b"]);
    assert_eq!(reports["p"].non_compliant.len(), 1);
    assert!(
        reports["p"].non_compliant[0]
            .1
            .contains("1 replica(s), the policy requires 3"),
        "{reports:?}"
    );
}

#[test]
fn a_shrink_lowers_min_isr_first_and_audit_only_reports() {
    let mut image = image_with(
        &[("t", vec![vec![0, 1, 2]])],
        &[policy("p", 0, 0, "t", exactly(2))],
    );
    image.apply(&MetadataRecord::TopicConfigsReplaced {
        name: "t".into(),
        configs: [("min.insync.replicas".to_string(), "3".to_string())].into(),
    });
    let all = brokers(3, &[]);
    let b = Brokers {
        all: &all,
        leaving: &BTreeSet::new(),
    };
    let step = plan_policy_step(&image, &b, min_isr);
    assert!(
        matches!(&step[..], [MetadataRecord::TopicConfigsReplaced { configs, .. }] if configs["min.insync.replicas"] == "2"),
        "{step:?}"
    );
    let mut audit = policy("p", 0, 0, "t", exactly(2));
    audit.on_existing = OnExisting::Audit;
    image.apply(&MetadataRecord::MirrorPolicySet { policy: audit });
    assert!(plan_policy_step(&image, &b, min_isr).is_empty());
    assert_eq!(
        describe_policies(&image, &b, min_isr)["p"]
            .non_compliant
            .len(),
        1
    );
}

#[test]
fn mode_all_gives_a_new_broker_a_replica_and_loses_a_leaving_one() {
    let image = image_with(
        &[("t", vec![vec![0, 1, 2]])],
        &[policy("p", 0, 0, "t", ReplicaRule::All)],
    );
    let four = brokers(4, &[]);
    let b = Brokers {
        all: &four,
        leaving: &BTreeSet::new(),
    };
    let step = plan_policy_step(&image, &b, min_isr);
    assert!(
        step.iter().any(|r| matches!(r, MetadataRecord::ReplicasChanged { replicas, .. } if replicas == &vec![0, 1, 2, 3])),
        "{step:?}"
    );
    // Scaling down again: evacuating broker 3 drops its replica instead of moving it.
    let mut image = image_with(
        &[("t", vec![vec![0, 1, 2, 3]])],
        &[policy("p", 0, 0, "t", ReplicaRule::All)],
    );
    image.apply(&MetadataRecord::BrokersLeaving {
        ids: BTreeSet::from([3]),
    });
    let records = crate::metadata::reassign::plan_evacuation(&image, &four, &BTreeSet::from([3]))
        .expect("plan");
    assert!(
        matches!(&records[..], [MetadataRecord::ReassignmentChanged { target: Some(t), .. }] if t == &vec![0, 1, 2]),
        "{records:?}"
    );
    let leaving = BTreeSet::from([3]);
    let b = Brokers {
        all: &four,
        leaving: &leaving,
    };
    let mut moved = image.clone();
    for r in &records {
        moved.apply(r);
    }
    assert!(
        plan_policy_step(&moved, &b, min_isr).is_empty(),
        "the policy does not add 3 back while it leaves"
    );
}

#[test]
fn stored_policies_are_validated() {
    let mut p = policy("p", 0, 0, "x", exactly(2));
    p.min_insync_replicas = Some(3);
    assert!(
        validate_policy(&p)
            .expect_err("refused")
            .contains("exceeds")
    );
    let mut p = policy("p", 0, 0, "x", exactly(2));
    p.applies_to_admin = false;
    p.applies_to_clients = false;
    assert!(validate_policy(&p).is_err());
    let p = policy("p", 0, 0, "x", ReplicaRule::Brokers { ids: vec![1, 1] });
    assert!(validate_policy(&p).expect_err("refused").contains("twice"));
    assert_eq!(
        validate_policy(&policy("p", 0, 0, "x", ReplicaRule::All)),
        Ok(())
    );
}
