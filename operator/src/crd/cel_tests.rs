//! The CRDs' CEL rules (`x-kubernetes-validations`) evaluated client-side with
//! kube's CEL engine, as the API server evaluates them at admission. The e2e
//! suite checks the same rules against a real API server.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::core::cel::{ValidationErrors, compile_schema, validate_cel, validate_cel_update};
use serde_json::Value;

use super::*;

fn topic(partitions: Option<i32>, rf: Option<i32>, min_isr: Option<i32>) -> Topic {
    let mut topic = Topic::new(
        "orders",
        TopicSpec {
            cluster_ref: ClusterRef {
                name: "demo".into(),
            },
            topic_name: None,
            partitions,
            replication_factor: rf,
            min_in_sync_replicas: min_isr,
            config: BTreeMap::from([("retention.ms".to_owned(), "86400000".to_owned())]),
            deletion_policy: DeletionPolicy::Delete,
        },
    );
    topic.metadata.namespace = Some("ns".into());
    topic
}

fn cluster() -> MessageCluster {
    MessageCluster::new(
        "demo",
        MessageClusterSpec {
            brokers: 3,
            image: None,
            storage: StorageSpec::default(),
            resources: None,
            config: BrokerConfig::default(),
            rack: None,
            template: None,
            claims_on_scale_down: Default::default(),
            log_level: None,
        },
    )
}

/// Asserts a rejection whose message contains `expected`.
fn assert_rejected(result: Result<(), ValidationErrors>, expected: &str) {
    match result {
        Ok(()) => panic!("accepted, expected a rejection mentioning {expected:?}"),
        Err(errors) => assert!(
            errors.iter().any(|e| e.message.contains(expected)),
            "rejected, but no message mentions {expected:?}: {errors}"
        ),
    }
}

#[test]
fn every_rule_compiles() {
    for crd in all_crds() {
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("schema");
        let schema: Value = serde_json::to_value(schema).expect("schema to JSON");
        let compiled = compile_schema(&schema);
        let mut stack = vec![&compiled];
        while let Some(node) = stack.pop() {
            assert!(
                !node.has_errors(),
                "{:?}: {:?}",
                crd.metadata.name,
                node.compilation_errors()
            );
            stack.extend(node.properties.values());
            stack.extend(node.items.as_deref());
            stack.extend(node.additional_properties.as_deref());
        }
    }
}

#[test]
fn valid_topic_is_accepted() {
    validate_cel(&topic(Some(6), Some(3), Some(2))).expect("valid");
    validate_cel(&topic(None, None, None)).expect("all defaults");
    validate_cel(&topic(None, None, Some(2))).expect("min-ISR alone is checked by the operator");
}

#[test]
fn min_isr_above_replication_factor_is_rejected() {
    assert_rejected(
        validate_cel(&topic(Some(6), Some(1), Some(2))),
        "minInSyncReplicas must not exceed replicationFactor",
    );
}

#[test]
fn partitions_never_decrease_or_vanish() {
    let old = topic(Some(6), Some(3), Some(2));
    validate_cel_update(&topic(Some(8), Some(3), Some(2)), &old).expect("growing is fine");
    assert_rejected(
        validate_cel_update(&topic(Some(3), Some(3), Some(2)), &old),
        "partitions cannot decrease",
    );
    assert_rejected(
        validate_cel_update(&topic(None, Some(3), Some(2)), &old),
        "partitions cannot be unset",
    );
    validate_cel_update(
        &topic(Some(6), Some(3), Some(2)),
        &topic(None, Some(3), Some(2)),
    )
    .expect("setting later is fine");
}

#[test]
fn cluster_ref_and_topic_name_are_immutable() {
    let old = topic(Some(6), Some(3), Some(2));
    let mut moved = old.clone();
    moved.spec.cluster_ref.name = "other".into();
    assert_rejected(validate_cel_update(&moved, &old), "clusterRef is immutable");

    let mut named = old.clone();
    named.spec.topic_name = Some("orders".into());
    assert_rejected(
        validate_cel_update(&named, &old),
        "topicName cannot be added or removed",
    );

    let mut renamed = named.clone();
    renamed.spec.topic_name = Some("orders-v2".into());
    assert_rejected(
        validate_cel_update(&renamed, &named),
        "topicName is immutable",
    );
    validate_cel_update(&named, &named).expect("unchanged name");
}

#[test]
fn topic_name_dot_and_dot_dot_are_rejected() {
    for bad in [".", ".."] {
        let mut t = topic(Some(1), Some(1), Some(1));
        t.spec.topic_name = Some(bad.into());
        assert_rejected(validate_cel(&t), "topicName cannot be '.' or '..'");
    }
    let mut ok = topic(Some(1), Some(1), Some(1));
    ok.spec.topic_name = Some("...".into());
    validate_cel(&ok).expect("three dots is a legal Kafka name");
}

#[test]
fn long_metadata_name_needs_a_topic_name() {
    let mut t = topic(Some(1), Some(1), Some(1));
    t.metadata.name = Some("a".repeat(250));
    assert_rejected(validate_cel(&t), "set spec.topicName");
    t.spec.topic_name = Some("short".into());
    validate_cel(&t).expect("explicit topic name");
}

#[test]
fn cluster_config_min_isr_above_replication_factor_is_rejected() {
    let mut c = cluster();
    validate_cel(&c).expect("defaults");
    c.spec.config.default_replication_factor = Some(2);
    c.spec.config.min_in_sync_replicas = Some(3);
    assert_rejected(
        validate_cel(&c),
        "config.minInSyncReplicas must not exceed config.defaultReplicationFactor",
    );
}

#[test]
fn cluster_storage_is_immutable() {
    let old = cluster();
    let mut new = cluster();
    new.spec.brokers = 5;
    validate_cel_update(&new, &old).expect("scaling up is fine");
    // Scaling down is checked by the operator (brokers still holding replicas), not at admission.
    validate_cel_update(&old, &new).expect("scaling down is admitted");
    new.spec.storage.size = Quantity("10Gi".into());
    assert_rejected(validate_cel_update(&new, &old), "storage cannot be changed");
}

fn autoscaler(min: i32, max: i32) -> ConsumerAutoscaler {
    let spec: ConsumerAutoscalerSpec = serde_json::from_value(serde_json::json!({
        "clusterRef": {"name": "demo"},
        "consumerGroup": "orders-workers",
        "scaleTargetRef": {"name": "workers"},
        "minReplicas": min,
        "maxReplicas": max,
        "lagPerReplica": 10000
    }))
    .expect("spec");
    let mut a = ConsumerAutoscaler::new("orders", spec);
    a.metadata.namespace = Some("ns".into());
    a
}

#[test]
fn autoscaler_min_replicas_may_not_exceed_max() {
    validate_cel(&autoscaler(0, 10)).expect("valid");
    validate_cel(&autoscaler(3, 3)).expect("min = max");
    assert_rejected(
        validate_cel(&autoscaler(4, 3)),
        "minReplicas must not exceed maxReplicas",
    );
    let a = autoscaler(0, 10);
    assert_eq!(a.spec.scale_target_ref.kind, "Deployment");
    assert_eq!(a.spec.behavior.cooldown_seconds, 300);
    assert_eq!(
        a.spec.behavior.scale_down.stabilization_window_seconds,
        Some(300)
    );
}

fn mirror_policy(spec: Value) -> MirrorPolicy {
    let mut base = serde_json::json!({
        "clusterRef": {"name": "demo"},
        "match": {"topics": [{"type": "Prefix", "value": "orders."}]},
        "replicas": {"mode": "Exactly", "count": 3},
        "minInSyncReplicas": 2
    });
    if let (Some(base), Some(extra)) = (base.as_object_mut(), spec.as_object()) {
        for (k, v) in extra {
            if v.is_null() {
                base.remove(k);
            } else {
                base.insert(k.clone(), v.clone());
            }
        }
    }
    let spec: MirrorPolicySpec = serde_json::from_value(base).expect("spec");
    let mut p = MirrorPolicy::new("orders", spec);
    p.metadata.namespace = Some("ns".into());
    p
}

#[test]
fn valid_mirror_policies_are_accepted() {
    let p = mirror_policy(serde_json::json!({}));
    validate_cel(&p).expect("the docs' example");
    assert_eq!(
        p.spec.applies_to,
        vec![
            mirror_policy::AppliesTo::TopicResources,
            mirror_policy::AppliesTo::ClientCreated
        ],
        "both by default"
    );
    assert_eq!(p.spec.on_create, mirror_policy::OnCreate::Reject);
    assert_eq!(p.spec.on_existing, mirror_policy::OnExisting::Audit);
    validate_cel(&mirror_policy(serde_json::json!({
        "replicas": {"mode": "All"}, "minInSyncReplicas": null
    })))
    .expect("All");
    validate_cel(&mirror_policy(serde_json::json!({
        "replicas": {"mode": "Brokers", "brokers": [0, 1]}
    })))
    .expect("Brokers by id, min-ISR 2 of 2");
    validate_cel(&mirror_policy(serde_json::json!({
        "replicas": {"mode": "Brokers", "racks": ["a"]}, "minInSyncReplicas": 3
    })))
    .expect("Brokers by rack: the operator cannot count them, the brokers check");
    validate_cel(&mirror_policy(serde_json::json!({
        "appliesTo": ["ClientCreated"], "rackSpread": {"maxPerRack": 1},
        "onCreate": "Adjust", "onExisting": "Reconcile", "throttleBytesPerSecond": 1000
    })))
    .expect("every optional field");
}

#[test]
fn mirror_policy_count_goes_with_exactly_only() {
    assert_rejected(
        validate_cel(&mirror_policy(
            serde_json::json!({"replicas": {"mode": "Exactly"}}),
        )),
        "replicas.count is required with mode Exactly",
    );
    assert_rejected(
        validate_cel(&mirror_policy(serde_json::json!({
            "replicas": {"mode": "All", "count": 3}, "minInSyncReplicas": null
        }))),
        "replicas.count is required with mode Exactly and allowed only with it",
    );
}

#[test]
fn mirror_policy_brokers_mode_takes_exactly_one_placement() {
    let message = "mode Brokers takes exactly one of replicas.brokers or replicas.racks";
    assert_rejected(
        validate_cel(&mirror_policy(serde_json::json!({
            "replicas": {"mode": "Brokers"}, "minInSyncReplicas": null
        }))),
        message,
    );
    assert_rejected(
        validate_cel(&mirror_policy(serde_json::json!({
            "replicas": {"mode": "Brokers", "brokers": [0, 1], "racks": ["a"]}
        }))),
        message,
    );
    assert_rejected(
        validate_cel(&mirror_policy(serde_json::json!({
            "replicas": {"mode": "Exactly", "count": 3, "brokers": [0, 1, 2]}
        }))),
        message,
    );
    assert_rejected(
        validate_cel(&mirror_policy(serde_json::json!({
            "replicas": {"mode": "All", "racks": ["a"]}, "minInSyncReplicas": null
        }))),
        message,
    );
}

#[test]
fn mirror_policy_min_isr_fits_the_replicas() {
    assert_rejected(
        validate_cel(&mirror_policy(serde_json::json!({
            "replicas": {"mode": "Exactly", "count": 1}
        }))),
        "minInSyncReplicas must not exceed replicas.count",
    );
    validate_cel(&mirror_policy(serde_json::json!({
        "replicas": {"mode": "Exactly", "count": 2}
    })))
    .expect("equal is fine");
    assert_rejected(
        validate_cel(&mirror_policy(serde_json::json!({
            "replicas": {"mode": "Brokers", "brokers": [4]}
        }))),
        "minInSyncReplicas must not exceed the number of replicas.brokers",
    );
}

#[test]
fn mirror_policy_applies_to_has_no_duplicates() {
    assert_rejected(
        validate_cel(&mirror_policy(
            serde_json::json!({"appliesTo": ["ClientCreated", "ClientCreated"]}),
        )),
        "appliesTo lists an entry twice",
    );
}

#[test]
fn mirror_policy_cluster_ref_is_immutable() {
    let old = mirror_policy(serde_json::json!({}));
    let mut moved = old.clone();
    moved.spec.cluster_ref.name = "other".into();
    assert_rejected(validate_cel_update(&moved, &old), "clusterRef is immutable");
    let mut raised = old.clone();
    raised.spec.selector.priority = 5;
    validate_cel_update(&raised, &old).expect("everything else may change");
}
