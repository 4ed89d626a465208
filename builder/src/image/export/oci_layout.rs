//! Exporting to an OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/`),
//! adding to what is already there as kaniko's `--oci-layout-path` does.

use super::write_atomic;
use crate::blob::{BlobStore, Digest, DigestWriter};
use crate::image::assemble::BuiltImage;
use crate::image::error::ImageError;
use crate::image::json::to_canonical_vec;
use crate::image::manifest::ImageIndex;
use crate::image::media::{ANNOTATION_REF_NAME, OCI_INDEX, OCI_LAYOUT_VERSION};
use crate::path_io::IoAt;
use std::path::Path;

#[derive(serde::Serialize, serde::Deserialize)]
struct OciLayoutFile {
    #[serde(rename = "imageLayoutVersion")]
    image_layout_version: String,
}

/// Writes `image` into the layout at `dir` (created if missing) and names it in `index.json`
/// once per `ref_names` entry (`org.opencontainers.image.ref.name`), replacing entries that had
/// those names. With no names, the image is added unnamed (once). Blobs are written before the
/// index, so the index never names a missing blob.
///
/// A Docker schema 2 image is written as built (as kaniko's layouts hold them), but skopeo's
/// and buildah's `oci:` transports only read OCI media types from a layout: build OCI for them.
pub fn export_oci_layout(
    store: &BlobStore,
    dir: &Path,
    image: &BuiltImage,
    ref_names: &[&str],
) -> Result<(), ImageError> {
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).at(&blobs)?;
    check_or_write_layout_file(dir)?;

    for l in &image.layers {
        copy_blob(store, &l.digest, &blobs)?;
    }
    copy_blob(store, &image.config.digest, &blobs)?;
    let manifest_path = blobs.join(image.digest.hex());
    if !manifest_path.is_file() {
        write_atomic(&manifest_path, &image.manifest)?;
    }

    let index_path = dir.join("index.json");
    let mut index = match std::fs::read(&index_path) {
        Ok(bytes) => {
            serde_json::from_slice::<ImageIndex>(&bytes).map_err(|e| ImageError::BadLayout {
                path: dir.to_path_buf(),
                message: format!("index.json: {e}"),
            })?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => ImageIndex::empty(Some(OCI_INDEX)),
        Err(e) => return Err(crate::path_io::PathIo::new(&index_path, e).into()),
    };
    let name_of = |d: &crate::image::Descriptor| d.annotations.get(ANNOTATION_REF_NAME).cloned();
    if ref_names.is_empty() {
        index
            .manifests
            .retain(|d| !(d.digest == image.digest && name_of(d).is_none()));
        index.manifests.push(image.descriptor());
    } else {
        index
            .manifests
            .retain(|d| !name_of(d).is_some_and(|n| ref_names.contains(&n.as_str())));
        for name in ref_names {
            let mut d = image.descriptor();
            d.annotations
                .insert(ANNOTATION_REF_NAME.to_string(), (*name).to_string());
            index.manifests.push(d);
        }
    }
    write_atomic(&index_path, &to_canonical_vec(&index, "index.json")?)
}

fn check_or_write_layout_file(dir: &Path) -> Result<(), ImageError> {
    let path = dir.join("oci-layout");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let f: OciLayoutFile =
                serde_json::from_slice(&bytes).map_err(|e| ImageError::BadLayout {
                    path: dir.to_path_buf(),
                    message: format!("oci-layout: {e}"),
                })?;
            if !f.image_layout_version.starts_with("1.") {
                return Err(ImageError::BadLayout {
                    path: dir.to_path_buf(),
                    message: format!(
                        "unsupported imageLayoutVersion {:?}",
                        f.image_layout_version
                    ),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let f = OciLayoutFile {
                image_layout_version: OCI_LAYOUT_VERSION.to_string(),
            };
            write_atomic(&path, &to_canonical_vec(&f, "oci-layout")?)
        }
        Err(e) => Err(crate::path_io::PathIo::new(&path, e).into()),
    }
}

/// Streams one blob into `blobs/sha256/`, checking its digest on the way; a blob already there
/// is content-addressed, so it is kept.
fn copy_blob(store: &BlobStore, digest: &Digest, blobs: &Path) -> Result<(), ImageError> {
    let dest = blobs.join(digest.hex());
    if dest.is_file() {
        return Ok(());
    }
    let mut src = store.read(digest)?;
    let tmp = tempfile::NamedTempFile::new_in(blobs).at(blobs)?;
    let mut w = DigestWriter::new(std::io::BufWriter::with_capacity(1 << 20, tmp));
    std::io::copy(&mut src, &mut w).at(&dest)?;
    let (actual, _, buf) = w.finish();
    if actual != *digest {
        return Err(crate::blob::BlobError::DigestMismatch {
            expected: digest.clone(),
            actual,
        }
        .into());
    }
    let tmp = buf.into_inner().at(&dest)?;
    super::persist_readable(tmp, &dest)
}
