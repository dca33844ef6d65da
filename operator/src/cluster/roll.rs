//! The roll planner: given what the operator sees of a MessageCluster's
//! brokers, the single next step of a rolling restart. Pure: no I/O, no
//! clock; `rollout` gathers the input (pods, DescribeCluster, RestartRisk, the
//! roll's saved progress in `status.rollout`), carries out the action and
//! calls again.
//!
//! [`plan_roll`] decides, in order:
//! 1. while a roll is under way (a broker outdated or being restarted), a
//!    pod already on the target revision that is stuck (CrashLoopBackOff,
//!    ImagePullBackOff, unschedulable) halts it: the new revision does not
//!    work, and restarting the next broker would take it down too (a stuck
//!    pod with nothing to roll, e.g. a new broker of a scale-up, is the
//!    Ready condition's business, not a roll's);
//! 2. the broker restarted last must be back first: its pod recreated on the
//!    target revision (if the old pod is still there and not terminating, the
//!    delete is issued again), Ready, the broker alive and in every ISR it was
//!    in before the restart (not just Ready: recovering a large log takes
//!    minutes), then undrained, and only then is it counted as updated;
//! 3. a broker on the target revision that is still draining, Ready and fully
//!    in sync (a drain whose Undrain was lost) is undrained;
//! 4. nothing outdated left: done;
//! 5. an outdated pod that is stuck or not Ready serves nothing: it restarts
//!    first, with no ISR check;
//! 6. no Ready broker restarts while another broker is down (blocked, naming
//!    it) or catching up (wait);
//! 7. the metadata quorum must keep a majority of reachable voters without
//!    the candidate; the quorum's leader rolls last;
//! 8. a Ready broker restarts only when its RestartRisk is safe (no
//!    partition under its min-ISR or offline; partitions whose replication
//!    factor is at most their min-ISR never block, the broker reports them
//!    apart); when no outdated broker is safe the roll is blocked, naming
//!    the partitions;
//! 9. the chosen broker is drained first (leaderships move to in-sync
//!    replicas) and restarted once it leads nothing or the drain ran out of
//!    time (controlled shutdown on SIGTERM moves what is left).

use std::collections::BTreeSet;

use crate::crd::RolloutPhase;

/// Why a pod cannot start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stuck {
    CrashLoopBackOff,
    ImagePullBackOff,
    Unschedulable,
    /// The container cannot be created (bad config, missing volume).
    CreateFailed,
}

impl Stuck {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CrashLoopBackOff => "CrashLoopBackOff",
            Self::ImagePullBackOff => "ImagePullBackOff",
            Self::Unschedulable => "Unschedulable",
            Self::CreateFailed => "CreateContainerError",
        }
    }
}

/// One broker as the operator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerView {
    pub id: i32,
    /// The revision (template hash) its pod was created from; `None` while
    /// the pod does not exist. A pod asked to restart (annotation) carries a
    /// revision that matches no template.
    pub revision: Option<String>,
    pub ready: bool,
    /// The pod is being deleted.
    pub terminating: bool,
    pub stuck: Option<Stuck>,
    /// Registered and heartbeating (DescribeCluster).
    pub alive: bool,
    pub draining: bool,
    /// Partitions it leads now.
    pub leaderships: usize,
    /// ISRs it belongs to now, and of how many replica sets it is a member.
    pub in_sync: usize,
    pub replica_sets: usize,
    /// RestartRisk, when the caller asked for it.
    pub risk: Option<Risk>,
}

/// RestartRisk for one broker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Risk {
    pub safe: bool,
    /// `topic-N` of the partitions that would go under min-ISR or offline.
    pub blocking: Vec<String>,
    /// `topic-N` of the partitions whose replication factor is at most their
    /// min-ISR: no restart keeps them writable, so they never block (reported).
    pub never_safe: Vec<String>,
}

/// The metadata quorum (DescribeCluster).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quorum {
    pub voters: BTreeSet<i32>,
    pub reachable: BTreeSet<i32>,
    pub leader: Option<i32>,
}

/// What the roll has done so far (kept in the MessageCluster's status).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub target_revision: String,
    pub updated: BTreeSet<i32>,
    /// The broker whose pod was deleted, with the ISRs it was in before.
    pub current: Option<(i32, usize)>,
    /// The drain of the broker being drained has run out of time.
    pub drain_expired: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Every broker runs the target revision.
    Done,
    /// Nothing to do until the reason is gone.
    Wait { phase: RolloutPhase, reason: String },
    /// Move this broker's leaderships away before restarting it.
    Drain(i32),
    /// Delete this broker's pod (it has been drained, or serves nothing).
    Restart { broker: i32, unready: bool },
    /// The broker is back and in sync (or was left draining): let it lead again.
    Undrain(i32),
    /// The restarted broker is back, in sync and not draining: count it as updated.
    Finished(i32),
    /// No outdated broker can restart without losing availability.
    Blocked {
        partitions: Vec<String>,
        brokers: Vec<i32>,
        reason: String,
    },
    /// The target revision does not start: stop rolling.
    Halted { broker: i32, stuck: Stuck },
}

fn wait(phase: RolloutPhase, reason: String) -> Action {
    Action::Wait { phase, reason }
}

/// The next step; see the module doc for the rules in order.
pub fn plan_roll(brokers: &[BrokerView], quorum: &Quorum, progress: &Progress) -> Action {
    let target = progress.target_revision.as_str();
    let on_target = |b: &BrokerView| b.revision.as_deref() == Some(target);
    let in_sync = |b: &BrokerView| b.ready && b.alive && b.in_sync >= b.replica_sets;
    let outdated: Vec<&BrokerView> = brokers
        .iter()
        .filter(|b| b.revision.is_some() && !on_target(b) && !progress.updated.contains(&b.id))
        .collect();
    // 1.
    let under_way = !outdated.is_empty() || progress.current.is_some();
    if let Some(b) = brokers
        .iter()
        .find(|b| under_way && on_target(b) && b.stuck.is_some())
    {
        return Action::Halted {
            broker: b.id,
            stuck: b.stuck.unwrap_or(Stuck::CrashLoopBackOff),
        };
    }
    // 2.
    if let Some((id, in_sync_before)) = progress.current {
        let Some(b) = brokers.iter().find(|b| b.id == id && b.revision.is_some()) else {
            return wait(
                RolloutPhase::Restarting,
                format!("waiting for the pod of broker {id} to be recreated"),
            );
        };
        if !on_target(b) {
            if b.terminating {
                return wait(
                    RolloutPhase::Restarting,
                    format!("broker {id} is shutting down"),
                );
            }
            return Action::Restart {
                broker: id,
                unready: !b.ready,
            };
        }
        if !b.ready || !b.alive {
            return wait(
                RolloutPhase::WaitingForReady,
                format!("waiting for broker {id} to become ready and rejoin the cluster"),
            );
        }
        if b.in_sync < in_sync_before {
            return wait(
                RolloutPhase::WaitingForInSync,
                format!(
                    "waiting for broker {id} to rejoin {}/{in_sync_before} in-sync replica sets",
                    b.in_sync
                ),
            );
        }
        return if b.draining {
            Action::Undrain(id)
        } else {
            Action::Finished(id)
        };
    }
    // 3.
    if let Some(b) = brokers
        .iter()
        .find(|b| on_target(b) && b.draining && in_sync(b))
    {
        return Action::Undrain(b.id);
    }
    // 4.
    if outdated.is_empty() {
        return Action::Done;
    }
    // 5.
    if let Some(b) = outdated.iter().find(|b| b.stuck.is_some() || !b.ready) {
        return Action::Restart {
            broker: b.id,
            unready: true,
        };
    }
    // 6.
    let unsafe_partitions = || -> Vec<String> {
        let set: BTreeSet<&String> = outdated
            .iter()
            .filter_map(|b| b.risk.as_ref())
            .filter(|r| !r.safe)
            .flat_map(|r| r.blocking.iter())
            .collect();
        set.into_iter().cloned().collect()
    };
    let down: Vec<i32> = brokers
        .iter()
        .filter(|b| !b.ready || !b.alive)
        .map(|b| b.id)
        .collect();
    if !down.is_empty() {
        return Action::Blocked {
            partitions: unsafe_partitions(),
            reason: format!(
                "broker(s) {} down: no other broker restarts until they are back",
                join_ids(&down)
            ),
            brokers: down,
        };
    }
    if let Some(b) = brokers.iter().find(|b| !in_sync(b)) {
        return wait(
            RolloutPhase::WaitingForInSync,
            format!(
                "broker {} is catching up ({}/{} in-sync replica sets)",
                b.id, b.in_sync, b.replica_sets
            ),
        );
    }
    // 7. Candidates in id order, the quorum leader last.
    let mut candidates = outdated;
    candidates.sort_by_key(|b| (quorum.leader == Some(b.id), b.id));
    let majority = quorum.voters.len() / 2 + 1;
    let keeps_quorum = |id: i32| {
        quorum.voters.is_empty()
            || quorum.reachable.iter().filter(|v| **v != id).count() >= majority
    };
    // 8.
    let mut blocking = BTreeSet::new();
    let mut blocking_brokers = Vec::new();
    let mut reasons = Vec::new();
    for b in candidates {
        if !keeps_quorum(b.id) {
            blocking_brokers.push(b.id);
            reasons.push(format!(
                "broker {}: the metadata quorum would lose its majority",
                b.id
            ));
            continue;
        }
        match &b.risk {
            None => {
                blocking_brokers.push(b.id);
                reasons.push(format!("broker {}: its restart risk is unknown", b.id));
                continue;
            }
            Some(risk) if !risk.safe => {
                blocking.extend(risk.blocking.iter().cloned());
                reasons.push(format!(
                    "broker {}: partitions would go under min-ISR or offline",
                    b.id
                ));
                continue;
            }
            Some(_) => {}
        }
        // 9.
        if !b.draining {
            return Action::Drain(b.id);
        }
        if b.leaderships == 0 || progress.drain_expired {
            return Action::Restart {
                broker: b.id,
                unready: false,
            };
        }
        return wait(
            RolloutPhase::Draining,
            format!(
                "draining broker {}: {} leaderships left",
                b.id, b.leaderships
            ),
        );
    }
    Action::Blocked {
        partitions: blocking.into_iter().collect(),
        brokers: blocking_brokers,
        reason: reasons.join("; "),
    }
}

fn join_ids(ids: &[i32]) -> String {
    ids.iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "old";
    const NEW: &str = "new";

    fn broker(id: i32, revision: &str) -> BrokerView {
        BrokerView {
            id,
            revision: Some(revision.into()),
            ready: true,
            terminating: false,
            stuck: None,
            alive: true,
            draining: false,
            leaderships: 2,
            in_sync: 6,
            replica_sets: 6,
            risk: Some(Risk {
                safe: true,
                ..Risk::default()
            }),
        }
    }

    fn three(revisions: [&str; 3]) -> Vec<BrokerView> {
        (0..3).map(|i| broker(i, revisions[i as usize])).collect()
    }

    fn quorum(leader: i32) -> Quorum {
        Quorum {
            voters: [0, 1, 2].into(),
            reachable: [0, 1, 2].into(),
            leader: Some(leader),
        }
    }

    fn progress() -> Progress {
        Progress {
            target_revision: NEW.into(),
            ..Progress::default()
        }
    }

    fn waits(action: &Action, phase: RolloutPhase, text: &str) -> bool {
        matches!(action, Action::Wait { phase: p, reason } if *p == phase && reason.contains(text))
    }

    #[test]
    fn a_ready_safe_broker_is_drained_then_restarted_the_quorum_leader_last() {
        let mut brokers = three([OLD, OLD, OLD]);
        // Broker 0 leads the quorum: 1 goes first.
        assert_eq!(
            plan_roll(&brokers, &quorum(0), &progress()),
            Action::Drain(1)
        );
        brokers[1].draining = true;
        assert!(waits(
            &plan_roll(&brokers, &quorum(0), &progress()),
            RolloutPhase::Draining,
            "2 leaderships left"
        ));
        brokers[1].leaderships = 0;
        assert_eq!(
            plan_roll(&brokers, &quorum(0), &progress()),
            Action::Restart {
                broker: 1,
                unready: false
            }
        );
        // A drain that ran out of time restarts anyway (controlled shutdown moves the rest).
        brokers[1].leaderships = 3;
        let expired = Progress {
            drain_expired: true,
            ..progress()
        };
        assert_eq!(
            plan_roll(&brokers, &quorum(0), &expired),
            Action::Restart {
                broker: 1,
                unready: false
            }
        );
    }

    #[test]
    fn the_restarted_broker_must_rejoin_every_isr_before_the_next() {
        let mut brokers = three([OLD, NEW, OLD]);
        brokers[1].draining = true;
        brokers[1].in_sync = 2;
        let during = Progress {
            current: Some((1, 6)),
            ..progress()
        };
        assert!(waits(
            &plan_roll(&brokers, &quorum(0), &during),
            RolloutPhase::WaitingForInSync,
            "rejoin 2/6"
        ));
        brokers[1].ready = false;
        assert!(waits(
            &plan_roll(&brokers, &quorum(0), &during),
            RolloutPhase::WaitingForReady,
            "broker 1"
        ));
        brokers[1].ready = true;
        brokers[1].in_sync = 6;
        assert_eq!(plan_roll(&brokers, &quorum(0), &during), Action::Undrain(1));
        brokers[1].draining = false;
        assert_eq!(
            plan_roll(&brokers, &quorum(0), &during),
            Action::Finished(1)
        );
        let next = Progress {
            updated: [1].into(),
            current: None,
            ..during
        };
        assert_eq!(plan_roll(&brokers, &quorum(0), &next), Action::Drain(2));
    }

    #[test]
    fn a_delete_that_did_not_happen_is_issued_again_and_a_terminating_pod_is_awaited() {
        let mut brokers = three([OLD, OLD, OLD]);
        let during = Progress {
            current: Some((1, 6)),
            ..progress()
        };
        // The operator stopped between saving its progress and deleting the pod.
        assert_eq!(
            plan_roll(&brokers, &quorum(0), &during),
            Action::Restart {
                broker: 1,
                unready: false
            }
        );
        brokers[1].terminating = true;
        assert!(waits(
            &plan_roll(&brokers, &quorum(0), &during),
            RolloutPhase::Restarting,
            "shutting down"
        ));
        brokers[1].revision = None;
        assert!(waits(
            &plan_roll(&brokers, &quorum(0), &during),
            RolloutPhase::Restarting,
            "recreated"
        ));
    }

    #[test]
    fn a_broker_left_draining_on_the_new_revision_is_undrained() {
        let mut brokers = three([NEW, OLD, OLD]);
        brokers[0].draining = true;
        assert_eq!(
            plan_roll(&brokers, &quorum(2), &progress()),
            Action::Undrain(0)
        );
        // Not while it catches up: the leaderships would move to a lagging replica.
        brokers[0].in_sync = 3;
        assert!(waits(
            &plan_roll(&brokers, &quorum(2), &progress()),
            RolloutPhase::WaitingForInSync,
            "broker 0 is catching up"
        ));
    }

    #[test]
    fn old_pods_that_serve_nothing_go_first_without_an_isr_check() {
        let mut brokers = three([OLD, OLD, OLD]);
        brokers[2].stuck = Some(Stuck::CrashLoopBackOff);
        brokers[2].ready = false;
        brokers[0].risk = Some(Risk {
            safe: false,
            blocking: vec!["t-0".into()],
            ..Risk::default()
        });
        assert_eq!(
            plan_roll(&brokers, &quorum(0), &progress()),
            Action::Restart {
                broker: 2,
                unready: true
            }
        );
    }

    #[test]
    fn a_stuck_pod_on_the_new_revision_halts_the_roll() {
        let mut brokers = three([NEW, OLD, OLD]);
        brokers[0].stuck = Some(Stuck::ImagePullBackOff);
        brokers[0].ready = false;
        let during = Progress {
            current: Some((0, 6)),
            ..progress()
        };
        assert_eq!(
            plan_roll(&brokers, &quorum(1), &during),
            Action::Halted {
                broker: 0,
                stuck: Stuck::ImagePullBackOff
            }
        );
    }

    #[test]
    fn a_down_broker_blocks_naming_it_and_the_partitions_at_risk() {
        let mut brokers = three([OLD, OLD, NEW]);
        brokers[2].alive = false;
        brokers[0].risk = Some(Risk {
            safe: false,
            blocking: vec!["orders-1".into()],
            ..Risk::default()
        });
        match plan_roll(&brokers, &quorum(0), &progress()) {
            Action::Blocked {
                partitions,
                brokers,
                reason,
            } => {
                assert_eq!(partitions, ["orders-1"]);
                assert_eq!(brokers, [2]);
                assert!(reason.contains("down"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nothing_restarts_while_another_broker_is_catching_up() {
        let mut brokers = three([OLD, OLD, NEW]);
        brokers[2].in_sync = 4;
        assert!(waits(
            &plan_roll(&brokers, &quorum(0), &progress()),
            RolloutPhase::WaitingForInSync,
            "broker 2"
        ));
    }

    #[test]
    fn unsafe_brokers_are_skipped_and_all_unsafe_is_blocked_naming_partitions() {
        let mut brokers = three([OLD, OLD, OLD]);
        brokers[1].risk = Some(Risk {
            safe: false,
            blocking: vec!["orders-3".into()],
            ..Risk::default()
        });
        // 1 is unsafe, 2 is next (0 leads the quorum and goes last).
        assert_eq!(
            plan_roll(&brokers, &quorum(0), &progress()),
            Action::Drain(2)
        );
        for b in &mut brokers {
            b.risk = Some(Risk {
                safe: false,
                blocking: vec![format!("orders-{}", b.id)],
                ..Risk::default()
            });
        }
        match plan_roll(&brokers, &quorum(0), &progress()) {
            Action::Blocked { partitions, .. } => {
                assert_eq!(partitions, ["orders-0", "orders-1", "orders-2"])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn partitions_with_rf_at_most_min_isr_never_block() {
        // The broker reports them apart and answers safe (RestartRisk.safe):
        // such a partition can never lose a replica safely, so it must not stop every roll.
        let mut brokers = three([OLD, OLD, OLD]);
        for b in &mut brokers {
            b.risk = Some(Risk {
                safe: true,
                never_safe: vec!["single-0".into()],
                ..Risk::default()
            });
        }
        assert_eq!(
            plan_roll(&brokers, &quorum(0), &progress()),
            Action::Drain(1)
        );
    }

    #[test]
    fn a_broker_whose_absence_breaks_the_quorum_majority_waits() {
        let brokers = three([OLD, OLD, OLD]);
        let q = Quorum {
            voters: [0, 1, 2].into(),
            reachable: [1, 2].into(),
            leader: Some(2),
        };
        // Without 1 only voter 2 is reachable: 1 of 3 is no majority. So is 2.
        // Broker 0 is not reachable, so losing it keeps 1 and 2.
        assert_eq!(plan_roll(&brokers, &q, &progress()), Action::Drain(0));
        let q = Quorum {
            reachable: [2].into(),
            ..q
        };
        assert!(
            matches!(plan_roll(&brokers, &q, &progress()), Action::Blocked { reason, .. } if reason.contains("majority"))
        );
    }

    #[test]
    fn an_unknown_risk_blocks_and_all_updated_is_done() {
        let mut brokers = three([OLD, OLD, OLD]);
        for b in &mut brokers {
            b.risk = None;
        }
        assert!(
            matches!(plan_roll(&brokers, &quorum(2), &progress()), Action::Blocked { reason, brokers, .. } if reason.contains("restart risk") && brokers == [0, 1, 2])
        );
        let brokers = three([NEW, NEW, NEW]);
        assert_eq!(plan_roll(&brokers, &quorum(2), &progress()), Action::Done);
        // An updated broker is never restarted twice, whatever its pod says.
        let brokers = three([OLD, NEW, NEW]);
        let done = Progress {
            updated: [0].into(),
            ..progress()
        };
        assert_eq!(plan_roll(&brokers, &quorum(2), &done), Action::Done);
        // A missing pod (scale-up in progress) is not outdated.
        let mut brokers = three([NEW, NEW, NEW]);
        brokers[2].revision = None;
        brokers[2].ready = false;
        assert_eq!(plan_roll(&brokers, &quorum(1), &progress()), Action::Done);
        // Nor is a new pod that cannot be scheduled a halted roll: nothing is rolling.
        brokers[2].revision = Some(NEW.into());
        brokers[2].stuck = Some(Stuck::Unschedulable);
        assert_eq!(plan_roll(&brokers, &quorum(1), &progress()), Action::Done);
    }
}
