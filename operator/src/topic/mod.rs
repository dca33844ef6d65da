//! The Topic pipeline: resolve the desired topic against its MessageCluster
//! and plan the admin calls (pure, `plan`), then carry them out and report
//! status (`reconcile`).

pub mod plan;
pub mod reconcile;

pub use reconcile::{TOPIC_FINALIZER, reconcile_topic, topic_error_policy};
