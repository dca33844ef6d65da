//! Kafka error codes for every internal error, in one place.

use kafka_protocol::ResponseError;

use crate::broker::TopicError;
use crate::log::LogError;

pub fn log_error_code(e: &LogError) -> i16 {
    match e {
        LogError::CorruptBatch(_) => ResponseError::CorruptMessage,
        LogError::InvalidRecord { .. } => ResponseError::InvalidRecord,
        LogError::BatchTooLarge { .. } => ResponseError::MessageTooLarge,
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        LogError::Storage { .. } => ResponseError::KafkaStorageError,
    }
    .code()
}

pub fn topic_error_code(e: &TopicError) -> i16 {
    match e {
        TopicError::InvalidName(_) => ResponseError::InvalidTopicException,
        TopicError::AlreadyExists(_) => ResponseError::TopicAlreadyExists,
        TopicError::Unknown(_) => ResponseError::UnknownTopicOrPartition,
        TopicError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        TopicError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        TopicError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
        TopicError::PolicyViolation(_) => ResponseError::PolicyViolation,
        TopicError::InvalidConfig(_) => ResponseError::InvalidConfig,
        // The quorum could not take the change in time: retriable, as Kafka's controller answers.
        TopicError::Commit(crate::metadata::MetadataError::Unavailable(_)) => {
            ResponseError::RequestTimedOut
        }
        TopicError::Commit(_) | TopicError::CreateLog { .. } => ResponseError::KafkaStorageError,
    }
    .code()
}

pub const NONE: i16 = 0;

pub fn code(e: ResponseError) -> i16 {
    e.code()
}
