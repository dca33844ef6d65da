//! Request handlers, one file per API family: decode-side types in, a
//! response out. They translate between the wire and [`Broker`]; decisions
//! live in the broker, error codes in `server::errors`.

pub mod api_versions;
pub mod configs;
pub mod fetch;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod topics;

use std::sync::Arc;

use kafka_protocol::messages::{RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

/// Routes a decoded request; `None` means no response is sent (acks=0).
/// Only APIs listed in `server::versions` reach this function.
pub async fn handle(broker: &Arc<Broker>, header: &RequestHeader, request: RequestKind) -> Option<ResponseKind> {
    let v = header.request_api_version;
    Some(match request {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions::handle()),
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(broker, r, v)),
        RequestKind::Produce(r) => return produce::handle(broker, r).await.map(ResponseKind::Produce),
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(broker, r, v).await),
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(list_offsets::handle(broker, r)),
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(topics::create_topics(broker, r)),
        RequestKind::DeleteTopics(r) => ResponseKind::DeleteTopics(topics::delete_topics(broker, r)),
        RequestKind::CreatePartitions(r) => ResponseKind::CreatePartitions(topics::create_partitions(broker, r)),
        RequestKind::DescribeConfigs(r) => ResponseKind::DescribeConfigs(configs::describe(broker, r)),
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(configs::incremental_alter(broker, r))
        }
        other => {
            // Unreachable: dispatch rejects unadvertised APIs before decoding.
            tracing::error!(request = ?std::mem::discriminant(&other), "no handler for an advertised API");
            return None;
        }
    })
}

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
