//! Prometheus metrics (prometheus-client), rendered in text format on
//! `/metrics`. Label sets are bounded: API names are a fixed list, topics
//! and partitions are removed when their topic is deleted.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupPartitionLabels {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

/// Which client-controlled limit was hit (a fixed list: see `server::limits`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub limit: &'static str,
}

type HistogramFamily = Family<ApiLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<ApiLabels, Counter>,
    request_seconds: HistogramFamily,
    bytes_in: Family<TopicLabels, Counter>,
    records_in: Family<TopicLabels, Counter>,
    bytes_out: Family<TopicLabels, Counter>,
    log_end_offset: Family<PartitionLabels, Gauge>,
    storage_errors: Counter,
    unclean_elections: Counter,
    group_lag: Family<GroupPartitionLabels, Gauge>,
    group_committed: Family<GroupPartitionLabels, Gauge>,
    limit_hits: Family<LimitLabels, Counter>,
    connections: Gauge,
    queued_request_bytes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tideway");
        let requests = Family::<ApiLabels, Counter>::default();
        let request_seconds: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0001, 2.0, 18)));
        let bytes_in = Family::<TopicLabels, Counter>::default();
        let records_in = Family::<TopicLabels, Counter>::default();
        let bytes_out = Family::<TopicLabels, Counter>::default();
        let log_end_offset = Family::<PartitionLabels, Gauge>::default();
        let storage_errors = Counter::default();
        let unclean_elections = Counter::default();
        let group_lag = Family::<GroupPartitionLabels, Gauge>::default();
        let group_committed = Family::<GroupPartitionLabels, Gauge>::default();
        let limit_hits = Family::<LimitLabels, Counter>::default();
        let connections = Gauge::default();
        let queued_request_bytes = Gauge::default();
        registry.register(
            "limit_hits",
            "Requests or connections refused, or made to wait, by a client-controlled limit",
            limit_hits.clone(),
        );
        registry.register(
            "connections",
            "Open Kafka client connections",
            connections.clone(),
        );
        registry.register(
            "queued_request_bytes",
            "Bytes of requests read but not yet answered, over all connections",
            queued_request_bytes.clone(),
        );
        registry.register(
            "consumer_group_lag",
            "max(0, high watermark - committed offset), by group and partition; absent for a group whose partition offsets could not all be read from their leaders",
            group_lag.clone(),
        );
        registry.register(
            "consumer_group_committed_offset",
            "Committed offset, by group and partition",
            group_committed.clone(),
        );
        registry.register(
            "requests",
            "Kafka requests handled, by API",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to handle a Kafka request, by API",
            request_seconds.clone(),
        );
        registry.register(
            "produce_bytes",
            "Record batch bytes appended, by topic",
            bytes_in.clone(),
        );
        registry.register(
            "produce_records",
            "Records appended, by topic",
            records_in.clone(),
        );
        registry.register(
            "fetch_bytes",
            "Record batch bytes returned to fetches, by topic",
            bytes_out.clone(),
        );
        registry.register(
            "log_end_offset",
            "Next offset to be written, by partition",
            log_end_offset.clone(),
        );
        registry.register(
            "storage_errors",
            "Failed reads, writes and flushes of partition logs",
            storage_errors.clone(),
        );
        registry.register(
            "unclean_leader_elections",
            "Leaders elected from outside the ISR (acknowledged records may be lost); counted by the controller",
            unclean_elections.clone(),
        );
        Self {
            registry,
            requests,
            request_seconds,
            bytes_in,
            records_in,
            bytes_out,
            log_end_offset,
            storage_errors,
            unclean_elections,
            group_lag,
            group_committed,
            limit_hits,
            connections,
            queued_request_bytes,
        }
    }

    pub fn record_request(&self, api: &'static str, seconds: f64) {
        let labels = ApiLabels { api };
        self.requests.get_or_create(&labels).inc();
        self.request_seconds.get_or_create(&labels).observe(seconds);
    }

    pub fn record_produce(
        &self,
        topic: &str,
        partition: i32,
        bytes: u64,
        records: u64,
        log_end_offset: i64,
    ) {
        let labels = TopicLabels {
            topic: topic.to_string(),
        };
        self.bytes_in.get_or_create(&labels).inc_by(bytes);
        self.records_in.get_or_create(&labels).inc_by(records);
        self.set_log_end_offset(topic, partition, log_end_offset);
    }

    pub fn record_fetch(&self, topic: &str, bytes: u64) {
        self.bytes_out
            .get_or_create(&TopicLabels {
                topic: topic.to_string(),
            })
            .inc_by(bytes);
    }

    pub fn set_log_end_offset(&self, topic: &str, partition: i32, offset: i64) {
        self.log_end_offset
            .get_or_create(&PartitionLabels {
                topic: topic.to_string(),
                partition,
            })
            .set(offset);
    }

    pub fn limit_hit(&self, limit: &'static str) {
        self.limit_hits.get_or_create(&LimitLabels { limit }).inc();
    }

    pub fn set_connections(&self, open: usize) {
        self.connections.set(open as i64);
    }

    pub fn add_queued_request_bytes(&self, delta: i64) {
        self.queued_request_bytes.inc_by(delta);
    }

    pub fn unclean_election(&self) {
        self.unclean_elections.inc();
    }

    pub fn storage_error(&self) {
        self.storage_errors.inc();
    }

    pub fn forget_partition(&self, topic: &str, partition: i32) {
        self.log_end_offset.remove(&PartitionLabels {
            topic: topic.to_string(),
            partition,
        });
    }

    pub fn forget_topic(&self, topic: &str) {
        let labels = TopicLabels {
            topic: topic.to_string(),
        };
        self.bytes_in.remove(&labels);
        self.records_in.remove(&labels);
        self.bytes_out.remove(&labels);
    }

    /// Replaces the consumer lag gauges with `lags` (groups that are gone, or
    /// whose lag is unknown this time, disappear).
    pub fn set_group_lags(&self, lags: &[crate::group::lag::GroupLag]) {
        self.group_lag.clear();
        self.group_committed.clear();
        for g in lags {
            for p in &g.partitions {
                let labels = GroupPartitionLabels {
                    group: g.group.clone(),
                    topic: p.topic.clone(),
                    partition: p.partition,
                };
                self.group_lag.get_or_create(&labels).set(p.lag);
                if let Some(c) = p.committed_offset {
                    self.group_committed.get_or_create(&labels).set(c);
                }
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
