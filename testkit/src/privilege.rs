//! Tests that need root and the host's static busybox skip, saying why, where they cannot run,
//! and fail instead under CI ([`skip`]); [`need_root!`](crate::need_root) returns early.
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

/// Says why the calling test skips, or fails it where CI demands that it run: `.ci/run` sets
/// `KILN_REQUIRE_ROOT=1` for root and `KILN_REQUIRE_REGISTRY=1` for the tools it installs, so a
/// CI that lost either cannot pass by skipping.
pub fn skip(why: &str, demanded_by: Demand) {
    let var = match demanded_by {
        Demand::Root => "KILN_REQUIRE_ROOT",
        Demand::Tool => "KILN_REQUIRE_REGISTRY",
    };
    assert!(
        std::env::var_os(var).is_none(),
        "this test cannot run here ({why}), and {var} demands that it does"
    );
    eprintln!("skipped: {why}");
}

/// What a skipped test lacks.
pub enum Demand {
    /// Root.
    Root,
    /// A program CI installs.
    Tool,
}

/// Returns from the test, saying why, when [`unable`] says it cannot run ([`skip`]).
#[macro_export]
macro_rules! need_root {
    () => {
        if let Some(why) = $crate::privilege::unable() {
            $crate::privilege::skip(why, $crate::privilege::Demand::Root);
            return;
        }
    };
}
