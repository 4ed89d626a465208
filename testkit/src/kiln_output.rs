//! Test support: what a `kiln` run printed, and a check that it succeeded.
#![allow(dead_code)]

use std::process::Output;

/// Bytes of output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts that kiln exited 0, showing what it printed when it did not.
pub fn ok(o: &Output) {
    assert_eq!(
        o.status.code(),
        Some(0),
        "kiln failed\nstdout:\n{}\nstderr:\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
}
