//! Helpers shared by the end-to-end tests (the tests themselves live in `tests/tests/`).
//!
//! `tests/build_image_job.rs` runs a build-image job through kiln-runner into a real registry;
//! `tests/equivalence.rs` compares kiln's images with buildah's over `tests/corpus/`. Both run
//! the `kiln` binary: `$KILN_BIN`, else the one in this target directory. `debian` makes the
//! Debian base that `tests/shipped_images.rs` builds kiln's own images on.

pub mod bins;
pub mod corpus;
pub mod debian;
pub mod image_tree;
