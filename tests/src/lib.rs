//! Helpers shared by the end-to-end tests (the tests themselves live in `tests/tests/`).
//!
//! `tests/build_image_job.rs` (issue 6: a build-image job through kiln-runner into a real
//! registry) runs only with `KILN_E2E_BUILD=1` until `kiln build` builds; `KILN_BIN` may name
//! the `kiln` to use (else it is built with cargo in this target directory).

pub mod image_tree;
