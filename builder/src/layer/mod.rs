//! Layers: a directory tree (a step's overlay upper directory, or a whole rootfs) as a
//! deterministic, compressed OCI layer blob, and safe extraction of layers onto a directory.
//!
//! Writing is one streaming pass (walk → tar → diff_id → compressor → digest → blob store);
//! see [`write_layer`]. Extraction ([`extract`]) applies OCI whiteouts and never writes outside
//! its target. Stacked layers read as one tree without mounting anything: [`OverlayView`] over
//! extracted layers, [`IndexView`] over their metadata indexes.

mod compress;
mod decode;
mod error;
mod extract;
pub mod index;
mod index_view;
mod merge;
mod overlay_view;
pub mod owners;
mod record;
mod safe_fs;
pub(crate) mod sparse;
mod tar_write;
pub mod toc;
mod walk;
pub(crate) mod whiteout;
mod write;

pub use compress::{
    compress_stream, Compression, DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL, MEDIA_TYPE_TAR,
    MEDIA_TYPE_TAR_GZIP, MEDIA_TYPE_TAR_ZSTD,
};
pub use error::LayerError;
pub use extract::{extract, read_index, ExtractInfo, ExtractOptions, DEFAULT_MAX_LAYER_BYTES};
pub use index::{IndexEntry, IndexKind, LayerIndex, MAX_INDEX_ENTRIES};
pub use index_view::IndexView;
pub use merge::Below;
pub use overlay_view::OverlayView;
pub use record::Layer;
pub use whiteout::{OPAQUE_MARKER, WHITEOUT_PREFIX};
pub use write::{write_layer, write_merged_layer, write_tar, LayerInfo, LayerOptions};
