//! The broker's state and the operations the request handlers call:
//! topic lifecycle (through the metadata store), the partitions hosted
//! here, produce/fetch on them, and the background tasks (retention,
//! periodic fsync). Handlers translate the wire format; this module decides.
//!
//! Start-up, in order:
//! 1. [`DataDir::open`] checks the data directory (creates it, refuses a file
//!    or an unwritable path, takes an exclusive lock so two brokers never
//!    share it) and reads and removes the clean-shutdown marker: without it
//!    every partition is recovered (its active segment scanned and a torn
//!    tail truncated);
//! 2. the caller opens the metadata store (local file or Raft quorum);
//! 3. [`Broker::open`] removes partition directories of no current topic
//!    and opens the partitions the metadata assigns to this broker.
//!
//! Afterwards every new metadata image (committed here or elsewhere in the
//! cluster) is reconciled the same way ([`Broker::reconcile_partitions`]):
//! assigned partitions are opened, others closed and deleted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::log::LogConfig;
use crate::log::{AppendInfo, FsyncPolicy, LogError};
use crate::metadata::controller::{BrokerInfo, PlacementError, plan_replica_placement};
use crate::metadata::mirror_policy::{
    self, Brokers, OnCreate, PolicySet, TopicOrigin, plan_min_isr, plan_placement,
    plan_requirement, replica_load,
};
use crate::metadata::topic_config::{self, TopicConfigError};
use crate::metadata::{
    ClusterDefaults, MetadataError, MetadataImage, MetadataRecord, MetadataStore, TopicConfigs,
    TopicMeta, validate_topic_name,
};
use crate::metrics::Metrics;
pub use crate::partition::{AppendError, Partition};

const CLEAN_SHUTDOWN_MARKER: &str = ".clean-shutdown";
const LOCK_FILE: &str = ".lock";
const PARTITIONS_DIR: &str = "partitions";
pub const METADATA_DIR: &str = "metadata";
/// Written in each partition directory: the id of the topic it belongs to,
/// so a directory of a deleted topic is never mistaken for a new topic of
/// the same name.
const PARTITION_METADATA: &str = "partition.metadata";

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("--data-dir {0}: {1}")]
    DataDir(PathBuf, String),
    #[error("--data-dir {0} is in use by another tideway-broker (lock file {1} is held)")]
    DataDirLocked(PathBuf, PathBuf),
    #[error("loading metadata: {0}")]
    LoadMetadata(#[from] MetadataError),
    #[error("opening partitions: {0}")]
    OpenPartitions(TopicError),
}

/// Why replicas cannot be moved off brokers.
#[derive(Debug, thiserror::Error)]
pub enum EvacuateError {
    #[error(transparent)]
    Impossible(#[from] crate::metadata::reassign::EvacuationError),
    #[error("committing the replica moves")]
    Commit(#[from] TopicError),
}

/// Why a topic operation was refused. Mapped to Kafka error codes in
/// `server::errors` and to gRPC statuses in `admin`.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("{0}")]
    InvalidName(String),
    #[error("topic '{0}' already exists")]
    AlreadyExists(String),
    #[error("topic '{0}' does not exist")]
    Unknown(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// A mirror policy refuses it (Kafka's POLICY_VIOLATION); names the policy.
    #[error("{0}")]
    PolicyViolation(String),
    #[error(transparent)]
    InvalidConfig(#[from] TopicConfigError),
    #[error("committing metadata: {0}")]
    Commit(#[from] MetadataError),
    #[error("creating the log of {topic}-{partition}: {source}")]
    CreateLog {
        topic: String,
        partition: i32,
        source: LogError,
    },
}

impl From<PlacementError> for TopicError {
    fn from(e: PlacementError) -> Self {
        TopicError::InvalidReplicationFactor(e.to_string())
    }
}

type PartitionKey = (String, i32);

/// A locked data directory, before its partitions are opened.
pub struct DataDir {
    lock: File,
    /// The previous run did not shut down cleanly: recover every partition.
    recover: bool,
}

fn data_dir_error(dir: &Path, what: impl std::fmt::Display) -> StartError {
    StartError::DataDir(dir.to_path_buf(), what.to_string())
}

impl DataDir {
    /// Step 1 of the module doc.
    pub fn open(dir: &Path) -> Result<Self, StartError> {
        if dir.exists() && !dir.is_dir() {
            return Err(data_dir_error(dir, "is not a directory"));
        }
        fs::create_dir_all(dir)
            .map_err(|e| data_dir_error(dir, format!("cannot be created: {e}")))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = File::create(&lock_path)
            .map_err(|e| data_dir_error(dir, format!("is not writable: {e}")))?;
        if lock.try_lock().is_err() {
            return Err(StartError::DataDirLocked(dir.to_path_buf(), lock_path));
        }
        let marker = dir.join(CLEAN_SHUTDOWN_MARKER);
        let recover = !marker.exists();
        if !recover {
            fs::remove_file(&marker).map_err(|e| {
                data_dir_error(dir, format!("cannot remove {}: {e}", marker.display()))
            })?;
        }
        let partitions = dir.join(PARTITIONS_DIR);
        fs::create_dir_all(&partitions).map_err(|e| {
            data_dir_error(dir, format!("cannot create {}: {e}", partitions.display()))
        })?;
        tracing::info!(data_dir = %dir.display(), recover, "data directory locked");
        Ok(Self { lock, recover })
    }
}

pub struct Broker {
    pub config: BrokerConfig,
    /// host and port clients are told to use (set once the listener is bound).
    advertised: RwLock<(String, u16)>,
    store: Arc<dyn MetadataStore>,
    /// Partitions hosted here, with the id of the topic they belong to.
    partitions: RwLock<HashMap<PartitionKey, (Uuid, Arc<Partition>)>>,
    /// Serialises topic lifecycle changes made through this broker.
    topic_changes: tokio::sync::Mutex<()>,
    /// Pacing of replica moves (see `replication::throttle`).
    pub move_throttle: crate::replication::throttle::Throttle,
    /// Serialises partition reconciliation.
    reconciling: Mutex<()>,
    /// Serialises role changes (`replication::driver`): the driver and a
    /// change committed through this broker both set roles.
    roles: Mutex<()>,
    /// (next producer id, end of the reserved block).
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    /// Bumped after every append and high watermark move, waking long-polling fetches.
    appended: watch::Sender<u64>,
    /// ISR changes leaders want committed (see `replication::driver`).
    proposals: tokio::sync::mpsc::UnboundedSender<crate::replication::driver::PendingProposal>,
    proposals_rx: Mutex<
        Option<tokio::sync::mpsc::UnboundedReceiver<crate::replication::driver::PendingProposal>>,
    >,
    /// Set on SIGTERM: leaderships are being handed over.
    shutting_down: std::sync::atomic::AtomicBool,
    /// When the controller last acknowledged a heartbeat (ms since the epoch).
    heartbeat_delivered_ms: std::sync::atomic::AtomicI64,
    pub metrics: Metrics,
    _lock: File,
}

impl Broker {
    /// Step 3 of the module doc.
    pub fn open(
        config: BrokerConfig,
        data: DataDir,
        store: Arc<dyn MetadataStore>,
    ) -> Result<Self, StartError> {
        let image = store.image();
        remove_orphan_partitions(&config.data_dir.join(PARTITIONS_DIR), &image);
        let advertised = (config.listen.ip().to_string(), config.listen.port());
        let reserved = image.producer_ids_reserved_up_to;
        let (proposals, proposals_rx) = tokio::sync::mpsc::unbounded_channel();
        let broker = Self {
            proposals,
            proposals_rx: Mutex::new(Some(proposals_rx)),
            shutting_down: false.into(),
            heartbeat_delivered_ms: now_ms().into(),
            producer_ids: tokio::sync::Mutex::new((reserved, reserved)),
            config,
            advertised: RwLock::new(advertised),
            store,
            partitions: RwLock::new(HashMap::new()),
            topic_changes: tokio::sync::Mutex::new(()),
            move_throttle: crate::replication::throttle::Throttle::default(),
            reconciling: Mutex::new(()),
            roles: Mutex::new(()),
            appended: watch::Sender::new(0),
            metrics: Metrics::new(),
            _lock: data.lock,
        };
        broker
            .reconcile_partitions(data.recover)
            .map_err(StartError::OpenPartitions)?;
        broker.refresh_offset_metrics();
        Ok(broker)
    }

    pub fn set_advertised(&self, host: String, port: u16) {
        *self.advertised.write().unwrap_or_else(|p| p.into_inner()) = (host, port);
    }

    pub fn advertised(&self) -> (String, u16) {
        self.advertised
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    pub fn store(&self) -> &Arc<dyn MetadataStore> {
        &self.store
    }

    /// The current metadata; a cheap snapshot.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.store.image()
    }

    /// A partition hosted here.
    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(topic.to_string(), index))
            .map(|(_, p)| p.clone())
    }

    /// The queue of ISR proposals, taken once by the replication driver.
    pub fn take_proposals(
        &self,
    ) -> Option<tokio::sync::mpsc::UnboundedReceiver<crate::replication::driver::PendingProposal>>
    {
        self.proposals_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    pub(crate) fn proposals_sender(
        &self,
    ) -> &tokio::sync::mpsc::UnboundedSender<crate::replication::driver::PendingProposal> {
        &self.proposals
    }

    /// Wakes long-polling fetches (new records or a moved high watermark).
    pub fn notify_appended(&self) {
        self.appended.send_modify(|v| *v = v.wrapping_add(1));
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Controlled shutdown begins: heartbeats tell the controller, fetchers stop.
    pub fn begin_shutdown(&self) {
        self.shutting_down
            .store(true, std::sync::atomic::Ordering::Release);
    }

    pub fn heartbeat_delivered(&self) {
        self.heartbeat_delivered_ms
            .store(now_ms(), std::sync::atomic::Ordering::Release);
    }

    /// How long since the controller last acknowledged a heartbeat.
    pub fn since_heartbeat_delivered(&self) -> std::time::Duration {
        let at = self
            .heartbeat_delivered_ms
            .load(std::sync::atomic::Ordering::Acquire);
        std::time::Duration::from_millis((now_ms() - at).max(0) as u64)
    }

    /// Every partition hosted here.
    /// Held while roles are set ([`Broker::reconcile_roles`]).
    pub(crate) fn roles_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.roles.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn hosted_partitions(&self) -> Vec<Arc<Partition>> {
        self.all_partitions()
    }

    fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// The defaults in force: this broker's flags with the cluster-wide
    /// dynamic configs of `image` over them.
    pub fn defaults(&self, image: &MetadataImage) -> ClusterDefaults {
        ClusterDefaults {
            retention_ms: self.config.log_defaults.retention_ms,
            min_insync_replicas: self.config.min_insync_replicas,
            default_replication_factor: self.config.default_replication_factor,
            default_partitions: self.config.default_partitions,
            auto_create_topics: self.config.auto_create_topics,
            move_throttle_bytes_per_sec: None,
        }
        .with_overrides(&image.cluster_configs)
    }

    /// A topic's configs in the current image. Loops over many partitions
    /// resolve [`Broker::defaults`] once and call [`Broker::configs_from`].
    pub fn topic_configs<'a>(&self, topic: &'a TopicMeta) -> TopicConfigs<'a> {
        self.configs_with(&self.image(), &topic.configs)
    }

    /// A topic's configs: `overrides` over the defaults in force in `image`.
    pub fn configs_with<'a>(
        &self,
        image: &MetadataImage,
        overrides: &'a BTreeMap<String, String>,
    ) -> TopicConfigs<'a> {
        self.configs_from(&self.defaults(image), overrides)
    }

    /// A topic's configs: `overrides` over `defaults` (from [`Broker::defaults`]).
    pub fn configs_from<'a>(
        &self,
        defaults: &ClusterDefaults,
        overrides: &'a BTreeMap<String, String>,
    ) -> TopicConfigs<'a> {
        TopicConfigs {
            defaults: LogConfig {
                retention_ms: defaults.retention_ms,
                ..self.config.log_defaults.clone()
            },
            overrides,
            default_min_insync_replicas: defaults.min_insync_replicas,
        }
    }

    fn partition_dir(&self, topic: &str, index: i32) -> PathBuf {
        self.config
            .data_dir
            .join(PARTITIONS_DIR)
            .join(format!("{topic}-{index}"))
    }

    /// Opens the partitions the current image assigns here and removes the
    /// ones it no longer does (a deleted topic, or a new topic of the same
    /// name). The image is read under the lock: a caller holding an older one
    /// must not remove a topic a newer image created (and a producer may
    /// already have written to).
    pub fn reconcile_partitions(&self, recover: bool) -> Result<(), TopicError> {
        let _guard = self.reconciling.lock().unwrap_or_else(|p| p.into_inner());
        let image = self.image();
        let image = &*image;
        let me = self.node_id();
        // Close and delete what is no longer ours.
        let stale: Vec<(PartitionKey, Arc<Partition>)> = {
            let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<PartitionKey> = map
                .iter()
                .filter(|((topic, index), (id, _))| {
                    image
                        .topics
                        .get(topic)
                        .is_none_or(|t| t.topic_id != *id || !t.replicas(*index).contains(&me))
                })
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter()
                .filter_map(|k| map.remove(&k).map(|(_, p)| (k, p)))
                .collect()
        };
        for ((topic, index), p) in stale {
            let _ = p.close();
            self.metrics.forget_partition(&topic, index);
            let dir = self.partition_dir(&topic, index);
            if let Err(e) = fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove a deleted partition's directory; the next start removes it");
            }
            tracing::info!(
                topic,
                partition = index,
                "partition removed from this broker"
            );
        }
        // Open what is ours and not open yet.
        let defaults = self.defaults(&image);
        for topic in image.topics.values() {
            let log_config = self.configs_from(&defaults, &topic.configs).log_config();
            for index in (0..topic.partitions).filter(|&i| topic.replicas(i).contains(&me)) {
                if self.partition(&topic.name, index).is_some() {
                    continue;
                }
                let dir = self.partition_dir(&topic.name, index);
                let tag = dir.join(PARTITION_METADATA);
                let id_on_disk = fs::read_to_string(&tag).ok().and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("topic_id: ").map(|id| id.trim().to_string()))
                });
                if dir.exists()
                    && id_on_disk.as_deref() != Some(topic.topic_id.to_string().as_str())
                {
                    // Left by an earlier topic of the same name.
                    let _ = fs::remove_dir_all(&dir);
                }
                let create_log = |source| TopicError::CreateLog {
                    topic: topic.name.clone(),
                    partition: index,
                    source,
                };
                let partition =
                    Partition::open(&topic.name, index, &dir, log_config.clone(), recover)
                        .map_err(create_log)?;
                if id_on_disk.is_none() {
                    fs::write(&tag, format!("version: 0\ntopic_id: {}\n", topic.topic_id))
                        .map_err(|e| {
                            create_log(LogError::Storage {
                                action: "writing",
                                path: tag.clone(),
                                source: e,
                            })
                        })?;
                }
                let leo = partition.log().log_end_offset();
                self.metrics.set_log_end_offset(&topic.name, index, leo);
                self.partitions
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(
                        (topic.name.clone(), index),
                        (topic.topic_id, Arc::new(partition)),
                    );
            }
            // Topic config changes reach the open logs.
            for index in 0..topic.partitions {
                if let Some(p) = self.partition(&topic.name, index)
                    && *p.log().config() != log_config
                {
                    p.log().set_config(log_config.clone());
                }
            }
        }
        Ok(())
    }

    /// Commits `records` and, before answering, opens the partitions and
    /// takes the roles they give this broker: a client told a topic exists
    /// (and who leads it) is served by that leader at once. Follower
    /// fetchers are left to the replication driver.
    pub(crate) async fn commit(
        &self,
        records: Vec<MetadataRecord>,
    ) -> Result<Arc<MetadataImage>, TopicError> {
        let image = self.store.commit(records).await?;
        self.reconcile_partitions(false)?;
        let _ = self.reconcile_roles();
        Ok(image)
    }

    /// The brokers placement may use: every registered broker (alive when
    /// neither fenced nor leaving), or this one alone.
    pub fn placement_brokers(&self, image: &MetadataImage) -> Vec<BrokerInfo> {
        if image.brokers.is_empty() {
            return vec![BrokerInfo {
                id: self.node_id(),
                rack: None,
                alive: true,
            }];
        }
        image
            .brokers
            .values()
            .map(|b| BrokerInfo {
                id: b.id,
                rack: b.rack.clone(),
                alive: !image.fenced.contains(&b.id) && !image.leaving.contains(&b.id),
            })
            .collect()
    }

    /// The mirror policy that governs topic `name` of `origin` in `image`, if any.
    pub fn governing_policy<'a>(
        image: &'a MetadataImage,
        name: &str,
        origin: TopicOrigin,
    ) -> Option<&'a mirror_policy::MirrorPolicy> {
        PolicySet::of(image).governing(name, origin)
    }

    /// The policy governing `topic` and what it asks of it now (Err: why it
    /// cannot be met on the current brokers); None when no policy governs it.
    pub fn policy_requirement<'a>(
        &self,
        image: &'a MetadataImage,
        topic: &TopicMeta,
    ) -> Option<(
        &'a mirror_policy::MirrorPolicy,
        Result<mirror_policy::Requirement, String>,
    )> {
        let policy = Self::governing_policy(image, &topic.name, topic.origin)?;
        let all = self.placement_brokers(image);
        let req = plan_requirement(
            policy,
            &Brokers {
                all: &all,
                leaving: &image.leaving,
            },
        );
        Some((policy, req))
    }

    /// Checks and plans a topic creation (defaults, the governing mirror
    /// policy, placement) without doing it. `partitions` and
    /// `replication_factor` of -1 mean the defaults. With a policy governing
    /// `name` for `origin`:
    /// - `Admin` (Topic resources): an unset replication factor or min-ISR
    ///   takes the policy's; a set one that breaks it is refused;
    /// - `Client`: the topic as it would be created (defaults filled in) must
    ///   comply: `on_create` Reject refuses it, Adjust takes the policy's
    ///   replication factor and raises min-ISR to the policy's.
    ///
    /// Either way placement follows the policy (allowed brokers, rack cap),
    /// and an unset min-ISR above the replication factor is capped at it.
    /// Without a policy only the admin API caps it.
    pub fn plan_create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        mut configs: BTreeMap<String, String>,
        origin: TopicOrigin,
    ) -> Result<PlannedTopic, TopicError> {
        validate_topic_name(name).map_err(TopicError::InvalidName)?;
        let image = self.image();
        if image.topics.contains_key(name) {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        let defaults = self.defaults(&image);
        let partitions = if partitions == -1 {
            defaults.default_partitions
        } else {
            partitions
        };
        if !(1..=100_000).contains(&partitions) {
            return Err(TopicError::InvalidPartitions(format!(
                "partitions must be from 1 to 100000, got {partitions}"
            )));
        }
        for (k, v) in &configs {
            topic_config::validate_entry(k, v)?;
        }
        let all = self.placement_brokers(&image);
        let live = all.iter().filter(|b| b.alive).count();
        let brokers = Brokers {
            all: &all,
            leaving: &image.leaving,
        };
        // Start placement at a topic-dependent broker so leaders spread over topics.
        let start = name
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        let min_isr_set = configs.contains_key(MIN_ISR);
        let requested_rf = (replication_factor != -1).then_some(i32::from(replication_factor));
        let Some(policy) = Self::governing_policy(&image, name, origin) else {
            let rf = requested_rf.unwrap_or(defaults.default_replication_factor);
            crate::metadata::controller::validate_replication(rf, 1, live)?;
            let current = self.configs_with(&image, &configs).min_insync_replicas();
            // The admin API (Topic resources) caps a default min-ISR at the
            // replication factor; Kafka clients get Kafka's behaviour (no cap:
            // acks=all writes to such a topic fail with NOT_ENOUGH_REPLICAS).
            if origin == TopicOrigin::Admin && !min_isr_set && current > rf {
                configs.insert(MIN_ISR.into(), rf.to_string());
            }
            check_min_isr(&configs, rf)?;
            let assignments = plan_replica_placement(&all, partitions, rf, start)?;
            return Ok(PlannedTopic {
                partitions,
                replication_factor: rf,
                configs,
                assignments,
            });
        };
        let violation = |what: String| {
            TopicError::PolicyViolation(format!(
                "topic '{name}' breaks {}: {what}",
                policy.describe()
            ))
        };
        let req = plan_requirement(policy, &brokers).map_err(violation)?;
        let count = req.count as i32;
        let adjust = origin == TopicOrigin::Client && policy.on_create == OnCreate::Adjust;
        let rf = match requested_rf {
            None if origin == TopicOrigin::Admin => count,
            None => defaults.default_replication_factor,
            Some(rf) => rf,
        };
        if rf != count && !adjust {
            let default = if requested_rf.is_none() {
                " (the cluster default)"
            } else {
                ""
            };
            return Err(violation(format!(
                "replication factor {rf}{default}, the policy requires {count}"
            )));
        }
        let rf = count;
        let current = self.configs_with(&image, &configs).min_insync_replicas();
        let wanted = plan_min_isr(&req, current);
        let fill_in = adjust || (origin == TopicOrigin::Admin && !min_isr_set);
        if wanted > current && !fill_in {
            let default = if min_isr_set {
                ""
            } else {
                " (the cluster default)"
            };
            return Err(violation(format!(
                "min.insync.replicas {current}{default}, the policy requires at least {wanted}"
            )));
        }
        if wanted != current && (wanted > current || !min_isr_set) {
            configs.insert(MIN_ISR.into(), wanted.to_string());
        }
        check_min_isr(&configs, rf)?;
        let mut load = replica_load(&image, all.iter().map(|b| b.id));
        let assignments =
            plan_placement(&req, &brokers, &mut load, partitions, start).map_err(violation)?;
        Ok(PlannedTopic {
            partitions,
            replication_factor: rf,
            configs,
            assignments,
        })
    }

    /// Creates a topic as [`Broker::plan_create_topic`] plans it; partitions
    /// open on the brokers they are assigned to as they apply the record.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        origin: TopicOrigin,
    ) -> Result<TopicMeta, TopicError> {
        let _guard = self.topic_changes.lock().await;
        let planned =
            self.plan_create_topic(name, partitions, replication_factor, configs, origin)?;
        let topic_id = Uuid::new_v4();
        let image = self
            .commit(vec![MetadataRecord::TopicCreated {
                name: name.to_string(),
                topic_id,
                partitions: planned.partitions,
                configs: planned.configs,
                assignments: planned.assignments,
                origin,
            }])
            .await?;
        let topic = image
            .topics
            .get(name)
            .cloned()
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        if topic.topic_id != topic_id {
            // Another broker created the same name first.
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        tracing::info!(
            topic = name,
            partitions = planned.partitions,
            replication_factor = planned.replication_factor,
            ?origin,
            "topic created"
        );
        Ok(topic)
    }

    /// Deletes a topic: the metadata record first; every broker then removes
    /// its partitions. A crash in between leaves orphan directories that the
    /// next start removes.
    pub async fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        let _guard = self.topic_changes.lock().await;
        if !self.image().topics.contains_key(name) {
            return Err(TopicError::Unknown(name.to_string()));
        }
        self.commit(vec![MetadataRecord::TopicDeleted {
            name: name.to_string(),
        }])
        .await?;
        self.metrics.forget_topic(name);
        tracing::info!(topic = name, "topic deleted");
        Ok(())
    }

    /// Checks a partition count increase without doing it.
    pub fn validate_create_partitions(
        &self,
        name: &str,
        count: i32,
    ) -> Result<TopicMeta, TopicError> {
        let image = self.image();
        let topic = image
            .topics
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        if count <= topic.partitions {
            return Err(TopicError::InvalidPartitions(format!(
                "topic '{name}' has {} partitions; the new count {count} must be larger",
                topic.partitions
            )));
        }
        if count > 100_000 {
            return Err(TopicError::InvalidPartitions(format!(
                "partitions must be at most 100000, got {count}"
            )));
        }
        Ok(topic.clone())
    }

    /// Checks a partition count increase and places the new partitions
    /// (by the governing mirror policy, if any) without doing it.
    pub fn plan_create_partitions(
        &self,
        name: &str,
        count: i32,
    ) -> Result<Vec<Vec<i32>>, TopicError> {
        let before = self.validate_create_partitions(name, count)?;
        let image = self.image();
        let start = before.partitions as usize;
        let all = self.placement_brokers(&image);
        let assignments = match Self::governing_policy(&image, name, before.origin) {
            // New partitions of a governed topic follow its policy.
            Some(policy) => {
                let brokers = Brokers {
                    all: &all,
                    leaving: &image.leaving,
                };
                let mut load = replica_load(&image, all.iter().map(|b| b.id));
                plan_requirement(policy, &brokers)
                    .and_then(|req| {
                        plan_placement(&req, &brokers, &mut load, count - before.partitions, start)
                    })
                    .map_err(|e| {
                        TopicError::PolicyViolation(format!(
                            "new partitions of topic '{name}' cannot follow {}: {e}",
                            policy.describe()
                        ))
                    })?
            }
            None => {
                let rf = before.replicas(0).len().max(1) as i32;
                plan_replica_placement(&all, count - before.partitions, rf, start)?
            }
        };
        Ok(assignments)
    }

    pub async fn create_partitions(&self, name: &str, count: i32) -> Result<(), TopicError> {
        let _guard = self.topic_changes.lock().await;
        let from = self.image().topics.get(name).map_or(0, |t| t.partitions);
        let assignments = self.plan_create_partitions(name, count)?;
        self.commit(vec![MetadataRecord::PartitionsAdded {
            name: name.to_string(),
            partitions: count,
            assignments,
        }])
        .await?;
        tracing::info!(topic = name, from, to = count, "partitions added");
        Ok(())
    }

    /// Replaces a topic's overrides (after validating each); every broker
    /// applies the resulting log settings to its partitions.
    pub async fn replace_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _guard = self.topic_changes.lock().await;
        let image = self.image();
        let topic = image
            .topics
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        for (k, v) in &configs {
            topic_config::validate_entry(k, v)?;
        }
        check_min_isr(&configs, topic.replicas(0).len().max(1) as i32)?;
        if let Some((policy, Ok(req))) = self.policy_requirement(&image, topic)
            && let Some(floor) = req.min_isr
        {
            let min_isr = self.configs_with(&image, &configs).min_insync_replicas();
            if min_isr < floor {
                return Err(TopicError::PolicyViolation(format!(
                    "topic '{name}' is governed by {}: min.insync.replicas {min_isr} is below the {floor} it requires",
                    policy.describe()
                )));
            }
        }
        if validate_only {
            return Ok(());
        }
        self.commit(vec![MetadataRecord::TopicConfigsReplaced {
            name: name.to_string(),
            configs,
        }])
        .await?;
        Ok(())
    }

    /// Changes the replication factor of every partition of `name`
    /// (Kafka's partition reassignment, planned by the broker):
    /// - growing adds the live brokers holding the fewest replicas; they
    ///   fetch from the leader and join the ISR once caught up (progress is
    ///   the share of partitions whose replicas are all in sync);
    /// - shrinking removes followers, those on leaving brokers first, then
    ///   out-of-sync ones; the leader stays;
    /// - a partition with a reassignment in progress is left to finish it.
    pub async fn change_replication_factor(&self, name: &str, rf: i32) -> Result<(), TopicError> {
        let _guard = self.topic_changes.lock().await;
        let image = self.image();
        let topic = image
            .topics
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let live: Vec<i32> = self
            .placement_brokers(&image)
            .iter()
            .filter(|b| b.alive)
            .map(|b| b.id)
            .collect();
        crate::metadata::controller::validate_replication(
            rf,
            self.configs_with(&image, &topic.configs)
                .min_insync_replicas(),
            live.len(),
        )?;
        if let Some((policy, Ok(req))) = self.policy_requirement(&image, topic)
            && req.count as i32 != rf
        {
            return Err(TopicError::PolicyViolation(format!(
                "topic '{name}' is governed by {}: replication factor {rf}, the policy requires {}",
                policy.describe(),
                req.count
            )));
        }
        let mut load = replica_load(&image, live.iter().copied());
        let mut records = Vec::new();
        for p in 0..topic.partitions {
            // A partition being reassigned reaches its target first.
            if topic.targets.contains_key(&p) {
                continue;
            }
            let mut replicas = topic.replicas(p).to_vec();
            let state = topic.state(p);
            while (replicas.len() as i32) < rf {
                let Some(&add) = live
                    .iter()
                    .filter(|b| !replicas.contains(b))
                    .min_by_key(|b| (load[*b], **b))
                else {
                    break;
                };
                *load.entry(add).or_default() += 1;
                replicas.push(add);
            }
            while (replicas.len() as i32) > rf {
                let victim = replicas
                    .iter()
                    .rev()
                    .find(|b| **b != state.leader && image.leaving.contains(b))
                    .or_else(|| {
                        replicas
                            .iter()
                            .rev()
                            .find(|b| **b != state.leader && !state.isr.contains(b))
                    })
                    .or_else(|| replicas.iter().rev().find(|b| **b != state.leader))
                    .copied();
                let Some(victim) = victim else { break };
                replicas.retain(|b| *b != victim);
            }
            if replicas != topic.replicas(p) {
                records.push(MetadataRecord::ReplicasChanged {
                    topic: name.to_string(),
                    partition: p,
                    replicas,
                });
            }
        }
        if !records.is_empty() {
            self.commit(records).await?;
            tracing::info!(
                topic = name,
                replication_factor = rf,
                "replication factor changing"
            );
        }
        Ok(())
    }

    /// Starts moving every replica off `brokers` (see `metadata::reassign`)
    /// unless some topic could not keep its replication factor on the
    /// brokers left; returns how many replicas are still on them. Repeating
    /// it is harmless: partitions already moving are left alone. `brokers`
    /// become the leaving set (no new replicas; mirror policies with mode
    /// All stop counting them); an empty set ends an earlier departure.
    pub async fn evacuate_brokers(&self, brokers: &BTreeSet<i32>) -> Result<usize, EvacuateError> {
        let _guard = self.topic_changes.lock().await;
        let image = self.image();
        // Plan on the image with `brokers` leaving; record them as leaving
        // only together with a plan that can be carried out.
        let mut planned = (*image).clone();
        let leaving = MetadataRecord::BrokersLeaving {
            ids: brokers.clone(),
        };
        planned.apply(&leaving);
        let mut records = crate::metadata::reassign::plan_evacuation(
            &planned,
            &self.placement_brokers(&planned),
            brokers,
        )?;
        if image.leaving != *brokers {
            records.insert(0, leaving);
        }
        let image = if records.is_empty() {
            image
        } else {
            tracing::info!(
                ?brokers,
                moves = records
                    .iter()
                    .filter(|r| matches!(r, MetadataRecord::ReassignmentChanged { .. }))
                    .count(),
                "moving replicas off brokers"
            );
            self.commit(records).await?
        };
        Ok(crate::metadata::reassign::replicas_on(&image, brokers))
    }

    /// A producer id never handed out before, also across restarts: ids are
    /// reserved in blocks through the metadata store.
    pub async fn allocate_producer_id(&self) -> Result<i64, MetadataError> {
        const BLOCK: i64 = 1000;
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            // Continue after every block reserved so far, by any broker.
            let from = ids.0.max(self.image().producer_ids_reserved_up_to);
            let up_to = from + BLOCK;
            self.store
                .commit(vec![MetadataRecord::ProducerIdsReserved { up_to }])
                .await?;
            *ids = (from, up_to);
        }
        ids.0 += 1;
        Ok(ids.0 - 1)
    }

    /// Appends a produce payload to one partition and wakes waiting fetches.
    pub async fn append(
        &self,
        partition: &Arc<Partition>,
        records: Bytes,
        log_append_time: bool,
    ) -> Result<AppendInfo, AppendError> {
        // Only a leader appends; a follower's log is the leader's copy.
        if partition.replica.leader_epoch(false).is_err() {
            return Err(AppendError::NotLeader);
        }
        // The records inside each batch, before the partition is locked; a
        // compressed batch is decompressed off the async workers.
        let limits = self.config.record_limits;
        let compressed = crate::log::batch::batches(&records)
            .any(|b| b.is_ok_and(|(_, h)| h.compression() != 0));
        let check =
            move || crate::log::validate::validate_produced(&records, limits).map(|()| records);
        let records = if compressed {
            tokio::task::spawn_blocking(check).await.map_err(|e| {
                AppendError::Log(LogError::Storage {
                    action: "validating records for",
                    path: self.partition_dir(&partition.topic, partition.index),
                    source: std::io::Error::other(e.to_string()),
                })
            })?
        } else {
            check()
        }
        .map_err(AppendError::Log)?;
        let records = BytesMut::from(records);
        let bytes = records.len() as u64;
        let p = partition.clone();
        let result = self
            .run_append(move || p.append(records, log_append_time, now_ms()))
            .await;
        match &result {
            Ok((info, leo)) => {
                let records = (info.last_offset - info.base_offset + 1) as u64;
                self.metrics.record_produce(
                    &partition.topic,
                    partition.index,
                    bytes,
                    records,
                    *leo,
                );
                let (effects, _) = partition.replica.on_append(*leo, None);
                self.apply_effects(partition, effects);
                self.notify_appended();
            }
            Err(AppendError::Log(LogError::Storage { .. })) => self.metrics.storage_error(),
            Err(_) => {}
        }
        result.map(|(info, _)| info)
    }

    /// Runs an append: inline, or with `--fsync always` (an fsync per append
    /// blocks) on the blocking pool, off the async workers.
    async fn run_append<T: Send + 'static>(
        &self,
        run: impl FnOnce() -> Result<T, AppendError> + Send + 'static,
    ) -> Result<T, AppendError> {
        if self.config.log_defaults.fsync != FsyncPolicy::Always {
            return run();
        }
        tokio::task::spawn_blocking(run).await.unwrap_or_else(|e| {
            Err(LogError::Storage {
                action: "appending to",
                path: PathBuf::new(),
                source: std::io::Error::other(e),
            }
            .into())
        })
    }

    /// Waits until everything below `need` is committed (acks=all).
    pub async fn await_commit(
        &self,
        partition: &Partition,
        need: i64,
        timeout: std::time::Duration,
    ) -> Result<(), kafka_protocol::ResponseError> {
        use crate::replication::replica::AckOutcome;
        let leo = partition.log().log_end_offset();
        let (effects, rx) = partition.replica.on_append(leo, Some(need));
        self.apply_effects(partition, effects);
        let Some(rx) = rx else {
            return Err(kafka_protocol::ResponseError::NotLeaderOrFollower);
        };
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(AckOutcome::Committed)) => Ok(()),
            Ok(Ok(AckOutcome::NotEnoughReplicasAfterAppend)) => {
                Err(kafka_protocol::ResponseError::NotEnoughReplicasAfterAppend)
            }
            Ok(Ok(AckOutcome::NotLeader)) | Ok(Err(_)) => {
                Err(kafka_protocol::ResponseError::NotLeaderOrFollower)
            }
            Err(_) => Err(kafka_protocol::ResponseError::RequestTimedOut),
        }
    }

    /// Appends batches fetched from the leader (a follower) and records
    /// the log end offset metric. Returns the log end offset after it.
    pub async fn append_replicated(
        &self,
        partition: &Arc<Partition>,
        records: Bytes,
    ) -> Result<i64, AppendError> {
        let records = BytesMut::from(records);
        let p = partition.clone();
        let result = self.run_append(move || p.append_replicated(records)).await;
        match result {
            Ok((_, leo)) => {
                self.metrics
                    .set_log_end_offset(&partition.topic, partition.index, leo);
                Ok(leo)
            }
            Err(e) => {
                if matches!(e, AppendError::Log(LogError::Storage { .. })) {
                    self.metrics.storage_error();
                }
                Err(e)
            }
        }
    }

    /// A receiver that changes after every append (for fetch long-polling).
    pub fn subscribe_appends(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    fn refresh_offset_metrics(&self) {
        for p in self.all_partitions() {
            let leo = p.log().log_end_offset();
            self.metrics.set_log_end_offset(&p.topic, p.index, leo);
        }
    }

    /// Deletes segments past retention on every partition.
    pub fn enforce_retention(&self) {
        for p in self.all_partitions() {
            let result = p.log().enforce_retention(now_ms());
            match result {
                Ok(0) => {}
                Ok(n) => {
                    tracing::debug!(topic = %p.topic, partition = p.index, segments = n, "retention deleted segments")
                }
                Err(e) => {
                    self.metrics.storage_error();
                    tracing::error!(topic = %p.topic, partition = p.index, error = %e, "retention failed");
                }
            }
        }
    }

    /// Flushes every partition (the `--fsync interval` timer).
    pub fn flush_all(&self) {
        for p in self.all_partitions() {
            let result = p.log().flush();
            if let Err(e) = result {
                self.metrics.storage_error();
                tracing::error!(topic = %p.topic, partition = p.index, error = %e, "flush failed");
            }
        }
    }

    /// Snapshots every partition's idempotent producer state.
    pub fn snapshot_producers(&self) {
        for p in self.all_partitions() {
            if let Err(e) = p.snapshot_producers(now_ms()) {
                tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "producer state snapshot failed");
            }
        }
    }

    /// Flushes every log and fences it against further appends; when all
    /// flushed cleanly, writes the clean-shutdown marker so the next start
    /// skips recovery.
    pub fn close(&self) {
        let mut clean = true;
        for p in self.all_partitions() {
            if let Err(e) = p.close() {
                clean = false;
                tracing::error!(topic = %p.topic, partition = p.index, error = %e, "closing partition failed");
            }
        }
        if clean {
            let marker = self.config.data_dir.join(CLEAN_SHUTDOWN_MARKER);
            if let Err(e) = File::create(&marker).and_then(|f| f.sync_all()) {
                tracing::warn!(error = %e, "could not write the clean-shutdown marker; the next start recovers");
            }
        }
        tracing::info!(clean, "data directory closed");
    }
}

const MIN_ISR: &str = "min.insync.replicas";

/// A topic creation as it will be committed (see [`Broker::plan_create_topic`]).
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedTopic {
    pub partitions: i32,
    pub replication_factor: i32,
    /// The topic-level overrides, with min-ISR filled in where planned.
    pub configs: BTreeMap<String, String>,
    pub assignments: Vec<Vec<i32>>,
}

/// min.insync.replicas may not exceed the replication factor.
fn check_min_isr(configs: &BTreeMap<String, String>, rf: i32) -> Result<(), TopicError> {
    match configs
        .get("min.insync.replicas")
        .and_then(|v| v.parse::<i32>().ok())
    {
        Some(min_isr) if min_isr > rf => Err(TopicError::InvalidReplicationFactor(format!(
            "min.insync.replicas {min_isr} is larger than the replication factor {rf}"
        ))),
        _ => Ok(()),
    }
}

/// Removes partition directories of topics that no longer exist.
fn remove_orphan_partitions(dir: &Path, image: &MetadataImage) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let known = name
            .rsplit_once('-')
            .and_then(|(topic, idx)| Some((topic, idx.parse::<i32>().ok()?)))
            .is_some_and(|(topic, idx)| {
                image.topics.get(topic).is_some_and(|t| idx < t.partitions)
            });
        if !known {
            tracing::warn!(dir = %entry.path().display(), "removing the directory of a deleted partition");
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
