//! Cluster-wide dynamic broker configs: defaults every broker applies (and
//! the throttle of replica moves, `follower.replication.throttled.rate`),
//! changed at runtime through the admin API (`AlterClusterConfigs`) and kept
//! in the metadata quorum, so a change reaches every broker without a
//! restart (Kafka's dynamic default broker configs, `kafka-configs
//! --entity-type brokers --entity-default`). Names are Kafka's broker config
//! names. A config set here wins over the broker's own flag; a topic's own
//! override wins over both. Pure: validation and resolution only.

use std::collections::BTreeMap;

/// One cluster config the brokers know.
struct Known {
    name: &'static str,
    /// The broker flag it overrides (for error messages and docs).
    flag: &'static str,
    validate: fn(&str) -> Result<(), String>,
}

fn integer_at_least(min: i64) -> impl Fn(&str) -> Result<(), String> {
    move |v: &str| match v.parse::<i64>() {
        Ok(n) if n >= min => Ok(()),
        Ok(n) => Err(format!("must be at least {min}, got {n}")),
        Err(_) => Err(format!("'{v}' is not an integer")),
    }
}

const KNOWN: &[Known] = &[
    Known {
        name: "log.retention.ms",
        flag: "--retention-ms",
        validate: |v| integer_at_least(-1)(v),
    },
    Known {
        name: "min.insync.replicas",
        flag: "--min-insync-replicas",
        validate: |v| integer_at_least(1)(v),
    },
    Known {
        name: "default.replication.factor",
        flag: "--default-replication-factor",
        validate: |v| integer_at_least(1)(v),
    },
    Known {
        name: "num.partitions",
        flag: "--default-partitions",
        validate: |v| {
            integer_at_least(1)(v)?;
            match v.parse::<i64>() {
                Ok(n) if n <= 100_000 => Ok(()),
                _ => Err("must be at most 100000".into()),
            }
        },
    },
    Known {
        name: "follower.replication.throttled.rate",
        flag: "(none: unlimited)",
        validate: |v| integer_at_least(1)(v),
    },
    Known {
        name: "auto.create.topics.enable",
        flag: "--auto-create-topics",
        validate: |v| match v {
            "true" | "false" => Ok(()),
            _ => Err(format!("'{v}' is not true or false")),
        },
    },
];

/// A cluster config that cannot be set.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClusterConfigError {
    #[error(
        "'{0}' is not a cluster-wide dynamic config (known: log.retention.ms, min.insync.replicas, default.replication.factor, num.partitions, auto.create.topics.enable, follower.replication.throttled.rate)"
    )]
    Unknown(String),
    #[error("invalid value for {name}: {reason}")]
    InvalidValue { name: String, reason: String },
}

/// Checks one entry.
pub fn validate_cluster_config(name: &str, value: &str) -> Result<(), ClusterConfigError> {
    let known = KNOWN
        .iter()
        .find(|k| k.name == name)
        .ok_or_else(|| ClusterConfigError::Unknown(name.to_string()))?;
    (known.validate)(value).map_err(|reason| ClusterConfigError::InvalidValue {
        name: name.to_string(),
        reason,
    })
}

/// The broker flag a cluster config overrides.
pub fn overridden_flag(name: &str) -> Option<&'static str> {
    KNOWN.iter().find(|k| k.name == name).map(|k| k.flag)
}

/// The defaults in force on a broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterDefaults {
    pub retention_ms: i64,
    pub min_insync_replicas: i32,
    pub default_replication_factor: i32,
    pub default_partitions: i32,
    pub auto_create_topics: bool,
    /// Bytes per second a broker copies for replicas it gains in a
    /// reassignment (moves before a scale-down); None: unlimited. Kafka's
    /// `follower.replication.throttled.rate`, applied to moving replicas only.
    pub move_throttle_bytes_per_sec: Option<u64>,
}

impl ClusterDefaults {
    /// These defaults (the broker's flags) with the cluster configs over them.
    /// Entries were validated before they were committed; one that does not
    /// parse (written by a newer broker) leaves the flag's value.
    pub fn with_overrides(&self, configs: &BTreeMap<String, String>) -> ClusterDefaults {
        fn get<T: std::str::FromStr>(c: &BTreeMap<String, String>, k: &str, d: T) -> T {
            c.get(k).and_then(|v| v.parse().ok()).unwrap_or(d)
        }
        ClusterDefaults {
            retention_ms: get(configs, "log.retention.ms", self.retention_ms),
            min_insync_replicas: get(configs, "min.insync.replicas", self.min_insync_replicas),
            default_replication_factor: get(
                configs,
                "default.replication.factor",
                self.default_replication_factor,
            ),
            default_partitions: get(configs, "num.partitions", self.default_partitions),
            auto_create_topics: get(
                configs,
                "auto.create.topics.enable",
                self.auto_create_topics,
            ),
            move_throttle_bytes_per_sec: configs
                .get("follower.replication.throttled.rate")
                .and_then(|v| v.parse().ok())
                .or(self.move_throttle_bytes_per_sec),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> ClusterDefaults {
        ClusterDefaults {
            retention_ms: 1000,
            min_insync_replicas: 1,
            default_replication_factor: 1,
            default_partitions: 1,
            auto_create_topics: true,
            move_throttle_bytes_per_sec: None,
        }
    }

    #[test]
    fn cluster_configs_override_the_flags() {
        let configs = BTreeMap::from([
            ("log.retention.ms".to_string(), "-1".to_string()),
            ("min.insync.replicas".to_string(), "2".to_string()),
            ("auto.create.topics.enable".to_string(), "false".to_string()),
        ]);
        let d = flags().with_overrides(&configs);
        assert_eq!(d.retention_ms, -1);
        assert_eq!(d.min_insync_replicas, 2);
        assert!(!d.auto_create_topics);
        assert_eq!(d.move_throttle_bytes_per_sec, None);
        assert_eq!(d.default_partitions, 1);
        assert_eq!(flags().with_overrides(&BTreeMap::new()), flags());
    }

    #[test]
    fn unknown_and_invalid_entries_are_refused_by_name() {
        assert_eq!(
            validate_cluster_config("segment.bytes", "1"),
            Err(ClusterConfigError::Unknown("segment.bytes".into()))
        );
        let err = validate_cluster_config("min.insync.replicas", "0").expect_err("0");
        assert!(err.to_string().contains("min.insync.replicas"), "{err}");
        assert!(validate_cluster_config("num.partitions", "100001").is_err());
        assert!(validate_cluster_config("auto.create.topics.enable", "yes").is_err());
        assert!(validate_cluster_config("log.retention.ms", "-1").is_ok());
        assert_eq!(
            overridden_flag("num.partitions"),
            Some("--default-partitions")
        );
    }
}
