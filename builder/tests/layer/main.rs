//! Layers: compression, safe extraction, tar round trips, overlay views, metadata indexes.
//! One binary per room: each test binary links the whole library, which costs seconds per
//! binary on two cores.

mod compress;
mod extract_safety;
mod index;
mod overlay;
mod roundtrip;
