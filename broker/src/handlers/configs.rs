//! DescribeConfigs, IncrementalAlterConfigs and the older AlterConfigs
//! (which replaces a topic's whole set of overrides) for topics, and a
//! read-only view of the broker's defaults.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_configs_request::AlterConfigsRequest;
use kafka_protocol::messages::alter_configs_response::{
    AlterConfigsResourceResponse as ReplacedConfigsResponse, AlterConfigsResponse,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsRequest;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
};
use kafka_protocol::messages::incremental_alter_configs_request::IncrementalAlterConfigsRequest;
use kafka_protocol::messages::incremental_alter_configs_response::{
    AlterConfigsResourceResponse, IncrementalAlterConfigsResponse,
};

use super::str_bytes;
use crate::broker::{Broker, TopicError};

use crate::metadata::topic_config::{KNOWN, TopicConfigError};
use crate::server::errors::topic_error_code;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// Config sources (DescribeConfigs).
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const DEFAULT_CONFIG: i8 = 5;
/// IncrementalAlterConfigs operations.
const SET: i8 = 0;
const DELETE: i8 = 1;

pub fn describe(
    broker: &Arc<Broker>,
    request: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let image = broker.image();
    let empty = BTreeMap::new();
    let results = request
        .resources
        .into_iter()
        .map(|r| {
            let reply = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let overrides = match r.resource_type {
                TOPIC => match image.topics.get(r.resource_name.as_str()) {
                    Some(t) => &t.configs,
                    None => {
                        return reply
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(str_bytes(format!(
                                "topic '{}' does not exist",
                                r.resource_name.as_str()
                            ))));
                    }
                },
                BROKER => &empty,
                other => {
                    return reply
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(str_bytes(format!(
                            "resource type {other} is not supported"
                        ))));
                }
            };
            let tc = broker.configs_with(&image, overrides);
            // No keys (null, or an empty list) means every config.
            let wanted = |name: &str| {
                r.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.is_empty() || keys.iter().any(|k| k.as_str() == name))
            };
            let configs = KNOWN
                .iter()
                .filter(|d| wanted(d.name))
                .map(|d| {
                    let (value, is_override) = tc.value(d.name);
                    let entry = DescribeConfigsResourceResult::default()
                        .with_name(str_bytes(d.name))
                        .with_value(Some(str_bytes(value)))
                        .with_read_only(r.resource_type == BROKER)
                        .with_config_source(if is_override {
                            DYNAMIC_TOPIC_CONFIG
                        } else {
                            DEFAULT_CONFIG
                        })
                        // config_type and documentation exist from v3.
                        .with_config_type(if version >= 3 { d.config_type as i8 } else { 0 });
                    if request.include_documentation && version >= 3 {
                        entry.with_documentation(Some(str_bytes(d.doc)))
                    } else {
                        entry
                    }
                })
                .collect();
            reply.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

pub async fn incremental_alter(
    broker: &Arc<Broker>,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for r in request.resources {
        let reply = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let name = r.resource_name.as_str().to_string();
        let result = match only_topics(r.resource_type) {
            Ok(()) => alter_topic(broker, &name, &r.configs, request.validate_only).await,
            Err(e) => Err(e),
        };
        let (code, message) = error_fields(result);
        responses.push(reply.with_error_code(code).with_error_message(message));
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// AlterConfigs: each topic's overrides become exactly the configs given
/// (the ones left out go back to their defaults), validated as
/// IncrementalAlterConfigs validates them, mirror policies included.
pub async fn alter(broker: &Arc<Broker>, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for r in request.resources {
        let reply = ReplacedConfigsResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let result = match only_topics(r.resource_type) {
            Ok(()) => {
                replace_topic(
                    broker,
                    r.resource_name.as_str(),
                    &r.configs,
                    request.validate_only,
                )
                .await
            }
            Err(e) => Err(e),
        };
        let (code, message) = error_fields(result);
        responses.push(reply.with_error_code(code).with_error_message(message));
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// Only topics can be altered: broker settings are flags, other resource
/// types are not served.
fn only_topics(resource_type: i8) -> Result<(), (i16, String)> {
    match resource_type {
        TOPIC => Ok(()),
        BROKER => Err((
            ResponseError::InvalidConfig.code(),
            "broker settings are command-line flags and cannot be changed at run time".to_string(),
        )),
        other => Err((
            ResponseError::InvalidRequest.code(),
            format!("resource type {other} is not supported"),
        )),
    }
}

/// A result as a response's error code and message (0 and none on success).
fn error_fields(
    result: Result<(), (i16, String)>,
) -> (i16, Option<kafka_protocol::protocol::StrBytes>) {
    match result {
        Ok(()) => (0, None),
        Err((code, message)) => (code, Some(str_bytes(message))),
    }
}

async fn replace_topic(
    broker: &Broker,
    name: &str,
    entries: &[kafka_protocol::messages::alter_configs_request::AlterableConfig],
    validate_only: bool,
) -> Result<(), (i16, String)> {
    let mut configs = BTreeMap::new();
    for c in entries {
        let Some(value) = &c.value else {
            return Err((
                ResponseError::InvalidConfig.code(),
                format!("no value given for '{}'", c.name.as_str()),
            ));
        };
        configs.insert(c.name.as_str().to_string(), value.as_str().to_string());
    }
    broker
        .replace_topic_configs(name, configs, validate_only)
        .await
        .map_err(|e| (topic_error_code(&e), e.to_string()))
}

async fn alter_topic(
    broker: &Broker,
    name: &str,
    changes: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
    validate_only: bool,
) -> Result<(), (i16, String)> {
    let image = broker.image();
    let mut configs = match image.topics.get(name) {
        Some(t) => t.configs.clone(),
        None => {
            let e = TopicError::Unknown(name.to_string());
            return Err((topic_error_code(&e), e.to_string()));
        }
    };
    for c in changes {
        let key = c.name.as_str().to_string();
        match (c.config_operation, &c.value) {
            (SET, Some(v)) => {
                configs.insert(key, v.as_str().to_string());
            }
            (DELETE, _) => {
                if !KNOWN.iter().any(|d| d.name == key) {
                    let e = TopicError::InvalidConfig(TopicConfigError::Unknown(key));
                    return Err((topic_error_code(&e), e.to_string()));
                }
                configs.remove(&key);
            }
            (SET, None) => {
                return Err((
                    ResponseError::InvalidConfig.code(),
                    format!("no value given for '{key}'"),
                ));
            }
            (op, _) => {
                return Err((
                    ResponseError::InvalidConfig.code(),
                    format!("operation {op} on '{key}' is not supported; use SET or DELETE"),
                ));
            }
        }
    }
    broker
        .replace_topic_configs(name, configs, validate_only)
        .await
        .map_err(|e| (topic_error_code(&e), e.to_string()))
}
