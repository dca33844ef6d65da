//! ConsumerAutoscaler: scales a consumer workload on its group's lag. The
//! decision is pure ([`decide`]); [`reconcile`] reads the lag, the workload and
//! the cluster, and writes the scale subresource.

pub mod decide;
pub mod reconcile;

pub use reconcile::{autoscaler_error_policy, reconcile_autoscaler};
