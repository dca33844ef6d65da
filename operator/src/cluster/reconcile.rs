//! The MessageCluster reconciler: fetch → validate (pure) → build (pure) →
//! check a scale-down → apply with server-side apply → delete orphans →
//! roll → status. The StatefulSet is `OnDelete`: pods are replaced only when
//! the roll (`rollout`, deciding with the pure `roll` planner) deletes them.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tideway_admin_api::v1::{
    Broker, DescribeClusterRequest, DescribePartitionsRequest, EvacuateBrokersRequest,
    EvacuateBrokersResponse, RemoveBrokerRequest,
};

use super::resources::{
    BuildResourcesError, LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGER, build_cluster_resources,
    selector_labels,
};
use super::restart::needs_restart;
use super::status::{
    ClusterObservation, bootstrap_servers, build_broker_statuses, plan_cluster_conditions,
};
use super::validate::{ValidatedCluster, invalid_spec_conditions, validate_cluster};
use crate::admin::{
    admin_addresses, connect_admin, connect_ready_admin, pod_is_ready, pod_ordinal,
};
use crate::context::{Context, FIELD_MANAGER, SLOW_REQUEUE};
use crate::crd::conditions::{ConditionType, ConditionUpdate, Reason, set_condition};
use crate::crd::{MessageCluster, MessageClusterStatus};

/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "messagecluster";
/// Requeue while brokers start or pods wait for a restart.
const PROGRESS_REQUEUE: Duration = Duration::from_secs(10);
/// Requeue while a roll waits for a drain, a pod or an ISR.
const ROLL_REQUEUE: Duration = Duration::from_secs(3);

/// A step of the MessageCluster reconcile failed (transient: retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileClusterError {
    #[error("MessageCluster has no namespace")]
    MissingNamespace,
    #[error(transparent)]
    BuildResources(#[from] BuildResourcesError),
    #[error("fetching {kind} of MessageCluster {namespace}/{name}")]
    Fetch {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("applying {kind} {namespace}/{name}")]
    Apply {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting orphaned {kind} {namespace}/{name}")]
    DeleteOrphan {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Rollout(#[from] super::rollout::RolloutError),
    #[error("patching the status of MessageCluster {namespace}/{name}")]
    PatchStatus {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl ReconcileClusterError {
    /// Bounded label for the errors metric.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Self::MissingNamespace => "MissingNamespace",
            Self::BuildResources(_) => "BuildResources",
            Self::Fetch { .. } => "Fetch",
            Self::Apply { .. } => "Apply",
            Self::DeleteOrphan { .. } => "DeleteOrphan",
            Self::Rollout(_) => "Rollout",
            Self::PatchStatus { .. } => "PatchStatus",
        }
    }
}

/// Reconciles one MessageCluster.
///
/// 1. validate; an invalid spec sets InvalidSpec conditions and requeues slowly;
/// 2. read the live StatefulSet; if `spec.brokers` shrinks, ask the brokers to
///    move every replica off the brokers to remove; while they move (Scaling),
///    when it is impossible or nobody can tell (ScaleDownBlocked), keep the old
///    size and build as if `spec.brokers` were unchanged;
/// 3. build and apply every resource (order in `apply_resources`);
/// 4. delete resources this cluster owns that are no longer built;
/// 5. remove scaled-away brokers from the cluster, and tell the brokers that
///    stay after a called-off scale-down that they are not leaving;
/// 6. set the broker defaults of `spec.config` on the running brokers
///    (`cluster_configs`), then roll outdated brokers one safe step at a time (`rollout`);
/// 7. observe pods and brokers and patch the status if it changed.
pub async fn reconcile_cluster(
    cluster: Arc<MessageCluster>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileClusterError> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let namespace = cluster
        .namespace()
        .ok_or(ReconcileClusterError::MissingNamespace)?;
    let name = cluster.name_any();
    let api: Api<MessageCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    if cluster.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove everything it owns.
        return Ok(Action::await_change());
    }

    // 1. validate
    let mut validated = match validate_cluster(&cluster, &ctx.settings.build) {
        Ok(v) => v,
        Err(problems) => {
            tracing::warn!(%namespace, %name, ?problems, "invalid MessageCluster spec");
            let mut updates = invalid_spec_conditions(&problems);
            updates.push(ConditionUpdate::new(
                ConditionType::Progressing,
                false,
                Reason::InvalidSpec,
                "waiting for a valid spec",
            ));
            let mut status = cluster.status.clone().unwrap_or_default();
            apply_conditions(&mut status, updates, cluster.metadata.generation);
            patch_status_if_changed(&api, &cluster, status).await?;
            return Ok(Action::requeue(SLOW_REQUEUE));
        }
    };

    // 2. scale-down check
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let live_sts = sts_api
        .get_opt(&validated.stateful_set_name())
        .await
        .map_err(|source| fetch_error("StatefulSet", &namespace, &name, source))?;
    let previous_replicas = live_sts.as_ref().and_then(|s| s.spec.as_ref()?.replicas);
    let pods = fetch_pods(&ctx, &validated).await?;
    let mut scale_down_blocked = None;
    let mut scale_down_moving = None;
    if let Some(previous) = previous_replicas.filter(|p| *p > validated.brokers) {
        match check_scale_down(&validated, &pods, previous).await {
            ScaleDown::Proceed => {}
            ScaleDown::Moving(progress) => {
                tracing::info!(%namespace, %name, previous, wanted = validated.brokers, %progress, "scale-down: moving replicas");
                scale_down_moving = Some(progress);
                validated.brokers = previous;
            }
            ScaleDown::Refused(why) => {
                tracing::warn!(%namespace, %name, previous, wanted = validated.brokers, %why, "scale-down refused");
                scale_down_blocked = Some(why);
                validated.brokers = previous;
            }
        }
    }

    // 3. build and apply (with racks, each node's rack first)
    if let Some(rack) = &validated.rack {
        validated.node_racks = fetch_node_racks(&ctx, &rack.topology_key)
            .await
            .map_err(|source| fetch_error("Nodes", &namespace, &name, source))?;
    }
    let resources = build_cluster_resources(&validated)?;
    let applied_sts = apply_resources(&ctx, &validated, &resources).await?;

    // 4. orphans
    delete_orphans::<Service>(
        &ctx,
        &validated,
        "Service",
        &[
            validated.headless_service_name(),
            validated.client_service_name(),
        ],
    )
    .await?;
    let mut config_maps = vec![validated.config_map_name()];
    if resources.rack_config_map.is_some() {
        config_maps.push(validated.rack_config_map_name());
    }
    delete_orphans::<ConfigMap>(&ctx, &validated, "ConfigMap", &config_maps).await?;
    delete_orphans::<ServiceAccount>(
        &ctx,
        &validated,
        "ServiceAccount",
        &[validated.service_account_name()],
    )
    .await?;
    delete_orphans::<PodDisruptionBudget>(
        &ctx,
        &validated,
        "PodDisruptionBudget",
        &[validated.pod_disruption_budget_name()],
    )
    .await?;

    // 5. brokers scaled away leave the cluster's metadata quorum
    if scale_down_blocked.is_none() && scale_down_moving.is_none() {
        forget_removed_brokers(&validated, &pods).await;
    }

    // 6. broker defaults at runtime, then the roll
    super::cluster_configs::apply_cluster_configs(&ctx, &cluster, &validated, &pods).await;
    super::cluster_configs::apply_log_filter(&ctx, &cluster, &validated, &pods).await;
    let rollout = super::rollout::reconcile_rollout(
        &ctx,
        &cluster,
        &validated,
        &pods,
        &resources.stateful_set,
        &applied_sts,
    )
    .await?;
    let rolling = rollout
        .as_ref()
        .is_some_and(|r| r.phase != crate::crd::RolloutPhase::Done);

    // 7. status
    let answers = ask_brokers(&validated, &pods).await;
    let (controller, under_replicated_partitions) = (answers.controller, answers.under_replicated);
    let ready_brokers = pods.iter().filter(|p| pod_is_ready(p)).count() as i32;
    let outdated_pods: Vec<String> = pods
        .iter()
        .filter(|p| needs_restart(&resources.stateful_set, p))
        .map(|p| p.name_any())
        .collect();
    let observation = ClusterObservation {
        brokers: cluster.spec.brokers,
        previous_replicas,
        ready_brokers,
        outdated_pods,
        rollout: rollout.clone(),
        scale_down_blocked,
        scale_down_moving,
        controller,
        under_replicated_partitions,
    };
    let mut brokers = build_broker_statuses(&validated, validated.brokers, &pods);
    for b in &mut brokers {
        b.rack = answers.racks.get(&b.id).cloned();
    }
    let mut status = cluster.status.clone().unwrap_or_default();
    status.ready_brokers = ready_brokers;
    status.controller = controller.filter(|c| *c >= 0);
    status.bootstrap_servers = bootstrap_servers(&brokers);
    status.brokers = brokers;
    status.rollout = rollout;
    apply_conditions(
        &mut status,
        plan_cluster_conditions(&observation),
        cluster.metadata.generation,
    );
    let settled = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Progressing" && c.status == "False");
    patch_status_if_changed(&api, &cluster, status).await?;
    ctx.reset_backoff(&key(&namespace, &name));
    Ok(Action::requeue(if rolling {
        ROLL_REQUEUE
    } else if settled {
        ctx.settings.resync_period
    } else {
        PROGRESS_REQUEUE
    }))
}

/// What to do after a failed reconcile: count it, log it, retry with per-object backoff.
pub fn cluster_error_policy(
    cluster: Arc<MessageCluster>,
    error: &ReconcileClusterError,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics
        .reconcile_failed(CONTROLLER, error.metric_reason());
    let key = key(
        &cluster.namespace().unwrap_or_default(),
        &cluster.name_any(),
    );
    let delay = ctx.backoff(&key);
    tracing::warn!(cluster = %key, error = %format_chain(error), retry_in = ?delay, "MessageCluster reconcile failed");
    Action::requeue(delay)
}

fn key(namespace: &str, name: &str) -> String {
    format!("MessageCluster/{namespace}/{name}")
}

/// An error with its sources, `a: b: c`.
pub fn format_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(err) = source {
        out.push_str(": ");
        out.push_str(&err.to_string());
        source = err.source();
    }
    out
}

fn fetch_error(
    kind: &'static str,
    namespace: &str,
    name: &str,
    source: kube::Error,
) -> ReconcileClusterError {
    ReconcileClusterError::Fetch {
        kind,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source,
    }
}

/// Every node's value of `topology_key` ("" when it lacks the label).
async fn fetch_node_racks(
    ctx: &Context,
    topology_key: &str,
) -> Result<std::collections::BTreeMap<String, String>, kube::Error> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    Ok(nodes
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|n| {
            let rack = n.labels().get(topology_key).cloned().unwrap_or_default();
            (n.name_any(), rack)
        })
        .collect())
}

/// The broker pods of the cluster (by selector labels).
async fn fetch_pods(
    ctx: &Context,
    cluster: &ValidatedCluster,
) -> Result<Vec<Pod>, ReconcileClusterError> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &cluster.namespace);
    let selector = label_selector(&selector_labels(cluster));
    api.list(&ListParams::default().labels(&selector))
        .await
        .map(|list| list.items)
        .map_err(|source| fetch_error("Pods", &cluster.namespace, &cluster.name, source))
}

fn label_selector(labels: &std::collections::BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Where a scale-down stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScaleDown {
    /// The brokers to remove hold no replica: the StatefulSet may shrink.
    Proceed,
    /// Their replicas are moving to the brokers that stay (the message says how far).
    Moving(String),
    /// It cannot happen (a topic needs more brokers) or nobody could tell.
    Refused(String),
}

/// Asks the brokers to move every replica off brokers `cluster.brokers..previous`
/// (admin EvacuateBrokers, idempotent: every reconcile asks again and reads
/// the progress). A broker that cannot be asked refuses the scale-down
/// until someone can tell.
async fn check_scale_down(cluster: &ValidatedCluster, pods: &[Pod], previous: i32) -> ScaleDown {
    let leaving: Vec<i32> = (cluster.brokers..previous).collect();
    let addresses = admin_addresses(cluster, pods);
    let mut admin = match connect_admin(cluster, &addresses).await {
        Ok(admin) => admin,
        Err(err) => {
            return ScaleDown::Refused(format!(
                "scale-down waits, the StatefulSet keeps its size: cannot ask the brokers to move replicas off brokers {leaving:?}: {err}"
            ));
        }
    };
    let request = EvacuateBrokersRequest {
        brokers: leaving.clone(),
    };
    match admin.evacuate_brokers(request).await {
        Ok(resp) => plan_scale_down(&leaving, Ok(resp.into_inner())),
        Err(status) => plan_scale_down(&leaving, Err(status)),
    }
}

/// Pure: the scale-down state from the brokers' answer to EvacuateBrokers.
pub fn plan_scale_down(
    leaving: &[i32],
    answer: Result<EvacuateBrokersResponse, tonic::Status>,
) -> ScaleDown {
    match answer {
        Ok(r) if r.replicas_remaining == 0 => ScaleDown::Proceed,
        Ok(r) => ScaleDown::Moving(format!(
            "moving {} replica(s) off brokers {leaving:?} before removing them ({} partition(s) being reassigned)",
            r.replicas_remaining, r.partitions_moving
        )),
        Err(status) if status.code() == tonic::Code::FailedPrecondition => {
            ScaleDown::Refused(format!(
                "scale-down refused, the StatefulSet keeps its size: {}",
                status.message()
            ))
        }
        Err(status) => ScaleDown::Refused(format!(
            "scale-down waits, the StatefulSet keeps its size: moving replicas off brokers {leaving:?} failed: {}",
            status.message()
        )),
    }
}

/// Brokers the cluster still knows (registered, or voters of its metadata
/// quorum) whose ordinal is at or above `spec.brokers` and whose pod is gone
/// are removed through the admin API (RemoveBroker), so the quorum's majority
/// follows the new size. The broker refuses while one still runs or holds
/// replicas; every reconcile tries again.
///
/// Brokers still marked leaving (by an earlier EvacuateBrokers) that stay
/// after all (a scale-down called off: their id is below `spec.brokers`) are
/// released by an EvacuateBrokers naming only the brokers that really leave
/// ([`plan_called_off_departures`]); otherwise they would get no new replicas
/// and mirror policies with mode All would not count them.
async fn forget_removed_brokers(cluster: &ValidatedCluster, pods: &[Pod]) {
    let Some(mut admin) = connect_ready_admin(cluster, pods).await else {
        return;
    };
    let Ok(described) = admin.describe_cluster(DescribeClusterRequest {}).await else {
        return;
    };
    let described = described.into_inner();
    if let Some(leaving) = plan_called_off_departures(&described.brokers, cluster.brokers) {
        let request = EvacuateBrokersRequest {
            brokers: leaving.clone(),
        };
        match admin.evacuate_brokers(request).await {
            Ok(_) => {
                tracing::info!(cluster = %cluster.name, wanted = cluster.brokers, still_leaving = ?leaving, "scale-down called off: the brokers that stay are no longer leaving")
            }
            Err(status) => {
                tracing::info!(cluster = %cluster.name, still_leaving = ?leaving, reason = %status.message(), "could not release the brokers of a called-off scale-down yet")
            }
        }
    }
    let running: Vec<i32> = pods
        .iter()
        .filter_map(|p| pod_ordinal(cluster, p))
        .collect();
    let mut known: Vec<i32> = described.brokers.iter().map(|b| b.id).collect();
    known.extend(
        described
            .quorum
            .iter()
            .flat_map(|q| q.voters.iter().copied()),
    );
    known.sort_unstable();
    known.dedup();
    for broker in removable_brokers(&known, &running, cluster.brokers) {
        match admin.remove_broker(RemoveBrokerRequest { broker }).await {
            Ok(r) if r.get_ref().removed => {
                tracing::info!(cluster = %cluster.name, broker, "removed a scaled-away broker from the cluster")
            }
            Ok(_) => {}
            Err(status) => {
                tracing::info!(cluster = %cluster.name, broker, reason = %status.message(), "scaled-away broker not removed yet")
            }
        }
    }
}

/// Pure: after a scale-down was called off (a broker marked leaving has an id
/// below `wanted`), the brokers that still leave (marked leaving, id at or
/// above `wanted`; possibly none), to send as EvacuateBrokers' new set.
/// None when no broker that stays is marked leaving.
pub fn plan_called_off_departures(brokers: &[Broker], wanted: i32) -> Option<Vec<i32>> {
    if !brokers.iter().any(|b| b.leaving && b.id < wanted) {
        return None;
    }
    let mut leaving: Vec<i32> = brokers
        .iter()
        .filter(|b| b.leaving && b.id >= wanted)
        .map(|b| b.id)
        .collect();
    leaving.sort_unstable();
    leaving.dedup();
    Some(leaving)
}

/// Pure: the known brokers to remove — ordinal at or above the wanted size
/// and no pod left.
pub fn removable_brokers(known: &[i32], running: &[i32], wanted: i32) -> Vec<i32> {
    known
        .iter()
        .copied()
        .filter(|b| *b >= wanted && !running.contains(b))
        .collect()
}

/// What the brokers said for the status; all unknown when none answered.
#[derive(Default)]
struct BrokerAnswers {
    controller: Option<i32>,
    under_replicated: Option<usize>,
    /// Each registered broker's rack, when it has one.
    racks: std::collections::BTreeMap<i32, String>,
}

/// Best effort: the active controller, the count of under-replicated
/// partitions and each broker's rack, from any broker that answers.
async fn ask_brokers(cluster: &ValidatedCluster, pods: &[Pod]) -> BrokerAnswers {
    let Some(mut admin) = connect_ready_admin(cluster, pods).await else {
        return BrokerAnswers::default();
    };
    let mut racks = std::collections::BTreeMap::new();
    let controller = match admin.describe_cluster(DescribeClusterRequest {}).await {
        Ok(resp) => {
            let described = resp.into_inner();
            for b in described.brokers.iter().filter(|b| !b.rack.is_empty()) {
                racks.insert(b.id, b.rack.clone());
            }
            Some(described.controller_id)
        }
        Err(status) => {
            tracing::debug!(error = %status, "DescribeCluster failed");
            None
        }
    };
    let unhealthy = DescribePartitionsRequest {
        topics: Vec::new(),
        broker: -1,
        only_unhealthy: true,
    };
    let under_replicated = match admin.describe_partitions(unhealthy).await {
        Ok(resp) => Some(
            resp.into_inner()
                .partitions
                .iter()
                .filter(|p| p.under_replicated)
                .count(),
        ),
        Err(_) => None,
    };
    BrokerAnswers {
        controller,
        under_replicated,
        racks,
    }
}

/// Server-side apply of one object with the operator's field manager (forcing
/// ownership of the fields it sets, so a kubectl edit of them is reverted).
pub async fn apply_object<K>(
    ctx: &Context,
    namespace: &str,
    kind: &'static str,
    obj: &K,
) -> Result<K, ReconcileClusterError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let name = obj.name_any();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .map_err(|source| ReconcileClusterError::Apply {
        kind,
        namespace: namespace.to_owned(),
        name,
        source,
    })
}

/// Applies every resource, in this order:
/// 1. ServiceAccount and 2. ConfigMaps (settings, and the racks map with
///    `spec.rack`): the pods reference them;
/// 3. headless Service: pod DNS names must exist before brokers look each other up;
/// 4. client Service; 5. PodDisruptionBudget: protects pods from the first drain;
/// 6. StatefulSet last, so new pods find everything they need (returned as applied).
async fn apply_resources(
    ctx: &Context,
    cluster: &ValidatedCluster,
    r: &super::ClusterResources,
) -> Result<StatefulSet, ReconcileClusterError> {
    let ns = &cluster.namespace;
    apply_object(ctx, ns, "ServiceAccount", &r.service_account).await?;
    apply_object(ctx, ns, "ConfigMap", &r.config_map).await?;
    if let Some(racks) = &r.rack_config_map {
        apply_object(ctx, ns, "ConfigMap", racks).await?;
    }
    apply_object(ctx, ns, "Service", &r.headless_service).await?;
    apply_object(ctx, ns, "Service", &r.client_service).await?;
    apply_object(ctx, ns, "PodDisruptionBudget", &r.pod_disruption_budget).await?;
    apply_object(ctx, ns, "StatefulSet", &r.stateful_set).await
}

/// Deletes objects of kind K labelled as this cluster's and owned by it (same
/// uid) whose name is not in `keep`. StatefulSets and PVCs are never deleted here.
async fn delete_orphans<K>(
    ctx: &Context,
    cluster: &ValidatedCluster,
    kind: &'static str,
    keep: &[String],
) -> Result<(), ReconcileClusterError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &cluster.namespace);
    let selector = format!(
        "{LABEL_INSTANCE}={},{LABEL_MANAGED_BY}={MANAGER}",
        cluster.name
    );
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| fetch_error(kind, &cluster.namespace, &cluster.name, source))?;
    for obj in list.items {
        let name = obj.name_any();
        let owned = obj
            .owner_references()
            .iter()
            .any(|o| o.uid == cluster.owner.uid);
        if !owned || keep.contains(&name) {
            continue;
        }
        tracing::info!(kind, namespace = %cluster.namespace, %name, "deleting orphaned resource");
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => {
                return Err(ReconcileClusterError::DeleteOrphan {
                    kind,
                    namespace: cluster.namespace.clone(),
                    name,
                    source,
                });
            }
        }
    }
    Ok(())
}

fn apply_conditions(
    status: &mut MessageClusterStatus,
    updates: Vec<ConditionUpdate>,
    generation: Option<i64>,
) {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    for update in updates {
        set_condition(&mut status.conditions, update, generation, &now);
    }
    status.observed_generation = generation;
}

/// Writes the status only when it differs from the one read (no write, no event, no loop).
async fn patch_status_if_changed(
    api: &Api<MessageCluster>,
    cluster: &MessageCluster,
    status: MessageClusterStatus,
) -> Result<(), ReconcileClusterError> {
    if cluster.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let mut body = serde_json::to_value(&status).unwrap_or_default();
    // Merge patch: absent keys would keep stale values; null removes them.
    if let Some(map) = body.as_object_mut() {
        for key in [
            "controller",
            "bootstrapServers",
            "observedGeneration",
            "rollout",
        ] {
            map.entry(key).or_insert(serde_json::Value::Null);
        }
        if let Some(rollout) = &status.rollout {
            map.insert(
                "rollout".to_owned(),
                super::rollout::rollout_patch_value(rollout),
            );
        }
    }
    let name = cluster.name_any();
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": body })),
    )
    .await
    .map(|_| ())
    .map_err(|source| ReconcileClusterError::PatchStatus {
        namespace: cluster.namespace().unwrap_or_default(),
        name,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_scaled_away_brokers_without_a_pod_are_removed() {
        assert_eq!(
            removable_brokers(&[0, 1, 2, 3], &[0, 1, 2, 3], 3),
            Vec::<i32>::new()
        );
        assert_eq!(removable_brokers(&[0, 1, 2, 3], &[0, 1, 2], 3), vec![3]);
        assert_eq!(removable_brokers(&[0, 1, 2], &[0, 1], 3), Vec::<i32>::new());
    }

    #[test]
    fn a_called_off_scale_down_releases_the_brokers_that_stay() {
        let broker = |id, leaving| Broker {
            id,
            leaving,
            ..Broker::default()
        };
        let nobody = [broker(0, false), broker(1, false), broker(2, false)];
        assert_eq!(plan_called_off_departures(&nobody, 3), None);
        // 5 → 3 under way: 3 and 4 leave as asked.
        let five = [
            broker(0, false),
            broker(1, false),
            broker(2, false),
            broker(3, true),
            broker(4, true),
        ];
        assert_eq!(plan_called_off_departures(&five, 3), None);
        // Called off (back to 5): nobody leaves any more.
        assert_eq!(plan_called_off_departures(&five, 5), Some(vec![]));
        // Partly (5 → 4): only broker 4 still leaves.
        assert_eq!(plan_called_off_departures(&five, 4), Some(vec![4]));
    }

    #[test]
    fn scale_down_proceeds_moves_or_is_refused() {
        let answer = |remaining, moving| {
            Ok(EvacuateBrokersResponse {
                replicas_remaining: remaining,
                partitions_moving: moving,
            })
        };
        assert_eq!(plan_scale_down(&[3], answer(0, 0)), ScaleDown::Proceed);
        match plan_scale_down(&[3], answer(4, 2)) {
            ScaleDown::Moving(m) => {
                assert!(m.contains("moving 4 replica(s) off brokers [3]"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        let refused = plan_scale_down(
            &[3],
            Err(tonic::Status::failed_precondition(
                "topics [\"wide\"] have a replication factor above the 3 brokers",
            )),
        );
        assert!(
            matches!(refused, ScaleDown::Refused(m) if m.contains("refused") && m.contains("wide"))
        );
        let unknown = plan_scale_down(&[3], Err(tonic::Status::unavailable("no controller")));
        assert!(matches!(unknown, ScaleDown::Refused(m) if m.contains("waits")));
    }
}
