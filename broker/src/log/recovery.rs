//! Opening a partition directory: finding segments, recovering the active
//! segment after an unclean shutdown, and restoring the log start offset.
//!
//! Per-segment scanning and index rebuilding live in [`super::segment`];
//! this file decides which segments to open how, and repairs the
//! directory-level invariants (at least one segment, nothing below the log
//! start offset, leftovers of interrupted operations removed), then loads
//! the leader epoch cache against the result.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::retention::read_log_start_checkpoint;
use super::segment::{Segment, storage};
use super::{LogConfig, LogError, PartitionLog, sync_dir};

/// Opens (or creates) the log in `dir`.
///
/// 1. Create the directory; list `{base:020}.log` files; delete temporary
///    files and index files whose `.log` is gone.
/// 2. Open every segment in base-offset order. With `recover`, the active
///    (last) segment is scanned batch by batch, cut at the first torn or
///    corrupt batch, and its indexes rebuilt. Older segments are trusted:
///    they were fsynced with their indexes when rolled. Any segment whose
///    index is missing or fails its sanity check is rebuilt by a full scan.
/// 3. Log start offset = max(checkpoint, first segment base). Segments
///    wholly below it (a crash between checkpoint and deletion) are deleted;
///    if that leaves none, or the last one ends at or below it, a fresh empty
///    segment starts at the log start offset, so offsets never go back.
/// 4. Load the leader epoch cache, rebuilt from batch headers if its
///    checkpoint is missing or malformed, trimmed to [log start, log end)
///    (see [`super::epochs::open`]).
pub(super) fn open_log(
    dir: &Path,
    config: LogConfig,
    recover: bool,
) -> Result<PartitionLog, LogError> {
    std::fs::create_dir_all(dir).map_err(storage("creating", dir))?;
    let bases = list_segments(dir)?;
    let interval = config.index_interval_bytes as u64;
    let last = bases.len().checked_sub(1);
    let mut segments = Vec::with_capacity(bases.len());
    for (i, base) in bases.iter().enumerate() {
        let recover_this = recover && Some(i) == last;
        segments.push(Segment::open(dir, *base, recover_this, interval)?);
    }

    let checkpoint = read_log_start_checkpoint(dir)?;
    let first_base = segments.first().map(|s| s.base_offset);
    let log_start = match (checkpoint, first_base) {
        (Some(c), Some(b)) => c.max(b),
        (Some(c), None) => c,
        (None, Some(b)) => b,
        (None, None) => 0,
    };
    while segments.len() > 1 && segments.first().is_some_and(|s| s.next_offset <= log_start) {
        let stale = segments.remove(0);
        tracing::info!(segment = %stale.log_path().display(), log_start, "deleting a segment below the log start offset");
        stale.delete_files()?;
    }
    let need_fresh = match segments.last() {
        None => true,
        Some(s) => s.next_offset <= log_start && s.base_offset < log_start,
    };
    if need_fresh {
        for stale in segments.drain(..) {
            stale.delete_files()?;
        }
        segments.push(Segment::create(dir, log_start, now_ms())?);
        sync_dir(dir)?;
    }
    for pair in segments.windows(2) {
        if pair[0].next_offset > pair[1].base_offset {
            tracing::warn!(
                segment = %pair[0].log_path().display(), next_offset = pair[0].next_offset,
                next_base = pair[1].base_offset, "segments overlap"
            );
        }
    }
    let log_end = segments.last().map_or(log_start, |s| s.next_offset);
    let epochs = super::epochs::open(dir, &segments, log_start, log_end)?;
    Ok(PartitionLog {
        dir: dir.to_path_buf(),
        config,
        segments,
        log_start_offset: log_start,
        epochs,
    })
}

/// Step 1 of [`open_log`]: the sorted base offsets of `dir`'s segments.
fn list_segments(dir: &Path) -> Result<Vec<i64>, LogError> {
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(storage("listing", dir))? {
        let entry = entry.map_err(storage("listing", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            remove_leftover(&entry.path())?;
            continue;
        }
        let Some((stem, ext)) = name.split_once('.') else {
            continue;
        };
        if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(base) = stem.parse::<i64>() else {
            continue;
        };
        match ext {
            "log" => logs.push(base),
            "index" | "timeindex" => indexes.push((base, entry.path())),
            _ => {}
        }
    }
    logs.sort_unstable();
    for (base, path) in indexes {
        if logs.binary_search(&base).is_err() {
            remove_leftover(&path)?;
        }
    }
    Ok(logs)
}

fn remove_leftover(path: &Path) -> Result<(), LogError> {
    tracing::info!(file = %path.display(), "removing a leftover file");
    std::fs::remove_file(path).map_err(storage("deleting", path))
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}
