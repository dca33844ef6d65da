//! `tideway-operator run`: the process around the reconcilers. Order of
//! start-up: 1. HTTP endpoint (so probes answer at once); 2. Kubernetes client
//! (in-cluster or KUBECONFIG); 3. wait, with backoff and a clear log line, until
//! the CRDs are installed; 4. leader election (optional); 5. while leader, run
//! the MessageCluster, Topic, ConsumerAutoscaler and MirrorPolicy controllers; losing the Lease stops them at
//! once. SIGTERM/SIGINT stop everything and release the Lease.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::runtime::{Controller, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::autoscaler::{autoscaler_error_policy, reconcile_autoscaler};
use crate::cluster::reconcile::{cluster_error_policy, reconcile_cluster};
use crate::cluster::resources::{LABEL_MANAGED_BY, MANAGER};
use crate::context::Context;
use crate::crd::{ConsumerAutoscaler, GROUP, MessageCluster, MirrorPolicy, Topic};
use crate::http::{self, Health};
use crate::leader::{LeaderState, run_leader_election};
use crate::metrics::Metrics;
use crate::mirror_policy::{mirror_policy_error_policy, reconcile_mirror_policy};
use crate::settings::OperatorSettings;
use crate::topic::{reconcile_topic, topic_error_policy};

/// The API version the operator serves.
pub const API_VERSION: &str = "v1alpha1";
/// Resources (plural names) the operator needs in `tideway.dev/v1alpha1`.
pub const REQUIRED_RESOURCES: [&str; 4] = [
    "messageclusters",
    "topics",
    "consumerautoscalers",
    "mirrorpolicies",
];
/// Longest wait between two CRD checks.
const CRD_CHECK_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs the operator until SIGTERM or SIGINT.
pub async fn run(settings: OperatorSettings) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let (shutdown_tx, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        shutdown_tx.send_replace(true);
    });

    // 1. HTTP
    let listener = http::bind(settings.http_listen).await?;
    tracing::info!(listen = %settings.http_listen, "serving /livez /readyz /metrics");
    let http_task = tokio::spawn(http::serve(
        listener,
        health.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));

    // 2. client
    let client = Client::try_default().await.context(
        "building a Kubernetes client (in-cluster service account, or KUBECONFIG / ~/.kube/config)",
    )?;

    // 3. CRDs
    if !wait_for_crds(&client, shutdown.clone()).await {
        return Ok(());
    }

    // 4. leader election
    let (leader_tx, leader) = watch::channel(if settings.leader_election {
        LeaderState::Unknown
    } else {
        LeaderState::Leader
    });
    let mut election = None;
    let mut leader_tx = Some(leader_tx);
    if settings.leader_election {
        tracing::info!(identity = %settings.identity, namespace = %settings.operator_namespace, "leader election on");
        if let Some(tx) = leader_tx.take() {
            election = Some(tokio::spawn(run_leader_election(
                client.clone(),
                settings.operator_namespace.clone(),
                settings.identity.clone(),
                tx,
                shutdown.clone(),
            )));
        }
    }

    // 5. controllers while leader
    let ctx = Arc::new(Context::new(client, settings, metrics));
    loop {
        let mut leader_rx = leader.clone();
        let mut stop_rx = shutdown.clone();
        let health_ref = health.clone();
        tokio::select! {
            became = leader_rx.wait_for(|s| {
                // A standby is ready: it serves probes and takes over when the leader goes.
                health_ref.set_ready(*s != LeaderState::Unknown);
                *s == LeaderState::Leader
            }) => if became.is_err() { break },
            _ = stop_rx.wait_for(|stop| *stop) => break,
        }
        tracing::info!(
            "leading: starting the MessageCluster, Topic, ConsumerAutoscaler and MirrorPolicy controllers"
        );
        health.set_ready(true);
        let mut lost_rx = leader.clone();
        let mut stop_rx = shutdown.clone();
        let stop = async move {
            tokio::select! {
                _ = lost_rx.wait_for(|s| *s != LeaderState::Leader) => {},
                _ = stop_rx.wait_for(|stop| *stop) => {},
            }
        };
        run_controllers(ctx.clone(), stop).await;
        if *shutdown.borrow() {
            break;
        }
        tracing::warn!("no longer leader: controllers stopped, standing by");
    }
    health.set_ready(false);
    drop(leader_tx);
    if let Some(election) = election {
        let _ = election.await;
    }
    let _ = http_task.await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Which of the required resources a discovery answer lacks, as CRD names.
pub fn missing_crds(served: &[String]) -> Vec<String> {
    REQUIRED_RESOURCES
        .iter()
        .filter(|r| !served.iter().any(|s| s == *r))
        .map(|r| format!("{r}.{GROUP}"))
        .collect()
}

/// Waits until `tideway.dev/v1alpha1` serves every required resource
/// (discovery; needs no CRD read permission). Logs an error naming the missing
/// CRDs and retries with doubling backoff up to 30 s. False on shutdown.
pub async fn wait_for_crds(client: &Client, mut shutdown: watch::Receiver<bool>) -> bool {
    let group_version = format!("{GROUP}/{API_VERSION}");
    let mut delay = Duration::from_secs(1);
    loop {
        match client.list_api_group_resources(&group_version).await {
            Ok(list) => {
                let served: Vec<String> = list.resources.into_iter().map(|r| r.name).collect();
                let missing = missing_crds(&served);
                if missing.is_empty() {
                    tracing::info!(%group_version, "CRDs installed");
                    return true;
                }
                log_missing(&missing, &group_version, delay);
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                log_missing(&missing_crds(&[]), &group_version, delay);
            }
            Err(err) => {
                tracing::error!(error = %err, retry_in = ?delay, "cannot reach the Kubernetes API to check the CRDs");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {},
            _ = shutdown.wait_for(|stop| *stop) => return false,
        }
        delay = (delay * 2).min(CRD_CHECK_MAX_BACKOFF);
    }
}

fn log_missing(missing: &[String], group_version: &str, delay: Duration) {
    tracing::error!(
        missing = %missing.join(", "),
        %group_version,
        retry_in = ?delay,
        "required CRDs are not installed: install them with `kubectl apply --server-side -f crds/` or the Helm chart (crds.install=true)"
    );
}

fn scoped_api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs every controller (per watched namespace, or cluster-wide) until `stop`
/// resolves; in-flight reconciles are dropped then.
pub async fn run_controllers(ctx: Arc<Context>, stop: impl Future<Output = ()>) {
    let client = ctx.client.clone();
    let scopes: Vec<Option<String>> = if ctx.settings.watch_namespaces.is_empty() {
        vec![None]
    } else {
        ctx.settings
            .watch_namespaces
            .iter()
            .cloned()
            .map(Some)
            .collect()
    };
    // Owned objects are watched only when they carry the operator's label.
    let owned = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGER}"));
    let mut streams: Vec<BoxFuture<'static, ()>> = Vec::new();
    for scope in &scopes {
        let clusters = Controller::new(
            scoped_api::<MessageCluster>(&client, scope),
            watcher::Config::default(),
        )
        .owns(scoped_api::<StatefulSet>(&client, scope), owned.clone())
        .owns(scoped_api::<Service>(&client, scope), owned.clone())
        .owns(scoped_api::<ConfigMap>(&client, scope), owned.clone())
        .owns(scoped_api::<ServiceAccount>(&client, scope), owned.clone())
        .owns(
            scoped_api::<PodDisruptionBudget>(&client, scope),
            owned.clone(),
        )
        .run(reconcile_cluster, cluster_error_policy, ctx.clone())
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(cluster = %obj, "reconciled"),
                Err(err) => tracing::debug!(error = %err, "MessageCluster controller"),
            }
        });
        streams.push(clusters.boxed());
        let topics = Controller::new(
            scoped_api::<Topic>(&client, scope),
            watcher::Config::default(),
        )
        .run(reconcile_topic, topic_error_policy, ctx.clone())
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(topic = %obj, "reconciled"),
                Err(err) => tracing::debug!(error = %err, "Topic controller"),
            }
        });
        streams.push(topics.boxed());
        let autoscalers = Controller::new(
            scoped_api::<ConsumerAutoscaler>(&client, scope),
            watcher::Config::default(),
        )
        .run(reconcile_autoscaler, autoscaler_error_policy, ctx.clone())
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(autoscaler = %obj, "evaluated"),
                Err(err) => tracing::debug!(error = %err, "ConsumerAutoscaler controller"),
            }
        });
        streams.push(autoscalers.boxed());
        let policies = Controller::new(
            scoped_api::<MirrorPolicy>(&client, scope),
            watcher::Config::default(),
        )
        .run(
            reconcile_mirror_policy,
            mirror_policy_error_policy,
            ctx.clone(),
        )
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(policy = %obj, "reconciled"),
                Err(err) => tracing::debug!(error = %err, "MirrorPolicy controller"),
            }
        });
        streams.push(policies.boxed());
    }
    tokio::select! {
        _ = futures::future::join_all(streams) => {
            tracing::warn!("controllers ended");
        }
        _ = stop => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_crds_are_named() {
        assert_eq!(
            missing_crds(&[]),
            vec![
                "messageclusters.tideway.dev".to_owned(),
                "topics.tideway.dev".to_owned(),
                "consumerautoscalers.tideway.dev".to_owned(),
                "mirrorpolicies.tideway.dev".to_owned()
            ]
        );
        assert_eq!(
            missing_crds(&["topics".to_owned(), "topics/status".to_owned()]),
            vec![
                "messageclusters.tideway.dev".to_owned(),
                "consumerautoscalers.tideway.dev".to_owned(),
                "mirrorpolicies.tideway.dev".to_owned()
            ]
        );
        assert!(
            missing_crds(&[
                "messageclusters".to_owned(),
                "topics".to_owned(),
                "consumerautoscalers".to_owned(),
                "mirrorpolicies".to_owned()
            ])
            .is_empty()
        );
    }
}
