//! The step cache and `kiln warm`.
//! One binary per room: each test binary links the whole library, which costs seconds per
//! binary on two cores.

mod steps;
mod warm;
