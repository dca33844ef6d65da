//! `validate_cluster`: turns a fetched MessageCluster into a [`ValidatedCluster`]
//! with every default resolved, or into the list of problems that make it
//! unusable. Pure. Problems become an `InvalidSpec` condition, not a retried
//! error: the spec has to change before another attempt can succeed.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;

use crate::crd::conditions::{ConditionType, ConditionUpdate, Reason};
use crate::crd::{MessageCluster, PodTemplateOverrides, RackSpec, StorageSpec};
use crate::settings::{AdvertiseMode, BuildSettings};

/// Longest MessageCluster name: StatefulSet pods get a `controller-revision-hash`
/// label of `<name>-<10 chars>`, and labels stop at 63 characters.
pub const MAX_CLUSTER_NAME_LEN: usize = 52;
/// Used when `logLevel` is unset: the broker's own `--log` default.
pub const DEFAULT_LOG_LEVEL: &str = "info,openraft=warn";
/// Used when `config.defaultReplicationFactor` is unset (capped at the broker count).
pub const DEFAULT_REPLICATION_FACTOR: i32 = 3;
/// Used when `config.defaultPartitions` is unset.
pub const DEFAULT_PARTITIONS: i32 = 1;
/// Used when `config.retentionMs` is unset: 7 days.
pub const DEFAULT_RETENTION_MS: i64 = 604_800_000;

/// One reason a MessageCluster cannot be built, with the field it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub field: &'static str,
    pub message: String,
}

/// Broker defaults with every unset value resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedBrokerConfig {
    pub replica_move_bytes_per_second: Option<i64>,
    pub default_replication_factor: i32,
    pub min_in_sync_replicas: i32,
    pub default_partitions: i32,
    pub auto_create_topics: bool,
    pub retention_ms: i64,
}

/// A MessageCluster that can be built: names, owner and resolved settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedCluster {
    pub name: String,
    pub namespace: String,
    pub generation: Option<i64>,
    /// Controller owner reference pointing at the MessageCluster.
    pub owner: OwnerReference,
    pub brokers: i32,
    pub image: String,
    pub advertise: AdvertiseMode,
    /// The brokers' controlled-shutdown timeout; the pods' grace period adds a margin.
    pub controlled_shutdown_timeout_seconds: i64,
    pub termination_grace_period_seconds: i64,
    /// The MessageCluster's `tideway.dev/restart` annotation: copied into the
    /// pod template, so a new value rolls every broker once.
    pub restart_nonce: Option<String>,
    pub storage: StorageSpec,
    pub resources: Option<ResourceRequirements>,
    pub config: ResolvedBrokerConfig,
    pub rack: Option<RackSpec>,
    pub template: PodTemplateOverrides,
    pub claims_on_scale_down: crate::crd::ClaimPolicy,
    /// `spec.logLevel`, checked to parse as the broker parses `--log`.
    pub log_level: String,
    /// With `rack` set: each node's value of the topology key ("" when the
    /// node lacks the label). Filled in by the reconciler from the Nodes.
    pub node_racks: BTreeMap<String, String>,
}

/// Checks a MessageCluster and resolves its defaults with the operator's settings.
///
/// Steps: 1. metadata the build needs (name, namespace, uid); 2. the name fits
/// the StatefulSet naming limits; 3. brokers ≥ 1 and the image is not empty;
/// 4. storage size is a valid, positive quantity; 5. resolve broker defaults and
/// check min-ISR ≤ RF ≤ brokers. Every problem is collected, not just the first.
pub fn validate_cluster(
    cluster: &MessageCluster,
    settings: &BuildSettings,
) -> Result<ValidatedCluster, Vec<Problem>> {
    let mut problems = Vec::new();
    let spec = &cluster.spec;

    let name = cluster.metadata.name.clone().unwrap_or_default();
    if name.is_empty() {
        problems.push(problem("metadata.name", "is missing".to_owned()));
    } else if name.len() > MAX_CLUSTER_NAME_LEN || !crate::settings::is_dns_label(&name) {
        problems.push(problem(
            "metadata.name",
            format!(
                "{name:?} must be a lowercase DNS label of at most {MAX_CLUSTER_NAME_LEN} characters \
                 (it names the StatefulSet and its Services)"
            ),
        ));
    }
    let namespace = cluster.metadata.namespace.clone().unwrap_or_default();
    if namespace.is_empty() {
        problems.push(problem("metadata.namespace", "is missing".to_owned()));
    }
    let owner = cluster.controller_owner_ref(&());
    if owner.is_none() || cluster.metadata.uid.is_none() {
        problems.push(problem(
            "metadata.uid",
            "is missing: the object was not read from the API server".to_owned(),
        ));
    }

    if spec.brokers < 1 {
        problems.push(problem(
            "spec.brokers",
            format!("is {}, must be at least 1", spec.brokers),
        ));
    }
    let image = cluster.image_or(&settings.default_image).trim().to_owned();
    if image.is_empty() {
        problems.push(problem("spec.image", "is empty".to_owned()));
    }
    if !is_positive_quantity(&spec.storage.size.0) {
        problems.push(problem(
            "spec.storage.size",
            format!(
                "{:?} is not a positive quantity such as 10Gi",
                spec.storage.size.0
            ),
        ));
    }

    let log_level = spec
        .log_level
        .clone()
        .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_owned());
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log_level) {
        problems.push(problem(
            "spec.logLevel",
            format!("{log_level:?} is not a log filter the broker accepts: {e}"),
        ));
    }

    let config = resolve_config(cluster);
    let brokers = spec.brokers.max(1);
    if config.default_replication_factor > brokers {
        problems.push(problem(
            "spec.config.defaultReplicationFactor",
            format!(
                "is {} but the cluster has {} broker(s): topics created with the default could never be fully replicated",
                config.default_replication_factor, spec.brokers
            ),
        ));
    }
    if config.min_in_sync_replicas > config.default_replication_factor {
        problems.push(problem(
            "spec.config.minInSyncReplicas",
            format!(
                "is {} but the default replication factor is {}: acks=all writes would always fail",
                config.min_in_sync_replicas, config.default_replication_factor
            ),
        ));
    }

    match owner {
        Some(owner) if problems.is_empty() => Ok(ValidatedCluster {
            name,
            namespace,
            generation: cluster.metadata.generation,
            owner,
            brokers: spec.brokers,
            image,
            advertise: settings.advertise,
            controlled_shutdown_timeout_seconds: settings.controlled_shutdown_timeout_seconds,
            termination_grace_period_seconds: settings.termination_grace_period_seconds(),
            restart_nonce: cluster
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(crate::cluster::restart::RESTART_ANNOTATION))
                .cloned(),
            storage: spec.storage.clone(),
            resources: spec.resources.clone(),
            config,
            rack: spec.rack.clone(),
            template: spec.template.clone().unwrap_or_default(),
            claims_on_scale_down: spec.claims_on_scale_down,
            log_level,
            node_racks: BTreeMap::new(),
        }),
        _ => Err(problems),
    }
}

/// Broker defaults of a cluster, unset values resolved: RF = min(3, brokers),
/// min-ISR = max(1, RF − 1), partitions 1, auto-create on, retention 7 days.
pub fn resolve_config(cluster: &MessageCluster) -> ResolvedBrokerConfig {
    let config = &cluster.spec.config;
    let brokers = cluster.spec.brokers.max(1);
    let default_replication_factor = config
        .default_replication_factor
        .unwrap_or_else(|| DEFAULT_REPLICATION_FACTOR.min(brokers));
    let min_in_sync_replicas = config
        .min_in_sync_replicas
        .unwrap_or_else(|| (default_replication_factor - 1).max(1));
    ResolvedBrokerConfig {
        default_replication_factor,
        min_in_sync_replicas,
        default_partitions: config.default_partitions.unwrap_or(DEFAULT_PARTITIONS),
        auto_create_topics: config.auto_create_topics.unwrap_or(true),
        retention_ms: config.retention_ms.unwrap_or(DEFAULT_RETENTION_MS),
        replica_move_bytes_per_second: config.replica_move_bytes_per_second,
    }
}

/// The conditions that report an invalid spec: Ready=False and Degraded=True,
/// both with reason `InvalidSpec` and every problem in the message.
pub fn invalid_spec_conditions(problems: &[Problem]) -> Vec<ConditionUpdate> {
    let message = problems
        .iter()
        .map(|p| format!("{} {}", p.field, p.message))
        .collect::<Vec<_>>()
        .join("; ");
    vec![
        ConditionUpdate::new(
            ConditionType::Ready,
            false,
            Reason::InvalidSpec,
            message.clone(),
        ),
        ConditionUpdate::new(ConditionType::Degraded, true, Reason::InvalidSpec, message),
    ]
}

fn problem(field: &'static str, message: String) -> Problem {
    Problem { field, message }
}

/// Whether `s` is a Kubernetes quantity greater than zero (`10Gi`, `500M`, `1e9`, `1.5Ti`).
pub fn is_positive_quantity(s: &str) -> bool {
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let mut parts = number.splitn(2, '.');
    let whole = parts.next().unwrap_or_default();
    let fraction = parts.next();
    let digits_ok = (!whole.is_empty() || fraction.is_some_and(|f| !f.is_empty()))
        && fraction.is_none_or(|f| f.bytes().all(|b| b.is_ascii_digit()));
    let positive = number.bytes().any(|b| (b'1'..=b'9').contains(&b));
    let suffix_ok = matches!(
        suffix,
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "k" | "M" | "G" | "T" | "P" | "E"
    ) || suffix
        .strip_prefix(['e', 'E'])
        .map(|exp| exp.strip_prefix(['+', '-']).unwrap_or(exp))
        .is_some_and(|exp| !exp.is_empty() && exp.bytes().all(|b| b.is_ascii_digit()));
    digits_ok && positive && suffix_ok
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;
    use crate::crd::{BrokerConfig, MessageClusterSpec};

    pub(crate) fn cluster(brokers: i32) -> MessageCluster {
        let mut cluster = MessageCluster::new(
            "demo",
            MessageClusterSpec {
                brokers,
                image: None,
                storage: StorageSpec::default(),
                resources: None,
                config: BrokerConfig::default(),
                rack: None,
                template: None,
                claims_on_scale_down: Default::default(),
                log_level: None,
            },
        );
        cluster.metadata.namespace = Some("ns".into());
        cluster.metadata.uid = Some("uid-1".into());
        cluster.metadata.generation = Some(4);
        cluster
    }

    #[test]
    fn defaults_resolve_against_the_broker_count() {
        let one = validate_cluster(&cluster(1), &BuildSettings::default()).expect("valid");
        assert_eq!(
            (
                one.config.default_replication_factor,
                one.config.min_in_sync_replicas
            ),
            (1, 1)
        );
        let three = validate_cluster(&cluster(3), &BuildSettings::default()).expect("valid");
        assert_eq!(
            (
                three.config.default_replication_factor,
                three.config.min_in_sync_replicas
            ),
            (3, 2)
        );
        assert_eq!(three.config.default_partitions, 1);
        assert!(three.config.auto_create_topics);
        assert_eq!(three.image, crate::settings::DEFAULT_BROKER_IMAGE);
        assert_eq!(three.owner.kind, "MessageCluster");
        assert_eq!(three.owner.controller, Some(true));
        assert_eq!(three.generation, Some(4));
    }

    #[test]
    fn replication_factor_above_brokers_is_a_problem_not_an_error_loop() {
        let mut c = cluster(1);
        c.spec.config.default_replication_factor = Some(3);
        let problems = validate_cluster(&c, &BuildSettings::default()).expect_err("invalid");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "spec.config.defaultReplicationFactor");
        let conditions = invalid_spec_conditions(&problems);
        assert_eq!(conditions.len(), 2);
        assert!(conditions.iter().all(|c| c.reason == Reason::InvalidSpec));
        assert!(conditions[0].message.contains("1 broker(s)"));
    }

    #[test]
    fn a_log_level_the_broker_would_refuse_is_a_problem() {
        let mut c = cluster(3);
        c.spec.log_level = Some("tideway_broker=loud".into());
        let problems = validate_cluster(&c, &BuildSettings::default()).expect_err("invalid");
        assert_eq!(problems[0].field, "spec.logLevel");
        c.spec.log_level = Some("info,tideway_broker::admin=debug".into());
        let ok = validate_cluster(&c, &BuildSettings::default()).expect("valid");
        assert_eq!(ok.log_level, "info,tideway_broker::admin=debug");
    }

    #[test]
    fn every_problem_is_reported() {
        let mut c = cluster(0);
        c.metadata.name = Some("x".repeat(60));
        c.metadata.uid = None;
        c.spec.image = Some(" ".into());
        c.spec.storage.size = Quantity("0".into());
        c.spec.config.default_replication_factor = Some(2);
        c.spec.config.min_in_sync_replicas = Some(3);
        let problems = validate_cluster(&c, &BuildSettings::default()).expect_err("invalid");
        let fields: Vec<_> = problems.iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            vec![
                "metadata.name",
                "metadata.uid",
                "spec.brokers",
                "spec.image",
                "spec.storage.size",
                "spec.config.defaultReplicationFactor",
                "spec.config.minInSyncReplicas",
            ]
        );
    }

    #[test]
    fn quantities() {
        for ok in [
            "1Gi", "10Gi", "500M", "1.5Ti", "1e9", "2E+3", "1024", ".5Gi",
        ] {
            assert!(is_positive_quantity(ok), "{ok}");
        }
        for bad in ["", "0", "0Gi", "Gi", "-1Gi", "1GB", "1.2.3Gi", "ten", "1e"] {
            assert!(!is_positive_quantity(bad), "{bad}");
        }
    }
}
