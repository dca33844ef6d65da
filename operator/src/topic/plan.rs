//! Pure decisions of the Topic reconciler: the topic a Topic resource asks
//! for (defaults resolved against its cluster), whether the cluster can hold
//! it, and the AlterTopic request that turns what the brokers describe into
//! it (partitions grow, replication factor and min-ISR set, configs set and
//! deleted so that they match `spec.config` exactly).

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
}

/// Resolves unset fields from the cluster's defaults. An unset min-ISR is the
/// cluster default capped at the replication factor.
pub fn resolve_desired_topic(topic: &Topic, cluster: &ValidatedCluster) -> DesiredTopic {
    let replication_factor = topic
        .spec
        .replication_factor
        .unwrap_or(cluster.config.default_replication_factor);
    let min_in_sync_replicas = topic.spec.min_in_sync_replicas.unwrap_or_else(|| {
        cluster
            .config
            .min_in_sync_replicas
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
    }
}

/// Why the cluster cannot hold the topic as specified (a condition, not a retry loop).
pub fn check_replication_factor(desired: &DesiredTopic, brokers: i32) -> Option<String> {
    (desired.replication_factor > brokers).then(|| {
        format!(
            "replicationFactor {} exceeds the cluster's {brokers} broker(s); lower it or add brokers",
            desired.replication_factor
        )
    })
}

/// The CreateTopic request for a topic that does not exist.
pub fn plan_create(desired: &DesiredTopic) -> CreateTopicRequest {
    CreateTopicRequest {
        name: desired.name.clone(),
        partitions: desired.partitions,
        replication_factor: desired.replication_factor,
        min_insync_replicas: desired.min_in_sync_replicas,
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
        let d = resolve_desired_topic(&topic(None, None, None), &cluster());
        assert_eq!(
            (d.partitions, d.replication_factor, d.min_in_sync_replicas),
            (1, 3, 2)
        );
        assert_eq!(d.name, "orders");
        assert!(
            !d.config.contains_key(MIN_ISR_CONFIG),
            "min-ISR is not a free config"
        );
        let d = resolve_desired_topic(&topic(Some(6), Some(1), None), &cluster());
        assert_eq!(
            (d.partitions, d.replication_factor, d.min_in_sync_replicas),
            (6, 1, 1)
        );
    }

    #[test]
    fn replication_factor_above_brokers_is_reported() {
        let d = resolve_desired_topic(&topic(None, Some(4), Some(1)), &cluster());
        assert!(
            check_replication_factor(&d, 3)
                .expect("too big")
                .contains("3 broker(s)")
        );
        assert_eq!(check_replication_factor(&d, 4), None);
    }

    #[test]
    fn matching_topic_needs_nothing() {
        let d = resolve_desired_topic(&topic(Some(3), Some(1), Some(1)), &cluster());
        let mut current = described(&d);
        // The broker reports min-ISR among the configs too: not drift.
        current
            .configs
            .insert(MIN_ISR_CONFIG.to_owned(), "1".to_owned());
        assert_eq!(plan_alter(&d, &current), None);
        assert_eq!(plan_create(&d).partitions, 3);
    }

    #[test]
    fn drift_is_repaired_exactly() {
        let d = resolve_desired_topic(&topic(Some(6), Some(1), Some(1)), &cluster());
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
        let d = resolve_desired_topic(&topic(Some(3), Some(1), Some(1)), &cluster());
        let mut current = described(&d);
        current.partitions = 8;
        assert_eq!(plan_alter(&d, &current), None);
    }
}
