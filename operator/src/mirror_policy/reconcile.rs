//! The MirrorPolicy reconciler, wrapped in kube's `finalizer` so the brokers
//! forget the policy before the resource goes (the topics it governed stay as
//! they are). Apply: find the cluster → connect to a broker's admin API →
//! PutMirrorPolicy (`build_policy`, pure) → DescribeMirrorPolicies → status
//! (`build_status`, pure) → requeue (`plan_requeue`). Enforcing the policy is
//! the brokers' business.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Resource, ResourceExt};
use tideway_admin_api::v1::{
    DeleteMirrorPolicyRequest, DescribeMirrorPoliciesRequest, PutMirrorPolicyRequest,
};
use tonic::Code;

use super::plan::{PROGRESS_POLL, build_policy, build_status, describe_policy, plan_requeue};
use crate::cluster::reconcile::format_chain;
use crate::cluster_ref::{ClusterRefError, connect_cluster, connect_for_cleanup, lookup_cluster};
use crate::context::{Context, SLOW_REQUEUE, status_merge_patch};
use crate::crd::conditions::{
    ConditionType, ConditionUpdate, Reason, condition_status, set_condition,
};
use crate::crd::{MirrorPolicy, MirrorPolicyStatus};

/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "mirrorpolicy";
/// Finalizer that holds a MirrorPolicy until the brokers have forgotten it.
pub const MIRROR_POLICY_FINALIZER: &str = "tideway.dev/mirror-policy";

/// A step of the MirrorPolicy reconcile failed (transient: retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum MirrorPolicyStepError {
    #[error("MirrorPolicy has no namespace")]
    MissingNamespace,
    #[error(transparent)]
    ClusterRef(#[from] ClusterRefError),
    #[error("{action} of mirror policy {policy}")]
    Admin {
        action: &'static str,
        policy: String,
        #[source]
        source: tonic::Status,
    },
    #[error("the brokers do not describe mirror policy {policy} right after holding it")]
    MissingFromDescription { policy: String },
    #[error("patching the status of MirrorPolicy {namespace}/{name}")]
    PatchStatus {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The MirrorPolicy reconcile failed, in a step or while adding/removing the finalizer.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ReconcileMirrorPolicyError(
    #[from] kube::runtime::finalizer::Error<MirrorPolicyStepError>,
);

impl ReconcileMirrorPolicyError {
    /// Bounded label for the errors metric.
    pub fn metric_reason(&self) -> &'static str {
        use kube::runtime::finalizer::Error as F;
        match &self.0 {
            F::ApplyFailed(e) | F::CleanupFailed(e) => match e {
                MirrorPolicyStepError::MissingNamespace => "MissingNamespace",
                MirrorPolicyStepError::ClusterRef(e) => e.metric_reason(),
                MirrorPolicyStepError::Admin { .. } => "Admin",
                MirrorPolicyStepError::MissingFromDescription { .. } => "MissingFromDescription",
                MirrorPolicyStepError::PatchStatus { .. } => "PatchStatus",
            },
            _ => "Finalizer",
        }
    }
}

/// Reconciles one MirrorPolicy through the finalizer (Apply or Cleanup).
pub async fn reconcile_mirror_policy(
    policy: Arc<MirrorPolicy>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileMirrorPolicyError> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let namespace = policy.namespace().unwrap_or_default();
    let api: Api<MirrorPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let action = finalizer(&api, MIRROR_POLICY_FINALIZER, policy, |event| async {
        match event {
            Event::Apply(policy) => apply_mirror_policy(&policy, &ctx).await,
            Event::Cleanup(policy) => cleanup_mirror_policy(&policy, &ctx).await,
        }
    })
    .await?;
    Ok(action)
}

/// Counts, logs and retries a failed MirrorPolicy reconcile with per-object backoff.
pub fn mirror_policy_error_policy(
    policy: Arc<MirrorPolicy>,
    error: &ReconcileMirrorPolicyError,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics
        .reconcile_failed(CONTROLLER, error.metric_reason());
    let key = key(&policy);
    let delay = ctx.backoff(&key);
    tracing::warn!(policy = %key, error = %format_chain(error), retry_in = ?delay, "MirrorPolicy reconcile failed");
    Action::requeue(delay)
}

fn key(policy: &MirrorPolicy) -> String {
    format!(
        "MirrorPolicy/{}/{}",
        policy.namespace().unwrap_or_default(),
        policy.name_any()
    )
}

fn admin_error(action: &'static str, policy: &str, source: tonic::Status) -> MirrorPolicyStepError {
    MirrorPolicyStepError::Admin {
        action,
        policy: policy.to_owned(),
        source,
    }
}

/// Hands the policy to the brokers and reports what they say about it.
///
/// 1. cluster missing → ClusterNotFound; invalid → ClusterNotReady (requeued, no error);
/// 2. connect to a broker; none answers → ClusterNotReady, requeued soon;
/// 3. PutMirrorPolicy; refused on the merits (INVALID_ARGUMENT naming the
///    field, FAILED_PRECONDITION) → BrokerRejected, requeued slowly; a change
///    (`changed`) is published as an Event `PolicyApplied`;
/// 4. DescribeMirrorPolicies for this policy → status: governed and
///    non-compliant topics, reassignments, ties; Ready, Compliant, Conflict;
/// 5. requeue soon while replicas move for it, else after the resync period.
///
/// At most one run per [`PROGRESS_POLL`] for the same generation.
async fn apply_mirror_policy(
    policy: &MirrorPolicy,
    ctx: &Context,
) -> Result<Action, MirrorPolicyStepError> {
    // Its own status write (e.g. a reassignment's progress) wakes it again
    // through the watch: look at most once per PROGRESS_POLL unless the spec changed.
    let fingerprint = policy.metadata.generation.unwrap_or(0) as u64;
    if let Some(wait) = ctx.throttle(&key(policy), fingerprint, PROGRESS_POLL) {
        return Ok(Action::requeue(wait));
    }
    let namespace = policy
        .namespace()
        .ok_or(MirrorPolicyStepError::MissingNamespace)?;
    let cluster_name = &policy.spec.cluster_ref.name;
    let cluster =
        match lookup_cluster(&ctx.client, &namespace, cluster_name, &ctx.settings.build).await? {
            Ok(cluster) => cluster,
            Err(why) => {
                patch_not_ready(ctx, policy, why.reason, why.message.clone()).await?;
                return Ok(Action::requeue(
                    why.requeue_after(ctx.settings.resync_period),
                ));
            }
        };
    let mut admin = match connect_cluster(&ctx.client, &cluster).await? {
        Ok(admin) => admin,
        Err(why) => {
            patch_not_ready(ctx, policy, why.reason, why.message.clone()).await?;
            return Ok(Action::requeue(
                why.requeue_after(ctx.settings.resync_period),
            ));
        }
    };

    let wire = build_policy(policy);
    let name = wire.name.clone();
    let put = PutMirrorPolicyRequest { policy: Some(wire) };
    let changed = match admin.put_mirror_policy(put).await {
        Ok(resp) => resp.into_inner().changed,
        Err(status)
            if matches!(
                status.code(),
                Code::InvalidArgument | Code::FailedPrecondition
            ) =>
        {
            let message = format!("PutMirrorPolicy: {}", status.message());
            patch_not_ready(ctx, policy, Reason::BrokerRejected, message).await?;
            return Ok(Action::requeue(SLOW_REQUEUE));
        }
        Err(status) => return Err(admin_error("PutMirrorPolicy", &name, status)),
    };
    if changed {
        let summary = describe_policy(policy);
        let first = !policy.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.reason == Reason::PolicyApplied.as_str())
        });
        let verb = if first { "applied" } else { "changed" };
        tracing::info!(policy = %name, cluster = %cluster.name, %summary, "mirror policy {verb}");
        // The recorder folds Events with the same reason and action into one
        // series that keeps the first note: the action names the generation.
        ctx.publish_event(
            &policy.object_ref(&()),
            EventType::Normal,
            "PolicyApplied",
            format!(
                "mirror policy {name} {verb} on MessageCluster {}: {summary}",
                cluster.name
            ),
            &format!("ApplyGeneration{}", policy.metadata.generation.unwrap_or(0)),
        )
        .await;
    }

    let describe = DescribeMirrorPoliciesRequest {
        names: vec![name.clone()],
    };
    let described = admin
        .describe_mirror_policies(describe)
        .await
        .map_err(|status| admin_error("DescribeMirrorPolicies", &name, status))?
        .into_inner()
        .policies
        .into_iter()
        .find(|p| p.policy.as_ref().is_none_or(|w| w.name == name))
        .ok_or_else(|| MirrorPolicyStepError::MissingFromDescription {
            policy: name.clone(),
        })?;
    let status = build_status(
        policy.status.as_ref(),
        policy,
        &cluster.name,
        &described,
        &now(),
    );
    if condition_status(&status.conditions, ConditionType::Compliant) == Some("False") {
        tracing::info!(policy = %name, non_compliant = status.non_compliant_topic_count, "topics break the mirror policy");
    }
    patch_status_if_changed(ctx, policy, status).await?;
    ctx.reset_backoff(&key(policy));
    Ok(Action::requeue(plan_requeue(
        policy,
        &described,
        ctx.settings.resync_period,
    )))
}

/// Asks the brokers to forget the policy; the topics it governed keep their
/// replicas. A cluster that is gone (or going, or without broker pods) has
/// nothing to forget; brokers that exist but do not answer are retried, so
/// the resource stays until the policy is really gone.
async fn cleanup_mirror_policy(
    policy: &MirrorPolicy,
    ctx: &Context,
) -> Result<Action, MirrorPolicyStepError> {
    let name = policy.broker_name();
    let namespace = policy
        .namespace()
        .ok_or(MirrorPolicyStepError::MissingNamespace)?;
    let Some(mut admin) = connect_for_cleanup(
        &ctx.client,
        &namespace,
        &policy.spec.cluster_ref.name,
        &ctx.settings.build,
        &format!("mirror policy {name}"),
    )
    .await?
    else {
        return Ok(Action::await_change());
    };
    match admin
        .delete_mirror_policy(DeleteMirrorPolicyRequest { name: name.clone() })
        .await
    {
        Ok(resp) if resp.get_ref().deleted => {
            tracing::info!(policy = %name, "mirror policy deleted from the brokers")
        }
        Ok(_) => {}
        Err(status) if status.code() == Code::NotFound => {}
        Err(status) => return Err(admin_error("DeleteMirrorPolicy", &name, status)),
    }
    Ok(Action::await_change())
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Ready=False with `reason`; the other status fields keep their last values.
async fn patch_not_ready(
    ctx: &Context,
    policy: &MirrorPolicy,
    reason: Reason,
    message: String,
) -> Result<(), MirrorPolicyStepError> {
    tracing::info!(policy = %key(policy), %reason, %message, "mirror policy not ready");
    let mut status = policy.status.clone().unwrap_or_default();
    set_condition(
        &mut status.conditions,
        ConditionUpdate::new(ConditionType::Ready, false, reason, message),
        policy.metadata.generation,
        &now(),
    );
    status.observed_generation = policy.metadata.generation;
    patch_status_if_changed(ctx, policy, status).await
}

/// Writes the status only when it differs from the one read (no write, no event, no loop).
async fn patch_status_if_changed(
    ctx: &Context,
    policy: &MirrorPolicy,
    status: MirrorPolicyStatus,
) -> Result<(), MirrorPolicyStepError> {
    if policy.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let namespace = policy
        .namespace()
        .ok_or(MirrorPolicyStepError::MissingNamespace)?;
    let name = policy.name_any();
    Api::<MirrorPolicy>::namespaced(ctx.client.clone(), &namespace)
        .patch_status(
            &name,
            &PatchParams::default(),
            &status_merge_patch(policy.status.as_ref(), &status),
        )
        .await
        .map(|_| ())
        .map_err(|source| MirrorPolicyStepError::PatchStatus {
            namespace,
            name,
            source,
        })
}
