//! OffsetForLeaderEpoch: where a leader epoch ends in the leader's log
//! (KIP-279), so a client or follower can detect that the log it read was
//! truncated after a leader change (KIP-320).

use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderEpochRequest;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderEpochResponse, OffsetForLeaderTopicResult,
};

use crate::broker::Broker;
use crate::replication::replica::check_epoch;

pub fn handle(
    broker: &Arc<Broker>,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let reply = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let partition = match super::hosted(broker, topic.topic.as_str(), p.partition) {
                        Ok(partition) => partition,
                        Err(code) => return reply.with_error_code(code.code()),
                    };
                    let checked = partition
                        .replica
                        .leader_epoch(false)
                        .and_then(|epoch| check_epoch(epoch, p.current_leader_epoch));
                    if let Err(code) = checked {
                        return reply.with_error_code(code.code());
                    }
                    match partition.log().end_offset_for_epoch(p.leader_epoch) {
                        Some((epoch, end)) => reply.with_leader_epoch(epoch).with_end_offset(end),
                        // Kafka's UNDEFINED_EPOCH / UNDEFINED_EPOCH_OFFSET, no error.
                        None => reply,
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
