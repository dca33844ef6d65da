//! The `MessageCluster` custom resource (tideway.dev/v1alpha1): a set of
//! tideway-broker pods with their storage, broker defaults and pod overrides.
//! Field names are the public API. Admission-time rules live here as CEL
//! (`x-kubernetes-validations`); rules that need other objects (e.g. brokers vs
//! replication factor) are checked by `cluster::validate`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::conditions::{Condition, Time};

/// Desired state of a Tideway broker cluster.
// Each `printcolumn(...)` repeats `type_ = ...`; clippy reads that as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tideway.dev",
    version = "v1alpha1",
    kind = "MessageCluster",
    plural = "messageclusters",
    shortname = "mc",
    category = "tideway",
    namespaced,
    status = "MessageClusterStatus",
    derive = "PartialEq",
    doc = "A Tideway cluster: Kafka-compatible brokers run as a StatefulSet, managed by tideway-operator.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Brokers", type_ = "integer", json_path = ".spec.brokers"),
    printcolumn(
        name = "Ready Brokers",
        type_ = "integer",
        json_path = ".status.readyBrokers"
    ),
    printcolumn(
        name = "Rollout",
        type_ = "string",
        json_path = ".status.rollout.phase"
    ),
    printcolumn(
        name = "Controller",
        type_ = "integer",
        json_path = ".status.controller",
        priority = 1
    ),
    printcolumn(
        name = "Bootstrap",
        type_ = "string",
        json_path = ".status.bootstrapServers",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MessageClusterSpec {
    /// Number of broker pods. Each broker's node id is its pod ordinal. Scaling
    /// down first moves every replica off the brokers to remove (the highest
    /// ordinals), then stops them; it is refused, with a condition naming the
    /// topics, when a topic's replication factor exceeds the new count.
    #[schemars(range(min = 1, max = 1000))]
    pub brokers: i32,
    /// Broker container image; the operator's `--broker-image` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// One PersistentVolumeClaim per broker. Fixed after creation (StatefulSet
    /// volume claim templates are immutable).
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("storage cannot be changed after the cluster is created (StatefulSet volumeClaimTemplates are immutable)"))]
    pub storage: StorageSpec,
    /// CPU and memory for each broker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Defaults the brokers apply to topics created without explicit settings.
    #[serde(default)]
    pub config: BrokerConfig,
    /// The brokers' log filter (`--log`, tracing EnvFilter syntax), e.g. `info`
    /// or `info,tideway_broker::replication=debug`; `info,openraft=warn` (the
    /// broker's default) when unset. Applied
    /// to running brokers without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub log_level: Option<String>,
    /// Spread brokers across failure domains (e.g. zones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<RackSpec>,
    /// Overrides merged into the broker pod template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<PodTemplateOverrides>,
    /// The PersistentVolumeClaims of brokers removed by a scale-down: kept
    /// (`Retain`, the default: their data stays until someone deletes them)
    /// or deleted with the pods (`Delete`).
    #[serde(default)]
    pub claims_on_scale_down: ClaimPolicy,
}

/// What happens to a removed broker's volume claim.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ClaimPolicy {
    #[default]
    Retain,
    Delete,
}

/// Persistent storage of one broker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Requested size of each broker's volume, e.g. `10Gi`.
    pub size: Quantity,
    /// StorageClass of the volumes; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: Quantity("1Gi".to_owned()),
            storage_class_name: None,
        }
    }
}

/// Broker-wide defaults (the broker's `--default-*` settings).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.minInSyncReplicas) || !has(self.defaultReplicationFactor) || self.minInSyncReplicas <= self.defaultReplicationFactor").message("config.minInSyncReplicas must not exceed config.defaultReplicationFactor: with fewer replicas than min-ISR, acks=all writes can never succeed"))]
pub struct BrokerConfig {
    /// Replication factor of topics created without one; min(3, brokers) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub default_replication_factor: Option<i32>,
    /// `min.insync.replicas` of topics created without one; replication factor − 1 (at least 1) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_in_sync_replicas: Option<i32>,
    /// Partitions of topics created without a count; 1 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub default_partitions: Option<i32>,
    /// Whether producing to or fetching from an unknown topic creates it; true when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_create_topics: Option<bool>,
    /// Bytes per second each broker copies for replicas it gains when
    /// replicas move (a scale-down); unlimited when unset. Kafka's
    /// `follower.replication.throttled.rate`, applied to moving replicas only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub replica_move_bytes_per_second: Option<i64>,
    /// Default `retention.ms` (−1: keep forever); 7 days when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub retention_ms: Option<i64>,
}

/// Rack awareness: brokers are spread over the values of a node label.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RackSpec {
    /// Node label whose value is a broker's rack, e.g. `topology.kubernetes.io/zone`.
    #[schemars(length(min = 1, max = 316))]
    pub topology_key: String,
}

/// Pod-level overrides for the broker pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateOverrides {
    /// Replaces the operator's default affinity (none) when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Added to the pod annotations; the operator's own annotations win on conflict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Observed state, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MessageClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing and Degraded, each with a reason and a message.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Broker pods that pass their readiness probe.
    #[serde(default)]
    pub ready_brokers: i32,
    /// Node id of the active controller (Raft leader), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<i32>,
    /// Comma-separated `host:port` list for Kafka clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_servers: Option<String>,
    /// One entry per broker.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["id".into()]))]
    pub brokers: Vec<BrokerStatus>,
    /// The rolling restart in progress, or the last one (phase Done). The
    /// operator resumes from it after its own restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
}

/// Progress of a rolling restart: one broker at a time, drained first, and
/// the next only once the restarted one is back in every in-sync replica set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The pod template revision (hash) the brokers are rolled to.
    pub target_revision: String,
    /// Brokers restarted onto the target revision by this roll.
    #[serde(default)]
    pub updated_brokers: Vec<i32>,
    /// The broker being drained or restarted now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_broker: Option<i32>,
    /// In-sync replica sets `currentBroker` belonged to before its pod was
    /// deleted; set once it is deleted. The next broker waits until it is back in as many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_sync_before: Option<i32>,
    pub phase: RolloutPhase,
    /// What keeps the roll from going on: partitions `topic-N` or `broker N`.
    #[serde(default)]
    pub blocked_by: Vec<String>,
    /// The step in progress, in words.
    #[serde(default)]
    pub message: String,
    /// Partitions on the brokers being rolled whose replication factor is at
    /// most their min-ISR: no restart keeps them writable for acks=all, so
    /// they do not block the roll (raise their replication factor).
    #[serde(default)]
    pub unprotected_partitions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When `phase` last changed (the drain of a broker is bounded from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_since: Option<Time>,
}

/// Where a rolling restart is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum RolloutPhase {
    /// Leaderships of `currentBroker` move to other in-sync replicas.
    Draining,
    /// `currentBroker`'s pod was deleted and is being replaced.
    Restarting,
    /// The replaced pod is not Ready (or its broker not registered) yet.
    WaitingForReady,
    /// The restarted broker is Ready but not back in every in-sync replica set;
    /// or another broker is still catching up.
    WaitingForInSync,
    /// No broker can restart without a partition going under its min-ISR or
    /// offline, or without the metadata quorum losing its majority: see `blockedBy`.
    Blocked,
    /// A pod on the target revision does not start (CrashLoopBackOff,
    /// ImagePullBackOff, unschedulable): the roll stopped; a new spec resumes it.
    Halted,
    /// Every broker runs the target revision.
    #[default]
    Done,
}

impl RolloutPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draining => "Draining",
            Self::Restarting => "Restarting",
            Self::WaitingForReady => "WaitingForReady",
            Self::WaitingForInSync => "WaitingForInSync",
            Self::Blocked => "Blocked",
            Self::Halted => "Halted",
            Self::Done => "Done",
        }
    }
}

/// Observed state of one broker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerStatus {
    /// Broker (node) id, equal to the pod ordinal.
    pub id: i32,
    /// Pod name.
    pub pod: String,
    /// Advertised Kafka `host:port`.
    pub address: String,
    /// Whether the pod is ready.
    pub ready: bool,
    /// The rack the broker registered with (`spec.rack`: its node's label value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
}

impl MessageCluster {
    /// `spec.image`, or the operator's default.
    pub fn image_or<'a>(&'a self, default_image: &'a str) -> &'a str {
        self.spec.image.as_deref().unwrap_or(default_image)
    }
}
