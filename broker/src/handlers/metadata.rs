//! Metadata: the cluster's brokers, and topics with their partitions'
//! leaders and replicas; auto-creates requested topics when the broker
//! allows it and the client asks for it.

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
use crate::metadata::{MetadataImage, TopicMeta};
use crate::server::errors::topic_error_code;

pub async fn handle(
    broker: &Arc<Broker>,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    // v0 asks for every topic with an empty list; later versions with null.
    let requested: Option<Vec<_>> = match request.topics {
        Some(t) if version == 0 && t.is_empty() => None,
        other => other,
    };
    let allow_auto_create = version < 4 || request.allow_auto_topic_creation;
    let mut topics = Vec::new();
    match requested {
        None => topics.extend(
            broker
                .image()
                .topics
                .values()
                .map(|t| topic_entry(t, version)),
        ),
        Some(requested) => {
            for r in requested {
                let image = broker.image();
                topics.push(match r.name {
                    Some(name) => match image.topics.get(name.as_str()) {
                        Some(t) => topic_entry(t, version),
                        None => missing_topic(broker, name, allow_auto_create, version).await,
                    },
                    None => match image.topic_by_id(r.topic_id) {
                        Some(t) => topic_entry(t, version),
                        None => MetadataResponseTopic::default()
                            .with_topic_id(r.topic_id)
                            .with_error_code(ResponseError::UnknownTopicId.code()),
                    },
                });
            }
        }
    }
    let image = broker.image();
    let mut response = MetadataResponse::default()
        .with_brokers(brokers(broker, &image, version))
        .with_topics(topics);
    if version >= 1 {
        let controller = broker.store().quorum().leader.unwrap_or(-1);
        response = response.with_controller_id(BrokerId(controller));
    }
    if version >= 2 {
        response = response.with_cluster_id(Some(str_bytes(image.cluster_id.clone())));
    }
    response
}

/// Every registered broker; this one alone before it has registered.
fn brokers(broker: &Broker, image: &MetadataImage, version: i16) -> Vec<MetadataResponseBroker> {
    if image.brokers.is_empty() {
        let (host, port) = broker.advertised();
        return vec![
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(broker.node_id()))
                .with_host(str_bytes(host))
                .with_port(i32::from(port)),
        ];
    }
    image
        .brokers
        .values()
        .map(|b| {
            let entry = MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(str_bytes(b.host.clone()))
                .with_port(i32::from(b.port));
            // rack exists from v1.
            if version >= 1 {
                entry.with_rack(b.rack.clone().map(str_bytes))
            } else {
                entry
            }
        })
        .collect()
}

async fn missing_topic(
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
    if !(allow_auto_create && broker.defaults(&broker.image()).auto_create_topics) {
        return unknown();
    }
    match broker
        .create_topic(
            name.as_str(),
            -1,
            -1,
            BTreeMap::new(),
            crate::metadata::mirror_policy::TopicOrigin::Client,
        )
        .await
    {
        Ok(t) => topic_entry(&t, version),
        // Another request created it first.
        Err(TopicError::AlreadyExists(_)) => match broker.image().topics.get(name.as_str()) {
            Some(t) => topic_entry(t, version),
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
fn topic_entry(topic: &TopicMeta, version: i16) -> MetadataResponseTopic {
    let partitions = (0..topic.partitions)
        .map(|i| {
            let replicas: Vec<BrokerId> = topic.replicas(i).iter().map(|&b| BrokerId(b)).collect();
            let state = topic.state(i);
            let leader = state.leader;
            MetadataResponsePartition::default()
                .with_partition_index(i)
                .with_error_code(if leader < 0 {
                    ResponseError::LeaderNotAvailable.code()
                } else {
                    0
                })
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(if version >= 7 { state.leader_epoch } else { -1 })
                .with_isr_nodes(state.isr.iter().map(|&b| BrokerId(b)).collect())
                .with_replica_nodes(replicas)
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
