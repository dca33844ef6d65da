//! One partition replica hosted here: its log and its idempotent producer
//! state, kept consistent under one lock order (log, then producers).
//!
//! Producer state survives restarts: [`Partition::snapshot_producers`]
//! writes it with the offset it covers to `producer-state.snapshot` in the
//! partition directory (at shutdown and on the retention timer), and
//! [`Partition::open`] loads that snapshot and replays the batch headers
//! after it. Without a usable snapshot the whole log is replayed.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::BytesMut;
use kafka_protocol::ResponseError;

use crate::idempotence::{Check, ProducerStates, Snapshot};
use crate::log::batch::{self, BatchHeader};
use crate::log::{AppendInfo, LogConfig, LogError, PartitionLog};

const PRODUCER_SNAPSHOT: &str = "producer-state.snapshot";
/// Idle producers are forgotten after this long (Kafka's producer.id.expiration.ms).
pub const PRODUCER_EXPIRATION_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("idempotent producer check failed: {0:?}")]
    Producer(ResponseError),
}

pub struct Partition {
    pub topic: String,
    pub index: i32,
    dir: PathBuf,
    log: Mutex<PartitionLog>,
    producers: Mutex<ProducerStates>,
    /// Set at shutdown after the final flush: later appends are refused.
    closed: AtomicBool,
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
        let snapshot_path = dir.join(PRODUCER_SNAPSHOT);
        let (start, end) = (log.log_start_offset(), log.log_end_offset());
        let snapshot = fs::read(&snapshot_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Snapshot>(&b).ok())
            .filter(|s| s.offset >= start && s.offset <= end);
        let (mut states, from) = match snapshot {
            Some(s) => (s.states, s.offset),
            None => (ProducerStates::default(), start),
        };
        replay_headers(&log, from, end, &mut |h| {
            states.record(h, crate::broker::now_ms())
        })?;
        Ok(Self {
            topic: topic.to_string(),
            index,
            dir: dir.to_path_buf(),
            log: Mutex::new(log),
            producers: Mutex::new(states),
            closed: false.into(),
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

    /// Checks idempotent batches, appends, and records them. Returns the
    /// append and the log end offset after it. A retried batch that was
    /// already written is acknowledged with its original offsets.
    pub fn append(
        &self,
        records: BytesMut,
        log_append_time: bool,
        now_ms: i64,
    ) -> Result<(AppendInfo, i64), AppendError> {
        let mut log = self.log();
        if self.closed.load(Ordering::Acquire) {
            return Err(storage(
                "appending to",
                &self.dir,
                std::io::Error::other("the broker is shutting down"),
            )
            .into());
        }
        let headers: Vec<BatchHeader> = batch::batches(&records)
            .filter_map(|b| b.ok().map(|(_, h)| h))
            .collect();
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
        let info = log.append(records, 0, log_append_time, now_ms)?;
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
