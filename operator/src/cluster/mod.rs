//! The MessageCluster pipeline: fetch → validate (pure, `validate`) → build
//! every Kubernetes resource (pure, `resources`) → apply → status (pure
//! decisions in `status`). `reconcile` does the fetching and applying;
//! `restart` says which pods run an outdated template and why, `roll` decides
//! the next step of a rolling restart and `rollout` carries it out.

pub mod cluster_configs;
pub mod reconcile;
pub mod resources;
pub mod restart;
pub mod roll;
pub mod rollout;
pub mod status;
pub mod validate;

pub use resources::{ClusterResources, build_cluster_resources};
pub use restart::{needs_restart, template_changed};
pub use validate::{Problem, ValidatedCluster, validate_cluster};
