//! Stored credentials for container registries and the registry token handshake.
