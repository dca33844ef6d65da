//! The replication driver: turns metadata images into partition roles,
//! runs follower fetchers, ticks leaders (ISR shrink after
//! `--replica-lag-time-max-ms`) and commits their ISR proposals through the
//! metadata quorum.
//!
//! On every new image, in order:
//! 1. open and close partitions ([`Broker::reconcile_partitions`]);
//! 2. set each hosted partition's role ([`Broker::reconcile_roles`]): a new
//!    leadership first records its epoch in the log's leader-epoch
//!    checkpoint, then starts a [`LeaderState`](super::state::LeaderState)
//!    at the log end; a follower gets a fetcher; a partition without a
//!    leader goes offline;
//! 3. a leader whose ISR the controller changed learns it.
//!
//! ISR proposals are committed as compare-and-set `PartitionChanged`
//! records; whatever the outcome, the leader then learns the partition's
//! state (which clears its pending proposal).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::fetcher;
use super::replica::{Effects, Proposal};
use crate::broker::{Broker, Partition, now_ms};
use crate::metadata::MetadataRecord;

/// An ISR change a leader wants, for the driver to commit.
pub type PendingProposal = (String, i32, Proposal);

/// How often leaders check for lagging followers.
const TICK: Duration = Duration::from_millis(250);

impl Broker {
    /// Step 2 of the module doc for every hosted partition. Returns the
    /// follower partitions whose fetcher is not running.
    /// Reads the current image under the roles lock, so a late caller never
    /// applies an older image over a newer one.
    pub fn reconcile_roles(&self) -> Vec<Arc<Partition>> {
        let _roles = self.roles_lock();
        let image = self.image();
        let me = self.node_id();
        let now = now_ms();
        let defaults = self.defaults(&image);
        let mut need_fetcher = Vec::new();
        for p in self.hosted_partitions() {
            let Some(topic) = image.topics.get(&p.topic) else {
                continue;
            };
            let state = topic.state(p.index);
            let view = p.replica.view();
            let min_isr = self
                .configs_from(&defaults, &topic.configs)
                .min_insync_replicas()
                .max(1) as usize;
            if state.leader == me {
                if view.leader == me && view.epoch == state.leader_epoch {
                    let effects =
                        p.replica
                            .on_metadata(topic.replicas(p.index), &state.isr, min_isr, now);
                    self.apply_effects(&p, effects);
                    continue;
                }
                let leo = {
                    let mut log = p.log();
                    if let Err(e) = log.assign_leader_epoch(state.leader_epoch) {
                        tracing::error!(topic = %p.topic, partition = p.index, error = %e, "recording the leader epoch failed; not taking leadership");
                        continue;
                    }
                    log.log_end_offset()
                };
                let effects = p.replica.become_leader(
                    me,
                    &state,
                    topic.replicas(p.index),
                    min_isr,
                    self.config.replica_lag_time_max_ms,
                    leo,
                    now,
                );
                tracing::info!(topic = %p.topic, partition = p.index, epoch = state.leader_epoch, isr = ?state.isr, log_end_offset = leo, "leading partition");
                self.apply_effects(&p, effects);
            } else if state.leader >= 0 {
                if view.leader != state.leader || view.epoch != state.leader_epoch {
                    p.replica.become_follower(state.leader, state.leader_epoch);
                    tracing::info!(topic = %p.topic, partition = p.index, leader = state.leader, epoch = state.leader_epoch, "following");
                }
                if !self.is_shutting_down() {
                    need_fetcher.push(p);
                }
            } else if view.leader >= 0 || view.epoch != state.leader_epoch {
                p.replica.go_offline(state.leader_epoch);
                tracing::warn!(topic = %p.topic, partition = p.index, isr = ?state.isr, "partition offline: no in-sync replica is alive");
            }
        }
        need_fetcher
    }

    /// Publishes a moved high watermark to waiting fetches and queues ISR
    /// proposals for the driver.
    pub fn apply_effects(&self, p: &Partition, effects: Effects) {
        if effects.high_watermark_moved {
            self.notify_appended();
        }
        for proposal in effects.proposals {
            tracing::debug!(topic = %p.topic, partition = p.index, from = ?proposal.expect.isr, to = ?proposal.state.isr, "proposing an ISR change");
            let _ = self
                .proposals_sender()
                .send((p.topic.clone(), p.index, proposal));
        }
    }

    /// Commits queued proposals (several at once) and tells each leader the
    /// outcome.
    async fn commit_proposals(&self, proposals: Vec<PendingProposal>) {
        let records = proposals
            .iter()
            .map(|(topic, partition, p)| MetadataRecord::PartitionChanged {
                topic: topic.clone(),
                partition: *partition,
                expect: p.expect.clone(),
                state: p.state.clone(),
                unclean: false,
            })
            .collect();
        tracing::debug!(count = proposals.len(), "committing ISR proposals");
        let image = match self.store().commit(records).await {
            Ok(image) => image,
            Err(e) => {
                tracing::warn!(error = %e, "committing ISR changes failed; leaders will propose again");
                self.image()
            }
        };
        let now = now_ms();
        let mut seen = BTreeMap::new();
        for (topic, partition, proposal) in proposals {
            if seen.insert((topic.clone(), partition), ()).is_some() {
                continue;
            }
            let (Some(p), Some(t)) = (self.partition(&topic, partition), image.topics.get(&topic))
            else {
                continue;
            };
            let state = t.state(partition);
            if state.same_as(&proposal.state) {
                tracing::info!(topic, partition, isr = ?state.isr, "ISR changed");
            }
            let effects = p.replica.on_proposal_settled(&state, now);
            self.apply_effects(&p, effects);
        }
    }
}

/// Starts the driver: reconciles roles once before returning (so a ready
/// broker serves its leaderships), then follows new images, ticks leaders
/// and commits proposals until `stopping`.
pub fn start(
    broker: &Arc<Broker>,
    mut proposals: mpsc::UnboundedReceiver<PendingProposal>,
    stopping: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let spawn_fetchers = {
        let broker = broker.clone();
        let stopping = stopping.clone();
        move |partitions: Vec<Arc<Partition>>| {
            for p in partitions {
                if p.replica.claim_fetcher() {
                    tokio::spawn(fetcher::run(broker.clone(), p, stopping.clone()));
                }
            }
        }
    };
    spawn_fetchers(broker.reconcile_roles());
    let broker = broker.clone();
    let mut images = broker.store().subscribe();
    let mut stop = stopping.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = images.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    images.borrow_and_update();
                    if let Err(e) = broker.reconcile_partitions(false) {
                        tracing::error!(error = %e, "opening partitions assigned here failed");
                    }
                    spawn_fetchers(broker.reconcile_roles());
                }
                _ = tick.tick() => {
                    let now = now_ms();
                    for p in broker.hosted_partitions() {
                        let effects = p.replica.tick(now);
                        broker.apply_effects(&p, effects);
                    }
                    // Restarts fetchers that stopped (e.g. after a leader change race).
                    spawn_fetchers(broker.reconcile_roles());
                }
                Some(first) = proposals.recv() => {
                    let mut batch = vec![first];
                    while let Ok(more) = proposals.try_recv() {
                        batch.push(more);
                    }
                    let b = broker.clone();
                    tokio::spawn(async move { b.commit_proposals(batch).await });
                }
                _ = crate::runtime::stopped(&mut stop) => return,
            }
        }
    })
}
