//! Errors of starting and using a fake cluster.

/// What can go wrong outside the API itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding the listener, making the state directory, or writing a kubeconfig failed.
    #[error("fake cluster I/O")]
    Io(#[from] std::io::Error),
    /// The kube client could not be built.
    #[error("kube client")]
    Kube(#[from] kube::Error),
}
