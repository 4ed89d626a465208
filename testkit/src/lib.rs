//! What kiln's tests share across crates, so no test includes another crate's files by path:
//! real components started per test (a `docker-registry` with a logging proxy, `dockerd`), a
//! fake GitLab, git repositories, tree listings, overlay mounts, and the root check that fails
//! instead of skipping under CI.

pub mod dockerd;
pub mod fake_gitlab;
pub mod git;
pub mod kiln_output;
pub mod layout;
pub mod overlay;
pub mod privilege;
pub mod registry;
pub mod tree;
