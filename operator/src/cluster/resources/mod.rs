//! Pure builders of the Kubernetes resources of one MessageCluster, one file
//! per kind, plus the names and labels they share. Nothing here reads or
//! writes the cluster; `build_cluster_resources` returns everything the
//! reconciler applies, in the order it should apply them.

pub mod config_map;
pub mod pdb;
pub mod service;
pub mod service_account;
pub mod stateful_set;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::validate::ValidatedCluster;

/// Kafka listener port of every broker.
pub const KAFKA_PORT: i32 = 9092;
/// Admin gRPC port (also the Raft port in the future `--voters` value).
pub const ADMIN_PORT: i32 = 9093;
/// HTTP port: /livez, /readyz, /metrics.
pub const HTTP_PORT: i32 = 9644;
/// Where the broker's volume is mounted.
pub const DATA_DIR: &str = "/var/lib/tideway";

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// Value of `app.kubernetes.io/name` on every resource.
pub const APP_NAME: &str = "tideway";
/// Value of `app.kubernetes.io/managed-by` on every resource.
pub const MANAGER: &str = "tideway-operator";
/// Value of `app.kubernetes.io/component` on broker resources.
pub const COMPONENT_BROKER: &str = "broker";

/// Every resource of one MessageCluster.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterResources {
    pub service_account: ServiceAccount,
    pub config_map: ConfigMap,
    /// Node → rack map the brokers read their `--rack` from, when `spec.rack` is set.
    pub rack_config_map: Option<ConfigMap>,
    pub headless_service: Service,
    pub client_service: Service,
    pub pod_disruption_budget: PodDisruptionBudget,
    pub stateful_set: StatefulSet,
}

/// Failed to build a resource.
#[derive(Debug, thiserror::Error)]
pub enum BuildResourcesError {
    #[error("hashing the broker pod template of MessageCluster {namespace}/{name}")]
    HashPodTemplate {
        namespace: String,
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Builds every resource of a validated cluster.
///
/// Apply them in the field order of [`ClusterResources`]: the ServiceAccount
/// and ConfigMap the pods reference, the Services their DNS names need, the
/// PodDisruptionBudget, and the StatefulSet last so new pods find all of them.
pub fn build_cluster_resources(
    cluster: &ValidatedCluster,
) -> Result<ClusterResources, BuildResourcesError> {
    let config_map = config_map::build_config_map(cluster);
    Ok(ClusterResources {
        service_account: service_account::build_service_account(cluster),
        headless_service: service::build_headless_service(cluster),
        client_service: service::build_client_service(cluster),
        pod_disruption_budget: pdb::build_pod_disruption_budget(cluster),
        stateful_set: stateful_set::build_stateful_set(cluster, &config_map)?,
        rack_config_map: config_map::build_rack_config_map(cluster),
        config_map,
    })
}

impl ValidatedCluster {
    /// The StatefulSet (and so the pod name prefix).
    pub fn stateful_set_name(&self) -> String {
        self.name.clone()
    }
    /// The headless Service that gives each broker pod a stable DNS name.
    pub fn headless_service_name(&self) -> String {
        format!("{}-brokers", self.name)
    }
    /// The ClusterIP Service clients bootstrap from.
    pub fn client_service_name(&self) -> String {
        self.name.clone()
    }
    pub fn rack_config_map_name(&self) -> String {
        format!("{}-racks", self.name)
    }

    pub fn config_map_name(&self) -> String {
        format!("{}-config", self.name)
    }
    pub fn service_account_name(&self) -> String {
        format!("{}-broker", self.name)
    }
    pub fn pod_disruption_budget_name(&self) -> String {
        self.name.clone()
    }
    /// Pod name of the broker with this ordinal (= node id).
    pub fn pod_name(&self, ordinal: i32) -> String {
        format!("{}-{ordinal}", self.name)
    }
    /// Stable DNS name of a broker pod: `<pod>.<headless>.<namespace>.svc`.
    pub fn pod_dns_name(&self, ordinal: i32) -> String {
        format!(
            "{}.{}.{}.svc",
            self.pod_name(ordinal),
            self.headless_service_name(),
            self.namespace
        )
    }
    /// `host:port` of the client Service, for clients inside the cluster.
    pub fn client_bootstrap_address(&self) -> String {
        format!(
            "{}.{}.svc:{KAFKA_PORT}",
            self.client_service_name(),
            self.namespace
        )
    }
    /// Kafka addresses of every broker by pod DNS name, comma-separated.
    pub fn bootstrap_servers(&self) -> String {
        (0..self.brokers)
            .map(|i| format!("{}:{KAFKA_PORT}", self.pod_dns_name(i)))
            .collect::<Vec<_>>()
            .join(",")
    }
    /// The metadata quorum as `<id>@<host>:<admin port>,...`, one voter per broker.
    pub fn voters(&self) -> String {
        (0..self.brokers)
            .map(|i| format!("{i}@{}:{ADMIN_PORT}", self.pod_dns_name(i)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Labels that select the cluster's broker pods. Never change them: a
/// StatefulSet's selector is immutable.
pub fn selector_labels(cluster: &ValidatedCluster) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_owned(), APP_NAME.to_owned()),
        (LABEL_INSTANCE.to_owned(), cluster.name.clone()),
        (LABEL_COMPONENT.to_owned(), COMPONENT_BROKER.to_owned()),
    ])
}

/// Labels of every resource: the selector labels plus `managed-by`.
pub fn labels(cluster: &ValidatedCluster) -> BTreeMap<String, String> {
    let mut labels = selector_labels(cluster);
    labels.insert(LABEL_MANAGED_BY.to_owned(), MANAGER.to_owned());
    labels
}

/// Metadata of an owned resource: name, namespace, labels, controller owner reference.
pub fn owned_meta(cluster: &ValidatedCluster, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(cluster.namespace.clone()),
        labels: Some(labels(cluster)),
        owner_references: Some(vec![cluster.owner.clone()]),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cluster::validate::validate_cluster;
    use crate::crd::{BrokerConfig, MessageCluster, MessageClusterSpec, StorageSpec};
    use crate::settings::BuildSettings;

    /// A valid three-broker cluster `demo` in namespace `ns`.
    pub(crate) fn demo_cluster() -> MessageCluster {
        let mut cluster = MessageCluster::new(
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
        );
        cluster.metadata.namespace = Some("ns".into());
        cluster.metadata.uid = Some("uid-1".into());
        cluster
    }

    pub(crate) fn validated(
        cluster: &MessageCluster,
        settings: &BuildSettings,
    ) -> ValidatedCluster {
        validate_cluster(cluster, settings).expect("valid cluster")
    }

    #[test]
    fn names_and_addresses() {
        let c = validated(&demo_cluster(), &BuildSettings::default());
        assert_eq!(c.pod_dns_name(0), "demo-0.demo-brokers.ns.svc");
        assert_eq!(
            c.bootstrap_servers(),
            "demo-0.demo-brokers.ns.svc:9092,demo-1.demo-brokers.ns.svc:9092,demo-2.demo-brokers.ns.svc:9092"
        );
        assert_eq!(
            c.voters(),
            "0@demo-0.demo-brokers.ns.svc:9093,1@demo-1.demo-brokers.ns.svc:9093,2@demo-2.demo-brokers.ns.svc:9093"
        );
        assert_eq!(c.client_bootstrap_address(), "demo.ns.svc:9092");
    }

    #[test]
    fn every_resource_is_owned_labelled_and_namespaced() {
        let c = validated(&demo_cluster(), &BuildSettings::default());
        let r = build_cluster_resources(&c).expect("build");
        let metas = [
            &r.service_account.metadata,
            &r.config_map.metadata,
            &r.headless_service.metadata,
            &r.client_service.metadata,
            &r.pod_disruption_budget.metadata,
            &r.stateful_set.metadata,
        ];
        for meta in metas {
            assert_eq!(meta.namespace.as_deref(), Some("ns"));
            let owners = meta.owner_references.as_ref().expect("owner references");
            assert_eq!(owners.len(), 1);
            assert_eq!(owners[0].kind, "MessageCluster");
            assert_eq!(owners[0].uid, "uid-1");
            assert_eq!(owners[0].controller, Some(true));
            let labels = meta.labels.as_ref().expect("labels");
            for key in [
                LABEL_NAME,
                LABEL_INSTANCE,
                LABEL_MANAGED_BY,
                LABEL_COMPONENT,
            ] {
                assert!(labels.contains_key(key), "{key} missing on {:?}", meta.name);
            }
            assert_eq!(labels[LABEL_INSTANCE], "demo");
        }
    }
}
