//! The ConfigMap of cluster-wide broker settings. Broker pods load it with
//! `envFrom`, so each key is a broker flag's environment variable; per-pod
//! values (node id, advertised address) are set on the container instead.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::{ADMIN_PORT, DATA_DIR, HTTP_PORT, KAFKA_PORT, owned_meta};
use crate::cluster::validate::ValidatedCluster;

/// The ConfigMap key of the quorum's voters (not hashed: see `restart`).
pub const VOTERS_KEY: &str = "TIDEWAY_VOTERS";
/// Keys whose settings the brokers also take at runtime — as cluster configs
/// (`build_cluster_configs`) or, for the log filter, per broker
/// (`cluster_configs::apply_log_filter`): a change of them restarts no
/// broker. The ConfigMap still carries them, for a broker's next start.
pub const DYNAMIC_KEYS: &[&str] = &[
    "TIDEWAY_LOG",
    "TIDEWAY_DEFAULT_PARTITIONS",
    "TIDEWAY_AUTO_CREATE_TOPICS",
    "TIDEWAY_RETENTION_MS",
    "TIDEWAY_DEFAULT_REPLICATION_FACTOR",
    "TIDEWAY_MIN_INSYNC_REPLICAS",
];

/// The cluster-wide dynamic broker configs (Kafka names) the brokers must
/// hold: `spec.config` with its defaults resolved. The reconciler sets them
/// through the admin API's AlterClusterConfigs whenever they differ.
pub fn build_cluster_configs(cluster: &ValidatedCluster) -> BTreeMap<String, String> {
    let c = &cluster.config;
    let mut configs = BTreeMap::from([
        (
            "num.partitions".to_owned(),
            c.default_partitions.to_string(),
        ),
        (
            "auto.create.topics.enable".to_owned(),
            c.auto_create_topics.to_string(),
        ),
        ("log.retention.ms".to_owned(), c.retention_ms.to_string()),
        (
            "default.replication.factor".to_owned(),
            c.default_replication_factor.to_string(),
        ),
        (
            "min.insync.replicas".to_owned(),
            c.min_in_sync_replicas.to_string(),
        ),
    ]);
    if let Some(rate) = c.replica_move_bytes_per_second {
        configs.insert(MOVE_THROTTLE_CONFIG.to_owned(), rate.to_string());
    }
    configs
}

/// The cluster config of the replica-move throttle; absent from
/// [`build_cluster_configs`] (and so removed from the brokers) when unset.
pub const MOVE_THROTTLE_CONFIG: &str = "follower.replication.throttled.rate";

/// Builds the broker settings ConfigMap `<cluster>-config`.
pub fn build_config_map(cluster: &ValidatedCluster) -> ConfigMap {
    let config = &cluster.config;
    let data = BTreeMap::from([
        ("TIDEWAY_LISTEN".to_owned(), format!("0.0.0.0:{KAFKA_PORT}")),
        (
            "TIDEWAY_ADMIN_LISTEN".to_owned(),
            format!("0.0.0.0:{ADMIN_PORT}"),
        ),
        (
            "TIDEWAY_HTTP_LISTEN".to_owned(),
            format!("0.0.0.0:{HTTP_PORT}"),
        ),
        ("TIDEWAY_DATA_DIR".to_owned(), DATA_DIR.to_owned()),
        (
            "TIDEWAY_DEFAULT_PARTITIONS".to_owned(),
            config.default_partitions.to_string(),
        ),
        (
            "TIDEWAY_AUTO_CREATE_TOPICS".to_owned(),
            config.auto_create_topics.to_string(),
        ),
        (
            "TIDEWAY_RETENTION_MS".to_owned(),
            config.retention_ms.to_string(),
        ),
        (
            "TIDEWAY_DEFAULT_REPLICATION_FACTOR".to_owned(),
            config.default_replication_factor.to_string(),
        ),
        (
            "TIDEWAY_MIN_INSYNC_REPLICAS".to_owned(),
            config.min_in_sync_replicas.to_string(),
        ),
        ("TIDEWAY_LOG".to_owned(), cluster.log_level.clone()),
        (
            "TIDEWAY_CONTROLLED_SHUTDOWN_TIMEOUT_MS".to_owned(),
            (cluster.controlled_shutdown_timeout_seconds * 1000).to_string(),
        ),
        // `--voters` (`<id>@<host>:<admin port>,...`): read once, when a broker
        // first starts (it founds the quorum or asks the voters to add it).
        // Left out of the config hash, so scaling restarts no broker.
        (VOTERS_KEY.to_owned(), cluster.voters()),
    ]);
    ConfigMap {
        metadata: owned_meta(cluster, cluster.config_map_name()),
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// Where the broker pods mount the node → rack map.
pub const RACKS_DIR: &str = "/etc/tideway/racks";

/// With `spec.rack` set, the ConfigMap `<cluster>-racks`: one key per node
/// (its name), whose value is the node's value of the topology key, empty
/// when the node lacks it. Each broker pod mounts it and reads its own
/// node's entry (`--rack-file`), so the broker learns its rack without ever
/// asking Kubernetes. Not part of the config hash: a new node restarts nothing.
pub fn build_rack_config_map(cluster: &ValidatedCluster) -> Option<ConfigMap> {
    cluster.rack.as_ref()?;
    Some(ConfigMap {
        metadata: owned_meta(cluster, cluster.rack_config_map_name()),
        data: Some(cluster.node_racks.clone()),
        ..ConfigMap::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::resources::tests::{demo_cluster, validated};
    use crate::settings::BuildSettings;

    #[test]
    fn carries_resolved_broker_defaults_and_voters() {
        let mut cluster = demo_cluster();
        cluster.spec.config.default_partitions = Some(6);
        cluster.spec.config.auto_create_topics = Some(false);
        cluster.spec.config.retention_ms = Some(86_400_000);
        let cm = build_config_map(&validated(&cluster, &BuildSettings::default()));
        assert_eq!(cm.metadata.name.as_deref(), Some("demo-config"));
        let data = cm.data.expect("data");
        assert_eq!(data["TIDEWAY_DEFAULT_PARTITIONS"], "6");
        assert_eq!(data["TIDEWAY_AUTO_CREATE_TOPICS"], "false");
        assert_eq!(data["TIDEWAY_RETENTION_MS"], "86400000");
        assert_eq!(data["TIDEWAY_DEFAULT_REPLICATION_FACTOR"], "3");
        assert_eq!(data["TIDEWAY_MIN_INSYNC_REPLICAS"], "2");
        assert_eq!(data["TIDEWAY_LISTEN"], "0.0.0.0:9092");
        assert_eq!(data["TIDEWAY_DATA_DIR"], "/var/lib/tideway");
        assert_eq!(data["TIDEWAY_CONTROLLED_SHUTDOWN_TIMEOUT_MS"], "30000");
        assert!(data["TIDEWAY_VOTERS"].starts_with("0@demo-0.demo-brokers.ns.svc:9093,1@"));
        for key in DYNAMIC_KEYS {
            assert!(data.contains_key(*key), "{key}");
        }
        let dynamic = build_cluster_configs(&validated(&cluster, &BuildSettings::default()));
        assert_eq!(dynamic["num.partitions"], "6");
        assert_eq!(dynamic["auto.create.topics.enable"], "false");
        assert_eq!(dynamic["log.retention.ms"], "86400000");
        assert_eq!(dynamic["min.insync.replicas"], "2");
    }

    #[test]
    fn the_rack_map_exists_only_with_a_topology_key() {
        let mut c = validated(&demo_cluster(), &BuildSettings::default());
        assert!(build_rack_config_map(&c).is_none());
        c.rack = Some(crate::crd::RackSpec {
            topology_key: "topology.kubernetes.io/zone".into(),
        });
        c.node_racks = BTreeMap::from([
            ("node-a".to_owned(), "zone-1".to_owned()),
            ("node-b".to_owned(), String::new()),
        ]);
        let cm = build_rack_config_map(&c).expect("racks");
        assert_eq!(cm.metadata.name.as_deref(), Some("demo-racks"));
        assert_eq!(cm.data.expect("data")["node-a"], "zone-1");
    }
}
