//! What operators write: config.toml and the deploy and CI examples.
//! One binary for these: each test binary links the runner with kube and k8s-openapi, which
//! costs seconds per binary on two cores.

mod examples;
mod parse;
