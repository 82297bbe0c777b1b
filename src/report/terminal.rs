//! The reporters that turn the event stream into lines: the terminal's
//! lines and progress bars, JSON lines on stdout (`--message-format
//! json`), and JSON lines in a file.

use std::io::Write;

use crate::outcome::event::{Event, Reporter, Stamped};
use crate::outcome::run::no_exhaustion;
use crate::ui::{self, Bar};

/// Appends each event as one JSON line and flushes.
pub struct JsonLines<W: Write + Send>(pub W);

/// `--message-format json`: each event as one JSON line on stdout.
pub struct JsonStdout;

impl Reporter for JsonStdout {
    fn report(&mut self, e: &Stamped) {
        if let Ok(line) = serde_json::to_string(e) {
            ui::json_line(&line);
        }
    }
}

impl<W: Write + Send> Reporter for JsonLines<W> {
    fn report(&mut self, e: &Stamped) {
        if let Ok(line) = serde_json::to_string(e) {
            let _ = writeln!(self.0, "{line}");
            let _ = self.0.flush();
        }
    }
}

/// Short human lines on stderr, and on a terminal one progress line per
/// run that says what it is doing now (kernel, image, boot, workload with
/// its samples, dump). One reporter serves every run of the process: the
/// arms of an A/B lab side by side (each line prefixed with its arm) and
/// the cells of a matrix (only their start, end and errors are shown).
pub struct Terminal {
    pub quiet: bool,
    /// Every sample, not every tenth (`-v`).
    pub verbose: bool,
    /// The progress of each run, by (cell, arm).
    runs: std::collections::HashMap<(Option<String>, Option<String>), Progress>,
}

/// One run's progress line.
#[derive(Default)]
struct Progress {
    bar: Bar,
    workload_t: Option<f64>,
}

impl Terminal {
    pub fn new(quiet: bool) -> Terminal {
        Terminal { quiet, verbose: ui::get().verbose > 0, runs: Default::default() }
    }

    /// The plain line for an event, if it has one.
    pub fn line(&self, e: &Event) -> Option<String> {
        Some(match e {
            Event::RunStarted { lab, kernel, run_dir } => format!("lab {lab} on {kernel} → {run_dir}"),
            Event::KernelReady { release, secs, .. } => format!("kernel {release} ready ({secs:.2} s)"),
            Event::ImageReady { bytes, modules, secs, .. } => {
                format!("image ready: {:.1} MiB, {modules} modules ({secs:.2} s)", *bytes as f64 / 1048576.0)
            }
            Event::ImageBuilt { stage, secs } => format!("image: built {stage} ({secs:.1} s; cached from now on)"),
            Event::AccelChosen { accel, reason } => format!("accel {accel}: {reason}"),
            Event::BootProfile { machine, kernel_image, reason } => format!("machine {machine}, kernel {kernel_image}: {reason}"),
            Event::BootRetry { attempt, reason } => format!("boot attempt {attempt} failed ({reason}); booting once more"),
            Event::ModuleBuilt { name, cached, secs, .. } => {
                format!("module {name} {} ({secs:.2} s)", if *cached { "from the cache" } else { "built" })
            }
            Event::ModuleLoaded { name, params, tainted, .. } => {
                format!("module {name} loaded {params:?}, taint {}", tainted.map(|t| t.to_string()).unwrap_or("-".into()))
            }
            Event::ModuleUnloaded { name, ok, detail, .. } => match ok {
                true => format!("module {name} unloaded"),
                false => format!("module {name} could not be unloaded: {detail}"),
            },
            Event::QemuStarted { pid, ssh_port, .. } => format!("QEMU pid {pid}, ssh on 127.0.0.1:{ssh_port}"),
            Event::SshReady { secs_since_qemu_start } => format!("guest ready over SSH {secs_since_qemu_start:.2} s after QEMU start"),
            Event::SnapshotRestored { key, bytes, secs } => {
                format!("restored snapshot {} ({:.1} MiB) in {secs:.2} s", short(key), *bytes as f64 / 1048576.0)
            }
            Event::SnapshotFallback { key, reason } => format!("warning: snapshot {} not restored ({reason}); booting cold", short(key)),
            Event::SnapshotSaved { key, bytes, secs, published } => format!(
                "saved snapshot {} ({:.1} MiB, guest paused {secs:.2} s){}",
                short(key),
                *bytes as f64 / 1048576.0,
                if *published { "" } else { "; another run saved it first" }
            ),
            Event::SnapshotSaveFailed { key, reason } => format!("warning: snapshot {} not saved: {reason}", short(key)),
            Event::SnapshotEvicted { key, bytes } => {
                format!("evicted snapshot {} ({:.1} MiB, least recently used) to stay under the cap", short(key), *bytes as f64 / 1048576.0)
            }
            Event::SetupCommand { index, status, command, .. } => format!("setup[{index}] exit {status}: {command}"),
            Event::WorkloadStarted { duration_secs, until_exhaustion: false, .. } => format!("workload started for {duration_secs:.0} s"),
            Event::WorkloadStarted { duration_secs, until_exhaustion: true, .. } => {
                format!("workload started: until exhaustion, at most {duration_secs:.0} s")
            }
            Event::Sample { index, .. } if !self.verbose && index % 10 != 0 => return None,
            Event::Sample { index, mem_available, s_unreclaim, nr_dentry, .. } => format!(
                "sample {index}: MemAvailable {} KiB, SUnreclaim {} KiB, dentries {}",
                mem_available.map(|b| (b / 1024).to_string()).unwrap_or("-".into()),
                s_unreclaim.map(|b| (b / 1024).to_string()).unwrap_or("-".into()),
                nr_dentry.map(|n| n.to_string()).unwrap_or("-".into()),
            ),
            Event::SampleFailed { reason, .. } => format!("sample failed: {reason}"),
            Event::SamplerStarted { restart, secs, transport, port, .. } => {
                let over = match (transport.as_str(), port) {
                    ("", _) => String::new(),
                    ("port", _) => ", records over the virtio-serial port".into(),
                    (t, Some(why)) => format!(", records over {t} (no port: {why})"),
                    (t, None) => format!(", records over {t}"),
                };
                format!("guest sampler {} ({secs:.2} s{over})", if *restart { "restarted" } else { "started" })
            }
            Event::SamplerFallback { reason, .. } => format!("guest sampler unavailable, sampling by SSH command: {reason}"),
            Event::SamplingResumed { gaps, secs } => format!("sampling resumed after {gaps} missed samples ({secs:.1} s)"),
            Event::WorkloadFinished { status, secs } => {
                format!("workload finished after {secs:.1} s, exit {}", status.map(|s| s.to_string()).unwrap_or("unknown (SSH lost)".into()))
            }
            Event::Qmp { name, .. } => format!("QMP event {name}"),
            Event::KdumpLoaded { crashkernel } => format!("kdump loaded ({} MiB reserved)", crashkernel >> 20),
            Event::KdumpUnavailable { reason } => format!("warning: {reason}"),
            Event::Exhaustion { trigger } => format!("exhaustion: {trigger}"),
            Event::NoExhaustion { within_secs, until_exhaustion } => {
                format!("{}: the guest did not run out of memory", no_exhaustion(*within_secs, *until_exhaustion))
            }
            Event::PanicTriggered { how } => format!("panicking the guest: {how}"),
            Event::DumpWritten { via, path, bytes, secs } => {
                format!("vmcore by {via}: {path} ({:.1} MiB, {secs:.1} s after the trigger)", *bytes as f64 / 1048576.0)
            }
            Event::Triage { secs, top_cache, .. } => {
                format!("triage done in {secs:.1} s; largest slab cache: {}", top_cache.as_deref().unwrap_or("-"))
            }
            Event::TriageSkipped { reason } => format!("crash triage skipped: {reason}"),
            Event::Interrupted { signal } => format!("interrupted by {signal}; tearing down (again to force)"),
            Event::Teardown { how, secs } => format!("VM stopped by {how} in {secs:.2} s"),
            Event::Error { message } => format!("error: {message}"),
            Event::LeakDecided { look, looks, samples, verdict } => {
                format!("verdict {verdict} decided at look {look} of {looks} ({samples} samples per arm): ending both workloads")
            }
            Event::AttributionStarted { kind, caches, duration_secs } => format!(
                "{kind}: attribution pass, the lab once more for {duration_secs:.0} s with allocation traces of {}",
                if caches.is_empty() { "no cache".to_string() } else { caches.join(", ") }
            ),
            Event::Instrument { name, phase, ok, secs } => format!("instrument {name} {phase} {} in {secs:.1} s", if *ok { "done" } else { "FAILED (see the arm's instruments/)" }),
            Event::Attributed { kind, sites, status, secs } => format!(
                "attribution {status} in {secs:.0} s: {kind}{}",
                if sites.is_empty() { ", no site named".to_string() } else { format!(", {}", sites.join("; ")) }
            ),
            Event::CellStarted { .. } => "started".into(),
            Event::CellFinished { verdict, exit_code, error, .. } => {
                let why = error.as_deref().map(|w| format!(": {w}")).unwrap_or_default();
                format!("finished: {verdict} (exit {exit_code}){why}")
            }
            Event::RunFinished { .. } | Event::LeakVerdict { .. } | Event::MatrixStarted { .. } | Event::MatrixFinished { .. } => {
                return None
            }
        })
    }

    /// What the run is doing after this event, for its progress line.
    fn progress(&mut self, s: &Stamped) {
        let key = (s.cell.clone(), s.arm.clone());
        if let Event::RunStarted { lab, kernel, .. } = &s.event {
            // An A/B lab's arms have their own lines: not the lab's.
            if s.arm.is_some() {
                self.runs.remove(&(s.cell.clone(), None));
            }
            let name = match &s.arm {
                Some(arm) => format!("{lab}@{kernel} {arm}"),
                None => format!("{lab}@{kernel}"),
            };
            self.runs.insert(key, Progress { bar: Bar::spinner(&name, "kernel: from the cache or apt-get download"), workload_t: None });
            return;
        }
        if let Event::RunFinished { .. } = &s.event {
            self.runs.remove(&key);
            return;
        }
        let Some(p) = self.runs.get_mut(&key) else { return };
        let phase = match &s.event {
            Event::KernelReady { .. } => "building modules, workload and image",
            Event::ModuleBuilt { .. } => "building the image",
            Event::ImageReady { .. } => "starting QEMU",
            Event::ImageBuilt { .. } => "building the image",
            Event::AccelChosen { accel, .. } => {
                p.bar.message(format!("starting QEMU ({accel})"));
                return;
            }
            Event::BootProfile { .. } => "building the image",
            Event::BootRetry { .. } => "booting once more",
            Event::QemuStarted { .. } => "booting",
            Event::SshReady { .. } | Event::SetupCommand { .. } => "setup",
            Event::SnapshotRestored { .. } => "restored: connecting",
            Event::SnapshotFallback { .. } => "restore failed: booting cold",
            Event::SnapshotSaved { .. } | Event::SnapshotSaveFailed { .. } | Event::SnapshotEvicted { .. } => "setup",
            Event::KdumpLoaded { .. } | Event::KdumpUnavailable { .. } => "setup",
            Event::ModuleLoaded { name, .. } => {
                p.bar.message(format!("module {name} loaded"));
                return;
            }
            Event::WorkloadStarted { duration_secs, .. } => {
                p.workload_t = Some(s.t);
                p.bar.steps(duration_secs.ceil() as u64, "s");
                p.bar.message("workload");
                return;
            }
            Event::Sample { sample_t, mem_available, slab, .. } => {
                if let Some(w) = p.workload_t {
                    p.bar.position((sample_t - w).max(0.0) as u64);
                }
                let mib = |b: &Option<u64>| b.map(|b| format!("{:.0}", b as f64 / 1048576.0)).unwrap_or("-".into());
                p.bar.message(format!("MemAvailable {} MiB, Slab {} MiB", mib(mem_available), mib(slab)));
                return;
            }
            Event::WorkloadFinished { .. } => "workload done; stopping",
            Event::Exhaustion { .. } | Event::PanicTriggered { .. } => "out of memory: taking the dump",
            Event::NoExhaustion { .. } => "no exhaustion: stopping",
            Event::DumpWritten { .. } => "triage (debug vmlinux, crash or drgn)",
            Event::Triage { .. } | Event::TriageSkipped { .. } => "stopping the VM",
            Event::Interrupted { .. } => "interrupted: tearing down",
            Event::Teardown { .. } => "writing the report",
            _ => return,
        };
        p.bar.spin();
        p.bar.message(phase);
    }
}

impl Reporter for Terminal {
    fn report(&mut self, s: &Stamped) {
        self.progress(s);
        let Some(line) = self.line(&s.event) else { return };
        // Errors, and the warnings that say a run went a slower way than asked.
        let loud = matches!(
            s.event,
            Event::Error { .. } | Event::Interrupted { .. } | Event::CellFinished { .. } | Event::SnapshotFallback { .. } | Event::SnapshotSaveFailed { .. }
        );
        // A matrix cell's run speaks only when it is loud; the cell's own
        // start and end lines are the matrix's.
        let quiet = self.quiet || (s.cell.is_some() && !matches!(s.event, Event::CellStarted { .. }));
        if quiet && !loud {
            return;
        }
        let line = match &s.event {
            Event::Error { .. } => console::style(line).red().for_stderr().to_string(),
            Event::KdumpUnavailable { .. }
            | Event::SampleFailed { .. }
            | Event::SamplerFallback { .. }
            | Event::SnapshotFallback { .. }
            | Event::SnapshotSaveFailed { .. }
            | Event::NoExhaustion { until_exhaustion: true, .. } => {
                console::style(line).yellow().for_stderr().to_string()
            }
            _ => line,
        };
        let cell = s.cell.as_deref().map(|c| format!("cell {c} ")).unwrap_or_default();
        let t = console::style(format!("[{:7.2}]", s.t)).dim().for_stderr();
        if s.cell.is_some() && matches!(s.event, Event::CellStarted { .. } | Event::CellFinished { .. }) {
            // The matrix's own lines, as before: `cell <id> started`.
            ui::eprintln(&format!("{cell}{line}"));
        } else {
            let prefix = s.arm.as_deref().map(|a| format!("{a}: ")).unwrap_or_default();
            ui::eprintln(&format!("{t} {cell}{prefix}{line}"));
        }
    }
}

/// The first 12 hex digits of a cache key, for terminal lines.
fn short(key: &str) -> &str {
    &key[..key.len().min(12)]
}

