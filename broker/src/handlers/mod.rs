//! Request handlers, one file per API family: decode-side types in, a
//! response out. They translate between the wire and [`Broker`]; decisions
//! live in the broker, error codes in `server::errors`.

pub mod api_versions;
pub mod cluster;
pub mod configs;
pub mod fetch;
pub mod groups;
pub mod leader_epochs;
pub mod list_offsets;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod producer_ids;
pub mod records;
pub mod topics;

use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::messages::{RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::runtime::Context;

/// Routes a decoded request; `None` means no response is sent (acks=0).
/// Only APIs listed in `server::versions` reach this function.
pub async fn handle(
    ctx: &Context,
    header: &RequestHeader,
    peer: SocketAddr,
    request: RequestKind,
) -> Option<ResponseKind> {
    let v = header.request_api_version;
    let broker = &ctx.broker;
    Some(match request {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions::handle()),
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(broker, r, v).await),
        RequestKind::Produce(r) => {
            return produce::handle(broker, r, v)
                .await
                .map(ResponseKind::Produce);
        }
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(broker, r, v).await),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(broker, r, v))
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(leader_epochs::handle(broker, r))
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(topics::create_topics(broker, r, v).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(topics::delete_topics(broker, r, v).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(topics::create_partitions(broker, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(configs::describe(broker, r, v))
        }
        RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(configs::alter(broker, r).await),
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(configs::incremental_alter(broker, r).await)
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(ctx, r, v))
        }
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(groups::join_group(ctx, header, peer, r, v).await)
        }
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(groups::sync_group(ctx, r, v).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(groups::heartbeat(ctx, r)),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(groups::leave_group(ctx, r, v)),
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(groups::describe_groups(ctx, r, v))
        }
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(groups::list_groups(ctx, r, v)),
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(groups::delete_groups(ctx, r).await)
        }
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(offsets::commit(ctx, r).await),
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(offsets::fetch(ctx, r, v)),
        RequestKind::OffsetDelete(r) => ResponseKind::OffsetDelete(offsets::delete(ctx, r).await),
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(producer_ids::init(ctx, r).await)
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(cluster::describe_cluster(broker, r, v))
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(records::delete_records(broker, r).await)
        }
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(cluster::elect_leaders(broker, r, v).await)
        }
        other => {
            // Unreachable: dispatch rejects unadvertised APIs before decoding.
            tracing::error!(request = ?std::mem::discriminant(&other), "no handler for an advertised API");
            return None;
        }
    })
}

/// The partition if this broker leads it; NOT_LEADER_OR_FOLLOWER when it
/// exists elsewhere in the cluster (or here as a follower, or offline),
/// UNKNOWN_TOPIC_OR_PARTITION when not at all.
pub(crate) fn hosted(
    broker: &Broker,
    topic: &str,
    index: i32,
) -> Result<Arc<crate::broker::Partition>, kafka_protocol::ResponseError> {
    if let Some(p) = broker.partition(topic, index)
        && p.replica.leader_epoch(false).is_ok()
    {
        return Ok(p);
    }
    let exists = broker
        .image()
        .topics
        .get(topic)
        .is_some_and(|t| (0..t.partitions).contains(&index));
    Err(if exists {
        kafka_protocol::ResponseError::NotLeaderOrFollower
    } else {
        kafka_protocol::ResponseError::UnknownTopicOrPartition
    })
}

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
