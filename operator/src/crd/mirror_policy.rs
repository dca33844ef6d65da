//! The `MirrorPolicy` custom resource (tideway.dev/v1alpha1): how many copies
//! the topics whose names match keep in a MessageCluster of the same
//! namespace, on which brokers, and with which `min.insync.replicas`. The
//! brokers enforce it (docs/mirror-policies.md); the reconciler in
//! `mirror_policy` hands it to them and reports what they say. Admission-time
//! rules (CEL) live here.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::conditions::Condition;
use super::topic::ClusterRef;

/// Most governed topic names kept in `status.governedTopics`.
pub const MAX_GOVERNED_TOPICS_LISTED: usize = 100;
/// Most entries kept in `status.nonCompliantTopics` and `status.reassignments`.
pub const MAX_NON_COMPLIANT_LISTED: usize = 50;

/// Replication rules for the topics whose names match, enforced by the brokers.
// Each `printcolumn(...)` repeats `type_ = ...`; clippy reads that as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tideway.dev",
    version = "v1alpha1",
    kind = "MirrorPolicy",
    plural = "mirrorpolicies",
    category = "tideway",
    namespaced,
    status = "MirrorPolicyStatus",
    derive = "PartialEq",
    doc = "Replication rules (replica count or placement, min.insync.replicas, rack spread) for the topics whose names match, in a Tideway MessageCluster; enforced by the brokers, managed by tideway-operator.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.clusterRef.name"
    ),
    printcolumn(
        name = "Priority",
        type_ = "integer",
        json_path = ".spec.match.priority"
    ),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.replicas.mode"),
    printcolumn(
        name = "Governed",
        type_ = "integer",
        json_path = ".status.governedTopicCount"
    ),
    printcolumn(
        name = "NonCompliant",
        type_ = "integer",
        json_path = ".status.nonCompliantTopicCount"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.minInSyncReplicas) || self.replicas.mode != 'Exactly' || !has(self.replicas.count) || self.minInSyncReplicas <= self.replicas.count").message("minInSyncReplicas must not exceed replicas.count: with fewer replicas than min-ISR, acks=all writes can never succeed"),
    validation = Rule::new("!has(self.minInSyncReplicas) || self.replicas.mode != 'Brokers' || !has(self.replicas.brokers) || self.minInSyncReplicas <= size(self.replicas.brokers)").message("minInSyncReplicas must not exceed the number of replicas.brokers: with fewer replicas than min-ISR, acks=all writes can never succeed")
)]
pub struct MirrorPolicySpec {
    /// The MessageCluster (same namespace) whose brokers enforce the policy. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("clusterRef is immutable: create a new MirrorPolicy for another cluster"))]
    pub cluster_ref: ClusterRef,
    /// Which topics the policy governs, and its priority over other policies
    /// that match the same topic.
    #[serde(rename = "match")]
    pub selector: PolicyMatch,
    /// Which topics count: those created through Topic resources (the
    /// operator's admin API calls), those created by Kafka clients
    /// (CreateTopics, auto-create), or both (the default).
    #[serde(default = "default_applies_to")]
    #[schemars(length(min = 1, max = 2))]
    #[x_kube(validation = Rule::new("self.all(a, self.filter(b, b == a).size() == 1)").message("appliesTo lists an entry twice"))]
    pub applies_to: Vec<AppliesTo>,
    /// How many replicas each partition of a governed topic has, or on which brokers.
    pub replicas: ReplicaSpec,
    /// Least `min.insync.replicas` of a governed topic: a topic asking for
    /// fewer is raised to this. Unset: the policy does not touch min-ISR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_in_sync_replicas: Option<i32>,
    /// How replicas spread over racks (the brokers' `--rack`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack_spread: Option<RackSpread>,
    /// What a Kafka client or Topic creating a governed topic that breaks
    /// the policy gets: `Reject` (an error naming the policy, Kafka's
    /// POLICY_VIOLATION) or `Adjust` (the topic is created with the policy's
    /// settings instead).
    #[serde(default)]
    pub on_create: OnCreate,
    /// What happens to existing governed topics that break the policy:
    /// `Audit` only reports them in the status, `Reconcile` moves their
    /// replicas to match, one topic at a time.
    #[serde(default)]
    pub on_existing: OnExisting,
    /// Bytes per second each broker may copy for the replica moves of
    /// `onExisting: Reconcile`. Unset: only the cluster's
    /// `config.replicaMoveBytesPerSecond` (Kafka's
    /// `follower.replication.throttled.rate`) limits them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub throttle_bytes_per_second: Option<i64>,
}

fn default_applies_to() -> Vec<AppliesTo> {
    vec![AppliesTo::TopicResources, AppliesTo::ClientCreated]
}

/// Which topics a policy governs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyMatch {
    /// A topic is governed when its name matches any of these (and none of `exclude`).
    #[schemars(length(min = 1, max = 100))]
    pub topics: Vec<NamePattern>,
    /// Topics to leave out even when `topics` matches them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub exclude: Vec<NamePattern>,
    /// When several policies match a topic, the one with the highest priority
    /// governs it. On a tie the older policy (by creation time) governs, and
    /// both report the tie in their `Conflict` condition.
    #[serde(default)]
    pub priority: i32,
}

/// A way to name topics.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamePattern {
    /// `Literal`: the exact name; `Prefix`: names starting with `value`;
    /// `Regex`: names the regular expression matches as a whole.
    #[serde(rename = "type")]
    pub type_: PatternType,
    /// The name, prefix or regular expression.
    #[schemars(length(min = 1, max = 1000))]
    pub value: String,
}

/// How `value` names topics.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PatternType {
    /// The exact topic name.
    Literal,
    /// Every topic name starting with the value.
    Prefix,
    /// Every topic name the regular expression matches as a whole.
    Regex,
}

/// Which topics of the matching names a policy counts.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AppliesTo {
    /// Topics created or changed through Topic resources.
    TopicResources,
    /// Topics Kafka clients create (CreateTopics, auto-create).
    ClientCreated,
}

/// Replica count or placement of a governed topic's partitions.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.mode == 'Exactly' ? has(self.count) : !has(self.count)").message("replicas.count is required with mode Exactly and allowed only with it"),
    validation = Rule::new("self.mode == 'Brokers' ? has(self.brokers) != has(self.racks) : !has(self.brokers) && !has(self.racks)").message("mode Brokers takes exactly one of replicas.brokers or replicas.racks; the other modes take neither")
)]
pub struct ReplicaSpec {
    /// `All`: a replica on every broker (brokers being removed by a scale-down
    /// do not count); `Exactly`: `count` replicas; `Brokers`: a replica on each
    /// broker of `brokers`, or on each broker in `racks`.
    pub mode: ReplicaMode,
    /// Replicas per partition, with mode `Exactly`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub count: Option<i32>,
    /// Broker ids (the pods' ordinals) that each hold a replica, with mode `Brokers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1000), inner(range(min = 0)))]
    pub brokers: Option<Vec<i32>>,
    /// Racks whose brokers each hold a replica, with mode `Brokers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100), inner(length(min = 1, max = 255)))]
    pub racks: Option<Vec<String>>,
}

/// How replicas are counted or placed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ReplicaMode {
    /// A replica on every broker not being removed.
    All,
    /// `count` replicas.
    Exactly,
    /// A replica on each listed broker, or on each broker of the listed racks.
    Brokers,
}

/// How replicas spread over racks.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RackSpread {
    /// Most replicas of one partition in the same rack. Unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_per_rack: Option<i32>,
}

/// What a creation that breaks the policy gets.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum OnCreate {
    /// Refused with an error naming the policy.
    #[default]
    Reject,
    /// Created with the policy's replicas and min-ISR instead.
    Adjust,
}

/// What happens to existing topics that break the policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum OnExisting {
    /// Their replicas are moved to match, one topic at a time.
    Reconcile,
    /// They are only reported.
    #[default]
    Audit,
}

/// Observed state, written by the operator from what the brokers report.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MirrorPolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready (the brokers hold the policy), Compliant (every governed topic
    /// matches it) and Conflict (another policy of the same priority matches
    /// some of the same topics).
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Replicas per partition the policy asks for now (with mode `All` it
    /// follows the broker count); 0 when the brokers there are cannot meet it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_replicas: Option<i32>,
    /// Topics the policy governs (it matches them and no policy of higher
    /// priority, or an older one of the same priority, does).
    #[serde(default)]
    pub governed_topic_count: i32,
    /// The first 100 governed topics, by name.
    #[serde(default)]
    pub governed_topics: Vec<String>,
    /// Governed topics that break the policy.
    #[serde(default)]
    pub non_compliant_topic_count: i32,
    /// The first 50 governed topics that break the policy, each with why.
    #[serde(default)]
    pub non_compliant_topics: Vec<NonCompliantTopic>,
    /// Topics whose replicas are moving to match the policy, with progress.
    #[serde(default)]
    pub reassignments: Vec<TopicReassignment>,
    /// Policies (`<namespace>/<name>`) with the same priority that match some
    /// of the same topics.
    #[serde(default)]
    pub ties: Vec<String>,
}

/// A governed topic that breaks the policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NonCompliantTopic {
    pub topic: String,
    /// What differs, as the brokers say it.
    pub reason: String,
}

/// A topic whose replicas are moving to match the policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicReassignment {
    pub topic: String,
    /// Partitions of the topic.
    pub partitions: i32,
    /// Partitions whose replicas are still moving.
    pub partitions_moving: i32,
    /// Partitions done, 0–100.
    pub percent: i32,
}

impl MirrorPolicy {
    /// The policy's key on the brokers: `<namespace>/<name>`.
    pub fn broker_name(&self) -> String {
        format!(
            "{}/{}",
            self.metadata.namespace.as_deref().unwrap_or_default(),
            self.metadata.name.as_deref().unwrap_or_default()
        )
    }
}
