//! Pure pacing and progress arithmetic for the long-running subcommands:
//! the token bucket behind `consume --max-rate`, the rate shown in progress
//! lines, and a limiter for repeated warnings. Time comes in as an
//! `Instant` argument; sleeping and logging are left to the callers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A token bucket that reserves: every record takes a token, and the bucket
/// may go into debt, which the caller pays by waiting.
///
/// Over any window of `t` seconds at most `burst + rate * t` records pass,
/// and the schedule is kept from the tokens' arithmetic, not from the sum of
/// the waits, so oversleeping (timer granularity, a busy machine) does not
/// drift the rate down.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl RateLimiter {
    /// `per_second` records per second (at least 1). The burst is 20 ms worth
    /// of records (at least one), so high rates are paced in small batches
    /// rather than one timer per record. Starts with a full bucket.
    pub fn new(per_second: u32, now: Instant) -> Self {
        let per_second = f64::from(per_second.max(1));
        let burst = (per_second / 50.0).max(1.0);
        RateLimiter {
            per_second,
            burst,
            tokens: burst,
            refilled_at: now,
        }
    }

    /// Takes one token; returns how long to wait before using it (zero when
    /// the bucket had one).
    ///
    /// 1. Refill by the time passed since the last call, up to `burst`.
    /// 2. Take one token; the balance may go negative (a reservation).
    /// 3. A negative balance of `d` tokens is `d / rate` seconds of waiting.
    pub fn acquire(&mut self, now: Instant) -> Duration {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.refilled_at = self.refilled_at.max(now);
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.per_second)
        }
    }
}

/// Records per second between two progress reports.
pub fn rate_per_second(records: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        0.0
    } else {
        records as f64 / secs
    }
}

/// Lets the same warning through at most once per `every`, counting the
/// ones it held back, so a broker that is down for a minute gives a few
/// lines rather than hundreds. Keyed by the warning's text; the table is
/// cleared when it grows past a bound (distinct texts are few in practice).
#[derive(Debug)]
pub struct RepeatLimiter {
    every: Duration,
    seen: HashMap<String, (Instant, u64)>,
}

const MAX_REMEMBERED: usize = 256;

impl RepeatLimiter {
    pub fn new(every: Duration) -> Self {
        RepeatLimiter {
            every,
            seen: HashMap::new(),
        }
    }

    /// `Some(suppressed)` when `text` should be logged now, with how many
    /// identical ones were held back since it was last logged; else `None`.
    pub fn admit(&mut self, text: &str, now: Instant) -> Option<u64> {
        if self.seen.len() >= MAX_REMEMBERED && !self.seen.contains_key(text) {
            self.seen.clear();
        }
        match self.seen.get_mut(text) {
            Some((last, held)) if now.saturating_duration_since(*last) < self.every => {
                *held += 1;
                None
            }
            Some((last, held)) => {
                let suppressed = *held;
                *last = now;
                *held = 0;
                Some(suppressed)
            }
            None => {
                self.seen.insert(text.to_string(), (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_slow_rate_spaces_records_evenly_from_the_first_reservation() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(10, t0);
        assert_eq!(
            r.acquire(t0),
            Duration::ZERO,
            "the bucket starts with one token"
        );
        assert_eq!(r.acquire(t0), 100 * MS);
        assert_eq!(r.acquire(t0), 200 * MS);
        // The caller slept 100 ms and came back late (at +250 ms): the next
        // slot is still +300 ms, not +350 ms: oversleeping does not drift.
        assert_eq!(r.acquire(t0 + 250 * MS), 50 * MS);
    }

    #[test]
    fn no_window_passes_more_than_burst_plus_rate_times_length() {
        // Simulate a consumer that always has a record ready and sleeps
        // exactly what it is told (plus 1 ms of timer slack).
        let t0 = Instant::now();
        let rate = 1000;
        let mut r = RateLimiter::new(rate, t0);
        let mut now = t0;
        let mut passed_at = Vec::new();
        while now < t0 + Duration::from_secs(3) {
            let wait = r.acquire(now);
            if !wait.is_zero() {
                now += wait + MS;
            }
            passed_at.push(now);
        }
        let burst = 20; // 1000 / 50
        for (i, start) in passed_at.iter().enumerate() {
            let end = *start + Duration::from_secs(1);
            let in_window = passed_at[i..].iter().take_while(|t| **t < end).count();
            assert!(
                in_window <= burst + rate as usize,
                "{in_window} records in one second"
            );
        }
        // ... and the pacing does not lose throughput either.
        let total = passed_at.len();
        assert!(
            total >= 3 * rate as usize - 50,
            "only {total} records in 3 s at {rate}/s"
        );
    }

    #[test]
    fn an_idle_bucket_refills_only_up_to_the_burst() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(100, t0);
        let later = t0 + Duration::from_secs(60);
        assert_eq!(r.acquire(later), Duration::ZERO);
        assert_eq!(r.acquire(later), Duration::ZERO, "burst is 2 at 100/s");
        assert_eq!(
            r.acquire(later),
            10 * MS,
            "one minute idle bought only the burst"
        );
        let mut fast = RateLimiter::new(5000, t0);
        let free = (0..1000)
            .take_while(|_| fast.acquire(later).is_zero())
            .count();
        assert_eq!(free, 100, "20 ms worth at 5000/s");
    }

    #[test]
    fn a_clock_going_backwards_does_not_mint_tokens() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut r = RateLimiter::new(10, t0);
        assert_eq!(r.acquire(t0), Duration::ZERO);
        assert_eq!(r.acquire(t0 - Duration::from_secs(5)), 100 * MS);
    }

    #[test]
    fn rates_over_zero_time_are_zero() {
        assert_eq!(rate_per_second(500, Duration::from_secs(2)), 250.0);
        assert_eq!(rate_per_second(500, Duration::ZERO), 0.0);
    }

    #[test]
    fn repeated_warnings_pass_once_per_period_with_a_count_of_the_held_back() {
        let t0 = Instant::now();
        let mut l = RepeatLimiter::new(Duration::from_secs(10));
        assert_eq!(l.admit("broker down", t0), Some(0));
        assert_eq!(l.admit("broker down", t0 + Duration::from_secs(1)), None);
        assert_eq!(l.admit("broker down", t0 + Duration::from_secs(2)), None);
        assert_eq!(l.admit("other", t0 + Duration::from_secs(2)), Some(0));
        assert_eq!(
            l.admit("broker down", t0 + Duration::from_secs(10)),
            Some(2)
        );
        assert_eq!(l.admit("broker down", t0 + Duration::from_secs(11)), None);
    }
}
