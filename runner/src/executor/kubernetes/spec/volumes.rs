//! Volumes: the entry's `[runners.kubernetes.volumes]` and kiln's own (the builds dir, the
//! Secret's projections, the daemon's data and the shared cache).

use crate::config::kubernetes::VolumesConfig;
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, EmptyDirVolumeSource, HostPathVolumeSource, KeyToPath,
    PersistentVolumeClaimVolumeSource, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A mount of volume `name` at `path`.
pub(super) fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

/// An emptyDir volume.
pub(super) fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

/// Some keys of the Secret `secret` as files: `(key, path, mode)`.
pub(super) fn secret_items(name: &str, secret: &str, items: &[(String, String, i32)]) -> Volume {
    Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            items: Some(
                items
                    .iter()
                    .map(|(key, path, mode)| KeyToPath {
                        key: key.clone(),
                        path: path.clone(),
                        mode: Some(*mode),
                    })
                    .collect(),
            ),
            default_mode: Some(0o444),
            optional: Some(false),
        }),
        ..Default::default()
    }
}

/// kiln's shared cache: a PVC, or a host path when `source` starts with `/`.
pub(super) fn cache(name: &str, source: &str) -> Volume {
    if source.starts_with('/') {
        Volume {
            name: name.to_owned(),
            host_path: Some(HostPathVolumeSource {
                path: source.to_owned(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            ..Default::default()
        }
    } else {
        Volume {
            name: name.to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: source.to_owned(),
                read_only: None,
            }),
            ..Default::default()
        }
    }
}

/// The entry's volumes and their mounts in the build container.
pub(super) fn configured(v: &VolumesConfig) -> (Vec<Volume>, Vec<VolumeMount>) {
    let mut vols = Vec::new();
    let mut mounts = Vec::new();
    for e in &v.empty_dir {
        vols.push(Volume {
            name: e.name.clone(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: e.medium.clone().filter(|m| !m.is_empty()),
                size_limit: e.size_limit.clone().map(Quantity),
            }),
            ..Default::default()
        });
        mounts.push(mount(&e.name, &e.mount_path, false));
    }
    for p in &v.pvc {
        vols.push(Volume {
            name: p.name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: p.name.clone(),
                read_only: p.read_only.then_some(true),
            }),
            ..Default::default()
        });
        mounts.push(mount(&p.name, &p.mount_path, p.read_only));
    }
    let items = |m: &std::collections::BTreeMap<String, String>| {
        (!m.is_empty()).then(|| {
            m.iter()
                .map(|(k, p)| KeyToPath {
                    key: k.clone(),
                    path: p.clone(),
                    mode: None,
                })
                .collect()
        })
    };
    for s in &v.secret {
        vols.push(Volume {
            name: s.name.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(s.name.clone()),
                items: items(&s.items),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(mount(&s.name, &s.mount_path, s.read_only));
    }
    for c in &v.config_map {
        vols.push(Volume {
            name: c.name.clone(),
            config_map: Some(ConfigMapVolumeSource {
                name: c.name.clone(),
                items: items(&c.items),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(mount(&c.name, &c.mount_path, c.read_only));
    }
    for h in &v.host_path {
        vols.push(Volume {
            name: h.name.clone(),
            host_path: Some(HostPathVolumeSource {
                path: h.host_path.clone().unwrap_or_else(|| h.mount_path.clone()),
                type_: None,
            }),
            ..Default::default()
        });
        mounts.push(mount(&h.name, &h.mount_path, h.read_only));
    }
    (vols, mounts)
}
