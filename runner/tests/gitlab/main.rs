//! The GitLab side: the job lifecycle, the daemon, gitlab-runner's own mock, the local executor.
//! One binary for these: each test binary links the runner with kube and k8s-openapi, which
//! costs seconds per binary on two cores.

mod daemon;
mod gitlab_runner_mock;
mod job_lifecycle;
mod local_executor;
