//! OffsetCommit, OffsetFetch and OffsetDelete.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::offset_commit_request::OffsetCommitRequest;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_request::OffsetDeleteRequest;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponse, OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequest;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponseGroup, OffsetFetchResponsePartition,
    OffsetFetchResponsePartitions, OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};

use super::{Context, str_bytes};
use crate::broker::now_ms;
use crate::group::coordinator::{GroupCoordinator, MAX_OFFSET_METADATA};
use crate::group::offsets::Committed;

pub async fn commit(ctx: &Context, r: OffsetCommitRequest) -> OffsetCommitResponse {
    let image = ctx.broker.image();
    // Per-partition checks first; the valid rest is committed together.
    let mut codes: Vec<Vec<i16>> = Vec::with_capacity(r.topics.len());
    let mut entries = Vec::new();
    for t in &r.topics {
        let topic = image.topics.get(t.name.as_str());
        codes.push(
            t.partitions
                .iter()
                .map(|p| {
                    if topic
                        .is_none_or(|m| p.partition_index < 0 || p.partition_index >= m.partitions)
                    {
                        return ResponseError::UnknownTopicOrPartition.code();
                    }
                    if p.committed_metadata
                        .as_ref()
                        .is_some_and(|m| m.len() > MAX_OFFSET_METADATA)
                    {
                        return ResponseError::OffsetMetadataTooLarge.code();
                    }
                    entries.push((
                        (t.name.as_str().to_string(), p.partition_index),
                        Committed {
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata: p
                                .committed_metadata
                                .as_ref()
                                .map(|m| m.as_str().to_string()),
                            commit_ms: now_ms(),
                            topic_id: topic.map(|m| m.topic_id),
                        },
                    ));
                    0
                })
                .collect(),
        );
    }
    let group_error = if entries.is_empty() {
        None
    } else if let Err(e) = ctx.coordinator() {
        Some(e)
    } else if let Some(groups) = ctx.groups() {
        groups
            .commit(
                r.group_id.as_str(),
                r.generation_id_or_member_epoch,
                r.member_id.as_str(),
                r.group_instance_id.as_ref().map(|s| s.as_str()),
                entries,
            )
            .await
            .err()
    } else {
        None
    };
    let topics = r
        .topics
        .into_iter()
        .zip(codes)
        .map(|(t, codes)| {
            let partitions = t
                .partitions
                .iter()
                .zip(codes)
                .map(|(p, c)| {
                    let c = match (c, group_error) {
                        (0, Some(e)) => e.code(),
                        (c, _) => c,
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(c)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

type TopicOffsets = Vec<(TopicName, Vec<(i32, Option<Committed>)>)>;

/// (topic, partition, committed) for the asked partitions, or all committed ones.
fn fetch_group(
    groups: &GroupCoordinator,
    group: &str,
    topics: Option<Vec<(TopicName, Vec<i32>)>>,
) -> TopicOffsets {
    match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(name, parts)| {
                let found = parts
                    .into_iter()
                    .map(|p| (p, groups.offsets.get(group, name.as_str(), p)))
                    .collect();
                (name, found)
            })
            .collect(),
        None => {
            let mut by_topic: std::collections::BTreeMap<String, Vec<(i32, Option<Committed>)>> =
                Default::default();
            for ((topic, p), c) in groups.offsets.group(group) {
                by_topic.entry(topic).or_default().push((p, Some(c)));
            }
            by_topic
                .into_iter()
                .map(|(t, parts)| (TopicName(str_bytes(t)), parts))
                .collect()
        }
    }
}

fn unpack(c: Option<Committed>) -> (i64, i32, String) {
    match c {
        Some(c) => (c.offset, c.leader_epoch, c.metadata.unwrap_or_default()),
        None => (-1, -1, String::new()),
    }
}

pub fn fetch(ctx: &Context, r: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    let groups = match ctx.coordinator() {
        Ok(g) => g,
        Err(e) if version >= 8 => {
            let answers = r.groups.into_iter().map(|g| {
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_error_code(e.code())
            });
            return OffsetFetchResponse::default().with_groups(answers.collect());
        }
        Err(e) if version >= 2 => return OffsetFetchResponse::default().with_error_code(e.code()),
        Err(_) => return OffsetFetchResponse::default(),
    };
    // No transactions, so no offset is ever pending: RequireStable needs no wait.
    if version >= 8 {
        let groups = r
            .groups
            .into_iter()
            .map(|g| {
                let asked = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name, t.partition_indexes))
                        .collect()
                });
                let topics = fetch_group(&groups, g.group_id.as_str(), asked)
                    .into_iter()
                    .map(|(name, parts)| {
                        let partitions = parts
                            .into_iter()
                            .map(|(p, c)| {
                                let (offset, epoch, metadata) = unpack(c);
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(offset)
                                    .with_committed_leader_epoch(epoch)
                                    .with_metadata(Some(str_bytes(metadata)))
                            })
                            .collect();
                        OffsetFetchResponseTopics::default()
                            .with_name(name)
                            .with_partitions(partitions)
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let asked = r.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect()
    });
    let topics = fetch_group(&groups, r.group_id.as_str(), asked)
        .into_iter()
        .map(|(name, parts)| {
            let partitions = parts
                .into_iter()
                .map(|(p, c)| {
                    let (offset, epoch, metadata) = unpack(c);
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(p)
                        .with_committed_offset(offset)
                        // The leader epoch exists from v5.
                        .with_committed_leader_epoch(if version >= 5 { epoch } else { -1 })
                        .with_metadata(Some(str_bytes(metadata)))
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

pub async fn delete(ctx: &Context, r: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let asked: Vec<(String, i32)> = r
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.as_str().to_string(), p.partition_index))
        })
        .collect();
    let codes = match ctx.coordinator() {
        Ok(groups) => groups.delete_offsets(r.group_id.as_str(), asked).await,
        Err(e) => Err(e),
    };
    let codes = match codes {
        Ok(codes) => codes,
        Err(e) => return OffsetDeleteResponse::default().with_error_code(e.code()),
    };
    let mut codes = codes.into_iter();
    let topics = r
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(codes.next().map_or(0, |c| c.code()))
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
