//! The Kubernetes side: the pod spec, the executor and the runner against the fake cluster, a real cluster when one is named.
//! One binary for these: each test binary links the runner with kube and k8s-openapi, which
//! costs seconds per binary on two cores.

mod cluster;
mod executor;
mod pod_spec;
mod runner;
