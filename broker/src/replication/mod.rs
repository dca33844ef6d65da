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
//! The driver that does the I/O (followers fetching from leaders with Kafka
//! Fetch requests carrying their replica id, the controller's Raft quorum)
//! is described in docs/replication.md and not wired yet.

pub mod state;

#[cfg(test)]
mod sim;
