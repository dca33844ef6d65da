//! The MirrorPolicy pipeline: the policy as the brokers take it and the
//! status from what they report (pure, `plan`), then handing it to them and
//! reporting (`reconcile`). The brokers enforce it; this module never touches
//! topics itself.

pub mod plan;
pub mod reconcile;

pub use reconcile::{MIRROR_POLICY_FINALIZER, mirror_policy_error_policy, reconcile_mirror_policy};
