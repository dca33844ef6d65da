//! Status conditions shared by every kind: the condition types, the reasons the
//! operator reports, and a pure `set_condition` that keeps `lastTransitionTime`
//! stable while a condition's status does not change. Deciding *which* condition
//! to set is left to each reconciler.

use std::fmt;

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The condition types the operator writes (`status.conditions[].type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionType {
    /// The resource does what it describes: every broker serves, or the topic exists as specified.
    Ready,
    /// The operator is changing something: creating, scaling or rolling brokers.
    Progressing,
    /// Something needs a person: an invalid spec, brokers down, partitions under-replicated.
    Degraded,
    /// A ConsumerAutoscaler's group has lag above `activationLag`.
    Active,
    /// A ConsumerAutoscaler wants more (or fewer) replicas than its limits allow.
    ScalingLimited,
    /// Every topic a MirrorPolicy governs matches it.
    Compliant,
    /// A MirrorPolicy ties on priority with another policy matching some of the same topics.
    Conflict,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::Progressing => "Progressing",
            Self::Degraded => "Degraded",
            Self::Active => "Active",
            Self::ScalingLimited => "ScalingLimited",
            Self::Compliant => "Compliant",
            Self::Conflict => "Conflict",
        }
    }
}

/// Machine-readable reasons (`status.conditions[].reason`). docs/operations.md
/// explains each one; keep the two in step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Ready=True on a MessageCluster: every broker pod is ready and the quorum has a leader.
    BrokersReady,
    /// Ready=False: fewer ready brokers than `spec.brokers`.
    BrokersNotReady,
    /// Ready=False, Degraded=True: the spec passed admission but cannot work (see the message).
    InvalidSpec,
    /// Progressing=True: the StatefulSet and its pods are being created.
    Creating,
    /// Progressing=True: `spec.brokers` changed: pods are being added, or
    /// replicas are moving off the brokers being removed.
    Scaling,
    /// Progressing=True: pods run an outdated template and are being restarted one at a time.
    RollingUpdate,
    /// Progressing=False: the live resources match the spec.
    Reconciled,
    /// Degraded=False: nothing needs attention.
    AsExpected,
    /// Degraded=True: partitions have fewer in-sync replicas than their replication factor.
    UnderReplicated,
    /// Degraded=True: the operator failed to apply resources or reach the brokers (retried with backoff).
    ReconcileFailed,
    /// Ready=True on a Topic: it exists with the partitions, replication and config of the spec.
    TopicReady,
    /// Ready=False on a Topic or MirrorPolicy: `spec.clusterRef` names no MessageCluster in this namespace.
    ClusterNotFound,
    /// Ready=False on a Topic or MirrorPolicy: the MessageCluster exists but
    /// its spec is invalid or its brokers do not answer yet.
    ClusterNotReady,
    /// Ready=False on a Topic or MirrorPolicy: the brokers refused the change
    /// (see the message); looked at again slowly or when the spec changes.
    BrokerRejected,
    /// Progressing=True: the roll waits because restarting any outdated broker
    /// would take a partition under its min-ISR, offline, or break the quorum (`status.rollout.blockedBy`).
    RollBlocked,
    /// Progressing=False, Degraded=True: a pod on the new revision does not start; the roll stopped.
    RollHalted,
    /// Progressing=False, Degraded=True: `spec.brokers` went down but the
    /// replicas cannot all move off the brokers to remove (a topic needs more
    /// brokers, or the brokers cannot be asked); the StatefulSet keeps its size.
    ScaleDownBlocked,
    /// Ready=False on a Topic: its replication factor exceeds the cluster's broker count.
    InvalidReplicationFactor,
    /// Ready=True on a ConsumerAutoscaler: the lag was read and the target's replicas follow it.
    LagRead,
    /// Ready=True on a ConsumerAutoscaler: the cluster is rolling or a broker
    /// is down; it scales up if needed but never down or to zero until that is over.
    ScaleDownFrozen,
    /// Ready=True on a ConsumerAutoscaler: the `tideway.dev/autoscaler-paused` annotation freezes it.
    Paused,
    /// Ready=False on a ConsumerAutoscaler: the brokers cannot tell the group's
    /// lag (a partition without a leader, no broker answers); the replicas are kept.
    LagUnavailable,
    /// Ready=False on a ConsumerAutoscaler: `scaleTargetRef` names nothing that has the scale subresource.
    TargetNotFound,
    /// Ready=False on a ConsumerAutoscaler: a HorizontalPodAutoscaler already scales the same workload.
    HpaConflict,
    /// Active=True: the group's lag is above `activationLag`.
    LagAboveActivation,
    /// Active=False: the group's lag is at or below `activationLag`.
    NoLag,
    /// ScalingLimited=True: more replicas than the topics have partitions would idle.
    PartitionCount,
    /// ScalingLimited=True: capped at `maxReplicas`.
    MaxReplicas,
    /// ScalingLimited=True: raised to `minReplicas`.
    MinReplicas,
    /// ScalingLimited=False.
    WithinLimits,
    /// Ready=True on a MirrorPolicy: the brokers hold it and enforce it.
    PolicyApplied,
    /// Compliant=False: governed topics break the policy (the message names them).
    NonCompliant,
    /// Compliant=True: every governed topic matches the policy.
    Compliant,
    /// Conflict=True: a policy of the same priority matches some of the same
    /// topics; the older one governs them.
    PriorityTie,
    /// Conflict=False.
    NoTie,
    /// Ready=False on a Topic: the spec breaks the MirrorPolicy that governs
    /// the topic (the message names it); not overridden, looked at again slowly.
    PolicyViolation,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BrokersReady => "BrokersReady",
            Self::BrokersNotReady => "BrokersNotReady",
            Self::InvalidSpec => "InvalidSpec",
            Self::Creating => "Creating",
            Self::Scaling => "Scaling",
            Self::RollingUpdate => "RollingUpdate",
            Self::Reconciled => "Reconciled",
            Self::AsExpected => "AsExpected",
            Self::UnderReplicated => "UnderReplicated",
            Self::ReconcileFailed => "ReconcileFailed",
            Self::TopicReady => "TopicReady",
            Self::ClusterNotFound => "ClusterNotFound",
            Self::ClusterNotReady => "ClusterNotReady",
            Self::BrokerRejected => "BrokerRejected",
            Self::RollBlocked => "RollBlocked",
            Self::RollHalted => "RollHalted",
            Self::ScaleDownBlocked => "ScaleDownBlocked",
            Self::InvalidReplicationFactor => "InvalidReplicationFactor",
            Self::LagRead => "LagRead",
            Self::ScaleDownFrozen => "ScaleDownFrozen",
            Self::Paused => "Paused",
            Self::LagUnavailable => "LagUnavailable",
            Self::TargetNotFound => "TargetNotFound",
            Self::HpaConflict => "HpaConflict",
            Self::LagAboveActivation => "LagAboveActivation",
            Self::NoLag => "NoLag",
            Self::PartitionCount => "PartitionCount",
            Self::MaxReplicas => "MaxReplicas",
            Self::MinReplicas => "MinReplicas",
            Self::WithinLimits => "WithinLimits",
            Self::PolicyApplied => "PolicyApplied",
            Self::NonCompliant => "NonCompliant",
            Self::Compliant => "Compliant",
            Self::PriorityTie => "PriorityTie",
            Self::NoTie => "NoTie",
            Self::PolicyViolation => "PolicyViolation",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One condition as a reconciler decides it, before it is stamped with a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionUpdate {
    pub type_: ConditionType,
    pub status: bool,
    pub reason: Reason,
    pub message: String,
}

impl ConditionUpdate {
    pub fn new(
        type_: ConditionType,
        status: bool,
        reason: Reason,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Sets one condition in `conditions`, replacing the one of the same type.
///
/// `lastTransitionTime` moves to `now` only when the status flips (or the
/// condition is new), so watchers see real transitions, not every reconcile.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    update: ConditionUpdate,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if update.status { "True" } else { "False" };
    let type_ = update.type_.as_str();
    let existing = conditions.iter().position(|c| c.type_ == type_);
    let last_transition_time = match existing.map(|i| &conditions[i]) {
        Some(old) if old.status == status => old.last_transition_time.clone(),
        _ => now.clone(),
    };
    let condition = Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: update.reason.as_str().to_owned(),
        message: update.message,
        observed_generation: generation,
        last_transition_time,
    };
    match existing {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

/// The status (`True`/`False`/`Unknown`) of a condition type, if present.
pub fn condition_status(conditions: &[Condition], type_: ConditionType) -> Option<&str> {
    conditions
        .iter()
        .find(|c| c.type_ == type_.as_str())
        .map(|c| c.status.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).expect("valid timestamp"))
    }

    #[test]
    fn new_condition_is_stamped_with_now() {
        let mut conditions = Vec::new();
        let update =
            ConditionUpdate::new(ConditionType::Ready, false, Reason::Creating, "starting");
        set_condition(&mut conditions, update, Some(3), &at(10));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].type_, "Ready");
        assert_eq!(conditions[0].status, "False");
        assert_eq!(conditions[0].reason, "Creating");
        assert_eq!(conditions[0].observed_generation, Some(3));
        assert_eq!(conditions[0].last_transition_time, at(10));
    }

    #[test]
    fn same_status_keeps_transition_time_but_updates_reason_and_message() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            ConditionUpdate::new(ConditionType::Ready, false, Reason::Creating, "a"),
            Some(1),
            &at(10),
        );
        set_condition(
            &mut conditions,
            ConditionUpdate::new(ConditionType::Ready, false, Reason::BrokersNotReady, "b"),
            Some(2),
            &at(20),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, at(10));
        assert_eq!(conditions[0].reason, "BrokersNotReady");
        assert_eq!(conditions[0].message, "b");
        assert_eq!(conditions[0].observed_generation, Some(2));
    }

    #[test]
    fn flipped_status_moves_transition_time_and_other_types_are_kept() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            ConditionUpdate::new(ConditionType::Degraded, false, Reason::AsExpected, ""),
            None,
            &at(5),
        );
        set_condition(
            &mut conditions,
            ConditionUpdate::new(ConditionType::Ready, false, Reason::Creating, ""),
            None,
            &at(10),
        );
        set_condition(
            &mut conditions,
            ConditionUpdate::new(ConditionType::Ready, true, Reason::BrokersReady, "3/3"),
            None,
            &at(30),
        );
        assert_eq!(conditions.len(), 2);
        assert_eq!(
            condition_status(&conditions, ConditionType::Ready),
            Some("True")
        );
        assert_eq!(
            condition_status(&conditions, ConditionType::Degraded),
            Some("False")
        );
        assert_eq!(
            condition_status(&conditions, ConditionType::Progressing),
            None
        );
        let ready = conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("ready");
        assert_eq!(ready.last_transition_time, at(30));
    }
}
