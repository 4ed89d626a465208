//! `kiln build` flags → the library's build options.

use super::args::{self, BuildArgs};
use super::Usage;
use kiln::dockerfile::instructions::duration::parse_duration;
use kiln::dockerfile::Dockerfile;
use kiln::executor::{BuildOptions, Secret, SecretSource};
use kiln::image::ImageFormat;
use kiln::layer::{Compression, LayerOptions};
use kiln::plan;
use kiln::registry::{CredentialResolver, Environment, Reference, RegistryConfig, Repository};
use kiln::sandbox::{Isolation, Network};
use std::path::PathBuf;
use std::time::Duration;

/// kaniko's default `--cache-ttl`: two weeks.
const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(14 * 24 * 3600);

fn usage(msg: String) -> anyhow::Error {
    Usage(msg).into()
}

fn on(flag: Option<bool>) -> bool {
    flag.unwrap_or(false)
}

/// Builds the options for `args`, the Dockerfile `name`d and `parsed`, and how to plan it.
pub fn options(
    args: &BuildArgs,
    name: PathBuf,
    parsed: Dockerfile,
    plan: plan::Options,
) -> anyhow::Result<BuildOptions> {
    let destinations = args
        .destination
        .iter()
        .map(|d| Reference::parse(d).map_err(|e| usage(format!("--destination: {e}"))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let no_push = on(args.no_push);
    if destinations.is_empty() && !no_push {
        return Err(usage(
            "no --destination given: name where to push, or pass --no-push".into(),
        ));
    }
    let cache_repo = args
        .cache_repo
        .as_deref()
        .map(|r| Repository::parse(r).map_err(|e| usage(format!("--cache-repo: {e}"))))
        .transpose()?;
    let mut registry = RegistryConfig {
        insecure_registries: args.insecure_registry.clone(),
        registry_mirrors: args.registry_mirror.clone(),
        ..RegistryConfig::default()
    };
    if let Some(n) = args.push_retry {
        registry.retries = n;
    }
    registry.skip_tls_verify = on(args.skip_tls_verify);
    // kaniko's form is `host=FILE`; kiln trusts the CA for every registry, so the host is
    // optional.
    registry.ca_certificates = args
        .registry_certificate
        .iter()
        .map(|c| match c.split_once('=') {
            Some((_, file)) => PathBuf::from(file),
            None => PathBuf::from(c),
        })
        .collect();
    if on(args.insecure) {
        // kaniko's --insecure is about pushing: destinations and the cache repository.
        let hosts = destinations
            .iter()
            .map(|d| d.repository.registry.clone())
            .chain(cache_repo.iter().map(|r| r.registry.clone()));
        registry.insecure_registries.extend(hosts);
    }
    let labels = args::labels(&args.label)?;
    let cache_ttl = match &args.cache_ttl {
        Some(t) => parse_duration(t).map_err(|e| usage(format!("--cache-ttl: {e}")))?,
        None => DEFAULT_CACHE_TTL,
    };
    let reproducible = if on(args.reproducible) {
        Some(source_date_epoch()?.unwrap_or(0))
    } else {
        None
    };
    let compression = match args.compression.as_deref() {
        None | Some("gzip") => Compression::Gzip,
        Some("zstd") => Compression::Zstd,
        Some(other) => return Err(usage(format!("--compression {other:?}: gzip or zstd"))),
    };
    let layer = LayerOptions {
        compression,
        clamp_epoch: source_date_epoch()?,
        exclude: args
            .ignore_path
            .iter()
            .map(|p| p.strip_prefix("/").unwrap_or(p).to_path_buf())
            .collect(),
        ..LayerOptions::default()
    };
    let isolation = match args.isolation.as_str() {
        "auto" => Isolation::Auto,
        "rootless" => Isolation::Rootless,
        "chroot" => Isolation::Chroot,
        "none" => Isolation::Unconfined,
        other => {
            return Err(usage(format!(
                "--isolation {other:?}: auto, rootless, chroot or none"
            )))
        }
    };
    let network = match args.network.as_str() {
        "host" | "default" => Network::Host,
        "none" => Network::None,
        other => return Err(usage(format!("--network {other:?}: host or none"))),
    };
    let format = match args.format.as_str() {
        "oci" => ImageFormat::Oci,
        "docker" => ImageFormat::Docker,
        other => return Err(usage(format!("--format {other:?}: oci or docker"))),
    };
    let secrets = args
        .secret
        .iter()
        .map(|s| parse_secret(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(BuildOptions {
        context: args.context.clone(),
        dockerfile: name,
        parsed,
        insecure_pull: on(args.insecure_pull),
        plan,
        destinations,
        push: !no_push,
        labels,
        cache: on(args.cache) || cache_repo.is_some() && args.cache != Some(false),
        cache_repo,
        cache_dir: args
            .cache_dir
            .clone()
            .unwrap_or_else(kiln::cache::default_dir),
        cache_ttl,
        tar_path: args.tar_path.clone(),
        oci_layout_path: args.oci_layout_path.clone(),
        digest_file: args.digest_file.clone(),
        image_name_with_digest_file: args.image_name_with_digest_file.clone(),
        reproducible,
        single_snapshot: on(args.single_snapshot),
        // One default, the layer module's: the flag only overrides it.
        max_layer_bytes: match &args.max_layer_size {
            None => kiln::layer::DEFAULT_MAX_LAYER_BYTES,
            Some(text) => size(text).ok_or_else(|| {
                usage(format!(
                    "--max-layer-size {text:?}: expected bytes, or a number with K, M, G or T"
                ))
            })?,
        },
        registry,
        credentials: CredentialResolver::new(Environment::from_process()),
        layer,
        format,
        isolation,
        network,
        pids_limit: (args.pids_limit > 0).then_some(args.pids_limit),
        secrets,
    })
}

/// `SOURCE_DATE_EPOCH`, when set.
fn source_date_epoch() -> anyhow::Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => v.parse().map(Some).map_err(|_| {
            usage(format!(
                "SOURCE_DATE_EPOCH={v:?} is not a number of seconds"
            ))
        }),
        _ => Ok(None),
    }
}

/// `id=NAME,src=FILE` / `id=NAME,env=VAR` (`source=` and `type=file|env` also accepted, as
/// BuildKit does); a bare `id=NAME` reads the variable `NAME`.
fn parse_secret(s: &str) -> anyhow::Result<Secret> {
    let mut id = None;
    let mut src = None;
    let mut env = None;
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("id", v)) => id = Some(v.to_string()),
            Some(("src" | "source", v)) => src = Some(v.to_string()),
            Some(("env", v)) => env = Some(v.to_string()),
            Some(("type", "file" | "env")) => {}
            _ => {
                return Err(usage(format!(
                    "--secret {s:?}: expected id=NAME,src=FILE or id=NAME,env=VAR"
                )))
            }
        }
    }
    let id = id.ok_or_else(|| usage(format!("--secret {s:?}: id= is missing")))?;
    let source = match (src, env) {
        (Some(f), None) => SecretSource::File(f.into()),
        (None, Some(v)) => SecretSource::Env(v),
        (None, None) => SecretSource::Env(id.clone()),
        (Some(_), Some(_)) => {
            return Err(usage(format!(
                "--secret {s:?}: give src= or env=, not both"
            )))
        }
    };
    Ok(Secret { id, source })
}

/// `512` or `64G`: bytes, or a number with a K, M, G or T suffix
/// (powers of 1024; a trailing `i`/`iB`/`B` is accepted too).
fn size(text: &str) -> Option<u64> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let t = t.strip_suffix('i').unwrap_or(t);
    let (digits, shift) = match t.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return None,
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::size;

    #[test]
    fn sizes_are_bytes_or_powers_of_1024() {
        assert_eq!(size("512"), Some(512));
        assert_eq!(size("64G"), Some(64 << 30));
        assert_eq!(size("2k"), Some(2048));
        assert_eq!(size("3MiB"), Some(3 << 20));
        assert_eq!(size("1T"), Some(1 << 40));
        assert_eq!(size("12X"), None);
        assert_eq!(size("G"), None);
        assert_eq!(size(""), None);
        assert_eq!(size("99999999999T"), None, "overflow");
    }
}
