//! Sampling the guest: the parsers for what the guest prints (`parse`), the
//! rows of the series a run keeps in `samples/` (`rows`, the one definition
//! every writer and reader uses), and the store that appends every sample to
//! disk as it arrives (`store`).

pub mod parse;
pub mod rows;
pub mod store;
