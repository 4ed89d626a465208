//! The workspace's binaries for tests of this crate, which cannot use `CARGO_BIN_EXE_*` (cargo
//! sets those only for a package's own tests).

use std::path::PathBuf;
use std::process::Command;

/// Binary `bin` of `package`: the path in `$env` if set, else built with cargo next to the
/// running test (same target directory and profile; cheap once CI built it).
pub fn workspace_bin(env: &str, package: &str, bin: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return p.into();
    }
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<this test>
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("a test binary under target/<profile>/deps")
        .to_owned();
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_owned();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut c = Command::new(cargo);
    c.args(["build", "-q", "-p", package, "--bin", bin]);
    // What cargo sets for this test's process is not the build's: a build script that reads
    // one (ring's reads CARGO_MANIFEST_DIR) would otherwise see it change between this build and
    // the plain `cargo build`/`cargo test` around it, and both would rebuild it and everything
    // above it, every time.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_BIN_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
            ]
            .contains(&k.as_ref())
        {
            c.env_remove(k.as_ref());
        }
    }
    match profile.as_str() {
        "debug" => {}
        "release" => {
            c.arg("--release");
        }
        p => {
            c.args(["--profile", p]);
        }
    }
    let status = c.status().expect("run cargo");
    assert!(status.success(), "building {bin} failed ({status})");
    let path = profile_dir.join(bin);
    assert!(path.is_file(), "no {bin} at {}", path.display());
    path
}

/// The `kiln` binary (`$KILN_BIN`, else built once per test process: corpus tests ask for it
/// per case, and each `cargo build`, even with nothing to do, takes a moment).
pub fn kiln_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| workspace_bin("KILN_BIN", "kiln-builder", "kiln"))
        .clone()
}
