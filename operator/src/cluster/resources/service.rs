//! The two Services of a cluster: a headless one that gives every broker pod
//! a stable DNS name (published before the pod is ready, so brokers can find
//! each other while they start), and a ClusterIP one for client bootstrap.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{ADMIN_PORT, HTTP_PORT, KAFKA_PORT, owned_meta, selector_labels};
use crate::cluster::validate::ValidatedCluster;

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}

/// Builds `<cluster>-brokers`: headless, `publishNotReadyAddresses: true`.
pub fn build_headless_service(cluster: &ValidatedCluster) -> Service {
    Service {
        metadata: owned_meta(cluster, cluster.headless_service_name()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(cluster)),
            ports: Some(vec![
                port("kafka", KAFKA_PORT),
                port("admin", ADMIN_PORT),
                port("http", HTTP_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Builds `<cluster>`: a ClusterIP Service over the ready brokers, for Kafka
/// bootstrap and for admin calls that any broker can answer.
pub fn build_client_service(cluster: &ValidatedCluster) -> Service {
    Service {
        metadata: owned_meta(cluster, cluster.client_service_name()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector_labels(cluster)),
            ports: Some(vec![port("kafka", KAFKA_PORT), port("admin", ADMIN_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::resources::tests::{demo_cluster, validated};
    use crate::settings::BuildSettings;

    #[test]
    fn headless_service_publishes_unready_pods() {
        let svc = build_headless_service(&validated(&demo_cluster(), &BuildSettings::default()));
        assert_eq!(svc.metadata.name.as_deref(), Some("demo-brokers"));
        let spec = svc.spec.expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        let ports: Vec<_> = spec.ports.expect("ports").iter().map(|p| p.port).collect();
        assert_eq!(ports, vec![9092, 9093, 9644]);
    }

    #[test]
    fn client_service_selects_brokers() {
        let c = validated(&demo_cluster(), &BuildSettings::default());
        let spec = build_client_service(&c).spec.expect("spec");
        assert_eq!(spec.selector, Some(selector_labels(&c)));
        assert_eq!(spec.cluster_ip, None);
        assert_eq!(spec.ports.expect("ports")[0].name.as_deref(), Some("kafka"));
    }
}
