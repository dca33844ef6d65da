//! The `Topic` custom resource (tideway.dev/v1alpha1): one Kafka topic in a
//! MessageCluster of the same namespace. Admission-time rules (CEL) live here:
//! min-ISR ≤ replication factor, partitions never decrease, the cluster
//! reference and topic name never change, and the name is a valid Kafka name.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::conditions::Condition;

/// Longest Kafka topic name.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// A Kafka topic managed by tideway-operator.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tideway.dev",
    version = "v1alpha1",
    kind = "Topic",
    plural = "topics",
    category = "tideway",
    namespaced,
    status = "TopicStatus",
    derive = "PartialEq",
    validation = Rule::new("has(self.spec.topicName) || size(self.metadata.name) <= 249").message("metadata.name is longer than a Kafka topic name may be (249): set spec.topicName"),
    doc = "A Kafka topic in a Tideway MessageCluster, managed by tideway-operator.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.clusterRef.name"),
    printcolumn(name = "Partitions", type_ = "integer", json_path = ".status.partitions"),
    printcolumn(name = "RF", type_ = "integer", json_path = ".status.replicationFactor"),
    printcolumn(name = "Min-ISR", type_ = "integer", json_path = ".status.minInSyncReplicas"),
    printcolumn(name = "Under-Replicated", type_ = "integer", json_path = ".status.underReplicatedPartitions", priority = 1),
    printcolumn(name = "MirrorPolicy", type_ = "string", json_path = ".status.mirrorPolicy", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.minInSyncReplicas) || !has(self.replicationFactor) || self.minInSyncReplicas <= self.replicationFactor").message("minInSyncReplicas must not exceed replicationFactor: with fewer replicas than min-ISR, acks=all writes can never succeed"),
    validation = Rule::new("has(self.topicName) == has(oldSelf.topicName)").message("topicName cannot be added or removed after creation: it would rename the topic"),
    validation = Rule::new("!has(oldSelf.partitions) || has(self.partitions)").message("partitions cannot be unset once set"),
    validation = Rule::new("!has(oldSelf.replicationFactor) || has(self.replicationFactor)").message("replicationFactor cannot be unset once set")
)]
pub struct TopicSpec {
    /// The MessageCluster (same namespace) that holds the topic. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("clusterRef is immutable: create a new Topic to put it in another cluster"))]
    pub cluster_ref: ClusterRef,
    /// Kafka topic name; `metadata.name` when unset. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249), pattern(r"^[a-zA-Z0-9._-]+$"))]
    #[x_kube(
        validation = Rule::new("self != '.' && self != '..'").message("topicName cannot be '.' or '..'"),
        validation = Rule::new("self == oldSelf").message("topicName is immutable: create a new Topic to rename")
    )]
    pub topic_name: Option<String>,
    /// Number of partitions; the cluster's `config.defaultPartitions` when unset. Can only grow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    #[x_kube(validation = Rule::new("self >= oldSelf").message("partitions cannot decrease: Kafka cannot remove partitions without losing data"))]
    pub partitions: Option<i32>,
    /// Replicas of each partition; when unset, what the MirrorPolicy governing
    /// the topic asks for, else the cluster's `config.defaultReplicationFactor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub replication_factor: Option<i32>,
    /// `min.insync.replicas`; when unset, the larger of the cluster's
    /// `config.minInSyncReplicas` and what the MirrorPolicy governing the topic
    /// asks for, capped at the replication factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_in_sync_replicas: Option<i32>,
    /// Any other topic config (e.g. `retention.ms`, `cleanup.policy`), values as strings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// What happens to the Kafka topic when this resource is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Reference to a MessageCluster in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRef {
    /// Name of the MessageCluster.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Whether deleting the Topic resource deletes the Kafka topic.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the Kafka topic and its data.
    #[default]
    Delete,
    /// Keep the Kafka topic; only the resource goes.
    Retain,
}

/// Observed state, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, with a reason and a message.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Partitions the topic has on the brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// Replication factor on the brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<i32>,
    /// `min.insync.replicas` on the brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_in_sync_replicas: Option<i32>,
    /// Partitions whose ISR is smaller than their replica set.
    #[serde(default)]
    pub under_replicated_partitions: i32,
    /// Partitions whose ISR is below min-ISR (acks=all writes fail).
    #[serde(default)]
    pub under_min_isr_partitions: i32,
    /// The MirrorPolicy (`<namespace>/<name>`) governing the topic, as the
    /// brokers report it; unset when none does. An unset replicationFactor or
    /// minInSyncReplicas follows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_policy: Option<String>,
}

impl Topic {
    /// The Kafka topic name: `spec.topicName`, else `metadata.name`.
    pub fn kafka_name(&self) -> &str {
        match &self.spec.topic_name {
            Some(name) => name,
            None => self.metadata.name.as_deref().unwrap_or_default(),
        }
    }
}
