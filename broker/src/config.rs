//! Command line and environment configuration, parsed once into typed
//! settings and validated at start-up. Every flag has a `TIDEWAY_*`
//! environment variable; a bad value fails fast with a message naming the
//! flag (clap does that for parse errors, [`BrokerConfig::from_args`] for
//! cross-field checks).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::group::state::GroupConfig;
use crate::log::validate::RecordLimits;
use crate::log::{FsyncPolicy, LogConfig};

/// Tideway: a Kafka-compatible message broker. With no flags it runs a
/// single-node broker on 127.0.0.1:9092 with its data in ./data.
#[derive(Parser, Debug, Clone)]
#[command(name = "tideway-broker", version, about)]
pub struct Args {
    /// This broker's id in the cluster.
    #[arg(long, env = "TIDEWAY_NODE_ID", default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..), allow_negative_numbers = true)]
    pub node_id: i32,

    /// Directory holding partition logs and metadata; created if missing.
    #[arg(long, env = "TIDEWAY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Address of the Kafka listener (port 0 picks a free port).
    #[arg(long, env = "TIDEWAY_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,

    /// host:port that clients are told to connect to; defaults to the bound listen address.
    #[arg(long, env = "TIDEWAY_ADVERTISED_ADDRESS", value_parser = parse_host_port)]
    pub advertised_address: Option<(String, u16)>,

    /// Address of the admin gRPC API (used by the operator and tools).
    #[arg(long, env = "TIDEWAY_ADMIN_LISTEN", default_value = "127.0.0.1:9093")]
    pub admin_listen: SocketAddr,

    /// Voters of the metadata quorum as id@host:port of their --admin-listen,
    /// comma-separated (e.g. 0@10.0.0.1:9093,1@10.0.0.2:9093,2@10.0.0.3:9093).
    /// Unset: this broker is a cluster of one.
    #[arg(long, env = "TIDEWAY_VOTERS", value_parser = crate::metadata::raft::parse_voters)]
    pub voters: Option<std::collections::BTreeMap<u64, String>>,

    /// Address of the HTTP server for /livez, /readyz and /metrics.
    #[arg(long, env = "TIDEWAY_HTTP_LISTEN", default_value = "127.0.0.1:9644")]
    pub http_listen: SocketAddr,

    /// Partitions of an auto-created topic, and of CreateTopics asking for the default (-1).
    #[arg(long, env = "TIDEWAY_DEFAULT_PARTITIONS", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=100_000), allow_negative_numbers = true)]
    pub default_partitions: i32,

    /// Create a topic when a client asks for an unknown one in Metadata or Produce.
    #[arg(long, env = "TIDEWAY_AUTO_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub auto_create_topics: bool,

    /// Roll a segment once it holds this many bytes (topic config segment.bytes).
    #[arg(long, env = "TIDEWAY_SEGMENT_BYTES", default_value_t = 1 << 30, value_parser = clap::value_parser!(u64).range(14..=(i32::MAX as u64)), allow_negative_numbers = true)]
    pub segment_bytes: u64,

    /// Roll a segment once its first record is this old (topic config segment.ms).
    #[arg(long, env = "TIDEWAY_SEGMENT_MS", default_value_t = 604_800_000, value_parser = clap::value_parser!(i64).range(1..), allow_negative_numbers = true)]
    pub segment_ms: i64,

    /// Delete log segments older than this; -1 keeps them forever (retention.ms).
    #[arg(long, env = "TIDEWAY_RETENTION_MS", default_value_t = 604_800_000, value_parser = clap::value_parser!(i64).range(-1..), allow_negative_numbers = true)]
    pub retention_ms: i64,

    /// Delete the oldest segments while a partition is larger than this; -1 is no limit (retention.bytes).
    #[arg(long, env = "TIDEWAY_RETENTION_BYTES", default_value_t = -1, value_parser = clap::value_parser!(i64).range(-1..), allow_negative_numbers = true)]
    pub retention_bytes: i64,

    /// How often retention is enforced.
    #[arg(long, env = "TIDEWAY_RETENTION_CHECK_INTERVAL_MS", default_value_t = 300_000, value_parser = clap::value_parser!(u64).range(1..), allow_negative_numbers = true)]
    pub retention_check_interval_ms: u64,

    /// Largest record batch accepted (max.message.bytes).
    #[arg(long, env = "TIDEWAY_MAX_MESSAGE_BYTES", default_value_t = 1_048_588, value_parser = clap::value_parser!(u32).range(64..=(i32::MAX as i64)), allow_negative_numbers = true)]
    pub max_message_bytes: u32,

    /// Largest request frame accepted, checked on its 4-byte size before it is read;
    /// larger frames close the connection (socket.request.max.bytes).
    #[arg(long, env = "TIDEWAY_MAX_REQUEST_BYTES", default_value_t = 104_857_600, value_parser = clap::value_parser!(u32).range(1024..=(i32::MAX as i64)), allow_negative_numbers = true)]
    pub max_request_bytes: u32,

    /// Bytes of requests read but not yet answered, over all connections; a connection
    /// whose next frame does not fit waits (queued.max.request.bytes). At least --max-request-bytes.
    #[arg(long, env = "TIDEWAY_QUEUED_MAX_REQUEST_BYTES", default_value_t = 268_435_456, value_parser = clap::value_parser!(u32).range(1024..=(u32::MAX as i64 >> 1)), allow_negative_numbers = true)]
    pub queued_max_request_bytes: u32,

    /// Bytes of requests read but not yet answered on one connection. At least --max-request-bytes.
    #[arg(long, env = "TIDEWAY_CONNECTION_QUEUED_MAX_BYTES", default_value_t = 104_857_600, value_parser = clap::value_parser!(u32).range(1024..=(u32::MAX as i64 >> 1)), allow_negative_numbers = true)]
    pub connection_queued_max_bytes: u32,

    /// A request frame must arrive whole within this long after its size, or the
    /// connection is closed.
    #[arg(long, env = "TIDEWAY_FRAME_READ_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..), allow_negative_numbers = true)]
    pub frame_read_timeout_ms: u64,

    /// Requests read ahead on one connection while an earlier one is being served.
    #[arg(long, env = "TIDEWAY_CONNECTION_QUEUED_MAX_REQUESTS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000), allow_negative_numbers = true)]
    pub connection_queued_max_requests: u32,

    /// Open client connections at most; more are closed as they arrive (max.connections).
    #[arg(long, env = "TIDEWAY_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..), allow_negative_numbers = true)]
    pub max_connections: u32,

    /// Open client connections from one IP address at most (max.connections.per.ip).
    #[arg(long, env = "TIDEWAY_MAX_CONNECTIONS_PER_IP", default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..), allow_negative_numbers = true)]
    pub max_connections_per_ip: u32,

    /// Partitions (or topics, for APIs that name only topics) one request may name;
    /// a larger request closes the connection.
    #[arg(long, env = "TIDEWAY_MAX_REQUEST_PARTITIONS", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..), allow_negative_numbers = true)]
    pub max_request_partitions: u32,

    /// Record bytes one Fetch response carries at most, whatever the client asks (fetch.max.bytes).
    #[arg(long, env = "TIDEWAY_FETCH_MAX_BYTES", default_value_t = 57_671_680, value_parser = clap::value_parser!(u32).range(1024..=(i32::MAX as i64)), allow_negative_numbers = true)]
    pub fetch_max_bytes: u32,

    /// Most bytes one produced compressed batch may decompress to; more is INVALID_RECORD.
    #[arg(long, env = "TIDEWAY_MAX_UNCOMPRESSED_BATCH_BYTES", default_value_t = 268_435_456, value_parser = clap::value_parser!(u64).range(1024..), allow_negative_numbers = true)]
    pub max_uncompressed_batch_bytes: u64,

    /// Members one consumer group may have; JoinGroup beyond it answers GROUP_MAX_SIZE_REACHED (group.max.size).
    #[arg(long, env = "TIDEWAY_GROUP_MAX_SIZE", default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..), allow_negative_numbers = true)]
    pub group_max_size: u32,

    /// Bytes of protocol names and metadata one member may send in JoinGroup, and of
    /// one member's assignment in SyncGroup; more answers INVALID_REQUEST.
    #[arg(long, env = "TIDEWAY_GROUP_MAX_MEMBER_METADATA_BYTES", default_value_t = 1_048_576, value_parser = clap::value_parser!(u32).range(64..), allow_negative_numbers = true)]
    pub group_max_member_metadata_bytes: u32,

    /// When appends reach stable storage: always (before the ack), interval
    /// (every --fsync-interval-ms), never (left to the OS). See docs/architecture.md.
    #[arg(long, env = "TIDEWAY_FSYNC", value_enum, default_value_t = FsyncMode::Interval)]
    pub fsync: FsyncMode,

    /// Flush period for --fsync interval.
    #[arg(long, env = "TIDEWAY_FSYNC_INTERVAL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..), allow_negative_numbers = true)]
    pub fsync_interval_ms: u64,

    /// Shortest session timeout a consumer may ask for (group.min.session.timeout.ms).
    #[arg(long, env = "TIDEWAY_GROUP_MIN_SESSION_TIMEOUT_MS", default_value_t = 6000, value_parser = clap::value_parser!(u64).range(1..), allow_negative_numbers = true)]
    pub group_min_session_timeout_ms: u64,

    /// Longest session timeout a consumer may ask for (group.max.session.timeout.ms).
    #[arg(long, env = "TIDEWAY_GROUP_MAX_SESSION_TIMEOUT_MS", default_value_t = 1_800_000, value_parser = clap::value_parser!(u64).range(1..), allow_negative_numbers = true)]
    pub group_max_session_timeout_ms: u64,

    /// How long the first rebalance of an empty group waits for more members (group.initial.rebalance.delay.ms).
    #[arg(
        long,
        env = "TIDEWAY_GROUP_INITIAL_REBALANCE_DELAY_MS",
        default_value_t = 3000
    )]
    pub group_initial_rebalance_delay_ms: u64,

    /// Committed offsets of a group that has been empty this long are deleted; -1 keeps them forever (offsets.retention.minutes).
    #[arg(long, env = "TIDEWAY_OFFSETS_RETENTION_MS", default_value_t = 604_800_000, value_parser = clap::value_parser!(i64).range(-1..), allow_negative_numbers = true)]
    pub offsets_retention_ms: i64,

    /// Replication factor of auto-created topics and of CreateTopics asking for the default (-1) (default.replication.factor).
    #[arg(long, env = "TIDEWAY_DEFAULT_REPLICATION_FACTOR", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=100), allow_negative_numbers = true)]
    pub default_replication_factor: i32,

    /// acks=all writes need this many in-sync replicas, unless the topic sets min.insync.replicas.
    #[arg(long, env = "TIDEWAY_MIN_INSYNC_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=100), allow_negative_numbers = true)]
    pub min_insync_replicas: i32,

    /// This broker's rack (or zone): replicas of a partition are spread over racks.
    #[arg(long, env = "TIDEWAY_RACK", conflicts_with = "rack_file")]
    pub rack: Option<String>,

    /// Read the rack from this file instead (its trimmed content; empty: no
    /// rack). The file may appear late (a mounted map the operator fills in):
    /// the broker waits up to 120 s for it, then stops with an error.
    #[arg(long, env = "TIDEWAY_RACK_FILE")]
    pub rack_file: Option<std::path::PathBuf>,

    /// host:port other brokers' followers fetch from; defaults to --advertised-address.
    #[arg(long, env = "TIDEWAY_REPLICATION_ADVERTISED_ADDRESS", value_parser = parse_host_port)]
    pub replication_advertised_address: Option<(String, u16)>,

    /// The controller fences a broker that has not heartbeated for this long:
    /// its leaderships move to in-sync replicas (broker.session.timeout.ms).
    #[arg(long, env = "TIDEWAY_BROKER_SESSION_TIMEOUT_MS", default_value_t = 9000, value_parser = clap::value_parser!(u64).range(100..), allow_negative_numbers = true)]
    pub broker_session_timeout_ms: u64,

    /// A follower that has not caught up with its leader for this long leaves the ISR (replica.lag.time.max.ms).
    #[arg(long, env = "TIDEWAY_REPLICA_LAG_TIME_MAX_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..), allow_negative_numbers = true)]
    pub replica_lag_time_max_ms: u64,

    /// On SIGTERM, how long to wait for this broker's leaderships to move before stopping anyway.
    #[arg(long, env = "TIDEWAY_CONTROLLED_SHUTDOWN_TIMEOUT_MS", default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(0..), allow_negative_numbers = true)]
    pub controlled_shutdown_timeout_ms: u64,

    /// How often the controller moves leaderships back to preferred replicas (the first
    /// in replica order) that are alive, in sync and not draining; 0 never does
    /// (Kafka's auto.leader.rebalance.enable with leader.imbalance.check.interval.seconds).
    #[arg(long, env = "TIDEWAY_LEADER_IMBALANCE_CHECK_INTERVAL_MS", default_value_t = 300_000, value_parser = clap::value_parser!(u64).range(0..), allow_negative_numbers = true)]
    pub leader_imbalance_check_interval_ms: u64,

    /// Log filter in tracing's EnvFilter syntax (e.g. info, tideway_broker=debug).
    #[arg(long, env = "TIDEWAY_LOG", default_value = "info,openraft=warn")]
    pub log: String,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncMode {
    Always,
    Interval,
    Never,
}

fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("'{s}' is not host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("'{s}' has an empty host"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("'{port}' is not a port number"))?;
    if port == 0 {
        return Err("port 0 cannot be advertised".into());
    }
    Ok((host.to_string(), port))
}

/// What the Kafka listener allows one client and all of them together
/// (docs/reliability.md, "Hostile input").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    pub queued_max_request_bytes: usize,
    pub connection_queued_max_bytes: usize,
    pub connection_queued_max_requests: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_request_partitions: usize,
    pub frame_read_timeout: Duration,
}

/// The validated broker settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: i32,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub advertised_address: Option<(String, u16)>,
    pub http_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub voters: Option<std::collections::BTreeMap<u64, String>>,
    pub default_partitions: i32,
    pub auto_create_topics: bool,
    /// Defaults for every partition log; topic configs override them.
    pub log_defaults: LogConfig,
    pub retention_check_interval: Duration,
    pub max_request_bytes: usize,
    pub server: ServerLimits,
    pub fetch_max_bytes: usize,
    /// What a produced batch may make the broker do while it is validated.
    pub record_limits: RecordLimits,
    pub groups: GroupConfig,
    pub offsets_retention_ms: i64,
    pub default_replication_factor: i32,
    pub min_insync_replicas: i32,
    pub rack: Option<String>,
    pub replication_advertised_address: Option<(String, u16)>,
    pub broker_session_timeout: Duration,
    pub replica_lag_time_max_ms: i64,
    pub controlled_shutdown_timeout: Duration,
    /// `None`: no automatic preferred-leader election.
    pub leader_imbalance_check_interval: Option<Duration>,
}

/// How long `--rack-file` may take to appear.
pub const RACK_FILE_WAIT: Duration = Duration::from_secs(120);

/// The rack in `path` (trimmed; empty means none), waiting up to `wait` for
/// the file to exist. The error names the flag.
pub fn read_rack_file(path: &std::path::Path, wait: Duration) -> Result<Option<String>, String> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let rack = text.trim();
                return Ok((!rack.is_empty()).then(|| rack.to_string()));
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => {
                return Err(format!(
                    "--rack-file {}: cannot read it ({e}) after waiting {}s",
                    path.display(),
                    wait.as_secs()
                ));
            }
        }
    }
}

impl BrokerConfig {
    pub fn from_args(args: &Args) -> Self {
        let fsync = match args.fsync {
            FsyncMode::Always => FsyncPolicy::Always,
            FsyncMode::Interval => {
                FsyncPolicy::Interval(Duration::from_millis(args.fsync_interval_ms))
            }
            FsyncMode::Never => FsyncPolicy::Never,
        };
        Self {
            node_id: args.node_id,
            data_dir: args.data_dir.clone(),
            listen: args.listen,
            advertised_address: args.advertised_address.clone(),
            http_listen: args.http_listen,
            admin_listen: args.admin_listen,
            voters: args.voters.clone(),
            default_partitions: args.default_partitions,
            auto_create_topics: args.auto_create_topics,
            log_defaults: LogConfig {
                segment_bytes: args.segment_bytes,
                segment_ms: args.segment_ms,
                retention_ms: args.retention_ms,
                retention_bytes: args.retention_bytes,
                max_message_bytes: args.max_message_bytes as usize,
                fsync,
                ..LogConfig::default()
            },
            retention_check_interval: Duration::from_millis(args.retention_check_interval_ms),
            max_request_bytes: args.max_request_bytes as usize,
            server: ServerLimits {
                queued_max_request_bytes: args.queued_max_request_bytes as usize,
                connection_queued_max_bytes: args.connection_queued_max_bytes as usize,
                connection_queued_max_requests: args.connection_queued_max_requests as usize,
                max_connections: args.max_connections as usize,
                max_connections_per_ip: args.max_connections_per_ip as usize,
                max_request_partitions: args.max_request_partitions as usize,
                frame_read_timeout: Duration::from_millis(args.frame_read_timeout_ms),
            },
            fetch_max_bytes: args.fetch_max_bytes as usize,
            record_limits: RecordLimits {
                max_uncompressed_bytes: args.max_uncompressed_batch_bytes,
            },
            groups: GroupConfig {
                min_session_timeout: Duration::from_millis(args.group_min_session_timeout_ms),
                max_session_timeout: Duration::from_millis(args.group_max_session_timeout_ms),
                initial_rebalance_delay: Duration::from_millis(
                    args.group_initial_rebalance_delay_ms,
                ),
                max_size: args.group_max_size as usize,
                max_member_metadata_bytes: args.group_max_member_metadata_bytes as usize,
            },
            offsets_retention_ms: args.offsets_retention_ms,
            default_replication_factor: args.default_replication_factor,
            min_insync_replicas: args.min_insync_replicas,
            rack: args.rack.clone().filter(|r| !r.is_empty()),
            replication_advertised_address: args.replication_advertised_address.clone(),
            broker_session_timeout: Duration::from_millis(args.broker_session_timeout_ms),
            replica_lag_time_max_ms: args.replica_lag_time_max_ms as i64,
            controlled_shutdown_timeout: Duration::from_millis(args.controlled_shutdown_timeout_ms),
            leader_imbalance_check_interval: (args.leader_imbalance_check_interval_ms > 0)
                .then(|| Duration::from_millis(args.leader_imbalance_check_interval_ms)),
        }
    }

    /// Cross-flag checks, failing with a message that names the flag.
    pub fn validate(&self) -> Result<(), String> {
        for (flag, budget) in [
            (
                "--queued-max-request-bytes",
                self.server.queued_max_request_bytes,
            ),
            (
                "--connection-queued-max-bytes",
                self.server.connection_queued_max_bytes,
            ),
        ] {
            if budget < self.max_request_bytes {
                return Err(format!(
                    "{flag} {budget} is below --max-request-bytes {}: a largest request could never be read",
                    self.max_request_bytes
                ));
            }
        }
        Ok(())
    }

    /// A config for tests: everything default, data in `data_dir`, ports chosen by the OS.
    pub fn for_tests(data_dir: PathBuf) -> Self {
        let mut args = Args::parse_from(["tideway-broker"]);
        args.data_dir = data_dir;
        args.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        args.http_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        args.admin_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::from_args(&args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_single_node_embedded_broker() {
        let args = Args::try_parse_from(["tideway-broker"]).expect("defaults parse");
        assert_eq!(args.listen.to_string(), "127.0.0.1:9092");
        assert_eq!(args.http_listen.to_string(), "127.0.0.1:9644");
        assert_eq!(args.data_dir, PathBuf::from("./data"));
        assert!(args.auto_create_topics);
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (flag, value) in [
            ("--fsync", "sometimes"),
            ("--listen", "notanaddress"),
            ("--segment-bytes", "-5"),
            ("--retention-ms", "-2"),
            ("--advertised-address", "nohost"),
        ] {
            let err = Args::try_parse_from(["tideway-broker", flag, value]).expect_err(flag);
            assert!(err.to_string().contains(flag), "{flag}: {err}");
        }
    }

    #[test]
    fn request_budgets_must_hold_the_largest_request() {
        let args = Args::try_parse_from([
            "tideway-broker",
            "--max-request-bytes",
            "2000000",
            "--connection-queued-max-bytes",
            "1000000",
        ])
        .expect("parses");
        let err = BrokerConfig::from_args(&args)
            .validate()
            .expect_err("too small");
        assert!(err.contains("--connection-queued-max-bytes"), "{err}");
        let defaults = Args::try_parse_from(["tideway-broker"]).expect("defaults");
        BrokerConfig::from_args(&defaults)
            .validate()
            .expect("defaults are consistent");
    }

    #[test]
    fn rack_file_gives_the_rack_and_conflicts_with_rack() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("node-a");
        std::fs::write(&path, "zone-b\n").expect("write");
        assert_eq!(
            read_rack_file(&path, Duration::ZERO),
            Ok(Some("zone-b".into()))
        );
        std::fs::write(&path, "").expect("write");
        assert_eq!(read_rack_file(&path, Duration::ZERO), Ok(None));
        let err = read_rack_file(&dir.path().join("missing"), Duration::ZERO).expect_err("missing");
        assert!(err.contains("--rack-file"), "{err}");
        let err = Args::try_parse_from(["tideway-broker", "--rack", "a", "--rack-file", "/x"])
            .expect_err("both");
        assert!(err.to_string().contains("--rack"), "{err}");
    }

    #[test]
    fn voters_must_parse() {
        let err =
            Args::try_parse_from(["tideway-broker", "--voters", "0@a"]).expect_err("bad voters");
        assert!(err.to_string().contains("--voters"), "{err}");
        let args =
            Args::try_parse_from(["tideway-broker", "--voters", "0@a:1,1@b:2"]).expect("voters");
        assert_eq!(args.voters.map(|v| v.len()), Some(2));
    }

    #[test]
    fn auto_create_topics_takes_an_explicit_value() {
        let args =
            Args::try_parse_from(["tideway-broker", "--auto-create-topics=false"]).expect("parses");
        assert!(!args.auto_create_topics);
    }
}
