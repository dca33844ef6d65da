//! Topic-level configs: the names Tideway understands, their validation, and
//! how broker defaults and topic overrides resolve into a [`LogConfig`].
//! One table ([`KNOWN`]) drives validation, DescribeConfigs and resolution.

use std::collections::BTreeMap;

use crate::log::LogConfig;

/// Kafka's config type codes (DescribeConfigs v3+).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    List = 7,
}

/// One config Tideway understands.
pub struct ConfigDef {
    pub name: &'static str,
    pub config_type: ConfigType,
    pub doc: &'static str,
    validate: fn(&str) -> Result<(), String>,
}

fn long_at_least(min: i64) -> impl Fn(&str) -> Result<(), String> {
    move |v| match v.parse::<i64>() {
        Ok(n) if n >= min => Ok(()),
        _ => Err(format!("must be an integer ≥ {min}")),
    }
}

/// The known topic configs.
pub const KNOWN: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        config_type: ConfigType::List,
        doc: "delete: remove old segments by retention. compact is not supported yet.",
        validate: |v| {
            if v == "delete" {
                Ok(())
            } else {
                Err("only 'delete' is supported".into())
            }
        },
    },
    ConfigDef {
        name: "retention.ms",
        config_type: ConfigType::Long,
        doc: "Delete segments whose newest record is older than this; -1 keeps them forever.",
        validate: |v| long_at_least(-1)(v),
    },
    ConfigDef {
        name: "retention.bytes",
        config_type: ConfigType::Long,
        doc: "Delete the oldest segments while a partition is larger than this; -1 is no limit.",
        validate: |v| long_at_least(-1)(v),
    },
    ConfigDef {
        name: "segment.bytes",
        config_type: ConfigType::Int,
        doc: "Roll a segment once it holds this many bytes.",
        validate: |v| match v.parse::<i32>() {
            Ok(n) if n >= 14 => Ok(()),
            _ => Err("must be an integer from 14 to 2147483647".into()),
        },
    },
    ConfigDef {
        name: "segment.ms",
        config_type: ConfigType::Long,
        doc: "Roll a segment once its first record is this old.",
        validate: |v| long_at_least(1)(v),
    },
    ConfigDef {
        name: "max.message.bytes",
        config_type: ConfigType::Int,
        doc: "The largest record batch accepted.",
        validate: |v| match v.parse::<i32>() {
            Ok(n) if n >= 64 => Ok(()),
            _ => Err("must be an integer from 64 to 2147483647".into()),
        },
    },
    ConfigDef {
        name: "message.timestamp.type",
        config_type: ConfigType::String,
        doc: "CreateTime keeps the producer's timestamps; LogAppendTime stamps the broker's time.",
        validate: |v| match v {
            "CreateTime" | "LogAppendTime" => Ok(()),
            _ => Err("must be CreateTime or LogAppendTime".into()),
        },
    },
    ConfigDef {
        name: "min.insync.replicas",
        config_type: ConfigType::Int,
        doc: "acks=all writes need this many in-sync replicas.",
        validate: |v| match v.parse::<i32>() {
            Ok(n) if n >= 1 => Ok(()),
            _ => Err("must be an integer ≥ 1".into()),
        },
    },
    ConfigDef {
        name: "unclean.leader.election.enable",
        config_type: ConfigType::Boolean,
        doc: "Allow an out-of-sync replica to become leader, losing acknowledged data.",
        validate: |v| match v {
            "true" | "false" => Ok(()),
            _ => Err("must be true or false".into()),
        },
    },
];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TopicConfigError {
    #[error("unknown topic config '{0}'")]
    Unknown(String),
    #[error("invalid value '{value}' for topic config '{name}': {reason}")]
    InvalidValue {
        name: String,
        value: String,
        reason: String,
    },
}

pub fn find(name: &str) -> Option<&'static ConfigDef> {
    KNOWN.iter().find(|d| d.name == name)
}

/// Checks one name/value pair against [`KNOWN`].
pub fn validate_entry(name: &str, value: &str) -> Result<(), TopicConfigError> {
    let def = find(name).ok_or_else(|| TopicConfigError::Unknown(name.to_string()))?;
    (def.validate)(value).map_err(|reason| TopicConfigError::InvalidValue {
        name: name.to_string(),
        value: value.to_string(),
        reason,
    })
}

/// A topic's overrides on top of the broker defaults.
#[derive(Clone, Debug)]
pub struct TopicConfigs<'a> {
    /// The broker's log defaults, with the cluster-wide dynamic configs applied.
    pub defaults: LogConfig,
    pub overrides: &'a BTreeMap<String, String>,
    /// The broker's `--min-insync-replicas`.
    pub default_min_insync_replicas: i32,
}

impl TopicConfigs<'_> {
    /// The effective value of `name` and whether the topic overrides it.
    pub fn value(&self, name: &str) -> (String, bool) {
        if let Some(v) = self.overrides.get(name) {
            return (v.clone(), true);
        }
        let d = &self.defaults;
        let v = match name {
            "cleanup.policy" => "delete".to_string(),
            "retention.ms" => d.retention_ms.to_string(),
            "retention.bytes" => d.retention_bytes.to_string(),
            "segment.bytes" => d.segment_bytes.to_string(),
            "segment.ms" => d.segment_ms.to_string(),
            "max.message.bytes" => d.max_message_bytes.to_string(),
            "message.timestamp.type" => "CreateTime".to_string(),
            "min.insync.replicas" => self.default_min_insync_replicas.to_string(),
            "unclean.leader.election.enable" => "false".to_string(),
            _ => String::new(),
        };
        (v, false)
    }

    fn parsed<T: std::str::FromStr>(&self, name: &str, fallback: T) -> T {
        self.overrides
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(fallback)
    }

    /// The partition log settings for this topic.
    pub fn log_config(&self) -> LogConfig {
        let d = &self.defaults;
        LogConfig {
            segment_bytes: self.parsed("segment.bytes", d.segment_bytes),
            segment_ms: self.parsed("segment.ms", d.segment_ms),
            retention_ms: self.parsed("retention.ms", d.retention_ms),
            retention_bytes: self.parsed("retention.bytes", d.retention_bytes),
            max_message_bytes: self.parsed("max.message.bytes", d.max_message_bytes),
            ..d.clone()
        }
    }

    pub fn log_append_time(&self) -> bool {
        self.overrides
            .get("message.timestamp.type")
            .is_some_and(|v| v == "LogAppendTime")
    }

    pub fn min_insync_replicas(&self) -> i32 {
        self.parsed("min.insync.replicas", self.default_min_insync_replicas)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_config_and_the_reason() {
        assert_eq!(validate_entry("retention.ms", "-1"), Ok(()));
        assert!(matches!(
            validate_entry("retention.ms", "-2"),
            Err(TopicConfigError::InvalidValue { .. })
        ));
        assert!(matches!(
            validate_entry("segment.bytes", "abc"),
            Err(TopicConfigError::InvalidValue { .. })
        ));
        assert_eq!(
            validate_entry("no.such", "1"),
            Err(TopicConfigError::Unknown("no.such".into()))
        );
        let err = validate_entry("cleanup.policy", "compact").expect_err("compact unsupported");
        assert!(err.to_string().contains("cleanup.policy"));
    }

    #[test]
    fn overrides_win_over_defaults() {
        let defaults = LogConfig::default();
        let overrides: BTreeMap<String, String> = [
            ("retention.ms".to_string(), "1000".to_string()),
            ("message.timestamp.type".into(), "LogAppendTime".into()),
        ]
        .into();
        let tc = TopicConfigs {
            defaults: defaults.clone(),
            overrides: &overrides,
            default_min_insync_replicas: 1,
        };
        assert_eq!(tc.log_config().retention_ms, 1000);
        assert_eq!(tc.log_config().segment_bytes, defaults.segment_bytes);
        assert_eq!(tc.value("retention.ms"), ("1000".to_string(), true));
        assert_eq!(
            tc.value("segment.bytes"),
            (defaults.segment_bytes.to_string(), false)
        );
        assert!(tc.log_append_time());
    }
}
