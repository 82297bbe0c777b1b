//! kernlab: a kernel test lab orchestrator. It boots a distro kernel in QEMU,
//! drives it over QMP and SSH, runs workloads, samples the kernel's memory
//! accounting, and reports what it saw.
//!
//! Layout: host side (`qemu`, `qmp`, `guest`), inputs (`lab`, `kernel`,
//! `image`, `cache`), the run itself (`run`), sampling (`sample`), the
//! HTML report (`report`).

pub mod analysis;
pub mod bench;
pub mod calibrate;
pub mod cache;
pub mod doctor;
pub mod dump;
pub mod exit;
pub mod guest;
pub mod image;
pub mod kernel;
pub mod lab;
pub mod matrix;
pub mod outcome;
pub mod payload;
pub mod qemu;
pub mod qmp;
pub mod report;
pub mod run;
pub mod sample;
pub mod snapshot;
pub mod stats;
pub mod triage;
pub mod ui;
pub mod util;
