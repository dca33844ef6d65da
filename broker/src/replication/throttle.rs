//! Pacing of replica moves (Kafka's `follower.replication.throttled.rate`
//! for the replicas a reassignment adds): every follower fetcher of a moving
//! replica on this broker shares one budget of bytes per second. After a
//! fetch brings `n` bytes, the fetcher waits until the budget has paid for
//! them; ordinary followers are never paced. [`plan_pace`] is the pure rule.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The broker-wide pacing state: when the bytes fetched so far are paid for.
#[derive(Debug, Default)]
pub struct Throttle {
    paid_until: Mutex<Option<Instant>>,
}

/// Pure: given when earlier bytes are paid for, now, `bytes` more at
/// `rate` bytes/s, returns (new paid-until, how long to wait now). Idle time
/// is not saved up: the budget never starts before now.
pub fn plan_pace(
    paid_until: Option<Instant>,
    now: Instant,
    bytes: u64,
    rate: u64,
) -> (Instant, Duration) {
    let start = paid_until.filter(|t| *t > now).unwrap_or(now);
    let cost = Duration::from_secs_f64(bytes as f64 / rate.max(1) as f64);
    let until = start + cost;
    (until, until.saturating_duration_since(now))
}

impl Throttle {
    /// Charges `bytes` at `rate` bytes/s and waits until they are paid for.
    pub async fn pace(&self, bytes: u64, rate: u64) {
        let wait = {
            let mut paid = self.paid_until.lock().unwrap_or_else(|e| e.into_inner());
            let (until, wait) = plan_pace(*paid, Instant::now(), bytes, rate);
            *paid = Some(until);
            wait
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_paid_for_in_order_and_idle_time_is_not_saved() {
        let now = Instant::now();
        let (until, wait) = plan_pace(None, now, 1000, 1000);
        assert_eq!(wait, Duration::from_secs(1));
        // A second fetcher right after waits for both.
        let (until2, wait2) = plan_pace(Some(until), now, 500, 1000);
        assert_eq!(wait2, Duration::from_millis(1500));
        // Long after, the budget starts again from now.
        let later = until2 + Duration::from_secs(10);
        let (_, wait3) = plan_pace(Some(until2), later, 100, 1000);
        assert_eq!(wait3, Duration::from_millis(100));
    }
}
