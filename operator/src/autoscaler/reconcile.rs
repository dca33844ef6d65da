//! The ConsumerAutoscaler reconciler: every [`EVALUATION_INTERVAL`] it reads
//! the group's lag from the brokers (admin GroupLag, computed by the group
//! coordinator from one snapshot), the workload's replicas (scale
//! subresource) and the MessageCluster's state, asks [`decide`] and writes
//! the scale subresource only when the answer differs. It never owns the
//! workload: deleting the ConsumerAutoscaler leaves the replicas as they are.
//!
//! 1. cluster missing or invalid → Ready=False, replicas kept;
//! 2. a HorizontalPodAutoscaler targets the same workload → Ready=False HpaConflict, nothing written;
//! 3. the target's scale subresource (discovery resolves any kind) → TargetNotFound when absent;
//! 4. the lag: the coordinator is whichever broker does not answer FAILED_PRECONDITION;
//!    unreadable → LagUnavailable, replicas kept (the decision's rule 1);
//! 5. frozen while the cluster rolls or a broker is not ready (no scale-down);
//! 6. decide, scale, Event `Scaled`, status, metrics.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tideway_admin_api::v1::{GroupLagRequest, GroupLagResponse, OffsetResetPolicy as WirePolicy};
use tonic::Code;

use super::decide::{
    Input, Lag, Limit, Memory, Policy, Recommendation, Rules, ScaleEvent, StepLimit, decide,
    rate_per_replica,
};
use crate::admin::{admin_addresses, connect_admin, list_broker_pods, pod_is_ready};
use crate::cluster::reconcile::format_chain;
use crate::cluster::validate::validate_cluster;
use crate::context::{Context, status_merge_patch};
use crate::crd::conditions::{ConditionType, ConditionUpdate, Reason, set_condition};
use crate::crd::consumer_autoscaler::{
    ConsumerAutoscaler, ConsumerAutoscalerStatus, DEFAULT_SCALE_DOWN_WINDOW,
    DEFAULT_SCALE_UP_WINDOW, OffsetResetPolicy, PAUSED_ANNOTATION, ScalingRules, TopicLag,
};
use crate::crd::{MessageCluster, RolloutPhase};

/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "consumerautoscaler";
/// How often an autoscaler looks at the lag.
pub const EVALUATION_INTERVAL: Duration = Duration::from_secs(10);
/// The consume rate is measured over at least this long.
const RATE_MIN_SAMPLE_MS: i64 = 10_000;

/// A step of the reconcile failed (transient: retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum AutoscalerError {
    #[error("ConsumerAutoscaler has no namespace")]
    MissingNamespace,
    #[error("reading {what} for ConsumerAutoscaler {namespace}/{name}")]
    Read {
        what: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("scaling {target} of ConsumerAutoscaler {namespace}/{name} to {replicas}")]
    Scale {
        target: String,
        replicas: i32,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("patching the status of ConsumerAutoscaler {namespace}/{name}")]
    PatchStatus {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl AutoscalerError {
    /// Bounded label for the errors metric.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Self::MissingNamespace => "MissingNamespace",
            Self::Read { .. } => "Read",
            Self::Scale { .. } => "Scale",
            Self::PatchStatus { .. } => "PatchStatus",
        }
    }
}

/// Counts, logs and retries a failed reconcile with per-object backoff.
pub fn autoscaler_error_policy(
    autoscaler: Arc<ConsumerAutoscaler>,
    error: &AutoscalerError,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics
        .reconcile_failed(CONTROLLER, error.metric_reason());
    let key = key(&autoscaler);
    let delay = ctx.backoff(&key).min(EVALUATION_INTERVAL * 3);
    tracing::warn!(autoscaler = %key, error = %format_chain(error), retry_in = ?delay, "ConsumerAutoscaler reconcile failed");
    Action::requeue(delay)
}

fn key(a: &ConsumerAutoscaler) -> String {
    format!(
        "ConsumerAutoscaler/{}/{}",
        a.namespace().unwrap_or_default(),
        a.name_any()
    )
}

/// Why the autoscaler cannot act now (reported as Ready=False; replicas kept).
struct NotReady {
    reason: Reason,
    message: String,
}

fn not_ready(reason: Reason, message: impl Into<String>) -> NotReady {
    NotReady {
        reason,
        message: message.into(),
    }
}

/// Evaluates one ConsumerAutoscaler; see the module doc.
pub async fn reconcile_autoscaler(
    autoscaler: Arc<ConsumerAutoscaler>,
    ctx: Arc<Context>,
) -> Result<Action, AutoscalerError> {
    // Every evaluation writes the status, which wakes this reconciler again
    // through the watch: evaluate at most once per interval unless the spec or
    // the annotations changed.
    let fingerprint = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        autoscaler.metadata.generation.hash(&mut h);
        autoscaler.annotations().hash(&mut h);
        h.finish()
    };
    if let Some(wait) = ctx.throttle(&key(&autoscaler), fingerprint, EVALUATION_INTERVAL) {
        return Ok(Action::requeue(wait));
    }
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let namespace = autoscaler
        .namespace()
        .ok_or(AutoscalerError::MissingNamespace)?;
    let name = autoscaler.name_any();
    let spec = &autoscaler.spec;
    let mut status = autoscaler.status.clone().unwrap_or_default();
    let generation = autoscaler.metadata.generation;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let now_ms = now.0.as_millisecond();
    let read = |what: &'static str| {
        let (namespace, name) = (namespace.clone(), name.clone());
        move |source| AutoscalerError::Read {
            what,
            namespace,
            name,
            source,
        }
    };
    let target = format!(
        "{}/{}",
        spec.scale_target_ref.kind, spec.scale_target_ref.name
    );

    // 2.
    let hpas = Api::<HorizontalPodAutoscaler>::namespaced(ctx.client.clone(), &namespace)
        .list(&ListParams::default())
        .await
        .map_err(read("HorizontalPodAutoscalers"))?;
    let group_of = |api_version: &str| {
        api_version
            .rsplit_once('/')
            .map_or("", |(g, _)| g)
            .to_owned()
    };
    let conflict = hpas.items.iter().find(|h| {
        let r = &h.spec.scale_target_ref;
        r.kind == spec.scale_target_ref.kind
            && r.name == spec.scale_target_ref.name
            && group_of(r.api_version.as_deref().unwrap_or_default())
                == group_of(&spec.scale_target_ref.api_version)
    });
    if let Some(hpa) = conflict {
        let problem = not_ready(
            Reason::HpaConflict,
            format!(
                "HorizontalPodAutoscaler {} already scales {target}: two autoscalers would fight; delete one of them",
                hpa.name_any()
            ),
        );
        return finish_not_ready(&ctx, &autoscaler, status, problem, None, &now).await;
    }

    // 3.
    let (group, version) = match spec.scale_target_ref.api_version.rsplit_once('/') {
        Some((g, v)) => (g.to_owned(), v.to_owned()),
        None => (String::new(), spec.scale_target_ref.api_version.clone()),
    };
    let gvk = GroupVersionKind::gvk(&group, &version, &spec.scale_target_ref.kind);
    let resource = match kube::discovery::pinned_kind(&ctx.client, &gvk).await {
        Ok((resource, _)) => resource,
        Err(err) => {
            let problem = not_ready(
                Reason::TargetNotFound,
                format!(
                    "the API server serves no kind {} in {}: {err}",
                    spec.scale_target_ref.kind, spec.scale_target_ref.api_version
                ),
            );
            return finish_not_ready(&ctx, &autoscaler, status, problem, None, &now).await;
        }
    };
    let workloads: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &namespace, &resource);
    let current = match workloads.get_scale(&spec.scale_target_ref.name).await {
        Ok(scale) => scale.spec.and_then(|s| s.replicas).unwrap_or(0),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let problem = not_ready(
                Reason::TargetNotFound,
                format!(
                    "{target} does not exist in namespace {namespace}, or has no scale subresource"
                ),
            );
            return finish_not_ready(&ctx, &autoscaler, status, problem, None, &now).await;
        }
        Err(source) => return Err(read("the target's scale subresource")(source)),
    };
    status.current_replicas = Some(current);

    // 1.
    let cluster = Api::<MessageCluster>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(&spec.cluster_ref.name)
        .await
        .map_err(read("the MessageCluster"))?;
    let Some(cluster) = cluster else {
        let problem = not_ready(
            Reason::ClusterNotFound,
            format!(
                "no MessageCluster {:?} in this namespace",
                spec.cluster_ref.name
            ),
        );
        return finish_not_ready(&ctx, &autoscaler, status, problem, Some(current), &now).await;
    };
    let validated = match validate_cluster(&cluster, &ctx.settings.build) {
        Ok(v) => v,
        Err(_) => {
            let problem = not_ready(
                Reason::ClusterNotReady,
                format!(
                    "MessageCluster {} has an invalid spec",
                    spec.cluster_ref.name
                ),
            );
            return finish_not_ready(&ctx, &autoscaler, status, problem, Some(current), &now).await;
        }
    };
    // 5.
    let cluster_status = cluster.status.clone().unwrap_or_default();
    let frozen = if let Some(r) = cluster_status
        .rollout
        .as_ref()
        .filter(|r| r.phase != RolloutPhase::Done)
    {
        Some(format!(
            "MessageCluster {} is rolling (phase {:?})",
            validated.name, r.phase
        ))
    } else if cluster_status.ready_brokers < cluster.spec.brokers {
        Some(format!(
            "MessageCluster {} has {} of {} brokers ready",
            validated.name, cluster_status.ready_brokers, cluster.spec.brokers
        ))
    } else {
        None
    };

    // 4.
    let pods = list_broker_pods(&ctx.client, &validated)
        .await
        .map_err(read("the broker pods"))?;
    let ready: Vec<_> = pods.iter().filter(|p| pod_is_ready(p)).cloned().collect();
    let request = GroupLagRequest {
        group: spec.consumer_group.clone(),
        topics: spec.topics.clone(),
        reset_policy: match spec.offset_reset_policy {
            OffsetResetPolicy::Earliest => WirePolicy::Earliest,
            OffsetResetPolicy::Latest => WirePolicy::Latest,
        } as i32,
    };
    let lag = match group_lag(&validated, &ready, request).await {
        Ok(lag) => lag,
        Err(message) => {
            let problem = not_ready(
                Reason::LagUnavailable,
                format!("{message}; keeping {current} replicas"),
            );
            return finish_not_ready(&ctx, &autoscaler, status, problem, Some(current), &now).await;
        }
    };

    // 6.
    let summary = summarize(&lag);
    let mut memory = memory_from_status(&status);
    let mut sample = Some((now_ms, summary.committed_sum, current));
    if let Some((at, sum, replicas)) = status.rate_sample.as_deref().and_then(parse_sample) {
        if replicas == current && now_ms - at < RATE_MIN_SAMPLE_MS {
            sample = Some((at, sum, replicas));
        } else if replicas == current
            // A replica with nothing to consume is idle, not slow: measure only while there is lag.
            && summary.total > 0
            && let Some(rate) = rate_per_replica(
                sum,
                summary.committed_sum,
                (now_ms - at) as f64 / 1000.0,
                current,
            )
        {
            memory.rate_per_replica = Some(rate);
        }
    }
    let paused = autoscaler
        .annotations()
        .get(PAUSED_ANNOTATION)
        .is_some_and(|v| v != "false");
    let policy = policy_of(&autoscaler);
    let decision = decide(&Input {
        now: now_ms / 1000,
        policy: &policy,
        current,
        lag: Some(summary.clone()),
        frozen: frozen.clone(),
        paused,
        memory: &memory,
    });

    if decision.replicas != current {
        workloads
            .patch_scale(
                &spec.scale_target_ref.name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "spec": { "replicas": decision.replicas } })),
            )
            .await
            .map_err(|source| AutoscalerError::Scale {
                target: target.clone(),
                replicas: decision.replicas,
                namespace: namespace.clone(),
                name: name.clone(),
                source,
            })?;
        let note = format!(
            "scaled {target} from {current} to {}: {}",
            decision.replicas, decision.reason
        );
        tracing::info!(autoscaler = %key(&autoscaler), %note, "scaled");
        // The event recorder folds Events with the same reason and action into one
        // series that keeps the first note: the action names the transition, so
        // each different scale is an Event of its own with its own lag.
        ctx.publish_event(
            &autoscaler.object_ref(&()),
            EventType::Normal,
            "Scaled",
            note,
            &format!("Scale{current}To{}", decision.replicas),
        )
        .await;
        status.last_scale_time = Some(now.clone());
        status.last_scale_reason = Some(format!(
            "from {current} to {}: {}",
            decision.replicas, decision.reason
        ));
        sample = Some((now_ms, summary.committed_sum, decision.replicas));
    }

    status.total_lag = Some(summary.total);
    status.topics = lag_per_topic(&lag);
    status.desired_replicas = Some(decision.replicas);
    status.current_replicas = Some(decision.replicas);
    status.consume_rate_per_replica = decision.memory.rate_per_replica.map(|r| r.round() as i64);
    status.last_active_time = decision
        .memory
        .last_active
        .and_then(|s| k8s_openapi::jiff::Timestamp::from_second(s).ok())
        .map(Time);
    status.recommendations = decision
        .memory
        .recommendations
        .iter()
        .map(|r| format!("{}:{}", r.at, r.replicas))
        .collect();
    status.scales = decision
        .memory
        .scales
        .iter()
        .map(|s| format!("{}:{}:{}", s.at, s.from, s.to))
        .collect();
    status.rate_sample = sample.map(|(at, sum, r)| format!("{at}:{sum}:{r}"));
    let (reason, message) = if paused {
        (Reason::Paused, decision.reason.clone())
    } else if let Some(f) = &frozen {
        (
            Reason::ScaleDownFrozen,
            format!(
                "{f}: scaling up only, never down or to zero; {}",
                decision.reason
            ),
        )
    } else {
        (
            Reason::LagRead,
            format!(
                "lag {} over {} partition(s); {} replica(s): {}",
                summary.total, summary.partitions, decision.replicas, decision.reason
            ),
        )
    };
    set_condition(
        &mut status.conditions,
        ConditionUpdate::new(ConditionType::Ready, true, reason, message),
        generation,
        &now,
    );
    let active = if decision.active {
        ConditionUpdate::new(
            ConditionType::Active,
            true,
            Reason::LagAboveActivation,
            format!(
                "lag {} > activationLag {}",
                summary.total, policy.activation_lag
            ),
        )
    } else {
        ConditionUpdate::new(
            ConditionType::Active,
            false,
            Reason::NoLag,
            format!(
                "lag {} <= activationLag {}",
                summary.total, policy.activation_lag
            ),
        )
    };
    set_condition(&mut status.conditions, active, generation, &now);
    let limited = match decision.limit {
        Some(Limit::Partitions(n)) => ConditionUpdate::new(
            ConditionType::ScalingLimited,
            true,
            Reason::PartitionCount,
            format!(
                "capped at {n}: the topics have {n} partition(s), a consumer beyond them would idle"
            ),
        ),
        Some(Limit::MaxReplicas(n)) => ConditionUpdate::new(
            ConditionType::ScalingLimited,
            true,
            Reason::MaxReplicas,
            format!("capped at maxReplicas {n}"),
        ),
        Some(Limit::MinReplicas(n)) => ConditionUpdate::new(
            ConditionType::ScalingLimited,
            true,
            Reason::MinReplicas,
            format!("raised to minReplicas {n}"),
        ),
        None => ConditionUpdate::new(
            ConditionType::ScalingLimited,
            false,
            Reason::WithinLimits,
            format!("{} replica(s) recommended", decision.recommended),
        ),
    };
    set_condition(&mut status.conditions, limited, generation, &now);
    status.observed_generation = generation;
    ctx.metrics
        .set_autoscaler(&namespace, &name, decision.replicas, summary.total);
    patch_status(&ctx, &autoscaler, status).await?;
    ctx.reset_backoff(&key(&autoscaler));
    Ok(Action::requeue(EVALUATION_INTERVAL))
}

/// Reports why the autoscaler cannot act; the workload keeps its replicas.
async fn finish_not_ready(
    ctx: &Context,
    autoscaler: &ConsumerAutoscaler,
    mut status: ConsumerAutoscalerStatus,
    problem: NotReady,
    current: Option<i32>,
    now: &Time,
) -> Result<Action, AutoscalerError> {
    let generation = autoscaler.metadata.generation;
    status.current_replicas = current;
    status.desired_replicas = current;
    set_condition(
        &mut status.conditions,
        ConditionUpdate::new(ConditionType::Ready, false, problem.reason, problem.message),
        generation,
        now,
    );
    status.observed_generation = generation;
    patch_status(ctx, autoscaler, status).await?;
    ctx.reset_backoff(&key(autoscaler));
    Ok(Action::requeue(EVALUATION_INTERVAL))
}

/// GroupLag from the coordinator: the first Ready broker that does not answer
/// FAILED_PRECONDITION (only the leader of `__consumer_offsets-0` coordinates).
async fn group_lag(
    cluster: &crate::cluster::validate::ValidatedCluster,
    ready: &[k8s_openapi::api::core::v1::Pod],
    request: GroupLagRequest,
) -> Result<GroupLagResponse, String> {
    if ready.is_empty() {
        return Err(format!(
            "no broker of MessageCluster {} is ready",
            cluster.name
        ));
    }
    let mut last = String::new();
    for address in admin_addresses(cluster, ready) {
        let Ok(mut admin) = connect_admin(cluster, std::slice::from_ref(&address)).await else {
            last = format!("broker {address} does not answer");
            continue;
        };
        match admin.group_lag(request.clone()).await {
            Ok(response) => return Ok(response.into_inner()),
            Err(status) if status.code() == Code::FailedPrecondition => continue,
            // No commits, no members and no topics listed: nothing to consume yet.
            Err(status) if status.code() == Code::NotFound && request.topics.is_empty() => {
                return Ok(GroupLagResponse {
                    group: request.group.clone(),
                    ..GroupLagResponse::default()
                });
            }
            Err(status) => {
                return Err(format!(
                    "the lag of group {} cannot be read: {}",
                    request.group,
                    status.message()
                ));
            }
        }
    }
    Err(if last.is_empty() {
        "no ready broker coordinates consumer groups (is __consumer_offsets-0 led?)".to_owned()
    } else {
        last
    })
}

fn summarize(lag: &GroupLagResponse) -> Lag {
    Lag {
        total: lag.partitions.iter().map(|p| p.lag.max(0)).sum(),
        partitions: i32::try_from(lag.partitions.len()).unwrap_or(i32::MAX),
        committed_sum: lag
            .partitions
            .iter()
            .filter(|p| p.committed_offset >= 0)
            .map(|p| p.committed_offset)
            .sum(),
    }
}

fn lag_per_topic(lag: &GroupLagResponse) -> Vec<TopicLag> {
    let mut topics: Vec<TopicLag> = Vec::new();
    for p in &lag.partitions {
        let entry = match topics.iter_mut().position(|t| t.topic == p.topic) {
            Some(i) => &mut topics[i],
            None => {
                topics.push(TopicLag {
                    topic: p.topic.clone(),
                    lag: 0,
                    partitions: 0,
                    partitions_with_lag: 0,
                });
                let last = topics.len() - 1;
                &mut topics[last]
            }
        };
        entry.lag += p.lag.max(0);
        entry.partitions += 1;
        entry.partitions_with_lag += i32::from(p.lag > 0);
    }
    topics.sort_by(|a, b| a.topic.cmp(&b.topic));
    topics
}

fn rules(r: &ScalingRules, default_window: i64) -> Rules {
    Rules {
        stabilization_window_seconds: r.stabilization_window_seconds.unwrap_or(default_window),
        step: r.step.as_ref().map(|s| StepLimit {
            replicas: s.replicas,
            period_seconds: s.period_seconds,
        }),
    }
}

fn policy_of(a: &ConsumerAutoscaler) -> Policy {
    let s = &a.spec;
    Policy {
        min_replicas: s.min_replicas,
        max_replicas: s.max_replicas,
        lag_per_replica: s.lag_per_replica.max(1),
        activation_lag: s.activation_lag,
        drain_within_seconds: s.drain_within_seconds,
        scale_up: rules(&s.behavior.scale_up, DEFAULT_SCALE_UP_WINDOW),
        scale_down: rules(&s.behavior.scale_down, DEFAULT_SCALE_DOWN_WINDOW),
        cooldown_seconds: s.behavior.cooldown_seconds,
    }
}

fn memory_from_status(status: &ConsumerAutoscalerStatus) -> Memory {
    let recommendations = status
        .recommendations
        .iter()
        .filter_map(|r| {
            let (at, replicas) = r.split_once(':')?;
            Some(Recommendation {
                at: at.parse().ok()?,
                replicas: replicas.parse().ok()?,
            })
        })
        .collect();
    let scales = status
        .scales
        .iter()
        .filter_map(|s| {
            let mut it = s.split(':');
            Some(ScaleEvent {
                at: it.next()?.parse().ok()?,
                from: it.next()?.parse().ok()?,
                to: it.next()?.parse().ok()?,
            })
        })
        .collect();
    Memory {
        recommendations,
        scales,
        last_active: status.last_active_time.as_ref().map(|t| t.0.as_second()),
        rate_per_replica: status.consume_rate_per_replica.map(|r| r as f64),
    }
}

/// `unixMillis:committedSum:replicas`.
fn parse_sample(s: &str) -> Option<(i64, i64, i32)> {
    let mut it = s.split(':');
    Some((
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    ))
}

/// Writes the status as a merge patch; fields the new status no longer has
/// are set to null so that they disappear.
async fn patch_status(
    ctx: &Context,
    autoscaler: &ConsumerAutoscaler,
    status: ConsumerAutoscalerStatus,
) -> Result<(), AutoscalerError> {
    if autoscaler.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let namespace = autoscaler.namespace().unwrap_or_default();
    let name = autoscaler.name_any();
    Api::<ConsumerAutoscaler>::namespaced(ctx.client.clone(), &namespace)
        .patch_status(
            &name,
            &PatchParams::default(),
            &status_merge_patch(autoscaler.status.as_ref(), &status),
        )
        .await
        .map(|_| ())
        .map_err(|source| AutoscalerError::PatchStatus {
            namespace,
            name,
            source,
        })
}

#[cfg(test)]
mod tests {
    use tideway_admin_api::v1::PartitionLag;

    use super::*;

    fn p(topic: &str, partition: i32, committed: i64, lag: i64) -> PartitionLag {
        PartitionLag {
            topic: topic.into(),
            partition,
            committed_offset: committed,
            high_watermark: committed.max(0) + lag,
            log_start_offset: 0,
            lag,
        }
    }

    #[test]
    fn lag_is_summed_per_topic_and_commits_are_summed_for_the_rate() {
        let lag = GroupLagResponse {
            partitions: vec![p("a", 0, 10, 5), p("a", 1, -1, 0), p("b", 0, 7, 3)],
            ..GroupLagResponse::default()
        };
        let s = summarize(&lag);
        assert_eq!((s.total, s.partitions, s.committed_sum), (8, 3, 17));
        let t = lag_per_topic(&lag);
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].lag, t[0].partitions, t[0].partitions_with_lag),
            (5, 2, 1)
        );
        assert_eq!((t[1].topic.as_str(), t[1].lag), ("b", 3));
    }

    #[test]
    fn memory_round_trips_through_status() {
        let status = ConsumerAutoscalerStatus {
            recommendations: vec!["100:6".into(), "bad".into()],
            scales: vec!["90:0:6".into()],
            consume_rate_per_replica: Some(250),
            ..ConsumerAutoscalerStatus::default()
        };
        let m = memory_from_status(&status);
        assert_eq!(
            m.recommendations,
            vec![Recommendation {
                at: 100,
                replicas: 6
            }]
        );
        assert_eq!(
            m.scales,
            vec![ScaleEvent {
                at: 90,
                from: 0,
                to: 6
            }]
        );
        assert_eq!(m.rate_per_replica, Some(250.0));
        assert_eq!(parse_sample("1000:55:3"), Some((1000, 55, 3)));
        assert_eq!(parse_sample("1000:55"), None);
    }
}
