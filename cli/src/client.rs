//! What every librdkafka client of this binary shares: the configuration
//! built from the global flags, and a context that sends librdkafka's logs
//! and errors to `tracing` without flooding stderr while a broker is down.
//! Consumer- and producer-specific callbacks live with their subcommands.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tracing::{debug, error, info, warn};

use crate::args::Common;
use crate::rate::RepeatLimiter;

/// The same librdkafka error is logged at most once per this period.
pub const REPEAT_WARNING_EVERY: Duration = Duration::from_secs(30);

/// bootstrap.servers and client.id from the global flags, then `settings`
/// of the subcommand, then the user's `-X` properties (which win).
pub fn build_config(common: &Common, settings: &[(&str, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &common.bootstrap)
        .set("client.id", &common.client_id)
        .set_log_level(RDKafkaLogLevel::Info);
    for (key, value) in settings {
        config.set(*key, value);
    }
    for (key, value) in &common.client_config {
        config.set(key, value);
    }
    config
}

/// librdkafka's logs and client-wide errors, forwarded to `tracing`.
///
/// Transport errors (a broker restarting, all brokers down) repeat for as
/// long as the condition lasts; they are logged as warnings through a
/// [`RepeatLimiter`]. librdkafka reconnects on its own: nothing here ends
/// the process.
pub struct LogContext {
    repeats: Mutex<RepeatLimiter>,
}

impl Default for LogContext {
    fn default() -> Self {
        LogContext {
            repeats: Mutex::new(RepeatLimiter::new(REPEAT_WARNING_EVERY)),
        }
    }
}

impl LogContext {
    /// Logs `text` as a warning unless the same warning was logged recently.
    pub fn warn_limited(&self, text: &str) {
        let admitted = match self.repeats.lock() {
            Ok(mut repeats) => repeats.admit(repeat_key(text), Instant::now()),
            Err(_) => Some(0), // a panicked logger thread: log rather than lose it
        };
        match admitted {
            Some(0) => warn!("{text}"),
            Some(held) => warn!("{text} (and {held} more like it since the last one)"),
            None => {}
        }
    }
}

/// What makes two warnings "the same": librdkafka appends timings and its
/// own suppression counts in a trailing "(after ...)", which are cut off.
pub fn repeat_key(text: &str) -> &str {
    text.split(" (after ").next().unwrap_or(text)
}

/// Consumer errors that repeat a client-wide error already logged through
/// [`ClientContext::error`] (librdkafka reports both).
pub fn is_transport_error(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown)
    )
}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                error!("librdkafka {facility}: {message}")
            }
            // FAIL lines (a connection failed) come again as error events
            // (below), which are the ones shown.
            RDKafkaLogLevel::Error | RDKafkaLogLevel::Warning if facility == "FAIL" => {
                debug!("librdkafka {facility}: {message}")
            }
            RDKafkaLogLevel::Error | RDKafkaLogLevel::Warning => {
                self.warn_limited(&format!("librdkafka {facility}: {message}"))
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                info!("librdkafka {facility}: {message}")
            }
            RDKafkaLogLevel::Debug => debug!("librdkafka {facility}: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.warn_limited(&format!("{error}: {reason}"));
    }
}

/// For consumers that never subscribe (`lag`): no rebalances, no callbacks.
impl ConsumerContext for LogContext {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_differing_only_in_librdkafkas_timings_are_the_same() {
        let a = "b0:9092/1: Connect to ipv4#10.0.0.1:9092 failed: Connection refused (after 0ms in state CONNECT)";
        let b = "b0:9092/1: Connect to ipv4#10.0.0.1:9092 failed: Connection refused (after 2ms in state CONNECT, 3 identical error(s) suppressed)";
        assert_eq!(repeat_key(a), repeat_key(b));
        assert_eq!(repeat_key("no timings"), "no timings");
    }
}
