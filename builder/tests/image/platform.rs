//! Choosing an image from an index for a platform, by containerd's rules.

use kiln::blob::Digest;
use kiln::image::manifest::ImageIndex;
use kiln::image::platform_select::normalize;
use kiln::image::{media, platform_matches, select_manifest, Descriptor, ImagePlatform};
use kiln::plan::Platform;

fn p(s: &str) -> Platform {
    Platform::parse(s).unwrap()
}

/// An index whose n-th entry has digest `sha256:<n repeated>` and platform `platforms[n]`
/// (`None`: no platform at all).
fn index(platforms: &[Option<&str>]) -> ImageIndex {
    let mut idx = ImageIndex::empty(Some(media::OCI_INDEX));
    for (i, plat) in platforms.iter().enumerate() {
        let c = char::from_digit(i as u32, 16).unwrap();
        let digest: Digest = format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap();
        let mut d = Descriptor::new(media::OCI_MANIFEST, digest, 100);
        d.platform = plat.map(|s| {
            let parts: Vec<&str> = s.split('/').collect();
            ImagePlatform {
                os: parts[0].to_string(),
                architecture: parts[1].to_string(),
                variant: parts.get(2).map(|v| v.to_string()),
                ..ImagePlatform::default()
            }
        });
        idx.manifests.push(d);
    }
    idx
}

/// Which entry (by position) is chosen for `want`.
fn chosen(idx: &ImageIndex, want: &str) -> Option<usize> {
    let d = select_manifest(idx, &p(want))?;
    idx.manifests.iter().position(|m| std::ptr::eq(m, d))
}

#[test]
fn docker_hub_like_index() {
    let idx = index(&[
        Some("linux/amd64"),
        Some("unknown/unknown"),
        Some("linux/arm/v5"),
        Some("linux/arm/v6"),
        Some("linux/arm/v7"),
        Some("linux/arm64/v8"),
        Some("linux/386"),
        Some("linux/ppc64le"),
        Some("windows/amd64"),
        None,
    ]);
    assert_eq!(chosen(&idx, "linux/amd64"), Some(0));
    assert_eq!(chosen(&idx, "linux/x86_64"), Some(0));
    assert_eq!(chosen(&idx, "linux/arm64"), Some(5));
    assert_eq!(chosen(&idx, "linux/arm64/v8"), Some(5));
    assert_eq!(chosen(&idx, "linux/aarch64"), Some(5));
    assert_eq!(chosen(&idx, "linux/arm"), Some(4));
    assert_eq!(chosen(&idx, "linux/arm/v7"), Some(4));
    assert_eq!(chosen(&idx, "linux/arm/v6"), Some(3));
    assert_eq!(chosen(&idx, "linux/arm/v5"), Some(2));
    assert_eq!(chosen(&idx, "linux/386"), Some(6));
    assert_eq!(chosen(&idx, "linux/ppc64le"), Some(7));
    assert_eq!(chosen(&idx, "windows/amd64"), Some(8));
    assert_eq!(chosen(&idx, "linux/s390x"), None);
    assert_eq!(chosen(&idx, "darwin/arm64"), None);
}

#[test]
fn exact_variant_beats_an_earlier_compatible_one() {
    let idx = index(&[Some("linux/arm/v6"), Some("linux/arm/v7")]);
    assert_eq!(chosen(&idx, "linux/arm/v7"), Some(1));
    assert_eq!(chosen(&idx, "linux/arm/v6"), Some(0));
    // The newest older variant, not the first one listed.
    let idx = index(&[Some("linux/arm/v5"), Some("linux/arm/v6")]);
    assert_eq!(chosen(&idx, "linux/arm/v7"), Some(1));
    assert_eq!(chosen(&idx, "linux/arm/v8"), Some(1));
}

#[test]
fn arm64_v8_is_the_default_variant() {
    let idx = index(&[Some("linux/arm64")]);
    assert_eq!(chosen(&idx, "linux/arm64/v8"), Some(0));
    assert_eq!(chosen(&idx, "linux/arm64"), Some(0));
    let idx = index(&[Some("linux/arm64/v8")]);
    assert_eq!(chosen(&idx, "linux/arm64"), Some(0));
    // v9 runs v8 images but v8 does not run v9 ones; v9 prefers its own.
    let idx = index(&[Some("linux/arm64"), Some("linux/arm64/v9")]);
    assert_eq!(chosen(&idx, "linux/arm64/v9"), Some(1));
    assert_eq!(chosen(&idx, "linux/arm64"), Some(0));
    let idx = index(&[Some("linux/arm64/v9")]);
    assert_eq!(chosen(&idx, "linux/arm64"), None);
}

#[test]
fn wider_machines_fall_back_to_narrower_images() {
    let idx = index(&[Some("linux/arm/v6"), Some("linux/arm/v7")]);
    assert_eq!(chosen(&idx, "linux/arm64"), Some(1));
    let idx = index(&[Some("linux/386")]);
    assert_eq!(chosen(&idx, "linux/amd64"), Some(0));
    assert_eq!(chosen(&idx, "linux/arm64"), None);
    // But a narrower machine never gets a wider image.
    let idx = index(&[Some("linux/amd64"), Some("linux/arm64")]);
    assert_eq!(chosen(&idx, "linux/386"), None);
    assert_eq!(chosen(&idx, "linux/arm/v7"), None);
    // The native architecture beats the fallback wherever it is listed.
    let idx = index(&[Some("linux/arm/v7"), Some("linux/arm64")]);
    assert_eq!(chosen(&idx, "linux/arm64"), Some(1));
}

#[test]
fn amd64_microarchitecture_levels() {
    let idx = index(&[
        Some("linux/amd64"),
        Some("linux/amd64/v2"),
        Some("linux/amd64/v4"),
    ]);
    assert_eq!(chosen(&idx, "linux/amd64/v3"), Some(1));
    assert_eq!(chosen(&idx, "linux/amd64"), Some(0));
    assert_eq!(chosen(&idx, "linux/amd64/v1"), Some(0));
    assert_eq!(chosen(&idx, "linux/amd64/v4"), Some(2));
}

#[test]
fn ties_go_to_the_first_listed() {
    let idx = index(&[Some("linux/amd64"), Some("linux/amd64"), Some("linux/arm")]);
    assert_eq!(chosen(&idx, "linux/amd64"), Some(0));
    // `arm` and `arm/v7` are the same platform.
    let idx = index(&[Some("linux/arm/v7"), Some("linux/arm")]);
    assert_eq!(chosen(&idx, "linux/arm"), Some(0));
}

#[test]
fn normalisation_and_matching() {
    assert_eq!(normalize(&p("linux/aarch64/v8")), p("linux/arm64"));
    assert_eq!(normalize(&p("linux/armhf")), p("linux/arm/v7"));
    assert_eq!(normalize(&p("linux/armel")), p("linux/arm/v6"));
    assert_eq!(normalize(&p("linux/arm/7")), p("linux/arm/v7"));
    assert_eq!(normalize(&p("Linux/AMD64/v1")), p("linux/amd64"));
    assert_eq!(normalize(&p("macos/arm64")), p("darwin/arm64"));
    assert!(platform_matches(&p("linux/arm64"), &p("linux/arm/v7")));
    assert!(!platform_matches(&p("linux/arm/v7"), &p("linux/arm64")));
    assert!(!platform_matches(&p("linux/amd64"), &p("windows/amd64")));
}

#[test]
fn choosing_from_a_parsed_registry_answer() {
    use kiln::image::{parse_manifest, ParsedManifest};
    let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
        {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":1,"platform":{{"architecture":"unknown","os":"unknown"}},"annotations":{{"vnd.docker.reference.type":"attestation-manifest"}}}},
        {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":1,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
        {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
        d('a'),
        d('b'),
        d('c')
    );
    let ParsedManifest::Index(idx) = parse_manifest(None, body.as_bytes()).unwrap() else {
        panic!("not an index")
    };
    assert_eq!(
        select_manifest(&idx, &p("linux/amd64"))
            .unwrap()
            .digest
            .to_string(),
        d('c')
    );
    assert_eq!(
        select_manifest(&idx, &p("linux/arm64"))
            .unwrap()
            .digest
            .to_string(),
        d('b')
    );
    assert!(select_manifest(&idx, &p("linux/riscv64")).is_none());
}
