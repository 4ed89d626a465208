//! Re-reading the file when it changes.
//!
//! Polling the modification time (and size) is enough for a file edited by hand or by
//! configuration management, and avoids an inotify dependency.

use super::{Config, ConfigError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// The current configuration, updated in place when the file changes.
pub type ConfigWatch = watch::Receiver<Arc<Config>>;

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Loads `path` and starts a task that reloads it every `interval` when its mtime or
/// size changed. A file that no longer parses keeps the previous configuration in force
/// (and is logged), so a typo never stops a runner with jobs in flight.
pub fn watch_config(path: PathBuf, interval: Duration) -> Result<ConfigWatch, ConfigError> {
    let mut last = stamp(&path);
    let first = Config::load_and_warn(&path)?;
    let (tx, rx) = watch::channel(Arc::new(first));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if tx.is_closed() {
                return;
            }
            let now = stamp(&path);
            if now == last {
                continue;
            }
            last = now;
            match Config::load_and_warn(&path) {
                Ok(c) => {
                    tracing::info!(file = %path.display(), "configuration reloaded");
                    tx.send_replace(Arc::new(c));
                }
                Err(e) => {
                    tracing::error!(error = %crate::error_chain(&e), "configuration not reloaded")
                }
            }
        }
    });
    Ok(rx)
}
