//! Produce: validates acks, finds each partition, appends the record
//! batches as received, and answers with the assigned base offsets.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::BrokerId;
use kafka_protocol::messages::produce_request::ProduceRequest;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    ProduceResponse, TopicProduceResponse,
};
use std::collections::BTreeMap;

use crate::metadata::MetadataImage;

use super::str_bytes;
use crate::broker::{AppendError, Broker};
use crate::log::LogError;
use crate::server::errors::log_error_code;

/// `None` for acks=0: the client expects no response.
pub async fn handle(
    broker: &Arc<Broker>,
    request: ProduceRequest,
    version: i16,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    let timeout = std::time::Duration::from_millis(request.timeout_ms.clamp(0, 300_000) as u64);
    let image = broker.image();
    let defaults = broker.defaults(&image);
    let mut responses = Vec::with_capacity(request.topic_data.len());
    for topic in request.topic_data {
        let meta = image.topics.get(topic.name.as_str());
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for data in topic.partition_data {
            let reply = PartitionProduceResponse::default()
                .with_index(data.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1);
            // error_message exists from v8, log_start_offset from v5.
            let message = |m: String| (version >= 8).then(|| str_bytes(m));
            let fail = |code: ResponseError, m: String| {
                reply
                    .clone()
                    .with_error_code(code.code())
                    .with_error_message(message(m))
            };
            let (meta, partition) =
                match (meta, super::hosted(broker, topic.name.as_str(), data.index)) {
                    (Some(meta), Ok(partition)) => (meta, partition),
                    (_, Err(code)) => {
                        partitions.push(fail(
                            code,
                            format!(
                                "{}-{} is not led by this broker",
                                topic.name.as_str(),
                                data.index
                            ),
                        ));
                        continue;
                    }
                    (None, Ok(_)) => {
                        partitions.push(fail(
                            ResponseError::UnknownTopicOrPartition,
                            format!("topic {} does not exist", topic.name.as_str()),
                        ));
                        continue;
                    }
                };
            if !matches!(acks, -1..=1) {
                partitions.push(fail(
                    ResponseError::InvalidRequiredAcks,
                    format!("acks must be -1, 0 or 1, got {acks}"),
                ));
                continue;
            }
            if request.transactional_id.is_some() {
                partitions.push(fail(
                    ResponseError::InvalidRequest,
                    "transactions are not supported".into(),
                ));
                continue;
            }
            let configs = broker.configs_from(&defaults, &meta.configs);
            // Leading, and for acks=all with ISR ≥ min.insync.replicas, before the append.
            if let Err(code) = partition.replica.leader_epoch(acks == -1) {
                let why = if code == ResponseError::NotEnoughReplicas {
                    format!(
                        "{}-{}: fewer in-sync replicas than min.insync.replicas {}",
                        topic.name.as_str(),
                        data.index,
                        configs.min_insync_replicas()
                    )
                } else {
                    format!(
                        "{}-{} is not led by this broker",
                        topic.name.as_str(),
                        data.index
                    )
                };
                partitions.push(fail(code, why));
                continue;
            }
            let Some(records) = data.records.filter(|r| !r.is_empty()) else {
                partitions.push(fail(
                    ResponseError::CorruptMessage,
                    "the request carries no record batch".into(),
                ));
                continue;
            };
            // zstd came with Produce v7 (KIP-110): older requests may not carry it.
            if version < 7
                && crate::log::batch::batches(&records)
                    .any(|b| b.is_ok_and(|(_, h)| h.compression() == 4))
            {
                partitions.push(fail(
                    ResponseError::UnsupportedCompressionType,
                    "zstd needs Produce v7 or later".into(),
                ));
                continue;
            }
            match broker
                .append(&partition, records, configs.log_append_time())
                .await
            {
                Ok(info) => {
                    if acks == -1
                        && let Err(code) = broker
                            .await_commit(&partition, info.last_offset + 1, timeout)
                            .await
                    {
                        partitions.push(fail(
                            code,
                            format!(
                                "{}-{}: appended at offset {} but not committed: {code:?}",
                                partition.topic, partition.index, info.base_offset
                            ),
                        ));
                        continue;
                    }
                    let log_start = if version >= 5 {
                        partition.log().log_start_offset()
                    } else {
                        -1
                    };
                    partitions.push(
                        reply
                            .with_base_offset(info.base_offset)
                            .with_log_append_time_ms(info.log_append_time_ms)
                            .with_log_start_offset(log_start),
                    );
                }
                Err(e) => {
                    tracing::debug!(topic = %partition.topic, partition = partition.index, error = %e, "produce refused");
                    let code = match &e {
                        AppendError::Log(e) => log_error_code(e),
                        AppendError::Producer(e) => e.code(),
                        AppendError::NotLeader => ResponseError::NotLeaderOrFollower.code(),
                    };
                    // v8+: which record was refused (KIP-467).
                    let record_errors = match &e {
                        AppendError::Log(LogError::InvalidRecord {
                            record: Some(index),
                            reason,
                            ..
                        }) if version >= 8 => vec![
                            BatchIndexAndErrorMessage::default()
                                .with_batch_index(*index)
                                .with_batch_index_error_message(Some(str_bytes(reason.clone()))),
                        ],
                        _ => Vec::new(),
                    };
                    partitions.push(
                        reply
                            .with_error_code(code)
                            .with_error_message(message(e.to_string()))
                            .with_record_errors(record_errors),
                    );
                }
            }
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_partition_responses(partitions),
        );
    }
    let mut response = ProduceResponse::default().with_responses(responses);
    if version >= 10 {
        add_current_leaders(&mut response, &broker.image());
    }
    (acks != 0).then_some(response)
}

/// KIP-951: a NOT_LEADER_OR_FOLLOWER answer names the current leader, its
/// epoch and address, so the client re-routes without a metadata round trip.
fn add_current_leaders(response: &mut ProduceResponse, image: &MetadataImage) {
    let mut endpoints = BTreeMap::new();
    for t in &mut response.responses {
        let Some(meta) = image.topics.get(t.name.as_str()) else {
            continue;
        };
        for p in &mut t.partition_responses {
            if p.error_code != ResponseError::NotLeaderOrFollower.code() {
                continue;
            }
            let state = meta.state(p.index);
            let Some(b) = image.brokers.get(&state.leader) else {
                continue;
            };
            p.current_leader = LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(state.leader))
                .with_leader_epoch(state.leader_epoch);
            endpoints.insert(
                b.id,
                NodeEndpoint::default()
                    .with_node_id(BrokerId(b.id))
                    .with_host(str_bytes(b.host.clone()))
                    .with_port(i32::from(b.port))
                    .with_rack(b.rack.clone().map(str_bytes)),
            );
        }
    }
    response.node_endpoints = endpoints.into_values().collect();
}
