//! Broker liveness and the controller loop (clusters with `--voters`).
//!
//! - Every broker heartbeats the controller (the metadata quorum's leader)
//!   every [`HEARTBEAT_INTERVAL`], saying whether it is shutting down.
//! - The controller, every [`CONTROLLER_TICK`]:
//!   1. fences a registered broker not heard from within
//!      `--broker-session-timeout-ms` (counted from when this node became
//!      controller, so a new controller gives everyone a full session), or
//!      that said it is shutting down; unfences one heard from again;
//!   2. runs [`plan_partition_repairs`] over the image with those changes
//!      (elections from the ISR, dead followers out of ISRs, offline
//!      partitions back when an in-sync replica returns) and
//!      [`plan_reassignment_completion`] (replica moves whose new replicas
//!      caught up) and commits all of it at once. Records are compare-and-set, so a pass computed from
//!      a stale image does nothing and the next pass repeats it;
//!   3. when a pass found nothing to do, every
//!      `--leader-imbalance-check-interval-ms`, moves leaderships back to
//!      preferred replicas that are alive, in sync and not draining
//!      ([`plan_preferred_leaders`], Kafka's auto leader rebalance);
//!   4. when there is still nothing to do, takes the next step towards the
//!      mirror policies whose `on_existing` is Reconcile (one topic at a
//!      time, only while no reassignment runs: `mirror_policy::plan_policy_step`).
//! - Controlled shutdown ([`controlled_shutdown`]): the broker says it is
//!   shutting down; the controller fences it, which moves its leaderships to
//!   other in-sync replicas; the broker waits until it leads nothing that
//!   another replica could take, or until `--controlled-shutdown-timeout-ms`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::broker::Broker;
use crate::metadata::controller::{plan_partition_repairs, plan_preferred_leaders};
use crate::metadata::mirror_policy::{Brokers, plan_policy_step};
use crate::metadata::reassign::plan_reassignment_completion;
use crate::metadata::{MetadataImage, MetadataRecord};

pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(250);
pub const CONTROLLER_TICK: Duration = Duration::from_millis(250);
/// Controlled shutdown stops waiting once heartbeats have failed this long.
const UNREACHABLE_CONTROLLER: Duration = Duration::from_secs(2);

/// Heartbeats until `stopping`.
pub async fn heartbeat_loop(broker: Arc<Broker>, mut stopping: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let sent = tokio::time::timeout(
                    Duration::from_secs(2),
                    broker.store().heartbeat(broker.node_id(), broker.is_shutting_down()),
                )
                .await;
                match sent {
                    Ok(Ok(())) => broker.heartbeat_delivered(),
                    Ok(Err(e)) => tracing::debug!(error = %e, "heartbeat not delivered"),
                    Err(_) => tracing::debug!("heartbeat timed out"),
                }
            }
            _ = crate::runtime::stopped(&mut stopping) => return,
        }
    }
}

/// The controller loop; acts only while this broker leads the quorum.
pub async fn controller_loop(broker: Arc<Broker>, mut stopping: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(CONTROLLER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut controller_since: Option<Instant> = None;
    let mut last_rebalance = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::runtime::stopped(&mut stopping) => return,
        }
        let store = broker.store();
        if store.quorum().leader != Some(broker.node_id()) {
            controller_since = None;
            continue;
        }
        let since = *controller_since.get_or_insert_with(|| {
            tracing::info!("this broker is the controller");
            Instant::now()
        });
        let image = store.image();
        let mut records = plan_tick(
            &image,
            &store.heartbeats(),
            since,
            Instant::now(),
            broker.config.broker_session_timeout,
        );
        // 3. Leaderships back to preferred replicas, when nothing else needs doing.
        if records.is_empty()
            && let Some(every) = broker.config.leader_imbalance_check_interval
            && last_rebalance.elapsed() >= every
        {
            last_rebalance = Instant::now();
            records = plan_preferred_leaders(&image, &image.alive_brokers());
            if !records.is_empty() {
                tracing::info!(
                    partitions = records.len(),
                    "moving leaderships back to preferred replicas"
                );
            }
        }
        // 4. Mirror policies with on_existing Reconcile, when nothing else needs doing.
        if records.is_empty() && !image.mirror_policies.is_empty() {
            records = plan_mirror_policies(&broker, &image);
        }
        if records.is_empty() {
            continue;
        }
        for r in &records {
            match r {
                MetadataRecord::BrokerFenced { id } => {
                    tracing::warn!(
                        broker = id,
                        "fencing broker: no heartbeat within the session timeout, or it is shutting down"
                    )
                }
                MetadataRecord::BrokerUnfenced { id } => {
                    tracing::info!(broker = id, "broker is back: unfenced")
                }
                MetadataRecord::PartitionChanged {
                    topic,
                    partition,
                    state,
                    unclean,
                    ..
                } => {
                    if *unclean {
                        broker.metrics.unclean_election();
                        tracing::error!(
                            topic,
                            partition,
                            leader = state.leader,
                            "UNCLEAN leader election: the new leader was not in sync; acknowledged records may be lost"
                        );
                    } else {
                        tracing::info!(topic, partition, leader = state.leader, epoch = state.leader_epoch, isr = ?state.isr, "partition changed");
                    }
                }
                _ => {}
            }
        }
        tokio::select! {
            committed = store.commit(records) => if let Err(e) = committed {
                tracing::warn!(error = %e, "committing controller decisions failed; retrying");
            },
            _ = crate::runtime::stopped(&mut stopping) => return,
        }
    }
}

/// The next step towards the mirror policies (see `mirror_policy::plan_policy_step`).
fn plan_mirror_policies(broker: &Broker, image: &MetadataImage) -> Vec<MetadataRecord> {
    let all = broker.placement_brokers(image);
    let brokers = Brokers {
        all: &all,
        leaving: &image.leaving,
    };
    let defaults = broker.defaults(image);
    let records = plan_policy_step(image, &brokers, |t| {
        broker
            .configs_from(&defaults, &t.configs)
            .min_insync_replicas()
    });
    if let Some(topic) = records.iter().find_map(|r| match r {
        MetadataRecord::ReassignmentChanged { topic, .. }
        | MetadataRecord::TopicConfigsReplaced { name: topic, .. } => Some(topic),
        _ => None,
    }) {
        let moves = records
            .iter()
            .filter(|r| matches!(r, MetadataRecord::ReassignmentChanged { .. }))
            .count();
        tracing::info!(
            topic,
            partitions_moving = moves,
            "bringing a topic to its mirror policy"
        );
    }
    records
}

/// One controller pass (steps 1 and 2 of the module doc), pure.
pub fn plan_tick(
    image: &MetadataImage,
    heartbeats: &std::collections::BTreeMap<i32, (Instant, bool)>,
    controller_since: Instant,
    now: Instant,
    session: Duration,
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for &b in image.brokers.keys() {
        // Only heartbeats received while this node is the controller count.
        let heard = heartbeats.get(&b).filter(|(t, _)| *t >= controller_since);
        let fresh = match heard {
            Some((t, _)) => now.duration_since(*t) < session,
            None => now.duration_since(controller_since) < session,
        };
        let shutting_down = heard.is_some_and(|(_, s)| *s);
        let alive = fresh && !shutting_down;
        let fenced = image.fenced.contains(&b);
        if !alive && !fenced {
            records.push(MetadataRecord::BrokerFenced { id: b });
        } else if alive && fenced && heard.is_some() {
            records.push(MetadataRecord::BrokerUnfenced { id: b });
        }
    }
    let next;
    let image = if records.is_empty() {
        image
    } else {
        let mut copy = image.clone();
        for r in &records {
            copy.apply(r);
        }
        next = copy;
        &next
    };
    records.extend(plan_partition_repairs(image, &image.alive_brokers()));
    records.extend(plan_reassignment_completion(image, &image.alive_brokers()));
    records
}

/// Whether `broker` still leads a partition that another in-sync replica could take.
fn leads_movable(image: &MetadataImage, broker: i32) -> usize {
    image
        .topics
        .values()
        .flat_map(|t| (0..t.partitions).map(move |p| t.state(p)))
        .filter(|s| s.leader == broker && s.isr.iter().any(|b| *b != broker))
        .count()
}

/// Hands this broker's leaderships over before it stops (module doc).
pub async fn controlled_shutdown(broker: &Broker) {
    broker.begin_shutdown();
    let me = broker.node_id();
    let deadline = broker.config.controlled_shutdown_timeout;
    let mut images = broker.store().subscribe();
    let started = Instant::now();
    tracing::info!(
        leaderships = leads_movable(&broker.image(), me),
        "controlled shutdown: handing leaderships over"
    );
    let moved = tokio::time::timeout(deadline, async {
        let mut handed_over_at: Option<Instant> = None;
        loop {
            let image = images.borrow_and_update().clone();
            let handed_over = leads_movable(&image, me) == 0;
            if handed_over && image.fenced.contains(&me) {
                return true;
            }
            // Nothing left to move: give the controller a moment to fence this
            // broker (which takes it out of ISRs), but do not wait on a quorum
            // that may be gone.
            if !handed_over {
                handed_over_at = None;
            } else if handed_over_at.get_or_insert_with(Instant::now).elapsed()
                > UNREACHABLE_CONTROLLER
            {
                return true;
            }
            // Without a reachable controller nothing can move: do not wait for it.
            if broker.since_heartbeat_delivered() > UNREACHABLE_CONTROLLER {
                return handed_over;
            }
            let _ = tokio::time::timeout(HEARTBEAT_INTERVAL, images.changed()).await;
        }
    })
    .await;
    match moved {
        Ok(true) => tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "controlled shutdown: leaderships handed over"
        ),
        Ok(false) | Err(_) => tracing::warn!(
            remaining = leads_movable(&broker.image(), me),
            "controlled shutdown: timed out; stopping with leaderships left"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::MetadataRecord as R;

    fn cluster() -> MetadataImage {
        let mut image = MetadataImage::default();
        for id in 0..3 {
            image.apply(&R::BrokerRegistered {
                id,
                host: "h".into(),
                port: 1,
                rack: None,
                replication: None,
            });
        }
        image.apply(&R::TopicCreated {
            name: "t".into(),
            topic_id: uuid::Uuid::new_v4(),
            partitions: 1,
            configs: Default::default(),
            assignments: vec![vec![0, 1, 2]],
            origin: Default::default(),
        });
        image
    }

    #[test]
    fn silent_brokers_are_fenced_after_the_session_and_come_back_when_heard() {
        let session = Duration::from_secs(9);
        let t0 = Instant::now();
        let mut image = cluster();
        let beats = |ids: &[i32], at: Instant| ids.iter().map(|&b| (b, (at, false))).collect();
        // A new controller waits a full session before fencing anyone.
        assert!(
            plan_tick(
                &image,
                &beats(&[1, 2], t0),
                t0,
                t0 + Duration::from_secs(5),
                session
            )
            .is_empty()
        );
        let later = t0 + Duration::from_secs(10);
        let records = plan_tick(&image, &beats(&[1, 2], later), t0, later, session);
        assert_eq!(records[0], R::BrokerFenced { id: 0 });
        for r in &records {
            image.apply(r);
        }
        assert_eq!(
            image.topics["t"].leader(0),
            1,
            "leadership moved to an in-sync replica"
        );
        assert_eq!(image.topics["t"].state(0).isr, vec![1, 2]);
        let back = later + Duration::from_secs(1);
        let records = plan_tick(&image, &beats(&[0, 1, 2], back), t0, back, session);
        assert_eq!(records, vec![R::BrokerUnfenced { id: 0 }]);
    }

    #[test]
    fn a_broker_shutting_down_is_fenced_and_its_leaderships_move() {
        let t0 = Instant::now();
        let mut image = cluster();
        let beats = [(0, (t0, true)), (1, (t0, false)), (2, (t0, false))].into();
        assert_eq!(leads_movable(&image, 0), 1);
        for r in plan_tick(&image, &beats, t0, t0, Duration::from_secs(9)) {
            image.apply(&r);
        }
        assert!(image.fenced.contains(&0));
        assert_eq!(leads_movable(&image, 0), 0);
    }
}
