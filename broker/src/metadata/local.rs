//! The single-node metadata store: records as JSON lines in
//! `<data-dir>/metadata/records.jsonl`, fsynced on every commit and replayed
//! at start-up. A torn last line (a crash mid-write) is dropped; any other
//! unreadable line stops start-up rather than guessing.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::{BoxFuture, MetadataError, MetadataImage, MetadataRecord, MetadataStore, QuorumStatus};

pub struct LocalStore {
    path: PathBuf,
    node_id: i32,
    inner: Mutex<File>,
    image: watch::Sender<Arc<MetadataImage>>,
}

fn storage(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> MetadataError {
    let path = path.to_path_buf();
    move |source| MetadataError::Storage {
        action,
        path,
        source,
    }
}

impl LocalStore {
    /// Opens (or creates) the store under `dir`, replaying every record. A
    /// new store gets a fresh cluster id.
    pub fn open(dir: &Path, node_id: i32) -> Result<Self, MetadataError> {
        fs::create_dir_all(dir).map_err(storage("creating", dir))?;
        let path = dir.join("records.jsonl");
        let mut image = MetadataImage::default();
        let mut valid_len = 0u64;
        if path.exists() {
            let reader = BufReader::new(File::open(&path).map_err(storage("opening", &path))?);
            let mut lines = reader.split(b'\n').enumerate().peekable();
            while let Some((n, line)) = lines.next() {
                let line = line.map_err(storage("reading", &path))?;
                let is_last = lines.peek().is_none();
                match serde_json::from_slice::<MetadataRecord>(&line) {
                    Ok(record) => {
                        image.apply(&record);
                        valid_len += line.len() as u64 + 1;
                    }
                    Err(_) if is_last => {
                        tracing::warn!(path = %path.display(), "dropping a torn last metadata record");
                        break;
                    }
                    Err(e) => {
                        return Err(MetadataError::CorruptRecord {
                            path,
                            line: n + 1,
                            reason: e.to_string(),
                        });
                    }
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(storage("opening", &path))?;
        if file.metadata().map_err(storage("reading", &path))?.len() > valid_len {
            file.set_len(valid_len)
                .map_err(storage("truncating", &path))?;
        }
        let store = Self {
            path,
            node_id,
            inner: Mutex::new(file),
            image: watch::Sender::new(Arc::new(image)),
        };
        if store.image().cluster_id.is_empty() {
            let cluster_id = uuid::Uuid::new_v4().simple().to_string();
            store.commit_now(vec![MetadataRecord::ClusterCreated { cluster_id }])?;
        }
        Ok(store)
    }

    /// Appends and fsyncs the records as one write, then applies and publishes them.
    pub fn commit_now(
        &self,
        records: Vec<MetadataRecord>,
    ) -> Result<Arc<MetadataImage>, MetadataError> {
        let mut buf = Vec::new();
        for r in &records {
            // Serialising our own plain enum cannot fail.
            serde_json::to_writer(&mut buf, r).map_err(|e| MetadataError::CorruptRecord {
                path: self.path.clone(),
                line: 0,
                reason: e.to_string(),
            })?;
            buf.push(b'\n');
        }
        let mut file = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let before = file
            .metadata()
            .map_err(storage("reading", &self.path))?
            .len();
        let written = file.write_all(&buf).and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Leave no half-written group behind.
            let _ = file.set_len(before);
            return Err(MetadataError::Storage {
                action: "appending to",
                path: self.path.clone(),
                source: e,
            });
        }
        let mut image = (**self.image.borrow()).clone();
        for r in &records {
            image.apply(r);
        }
        let image = Arc::new(image);
        self.image.send_replace(image.clone());
        Ok(image)
    }
}

impl MetadataStore for LocalStore {
    fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    fn commit(
        &self,
        records: Vec<MetadataRecord>,
    ) -> BoxFuture<'_, Result<Arc<MetadataImage>, MetadataError>> {
        Box::pin(async move { self.commit_now(records) })
    }

    fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.subscribe()
    }

    fn quorum(&self) -> QuorumStatus {
        QuorumStatus {
            voters: vec![self.node_id],
            reachable: vec![self.node_id],
            leader: Some(self.node_id),
            committed_index: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn records_survive_reopen_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::open(dir.path(), 0).expect("open");
        let cluster_id = store.image().cluster_id.clone();
        store
            .commit_now(vec![MetadataRecord::TopicCreated {
                name: "t".into(),
                topic_id: uuid::Uuid::new_v4(),
                partitions: 3,
                configs: BTreeMap::new(),
                assignments: vec![],
                origin: Default::default(),
            }])
            .expect("commit");
        drop(store);
        let path = dir.path().join("records.jsonl");
        let mut f = OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open file");
        f.write_all(b"{\"type\":\"topic_del").expect("torn write");
        drop(f);

        let store = LocalStore::open(dir.path(), 0).expect("reopen");
        let image = store.image();
        assert_eq!(image.cluster_id, cluster_id);
        assert_eq!(image.topics["t"].partitions, 3);
        store
            .commit_now(vec![MetadataRecord::TopicDeleted { name: "t".into() }])
            .expect("commit after torn tail");
        drop(store);
        assert!(
            LocalStore::open(dir.path(), 0)
                .expect("reopen")
                .image()
                .topics
                .is_empty()
        );
    }
}
