//! A scripted in-memory guest for the engine's unit tests: it answers
//! commands from a script (by the first rule whose text the command
//! contains), serves a sample series it is given, can die in the middle of
//! a sample, can hang (a command that never answers runs into its
//! timeout; under `tokio::time::pause` that takes no wall time), and
//! records every request. It implements [`GuestOps`] as QEMU does: a
//! panic (`echo c > /proc/sysrq-trigger`) is `GUEST_PANICKED` and a lost
//! guest, a host dump writes an ELF file, a stop releases the workload.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;

use super::guest::{Capture, CapturePlan, GuestOps, LongSession};
use crate::vm::{ExecOutput, GuestError, GuestLost, SshError, Stopped};

/// How the guest answers a command.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// Exit status 0 with this stdout.
    Ok(String),
    /// This exit status and stderr.
    Fail(i32, String),
    /// Never answers: the command runs into its timeout.
    Hang,
    /// The guest panics with this panic line while running it.
    Die(String),
}

/// One step of the sample series.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// The capture's text.
    Text(String),
    /// The guest panics during this sample.
    Die(String),
    /// The sample never answers (a hung guest).
    Hang,
    /// The sample fails at once (a gap) for this reason.
    Gap(String),
}

/// The sample series: the `k`-th capture (from 0).
pub(crate) type Series = Arc<dyn Fn(u64) -> Step + Send + Sync>;

struct State {
    /// Every request, in order: `exec CMD`, `upload PATH`, `session`,
    /// `long CMD`, `capture K`, `nmi`, `pause`, `dump PATH`, `shutdown`.
    log: Vec<String>,
    /// QMP events the guest sent.
    events: Vec<String>,
    exited: bool,
}

struct Shared {
    rules: Vec<(String, Reply)>,
    series: Series,
    workload_log: String,
    state: Mutex<State>,
    /// The workload's long exec may return (stopped, lost, shut down).
    released: watch::Sender<bool>,
    lost: watch::Sender<Option<GuestLost>>,
    taken: Mutex<u64>,
}

/// The scripted guest; clones share it.
#[derive(Clone)]
pub(crate) struct Scripted {
    shared: Arc<Shared>,
}

impl Scripted {
    /// A guest whose commands answer by `rules` (the first whose text the
    /// command contains; else status 0 and no output) and whose samples
    /// are `series`.
    pub(crate) fn new(rules: Vec<(&str, Reply)>, series: Series) -> Scripted {
        let (lost, _) = watch::channel(None);
        let state = State { log: Vec::new(), events: Vec::new(), exited: false };
        let shared = Shared {
            rules: rules.into_iter().map(|(k, r)| (k.to_string(), r)).collect(),
            series,
            workload_log: "scripted workload\n".into(),
            state: Mutex::new(state),
            released: watch::channel(false).0,
            lost,
            taken: Mutex::new(0),
        };
        Scripted { shared: Arc::new(shared) }
    }

    /// Every request the engine made, in order.
    pub(crate) fn log(&self) -> Vec<String> {
        self.shared.state.lock().unwrap().log.clone()
    }

    /// How many samples the engine asked for.
    pub(crate) fn samples_taken(&self) -> u64 {
        *self.shared.taken.lock().unwrap()
    }

    fn note(&self, what: String) {
        self.shared.state.lock().unwrap().log.push(what);
    }

    fn release(&self) {
        self.shared.released.send_replace(true);
    }

    /// The guest panics: the panic line, pvpanic's event, the guest
    /// paused (as `-action panic=pause` leaves it).
    fn die(&self, line: &str) {
        self.shared.state.lock().unwrap().events.push("GUEST_PANICKED".into());
        self.release();
        let lost = GuestLost { panic: Some(line.to_string()), event: Some(("GUEST_PANICKED".into(), "pause".into())), exit: None, qmp_closed: false };
        self.shared.lost.send_replace(Some(lost));
    }

    fn reply(&self, command: &str) -> Reply {
        if command.contains("/proc/sysrq-trigger") {
            return Reply::Die("Kernel panic - not syncing: sysrq triggered crash".into());
        }
        if command == super::workload_stop() {
            self.release();
        }
        let rule = self.shared.rules.iter().find(|(k, _)| command.contains(k.as_str()));
        match rule {
            Some((_, r)) => r.clone(),
            None if command.contains("/proc/sys/kernel/tainted") => Reply::Ok("0\n".into()),
            None => Reply::Ok(String::new()),
        }
    }

    /// Waits for the loss the guest already had or is having.
    async fn lost_now(&self) -> GuestLost {
        let mut rx = self.shared.lost.subscribe();
        let seen = rx.wait_for(Option::is_some).await.map(|l| l.clone());
        match seen {
            Ok(l) => l.expect("waited for Some"),
            Err(_) => std::future::pending().await,
        }
    }
}

fn ok(stdout: &str) -> ExecOutput {
    ExecOutput { status: 0, stdout: stdout.into(), stderr: String::new() }
}

impl GuestOps for Scripted {
    fn exec<'a>(&'a self, command: &'a str, timeout: Duration) -> BoxFuture<'a, Result<ExecOutput, GuestError>> {
        Box::pin(async move {
            self.note(format!("exec {command}"));
            if self.shared.lost.borrow().is_some() {
                return Err(GuestError::Lost(self.lost_now().await));
            }
            match self.reply(command) {
                Reply::Ok(out) => Ok(ok(&out)),
                Reply::Fail(status, stderr) => Ok(ExecOutput { status, stdout: String::new(), stderr }),
                Reply::Hang => {
                    tokio::time::sleep(timeout).await;
                    Err(GuestError::Ssh(SshError::Timeout { command: command.to_string(), timeout }))
                }
                Reply::Die(line) => {
                    self.die(&line);
                    Err(GuestError::Lost(self.lost_now().await))
                }
            }
        })
    }

    fn upload<'a>(&'a self, remote: &'a Path, data: Vec<u8>, mode: u32, _timeout: Duration) -> BoxFuture<'a, Result<(), GuestError>> {
        Box::pin(async move {
            self.note(format!("upload {} {} bytes mode {mode:o}", remote.display(), data.len()));
            Ok(())
        })
    }

    fn lost(&self) -> BoxFuture<'static, GuestLost> {
        let me = self.clone();
        Box::pin(async move { me.lost_now().await })
    }

    fn session(&self, _timeout: Duration) -> BoxFuture<'_, Result<Arc<dyn LongSession>, GuestError>> {
        Box::pin(async move {
            self.note("session".into());
            Ok(Arc::new(self.clone()) as Arc<dyn LongSession>)
        })
    }

    fn capture(&self, plan: CapturePlan) -> BoxFuture<'_, Result<Box<dyn Capture>, GuestError>> {
        Box::pin(async move {
            self.note(format!("capture-command {}", plan.command));
            Ok(Box::new(self.clone()) as Box<dyn Capture>)
        })
    }

    fn enable_balloon_stats(&self, _secs: u64) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Err("the scripted guest has no balloon".into()) })
    }

    fn balloon_stats(&self) -> BoxFuture<'_, Result<serde_json::Value, String>> {
        Box::pin(async { Err("the scripted guest has no balloon".into()) })
    }

    fn seen(&self, event: &str) -> bool {
        self.shared.state.lock().unwrap().events.iter().any(|e| e == event)
    }

    fn exited(&self) -> bool {
        self.shared.state.lock().unwrap().exited
    }

    fn console_read(&self) -> u64 {
        0
    }

    fn inject_nmi(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.note("nmi".into());
            self.die("Kernel panic - not syncing: NMI: Not continuing");
        })
    }

    fn pause(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.note("pause".into()) })
    }

    fn dump_memory<'a>(&'a self, path: &'a Path, _timeout: Duration) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.note(format!("dump {}", path.display()));
            // An ELF header's magic and class, then nothing: a vmcore in name.
            let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
            elf.resize(4096, 0);
            std::fs::write(path, elf).map_err(|e| format!("{}: {e}", path.display()))
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, Stopped> {
        Box::pin(async move {
            self.note("shutdown".into());
            self.shared.state.lock().unwrap().exited = true;
            self.release();
            let lost = GuestLost { panic: None, event: None, exit: Some("stopped by kernlab".into()), qmp_closed: false };
            self.shared.lost.send_if_modified(|l| l.is_none() && l.replace(lost).is_none());
            Stopped { how: "qmp-quit", secs: 0.0 }
        })
    }
}

/// The workload's session: the workload's exec lasts until the workload
/// is stopped or the guest is gone; the fetch of its log answers at once.
impl LongSession for Scripted {
    fn exec(self: Arc<Self>, command: String, _timeout: Duration) -> BoxFuture<'static, Result<ExecOutput, SshError>> {
        Box::pin(async move {
            self.note(format!("long {command}"));
            if command != super::workload_command() {
                return Ok(ok(&self.shared.workload_log));
            }
            let mut released = self.shared.released.subscribe();
            let _ = released.wait_for(|r| *r).await;
            let st = self.shared.state.lock().unwrap();
            match st.exited || !st.events.is_empty() {
                true => Err(SshError::Read { command, source: std::io::Error::other("the session ended: the guest is gone") }),
                false => Ok(ok("")),
            }
        })
    }
}

impl Capture for Scripted {
    fn take(&mut self, _t: f64, interval: Duration) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move {
            let k = {
                let mut n = self.shared.taken.lock().unwrap();
                *n += 1;
                *n - 1
            };
            self.note(format!("capture {k}"));
            match (self.shared.series)(k) {
                Step::Text(t) => Ok(t),
                Step::Gap(why) => Err(why),
                Step::Die(line) => {
                    self.die(&line);
                    std::future::pending().await
                }
                Step::Hang => {
                    // As the real capture does: a command that does not
                    // answer times out.
                    let timeout = (interval * 3).max(Duration::from_secs(10));
                    tokio::time::sleep(timeout).await;
                    Err(format!("ssh: `capture` timed out after {timeout:?}"))
                }
            }
        })
    }
}

/// A capture's text as the guest's capture command prints it: uptime,
/// slabinfo (the given caches, `(name, active objects, object size)`),
/// meminfo (MemAvailable as given, Slab and SUnreclaim from the caches)
/// and the workload's operation count.
pub(crate) fn capture_text(uptime: f64, caches: &[(&str, u64, u64)], mem_available_kib: u64, ops: u64) -> String {
    use std::fmt::Write;
    let m = crate::sample::parse::SECTION_MARKER;
    let mut s = format!("{m}uptime\n{uptime:.2} {:.2}\n{m}slabinfo\nslabinfo - version: 2.1\n", uptime * 0.9);
    s.push_str("# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n");
    let mut slab_bytes = 0;
    for (name, objs, size) in caches {
        let per = (4096 / size).max(1);
        let slabs = objs.div_ceil(per);
        slab_bytes += slabs * 4096;
        let _ = writeln!(s, "{name:<17} {objs:>6} {:>6} {size:>6} {per:>4}    1 : tunables    0    0    0 : slabdata {slabs:>6} {slabs:>6}      0", slabs * per);
    }
    let kib = slab_bytes / 1024;
    let _ = write!(
        s,
        "{m}meminfo\nMemTotal:         480288 kB\nMemFree:          {mem_available_kib} kB\nMemAvailable:     {mem_available_kib} kB\nSlab:             {kib} kB\nSReclaimable:     0 kB\nSUnreclaim:       {kib} kB\n"
    );
    let _ = write!(s, "{m}ops\n{ops}\n");
    s
}

/// A sample series with a known leak: `per_op` objects of the cache
/// `leaky` (256 bytes) per operation, `ops_per_sample` operations between
/// samples, and noise (a deterministic hash of the sample number and
/// `seed`, ±`noise` objects) on the caches `dentry` and `leaky` alike.
pub(crate) fn leak_series(per_op: f64, ops_per_sample: u64, noise: u64, seed: u64) -> Series {
    Arc::new(move |k| {
        let ops = k * ops_per_sample;
        let jitter = |salt: u64| {
            let mut h = k.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed.wrapping_mul(0xBF58_476D_1CE4_E5B9) ^ salt;
            h ^= h >> 31;
            h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
            h ^= h >> 29;
            (h % (2 * noise + 1)) as i64 - noise as i64
        };
        let leaky = (1000.0 + per_op * ops as f64) as i64 + jitter(1);
        let dentry = 20000 + jitter(2);
        let caches = [("dentry", dentry as u64, 192), ("leaky", leaky as u64, 256), ("kmalloc-64", 5000, 64)];
        Step::Text(capture_text(10.0 + k as f64, &caches, 400_000, ops))
    })
}

/// A run directory's file, read to a string (empty when it is not there).
pub(crate) fn read(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).unwrap_or_default()
}

/// The lab file's directory for a test lab written to `dir`.
pub(crate) fn lab_file(dir: &Path, yaml: &str) -> PathBuf {
    let p = dir.join("lab.yaml");
    std::fs::write(&p, yaml).unwrap();
    p
}
