//! The Kubernetes executor: one pod per job. [`spec`] is what the pod looks like.

pub mod spec;
