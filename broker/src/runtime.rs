//! Runtime state shared by the layers that serve requests: the Kafka
//! request handlers, the admin API, the group coordinator's leadership loop
//! and the HTTP endpoints all take a [`Context`]. It sits below them so that
//! none of those layers imports another to reach it (the dependency arrows
//! read wire → broker → group/replication → log).

use std::sync::Arc;

use tokio::sync::watch;

use crate::broker::Broker;
use crate::group::coordinator::GroupCoordinator;

/// The broker and, while this broker is it, the group coordinator.
pub struct Context {
    pub broker: Arc<Broker>,
    /// The group coordinator, while this broker leads the offsets
    /// partition, with the leader epoch it was loaded at.
    pub groups: std::sync::RwLock<Option<(i32, Arc<GroupCoordinator>)>>,
}

impl Context {
    pub fn new(broker: Arc<Broker>) -> Self {
        Self {
            broker,
            groups: std::sync::RwLock::new(None),
        }
    }

    /// The coordinator, if this broker is it now.
    pub fn groups(&self) -> Option<Arc<GroupCoordinator>> {
        self.groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(_, g)| g.clone())
    }

    /// The coordinator, or NOT_COORDINATOR for group requests sent here.
    pub fn coordinator(&self) -> Result<Arc<GroupCoordinator>, kafka_protocol::ResponseError> {
        self.groups()
            .ok_or(kafka_protocol::ResponseError::NotCoordinator)
    }
}

/// Resolves once `stopping` turns true (or its sender is gone).
pub async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}
