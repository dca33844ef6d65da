//! Cluster metadata: topics, their partitions and configs.
//!
//! Every change is an explicit [`MetadataRecord`] applied to a pure
//! [`MetadataImage`]; a [`MetadataStore`] makes records durable, returns the
//! image and publishes every new image. A single node keeps them in a local
//! append-only file ([`local::LocalStore`]); a cluster keeps them in a Raft
//! quorum (planned in docs/replication.md), behind the same trait. Validation of names and configs lives in
//! [`topic_config`] and [`validate_topic_name`], shared by every API that
//! creates or alters topics.

pub mod controller;
pub mod local;
pub mod raft;
pub mod topic_config;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

pub use topic_config::{TopicConfigError, TopicConfigs};

/// A state change of the cluster metadata. Records are persisted as JSON
/// lines; never change a variant's meaning, add new ones instead.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataRecord {
    /// Written once, when a data directory is first used.
    ClusterCreated {
        cluster_id: String,
    },
    /// A broker joined (or came back with a new address).
    BrokerRegistered {
        id: i32,
        host: String,
        port: u16,
        rack: Option<String>,
    },
    /// `assignments[p]` lists partition p's replicas, the first one leading.
    TopicCreated {
        name: String,
        topic_id: Uuid,
        partitions: i32,
        configs: BTreeMap<String, String>,
        #[serde(default)]
        assignments: Vec<Vec<i32>>,
    },
    /// `assignments` covers the added partitions only.
    PartitionsAdded {
        name: String,
        partitions: i32,
        #[serde(default)]
        assignments: Vec<Vec<i32>>,
    },
    /// The complete set of topic-level overrides after the change.
    TopicConfigsReplaced {
        name: String,
        configs: BTreeMap<String, String>,
    },
    TopicDeleted {
        name: String,
    },
    /// Producer ids below `up_to` may have been handed out; a restart continues from there.
    ProducerIdsReserved {
        up_to: i64,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: i32,
    /// Topic-level overrides only; broker defaults fill the rest.
    pub configs: BTreeMap<String, String>,
    /// Replicas of each partition, the first one leading.
    pub assignments: Vec<Vec<i32>>,
}

impl TopicMeta {
    /// The replicas of partition `p` (empty when out of range).
    pub fn replicas(&self, p: i32) -> &[i32] {
        usize::try_from(p)
            .ok()
            .and_then(|p| self.assignments.get(p))
            .map_or(&[], Vec::as_slice)
    }

    /// The broker leading partition `p`, or -1.
    pub fn leader(&self, p: i32) -> i32 {
        self.replicas(p).first().copied().unwrap_or(-1)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerMeta {
    pub id: i32,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
}

/// The metadata state: what every record so far adds up to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetadataImage {
    pub cluster_id: String,
    pub brokers: BTreeMap<i32, BrokerMeta>,
    pub topics: BTreeMap<String, TopicMeta>,
    /// The first producer id never handed out.
    pub producer_ids_reserved_up_to: i64,
}

impl MetadataImage {
    /// Applies one record. Records were validated before they were written,
    /// so applying never fails; a record about an unknown topic is ignored.
    pub fn apply(&mut self, record: &MetadataRecord) {
        match record {
            MetadataRecord::ClusterCreated { cluster_id } => {
                // The first one wins (several brokers may propose one at bootstrap).
                if self.cluster_id.is_empty() {
                    self.cluster_id = cluster_id.clone();
                }
            }
            MetadataRecord::BrokerRegistered {
                id,
                host,
                port,
                rack,
            } => {
                self.brokers.insert(
                    *id,
                    BrokerMeta {
                        id: *id,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                    },
                );
            }
            MetadataRecord::TopicCreated {
                name,
                topic_id,
                partitions,
                configs,
                assignments,
            } => {
                // Two brokers may race to create one name: the first record wins.
                if self.topics.contains_key(name) {
                    return;
                }
                let assignments = complete(assignments.clone(), *partitions);
                let topic = TopicMeta {
                    name: name.clone(),
                    topic_id: *topic_id,
                    partitions: *partitions,
                    configs: configs.clone(),
                    assignments,
                };
                self.topics.insert(name.clone(), topic);
            }
            MetadataRecord::PartitionsAdded {
                name,
                partitions,
                assignments,
            } => {
                if let Some(t) = self.topics.get_mut(name)
                    && *partitions > t.partitions
                {
                    t.assignments.extend(assignments.iter().cloned());
                    t.assignments = complete(std::mem::take(&mut t.assignments), *partitions);
                    t.partitions = *partitions;
                }
            }
            MetadataRecord::TopicConfigsReplaced { name, configs } => {
                if let Some(t) = self.topics.get_mut(name) {
                    t.configs = configs.clone();
                }
            }
            MetadataRecord::TopicDeleted { name } => {
                self.topics.remove(name);
            }
            MetadataRecord::ProducerIdsReserved { up_to } => {
                self.producer_ids_reserved_up_to = self.producer_ids_reserved_up_to.max(*up_to);
            }
        }
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<&TopicMeta> {
        self.topics.values().find(|t| t.topic_id == id)
    }
}

/// Pads assignments to `partitions` entries; a missing one (a record from
/// before assignments existed) means broker 0, the only one there was.
fn complete(mut assignments: Vec<Vec<i32>>, partitions: i32) -> Vec<Vec<i32>> {
    assignments.resize(partitions.max(0) as usize, vec![0]);
    assignments
}

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("storage error while {action} {path}: {source}")]
    Storage {
        action: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata record {line} of {path} is unreadable: {reason}")]
    CorruptRecord {
        path: std::path::PathBuf,
        line: usize,
        reason: String,
    },
    #[error("the metadata quorum cannot commit now: {0}")]
    Unavailable(String),
    #[error("the metadata quorum stopped: {0}")]
    Fatal(String),
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The metadata quorum as the admin API reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuorumStatus {
    pub voters: Vec<i32>,
    pub reachable: Vec<i32>,
    pub leader: Option<i32>,
    pub committed_index: u64,
}

/// Durable home of the metadata records.
pub trait MetadataStore: Send + Sync {
    /// The image after every record applied here so far.
    fn image(&self) -> Arc<MetadataImage>;
    /// Makes `records` durable, in order and atomically as a group, and
    /// applies them; returns an image that includes them.
    fn commit(
        &self,
        records: Vec<MetadataRecord>,
    ) -> BoxFuture<'_, Result<Arc<MetadataImage>, MetadataError>>;
    /// Every new image, as it is applied here (also ones committed elsewhere).
    fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>>;
    fn quorum(&self) -> QuorumStatus;
}

/// Why a topic name is invalid (Kafka's rules: 1..=249 characters of
/// `[a-zA-Z0-9._-]`, not `.` or `..`).
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name '{name}' is not allowed"));
    }
    if name.len() > 249 {
        return Err(format!(
            "topic name is {} characters long; the limit is 249",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name '{name}' contains '{c}'; only ASCII letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        for ok in ["orders", "a.b_c-D9", &"x".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "bad topic!", "ü", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn records_add_up_to_the_image() {
        let mut image = MetadataImage::default();
        let id = Uuid::new_v4();
        for r in [
            MetadataRecord::TopicCreated {
                name: "t".into(),
                topic_id: id,
                partitions: 2,
                configs: BTreeMap::new(),
                assignments: vec![vec![1], vec![2]],
            },
            MetadataRecord::PartitionsAdded {
                name: "t".into(),
                partitions: 5,
                assignments: vec![vec![2], vec![1], vec![2]],
            },
            MetadataRecord::TopicConfigsReplaced {
                name: "t".into(),
                configs: [("retention.ms".into(), "5".into())].into(),
            },
        ] {
            image.apply(&r);
        }
        let t = &image.topics["t"];
        assert_eq!((t.partitions, t.configs["retention.ms"].as_str()), (5, "5"));
        assert_eq!((t.leader(0), t.leader(4), t.leader(5)), (1, 2, -1));
        assert_eq!(image.topic_by_id(id).map(|t| t.name.as_str()), Some("t"));
        let again = MetadataRecord::TopicCreated {
            name: "t".into(),
            topic_id: Uuid::new_v4(),
            partitions: 9,
            configs: BTreeMap::new(),
            assignments: vec![],
        };
        image.apply(&again);
        assert_eq!(
            image.topics["t"].topic_id, id,
            "a second creation of a name is ignored"
        );
        image.apply(&MetadataRecord::TopicDeleted { name: "t".into() });
        assert!(image.topics.is_empty());
    }
}
