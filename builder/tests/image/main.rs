//! Images: configs, manifests, platforms, exporters, and real peers reading what kiln writes.
//! One binary per room: each test binary links the whole library, which costs seconds per
//! binary on two cores.

mod build;
mod json;
mod peers;
mod platform;
