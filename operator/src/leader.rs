//! Leader election on a coordination.k8s.io/v1 Lease (kube has none built in).
//! `decide` is the pure rule (Lease + now → create, acquire, renew or wait);
//! `run_leader_election` carries it out every [`RENEW_INTERVAL`] with
//! resourceVersion-guarded writes, so two replicas never both win the same
//! Lease, and publishes [`LeaderState`] on a watch channel. Starting and
//! stopping the controllers on that state is the caller's job.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

/// Name of the Lease in the operator's namespace.
pub const LEASE_NAME: &str = "tideway-operator";
/// How long a holder's claim lasts without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews (and a standby looks).
pub const RENEW_INTERVAL: Duration = Duration::from_secs(2);
/// A leader that could not renew for this long stops reconciling, well before
/// the Lease expires and another replica may take it.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);

/// What this replica is, as published to the rest of the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaderState {
    /// No answer from the API server yet.
    Unknown,
    /// This replica holds the Lease: reconcile.
    Leader,
    /// Another replica holds it: stand by.
    Standby,
}

/// What to do with the Lease now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseDecision {
    /// There is no Lease: create it, held by us.
    Create,
    /// Free or expired: take it (a new transition).
    Acquire,
    /// Ours: renew it.
    Renew,
    /// Someone else holds a live claim.
    Wait { holder: String },
}

/// Decides from the Lease as read and the current time.
///
/// 1. no Lease → create; 2. we hold it → renew; 3. no holder → acquire;
/// 4. renewTime + leaseDurationSeconds < now (or no renewTime) → acquire;
/// 5. otherwise wait for the holder.
pub fn decide(lease: Option<&Lease>, identity: &str, now: Timestamp) -> LeaseDecision {
    let Some(lease) = lease else {
        return LeaseDecision::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder == identity {
        return LeaseDecision::Renew;
    }
    if holder.is_empty() {
        return LeaseDecision::Acquire;
    }
    let duration = SignedDuration::from_secs(i64::from(
        spec.lease_duration_seconds
            .unwrap_or(LEASE_DURATION.as_secs() as i32)
            .max(1),
    ));
    match spec.renew_time {
        Some(MicroTime(renewed)) if renewed + duration >= now => LeaseDecision::Wait { holder },
        _ => LeaseDecision::Acquire,
    }
}

/// The Lease as we write it for `decision` (Create, Acquire or Renew).
fn claimed(mut lease: Lease, identity: &str, now: Timestamp, decision: &LeaseDecision) -> Lease {
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if *decision != LeaseDecision::Renew {
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.holder_identity = Some(identity.to_owned());
    spec.lease_duration_seconds = Some(LEASE_DURATION.as_secs() as i32);
    spec.renew_time = Some(MicroTime(now));
    lease
}

/// Tries once: reads the Lease, decides, writes. `Ok(true)` when we hold it now.
/// A conflict (another replica wrote first) is `Ok(false)`, not an error.
pub async fn try_acquire_or_renew(api: &Api<Lease>, identity: &str) -> Result<bool, kube::Error> {
    let lease = api.get_opt(LEASE_NAME).await?;
    let now = Timestamp::now();
    let decision = decide(lease.as_ref(), identity, now);
    let result = match (&decision, lease) {
        (LeaseDecision::Wait { .. }, _) => return Ok(false),
        (LeaseDecision::Create, _) | (_, None) => {
            let fresh = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.to_owned()),
                    ..ObjectMeta::default()
                },
                spec: None,
            };
            api.create(
                &PostParams::default(),
                &claimed(fresh, identity, now, &LeaseDecision::Create),
            )
            .await
        }
        // `replace` sends the resourceVersion we read: a concurrent writer makes it fail with 409.
        (_, Some(lease)) => {
            api.replace(
                LEASE_NAME,
                &PostParams::default(),
                &claimed(lease, identity, now, &decision),
            )
            .await
        }
    };
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(err) => Err(err),
    }
}

/// Gives the Lease up on shutdown so a standby takes over at once.
async fn release(api: &Api<Lease>, identity: &str) {
    let Ok(Some(mut lease)) = api.get_opt(LEASE_NAME).await else {
        return;
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(identity) {
        return;
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    match api
        .replace(LEASE_NAME, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => tracing::info!(lease = LEASE_NAME, "released the leader Lease"),
        Err(err) => {
            tracing::warn!(lease = LEASE_NAME, error = %err, "could not release the leader Lease")
        }
    }
}

/// Runs the election until `shutdown` fires, publishing the state on `state`.
///
/// Steps, every [`RENEW_INTERVAL`]: 1. read the Lease and decide; 2. write our
/// claim guarded by resourceVersion; 3. on success publish Leader; on a live
/// foreign claim or a lost race publish Standby; 4. on an API error keep the
/// previous state, except that a leader whose last renewal is older than
/// [`RENEW_DEADLINE`] steps down (Standby) at once. On shutdown the Lease is released.
pub async fn run_leader_election(
    client: Client,
    namespace: String,
    identity: String,
    state: watch::Sender<LeaderState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &namespace);
    let mut last_renewal: Option<tokio::time::Instant> = None;
    loop {
        let was_leader = *state.borrow() == LeaderState::Leader;
        match try_acquire_or_renew(&api, &identity).await {
            Ok(true) => {
                last_renewal = Some(tokio::time::Instant::now());
                if !was_leader {
                    tracing::info!(lease = LEASE_NAME, %namespace, %identity, "became leader");
                }
                state.send_replace(LeaderState::Leader);
            }
            Ok(false) => {
                if was_leader {
                    tracing::warn!(lease = LEASE_NAME, %identity, "lost the leader Lease; standing by");
                }
                last_renewal = None;
                state.send_replace(LeaderState::Standby);
            }
            Err(err) => {
                tracing::warn!(lease = LEASE_NAME, error = %err, "leader election: cannot read or write the Lease");
                let expired = last_renewal.is_none_or(|t| t.elapsed() > RENEW_DEADLINE);
                if was_leader && expired {
                    tracing::error!(lease = LEASE_NAME, "renewal deadline passed; stepping down");
                    state.send_replace(LeaderState::Standby);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RENEW_INTERVAL) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    if *state.borrow() == LeaderState::Leader {
        state.send_replace(LeaderState::Standby);
        release(&api, &identity).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed_at: Option<i64>, duration: i32) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                renew_time: renewed_at
                    .map(|s| MicroTime(Timestamp::from_second(s).expect("timestamp"))),
                lease_duration_seconds: Some(duration),
                ..LeaseSpec::default()
            }),
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("timestamp")
    }

    #[test]
    fn missing_lease_is_created() {
        assert_eq!(decide(None, "a", at(100)), LeaseDecision::Create);
    }

    #[test]
    fn own_lease_is_renewed_even_if_expired() {
        assert_eq!(
            decide(Some(&lease(Some("a"), Some(10), 15)), "a", at(100)),
            LeaseDecision::Renew
        );
    }

    #[test]
    fn free_lease_is_acquired() {
        assert_eq!(
            decide(Some(&lease(None, Some(99), 15)), "a", at(100)),
            LeaseDecision::Acquire
        );
        assert_eq!(
            decide(Some(&lease(Some(""), None, 15)), "a", at(100)),
            LeaseDecision::Acquire
        );
    }

    #[test]
    fn live_foreign_claim_waits_until_it_expires() {
        let l = lease(Some("b"), Some(100), 15);
        assert_eq!(
            decide(Some(&l), "a", at(110)),
            LeaseDecision::Wait { holder: "b".into() }
        );
        assert_eq!(
            decide(Some(&l), "a", at(115)),
            LeaseDecision::Wait { holder: "b".into() }
        );
        assert_eq!(decide(Some(&l), "a", at(116)), LeaseDecision::Acquire);
    }

    #[test]
    fn foreign_claim_without_renew_time_is_taken() {
        assert_eq!(
            decide(Some(&lease(Some("b"), None, 15)), "a", at(1)),
            LeaseDecision::Acquire
        );
    }

    #[test]
    fn claims_count_transitions_only_on_acquire() {
        let acquired = claimed(
            lease(Some("b"), Some(1), 15),
            "a",
            at(50),
            &LeaseDecision::Acquire,
        );
        let spec = acquired.spec.clone().expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_transitions, Some(1));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(50))));
        let renewed = claimed(acquired, "a", at(52), &LeaseDecision::Renew);
        let spec = renewed.spec.expect("spec");
        assert_eq!(spec.lease_transitions, Some(1));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(50))));
        assert_eq!(spec.renew_time, Some(MicroTime(at(52))));
        assert_eq!(spec.lease_duration_seconds, Some(15));
    }
}
