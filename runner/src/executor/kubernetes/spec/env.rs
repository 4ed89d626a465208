//! The job's variables as container environment: plain values in clear, secret ones by
//! reference to the Secret, file ones as a path to a file from the Secret.

use super::secret::SecretData;
use super::FILES_DIR;
use crate::job::plan::{JobVar, VarKind};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};

/// A file variable's file in the Secret: its key and its name under [`FILES_DIR`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FileItem {
    pub key: String,
    pub file: String,
}

/// The kubelet expands `$(NAME)` in env values; `$$(` keeps a value as the job gave it.
fn literal(v: &str) -> String {
    v.replace("$(", "$$(")
}

/// A variable holding `value` in clear.
pub(super) fn plain(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(literal(value)),
        value_from: None,
    }
}

/// A variable read from key `key` of the Secret `secret`.
pub(super) fn from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
    }
}

/// The environment for `vars`, in order with later keys winning; secret and file values
/// go into `data` (file ones also into `files`, to be mounted under [`FILES_DIR`]).
pub(super) fn env_for(
    vars: &[JobVar],
    secret_name: &str,
    data: &mut SecretData,
    files: &mut Vec<FileItem>,
) -> Vec<EnvVar> {
    let mut out: Vec<EnvVar> = Vec::new();
    for v in vars {
        let e = match v.kind {
            VarKind::Plain => plain(&v.key, &v.value),
            VarKind::Secret => from_secret(&v.key, secret_name, &data.put_var(v)),
            VarKind::File => {
                let key = data.put("file.", &v.key, v.value.as_bytes());
                // The key is the file's name too: it is already safe as a path component.
                let file = key.trim_start_matches("file.").to_owned();
                if !files.iter().any(|f| f.key == key) {
                    files.push(FileItem {
                        key,
                        file: file.clone(),
                    });
                }
                plain(&v.key, &format!("{FILES_DIR}/{file}"))
            }
        };
        set(&mut out, e);
    }
    out
}

/// Sets `e`, replacing an earlier variable of the same name.
pub(super) fn set(env: &mut Vec<EnvVar>, e: EnvVar) {
    env.retain(|x| x.name != e.name);
    env.push(e);
}
