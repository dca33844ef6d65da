//! Pure decisions of the MirrorPolicy reconciler: the policy as the brokers
//! take it (`build_policy`), the status from what they report about it
//! (`build_status`), a one-line summary for Events (`describe_policy`) and
//! when to look again (`plan_requeue`).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tideway_admin_api::v1 as wire;

use crate::crd::conditions::{ConditionType, ConditionUpdate, Reason, set_condition};
use crate::crd::mirror_policy::{
    AppliesTo, MAX_GOVERNED_TOPICS_LISTED, MAX_NON_COMPLIANT_LISTED, MirrorPolicy,
    MirrorPolicyStatus, NamePattern, NonCompliantTopic, OnCreate, OnExisting, PatternType,
    ReplicaMode, TopicReassignment,
};

/// How often a policy is looked at while replicas move for it.
pub const PROGRESS_POLL: Duration = Duration::from_secs(5);
/// Non-compliant topics named in the Compliant condition's message.
const TOPICS_IN_MESSAGE: usize = 3;

fn pattern(p: &NamePattern) -> wire::NamePattern {
    let type_ = match p.type_ {
        PatternType::Literal => wire::NamePatternType::Literal,
        PatternType::Prefix => wire::NamePatternType::Prefix,
        PatternType::Regex => wire::NamePatternType::Regex,
    };
    wire::NamePattern {
        r#type: type_ as i32,
        value: p.value.clone(),
    }
}

/// The policy as PutMirrorPolicy takes it: named `<namespace>/<name>`, aged
/// by `metadata.creationTimestamp` (the older wins a priority tie), every
/// unset optional field 0 ("no requirement").
pub fn build_policy(policy: &MirrorPolicy) -> wire::MirrorPolicy {
    let spec = &policy.spec;
    let mode = match spec.replicas.mode {
        ReplicaMode::All => wire::ReplicaMode::All,
        ReplicaMode::Exactly => wire::ReplicaMode::Exactly,
        ReplicaMode::Brokers => wire::ReplicaMode::Brokers,
    };
    let on_create = match spec.on_create {
        OnCreate::Reject => wire::OnCreate::Reject,
        OnCreate::Adjust => wire::OnCreate::Adjust,
    };
    let on_existing = match spec.on_existing {
        OnExisting::Reconcile => wire::OnExisting::Reconcile,
        OnExisting::Audit => wire::OnExisting::Audit,
    };
    wire::MirrorPolicy {
        name: policy.broker_name(),
        priority: spec.selector.priority,
        created_ms: policy
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_millisecond()),
        topics: spec.selector.topics.iter().map(pattern).collect(),
        exclude: spec.selector.exclude.iter().map(pattern).collect(),
        applies_to_topic_resources: spec.applies_to.contains(&AppliesTo::TopicResources),
        applies_to_client_created: spec.applies_to.contains(&AppliesTo::ClientCreated),
        mode: mode as i32,
        count: spec.replicas.count.unwrap_or(0),
        brokers: spec.replicas.brokers.clone().unwrap_or_default(),
        racks: spec.replicas.racks.clone().unwrap_or_default(),
        min_insync_replicas: spec.min_in_sync_replicas.unwrap_or(0),
        max_per_rack: spec
            .rack_spread
            .as_ref()
            .and_then(|r| r.max_per_rack)
            .unwrap_or(0),
        on_create: on_create as i32,
        on_existing: on_existing as i32,
        throttle_bytes_per_second: spec.throttle_bytes_per_second.unwrap_or(0),
    }
}

fn describe_pattern(p: &NamePattern) -> String {
    format!("{:?} {}", p.type_, p.value)
}

/// One line saying what the policy asks, for Events and logs, e.g.
/// `topics Prefix orders.: Exactly 3 replicas, min-ISR 2; onCreate Reject, onExisting Audit`.
pub fn describe_policy(policy: &MirrorPolicy) -> String {
    let spec = &policy.spec;
    let topics: Vec<String> = spec.selector.topics.iter().map(describe_pattern).collect();
    let mut out = format!("topics {}", topics.join(", "));
    if !spec.selector.exclude.is_empty() {
        let exclude: Vec<String> = spec.selector.exclude.iter().map(describe_pattern).collect();
        out.push_str(&format!(" except {}", exclude.join(", ")));
    }
    out.push_str(": ");
    let r = &spec.replicas;
    match r.mode {
        ReplicaMode::All => out.push_str("a replica on every broker"),
        ReplicaMode::Exactly => {
            out.push_str(&format!("Exactly {} replicas", r.count.unwrap_or(0)));
        }
        ReplicaMode::Brokers => match (&r.brokers, &r.racks) {
            (Some(brokers), _) => out.push_str(&format!("a replica on brokers {brokers:?}")),
            (None, Some(racks)) => {
                out.push_str(&format!("a replica on each broker of racks {racks:?}"))
            }
            (None, None) => out.push_str("Brokers"),
        },
    }
    if let Some(min) = spec.min_in_sync_replicas {
        out.push_str(&format!(", min-ISR {min}"));
    }
    if let Some(max) = spec.rack_spread.as_ref().and_then(|r| r.max_per_rack) {
        out.push_str(&format!(", at most {max} per rack"));
    }
    out.push_str(&format!(
        "; priority {}; onCreate {:?}, onExisting {:?}",
        spec.selector.priority, spec.on_create, spec.on_existing
    ));
    out
}

/// The status from the brokers' description of the policy: the counts and
/// (bounded) lists, and the Ready, Compliant and Conflict conditions.
/// `previous` keeps the conditions' transition times.
pub fn build_status(
    previous: Option<&MirrorPolicyStatus>,
    policy: &MirrorPolicy,
    cluster: &str,
    described: &wire::MirrorPolicyStatus,
    now: &Time,
) -> MirrorPolicyStatus {
    let generation = policy.metadata.generation;
    let mut status = previous.cloned().unwrap_or_default();
    let mut governed = described.governed_topics.clone();
    governed.sort();
    let mut non_compliant: Vec<NonCompliantTopic> = described
        .non_compliant
        .iter()
        .map(|t| NonCompliantTopic {
            topic: t.topic.clone(),
            reason: t.reason.clone(),
        })
        .collect();
    non_compliant.sort_by(|a, b| a.topic.cmp(&b.topic));
    let mut reassignments: Vec<TopicReassignment> = described
        .reassignments
        .iter()
        .map(|r| TopicReassignment {
            topic: r.topic.clone(),
            partitions: r.partitions,
            partitions_moving: r.partitions_moving,
            percent: r.percent,
        })
        .collect();
    reassignments.sort_by(|a, b| a.topic.cmp(&b.topic));
    reassignments.truncate(MAX_NON_COMPLIANT_LISTED);
    let mut ties = described.ties.clone();
    ties.sort();

    let required = described.required_replicas;
    let ready = ConditionUpdate::new(
        ConditionType::Ready,
        true,
        Reason::PolicyApplied,
        format!(
            "in force on MessageCluster {cluster}: governs {} topic(s); {}",
            governed.len(),
            if required > 0 {
                format!("asks for {required} replica(s) per partition")
            } else {
                "cannot be met with the brokers there are now (0 replicas per partition possible)"
                    .to_owned()
            }
        ),
    );
    let compliant = compliant_condition(policy, governed.len(), &non_compliant, &reassignments);
    let conflict = if ties.is_empty() {
        ConditionUpdate::new(
            ConditionType::Conflict,
            false,
            Reason::NoTie,
            "no other policy of the same priority matches these topics",
        )
    } else {
        ConditionUpdate::new(
            ConditionType::Conflict,
            true,
            Reason::PriorityTie,
            format!(
                "priority {} ties with {}, which match some of the same topics: the older policy (by creation time) governs each of those topics",
                policy.spec.selector.priority,
                ties.join(", ")
            ),
        )
    };
    for update in [ready, compliant, conflict] {
        set_condition(&mut status.conditions, update, generation, now);
    }
    status.observed_generation = generation;
    status.required_replicas = Some(required);
    status.governed_topic_count = governed.len() as i32;
    governed.truncate(MAX_GOVERNED_TOPICS_LISTED);
    status.governed_topics = governed;
    status.non_compliant_topic_count = non_compliant.len() as i32;
    non_compliant.truncate(MAX_NON_COMPLIANT_LISTED);
    status.non_compliant_topics = non_compliant;
    status.reassignments = reassignments;
    status.ties = ties;
    status
}

fn compliant_condition(
    policy: &MirrorPolicy,
    governed: usize,
    non_compliant: &[NonCompliantTopic],
    reassignments: &[TopicReassignment],
) -> ConditionUpdate {
    if non_compliant.is_empty() {
        let message = if governed == 0 {
            "no topic is governed by the policy".to_owned()
        } else {
            format!("all {governed} governed topic(s) comply")
        };
        return ConditionUpdate::new(ConditionType::Compliant, true, Reason::Compliant, message);
    }
    let mut named: Vec<String> = non_compliant
        .iter()
        .take(TOPICS_IN_MESSAGE)
        .map(|t| format!("{} ({})", t.topic, t.reason))
        .collect();
    if non_compliant.len() > TOPICS_IN_MESSAGE {
        named.push(format!(
            "and {} more",
            non_compliant.len() - TOPICS_IN_MESSAGE
        ));
    }
    let what_happens = match policy.spec.on_existing {
        OnExisting::Audit => "onExisting Audit: only reported".to_owned(),
        OnExisting::Reconcile if reassignments.is_empty() => {
            "onExisting Reconcile: their replicas move one topic at a time".to_owned()
        }
        OnExisting::Reconcile => format!(
            "onExisting Reconcile: replicas moving for {}",
            reassignments
                .iter()
                .map(|r| format!("{} ({}%)", r.topic, r.percent))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    ConditionUpdate::new(
        ConditionType::Compliant,
        false,
        Reason::NonCompliant,
        format!(
            "{} of {governed} governed topic(s) break the policy: {}; {what_happens}",
            non_compliant.len(),
            named.join(", ")
        ),
    )
}

/// When to look at the policy again: soon while replicas move for it, or
/// while topics break it and `onExisting: Reconcile` will move them; else
/// after the resync period.
pub fn plan_requeue(
    policy: &MirrorPolicy,
    described: &wire::MirrorPolicyStatus,
    resync_period: Duration,
) -> Duration {
    let moving = !described.reassignments.is_empty();
    let to_move =
        !described.non_compliant.is_empty() && policy.spec.on_existing == OnExisting::Reconcile;
    if moving || to_move {
        PROGRESS_POLL.min(resync_period)
    } else {
        resync_period
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::conditions::condition_status;
    use crate::crd::mirror_policy::MirrorPolicySpec;

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).expect("valid timestamp"))
    }

    /// The docs' example: `orders.` topics keep exactly 3 replicas, min-ISR 2, creations refused.
    fn orders() -> MirrorPolicy {
        let spec: MirrorPolicySpec = serde_json::from_value(serde_json::json!({
            "clusterRef": {"name": "demo"},
            "match": {"topics": [{"type": "Prefix", "value": "orders."}]},
            "replicas": {"mode": "Exactly", "count": 3},
            "minInSyncReplicas": 2
        }))
        .expect("spec");
        let mut p = MirrorPolicy::new("orders", spec);
        p.metadata.namespace = Some("shop".into());
        p.metadata.generation = Some(4);
        p.metadata.creation_timestamp = Some(at(1_700_000_000));
        p
    }

    fn described(governed: &[&str]) -> wire::MirrorPolicyStatus {
        wire::MirrorPolicyStatus {
            policy: None,
            governed_topics: governed.iter().map(|s| (*s).to_owned()).collect(),
            non_compliant: Vec::new(),
            reassignments: Vec::new(),
            ties: Vec::new(),
            required_replicas: 3,
        }
    }

    fn non_compliant(topic: &str, reason: &str) -> wire::NonCompliantTopic {
        wire::NonCompliantTopic {
            topic: topic.into(),
            reason: reason.into(),
        }
    }

    fn condition(
        status: &MirrorPolicyStatus,
        type_: ConditionType,
    ) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_.as_str())
            .expect("condition")
    }

    #[test]
    fn defaults_and_every_field_reach_the_wire() {
        let p = orders();
        let w = build_policy(&p);
        assert_eq!(w.name, "shop/orders");
        assert_eq!(w.priority, 0);
        assert_eq!(w.created_ms, 1_700_000_000_000);
        assert_eq!(
            w.topics,
            vec![wire::NamePattern {
                r#type: wire::NamePatternType::Prefix as i32,
                value: "orders.".into()
            }]
        );
        assert!(w.exclude.is_empty());
        assert!(w.applies_to_topic_resources && w.applies_to_client_created);
        assert_eq!(w.mode, wire::ReplicaMode::Exactly as i32);
        assert_eq!(w.count, 3);
        assert!(w.brokers.is_empty() && w.racks.is_empty());
        assert_eq!(w.min_insync_replicas, 2);
        assert_eq!(w.max_per_rack, 0);
        assert_eq!(w.on_create, wire::OnCreate::Reject as i32);
        assert_eq!(w.on_existing, wire::OnExisting::Audit as i32);
        assert_eq!(w.throttle_bytes_per_second, 0);

        let spec: MirrorPolicySpec = serde_json::from_value(serde_json::json!({
            "clusterRef": {"name": "demo"},
            "match": {
                "topics": [{"type": "Regex", "value": "pay-[0-9]+"}, {"type": "Literal", "value": "ledger"}],
                "exclude": [{"type": "Prefix", "value": "pay-9"}],
                "priority": 7
            },
            "appliesTo": ["ClientCreated"],
            "replicas": {"mode": "Brokers", "racks": ["eu-1a", "eu-1b"]},
            "rackSpread": {"maxPerRack": 1},
            "onCreate": "Adjust",
            "onExisting": "Reconcile",
            "throttleBytesPerSecond": 1048576
        }))
        .expect("spec");
        let mut p = MirrorPolicy::new("payments", spec);
        p.metadata.namespace = Some("shop".into());
        let w = build_policy(&p);
        assert_eq!(w.name, "shop/payments");
        assert_eq!(w.created_ms, 0, "no creation time yet");
        assert_eq!(w.priority, 7);
        assert_eq!(
            w.topics.iter().map(|t| t.r#type).collect::<Vec<_>>(),
            vec![
                wire::NamePatternType::Regex as i32,
                wire::NamePatternType::Literal as i32
            ]
        );
        assert_eq!(w.exclude[0].value, "pay-9");
        assert!(!w.applies_to_topic_resources && w.applies_to_client_created);
        assert_eq!(w.mode, wire::ReplicaMode::Brokers as i32);
        assert_eq!(w.count, 0);
        assert_eq!(w.racks, vec!["eu-1a".to_owned(), "eu-1b".to_owned()]);
        assert_eq!(w.min_insync_replicas, 0);
        assert_eq!(w.max_per_rack, 1);
        assert_eq!(w.on_create, wire::OnCreate::Adjust as i32);
        assert_eq!(w.on_existing, wire::OnExisting::Reconcile as i32);
        assert_eq!(w.throttle_bytes_per_second, 1_048_576);

        let spec: MirrorPolicySpec = serde_json::from_value(serde_json::json!({
            "clusterRef": {"name": "demo"},
            "match": {"topics": [{"type": "Literal", "value": "audit"}]},
            "replicas": {"mode": "Brokers", "brokers": [0, 2]}
        }))
        .expect("spec");
        let w = build_policy(&MirrorPolicy::new("audit", spec));
        assert_eq!(w.brokers, vec![0, 2]);
        assert!(w.racks.is_empty());
        let spec: MirrorPolicySpec = serde_json::from_value(serde_json::json!({
            "clusterRef": {"name": "demo"},
            "match": {"topics": [{"type": "Literal", "value": "audit"}]},
            "replicas": {"mode": "All"}
        }))
        .expect("spec");
        assert_eq!(
            build_policy(&MirrorPolicy::new("audit", spec)).mode,
            wire::ReplicaMode::All as i32
        );
    }

    #[test]
    fn the_summary_says_what_the_policy_asks() {
        assert_eq!(
            describe_policy(&orders()),
            "topics Prefix orders.: Exactly 3 replicas, min-ISR 2; priority 0; onCreate Reject, onExisting Audit"
        );
    }

    #[test]
    fn a_compliant_policy_without_ties() {
        let status = build_status(
            None,
            &orders(),
            "demo",
            &described(&["orders.us", "orders.eu"]),
            &at(10),
        );
        assert_eq!(status.observed_generation, Some(4));
        assert_eq!(status.required_replicas, Some(3));
        assert_eq!(status.governed_topic_count, 2);
        assert_eq!(status.governed_topics, vec!["orders.eu", "orders.us"]);
        assert_eq!(status.non_compliant_topic_count, 0);
        let ready = condition(&status, ConditionType::Ready);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "PolicyApplied")
        );
        assert_eq!(
            ready.message,
            "in force on MessageCluster demo: governs 2 topic(s); asks for 3 replica(s) per partition"
        );
        let compliant = condition(&status, ConditionType::Compliant);
        assert_eq!(
            (compliant.status.as_str(), compliant.reason.as_str()),
            ("True", "Compliant")
        );
        assert_eq!(compliant.message, "all 2 governed topic(s) comply");
        let conflict = condition(&status, ConditionType::Conflict);
        assert_eq!(
            (conflict.status.as_str(), conflict.reason.as_str()),
            ("False", "NoTie")
        );
    }

    #[test]
    fn non_compliant_topics_are_counted_named_and_bounded() {
        let mut d = described(&[]);
        d.governed_topics = (0..150).map(|i| format!("orders.{i:03}")).collect();
        d.non_compliant = (0..60)
            .rev()
            .map(|i| non_compliant(&format!("orders.{i:03}"), "replication factor 1, needs 3"))
            .collect();
        let status = build_status(None, &orders(), "demo", &d, &at(10));
        assert_eq!(status.governed_topic_count, 150);
        assert_eq!(status.governed_topics.len(), 100);
        assert_eq!(status.non_compliant_topic_count, 60);
        assert_eq!(status.non_compliant_topics.len(), 50);
        assert_eq!(status.non_compliant_topics[0].topic, "orders.000");
        let compliant = condition(&status, ConditionType::Compliant);
        assert_eq!(
            (compliant.status.as_str(), compliant.reason.as_str()),
            ("False", "NonCompliant")
        );
        assert_eq!(
            compliant.message,
            "60 of 150 governed topic(s) break the policy: orders.000 (replication factor 1, needs 3), \
             orders.001 (replication factor 1, needs 3), orders.002 (replication factor 1, needs 3), \
             and 57 more; onExisting Audit: only reported"
        );
        assert_eq!(
            plan_requeue(&orders(), &d, Duration::from_secs(60)),
            Duration::from_secs(60),
            "Audit: nothing moves, nothing to watch closely"
        );
    }

    #[test]
    fn reconcile_reports_moving_replicas_and_polls_them() {
        let mut p = orders();
        p.spec.on_existing = OnExisting::Reconcile;
        let mut d = described(&["orders.eu", "orders.us"]);
        d.non_compliant = vec![non_compliant("orders.eu", "2 replicas, needs 3")];
        assert_eq!(plan_requeue(&p, &d, Duration::from_secs(60)), PROGRESS_POLL);
        let status = build_status(None, &p, "demo", &d, &at(10));
        assert!(
            condition(&status, ConditionType::Compliant)
                .message
                .ends_with("onExisting Reconcile: their replicas move one topic at a time")
        );
        d.reassignments = vec![wire::TopicReassignment {
            topic: "orders.eu".into(),
            partitions: 6,
            partitions_moving: 3,
            percent: 50,
        }];
        let status = build_status(Some(&status), &p, "demo", &d, &at(20));
        assert_eq!(
            status.reassignments,
            vec![TopicReassignment {
                topic: "orders.eu".into(),
                partitions: 6,
                partitions_moving: 3,
                percent: 50
            }]
        );
        assert!(
            condition(&status, ConditionType::Compliant)
                .message
                .ends_with("replicas moving for orders.eu (50%)")
        );
        // Moving replicas are watched even under Audit (e.g. the policy just changed mode).
        d.non_compliant.clear();
        assert_eq!(
            plan_requeue(&orders(), &d, Duration::from_secs(60)),
            PROGRESS_POLL
        );
        // Compliant again: the condition flips and moves its transition time.
        d.reassignments.clear();
        let again = build_status(Some(&status), &p, "demo", &d, &at(30));
        let compliant = condition(&again, ConditionType::Compliant);
        assert_eq!(compliant.status, "True");
        assert_eq!(compliant.last_transition_time, at(30));
        assert_eq!(
            condition(&again, ConditionType::Ready).last_transition_time,
            at(10),
            "Ready stayed True"
        );
        assert!(again.reassignments.is_empty());
        assert_eq!(
            plan_requeue(&p, &d, Duration::from_secs(60)),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn a_priority_tie_names_the_other_policies_and_the_rule() {
        let mut d = described(&["orders.eu"]);
        d.ties = vec!["shop/orders-eu".into(), "ops/everything".into()];
        let status = build_status(None, &orders(), "demo", &d, &at(10));
        assert_eq!(status.ties, vec!["ops/everything", "shop/orders-eu"]);
        assert_eq!(
            condition_status(&status.conditions, ConditionType::Conflict),
            Some("True")
        );
        let conflict = condition(&status, ConditionType::Conflict);
        assert_eq!(conflict.reason, "PriorityTie");
        assert!(
            conflict
                .message
                .contains("priority 0 ties with ops/everything, shop/orders-eu")
                && conflict
                    .message
                    .contains("the older policy (by creation time) governs"),
            "{}",
            conflict.message
        );
    }

    #[test]
    fn an_unmeetable_policy_says_so() {
        let mut d = described(&[]);
        d.required_replicas = 0;
        let status = build_status(None, &orders(), "demo", &d, &at(10));
        assert_eq!(status.required_replicas, Some(0));
        let ready = condition(&status, ConditionType::Ready);
        assert!(ready.message.contains("cannot be met"), "{}", ready.message);
        assert_eq!(
            condition(&status, ConditionType::Compliant).message,
            "no topic is governed by the policy"
        );
    }
}
