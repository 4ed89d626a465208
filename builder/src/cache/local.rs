//! The local step cache: one small JSON file per key in the cache directory
//! ([`crate::cache_dir`]), naming the layer blob (kept in its blob store) and the history text
//! of the step.
//!
//! Files are written to a temporary name and renamed into place, so concurrent builds on the same
//! directory each see a whole entry or none; two builds storing the same key store the same
//! step, so whichever rename comes last wins harmlessly.

use super::error::CacheError;
use super::key::{CacheKey, FORMAT_VERSION};
use crate::cache_dir::CacheDir;
use crate::layer::Layer;
use crate::path_io::IoAt;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// What a cached step produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedStep {
    /// Its layer; `None` for a step that made none (`WORKDIR /`).
    pub layer: Option<Layer>,
    /// The history entry's `created_by`.
    pub created_by: String,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    format: String,
    #[serde(flatten)]
    step: CachedStep,
}

/// The cache of steps in a local directory.
#[derive(Debug, Clone)]
pub struct LocalCache {
    keys: PathBuf,
    ttl: Option<Duration>,
}

impl LocalCache {
    /// Opens (creating) the step cache of `dir`.
    pub fn open(dir: &CacheDir) -> Result<LocalCache, CacheError> {
        let keys = dir.step_keys();
        std::fs::create_dir_all(&keys).at(&keys)?;
        Ok(LocalCache { keys, ttl: None })
    }

    /// Entries written longer than `ttl` ago count as misses (`--cache-ttl`).
    pub fn with_ttl(mut self, ttl: Duration) -> LocalCache {
        self.ttl = Some(ttl);
        self
    }

    fn path(&self, key: &CacheKey) -> PathBuf {
        self.keys.join(format!("{}.json", key.hex()))
    }

    /// The step cached under `key`. A missing, unreadable or other-format entry is a miss: the
    /// step is simply built again.
    pub fn get(&self, key: &CacheKey) -> Option<CachedStep> {
        let path = self.path(key);
        if let Some(ttl) = self.ttl {
            let written = std::fs::metadata(&path).ok()?.modified().ok()?;
            let age = SystemTime::now()
                .duration_since(written)
                .unwrap_or_default();
            if age > ttl {
                return None;
            }
        }
        let bytes = std::fs::read(&path).ok()?;
        let e: Entry = serde_json::from_slice(&bytes).ok()?;
        (e.format == FORMAT_VERSION).then_some(e.step)
    }

    /// Records `step` under `key` (replacing what was there).
    pub fn put(&self, key: &CacheKey, step: &CachedStep) -> Result<(), CacheError> {
        let entry = Entry {
            format: FORMAT_VERSION.to_string(),
            step: step.clone(),
        };
        let bytes = serde_json::to_vec(&entry).at(self.path(key))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.keys).at(&self.keys)?;
        tmp.write_all(&bytes).at(tmp.path())?;
        let dest = self.path(key);
        tmp.persist(&dest).at(&dest)?;
        Ok(())
    }

    /// Removes entries written longer than `ttl` ago (and temporary files left by a crash);
    /// returns how many entries it removed. The layer blobs stay: other entries or images may
    /// share them.
    pub fn prune(&self, ttl: Duration) -> Result<usize, CacheError> {
        let now = SystemTime::now();
        let mut removed = 0;
        for e in std::fs::read_dir(&self.keys).at(&self.keys)? {
            let e = e.at(&self.keys)?;
            let Ok(meta) = e.metadata() else { continue };
            let age = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or_default();
            if age > ttl {
                let is_entry = e.file_name().to_string_lossy().ends_with(".json");
                // A vanished file was pruned by another process: fine.
                if std::fs::remove_file(e.path()).is_ok() && is_entry {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::Digest;

    /// A step entry exactly as kiln-cache-v2 files hold it: the layer's fields in this order,
    /// the media type as the registry spells it.
    const ENTRY: &str = concat!(
        r#"{"format":"kiln-cache-v2","layer":{"#,
        r#""digest":"sha256:fa2c8cc4f28176bbeed4b736df569a34c79cd3723e9ec42f9674b4d46ac6b8b8","#,
        r#""size":42,"#,
        r#""diff_id":"sha256:90aebae315675cbf04612de4f7d5874850f48e0b8dd82becbeaa47ca93f5ebfb","#,
        r#""media_type":"application/vnd.oci.image.layer.v1.tar+gzip"},"#,
        r#""created_by":"RUN true"}"#
    );

    fn key() -> CacheKey {
        crate::cache::base_key(None, &crate::plan::Platform::host())
    }

    fn step() -> CachedStep {
        CachedStep {
            layer: Some(Layer {
                digest: Digest::of(b"blob"),
                size: 42,
                diff_id: Digest::of(b"tar"),
                media_type: crate::layer::MEDIA_TYPE_TAR_GZIP.to_string(),
            }),
            created_by: "RUN true".to_string(),
        }
    }

    #[test]
    fn an_entry_is_written_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LocalCache::open(&CacheDir::open(dir.path()).unwrap()).unwrap();
        cache.put(&key(), &step()).unwrap();
        let written = std::fs::read_to_string(cache.path(&key())).unwrap();
        assert_eq!(written, ENTRY);
    }

    #[test]
    fn an_entry_written_before_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LocalCache::open(&CacheDir::open(dir.path()).unwrap()).unwrap();
        std::fs::write(cache.path(&key()), ENTRY).unwrap();
        assert_eq!(cache.get(&key()), Some(step()));
    }
}
