//! Sampling the guest: the parsers for what the guest prints (`parse`), and
//! the sampler that captures it over SSH and the host-side balloon figures
//! over QMP at the lab's interval, appending every sample to disk as it
//! arrives (`sampler`).

pub mod parse;
pub mod sampler;
