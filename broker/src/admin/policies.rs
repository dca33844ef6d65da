//! Mirror policies over the admin API: conversion between the proto and
//! `metadata::mirror_policy` (validated on the way in, INVALID_ARGUMENT
//! naming the field), storing and deleting them as metadata records, and
//! the per-policy report. The decisions live in `metadata::mirror_policy`.

use std::collections::BTreeSet;

use tideway_admin_api::v1 as pb;
use tonic::Status;

use crate::broker::Broker;
use crate::metadata::MetadataRecord;
use crate::metadata::mirror_policy::{
    self as mp, Brokers, MirrorPolicy, NamePattern, OnCreate, OnExisting, PatternType, ReplicaRule,
};

/// gRPC metadata key that marks a refusal by a mirror policy.
pub const ERROR_KEY: &str = "tideway-error";
pub const POLICY_VIOLATION: &str = "policy-violation";

/// FAILED_PRECONDITION marked `tideway-error: policy-violation`, so callers
/// (the operator's Topic reconciler) can tell a policy's refusal apart.
pub fn violation(message: String) -> Status {
    let mut status = Status::failed_precondition(message);
    status.metadata_mut().insert(
        ERROR_KEY,
        tonic::metadata::MetadataValue::from_static(POLICY_VIOLATION),
    );
    status
}

fn patterns(field: &str, list: Vec<pb::NamePattern>) -> Result<Vec<NamePattern>, Status> {
    list.into_iter()
        .map(|p| {
            let kind = match pb::NamePatternType::try_from(p.r#type) {
                Ok(pb::NamePatternType::Literal) => PatternType::Literal,
                Ok(pb::NamePatternType::Prefix) => PatternType::Prefix,
                Ok(pb::NamePatternType::Regex) => PatternType::Regex,
                _ => {
                    return Err(Status::invalid_argument(format!(
                        "{field}: pattern {:?} has no type (LITERAL, PREFIX or REGEX)",
                        p.value
                    )));
                }
            };
            Ok(NamePattern {
                kind,
                value: p.value,
            })
        })
        .collect()
}

/// The stored form of a policy from the proto, validated.
pub fn from_proto(p: pb::MirrorPolicy) -> Result<MirrorPolicy, Status> {
    let replicas = match pb::ReplicaMode::try_from(p.mode) {
        Ok(pb::ReplicaMode::All) => ReplicaRule::All,
        Ok(pb::ReplicaMode::Exactly) => ReplicaRule::Exactly { count: p.count },
        Ok(pb::ReplicaMode::Brokers) if !p.brokers.is_empty() && !p.racks.is_empty() => {
            return Err(Status::invalid_argument(
                "mode BROKERS takes brokers or racks, not both",
            ));
        }
        Ok(pb::ReplicaMode::Brokers) if !p.racks.is_empty() => {
            ReplicaRule::Racks { racks: p.racks }
        }
        Ok(pb::ReplicaMode::Brokers) => ReplicaRule::Brokers { ids: p.brokers },
        _ => {
            return Err(Status::invalid_argument(
                "mode must be ALL, EXACTLY or BROKERS",
            ));
        }
    };
    let on_create = match pb::OnCreate::try_from(p.on_create) {
        Ok(pb::OnCreate::Adjust) => OnCreate::Adjust,
        Ok(_) => OnCreate::Reject,
        Err(_) => return Err(Status::invalid_argument("on_create is not an OnCreate")),
    };
    let on_existing = match pb::OnExisting::try_from(p.on_existing) {
        Ok(pb::OnExisting::Reconcile) => OnExisting::Reconcile,
        Ok(_) => OnExisting::Audit,
        Err(_) => return Err(Status::invalid_argument("on_existing is not an OnExisting")),
    };
    let positive = |field: &str, v: i64| -> Result<Option<i64>, Status> {
        match v {
            0 => Ok(None),
            v if v > 0 => Ok(Some(v)),
            v => Err(Status::invalid_argument(format!(
                "{field} must not be negative, got {v}"
            ))),
        }
    };
    let policy = MirrorPolicy {
        name: p.name,
        priority: p.priority,
        created_ms: p.created_ms,
        topics: patterns("topics", p.topics)?,
        exclude: patterns("exclude", p.exclude)?,
        applies_to_admin: p.applies_to_topic_resources,
        applies_to_clients: p.applies_to_client_created,
        replicas,
        min_insync_replicas: positive("min_insync_replicas", p.min_insync_replicas.into())?
            .map(|v| v as i32),
        max_per_rack: positive("max_per_rack", p.max_per_rack.into())?.map(|v| v as i32),
        on_create,
        on_existing,
        throttle_bytes_per_sec: positive("throttle_bytes_per_second", p.throttle_bytes_per_second)?
            .map(|v| v as u64),
    };
    mp::validate_policy(&policy)
        .map_err(|e| Status::invalid_argument(format!("mirror policy {:?}: {e}", policy.name)))?;
    Ok(policy)
}

fn pattern_to_proto(p: &NamePattern) -> pb::NamePattern {
    let kind = match p.kind {
        PatternType::Literal => pb::NamePatternType::Literal,
        PatternType::Prefix => pb::NamePatternType::Prefix,
        PatternType::Regex => pb::NamePatternType::Regex,
    };
    pb::NamePattern {
        r#type: kind as i32,
        value: p.value.clone(),
    }
}

pub fn to_proto(p: &MirrorPolicy) -> pb::MirrorPolicy {
    let (mode, count, brokers, racks) = match &p.replicas {
        ReplicaRule::All => (pb::ReplicaMode::All, 0, vec![], vec![]),
        ReplicaRule::Exactly { count } => (pb::ReplicaMode::Exactly, *count, vec![], vec![]),
        ReplicaRule::Brokers { ids } => (pb::ReplicaMode::Brokers, 0, ids.clone(), vec![]),
        ReplicaRule::Racks { racks } => (pb::ReplicaMode::Brokers, 0, vec![], racks.clone()),
    };
    pb::MirrorPolicy {
        name: p.name.clone(),
        priority: p.priority,
        created_ms: p.created_ms,
        topics: p.topics.iter().map(pattern_to_proto).collect(),
        exclude: p.exclude.iter().map(pattern_to_proto).collect(),
        applies_to_topic_resources: p.applies_to_admin,
        applies_to_client_created: p.applies_to_clients,
        mode: mode as i32,
        count,
        brokers,
        racks,
        min_insync_replicas: p.min_insync_replicas.unwrap_or(0),
        max_per_rack: p.max_per_rack.unwrap_or(0),
        on_create: match p.on_create {
            OnCreate::Reject => pb::OnCreate::Reject,
            OnCreate::Adjust => pb::OnCreate::Adjust,
        } as i32,
        on_existing: match p.on_existing {
            OnExisting::Reconcile => pb::OnExisting::Reconcile,
            OnExisting::Audit => pb::OnExisting::Audit,
        } as i32,
        throttle_bytes_per_second: p.throttle_bytes_per_sec.map_or(0, |v| v as i64),
    }
}

/// Stores (or replaces) a policy; an identical one commits nothing.
pub async fn put(broker: &Broker, request: pb::PutMirrorPolicyRequest) -> Result<bool, Status> {
    let policy = from_proto(
        request
            .policy
            .ok_or_else(|| Status::invalid_argument("policy is missing"))?,
    )?;
    if broker.image().mirror_policies.get(&policy.name) == Some(&policy) {
        return Ok(false);
    }
    tracing::info!(policy = %policy.name, rule = %policy.describe(), "mirror policy stored");
    broker
        .store()
        .commit(vec![MetadataRecord::MirrorPolicySet { policy }])
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    Ok(true)
}

/// Forgets a policy; false when there was none of that name.
pub async fn delete(broker: &Broker, name: String) -> Result<bool, Status> {
    if !broker.image().mirror_policies.contains_key(&name) {
        return Ok(false);
    }
    tracing::info!(policy = %name, "mirror policy deleted");
    broker
        .store()
        .commit(vec![MetadataRecord::MirrorPolicyDeleted { name }])
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    Ok(true)
}

/// The report of the named policies (every one when `names` is empty).
pub fn describe(broker: &Broker, names: &[String]) -> Result<Vec<pb::MirrorPolicyStatus>, Status> {
    let image = broker.image();
    if let Some(missing) = names
        .iter()
        .find(|n| !image.mirror_policies.contains_key(*n))
    {
        return Err(Status::not_found(format!(
            "mirror policy {missing:?} does not exist"
        )));
    }
    let all = broker.placement_brokers(&image);
    let brokers = Brokers {
        all: &all,
        leaving: &image.leaving,
    };
    let defaults = broker.defaults(&image);
    let mut reports = mp::describe_policies(&image, &brokers, |t| {
        broker
            .configs_from(&defaults, &t.configs)
            .min_insync_replicas()
    });
    let wanted: BTreeSet<&String> = names.iter().collect();
    Ok(image
        .mirror_policies
        .values()
        .filter(|p| wanted.is_empty() || wanted.contains(&p.name))
        .map(|p| {
            let r = reports.remove(&p.name).unwrap_or_default();
            pb::MirrorPolicyStatus {
                policy: Some(to_proto(p)),
                governed_topics: r.governed,
                non_compliant: r
                    .non_compliant
                    .into_iter()
                    .map(|(topic, reason)| pb::NonCompliantTopic { topic, reason })
                    .collect(),
                reassignments: r
                    .reassignments
                    .into_iter()
                    .map(|(topic, partitions, moving)| pb::TopicReassignment {
                        topic,
                        partitions,
                        partitions_moving: moving,
                        percent: 100 * (partitions - moving) / partitions.max(1),
                    })
                    .collect(),
                ties: r.ties.into_iter().collect(),
                required_replicas: r.required as i32,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto() -> pb::MirrorPolicy {
        pb::MirrorPolicy {
            name: "default/orders".into(),
            priority: 5,
            created_ms: 1,
            topics: vec![pb::NamePattern {
                r#type: pb::NamePatternType::Prefix as i32,
                value: "orders.".into(),
            }],
            applies_to_client_created: true,
            applies_to_topic_resources: true,
            mode: pb::ReplicaMode::Exactly as i32,
            count: 3,
            min_insync_replicas: 2,
            on_create: pb::OnCreate::Adjust as i32,
            on_existing: pb::OnExisting::Reconcile as i32,
            ..Default::default()
        }
    }

    #[test]
    fn a_policy_survives_the_round_trip() {
        let stored = from_proto(proto()).expect("valid");
        assert_eq!(stored.replicas, ReplicaRule::Exactly { count: 3 });
        assert_eq!(to_proto(&stored), proto());
    }

    #[test]
    fn bad_policies_are_refused_naming_the_field() {
        let mut p = proto();
        p.mode = 0;
        assert!(
            from_proto(p)
                .expect_err("refused")
                .message()
                .contains("mode")
        );
        let mut p = proto();
        p.min_insync_replicas = 4;
        assert!(
            from_proto(p)
                .expect_err("refused")
                .message()
                .contains("min_insync_replicas 4")
        );
        let mut p = proto();
        p.topics[0].r#type = pb::NamePatternType::Regex as i32;
        p.topics[0].value = "orders.(".into();
        let err = from_proto(p).expect_err("refused");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("does not compile"), "{err}");
        let mut p = proto();
        p.mode = pb::ReplicaMode::Brokers as i32;
        p.brokers = vec![1];
        p.racks = vec!["a".into()];
        assert!(
            from_proto(p)
                .expect_err("refused")
                .message()
                .contains("not both")
        );
    }

    #[test]
    fn a_violation_is_marked() {
        let s = violation("no".into());
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            s.metadata().get(ERROR_KEY).and_then(|v| v.to_str().ok()),
            Some(POLICY_VIOLATION)
        );
    }
}
