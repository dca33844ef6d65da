//! The process's log filter, changeable at runtime (admin SetLogFilter)
//! without a restart. `tideway-broker` installs a reloadable
//! `tracing_subscriber` filter at start-up and registers how to swap it here;
//! brokers embedded in tests register nothing, and changing the filter is
//! then refused.

use std::sync::{Mutex, OnceLock};

use tracing_subscriber::EnvFilter;

type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

static RELOAD: OnceLock<Reload> = OnceLock::new();
static CURRENT: Mutex<String> = Mutex::new(String::new());

/// Why the filter was not changed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SetLogFilterError {
    #[error("invalid log filter {filter:?}: {reason}")]
    Invalid { filter: String, reason: String },
    #[error("this broker was not started with a reloadable log filter")]
    NotReloadable,
    #[error("swapping the log filter failed: {0}")]
    Reload(String),
}

/// Registers how to swap the filter (once per process) and the filter in force.
pub fn install(initial: &str, reload: Reload) {
    *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = initial.to_owned();
    let _ = RELOAD.set(reload);
}

/// The filter in force ("" when none was installed).
pub fn current() -> String {
    CURRENT.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Parses `filter` (tracing EnvFilter syntax, as `--log`) and swaps it in.
/// Returns whether it changed.
pub fn set(filter: &str) -> Result<bool, SetLogFilterError> {
    let parsed = EnvFilter::try_new(filter).map_err(|e| SetLogFilterError::Invalid {
        filter: filter.to_owned(),
        reason: e.to_string(),
    })?;
    let reload = RELOAD.get().ok_or(SetLogFilterError::NotReloadable)?;
    let mut current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
    if *current == filter {
        return Ok(false);
    }
    reload(parsed).map_err(SetLogFilterError::Reload)?;
    tracing::info!(from = %current, to = filter, "log filter changed");
    *current = filter.to_owned();
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_filter_is_refused_naming_it() {
        let err = set("tideway=notalevel").expect_err("invalid");
        assert!(err.to_string().contains("tideway=notalevel"), "{err}");
    }
}
