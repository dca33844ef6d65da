//! The Topic reconciler, wrapped in kube's `finalizer` so the Kafka topic is
//! deleted (deletionPolicy Delete) or kept (Retain) before the resource goes.
//! Apply: find the cluster → resolve and check the topic (pure) → connect to a
//! broker's admin API → create, or alter what drifted → status → requeue after
//! the resync period, so changes made behind the operator's back are repaired.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Resource, ResourceExt};
use tideway_admin_api::v1::{DeleteTopicRequest, DescribeTopicRequest, TopicDescription};
use tonic::Code;

use super::plan::{
    PolicyRequirement, check_replication_factor, describe_alter, follows_policy_only, plan_alter,
    plan_create, resolve_desired_topic,
};
use crate::admin::is_policy_violation;
use crate::cluster::reconcile::format_chain;
use crate::cluster_ref::{ClusterRefError, connect_cluster, connect_for_cleanup, lookup_cluster};
use crate::context::{Context, SLOW_REQUEUE, status_merge_patch};
use crate::crd::conditions::{ConditionType, ConditionUpdate, Reason, set_condition};
use crate::crd::{DeletionPolicy, Topic, TopicStatus};

/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "topic";
/// Finalizer that holds a Topic until its Kafka topic is deleted or retained.
pub const TOPIC_FINALIZER: &str = "tideway.dev/topic";

/// A step of the Topic reconcile failed (transient: retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum TopicStepError {
    #[error("Topic has no namespace")]
    MissingNamespace,
    #[error(transparent)]
    ClusterRef(#[from] ClusterRefError),
    #[error("{action} of topic {topic}")]
    Admin {
        action: &'static str,
        topic: String,
        #[source]
        source: tonic::Status,
    },
    #[error("patching the status of Topic {namespace}/{name}")]
    PatchStatus {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The Topic reconcile failed, in a step or while adding/removing the finalizer.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ReconcileTopicError(#[from] kube::runtime::finalizer::Error<TopicStepError>);

impl ReconcileTopicError {
    /// Bounded label for the errors metric.
    pub fn metric_reason(&self) -> &'static str {
        use kube::runtime::finalizer::Error as F;
        match &self.0 {
            F::ApplyFailed(e) | F::CleanupFailed(e) => match e {
                TopicStepError::MissingNamespace => "MissingNamespace",
                TopicStepError::ClusterRef(e) => e.metric_reason(),
                TopicStepError::Admin { .. } => "Admin",
                TopicStepError::PatchStatus { .. } => "PatchStatus",
            },
            F::AddFinalizer(_) | F::RemoveFinalizer(_) => "Finalizer",
            _ => "Finalizer",
        }
    }
}

/// Reconciles one Topic through the finalizer (Apply or Cleanup).
pub async fn reconcile_topic(
    topic: Arc<Topic>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileTopicError> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let namespace = topic.namespace().unwrap_or_default();
    let api: Api<Topic> = Api::namespaced(ctx.client.clone(), &namespace);
    let action = finalizer(&api, TOPIC_FINALIZER, topic, |event| async {
        match event {
            Event::Apply(topic) => apply_topic(&topic, &ctx).await,
            Event::Cleanup(topic) => cleanup_topic(&topic, &ctx).await,
        }
    })
    .await?;
    Ok(action)
}

/// Counts, logs and retries a failed Topic reconcile with per-object backoff.
pub fn topic_error_policy(
    topic: Arc<Topic>,
    error: &ReconcileTopicError,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics
        .reconcile_failed(CONTROLLER, error.metric_reason());
    let key = key(&topic);
    let delay = ctx.backoff(&key);
    tracing::warn!(topic = %key, error = %format_chain(error), retry_in = ?delay, "Topic reconcile failed");
    Action::requeue(delay)
}

fn key(topic: &Topic) -> String {
    format!(
        "Topic/{}/{}",
        topic.namespace().unwrap_or_default(),
        topic.name_any()
    )
}

fn admin_error(action: &'static str, topic: &str, source: tonic::Status) -> TopicStepError {
    TopicStepError::Admin {
        action,
        topic: topic.to_owned(),
        source,
    }
}

/// Whether the brokers refused on the merits (the request must change), as opposed to a transient failure.
fn is_rejection(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange
    )
}

/// The Ready=False condition for a CreateTopic/AlterTopic the brokers
/// refused on the merits (`call` names it), or None for a transient failure.
/// A mirror policy's refusal is PolicyViolation: the spec is not overridden.
fn refusal(call: &str, status: &tonic::Status) -> Option<(Reason, String)> {
    let message = format!("{call}: {}", status.message());
    if is_policy_violation(status) {
        Some((Reason::PolicyViolation, message))
    } else {
        is_rejection(status).then_some((Reason::BrokerRejected, message))
    }
}

/// When a refused Topic is looked at again: after the resync period when a
/// mirror policy refused it or governs it (the policy, or what it asks for
/// with mode All, may change without the Topic changing, e.g. while brokers
/// are added or removed), otherwise slowly (only a spec change can fix it).
fn refusal_requeue(reason: Reason, governed: bool, ctx: &Context) -> std::time::Duration {
    if reason == Reason::PolicyViolation || governed {
        ctx.settings.resync_period
    } else {
        SLOW_REQUEUE
    }
}

/// Creates or repairs the topic and reports it.
///
/// 1. cluster missing → ClusterNotFound; invalid → ClusterNotReady (both requeued, no error);
/// 2. resolve the topic from the spec; a replication factor above the broker count → InvalidReplicationFactor;
/// 3. connect to a broker; none answers → ClusterNotReady, requeued;
/// 4. DescribeTopic: missing → CreateTopic with what the spec sets (the
///    brokers fill in the rest from the governing mirror policy or their
///    defaults); present → resolve again with the governing policy's
///    requirement, and AlterTopic what differs. A mirror policy refusing →
///    PolicyViolation, the brokers refusing otherwise → BrokerRejected (both
///    requeued after the resync period for a topic a policy governs, else
///    slowly); if the spec did not change since the last reconcile,
///    a create or alter repairs drift and emits an Event (an alter that only
///    brings fields the spec leaves unset to a governing policy is not drift:
///    Event FollowedMirrorPolicy);
/// 5. status from the brokers' description; requeue after the resync period.
async fn apply_topic(topic: &Topic, ctx: &Context) -> Result<Action, TopicStepError> {
    let generation = topic.metadata.generation;
    let namespace = topic.namespace().ok_or(TopicStepError::MissingNamespace)?;
    let cluster_name = &topic.spec.cluster_ref.name;
    let cluster =
        match lookup_cluster(&ctx.client, &namespace, cluster_name, &ctx.settings.build).await? {
            Ok(cluster) => cluster,
            Err(why) => {
                patch_not_ready(ctx, topic, why.reason, why.message.clone()).await?;
                return Ok(Action::requeue(
                    why.requeue_after(ctx.settings.resync_period),
                ));
            }
        };
    // The spec alone: a replication factor the cluster cannot hold needs no broker to tell.
    let desired = resolve_desired_topic(topic, &cluster, None);
    if let Some(message) = check_replication_factor(&desired, cluster.brokers) {
        patch_not_ready(ctx, topic, Reason::InvalidReplicationFactor, message).await?;
        return Ok(Action::requeue(SLOW_REQUEUE));
    }

    let mut admin = match connect_cluster(&ctx.client, &cluster).await? {
        Ok(admin) => admin,
        Err(why) => {
            patch_not_ready(ctx, topic, why.reason, why.message.clone()).await?;
            return Ok(Action::requeue(
                why.requeue_after(ctx.settings.resync_period),
            ));
        }
    };

    let spec_unchanged = generation.is_some()
        && topic.status.as_ref().and_then(|s| s.observed_generation) == generation;
    let was_created = topic
        .status
        .as_ref()
        .is_some_and(|s| s.partitions.is_some());
    let describe = DescribeTopicRequest {
        name: desired.name.clone(),
    };
    let (description, repaired) = match admin.describe_topic(describe).await {
        Ok(current) => {
            let current = current.into_inner();
            let policy = PolicyRequirement::from_description(&current);
            let desired = resolve_desired_topic(topic, &cluster, policy.as_ref());
            if let Some(message) = check_replication_factor(&desired, cluster.brokers) {
                patch_not_ready(ctx, topic, Reason::InvalidReplicationFactor, message).await?;
                return Ok(Action::requeue(refusal_requeue(
                    Reason::InvalidReplicationFactor,
                    policy.is_some(),
                    ctx,
                )));
            }
            match plan_alter(&desired, &current) {
                None => (current, None),
                Some(request) => {
                    let what = describe_alter(&request);
                    let follows_policy = follows_policy_only(topic, policy.as_ref(), &request);
                    tracing::info!(topic = %desired.name, change = %what, "altering topic");
                    match admin.alter_topic(request).await {
                        Ok(resp) => match policy.as_ref().filter(|_| follows_policy) {
                            // Not drift: the governing policy asks for something new.
                            Some(p) => {
                                let note = format!(
                                    "fields the spec leaves unset follow mirror policy {}: {what}",
                                    p.policy
                                );
                                publish_event(
                                    ctx,
                                    topic,
                                    EventType::Normal,
                                    "FollowedMirrorPolicy",
                                    note,
                                )
                                .await;
                                (resp.into_inner(), None)
                            }
                            None => (
                                resp.into_inner(),
                                spec_unchanged.then(|| format!("altered back to the spec: {what}")),
                            ),
                        },
                        Err(status) => {
                            let Some((reason, message)) =
                                refusal(&format!("AlterTopic ({what})"), &status)
                            else {
                                return Err(admin_error("AlterTopic", &desired.name, status));
                            };
                            patch_not_ready(ctx, topic, reason, message).await?;
                            return Ok(Action::requeue(refusal_requeue(
                                reason,
                                policy.is_some(),
                                ctx,
                            )));
                        }
                    }
                }
            }
        }
        Err(status) if status.code() == Code::NotFound => {
            let request = plan_create(topic, &desired);
            tracing::info!(topic = %desired.name, partitions = request.partitions, rf = request.replication_factor, min_isr = request.min_insync_replicas, "creating topic (0: resolved by the brokers)");
            match admin.create_topic(request).await {
                Ok(resp) => (
                    resp.into_inner(),
                    (spec_unchanged && was_created).then(|| {
                        "recreated: the topic had been deleted behind the operator's back"
                            .to_owned()
                    }),
                ),
                Err(status) => {
                    let Some((reason, message)) = refusal("CreateTopic", &status) else {
                        return Err(admin_error("CreateTopic", &desired.name, status));
                    };
                    patch_not_ready(ctx, topic, reason, message).await?;
                    return Ok(Action::requeue(refusal_requeue(reason, false, ctx)));
                }
            }
        }
        Err(status) => return Err(admin_error("DescribeTopic", &desired.name, status)),
    };
    if let Some(note) = repaired {
        tracing::warn!(topic = %desired.name, %note, "repaired topic drift");
        publish_event(ctx, topic, EventType::Warning, "DriftRepaired", note).await;
    }

    let mut status = topic.status.clone().unwrap_or_default();
    fill_from_description(&mut status, &description);
    let ready = ConditionUpdate::new(
        ConditionType::Ready,
        true,
        Reason::TopicReady,
        ready_message(&description),
    );
    set_condition(&mut status.conditions, ready, generation, &now());
    status.observed_generation = generation;
    patch_status_if_changed(ctx, topic, status).await?;
    ctx.reset_backoff(&key(topic));
    // While replicas are catching up (a replication factor change), report progress sooner.
    let next = if description.reassignment_percent < 100 {
        ctx.settings.resync_period.min(REASSIGNMENT_POLL)
    } else {
        ctx.settings.resync_period
    };
    Ok(Action::requeue(next))
}

/// Deletes the Kafka topic when the policy says so. A cluster that is gone (or
/// going) has nothing to delete from; brokers that exist but do not answer are
/// retried, so the resource stays until the topic is really gone.
async fn cleanup_topic(topic: &Topic, ctx: &Context) -> Result<Action, TopicStepError> {
    let name = topic.kafka_name().to_owned();
    if topic.spec.deletion_policy == DeletionPolicy::Retain {
        tracing::info!(topic = %name, "deletionPolicy Retain: keeping the Kafka topic");
        return Ok(Action::await_change());
    }
    let namespace = topic.namespace().ok_or(TopicStepError::MissingNamespace)?;
    let Some(mut admin) = connect_for_cleanup(
        &ctx.client,
        &namespace,
        &topic.spec.cluster_ref.name,
        &ctx.settings.build,
        &format!("topic {name}"),
    )
    .await?
    else {
        return Ok(Action::await_change());
    };
    match admin
        .delete_topic(DeleteTopicRequest { name: name.clone() })
        .await
    {
        Ok(_) => tracing::info!(topic = %name, "deleted Kafka topic"),
        Err(status) if status.code() == Code::NotFound => {}
        Err(status) => return Err(admin_error("DeleteTopic", &name, status)),
    }
    Ok(Action::await_change())
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// How often a topic whose replicas are catching up is looked at again.
const REASSIGNMENT_POLL: Duration = Duration::from_secs(5);

/// The Ready condition's message; names the reassignment progress while
/// replicas catch up.
fn ready_message(d: &TopicDescription) -> String {
    let mut message = format!(
        "{} partition(s), replication factor {}, min-ISR {}",
        d.partitions, d.replication_factor, d.min_insync_replicas
    );
    if !d.mirror_policy.is_empty() {
        message.push_str(&format!("; governed by mirror policy {}", d.mirror_policy));
    }
    if d.reassignment_percent < 100 {
        message.push_str(&format!(
            "; replicas catching up: {}% of partitions fully in sync",
            d.reassignment_percent
        ));
    }
    message
}

fn fill_from_description(status: &mut TopicStatus, d: &TopicDescription) {
    status.partitions = Some(d.partitions);
    status.replication_factor = Some(d.replication_factor);
    status.min_in_sync_replicas = Some(d.min_insync_replicas);
    status.under_replicated_partitions = d.under_replicated_partitions;
    status.under_min_isr_partitions = d.under_min_isr_partitions;
    status.mirror_policy = (!d.mirror_policy.is_empty()).then(|| d.mirror_policy.clone());
}

/// Ready=False with `reason`; the other status fields keep their last values.
async fn patch_not_ready(
    ctx: &Context,
    topic: &Topic,
    reason: Reason,
    message: String,
) -> Result<(), TopicStepError> {
    tracing::info!(topic = %key(topic), %reason, %message, "topic not ready");
    let mut status = topic.status.clone().unwrap_or_default();
    set_condition(
        &mut status.conditions,
        ConditionUpdate::new(ConditionType::Ready, false, reason, message),
        topic.metadata.generation,
        &now(),
    );
    status.observed_generation = topic.metadata.generation;
    patch_status_if_changed(ctx, topic, status).await
}

async fn patch_status_if_changed(
    ctx: &Context,
    topic: &Topic,
    status: TopicStatus,
) -> Result<(), TopicStepError> {
    if topic.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let namespace = topic.namespace().ok_or(TopicStepError::MissingNamespace)?;
    let name = topic.name_any();
    Api::<Topic>::namespaced(ctx.client.clone(), &namespace)
        .patch_status(
            &name,
            &PatchParams::default(),
            &status_merge_patch(topic.status.as_ref(), &status),
        )
        .await
        .map(|_| ())
        .map_err(|source| TopicStepError::PatchStatus {
            namespace,
            name,
            source,
        })
}

async fn publish_event(ctx: &Context, topic: &Topic, type_: EventType, reason: &str, note: String) {
    ctx.publish_event(&topic.object_ref(&()), type_, reason, note, "Reconcile")
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_message_reports_reassignment_progress() {
        let mut d = TopicDescription {
            name: "orders".into(),
            partitions: 6,
            replication_factor: 3,
            min_insync_replicas: 2,
            reassignment_percent: 100,
            ..Default::default()
        };
        assert_eq!(
            ready_message(&d),
            "6 partition(s), replication factor 3, min-ISR 2"
        );
        d.reassignment_percent = 50;
        assert!(
            ready_message(&d).ends_with("replicas catching up: 50% of partitions fully in sync")
        );
        d.mirror_policy = "ns/orders".into();
        assert!(
            ready_message(&d).contains("min-ISR 2; governed by mirror policy ns/orders; replicas"),
            "{}",
            ready_message(&d)
        );
    }

    #[test]
    fn a_policy_violation_is_its_own_condition_and_not_retried_fast() {
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert(
            crate::admin::ERROR_KIND_METADATA,
            crate::admin::POLICY_VIOLATION.parse().expect("ascii"),
        );
        let violation = tonic::Status::with_metadata(
            Code::FailedPrecondition,
            "mirror policy ns/orders asks for 3 replicas",
            metadata,
        );
        assert_eq!(
            refusal("CreateTopic", &violation),
            Some((
                Reason::PolicyViolation,
                "CreateTopic: mirror policy ns/orders asks for 3 replicas".to_owned()
            ))
        );
        let rejected = tonic::Status::invalid_argument("bad config");
        assert_eq!(
            refusal("AlterTopic (x=1)", &rejected).map(|(r, _)| r),
            Some(Reason::BrokerRejected)
        );
        assert_eq!(
            refusal("CreateTopic", &tonic::Status::unavailable("no controller")),
            None
        );
    }
}
