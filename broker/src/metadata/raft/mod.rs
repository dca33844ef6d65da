//! The metadata quorum: the [`MetadataStore`] of a multi-broker cluster,
//! replicated with Raft (openraft 0.9, wrapped here so nothing else in the
//! broker depends on openraft's unstable API).
//!
//! - `--voters 0@host:port,1@host:port,...` names the voters by their admin
//!   addresses; each broker knows its own id from `--node-id`.
//! - Bootstrap: the voter with the smallest id initialises the membership
//!   when its Raft state is empty; the others wait to be contacted. Starting
//!   again with existing state never re-initialises. A node added later (the
//!   cluster grew, its id is new to the quorum) asks the other voters to add
//!   it ([`join_when_not_a_member`]); the leader adds it as a learner, waits
//!   until it caught up, then makes it a voter. Voters are never removed
//!   automatically.
//! - Writes: [`RaftStore::commit`] proposes to the local node; a follower
//!   forwards to the leader (the `propose` call in [`network`]) and then waits
//!   until it has applied the write itself, so the caller sees it in its image.
//! - Reads: every broker serves its latest applied image (as Kafka brokers
//!   serve their metadata cache).

pub mod network;
pub mod storage;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Config, Raft};
use tokio::sync::watch;

use super::{BoxFuture, MetadataError, MetadataImage, MetadataRecord, MetadataStore, QuorumStatus};

pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft's types for the metadata quorum: entries carry groups of records.
    pub TypeConfig:
        D = Vec<MetadataRecord>,
        R = (),
        NodeId = NodeId,
        Node = BasicNode,
);

/// How long a write waits for the quorum before failing.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(15);

pub struct RaftStore {
    id: NodeId,
    raft: Raft<TypeConfig>,
    images: watch::Receiver<Arc<MetadataImage>>,
    voters: BTreeMap<NodeId, String>,
    /// Heartbeats received here (consulted while this node leads).
    heartbeats: network::Heartbeats,
    /// The connection heartbeats go out on: (leader address, client).
    heartbeat_client: tokio::sync::Mutex<(String, Option<network::Client>)>,
}

/// Parses `--voters`: `id@host:port` separated by commas.
pub fn parse_voters(spec: &str) -> Result<BTreeMap<NodeId, String>, String> {
    let mut voters = BTreeMap::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('@')
            .ok_or_else(|| format!("'{part}' is not id@host:port"))?;
        let id: NodeId = id
            .parse()
            .map_err(|_| format!("'{id}' in '{part}' is not a node id"))?;
        if !addr.contains(':') {
            return Err(format!("'{addr}' in '{part}' is not host:port"));
        }
        if voters.insert(id, addr.to_string()).is_some() {
            return Err(format!("node id {id} is listed twice"));
        }
    }
    if voters.is_empty() {
        return Err("no voters given".into());
    }
    Ok(voters)
}

impl RaftStore {
    /// Opens the Raft state under `dir` and starts the node. Returns the
    /// store and the gRPC service peers must reach on this node's admin address.
    pub async fn start(
        node_id: NodeId,
        voters: BTreeMap<NodeId, String>,
        dir: &Path,
    ) -> Result<(Self, network::RaftService), MetadataError> {
        let storage_err = |action: &'static str| {
            let path = dir.to_path_buf();
            move |source: std::io::Error| MetadataError::Storage {
                action,
                path,
                source,
            }
        };
        let log = storage::LogStore::open(dir).map_err(storage_err("opening the raft log in"))?;
        let sm = storage::StateMachine::open(dir)
            .map_err(storage_err("opening the raft snapshot in"))?;
        let images = sm.images().subscribe();
        let pristine = log.is_pristine();
        let config = Config {
            cluster_name: "tideway".into(),
            heartbeat_interval: 200,
            election_timeout_min: 1000,
            election_timeout_max: 2000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(1000),
            max_in_snapshot_log_to_keep: 100,
            ..Config::default()
        }
        .validate()
        .map_err(|e| MetadataError::Unavailable(e.to_string()))?;
        let raft = Raft::new(node_id, Arc::new(config), network::NetworkFactory, log, sm)
            .await
            .map_err(|e| MetadataError::Unavailable(e.to_string()))?;
        if pristine && voters.keys().next() == Some(&node_id) {
            let members: BTreeMap<NodeId, BasicNode> = voters
                .iter()
                .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
                .collect();
            if let Err(e) = raft.initialize(members).await {
                tracing::warn!(error = %e, "initialising the metadata quorum");
            } else {
                tracing::info!(voters = ?voters.keys().collect::<Vec<_>>(), "metadata quorum initialised");
            }
        }
        if pristine && voters.keys().next() != Some(&node_id) {
            tokio::spawn(join_when_not_a_member(
                raft.clone(),
                node_id,
                voters.clone(),
            ));
        }
        let heartbeats = network::Heartbeats::default();
        let service = network::RaftService {
            raft: raft.clone(),
            heartbeats: heartbeats.clone(),
        };
        Ok((
            Self {
                id: node_id,
                raft,
                images,
                voters,
                heartbeats,
                heartbeat_client: tokio::sync::Mutex::new((String::new(), None)),
            },
            service,
        ))
    }

    /// Waits until the quorum has a leader (the broker is not ready before).
    pub async fn wait_for_leader(&self) {
        let mut metrics = self.raft.metrics();
        loop {
            if metrics.borrow().current_leader.is_some() {
                return;
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    }

    /// Writes through the quorum, retrying while there is no leader or the
    /// leader cannot be reached (an election in progress); the caller bounds it.
    async fn commit_records(
        &self,
        records: Vec<MetadataRecord>,
    ) -> Result<Arc<MetadataImage>, MetadataError> {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.try_commit(records.clone()).await {
                Err(MetadataError::Unavailable(reason)) => {
                    tracing::debug!(%reason, "metadata write waiting for the quorum");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }

    async fn try_commit(
        &self,
        records: Vec<MetadataRecord>,
    ) -> Result<Arc<MetadataImage>, MetadataError> {
        let index = match self.raft.client_write(records.clone()).await {
            Ok(written) => written.log_id.index,
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                let leader = f
                    .leader_node
                    .map(|n| n.addr)
                    .or_else(|| f.leader_id.and_then(|id| self.voters.get(&id).cloned()));
                let Some(addr) = leader else {
                    return Err(MetadataError::Unavailable(
                        "the metadata quorum has no leader".into(),
                    ));
                };
                let mut client = None;
                let forwarded: Result<u64, String> =
                    network::call(&mut client, &addr, "propose", &records)
                        .await
                        .map_err(MetadataError::Unavailable)?;
                forwarded.map_err(MetadataError::Unavailable)?
            }
            Err(RaftError::Fatal(e)) => return Err(MetadataError::Fatal(e.to_string())),
            Err(e) => return Err(MetadataError::Unavailable(e.to_string())),
        };
        // Wait until this node applied the write, so its image includes it.
        self.raft
            .wait(Some(COMMIT_TIMEOUT))
            .applied_index_at_least(Some(index), "metadata write applied here")
            .await
            .map_err(|e| MetadataError::Unavailable(e.to_string()))?;
        Ok(self.images.borrow().clone())
    }

    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}

/// A new node that is not the bootstrapping one: at the first start of a
/// cluster the smallest voter adds it, but a node added later (the cluster
/// grew) is in nobody's membership. Until it is, it asks the voters it was
/// given, in turn, to add it (`join`); a voter forwards to the leader.
async fn join_when_not_a_member(
    raft: Raft<TypeConfig>,
    id: NodeId,
    voters: BTreeMap<NodeId, String>,
) {
    let Some(own) = voters.get(&id).cloned() else {
        return;
    };
    let member = |raft: &Raft<TypeConfig>| {
        raft.metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == id)
    };
    // Give a first-start bootstrap the chance to include this node.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut clients: BTreeMap<NodeId, Option<network::Client>> = BTreeMap::new();
    while !member(&raft) {
        for (peer, addr) in voters.iter().filter(|(p, _)| **p != id) {
            let client = clients.entry(*peer).or_default();
            match network::call::<_, Result<(), String>>(client, addr, "join", &(id, own.clone()))
                .await
            {
                Ok(Ok(())) => {
                    tracing::info!(via = peer, "joined the metadata quorum");
                    break;
                }
                Ok(Err(e)) | Err(e) => {
                    tracing::debug!(via = peer, error = %e, "joining the metadata quorum")
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

impl MetadataStore for RaftStore {
    fn image(&self) -> Arc<MetadataImage> {
        self.images.borrow().clone()
    }

    fn commit(
        &self,
        records: Vec<MetadataRecord>,
    ) -> BoxFuture<'_, Result<Arc<MetadataImage>, MetadataError>> {
        Box::pin(async move {
            tokio::time::timeout(COMMIT_TIMEOUT, self.commit_records(records))
                .await
                .map_err(|_| {
                    MetadataError::Unavailable(format!(
                        "no quorum within {}s",
                        COMMIT_TIMEOUT.as_secs()
                    ))
                })?
        })
    }

    fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.images.clone()
    }

    fn heartbeat(
        &self,
        broker: i32,
        shutting_down: bool,
    ) -> BoxFuture<'_, Result<(), MetadataError>> {
        Box::pin(async move {
            let leader = self.raft.metrics().borrow().current_leader;
            let Some(leader) = leader else {
                return Err(MetadataError::Unavailable(
                    "the metadata quorum has no leader".into(),
                ));
            };
            if leader == self.id {
                self.heartbeats.record(broker, shutting_down);
                return Ok(());
            }
            let addr = self.voters.get(&leader).cloned().ok_or_else(|| {
                MetadataError::Unavailable(format!("leader {leader} is not a voter"))
            })?;
            let mut guard = self.heartbeat_client.lock().await;
            if guard.0 != addr {
                *guard = (addr.clone(), None);
            }
            let answer: Result<(), String> =
                network::call(&mut guard.1, &addr, "heartbeat", &(broker, shutting_down))
                    .await
                    .map_err(MetadataError::Unavailable)?;
            answer.map_err(MetadataError::Unavailable)
        })
    }

    fn heartbeats(&self) -> BTreeMap<i32, (std::time::Instant, bool)> {
        self.heartbeats.snapshot()
    }

    fn remove_voter(&self, broker: i32) -> BoxFuture<'_, Result<(), MetadataError>> {
        Box::pin(async move {
            let service = network::RaftService {
                raft: self.raft.clone(),
                heartbeats: self.heartbeats.clone(),
            };
            service
                .leave(broker as NodeId)
                .await
                .map_err(MetadataError::Unavailable)
        })
    }

    fn quorum(&self) -> QuorumStatus {
        let m = self.raft.metrics().borrow().clone();
        let voters: BTreeSet<NodeId> = m.membership_config.voter_ids().collect();
        let leader = m.current_leader;
        // The leader knows who acknowledged it recently; elsewhere a known leader means a working quorum.
        let reachable = match (&m.replication, leader) {
            (Some(progress), _) => progress
                .iter()
                .filter(|(_, p)| p.is_some())
                .map(|(id, _)| *id as i32)
                .collect(),
            (None, Some(_)) => voters.iter().map(|v| *v as i32).collect(),
            (None, None) => vec![],
        };
        QuorumStatus {
            voters: voters.iter().map(|v| *v as i32).collect(),
            reachable,
            leader: leader.map(|l| l as i32),
            committed_index: m.last_applied.map_or(0, |l| l.index),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_parse_and_bad_ones_name_the_problem() {
        let v = parse_voters("0@127.0.0.1:9093, 1@127.0.0.1:9193,2@h:1").expect("parses");
        assert_eq!(v.len(), 3);
        assert_eq!(v[&1], "127.0.0.1:9193");
        assert!(
            parse_voters("0@a:1,0@b:2")
                .expect_err("dup")
                .contains("twice")
        );
        assert!(parse_voters("x@a:1").expect_err("id").contains("node id"));
        assert!(
            parse_voters("0@nohostport")
                .expect_err("addr")
                .contains("host:port")
        );
        assert!(parse_voters("").is_err());
    }
}
