//! ListOffsets: earliest, latest, max-timestamp and by-timestamp lookups.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_request::ListOffsetsRequest;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};

use crate::broker::Broker;
use crate::log::TimestampOffset;
use crate::server::errors::log_error_code;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub fn handle(
    broker: &Arc<Broker>,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let reply = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let partition =
                        match super::hosted(broker, topic.name.as_str(), p.partition_index) {
                            Ok(partition) => partition,
                            Err(code) => return reply.with_error_code(code.code()),
                        };
                    let hw = match (p.timestamp, partition.replica.visible_high_watermark()) {
                        (LATEST, Err(code)) => return reply.with_error_code(code.code()),
                        (_, hw) => hw.unwrap_or(-1),
                    };
                    let log = partition.log();
                    let found = match p.timestamp {
                        // Consumers see up to the high watermark (READ_UNCOMMITTED).
                        LATEST => Ok(Some(TimestampOffset {
                            timestamp: -1,
                            offset: hw.min(log.log_end_offset()),
                        })),
                        EARLIEST | EARLIEST_LOCAL => Ok(Some(TimestampOffset {
                            timestamp: -1,
                            offset: log.log_start_offset(),
                        })),
                        MAX_TIMESTAMP => log.max_timestamp(),
                        ts if ts >= 0 => log.offset_for_timestamp(ts),
                        _ => return reply.with_error_code(ResponseError::InvalidRequest.code()),
                    };
                    match found {
                        Ok(Some(found)) => reply
                            .with_timestamp(found.timestamp)
                            .with_offset(found.offset)
                            // The current leader epoch (v4+): a client that knows a newer
                            // epoch than the answer's takes the answer as stale (KIP-320).
                            .with_leader_epoch(if version >= 4 {
                                partition.replica.view().epoch.max(0)
                            } else {
                                -1
                            }),
                        // No record at or after the timestamp: Kafka answers -1/-1.
                        Ok(None) => reply.with_timestamp(-1).with_offset(-1),
                        Err(e) => reply.with_error_code(log_error_code(&e)),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
