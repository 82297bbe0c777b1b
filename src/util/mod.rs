//! Small host-side helpers shared by every layer: private files and
//! directories, atomic writes, content hashes, and running host tools with
//! their stderr kept for error messages.

pub mod decompress;
pub mod fsx;
pub mod tool;
