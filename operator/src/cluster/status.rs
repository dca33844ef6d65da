//! The observed state of a MessageCluster as status: broker entries and
//! bootstrap servers from the pods, and the Ready / Progressing / Degraded
//! conditions from what the reconciler observed. Pure: the reconciler fetches
//! the pods and asks the brokers, this module only decides.

use k8s_openapi::api::core::v1::Pod;

use super::resources::KAFKA_PORT;
use super::validate::ValidatedCluster;
use crate::admin::{pod_is_ready, pod_ordinal};
use crate::crd::conditions::{ConditionType, ConditionUpdate, Reason};
use crate::crd::{BrokerStatus, RolloutPhase, RolloutStatus};
use crate::settings::AdvertiseMode;

/// What one reconcile saw, as input to the conditions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterObservation {
    /// `spec.brokers`.
    pub brokers: i32,
    /// StatefulSet replicas before this reconcile (None: it did not exist).
    pub previous_replicas: Option<i32>,
    /// Broker pods passing readiness.
    pub ready_brokers: i32,
    /// Pods whose template hash differs from the desired StatefulSet's.
    pub outdated_pods: Vec<String>,
    /// The rolling restart, when one ran (`status.rollout`).
    pub rollout: Option<RolloutStatus>,
    /// Why a scale-down was refused, if it was.
    pub scale_down_blocked: Option<String>,
    /// How far the replicas of the brokers to remove have moved, while they move.
    pub scale_down_moving: Option<String>,
    /// Active controller reported by the brokers (-1: none); None: not asked or no answer.
    pub controller: Option<i32>,
    /// Under-replicated partitions reported by the brokers; None: not known.
    pub under_replicated_partitions: Option<usize>,
}

/// Decides the three conditions.
///
/// Ready: every broker (of the replicas kept) ready and, when the brokers
/// answered, a controller elected. Progressing, first match: scale-down
/// blocked (False, ScaleDownBlocked); replicas moving off brokers to remove
/// (True, Scaling); a roll halted (False, RollHalted),
/// blocked (True, RollBlocked) or under way (True, RollingUpdate, with the
/// roll's message); brokers missing (True, Creating for a new StatefulSet,
/// Scaling when its size changes); outdated pods not rolled yet (True,
/// RollingUpdate); else False, Reconciled. Degraded: ScaleDownBlocked, else
/// RollHalted, else UnderReplicated, else AsExpected.
pub fn plan_cluster_conditions(obs: &ClusterObservation) -> Vec<ConditionUpdate> {
    let kept = obs.scale_down_blocked.is_some() || obs.scale_down_moving.is_some();
    let target = match obs.previous_replicas {
        Some(previous) if kept => previous,
        _ => obs.brokers,
    };
    let no_controller = obs.controller == Some(-1);
    let ready = if obs.ready_brokers >= target && !no_controller {
        ConditionUpdate::new(
            ConditionType::Ready,
            true,
            Reason::BrokersReady,
            format!("{}/{target} brokers ready", obs.ready_brokers),
        )
    } else {
        let mut message = format!("{}/{target} brokers ready", obs.ready_brokers);
        if no_controller {
            message.push_str("; the metadata quorum has no controller");
        }
        ConditionUpdate::new(
            ConditionType::Ready,
            false,
            Reason::BrokersNotReady,
            message,
        )
    };

    let progressing = if let Some(why) = &obs.scale_down_blocked {
        ConditionUpdate::new(
            ConditionType::Progressing,
            false,
            Reason::ScaleDownBlocked,
            why.clone(),
        )
    } else if let Some(progress) = &obs.scale_down_moving {
        ConditionUpdate::new(
            ConditionType::Progressing,
            true,
            Reason::Scaling,
            progress.clone(),
        )
    } else if let Some(r) = obs
        .rollout
        .as_ref()
        .filter(|r| r.phase == RolloutPhase::Halted)
    {
        ConditionUpdate::new(
            ConditionType::Progressing,
            false,
            Reason::RollHalted,
            r.message.clone(),
        )
    } else if let Some(r) = obs
        .rollout
        .as_ref()
        .filter(|r| r.phase == RolloutPhase::Blocked)
    {
        ConditionUpdate::new(
            ConditionType::Progressing,
            true,
            Reason::RollBlocked,
            format!("{} (blocked by: {})", r.message, r.blocked_by.join(", ")),
        )
    } else if let Some(r) = obs
        .rollout
        .as_ref()
        .filter(|r| r.phase != RolloutPhase::Done)
    {
        ConditionUpdate::new(
            ConditionType::Progressing,
            true,
            Reason::RollingUpdate,
            r.message.clone(),
        )
    } else if obs.ready_brokers < target {
        let scaling = obs.previous_replicas.is_some_and(|p| p != obs.brokers);
        let reason = if scaling {
            Reason::Scaling
        } else {
            Reason::Creating
        };
        ConditionUpdate::new(
            ConditionType::Progressing,
            true,
            reason,
            format!(
                "waiting for {} of {target} brokers",
                target - obs.ready_brokers
            ),
        )
    } else if !obs.outdated_pods.is_empty() {
        ConditionUpdate::new(
            ConditionType::Progressing,
            true,
            Reason::RollingUpdate,
            format!(
                "pods run an outdated template and will be restarted one at a time: {}",
                obs.outdated_pods.join(", ")
            ),
        )
    } else {
        ConditionUpdate::new(
            ConditionType::Progressing,
            false,
            Reason::Reconciled,
            "live resources match the spec",
        )
    };

    let degraded = if let Some(why) = &obs.scale_down_blocked {
        ConditionUpdate::new(
            ConditionType::Degraded,
            true,
            Reason::ScaleDownBlocked,
            why.clone(),
        )
    } else if let Some(r) = obs
        .rollout
        .as_ref()
        .filter(|r| r.phase == RolloutPhase::Halted)
    {
        ConditionUpdate::new(
            ConditionType::Degraded,
            true,
            Reason::RollHalted,
            r.message.clone(),
        )
    } else if let Some(n) = obs.under_replicated_partitions.filter(|n| *n > 0) {
        ConditionUpdate::new(
            ConditionType::Degraded,
            true,
            Reason::UnderReplicated,
            format!("{n} partition(s) have fewer in-sync replicas than replicas"),
        )
    } else {
        ConditionUpdate::new(ConditionType::Degraded, false, Reason::AsExpected, "")
    };
    vec![ready, progressing, degraded]
}

/// One status entry per broker ordinal below `replicas`, from the pods found.
/// The address is the pod IP (pod-IP advertising; empty until the pod has one)
/// or the pod DNS name, with the Kafka port.
pub fn build_broker_statuses(
    cluster: &ValidatedCluster,
    replicas: i32,
    pods: &[Pod],
) -> Vec<BrokerStatus> {
    (0..replicas)
        .map(|id| {
            let pod = pods.iter().find(|p| pod_ordinal(cluster, p) == Some(id));
            let address = match cluster.advertise {
                AdvertiseMode::PodDns => format!("{}:{KAFKA_PORT}", cluster.pod_dns_name(id)),
                AdvertiseMode::PodIp => pod
                    .and_then(|p| p.status.as_ref())
                    .and_then(|s| s.pod_ip.as_deref())
                    .map(|ip| format!("{ip}:{KAFKA_PORT}"))
                    .unwrap_or_default(),
            };
            BrokerStatus {
                id,
                pod: cluster.pod_name(id),
                address,
                ready: pod.is_some_and(pod_is_ready),
                rack: None,
            }
        })
        .collect()
}

/// Comma-separated addresses of the brokers that have one; None when none has.
pub fn bootstrap_servers(brokers: &[BrokerStatus]) -> Option<String> {
    let addresses: Vec<&str> = brokers
        .iter()
        .map(|b| b.address.as_str())
        .filter(|a| !a.is_empty())
        .collect();
    (!addresses.is_empty()).then(|| addresses.join(","))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::cluster::resources::tests::{demo_cluster, validated};
    use crate::settings::BuildSettings;

    fn reasons(obs: &ClusterObservation) -> Vec<(bool, Reason)> {
        plan_cluster_conditions(obs)
            .into_iter()
            .map(|c| (c.status, c.reason))
            .collect()
    }

    fn obs(brokers: i32, previous: Option<i32>, ready: i32) -> ClusterObservation {
        ClusterObservation {
            brokers,
            previous_replicas: previous,
            ready_brokers: ready,
            ..ClusterObservation::default()
        }
    }

    #[test]
    fn new_cluster_is_creating_then_ready() {
        assert_eq!(
            reasons(&obs(3, None, 0)),
            vec![
                (false, Reason::BrokersNotReady),
                (true, Reason::Creating),
                (false, Reason::AsExpected)
            ]
        );
        let mut done = obs(3, Some(3), 3);
        done.controller = Some(0);
        assert_eq!(
            reasons(&done),
            vec![
                (true, Reason::BrokersReady),
                (false, Reason::Reconciled),
                (false, Reason::AsExpected)
            ]
        );
    }

    #[test]
    fn no_controller_is_not_ready() {
        let mut o = obs(1, Some(1), 1);
        o.controller = Some(-1);
        assert_eq!(reasons(&o)[0], (false, Reason::BrokersNotReady));
    }

    #[test]
    fn a_roll_shows_in_progressing_and_a_halted_roll_degrades() {
        let mut o = obs(3, Some(3), 2);
        let mut rollout = RolloutStatus {
            target_revision: "r2".into(),
            phase: RolloutPhase::WaitingForInSync,
            message: "restarting broker 2 (2 of 3): waiting for broker 2 to rejoin 4/6 in-sync replica sets".into(),
            ..RolloutStatus::default()
        };
        o.rollout = Some(rollout.clone());
        let c = plan_cluster_conditions(&o);
        assert_eq!((c[1].status, c[1].reason), (true, Reason::RollingUpdate));
        assert!(c[1].message.contains("rejoin 4/6"), "{}", c[1].message);
        rollout.phase = RolloutPhase::Blocked;
        rollout.blocked_by = vec!["orders-1".into(), "broker 2".into()];
        o.rollout = Some(rollout.clone());
        let c = plan_cluster_conditions(&o);
        assert_eq!((c[1].status, c[1].reason), (true, Reason::RollBlocked));
        assert!(
            c[1].message.contains("orders-1, broker 2"),
            "{}",
            c[1].message
        );
        rollout.phase = RolloutPhase::Halted;
        o.rollout = Some(rollout.clone());
        assert_eq!(
            reasons(&o)[1..],
            [(false, Reason::RollHalted), (true, Reason::RollHalted)]
        );
        rollout.phase = RolloutPhase::Done;
        o.rollout = Some(rollout);
        o.ready_brokers = 3;
        assert_eq!(reasons(&o)[1], (false, Reason::Reconciled));
    }

    #[test]
    fn scaling_up_and_outdated_pods() {
        assert_eq!(reasons(&obs(5, Some(3), 3))[1], (true, Reason::Scaling));
        let mut o = obs(3, Some(3), 3);
        o.outdated_pods = vec!["demo-0".into()];
        let conditions = plan_cluster_conditions(&o);
        assert_eq!(conditions[1].reason, Reason::RollingUpdate);
        assert!(conditions[1].message.contains("demo-0"));
        assert!(
            conditions[0].status,
            "an outdated but ready cluster is still Ready"
        );
    }

    #[test]
    fn blocked_scale_down_keeps_the_old_target() {
        let mut o = obs(1, Some(3), 3);
        o.scale_down_blocked = Some("broker 2 holds 4 replicas".into());
        assert_eq!(
            reasons(&o),
            vec![
                (true, Reason::BrokersReady),
                (false, Reason::ScaleDownBlocked),
                (true, Reason::ScaleDownBlocked)
            ]
        );
    }

    #[test]
    fn under_replication_degrades() {
        let mut o = obs(3, Some(3), 3);
        o.under_replicated_partitions = Some(2);
        assert_eq!(reasons(&o)[2], (true, Reason::UnderReplicated));
    }

    fn pod(name: &str, ip: Option<&str>, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                pod_ip: ip.map(str::to_owned),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn broker_statuses_and_bootstrap_servers() {
        let pods = [
            pod("demo-0", Some("10.1.0.4"), true),
            pod("demo-2", None, false),
        ];
        let ip = validated(
            &demo_cluster(),
            &BuildSettings {
                advertise: AdvertiseMode::PodIp,
                ..BuildSettings::default()
            },
        );
        let brokers = build_broker_statuses(&ip, 3, &pods);
        assert_eq!(brokers.len(), 3);
        assert_eq!(brokers[0].address, "10.1.0.4:9092");
        assert!(brokers[0].ready);
        assert_eq!(brokers[1].pod, "demo-1");
        assert!(!brokers[1].ready);
        assert_eq!(
            bootstrap_servers(&brokers).as_deref(),
            Some("10.1.0.4:9092")
        );

        let dns = validated(&demo_cluster(), &BuildSettings::default());
        let brokers = build_broker_statuses(&dns, 2, &pods);
        assert_eq!(
            bootstrap_servers(&brokers).as_deref(),
            Some("demo-0.demo-brokers.ns.svc:9092,demo-1.demo-brokers.ns.svc:9092")
        );
        assert_eq!(bootstrap_servers(&[]), None);
    }
}
