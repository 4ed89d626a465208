//! A real one-layer busybox image built by kiln, read back by real peers: skopeo (OCI layout,
//! docker-archive), a real registry (docker-registry) and buildah.

use kiln_testkit::dockerd;

use dockerd::Dockerd;
use kiln::blob::{BlobStore, Digest};
use kiln::image::export::{export_docker_tar, export_oci_layout};
use kiln::image::media;
use kiln::image::{
    parse_manifest, BuiltImage, History, ImageBuilder, ImageConfig, ImageFormat, ParsedManifest,
};
use kiln::layer::Layer;
use kiln::plan::Platform;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs a command, failing the test with its stderr when it fails; returns stdout.
fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn skopeo() -> Command {
    let mut c = Command::new("skopeo");
    c.arg("--insecure-policy");
    c
}

/// A gzip layer of `/bin/busybox` and `/bin/sh -> busybox`, stored; returns it and its diff_id.
fn busybox_layer(store: &BlobStore, work: &Path) -> Layer {
    let root = work.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    let tar_path = work.join("layer.tar");
    run(Command::new("tar")
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@0",
        ])
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar_path)
        .arg("bin"));
    let diff_id = Digest::of(&std::fs::read(&tar_path).unwrap());
    let gz = run(Command::new("gzip").args(["-n", "-c"]).arg(&tar_path));
    let mut w = store.writer().unwrap();
    w.write_all(&gz).unwrap();
    let (digest, size) = w.commit().unwrap();
    Layer {
        digest,
        size,
        diff_id,
        media_type: media::OCI_LAYER_GZIP.to_string(),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    work: PathBuf,
    store: BlobStore,
    layer: Layer,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().to_path_buf();
    let store = BlobStore::open(work.join("store")).unwrap();
    let layer = busybox_layer(&store, &work);
    Fixture {
        _dir: dir,
        work,
        store,
        layer,
    }
}

fn build(f: &Fixture, format: ImageFormat) -> BuiltImage {
    build_at(f, format, 0)
}

fn build_at(f: &Fixture, format: ImageFormat, created: i64) -> BuiltImage {
    let platform = Platform::parse("linux/amd64").unwrap();
    let mut b = ImageBuilder::scratch(&platform);
    b.format(format).created(created);
    b.add_layer(
        f.layer.clone(),
        History::created_by("COPY busybox /bin/busybox # buildkit"),
    );
    let c = b.config_mut();
    c.env = vec!["PATH=/bin".to_string()];
    c.cmd = Some(vec!["/bin/sh".to_string()]);
    c.labels
        .insert("org.example".to_string(), "kiln".to_string());
    b.add_history(History::created_by("CMD [\"/bin/sh\"]"));
    b.write(&f.store).unwrap()
}

fn read_layout_image(dir: &Path, tag: &str) -> (Vec<u8>, ImageConfig) {
    let raw = run(skopeo()
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:{tag}", dir.display())));
    let ParsedManifest::Image(m) = parse_manifest(None, &raw).unwrap() else {
        panic!("not an image manifest")
    };
    let config = std::fs::read(dir.join("blobs/sha256").join(m.config.digest.hex())).unwrap();
    (raw, ImageConfig::parse(&config).unwrap())
}

#[test]
fn skopeo_reads_the_oci_layout_and_converts_it() {
    let f = fixture();
    let image = build(&f, ImageFormat::Oci);
    let layout = f.work.join("layout");
    export_oci_layout(&f.store, &layout, &image, &["1"]).unwrap();
    let oci = format!("oci:{}:1", layout.display());

    let raw = run(skopeo().args(["inspect", "--raw", &oci]));
    assert_eq!(
        String::from_utf8(raw).unwrap().trim_end(),
        String::from_utf8(image.manifest.clone()).unwrap()
    );
    let raw_config = run(skopeo().args(["inspect", "--config", "--raw", &oci]));
    let stored_config = std::fs::read(f.store.path(&image.config.digest)).unwrap();
    assert_eq!(
        String::from_utf8(raw_config).unwrap().trim_end(),
        String::from_utf8(stored_config).unwrap()
    );

    // skopeo's own reading of the config, not just the bytes back.
    let cfg: serde_json::Value =
        serde_json::from_slice(&run(skopeo().args(["inspect", "--config", &oci]))).unwrap();
    assert_eq!(cfg["architecture"], "amd64");
    assert_eq!(cfg["os"], "linux");
    assert_eq!(cfg["created"], "1970-01-01T00:00:00Z");
    assert_eq!(cfg["rootfs"]["diff_ids"][0], f.layer.diff_id.to_string());
    assert_eq!(cfg["config"]["Cmd"][0], "/bin/sh");
    assert_eq!(cfg["history"][1]["empty_layer"], true);
    let summary: serde_json::Value =
        serde_json::from_slice(&run(skopeo().args(["inspect", &oci]))).unwrap();
    assert_eq!(summary["Digest"], image.digest.to_string());
    assert_eq!(summary["Layers"][0], f.layer.digest.to_string());
    assert_eq!(summary["Labels"]["org.example"], "kiln");

    let archive = f.work.join("x.tar");
    run(skopeo()
        .arg("copy")
        .arg(&oci)
        .arg(format!("docker-archive:{}:demo:1", archive.display())));
    let listing = String::from_utf8(run(Command::new("tar").arg("-tf").arg(&archive))).unwrap();
    assert!(listing.lines().any(|l| l == "manifest.json"), "{listing}");
}

#[test]
fn merging_into_an_existing_layout_keeps_other_images() {
    let f = fixture();
    let first = build_at(&f, ImageFormat::Oci, 0);
    let second = build_at(&f, ImageFormat::Oci, 1_700_000_000);
    assert_ne!(first.digest, second.digest);
    let layout = f.work.join("layout");
    export_oci_layout(&f.store, &layout, &first, &["first", "latest"]).unwrap();
    export_oci_layout(&f.store, &layout, &second, &["second", "latest"]).unwrap();
    let (raw, _) = read_layout_image(&layout, "first");
    assert_eq!(raw.trim_ascii_end(), &first.manifest[..]);
    let (raw, config) = read_layout_image(&layout, "second");
    assert_eq!(raw.trim_ascii_end(), &second.manifest[..]);
    assert_eq!(config.created.as_deref(), Some("2023-11-14T22:13:20Z"));
    assert_eq!(config.rootfs.diff_ids, vec![f.layer.diff_id.clone()]);
    // `latest` moved to the second image rather than naming two.
    let (raw, _) = read_layout_image(&layout, "latest");
    assert_eq!(raw.trim_ascii_end(), &second.manifest[..]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 3);
}

#[test]
fn skopeo_reads_the_docker_tarball() {
    let f = fixture();
    let image = build(&f, ImageFormat::Docker);
    let tarball = f.work.join("image.tar");
    export_docker_tar(
        &f.store,
        &tarball,
        &image,
        &["demo:1", "example.com/team/demo"],
    )
    .unwrap();

    let listing = String::from_utf8(run(Command::new("tar").arg("-tf").arg(&tarball))).unwrap();
    for want in ["manifest.json", "index.json", "oci-layout", "repositories"] {
        assert!(
            listing.lines().any(|l| l == want),
            "{want} missing: {listing}"
        );
    }
    let manifest_json = run(Command::new("tar")
        .arg("-xOf")
        .arg(&tarball)
        .arg("manifest.json"));
    let expected = format!(
        r#"[{{"Config":"blobs/sha256/{}","Layers":["blobs/sha256/{}"],"RepoTags":["demo:1","example.com/team/demo:latest"]}}]"#,
        image.config.digest.hex(),
        f.layer.digest.hex()
    );
    assert_eq!(String::from_utf8(manifest_json).unwrap(), expected);

    let out = f.work.join("from-tar");
    run(skopeo()
        .arg("copy")
        .arg(format!("docker-archive:{}:demo:1", tarball.display()))
        .arg(format!("oci:{}:t", out.display())));
    let (_, config) = read_layout_image(&out, "t");
    assert_eq!(config.rootfs.diff_ids, vec![f.layer.diff_id.clone()]);
    assert_eq!(config.config.cmd, Some(vec!["/bin/sh".to_string()]));
    // skopeo reads the tarball's layer and writes it back; its digest is the diff_id when
    // stored uncompressed, or ours when kept as is.
    let raw = run(skopeo()
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:t", out.display())));
    let ParsedManifest::Image(m) = parse_manifest(None, &raw).unwrap() else {
        panic!("not an image manifest")
    };
    assert_eq!(m.layers.len(), 1);
    let got = &m.layers[0].digest;
    assert!(
        *got == f.layer.digest || *got == f.layer.diff_id || {
            let blob = out.join("blobs/sha256").join(got.hex());
            let unpacked = run(Command::new("gzip").arg("-dc").arg(&blob));
            Digest::of(&unpacked) == f.layer.diff_id
        },
        "layer {got} is none of ours"
    );
}

#[test]
fn the_docker_tarball_of_an_oci_image_is_an_oci_layout_too() {
    // As Docker 25+ writes it. (skopeo's `oci:` reads only OCI media types from a layout, so
    // this is checked with an OCI image.)
    let f = fixture();
    let image = build(&f, ImageFormat::Oci);
    let tarball = f.work.join("image.tar");
    export_docker_tar(&f.store, &tarball, &image, &["demo:1"]).unwrap();
    let unpacked = f.work.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&tarball)
        .arg("-C")
        .arg(&unpacked));
    let (raw, config) = read_layout_image(&unpacked, "1");
    assert_eq!(raw.trim_ascii_end(), &image.manifest[..]);
    assert_eq!(config.rootfs.diff_ids, vec![f.layer.diff_id.clone()]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(unpacked.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        "docker.io/library/demo:1"
    );
    run(skopeo()
        .arg("copy")
        .arg(format!("docker-archive:{}", tarball.display()))
        .arg(format!("oci:{}:t", f.work.join("copy").display())));
}

/// skopeo's `dir:` transport copies a manifest verbatim, whatever its media type: the way to
/// hand a Docker schema 2 image to a registry without a client of our own.
fn to_dir_transport(f: &Fixture, image: &BuiltImage, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("version"), "Directory Transport Version: 1.1\n").unwrap();
    std::fs::write(dir.join("manifest.json"), &image.manifest).unwrap();
    for d in image.layers.iter().chain([&image.config]) {
        std::fs::copy(f.store.path(&d.digest), dir.join(d.digest.hex())).unwrap();
    }
}

/// A docker-registry on a free loopback port, killed (by its pid) when dropped.
struct Registry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut reg = Registry {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&reg.addr).is_err() {
            if let Ok(Some(status)) = reg.child.try_wait() {
                panic!("docker-registry exited: {status}");
            }
            assert!(Instant::now() < deadline, "docker-registry did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_registry_accepts_oci_and_docker_images() {
    let f = fixture();
    let reg = Registry::start();
    for (format, tag) in [(ImageFormat::Oci, "1"), (ImageFormat::Docker, "2")] {
        let image = build(&f, format);
        let source = match format {
            ImageFormat::Oci => {
                let layout = f.work.join(format!("layout-{tag}"));
                export_oci_layout(&f.store, &layout, &image, &[tag]).unwrap();
                format!("oci:{}:{tag}", layout.display())
            }
            ImageFormat::Docker => {
                let dir = f.work.join("dir-transport");
                to_dir_transport(&f, &image, &dir);
                format!("dir:{}", dir.display())
            }
        };
        let dest = format!("docker://{}/demo:{tag}", reg.addr);
        run(skopeo()
            .args(["copy", "--dest-tls-verify=false"])
            .arg(&source)
            .arg(&dest));
        let raw = run(skopeo().args(["inspect", "--tls-verify=false", "--raw", &dest]));
        assert_eq!(raw.trim_ascii_end(), &image.manifest[..], "{format:?}");
        let summary: serde_json::Value = serde_json::from_slice(&run(skopeo().args([
            "inspect",
            "--tls-verify=false",
            &dest,
        ])))
        .unwrap();
        assert_eq!(summary["Digest"], image.digest.to_string(), "{format:?}");
        let config =
            run(skopeo().args(["inspect", "--tls-verify=false", "--config", "--raw", &dest]));
        assert_eq!(Digest::of(config.trim_ascii_end()), image.config.digest);
    }
}

#[test]
fn buildah_imports_the_oci_layout() {
    if !Path::new("/usr/bin/buildah").exists() || run(Command::new("id").arg("-u")) != b"0\n" {
        eprintln!("buildah needs root here; not checked");
        return;
    }
    let f = fixture();
    let image = build(&f, ImageFormat::Oci);
    let layout = f.work.join("layout");
    export_oci_layout(&f.store, &layout, &image, &["1"]).unwrap();
    let root = f.work.join("buildah-root");
    let runroot = f.work.join("buildah-run");
    let buildah = || {
        let mut c = Command::new("buildah");
        c.arg("--storage-driver=vfs")
            .arg("--root")
            .arg(&root)
            .arg("--runroot")
            .arg(&runroot);
        c
    };
    // buildah names the image after the layout's path, which must be lower case.
    let link = std::env::temp_dir().join(format!("kiln-buildah-{}", std::process::id()));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&layout, &link).unwrap();
    let from = buildah()
        .args(["from", "--pull-never"])
        .arg(format!("oci:{}:1", link.display()))
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&link);
    assert!(
        from.status.success(),
        "{}",
        String::from_utf8_lossy(&from.stderr)
    );
    let ctr = from.stdout;
    let ctr = String::from_utf8(ctr).unwrap().trim().to_string();
    let mnt = String::from_utf8(run(buildah().args(["mount", &ctr]))).unwrap();
    let mnt = PathBuf::from(mnt.trim());
    assert_eq!(
        std::fs::read(mnt.join("bin/busybox")).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
    assert_eq!(
        std::fs::read_link(mnt.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let info: serde_json::Value = serde_json::from_slice(&run(buildah().args([
        "inspect",
        "--type",
        "container",
        &ctr,
    ])))
    .unwrap();
    assert_eq!(info["FromImageDigest"], image.digest.to_string());
    run(buildah().args(["umount", &ctr]));
    run(buildah().args(["rm", &ctr]));
    // vfs layers are plain directories; remove them with the test's temp dir.
    let _ = Command::new("buildah")
        .args(["--storage-driver=vfs", "--root"])
        .arg(&root)
        .arg("--runroot")
        .arg(&runroot)
        .args(["rmi", "--all", "--force"])
        .output();
}

#[test]
fn docker_loads_the_tarball() {
    if !dockerd::available() {
        return;
    }
    let f = fixture();
    let dockerd = Dockerd::start();
    for (format, tag) in [(ImageFormat::Docker, "docker"), (ImageFormat::Oci, "oci")] {
        let image = build(&f, format);
        let tarball = f.work.join(format!("{tag}.tar"));
        let name = format!("demo:{tag}");
        export_docker_tar(&f.store, &tarball, &image, &[&name]).unwrap();
        run(dockerd.docker().args(["load", "-i"]).arg(&tarball));
        let info: serde_json::Value =
            serde_json::from_slice(&run(dockerd.docker().args(["image", "inspect", &name])))
                .unwrap();
        let info = &info[0];
        assert_eq!(info["Id"], image.config.digest.to_string(), "{format:?}");
        assert_eq!(info["RootFS"]["Layers"][0], f.layer.diff_id.to_string());
        assert_eq!(info["Config"]["Cmd"][0], "/bin/sh");
        // Both formats share the config blob, so Docker sees one image with two tags.
        assert!(info["RepoTags"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(name)));
        let out = run(dockerd.docker().args([
            "run",
            "--rm",
            "--network",
            "none",
            &name,
            "/bin/sh",
            "-c",
            "echo hello from kiln",
        ]));
        assert_eq!(out, b"hello from kiln\n");
        // Docker writes the layers back out uncompressed: the diff_id must survive the trip.
        let saved = f.work.join(format!("{tag}-saved.tar"));
        run(dockerd.docker().args(["save", "-o"]).arg(&saved).arg(&name));
        let out = f.work.join(format!("{tag}-resaved"));
        run(skopeo()
            .arg("copy")
            .arg(format!("docker-archive:{}", saved.display()))
            .arg(format!("oci:{}:t", out.display())));
        let (_, config) = read_layout_image(&out, "t");
        assert_eq!(config.rootfs.diff_ids, vec![f.layer.diff_id.clone()]);
    }
}
