//! One partition replica hosted here: its log and its idempotent producer
//! state, kept consistent under one lock order (log, then producers).
//!
//! Producer state survives restarts: [`Partition::snapshot_producers`]
//! writes it with the offset it covers to `producer-state.snapshot` in the
//! partition directory (at shutdown and on the retention timer), and
//! [`Partition::open`] loads that snapshot and replays the batch headers
//! after it. Without a usable snapshot the whole log is replayed.
//!
//! As a follower the partition appends the leader's batches with
//! [`Partition::append_replicated`], which records idempotent batches in the
//! producer state too (a follower that becomes leader still deduplicates
//! retries), and cuts a divergent tail with [`Partition::truncate_to`],
//! which rebuilds the producer state from what is left.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::BytesMut;
use kafka_protocol::ResponseError;

use crate::idempotence::{Check, ProducerStates, Snapshot};
use crate::log::batch::{self, BatchHeader};
use crate::log::{AppendInfo, LogConfig, LogError, PartitionLog};
use crate::replication::replica::Replica;

const PRODUCER_SNAPSHOT: &str = "producer-state.snapshot";
/// Idle producers are forgotten after this long (Kafka's producer.id.expiration.ms).
pub const PRODUCER_EXPIRATION_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("idempotent producer check failed: {0:?}")]
    Producer(ResponseError),
    #[error("this broker does not lead the partition")]
    NotLeader,
}

pub struct Partition {
    pub topic: String,
    pub index: i32,
    dir: PathBuf,
    log: Mutex<PartitionLog>,
    producers: Mutex<ProducerStates>,
    /// Set at shutdown after the final flush: later appends are refused.
    closed: AtomicBool,
    /// Leader or follower, the high watermark, acks=all waiters.
    pub replica: Replica,
}

fn storage(action: &'static str, path: &Path, source: std::io::Error) -> LogError {
    LogError::Storage {
        action,
        path: path.to_path_buf(),
        source,
    }
}

impl Partition {
    /// Opens the log and rebuilds the producer state (see the module doc).
    pub fn open(
        topic: &str,
        index: i32,
        dir: &Path,
        config: LogConfig,
        recover: bool,
    ) -> Result<Self, LogError> {
        let log = PartitionLog::open(dir, config, recover)?;
        let states = load_producers(&log, dir)?;
        Ok(Self {
            topic: topic.to_string(),
            index,
            dir: dir.to_path_buf(),
            log: Mutex::new(log),
            producers: Mutex::new(states),
            closed: false.into(),
            replica: Replica::default(),
        })
    }

    /// The log, even if a panicking holder poisoned the lock: the log's own
    /// invariants do not depend on the panicking caller.
    pub fn log(&self) -> MutexGuard<'_, PartitionLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn producers(&self) -> MutexGuard<'_, ProducerStates> {
        self.producers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The log, locked for an append, and the headers of the batches to
    /// append; refused after [`Partition::close`].
    fn lock_for_append(
        &self,
        records: &[u8],
    ) -> Result<(MutexGuard<'_, PartitionLog>, Vec<BatchHeader>), AppendError> {
        let log = self.log();
        if self.closed.load(Ordering::Acquire) {
            let e = std::io::Error::other("the broker is shutting down");
            return Err(storage("appending to", &self.dir, e).into());
        }
        let headers = batch::batches(records)
            .filter_map(|b| b.ok().map(|(_, h)| h))
            .collect();
        Ok((log, headers))
    }

    /// Checks idempotent batches, appends them stamped with this replica's
    /// current leader epoch, and records them. Returns the append and the
    /// log end offset after it. A retried batch that was already written is
    /// acknowledged with its original offsets.
    pub fn append(
        &self,
        records: BytesMut,
        log_append_time: bool,
        now_ms: i64,
    ) -> Result<(AppendInfo, i64), AppendError> {
        let (mut log, headers) = self.lock_for_append(&records)?;
        let mut producers = self.producers();
        if let [only] = headers.as_slice() {
            match producers.check(only) {
                Check::Append => {}
                Check::Duplicate {
                    base_offset,
                    last_offset,
                } => {
                    tracing::debug!(topic = %self.topic, partition = self.index, producer = only.producer_id, base_offset, "duplicate batch acknowledged");
                    return Ok((
                        AppendInfo {
                            base_offset,
                            last_offset,
                            log_append_time_ms: -1,
                        },
                        log.log_end_offset(),
                    ));
                }
                Check::Reject(e) => return Err(AppendError::Producer(e)),
            }
        } else if headers.iter().any(|h| h.producer_id >= 0) {
            // Clients send one batch per partition; several idempotent ones must all be new and in order.
            let mut scratch = producers.clone();
            for h in &headers {
                match scratch.check(h) {
                    Check::Append => scratch.record(h, now_ms),
                    Check::Duplicate { .. } => {
                        return Err(AppendError::Producer(
                            ResponseError::OutOfOrderSequenceNumber,
                        ));
                    }
                    Check::Reject(e) => return Err(AppendError::Producer(e)),
                }
            }
        }
        let epoch = self.replica.view().epoch.max(0);
        let info = log.append(records, epoch, log_append_time, now_ms)?;
        let mut next = info.base_offset;
        for h in headers {
            let placed = BatchHeader {
                base_offset: next,
                ..h
            };
            next = placed.last_offset() + 1;
            producers.record(&placed, now_ms);
        }
        Ok((info, log.log_end_offset()))
    }

    /// Appends batches fetched from the leader exactly as the leader wrote
    /// them (see [`PartitionLog::append_replicated`]: leading batches this
    /// log already has are skipped, the rest must start at its log end) and
    /// records every appended batch in the producer state without checking
    /// it (the leader did), so that duplicates of them are recognised once
    /// this replica leads. Returns the append and the log end offset after
    /// it. Refused after [`Partition::close`].
    pub fn append_replicated(&self, records: BytesMut) -> Result<(AppendInfo, i64), AppendError> {
        let (mut log, headers) = self.lock_for_append(&records)?;
        let info = log.append_replicated(records)?;
        let now_ms = crate::broker::now_ms();
        let mut producers = self.producers();
        for h in headers
            .iter()
            .filter(|h| h.base_offset >= info.base_offset && h.last_offset() <= info.last_offset)
        {
            producers.record(h, now_ms);
        }
        Ok((info, log.log_end_offset()))
    }

    /// The log, locked to cut it; refused after [`Partition::close`].
    fn lock_for_truncation(&self) -> Result<MutexGuard<'_, PartitionLog>, LogError> {
        let log = self.log();
        if self.closed.load(Ordering::Acquire) {
            return Err(storage(
                "truncating",
                &self.dir,
                std::io::Error::other("the broker is shutting down"),
            ));
        }
        Ok(log)
    }

    /// Removes every record at or after `offset` (see
    /// [`PartitionLog::truncate_to`]: whole batches, so the new log end may
    /// be below `offset`) and rebuilds the producer state from what is
    /// left. Returns the new log end offset. Refused after
    /// [`Partition::close`].
    ///
    /// 1. Remove the producer snapshot if it may describe removed batches:
    ///    its offset is above `offset`, or `offset` is below the log start
    ///    (then the whole log goes, and Kafka forgets its producers too);
    ///    fsync the directory. This comes first so that no crash leaves a
    ///    snapshot of removed batches, which a later open would load once
    ///    the log grew past its offset again.
    /// 2. Truncate the log.
    /// 3. Rebuild the producer state as [`Partition::open`] does: the
    ///    snapshot if it lies within [log start, log end], else empty; then
    ///    replay the batch headers after it.
    pub fn truncate_to(&self, offset: i64) -> Result<i64, LogError> {
        let mut log = self.lock_for_truncation()?;
        let before = (log.log_start_offset(), log.log_end_offset());
        if offset >= 0 && offset < before.1 {
            let path = self.dir.join(PRODUCER_SNAPSHOT);
            let stale =
                offset < before.0 || read_snapshot(&self.dir).is_none_or(|s| s.offset > offset);
            if stale && path.exists() {
                fs::remove_file(&path).map_err(|e| storage("removing", &path, e))?;
                fs::File::open(&self.dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| storage("syncing", &self.dir, e))?;
            }
        }
        let new_end = log.truncate_to(offset)?;
        if (log.log_start_offset(), log.log_end_offset()) != before {
            let states = load_producers(&log, &self.dir)?;
            *self.producers() = states;
        }
        Ok(new_end)
    }

    /// Restarts the log empty at `offset` (above its end, see
    /// [`PartitionLog::restart_at`]) and forgets every producer, as Kafka
    /// does when a follower starts over at its leader's log start.
    pub fn restart_at(&self, offset: i64) -> Result<i64, LogError> {
        let mut log = self.lock_for_truncation()?;
        let path = self.dir.join(PRODUCER_SNAPSHOT);
        if path.exists() {
            fs::remove_file(&path).map_err(|e| storage("removing", &path, e))?;
        }
        let start = log.restart_at(offset)?;
        *self.producers() = ProducerStates::default();
        Ok(start)
    }

    /// Writes the producer state as of the log end offset (atomically: a
    /// temporary file renamed over the old one) and expires idle producers.
    pub fn snapshot_producers(&self, now_ms: i64) -> Result<(), LogError> {
        let log = self.log();
        let mut producers = self.producers();
        producers.expire(now_ms - PRODUCER_EXPIRATION_MS);
        let path = self.dir.join(PRODUCER_SNAPSHOT);
        if producers.is_empty() {
            return match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(storage("removing", &path, e))
                }
                _ => Ok(()),
            };
        }
        let snapshot = Snapshot {
            offset: log.log_end_offset(),
            states: producers.clone(),
        };
        drop(producers);
        drop(log);
        let bytes = serde_json::to_vec(&snapshot)
            .map_err(|e| storage("encoding", &path, std::io::Error::other(e)))?;
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, bytes).map_err(|e| storage("writing", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| storage("renaming", &tmp, e))
    }

    /// The final flush at shutdown; refuses appends afterwards.
    pub fn close(&self) -> Result<(), LogError> {
        let mut log = self.log();
        self.closed.store(true, Ordering::Release);
        log.flush()?;
        drop(log);
        self.snapshot_producers(crate::broker::now_ms())
    }
}

/// The producer snapshot in `dir`, None when missing or unreadable.
fn read_snapshot(dir: &Path) -> Option<Snapshot> {
    fs::read(dir.join(PRODUCER_SNAPSHOT))
        .ok()
        .and_then(|b| serde_json::from_slice::<Snapshot>(&b).ok())
}

/// The producer state of `log`: the snapshot in `dir` if its offset lies
/// within [log start, log end], else empty, then the batch headers from
/// there to the log end replayed into it.
fn load_producers(log: &PartitionLog, dir: &Path) -> Result<ProducerStates, LogError> {
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    let snapshot = read_snapshot(dir).filter(|s| s.offset >= start && s.offset <= end);
    let (mut states, from) = match snapshot {
        Some(s) => (s.states, s.offset),
        None => (ProducerStates::default(), start),
    };
    replay_headers(log, from, end, &mut |h| {
        states.record(h, crate::broker::now_ms())
    })?;
    Ok(states)
}

/// Calls `f` with the header of every batch in [from, to), offsets as stored.
fn replay_headers(
    log: &PartitionLog,
    from: i64,
    to: i64,
    f: &mut dyn FnMut(&BatchHeader),
) -> Result<(), LogError> {
    let mut offset = from;
    while offset < to {
        let chunk = log.read(offset, 1 << 20, to)?;
        if chunk.is_empty() {
            break;
        }
        for (_, h) in batch::batches(&chunk).flatten() {
            // The first batch may start before `from`.
            if h.last_offset() >= from {
                f(&h);
            }
            offset = offset.max(h.last_offset() + 1);
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bytes::Bytes;
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    use super::*;

    /// One idempotent batch of `n` records from producer `pid` (epoch 0)
    /// starting at sequence `seq`.
    fn idempotent(pid: i64, seq: i32, n: usize) -> BytesMut {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: pid,
                producer_epoch: 0,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: seq + i as i32,
                timestamp: 1,
                key: None,
                value: Some(Bytes::from(format!("{pid}/{}", seq + i as i32))),
                headers: IndexMap::new(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf
    }

    fn open(dir: &Path) -> Partition {
        Partition::open("t", 0, dir, LogConfig::default(), false).unwrap()
    }

    /// Copies the leader's log into the follower, fetching from its end.
    fn replicate(leader: &Partition, follower: &Partition) {
        loop {
            let from = follower.log().log_end_offset();
            let end = leader.log().log_end_offset();
            if from >= end {
                return;
            }
            let bytes = leader.log().read(from, 1 << 20, end).unwrap();
            let (_, leo) = follower
                .append_replicated(BytesMut::from(&bytes[..]))
                .unwrap();
            assert!(leo > from);
        }
    }

    #[test]
    fn a_follower_that_becomes_leader_deduplicates_retries_it_replicated() {
        let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let leader = open(ld.path());
        let follower = open(fd.path());
        leader.append(idempotent(-1, -1, 2), false, 1).unwrap(); // offsets 0-1
        let (first, _) = leader.append(idempotent(7, 0, 3), false, 1).unwrap(); // 2-4
        let (second, _) = leader.append(idempotent(7, 3, 2), false, 1).unwrap(); // 5-6
        assert_eq!((first.base_offset, second.base_offset), (2, 5));
        replicate(&leader, &follower);
        assert_eq!(follower.log().log_end_offset(), 7);

        // The follower is now the leader: the producer retries both batches.
        for (retry, original) in [(idempotent(7, 0, 3), first), (idempotent(7, 3, 2), second)] {
            let (info, leo) = follower.append(retry, false, 2).unwrap();
            assert_eq!(
                (info.base_offset, info.last_offset),
                (original.base_offset, original.last_offset)
            );
            assert_eq!(leo, 7, "nothing written");
        }
        assert!(matches!(
            follower.append(idempotent(7, 9, 1), false, 2),
            Err(AppendError::Producer(
                ResponseError::OutOfOrderSequenceNumber
            ))
        ));
        let (next, _) = follower.append(idempotent(7, 5, 1), false, 2).unwrap();
        assert_eq!(next.base_offset, 7);

        // Re-appending what the follower already has is skipped, not recorded twice.
        let again = leader.log().read(0, 1 << 20, 7).unwrap();
        let (info, leo) = follower
            .append_replicated(BytesMut::from(&again[..]))
            .unwrap();
        assert_eq!((info.base_offset, info.last_offset, leo), (8, 7, 8));

        // And after a restart (from the snapshot, then from the log alone).
        follower.close().unwrap();
        drop(follower);
        for drop_snapshot in [false, true] {
            if drop_snapshot {
                let _ = fs::remove_file(fd.path().join(PRODUCER_SNAPSHOT));
            }
            let reopened = open(fd.path());
            let (info, leo) = reopened.append(idempotent(7, 3, 2), false, 3).unwrap();
            assert_eq!((info.base_offset, leo), (5, 8));
        }
    }

    #[test]
    fn truncation_rebuilds_the_producer_state_from_what_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path());
        p.append(idempotent(7, 0, 3), false, 1).unwrap(); // 0-2
        p.append(idempotent(7, 3, 2), false, 1).unwrap(); // 3-4
        p.append(idempotent(8, 0, 1), false, 1).unwrap(); // 5
        // A snapshot covering the batches about to be removed.
        p.snapshot_producers(1).unwrap();
        assert!(dir.path().join(PRODUCER_SNAPSHOT).exists());

        assert_eq!(p.truncate_to(4).unwrap(), 3, "inside batch 3-4");
        assert!(
            !dir.path().join(PRODUCER_SNAPSHOT).exists(),
            "stale snapshot removed"
        );
        // Producer 7's second batch is gone: its retry is appended anew,
        // producer 8 is unknown again.
        assert!(matches!(
            p.append(idempotent(8, 1, 1), false, 2),
            Err(AppendError::Producer(ResponseError::UnknownProducerId))
        ));
        let (info, leo) = p.append(idempotent(7, 3, 2), false, 2).unwrap();
        assert_eq!((info.base_offset, leo), (3, 5));
        let (dup, _) = p.append(idempotent(7, 0, 3), false, 2).unwrap();
        assert_eq!(dup.base_offset, 0, "the kept batch is still known");

        // A snapshot at or below the cut is kept and used.
        p.snapshot_producers(2).unwrap(); // offset 5
        p.append(idempotent(9, 0, 1), false, 2).unwrap(); // 5
        assert_eq!(p.truncate_to(5).unwrap(), 5);
        assert!(dir.path().join(PRODUCER_SNAPSHOT).exists());
        let (dup, _) = p.append(idempotent(7, 3, 2), false, 3).unwrap();
        assert_eq!(dup.base_offset, 3);
        assert!(matches!(
            p.append(idempotent(9, 1, 1), false, 3),
            Err(AppendError::Producer(ResponseError::UnknownProducerId))
        ));

        // Below the log start everything goes, producers too.
        p.log().delete_records_before(4).unwrap();
        assert_eq!(p.truncate_to(1).unwrap(), 0);
        assert_eq!(p.log().log_end_offset(), 0);
        assert!(!dir.path().join(PRODUCER_SNAPSHOT).exists());
        let (info, _) = p.append(idempotent(7, 0, 3), false, 4).unwrap();
        assert_eq!(info.base_offset, 0, "appended, not a duplicate");
        p.close().unwrap();
        assert!(matches!(p.truncate_to(0), Err(LogError::Storage { .. })));
    }
}
