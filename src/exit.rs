//! kernlab's exit codes, documented in docs/exit-codes.md. Scripts and CI rely on
//! them; change none without a major version.

/// The run completed and the lab's expectation held.
pub const OK: i32 = 0;
/// Usage or lab-file error: nothing was started.
pub const USAGE: i32 = 2;
/// The lab's expectation did not hold (e.g. a leak where none was expected).
pub const EXPECTATION_FAILED: i32 = 100;
/// Infrastructure failure: fetch, image, QEMU, boot, SSH.
pub const INFRA: i32 = 101;
/// Too little data for a verdict.
pub const INCONCLUSIVE: i32 = 102;
/// Interrupted by SIGINT or SIGTERM; what was collected is kept.
pub const INTERRUPTED: i32 = 130;
