//! Committed offsets, kept in the internal topic `__consumer_offsets` as
//! Kafka record batches (key: group/topic/partition as JSON; value: offset,
//! leader epoch, metadata and commit time as JSON; a null value deletes), so
//! they survive restarts and replicate like any partition. The latest value
//! per key is held in memory; the log is replayed at start.
//!
//! Compaction: when the log holds many more records than live keys, the live
//! set is appended again and everything before it is deleted
//! ([`OffsetStore::compact`]), so the log stays proportional to the live
//! offsets.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde::{Deserialize, Serialize};

use crate::broker::{AppendError, Broker, Partition, now_ms};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OffsetKey {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_ms: i64,
    /// The id of the topic when the commit was made (absent in commits
    /// written before ids were kept): when that topic is deleted, the commit goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<uuid::Uuid>,
}

#[derive(Debug, thiserror::Error)]
pub enum OffsetError {
    #[error("writing offsets of group '{group}': {source}")]
    Write { group: String, source: AppendError },
    #[error("offsets of group '{group}' were written but not committed by the replicas: {code:?}")]
    NotCommitted {
        group: String,
        code: kafka_protocol::ResponseError,
    },
    #[error("encoding offset records: {0}")]
    Encode(String),
    #[error("replaying {OFFSETS_TOPIC} at offset {offset}: {reason}")]
    Replay { offset: i64, reason: String },
}

type GroupOffsets = BTreeMap<(String, i32), Committed>;

/// How long an offset commit waits for the offsets topic's in-sync replicas.
const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub struct OffsetStore {
    broker: Arc<Broker>,
    partition: Arc<Partition>,
    /// Serialises writers so the in-memory map follows log order.
    write: tokio::sync::Mutex<()>,
    committed: std::sync::Mutex<HashMap<String, GroupOffsets>>,
    /// Records in the log, live or superseded (drives compaction).
    records_in_log: std::sync::atomic::AtomicU64,
}

impl OffsetStore {
    /// Replays the internal topic's partition hosted here.
    pub fn open(broker: Arc<Broker>, partition: Arc<Partition>) -> Result<Self, OffsetError> {
        let mut committed: HashMap<String, GroupOffsets> = HashMap::new();
        let mut records = 0u64;
        let log = partition.log();
        let (start, end) = (log.log_start_offset(), log.log_end_offset());
        let mut offset = start;
        while offset < end {
            let mut chunk = log
                .read(offset, 1 << 20, end)
                .map_err(|e| OffsetError::Replay {
                    offset,
                    reason: e.to_string(),
                })?;
            if chunk.is_empty() {
                break;
            }
            while !chunk.is_empty() {
                let set =
                    RecordBatchDecoder::decode(&mut chunk).map_err(|e| OffsetError::Replay {
                        offset,
                        reason: format!("{e:#}"),
                    })?;
                for r in set.records {
                    offset = offset.max(r.offset + 1);
                    // The first batch may straddle the log start (after compaction).
                    if r.offset >= start {
                        records += 1;
                        apply_record(&mut committed, &r);
                    }
                }
            }
        }
        drop(log);
        Ok(Self {
            broker,
            partition,
            write: tokio::sync::Mutex::new(()),
            committed: std::sync::Mutex::new(committed),
            records_in_log: records.into(),
        })
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, GroupOffsets>> {
        self.committed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Durably records `entries` (None deletes), then makes them visible.
    pub async fn write(
        &self,
        group: &str,
        entries: Vec<((String, i32), Option<Committed>)>,
    ) -> Result<(), OffsetError> {
        if entries.is_empty() {
            return Ok(());
        }
        let _writer = self.write.lock().await;
        let batch = encode(group, &entries)?;
        let info = self
            .broker
            .append(&self.partition, batch, false)
            .await
            .map_err(|source| OffsetError::Write {
                group: group.to_string(),
                source,
            })?;
        // Like Kafka, commits are acks=all: they survive the loss of this broker.
        self.broker
            .await_commit(&self.partition, info.last_offset + 1, COMMIT_TIMEOUT)
            .await
            .map_err(|code| OffsetError::NotCommitted {
                group: group.to_string(),
                code,
            })?;
        self.records_in_log
            .fetch_add(entries.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let mut map = self.map();
        let offsets = map.entry(group.to_string()).or_default();
        for (tp, value) in entries {
            match value {
                Some(c) => {
                    offsets.insert(tp, c);
                }
                None => {
                    offsets.remove(&tp);
                }
            }
        }
        if offsets.is_empty() {
            map.remove(group);
        }
        Ok(())
    }

    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<Committed> {
        self.map()
            .get(group)
            .and_then(|o| o.get(&(topic.to_string(), partition)))
            .cloned()
    }

    /// Every committed offset of a group, in (topic, partition) order.
    pub fn group(&self, group: &str) -> GroupOffsets {
        self.map().get(group).cloned().unwrap_or_default()
    }

    pub fn groups(&self) -> Vec<String> {
        self.map().keys().cloned().collect()
    }

    /// Appends the live set again and deletes what came before it, when the
    /// log holds more than twice the live records (and at least `min_records`).
    pub async fn compact(&self, min_records: u64) -> Result<bool, OffsetError> {
        let live: Vec<(String, GroupOffsets)> = self
            .map()
            .iter()
            .map(|(g, o)| (g.clone(), o.clone()))
            .collect();
        let live_count: u64 = live.iter().map(|(_, o)| o.len() as u64).sum();
        let in_log = self
            .records_in_log
            .load(std::sync::atomic::Ordering::Relaxed);
        if in_log < min_records || in_log < 2 * live_count.max(1) {
            return Ok(false);
        }
        let _writer = self.write.lock().await;
        let start = self.partition.log().log_end_offset();
        for (group, offsets) in &live {
            let entries: Vec<_> = offsets
                .iter()
                .map(|(tp, c)| (tp.clone(), Some(c.clone())))
                .collect();
            let batch = encode(group, &entries)?;
            self.broker
                .append(&self.partition, batch, false)
                .await
                .map_err(|source| OffsetError::Write {
                    group: group.clone(),
                    source,
                })?;
        }
        self.partition
            .log()
            .delete_records_before(start)
            .map_err(|source| OffsetError::Write {
                group: "*".into(),
                source: source.into(),
            })?;
        self.records_in_log
            .store(live_count, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            live = live_count,
            before = in_log,
            "compacted {OFFSETS_TOPIC}"
        );
        Ok(true)
    }
}

fn apply_record(committed: &mut HashMap<String, GroupOffsets>, r: &Record) {
    let Some(key) = r
        .key
        .as_ref()
        .and_then(|k| serde_json::from_slice::<OffsetKey>(k).ok())
    else {
        return;
    };
    let value = r
        .value
        .as_ref()
        .and_then(|v| serde_json::from_slice::<Committed>(v).ok());
    let offsets = committed.entry(key.group.clone()).or_default();
    match value {
        Some(c) => {
            offsets.insert((key.topic, key.partition), c);
        }
        None => {
            offsets.remove(&(key.topic, key.partition));
            if offsets.is_empty() {
                committed.remove(&key.group);
            }
        }
    }
}

fn encode(
    group: &str,
    entries: &[((String, i32), Option<Committed>)],
) -> Result<Bytes, OffsetError> {
    let now = now_ms();
    let records: Vec<Record> = entries
        .iter()
        .enumerate()
        .map(|(i, ((topic, partition), value))| {
            let key = OffsetKey {
                group: group.to_string(),
                topic: topic.clone(),
                partition: *partition,
            };
            Ok(Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1,
                timestamp: now,
                key: Some(Bytes::from(
                    serde_json::to_vec(&key).map_err(|e| OffsetError::Encode(e.to_string()))?,
                )),
                value: value
                    .as_ref()
                    .map(|c| serde_json::to_vec(c).map(Bytes::from))
                    .transpose()
                    .map_err(|e| OffsetError::Encode(e.to_string()))?,
                headers: Default::default(),
            })
        })
        .collect::<Result<_, OffsetError>>()?;
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| OffsetError::Encode(format!("{e:#}")))?;
    Ok(buf.freeze())
}
