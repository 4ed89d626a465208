//! Building config and manifest blobs, and the digest files, without peers.

use kiln::blob::{BlobStore, Digest};
use kiln::image::export::{
    image_name_with_digest, write_digest_file, write_docker_tar, write_image_name_with_digest_file,
};
use kiln::image::{
    media, parse_manifest, Descriptor, History, ImageBuilder, ImageConfig, ImageError, ImageFormat,
    ParsedManifest,
};
use kiln::layer::Layer;
use kiln::plan::Platform;

fn store() -> (tempfile::TempDir, BlobStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    (dir, store)
}

/// A stored "layer" (the builder only needs the blob and its digests).
fn layer(store: &BlobStore, content: &[u8], media_type: &str) -> Layer {
    let (digest, size) = store.put(content).unwrap();
    Layer {
        digest,
        size,
        diff_id: Digest::of(&[content, b"-uncompressed"].concat()),
        media_type: media_type.to_string(),
    }
}

fn amd64() -> Platform {
    Platform::parse("linux/amd64").unwrap()
}

#[test]
fn oci_by_default_with_exact_manifest_bytes() {
    let (_d, store) = store();
    let l = layer(&store, b"layer one", media::OCI_LAYER_GZIP);
    let mut b = ImageBuilder::scratch(&amd64());
    b.created(0)
        .add_layer(l.clone(), History::created_by("COPY a /"));
    let image = b.write(&store).unwrap();

    assert_eq!(image.media_type, media::OCI_MANIFEST);
    assert_eq!(image.digest, Digest::of(&image.manifest));
    assert_eq!(
        std::fs::read(store.path(&image.digest)).unwrap(),
        image.manifest
    );
    let config_bytes = std::fs::read(store.path(&image.config.digest)).unwrap();
    let expected_config = format!(
        r#"{{"architecture":"amd64","config":{{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"WorkingDir":"/"}},"created":"1970-01-01T00:00:00Z","history":[{{"created":"1970-01-01T00:00:00Z","created_by":"COPY a /"}}],"os":"linux","rootfs":{{"diff_ids":["{}"],"type":"layers"}}}}"#,
        l.diff_id
    );
    assert_eq!(
        String::from_utf8(config_bytes.clone()).unwrap(),
        expected_config
    );
    let expected_manifest = format!(
        r#"{{"config":{{"digest":"{}","mediaType":"application/vnd.oci.image.config.v1+json","size":{}}},"layers":[{{"digest":"{}","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":{}}}],"mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2}}"#,
        Digest::of(&config_bytes),
        config_bytes.len(),
        l.digest,
        l.size
    );
    assert_eq!(
        String::from_utf8(image.manifest.clone()).unwrap(),
        expected_manifest
    );
}

#[test]
fn docker_schema2_on_request_translates_media_types() {
    let (_d, store) = store();
    let l = layer(&store, b"layer", media::OCI_LAYER_GZIP);
    let mut b = ImageBuilder::scratch(&amd64());
    b.format(ImageFormat::Docker)
        .created(0)
        .annotation("org.opencontainers.image.source", "x")
        .add_layer(l, History::created_by("RUN x"));
    let image = b.write(&store).unwrap();
    assert_eq!(image.media_type, media::DOCKER_MANIFEST);
    let ParsedManifest::Image(m) = parse_manifest(Some(image.media_type), &image.manifest).unwrap()
    else {
        panic!()
    };
    assert_eq!(m.media_type.as_deref(), Some(media::DOCKER_MANIFEST));
    assert_eq!(m.config.media_type, media::DOCKER_CONFIG);
    assert_eq!(m.layers[0].media_type, media::DOCKER_LAYER_GZIP);
    // Docker schema 2 has no annotations.
    assert!(m.annotations.is_empty());
    assert!(!String::from_utf8(image.manifest.clone())
        .unwrap()
        .contains("annotations"));

    let mut b = ImageBuilder::scratch(&amd64());
    let zstd = layer(&store, b"z", media::OCI_LAYER_ZSTD);
    b.format(ImageFormat::Docker)
        .add_layer(zstd, History::default());
    assert!(matches!(
        b.write(&store),
        Err(ImageError::UnsupportedMediaType(_))
    ));
}

#[test]
fn same_inputs_same_digest_and_created_changes_it() {
    let (_d, store) = store();
    let l = layer(&store, b"layer", media::OCI_LAYER_GZIP);
    let build = |created: i64| {
        let mut b = ImageBuilder::scratch(&amd64());
        b.created(created)
            .add_layer(l.clone(), History::created_by("COPY . /"));
        b.config_mut().env = vec!["A=1".into()];
        b.config_mut().labels.insert("z".into(), "1".into());
        b.config_mut().labels.insert("a".into(), "2".into());
        b.add_history(History::created_by("ENV A=1"));
        b.write(&store).unwrap()
    };
    assert_eq!(build(0).digest, build(0).digest);
    assert_ne!(build(0).digest, build(1).digest);
    let c = build(1_700_000_000).image_config;
    assert_eq!(c.created.as_deref(), Some("2023-11-14T22:13:20Z"));
    assert!(c.history[1].empty_layer);
    assert_eq!(
        c.history[1].created.as_deref(),
        Some("2023-11-14T22:13:20Z")
    );
}

#[test]
fn a_base_image_keeps_its_layers_history_and_config() {
    let (_d, store) = store();
    let base_layer = Descriptor::new(
        media::DOCKER_LAYER_GZIP,
        Digest::of(b"base, not in the store"),
        42,
    );
    let base: ImageConfig = ImageConfig::parse(
        br#"{"architecture":"arm64","os":"linux","variant":"v8","created":"2020-01-01T00:00:00Z",
            "config":{"Env":["PATH=/usr/bin"],"Cmd":["sh"]},
            "rootfs":{"type":"layers","diff_ids":["sha256:1111111111111111111111111111111111111111111111111111111111111111"]},
            "history":[{"created":"2020-01-01T00:00:00Z","created_by":"ADD rootfs /"}]}"#,
    )
    .unwrap();
    let mut b = ImageBuilder::from_base(base.clone(), vec![base_layer.clone()]).unwrap();
    let l = layer(&store, b"mine", media::OCI_LAYER_GZIP);
    b.created(5)
        .add_layer(l.clone(), History::created_by("RUN make"));
    b.config_mut().cmd = Some(vec!["/app".into()]);
    let image = b.write(&store).unwrap();
    let c = &image.image_config;
    assert_eq!(
        (c.architecture.as_str(), c.variant.as_deref()),
        ("arm64", Some("v8"))
    );
    assert_eq!(c.config.env, vec!["PATH=/usr/bin".to_string()]);
    assert_eq!(
        c.rootfs.diff_ids,
        vec![base.rootfs.diff_ids[0].clone(), l.diff_id.clone()]
    );
    // The base's history keeps its own times; only this build's entries get `created`.
    assert_eq!(
        c.history[0].created.as_deref(),
        Some("2020-01-01T00:00:00Z")
    );
    assert_eq!(
        c.history[1].created.as_deref(),
        Some("1970-01-01T00:00:05Z")
    );
    assert_eq!(image.layers[0].media_type, media::OCI_LAYER_GZIP);
    assert_eq!(image.layers[0].digest, base_layer.digest);
    let plat = image.platform();
    assert_eq!(
        (plat.architecture.as_str(), plat.variant.as_deref()),
        ("arm64", Some("v8"))
    );

    assert!(matches!(
        ImageBuilder::from_base(base, vec![]),
        Err(ImageError::LayerCountMismatch {
            layers: 0,
            diff_ids: 1
        })
    ));
}

#[test]
fn a_layer_missing_from_the_store_is_refused() {
    let (_d, store) = store();
    let mut l = layer(&store, b"here", media::OCI_LAYER_GZIP);
    l.size += 1;
    let mut b = ImageBuilder::scratch(&amd64());
    b.add_layer(l, History::default());
    assert!(matches!(
        b.write(&store),
        Err(ImageError::LayerMissing { .. })
    ));
    let mut b = ImageBuilder::scratch(&amd64());
    b.add_layer(
        Layer {
            digest: Digest::of(b"elsewhere"),
            size: 9,
            diff_id: Digest::of(b""),
            media_type: media::OCI_LAYER_GZIP.into(),
        },
        History::default(),
    );
    assert!(matches!(
        b.write(&store),
        Err(ImageError::LayerMissing { .. })
    ));
}

#[test]
fn the_docker_tarball_is_deterministic() {
    let (_d, store) = store();
    let l = layer(&store, b"layer", media::OCI_LAYER_GZIP);
    let mut b = ImageBuilder::scratch(&amd64());
    b.created(0).add_layer(l, History::default());
    let image = b.write(&store).unwrap();
    let one = write_docker_tar(&store, Vec::new(), &image, &["a:1"]).unwrap();
    let two = write_docker_tar(&store, Vec::new(), &image, &["a:1"]).unwrap();
    assert_eq!(one, two);
    assert!(matches!(
        write_docker_tar(&store, Vec::new(), &image, &["Bad Name"]),
        Err(ImageError::Reference(_))
    ));
}

const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn digest_file_is_the_digest_without_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("digest");
    write_digest_file(&path, &D.parse().unwrap()).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), D.as_bytes());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o644
    );
}

#[test]
fn image_name_with_digest_file_is_one_line_per_destination() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("names");
    let digest: Digest = D.parse().unwrap();
    write_image_name_with_digest_file(
        &path,
        &[
            "registry.example.com:5000/team/app:1.2",
            "busybox",
            "user/app:latest",
            "localhost/x",
        ],
        &digest,
    )
    .unwrap();
    let expected = format!(
        "registry.example.com:5000/team/app@{D}\nindex.docker.io/library/busybox@{D}\nindex.docker.io/user/app@{D}\nlocalhost/x@{D}\n"
    );
    assert_eq!(
        String::from_utf8(std::fs::read(&path).unwrap()).unwrap(),
        expected
    );
    assert_eq!(image_name_with_digest(&[], &digest).unwrap(), "");
    assert!(image_name_with_digest(&["team/UPPER"], &digest).is_err());
}
