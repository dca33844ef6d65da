//! The operator's Prometheus metrics (prometheus-client): reconciles by
//! controller, failures by controller and reason, and reconcile duration,
//! measured with a drop guard so early returns and errors are timed too.
//! Serving them is the HTTP module's job.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label set `controller`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

/// Label set `controller`, `reason` (a bounded set: the error kinds of each reconciler).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: String,
    pub reason: String,
}

/// Label set `namespace`, `name` of a ConsumerAutoscaler.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AutoscalerLabels {
    pub namespace: String,
    pub name: String,
}

type HistogramFamily = Family<ControllerLabels, Histogram, fn() -> Histogram>;

/// Every metric of the operator and the registry that exposes them.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: HistogramFamily,
    autoscaler_desired: Family<AutoscalerLabels, Gauge>,
    autoscaler_lag: Family<AutoscalerLabels, Gauge>,
}

fn duration_histogram() -> Histogram {
    // 5 ms … ~41 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("tideway_operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = HistogramFamily::new_with_constructor(duration_histogram);
        registry.register("reconciles", "Reconciliations started", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciliations that failed, by reason",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time a reconciliation took",
            duration.clone(),
        );
        let autoscaler_desired = Family::<AutoscalerLabels, Gauge>::default();
        let autoscaler_lag = Family::<AutoscalerLabels, Gauge>::default();
        let autoscaler = root.sub_registry_with_prefix("tideway_autoscaler");
        autoscaler.register(
            "desired_replicas",
            "Replicas a ConsumerAutoscaler wants for its workload",
            autoscaler_desired.clone(),
        );
        autoscaler.register(
            "lag",
            "Total lag of a ConsumerAutoscaler's consumer group at its last evaluation",
            autoscaler_lag.clone(),
        );
        Self {
            registry: root,
            reconciles,
            errors,
            duration,
            autoscaler_desired,
            autoscaler_lag,
        }
    }
}

impl Metrics {
    /// Counts a reconcile of `controller` and times it until the guard is dropped.
    pub fn reconcile_started(&self, controller: &str) -> ReconcileTimer {
        let labels = ControllerLabels {
            controller: controller.to_owned(),
        };
        self.reconciles.get_or_create(&labels).inc();
        ReconcileTimer {
            start: Instant::now(),
            histogram: self.duration.get_or_create(&labels).clone(),
        }
    }

    /// Counts a failed reconcile.
    pub fn reconcile_failed(&self, controller: &str, reason: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                controller: controller.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The last evaluation of a ConsumerAutoscaler.
    pub fn set_autoscaler(&self, namespace: &str, name: &str, desired: i32, lag: i64) {
        let labels = AutoscalerLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.autoscaler_desired
            .get_or_create(&labels)
            .set(i64::from(desired));
        self.autoscaler_lag.get_or_create(&labels).set(lag);
    }

    /// The text exposition format (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Observes the elapsed time into the duration histogram when dropped.
pub struct ReconcileTimer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_times_reconciles() {
        let metrics = Metrics::default();
        {
            let _timer = metrics.reconcile_started("topic");
            metrics.reconcile_failed("topic", "ConnectAdmin");
        }
        metrics.set_autoscaler("ns", "orders", 6, 200_000);
        let text = metrics.encode();
        assert!(
            text.contains("tideway_operator_reconciles_total{controller=\"topic\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("tideway_operator_reconcile_errors_total{controller=\"topic\",reason=\"ConnectAdmin\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "tideway_operator_reconcile_duration_seconds_count{controller=\"topic\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "tideway_autoscaler_desired_replicas{namespace=\"ns\",name=\"orders\"} 6"
            ),
            "{text}"
        );
        assert!(
            text.contains("tideway_autoscaler_lag{namespace=\"ns\",name=\"orders\"} 200000"),
            "{text}"
        );
    }
}
