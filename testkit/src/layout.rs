//! Reading an image back from an OCI layout: its config, its merged filesystem, and the raw PAX
//! records of its layers (what a tar reader sees before kiln's extraction filters anything).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The blob `digest` of `layout`.
fn blob(layout: &Path, digest: &serde_json::Value) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.as_str().unwrap().trim_start_matches("sha256:"))
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// The first image's manifest.
fn manifest(layout: &Path) -> serde_json::Value {
    let index = json(&layout.join("index.json"));
    json(&blob(layout, &index["manifests"][0]["digest"]))
}

/// Extracts the first image of an OCI layout into `root`; returns its config.
pub fn unpack_layout(layout: &Path, root: &Path) -> serde_json::Value {
    let manifest = manifest(layout);
    std::fs::create_dir_all(root).unwrap();
    for l in manifest["layers"].as_array().unwrap() {
        let f = std::fs::File::open(blob(layout, &l["digest"])).unwrap();
        kiln::layer::extract(f, root, &kiln::layer::ExtractOptions::default()).unwrap();
    }
    json(&blob(layout, &manifest["config"]["digest"]))
}

/// Every PAX record key of every entry of the first image's layers (gzip layers).
pub fn pax_keys(layout: &Path) -> Vec<String> {
    let mut keys = Vec::new();
    for l in manifest(layout)["layers"].as_array().unwrap() {
        let f = std::fs::File::open(blob(layout, &l["digest"])).unwrap();
        let mut ar = tar::Archive::new(flate2::read::MultiGzDecoder::new(f));
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            if let Some(pax) = e.pax_extensions().unwrap() {
                for r in pax {
                    keys.push(r.unwrap().key().unwrap().to_string());
                }
            }
        }
    }
    keys
}
