//! Cluster metadata: topics, their partitions and configs.
//!
//! Every change is an explicit [`MetadataRecord`] applied to a pure
//! [`MetadataImage`]; a [`MetadataStore`] makes records durable, returns the
//! image and publishes every new image. A single node keeps them in a local
//! append-only file ([`local::LocalStore`]); a cluster keeps them in a Raft
//! quorum (planned in docs/replication.md), behind the same trait. Validation of names and configs lives in
//! [`topic_config`] and [`validate_topic_name`], shared by every API that
//! creates or alters topics.

pub mod cluster_config;
pub mod controller;
pub mod local;
pub mod mirror_policy;
pub mod raft;
pub mod reassign;
pub mod topic_config;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

pub use cluster_config::{ClusterConfigError, ClusterDefaults};
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
        /// Where followers fetch from this broker, if not host:port.
        #[serde(default)]
        replication: Option<(String, u16)>,
    },
    /// `assignments[p]` lists partition p's replicas, the first one leading.
    TopicCreated {
        name: String,
        topic_id: Uuid,
        partitions: i32,
        configs: BTreeMap<String, String>,
        #[serde(default)]
        assignments: Vec<Vec<i32>>,
        /// Who asked for it (mirror policies apply by origin).
        #[serde(default)]
        origin: mirror_policy::TopicOrigin,
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
    /// A partition's leader, leader epoch or ISR changed. Applied only if
    /// the partition is still in state `expect` (compare-and-set: a change
    /// computed from a stale image is dropped), and never adds a fenced
    /// broker to the ISR.
    PartitionChanged {
        topic: String,
        partition: i32,
        expect: PartitionState,
        state: PartitionState,
        /// The new leader was not in the ISR: acknowledged data may be lost.
        #[serde(default)]
        unclean: bool,
    },
    /// The controller stopped counting a broker as alive (missed
    /// heartbeats, or it asked to shut down): it may not lead or join an ISR.
    BrokerFenced {
        id: i32,
    },
    BrokerUnfenced {
        id: i32,
    },
    /// A broker was removed from the cluster (scaled down): forgotten.
    BrokerUnregistered {
        id: i32,
    },
    /// A partition's replica set changed (replication factor change):
    /// replicas no longer listed leave the ISR; the leader is never removed.
    ReplicasChanged {
        topic: String,
        partition: i32,
        replicas: Vec<i32>,
    },
    /// An operator asked that `id` lead nothing (admin Drain), or lifted
    /// that (Undrain). It stays in ISRs and keeps replicating.
    BrokerDrainChanged {
        id: i32,
        draining: bool,
    },
    /// A reassignment of one partition started (`target`: the replica set it
    /// ends with) or ended (`None`); see `reassign`.
    ReassignmentChanged {
        topic: String,
        partition: i32,
        target: Option<Vec<i32>>,
    },
    /// The complete set of cluster-wide dynamic broker configs after a change
    /// (admin AlterClusterConfigs; see `cluster_config`).
    ClusterConfigsReplaced {
        configs: BTreeMap<String, String>,
    },
    /// A mirror policy was stored or replaced (admin PutMirrorPolicy).
    MirrorPolicySet {
        policy: mirror_policy::MirrorPolicy,
    },
    /// A mirror policy was deleted; the topics it governed stay as they are.
    MirrorPolicyDeleted {
        name: String,
    },
    /// The brokers an EvacuateBrokers call is emptying (the complete set;
    /// empty when none is leaving): they get no new replicas, and mirror
    /// policies with mode All do not count them.
    BrokersLeaving {
        ids: std::collections::BTreeSet<i32>,
    },
}

/// Who leads a partition, at which epoch, and which replicas are in sync.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// -1 when offline.
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
}

impl PartitionState {
    /// Equal leader and epoch, and the same ISR in any order.
    pub fn same_as(&self, other: &PartitionState) -> bool {
        let sorted = |isr: &[i32]| {
            let mut v = isr.to_vec();
            v.sort_unstable();
            v
        };
        self.leader == other.leader
            && self.leader_epoch == other.leader_epoch
            && sorted(&self.isr) == sorted(&other.isr)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: i32,
    /// Topic-level overrides only; broker defaults fill the rest.
    pub configs: BTreeMap<String, String>,
    /// Replicas of each partition, the first one preferred as leader.
    pub assignments: Vec<Vec<i32>>,
    /// Leader, epoch and ISR of each partition; missing entries (records
    /// from before replication) mean the first replica leads at epoch 0
    /// with every replica in sync.
    #[serde(default)]
    pub states: Vec<PartitionState>,
    /// Reassignments in progress: partition → the replica set it ends with.
    #[serde(default)]
    pub targets: BTreeMap<i32, Vec<i32>>,
    /// Who created it (mirror policies apply by origin).
    #[serde(default)]
    pub origin: mirror_policy::TopicOrigin,
}

impl TopicMeta {
    /// The replicas of partition `p` (empty when out of range).
    pub fn replicas(&self, p: i32) -> &[i32] {
        usize::try_from(p)
            .ok()
            .and_then(|p| self.assignments.get(p))
            .map_or(&[], Vec::as_slice)
    }

    /// Partition `p`'s leader, epoch and ISR.
    pub fn state(&self, p: i32) -> PartitionState {
        usize::try_from(p)
            .ok()
            .and_then(|i| self.states.get(i))
            .cloned()
            .unwrap_or_else(|| initial_state(self.replicas(p)))
    }

    /// The broker leading partition `p`, or -1.
    pub fn leader(&self, p: i32) -> i32 {
        self.state(p).leader
    }
}

/// A new partition: the first replica leads at epoch 0, all in sync.
fn initial_state(replicas: &[i32]) -> PartitionState {
    PartitionState {
        leader: replicas.first().copied().unwrap_or(-1),
        leader_epoch: 0,
        isr: replicas.to_vec(),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerMeta {
    pub id: i32,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    /// Where followers fetch from this broker, if not host:port.
    #[serde(default)]
    pub replication: Option<(String, u16)>,
}

impl BrokerMeta {
    /// host:port followers fetch from.
    pub fn replication_address(&self) -> String {
        match &self.replication {
            Some((h, p)) => format!("{h}:{p}"),
            None => format!("{}:{}", self.host, self.port),
        }
    }
}

/// The metadata state: what every record so far adds up to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetadataImage {
    pub cluster_id: String,
    pub brokers: BTreeMap<i32, BrokerMeta>,
    pub topics: BTreeMap<String, TopicMeta>,
    /// The first producer id never handed out.
    pub producer_ids_reserved_up_to: i64,
    /// Brokers that may not lead or join an ISR (see `BrokerFenced`).
    #[serde(default)]
    pub fenced: std::collections::BTreeSet<i32>,
    /// Brokers whose leaderships move to other in-sync replicas (admin Drain).
    #[serde(default)]
    pub draining: std::collections::BTreeSet<i32>,
    /// Cluster-wide dynamic broker configs (they win over each broker's flags).
    #[serde(default)]
    pub cluster_configs: BTreeMap<String, String>,
    /// Ids of deleted topics: committed offsets made for one of them are
    /// deleted by the group coordinator (a topic created again under the same
    /// name has another id and starts with no commits, as in Kafka). 16 bytes
    /// per topic ever deleted.
    #[serde(default)]
    pub deleted_topic_ids: std::collections::BTreeSet<Uuid>,
    /// Mirror policies by name.
    #[serde(default)]
    pub mirror_policies: BTreeMap<String, mirror_policy::MirrorPolicy>,
    /// Brokers being emptied before a scale-down (see `BrokersLeaving`).
    #[serde(default)]
    pub leaving: std::collections::BTreeSet<i32>,
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
                replication,
            } => {
                self.brokers.insert(
                    *id,
                    BrokerMeta {
                        id: *id,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                        replication: replication.clone(),
                    },
                );
            }
            MetadataRecord::TopicCreated {
                name,
                topic_id,
                partitions,
                configs,
                assignments,
                origin,
            } => {
                // Two brokers may race to create one name: the first record wins.
                if self.topics.contains_key(name) {
                    return;
                }
                let assignments = complete(assignments.clone(), *partitions);
                let states = assignments.iter().map(|r| initial_state(r)).collect();
                let topic = TopicMeta {
                    name: name.clone(),
                    topic_id: *topic_id,
                    partitions: *partitions,
                    configs: configs.clone(),
                    assignments,
                    states,
                    targets: BTreeMap::new(),
                    origin: *origin,
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
                    let states: Vec<PartitionState> =
                        (0..t.partitions).map(|p| t.state(p)).collect();
                    t.assignments.extend(assignments.iter().cloned());
                    t.assignments = complete(std::mem::take(&mut t.assignments), *partitions);
                    t.states = states;
                    let added: Vec<PartitionState> = t.assignments[t.states.len()..]
                        .iter()
                        .map(|r| initial_state(r))
                        .collect();
                    t.states.extend(added);
                    t.partitions = *partitions;
                }
            }
            MetadataRecord::TopicConfigsReplaced { name, configs } => {
                if let Some(t) = self.topics.get_mut(name) {
                    t.configs = configs.clone();
                }
            }
            MetadataRecord::TopicDeleted { name } => {
                if let Some(t) = self.topics.remove(name) {
                    self.deleted_topic_ids.insert(t.topic_id);
                }
            }
            MetadataRecord::ProducerIdsReserved { up_to } => {
                self.producer_ids_reserved_up_to = self.producer_ids_reserved_up_to.max(*up_to);
            }
            MetadataRecord::PartitionChanged {
                topic,
                partition,
                expect,
                state,
                ..
            } => {
                let fenced = &self.fenced;
                let Some(t) = self.topics.get_mut(topic) else {
                    return;
                };
                if !(0..t.partitions).contains(partition) || !t.state(*partition).same_as(expect) {
                    return;
                }
                let joins_fenced = state
                    .isr
                    .iter()
                    .any(|b| fenced.contains(b) && !expect.isr.contains(b));
                if joins_fenced {
                    return;
                }
                let states: Vec<PartitionState> = (0..t.partitions).map(|p| t.state(p)).collect();
                t.states = states;
                let mut state = state.clone();
                state.isr.sort_unstable();
                t.states[*partition as usize] = state;
            }
            MetadataRecord::BrokerFenced { id } => {
                self.fenced.insert(*id);
            }
            MetadataRecord::BrokerUnfenced { id } => {
                self.fenced.remove(id);
            }
            MetadataRecord::ReplicasChanged {
                topic,
                partition,
                replicas,
            } => {
                let Some(t) = self.topics.get_mut(topic) else {
                    return;
                };
                let Ok(i) = usize::try_from(*partition) else {
                    return;
                };
                let mut state = t.state(*partition);
                if i >= t.assignments.len()
                    || replicas.is_empty()
                    || !replicas.contains(&state.leader) && state.leader >= 0
                {
                    return;
                }
                let states: Vec<PartitionState> = (0..t.partitions).map(|p| t.state(p)).collect();
                t.states = states;
                state.isr.retain(|b| replicas.contains(b));
                t.states[i] = state;
                t.assignments[i] = replicas.clone();
            }
            MetadataRecord::BrokerUnregistered { id } => {
                self.brokers.remove(id);
                self.fenced.remove(id);
                self.draining.remove(id);
                self.leaving.remove(id);
            }
            MetadataRecord::BrokerDrainChanged { id, draining } => {
                if *draining {
                    self.draining.insert(*id);
                } else {
                    self.draining.remove(id);
                }
            }
            MetadataRecord::ReassignmentChanged {
                topic,
                partition,
                target,
            } => {
                let Some(t) = self.topics.get_mut(topic) else {
                    return;
                };
                match target {
                    Some(target) if (0..t.partitions).contains(partition) => {
                        t.targets.insert(*partition, target.clone());
                    }
                    Some(_) => {}
                    None => {
                        t.targets.remove(partition);
                    }
                }
            }
            MetadataRecord::ClusterConfigsReplaced { configs } => {
                self.cluster_configs = configs.clone();
            }
            MetadataRecord::MirrorPolicySet { policy } => {
                self.mirror_policies
                    .insert(policy.name.clone(), policy.clone());
            }
            MetadataRecord::MirrorPolicyDeleted { name } => {
                self.mirror_policies.remove(name);
            }
            MetadataRecord::BrokersLeaving { ids } => {
                self.leaving = ids.clone();
            }
        }
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<&TopicMeta> {
        self.topics.values().find(|t| t.topic_id == id)
    }

    /// Registered brokers that are not fenced.
    pub fn alive_brokers(&self) -> std::collections::BTreeSet<i32> {
        self.brokers
            .keys()
            .copied()
            .filter(|b| !self.fenced.contains(b))
            .collect()
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
    /// Tells the controller (the quorum's leader) that `broker` is alive,
    /// and whether it is shutting down. A cluster of one has nobody to tell.
    fn heartbeat(
        &self,
        _broker: i32,
        _shutting_down: bool,
    ) -> BoxFuture<'_, Result<(), MetadataError>> {
        Box::pin(async { Ok(()) })
    }
    /// Removes `broker` from the quorum's voters (a no-op for a cluster of
    /// one, or when it is not a voter).
    fn remove_voter(&self, _broker: i32) -> BoxFuture<'_, Result<(), MetadataError>> {
        Box::pin(async { Ok(()) })
    }
    /// On the controller: each broker's last heartbeat received here, and
    /// whether it said it is shutting down.
    fn heartbeats(&self) -> BTreeMap<i32, (std::time::Instant, bool)> {
        BTreeMap::new()
    }
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
                origin: Default::default(),
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
            origin: Default::default(),
        };
        image.apply(&again);
        assert_eq!(
            image.topics["t"].topic_id, id,
            "a second creation of a name is ignored"
        );
        image.apply(&MetadataRecord::TopicDeleted { name: "t".into() });
        assert!(image.topics.is_empty());
        assert!(
            image.deleted_topic_ids.contains(&id),
            "the deleted id is kept: the group coordinator deletes commits made for it"
        );
    }

    /// A leader keeps its ISR sorted, the controller in replica order: the
    /// compare-and-set must not tell them apart (it did, and a returning
    /// follower never rejoined the ISR of a partition whose replica order
    /// was not sorted).
    #[test]
    fn partition_changes_compare_isrs_as_sets() {
        let mut image = MetadataImage::default();
        image.apply(&MetadataRecord::TopicCreated {
            name: "t".into(),
            topic_id: Uuid::new_v4(),
            partitions: 1,
            configs: BTreeMap::new(),
            assignments: vec![vec![1, 2, 0]],
            origin: Default::default(),
        });
        let state = |isr: &[i32]| PartitionState {
            leader: 1,
            leader_epoch: 0,
            isr: isr.to_vec(),
        };
        image.apply(&MetadataRecord::PartitionChanged {
            topic: "t".into(),
            partition: 0,
            expect: state(&[0, 1, 2]),
            state: state(&[1, 0]),
            unclean: false,
        });
        assert_eq!(image.topics["t"].state(0).isr, vec![0, 1]);
        image.apply(&MetadataRecord::PartitionChanged {
            topic: "t".into(),
            partition: 0,
            expect: state(&[1, 0]),
            state: state(&[0, 1, 2]),
            unclean: false,
        });
        assert_eq!(image.topics["t"].state(0).isr, vec![0, 1, 2]);
    }
}
