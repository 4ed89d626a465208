//! kiln-runner: a GitLab runner specialised in image-build jobs.
