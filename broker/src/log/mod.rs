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
//!   produced except for the patched baseOffset and partitionLeaderEpoch
//!   (and maxTimestamp, attributes, CRC under LogAppendTime);
//! - `{base_offset:020}.index`     sparse offset index, entries of
//!   (relative offset u32 BE, file position u32 BE);
//! - `{base_offset:020}.timeindex` time index, entries of
//!   (max timestamp i64 BE, relative offset u32 BE);
//! - `log-start-offset`            the log start offset once retention has
//!   advanced it (decimal, replaced atomically), so a restart keeps it;
//! - `leader-epoch-checkpoint`     leader epoch → start offset (Kafka's
//!   format, replaced atomically), see [`epochs`].
//!
//! Followers (replication) append the leader's batches unchanged with
//! [`PartitionLog::append_replicated`] and cut a divergent tail with
//! [`PartitionLog::truncate_to`]; [`PartitionLog::end_offset_for_epoch`]
//! answers OffsetForLeaderEpoch.
//!
//! Files: `batch` (the 61-byte header: parse, validate, patch; public for
//! the produce path), `index` (sparse indexes), `segment` (I/O on one
//! segment), `recovery` (opening a directory), `retention` (deleting
//! segments, the checkpoint), `truncate` (cutting the tail), `epochs` (the
//! leader epoch cache), `validate` (the records inside a produced batch).

pub mod batch;
mod epochs;
mod index;
#[cfg(test)]
mod proptests;
mod recovery;
mod retention;
mod segment;
#[cfg(test)]
mod tests;
mod truncate;
pub mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use batch::BatchHeader;
pub use epochs::EpochEntry;
use segment::{MAX_SEGMENT_BYTES, Segment};

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
    /// A produced batch whose records disagree with its header
    /// ([`validate`]); `record` is the index of the offending record.
    #[error("invalid records in the batch at byte {batch_at}: {reason}")]
    InvalidRecord {
        batch_at: usize,
        record: Option<i32>,
        reason: String,
    },
    /// A batch is larger than max.message.bytes.
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    BatchTooLarge { size: usize, max: usize },
    /// Fetch or lookup outside [log start, log end]; a negative truncation
    /// offset; or a replicated batch that does not start where it must
    /// ([`PartitionLog::append_replicated`]: `offset` is the batch's base
    /// offset, `log_end` the offset it had to start at).
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
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
    dir: PathBuf,
    config: LogConfig,
    /// Sorted by base offset, never empty; the last one is the active segment.
    segments: Vec<Segment>,
    log_start_offset: i64,
    /// Leader epoch → start offset, trimmed to [log start, log end).
    epochs: epochs::LeaderEpochCache,
}

impl PartitionLog {
    /// Opens the log in `dir`, creating the directory if missing.
    /// With `recover` (the previous run did not shut down cleanly), scans the
    /// active segment batch by batch, truncates a torn or corrupt tail and
    /// rebuilds its indexes; without it, only sanity-checks indexes (a
    /// missing or damaged index is rebuilt either way).
    ///
    /// See [`recovery`] for the steps. Only the active segment is scanned on
    /// recovery: every older segment was fsynced (log and indexes) when it
    /// was rolled.
    pub fn open(dir: &Path, config: LogConfig, recover: bool) -> Result<Self, LogError> {
        recovery::open_log(dir, config, recover)
    }

    /// Validates `records` (one or more v2 batches back to back: magic 2,
    /// sane lengths, CRC32C, each batch ≤ max_message_bytes), then assigns
    /// offsets by patching baseOffset and partitionLeaderEpoch in place
    /// (and maxTimestamp when `log_append_time` is set: then every batch gets
    /// `now_ms` and the timestamp-type attribute bit; its CRC is recomputed),
    /// appends, updates indexes, rolls by size/age first when needed, and
    /// fsyncs under [`FsyncPolicy::Always`]. On failure nothing is appended.
    ///
    /// 1. Validate every batch: header, CRC32C, recordCount = lastOffsetDelta
    ///    + 1. The records inside a produced batch were checked before the
    ///    partition was locked ([`validate::validate_produced`]); a
    ///    follower's batches are the leader's and are not walked again.
    /// 2. Roll first when the active segment is non-empty and would exceed
    ///    segment.bytes (capped at i32::MAX), is older than segment.ms, or
    ///    the new offsets would not fit its u32 relative offsets.
    /// 3. Patch offsets, epoch and (LogAppendTime) timestamps in place.
    /// 4. Write, index, fsync if `Always`; any failure is undone. If
    ///    `leader_epoch` is above the latest cached epoch, the leader epoch
    ///    cache records it at the first new offset (checkpoint written
    ///    first, see [`PartitionLog::write_batches`]); an epoch at or below
    ///    the latest changes nothing there (callers pass the partition's
    ///    current leader epoch, which never goes down).
    pub fn append(
        &mut self,
        mut records: BytesMut,
        leader_epoch: i32,
        log_append_time: bool,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        let mut headers = self.validate_records(&records)?;
        let total = records.len() as u64;
        if total > MAX_SEGMENT_BYTES {
            return Err(LogError::BatchTooLarge {
                size: records.len(),
                max: MAX_SEGMENT_BYTES as usize,
            });
        }
        let count: i64 = headers
            .iter()
            .map(|(_, h)| i64::from(h.last_offset_delta) + 1)
            .sum();
        let base_offset = self.log_end_offset();
        let last_offset = base_offset
            .checked_add(count - 1)
            .ok_or_else(|| LogError::CorruptBatch("offsets would overflow i64".into()))?;
        if self.should_roll(total, last_offset, now_ms) {
            self.roll(now_ms)?;
        }
        if last_offset - self.active().base_offset > i64::from(i32::MAX) {
            return Err(LogError::CorruptBatch(format!(
                "one append of {count} offsets does not fit a segment"
            )));
        }

        let mut next = base_offset;
        for (at, h) in &mut headers {
            let Some(bytes) = records.get_mut(*at..*at + h.total_size()) else {
                return Err(LogError::CorruptBatch(format!(
                    "batch at byte {at} is truncated"
                )));
            };
            batch::set_base_offset(bytes, next);
            batch::set_partition_leader_epoch(bytes, leader_epoch);
            h.base_offset = next;
            h.partition_leader_epoch = leader_epoch;
            if log_append_time {
                batch::set_log_append_time(bytes, now_ms);
                h.max_timestamp = now_ms;
                h.attributes |= batch::ATTR_LOG_APPEND_TIME;
            }
            next = h.last_offset() + 1;
        }

        self.write_batches(&records, &headers, now_ms)?;
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            log_append_time_ms: if log_append_time { now_ms } else { -1 },
        })
    }

    /// Appends batches a follower fetched from its leader exactly as they
    /// are: base offsets, partitionLeaderEpoch, timestamps and CRCs stay as
    /// the leader wrote them, so the follower's batches are byte for byte
    /// the leader's. Rolls, indexes, the fsync policy and "on failure
    /// nothing is appended" are those of [`PartitionLog::append`]; the
    /// leader epoch cache learns every epoch that starts in `records`.
    /// Returns the offsets appended; `log_append_time_ms` is always -1.
    ///
    /// 1. Validate every batch as [`PartitionLog::append`] step 1 does: the
    ///    payload is whole batches only (magic 2, lengths, CRC32C,
    ///    recordCount), each at most max.message.bytes.
    /// 2. Skip the leading batches whose last offset is below the log end
    ///    offset: the leader returns the whole batch that contains the
    ///    fetch offset, so a fetch may repeat batches this log already has.
    ///    If nothing is left, nothing is written and the result is
    ///    `base_offset` = log end, `last_offset` = log end - 1.
    /// 3. The first remaining batch must start exactly at the log end and
    ///    every next one right after the previous one, else
    ///    `OffsetOutOfRange { offset: that batch's base offset, log_end: the
    ///    offset it had to start at, .. }`. `offset < log_end` is a batch
    ///    that straddles this log's end (the logs disagree on batch
    ///    boundaries: they diverge, truncate first); `offset > log_end` is a
    ///    gap.
    /// 4. partitionLeaderEpoch never goes down: a batch whose epoch is below
    ///    the latest cached epoch or an earlier batch's is `CorruptBatch`
    ///    (this log has a divergent tail: [`PartitionLog::truncate_to`] it
    ///    first, as OffsetForLeaderEpoch directs).
    /// 5. Roll, write, index and fsync as [`PartitionLog::append`] steps 2
    ///    and 4. segment.ms ages are measured with the wall clock.
    pub fn append_replicated(&mut self, records: BytesMut) -> Result<AppendInfo, LogError> {
        self.append_replicated_at(records, recovery::now_ms())
    }

    /// [`PartitionLog::append_replicated`] with an explicit clock.
    fn append_replicated_at(
        &mut self,
        mut records: BytesMut,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        let headers = self.validate_records(&records)?;
        let log_end = self.log_end_offset();
        let skip = headers
            .iter()
            .take_while(|(_, h)| h.last_offset() < log_end)
            .count();
        let Some(&(skip_bytes, _)) = headers.get(skip) else {
            return Ok(AppendInfo {
                base_offset: log_end,
                last_offset: log_end - 1,
                log_append_time_ms: -1,
            });
        };
        let mut expected = log_end;
        let mut epoch = self.epochs.latest_epoch();
        for (_, h) in &headers[skip..] {
            if h.base_offset != expected {
                return Err(LogError::OffsetOutOfRange {
                    offset: h.base_offset,
                    log_start: self.log_start_offset,
                    log_end: expected,
                });
            }
            if let Some(e) = epoch.filter(|e| h.partition_leader_epoch < *e) {
                return Err(LogError::CorruptBatch(format!(
                    "replicated batch at offset {} has leader epoch {} below {e}",
                    h.base_offset, h.partition_leader_epoch
                )));
            }
            epoch = Some(h.partition_leader_epoch);
            expected = h
                .base_offset
                .checked_add(i64::from(h.last_offset_delta) + 1)
                .ok_or_else(|| LogError::CorruptBatch("offsets would overflow i64".into()))?;
        }
        let last_offset = expected - 1;
        let data = records.split_off(skip_bytes);
        let headers: Vec<(usize, BatchHeader)> = headers[skip..]
            .iter()
            .map(|(at, h)| (at - skip_bytes, *h))
            .collect();
        let total = data.len() as u64;
        if total > MAX_SEGMENT_BYTES {
            return Err(LogError::BatchTooLarge {
                size: data.len(),
                max: MAX_SEGMENT_BYTES as usize,
            });
        }
        if self.should_roll(total, last_offset, now_ms) {
            self.roll(now_ms)?;
        }
        if last_offset - self.active().base_offset > i64::from(i32::MAX) {
            return Err(LogError::CorruptBatch(format!(
                "replicated offsets {log_end}..={last_offset} do not fit a segment"
            )));
        }
        self.write_batches(&data, &headers, now_ms)?;
        Ok(AppendInfo {
            base_offset: log_end,
            last_offset,
            log_append_time_ms: -1,
        })
    }

    /// Step 4 of [`PartitionLog::append`], shared with
    /// [`PartitionLog::append_replicated`]: `data` holds validated batches
    /// with their final offsets and epochs (`headers` are their positions
    /// in `data` and headers).
    ///
    /// 1. If an earlier checkpoint write failed, rewrite it first (or fail).
    /// 2. Assign every batch's epoch at its base offset in the leader epoch
    ///    cache; if that added an entry, persist the checkpoint *before* the
    ///    data (the checkpoint may run ahead of the log, never behind it).
    /// 3. Write, index, fsync if `Always` (see [`Segment::append`]).
    /// 4. If step 2 or 3 fails, restore the previous entries (and the
    ///    checkpoint, best effort: a failure leaves it to be rewritten by
    ///    step 1 next time, and open trims it to the log anyway).
    fn write_batches(
        &mut self,
        data: &[u8],
        headers: &[(usize, BatchHeader)],
        now_ms: i64,
    ) -> Result<(), LogError> {
        self.epochs.persist_if_dirty()?;
        let saved = self.epochs.entries().to_vec();
        let mut changed = false;
        for (_, h) in headers {
            changed |= self.epochs.assign(h.partition_leader_epoch, h.base_offset);
        }
        if changed && let Err(e) = self.epochs.persist() {
            self.epochs.restore(saved);
            return Err(e);
        }
        let interval = self.config.index_interval_bytes as u64;
        let sync = self.config.fsync == FsyncPolicy::Always;
        if let Err(e) = self
            .active_mut()
            .append(data, headers, interval, now_ms, sync)
        {
            if changed {
                self.epochs.restore(saved);
                if let Err(undo) = self.epochs.persist() {
                    tracing::error!(dir = %self.dir.display(), error = %undo, "could not restore the leader epoch checkpoint after a failed append");
                }
            }
            return Err(e);
        }
        Ok(())
    }

    /// Step 1 of [`PartitionLog::append`]: every batch's header, size and CRC.
    fn validate_records(&self, records: &[u8]) -> Result<Vec<(usize, BatchHeader)>, LogError> {
        let max = self.config.max_message_bytes;
        let mut headers = Vec::new();
        let mut at = 0;
        while let Some(rest) = records.get(at..).filter(|r| !r.is_empty()) {
            let h = BatchHeader::parse_at(rest, at)
                .map_err(|e| LogError::CorruptBatch(e.to_string()))?;
            if h.total_size() > max {
                return Err(LogError::BatchTooLarge {
                    size: h.total_size(),
                    max,
                });
            }
            let h = batch::validate_batch(rest, at).map_err(|e| match e {
                batch::BatchError::BadOffsets { .. } => LogError::InvalidRecord {
                    batch_at: at,
                    record: None,
                    reason: e.to_string(),
                },
                e => LogError::CorruptBatch(e.to_string()),
            })?;
            headers.push((at, h));
            at += h.total_size();
        }
        if headers.is_empty() {
            return Err(LogError::CorruptBatch(
                "no record batch in the payload".into(),
            ));
        }
        Ok(headers)
    }

    /// Step 2 of [`PartitionLog::append`].
    fn should_roll(&self, incoming_bytes: u64, last_offset: i64, now_ms: i64) -> bool {
        let active = self.active();
        if active.is_empty() {
            return false;
        }
        let max_bytes = self.config.segment_bytes.min(MAX_SEGMENT_BYTES);
        active.size + incoming_bytes > max_bytes
            || last_offset - active.base_offset > i64::from(i32::MAX)
            || active
                .rolling_ms
                .is_some_and(|t| now_ms.saturating_sub(t) >= self.config.segment_ms)
    }

    /// Closes the active segment (fsyncing its log and indexes) and starts
    /// a new empty one at the log end offset.
    fn roll(&mut self, now_ms: i64) -> Result<(), LogError> {
        self.active_mut().sync_all()?;
        let segment = Segment::create(&self.dir, self.log_end_offset(), now_ms)?;
        sync_dir(&self.dir)?;
        tracing::debug!(dir = %self.dir.display(), base_offset = segment.base_offset, "rolled a new segment");
        self.segments.push(segment);
        Ok(())
    }

    fn active(&self) -> &Segment {
        // `segments` is never empty (open creates one, retention keeps the active one).
        &self.segments[self.segments.len() - 1]
    }

    fn active_mut(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    /// Reads whole batches starting with the batch that contains `offset`,
    /// up to `max_bytes`, but always at least one whole batch when any exists
    /// (KIP-74), and none starting at or after `upper_bound` (the high
    /// watermark; the log end offset for a single node).
    /// `offset == log_end_offset` returns empty bytes; outside
    /// [log_start_offset, log_end_offset] is `OffsetOutOfRange`.
    ///
    /// 1. Range-check `offset`; at the log end return empty.
    /// 2. Pick the last segment whose base offset is ≤ `offset`.
    /// 3. Let it return its batches (see [`Segment::read`]); if it has none
    ///    at or after `offset` (a gap), the next segment's first batches.
    ///    A fetch never spans two segments, as in Kafka.
    pub fn read(&self, offset: i64, max_bytes: usize, upper_bound: i64) -> Result<Bytes, LogError> {
        let (log_start, log_end) = (self.log_start_offset, self.log_end_offset());
        if offset < log_start || offset > log_end {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start,
                log_end,
            });
        }
        if offset == log_end {
            return Ok(Bytes::new());
        }
        let first = self
            .segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        for segment in self.segments.iter().skip(first) {
            if let Some(bytes) = segment.read(offset, max_bytes, upper_bound)? {
                return Ok(bytes);
            }
        }
        Ok(Bytes::new())
    }

    /// The first offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// The offset the next appended record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }

    /// Bytes of all segment files.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// Earliest offset whose record timestamp is ≥ `timestamp` (record
    /// precision, decoding only the one batch that holds it), or None when
    /// every record is older.
    ///
    /// 1. Skip segments whose max timestamp is below `timestamp`: the first
    ///    segment that reaches it holds the answer.
    /// 2. Search it (see [`Segment::find_timestamp`]).
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<TimestampOffset>, LogError> {
        for segment in &self.segments {
            if segment.next_offset <= self.log_start_offset || segment.max_timestamp < timestamp {
                continue;
            }
            if let Some(hit) = segment.find_timestamp(timestamp, self.log_start_offset)? {
                return Ok(Some(hit));
            }
        }
        Ok(None)
    }

    /// The offset and timestamp of the record with the largest timestamp
    /// (ListOffsets MAX_TIMESTAMP), or None when empty.
    ///
    /// The largest segment max timestamp M is the largest record timestamp;
    /// its earliest record is `offset_for_timestamp(M)`. None also when no
    /// record carries a timestamp (all -1).
    pub fn max_timestamp(&self) -> Result<Option<TimestampOffset>, LogError> {
        let max = self
            .segments
            .iter()
            .filter(|s| s.next_offset > self.log_start_offset && !s.is_empty())
            .map(|s| s.max_timestamp)
            .max();
        match max {
            Some(m) if m >= 0 => self.offset_for_timestamp(m),
            _ => Ok(None),
        }
    }

    /// Deletes whole segments past retention.ms (by their newest timestamp)
    /// or while the log exceeds retention.bytes, oldest first; an expired
    /// active segment is rolled first so it can go too. Advances the log
    /// start offset. Returns the number of segments deleted.
    ///
    /// See [`retention`] for the steps.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<usize, LogError> {
        retention::enforce(self, now_ms)
    }

    /// Advances the log start offset to `offset` (Kafka's DeleteRecords;
    /// also used to drop superseded records of internal topics) and returns
    /// the new log start offset (the low watermark). Reads below it become
    /// `OffsetOutOfRange`; segments wholly below it are deleted, the records
    /// below it in a segment that straddles it stay on disk until that
    /// segment is deleted. `offset` beyond the log end is
    /// `OffsetOutOfRange`; at or below the current log start it is a no-op.
    ///
    /// Not part of the original API: added for the group offsets store.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64, LogError> {
        retention::delete_records_before(self, offset)
    }

    /// Forces appended data and indexes to stable storage.
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.epochs.persist_if_dirty()?;
        // Older segments were fsynced when they were rolled.
        self.active_mut().sync_all()
    }

    /// Removes every record at or after `offset` (KIP-101: a follower cuts
    /// the tail where its log diverges from the leader's) and returns the
    /// new log end offset. Whole batches only: when `offset` falls inside a
    /// batch, that whole batch goes too, so the new log end may be below
    /// `offset` (the follower then fetches from the returned offset).
    /// Indexes, the log start offset and the leader epoch cache (entries
    /// starting at or after the new log end removed) follow.
    ///
    /// - `offset` < 0: `OffsetOutOfRange`, nothing changes.
    /// - `offset` ≥ log end: nothing is removed, but leader epoch entries
    ///   that start at or after the log end (an epoch assigned by
    ///   [`PartitionLog::assign_leader_epoch`] that never got a record) are
    ///   dropped, as Kafka does, except on an empty log (there the entry at
    ///   its end may be the latest epoch that retention kept); returns the
    ///   log end.
    /// - `offset` below the log start offset (Kafka's behaviour, not an
    ///   error): everything goes; below the first segment the log restarts
    ///   empty at `offset` (log start = log end = `offset`), otherwise as
    ///   any cut, and the log start offset drops to the new log end.
    ///
    /// Durable when it returns (the cut segment and the directory are
    /// fsynced whatever the [`FsyncPolicy`]), and crash-safe at every step:
    /// see [`truncate`]. After a storage error the in-memory state may be
    /// stale: reopen the log.
    pub fn truncate_to(&mut self, offset: i64) -> Result<i64, LogError> {
        truncate::truncate_to(self, offset)
    }

    /// Replaces the whole log with an empty one starting at `offset`, above
    /// the log end: a follower whose leader has deleted (retention) every
    /// record this log lacks restarts at the leader's log start (Kafka's
    /// truncateFullyAndStartAt). Offsets at or below the log end are
    /// `OffsetOutOfRange`. A crash midway leaves the old log (or an empty
    /// one at `offset`) and the follower simply does this again.
    pub fn restart_at(&mut self, offset: i64) -> Result<i64, LogError> {
        if offset <= self.log_end_offset() {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                log_end: self.log_end_offset(),
            });
        }
        truncate::truncate_fully(self, offset)
    }

    /// The leader epoch cache: where each leader epoch starts, ascending in
    /// both fields. The first entry starts at the log start offset or
    /// later, every entry below the log end offset, except one at the log
    /// end: just assigned by [`PartitionLog::assign_leader_epoch`], or the
    /// latest epoch of a log that retention emptied.
    pub fn leader_epochs(&self) -> &[EpochEntry] {
        self.epochs.entries()
    }

    /// The highest leader epoch that starts in this log, None when no batch
    /// carries an epoch (≥ 0).
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// OffsetForLeaderEpoch: `(epoch, end offset)` where `epoch` is the
    /// largest epoch in this log that is ≤ `epoch` and the end offset is
    /// the start of the next higher epoch (KIP-279), or the log end offset
    /// for the latest epoch. None stands for Kafka's (-1, -1): `epoch`
    /// negative, above the latest epoch, or no epochs at all. Below the
    /// first cached epoch Kafka answers `(epoch, first epoch's start
    /// offset)` and so does this. See [`epochs`] for the rules.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// Records that leader epoch `epoch` starts at the log end offset,
    /// before any of its records is written: call it when this replica
    /// becomes the leader for `epoch` (Kafka does), so that
    /// OffsetForLeaderEpoch for an older epoch answers the new leader's log
    /// end at its election. Persisted before returning; no-op unless
    /// `epoch` is above the latest epoch. Unless a record of it is written
    /// first, the entry is dropped again by [`PartitionLog::truncate_to`]
    /// at or past the log end and by a reopen (as in Kafka; on an empty log
    /// it stays, see [`PartitionLog::truncate_to`]).
    pub fn assign_leader_epoch(&mut self, epoch: i32) -> Result<(), LogError> {
        self.epochs.persist_if_dirty()?;
        let saved = self.epochs.entries().to_vec();
        if self.epochs.assign(epoch, self.log_end_offset())
            && let Err(e) = self.epochs.persist()
        {
            self.epochs.restore(saved);
            return Err(e);
        }
        Ok(())
    }

    /// Applies changed settings (topic config change); takes effect on the next append/roll.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Flushes and closes cleanly (indexes trimmed to their used size).
    ///
    /// Indexes are never preallocated, so there is nothing to trim.
    pub fn close(mut self) -> Result<(), LogError> {
        self.flush()
    }

    /// Removes the partition directory and everything in it.
    pub fn delete(self) -> Result<(), LogError> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir).map_err(segment::storage("deleting", &dir))
    }
}

/// fsyncs a directory so file creations, renames and deletions in it are durable.
fn sync_dir(dir: &Path) -> Result<(), LogError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(segment::storage("syncing", dir))
}
