//! What every reconcile shares: the Kubernetes client, the operator's
//! settings, metrics, the event recorder and per-object retry backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::metrics::Metrics;
use crate::settings::OperatorSettings;

/// Field manager of every server-side apply and the events' reporter.
pub const FIELD_MANAGER: &str = "tideway-operator";
/// First retry after a transient error; doubles per failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(2);
/// Longest retry interval after transient errors.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Requeue interval of a spec that cannot work until someone changes it.
pub const SLOW_REQUEUE: Duration = Duration::from_secs(300);

/// Shared by the reconcilers of one operator process.
pub struct Context {
    pub client: Client,
    pub settings: OperatorSettings,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    failures: Mutex<HashMap<String, u32>>,
    /// Per object: when it was last evaluated, and a fingerprint of what it was
    /// evaluated for (see [`Context::throttle`]).
    evaluations: Mutex<Evaluations>,
}

/// When each object was last evaluated, and for which fingerprint.
#[derive(Default)]
pub struct Evaluations(HashMap<String, (Instant, u64)>);

impl Evaluations {
    /// `Some(wait)` when `key` ran less than `interval` before `now` with the
    /// same fingerprint; otherwise records this run at `now`.
    pub fn wait(
        &mut self,
        key: &str,
        fingerprint: u64,
        now: Instant,
        interval: Duration,
    ) -> Option<Duration> {
        if let Some((at, seen)) = self.0.get(key) {
            let elapsed = now.saturating_duration_since(*at);
            if *seen == fingerprint && elapsed < interval {
                return Some(interval - elapsed);
            }
        }
        self.0.insert(key.to_owned(), (now, fingerprint));
        None
    }
}

impl Context {
    pub fn new(client: Client, settings: OperatorSettings, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics,
            failures: Mutex::new(HashMap::new()),
            evaluations: Mutex::new(Evaluations::default()),
        }
    }

    /// Records one more failure of `key` and returns how long to wait before the next attempt.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        backoff_after(*n)
    }

    /// Records an Event on `object`. Best effort: a failure is logged, not returned.
    pub async fn publish_event(
        &self,
        object: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
        action: &str,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(err) = self.recorder.publish(&event, object).await {
            tracing::warn!(object = ?object.name, reason, error = %err, "could not publish an event");
        }
    }

    /// For reconcilers that run on a timer and write their status every time
    /// (which wakes them again through the watch): `Some(wait)` when `key` was
    /// evaluated less than `interval` ago for the same `fingerprint` (e.g. its
    /// generation and annotations), so this run should only requeue after `wait`;
    /// otherwise records this run and returns None.
    pub fn throttle(&self, key: &str, fingerprint: u64, interval: Duration) -> Option<Duration> {
        self.evaluations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .wait(key, fingerprint, Instant::now(), interval)
    }

    /// Forgets the failures of `key` after a successful reconcile.
    pub fn reset_backoff(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// BACKOFF_BASE · 2^(failures−1), at most BACKOFF_MAX.
/// The merge patch that replaces a resource's status with `new`: fields the
/// old status had and the new one lacks are sent as null (an absent key
/// would keep its stale value).
pub fn status_merge_patch<S: serde::Serialize>(
    old: Option<&S>,
    new: &S,
) -> kube::api::Patch<serde_json::Value> {
    let mut body = serde_json::to_value(new).unwrap_or_default();
    let old = old.and_then(|s| serde_json::to_value(s).ok());
    if let (Some(serde_json::Value::Object(old)), serde_json::Value::Object(new)) = (old, &mut body)
    {
        for k in old.keys() {
            new.entry(k.clone()).or_insert(serde_json::Value::Null);
        }
    }
    kube::api::Patch::Merge(serde_json::json!({ "status": body }))
}

pub fn backoff_after(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    (BACKOFF_BASE * factor).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_patch_nulls_what_the_new_status_lacks() {
        let old = serde_json::json!({"a": 1, "b": 2});
        let new = serde_json::json!({"a": 3});
        let kube::api::Patch::Merge(patch) = status_merge_patch(Some(&old), &new) else {
            panic!("a merge patch");
        };
        assert_eq!(patch, serde_json::json!({"status": {"a": 3, "b": null}}));
    }

    #[test]
    fn an_evaluation_waits_out_its_interval_unless_the_fingerprint_changed() {
        let mut runs = Evaluations::default();
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        assert_eq!(runs.wait("a", 1, t0, minute), None);
        assert_eq!(
            runs.wait("a", 1, t0 + Duration::from_secs(10), minute),
            Some(Duration::from_secs(50)),
            "woken by its own status write: wait"
        );
        assert_eq!(
            runs.wait("a", 2, t0 + Duration::from_secs(11), minute),
            None,
            "a spec change runs at once"
        );
        assert_eq!(runs.wait("b", 2, t0, minute), None);
        assert_eq!(
            runs.wait("a", 2, t0 + Duration::from_secs(71), minute),
            None,
            "interval over"
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_after(1), Duration::from_secs(2));
        assert_eq!(backoff_after(2), Duration::from_secs(4));
        assert_eq!(backoff_after(5), Duration::from_secs(32));
        assert_eq!(backoff_after(9), BACKOFF_MAX);
        assert_eq!(backoff_after(u32::MAX), BACKOFF_MAX);
    }
}
