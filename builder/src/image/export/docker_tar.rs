//! Exporting a tarball `docker load` reads (kaniko's `--tar-path`), laid out as Docker 25+'s
//! `docker save` does: an OCI layout (`oci-layout`, `index.json`, `blobs/sha256/`) plus the
//! legacy `manifest.json` and `repositories`, so old and new loaders (and skopeo's
//! `docker-archive:` and `oci-archive:`) all accept it. Layers stay compressed: loaders
//! decompress them.

use crate::blob::BlobStore;
use crate::image::assemble::BuiltImage;
use crate::image::descriptor::Descriptor;
use crate::image::error::ImageError;
use crate::image::json::to_canonical_vec;
use crate::image::manifest::ImageIndex;
use crate::image::media::{
    ANNOTATION_CONTAINERD_IMAGE_NAME, ANNOTATION_REF_NAME, OCI_INDEX, OCI_LAYOUT_VERSION,
};
use crate::path_io::IoAt;
use crate::reference::Reference;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

#[derive(serde::Serialize)]
struct LegacyManifest {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: Vec<String>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

fn blob_path(d: &Descriptor) -> String {
    format!("blobs/sha256/{}", d.digest.hex())
}

/// Writes `image` as a `docker load` tarball to `out`, tagged with each of `tags`
/// (`name[:tag]`, Docker Hub names allowed short); returns `out`.
pub fn write_docker_tar<W: Write>(
    store: &BlobStore,
    out: W,
    image: &BuiltImage,
    tags: &[&str],
) -> Result<W, ImageError> {
    let refs = tags
        .iter()
        .map(|t| Reference::parse(t))
        .collect::<Result<Vec<_>, _>>()?;
    let mut tar = tar::Builder::new(out);
    let io_err = |e| ImageError::from(crate::path_io::PathIo::new("docker tarball", e));

    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        tar.append_data(&mut h, dir, std::io::empty())
            .map_err(io_err)?;
    }
    let mut written = std::collections::BTreeSet::new();
    for d in image.layers.iter().chain([&image.config]) {
        if !written.insert(d.digest.clone()) {
            continue;
        }
        if !store.has(&d.digest, d.size) {
            return Err(crate::blob::BlobError::Missing(d.digest.clone()).into());
        }
        let file = store.read(&d.digest)?;
        let mut h = header(tar::EntryType::Regular, 0o644, d.size);
        tar.append_data(&mut h, blob_path(d), file)
            .map_err(io_err)?;
    }
    let manifest_desc = Descriptor::new(
        image.media_type,
        image.digest.clone(),
        image.manifest.len() as u64,
    );
    if written.insert(image.digest.clone()) {
        append_bytes(&mut tar, &blob_path(&manifest_desc), &image.manifest)?;
    }

    let mut index = ImageIndex::empty(Some(OCI_INDEX));
    if refs.is_empty() {
        index.manifests.push(manifest_desc.clone());
    }
    for r in &refs {
        let mut d = manifest_desc.clone();
        if let (Some(full), Some(tag)) = (r.containerd_name(), &r.tag) {
            d.annotations
                .insert(ANNOTATION_CONTAINERD_IMAGE_NAME.to_string(), full);
            d.annotations
                .insert(ANNOTATION_REF_NAME.to_string(), tag.clone());
        }
        index.manifests.push(d);
    }
    append_bytes(
        &mut tar,
        "index.json",
        &to_canonical_vec(&index, "index.json")?,
    )?;

    let repo_tags: Vec<String> = refs.iter().filter_map(Reference::familiar_tagged).collect();
    let legacy = [LegacyManifest {
        config: blob_path(&image.config),
        repo_tags,
        layers: image.layers.iter().map(blob_path).collect(),
    }];
    append_bytes(
        &mut tar,
        "manifest.json",
        &to_canonical_vec(&legacy, "manifest.json")?,
    )?;

    let layout = serde_json::json!({ "imageLayoutVersion": OCI_LAYOUT_VERSION });
    append_bytes(
        &mut tar,
        "oci-layout",
        &to_canonical_vec(&layout, "oci-layout")?,
    )?;

    // `repositories` maps each tag to its top layer's id; Docker writes it only when there is one.
    if let Some(top) = image.layers.last() {
        let mut repos: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for r in &refs {
            if let Some(tag) = &r.tag {
                repos
                    .entry(r.familiar_name())
                    .or_default()
                    .insert(tag.clone(), top.digest.hex().to_string());
            }
        }
        if !repos.is_empty() {
            append_bytes(
                &mut tar,
                "repositories",
                &to_canonical_vec(&repos, "repositories")?,
            )?;
        }
    }
    tar.into_inner().map_err(io_err)
}

/// Writes the tarball to `path` (through a temporary file beside it).
pub fn export_docker_tar(
    store: &BlobStore,
    path: &Path,
    image: &BuiltImage,
    tags: &[&str],
) -> Result<(), ImageError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir).at(dir)?;
    let w = std::io::BufWriter::with_capacity(1 << 20, tmp);
    let w = write_docker_tar(store, w, image, tags)?;
    let tmp = w.into_inner().at(path)?;
    super::persist_readable(tmp, path)
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    bytes: &[u8],
) -> Result<(), ImageError> {
    let mut h = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
    tar.append_data(&mut h, path, bytes)
        .at(path)
        .map_err(Into::into)
}
