//! Partition logs: segmented files of Kafka v2 record batches on disk.
//!
//! This module owns everything below one partition directory: segment files,
//! the sparse offset index and the time index, size/age rolls, retention,
//! and crash recovery. It knows nothing of topics, the network or
//! replication; callers hold a [`PartitionLog`] behind their own lock.
//!
//! On-disk layout of one partition directory (Kafka's naming, so operators
//! recognise it):
//! - `{base_offset:020}.log`       concatenated v2 record batches, exactly as
//!   produced except for the patched baseOffset and partitionLeaderEpoch;
//! - `{base_offset:020}.index`     sparse offset index, entries of
//!   (relative offset u32 BE, file position u32 BE);
//! - `{base_offset:020}.timeindex` time index, entries of
//!   (max timestamp i64 BE, relative offset u32 BE).

pub mod batch;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

/// When appended data is forced to stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fsync before an append is acknowledged: acknowledged data survives power loss.
    Always,
    /// The broker calls [`PartitionLog::flush`] on a timer: at most that much
    /// acknowledged data is lost on power loss; nothing on a process crash.
    Interval(Duration),
    /// Leave it to the OS page cache (Kafka's default): a process crash loses
    /// nothing, power loss may lose what the kernel had not written back.
    Never,
}

/// Per-partition settings, resolved from broker defaults and topic configs.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// Roll the active segment once it reaches this many bytes.
    pub segment_bytes: u64,
    /// Roll the active segment once its first batch is this old (ms).
    pub segment_ms: i64,
    /// Delete segments whose newest record is older than this (ms); -1 keeps forever.
    pub retention_ms: i64,
    /// Delete oldest segments while the partition is larger than this; -1 means no limit.
    pub retention_bytes: i64,
    /// Largest single record batch accepted (bytes, whole batch incl. header).
    pub max_message_bytes: usize,
    /// Add an index entry at most every this many bytes.
    pub index_interval_bytes: usize,
    pub fsync: FsyncPolicy,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            max_message_bytes: 1024 * 1024 + 12,
            index_interval_bytes: 4096,
            fsync: FsyncPolicy::Never,
        }
    }
}

/// What one append did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the first record of the first batch.
    pub base_offset: i64,
    /// Offset of the last record of the last batch.
    pub last_offset: i64,
    /// Broker time stamped into the batches when the topic uses
    /// LogAppendTime, else -1.
    pub log_append_time_ms: i64,
}

/// The result of a timestamp lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimestampOffset {
    pub timestamp: i64,
    pub offset: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Produce payload failed validation (bad CRC, bad length, not magic v2...).
    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),
    /// A batch is larger than max.message.bytes.
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    BatchTooLarge { size: usize, max: usize },
    /// Fetch or lookup outside [log start, log end].
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange { offset: i64, log_start: i64, log_end: i64 },
    /// Any filesystem failure; the log stays consistent (a partial write is
    /// truncated away) and the caller answers KAFKA_STORAGE_ERROR.
    #[error("storage error while {action} {path}: {source}")]
    Storage {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One partition's log. Not internally synchronised: the caller owns the lock.
pub struct PartitionLog {
    // implementation-defined
}

impl PartitionLog {
    /// Opens the log in `dir`, creating the directory if missing.
    /// With `recover` (the previous run did not shut down cleanly), scans the
    /// active segment batch by batch, truncates a torn or corrupt tail and
    /// rebuilds its indexes; without it, only sanity-checks indexes (a
    /// missing or damaged index is rebuilt either way).
    pub fn open(dir: &Path, config: LogConfig, recover: bool) -> Result<Self, LogError> {
        let _ = (dir, config, recover);
        todo!()
    }

    /// Validates `records` (one or more v2 batches back to back: magic 2,
    /// sane lengths, CRC32C, each batch ≤ max_message_bytes), then assigns
    /// offsets by patching baseOffset and partitionLeaderEpoch in place
    /// (and maxTimestamp when `log_append_time` is set: then every batch gets
    /// `now_ms` and the timestamp-type attribute bit; its CRC is recomputed),
    /// appends, updates indexes, rolls by size/age first when needed, and
    /// fsyncs under [`FsyncPolicy::Always`]. On failure nothing is appended.
    pub fn append(
        &mut self,
        records: BytesMut,
        leader_epoch: i32,
        log_append_time: bool,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        let _ = (records, leader_epoch, log_append_time, now_ms);
        todo!()
    }

    /// Reads whole batches starting with the batch that contains `offset`,
    /// up to `max_bytes`, but always at least one whole batch when any exists
    /// (KIP-74), and none starting at or after `upper_bound` (the high
    /// watermark; the log end offset for a single node).
    /// `offset == log_end_offset` returns empty bytes; outside
    /// [log_start_offset, log_end_offset] is `OffsetOutOfRange`.
    pub fn read(&self, offset: i64, max_bytes: usize, upper_bound: i64) -> Result<Bytes, LogError> {
        let _ = (offset, max_bytes, upper_bound);
        todo!()
    }

    /// The first offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        todo!()
    }

    /// The offset the next appended record will get.
    pub fn log_end_offset(&self) -> i64 {
        todo!()
    }

    /// Bytes of all segment files.
    pub fn size_bytes(&self) -> u64 {
        todo!()
    }

    /// Earliest offset whose record timestamp is ≥ `timestamp` (record
    /// precision, decoding only the one batch that holds it), or None when
    /// every record is older.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<TimestampOffset>, LogError> {
        let _ = timestamp;
        todo!()
    }

    /// The offset and timestamp of the record with the largest timestamp
    /// (ListOffsets MAX_TIMESTAMP), or None when empty.
    pub fn max_timestamp(&self) -> Result<Option<TimestampOffset>, LogError> {
        todo!()
    }

    /// Deletes whole segments past retention.ms (by their newest timestamp)
    /// or while the log exceeds retention.bytes, oldest first; an expired
    /// active segment is rolled first so it can go too. Advances the log
    /// start offset. Returns the number of segments deleted.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<usize, LogError> {
        let _ = now_ms;
        todo!()
    }

    /// Forces appended data and indexes to stable storage.
    pub fn flush(&mut self) -> Result<(), LogError> {
        todo!()
    }

    /// Applies changed settings (topic config change); takes effect on the next append/roll.
    pub fn set_config(&mut self, config: LogConfig) {
        let _ = config;
        todo!()
    }

    pub fn config(&self) -> &LogConfig {
        todo!()
    }

    /// Flushes and closes cleanly (indexes trimmed to their used size).
    pub fn close(self) -> Result<(), LogError> {
        todo!()
    }

    /// Removes the partition directory and everything in it.
    pub fn delete(self) -> Result<(), LogError> {
        todo!()
    }
}
