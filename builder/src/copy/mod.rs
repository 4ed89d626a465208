//! What COPY and ADD (and WORKDIR's directory creation) do to a step's filesystem, with
//! BuildKit's semantics (its `fsutil` copier as the Dockerfile frontend drives it).
//!
//! The step writes only into its empty overlay *upper* directory; the parent filesystem is read
//! through an [`FsView`], so it is never changed. Paths are resolved in the merged tree (the
//! upper over the parent), the way the step's container would see them: a destination through
//! `/link -> /opt` lands in `/opt`, and a directory of the parent that the upper needs (COPY
//! into `/usr/local/bin`) is copied up with the parent's mode, owner, xattrs and mtime, so the
//! layer records it unchanged.
//!
//! Rules, as in BuildKit: a directory source copies its contents; a file to an existing
//! directory (or a destination ending in `/`) keeps its name; missing parents are created 0755
//! owned by the `--chown` owner (root without it); `--chown` and `--chmod` apply to every
//! copied entry (directories too; not to symlinks for chmod); without `--chown` context files
//! become 0:0 while `--from` copies keep their owners; modes, mtimes, xattrs, symlinks (copied
//! as links) and hard links within one source are kept; a wildcard that matches nothing copies
//! nothing, a plain path that is missing is an error. `--link` changes nothing here (the
//! result of a step is always its own layer).
//!
//! Where kiln differs on purpose (compared against BuildKit's code and `buildah bud`):
//! - A directory copied up from the parent keeps the parent's mtime (BuildKit and buildah
//!   record the time of the copy), so the layer does not depend on when it was built.
//! - Several sources (or a wildcard with several matches) into a destination that is neither
//!   `…/` nor an existing directory is an error, as documented and as buildah and kaniko do;
//!   BuildKit lets the last match win.
//! - A context source with `..` above the context root is an error; BuildKit cleans it to
//!   the root and then reports it missing. buildah fails a wildcard that matches nothing;
//!   kiln copies nothing, as BuildKit does.
//! - `--chmod=4755` keeps the setuid bit (BuildKit's Go file modes drop the high bits).
//! - An ADD archive entry climbing above the destination with `..` is refused (containerd
//!   clamps it at the destination); symlinks in entry paths resolve in the whole image.
//! - An ADD URL counts in [`inputs_digest`] by its text and `--checksum` only.

mod archive;
mod context_view;
mod digest;
mod glob;
mod mode;
mod sources;
mod target;
mod transfer;
mod url;
mod workdir;

pub use context_view::ContextView;
pub use digest::inputs_digest;
pub use mode::ChmodSpec;
pub use workdir::mkdir_workdir;

use crate::fsview::FsView;
use std::path::{Path, PathBuf};

/// One COPY or ADD with its words expanded and names resolved by the caller.
#[derive(Debug, Clone, Default)]
pub struct CopyRequest {
    /// Sources as in the instruction: context-relative (or stage/image) paths and globs, or
    /// URLs for ADD.
    pub sources: Vec<String>,
    /// `COPY <<EOF name` heredocs: (file name, content).
    pub heredocs: Vec<(String, String)>,
    /// The destination as written (expanded); a relative one is joined to `workdir`.
    pub dest: String,
    /// The stage's working directory.
    pub workdir: String,
    /// `--chown`, already resolved to numbers.
    pub chown: Option<(u32, u32)>,
    /// `--chmod`: octal (`0755`) or symbolic (`u+x,go=rX`).
    pub chmod: Option<String>,
    /// `--parents`: keep the path of each match below the context root (or below a `/./`
    /// pivot in the source).
    pub parents: bool,
    /// `--exclude` patterns (`.dockerignore` syntax).
    pub excludes: Vec<String>,
    /// `--link` (no effect on the result here).
    pub link: bool,
    /// ADD: unpack local archives, fetch URLs.
    pub add: bool,
    /// ADD `--checksum=sha256:...` for a URL source.
    pub checksum: Option<String>,
    /// Sources come from the build context (owners become 0:0, `..` may not leave it).
    pub is_context: bool,
}

impl CopyRequest {
    fn keyword(&self) -> &'static str {
        if self.add {
            "ADD"
        } else {
            "COPY"
        }
    }
}

/// What a COPY or ADD wrote into the upper directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Regular files written (hard links not counted).
    pub files: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Symbolic links created.
    pub symlinks: u64,
    /// Hard links created.
    pub hardlinks: u64,
    /// Device nodes and FIFOs created.
    pub nodes: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// COPY or ADD failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A source path does not exist (BuildKit fails computing the cache key the same way).
    #[error("{keyword} {source_arg}: failed to compute cache key: \"{path}\": not found")]
    NotFound {
        /// COPY or ADD.
        keyword: &'static str,
        /// The source as written.
        source_arg: String,
        /// The path looked up in the source tree.
        path: String,
    },
    /// A context source leaves the build context.
    #[error("{keyword} {source_arg}: forbidden path outside the build context")]
    OutsideContext {
        /// COPY or ADD.
        keyword: &'static str,
        /// The source as written.
        source_arg: String,
    },
    /// A directory would be copied onto (or created through) something that is not one.
    #[error("{keyword}: cannot copy to non-directory: {}", path.display())]
    NotADirectory {
        /// COPY or ADD.
        keyword: &'static str,
        /// The path in the image.
        path: PathBuf,
    },
    /// A file would replace a directory.
    #[error("{keyword}: cannot replace to directory {} with file", path.display())]
    ReplaceDir {
        /// COPY or ADD.
        keyword: &'static str,
        /// The path in the image.
        path: PathBuf,
    },
    /// A `--chmod` value is invalid.
    #[error("invalid --chmod value {value:?}: {reason}")]
    BadChmod {
        /// The value as written.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A source glob or `--exclude` pattern is invalid.
    #[error("{keyword}: invalid pattern {pattern:?}: {reason}")]
    BadPattern {
        /// COPY or ADD.
        keyword: &'static str,
        /// The pattern.
        pattern: String,
        /// What is wrong.
        reason: String,
    },
    /// A source holds something COPY cannot copy (a socket).
    #[error("{keyword}: {}: unsupported file type {what}", path.display())]
    Unsupported {
        /// COPY or ADD.
        keyword: &'static str,
        /// The path in the source.
        path: PathBuf,
        /// What it is.
        what: String,
    },
    /// The request itself is not possible (`--checksum` on a local file, a git URL, ...).
    #[error("{keyword} {source_arg}: {reason}")]
    Invalid {
        /// COPY or ADD.
        keyword: &'static str,
        /// The source as written.
        source_arg: String,
        /// What is wrong.
        reason: String,
    },
    /// Downloading an ADD URL failed.
    #[error("ADD {url}: {reason}")]
    Download {
        /// The URL (without credentials).
        url: String,
        /// Why.
        reason: String,
    },
    /// The downloaded content does not match `--checksum`.
    #[error("ADD {url}: checksum mismatch: expected {expected}, got {actual}")]
    Checksum {
        /// The URL (without credentials).
        url: String,
        /// What `--checksum` said.
        expected: String,
        /// What the content hashes to.
        actual: String,
    },
    /// An ADD archive is broken or unsafe.
    #[error("ADD {source_arg}: archive entry {entry:?}: {reason}")]
    Archive {
        /// The source as written.
        source_arg: String,
        /// The entry's name.
        entry: String,
        /// What is wrong.
        reason: String,
    },
    /// Reading the source or writing the upper directory failed.
    #[error(transparent)]
    Io(#[from] crate::path_io::PathIo),
    /// The build context could not be read.
    #[error(transparent)]
    Context(#[from] crate::context::ContextError),
}

/// Runs a COPY or ADD: reads `source` (the build context as a [`ContextView`], or a stage's or
/// image's tree for `--from`), resolves the destination in `parent` merged with `upper`, and
/// writes the result into `upper` only.
///
/// # Errors
/// [`CopyError`] naming the source or destination at fault.
pub fn copy(
    req: &CopyRequest,
    source: &dyn FsView,
    parent: &dyn FsView,
    upper: &Path,
) -> Result<CopyStats, CopyError> {
    transfer::run(req, source, parent, upper)
}
