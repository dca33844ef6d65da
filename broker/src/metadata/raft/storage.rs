//! Durable storage for the metadata quorum (openraft storage-v2).
//!
//! - [`LogStore`]: the Raft log as JSON lines in `raft/log.jsonl` (each an
//!   append, a truncation or a purge), fsynced before openraft is told an
//!   append is durable, replayed at start, and rewritten compactly after a
//!   purge; the vote and the committed log id in small files written
//!   atomically (temporary file, fsync, rename).
//! - [`StateMachine`]: folds committed records into the [`MetadataImage`]
//!   and publishes each new image; snapshots are the image itself, kept in
//!   `raft/snapshot.json`.

// openraft dictates these signatures and its StorageError is large.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Cursor, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{NodeId, TypeConfig};
use crate::metadata::MetadataImage;

type Node = openraft::BasicNode;

fn io_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::<NodeId>::write(&std::io::Error::other(e.to_string())).into()
}

/// Writes `bytes` to `path` atomically and durably.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum LogOp {
    Append(Entry<TypeConfig>),
    Truncate(u64),
    Purge(LogId<NodeId>),
}

struct LogInner {
    dir: PathBuf,
    file: File,
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    last_purged: Option<LogId<NodeId>>,
}

impl LogInner {
    fn write(&mut self, ops: &[LogOp]) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for op in ops {
            serde_json::to_writer(&mut buf, op).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()
    }

    /// Rewrites the log file with only what is left (after a purge).
    fn compact(&mut self) -> std::io::Result<()> {
        let path = self.dir.join("log.jsonl");
        let mut buf = Vec::new();
        if let Some(p) = self.last_purged {
            serde_json::to_writer(&mut buf, &LogOp::Purge(p)).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        for e in self.entries.values() {
            serde_json::to_writer(&mut buf, &LogOp::Append(e.clone()))
                .map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        write_atomically(&path, &buf)?;
        self.file = OpenOptions::new().append(true).open(&path)?;
        Ok(())
    }
}

/// The Raft log; cloned handles share one store (openraft's log reader is a clone).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

impl LogStore {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        let path = dir.join("log.jsonl");
        let mut entries = BTreeMap::new();
        let mut last_purged = None;
        if path.exists() {
            let mut valid = 0u64;
            for line in BufReader::new(File::open(&path)?).split(b'\n') {
                let line = line?;
                // A torn last line (a crash mid-append) was never acknowledged.
                let Ok(op) = serde_json::from_slice::<LogOp>(&line) else {
                    break;
                };
                valid += line.len() as u64 + 1;
                match op {
                    LogOp::Append(e) => {
                        entries.insert(e.log_id.index, e);
                    }
                    LogOp::Truncate(from) => {
                        entries.split_off(&from);
                    }
                    LogOp::Purge(id) => {
                        entries = entries.split_off(&(id.index + 1));
                        last_purged = Some(id);
                    }
                }
            }
            let f = OpenOptions::new().write(true).open(&path)?;
            f.set_len(valid)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self {
            inner: Arc::new(Mutex::new(LogInner {
                dir: dir.to_path_buf(),
                file,
                entries,
                last_purged,
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, LogInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        name: &str,
    ) -> Result<Option<T>, StorageError<NodeId>> {
        let path = self.lock().dir.join(name);
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(io_err),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(e)),
        }
    }

    fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StorageError<NodeId>> {
        let path = self.lock().dir.join(name);
        let bytes = serde_json::to_vec(value).map_err(io_err)?;
        write_atomically(&path, &bytes).map_err(io_err)
    }

    /// True when nothing was ever written: a fresh node that may bootstrap.
    pub fn is_pristine(&self) -> bool {
        let inner = self.lock();
        inner.entries.is_empty()
            && inner.last_purged.is_none()
            && !inner.dir.join("vote.json").exists()
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        Ok(self
            .lock()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = self.lock();
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.write_json("vote.json", vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.read_json("vote.json")
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        self.write_json("committed.json", &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self
            .read_json::<Option<LogId<NodeId>>>("committed.json")?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let ops: Vec<LogOp> = entries.into_iter().map(LogOp::Append).collect();
        let mut inner = self.lock();
        let written = inner.write(&ops);
        if written.is_ok() {
            for op in ops {
                if let LogOp::Append(e) = op {
                    inner.entries.insert(e.log_id.index, e);
                }
            }
        }
        drop(inner);
        let result = written.map_err(|e| std::io::Error::other(e.to_string()));
        let error = result.as_ref().err().map(io_err);
        callback.log_io_completed(result);
        error.map_or(Ok(()), Err)
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        inner
            .write(&[LogOp::Truncate(log_id.index)])
            .map_err(io_err)?;
        inner.entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        inner.entries = inner.entries.split_off(&(log_id.index + 1));
        inner.last_purged = Some(log_id);
        inner.compact().map_err(io_err)
    }
}

/// What a snapshot holds: the image and where it stands in the log.
#[derive(Clone, Default, Serialize, Deserialize)]
struct SmState {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Node>,
    image: MetadataImage,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Node>,
    data: Vec<u8>,
}

/// The metadata state machine; cloned handles share one state.
#[derive(Clone)]
pub struct StateMachine {
    dir: PathBuf,
    state: Arc<Mutex<SmState>>,
    images: watch::Sender<Arc<MetadataImage>>,
}

impl StateMachine {
    /// Starts from the last snapshot, if any; openraft replays the rest.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let mut state = SmState::default();
        let path = dir.join("snapshot.json");
        if path.exists() {
            let stored: StoredSnapshot =
                serde_json::from_slice(&fs::read(&path)?).map_err(std::io::Error::other)?;
            state = serde_json::from_slice(&stored.data).map_err(std::io::Error::other)?;
        }
        let images = watch::Sender::new(Arc::new(state.image.clone()));
        Ok(Self {
            dir: dir.to_path_buf(),
            state: Arc::new(Mutex::new(state)),
            images,
        })
    }

    fn lock(&self) -> MutexGuard<'_, SmState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn images(&self) -> &watch::Sender<Arc<MetadataImage>> {
        &self.images
    }

    fn current_snapshot(&self) -> Result<Option<StoredSnapshot>, StorageError<NodeId>> {
        match fs::read(self.dir.join("snapshot.json")) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(io_err),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(e)),
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let state = self.lock().clone();
        let data = serde_json::to_vec(&state).map_err(io_err)?;
        let snapshot_id = state.last_applied.map_or_else(
            || "0".to_string(),
            |l| format!("{}-{}", l.leader_id.term, l.index),
        );
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        let bytes = serde_json::to_vec(&stored).map_err(io_err)?;
        write_atomically(&self.dir.join("snapshot.json"), &bytes).map_err(io_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>), StorageError<NodeId>> {
        let state = self.lock();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let image = {
            let mut state = self.lock();
            for entry in entries {
                state.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(records) => {
                        for r in &records {
                            state.image.apply(r);
                        }
                    }
                    EntryPayload::Membership(m) => {
                        state.membership = StoredMembership::new(Some(entry.log_id), m)
                    }
                }
                responses.push(());
            }
            Arc::new(state.image.clone())
        };
        self.images.send_replace(image);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let new_state: SmState = serde_json::from_slice(&data).map_err(io_err)?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        let bytes = serde_json::to_vec(&stored).map_err(io_err)?;
        write_atomically(&self.dir.join("snapshot.json"), &bytes).map_err(io_err)?;
        let image = Arc::new(new_state.image.clone());
        *self.lock() = new_state;
        self.images.send_replace(image);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(self.current_snapshot()?.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
