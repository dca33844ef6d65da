//! The MessageCluster pipeline: fetch → validate (pure, `validate`) → build
//! every Kubernetes resource (pure, `resources`) → apply → status. This module
//! holds the pure stages and the restart decision (`restart`); applying,
//! fetching and the reconcile loop are the reconciler's job.

pub mod resources;
pub mod restart;
pub mod validate;

pub use resources::{ClusterResources, build_cluster_resources};
pub use restart::{needs_restart, template_changed};
pub use validate::{Problem, ValidatedCluster, validate_cluster};
