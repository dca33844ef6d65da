//! CreateTopics, DeleteTopics and CreatePartitions.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsRequest;
use kafka_protocol::messages::create_partitions_response::{
    CreatePartitionsResponse, CreatePartitionsTopicResult,
};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult, CreateTopicsResponse,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicsRequest;
use kafka_protocol::messages::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};
use uuid::Uuid;

use super::str_bytes;
use crate::broker::{Broker, TopicError};
use crate::metadata::mirror_policy::TopicOrigin;
use crate::metadata::topic_config::KNOWN;
use crate::server::errors::topic_error_code;

pub async fn create_topics(
    broker: &Arc<Broker>,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        topics.push(create_one(broker, t, request.validate_only, version).await);
    }
    CreateTopicsResponse::default().with_topics(topics)
}

async fn create_one(
    broker: &Broker,
    topic: CreatableTopic,
    validate_only: bool,
    version: i16,
) -> CreatableTopicResult {
    let name = topic.name.as_str().to_string();
    let reply = CreatableTopicResult::default()
        .with_name(topic.name.clone())
        .with_num_partitions(-1)
        .with_replication_factor(-1);
    let mut configs = BTreeMap::new();
    for c in &topic.configs {
        if let Some(v) = &c.value {
            configs.insert(c.name.as_str().to_string(), v.as_str().to_string());
        }
    }
    let planned = match plan_partitions(broker, &topic) {
        Err(e) => Err(e),
        // A mirror policy governs client-created topics with origin Client.
        Ok((partitions, rf)) if validate_only => broker
            .plan_create_topic(&name, partitions, rf, configs, TopicOrigin::Client)
            .map(|p| (p.partitions, p.replication_factor, Uuid::nil())),
        Ok((partitions, rf)) => broker
            .create_topic(&name, partitions, rf, configs, TopicOrigin::Client)
            .await
            .map(|t| (t.partitions, t.replicas(0).len() as i32, t.topic_id)),
    };
    match planned {
        // v5+ describes the result, v7+ carries the topic id.
        Ok(_) if version < 5 => reply,
        Ok((partitions, rf, topic_id)) => {
            let image = broker.image();
            let overrides = image
                .topics
                .get(&name)
                .map(|t| t.configs.clone())
                .unwrap_or_default();
            let tc = broker.configs_with(&image, &overrides);
            let described = KNOWN
                .iter()
                .map(|d| {
                    let (value, is_override) = tc.value(d.name);
                    CreatableTopicConfigs::default()
                        .with_name(str_bytes(d.name))
                        .with_value(Some(str_bytes(value)))
                        .with_config_source(if is_override { 1 } else { 5 })
                })
                .collect();
            reply
                .with_topic_id(if version >= 7 { topic_id } else { Uuid::nil() })
                .with_num_partitions(partitions)
                .with_replication_factor(rf as i16)
                .with_configs(Some(described))
        }
        Err(e) => reply
            .with_error_code(topic_error_code(&e))
            .with_error_message(Some(str_bytes(e.to_string()))),
    }
}

/// Partition count and replication factor from either the counts or an
/// explicit replica assignment (which may only name this broker).
fn plan_partitions(broker: &Broker, topic: &CreatableTopic) -> Result<(i32, i16), TopicError> {
    if topic.assignments.is_empty() {
        return Ok((topic.num_partitions, topic.replication_factor));
    }
    if topic.num_partitions != -1 || topic.replication_factor != -1 {
        return Err(TopicError::InvalidReplicaAssignment(
            "give either an assignment or numPartitions/replicationFactor, not both".into(),
        ));
    }
    let me = broker.node_id();
    for a in &topic.assignments {
        if a.broker_ids.len() != 1 || a.broker_ids[0].0 != me {
            return Err(TopicError::InvalidReplicaAssignment(format!(
                "partition {} is assigned to brokers {:?}; this cluster has only broker {me}",
                a.partition_index,
                a.broker_ids.iter().map(|b| b.0).collect::<Vec<_>>()
            )));
        }
    }
    Ok((topic.assignments.len() as i32, 1))
}

pub async fn delete_topics(
    broker: &Arc<Broker>,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    // v0-5 name topics in topic_names, v6+ by name or id in topics.
    let mut targets: Vec<(Option<TopicName>, Uuid)> = request
        .topic_names
        .into_iter()
        .map(|n| (Some(n), Uuid::nil()))
        .collect();
    targets.extend(request.topics.into_iter().map(|t| (t.name, t.topic_id)));
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let image = broker.image();
        let meta = match &name {
            Some(n) => image.topics.get(n.as_str()),
            None => image.topic_by_id(id),
        };
        let reply = DeletableTopicResult::default()
            .with_name(name.clone())
            .with_topic_id(id);
        let Some(meta) = meta else {
            let code = if name.is_some() {
                ResponseError::UnknownTopicOrPartition
            } else {
                ResponseError::UnknownTopicId
            };
            responses.push(reply.with_error_code(code.code()));
            continue;
        };
        // topic_id exists from v6, error_message from v5.
        let reply = reply
            .with_name(Some(TopicName(str_bytes(meta.name.clone()))))
            .with_topic_id(if version >= 6 {
                meta.topic_id
            } else {
                Uuid::nil()
            });
        responses.push(match broker.delete_topic(&meta.name).await {
            Ok(()) => reply,
            Err(e) => reply
                .with_error_code(topic_error_code(&e))
                .with_error_message((version >= 5).then(|| str_bytes(e.to_string()))),
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

pub async fn create_partitions(
    broker: &Arc<Broker>,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let reply = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let result = if request.validate_only {
            broker
                .plan_create_partitions(t.name.as_str(), t.count)
                .map(|_| ())
        } else {
            broker.create_partitions(t.name.as_str(), t.count).await
        };
        results.push(match result {
            Ok(()) => reply,
            Err(e) => reply
                .with_error_code(topic_error_code(&e))
                .with_error_message(Some(str_bytes(e.to_string()))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
