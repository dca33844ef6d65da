//! What the kinds that name a MessageCluster in `spec.clusterRef` (Topic,
//! MirrorPolicy) share: finding that cluster in their namespace, checking it,
//! listing its broker pods and reaching a broker's admin API, with the
//! Ready=False condition each way of failing reports. What to ask the brokers
//! is each reconciler's business.

use std::time::Duration;

use kube::Client;
use kube::api::Api;
use tideway_admin_api::AdminClient;
use tonic::transport::Channel;

use crate::admin::{ConnectAdminError, admin_addresses, connect_admin, list_broker_pods};
use crate::cluster::validate::{Problem, ValidatedCluster, validate_cluster};
use crate::crd::MessageCluster;
use crate::crd::conditions::Reason;
use crate::settings::BuildSettings;

/// Requeue while the cluster's brokers do not answer.
pub const BROKERS_WAIT_REQUEUE: Duration = Duration::from_secs(15);

/// Reaching a referenced cluster failed (transient: retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum ClusterRefError {
    #[error("fetching MessageCluster {namespace}/{name}")]
    FetchCluster {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("fetching the broker pods of MessageCluster {namespace}/{name}")]
    FetchPods {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    ConnectAdmin(#[from] ConnectAdminError),
}

impl ClusterRefError {
    /// Bounded label for the errors metric.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Self::FetchCluster { .. } => "FetchCluster",
            Self::FetchPods { .. } => "FetchPods",
            Self::ConnectAdmin(_) => "ConnectAdmin",
        }
    }
}

/// Why a resource cannot reach its cluster's brokers now: reported as
/// Ready=False and looked at again later, not an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreachable {
    pub reason: Reason,
    pub message: String,
    /// The brokers may answer soon (retry in [`BROKERS_WAIT_REQUEUE`]);
    /// otherwise something has to change first (retry after the resync period).
    pub retry_soon: bool,
}

impl Unreachable {
    /// When to look again, given the operator's resync period.
    pub fn requeue_after(&self, resync_period: Duration) -> Duration {
        if self.retry_soon {
            BROKERS_WAIT_REQUEUE
        } else {
            resync_period
        }
    }
}

/// The MessageCluster `name` in `namespace`, or None when it does not exist.
pub async fn fetch_cluster(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<MessageCluster>, ClusterRefError> {
    Api::<MessageCluster>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|source| ClusterRefError::FetchCluster {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        })
}

/// Pure: the referenced cluster validated, or why it cannot be used
/// (missing → ClusterNotFound; invalid spec → ClusterNotReady naming every problem).
pub fn check_cluster(
    name: &str,
    cluster: Option<&MessageCluster>,
    settings: &BuildSettings,
) -> Result<ValidatedCluster, Unreachable> {
    let Some(cluster) = cluster else {
        return Err(Unreachable {
            reason: Reason::ClusterNotFound,
            message: format!("no MessageCluster {name:?} in this namespace"),
            retry_soon: false,
        });
    };
    validate_cluster(cluster, settings).map_err(|problems| Unreachable {
        reason: Reason::ClusterNotReady,
        message: invalid_cluster_message(name, &problems),
        retry_soon: false,
    })
}

fn invalid_cluster_message(name: &str, problems: &[Problem]) -> String {
    format!(
        "MessageCluster {name} has an invalid spec: {}",
        problems
            .iter()
            .map(|p| format!("{} {}", p.field, p.message))
            .collect::<Vec<_>>()
            .join("; ")
    )
}

/// Fetches and checks the referenced cluster ([`check_cluster`]).
pub async fn lookup_cluster(
    client: &Client,
    namespace: &str,
    name: &str,
    settings: &BuildSettings,
) -> Result<Result<ValidatedCluster, Unreachable>, ClusterRefError> {
    let cluster = fetch_cluster(client, namespace, name).await?;
    Ok(check_cluster(name, cluster.as_ref(), settings))
}

/// The broker pods of the cluster.
pub async fn fetch_broker_pods(
    client: &Client,
    cluster: &ValidatedCluster,
) -> Result<Vec<k8s_openapi::api::core::v1::Pod>, ClusterRefError> {
    list_broker_pods(client, cluster)
        .await
        .map_err(|source| ClusterRefError::FetchPods {
            namespace: cluster.namespace.clone(),
            name: cluster.name.clone(),
            source,
        })
}

/// A client to the first broker that answers (ready pods first); none
/// answering is ClusterNotReady, retried soon.
pub async fn connect_cluster(
    client: &Client,
    cluster: &ValidatedCluster,
) -> Result<Result<AdminClient<Channel>, Unreachable>, ClusterRefError> {
    let pods = fetch_broker_pods(client, cluster).await?;
    Ok(connect_admin(cluster, &admin_addresses(cluster, &pods))
        .await
        .map_err(|err| Unreachable {
            reason: Reason::ClusterNotReady,
            message: err.to_string(),
            retry_soon: true,
        }))
}

/// For a finalizer's cleanup: a client to the cluster's brokers, or None when
/// there is nothing to clean up from (the cluster is gone, being deleted, has
/// an invalid spec or no broker pods; each logged with `what`). Brokers that
/// exist but do not answer are an error, so the cleanup is retried.
pub async fn connect_for_cleanup(
    client: &Client,
    namespace: &str,
    name: &str,
    settings: &BuildSettings,
    what: &str,
) -> Result<Option<AdminClient<Channel>>, ClusterRefError> {
    let Some(cluster) = fetch_cluster(client, namespace, name).await? else {
        tracing::info!(%what, cluster = %name, "cluster is gone: nothing to clean up");
        return Ok(None);
    };
    if cluster.metadata.deletion_timestamp.is_some() {
        tracing::info!(%what, cluster = %name, "cluster is being deleted: nothing to clean up separately");
        return Ok(None);
    }
    let Ok(cluster) = validate_cluster(&cluster, settings) else {
        tracing::warn!(%what, cluster = %name, "cluster spec is invalid: cannot reach its brokers; leaving them as they are");
        return Ok(None);
    };
    let pods = fetch_broker_pods(client, &cluster).await?;
    if pods.is_empty() {
        tracing::info!(%what, cluster = %name, "cluster has no broker pods: nothing to clean up");
        return Ok(None);
    }
    Ok(Some(
        connect_admin(&cluster, &admin_addresses(&cluster, &pods)).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::resources::tests::demo_cluster;

    #[test]
    fn a_missing_or_invalid_cluster_is_a_condition_to_wait_on() {
        let settings = BuildSettings::default();
        let missing = check_cluster("demo", None, &settings).expect_err("missing");
        assert_eq!(missing.reason, Reason::ClusterNotFound);
        assert!(missing.message.contains("no MessageCluster \"demo\""));
        assert_eq!(
            missing.requeue_after(Duration::from_secs(60)),
            Duration::from_secs(60)
        );

        let mut bad = demo_cluster();
        bad.spec.brokers = 1;
        bad.spec.config.default_replication_factor = Some(3);
        let invalid = check_cluster("demo", Some(&bad), &settings).expect_err("invalid");
        assert_eq!(invalid.reason, Reason::ClusterNotReady);
        assert!(
            invalid
                .message
                .starts_with("MessageCluster demo has an invalid spec: "),
            "{}",
            invalid.message
        );

        let ok = check_cluster("demo", Some(&demo_cluster()), &settings).expect("valid");
        assert_eq!(ok.name, "demo");
    }
}
