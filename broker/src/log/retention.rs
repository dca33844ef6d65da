//! Retention: deleting whole segments by age, by partition size and below
//! an explicitly advanced log start offset (DeleteRecords), and the
//! `log-start-offset` checkpoint that makes the log start offset survive a
//! restart. Whenever the log start offset advances, the leader epoch cache
//! is trimmed to it (see [`trim_epochs`]).
//!
//! Only whole segments are deleted; a log start offset set by
//! `delete_records_before` may fall inside a segment, whose older records
//! then stay on disk but unreadable until the segment can go. Compaction is
//! not implemented.

use std::io::Write;
use std::path::Path;

use super::segment::{Segment, storage};
use super::{LogError, PartitionLog, sync_dir};

/// File in the partition directory holding the log start offset (decimal).
pub(super) const LOG_START_CHECKPOINT: &str = "log-start-offset";

/// Enforces retention on `log`.
///
/// 1. Below the log start (after `delete_records_before`): take the oldest
///    non-active segments that end at or below the log start offset.
/// 2. By time (retention.ms ≥ 0): continue with the run of segments whose
///    newest timestamp is more than retention.ms before `now_ms` (no record
///    timestamp: last append time); stop at the first that is not. If the
///    run covers the non-empty active segment, roll it first so that it can
///    be deleted and appends continue at the old end.
/// 3. By size (retention.bytes ≥ 0): continue from there and take the
///    oldest non-active segments while the log is larger than
///    retention.bytes. (Kafka only deletes a segment if the log stays at
///    least retention.bytes; here the log ends up at most that size,
///    as the configuration doc says. The active segment is never deleted
///    for size.)
/// 4. Delete the taken segments, see [`delete_oldest`].
pub(super) fn enforce(log: &mut PartitionLog, now_ms: i64) -> Result<usize, LogError> {
    let last = log.segments.len() - 1;
    let log_start = log.log_start_offset;
    let mut n = log
        .segments
        .iter()
        .take(last)
        .take_while(|s| s.next_offset <= log_start)
        .count();
    let retention_ms = log.config.retention_ms;
    if retention_ms >= 0 {
        n += log
            .segments
            .iter()
            .enumerate()
            .skip(n)
            .take_while(|(i, s)| {
                if s.is_empty() {
                    *i != last
                } else {
                    now_ms.saturating_sub(s.largest_timestamp()) > retention_ms
                }
            })
            .count();
        if n == log.segments.len() {
            log.roll(now_ms)?;
        }
    }
    if let Ok(limit) = u64::try_from(log.config.retention_bytes) {
        let active = log.segments.len() - 1;
        let mut total: u64 = log.segments.iter().skip(n).map(|s| s.size).sum();
        while n < active && total > limit {
            total -= log.segments[n].size;
            n += 1;
        }
    }
    delete_oldest(log, n)
}

/// Advances the log start offset to `offset` (DeleteRecords, or compaction
/// of an internal topic) and returns the new log start offset.
///
/// 1. `offset` beyond the log end is out of range; at or below the current
///    log start nothing changes.
/// 2. Persist and adopt the new log start: reads below it fail from now on,
///    even when it falls inside a segment or a batch.
/// 3. Delete the non-active segments that end at or below it.
/// 4. Trim the leader epoch cache to the new log start ([`trim_epochs`]).
pub(super) fn delete_records_before(log: &mut PartitionLog, offset: i64) -> Result<i64, LogError> {
    let (log_start, log_end) = (log.log_start_offset, log.log_end_offset());
    if offset > log_end || offset < 0 {
        return Err(LogError::OffsetOutOfRange {
            offset,
            log_start,
            log_end,
        });
    }
    if offset <= log_start {
        return Ok(log_start);
    }
    write_log_start_checkpoint(&log.dir, offset)?;
    log.log_start_offset = offset;
    let last = log.segments.len() - 1;
    let n = log
        .segments
        .iter()
        .take(last)
        .take_while(|s| s.next_offset <= offset)
        .count();
    delete_oldest(log, n)?;
    trim_epochs(log)?;
    Ok(offset)
}

/// Deletes the `n` oldest segments (never all of them).
///
/// 1. The new log start offset is the base of the first kept segment (or
///    the current one if larger). Persist it (write temp, fsync, rename,
///    fsync dir) *before* deleting, so a crash never exposes a start below
///    data that is already gone; leftovers below it are removed at the next
///    open.
/// 2. Delete the segments' files, oldest first.
/// 3. Trim the leader epoch cache to the new log start ([`trim_epochs`]).
fn delete_oldest(log: &mut PartitionLog, n: usize) -> Result<usize, LogError> {
    if n == 0 || n >= log.segments.len() {
        return Ok(0);
    }
    let new_start = log.segments[n].base_offset.max(log.log_start_offset);
    if new_start > log.log_start_offset {
        write_log_start_checkpoint(&log.dir, new_start)?;
        log.log_start_offset = new_start;
    }
    let doomed: Vec<Segment> = log.segments.drain(..n).collect();
    for segment in doomed {
        tracing::info!(segment = %segment.log_path().display(), log_start = new_start, "deleting segment");
        segment.delete_files()?;
    }
    sync_dir(&log.dir)?;
    trim_epochs(log)?;
    Ok(n)
}

/// Collapses the leader epoch entries at or below the log start offset into
/// one starting at the log start (Kafka's truncateFromStart) and persists
/// the checkpoint if that changed it. Done after the log start checkpoint:
/// a crash in between is repaired at open, which trims the same way.
fn trim_epochs(log: &mut PartitionLog) -> Result<(), LogError> {
    if log.epochs.truncate_from_start(log.log_start_offset) {
        log.epochs.persist()?;
    }
    Ok(())
}

/// Reads the log start checkpoint; None when absent or unreadable as a
/// number (then the first segment's base is the log start).
pub(super) fn read_log_start_checkpoint(dir: &Path) -> Result<Option<i64>, LogError> {
    let path = dir.join(LOG_START_CHECKPOINT);
    match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<i64>() {
            Ok(v) if v >= 0 => Ok(Some(v)),
            _ => {
                tracing::warn!(file = %path.display(), "ignoring an unreadable log start checkpoint");
                Ok(None)
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(storage("reading", &path)(e)),
    }
}

/// Atomically replaces the log start checkpoint (temp file, fsync, rename,
/// fsync of the directory).
pub(super) fn write_log_start_checkpoint(dir: &Path, offset: i64) -> Result<(), LogError> {
    let tmp = dir.join(format!("{LOG_START_CHECKPOINT}.tmp"));
    let path = dir.join(LOG_START_CHECKPOINT);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{offset}")?;
        f.sync_all()
    };
    write().map_err(storage("writing", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(storage("renaming", &tmp))?;
    sync_dir(dir)
}
