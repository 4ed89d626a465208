//! COPY, ADD and WORKDIR: files written into an empty upper directory, read from the build
//! context, another stage or an image, with the parent filesystem consulted through a view.

use super::error::BuildError;
use super::layers::LayerRef;
use super::run_step::commit;
use super::stage::{platform_of, At, Done};
use super::timings::Phase;
use crate::blob::Digest;
use crate::copy::{self, ContextView, CopyRequest};
use crate::dockerfile::instructions::{Copy, Mount, MountType, Source};
use crate::executor::config_step::StageConfig;
use crate::fsview::{read_small, DirView, FsView};
use crate::layer::OverlayView;
use crate::path_io::IoAt;
use crate::sandbox::users;
use std::path::Path;

/// What COPY reads from.
pub(crate) enum SourceView<'a> {
    /// The build context (with .dockerignore applied).
    Context(&'a ContextView),
    /// A stage's or an image's merged layers.
    Tree(OverlayView),
}

impl SourceView<'_> {
    /// The view itself.
    pub fn view(&self) -> &dyn FsView {
        match self {
            SourceView::Context(c) => *c,
            SourceView::Tree(t) => t,
        }
    }
}

/// The view `--from` names: a stage by name or index, else an image; the context when absent.
pub(crate) fn source_view<'a>(
    at: &At<'a>,
    from: Option<&str>,
    done: &Done,
) -> Result<SourceView<'a>, BuildError> {
    let b = at.b;
    let Some(from) = from else {
        return Ok(SourceView::Context(&b.context));
    };
    let layers = source_layers(at, from, done)?;
    Ok(SourceView::Tree(OverlayView::new(
        b.layers.lowers(&layers, &at.clock)?,
    )))
}

/// The layers `--from` names: a built stage's (by name or index), else an image's.
fn source_layers(at: &At<'_>, from: &str, done: &Done) -> Result<Vec<LayerRef>, BuildError> {
    let b = at.b;
    let lower = from.to_ascii_lowercase();
    let stage = b
        .plan
        .stages
        .iter()
        .find(|s| s.name.as_deref() == Some(lower.as_str()) || s.index.to_string() == from);
    let layers: Vec<LayerRef> = match stage {
        Some(s) if s.index < at.stage.index => {
            let d = done.lock().expect("stages");
            d.get(&s.index)
                .map(|d| d.layers.clone())
                .ok_or_else(|| at.err(format!("stage {from:?} was not built")))?
        }
        Some(_) => return Err(at.err(format!("--from={from} names this or a later stage"))),
        None => {
            let platform = platform_of(b, at.stage);
            b.bases
                .resolve(from, &platform)
                .map_err(|e| BuildError::base(&b.file, at.step.start_line, from, e))?
                .layers
                .clone()
        }
    };
    Ok(layers)
}

fn request(c: &Copy, cfg: &StageConfig, chown: Option<(u32, u32)>, from: bool) -> CopyRequest {
    let mut sources = Vec::new();
    let mut heredocs = Vec::new();
    for s in &c.sources {
        match s {
            Source::Path(p) => sources.push(p.clone()),
            Source::Heredoc(h) => heredocs.push((h.name.clone(), h.content.clone())),
        }
    }
    CopyRequest {
        sources,
        heredocs,
        dest: c.dest.clone(),
        workdir: if cfg.config.working_dir.is_empty() {
            "/".to_string()
        } else {
            cfg.config.working_dir.clone()
        },
        chown,
        chmod: c.chmod.clone(),
        parents: c.parents,
        excludes: c.exclude.clone(),
        link: c.link,
        add: c.add,
        checksum: c.checksum.clone(),
        is_context: !from,
    }
}

/// The digest of what a COPY reads, for its cache key. From the context: the content of what
/// it selects. From a stage or an image: the diff_ids of its layers, which fix every byte of
/// its tree (the instruction, also in the key, says what is taken), so a cache hit reads none
/// of them: a rebuild downloads nothing of a cached stage (BuildKit keys by the source's
/// vertex the same way).
pub(crate) fn inputs(
    at: &At<'_>,
    c: &Copy,
    cfg: &StageConfig,
    done: &Done,
) -> Result<Digest, BuildError> {
    if let Some(from) = c.from.as_deref() {
        return layers_identity(at, from, done);
    }
    let src = source_view(at, None, done)?;
    let req = request(c, cfg, None, c.from.is_some());
    copy::inputs_digest(&req, src.view()).map_err(|e| at.fail(e))
}

/// What identifies a stage's or an image's tree without reading it: its layers' diff_ids.
fn layers_identity(at: &At<'_>, from: &str, done: &Done) -> Result<Digest, BuildError> {
    let mut ids = String::from("layers");
    for l in source_layers(at, from, done)? {
        ids.push('\0');
        ids.push_str(&l.layer.diff_id.to_string());
    }
    Ok(Digest::of(ids.as_bytes()))
}

/// The digest of what a RUN's bind mounts hold, for its cache key (`None` without any, so
/// such a RUN keeps its key): the content of a context path, the layers of a stage or image.
/// Cache, secret and tmpfs mounts are not what the step is built from (as in BuildKit).
pub(crate) fn mount_inputs(
    at: &At<'_>,
    mounts: &[Mount],
    done: &Done,
) -> Result<Option<Digest>, BuildError> {
    let mut parts = String::new();
    for m in mounts.iter().filter(|m| m.kind == MountType::Bind) {
        let source = m.source.as_deref().unwrap_or("/");
        let digest = match m.from.as_deref() {
            Some(from) => layers_identity(at, from, done)?,
            None => {
                let inner = source.trim_start_matches('/');
                let req = CopyRequest {
                    sources: vec![if inner.is_empty() { "." } else { inner }.to_string()],
                    dest: "/".into(),
                    workdir: "/".into(),
                    is_context: true,
                    ..Default::default()
                };
                copy::inputs_digest(&req, &at.b.context).map_err(|e| at.fail(e))?
            }
        };
        parts.push_str(&format!("bind\0{source}\0{}\0{digest}\0", m.target));
    }
    Ok((!parts.is_empty()).then(|| Digest::of(parts.as_bytes())))
}

/// `user[:group]` as ids, names looked up in the parent's /etc/passwd and /etc/group.
fn ids(at: &At<'_>, spec: &str, parent: &dyn FsView) -> Result<(u32, u32), BuildError> {
    let read = |p: &str| {
        read_small(parent, Path::new(p))
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let passwd = read("/etc/passwd");
    let group = read("/etc/group");
    let ids = users::resolve_user(passwd.as_deref(), group.as_deref(), &root_as_zero(spec))
        .map_err(|e| at.err(format!("--chown={spec}: {e}")))?;
    Ok((ids.uid, ids.gid))
}

/// BuildKit's file operations (COPY --chown, WORKDIR) take `root` as id 0 without reading
/// /etc/passwd, so a stage with no passwd file (FROM scratch) can still name it.
fn root_as_zero(spec: &str) -> String {
    spec.split(':')
        .map(|part| if part == "root" { "0" } else { part })
        .collect::<Vec<_>>()
        .join(":")
}

fn numeric_ids(spec: &str) -> Option<(u32, u32)> {
    let (u, g) = spec.split_once(':').unwrap_or((spec, spec));
    Some((u.parse().ok()?, g.parse().ok()?))
}

/// Runs a COPY or ADD and writes its layer.
pub(crate) fn copy(
    at: &At<'_>,
    c: &Copy,
    cfg: &StageConfig,
    parent: &[LayerRef],
    done: &Done,
) -> Result<LayerRef, BuildError> {
    let b = at.b;
    let src = source_view(at, c.from.as_deref(), done)?;
    let tmp = b.cache_dir.scratch();
    let empty = tempfile::tempdir_in(&tmp).at(&tmp)?;
    // COPY --link does not look at the parent: its layer stands alone, so the base's layers
    // need not be downloaded. Names in --chown still need the parent's user database.
    let needs_parent = !c.link || c.chown.as_deref().is_some_and(|s| numeric_ids(s).is_none());
    let parent_view: Box<dyn FsView> = if needs_parent {
        // Names in --chown are looked up in the parent's files, which only extraction has.
        let names = c.chown.as_deref().is_some_and(|s| numeric_ids(s).is_none());
        super::index::parent_view(b, parent, names, &at.clock)?
    } else {
        Box::new(DirView::new(empty.path()))
    };
    let chown = match &c.chown {
        Some(s) => Some(match numeric_ids(s) {
            Some(ids) => ids,
            None => ids(at, s, parent_view.as_ref())?,
        }),
        None => None,
    };
    // Nothing runs over the parent: COPY writes its changes into an empty upper itself, so it
    // needs no root from the snapshotter, only the upper and the commit.
    let active = b.snapshotter.prepare_upper().map_err(|e| at.fail(e))?;
    let req = request(c, cfg, chown, c.from.is_some());
    let target: &dyn FsView = if c.link {
        &DirView::new(empty.path())
    } else {
        parent_view.as_ref()
    };
    // Copying is COPY's own work, as the process is RUN's.
    at.clock
        .time(Phase::Run, || {
            copy::copy(&req, src.view(), target, active.upper())
        })
        .map_err(|e| at.fail(e))?;
    commit(at, active)
}

/// WORKDIR: makes the directory when the parent lacks it (owned by USER, as BuildKit does);
/// `None` for `/`, which BuildKit makes no step of.
pub(crate) fn workdir(
    at: &At<'_>,
    cfg: &StageConfig,
    parent: &[LayerRef],
) -> Result<Option<LayerRef>, BuildError> {
    if cfg.config.working_dir == "/" {
        return Ok(None);
    }
    let b = at.b;
    let user = &cfg.config.user;
    // A numeric USER still takes its primary group from /etc/passwd: only no USER, or both
    // ids given, needs no file of the parent.
    let both_ids = user.contains(':') && numeric_ids(&root_as_zero(user)).is_some();
    let names = !user.is_empty() && !both_ids;
    let view = super::index::parent_view(b, parent, names, &at.clock)?;
    let owner = if user.is_empty() {
        (0, 0)
    } else {
        ids(at, user, view.as_ref())?
    };
    let active = b.snapshotter.prepare_upper().map_err(|e| at.fail(e))?;
    // The directory and its missing parents are all USER's: BuildKit's Mkdir with parents
    // chowns every directory it creates (checked against docker's BuildKit by the corpus case
    // 24-workdir-user-owned; buildah makes the parents root's).
    at.clock
        .time(Phase::Run, || {
            copy::mkdir_workdir(
                view.as_ref(),
                active.upper(),
                &cfg.config.working_dir,
                owner,
            )
        })
        .map_err(|e| at.fail(e))?;
    // A layer even when the directory was there (then an empty one): BuildKit's WORKDIR is a
    // mkdir step whatever it finds, and its history entry says it made a layer.
    commit(at, active).map(Some)
}
