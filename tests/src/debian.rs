//! A Debian root filesystem made here, for tests that need a real distribution as a base image
//! (Docker Hub's `debian:` cannot be pulled on these machines; Debian's mirror can be reached).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a Debian tree could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DebianError {
    /// debootstrap is not installed.
    #[error("debootstrap is not installed (apt-get install debootstrap)")]
    NoDebootstrap,
    /// debootstrap ran and failed.
    #[error("debootstrap {suite} from {mirror} failed ({status}); its log is {log}")]
    Debootstrap {
        /// The suite asked for.
        suite: String,
        /// The mirror used.
        mirror: String,
        /// How it ended.
        status: std::process::ExitStatus,
        /// Its log (debootstrap keeps the details there).
        log: String,
    },
    /// A file of the tree.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DebianError + '_ {
    move |source| DebianError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The mirror debootstrap fetches from: `$KILN_TEST_DEBIAN_MIRROR`, else Debian's own.
pub fn mirror() -> String {
    std::env::var("KILN_TEST_DEBIAN_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".to_owned())
}

/// A `debootstrap --variant=minbase` tree of `suite` under `cache` (made once, then reused:
/// about a minute and 40 MB of downloads), trimmed as Docker's `-slim` images are: no apt
/// lists or package cache, no documentation, man pages or translations, an empty `/dev`.
pub fn minbase(cache: &Path, suite: &str) -> Result<PathBuf, DebianError> {
    let root = cache.join(format!("debian-{suite}-minbase"));
    if root.join("etc/debian_version").is_file() {
        return Ok(root);
    }
    let debootstrap = ["/usr/sbin/debootstrap", "/usr/bin/debootstrap"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .ok_or(DebianError::NoDebootstrap)?;
    std::fs::create_dir_all(cache).map_err(io(cache))?;
    // Made aside and renamed into place: an interrupted run leaves no half tree to reuse.
    let partial = cache.join(format!("debian-{suite}-minbase.partial"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
    }
    let mirror = mirror();
    let log = cache.join(format!("debian-{suite}-debootstrap.log"));
    let log_file = std::fs::File::create(&log).map_err(io(&log))?;
    let status = Command::new(debootstrap)
        .args(["--variant=minbase", suite])
        .arg(&partial)
        .arg(&mirror)
        .stdout(log_file.try_clone().map_err(io(&log))?)
        .stderr(log_file)
        .status()
        .map_err(io(Path::new(debootstrap)))?;
    if !status.success() {
        return Err(DebianError::Debootstrap {
            suite: suite.to_owned(),
            mirror,
            status,
            log: log.display().to_string(),
        });
    }
    for dir in [
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/locale",
        "dev",
    ] {
        empty_dir(&partial.join(dir))?;
    }
    for f in [
        "var/cache/apt/pkgcache.bin",
        "var/cache/apt/srcpkgcache.bin",
    ] {
        let p = partial.join(f);
        if p.exists() {
            std::fs::remove_file(&p).map_err(io(&p))?;
        }
    }
    std::fs::rename(&partial, &root).map_err(io(&root))?;
    Ok(root)
}

/// Removes what `dir` holds, keeping `dir`.
fn empty_dir(dir: &Path) -> Result<(), DebianError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries {
        let p = e.map_err(io(dir))?.path();
        let removed = if p.is_dir() && !p.is_symlink() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        removed.map_err(io(&p))?;
    }
    Ok(())
}
