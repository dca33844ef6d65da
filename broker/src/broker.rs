//! The broker's state and the operations the request handlers call:
//! topic lifecycle (through the metadata store), the partition registry,
//! produce/fetch on partitions, and the background tasks (retention,
//! periodic fsync). Handlers translate the wire format; this module decides.
//!
//! Start-up, in order:
//! 1. check the data directory (create it, refuse a file or an unwritable
//!    path, take an exclusive lock so two brokers never share it);
//! 2. read and remove the clean-shutdown marker: without it every partition
//!    is recovered (its active segment scanned and a torn tail truncated);
//! 3. replay the metadata records, remove partition directories that belong
//!    to no topic (a delete interrupted by a crash), open every partition log.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use crate::config::BrokerConfig;
use crate::log::{AppendInfo, FsyncPolicy, LogError};
use crate::metadata::local::LocalStore;
use crate::metadata::topic_config::{self, TopicConfigError};
use crate::metadata::{
    MetadataError, MetadataImage, MetadataRecord, MetadataStore, TopicConfigs, TopicMeta,
    validate_topic_name,
};
use crate::metrics::Metrics;
pub use crate::partition::{AppendError, Partition};

const CLEAN_SHUTDOWN_MARKER: &str = ".clean-shutdown";
const LOCK_FILE: &str = ".lock";
const PARTITIONS_DIR: &str = "partitions";
const METADATA_DIR: &str = "metadata";

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
    #[error("opening partition {topic}-{partition}: {source}")]
    OpenPartition {
        topic: String,
        partition: i32,
        source: LogError,
    },
}

/// Why a topic operation was refused. Mapped to Kafka error codes in
/// `server::errors`.
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

type PartitionKey = (String, i32);

pub struct Broker {
    pub config: BrokerConfig,
    /// host and port clients are told to use (set once the listener is bound).
    advertised: RwLock<(String, u16)>,
    store: Box<dyn MetadataStore>,
    image: RwLock<Arc<MetadataImage>>,
    partitions: RwLock<HashMap<PartitionKey, Arc<Partition>>>,
    /// Serialises topic lifecycle changes (create/delete/alter); the data path never takes it.
    topic_changes: Mutex<()>,
    /// (next producer id, end of the reserved block).
    producer_ids: Mutex<(i64, i64)>,
    /// Bumped after every append, waking long-polling fetches.
    appended: watch::Sender<u64>,
    pub metrics: Metrics,
    _lock: File,
}

fn data_dir_error(dir: &Path, what: impl std::fmt::Display) -> StartError {
    StartError::DataDir(dir.to_path_buf(), what.to_string())
}

impl Broker {
    /// Opens the data directory and every partition (steps in the module doc).
    pub fn open(config: BrokerConfig) -> Result<Self, StartError> {
        let dir = config.data_dir.clone();
        // 1. The data directory.
        if dir.exists() && !dir.is_dir() {
            return Err(data_dir_error(&dir, "is not a directory"));
        }
        fs::create_dir_all(&dir)
            .map_err(|e| data_dir_error(&dir, format!("cannot be created: {e}")))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = File::create(&lock_path)
            .map_err(|e| data_dir_error(&dir, format!("is not writable: {e}")))?;
        if lock.try_lock().is_err() {
            return Err(StartError::DataDirLocked(dir, lock_path));
        }
        // 2. The clean-shutdown marker.
        let marker = dir.join(CLEAN_SHUTDOWN_MARKER);
        let recover = !marker.exists();
        if !recover {
            fs::remove_file(&marker).map_err(|e| {
                data_dir_error(&dir, format!("cannot remove {}: {e}", marker.display()))
            })?;
        }
        tracing::info!(data_dir = %dir.display(), recover, "opening data directory");
        // 3. Metadata, orphan clean-up, partition logs.
        let store = LocalStore::open(&dir.join(METADATA_DIR))?;
        let image = store.image();
        let partitions_dir = dir.join(PARTITIONS_DIR);
        fs::create_dir_all(&partitions_dir).map_err(|e| {
            data_dir_error(
                &dir,
                format!("cannot create {}: {e}", partitions_dir.display()),
            )
        })?;
        remove_orphan_partitions(&partitions_dir, &image);
        let mut partitions = HashMap::new();
        for topic in image.topics.values() {
            let configs = TopicConfigs {
                defaults: &config.log_defaults,
                overrides: &topic.configs,
            };
            for index in 0..topic.partitions {
                let path = partitions_dir.join(format!("{}-{index}", topic.name));
                let partition =
                    Partition::open(&topic.name, index, &path, configs.log_config(), recover)
                        .map_err(|source| StartError::OpenPartition {
                            topic: topic.name.clone(),
                            partition: index,
                            source,
                        })?;
                partitions.insert((topic.name.clone(), index), Arc::new(partition));
            }
        }
        let advertised = (config.listen.ip().to_string(), config.listen.port());
        let metrics = Metrics::new();
        let reserved = image.producer_ids_reserved_up_to;
        let broker = Self {
            producer_ids: Mutex::new((reserved, reserved)),
            config,
            advertised: RwLock::new(advertised),
            store: Box::new(store),
            image: RwLock::new(Arc::new(image)),
            partitions: RwLock::new(partitions),
            topic_changes: Mutex::new(()),
            appended: watch::Sender::new(0),
            metrics,
            _lock: lock,
        };
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

    /// The current metadata; a cheap snapshot.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(topic.to_string(), index))
            .cloned()
    }

    fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn topic_configs<'a>(&'a self, topic: &'a TopicMeta) -> TopicConfigs<'a> {
        TopicConfigs {
            defaults: &self.config.log_defaults,
            overrides: &topic.configs,
        }
    }

    fn partition_dir(&self, topic: &str, index: i32) -> PathBuf {
        self.config
            .data_dir
            .join(PARTITIONS_DIR)
            .join(format!("{topic}-{index}"))
    }

    fn lock_topic_changes(&self) -> MutexGuard<'_, ()> {
        self.topic_changes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn commit(&self, records: Vec<MetadataRecord>) -> Result<Arc<MetadataImage>, MetadataError> {
        let image = Arc::new(self.store.commit(records)?);
        *self.image.write().unwrap_or_else(|p| p.into_inner()) = image.clone();
        Ok(image)
    }

    /// Checks a topic creation without doing it. `partitions` of -1 means the default.
    pub fn validate_create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &BTreeMap<String, String>,
    ) -> Result<i32, TopicError> {
        validate_topic_name(name).map_err(TopicError::InvalidName)?;
        if self.image().topics.contains_key(name) {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        let partitions = if partitions == -1 {
            self.config.default_partitions
        } else {
            partitions
        };
        if !(1..=100_000).contains(&partitions) {
            return Err(TopicError::InvalidPartitions(format!(
                "partitions must be from 1 to 100000, got {partitions}"
            )));
        }
        if replication_factor != -1 && replication_factor != 1 {
            return Err(TopicError::InvalidReplicationFactor(format!(
                "replication factor {replication_factor} is larger than the 1 available broker"
            )));
        }
        for (k, v) in configs {
            topic_config::validate_entry(k, v)?;
        }
        if let Some(min_isr) = configs
            .get("min.insync.replicas")
            .and_then(|v| v.parse::<i32>().ok())
            && min_isr > 1
        {
            return Err(TopicError::InvalidReplicationFactor(format!(
                "min.insync.replicas {min_isr} is larger than the replication factor 1"
            )));
        }
        Ok(partitions)
    }

    /// Creates a topic: metadata record first, then the partition logs.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta, TopicError> {
        let _guard = self.lock_topic_changes();
        let partitions =
            self.validate_create_topic(name, partitions, replication_factor, &configs)?;
        let topic_id = uuid::Uuid::new_v4();
        let image = self.commit(vec![MetadataRecord::TopicCreated {
            name: name.to_string(),
            topic_id,
            partitions,
            configs,
        }])?;
        let topic = image
            .topics
            .get(name)
            .cloned()
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        self.open_partitions(&topic, 0)?;
        tracing::info!(topic = name, partitions, "topic created");
        Ok(topic)
    }

    fn open_partitions(&self, topic: &TopicMeta, from: i32) -> Result<(), TopicError> {
        let log_config = self.topic_configs(topic).log_config();
        for index in from..topic.partitions {
            let dir = self.partition_dir(&topic.name, index);
            // A directory left by an earlier topic of the same name is stale.
            if dir.exists() {
                let _ = fs::remove_dir_all(&dir);
            }
            let partition = Partition::open(&topic.name, index, &dir, log_config.clone(), false)
                .map_err(|source| TopicError::CreateLog {
                    topic: topic.name.clone(),
                    partition: index,
                    source,
                })?;
            self.partitions
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert((topic.name.clone(), index), Arc::new(partition));
        }
        Ok(())
    }

    /// Deletes a topic: metadata record first, then the logs. A crash in
    /// between leaves orphan directories that the next start removes.
    pub fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        let _guard = self.lock_topic_changes();
        if !self.image().topics.contains_key(name) {
            return Err(TopicError::Unknown(name.to_string()));
        }
        self.commit(vec![MetadataRecord::TopicDeleted {
            name: name.to_string(),
        }])?;
        let removed: Vec<Arc<Partition>> = {
            let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<PartitionKey> = map.keys().filter(|(t, _)| t == name).cloned().collect();
            keys.iter().filter_map(|k| map.remove(k)).collect()
        };
        for p in removed {
            self.metrics.forget_partition(&p.topic, p.index);
            let dir = self.partition_dir(&p.topic, p.index);
            if let Err(e) = fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove a deleted partition's directory; the next start removes it");
            }
        }
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

    pub fn create_partitions(&self, name: &str, count: i32) -> Result<(), TopicError> {
        let _guard = self.lock_topic_changes();
        let before = self.validate_create_partitions(name, count)?;
        let image = self.commit(vec![MetadataRecord::PartitionsAdded {
            name: name.to_string(),
            partitions: count,
        }])?;
        let topic = image
            .topics
            .get(name)
            .cloned()
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        self.open_partitions(&topic, before.partitions)?;
        tracing::info!(
            topic = name,
            from = before.partitions,
            to = count,
            "partitions added"
        );
        Ok(())
    }

    /// Replaces a topic's overrides (after validating each) and applies the
    /// resulting log settings to its partitions.
    pub fn replace_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _guard = self.lock_topic_changes();
        if !self.image().topics.contains_key(name) {
            return Err(TopicError::Unknown(name.to_string()));
        }
        for (k, v) in &configs {
            topic_config::validate_entry(k, v)?;
        }
        if let Some(min_isr) = configs
            .get("min.insync.replicas")
            .and_then(|v| v.parse::<i32>().ok())
            && min_isr > 1
        {
            return Err(TopicError::InvalidReplicationFactor(format!(
                "min.insync.replicas {min_isr} is larger than the replication factor 1"
            )));
        }
        if validate_only {
            return Ok(());
        }
        let image = self.commit(vec![MetadataRecord::TopicConfigsReplaced {
            name: name.to_string(),
            configs,
        }])?;
        if let Some(topic) = image.topics.get(name) {
            let log_config = self.topic_configs(topic).log_config();
            for index in 0..topic.partitions {
                if let Some(p) = self.partition(name, index) {
                    p.log().set_config(log_config.clone());
                }
            }
        }
        Ok(())
    }

    /// A producer id never handed out before, also across restarts: ids are
    /// reserved in blocks through the metadata store.
    pub fn allocate_producer_id(&self) -> Result<i64, MetadataError> {
        const BLOCK: i64 = 1000;
        let mut ids = self.producer_ids.lock().unwrap_or_else(|p| p.into_inner());
        if ids.0 >= ids.1 {
            let up_to = ids.0 + BLOCK;
            self.commit(vec![MetadataRecord::ProducerIdsReserved { up_to }])?;
            ids.1 = up_to;
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
        let records = BytesMut::from(records);
        let bytes = records.len() as u64;
        let p = partition.clone();
        let run = move || p.append(records, log_append_time, now_ms());
        // An fsync per append blocks: keep it off the async workers.
        let result = if self.config.log_defaults.fsync == FsyncPolicy::Always {
            tokio::task::spawn_blocking(run).await.unwrap_or_else(|e| {
                Err(LogError::Storage {
                    action: "appending to",
                    path: PathBuf::new(),
                    source: std::io::Error::other(e),
                }
                .into())
            })
        } else {
            run()
        };
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
                self.appended.send_modify(|v| *v = v.wrapping_add(1));
            }
            Err(AppendError::Log(LogError::Storage { .. })) => self.metrics.storage_error(),
            Err(_) => {}
        }
        result.map(|(info, _)| info)
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
