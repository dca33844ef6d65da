//! Carries out rolling restarts: gathers what the roll planner (`roll`)
//! needs — the broker pods, DescribeCluster, DescribePartitions and
//! RestartRisk of each outdated Ready broker — asks it for the next step,
//! executes it (Drain, Undrain, delete a pod, record an Event) and keeps the
//! progress in `status.rollout`, so an operator that restarts resumes where
//! it stopped. A pod is deleted only after the progress naming it is saved.
//! Several steps that need no waiting (undrain, count a broker as updated)
//! run in one reconcile; anything that waits ends it, and the caller
//! requeues soon.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tideway_admin_api::AdminClient;
use tideway_admin_api::v1::{
    DescribeClusterRequest, DescribePartitionsRequest, DrainRequest, PartitionState,
    RestartRiskRequest, UndrainRequest,
};
use tonic::transport::Channel;

use super::restart::{
    RestartCause, pod_template_hash, restart_cause, restart_requested, stateful_set_template_hash,
};
use super::roll::{Action, BrokerView, Progress, Quorum, Risk, Stuck, plan_roll};
use super::validate::ValidatedCluster;
use crate::admin::{connect_ready_admin, pod_is_ready, pod_ordinal};
use crate::context::Context;
use crate::crd::{MessageCluster, RolloutPhase, RolloutStatus};

/// How long a broker's leaderships may take to move before its pod is
/// deleted anyway (its controlled shutdown then moves what is left).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Steps run in one reconcile at most (undrain, finish, then one that waits).
const MAX_STEPS: usize = 4;
/// The revision a pod asked to restart by annotation is treated as: it matches no template.
const RESTART_REQUESTED: &str = "restart-requested";

/// A step of the roll failed (transient: the reconcile is retried).
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("reading the roll's progress of MessageCluster {namespace}/{name}")]
    ReadProgress {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("saving the roll's progress of MessageCluster {namespace}/{name}")]
    SaveProgress {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting pod {namespace}/{pod} to restart broker {broker}")]
    DeletePod {
        namespace: String,
        pod: String,
        broker: i32,
        #[source]
        source: kube::Error,
    },
}

/// What the brokers said, when one answered.
#[derive(Default)]
struct BrokerFacts {
    answered: bool,
    alive: BTreeSet<i32>,
    draining: BTreeSet<i32>,
    quorum: Quorum,
    partitions: Vec<PartitionState>,
    risks: BTreeMap<i32, Risk>,
}

/// Runs the roll of one cluster as far as it can go now and returns the
/// rollout status to keep (None: no roll ever ran and none is needed).
///
/// 1. nothing happens until the StatefulSet controller has seen the desired
///    template (a pod deleted earlier would come back on the old one);
/// 2. the progress is read from `status.rollout` as the API server has it now
///    (the watch cache may not show this operator's last write yet, and a
///    stale progress would forget the broker being restarted); a new target
///    revision or a finished roll starts a new one;
/// 3. the brokers are asked (see [`BrokerFacts`]) and the planner decides;
///    steps that need no waiting run in a loop, the first that waits ends it.
pub async fn reconcile_rollout(
    ctx: &Context,
    cluster: &MessageCluster,
    validated: &ValidatedCluster,
    pods: &[Pod],
    desired: &StatefulSet,
    applied: &StatefulSet,
) -> Result<Option<RolloutStatus>, RolloutError> {
    let Some(target) = stateful_set_template_hash(desired).map(str::to_owned) else {
        return Ok(cluster.status.as_ref().and_then(|s| s.rollout.clone()));
    };
    let namespace = cluster.namespace().unwrap_or_default();
    let api: Api<MessageCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let previous = api
        .get_status(&cluster.name_any())
        .await
        .map_err(|source| RolloutError::ReadProgress {
            namespace: namespace.clone(),
            name: cluster.name_any(),
            source,
        })?
        .status
        .and_then(|s| s.rollout);
    // 1.
    let seen = applied.status.as_ref().and_then(|s| s.observed_generation)
        >= applied.metadata.generation
        && stateful_set_template_hash(applied) == Some(target.as_str());
    if !seen {
        return Ok(previous);
    }
    // 2.
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut rollout = match previous.clone() {
        Some(r) if r.target_revision == target && r.phase != RolloutPhase::Done => r,
        Some(r) if r.target_revision == target => RolloutStatus {
            updated_brokers: Vec::new(),
            ..r
        },
        // A new target mid-roll: the broker being restarted is no longer
        // awaited by name, but no other restarts until it is back (rule 6).
        _ => RolloutStatus {
            target_revision: target.clone(),
            phase: RolloutPhase::Done,
            ..RolloutStatus::default()
        },
    };
    let was_done = rollout.phase == RolloutPhase::Done;
    // 3.
    let facts = fetch_broker_facts(validated, pods, &target).await;
    // Reported, never blocking: partitions no restart keeps writable.
    let unprotected: BTreeSet<String> = facts
        .risks
        .values()
        .flat_map(|r| r.never_safe.iter().cloned())
        .collect();
    if !unprotected.is_empty() || facts.answered {
        rollout.unprotected_partitions = unprotected.into_iter().collect();
    }
    let mut views = build_views(validated, pods, &target, &facts);
    let mut admin = if facts.answered {
        connect_ready_admin(validated, pods).await
    } else {
        None
    };
    for _ in 0..MAX_STEPS {
        let progress = Progress {
            target_revision: target.clone(),
            updated: rollout.updated_brokers.iter().copied().collect(),
            current: rollout
                .current_broker
                .zip(rollout.in_sync_before.map(|n| n.max(0) as usize)),
            drain_expired: rollout.phase == RolloutPhase::Draining
                && rollout.phase_since.as_ref().is_some_and(|since| {
                    now.0.duration_since(since.0).as_secs() as u64 >= DRAIN_TIMEOUT.as_secs()
                }),
        };
        let action = plan_roll(&views, &facts.quorum, &progress);
        tracing::debug!(cluster = %validated.name, ?action, "roll step");
        let total = rollout.updated_brokers.len()
            + views
                .iter()
                .filter(|b| {
                    b.revision.as_deref().is_some_and(|r| r != target)
                        && !rollout.updated_brokers.contains(&b.id)
                })
                .count()
            + usize::from(rollout.in_sync_before.is_some());
        let ordinal = rollout.updated_brokers.len() + 1;
        match action {
            Action::Done => {
                if was_done && previous.is_none() {
                    return Ok(None);
                }
                if !was_done {
                    publish(
                        ctx,
                        cluster,
                        EventType::Normal,
                        "RollingUpdateDone",
                        format!(
                            "every broker runs revision {target} ({} restarted)",
                            rollout.updated_brokers.len()
                        ),
                    )
                    .await;
                }
                rollout.current_broker = None;
                rollout.in_sync_before = None;
                rollout.blocked_by.clear();
                rollout.message = format!("every broker runs revision {target}");
                set_phase(&mut rollout, RolloutPhase::Done, &now);
                return Ok(Some(rollout));
            }
            Action::Wait { phase, reason } => {
                rollout.blocked_by.clear();
                rollout.message = step_message(&rollout, ordinal, total, &reason);
                start(&mut rollout, &now);
                set_phase(&mut rollout, phase, &now);
                return Ok(Some(rollout));
            }
            Action::Drain(broker) => {
                let Some(client) = admin.as_mut() else {
                    return Ok(Some(rollout));
                };
                if let Err(status) = client.drain(DrainRequest { broker }).await {
                    tracing::warn!(cluster = %validated.name, broker, error = %status, "Drain failed");
                }
                rollout.current_broker = Some(broker);
                rollout.in_sync_before = None;
                rollout.blocked_by.clear();
                rollout.message = format!(
                    "draining broker {broker} ({ordinal} of {total}): moving its leaderships to other in-sync replicas"
                );
                start(&mut rollout, &now);
                set_phase(&mut rollout, RolloutPhase::Draining, &now);
                return Ok(Some(rollout));
            }
            Action::Restart { broker, unready } => {
                let Some(pod) = pods
                    .iter()
                    .find(|p| pod_ordinal(validated, p) == Some(broker))
                else {
                    return Ok(Some(rollout));
                };
                let view = views.iter().find(|v| v.id == broker);
                let cause = if view.is_some_and(|v| v.stuck.is_some()) || unready {
                    RestartCause::PodStuck
                } else {
                    restart_cause(desired, pod)
                };
                // Save first: an operator that stops after the delete must know it happened.
                rollout.current_broker = Some(broker);
                rollout.in_sync_before = Some(view.map_or(0, |v| v.in_sync as i32));
                rollout.blocked_by.clear();
                rollout.message = format!(
                    "restarting broker {broker} ({ordinal} of {total}): its pod is being replaced"
                );
                start(&mut rollout, &now);
                set_phase(&mut rollout, RolloutPhase::Restarting, &now);
                save_rollout(ctx, cluster, &rollout).await?;
                // A pod already terminating was deleted by an earlier step: no second Event.
                if pod.metadata.deletion_timestamp.is_none() {
                    publish(
                        ctx,
                        cluster,
                        EventType::Normal,
                        cause.as_str(),
                        format!(
                            "restarting broker {broker} ({ordinal} of {total}), pod {}: {}",
                            pod.name_any(),
                            cause_text(cause)
                        ),
                    )
                    .await;
                    delete_pod(ctx, &validated.namespace, pod, broker).await?;
                }
                return Ok(Some(rollout));
            }
            Action::Undrain(broker) => {
                let Some(client) = admin.as_mut() else {
                    return Ok(Some(rollout));
                };
                if let Err(status) = client.undrain(UndrainRequest { broker }).await {
                    tracing::warn!(cluster = %validated.name, broker, error = %status, "Undrain failed");
                    return Ok(Some(rollout));
                }
                if let Some(v) = views.iter_mut().find(|v| v.id == broker) {
                    v.draining = false;
                }
            }
            Action::Finished(broker) => {
                if !rollout.updated_brokers.contains(&broker) {
                    rollout.updated_brokers.push(broker);
                }
                rollout.current_broker = None;
                rollout.in_sync_before = None;
            }
            Action::Blocked {
                partitions,
                brokers,
                reason,
            } => {
                let mut blocked_by = partitions;
                blocked_by.extend(brokers.iter().map(|b| format!("broker {b}")));
                if rollout.phase != RolloutPhase::Blocked {
                    publish(
                        ctx,
                        cluster,
                        EventType::Warning,
                        "RollBlocked",
                        format!("rolling restart waits: {reason}"),
                    )
                    .await;
                }
                rollout.blocked_by = blocked_by;
                rollout.message = format!("blocked: {reason}");
                start(&mut rollout, &now);
                set_phase(&mut rollout, RolloutPhase::Blocked, &now);
                return Ok(Some(rollout));
            }
            Action::Halted { broker, stuck } => {
                let message = format!(
                    "broker {broker} does not start on the new revision ({}): the roll stopped so that no other broker goes down; fix the spec and the roll resumes",
                    stuck.as_str()
                );
                if rollout.phase != RolloutPhase::Halted {
                    publish(
                        ctx,
                        cluster,
                        EventType::Warning,
                        "RollHalted",
                        message.clone(),
                    )
                    .await;
                }
                rollout.blocked_by = vec![format!("broker {broker}")];
                rollout.message = message;
                start(&mut rollout, &now);
                set_phase(&mut rollout, RolloutPhase::Halted, &now);
                return Ok(Some(rollout));
            }
        }
    }
    Ok(Some(rollout))
}

fn step_message(rollout: &RolloutStatus, ordinal: usize, total: usize, reason: &str) -> String {
    match rollout.current_broker {
        Some(broker) if rollout.in_sync_before.is_some() => {
            format!("restarting broker {broker} ({ordinal} of {total}): {reason}")
        }
        _ => reason.to_owned(),
    }
}

fn cause_text(cause: RestartCause) -> &'static str {
    match cause {
        RestartCause::ImageChanged => "the broker image changed",
        RestartCause::ConfigChanged => "a broker setting that needs a restart changed",
        RestartCause::ManualRestart => "a restart was asked for (tideway.dev/restart)",
        RestartCause::TemplateChanged => "the pod template changed",
        RestartCause::PodStuck => {
            "the outdated pod does not serve (not Ready or stuck), so it goes first"
        }
    }
}

fn start(rollout: &mut RolloutStatus, now: &Time) {
    if rollout.started_at.is_none() || rollout.phase == RolloutPhase::Done {
        rollout.started_at = Some(now.clone());
    }
}

fn set_phase(rollout: &mut RolloutStatus, phase: RolloutPhase, now: &Time) {
    if rollout.phase != phase || rollout.phase_since.is_none() {
        rollout.phase = phase;
        rollout.phase_since = Some(now.clone());
    }
}

/// The planner's view of brokers `0..brokers`.
fn build_views(
    cluster: &ValidatedCluster,
    pods: &[Pod],
    target: &str,
    facts: &BrokerFacts,
) -> Vec<BrokerView> {
    (0..cluster.brokers)
        .map(|id| {
            let pod = pods.iter().find(|p| pod_ordinal(cluster, p) == Some(id));
            let revision = pod.map(|p| {
                if restart_requested(p) {
                    RESTART_REQUESTED.to_owned()
                } else {
                    pod_template_hash(p).unwrap_or_default().to_owned()
                }
            });
            let mine = facts.partitions.iter().filter(|p| p.replicas.contains(&id));
            let (mut replica_sets, mut in_sync, mut leaderships) = (0, 0, 0);
            for p in mine {
                replica_sets += 1;
                in_sync += usize::from(p.isr.contains(&id));
                leaderships += usize::from(p.leader == id);
            }
            let outdated = revision.as_deref().is_some_and(|r| r != target);
            BrokerView {
                id,
                ready: pod.is_some_and(pod_is_ready),
                terminating: pod.is_some_and(|p| p.metadata.deletion_timestamp.is_some()),
                stuck: pod.and_then(pod_stuck),
                revision,
                alive: facts.alive.contains(&id),
                draining: facts.draining.contains(&id),
                leaderships,
                in_sync,
                replica_sets,
                risk: if outdated {
                    facts.risks.get(&id).cloned()
                } else {
                    None
                },
            }
        })
        .collect()
}

/// Why a pod cannot start, from its container states and scheduling condition.
pub fn pod_stuck(pod: &Pod) -> Option<Stuck> {
    let status = pod.status.as_ref()?;
    let unschedulable = status.conditions.iter().flatten().any(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    });
    if unschedulable {
        return Some(Stuck::Unschedulable);
    }
    status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.as_deref())
        .find_map(|reason| match reason {
            "CrashLoopBackOff" => Some(Stuck::CrashLoopBackOff),
            "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" | "ErrImageNeverPull" => {
                Some(Stuck::ImagePullBackOff)
            }
            "CreateContainerConfigError" | "CreateContainerError" | "RunContainerError" => {
                Some(Stuck::CreateFailed)
            }
            _ => None,
        })
}

/// Asks any broker that answers: DescribeCluster, every partition, and the
/// RestartRisk of each outdated Ready broker. Unanswered questions stay
/// empty (brokers count as not alive, risks as unknown).
async fn fetch_broker_facts(cluster: &ValidatedCluster, pods: &[Pod], target: &str) -> BrokerFacts {
    let mut facts = BrokerFacts::default();
    let Some(mut admin) = connect_ready_admin(cluster, pods).await else {
        return facts;
    };
    let Ok(described) = admin.describe_cluster(DescribeClusterRequest {}).await else {
        return facts;
    };
    let described = described.into_inner();
    facts.answered = true;
    for b in &described.brokers {
        if b.alive {
            facts.alive.insert(b.id);
        }
        if b.draining {
            facts.draining.insert(b.id);
        }
    }
    if let Some(q) = &described.quorum {
        facts.quorum = Quorum {
            voters: q.voters.iter().copied().collect(),
            reachable: q.reachable_voters.iter().copied().collect(),
            leader: (described.controller_id >= 0).then_some(described.controller_id),
        };
    }
    let all = DescribePartitionsRequest {
        topics: Vec::new(),
        broker: -1,
        only_unhealthy: false,
    };
    match admin.describe_partitions(all).await {
        Ok(resp) => facts.partitions = resp.into_inner().partitions,
        Err(status) => {
            tracing::warn!(cluster = %cluster.name, error = %status, "DescribePartitions failed");
            facts.answered = false;
            return facts;
        }
    }
    for pod in pods.iter().filter(|p| pod_is_ready(p)) {
        let Some(id) = pod_ordinal(cluster, pod) else {
            continue;
        };
        let outdated = restart_requested(pod) || pod_template_hash(pod) != Some(target);
        if outdated {
            ask_risk(&mut admin, id, &mut facts.risks).await;
        }
    }
    facts
}

async fn ask_risk(admin: &mut AdminClient<Channel>, broker: i32, risks: &mut BTreeMap<i32, Risk>) {
    match admin.restart_risk(RestartRiskRequest { broker }).await {
        Ok(resp) => {
            let r = resp.into_inner();
            let blocking = r
                .already_under_min_isr
                .iter()
                .chain(&r.would_go_under_min_isr)
                .chain(&r.would_go_offline)
                .map(|p| format!("{}-{}", p.topic, p.partition))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let never_safe = r
                .never_safe
                .iter()
                .map(|p| format!("{}-{}", p.topic, p.partition))
                .collect();
            risks.insert(
                broker,
                Risk {
                    safe: r.safe,
                    blocking,
                    never_safe,
                },
            );
        }
        Err(status) => tracing::warn!(broker, error = %status, "RestartRisk failed"),
    }
}

/// The rollout as a merge patch body: absent optional keys become null, so
/// values from an earlier step do not linger.
pub fn rollout_patch_value(rollout: &RolloutStatus) -> serde_json::Value {
    let mut value = serde_json::to_value(rollout).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        for key in ["currentBroker", "inSyncBefore", "startedAt", "phaseSince"] {
            map.entry(key).or_insert(serde_json::Value::Null);
        }
    }
    value
}

async fn save_rollout(
    ctx: &Context,
    cluster: &MessageCluster,
    rollout: &RolloutStatus,
) -> Result<(), RolloutError> {
    let namespace = cluster.namespace().unwrap_or_default();
    let api: Api<MessageCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let body = serde_json::json!({ "status": { "rollout": rollout_patch_value(rollout) } });
    api.patch_status(
        &cluster.name_any(),
        &PatchParams::default(),
        &Patch::Merge(body),
    )
    .await
    .map(|_| ())
    .map_err(|source| RolloutError::SaveProgress {
        namespace,
        name: cluster.name_any(),
        source,
    })
}

/// Deletes exactly this pod (uid precondition: never its replacement).
async fn delete_pod(
    ctx: &Context,
    namespace: &str,
    pod: &Pod,
    broker: i32,
) -> Result<(), RolloutError> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&pod.name_any(), &params).await {
        Ok(_) => Ok(()),
        // Gone already, or replaced (uid precondition failed): nothing to delete.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(source) => Err(RolloutError::DeletePod {
            namespace: namespace.to_owned(),
            pod: pod.name_any(),
            broker,
            source,
        }),
    }
}

async fn publish(
    ctx: &Context,
    cluster: &MessageCluster,
    type_: EventType,
    reason: &str,
    note: String,
) {
    ctx.publish_event(
        &cluster.object_ref(&()),
        type_,
        reason,
        note,
        "RollingRestart",
    )
    .await;
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateWaiting, ContainerStatus, PodCondition, PodStatus,
    };

    use super::*;

    fn waiting(reason: &str) -> Pod {
        Pod {
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: "broker".into(),
                    state: Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some(reason.into()),
                            ..ContainerStateWaiting::default()
                        }),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn stuck_pods_are_recognised() {
        assert_eq!(
            pod_stuck(&waiting("CrashLoopBackOff")),
            Some(Stuck::CrashLoopBackOff)
        );
        assert_eq!(
            pod_stuck(&waiting("ErrImagePull")),
            Some(Stuck::ImagePullBackOff)
        );
        assert_eq!(
            pod_stuck(&waiting("CreateContainerConfigError")),
            Some(Stuck::CreateFailed)
        );
        assert_eq!(pod_stuck(&waiting("ContainerCreating")), None);
        let unschedulable = Pod {
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "PodScheduled".into(),
                    status: "False".into(),
                    reason: Some("Unschedulable".into()),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        };
        assert_eq!(pod_stuck(&unschedulable), Some(Stuck::Unschedulable));
        assert_eq!(pod_stuck(&Pod::default()), None);
    }

    #[test]
    fn the_patch_clears_finished_fields() {
        let v = rollout_patch_value(&RolloutStatus {
            target_revision: "abc".into(),
            ..RolloutStatus::default()
        });
        assert_eq!(v["currentBroker"], serde_json::Value::Null);
        assert_eq!(v["inSyncBefore"], serde_json::Value::Null);
        assert_eq!(v["phase"], "Done");
    }
}
