//! The step cache of builds, and `kiln warm`.
//!
//! A step's [`CacheKey`] chains from its parent's, so a key stands for everything that made the
//! step's filesystem. A hit costs a lookup, never a download: [`LocalCache`] is a JSON file per
//! key in the cache directory naming a blob of its store; [`RepoCache`] is kaniko's
//! `--cache-repo` shape (one image per step, tagged with the key's hex) read from the manifest
//! alone. [`warm()`] fills the blob store with base images and records what their references
//! resolved to ([`lookup_base`]): a build reads a digest-pinned base from the store without asking
//! the registry, and falls back on the recorded answer for a tag when the registry cannot answer.
//! Where each lives in the cache directory is [`crate::cache_dir`]'s.

pub mod error;
pub mod key;
pub mod local;
pub mod repo;
pub mod warm;

pub use error::CacheError;
pub use key::{base_key, step_key, CacheKey, FORMAT_VERSION};
pub use local::{CachedStep, LocalCache};
pub use repo::{index_tag, RepoCache};
pub use warm::{
    from_dockerfiles, lookup_base, read_manifest, remember_base, warm, CachedBase, WarmOptions,
    WarmedImage,
};

use std::path::PathBuf;

/// The cache directory when `--cache-dir` is not given: `$KILN_CACHE_DIR`, else
/// `/var/cache/kiln` for root, else `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`.
pub fn default_dir() -> PathBuf {
    dir_from(
        |name| std::env::var(name).ok().filter(|v| !v.is_empty()),
        crate::layer::owners::host_root(),
    )
}

fn dir_from(env: impl Fn(&str) -> Option<String>, root: bool) -> PathBuf {
    if let Some(d) = env("KILN_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if root {
        return PathBuf::from("/var/cache/kiln");
    }
    if let Some(d) = env("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("kiln");
    }
    match env("HOME") {
        Some(h) => PathBuf::from(h).join(".cache").join("kiln"),
        // No home at all (a bare container user): somewhere writable rather than nowhere.
        None => std::env::temp_dir().join("kiln-cache"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_dir_follows_env_then_root_then_xdg_then_home() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |n: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.to_string())
            }
        };
        let all: &[(&str, &str)] = &[
            ("KILN_CACHE_DIR", "/k"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(dir_from(env(all), true), PathBuf::from("/k"));
        assert_eq!(
            dir_from(env(&all[1..]), true),
            PathBuf::from("/var/cache/kiln")
        );
        assert_eq!(dir_from(env(&all[1..]), false), PathBuf::from("/x/kiln"));
        assert_eq!(
            dir_from(env(&all[2..]), false),
            PathBuf::from("/h/.cache/kiln")
        );
    }
}
