//! Consumer groups (classic protocol): the pure rebalance state machine
//! ([`state`]), the coordinator that owns every group and delivers replies
//! to waiting requests ([`coordinator`]), and committed offsets kept in the
//! internal `__consumer_offsets` log ([`offsets`]).

pub mod coordinator;
pub mod leadership;
pub mod offsets;
pub mod state;
