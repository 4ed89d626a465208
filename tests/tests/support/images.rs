//! Images the end-to-end tests of this crate push and read back through kiln's registry client
//! (included with `#[path]` by the tests that use them: they need kiln-builder, a
//! dev-dependency of this crate).
#![allow(dead_code)]

use kiln::blob::BlobStore;
use kiln::image::{parse_manifest, History, ImageBuilder, ImageConfig, ParsedManifest};
use kiln::layer::{extract, write_layer, ExtractOptions, LayerOptions};
use kiln::plan::Platform;
use kiln::registry::{
    CredentialResolver, Environment, ImageToPush, Reference, RegistryClient, RegistryConfig,
};
use kiln_registry_auth::Credential;
use std::path::Path;

/// A client for the plain-HTTP test registry at `addr`, logged in as `user`.
pub fn registry_client(addr: &str, user: &str, password: &str) -> RegistryClient {
    RegistryClient::new(
        RegistryConfig {
            insecure_registries: vec![addr.to_owned()],
            ..RegistryConfig::default()
        },
        CredentialResolver::new(Environment::new())
            .with_credential(addr, Credential::basic(user, password)),
    )
    .unwrap()
}

/// Pushes a one-layer image of busybox-static (`/bin/busybox`, `/bin/sh`) as `reference`.
pub async fn push_busybox_base(client: &RegistryClient, reference: &Reference) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    let config = BaseConfig {
        created_by: "COPY busybox-static /bin/",
        path: "/bin",
        cmd: "/bin/sh",
    };
    push_rootfs(client, reference, &root, &config).await;
}

/// What a one-layer base image's config says.
pub struct BaseConfig<'a> {
    /// The history entry of its layer.
    pub created_by: &'a str,
    /// Its PATH.
    pub path: &'a str,
    /// Its Cmd (one word).
    pub cmd: &'a str,
}

/// Pushes the tree `root` as the one layer of a linux/amd64 image named `reference`.
pub async fn push_rootfs(
    client: &RegistryClient,
    reference: &Reference,
    root: &Path,
    base: &BaseConfig<'_>,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path().join("store")).unwrap();
    let info = write_layer(&store, root, &LayerOptions::default()).unwrap();
    let mut b = ImageBuilder::scratch(&Platform::parse("linux/amd64").unwrap());
    b.add_layer(info.layer, History::created_by(base.created_by));
    b.config_mut().env = vec![format!("PATH={}", base.path)];
    b.config_mut().cmd = Some(vec![base.cmd.into()]);
    let built = b.write(&store).unwrap();
    let image = ImageToPush::from(&built);
    client
        .push_image(std::slice::from_ref(reference), &image, &store)
        .await
        .unwrap();
}

/// The image's filesystem under `into/rootfs`, every layer extracted in order; checks the
/// diff_ids on the way. Returns the number of layers.
pub async fn pull_rootfs(client: &RegistryClient, reference: &Reference, into: &Path) -> usize {
    let m = client
        .get_manifest(reference)
        .await
        .unwrap_or_else(|e| panic!("{reference:?} not in the registry: {e}"));
    let ParsedManifest::Image(m) = parse_manifest(Some(&m.media_type), &m.bytes).unwrap() else {
        panic!("{reference:?} is not an image manifest");
    };
    let store = BlobStore::open(into.join("store")).unwrap();
    let repo = &reference.repository;
    client
        .pull_blob(repo, &m.config.digest, Some(m.config.size), &store)
        .await
        .unwrap();
    let config = ImageConfig::parse(&std::fs::read(store.path(&m.config.digest)).unwrap()).unwrap();
    assert_eq!(m.layers.len(), config.rootfs.diff_ids.len());
    let root = into.join("rootfs");
    std::fs::create_dir_all(&root).unwrap();
    for (layer, diff_id) in m.layers.iter().zip(&config.rootfs.diff_ids) {
        client
            .pull_blob(repo, &layer.digest, Some(layer.size), &store)
            .await
            .unwrap();
        let blob = std::fs::File::open(store.path(&layer.digest)).unwrap();
        let got = extract(blob, &root, &ExtractOptions::default()).unwrap();
        assert_eq!(&got.diff_id, diff_id);
    }
    m.layers.len()
}
