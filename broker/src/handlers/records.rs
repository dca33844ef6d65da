//! DeleteRecords (`kafka-delete-records`, AdminClient.deleteRecords): the
//! leader moves a partition's log start offset up to the offset asked for
//! (-1: the high watermark), never past the high watermark; segments wholly
//! below it go. Followers follow the leader's log start as they fetch.
//! Internal topics are refused (INVALID_TOPIC_EXCEPTION), as in Kafka.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_records_request::DeleteRecordsRequest;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsResponse, DeleteRecordsTopicResult,
};

use super::hosted;
use crate::broker::Broker;
use crate::server::errors::log_error_code;

/// The offset that means "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

pub async fn delete_records(
    broker: &Arc<Broker>,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let reply =
                DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
            partitions.push(
                match delete_one(broker, t.name.as_str(), p.partition_index, p.offset).await {
                    Ok(low_watermark) => reply.with_low_watermark(low_watermark),
                    Err(code) => reply.with_low_watermark(-1).with_error_code(code),
                },
            );
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

/// The new log start offset, or the Kafka error code.
async fn delete_one(broker: &Broker, topic: &str, index: i32, offset: i64) -> Result<i64, i16> {
    // As Kafka: the records of internal topics (consumer offsets) are not the clients' to delete.
    if topic.starts_with("__") && broker.image().topics.contains_key(topic) {
        return Err(ResponseError::InvalidTopicException.code());
    }
    let partition = hosted(broker, topic, index).map_err(|e| e.code())?;
    let hw = partition.replica.high_watermark();
    let offset = if offset == HIGH_WATERMARK { hw } else { offset };
    if offset < 0 || offset > hw {
        return Err(ResponseError::OffsetOutOfRange.code());
    }
    let deleted =
        tokio::task::spawn_blocking(move || partition.log().delete_records_before(offset))
            .await
            .map_err(|_| ResponseError::UnknownServerError.code())?;
    match deleted {
        Ok(start) => {
            tracing::info!(
                topic,
                partition = index,
                log_start = start,
                "records deleted"
            );
            Ok(start)
        }
        Err(e) => Err(log_error_code(&e)),
    }
}
