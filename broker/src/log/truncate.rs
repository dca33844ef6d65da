//! Truncation: cutting the tail of a partition log at a batch boundary
//! (KIP-101: a follower removes the records where its log diverges from
//! its leader's).
//!
//! Each step leaves a directory that [`super::recovery`] opens as a
//! consistent log, so a crash at any point is safe: the log is then either
//! the old one, a prefix of it, or the truncated one, and the follower
//! repeats the truncation (it asks OffsetForLeaderEpoch again after every
//! restart). The rules that make this hold:
//! - segments are deleted newest first, so the survivors are a prefix;
//! - the cut segment's log file is truncated and fsynced before its
//!   indexes, whose stale entries then point past the end of the file and
//!   fail the sanity check at open (rebuilt);
//! - the log start checkpoint is lowered only after the data is gone (a
//!   crash before leaves a log start above the log end, which open turns
//!   into an empty log there);
//! - the leader epoch checkpoint is trimmed last (open trims it to the log
//!   end itself).

use super::recovery::now_ms;
use super::retention::write_log_start_checkpoint;
use super::segment::Segment;
use super::{LogError, PartitionLog, sync_dir};

/// [`PartitionLog::truncate_to`].
///
/// 1. `offset` < 0 is out of range. At or past the log end nothing is cut;
///    only the leader epoch entries are trimmed to the log (see
///    [`super::epochs::LeaderEpochCache::trim_to_log`]: those starting at
///    or after the log end go, but on an empty log one at its end stays),
///    exactly as a reopen would.
/// 2. Below the first segment's base: see [`truncate_fully`].
/// 3. Delete the segments whose base offset is above `offset`, newest
///    first; fsync the directory. The last remaining segment holds
///    `offset` (or ends before it).
/// 4. In that segment find the batch holding `offset` (the first whose last
///    offset is ≥ `offset`) and cut the files at its start (see
///    [`Segment::truncate_files`]); reopen the segment to rebuild its
///    in-memory state. The new log end is that batch's base offset.
/// 5. If the new log end is below the log start offset (the cut batch
///    straddled it, or `offset` was below it), the log start offset drops
///    to the new log end; persisted.
/// 6. Remove leader epoch entries starting at or after the new log end;
///    persist the checkpoint if that changed it.
pub(super) fn truncate_to(log: &mut PartitionLog, offset: i64) -> Result<i64, LogError> {
    let (log_start, log_end) = (log.log_start_offset, log.log_end_offset());
    if offset < 0 {
        return Err(LogError::OffsetOutOfRange {
            offset,
            log_start,
            log_end,
        });
    }
    if offset >= log_end {
        if log.epochs.trim_to_log(log_start, log_end) {
            log.epochs.persist()?;
        }
        return Ok(log_end);
    }
    if offset < log.segments[0].base_offset {
        return truncate_fully(log, offset);
    }

    let mut deleted = 0;
    while log.segments.len() > 1 && log.segments.last().is_some_and(|s| s.base_offset > offset) {
        if let Some(segment) = log.segments.pop() {
            tracing::info!(segment = %segment.log_path().display(), offset, "truncation: deleting segment");
            segment.delete_files()?;
            deleted += 1;
        }
    }
    if deleted > 0 {
        sync_dir(&log.dir)?;
    }

    let last = log.segments.len() - 1;
    if let Some((position, batch)) = log.segments[last].find_batch(offset)? {
        let base = log.segments[last].base_offset;
        tracing::info!(
            segment = %log.segments[last].log_path().display(), offset,
            new_log_end = batch.base_offset, "truncation: cutting segment"
        );
        log.segments[last].truncate_files(position, batch.base_offset)?;
        let interval = log.config.index_interval_bytes as u64;
        log.segments[last] = Segment::open(&log.dir, base, false, interval)?;
    }
    let new_end = log.log_end_offset();

    if new_end < log.log_start_offset {
        write_log_start_checkpoint(&log.dir, new_end)?;
        log.log_start_offset = new_end;
    }
    if log.epochs.truncate_from_end(new_end) {
        log.epochs.persist()?;
    }
    Ok(new_end)
}

/// Step 2 of [`truncate_to`]: `offset` is below every segment (so below the
/// log start offset too). The log restarts empty at `offset`, as Kafka's
/// truncateFullyAndStartAt.
///
/// 1. Persist the current log start offset (it may only be implied by the
///    first segment's name), so that a crash before step 4 does not make
///    the new empty segment the log start with a gap after it.
/// 2. Create an empty segment at `offset` (no name clash: every segment
///    starts above it); fsync the directory. A crash now: open deletes it
///    as wholly below the log start.
/// 3. Delete the old segments, newest first; fsync the directory.
/// 4. Persist log start = `offset`; clear the leader epoch cache.
pub(super) fn truncate_fully(log: &mut PartitionLog, offset: i64) -> Result<i64, LogError> {
    tracing::info!(dir = %log.dir.display(), offset, "truncation: below every segment, restarting the log empty");
    write_log_start_checkpoint(&log.dir, log.log_start_offset)?;
    let fresh = Segment::create(&log.dir, offset, now_ms())?;
    sync_dir(&log.dir)?;
    let old = std::mem::replace(&mut log.segments, vec![fresh]);
    for segment in old.into_iter().rev() {
        segment.delete_files()?;
    }
    sync_dir(&log.dir)?;
    write_log_start_checkpoint(&log.dir, offset)?;
    log.log_start_offset = offset;
    if log.epochs.clear() {
        log.epochs.persist()?;
    }
    Ok(offset)
}
