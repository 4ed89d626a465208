//! RUN: the command in the sandbox on the root the build's snapshotter prepares over the
//! parent's layers; what it changed (an overlay's upper directory or, without overlay, the
//! difference of the whole tree), committed by the snapshotter, becomes the step's layer.

use super::error::{BuildError, RunFailure};
use super::layers::LayerRef;
use super::stage::{At, Done};
use super::timings::{Phase, StepClock};
use super::{Build, SecretSource};
use crate::dockerfile::instructions::{Command, Mount, MountType, Network as StepNetwork, Run};
use crate::executor::config_step::StageConfig;
use crate::path_io::IoAt;
use crate::plan::Step;
use crate::sandbox::{self, BindMount, ExitKind, Network, RunSpec};
use crate::snapshot;
use std::path::{Path, PathBuf};

/// The environment a RUN step sees: build args in scope and proxies, then the image's ENV (an
/// ENV wins over an ARG of the same name declared before it), then the ARGs declared after an
/// ENV of their name (BuildKit's one environment, where the later write wins).
pub(crate) fn environment(b: &Build<'_>, step: &Step, cfg: &StageConfig) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| match env.iter_mut().find(|(n, _)| n == k) {
        Some(slot) => slot.1 = v.to_string(),
        None => env.push((k.to_string(), v.to_string())),
    };
    for (k, v) in b.plan.proxies.iter().chain(&step.args) {
        set(k, v);
    }
    for kv in &cfg.config.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        set(k, v);
    }
    for (k, v) in step
        .args
        .iter()
        .filter(|(k, _)| step.args_over_env.contains(k))
    {
        set(k, v);
    }
    env
}

/// The argv of a RUN: exec form as is; shell form through SHELL; a heredoc alone is the script
/// (run by its `#!` line when it has one), heredocs after a command are fed to the shell with it.
fn argv(c: &Command, cfg: &StageConfig) -> (Vec<String>, Option<String>) {
    if c.heredocs.is_empty() || !c.shell_form {
        return (cfg.argv(c), None);
    }
    let line = c.args.join(" ");
    let only = c.heredocs.len() == 1 && line.trim().starts_with("<<") && {
        let word = line.trim().trim_start_matches("<<").trim_start_matches('-');
        word.trim_matches(|ch| ch == '"' || ch == '\'') == c.heredocs[0].name
    };
    if only {
        let body = &c.heredocs[0].content;
        if body.starts_with("#!") {
            return (vec![SCRIPT_PATH.to_string()], Some(body.clone()));
        }
        let mut v = cfg.shell();
        v.push(body.clone());
        return (v, None);
    }
    // BuildKit's text exactly (no newline after the last delimiter): it is also the history.
    let mut script = line;
    for h in &c.heredocs {
        script.push('\n');
        script.push_str(&h.content);
        script.push_str(&h.name);
    }
    let mut v = cfg.shell();
    v.push(script);
    (v, None)
}

/// Where a `#!` heredoc script is mounted for its run.
const SCRIPT_PATH: &str = "/dev/.kiln-heredoc";

/// The history text of a RUN as BuildKit writes it: the ARGs in scope, in declaration order,
/// with the values `env` (the step's environment) gives them, and the argv. A `#!` heredoc
/// script is named where BuildKit mounts it (`/dev/pipes/NAME`), not where kiln does.
pub(crate) fn created_by(
    step: &Step,
    r: &Run,
    cfg: &StageConfig,
    env: &[(String, String)],
) -> String {
    let (mut argv, script) = argv(&r.command, cfg);
    if script.is_some() {
        argv = vec![format!("/dev/pipes/{}", r.command.heredocs[0].name)];
    }
    let args: Vec<(String, String)> = step
        .declared_args
        .iter()
        .map(|name| {
            let v = env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            (name.clone(), v.unwrap_or_default())
        })
        .collect();
    crate::executor::history::run(&argv, &args)
}

/// Runs a RUN step and writes its layer.
pub(crate) fn run(
    at: &At<'_>,
    r: &Run,
    cfg: &StageConfig,
    parent: &[LayerRef],
    env: &[(String, String)],
    done: &Done,
) -> Result<LayerRef, BuildError> {
    let b = at.b;
    if r.insecure {
        return Err(at.err("RUN --security=insecure is not allowed: kiln runs steps unprivileged"));
    }
    let tmp = b.cache_dir.scratch();
    let scratch = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(&tmp)
        .at(&tmp)?;
    let mut env = env.to_vec();
    let (argv, script) = argv(&r.command, cfg);
    let mut mounts = Vec::new();
    if let Some(body) = script {
        let path = scratch.path().join("heredoc");
        write_file(&path, body.as_bytes(), 0o755)?;
        mounts.push(BindMount {
            source: path,
            target: SCRIPT_PATH.to_string(),
            readonly: true,
        });
    }
    for (i, m) in r.mounts.iter().enumerate() {
        if let Some(bm) = mount(at, m, scratch.path(), i, &mut env, done)? {
            mounts.push(bm);
        }
    }
    let clock = &at.clock;
    let lowers = b.layers.lowers(parent, clock)?;
    let (rootfs, active) = b
        .snapshotter
        .prepare(lowers, scratch.path(), clock)
        .map_err(|e| at.fail(e))?;
    let spec = RunSpec {
        rootfs,
        argv,
        env,
        workdir: if cfg.config.working_dir.is_empty() {
            "/".to_string()
        } else {
            cfg.config.working_dir.clone()
        },
        user: cfg.config.user.clone(),
        network: match r.network {
            StepNetwork::None => Network::None,
            StepNetwork::Host => Network::Host,
            StepNetwork::Default => b.opts.network,
        },
        hostname: "kiln".to_string(),
        mounts,
        isolation: b.isolation,
        pids_limit: b.opts.pids_limit,
    };
    let mut out = b.progress.command_output(format!("{} ", at.tag));
    let outcome = clock
        .time(Phase::Run, || sandbox::run(&spec, &mut out))
        .map_err(|e| at.fail(e))?;
    let tail = out.finish();
    let status = match outcome.exit {
        ExitKind::Code(0) => None,
        ExitKind::Code(c) => Some(format!("exited with code {c}")),
        ExitKind::Signal(s) => Some(format!("was killed by signal {s}")),
    };
    if let Some(status) = status {
        return Err(BuildError::RunFailed(Box::new(RunFailure {
            file: b.file.clone(),
            line: at.step.start_line,
            step: at.label.clone(),
            command: at.step.instruction.to_string(),
            status,
            tail,
        })));
    }
    commit(at, active)
}

/// Writes what the step of `active` changed as the step's layer (see
/// [`snapshot::Snapshotter::commit`]).
pub(crate) fn commit(at: &At<'_>, active: snapshot::Active) -> Result<LayerRef, BuildError> {
    let b = at.b;
    let info = b
        .snapshotter
        .commit(active, &layer_options(b), &at.clock)
        .map_err(|e| at.fail(e))?;
    Ok(LayerRef {
        layer: info.layer,
        source: None,
    })
}

/// Runs `write` (a layer write with this build's [`layer_options`]), counting on `clock` the
/// time its tar writer was blocked on the compressor as compress and the rest as diff.
pub(crate) fn write_timed<T>(
    b: &Build<'_>,
    clock: &StepClock,
    write: impl FnOnce(&crate::layer::LayerOptions) -> T,
) -> T {
    snapshot::write_timed(&layer_options(b), clock, write)
}

/// How this build writes a layer: the user's compression and ignored paths, `--reproducible`
/// times, bytes counted for the progress display, and owners as the image has them when kiln
/// is not root (see [`crate::layer::owners`]).
pub(crate) fn layer_options(b: &Build<'_>) -> crate::layer::LayerOptions {
    let mut opts = b.opts.layer.clone();
    opts.host_ids = sandbox::host_ids();
    if let Some(t) = b.opts.reproducible {
        opts.reproducible_epoch = Some(t);
    }
    opts.progress = Some(b.progress.transfers().compress.clone());
    opts
}

/// Gives a cache or secret mount's source the `uid`/`gid` the mount asks for. Without root
/// (rootless) kiln cannot chown: the file stays the user's, which is root inside the step's
/// user namespace, so a mount for root works and one for another user is root's.
fn give_mount_owner(path: &Path, m: &Mount) -> Result<(), BuildError> {
    if !crate::layer::owners::settable() {
        return Ok(());
    }
    std::os::unix::fs::chown(path, Some(m.uid.unwrap_or(0)), Some(m.gid.unwrap_or(0)))
        .at(path)
        .map_err(Into::into)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, bytes).at(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .at(path)
        .map_err(Into::into)
}

/// A `RUN --mount` as a bind mount of the sandbox; `None` when an optional secret is absent.
fn mount(
    at: &At<'_>,
    m: &Mount,
    scratch: &Path,
    n: usize,
    env: &mut Vec<(String, String)>,
    done: &Done,
) -> Result<Option<BindMount>, BuildError> {
    let b = at.b;
    Ok(Some(match m.kind {
        MountType::Cache => {
            let id = m.id.clone().unwrap_or_else(|| m.target.clone());
            let dir = b
                .cache_dir
                .run_mounts()
                .join(crate::blob::Digest::of(id.as_bytes()).hex());
            if !dir.exists() {
                std::fs::create_dir_all(&dir).at(&dir)?;
                use std::os::unix::fs::PermissionsExt;
                let mode = m.mode.unwrap_or(0o755);
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).at(&dir)?;
                give_mount_owner(&dir, m)?;
            }
            BindMount {
                source: dir,
                target: m.target.clone(),
                readonly: m.readonly,
            }
        }
        MountType::Tmpfs => {
            let dir = scratch.join(format!("tmpfs-{n}"));
            std::fs::create_dir(&dir).at(&dir)?;
            BindMount {
                source: dir,
                target: m.target.clone(),
                readonly: false,
            }
        }
        MountType::Secret => {
            let id = m.id.clone().unwrap_or_else(|| {
                Path::new(&m.target)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
            let Some(secret) = b.opts.secrets.iter().find(|s| s.id == id) else {
                if m.required {
                    return Err(at.err(format!(
                        "secret {id:?} is required but was not given (--secret id={id},src=FILE)"
                    )));
                }
                return Ok(None);
            };
            let value = match &secret.source {
                SecretSource::File(p) => std::fs::read(p).at(p)?,
                SecretSource::Env(v) => std::env::var(v)
                    .map_err(|_| at.err(format!("secret {id:?}: variable {v} is not set")))?
                    .into_bytes(),
            };
            if let Some(var) = &m.env {
                env.push((var.clone(), String::from_utf8_lossy(&value).into_owned()));
                if m.target.is_empty() {
                    return Ok(None);
                }
            }
            let path = scratch.join(format!("secret-{n}"));
            write_file(&path, &value, m.mode.unwrap_or(0o400))?;
            give_mount_owner(&path, m)?;
            let target = if m.target.is_empty() {
                format!("/run/secrets/{id}")
            } else {
                m.target.clone()
            };
            BindMount {
                source: path,
                target,
                readonly: true,
            }
        }
        MountType::Bind => {
            let source = m.source.clone().unwrap_or_else(|| "/".to_string());
            let host = match &m.from {
                None if m.readonly => context_path(at, &source)?,
                from => {
                    // A writable bind (or one from a stage) gets its own copy: the step may
                    // change it, and nothing it changes may reach the context or the stage.
                    let view = super::copy_step::source_view(at, from.as_deref(), done)?;
                    let dest = scratch.join(format!("bind-{n}"));
                    let inner = crate::fsview::resolve(view.view(), Path::new(&source), true)
                        .map_err(|e| at.err(format!("--mount source {source:?}: {e}")))?;
                    let sub = crate::fsview::Rooted::new(view.view(), inner);
                    snapshot::materialise(&sub, &dest).map_err(|e| at.fail(e))?;
                    dest
                }
            };
            BindMount {
                source: host,
                target: m.target.clone(),
                readonly: m.readonly,
            }
        }
        MountType::Ssh => {
            return Err(
                at.err("RUN --mount=type=ssh is not supported by kiln yet: use a secret mount")
            )
        }
    }))
}

/// The host path of `source` in the build context, refusing one that leaves it.
fn context_path(at: &At<'_>, source: &str) -> Result<PathBuf, BuildError> {
    let view = &at.b.context;
    let inner = crate::fsview::resolve(view, Path::new(source), true)
        .map_err(|e| at.err(format!("--mount source {source:?}: {e}")))?;
    Ok(view
        .context()
        .root()
        .join(inner.strip_prefix("/").unwrap_or(&inner)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::instructions::Instruction;

    /// The `created_by` of every RUN of `text` (one stage from scratch), each with the
    /// environment its build arguments give it, as BuildKit's frontend would name them.
    fn texts(text: &str, args: &[(&str, &str)]) -> Vec<String> {
        let mut cfg = StageConfig::default();
        let mut out = Vec::new();
        for step in crate::plan::test_steps(text, args) {
            match &step.instruction {
                Instruction::Run(r) => out.push(created_by(&step, r, &cfg, &step.args)),
                ins => {
                    cfg.apply(ins);
                }
            }
        }
        out
    }

    #[test]
    fn run_texts_follow_buildkits_forms() {
        let got = texts(
            "FROM scratch\nARG B=2\nARG A\nARG B\nRUN --mount=type=secret,id=s,env=S --network=none echo \"$A\"\n\
             RUN [\"/bin/echo\", \"exec form\"]\nSHELL [\"/bin/bash\", \"-ec\"]\n\
             RUN <<EOF\necho one\nEOF\n\
             RUN <<-EOT\n\t#!/bin/sh\n\techo two\n\tEOT\n\
             RUN cat <<A1 <<A2 > /f\nfirst\nA1\nsecond\nA2\n",
            &[("A", "given")],
        );
        assert_eq!(
            got,
            [
                // Declaration order, each name once, no mount or network flag.
                "RUN |2 B=2 A=given /bin/sh -c echo \"$A\" # buildkit",
                "RUN |2 B=2 A=given /bin/echo exec form # buildkit",
                "RUN |2 B=2 A=given /bin/bash -ec echo one\n # buildkit",
                "RUN |2 B=2 A=given /dev/pipes/EOT # buildkit",
                "RUN |2 B=2 A=given /bin/bash -ec cat <<A1 <<A2 > /f\nfirst\nA1\nsecond\nA2 # buildkit",
            ]
        );
    }
}
