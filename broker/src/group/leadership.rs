//! Where the group coordinator runs: on the leader of `__consumer_offsets-0`,
//! moving with that leadership, as in Kafka.
//!
//! - The offsets topic is created once, with replication factor 3 (fewer if
//!   the quorum has fewer voters; 1 for a single node), as soon as that many
//!   live brokers are registered. Until then FindCoordinator answers
//!   COORDINATOR_NOT_AVAILABLE, which clients retry.
//! - Every [`CHECK_INTERVAL`] (and once before the broker is ready) the
//!   coordinator is (re)loaded from the partition when this broker leads it
//!   at a new epoch, and dropped when it no longer leads it: requests sent
//!   here then get NOT_COORDINATOR and clients look the coordinator up again.
//! - Offset commits are acks=all writes (`group::offsets`), so a commit
//!   acknowledged to a client is on every in-sync replica of the partition
//!   and survives the loss of the coordinator's broker.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::coordinator::GroupCoordinator;
use super::offsets::{OFFSETS_TOPIC, OffsetError};
use crate::broker::{Broker, TopicError};
use crate::runtime::Context;

pub const CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// Creates the offsets topic when enough brokers are live. Returns whether
/// it exists now.
pub async fn create_offsets_topic(broker: &Broker) -> Result<bool, TopicError> {
    let image = broker.image();
    if image.topics.contains_key(OFFSETS_TOPIC) {
        return Ok(true);
    }
    let rf = broker.config.voters.as_ref().map_or(1, |v| v.len().min(3));
    let live = image.alive_brokers().len().max(1);
    if live < rf {
        return Ok(false);
    }
    let configs = [
        ("segment.bytes".to_string(), (16 << 20).to_string()),
        ("retention.ms".to_string(), "-1".to_string()),
    ]
    .into();
    match broker
        .create_topic(
            OFFSETS_TOPIC,
            1,
            rf as i16,
            configs,
            crate::metadata::mirror_policy::TopicOrigin::Internal,
        )
        .await
    {
        Ok(_) | Err(TopicError::AlreadyExists(_)) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Loads or drops the coordinator to match this broker's leadership of the
/// offsets partition.
pub async fn sync_coordinator(ctx: &Context) -> Result<(), OffsetError> {
    let broker = &ctx.broker;
    let leading = broker
        .partition(OFFSETS_TOPIC, 0)
        .and_then(|p| p.replica.leader_epoch(false).ok().map(|e| (e, p)));
    let current = ctx
        .groups
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|(e, _)| *e);
    match (leading, current) {
        (Some((epoch, _)), Some(e)) if e == epoch => Ok(()),
        (Some((epoch, partition)), _) => {
            let b = broker.clone();
            let (config, retention) = (b.config.groups.clone(), b.config.offsets_retention_ms);
            let groups = tokio::task::spawn_blocking(move || {
                GroupCoordinator::open(b, partition, config, retention)
            })
            .await
            .map_err(|e| OffsetError::Replay {
                offset: 0,
                reason: e.to_string(),
            })??;
            *ctx.groups.write().unwrap_or_else(|p| p.into_inner()) =
                Some((epoch, Arc::new(groups)));
            tracing::info!(epoch, "this broker is the group coordinator");
            Ok(())
        }
        (None, Some(_)) => {
            *ctx.groups.write().unwrap_or_else(|p| p.into_inner()) = None;
            tracing::info!("no longer the group coordinator");
            Ok(())
        }
        (None, None) => Ok(()),
    }
}

/// Keeps the offsets topic and the coordinator in step until `stopping`.
pub async fn run(ctx: Arc<Context>, mut stopping: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut created = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::runtime::stopped(&mut stopping) => return,
        }
        if !created {
            match create_offsets_topic(&ctx.broker).await {
                Ok(done) => created = done,
                Err(e) => tracing::warn!(error = %e, "creating {OFFSETS_TOPIC} failed; retrying"),
            }
        }
        if let Err(e) = sync_coordinator(&ctx).await {
            tracing::error!(error = %e, "loading the group coordinator failed; retrying");
        }
    }
}
