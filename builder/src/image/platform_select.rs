//! Choosing an image from an index for a platform, by the rules containerd applies: names are
//! normalised (`aarch64` → `arm64`, `arm64/v8` ≡ `arm64`, `arm` ≡ `arm/v7`, `amd64/v1` ≡ `amd64`),
//! an exact match wins, then the newest compatible older variant (`arm/v7` runs `arm/v6`), then
//! a compatible narrower architecture (`arm64` runs `arm`, `amd64` runs `386`). Among equals,
//! the index's order decides.

use super::descriptor::Descriptor;
use super::manifest::ImageIndex;
use super::Platform;

/// `p` with containerd's normalisations; the variant is `None` when it is the architecture's
/// default (`arm64/v8`, `amd64/v1`).
pub fn normalize(p: &Platform) -> Platform {
    let os = match p.os.to_ascii_lowercase().as_str() {
        "macos" => "darwin".to_string(),
        other => other.to_string(),
    };
    let variant = p.variant.as_deref().unwrap_or("").to_ascii_lowercase();
    let (arch, variant) = match p.arch.to_ascii_lowercase().as_str() {
        "i386" | "386" => ("386".to_string(), variant),
        "x86_64" | "x86-64" | "amd64" => {
            let v = if variant == "v1" {
                String::new()
            } else {
                variant
            };
            ("amd64".to_string(), v)
        }
        "aarch64" | "arm64" => {
            let v = match variant.as_str() {
                "8" | "v8" | "v8.0" => String::new(),
                "9" | "9.0" | "v9.0" => "v9".to_string(),
                _ => variant,
            };
            ("arm64".to_string(), v)
        }
        "armhf" => ("arm".to_string(), "v7".to_string()),
        "armel" => ("arm".to_string(), "v6".to_string()),
        "arm" => {
            let v = match variant.as_str() {
                "" | "7" => "v7".to_string(),
                "5" | "6" | "8" => format!("v{variant}"),
                _ => variant,
            };
            ("arm".to_string(), v)
        }
        other => (other.to_string(), variant),
    };
    Platform {
        os,
        arch,
        variant: Some(variant).filter(|v| !v.is_empty()),
    }
}

/// The (arch, variant) pairs a machine of `want` runs, best first.
fn compatible(want: &Platform) -> Vec<(String, Option<String>)> {
    let arm_from = |top: u32| -> Vec<(String, Option<String>)> {
        (5..=top.max(5))
            .rev()
            .map(|n| ("arm".to_string(), Some(format!("v{n}"))))
            .collect()
    };
    let version = |v: &Option<String>| -> Option<u32> {
        v.as_deref()
            .and_then(|s| s.strip_prefix('v'))
            .and_then(|s| s.split('.').next())
            .and_then(|s| s.parse().ok())
    };
    let mut out = vec![(want.arch.clone(), want.variant.clone())];
    match want.arch.as_str() {
        "amd64" => {
            if let Some(n) = version(&want.variant) {
                for k in (2..n).rev() {
                    out.push(("amd64".to_string(), Some(format!("v{k}"))));
                }
                if n > 1 {
                    out.push(("amd64".to_string(), None));
                }
            }
            out.push(("386".to_string(), None));
        }
        "arm64" => {
            if want.variant.is_some() {
                out.push(("arm64".to_string(), None));
            }
            out.extend(arm_from(8));
        }
        "arm" => {
            if let Some(n) = version(&want.variant) {
                out.extend(arm_from(n).into_iter().filter(|(_, v)| *v != want.variant));
            }
        }
        _ => {}
    }
    out
}

fn rank(want: &Platform, have: &Platform) -> Option<usize> {
    let want = normalize(want);
    let have = normalize(have);
    if want.os != have.os {
        return None;
    }
    compatible(&want)
        .iter()
        .position(|(arch, variant)| *arch == have.arch && *variant == have.variant)
}

/// Whether an image for `have` runs on `want` (exactly or as a compatible platform).
pub fn platform_matches(want: &Platform, have: &Platform) -> bool {
    rank(want, have).is_some()
}

/// The manifest of `index` that best suits `want`, if any does. Entries without a platform are
/// never chosen (attestations and other artifacts carry `unknown/unknown` or none).
pub fn select_manifest<'a>(index: &'a ImageIndex, want: &Platform) -> Option<&'a Descriptor> {
    let mut best: Option<(usize, &Descriptor)> = None;
    for d in &index.manifests {
        let Some(p) = &d.platform else { continue };
        if let Some(r) = rank(want, &Platform::from(p)) {
            if best.is_none_or(|(b, _)| r < b) {
                best = Some((r, d));
            }
        }
    }
    best.map(|(_, d)| d)
}
