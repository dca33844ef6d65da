//! One log segment: a `.log` file of back-to-back v2 batches plus its
//! offset and time indexes.
//!
//! This file owns positional I/O on one segment: appending already
//! validated and patched batches (with rollback on failure), scanning batch
//! headers (the [`BatchWalker`]), rebuilding indexes from a scan, truncating
//! a torn tail, reading whole batches for fetch, and the record-precise
//! timestamp search inside one segment. Choosing the segment, rolling and
//! retention are left to [`super::PartitionLog`].

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::RecordBatchDecoder;

use super::batch::{self, BatchHeader, HEADER_SIZE};
use super::index::{IndexBuilder, OffsetEntry, OffsetIndex, TimeEntry, TimeIndex, relative};
use super::{LogError, TimestampOffset};

/// Bytes read per syscall when scanning a whole segment or its tail.
const SCAN_CHUNK: usize = 64 * 1024;
/// Bytes read per syscall when walking from an index entry to a fetch or
/// timestamp target (about two default index intervals).
const LOOKUP_CHUNK: usize = 8 * 1024;

/// Largest segment file: index positions are u32, Kafka caps at i32::MAX.
pub(super) const MAX_SEGMENT_BYTES: u64 = i32::MAX as u64;

pub(super) fn log_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}
pub(super) fn index_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.index"))
}
pub(super) fn time_index_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.timeindex"))
}

/// Builds the `map_err` closure for a failed filesystem action.
pub(super) fn storage<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> LogError + 'a {
    move |source| LogError::Storage {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn invalid_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn file_time_ms(t: io::Result<SystemTime>) -> Option<i64> {
    let d = t.ok()?.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

/// Why a header walk stopped before the end of its range.
pub(super) enum WalkError {
    /// Fewer bytes left than the header or the declared batch length.
    Torn(String),
    /// Bad magic, bad length or CRC mismatch.
    Corrupt(String),
    Io(io::Error),
}

/// Walks batch headers in `[pos, end)` of a segment file with chunked
/// positional reads (one syscall per `chunk` bytes or per larger batch).
pub(super) struct BatchWalker<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    buf_start: u64,
    chunk: usize,
    verify_crc: bool,
}

impl<'a> BatchWalker<'a> {
    pub fn new(file: &'a File, start: u64, end: u64, chunk: usize, verify_crc: bool) -> Self {
        BatchWalker {
            file,
            pos: start,
            end,
            buf: Vec::new(),
            buf_start: start,
            chunk,
            verify_crc,
        }
    }

    /// Makes `[pos, pos + n)` available in the buffer (`pos + n <= end`).
    fn ensure(&mut self, n: usize) -> io::Result<&[u8]> {
        let have_end = self.buf_start + self.buf.len() as u64;
        if self.pos < self.buf_start || self.pos + n as u64 > have_end {
            let want = (n.max(self.chunk) as u64).min(self.end - self.pos);
            self.buf
                .resize(usize::try_from(want).map_err(io::Error::other)?, 0);
            self.file.read_exact_at(&mut self.buf, self.pos)?;
            self.buf_start = self.pos;
        }
        let from = usize::try_from(self.pos - self.buf_start).map_err(io::Error::other)?;
        self.buf
            .get(from..from + n)
            .ok_or_else(|| invalid_data("walker buffer".into()))
    }

    /// The next batch's position and header, `None` at the end of the range.
    pub fn next_batch(&mut self) -> Result<Option<(u64, BatchHeader)>, WalkError> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let at = self.pos;
        let remaining = self.end - at;
        if remaining < HEADER_SIZE as u64 {
            return Err(WalkError::Torn(format!(
                "{remaining} bytes at position {at}, less than a batch header"
            )));
        }
        let head = self.ensure(HEADER_SIZE).map_err(WalkError::Io)?;
        let header = BatchHeader::parse(head)
            .map_err(|e| WalkError::Corrupt(format!("at position {at}: {e}")))?;
        let size = header.total_size();
        if size as u64 > remaining {
            return Err(WalkError::Torn(format!(
                "batch at position {at} needs {size} bytes, {remaining} left"
            )));
        }
        if self.verify_crc {
            let whole = self.ensure(size).map_err(WalkError::Io)?;
            batch::check_crc(whole, &header, 0)
                .map_err(|e| WalkError::Corrupt(format!("at position {at}: {e}")))?;
        }
        self.pos += size as u64;
        Ok(Some((at, header)))
    }
}

/// Outcome of scanning a segment (or its tail) batch by batch.
struct ScanOutcome {
    valid_end: u64,
    next_offset: i64,
    offset_entries: Vec<OffsetEntry>,
    time_entries: Vec<TimeEntry>,
    /// Why the scan stopped before the end of the file, if it did.
    stopped: Option<String>,
}

/// Scans `[start, end)` validating each batch (CRC, offsets contiguous from
/// `expect_next`, offsets within i32::MAX of the base), feeding `builder`.
/// When `first_is_indexed`, the batch at `start` already has index entries.
#[allow(clippy::too_many_arguments)]
fn scan(
    file: &File,
    base: i64,
    start: u64,
    end: u64,
    mut expect_next: i64,
    builder: &mut IndexBuilder,
    mut first_is_indexed: bool,
    interval: u64,
    mut last_time: Option<i64>,
) -> io::Result<ScanOutcome> {
    let mut walker = BatchWalker::new(file, start, end, SCAN_CHUNK, true);
    let mut out = ScanOutcome {
        valid_end: start,
        next_offset: expect_next,
        offset_entries: Vec::new(),
        time_entries: Vec::new(),
        stopped: None,
    };
    loop {
        match walker.next_batch() {
            Ok(None) => break,
            Ok(Some((pos, h))) => {
                if h.base_offset != expect_next || h.last_offset_delta < 0 {
                    out.stopped = Some(format!(
                        "batch at position {pos} has offsets {}..={}, expected to start at {expect_next}",
                        h.base_offset,
                        h.last_offset()
                    ));
                    break;
                }
                if h.last_offset() - base > i64::from(i32::MAX) {
                    out.stopped = Some(format!(
                        "batch at position {pos} is beyond the segment's offset range"
                    ));
                    break;
                }
                if first_is_indexed {
                    builder.skip_indexed(&h);
                    first_is_indexed = false;
                } else {
                    let (oe, te) = builder.on_batch(base, pos as u32, &h, interval, last_time);
                    out.offset_entries.extend(oe);
                    if let Some(te) = te {
                        last_time = Some(te.timestamp);
                        out.time_entries.push(te);
                    }
                }
                expect_next = h.last_offset() + 1;
                out.next_offset = expect_next;
                out.valid_end = pos + h.total_size() as u64;
            }
            Err(WalkError::Io(e)) => return Err(e),
            Err(WalkError::Torn(why) | WalkError::Corrupt(why)) => {
                out.stopped = Some(why);
                break;
            }
        }
    }
    Ok(out)
}

/// A segment: base offset, the open `.log` file and its indexes.
pub(super) struct Segment {
    pub base_offset: i64,
    log_path: PathBuf,
    log: File,
    /// Bytes of valid batches; the next append goes here.
    pub size: u64,
    /// One past the last offset in the segment (== base when empty).
    pub next_offset: i64,
    /// Largest batch maxTimestamp, -1 when no batch has one.
    pub max_timestamp: i64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    builder: IndexBuilder,
    /// Broker wall clock of the first append (file time after a restart);
    /// the segment.ms roll measures age from here.
    pub rolling_ms: Option<i64>,
    /// Last append (file mtime after a restart); retention's fallback when
    /// no record carries a timestamp.
    pub last_modified_ms: i64,
    /// Test hook: the next log write stops after this many bytes with ENOSPC.
    #[cfg(test)]
    pub fail_write_after: Option<usize>,
}

impl Segment {
    /// Creates an empty segment (truncating leftovers with the same name).
    pub fn create(dir: &Path, base: i64, now_ms: i64) -> Result<Self, LogError> {
        let log_path = log_path(dir, base);
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)
            .map_err(storage("creating", &log_path))?;
        let ip = index_path(dir, base);
        let offset_index =
            OffsetIndex::create(&ip, Vec::new()).map_err(storage("creating", &ip))?;
        let tp = time_index_path(dir, base);
        let time_index = TimeIndex::create(&tp, Vec::new()).map_err(storage("creating", &tp))?;
        Ok(Segment {
            base_offset: base,
            log_path,
            log,
            size: 0,
            next_offset: base,
            max_timestamp: -1,
            offset_index,
            time_index,
            builder: IndexBuilder::default(),
            rolling_ms: None,
            last_modified_ms: now_ms,
            #[cfg(test)]
            fail_write_after: None,
        })
    }

    /// Opens an existing segment.
    ///
    /// 1. With `recover`, scan the whole file validating every batch,
    ///    truncate at the first torn or corrupt one, rebuild both indexes.
    /// 2. Otherwise load both indexes; if either is missing or fails its
    ///    sanity check, do step 1's full scan (a rebuild also truncates a
    ///    corrupt tail, as Kafka does).
    /// 3. Otherwise find the end cheaply: scan only from the last offset
    ///    index entry to the end of file. If that tail does not scan
    ///    cleanly, fall back to the full scan of step 1.
    pub fn open(dir: &Path, base: i64, recover: bool, interval: u64) -> Result<Self, LogError> {
        let log_path = log_path(dir, base);
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log_path)
            .map_err(storage("opening", &log_path))?;
        let meta = log.metadata().map_err(storage("opening", &log_path))?;
        // Appends never grow a segment past MAX_SEGMENT_BYTES (positions are u32).
        let file_len = meta.len().min(MAX_SEGMENT_BYTES);
        let mtime = file_time_ms(meta.modified()).unwrap_or(0);
        let created = file_time_ms(meta.created()).unwrap_or(mtime);
        let ip = index_path(dir, base);
        let tp = time_index_path(dir, base);

        let mut loaded = None;
        if !recover {
            let oi = OffsetIndex::load(&ip).map_err(storage("opening", &ip))?;
            let ti = TimeIndex::load(&tp).map_err(storage("opening", &tp))?;
            if let (Some(oi), Some(ti)) = (oi, ti) {
                if oi.is_sane(file_len) && ti.is_sane(&oi) {
                    loaded = Some((oi, ti));
                } else {
                    tracing::warn!(segment = %log_path.display(), "index failed its sanity check, rebuilding");
                }
            } else {
                tracing::warn!(segment = %log_path.display(), "index missing or partial, rebuilding");
            }
        }

        let tail = match loaded {
            Some((oi, ti)) => {
                let last_entry = oi.last().copied();
                let start = last_entry.map_or(0, |e| u64::from(e.position));
                let expect = base + last_entry.map_or(0, |e| i64::from(e.relative_offset));
                let mut builder = IndexBuilder {
                    bytes_since_entry: 0,
                    running_max_timestamp: ti.last().map(|e| e.timestamp),
                };
                let last_time = ti.last().map(|e| e.timestamp);
                let out = scan(
                    &log,
                    base,
                    start,
                    file_len,
                    expect,
                    &mut builder,
                    last_entry.is_some(),
                    interval,
                    last_time,
                )
                .map_err(storage("scanning", &log_path))?;
                match out.stopped {
                    None => Some((oi, ti, builder, out)),
                    Some(why) => {
                        tracing::warn!(segment = %log_path.display(), %why, "segment tail does not scan cleanly, rebuilding");
                        None
                    }
                }
            }
            None => None,
        };

        let (offset_index, time_index, builder, out) = match tail {
            Some((mut oi, mut ti, builder, out)) => {
                // Entries the tail scan derived (batches appended after the
                // last entry when the interval was crossed) are persisted too.
                for e in &out.offset_entries {
                    oi.append(*e);
                }
                for e in &out.time_entries {
                    ti.append(*e);
                }
                oi.write_behind().map_err(storage("writing", &ip))?;
                ti.write_behind().map_err(storage("writing", &tp))?;
                (oi, ti, builder, out)
            }
            None => {
                let mut builder = IndexBuilder::default();
                let mut out = scan(
                    &log,
                    base,
                    0,
                    file_len,
                    base,
                    &mut builder,
                    false,
                    interval,
                    None,
                )
                .map_err(storage("scanning", &log_path))?;
                if let Some(why) = &out.stopped {
                    tracing::warn!(
                        segment = %log_path.display(), %why, valid_bytes = out.valid_end, file_bytes = file_len,
                        "truncating torn or corrupt segment tail"
                    );
                }
                let oi = OffsetIndex::create(&ip, std::mem::take(&mut out.offset_entries))
                    .map_err(storage("rebuilding", &ip))?;
                let ti = TimeIndex::create(&tp, std::mem::take(&mut out.time_entries))
                    .map_err(storage("rebuilding", &tp))?;
                (oi, ti, builder, out)
            }
        };
        if out.valid_end < meta.len() {
            log.set_len(out.valid_end)
                .map_err(storage("truncating", &log_path))?;
        }
        Ok(Segment {
            base_offset: base,
            log_path,
            log,
            size: out.valid_end,
            next_offset: out.next_offset,
            max_timestamp: builder.running_max_timestamp.unwrap_or(-1),
            offset_index,
            time_index,
            builder,
            rolling_ms: (out.valid_end > 0).then_some(created),
            last_modified_ms: mtime,
            #[cfg(test)]
            fail_write_after: None,
        })
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Newest timestamp for retention: the largest record timestamp, or the
    /// last modification time when no record has one (Kafka's rule).
    pub fn largest_timestamp(&self) -> i64 {
        if self.max_timestamp > 0 {
            self.max_timestamp
        } else {
            self.last_modified_ms
        }
    }

    fn write_log(&mut self, data: &[u8], pos: u64) -> io::Result<()> {
        #[cfg(test)]
        if let Some(n) = self.fail_write_after.take() {
            self.log
                .write_all_at(data.get(..n.min(data.len())).unwrap_or_default(), pos)?;
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "injected: no space left on device",
            ));
        }
        self.log.write_all_at(data, pos)
    }

    /// Appends validated, patched batches (`headers` are their positions in
    /// `data` and headers, offsets already assigned).
    ///
    /// 1. Write `data` at the end of the segment.
    /// 2. Add index entries per [`IndexBuilder`].
    /// 3. With `sync`, fsync the log.
    /// 4. On any failure undo all: truncate the log and indexes to their
    ///    previous lengths and restore the in-memory state.
    pub fn append(
        &mut self,
        data: &[u8],
        headers: &[(usize, BatchHeader)],
        interval: u64,
        now_ms: i64,
        sync: bool,
    ) -> Result<(), LogError> {
        let start = self.size;
        let saved = (self.offset_index.len(), self.time_index.len(), self.builder);
        let result = self.append_inner(data, headers, interval, start, sync);
        if let Err(e) = result {
            if let Err(undo) = self.log.set_len(start) {
                tracing::error!(segment = %self.log_path.display(), error = %undo, "could not truncate after a failed append");
            }
            for undo in [
                self.offset_index.truncate(saved.0),
                self.time_index.truncate(saved.1),
            ] {
                if let Err(undo) = undo {
                    tracing::error!(segment = %self.log_path.display(), error = %undo, "could not truncate an index after a failed append");
                }
            }
            self.builder = saved.2;
            return Err(e);
        }
        let Some((_, last)) = headers.last() else {
            return Ok(());
        };
        self.size = start + data.len() as u64;
        self.next_offset = last.last_offset() + 1;
        self.max_timestamp = self.builder.running_max_timestamp.unwrap_or(-1);
        self.rolling_ms.get_or_insert(now_ms);
        self.last_modified_ms = now_ms;
        Ok(())
    }

    fn append_inner(
        &mut self,
        data: &[u8],
        headers: &[(usize, BatchHeader)],
        interval: u64,
        start: u64,
        sync: bool,
    ) -> Result<(), LogError> {
        self.write_log(data, start)
            .map_err(|source| LogError::Storage {
                action: "appending to",
                path: self.log_path.clone(),
                source,
            })?;
        for (at, h) in headers {
            let pos = (start + *at as u64) as u32;
            let last_time = self.time_index.last().map(|e| e.timestamp);
            let (oe, te) = self
                .builder
                .on_batch(self.base_offset, pos, h, interval, last_time);
            // Indexes are written behind, when the segment is synced (see index.rs).
            if let Some(oe) = oe {
                self.offset_index.append(oe);
            }
            if let Some(te) = te {
                self.time_index.append(te);
            }
        }
        if sync {
            self.sync_log()?;
        }
        Ok(())
    }

    /// fsyncs the log only (indexes are rebuilt by recovery).
    pub fn sync_log(&self) -> Result<(), LogError> {
        self.log
            .sync_data()
            .map_err(storage("syncing", &self.log_path))
    }

    /// fsyncs the log and both indexes (writing behind their pending
    /// entries first, the offset index before the time index so a crash in
    /// between leaves a time index that is not ahead of the offset index).
    pub fn sync_all(&mut self) -> Result<(), LogError> {
        self.sync_log()?;
        self.offset_index
            .sync()
            .map_err(storage("syncing", self.offset_index.path()))?;
        self.time_index
            .sync()
            .map_err(storage("syncing", self.time_index.path()))
    }

    /// Removes the segment's three files.
    pub fn delete_files(self) -> Result<(), LogError> {
        let paths = [
            self.log_path.clone(),
            self.offset_index.path().to_path_buf(),
            self.time_index.path().to_path_buf(),
        ];
        drop(self);
        for p in &paths {
            match std::fs::remove_file(p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(storage("deleting", p)(e));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Calls `f` with every batch header in file order. No CRC check: the
    /// batches were validated when appended or when the segment was opened.
    pub fn for_each_header(&self, mut f: impl FnMut(&BatchHeader)) -> Result<(), LogError> {
        let mut walker = BatchWalker::new(&self.log, 0, self.size, SCAN_CHUNK, false);
        loop {
            match walker.next_batch() {
                Ok(None) => return Ok(()),
                Ok(Some((_, h))) => f(&h),
                Err(WalkError::Io(e)) => return Err(storage("reading", &self.log_path)(e)),
                Err(WalkError::Torn(why) | WalkError::Corrupt(why)) => {
                    return Err(storage("reading", &self.log_path)(invalid_data(why)));
                }
            }
        }
    }

    /// The position and header of the batch holding `offset` (the first
    /// batch whose last offset is ≥ `offset`), None when the segment ends
    /// before it.
    pub fn find_batch(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>, LogError> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        self.walk(self.entry_for(offset), |pos, h| {
            if h.last_offset() >= offset {
                ControlFlow::Break((pos, *h))
            } else {
                ControlFlow::Continue(())
            }
        })
    }

    /// Cuts the segment's files before the batch at `position` whose base
    /// offset is `base_offset` (as found by [`Segment::find_batch`]).
    ///
    /// 1. Truncate the log file to `position` and fsync it.
    /// 2. Drop the index entries naming that batch or a later one, fsync
    ///    both indexes.
    ///
    /// A crash between the steps leaves offset or time index entries at or
    /// past the end of the log, which fail their sanity check at the next
    /// open and are rebuilt. The in-memory state (size, next offset, index
    /// builder, timestamps) is stale afterwards: the caller reopens the
    /// segment with [`Segment::open`].
    pub fn truncate_files(&mut self, position: u64, base_offset: i64) -> Result<(), LogError> {
        self.log
            .set_len(position)
            .map_err(storage("truncating", &self.log_path))?;
        self.sync_log()?;
        let rel = relative(base_offset, self.base_offset);
        self.offset_index
            .truncate_from(rel)
            .map_err(storage("truncating", self.offset_index.path()))?;
        self.time_index
            .truncate_from(rel)
            .map_err(storage("truncating", self.time_index.path()))?;
        self.size = self.size.min(position);
        self.sync_all()
    }

    /// Walks headers from an index entry (or from position 0 for `None`) to
    /// the end of the segment until `f` breaks. If the entry does not point
    /// at the batch it names, or the walk hits garbage, it is retried from
    /// position 0 (a damaged index must not fail or skew a read); garbage
    /// from position 0 is a storage error.
    fn walk<T>(
        &self,
        entry: Option<OffsetEntry>,
        mut f: impl FnMut(u64, &BatchHeader) -> ControlFlow<T>,
    ) -> Result<Option<T>, LogError> {
        let mut expect = entry.map(|e| {
            (
                u64::from(e.position),
                self.base_offset + i64::from(e.relative_offset),
            )
        });
        loop {
            let from = expect.map_or(0, |(pos, _)| pos);
            let mut walker = BatchWalker::new(&self.log, from, self.size, LOOKUP_CHUNK, false);
            let why = loop {
                match walker.next_batch() {
                    Ok(None) => return Ok(None),
                    Ok(Some((pos, h))) => {
                        if let Some((at, base)) =
                            expect.filter(|(at, base)| *at == pos && h.base_offset != *base)
                        {
                            break format!(
                                "index entry for offset {base} points at batch {} (position {at})",
                                h.base_offset
                            );
                        }
                        if let ControlFlow::Break(t) = f(pos, &h) {
                            return Ok(Some(t));
                        }
                    }
                    Err(WalkError::Io(e)) => return Err(storage("reading", &self.log_path)(e)),
                    Err(WalkError::Torn(why) | WalkError::Corrupt(why)) => break why,
                }
            };
            if expect.is_none() {
                return Err(storage("reading", &self.log_path)(invalid_data(why)));
            }
            tracing::warn!(segment = %self.log_path.display(), %why, "index is damaged, rescanning from the start");
            expect = None;
        }
    }

    /// The floor offset index entry for `offset`: where to start scanning.
    fn entry_for(&self, offset: i64) -> Option<OffsetEntry> {
        self.offset_index.floor(relative(offset, self.base_offset))
    }

    /// Reads whole batches for fetch.
    ///
    /// 1. Start at the floor offset index entry for `offset` and walk headers
    ///    to the first batch whose last offset is ≥ `offset`; none → `None`.
    /// 2. If that batch starts at or after `upper_bound`, return empty.
    /// 3. Read `max(first batch size, min(max_bytes, rest of segment))`
    ///    bytes in one positional read.
    /// 4. Keep only whole batches that start below `upper_bound`.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        upper_bound: i64,
    ) -> Result<Option<Bytes>, LogError> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let found = self.walk(self.entry_for(offset), |pos, h| {
            if h.last_offset() >= offset {
                ControlFlow::Break((pos, *h))
            } else {
                ControlFlow::Continue(())
            }
        })?;
        let Some((start, first)) = found else {
            return Ok(None);
        };
        if first.base_offset >= upper_bound {
            return Ok(Some(Bytes::new()));
        }
        let first_size = first.total_size();
        let rest = usize::try_from(self.size - start).unwrap_or(usize::MAX);
        let want = first_size.max(max_bytes.min(rest));
        let mut buf = BytesMut::zeroed(want);
        self.log
            .read_exact_at(&mut buf, start)
            .map_err(storage("reading", &self.log_path))?;
        let mut end = first_size;
        while let Some(h) = buf.get(end..).and_then(|b| BatchHeader::parse(b).ok()) {
            if h.base_offset >= upper_bound || end + h.total_size() > buf.len() {
                break;
            }
            end += h.total_size();
        }
        buf.truncate(end);
        Ok(Some(buf.freeze()))
    }

    /// The earliest record at or after `log_start` with timestamp ≥
    /// `target` in this segment.
    ///
    /// 1. The time index's last entry below `target` bounds the start: every
    ///    batch up to it is older. Start at its offset index position.
    /// 2. Walk headers to the first batch with maxTimestamp ≥ `target`.
    /// 3. Decode only that batch and return its first record with timestamp
    ///    ≥ `target` (LogAppendTime batches: every record has maxTimestamp).
    ///    A batch whose header over-promises is skipped.
    pub fn find_timestamp(
        &self,
        target: i64,
        log_start: i64,
    ) -> Result<Option<TimestampOffset>, LogError> {
        if self.max_timestamp < target {
            return Ok(None);
        }
        let start = self
            .time_index
            .last_below(target)
            .and_then(|e| self.offset_index.floor(e.relative_offset));
        let mut failure = None;
        let found = self.walk(start, |pos, h| {
            if h.max_timestamp < target || h.last_offset() < log_start {
                return ControlFlow::Continue(());
            }
            match self.search_batch(pos, h, target, log_start) {
                Ok(Some(hit)) => ControlFlow::Break(hit),
                Ok(None) => ControlFlow::Continue(()),
                Err(e) => {
                    failure = Some(e);
                    ControlFlow::Break(TimestampOffset {
                        timestamp: -1,
                        offset: -1,
                    })
                }
            }
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(found),
        }
    }

    fn search_batch(
        &self,
        pos: u64,
        h: &BatchHeader,
        target: i64,
        log_start: i64,
    ) -> Result<Option<TimestampOffset>, LogError> {
        let mut buf = BytesMut::zeroed(h.total_size());
        self.log
            .read_exact_at(&mut buf, pos)
            .map_err(storage("reading", &self.log_path))?;
        let mut bytes = buf.freeze();
        let set = RecordBatchDecoder::decode(&mut bytes).map_err(|e| LogError::Storage {
            action: "decoding a record batch in",
            path: self.log_path.clone(),
            source: invalid_data(e.to_string()),
        })?;
        Ok(set.records.iter().find_map(|r| {
            let ts = if h.is_log_append_time() {
                h.max_timestamp
            } else {
                r.timestamp
            };
            (ts >= target && r.offset >= log_start).then_some(TimestampOffset {
                timestamp: ts,
                offset: r.offset,
            })
        }))
    }

    #[cfg(test)]
    pub fn offset_index_entries(&self) -> usize {
        self.offset_index.len()
    }
}
