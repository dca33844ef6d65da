//! Metadata: brokers, and topics with their partitions; auto-creates
//! requested topics when the broker allows it and the client asks for it.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_request::MetadataRequest;
use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::broker::{Broker, TopicError};
use crate::metadata::TopicMeta;
use crate::server::errors::topic_error_code;

pub fn handle(broker: &Arc<Broker>, request: MetadataRequest, version: i16) -> MetadataResponse {
    let image = broker.image();
    let (host, port) = broker.advertised();
    let node = BrokerId(broker.node_id());
    // v0 asks for every topic with an empty list; later versions with null.
    let requested: Option<Vec<_>> = match request.topics {
        Some(t) if version == 0 && t.is_empty() => None,
        other => other,
    };
    let allow_auto_create = version < 4 || request.allow_auto_topic_creation;
    let topics = match requested {
        None => image
            .topics
            .values()
            .map(|t| topic_entry(broker, t, version))
            .collect(),
        Some(requested) => requested
            .into_iter()
            .map(|r| match r.name {
                Some(name) => match image.topics.get(name.as_str()) {
                    Some(t) => topic_entry(broker, t, version),
                    None => missing_topic(broker, name, allow_auto_create, version),
                },
                None => match image.topic_by_id(r.topic_id) {
                    Some(t) => topic_entry(broker, t, version),
                    None => MetadataResponseTopic::default()
                        .with_topic_id(r.topic_id)
                        .with_error_code(ResponseError::UnknownTopicId.code()),
                },
            })
            .collect(),
    };
    let mut response = MetadataResponse::default()
        .with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(node)
                .with_host(str_bytes(host))
                .with_port(port as i32),
        ])
        .with_topics(topics);
    if version >= 1 {
        response = response.with_controller_id(node);
    }
    if version >= 2 {
        response = response.with_cluster_id(Some(str_bytes(image.cluster_id.clone())));
    }
    response
}

fn missing_topic(
    broker: &Arc<Broker>,
    name: TopicName,
    allow_auto_create: bool,
    version: i16,
) -> MetadataResponseTopic {
    let unknown = || {
        MetadataResponseTopic::default()
            .with_name(Some(name.clone()))
            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
    };
    if !(allow_auto_create && broker.config.auto_create_topics) {
        return unknown();
    }
    match broker.create_topic(name.as_str(), -1, -1, BTreeMap::new()) {
        Ok(t) => topic_entry(broker, &t, version),
        // Another request created it first.
        Err(TopicError::AlreadyExists(_)) => match broker.image().topics.get(name.as_str()) {
            Some(t) => topic_entry(broker, t, version),
            None => unknown(),
        },
        Err(e) => {
            tracing::info!(topic = %name.as_str(), error = %e, "auto-creation refused");
            MetadataResponseTopic::default()
                .with_name(Some(name))
                .with_error_code(topic_error_code(&e))
        }
    }
}

/// One topic, with only the fields `version` has.
fn topic_entry(broker: &Broker, topic: &TopicMeta, version: i16) -> MetadataResponseTopic {
    let node = BrokerId(broker.node_id());
    let partitions = (0..topic.partitions)
        .map(|i| {
            MetadataResponsePartition::default()
                .with_partition_index(i)
                .with_leader_id(node)
                .with_leader_epoch(if version >= 7 { 0 } else { -1 })
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    let entry = MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_is_internal(version >= 1 && topic.name.starts_with("__"))
        .with_partitions(partitions);
    if version >= 10 {
        entry.with_topic_id(topic.topic_id)
    } else {
        entry
    }
}
