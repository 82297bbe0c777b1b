//! Small host-side helpers shared by every layer: private files and
//! directories, atomic writes, content hashes, free space, and every child
//! process: the process registry (`process`) and host tools run with a
//! deadline, their stderr kept for error messages (`tool`).

pub mod decompress;
pub mod fsx;
pub mod process;
pub mod tool;

/// An error and its sources on one line, `: `-joined (logs, one-line
/// reasons).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    chain_with(e, ": ")
}

/// An error and its sources, one `caused by:` line per source (what the
/// user reads).
pub fn error_causes(e: &dyn std::error::Error) -> String {
    chain_with(e, "\n  caused by: ")
}

fn chain_with(e: &dyn std::error::Error, sep: &str) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(sep);
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
