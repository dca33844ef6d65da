//! The `ConsumerAutoscaler` custom resource (tideway.dev/v1alpha1): scales a
//! consumer workload (anything with the scale subresource) on the lag of its
//! consumer group in a MessageCluster of the same namespace. The decision is
//! `autoscaler::decide`; admission-time rules (CEL) live here.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::conditions::{Condition, Time};
use super::topic::ClusterRef;

/// Annotation that freezes an autoscaler: it keeps the workload's replicas and only reports.
pub const PAUSED_ANNOTATION: &str = "tideway.dev/autoscaler-paused";

/// Scales a consumer workload on its consumer group's lag.
// Each `printcolumn(...)` repeats `type_ = ...`; clippy reads that as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tideway.dev",
    version = "v1alpha1",
    kind = "ConsumerAutoscaler",
    plural = "consumerautoscalers",
    shortname = "cas",
    category = "tideway",
    namespaced,
    status = "ConsumerAutoscalerStatus",
    derive = "PartialEq",
    doc = "Scales a consumer workload (Deployment, StatefulSet, or any resource with the scale subresource) on the lag of its consumer group, managed by tideway-operator.",
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".spec.scaleTargetRef.name"
    ),
    printcolumn(name = "Group", type_ = "string", json_path = ".spec.consumerGroup"),
    printcolumn(name = "Lag", type_ = "integer", json_path = ".status.totalLag"),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.currentReplicas"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".status.desiredReplicas"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Active",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Active\")].status",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas")
)]
pub struct ConsumerAutoscalerSpec {
    /// The MessageCluster (same namespace) that holds the group.
    pub cluster_ref: ClusterRef,
    /// The Kafka consumer group (`group.id`) the workload's consumers use.
    #[schemars(length(min = 1, max = 255))]
    pub consumer_group: String,
    /// Topics whose lag counts (every partition of each). When empty: the
    /// partitions the group has committed offsets for and the topics its
    /// members subscribe to (a group with neither, e.g. one scaled to zero
    /// that never committed, then has no lag: list its topics here so that a
    /// backlog scales it up from zero).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub topics: Vec<String>,
    /// The workload to scale: any resource of this namespace with the scale
    /// subresource (a Deployment, a StatefulSet, or a custom resource).
    pub scale_target_ref: ScaleTargetRef,
    /// Fewest replicas; 0 lets an idle workload scale to zero.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10000))]
    pub min_replicas: i32,
    /// Most replicas. The partition count of the topics caps it too: a
    /// consumer beyond one per partition would idle.
    #[schemars(range(min = 1, max = 10000))]
    pub max_replicas: i32,
    /// Records ONE replica may have behind. The desired replica count is the
    /// group's TOTAL lag (summed over every partition) divided by this, rounded
    /// up: lagPerReplica 10000 with a total lag of 45000 asks for 5 replicas.
    #[schemars(range(min = 1))]
    pub lag_per_replica: i64,
    /// At or below this total lag a workload at zero replicas stays at zero,
    /// and the cooldown to zero counts from the last time the lag was above it.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub activation_lag: i64,
    /// When set, also scale so that the backlog drains within this many
    /// seconds at the consume rate measured per replica (the growth of the
    /// group's committed offsets divided by the replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub drain_within_seconds: Option<i64>,
    /// How fast to scale in each direction, and the cooldown before zero.
    #[serde(default)]
    pub behavior: Behavior,
    /// How a partition the group never committed counts: `Latest` (Kafka's
    /// default `auto.offset.reset`: the consumer would start at the end, so no
    /// lag) or `Earliest` (everything retained is lag). Match the consumers'
    /// `auto.offset.reset`.
    #[serde(default)]
    pub offset_reset_policy: OffsetResetPolicy,
}

/// The workload to scale.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTargetRef {
    /// e.g. `apps/v1`.
    #[serde(default = "default_api_version")]
    #[schemars(length(min = 1))]
    pub api_version: String,
    /// e.g. `Deployment`.
    #[serde(default = "default_kind")]
    #[schemars(length(min = 1))]
    pub kind: String,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

fn default_api_version() -> String {
    "apps/v1".to_owned()
}

fn default_kind() -> String {
    "Deployment".to_owned()
}

/// Scaling speed, like the HorizontalPodAutoscaler's `behavior`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Behavior {
    /// Default: up at once (window 0).
    #[serde(default = "ScalingRules::up")]
    pub scale_up: ScalingRules,
    /// Default: down only to the highest recommendation of the last 300 s.
    #[serde(default = "ScalingRules::down")]
    pub scale_down: ScalingRules,
    /// Seconds without lag above `activationLag` before the workload goes
    /// from one replica to zero (only with `minReplicas: 0`).
    #[serde(default = "default_cooldown")]
    #[schemars(range(min = 0, max = 86400))]
    pub cooldown_seconds: i64,
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            scale_up: ScalingRules::up(),
            scale_down: ScalingRules::down(),
            cooldown_seconds: default_cooldown(),
        }
    }
}

fn default_cooldown() -> i64 {
    300
}

/// One direction of scaling.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingRules {
    /// Scale up only to the lowest (down only to the highest) replica count
    /// recommended within this many seconds: a short spike or dip is ignored.
    /// Default: 0 for scaleUp, 300 for scaleDown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub stabilization_window_seconds: Option<i64>,
    /// At most this many replicas added (removed) within `periodSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepRule>,
}

/// Default stabilization window of scale-up, in seconds: immediate.
pub const DEFAULT_SCALE_UP_WINDOW: i64 = 0;
/// Default stabilization window of scale-down, in seconds (as the HPA's).
pub const DEFAULT_SCALE_DOWN_WINDOW: i64 = 300;

impl ScalingRules {
    fn up() -> Self {
        Self {
            stabilization_window_seconds: Some(DEFAULT_SCALE_UP_WINDOW),
            step: None,
        }
    }

    fn down() -> Self {
        Self {
            stabilization_window_seconds: Some(DEFAULT_SCALE_DOWN_WINDOW),
            step: None,
        }
    }
}

/// A step limit.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepRule {
    #[schemars(range(min = 1, max = 10000))]
    pub replicas: i32,
    #[serde(default = "default_step_period")]
    #[schemars(range(min = 1, max = 3600))]
    pub period_seconds: i64,
}

fn default_step_period() -> i64 {
    60
}

/// Where a consumer starts on a partition its group never committed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum OffsetResetPolicy {
    /// At the end: no lag.
    #[default]
    Latest,
    /// At the log start: every retained record is lag.
    Earliest,
}

/// Observed state, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerAutoscalerStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready (the autoscaler can read the lag and scale the target), Active
    /// (lag above activationLag) and ScalingLimited (capped by the partitions,
    /// maxReplicas or minReplicas).
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The group's total lag at the last evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_lag: Option<i64>,
    /// Lag per topic at the last evaluation.
    #[serde(default)]
    pub topics: Vec<TopicLag>,
    /// Records per second the group consumed, per replica, as last measured
    /// (the growth of its committed offsets while the replicas did not change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consume_rate_per_replica: Option<i64>,
    /// The replica count the autoscaler wants now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,
    /// The workload's replicas (its scale subresource) at the last evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
    /// Why the last scale happened, with the lag that caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_reason: Option<String>,
    /// Last time the lag was above activationLag (the cooldown to zero counts from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active_time: Option<Time>,
    /// Recent recommendations (for the stabilization windows) and scales (for
    /// the step limits), as `unixSeconds:replicas` and `unixSeconds:from:to`.
    /// Kept here so that an operator restart keeps the windows.
    #[serde(default)]
    pub recommendations: Vec<String>,
    #[serde(default)]
    pub scales: Vec<String>,
    /// The last sample of the group's committed offsets, `unixMillis:sum:replicas`,
    /// from which the consume rate is measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_sample: Option<String>,
}

/// Lag of one topic.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicLag {
    pub topic: String,
    pub lag: i64,
    pub partitions: i32,
    /// Partitions with lag above zero.
    pub partitions_with_lag: i32,
}
