//! The registry client: credentials, pushes, faults, and an ignored upload benchmark.
//! One binary per room: each test binary links the whole library, which costs seconds per
//! binary on two cores.

mod auth;
mod bench;
mod faults;
mod push;
