//! Consumer groups (classic protocol): the pure rebalance state machine
//! ([`state`]), the coordinator that owns every group and delivers replies
//! to waiting requests ([`coordinator`]), committed offsets kept in the
//! internal `__consumer_offsets` log ([`offsets`]), and consumer lag (the
//! arithmetic in [`lag`], the partition leaders' offsets read by
//! [`leader_offsets`]).

pub mod coordinator;
pub mod lag;
pub mod leader_offsets;
pub mod leadership;
pub mod offsets;
pub mod state;
