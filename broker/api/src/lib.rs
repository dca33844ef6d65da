//! The admin API of tideway-broker (proto in `broker/proto/admin.proto`):
//! generated tonic client and server types, shared by the broker (server),
//! the operator and tools (client), so the operator never links the broker.

#![allow(clippy::all, missing_docs)]

pub mod v1 {
    tonic::include_proto!("tideway.admin.v1");
}

/// The metadata quorum's transport between brokers (internal).
pub mod raft {
    tonic::include_proto!("tideway.raft.v1");
}

pub use v1::admin_client::AdminClient;
pub use v1::admin_server::{Admin, AdminServer};
