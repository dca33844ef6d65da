//! Pure decisions of the Topic reconciler: the topic a Topic resource asks
//! for (defaults resolved against the mirror policy governing it, then its
//! cluster), whether the cluster can hold it, and the AlterTopic request that
//! turns what the brokers describe into it (partitions grow, replication
//! factor and min-ISR set, configs set and deleted so that they match
//! `spec.config` exactly).

use std::collections::BTreeMap;

use tideway_admin_api::v1::{AlterTopicRequest, CreateTopicRequest, TopicDescription};

use crate::cluster::validate::ValidatedCluster;
use crate::crd::Topic;

/// Topic config the broker reports as the min-ISR setting; managed through
/// `spec.minInSyncReplicas`, never through `spec.config`.
pub const MIN_ISR_CONFIG: &str = "min.insync.replicas";

/// The topic as the spec wants it, every default resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub min_in_sync_replicas: i32,
    pub config: BTreeMap<String, String>,
    /// The mirror policy the replication factor comes from (the spec sets none).
    pub replication_factor_policy: Option<String>,
}

/// What the mirror policy governing a topic asks of it, as the brokers last
/// described the topic (DescribeTopic).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyRequirement {
    /// The policy's name on the brokers, `<namespace>/<name>`.
    pub policy: String,
    /// Replicas per partition; 0: no requirement.
    pub replication_factor: i32,
    /// Least `min.insync.replicas`; 0: no requirement.
    pub min_in_sync_replicas: i32,
}

impl PolicyRequirement {
    /// The requirement in a description; None when no policy governs the topic.
    pub fn from_description(d: &TopicDescription) -> Option<Self> {
        (!d.mirror_policy.is_empty()).then(|| Self {
            policy: d.mirror_policy.clone(),
            replication_factor: d.policy_replication_factor.max(0),
            min_in_sync_replicas: d.policy_min_insync_replicas.max(0),
        })
    }
}

/// Resolves unset fields: the replication factor is the spec's, else the
/// governing policy's, else the cluster default; min-ISR is the spec's, else
/// the larger of the policy's and the cluster default, capped at the
/// replication factor (at least 1).
pub fn resolve_desired_topic(
    topic: &Topic,
    cluster: &ValidatedCluster,
    policy: Option<&PolicyRequirement>,
) -> DesiredTopic {
    let policy_rf = policy.filter(|p| p.replication_factor > 0);
    let (replication_factor, replication_factor_policy) = match topic.spec.replication_factor {
        Some(rf) => (rf, None),
        None => match policy_rf {
            Some(p) => (p.replication_factor, Some(p.policy.clone())),
            None => (cluster.config.default_replication_factor, None),
        },
    };
    let min_in_sync_replicas = topic.spec.min_in_sync_replicas.unwrap_or_else(|| {
        let policy_min = policy.map_or(0, |p| p.min_in_sync_replicas);
        cluster
            .config
            .min_in_sync_replicas
            .max(policy_min)
            .min(replication_factor)
            .max(1)
    });
    let mut config = topic.spec.config.clone();
    config.remove(MIN_ISR_CONFIG);
    DesiredTopic {
        name: topic.kafka_name().to_owned(),
        partitions: topic
            .spec
            .partitions
            .unwrap_or(cluster.config.default_partitions),
        replication_factor,
        min_in_sync_replicas,
        config,
        replication_factor_policy,
    }
}

/// Why the cluster cannot hold the topic as specified (a condition, not a retry loop).
pub fn check_replication_factor(desired: &DesiredTopic, brokers: i32) -> Option<String> {
    (desired.replication_factor > brokers).then(|| match &desired.replication_factor_policy {
        Some(policy) => format!(
            "mirror policy {policy} asks for replication factor {}, above the cluster's {brokers} broker(s); add brokers or change the policy",
            desired.replication_factor
        ),
        None => format!(
            "replicationFactor {} exceeds the cluster's {brokers} broker(s); lower it or add brokers",
            desired.replication_factor
        ),
    })
}

/// The CreateTopic request for a topic that does not exist. Replication
/// factor and min-ISR are sent only when the spec sets them (0 otherwise):
/// the brokers then take them from the mirror policy governing the new topic,
/// or from their defaults (the default min-ISR capped at the replication
/// factor). Partitions are the resolved ones.
pub fn plan_create(topic: &Topic, desired: &DesiredTopic) -> CreateTopicRequest {
    CreateTopicRequest {
        name: desired.name.clone(),
        partitions: desired.partitions,
        replication_factor: topic.spec.replication_factor.unwrap_or(0),
        min_insync_replicas: topic.spec.min_in_sync_replicas.unwrap_or(0),
        configs: desired.config.clone().into_iter().collect(),
    }
}

/// The AlterTopic request that makes `current` match `desired`, or None when
/// it already does. Partitions only grow (more partitions than the spec, e.g.
/// added behind the operator's back, cannot be undone and are left alone).
pub fn plan_alter(desired: &DesiredTopic, current: &TopicDescription) -> Option<AlterTopicRequest> {
    let mut request = AlterTopicRequest {
        name: desired.name.clone(),
        ..AlterTopicRequest::default()
    };
    let mut changed = false;
    if desired.partitions > current.partitions {
        request.partitions = desired.partitions;
        changed = true;
    }
    if desired.replication_factor != current.replication_factor {
        request.replication_factor = desired.replication_factor;
        changed = true;
    }
    if desired.min_in_sync_replicas != current.min_insync_replicas {
        request.min_insync_replicas = desired.min_in_sync_replicas;
        changed = true;
    }
    for (key, value) in &desired.config {
        if current.configs.get(key) != Some(value) {
            request.set_configs.insert(key.clone(), value.clone());
            changed = true;
        }
    }
    let mut deletes: Vec<String> = current
        .configs
        .keys()
        .filter(|k| k.as_str() != MIN_ISR_CONFIG && !desired.config.contains_key(*k))
        .cloned()
        .collect();
    deletes.sort();
    if !deletes.is_empty() {
        request.delete_configs = deletes;
        changed = true;
    }
    changed.then_some(request)
}

/// Whether an AlterTopic only changes the replication factor or min-ISR of a
/// topic a mirror policy governs, where the spec leaves them unset: the
/// topic follows the policy (or the cluster defaults), which is not drift.
pub fn follows_policy_only(
    topic: &Topic,
    policy: Option<&PolicyRequirement>,
    request: &AlterTopicRequest,
) -> bool {
    policy.is_some()
        && request.partitions == 0
        && request.set_configs.is_empty()
        && request.delete_configs.is_empty()
        && (request.replication_factor == 0 || topic.spec.replication_factor.is_none())
        && (request.min_insync_replicas == 0 || topic.spec.min_in_sync_replicas.is_none())
}

/// A one-line description of an AlterTopic request, for logs and events.
pub fn describe_alter(request: &AlterTopicRequest) -> String {
    let mut parts = Vec::new();
    if request.partitions > 0 {
        parts.push(format!("partitions → {}", request.partitions));
    }
    if request.replication_factor > 0 {
        parts.push(format!(
            "replicationFactor → {}",
            request.replication_factor
        ));
    }
    if request.min_insync_replicas > 0 {
        parts.push(format!(
            "minInSyncReplicas → {}",
            request.min_insync_replicas
        ));
    }
    let mut set: Vec<_> = request.set_configs.iter().collect();
    set.sort();
    for (k, v) in set {
        parts.push(format!("{k}={v}"));
    }
    for k in &request.delete_configs {
        parts.push(format!("-{k}"));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::resources::tests::{demo_cluster, validated};
    use crate::crd::{ClusterRef, DeletionPolicy, TopicSpec};
    use crate::settings::BuildSettings;

    fn topic(partitions: Option<i32>, rf: Option<i32>, min_isr: Option<i32>) -> Topic {
        Topic::new(
            "orders",
            TopicSpec {
                cluster_ref: ClusterRef {
                    name: "demo".into(),
                },
                topic_name: None,
                partitions,
                replication_factor: rf,
                min_in_sync_replicas: min_isr,
                config: BTreeMap::from([
                    ("retention.ms".to_owned(), "1000".to_owned()),
                    (MIN_ISR_CONFIG.to_owned(), "9".to_owned()),
                ]),
                deletion_policy: DeletionPolicy::Delete,
            },
        )
    }

    fn cluster() -> ValidatedCluster {
        validated(&demo_cluster(), &BuildSettings::default())
    }

    fn described(desired: &DesiredTopic) -> TopicDescription {
        TopicDescription {
            name: desired.name.clone(),
            partitions: desired.partitions,
            replication_factor: desired.replication_factor,
            min_insync_replicas: desired.min_in_sync_replicas,
            configs: desired.config.clone().into_iter().collect(),
            ..TopicDescription::default()
        }
    }

    #[test]
    fn defaults_come_from_the_cluster() {
        let d = resolve_desired_topic(&topic(None, None, None), &cluster(), None);
        assert_eq!(
            (d.partitions, d.replication_factor, d.min_in_sync_replicas),
            (1, 3, 2)
        );
        assert_eq!(d.name, "orders");
        assert!(
            !d.config.contains_key(MIN_ISR_CONFIG),
            "min-ISR is not a free config"
        );
        let d = resolve_desired_topic(&topic(Some(6), Some(1), None), &cluster(), None);
        assert_eq!(
            (d.partitions, d.replication_factor, d.min_in_sync_replicas),
            (6, 1, 1)
        );
    }

    #[test]
    fn replication_factor_above_brokers_is_reported() {
        let d = resolve_desired_topic(&topic(None, Some(4), Some(1)), &cluster(), None);
        assert!(
            check_replication_factor(&d, 3)
                .expect("too big")
                .contains("3 broker(s)")
        );
        assert_eq!(check_replication_factor(&d, 4), None);
    }

    #[test]
    fn matching_topic_needs_nothing() {
        let t = topic(Some(3), Some(1), Some(1));
        let d = resolve_desired_topic(&t, &cluster(), None);
        let mut current = described(&d);
        // The broker reports min-ISR among the configs too: not drift.
        current
            .configs
            .insert(MIN_ISR_CONFIG.to_owned(), "1".to_owned());
        assert_eq!(plan_alter(&d, &current), None);
        let create = plan_create(&t, &d);
        assert_eq!(
            (
                create.partitions,
                create.replication_factor,
                create.min_insync_replicas
            ),
            (3, 1, 1)
        );
    }

    #[test]
    fn drift_is_repaired_exactly() {
        let d = resolve_desired_topic(&topic(Some(6), Some(1), Some(1)), &cluster(), None);
        let mut current = described(&d);
        current.partitions = 3;
        current.min_insync_replicas = 2;
        current.configs.insert("retention.ms".into(), "5".into());
        current
            .configs
            .insert("cleanup.policy".into(), "compact".into());
        let request = plan_alter(&d, &current).expect("drift");
        assert_eq!(request.partitions, 6);
        assert_eq!(request.replication_factor, 0, "unchanged");
        assert_eq!(request.min_insync_replicas, 1);
        assert_eq!(
            request.set_configs.get("retention.ms").map(String::as_str),
            Some("1000")
        );
        assert_eq!(request.delete_configs, vec!["cleanup.policy".to_owned()]);
        let text = describe_alter(&request);
        assert!(
            text.contains("partitions → 6") && text.contains("-cleanup.policy"),
            "{text}"
        );
    }

    #[test]
    fn partitions_never_shrink() {
        let d = resolve_desired_topic(&topic(Some(3), Some(1), Some(1)), &cluster(), None);
        let mut current = described(&d);
        current.partitions = 8;
        assert_eq!(plan_alter(&d, &current), None);
    }

    fn governed(policy_rf: i32, policy_min: i32) -> PolicyRequirement {
        PolicyRequirement {
            policy: "ns/orders".into(),
            replication_factor: policy_rf,
            min_in_sync_replicas: policy_min,
        }
    }

    #[test]
    fn the_requirement_comes_from_the_description() {
        let mut d = TopicDescription::default();
        assert_eq!(PolicyRequirement::from_description(&d), None);
        d.mirror_policy = "ns/orders".into();
        d.policy_replication_factor = 3;
        d.policy_min_insync_replicas = 2;
        assert_eq!(
            PolicyRequirement::from_description(&d),
            Some(governed(3, 2))
        );
    }

    #[test]
    fn the_spec_wins_over_the_policy() {
        let d = resolve_desired_topic(
            &topic(None, Some(2), Some(1)),
            &cluster(),
            Some(&governed(3, 2)),
        );
        assert_eq!((d.replication_factor, d.min_in_sync_replicas), (2, 1));
        assert_eq!(d.replication_factor_policy, None);
    }

    #[test]
    fn an_unset_replication_factor_is_the_policys_then_the_clusters() {
        // The demo cluster: default RF 3, min-ISR 2.
        let d = resolve_desired_topic(&topic(None, None, None), &cluster(), Some(&governed(2, 0)));
        assert_eq!((d.replication_factor, d.min_in_sync_replicas), (2, 2));
        assert_eq!(d.replication_factor_policy.as_deref(), Some("ns/orders"));
        // A policy that asks only for min-ISR leaves the replication factor to the cluster.
        let d = resolve_desired_topic(&topic(None, None, None), &cluster(), Some(&governed(0, 3)));
        assert_eq!((d.replication_factor, d.min_in_sync_replicas), (3, 3));
        assert_eq!(d.replication_factor_policy, None);
    }

    #[test]
    fn an_unset_min_isr_is_the_larger_of_policy_and_cluster_capped_at_the_replication_factor() {
        // Policy below the cluster default: the default.
        let d = resolve_desired_topic(
            &topic(None, Some(3), None),
            &cluster(),
            Some(&governed(0, 1)),
        );
        assert_eq!(d.min_in_sync_replicas, 2);
        // Policy above it: the policy's.
        let d = resolve_desired_topic(
            &topic(None, Some(5), None),
            &cluster(),
            Some(&governed(0, 4)),
        );
        assert_eq!(d.min_in_sync_replicas, 4);
        // Capped at the replication factor.
        let d = resolve_desired_topic(
            &topic(None, Some(2), None),
            &cluster(),
            Some(&governed(0, 4)),
        );
        assert_eq!(d.min_in_sync_replicas, 2);
        let d = resolve_desired_topic(&topic(None, None, None), &cluster(), Some(&governed(1, 3)));
        assert_eq!((d.replication_factor, d.min_in_sync_replicas), (1, 1));
    }

    #[test]
    fn a_policy_replication_factor_above_the_brokers_names_the_policy() {
        let d = resolve_desired_topic(&topic(None, None, None), &cluster(), Some(&governed(5, 0)));
        let message = check_replication_factor(&d, 3).expect("too big");
        assert!(
            message.contains("mirror policy ns/orders asks for replication factor 5"),
            "{message}"
        );
    }

    #[test]
    fn create_sends_only_what_the_spec_sets() {
        let t = topic(None, None, None);
        let d = resolve_desired_topic(&t, &cluster(), Some(&governed(2, 2)));
        let create = plan_create(&t, &d);
        assert_eq!(
            (
                create.partitions,
                create.replication_factor,
                create.min_insync_replicas
            ),
            (1, 0, 0),
            "the brokers resolve RF and min-ISR from the policy or their defaults"
        );
        let t = topic(Some(4), Some(3), None);
        let create = plan_create(&t, &resolve_desired_topic(&t, &cluster(), None));
        assert_eq!(
            (
                create.partitions,
                create.replication_factor,
                create.min_insync_replicas
            ),
            (4, 3, 0)
        );
    }

    #[test]
    fn following_a_policy_is_not_drift() {
        let unset = topic(Some(1), None, None);
        let d = resolve_desired_topic(&unset, &cluster(), Some(&governed(3, 2)));
        let mut current = described(&d);
        current.replication_factor = 2;
        let request = plan_alter(&d, &current).expect("RF follows the policy");
        assert_eq!(request.replication_factor, 3);
        assert!(follows_policy_only(&unset, Some(&governed(3, 2)), &request));
        assert!(
            !follows_policy_only(&unset, None, &request),
            "not governed: drift as before"
        );
        // The spec sets the replication factor: changing it back is drift.
        let set = topic(Some(1), Some(3), None);
        assert!(!follows_policy_only(&set, Some(&governed(3, 2)), &request));
        // Anything else in the same request is drift too.
        let mut with_config = request.clone();
        with_config.delete_configs = vec!["cleanup.policy".into()];
        assert!(!follows_policy_only(
            &unset,
            Some(&governed(3, 2)),
            &with_config
        ));
    }
}
