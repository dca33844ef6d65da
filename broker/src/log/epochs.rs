//! The leader epoch cache of one partition: which leader epoch started at
//! which offset (KIP-101), persisted as `leader-epoch-checkpoint`.
//!
//! Every batch carries the partitionLeaderEpoch of the leader that assigned
//! its offsets; the cache keeps only where each epoch starts, so that
//! OffsetForLeaderEpoch can answer "where did epoch E end" without
//! scanning. Entries are strictly increasing in both epoch and start
//! offset. This file owns the entries, their rules (assign, truncate from
//! either end, the OffsetForLeaderEpoch lookup) and the checkpoint file;
//! *when* they are applied is decided by [`super::PartitionLog`] (append,
//! truncation, retention) and [`super::recovery`] (open).
//!
//! Checkpoint format (Kafka's `leader-epoch-checkpoint`, so operators
//! recognise it): a version line `0`, a count line, then one
//! `{epoch} {start_offset}` line per entry. It is replaced atomically
//! (temp file, fsync, rename, fsync of the directory).
//!
//! Crash safety rests on one ordering rule: the checkpoint may run *ahead*
//! of the log, never behind it. A new entry is persisted before the batch
//! that starts it is written; truncation and retention change the log
//! first and the checkpoint after. Whatever a crash leaves, open trims the
//! entries to [log start, log end) (see [`open`]), which restores the
//! cache the surviving log implies.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::segment::{Segment, storage};
use super::{LogError, sync_dir};

/// File in the partition directory holding the leader epoch cache.
pub(super) const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";
const VERSION: u32 = 0;

/// One leader epoch and the first offset its leader assigned (or the log
/// start offset, when retention removed the epoch's earlier records).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// The entries in memory and where they are persisted.
pub(super) struct LeaderEpochCache {
    dir: PathBuf,
    entries: Vec<EpochEntry>,
    /// The file may differ from `entries` (a failed write or a failed
    /// undo): the next change or append rewrites it before writing data.
    dirty: bool,
}

impl LeaderEpochCache {
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` starts at `start_offset`, in memory only; true
    /// when the entries changed.
    ///
    /// 1. A negative epoch (no leader stamped the batch) or one not above
    ///    the latest epoch changes nothing.
    /// 2. Entries starting at or after `start_offset` are removed (an epoch
    ///    that a leader claimed but never wrote to, as Kafka does), then the
    ///    new entry is added.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || self.latest_epoch().is_some_and(|l| epoch <= l) {
            return false;
        }
        while self
            .entries
            .last()
            .is_some_and(|e| e.start_offset >= start_offset)
        {
            self.entries.pop();
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Removes the entries that start at or after `end_offset` (the new log
    /// end after a truncation); true when the entries changed.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let keep = self
            .entries
            .partition_point(|e| e.start_offset < end_offset);
        let changed = keep < self.entries.len();
        self.entries.truncate(keep);
        changed
    }

    /// Collapses the entries at or below `start_offset` (the new log start)
    /// into one: the last of them, now starting at `start_offset`; true when
    /// the entries changed (Kafka's truncateFromStart).
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let below = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        let Some(last_below) = below
            .checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .copied()
        else {
            return false;
        };
        if below == 1 && last_below.start_offset == start_offset {
            return false;
        }
        self.entries.drain(..below);
        self.entries.insert(
            0,
            EpochEntry {
                epoch: last_below.epoch,
                start_offset,
            },
        );
        true
    }

    /// Trims the entries to a log of [log_start, log_end): drops those that
    /// start at or after the log end, then collapses those at or below the
    /// log start ([`LeaderEpochCache::truncate_from_start`]). On an empty
    /// log (start == end) the one entry starting at its end may stay: after
    /// retention removed every record, it is the latest epoch (Kafka keeps
    /// it too). True when the entries changed.
    pub fn trim_to_log(&mut self, log_start: i64, log_end: i64) -> bool {
        let end = if log_start < log_end {
            log_end
        } else {
            log_start.saturating_add(1)
        };
        let trimmed_end = self.truncate_from_end(end);
        let trimmed_start = self.truncate_from_start(log_start);
        trimmed_end || trimmed_start
    }

    /// Removes every entry; true when there were any.
    pub fn clear(&mut self) -> bool {
        let changed = !self.entries.is_empty();
        self.entries.clear();
        changed
    }

    /// Replaces the entries (undo of a failed append); the file is
    /// rewritten by the next [`LeaderEpochCache::persist`].
    pub fn restore(&mut self, entries: Vec<EpochEntry>) {
        if entries != self.entries {
            self.entries = entries;
            self.dirty = true;
        }
    }

    /// OffsetForLeaderEpoch (Kafka's `endOffsetFor`, with KIP-279): the
    /// epoch that answers and the offset where `requested` ended, None for
    /// Kafka's (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET) = (-1, -1).
    ///
    /// 1. A negative epoch, or an empty cache: None.
    /// 2. The latest epoch: it has not ended, `(latest, log_end)`.
    /// 3. Above the latest epoch: None.
    /// 4. Otherwise the answer ends where the next higher epoch starts.
    ///    The epoch answered is the largest known epoch ≤ `requested`
    ///    (KIP-279: the follower then truncates to the end of an epoch both
    ///    logs have); when every known epoch is above `requested`, Kafka
    ///    answers `requested` itself with the first epoch's start offset
    ///    (the records before it are gone, the follower truncates to there).
    pub fn end_offset_for(&self, requested: i32, log_end: i64) -> Option<(i32, i64)> {
        let latest = self.entries.last()?;
        if requested < 0 {
            return None;
        }
        if requested == latest.epoch {
            return Some((requested, log_end));
        }
        let higher = self.entries.partition_point(|e| e.epoch <= requested);
        let next = self.entries.get(higher)?;
        let floor = higher.checked_sub(1).and_then(|i| self.entries.get(i));
        Some((floor.map_or(requested, |e| e.epoch), next.start_offset))
    }

    /// Writes the entries to the checkpoint (temp file, fsync, rename,
    /// fsync of the directory); on failure the cache stays dirty.
    pub fn persist(&mut self) -> Result<(), LogError> {
        self.dirty = true;
        write_checkpoint(&self.dir, &self.entries)?;
        self.dirty = false;
        Ok(())
    }

    /// Rewrites the checkpoint if an earlier write or undo failed.
    pub fn persist_if_dirty(&mut self) -> Result<(), LogError> {
        if self.dirty { self.persist() } else { Ok(()) }
    }
}

/// Loads the cache of a partition directory whose segments are open.
///
/// 1. Read the checkpoint. If it is missing or does not parse (wrong
///    version or count, entries not strictly increasing), rebuild it: walk
///    every batch header from the log start and [`LeaderEpochCache::assign`]
///    each batch's epoch at its base offset (the log start for a batch that
///    straddles it).
/// 2. Trim the entries to the log ([`LeaderEpochCache::trim_to_log`]):
///    from the end (a checkpoint written ahead of data that a crash lost,
///    an epoch assigned at election that never got a record), and from the
///    start (retention that a crash interrupted).
/// 3. Persist if step 1 rebuilt or step 2 changed anything.
pub(super) fn open(
    dir: &Path,
    segments: &[Segment],
    log_start: i64,
    log_end: i64,
) -> Result<LeaderEpochCache, LogError> {
    let (entries, rebuilt) = match read_checkpoint(dir)? {
        Some(entries) => (entries, false),
        None => (Vec::new(), true),
    };
    let mut cache = LeaderEpochCache {
        dir: dir.to_path_buf(),
        entries,
        dirty: rebuilt,
    };
    if rebuilt {
        tracing::info!(dir = %dir.display(), "rebuilding the leader epoch cache from batch headers");
        for segment in segments.iter().filter(|s| s.next_offset > log_start) {
            segment.for_each_header(|h| {
                if h.last_offset() >= log_start {
                    cache.assign(h.partition_leader_epoch, h.base_offset.max(log_start));
                }
            })?;
        }
    }
    if cache.trim_to_log(log_start, log_end) {
        tracing::info!(dir = %dir.display(), log_start, log_end, "trimmed the leader epoch cache to the log");
        cache.dirty = true;
    }
    cache.persist_if_dirty()?;
    Ok(cache)
}

/// Parses the checkpoint; None when missing or malformed (the caller
/// rebuilds it).
fn read_checkpoint(dir: &Path) -> Result<Option<Vec<EpochEntry>>, LogError> {
    let path = dir.join(LEADER_EPOCH_CHECKPOINT);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            tracing::warn!(file = %path.display(), "leader epoch checkpoint is not text, rebuilding");
            return Ok(None);
        }
        Err(e) => return Err(storage("reading", &path)(e)),
    };
    let parsed = parse_checkpoint(&text);
    if parsed.is_none() {
        tracing::warn!(file = %path.display(), "leader epoch checkpoint is malformed, rebuilding");
    }
    Ok(parsed)
}

fn parse_checkpoint(text: &str) -> Option<Vec<EpochEntry>> {
    let mut lines = text.lines();
    if lines.next()?.trim().parse::<u32>().ok()? != VERSION {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut entries: Vec<EpochEntry> = Vec::with_capacity(count.min(1024));
    for line in lines.by_ref().take(count) {
        let mut fields = line.split_whitespace();
        let epoch: i32 = fields.next()?.parse().ok()?;
        let start_offset: i64 = fields.next()?.parse().ok()?;
        if fields.next().is_some() || epoch < 0 || start_offset < 0 {
            return None;
        }
        if entries
            .last()
            .is_some_and(|p| p.epoch >= epoch || p.start_offset >= start_offset)
        {
            return None;
        }
        entries.push(EpochEntry {
            epoch,
            start_offset,
        });
    }
    if entries.len() != count || lines.any(|l| !l.trim().is_empty()) {
        return None;
    }
    Some(entries)
}

fn write_checkpoint(dir: &Path, entries: &[EpochEntry]) -> Result<(), LogError> {
    let tmp = dir.join(format!("{LEADER_EPOCH_CHECKPOINT}.tmp"));
    let path = dir.join(LEADER_EPOCH_CHECKPOINT);
    let write = || -> std::io::Result<()> {
        let mut text = format!("{VERSION}\n{}\n", entries.len());
        for e in entries {
            text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    };
    write().map_err(storage("writing", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(storage("renaming", &tmp))?;
    sync_dir(dir)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        LeaderEpochCache {
            dir: PathBuf::from("/nonexistent"),
            entries: entries
                .iter()
                .map(|&(epoch, start_offset)| EpochEntry {
                    epoch,
                    start_offset,
                })
                .collect(),
            dirty: false,
        }
    }

    fn pairs(c: &LeaderEpochCache) -> Vec<(i32, i64)> {
        c.entries
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    #[test]
    fn end_offset_for_epoch_follows_kafka_and_kip_279() {
        let c = cache(&[(0, 0), (2, 4), (5, 8)]);
        let leo = 10;
        assert_eq!(c.end_offset_for(0, leo), Some((0, 4)));
        assert_eq!(
            c.end_offset_for(1, leo),
            Some((0, 4)),
            "absent: largest epoch below"
        );
        assert_eq!(c.end_offset_for(2, leo), Some((2, 8)));
        assert_eq!(c.end_offset_for(3, leo), Some((2, 8)));
        assert_eq!(c.end_offset_for(4, leo), Some((2, 8)));
        assert_eq!(
            c.end_offset_for(5, leo),
            Some((5, 10)),
            "latest: the log end"
        );
        assert_eq!(c.end_offset_for(6, leo), None, "above the latest");
        assert_eq!(c.end_offset_for(-1, leo), None);
        let late = cache(&[(3, 100), (4, 150)]);
        assert_eq!(
            late.end_offset_for(1, 200),
            Some((1, 100)),
            "below the first epoch: Kafka answers the first start offset"
        );
        assert_eq!(cache(&[]).end_offset_for(0, 5), None);
    }

    #[test]
    fn assign_keeps_entries_monotonic() {
        let mut c = cache(&[]);
        assert!(!c.assign(-1, 0));
        assert!(c.assign(0, 0));
        assert!(!c.assign(0, 5), "same epoch");
        assert!(c.assign(3, 10));
        assert!(!c.assign(1, 12), "lower epoch");
        assert!(
            c.assign(4, 10),
            "an epoch that never got a record is replaced"
        );
        assert_eq!(pairs(&c), vec![(0, 0), (4, 10)]);
    }

    #[test]
    fn truncation_from_either_end() {
        let mut c = cache(&[(0, 0), (2, 4), (5, 8)]);
        assert!(!c.truncate_from_end(9));
        assert!(c.truncate_from_end(8));
        assert_eq!(pairs(&c), vec![(0, 0), (2, 4)]);
        assert!(!c.truncate_from_start(0));
        assert!(c.truncate_from_start(3));
        assert_eq!(pairs(&c), vec![(0, 3), (2, 4)]);
        assert!(c.truncate_from_start(6));
        assert_eq!(pairs(&c), vec![(2, 6)]);
        assert!(!c.truncate_from_start(6));
        assert!(c.truncate_from_end(0));
        assert!(c.entries.is_empty());
        assert!(!c.truncate_from_start(7));
    }

    #[test]
    fn trim_to_log_keeps_the_latest_epoch_of_an_empty_log() {
        let mut c = cache(&[(0, 0), (2, 4), (5, 8)]);
        assert!(!c.trim_to_log(0, 9));
        assert!(c.trim_to_log(5, 8));
        assert_eq!(pairs(&c), vec![(2, 5)]);
        let mut c = cache(&[(0, 0), (2, 4), (5, 8)]);
        assert!(c.trim_to_log(8, 8));
        assert_eq!(pairs(&c), vec![(5, 8)]);
        assert!(!c.trim_to_log(8, 8));
        let mut c = cache(&[(0, 0), (2, 4), (5, 8)]);
        assert!(c.trim_to_log(6, 6));
        assert_eq!(pairs(&c), vec![(2, 6)]);
    }

    #[test]
    fn checkpoint_round_trips_and_rejects_malformed_files() {
        let dir = tempfile::tempdir().unwrap();
        let entries = [
            EpochEntry {
                epoch: 0,
                start_offset: 0,
            },
            EpochEntry {
                epoch: 7,
                start_offset: 42,
            },
        ];
        write_checkpoint(dir.path(), &entries).unwrap();
        let text = std::fs::read_to_string(dir.path().join(LEADER_EPOCH_CHECKPOINT)).unwrap();
        assert_eq!(text, "0\n2\n0 0\n7 42\n");
        assert_eq!(read_checkpoint(dir.path()).unwrap().unwrap(), entries);
        assert!(
            !dir.path()
                .join(format!("{LEADER_EPOCH_CHECKPOINT}.tmp"))
                .exists()
        );
        for bad in [
            "",
            "1\n0\n",
            "0\n2\n0 0\n",
            "0\n1\n0 0\n1 1\n",
            "0\n2\n3 5\n2 9\n",
            "0\n2\n1 5\n2 5\n",
            "0\n1\n-1 0\n",
            "0\n1\n1 x\n",
            "0\n1\n1 2 3\n",
        ] {
            assert_eq!(parse_checkpoint(bad), None, "{bad:?}");
        }
        assert_eq!(parse_checkpoint("0\n0\n"), Some(vec![]));
        std::fs::write(dir.path().join(LEADER_EPOCH_CHECKPOINT), [0xff, 0xfe]).unwrap();
        assert_eq!(read_checkpoint(dir.path()).unwrap(), None);
    }
}
