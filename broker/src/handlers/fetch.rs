//! Fetch: reads whole record batches from partition logs, long-polling up
//! to max_wait_ms until min_bytes are available.
//!
//! 1. Read every requested partition within the partition and response
//!    byte limits (the log always returns at least one whole batch, KIP-74).
//! 2. Answer when min_bytes are gathered, a partition has an error, the
//!    deadline passed, or the broker is stopping.
//! 3. Otherwise wait for the next append anywhere, then go to 1.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::fetch_request::FetchRequest;
use kafka_protocol::messages::fetch_response::{
    EpochEndOffset, FetchResponse, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;

use crate::broker::{Broker, now_ms};
use crate::replication::replica::check_epoch;
use crate::server::errors::log_error_code;

/// Fetches never wait longer than this, whatever the client asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

pub async fn handle(broker: &Arc<Broker>, request: FetchRequest, version: i16) -> FetchResponse {
    let wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + wait;
    let mut appends = broker.subscribe_appends();
    loop {
        appends.borrow_and_update();
        let (response, bytes, has_error) = read_once(broker, &request, version);
        if bytes >= request.min_bytes.max(0) as usize || has_error || Instant::now() >= deadline {
            return response;
        }
        tokio::select! {
            changed = appends.changed() => if changed.is_err() { return response },
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// Step 1: one pass over the requested partitions. Returns the response,
/// the record bytes in it, and whether any partition has an error.
fn read_once(
    broker: &Broker,
    request: &FetchRequest,
    version: i16,
) -> (FetchResponse, usize, bool) {
    let image = broker.image();
    // fetch.max.bytes caps what the client asks for.
    let mut remaining = (request.max_bytes.max(0) as usize).min(broker.config.fetch_max_bytes);
    let mut total = 0usize;
    let mut has_error = false;
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        // v13+ names topics by id only.
        let meta = if version >= 13 {
            image.topic_by_id(topic.topic_id)
        } else {
            image.topics.get(topic.topic.as_str())
        };
        let unknown_code = if version >= 13 {
            ResponseError::UnknownTopicId
        } else {
            ResponseError::UnknownTopicOrPartition
        };
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let reply = PartitionData::default().with_partition_index(p.partition);
            let partition = match meta {
                Some(m) => super::hosted(broker, &m.name, p.partition).map_err(|e| e.code()),
                None => Err(unknown_code.code()),
            };
            let partition = match partition {
                Ok(partition) => partition,
                Err(code) => {
                    has_error = true;
                    partitions.push(
                        reply
                            .with_error_code(code)
                            .with_high_watermark(-1)
                            .with_records(Some(Bytes::new())),
                    );
                    continue;
                }
            };
            let limit = (p.partition_max_bytes.max(0) as usize).min(remaining);
            // A follower (replica id ≥ 0) reads up to the log end and reports
            // its progress; consumers read up to the high watermark.
            let follower = replica_id(request, version);
            let checked = match follower {
                Some(id) => partition
                    .replica
                    .on_follower_fetch(id, p.current_leader_epoch, p.fetch_offset, now_ms())
                    .map(|effects| broker.apply_effects(&partition, effects)),
                None => partition
                    .replica
                    .leader_epoch(false)
                    .and_then(|epoch| check_epoch(epoch, p.current_leader_epoch)),
            };
            if let Err(code) = checked {
                has_error = true;
                partitions.push(
                    reply
                        .with_error_code(code.code())
                        .with_high_watermark(-1)
                        .with_records(Some(Bytes::new())),
                );
                continue;
            }
            let hw = partition.replica.high_watermark();
            let log = partition.log();
            let (start, end) = (log.log_start_offset(), log.log_end_offset());
            let hw = hw.min(end);
            let reply = reply
                .with_high_watermark(hw)
                .with_last_stable_offset(hw)
                .with_log_start_offset(if version >= 5 { start } else { -1 });
            // A follower whose last epoch ends earlier here has a divergent tail (KIP-320).
            if follower.is_some() && version >= 12 && p.last_fetched_epoch >= 0 {
                let (epoch, end_offset) = log
                    .end_offset_for_epoch(p.last_fetched_epoch)
                    .unwrap_or((-1, -1));
                if epoch < p.last_fetched_epoch || end_offset < p.fetch_offset {
                    drop(log);
                    has_error = true; // answer now: the follower must truncate first
                    partitions.push(
                        reply
                            .with_diverging_epoch(
                                EpochEndOffset::default()
                                    .with_epoch(epoch)
                                    .with_end_offset(end_offset),
                            )
                            .with_records(Some(Bytes::new())),
                    );
                    continue;
                }
            }
            let upper = if follower.is_some() { end } else { hw };
            // Once the response is full, later partitions only report offsets;
            // a consumer past the high watermark (but within the log) waits.
            let read = if (limit == 0 && total > 0)
                || (p.fetch_offset >= upper && p.fetch_offset <= end)
            {
                Ok(Bytes::new())
            } else {
                log.read(p.fetch_offset, limit.max(1), upper)
            };
            drop(log);
            match read {
                Ok(records) => {
                    total += records.len();
                    remaining = remaining.saturating_sub(records.len());
                    if !records.is_empty() {
                        broker
                            .metrics
                            .record_fetch(&partition.topic, records.len() as u64);
                    }
                    partitions.push(reply.with_records(Some(records)));
                }
                Err(e) => {
                    has_error = true;
                    if matches!(e, crate::log::LogError::Storage { .. }) {
                        broker.metrics.storage_error();
                    }
                    partitions.push(
                        reply
                            .with_error_code(log_error_code(&e))
                            .with_records(Some(Bytes::new())),
                    );
                }
            }
        }
        // v13+ answers by topic id only.
        let name = if version >= 13 {
            String::new()
        } else {
            meta.map(|m| m.name.clone())
                .unwrap_or_else(|| topic.topic.as_str().to_string())
        };
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_string(name)))
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions),
        );
    }
    (
        FetchResponse::default().with_responses(topics),
        total,
        has_error,
    )
}

/// The fetching replica's id, or None for a consumer (v15+ moved it into
/// `replica_state`).
fn replica_id(request: &FetchRequest, version: i16) -> Option<i32> {
    let id = if version >= 15 {
        request.replica_state.replica_id.0
    } else {
        request.replica_id.0
    };
    (id >= 0).then_some(id)
}
