//! The command line of `tideway`: flags, their environment variables and
//! the checks clap can do (ranges, required and conflicting flags), so a bad
//! invocation fails before any connection with a message naming the flag.
//! What the flags mean at run time is left to the subcommand modules.
//!
//! Global flags have `TIDEWAY_*` variables; a subcommand's flags have
//! `TIDEWAY_<SUBCOMMAND>_*` ones, so a variable meant for one subcommand
//! (say `--count`) never changes another.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Largest value `produce --size` generates (librdkafka's default
/// message.max.bytes is 1,000,000; bigger records need -X message.max.bytes=...).
pub const MAX_GENERATED_BYTES: u64 = 100 * 1024 * 1024;

#[derive(Parser, Debug)]
#[command(
    name = "tideway",
    version,
    about = "A small Kafka client for Tideway (or any Kafka cluster): topics, produce, consume as a group member, lag",
    after_help = "Every flag also reads an environment variable, shown in each subcommand's --help."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand takes.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub struct Common {
    /// Brokers to bootstrap from, comma-separated host:port.
    #[arg(long, global = true, env = "TIDEWAY_BOOTSTRAP", default_value = "localhost:9092",
          value_name = "HOST:PORT,...", value_parser = parse_bootstrap)]
    pub bootstrap: String,

    /// client.id sent to the brokers (shows in group descriptions).
    #[arg(
        long,
        global = true,
        env = "TIDEWAY_CLIENT_ID",
        default_value = "tideway"
    )]
    pub client_id: String,

    /// Any librdkafka property, e.g. -X debug=consumer; repeatable; applied last, so it wins.
    #[arg(short = 'X', long = "client-config", global = true, env = "TIDEWAY_CLIENT_CONFIG",
          value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub client_config: Vec<(String, String)>,

    /// How long to wait for one metadata, admin or offsets request.
    #[arg(long, global = true, env = "TIDEWAY_TIMEOUT_MS", default_value_t = 30_000,
          allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,

    /// Log filter for stderr (tracing EnvFilter syntax, e.g. info or debug).
    #[arg(long, global = true, env = "TIDEWAY_LOG", default_value = "info")]
    pub log: String,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List topics with their partition counts (--describe: every partition), or create one (--create).
    Topics(TopicsArgs),
    /// Produce stdin's lines (one record each), or --count generated records; acks=all, idempotent.
    Produce(ProduceArgs),
    /// Consume as a member of a consumer group, committing offsets after processing.
    Consume(ConsumeArgs),
    /// Show a group's committed offsets, high watermarks and lag per partition.
    Lag(LagArgs),
}

#[derive(Args, Debug)]
pub struct TopicsArgs {
    /// Create this topic instead of listing.
    #[arg(long, env = "TIDEWAY_TOPICS_CREATE", value_name = "NAME", value_parser = parse_topic_name)]
    pub create: Option<String>,

    /// Partitions of the new topic (default: the cluster's num.partitions).
    #[arg(long, env = "TIDEWAY_TOPICS_PARTITIONS", requires = "create",
          allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(1..=100_000))]
    pub partitions: Option<i32>,

    /// Replication factor of the new topic (default: the cluster's default.replication.factor).
    #[arg(long, env = "TIDEWAY_TOPICS_REPLICATION_FACTOR", requires = "create",
          allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(1..=32_767))]
    pub replication_factor: Option<i32>,

    /// A topic config of the new topic, e.g. --config retention.ms=3600000; repeatable.
    #[arg(long = "config", env = "TIDEWAY_TOPICS_CONFIG", requires = "create",
          value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub configs: Vec<(String, String)>,

    /// List every partition: leader, replicas and in-sync replicas.
    #[arg(long, env = "TIDEWAY_TOPICS_DESCRIBE", conflicts_with = "create")]
    pub describe: bool,

    /// Only these topics (repeatable or comma-separated).
    #[arg(long = "topic", env = "TIDEWAY_TOPICS_TOPIC", value_delimiter = ',',
          conflicts_with = "create", value_parser = parse_topic_name)]
    pub topics: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ProduceArgs {
    /// Topic to produce to.
    #[arg(long, env = "TIDEWAY_PRODUCE_TOPIC", value_parser = parse_topic_name)]
    pub topic: String,

    /// Produce this many generated records instead of reading stdin.
    #[arg(long, env = "TIDEWAY_PRODUCE_COUNT", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Bytes of each generated value: its sequence number, '|', then filler [default: 100].
    #[arg(long, env = "TIDEWAY_PRODUCE_SIZE", requires = "count",
          allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(0..=MAX_GENERATED_BYTES))]
    pub size: Option<u64>,

    /// Keys are <PREFIX><i % --keys>; default "key-" with --count, no key for stdin lines.
    #[arg(long, env = "TIDEWAY_PRODUCE_KEY_PREFIX")]
    pub key_prefix: Option<String>,

    /// Distinct keys (they spread records over the partitions).
    #[arg(long, env = "TIDEWAY_PRODUCE_KEYS", default_value_t = 1000,
          allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub keys: u64,

    /// A record not acknowledged within this time counts as failed (message.timeout.ms).
    #[arg(long, env = "TIDEWAY_PRODUCE_DELIVERY_TIMEOUT_MS", default_value_t = 120_000,
          allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(1..=i32::MAX as u64))]
    pub delivery_timeout_ms: u64,
}

/// Where a group starts on a partition that has no committed offset.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFrom {
    Earliest,
    Latest,
}

impl StartFrom {
    /// The auto.offset.reset value.
    pub fn as_config(self) -> &'static str {
        match self {
            StartFrom::Earliest => "earliest",
            StartFrom::Latest => "latest",
        }
    }
}

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    /// Consumer group to join.
    #[arg(long, env = "TIDEWAY_CONSUME_GROUP", value_parser = parse_non_empty)]
    pub group: String,

    /// Topics to subscribe to (repeatable or comma-separated).
    #[arg(long = "topic", env = "TIDEWAY_CONSUME_TOPIC", value_delimiter = ',', required = true,
          value_parser = parse_topic_name)]
    pub topics: Vec<String>,

    /// At most this many records per second for this process.
    #[arg(long, env = "TIDEWAY_CONSUME_MAX_RATE", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_rate: Option<u32>,

    /// Exit after this many records.
    #[arg(long, env = "TIDEWAY_CONSUME_COUNT", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Print each record to stdout: topic, partition, offset, key, value (tab-separated).
    #[arg(long, env = "TIDEWAY_CONSUME_PRINT")]
    pub print: bool,

    /// Where to start on partitions the group has no committed offset for.
    #[arg(long, env = "TIDEWAY_CONSUME_FROM", value_enum, default_value_t = StartFrom::Earliest)]
    pub from: StartFrom,

    /// Commit what was processed this often (and always on revocation and exit).
    #[arg(long, env = "TIDEWAY_CONSUME_COMMIT_INTERVAL_MS", default_value_t = 1000,
          allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub commit_interval_ms: u64,

    /// Group session timeout: a member silent this long (e.g. killed) loses its partitions.
    #[arg(long, env = "TIDEWAY_CONSUME_SESSION_TIMEOUT_MS", default_value_t = 10_000,
          allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(1..=i32::MAX as u64))]
    pub session_timeout_ms: u64,

    /// Log progress (records so far, rate) this often.
    #[arg(long, env = "TIDEWAY_CONSUME_PROGRESS_INTERVAL_MS", default_value_t = 5000,
          allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(100..))]
    pub progress_interval_ms: u64,
}

#[derive(Args, Debug)]
pub struct LagArgs {
    /// Consumer group whose committed offsets to read (the group is not joined).
    #[arg(long, env = "TIDEWAY_LAG_GROUP", value_parser = parse_non_empty)]
    pub group: String,

    /// Topics to report (repeatable or comma-separated). Required: librdkafka cannot list
    /// the topics a group has committed offsets for.
    #[arg(long = "topic", env = "TIDEWAY_LAG_TOPIC", value_delimiter = ',', required = true,
          value_parser = parse_topic_name)]
    pub topics: Vec<String>,
}

/// `KEY=VALUE` with a non-empty key.
fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got '{s}'")),
    }
}

fn parse_non_empty(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("must not be empty".to_string())
    } else {
        Ok(s.to_string())
    }
}

/// Kafka's rule: 1-249 characters of [a-zA-Z0-9._-], not "." or "..".
fn parse_topic_name(s: &str) -> Result<String, String> {
    let valid_chars = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if s.is_empty() || s.len() > 249 || s == "." || s == ".." || !valid_chars {
        return Err(format!(
            "'{s}' is not a valid topic name (1-249 characters of letters, digits, '.', '_', '-')"
        ));
    }
    Ok(s.to_string())
}

/// Comma-separated host[:port] entries, none empty and no spaces.
fn parse_bootstrap(s: &str) -> Result<String, String> {
    if s.split(',')
        .any(|e| e.is_empty() || e.contains(char::is_whitespace))
    {
        return Err(format!("expected HOST:PORT[,HOST:PORT...], got '{s}'"));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tideway").chain(args.iter().copied()))
    }

    fn error_of(args: &[&str]) -> String {
        match parse(args) {
            Ok(cli) => panic!("{args:?} parsed: {cli:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn consume_takes_repeated_and_comma_separated_topics() {
        let cli = parse(&[
            "consume",
            "--group",
            "g",
            "--topic",
            "a,b",
            "--topic",
            "c",
            "--max-rate",
            "50",
        ])
        .expect("valid");
        let Command::Consume(c) = cli.command else {
            panic!("not consume")
        };
        assert_eq!(c.topics, ["a", "b", "c"]);
        assert_eq!(c.max_rate, Some(50));
        assert_eq!(c.from, StartFrom::Earliest);
        assert_eq!(cli.common.bootstrap, "localhost:9092");
    }

    #[test]
    fn global_flags_go_after_the_subcommand_too() {
        let cli = parse(&[
            "lag",
            "--group",
            "g",
            "--topic",
            "t",
            "--bootstrap",
            "b1:9092,b2:9092",
            "-X",
            "debug=all",
        ])
        .expect("valid");
        assert_eq!(cli.common.bootstrap, "b1:9092,b2:9092");
        assert_eq!(
            cli.common.client_config,
            [("debug".to_string(), "all".to_string())]
        );
    }

    #[test]
    fn bad_values_name_their_flag() {
        for (args, flag) in [
            (
                &[
                    "consume",
                    "--group",
                    "g",
                    "--topic",
                    "t",
                    "--max-rate",
                    "abc",
                ][..],
                "--max-rate",
            ),
            (
                &["consume", "--group", "g", "--topic", "t", "--max-rate", "0"][..],
                "--max-rate",
            ),
            (
                &[
                    "consume", "--group", "g", "--topic", "t", "--from", "middle",
                ][..],
                "--from",
            ),
            (
                &["consume", "--group", "g", "--topic", "bad topic"][..],
                "--topic",
            ),
            (&["produce", "--topic", "t", "--count", "-5"][..], "--count"),
            (
                &["produce", "--topic", "t", "--count", "5", "--size", "lots"][..],
                "--size",
            ),
            (
                &["topics", "--create", "t", "--partitions", "0"][..],
                "--partitions",
            ),
            (
                &["topics", "--create", "t", "--config", "novalue"][..],
                "--config",
            ),
            (
                &["lag", "--group", "g", "--topic", "t", "-X", "=x"][..],
                "--client-config",
            ),
            (&["topics", "--bootstrap", "a:1,,b:2"][..], "--bootstrap"),
            (&["topics", "--timeout-ms", "0"][..], "--timeout-ms"),
        ] {
            let e = error_of(args);
            assert!(
                e.contains(flag),
                "{args:?}: error does not name {flag}:\n{e}"
            );
        }
    }

    #[test]
    fn missing_and_misplaced_flags_are_named() {
        for (args, flag) in [
            (&["consume", "--topic", "t"][..], "--group"),
            (&["consume", "--group", "g"][..], "--topic"),
            (&["lag", "--group", "g"][..], "--topic"),
            (&["produce", "--count", "3"][..], "--topic"),
            // --size only means something for generated records
            (&["produce", "--topic", "t", "--size", "10"][..], "--count"),
            (&["topics", "--partitions", "3"][..], "--create"),
            (&["topics", "--create", "t", "--describe"][..], "--describe"),
        ] {
            let e = error_of(args);
            assert!(
                e.contains(flag),
                "{args:?}: error does not name {flag}:\n{e}"
            );
        }
    }

    #[test]
    fn topic_names_follow_kafkas_rule() {
        assert!(parse_topic_name("orders.v2_x-1").is_ok());
        for bad in ["", ".", "..", "a b", "a/b", &"x".repeat(250)] {
            assert!(parse_topic_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn key_values_split_at_the_first_equals_sign() {
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_key_value("a="), Ok(("a".into(), String::new())));
        assert!(parse_key_value("a").is_err());
        assert!(parse_key_value(" =b").is_err());
    }
}
