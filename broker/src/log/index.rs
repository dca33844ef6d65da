//! Sparse per-segment indexes: the offset index and the time index.
//!
//! Each index is a file of fixed-size big-endian entries plus an in-memory
//! copy of the same entries used for binary search (no mmap: the workspace
//! denies `unsafe`). Lookups only ever use the memory copy; the file is
//! what the next clean start loads. So appends go to memory, and the entries
//! not yet in the file are written behind, in one positional write, when the
//! segment is synced: when it rolls, on a flush (the `--fsync` policy) and
//! on a clean close. An index written on every append cost two extra
//! writes per batch, each updating a file's size and mtime in the kernel:
//! with many partitions that was a third of the broker's CPU (see
//! docs/benchmarks.md). After an unclean stop the active segment's indexes
//! are rebuilt by scanning anyway, and an older segment's file is complete
//! (written and fsynced when it rolled) or, after a crash in between, short
//! but sane, and the tail scan from its last entry rebuilds the rest.
//! Nothing is preallocated, so a cleanly closed index needs no trimming.
//! This file owns the entry formats, loading with sanity checks, and
//! lookups; *when* entries are added is decided by [`IndexBuilder`], shared
//! by the append path and the rebuild scan so both produce the same entries.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::batch::BatchHeader;

/// A fixed-size index entry.
pub(super) trait Entry: Copy {
    const SIZE: usize;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(buf: &[u8]) -> Self;
    /// The offset (relative to the segment base) of the batch the entry names.
    fn relative_offset(&self) -> u32;
}

/// Offset index entry: (offset relative to the segment base, file position).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// Time index entry: every record in batches up to and including the batch
/// at `relative_offset` has a timestamp ≤ `timestamp` (a running maximum).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

impl Entry for OffsetEntry {
    const SIZE: usize = 8;
    fn relative_offset(&self) -> u32 {
        self.relative_offset
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
    fn decode(buf: &[u8]) -> Self {
        let mut a = [0u8; 4];
        let mut b = [0u8; 4];
        a.copy_from_slice(buf.get(0..4).unwrap_or(&[0; 4]));
        b.copy_from_slice(buf.get(4..8).unwrap_or(&[0; 4]));
        OffsetEntry {
            relative_offset: u32::from_be_bytes(a),
            position: u32::from_be_bytes(b),
        }
    }
}

impl Entry for TimeEntry {
    const SIZE: usize = 12;
    fn relative_offset(&self) -> u32 {
        self.relative_offset
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn decode(buf: &[u8]) -> Self {
        let mut a = [0u8; 8];
        let mut b = [0u8; 4];
        a.copy_from_slice(buf.get(0..8).unwrap_or(&[0; 8]));
        b.copy_from_slice(buf.get(8..12).unwrap_or(&[0; 4]));
        TimeEntry {
            timestamp: i64::from_be_bytes(a),
            relative_offset: u32::from_be_bytes(b),
        }
    }
}

/// One index file and its entries in memory.
pub(super) struct Index<E: Entry> {
    path: PathBuf,
    file: File,
    entries: Vec<E>,
    /// How many of `entries` the file holds; the rest are written behind.
    written: usize,
}

pub(super) type OffsetIndex = Index<OffsetEntry>;
pub(super) type TimeIndex = Index<TimeEntry>;

impl<E: Entry> Index<E> {
    /// Loads an existing index file. Returns `Ok(None)` when the file is
    /// missing or its size is not a multiple of the entry size (the caller
    /// rebuilds it); other checks are entry-type specific, see
    /// [`OffsetIndex::is_sane`] and [`TimeIndex::is_sane`].
    pub fn load(path: &Path) -> io::Result<Option<Self>> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        if len % E::SIZE as u64 != 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
        file.read_exact_at(&mut buf, 0)?;
        let entries: Vec<E> = buf.chunks_exact(E::SIZE).map(E::decode).collect();
        Ok(Some(Index {
            path: path.to_path_buf(),
            file,
            written: entries.len(),
            entries,
        }))
    }

    /// Creates (or truncates) the index file and writes `entries` to it.
    pub fn create(path: &Path, entries: Vec<E>) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let mut buf = Vec::with_capacity(entries.len() * E::SIZE);
        for e in &entries {
            e.encode(&mut buf);
        }
        file.write_all_at(&buf, 0)?;
        Ok(Index {
            path: path.to_path_buf(),
            file,
            written: entries.len(),
            entries,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(test)]
    pub fn entries(&self) -> &[E] {
        &self.entries
    }

    pub fn last(&self) -> Option<&E> {
        self.entries.last()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Appends one entry to memory; the file gets it at the next
    /// [`Index::write_behind`] (or [`Index::sync`]).
    pub fn append(&mut self, entry: E) {
        self.entries.push(entry);
    }

    /// Writes the entries the file does not hold yet, in one write.
    pub fn write_behind(&mut self) -> io::Result<()> {
        let Some(pending) = self.entries.get(self.written..).filter(|p| !p.is_empty()) else {
            return Ok(());
        };
        let mut buf = Vec::with_capacity(pending.len() * E::SIZE);
        for e in pending {
            e.encode(&mut buf);
        }
        self.file
            .write_all_at(&buf, (self.written * E::SIZE) as u64)?;
        self.written = self.entries.len();
        Ok(())
    }

    /// Drops entries after the first `len` (undo of a failed append,
    /// truncation of the log), in memory and in the file.
    pub fn truncate(&mut self, len: usize) -> io::Result<()> {
        if len < self.entries.len() {
            self.entries.truncate(len);
        }
        self.written = self.written.min(self.entries.len());
        self.file.set_len((self.written * E::SIZE) as u64)
    }

    /// Drops the entries naming a batch at or after `relative_offset`
    /// (truncation of the log at that batch). Entries are sorted by offset.
    pub fn truncate_from(&mut self, relative_offset: u32) -> io::Result<()> {
        let keep = self
            .entries
            .partition_point(|e| e.relative_offset() < relative_offset);
        self.truncate(keep)
    }

    /// Writes behind what is pending, then fsyncs the file.
    pub fn sync(&mut self) -> io::Result<()> {
        self.write_behind()?;
        self.file.sync_data()
    }
}

impl OffsetIndex {
    /// Entries strictly increasing in both fields and pointing inside a log
    /// of `log_size` bytes.
    pub fn is_sane(&self, log_size: u64) -> bool {
        self.entries
            .windows(2)
            .all(|w| w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position)
            && self
                .entries
                .last()
                .is_none_or(|e| u64::from(e.position) < log_size)
    }

    /// The entry with the largest relative offset ≤ `relative_offset`
    /// (floor), or None when every entry is larger.
    pub fn floor(&self, relative_offset: u32) -> Option<OffsetEntry> {
        let n = self
            .entries
            .partition_point(|e| e.relative_offset <= relative_offset);
        n.checked_sub(1).and_then(|i| self.entries.get(i)).copied()
    }
}

impl TimeIndex {
    /// Entries strictly increasing in timestamp, non-decreasing in offset,
    /// never beyond the last offset index entry (they are written together).
    pub fn is_sane(&self, offsets: &OffsetIndex) -> bool {
        let max_rel = offsets.last().map(|e| e.relative_offset);
        self.entries.windows(2).all(|w| {
            w[0].timestamp < w[1].timestamp && w[0].relative_offset <= w[1].relative_offset
        }) && self
            .entries
            .last()
            .is_none_or(|e| Some(e.relative_offset) <= max_rel)
    }

    /// The last entry whose timestamp is strictly below `timestamp`: every
    /// record up to its batch is older than `timestamp`.
    pub fn last_below(&self, timestamp: i64) -> Option<TimeEntry> {
        let n = self.entries.partition_point(|e| e.timestamp < timestamp);
        n.checked_sub(1).and_then(|i| self.entries.get(i)).copied()
    }
}

/// Decides when a batch gets index entries. Used identically by append and
/// by the rebuild scan.
///
/// 1. Every batch adds its size to `bytes_since_entry` and raises the
///    running max timestamp.
/// 2. When, before a batch, at least `interval` bytes were appended since
///    the last entry, the batch gets an offset entry (its base offset and
///    position) and, if the running max timestamp (including this batch)
///    grew past the last time entry, a time entry at the same offset.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct IndexBuilder {
    pub bytes_since_entry: u64,
    pub running_max_timestamp: Option<i64>,
}

impl IndexBuilder {
    /// Returns the entries `header` (at `position`) should get.
    pub fn on_batch(
        &mut self,
        segment_base: i64,
        position: u32,
        header: &BatchHeader,
        interval: u64,
        last_time: Option<i64>,
    ) -> (Option<OffsetEntry>, Option<TimeEntry>) {
        let max_ts = self
            .running_max_timestamp
            .map_or(header.max_timestamp, |m| m.max(header.max_timestamp));
        self.running_max_timestamp = Some(max_ts);
        let mut out = (None, None);
        if self.bytes_since_entry >= interval {
            let rel = relative(header.base_offset, segment_base);
            out.0 = Some(OffsetEntry {
                relative_offset: rel,
                position,
            });
            if max_ts >= 0 && last_time.is_none_or(|t| max_ts > t) {
                out.1 = Some(TimeEntry {
                    timestamp: max_ts,
                    relative_offset: rel,
                });
            }
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += header.total_size() as u64;
        out
    }

    /// Accounts for a batch that already has its entries (the first batch of
    /// a tail scan that starts at the last index entry).
    pub fn skip_indexed(&mut self, header: &BatchHeader) {
        let max_ts = self
            .running_max_timestamp
            .map_or(header.max_timestamp, |m| m.max(header.max_timestamp));
        self.running_max_timestamp = Some(max_ts);
        self.bytes_since_entry += header.total_size() as u64;
    }
}

/// Offset relative to a segment base, clamped into u32 (callers keep
/// segments within i32::MAX offsets, so clamping never triggers in practice).
pub(super) fn relative(offset: i64, base: i64) -> u32 {
    u32::try_from(offset.saturating_sub(base).clamp(0, i64::from(u32::MAX))).unwrap_or(u32::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_floor_and_sanity() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.index");
        let mut idx = OffsetIndex::create(&p, vec![]).unwrap();
        assert_eq!(idx.floor(10), None);
        for (r, pos) in [(5, 100), (9, 300), (20, 1000)] {
            idx.append(OffsetEntry {
                relative_offset: r,
                position: pos,
            });
        }
        assert_eq!(idx.floor(4), None);
        assert_eq!(idx.floor(5).unwrap().position, 100);
        assert_eq!(idx.floor(8).unwrap().position, 100);
        assert_eq!(idx.floor(19).unwrap().position, 300);
        assert_eq!(idx.floor(u32::MAX).unwrap().position, 1000);
        assert!(idx.is_sane(1001));
        assert!(!idx.is_sane(1000));

        assert_eq!(
            OffsetIndex::load(&p).unwrap().unwrap().len(),
            0,
            "appends are written behind"
        );
        idx.sync().unwrap();
        let loaded = OffsetIndex::load(&p).unwrap().unwrap();
        assert_eq!(loaded.entries(), idx.entries());
        idx.truncate(1).unwrap();
        assert_eq!(OffsetIndex::load(&p).unwrap().unwrap().len(), 1);

        // Truncating entries that were never written leaves the file alone;
        // the next sync writes exactly what memory holds.
        for r in [30, 40, 50] {
            idx.append(OffsetEntry {
                relative_offset: r,
                position: r * 10,
            });
        }
        idx.truncate(3).unwrap();
        assert_eq!(OffsetIndex::load(&p).unwrap().unwrap().len(), 1);
        idx.sync().unwrap();
        let loaded = OffsetIndex::load(&p).unwrap().unwrap();
        assert_eq!(loaded.entries(), idx.entries());
        assert_eq!(loaded.last().unwrap().relative_offset, 40);

        std::fs::write(&p, [0u8; 16]).unwrap();
        assert!(
            !OffsetIndex::load(&p).unwrap().unwrap().is_sane(100),
            "zero-filled index is not sane"
        );
        std::fs::write(&p, [0u8; 7]).unwrap();
        assert!(OffsetIndex::load(&p).unwrap().is_none(), "partial entry");
        assert!(
            OffsetIndex::load(&dir.path().join("missing.index"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn time_index_last_below() {
        let dir = tempfile::tempdir().unwrap();
        let offsets = OffsetIndex::create(
            &dir.path().join("o"),
            vec![
                OffsetEntry {
                    relative_offset: 3,
                    position: 10,
                },
                OffsetEntry {
                    relative_offset: 7,
                    position: 20,
                },
            ],
        )
        .unwrap();
        let t = TimeIndex::create(
            &dir.path().join("t"),
            vec![
                TimeEntry {
                    timestamp: 100,
                    relative_offset: 3,
                },
                TimeEntry {
                    timestamp: 200,
                    relative_offset: 7,
                },
            ],
        )
        .unwrap();
        assert!(t.is_sane(&offsets));
        assert_eq!(t.last_below(100), None);
        assert_eq!(t.last_below(101).unwrap().relative_offset, 3);
        assert_eq!(t.last_below(200).unwrap().relative_offset, 3);
        assert_eq!(t.last_below(i64::MAX).unwrap().relative_offset, 7);
        let t2 = TimeIndex::create(
            &dir.path().join("t2"),
            vec![TimeEntry {
                timestamp: 1,
                relative_offset: 8,
            }],
        )
        .unwrap();
        assert!(!t2.is_sane(&offsets), "time entry beyond the offset index");
    }
}
