//! The image JSON documents: byte-exact output, and reading what real registries and peers
//! produce (nulls, missing fields, unknown fields, media types by header or by content).

use kiln::blob::Digest;
use kiln::image::config::{ContainerConfig, Healthcheck, History, ImageConfig, RootFs};
use kiln::image::json::{to_canonical_vec, EmptyObject};
use kiln::image::{media, parse_manifest, Descriptor, ImageError, ImagePlatform, ParsedManifest};
use std::collections::BTreeMap;

fn digest(c: char) -> Digest {
    format!("sha256:{}", c.to_string().repeat(64))
        .parse()
        .unwrap()
}

fn full_config() -> ImageConfig {
    ImageConfig {
        created: Some("2024-01-02T03:04:05Z".into()),
        author: Some("kiln".into()),
        architecture: "arm64".into(),
        os: "linux".into(),
        os_version: Some("10.0".into()),
        os_features: vec!["win32k".into()],
        variant: Some("v8".into()),
        config: ContainerConfig {
            user: "app:app".into(),
            exposed_ports: [("80/tcp", EmptyObject), ("53/udp", EmptyObject)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            env: vec!["PATH=/bin".into(), "Q=\"a b\" <&>".into()],
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            cmd: Some(vec!["echo hi".into()]),
            volumes: [("/data".to_string(), EmptyObject)].into_iter().collect(),
            working_dir: "/app".into(),
            labels: [("b", "2"), ("a", "1")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            stop_signal: "SIGTERM".into(),
            healthcheck: Some(Healthcheck {
                test: vec!["CMD-SHELL".into(), "true".into()],
                interval: 30_000_000_000,
                timeout: 5_000_000_000,
                start_period: 1_000_000_000,
                start_interval: 2_000_000_000,
                retries: 3,
            }),
            on_build: vec!["RUN make".into()],
            shell: vec!["/bin/bash".into(), "-c".into()],
            args_escaped: true,
        },
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![digest('a'), digest('b')],
        },
        history: vec![
            History {
                created: Some("2024-01-02T03:04:05Z".into()),
                created_by: Some("ENV A=b".into()),
                author: Some("me".into()),
                comment: Some("buildkit.dockerfile.v0".into()),
                empty_layer: true,
            },
            History::created_by("COPY . /app"),
        ],
    }
}

const FULL_CONFIG_JSON: &str = concat!(
    r#"{"architecture":"arm64","author":"kiln","config":{"ArgsEscaped":true,"Cmd":["echo hi"],"#,
    r#""Entrypoint":["/bin/sh","-c"],"Env":["PATH=/bin","Q=\"a b\" <&>"],"#,
    r#""ExposedPorts":{"53/udp":{},"80/tcp":{}},"#,
    r#""Healthcheck":{"Interval":30000000000,"Retries":3,"StartInterval":2000000000,"#,
    r#""StartPeriod":1000000000,"Test":["CMD-SHELL","true"],"Timeout":5000000000},"#,
    r#""Labels":{"a":"1","b":"2"},"OnBuild":["RUN make"],"Shell":["/bin/bash","-c"],"#,
    r#""StopSignal":"SIGTERM","User":"app:app","Volumes":{"/data":{}},"WorkingDir":"/app"},"#,
    r#""created":"2024-01-02T03:04:05Z","history":[{"author":"me","comment":"buildkit.dockerfile.v0","#,
    r#""created":"2024-01-02T03:04:05Z","created_by":"ENV A=b","empty_layer":true},"#,
    r#"{"created_by":"COPY . /app"}],"os":"linux","os.features":["win32k"],"os.version":"10.0","#,
    r#""rootfs":{"diff_ids":["sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","#,
    r#""sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"],"type":"layers"},"#,
    r#""variant":"v8"}"#
);

#[test]
fn a_config_with_every_field_renders_byte_exactly_and_reads_back() {
    let bytes = to_canonical_vec(&full_config(), "config").unwrap();
    assert_eq!(String::from_utf8(bytes.clone()).unwrap(), FULL_CONFIG_JSON);
    assert_eq!(ImageConfig::parse(&bytes).unwrap(), full_config());
}

#[test]
fn an_empty_config_omits_what_go_omits() {
    let c = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        ..ImageConfig::default()
    };
    assert_eq!(
        String::from_utf8(to_canonical_vec(&c, "config").unwrap()).unwrap(),
        r#"{"architecture":"amd64","config":{},"os":"linux","rootfs":{"diff_ids":[],"type":"layers"}}"#
    );
    // An empty Cmd (set by `CMD []`) stays distinct from an unset one.
    let mut c2 = c.clone();
    c2.config.cmd = Some(vec![]);
    assert!(String::from_utf8(to_canonical_vec(&c2, "config").unwrap())
        .unwrap()
        .contains(r#""config":{"Cmd":[]}"#));
}

#[test]
fn a_docker_engine_config_with_nulls_and_extra_fields_parses() {
    // Shaped like `docker build` (legacy builder) output: container_config, nulls for nil
    // slices and maps, Go's escaping, fields kiln does not model.
    let json = r##"{
      "architecture": "amd64",
      "config": {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": false,
        "ExposedPorts": null, "Tty": false, "Env": ["PATH=/usr/bin"], "Cmd": null,
        "Healthcheck": {"Test": ["CMD", "curl", "-f", "http://x/"], "Interval": 30000000000},
        "Image": "sha256:0000", "Volumes": null, "WorkingDir": "", "Entrypoint": ["/e"],
        "OnBuild": null, "Labels": {"x": "\u003cy\u003e"}},
      "container": "4f8a",
      "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) ENTRYPOINT [\"/e\"]"]},
      "created": "2023-05-01T10:11:12.123456789Z",
      "docker_version": "20.10.24",
      "history": [{"created": "2023-05-01T10:11:12Z", "created_by": "/bin/sh -c #(nop) ADD file:x in / "},
                  {"created": "2023-05-01T10:11:12Z", "created_by": "ENTRYPOINT [\"/e\"]", "empty_layer": true}],
      "os": "linux",
      "rootfs": {"type": "layers", "diff_ids": ["sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"]}
    }"##;
    let c = ImageConfig::parse(json.as_bytes()).unwrap();
    assert_eq!(c.config.cmd, None);
    assert_eq!(c.config.entrypoint, Some(vec!["/e".to_string()]));
    assert!(c.config.exposed_ports.is_empty() && c.config.volumes.is_empty());
    assert_eq!(c.config.labels["x"], "<y>");
    let hc = c.config.healthcheck.unwrap();
    assert_eq!(
        (hc.interval, hc.timeout, hc.retries),
        (30_000_000_000, 0, 0)
    );
    assert!(c.history[1].empty_layer && !c.history[0].empty_layer);
    assert_eq!(c.rootfs.diff_ids, vec![digest('c')]);
    assert_eq!(c.created.as_deref(), Some("2023-05-01T10:11:12.123456789Z"));

    // A minimal OCI config: no config, no history, null rootfs fields.
    let c = ImageConfig::parse(
        br#"{"architecture":"arm","os":"linux","variant":"v7","rootfs":{"type":"layers","diff_ids":null}}"#,
    )
    .unwrap();
    assert_eq!(c.config, ContainerConfig::default());
    assert!(c.rootfs.diff_ids.is_empty());
}

/// Every field of the config types may be missing, and every list or map may be `null`: both
/// read as the type's default (as Go's `encoding/json` leaves a field it gets nothing for).
#[test]
fn missing_fields_and_null_collections_read_as_defaults() {
    assert_eq!(ImageConfig::parse(b"{}").unwrap(), ImageConfig::default());
    assert_eq!(RootFs::default().kind, "layers");
    let nulls =
        ImageConfig::parse(br#"{"os.features":null,"config":null,"rootfs":null,"history":null}"#)
            .unwrap();
    assert_eq!(nulls, ImageConfig::default());
    let config: ContainerConfig = serde_json::from_str(
        r#"{"ExposedPorts":null,"Env":null,"Volumes":null,"Labels":null,"OnBuild":null,
            "Shell":null,"Healthcheck":{"Test":null}}"#,
    )
    .unwrap();
    assert_eq!(
        config,
        ContainerConfig {
            healthcheck: Some(Healthcheck::default()),
            ..ContainerConfig::default()
        }
    );
    let rootfs: RootFs = serde_json::from_str(r#"{"diff_ids":null}"#).unwrap();
    assert_eq!(rootfs, RootFs::default());
    assert_eq!(
        serde_json::from_str::<History>("{}").unwrap(),
        History::default()
    );
    let platform: ImagePlatform =
        serde_json::from_str(r#"{"os.features":null,"features":null}"#).unwrap();
    assert_eq!(platform, ImagePlatform::default());
    // Scalars keep their types: `null` for a string is still an error, as before.
    assert!(serde_json::from_str::<ContainerConfig>(r#"{"User":null}"#).is_err());
}

#[test]
fn bad_configs_are_errors_not_panics() {
    for bad in [
        &b"not json"[..],
        br#"{"rootfs":{"diff_ids":["md5:abc"]}}"#,
        br#"{"config":{"Env":"PATH=/bin"}}"#,
        br#"{"config":{"Healthcheck":{"Interval":"30s"}}}"#,
        br#"[]"#,
    ] {
        assert!(
            matches!(ImageConfig::parse(bad), Err(ImageError::Json { .. })),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn descriptors_render_with_omitempty_and_read_with_extras() {
    let mut d = Descriptor::new(media::OCI_MANIFEST, digest('d'), 1234);
    assert_eq!(
        String::from_utf8(to_canonical_vec(&d, "d").unwrap()).unwrap(),
        r#"{"digest":"sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd","mediaType":"application/vnd.oci.image.manifest.v1+json","size":1234}"#
    );
    d.urls = vec!["https://example.invalid/l".into()];
    d.annotations = BTreeMap::from([("k".into(), "v".into())]);
    d.artifact_type = Some("application/vnd.example+type".into());
    d.platform = Some(ImagePlatform {
        architecture: "amd64".into(),
        os: "windows".into(),
        os_version: Some("10.0.17763.1234".into()),
        os_features: vec!["win32k".into()],
        variant: None,
        features: vec![],
    });
    let s = String::from_utf8(to_canonical_vec(&d, "d").unwrap()).unwrap();
    assert!(s.contains(r#""platform":{"architecture":"amd64","os":"windows","os.features":["win32k"],"os.version":"10.0.17763.1234"}"#), "{s}");
    assert!(
        s.contains(r#""artifactType":"application/vnd.example+type""#),
        "{s}"
    );
    let back: Descriptor = serde_json::from_str(&s).unwrap();
    assert_eq!(back, d);
    let with_nulls: Descriptor = serde_json::from_str(
        r#"{"mediaType":"x","digest":"sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd","size":1,"urls":null,"annotations":null,"platform":{"architecture":"arm64","os":"linux","features":null},"unknown":{"a":1}}"#,
    )
    .unwrap();
    assert!(with_nulls.urls.is_empty() && with_nulls.annotations.is_empty());
}

/// Shaped like Docker Hub's answer for an official image today: an OCI index with one
/// attestation manifest (`unknown/unknown`) per platform.
fn docker_hub_index() -> String {
    let entry = |d: char, arch: &str, variant: Option<&str>| {
        let v = variant
            .map(|v| format!(r#","variant":"{v}""#))
            .unwrap_or_default();
        format!(
            r#"{{"annotations":{{"com.docker.official-images.bashbrew.arch":"{arch}","org.opencontainers.image.base.name":"scratch","org.opencontainers.image.created":"2024-09-26T21:31:42Z"}},"digest":"{}","mediaType":"application/vnd.oci.image.manifest.v1+json","platform":{{"architecture":"{arch}","os":"linux"{v}}},"size":610}},{{"annotations":{{"vnd.docker.reference.digest":"{}","vnd.docker.reference.type":"attestation-manifest"}},"digest":"{}","mediaType":"application/vnd.oci.image.manifest.v1+json","platform":{{"architecture":"unknown","os":"unknown"}},"size":839}}"#,
            digest(d),
            digest(d),
            digest('f')
        )
    };
    format!(
        r#"{{"manifests":[{},{},{},{},{},{},{}],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}}"#,
        entry('0', "amd64", None),
        entry('1', "arm", Some("v5")),
        entry('2', "arm", Some("v6")),
        entry('3', "arm", Some("v7")),
        entry('4', "arm64", Some("v8")),
        entry('5', "386", None),
        entry('6', "riscv64", None),
    )
}

#[test]
fn a_docker_hub_index_parses_by_header_and_by_content() {
    let body = docker_hub_index();
    for ct in [
        Some(media::OCI_INDEX),
        Some("application/json"),
        None,
        Some("application/vnd.oci.image.index.v1+json; charset=utf-8"),
    ] {
        let ParsedManifest::Index(idx) = parse_manifest(ct, body.as_bytes()).unwrap() else {
            panic!("{ct:?}: not an index")
        };
        assert_eq!(idx.manifests.len(), 14);
        assert_eq!(
            idx.manifests[1].annotations["vnd.docker.reference.type"],
            "attestation-manifest"
        );
    }
}

#[test]
fn a_docker_manifest_list_and_manifest_parse() {
    let list = format!(
        r#"{{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
   "manifests": [
      {{"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 527, "digest": "{}",
        "platform": {{"architecture": "amd64", "os": "linux"}}}},
      {{"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 527, "digest": "{}",
        "platform": {{"architecture": "arm64", "os": "linux", "variant": "v8", "features": null}}}},
      {{"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 1357, "digest": "{}",
        "platform": {{"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.6293"}}}}
   ]
}}"#,
        digest('1'),
        digest('2'),
        digest('3')
    );
    let ParsedManifest::Index(idx) =
        parse_manifest(Some(media::DOCKER_MANIFEST_LIST), list.as_bytes()).unwrap()
    else {
        panic!("not a list")
    };
    assert_eq!(idx.media_type.as_deref(), Some(media::DOCKER_MANIFEST_LIST));
    assert_eq!(
        idx.manifests[2]
            .platform
            .as_ref()
            .unwrap()
            .os_version
            .as_deref(),
        Some("10.0.17763.6293")
    );

    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":1469,"digest":"{}"}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":2479,"digest":"{}"}},{{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","size":9,"digest":"{}","urls":["https://example.invalid/l"]}}]}}"#,
        digest('4'),
        digest('5'),
        digest('6')
    );
    // No header: the document's own mediaType decides.
    let ParsedManifest::Image(m) = parse_manifest(None, manifest.as_bytes()).unwrap() else {
        panic!("not a manifest")
    };
    assert_eq!(m.config.media_type, media::DOCKER_CONFIG);
    assert_eq!(m.layers[1].urls.len(), 1);
    assert!(m.annotations.is_empty() && m.subject.is_none());
}

#[test]
fn oci_manifests_without_media_type_and_with_nulls_parse() {
    let m = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":null,"annotations":null,"extra":true}}"#,
        digest('7')
    );
    let ParsedManifest::Image(parsed) = parse_manifest(None, m.as_bytes()).unwrap() else {
        panic!("not a manifest")
    };
    assert!(parsed.layers.is_empty() && parsed.media_type.is_none());
    let ParsedManifest::Image(_) = parse_manifest(Some(media::OCI_MANIFEST), m.as_bytes()).unwrap()
    else {
        panic!("not a manifest")
    };
}

#[test]
fn unsupported_and_broken_manifests_are_errors() {
    let schema1 =
        br#"{"schemaVersion":1,"name":"library/x","tag":"1","fsLayers":[],"signatures":[]}"#;
    assert!(matches!(
        parse_manifest(None, schema1),
        Err(ImageError::UnsupportedMediaType(m)) if m == media::DOCKER_MANIFEST_V1_SIGNED
    ));
    assert!(matches!(
        parse_manifest(Some(media::DOCKER_MANIFEST_V1_SIGNED), schema1),
        Err(ImageError::UnsupportedMediaType(_))
    ));
    assert!(matches!(
        parse_manifest(Some("text/html"), b"<html>"),
        Err(ImageError::UnsupportedMediaType(_))
    ));
    assert!(matches!(
        parse_manifest(None, b"{}"),
        Err(ImageError::UnsupportedMediaType(_))
    ));
    assert!(matches!(
        parse_manifest(None, b"\xff"),
        Err(ImageError::Json { .. })
    ));
    assert!(matches!(
        parse_manifest(Some(media::OCI_MANIFEST), br#"{"schemaVersion":2}"#),
        Err(ImageError::Json { .. })
    ));
    assert!(matches!(
        parse_manifest(
            Some(media::OCI_INDEX),
            br#"{"schemaVersion":2,"manifests":[{"digest":"sha256:1"}]}"#
        ),
        Err(ImageError::Json { .. })
    ));
}

#[test]
fn media_types_are_the_specs() {
    assert_eq!(
        media::OCI_MANIFEST,
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(media::OCI_INDEX, "application/vnd.oci.image.index.v1+json");
    assert_eq!(
        media::OCI_CONFIG,
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(
        media::OCI_LAYER_GZIP,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(
        media::DOCKER_MANIFEST,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        media::DOCKER_MANIFEST_LIST,
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    assert_eq!(
        media::DOCKER_CONFIG,
        "application/vnd.docker.container.image.v1+json"
    );
    assert_eq!(
        media::DOCKER_LAYER_GZIP,
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
}
