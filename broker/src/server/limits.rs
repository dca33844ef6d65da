//! Limits on what clients control at the Kafka listener. Each has a flag
//! ([`ServerLimits`], docs/reliability.md "Hostile input") and counts in
//! `tideway_limit_hits_total{limit}` when hit:
//! - `max_connections`, `max_connections_per_ip`: a connection over either
//!   is closed as it arrives;
//! - `queued_max_request_bytes` (all connections) and
//!   `connection_queued_max_bytes` (one connection): bytes of requests read
//!   but not yet answered. Once a frame's body starts to arrive, the reader
//!   waits until the whole frame fits both budgets (an announced size alone
//!   holds nothing; nothing is refused), so the memory held for requests is
//!   bounded whatever clients send;
//! - `frame_read_timeout`: a frame must arrive whole within it, or the
//!   connection is closed: a client that sends a frame slowly holds budget
//!   for at most that long;
//! - `max_request_partitions`: the entries (partitions, or topics, groups,
//!   resources for APIs that name no partitions) one request names; more
//!   closes the connection, as a frame over `--max-request-bytes` does.
//!
//! The frame size itself is checked in `connection` on the 4-byte length,
//! before the frame is read; array counts and lengths inside a frame are
//! bounded by the bytes left in it (the patched kafka-protocol decoder,
//! broker/vendor/README.md).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use kafka_protocol::messages::RequestKind;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::ServerLimits;
use crate::runtime::Context;

/// The listener's shared admission state.
pub struct Admission {
    ctx: Arc<Context>,
    limits: ServerLimits,
    open: Mutex<OpenConnections>,
    queued: Arc<Semaphore>,
}

#[derive(Default)]
struct OpenConnections {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Admission {
    pub fn new(ctx: Arc<Context>) -> Arc<Self> {
        let limits = ctx.broker.config.server.clone();
        Arc::new(Self {
            queued: Arc::new(Semaphore::new(limits.queued_max_request_bytes)),
            open: Mutex::new(OpenConnections::default()),
            limits,
            ctx,
        })
    }

    pub fn limits(&self) -> &ServerLimits {
        &self.limits
    }

    /// A slot for a new connection from `ip`, or `None` (counted) when one
    /// of the connection limits is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionSlot> {
        let metrics = &self.ctx.broker.metrics;
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let from_ip = open.per_ip.get(&ip).copied().unwrap_or(0);
        if open.total >= self.limits.max_connections {
            metrics.limit_hit("max_connections");
            return None;
        }
        if from_ip >= self.limits.max_connections_per_ip {
            metrics.limit_hit("max_connections_per_ip");
            return None;
        }
        open.total += 1;
        open.per_ip.insert(ip, from_ip + 1);
        metrics.set_connections(open.total);
        Some(ConnectionSlot {
            admission: self.clone(),
            ip,
        })
    }

    /// Waits until `len` bytes fit the broker-wide budget and `connection`'s
    /// own. The permits travel with the frame and are returned when its
    /// response has been written.
    pub async fn queue_frame(&self, connection: &Arc<Semaphore>, len: usize) -> QueuedBytes {
        let n = len as u32;
        let metrics = &self.ctx.broker.metrics;
        let own = match connection.clone().try_acquire_many_owned(n) {
            Ok(p) => p,
            Err(_) => {
                metrics.limit_hit("connection_queued_max_bytes");
                acquire(connection, n).await
            }
        };
        let all = match self.queued.clone().try_acquire_many_owned(n) {
            Ok(p) => p,
            Err(_) => {
                metrics.limit_hit("queued_max_request_bytes");
                acquire(&self.queued, n).await
            }
        };
        metrics.add_queued_request_bytes(len as i64);
        QueuedBytes {
            ctx: self.ctx.clone(),
            len,
            _permits: (own, all),
        }
    }
}

async fn acquire(semaphore: &Arc<Semaphore>, n: u32) -> OwnedSemaphorePermit {
    // The semaphores are never closed, and `n` never exceeds their size
    // (checked at start-up: both budgets are at least --max-request-bytes).
    semaphore
        .clone()
        .acquire_many_owned(n)
        .await
        .expect("request budget semaphores are never closed")
}

/// One admitted connection; dropping it frees the slot.
pub struct ConnectionSlot {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self
            .admission
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
        self.admission
            .ctx
            .broker
            .metrics
            .set_connections(open.total);
    }
}

/// Bytes of one frame held against the budgets until it is answered.
pub struct QueuedBytes {
    ctx: Arc<Context>,
    len: usize,
    _permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

impl Drop for QueuedBytes {
    fn drop(&mut self) {
        self.ctx
            .broker
            .metrics
            .add_queued_request_bytes(-(self.len as i64));
    }
}

/// The entries one request names: partitions where the API names them,
/// else topics, groups, resources or members.
pub fn entries_named(request: &RequestKind) -> usize {
    fn sum<T>(items: &[T], f: impl Fn(&T) -> usize) -> usize {
        items.iter().map(|t| 1 + f(t)).sum()
    }
    match request {
        RequestKind::Produce(r) => sum(&r.topic_data, |t| t.partition_data.len()),
        RequestKind::Fetch(r) => {
            sum(&r.topics, |t| t.partitions.len())
                + sum(&r.forgotten_topics_data, |t| t.partitions.len())
        }
        RequestKind::ListOffsets(r) => sum(&r.topics, |t| t.partitions.len()),
        RequestKind::Metadata(r) => r.topics.as_ref().map_or(0, Vec::len),
        RequestKind::OffsetForLeaderEpoch(r) => sum(&r.topics, |t| t.partitions.len()),
        RequestKind::CreateTopics(r) => sum(&r.topics, |t| t.assignments.len() + t.configs.len()),
        RequestKind::DeleteTopics(r) => r.topics.len() + r.topic_names.len(),
        RequestKind::DescribeConfigs(r) => sum(&r.resources, |c| {
            c.configuration_keys.as_ref().map_or(0, Vec::len)
        }),
        RequestKind::CreatePartitions(r) => {
            sum(&r.topics, |t| t.assignments.as_ref().map_or(0, Vec::len))
        }
        RequestKind::IncrementalAlterConfigs(r) => sum(&r.resources, |c| c.configs.len()),
        RequestKind::AlterConfigs(r) => sum(&r.resources, |c| c.configs.len()),
        RequestKind::OffsetCommit(r) => sum(&r.topics, |t| t.partitions.len()),
        RequestKind::OffsetFetch(r) => {
            r.topics
                .as_ref()
                .map_or(0, |ts| sum(ts, |t| t.partition_indexes.len()))
                + sum(&r.groups, |g| {
                    g.topics
                        .as_ref()
                        .map_or(0, |ts| sum(ts, |t| t.partition_indexes.len()))
                })
        }
        RequestKind::OffsetDelete(r) => sum(&r.topics, |t| t.partitions.len()),
        RequestKind::DescribeGroups(r) => r.groups.len(),
        RequestKind::DeleteGroups(r) => r.groups_names.len(),
        RequestKind::ListGroups(r) => r.states_filter.len() + r.types_filter.len(),
        RequestKind::JoinGroup(r) => r.protocols.len(),
        RequestKind::SyncGroup(r) => r.assignments.len(),
        RequestKind::LeaveGroup(r) => r.members.len(),
        RequestKind::DeleteRecords(r) => sum(&r.topics, |t| t.partitions.len()),
        RequestKind::ElectLeaders(r) => r
            .topic_partitions
            .as_ref()
            .map_or(0, |ts| sum(ts, |t| t.partitions.len())),
        _ => 0,
    }
}
