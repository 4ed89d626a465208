//! Test support: tests that need root and the host's static busybox skip, saying why, where
//! they cannot run. Include with `#[macro_use]` as `mod privilege` for [`need_root!`].
#![allow(dead_code)]

use std::path::Path;

/// The host's static busybox, the programs of the test roots.
pub const BUSYBOX: &str = "/bin/busybox";

/// Why tests needing root and busybox cannot run here, if they cannot.
pub fn unable() -> Option<&'static str> {
    if !rustix::process::geteuid().is_root() {
        return Some("needs root");
    }
    if !Path::new(BUSYBOX).exists() {
        return Some("needs busybox-static (apt-get install busybox-static)");
    }
    None
}

/// Returns from the test, saying why, when [`unable`] says it cannot run.
#[allow(unused_macros)]
macro_rules! need_root {
    () => {
        if let Some(why) = $crate::privilege::unable() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}
