//! The PodDisruptionBudget: voluntary disruptions (node drains) take at most
//! one broker at a time. The operator's own rolling restarts are paced by the
//! brokers' restart-risk check, not by this budget.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{owned_meta, selector_labels};
use crate::cluster::validate::ValidatedCluster;

/// Builds `<cluster>` with `maxUnavailable: 1`.
pub fn build_pod_disruption_budget(cluster: &ValidatedCluster) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: owned_meta(cluster, cluster.pod_disruption_budget_name()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(cluster)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::resources::tests::{demo_cluster, validated};
    use crate::settings::BuildSettings;

    #[test]
    fn one_broker_at_a_time() {
        let pdb =
            build_pod_disruption_budget(&validated(&demo_cluster(), &BuildSettings::default()));
        let spec = pdb.spec.expect("spec");
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(spec.min_available, None);
        assert!(spec.selector.expect("selector").match_labels.is_some());
    }
}
