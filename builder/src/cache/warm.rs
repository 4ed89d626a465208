//! `kiln warm`: fills a cache directory with base images ahead of builds, so a build reads their
//! layers without downloading, a base pinned by digest without asking the registry at all, and a
//! tag's recorded answer when the registry cannot answer (no connection, rate limited).
//!
//! Every manifest, config and layer goes into the cache directory's blob store (streamed,
//! digest checked, renamed into place: concurrent warmers and builds never see half a blob), and
//! a file per reference in its warmed images ([`crate::cache_dir`]) records what the reference
//! resolved to, per platform. That file is updated under an exclusive lock and replaced by a
//! rename, so warmers of different platforms of one image keep each other's entries.

use super::error::CacheError;
use crate::blob::{BlobStore, Digest, DigestWriter};
use crate::cache_dir::CacheDir;
use crate::dockerfile;
use crate::image::platform_select::normalize;
use crate::image::{parse_manifest, Descriptor, ImageConfig, ImageManifest, ParsedManifest};
use crate::layer;
use crate::path_io::IoAt;
use crate::plan::{self, Base, NoBaseImages, Options, Platform};
use crate::registry::{Manifest, Reference, RegistryClient};
use crate::snapshot::ExtractedLayers;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

/// How to warm.
#[derive(Debug, Clone)]
pub struct WarmOptions {
    /// Re-check blobs already in the store and fetch again any that do not match their digest
    /// (kaniko's `--force`); otherwise a stored blob is trusted, as it was checked when stored.
    pub force: bool,
    /// Blobs of one image fetched at once.
    pub parallel: usize,
}

impl Default for WarmOptions {
    fn default() -> Self {
        WarmOptions {
            force: false,
            parallel: 4,
        }
    }
}

/// One image warmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmedImage {
    /// The reference, normalised (`docker.io/library/busybox:latest`).
    pub reference: String,
    /// The platform's image, as a build finds it again with [`lookup_base`].
    pub base: CachedBase,
    /// Its layers, base first.
    pub layers: Vec<Descriptor>,
    /// The layers' diff_ids, from the config (what extracted layers are keyed by).
    pub diff_ids: Vec<Digest>,
    /// Blobs downloaded (manifests not counted).
    pub fetched: usize,
    /// Bytes downloaded (manifests not counted).
    pub fetched_bytes: u64,
    /// Blobs already in the store.
    pub present: usize,
    /// Layers whose index this warm recorded (read off the layer, nothing extracted).
    pub indexed: usize,
}

/// A base image as the cache directory knows it: enough to build on it offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedBase {
    /// What the reference resolved to (an index, or the image manifest itself).
    pub digest: Digest,
    /// The platform's image manifest (in the blob store).
    pub manifest: Digest,
    /// Its media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Its config blob (in the blob store).
    pub config: Digest,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct IndexFile {
    reference: String,
    digest: Option<Digest>,
    platforms: BTreeMap<String, CachedBase>,
}

/// `<sha256 of the reference>.json`: any reference, whatever its characters, makes one short
/// file name.
fn index_path(dir: &CacheDir, reference: &Reference) -> PathBuf {
    let name = Digest::of(reference.to_string().as_bytes());
    dir.warmed_images().join(format!("{}.json", name.hex()))
}

fn platform_key(p: &Platform) -> String {
    normalize(p).to_string()
}

/// What `reference` resolved to for `platform` when it was last warmed, if its manifest and
/// config are in the store: a build can then plan on the base with no registry at hand. Tags are
/// not re-checked: the answer is as fresh as the last warm.
pub fn lookup_base(
    dir: &CacheDir,
    reference: &Reference,
    platform: &Platform,
) -> Option<CachedBase> {
    let bytes = std::fs::read(index_path(dir, reference)).ok()?;
    let idx: IndexFile = serde_json::from_slice(&bytes).ok()?;
    let base = idx.platforms.get(&platform_key(platform))?.clone();
    let store = dir.blob_store().ok()?;
    (store.contains(&base.manifest) && store.contains(&base.config)).then_some(base)
}

/// Reads the image manifest of a base found with [`lookup_base`] from the store.
pub fn read_manifest(dir: &CacheDir, base: &CachedBase) -> Result<ImageManifest, CacheError> {
    let store = dir.blob_store()?;
    let path = store.path(&base.manifest);
    let bytes = std::fs::read(&path).at(&path)?;
    match parse_manifest(Some(&base.media_type), &bytes)? {
        ParsedManifest::Image(m) => Ok(*m),
        ParsedManifest::Index(_) => {
            Err(crate::image::ImageError::UnsupportedMediaType(base.media_type.clone()).into())
        }
    }
}

/// Records `base` for `reference` and `platform` (as `kiln warm` does, and builds for the tags
/// they resolve), keeping other platforms' entries unless the reference now resolves to
/// something else.
pub fn remember_base(
    cache_dir: &CacheDir,
    reference: &Reference,
    platform: &Platform,
    base: &CachedBase,
) -> Result<(), CacheError> {
    let dir = cache_dir.warmed_images();
    std::fs::create_dir_all(&dir).at(&dir)?;
    let path = index_path(cache_dir, reference);
    let lock_path = path.with_extension("lock");
    let lock = crate::cache_dir::lock(&lock_path)?;
    let mut idx: IndexFile = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if idx.digest.as_ref() != Some(&base.digest) {
        idx.platforms.clear();
    }
    idx.reference = reference.to_string();
    idx.digest = Some(base.digest.clone());
    idx.platforms.insert(platform_key(platform), base.clone());
    let bytes = serde_json::to_vec_pretty(&idx).at(&path)?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).at(&dir)?;
    tmp.write_all(&bytes).at(tmp.path())?;
    tmp.persist(&path).at(&path)?;
    // The lock is released when `lock` is closed.
    drop(lock);
    Ok(())
}

/// Whether the stored blob `d` has the digest it is stored under.
fn verify(store: &BlobStore, d: &Digest) -> Result<bool, CacheError> {
    let path = store.path(d);
    let mut f = store.read(d)?;
    let mut w = DigestWriter::new(std::io::sink());
    std::io::copy(&mut f, &mut w).at(&path)?;
    Ok(w.finish().0 == *d)
}

/// Stores `images` (their manifests, the manifest of `platform` when a reference names an index,
/// configs and layers) in the cache directory `cache_dir`, and records each for
/// [`lookup_base`]. Several warmers and builds may share the directory at once.
pub async fn warm(
    images: &[Reference],
    platform: &Platform,
    client: &RegistryClient,
    cache_dir: &CacheDir,
    opts: &WarmOptions,
) -> Result<Vec<WarmedImage>, CacheError> {
    let store = cache_dir.blob_store()?;
    let mut out = Vec::with_capacity(images.len());
    for r in images {
        out.push(warm_one(r, platform, client, cache_dir, &store, opts).await?);
    }
    Ok(out)
}

/// The image manifest `reference` names for `platform`, as the registry gives it.
pub(crate) struct PlatformManifest {
    /// What the reference itself resolved to: an index, or the image manifest.
    pub top: Digest,
    /// The platform's image manifest as fetched.
    pub manifest: Manifest,
    /// It, parsed.
    pub image: ImageManifest,
}

/// Fetches the image manifest `reference` names for `platform`, through its index when it names
/// one, keeping each manifest in `store` (so a reference pinned by its digest later needs no
/// request): what `kiln warm` stores and what a build resolves its bases with.
pub(crate) async fn platform_manifest(
    client: &RegistryClient,
    store: &BlobStore,
    reference: &Reference,
    platform: &Platform,
) -> Result<PlatformManifest, CacheError> {
    let top = client.get_manifest(reference).await?;
    store.put(&top.bytes)?;
    let (manifest, image) = match parse_manifest(Some(&top.media_type), &top.bytes)? {
        ParsedManifest::Image(m) => (top.clone(), *m),
        ParsedManifest::Index(idx) => {
            let Some(d) = crate::image::select_manifest(&idx, platform) else {
                return Err(CacheError::NoPlatform {
                    reference: reference.to_string(),
                    platform: platform.to_string(),
                });
            };
            let pinned = Reference {
                repository: reference.repository.clone(),
                tag: None,
                digest: Some(d.digest.clone()),
            };
            let m = client.get_manifest(&pinned).await?;
            store.put(&m.bytes)?;
            match parse_manifest(Some(&m.media_type), &m.bytes)? {
                ParsedManifest::Image(img) => (m, *img),
                ParsedManifest::Index(_) => {
                    return Err(crate::image::ImageError::UnsupportedMediaType(m.media_type).into())
                }
            }
        }
    };
    Ok(PlatformManifest {
        top: top.digest,
        manifest,
        image,
    })
}

async fn warm_one(
    reference: &Reference,
    platform: &Platform,
    client: &RegistryClient,
    cache_dir: &CacheDir,
    store: &BlobStore,
    opts: &WarmOptions,
) -> Result<WarmedImage, CacheError> {
    let PlatformManifest {
        top,
        manifest,
        image,
    } = platform_manifest(client, store, reference, platform).await?;
    let blobs: Vec<&Descriptor> = std::iter::once(&image.config)
        .chain(&image.layers)
        .collect();
    let repo = &reference.repository;
    let results: Vec<(bool, u64)> = stream::iter(blobs)
        .map(|d| async move {
            if store.contains(&d.digest) {
                if !opts.force || verify(store, &d.digest)? {
                    return Ok::<_, CacheError>((false, 0));
                }
                // A damaged blob: drop it so it is fetched again (a rename would also replace
                // it, but pull_blob skips digests the store holds).
                let p = store.path(&d.digest);
                std::fs::remove_file(&p).at(&p)?;
            }
            let n = client
                .pull_blob(repo, &d.digest, Some(d.size), store)
                .await?;
            Ok((true, n))
        })
        .buffer_unordered(opts.parallel.max(1))
        .try_collect()
        .await?;
    let config_path = store.path(&image.config.digest);
    let config_bytes = std::fs::read(&config_path).at(&config_path)?;
    let config = ImageConfig::parse(&config_bytes)?;
    let indexed = index_layers(cache_dir, store, &image.layers, &config.rootfs.diff_ids);
    let base = CachedBase {
        digest: top,
        manifest: manifest.digest.clone(),
        media_type: manifest.media_type.clone(),
        config: image.config.digest.clone(),
    };
    remember_base(cache_dir, reference, platform, &base)?;
    Ok(WarmedImage {
        reference: reference.to_string(),
        base,
        layers: image.layers.clone(),
        diff_ids: config.rootfs.diff_ids,
        fetched: results.iter().filter(|(f, _)| *f).count(),
        fetched_bytes: results.iter().map(|(_, n)| n).sum(),
        present: results.iter().filter(|(f, _)| !*f).count(),
        indexed,
    })
}

/// Records the index of each layer that has none yet, read off its headers: a COPY, ADD or
/// WORKDIR onto the warmed base then reads the base's metadata from them instead of extracting
/// it. Best effort: a layer whose index cannot be read or kept (a damaged blob, more paths than
/// an index holds) is extracted by the build that needs it, which reports what is wrong.
fn index_layers(
    cache_dir: &CacheDir,
    store: &BlobStore,
    layers: &[Descriptor],
    diff_ids: &[Digest],
) -> usize {
    let Ok(extracted) = ExtractedLayers::open(cache_dir) else {
        return 0;
    };
    let mut n = 0;
    for (l, diff_id) in layers.iter().zip(diff_ids) {
        if extracted.index_path(diff_id).exists() {
            continue;
        }
        let Ok(blob) = store.read(&l.digest) else {
            continue;
        };
        let read = layer::read_index(
            std::io::BufReader::new(blob),
            Some(layer::DEFAULT_MAX_LAYER_BYTES),
        );
        if let Ok((read_id, Some(index))) = read {
            if read_id == *diff_id && extracted.put_index(diff_id, &index).is_ok() {
                n += 1;
            }
        }
    }
    n
}

/// The images the Dockerfiles at `paths` build on or copy from, in order and once each: every
/// stage's FROM image (build arguments applied; stage names and `scratch` are not images) and
/// every `COPY --from=image`, for all stages, not only those the last stage needs.
pub fn from_dockerfiles(
    paths: &[PathBuf],
    build_args: &BTreeMap<String, String>,
    platform: &Platform,
) -> Result<Vec<Reference>, CacheError> {
    let mut out: Vec<Reference> = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).at(path)?;
        let df = dockerfile::parse(&text, path)?;
        let opts = Options {
            build_args: build_args.clone(),
            target: None,
            target_platform: platform.clone(),
            build_platform: Platform::host(),
        };
        let p = plan::plan(&df, path, &opts, &NoBaseImages)?;
        for stage in &p.stages {
            let from = match &stage.base {
                Base::Image(r) => Some(r),
                Base::Scratch | Base::Stage(_) => None,
            };
            for r in from.into_iter().chain(&stage.images) {
                let r = Reference::parse(r)?;
                if !out.contains(&r) {
                    out.push(r);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerfile_images_skip_stages_and_scratch_and_include_copy_from_images() {
        let dir = tempfile::tempdir().unwrap();
        let one = dir.path().join("one");
        let two = dir.path().join("two");
        std::fs::write(
            &one,
            "ARG V=3.19\nFROM alpine:$V AS base\nFROM base\nCOPY --from=busybox:1 /bin/sh /sh\nFROM scratch\nCOPY --from=base / /\n",
        )
        .unwrap();
        std::fs::write(
            &two,
            "FROM scratch\nFROM alpine:3.20\nFROM docker.io/library/busybox:1\n",
        )
        .unwrap();
        let amd64 = Platform::parse("linux/amd64").unwrap();
        let got = from_dockerfiles(&[one.clone(), two], &BTreeMap::new(), &amd64).unwrap();
        let names: Vec<String> = got.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            names,
            [
                "docker.io/library/alpine:3.19",
                "docker.io/library/busybox:1",
                "docker.io/library/alpine:3.20",
            ]
        );
        let args = BTreeMap::from([("V".to_string(), "edge".to_string())]);
        let got = from_dockerfiles(&[one], &args, &amd64).unwrap();
        assert_eq!(got[0].to_string(), "docker.io/library/alpine:edge");
        assert!(matches!(
            from_dockerfiles(&[dir.path().join("missing")], &args, &amd64),
            Err(CacheError::Io(_))
        ));
    }

    #[test]
    fn a_warmed_reference_is_recorded_under_the_sha256_of_its_name() {
        let t = tempfile::tempdir().unwrap();
        let dir = CacheDir::open(t.path()).unwrap();
        let r = Reference::parse("busybox").unwrap();
        let name = Digest::of(b"docker.io/library/busybox:latest")
            .hex()
            .to_string();
        assert_eq!(
            index_path(&dir, &r),
            t.path().join("images").join(format!("{name}.json"))
        );
    }
}
