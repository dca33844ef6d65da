//! A follower's fetcher for one partition: Kafka Fetch v12 requests with
//! this broker's id as replica id, to the leader's replication address.
//!
//! Each round:
//! 1. Stop if this broker no longer follows the partition (it leads, the
//!    partition went offline or away, or the broker is shutting down).
//! 2. Fetch from the log end offset, with the current leader epoch and the
//!    epoch of the last batch held (`last_fetched_epoch`).
//! 3. A `diverging_epoch` answer means this log has a tail the leader does
//!    not: truncate to the smaller of the leader's end offset for that
//!    epoch and this log's own (KIP-320/KIP-595), then fetch again.
//! 4. Otherwise append the batches exactly as the leader wrote them, take
//!    the leader's high watermark (capped at this log's end) and its log
//!    start offset (retention and offsets compaction happen on the leader).
//!
//! A replica that a reassignment adds (a scale-down moving replicas) is
//! paced while it catches up, with `follower.replication.throttled.rate`
//! (`throttle`). Errors (connection, a leader that does not lead, an epoch
//! mismatch) back off briefly and wait for newer metadata.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::fetch_response::FetchResponse;
use kafka_protocol::messages::{ApiKey, BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::watch;

use super::client::Connection;
use super::replica::RoleView;
use crate::broker::{Broker, Partition};

const FETCH_VERSION: i16 = 12;
const MAX_WAIT_MS: i32 = 500;
const PARTITION_MAX_BYTES: i32 = 1 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A fetch answers within MAX_WAIT_MS; this much longer means the leader is gone.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF: Duration = Duration::from_millis(200);

/// Runs until step 1 says stop; releases the partition's fetcher claim.
pub async fn run(broker: Arc<Broker>, partition: Arc<Partition>, stopping: watch::Receiver<bool>) {
    let mut fetcher = Fetcher {
        broker,
        views: partition.replica.subscribe(),
        partition,
        stopping,
        conn: None,
    };
    loop {
        fetcher.follow().await;
        fetcher.partition.replica.release_fetcher();
        // Became a follower again between the last check and the release?
        if fetcher.target().is_none() || !fetcher.partition.replica.claim_fetcher() {
            return;
        }
    }
}

struct Fetcher {
    broker: Arc<Broker>,
    partition: Arc<Partition>,
    views: watch::Receiver<RoleView>,
    stopping: watch::Receiver<bool>,
    /// (leader id, its replication address, the connection).
    conn: Option<(i32, String, Connection)>,
}

impl Fetcher {
    /// Step 1: the leader to follow, or None to stop.
    fn target(&self) -> Option<RoleView> {
        let view = *self.views.borrow();
        let me = self.broker.node_id();
        let current = self
            .broker
            .partition(&self.partition.topic, self.partition.index)
            .is_some_and(|p| Arc::ptr_eq(&p, &self.partition));
        let stop = *self.stopping.borrow()
            || self.broker.is_shutting_down()
            || !current
            || view.leader < 0
            || view.leader == me;
        (!stop).then_some(view)
    }

    /// Waits `d`, or less if the role changes or the broker stops.
    async fn pause(&mut self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.views.changed() => {}
            _ = self.stopping.changed() => {}
        }
    }

    async fn follow(&mut self) {
        while let Some(view) = self.target() {
            if let Err(reason) = self.round(view).await {
                tracing::debug!(topic = %self.partition.topic, partition = self.partition.index, leader = view.leader, %reason, "replica fetch failed; retrying");
                self.pause(BACKOFF).await;
            }
        }
    }

    /// Steps 2–4 once.
    async fn round(&mut self, view: RoleView) -> Result<(), String> {
        let image = self.broker.image();
        let addr = image
            .brokers
            .get(&view.leader)
            .map(|b| b.replication_address())
            .ok_or_else(|| format!("leader {} is not registered", view.leader))?;
        if self
            .conn
            .as_ref()
            .is_none_or(|(id, a, _)| *id != view.leader || *a != addr)
        {
            self.conn = None;
            let client_id = format!("tideway-replica-{}", self.broker.node_id());
            let conn = Connection::connect(&addr, client_id, CONNECT_TIMEOUT)
                .await
                .map_err(|e| e.to_string())?;
            self.conn = Some((view.leader, addr, conn));
        }
        // A replica a reassignment adds, still catching up, is paced: by the
        // cluster's rate and the governing mirror policy's, the lower one.
        let me = self.broker.node_id();
        let move_rate = image
            .topics
            .get(&self.partition.topic)
            .filter(|t| {
                t.targets
                    .get(&self.partition.index)
                    .is_some_and(|target| target.contains(&me))
                    && !t.state(self.partition.index).isr.contains(&me)
            })
            .and_then(|t| {
                let cluster = self.broker.defaults(&image).move_throttle_bytes_per_sec;
                let policy = Broker::governing_policy(&image, &t.name, t.origin)
                    .and_then(|p| p.throttle_bytes_per_sec);
                cluster.into_iter().chain(policy).min()
            });
        let max_bytes = move_rate.map_or(PARTITION_MAX_BYTES, |rate| {
            PARTITION_MAX_BYTES.min(i32::try_from(rate).unwrap_or(i32::MAX).max(1))
        });
        let (leo, log_start, last_epoch) = {
            let log = self.partition.log();
            (
                log.log_end_offset(),
                log.log_start_offset(),
                log.latest_epoch().unwrap_or(-1),
            )
        };
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(self.broker.node_id()))
            .with_max_wait_ms(MAX_WAIT_MS)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(
                        self.partition.topic.clone(),
                    )))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(self.partition.index)
                            .with_current_leader_epoch(view.epoch)
                            .with_fetch_offset(leo)
                            .with_last_fetched_epoch(last_epoch)
                            .with_log_start_offset(log_start)
                            .with_partition_max_bytes(max_bytes),
                    ]),
            ]);
        let Some((_, _, conn)) = self.conn.as_mut() else {
            return Err("no connection".into());
        };
        let response: FetchResponse = match conn
            .call(ApiKey::Fetch, FETCH_VERSION, &request, REQUEST_TIMEOUT)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                self.conn = None;
                return Err(e.to_string());
            }
        };
        let data = response
            .responses
            .into_iter()
            .next()
            .and_then(|t| t.partitions.into_iter().next())
            .ok_or("the leader answered without the partition")?;
        if data.error_code != 0 {
            let error = ResponseError::try_from_code(data.error_code);
            if matches!(error, Some(ResponseError::OffsetOutOfRange)) && leo < data.log_start_offset
            {
                // The leader deleted what this log lacks: start over at its log start.
                let p = self.partition.clone();
                let start = data.log_start_offset;
                tokio::task::spawn_blocking(move || p.restart_at(start))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                tracing::warn!(topic = %self.partition.topic, partition = self.partition.index, from = leo, to = start, "the leader's log starts after this log's end: restarted the log at the leader's log start");
                return Ok(());
            }
            // `follow` backs off and waits for newer metadata.
            return Err(format!("leader answered {error:?}"));
        }
        let diverging = &data.diverging_epoch;
        if diverging.epoch >= 0 && diverging.end_offset >= 0 {
            let own_end = self
                .partition
                .log()
                .end_offset_for_epoch(diverging.epoch)
                .map_or(leo, |(_, end)| end);
            let to = diverging.end_offset.min(own_end);
            let p = self.partition.clone();
            let truncated = tokio::task::spawn_blocking(move || p.truncate_to(to))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            tracing::info!(topic = %self.partition.topic, partition = self.partition.index, leader = view.leader, epoch = diverging.epoch, from = leo, to = truncated, "truncated a divergent log tail");
            return Ok(());
        }
        if let Some(records) = data.records.filter(|r| !r.is_empty()) {
            let fetched = records.len() as u64;
            self.broker
                .append_replicated(&self.partition, records)
                .await
                .map_err(|e| format!("appending fetched batches: {e}"))?;
            if let Some(rate) = move_rate {
                self.broker.move_throttle.pace(fetched, rate).await;
            }
        }
        let leo = {
            let mut log = self.partition.log();
            // The leader's log start moved (retention, offsets compaction): follow it.
            if data.log_start_offset > log.log_start_offset()
                && data.log_start_offset <= log.log_end_offset()
                && let Err(e) = log.delete_records_before(data.log_start_offset)
            {
                tracing::warn!(topic = %self.partition.topic, partition = self.partition.index, error = %e, "following the leader's log start failed");
            }
            log.log_end_offset()
        };
        tracing::trace!(topic = %self.partition.topic, partition = self.partition.index, leo, leader_hw = data.high_watermark, "fetched");
        self.partition
            .replica
            .set_follower_high_watermark(data.high_watermark.min(leo));
        Ok(())
    }
}
