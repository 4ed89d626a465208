//! What a snapshotter prepares and the sandbox mounts as a step's root.

use std::path::PathBuf;

/// The root the process sees.
#[derive(Debug, Clone)]
pub enum RootFs {
    /// Mounted by the sandbox inside its own mount namespace; `lower` is top-most first, each a
    /// directory holding a layer in overlay form (whiteouts as char 0:0, opaque dirs by xattr).
    /// After the run, `upper` holds exactly the step's changes (nothing the sandbox mounted or
    /// created as a mount point).
    Overlay {
        /// Read-only layers, top-most first.
        lower: Vec<PathBuf>,
        /// The step's (empty) change directory.
        upper: PathBuf,
        /// Overlay's work directory, on the same filesystem as `upper`.
        work: PathBuf,
    },
    /// A directory used as the root as is (tree-diff fallback when overlay cannot be mounted).
    Dir(PathBuf),
}
