//! The quorum's transport: openraft's RPCs as JSON inside one gRPC method
//! (`tideway.raft.v1.Raft/Call`) on each broker's admin listener, plus
//! `propose`, which forwards a metadata write from a follower to the leader,
//! `heartbeat`, brokers telling the controller they are alive, and `join`, a
//! broker added later (a scaled-up cluster) asking to become a voter.

use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tideway_admin_api::raft::raft_client::RaftClient;
use tideway_admin_api::raft::raft_server::Raft as RaftRpc;
use tideway_admin_api::raft::{RaftRequest, RaftResponse};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::{NodeId, TypeConfig};
use crate::metadata::MetadataRecord;

const RPC_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects lazily to a peer's admin address.
async fn connect(addr: &str) -> Result<RaftClient<Channel>, tonic::transport::Error> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(RPC_TIMEOUT)
        .timeout(RPC_TIMEOUT);
    Ok(RaftClient::new(endpoint.connect().await?))
}

/// One call to a peer: JSON in, JSON out. Transport failures are `Err(String)`.
pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
    client: &mut Option<RaftClient<Channel>>,
    addr: &str,
    kind: &str,
    req: &Req,
) -> Result<Resp, String> {
    if client.is_none() {
        *client = Some(
            connect(addr)
                .await
                .map_err(|e| format!("connecting to {addr}: {e}"))?,
        );
    }
    let c = client.as_mut().ok_or("no client")?;
    let payload = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    match c
        .call(RaftRequest {
            kind: kind.to_string(),
            payload,
        })
        .await
    {
        Ok(r) => serde_json::from_slice(&r.into_inner().payload).map_err(|e| e.to_string()),
        Err(e) => {
            *client = None;
            Err(format!("{kind} to {addr}: {e}"))
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

pub struct NetworkFactory;

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        Peer {
            target,
            addr: node.addr.clone(),
            client: None,
        }
    }
}

pub struct Peer {
    target: NodeId,
    addr: String,
    client: Option<RaftClient<Channel>>,
}

impl Peer {
    async fn rpc<
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    >(
        &mut self,
        kind: &str,
        req: &Req,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>> {
        let result: Result<Resp, RaftError<NodeId, E>> =
            call(&mut self.client, &self.addr, kind, req)
                .await
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&TransportError(e))))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.rpc("append", &rpc).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.rpc("snapshot", &rpc).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.rpc("vote", &rpc).await
    }
}

pub type Client = RaftClient<Channel>;

/// Brokers' heartbeats received by this node: broker → (when, shutting down).
#[derive(Clone, Default)]
pub struct Heartbeats(
    std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<i32, (std::time::Instant, bool)>>>,
);

impl Heartbeats {
    pub fn record(&self, broker: i32, shutting_down: bool) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(broker, (std::time::Instant::now(), shutting_down));
    }

    pub fn snapshot(&self) -> std::collections::BTreeMap<i32, (std::time::Instant, bool)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Serves peers' RPCs, forwarded writes and heartbeats into the local Raft node.
pub struct RaftService {
    pub raft: Raft<TypeConfig>,
    pub heartbeats: Heartbeats,
}

/// Where a membership change runs: here (this node leads), or forwarded to
/// the leader's address.
enum MembershipTarget {
    Here,
    Leader(String),
}

impl RaftService {
    fn is_voter(&self, id: NodeId) -> bool {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == id)
    }

    fn membership_target(&self) -> Result<MembershipTarget, String> {
        let m = self.raft.metrics().borrow().clone();
        let leader = m
            .current_leader
            .ok_or("the metadata quorum has no leader")?;
        if leader == m.id {
            return Ok(MembershipTarget::Here);
        }
        m.membership_config
            .membership()
            .get_node(&leader)
            .map(|n| MembershipTarget::Leader(n.addr.clone()))
            .ok_or_else(|| "the leader's address is unknown".into())
    }

    /// Adds `id` (at admin address `addr`) to the quorum as a voter: first
    /// as a learner that catches up, then into the voters. A member already
    /// is a no-op. On a follower, forwarded to the leader.
    async fn join(&self, id: NodeId, addr: String) -> Result<(), String> {
        if self.is_voter(id) {
            return Ok(());
        }
        if let MembershipTarget::Leader(leader) = self.membership_target()? {
            return call(&mut None, &leader, "join", &(id, addr)).await?;
        }
        tracing::info!(node = id, %addr, "adding a voter to the metadata quorum");
        self.raft
            .add_learner(id, BasicNode { addr }, true)
            .await
            .map_err(|e| e.to_string())?;
        self.raft
            .change_membership(
                openraft::ChangeMembers::AddVoterIds([id].into_iter().collect()),
                false,
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Removes voter `id` from the quorum (on the leader; forwarded there
    /// from a follower). Not a voter: a no-op.
    pub async fn leave(&self, id: NodeId) -> Result<(), String> {
        if !self.is_voter(id) {
            return Ok(());
        }
        if let MembershipTarget::Leader(leader) = self.membership_target()? {
            return call(&mut None, &leader, "leave", &id).await?;
        }
        tracing::info!(node = id, "removing a voter from the metadata quorum");
        self.raft
            .change_membership(
                openraft::ChangeMembers::RemoveVoters([id].into_iter().collect()),
                false,
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(payload).map_err(|e| Status::invalid_argument(e.to_string()))
}

fn encode<T: Serialize>(value: &T) -> Result<Response<RaftResponse>, Status> {
    serde_json::to_vec(value)
        .map(|payload| Response::new(RaftResponse { payload }))
        .map_err(|e| Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn call(&self, request: Request<RaftRequest>) -> Result<Response<RaftResponse>, Status> {
        let r = request.into_inner();
        match r.kind.as_str() {
            "append" => encode(&self.raft.append_entries(decode(&r.payload)?).await),
            "vote" => encode(&self.raft.vote(decode(&r.payload)?).await),
            "snapshot" => encode(&self.raft.install_snapshot(decode(&r.payload)?).await),
            "propose" => {
                let records: Vec<MetadataRecord> = decode(&r.payload)?;
                // The index the write was applied at, or why it was not.
                let result: Result<u64, String> = self
                    .raft
                    .client_write(records)
                    .await
                    .map(|w| w.log_id.index)
                    .map_err(|e| e.to_string());
                encode(&result)
            }
            "leave" => {
                let id: NodeId = decode(&r.payload)?;
                encode(&self.leave(id).await)
            }
            "join" => {
                let (id, addr): (NodeId, String) = decode(&r.payload)?;
                encode(&self.join(id, addr).await)
            }
            "heartbeat" => {
                let (broker, shutting_down): (i32, bool) = decode(&r.payload)?;
                self.heartbeats.record(broker, shutting_down);
                encode(&Ok::<(), String>(()))
            }
            other => Err(Status::invalid_argument(format!(
                "unknown raft call '{other}'"
            ))),
        }
    }
}
