//! Partition replication, Kafka's semantics (../shared/reference/kafka-broker.md).
//!
//! - [`state`]: the leader's view of one partition, pure: follower
//!   progress, the high watermark, ISR shrink/expand proposals and acks=all
//!   waiters. Events in (appends, follower fetches, time, committed ISR
//!   changes), decisions out.
//! - [`sim`] (tests): a deterministic simulation of leaders, followers and
//!   the controller (`metadata::controller`) under crashes and quick leader
//!   changes, checking that no acknowledged record is lost.
//!
//! - [`replica`]: one hosted partition's role (leader, follower, offline),
//!   its high watermark and acks=all waiters, around [`state`];
//! - [`driver`]: metadata images in, roles out; leader ticks; ISR proposals
//!   committed through the metadata quorum;
//! - [`fetcher`] and [`client`]: followers fetch from leaders with Kafka
//!   Fetch requests carrying their replica id;
//! - [`control`]: the controller loop on the metadata quorum's leader
//!   (heartbeats, fencing, elections) and controlled shutdown.
//!
//! docs/replication.md has the decisions.

pub mod client;
pub mod control;
pub mod driver;
pub mod fetcher;
pub mod replica;
pub mod state;
pub mod throttle;

#[cfg(test)]
mod sim;
