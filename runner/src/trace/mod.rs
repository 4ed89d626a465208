//! The trace sink: everything a job prints goes through a [`Masker`], then the output
//! limit, then into a buffer whose CRC32 is reported at the end; a [`TraceShipper`]
//! sends what is new as `PATCH` requests.

mod buffer;
mod mask;
mod shipper;

pub use buffer::{limit_notice, Trace, TraceBuffer};
pub use mask::{Masker, MASKED};
pub use shipper::{ShipResult, TraceShipper, MAX_PATCH};
