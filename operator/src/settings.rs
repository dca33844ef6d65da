//! Operator settings: the `run` subcommand's flags (each with a `TIDEWAY_*`
//! environment variable, as the Helm chart sets them) parsed once into a typed
//! [`OperatorSettings`] and validated at start-up. The builders take settings
//! as plain values; nothing here touches the cluster.

use std::net::SocketAddr;
use std::time::Duration;

/// Image used for brokers when a MessageCluster sets no `spec.image`.
pub const DEFAULT_BROKER_IMAGE: &str = "tideway-broker:0.1.0";

/// Flags of `tideway-operator run`.
#[derive(clap::Args, Clone, Debug)]
pub struct RunArgs {
    /// Broker image for MessageClusters without `spec.image`.
    #[arg(long, env = "TIDEWAY_BROKER_IMAGE", default_value = DEFAULT_BROKER_IMAGE)]
    pub broker_image: String,
    /// Brokers advertise their pod IP instead of their stable pod DNS name
    /// (for clients that cannot resolve cluster DNS; addresses change on restart).
    #[arg(long, env = "TIDEWAY_ADVERTISE_POD_IP", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub advertise_pod_ip: bool,
    /// Seconds a stopping broker waits for its leaderships to move to other
    /// in-sync replicas (its controlled shutdown). The pod's
    /// terminationGracePeriodSeconds is this plus a margin for flushing and closing logs.
    #[arg(long, env = "TIDEWAY_BROKER_CONTROLLED_SHUTDOWN_TIMEOUT_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(i64).range(1..=3600))]
    pub broker_controlled_shutdown_timeout_seconds: i64,
    /// Namespaces to watch, comma-separated; empty: every namespace.
    #[arg(
        long,
        env = "TIDEWAY_WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub watch_namespaces: Vec<String>,
    /// Take a Lease before reconciling, so only one replica acts at a time.
    #[arg(long, env = "TIDEWAY_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_election: bool,
    /// Namespace of the operator's own pod (for its Lease); the Helm chart sets it.
    #[arg(long, env = "TIDEWAY_OPERATOR_NAMESPACE", default_value = "default")]
    pub operator_namespace: String,
    /// Address of the operator's HTTP endpoint (/livez, /readyz, /metrics).
    #[arg(
        long,
        env = "TIDEWAY_OPERATOR_HTTP_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub http_listen: SocketAddr,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `tideway_operator=debug`.
    #[arg(long, env = "TIDEWAY_LOG", default_value = "info")]
    pub log: String,
    /// How often every resource is reconciled even when nothing changed, so drift
    /// (a topic deleted or altered behind the operator's back) is repaired: `60s`, `5m`, `90`.
    #[arg(long, env = "TIDEWAY_RESYNC_PERIOD", default_value = "60s", value_parser = parse_duration)]
    pub resync_period: Duration,
    /// Identity in the leader Lease; the pod name (POD_NAME, else HOSTNAME) when unset.
    #[arg(long, env = "TIDEWAY_LEADER_ELECTION_IDENTITY")]
    pub leader_election_identity: Option<String>,
}

/// Parses `90`, `90s`, `5m` or `1h` (at least one second).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 60s, 5m or 1h"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use s, m or h)")),
    };
    if seconds == 0 {
        return Err("must be at least 1s".to_owned());
    }
    Ok(Duration::from_secs(seconds))
}

/// How brokers tell clients where to reach them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdvertiseMode {
    /// `<pod>.<headless service>.<namespace>.svc:9092`: stable across restarts.
    PodDns,
    /// `<pod IP>:9092`: reachable without cluster DNS, changes on restart.
    PodIp,
}

/// What the builders need from the operator's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildSettings {
    pub default_image: String,
    pub advertise: AdvertiseMode,
    /// The brokers' `--controlled-shutdown-timeout-ms`, in seconds.
    pub controlled_shutdown_timeout_seconds: i64,
}

/// Seconds a broker pod gets beyond its controlled shutdown to flush and close its logs.
pub const SHUTDOWN_MARGIN_SECONDS: i64 = 30;

impl BuildSettings {
    /// The broker pods' terminationGracePeriodSeconds: controlled shutdown plus the margin,
    /// so the kubelet never kills a broker that is still handing over leaderships.
    pub fn termination_grace_period_seconds(&self) -> i64 {
        self.controlled_shutdown_timeout_seconds + SHUTDOWN_MARGIN_SECONDS
    }
}

impl Default for BuildSettings {
    fn default() -> Self {
        Self {
            default_image: DEFAULT_BROKER_IMAGE.to_owned(),
            advertise: AdvertiseMode::PodDns,
            controlled_shutdown_timeout_seconds: 30,
        }
    }
}

/// Validated settings of a running operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorSettings {
    pub build: BuildSettings,
    /// Empty: every namespace.
    pub watch_namespaces: Vec<String>,
    pub leader_election: bool,
    pub operator_namespace: String,
    pub http_listen: SocketAddr,
    pub log: String,
    pub resync_period: Duration,
    /// This replica's name in the leader Lease.
    pub identity: String,
}

/// A flag value that passed clap's parsing but makes no sense.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValidateSettingsError {
    #[error("--broker-image (TIDEWAY_BROKER_IMAGE) is empty")]
    EmptyBrokerImage,
    #[error("--watch-namespaces (TIDEWAY_WATCH_NAMESPACES) has an invalid namespace {0:?}")]
    InvalidWatchNamespace(String),
    #[error("--operator-namespace (TIDEWAY_OPERATOR_NAMESPACE) is empty")]
    EmptyOperatorNamespace,
}

impl RunArgs {
    /// Checks the flags and turns them into settings.
    pub fn validate(self) -> Result<OperatorSettings, ValidateSettingsError> {
        if self.broker_image.trim().is_empty() {
            return Err(ValidateSettingsError::EmptyBrokerImage);
        }
        let mut watch_namespaces = Vec::new();
        for ns in self
            .watch_namespaces
            .iter()
            .map(|ns| ns.trim())
            .filter(|ns| !ns.is_empty())
        {
            if !is_dns_label(ns) {
                return Err(ValidateSettingsError::InvalidWatchNamespace(ns.to_owned()));
            }
            watch_namespaces.push(ns.to_owned());
        }
        if self.operator_namespace.trim().is_empty() {
            return Err(ValidateSettingsError::EmptyOperatorNamespace);
        }
        Ok(OperatorSettings {
            build: BuildSettings {
                default_image: self.broker_image,
                advertise: if self.advertise_pod_ip {
                    AdvertiseMode::PodIp
                } else {
                    AdvertiseMode::PodDns
                },
                controlled_shutdown_timeout_seconds: self
                    .broker_controlled_shutdown_timeout_seconds,
            },
            watch_namespaces,
            leader_election: self.leader_election,
            operator_namespace: self.operator_namespace,
            http_listen: self.http_listen,
            log: self.log,
            resync_period: self.resync_period,
            identity: self
                .leader_election_identity
                .filter(|s| !s.trim().is_empty())
                .or_else(|| std::env::var("POD_NAME").ok().filter(|s| !s.is_empty()))
                .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
                .unwrap_or_else(|| format!("tideway-operator-{}", std::process::id())),
        })
    }
}

/// An RFC 1123 label: lowercase alphanumerics and '-', 1–63 chars, alphanumeric at both ends.
pub fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(|b| *b != b'-')
        && bytes.last().is_some_and(|b| *b != b'-')
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(args: &[&str]) -> RunArgs {
        let mut argv = vec!["test"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("flags parse").run
    }

    #[test]
    fn defaults_are_valid() {
        let settings = parse(&[]).validate().expect("valid");
        assert_eq!(settings.build, BuildSettings::default());
        assert!(settings.watch_namespaces.is_empty());
        assert!(settings.leader_election);
    }

    #[test]
    fn flags_map_to_settings() {
        let settings = parse(&[
            "--broker-image=registry.local/tideway-broker:9",
            "--advertise-pod-ip",
            "--watch-namespaces=a, b",
            "--leader-election=false",
        ])
        .validate()
        .expect("valid");
        assert_eq!(
            settings.build.default_image,
            "registry.local/tideway-broker:9"
        );
        assert_eq!(settings.build.advertise, AdvertiseMode::PodIp);
        assert_eq!(
            settings.watch_namespaces,
            vec!["a".to_owned(), "b".to_owned()]
        );
        assert!(!settings.leader_election);
    }

    #[test]
    fn bad_values_name_the_flag() {
        let err = parse(&["--broker-image= "])
            .validate()
            .expect_err("empty image");
        assert!(err.to_string().contains("--broker-image"));
        let err = parse(&["--watch-namespaces=Bad_NS"])
            .validate()
            .expect_err("bad namespace");
        assert!(err.to_string().contains("--watch-namespaces"));
    }

    #[test]
    fn resync_period_parses_units() {
        assert_eq!(parse(&[]).resync_period, Duration::from_secs(60));
        assert_eq!(
            parse(&["--resync-period=5m"]).resync_period,
            Duration::from_secs(300)
        );
        assert_eq!(
            parse(&["--resync-period=90"]).resync_period,
            Duration::from_secs(90)
        );
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("demo-1"));
        assert!(!is_dns_label("-demo"));
        assert!(!is_dns_label("Demo"));
        assert!(!is_dns_label(&"a".repeat(64)));
    }
}
