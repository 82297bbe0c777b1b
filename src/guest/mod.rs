//! Talking to the guest over SSH (the `ssh2` crate, i.e. libssh2): waiting
//! for readiness by the server's banner, executing commands with exit status
//! and output, uploading files. ssh2 is blocking, so each session lives on
//! its own blocking thread; every read and write has a timeout.

pub mod ssh;

pub use ssh::{wait_for_banner, ExecOutput, GuestSession, SshError};
