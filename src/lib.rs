//! kernlab: a kernel test lab orchestrator. It boots a distro kernel in QEMU,
//! drives it over QMP and SSH, runs workloads, samples the kernel's memory
//! accounting, decides with statistics whether a module leaks, takes and
//! triages kdumps, and reports what it saw.
//!
//! The modules in layers, each using only the layers above it:
//!
//! 1. **Foundations**: `arch` (every architecture-specific fact), `util`
//!    (files, hashes, host tools, errors), `stats`
//!    (the in-house statistics), `exit` (exit codes), `ui` (terminal mode).
//! 2. **Inputs**: `lab` (the lab file), `kernel` (descriptors, fetching,
//!    headers), `cache` (the cache and its layout), `image` (the guest
//!    initramfs), `payload` (modules and programs built for the guest).
//! 3. **The machine**: `qemu` (argv, accelerator, machine, the process),
//!    `qmp`, `vm` (a running guest: QEMU, QMP, console and SSH, and the
//!    wait that watches them), `snapshot` (the VM snapshot cache).
//! 4. **Measurement**: `sample` (reading /proc, the sample files),
//!    `analysis` (growth, the leak verdict), `dump` (vmcores), `triage`
//!    (`crash`).
//! 5. **Records**: `outcome`: the event stream and what runs leave on disk
//!    (`report.json`, `manifest.json`), as types read back with their schema.
//! 6. **Orchestration**: `run` (one lab on one kernel; an A/B lab's two
//!    arms), `matrix` (labs × kernels), `bisect` (the first bad module
//!    revision or kernel), `calibrate`, `bench`, `doctor`.
//! 7. **Outputs**: `report`: the reporters on the event stream (terminal,
//!    `events.jsonl`, JSON lines, pages, summaries, JUnit, KTAP).
//! 8. **Commands**: `cli`, what `kernlab`'s subcommands do (`main.rs`
//!    only parses the command line).

// 1. Foundations
pub mod arch;
pub mod exit;
pub mod stats;
pub mod ui;
pub mod util;

// 2. Inputs
pub mod cache;
pub mod image;
pub mod kernel;
pub mod lab;
pub mod payload;

// 3. The machine
pub mod qemu;
pub mod qmp;
pub mod snapshot;
pub mod vm;

// 4. Measurement
pub mod analysis;
pub mod dump;
pub mod sample;
pub mod triage;

// 5. Records
pub mod outcome;

// 6. Orchestration
pub mod bench;
pub mod bisect;
pub mod calibrate;
pub mod doctor;
pub mod matrix;
pub mod run;

// 7. Outputs
pub mod report;

// 8. Commands
pub mod cli;
