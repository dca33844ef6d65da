//! Reaching a cluster's brokers through the admin gRPC API
//! (`tideway_admin_api::AdminClient`): which addresses to try for a cluster
//! (pod IPs when brokers advertise them, else the headless Service's pod DNS
//! names) and connecting with bounded timeouts. What to ask is the
//! reconcilers' business.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tideway_admin_api::AdminClient;
use tonic::transport::{Channel, Endpoint};

use crate::cluster::resources::ADMIN_PORT;
use crate::cluster::validate::ValidatedCluster;
use crate::settings::AdvertiseMode;

/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one admin call may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// No broker of a cluster answered.
#[derive(Debug, thiserror::Error)]
#[error(
    "no broker of MessageCluster {namespace}/{name} answers on its admin port (tried: {tried})"
)]
pub struct ConnectAdminError {
    pub namespace: String,
    pub name: String,
    pub tried: String,
}

/// gRPC metadata key the brokers set on errors that need telling apart.
pub const ERROR_KIND_METADATA: &str = "tideway-error";
/// Its value on a refusal by a mirror policy (docs/mirror-policies.md).
pub const POLICY_VIOLATION: &str = "policy-violation";

/// Whether the brokers refused a call because it breaks a mirror policy:
/// FAILED_PRECONDITION with `tideway-error: policy-violation` (the message
/// names the policy).
pub fn is_policy_violation(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::FailedPrecondition
        && status
            .metadata()
            .get(ERROR_KIND_METADATA)
            .is_some_and(|v| v.as_bytes() == POLICY_VIOLATION.as_bytes())
}

/// Whether a pod's Ready condition is True.
pub fn pod_is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod's ordinal from its name `<cluster>-<n>`.
pub fn pod_ordinal(cluster: &ValidatedCluster, pod: &Pod) -> Option<i32> {
    pod.metadata
        .name
        .as_deref()?
        .strip_prefix(&format!("{}-", cluster.name))?
        .parse()
        .ok()
}

/// Admin `host:port` of each broker pod, ready pods first, by ordinal.
/// With pod-IP advertising a pod without an IP yet is skipped.
pub fn admin_addresses(cluster: &ValidatedCluster, pods: &[Pod]) -> Vec<String> {
    let mut candidates: Vec<(bool, i32, String)> = pods
        .iter()
        .filter_map(|pod| {
            let ordinal = pod_ordinal(cluster, pod)?;
            let host = match cluster.advertise {
                AdvertiseMode::PodIp => pod.status.as_ref()?.pod_ip.clone()?,
                AdvertiseMode::PodDns => cluster.pod_dns_name(ordinal),
            };
            Some((!pod_is_ready(pod), ordinal, format!("{host}:{ADMIN_PORT}")))
        })
        .collect();
    candidates.sort();
    candidates.into_iter().map(|(_, _, addr)| addr).collect()
}

/// Connects to the first address that answers.
pub async fn connect_admin(
    cluster: &ValidatedCluster,
    addresses: &[String],
) -> Result<AdminClient<Channel>, ConnectAdminError> {
    for address in addresses {
        let Ok(endpoint) = Endpoint::from_shared(format!("http://{address}")) else {
            continue;
        };
        let endpoint = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT);
        match endpoint.connect().await {
            Ok(channel) => return Ok(AdminClient::new(channel)),
            Err(err) => tracing::debug!(%address, error = %err, "admin connect failed"),
        }
    }
    Err(ConnectAdminError {
        namespace: cluster.namespace.clone(),
        name: cluster.name.clone(),
        tried: if addresses.is_empty() {
            "no broker pod yet".to_owned()
        } else {
            addresses.join(", ")
        },
    })
}

/// The broker pods of a cluster (by its selector labels).
pub async fn list_broker_pods(
    client: &kube::Client,
    cluster: &ValidatedCluster,
) -> Result<Vec<Pod>, kube::Error> {
    let selector = crate::cluster::resources::selector_labels(cluster)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    kube::Api::<Pod>::namespaced(client.clone(), &cluster.namespace)
        .list(&kube::api::ListParams::default().labels(&selector))
        .await
        .map(|list| list.items)
}

/// A client to any Ready broker of the cluster; None when no pod is Ready
/// or none of them answers (callers retry on the next reconcile).
pub async fn connect_ready_admin(
    cluster: &ValidatedCluster,
    pods: &[Pod],
) -> Option<AdminClient<Channel>> {
    let ready: Vec<Pod> = pods.iter().filter(|p| pod_is_ready(p)).cloned().collect();
    if ready.is_empty() {
        return None;
    }
    connect_admin(cluster, &admin_addresses(cluster, &ready))
        .await
        .ok()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::cluster::resources::tests::{demo_cluster, validated};
    use crate::settings::BuildSettings;

    fn pod(name: &str, ip: Option<&str>, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(PodStatus {
                pod_ip: ip.map(str::to_owned),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn a_policy_violation_is_told_apart_by_its_metadata() {
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert(
            ERROR_KIND_METADATA,
            POLICY_VIOLATION.parse().expect("ascii"),
        );
        let violation = tonic::Status::with_metadata(
            tonic::Code::FailedPrecondition,
            "topic orders.eu breaks mirror policy ns/orders: replication factor 1, the policy asks for 3",
            metadata.clone(),
        );
        assert!(is_policy_violation(&violation));
        let plain = tonic::Status::failed_precondition("replication factor above the live brokers");
        assert!(!is_policy_violation(&plain));
        let other_code =
            tonic::Status::with_metadata(tonic::Code::InvalidArgument, "bad", metadata);
        assert!(!is_policy_violation(&other_code));
    }

    #[test]
    fn addresses_prefer_ready_pods_and_follow_the_advertise_mode() {
        let pods = [
            pod("demo-0", Some("10.0.0.5"), false),
            pod("demo-1", Some("10.0.0.6"), true),
            pod("demo-2", None, true),
            pod("other-0", Some("10.0.0.9"), true),
        ];
        let dns = validated(&demo_cluster(), &BuildSettings::default());
        assert_eq!(
            admin_addresses(&dns, &pods),
            vec![
                "demo-1.demo-brokers.ns.svc:9093",
                "demo-2.demo-brokers.ns.svc:9093",
                "demo-0.demo-brokers.ns.svc:9093"
            ]
        );
        let ip = validated(
            &demo_cluster(),
            &BuildSettings {
                advertise: AdvertiseMode::PodIp,
                ..BuildSettings::default()
            },
        );
        assert_eq!(
            admin_addresses(&ip, &pods),
            vec!["10.0.0.6:9093", "10.0.0.5:9093"]
        );
    }
}
