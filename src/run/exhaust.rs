//! Memory exhaustion, panics and hangs, turned into a vmcore and a triage.
//! The lab's `exhaustion.action` picks in-guest kdump (the way a SUSE or
//! Debian server does it) or a dump from the host; the host dump is also
//! the fallback whenever kdump cannot load, does not take over, or does not
//! finish within the deadline. Every path ends with a `DumpRecord` saying
//! which path produced the vmcore and why.

use std::time::{Duration, Instant};

use super::events::Event;
use super::sampler::SamplerEnd;
use super::{blocking, Ctx, RunError, CONSOLE};
use crate::dump::{self, DumpRecord};
use crate::kernel::Kernel;
use crate::lab::{DumpAction, Lab};
use crate::util::{fsx, tool};
use crate::vm::console::Tail;
use super::guest::GuestOps;
use crate::vm::{GuestError, SshError};

/// How the guest finds the dump disk (its ext4 label), and what is on it.
const DUMP_LABEL: &str = "kernlab-dump";
const DUMP_DEV: &str = "\"$(findfs LABEL=kernlab-dump)\"";
const DISK_VMLINUZ: &str = "boot/vmlinuz";
const DISK_CAPTURE: &str = "boot/capture.cpio";

pub(super) fn kdump_wanted(lab: &Lab) -> bool {
    lab.exhaustion.as_ref().is_some_and(|x| x.action == DumpAction::Kdump)
}

/// Kernel command-line words for the lab's dump path.
pub(super) fn cmdline(lab: &Lab) -> Vec<String> {
    match &lab.exhaustion {
        Some(x) if x.action == DumpAction::Kdump => vec![
            format!("crashkernel={}M", x.crashkernel >> 20),
            // Run the panic notifiers (pvpanic) before kexec, so QMP says
            // GUEST_CRASHLOADED the moment kdump takes over.
            "crash_kexec_post_notifiers".into(),
        ],
        _ => Vec::new(),
    }
}

/// Makes the dump disk: the capture kernel (the same kernel) and its
/// initramfs, room for a vmcore as large as the guest's RAM.
pub(super) async fn prepare_disk(ctx: &Ctx, kernel: &Kernel) -> Result<std::path::PathBuf, RunError> {
    let x = ctx.lab.exhaustion.clone().expect("kdump labs have an exhaustion section");
    let k = kernel.clone();
    let capture = blocking(move || crate::image::capture_cpio(&k, x.dump_level)).await??;
    let path = ctx.dir.join("dump.img");
    let size = ctx.lab.vm.memory + (256 << 20);
    let (p, bz) = (path.clone(), kernel.vmlinuz());
    blocking(move || {
        let vmlinuz = std::fs::read(&bz).map_err(|source| RunError::Write { path: bz.clone(), source })?;
        dump::make_disk(&p, size, &[(DISK_VMLINUZ, &vmlinuz), (DISK_CAPTURE, &capture)]).map_err(RunError::from)
    })
    .await??;
    Ok(path)
}

/// The dump disk of a distro guest (`image: debian`): an empty ext4 that
/// its fstab mounts at /var/crash in the capture kernel only; kdump-tools
/// writes the vmcore there, as large as the guest's RAM at most.
pub(super) async fn prepare_crash_disk(ctx: &Ctx) -> Result<std::path::PathBuf, RunError> {
    let path = ctx.dir.join("dump.img");
    let (p, size) = (path.clone(), ctx.lab.vm.memory + (256 << 20));
    blocking(move || dump::make_ext4(&p, size, DUMP_LABEL)).await??;
    Ok(path)
}

/// Sets the guest up so that exhaustion ends in a panic (OOM, sysrq, NMI),
/// and loads the capture kernel for kdump. Returns whether kdump is loaded;
/// when it cannot load, says why and the host dump takes over.
pub(super) async fn arm(ctx: &mut Ctx, guest: &dyn GuestOps) -> Result<bool, RunError> {
    let Some(x) = ctx.lab.exhaustion.clone().filter(|x| x.dumps()) else { return Ok(false) };
    let during = "while preparing the guest for dumps";
    let sysctl = "sysctl -w vm.panic_on_oom=1 kernel.unknown_nmi_panic=1 kernel.sysrq=1 kernel.panic_on_oops=1 >/dev/null";
    let out = guest.exec(sysctl, Duration::from_secs(30)).await.map_err(|e| ctx.guest_error(e, during))?;
    if !out.success() {
        return Err(RunError::DumpSetup { command: sysctl.into(), status: out.status, stderr: out.stderr.trim().to_string() });
    }
    if x.action != DumpAction::Kdump {
        return Ok(false);
    }
    if ctx.lab.image.boots_disk() {
        return arm_distro(ctx, guest, &x).await;
    }
    // The capture kernel's command line: one CPU, devices reset, the
    // capture initramfs's init. No panic=-1: a capture kernel that fails
    // must stay up (QEMU alive, memory intact) so the deadline can take the
    // host dump instead.
    // loglevel=6 so its "Linux version" banner shows on the console: that
    // is how the host tells the capture kernel's messages from the first's.
    let arch = ctx.manifest.kernel.as_ref().map(|k| k.arch()).unwrap_or_default();
    let append = format!("console={} rdinit=/init irqpoll nr_cpus=1 reset_devices loglevel=6", arch.console());
    let cmd = format!(
        "mkdir -p /mnt/dump && mount -o ro {DUMP_DEV} /mnt/dump && \
         kexec -p /mnt/dump/{DISK_VMLINUZ} --initrd=/mnt/dump/{DISK_CAPTURE} --append={}; s=$?; \
         umount /mnt/dump; [ $s = 0 ] && [ \"$(cat /sys/kernel/kexec_crash_loaded)\" = 1 ] || \
         {{ echo \"kexec -p exited $s; crash kernel reserved: $(cat /sys/kernel/kexec_crash_size) bytes\" >&2; exit 1; }}",
        tool::shell_quote(&append)
    );
    let out = guest.exec(&cmd, Duration::from_secs(60)).await.map_err(|e| ctx.guest_error(e, during))?;
    if out.success() {
        ctx.events.emit(Event::KdumpLoaded { crashkernel: x.crashkernel });
        Ok(true)
    } else {
        let reason = format!("kdump could not be loaded ({}); a panic will be dumped from the host", out.stderr.trim());
        ctx.events.emit(Event::KdumpUnavailable { reason });
        Ok(false)
    }
}

/// How long the distro's kdump-tools may take to load the capture kernel
/// after SSH is up (it starts at boot, before sshd, so it is usually done).
const DISTRO_KDUMP_WAIT: Duration = Duration::from_secs(120);

/// A distro guest's kdump is its own kdump-tools service, which loaded the
/// capture kernel at boot: wait for it, set the lab's dump level where
/// kdump-tools reads it when it saves (`MAKEDUMP_ARGS`), and on failure
/// say what its service log says; the host dump then takes over.
async fn arm_distro(ctx: &mut Ctx, guest: &dyn GuestOps, x: &crate::lab::Exhaustion) -> Result<bool, RunError> {
    let during = "while checking the guest's kdump-tools";
    let level = x.dump_level;
    let tries = DISTRO_KDUMP_WAIT.as_secs();
    let cmd = format!(
        r#"f=/etc/default/kdump-tools; sed -i '/^#\?MAKEDUMP_ARGS=/d' $f && echo 'MAKEDUMP_ARGS="-c -d {level}"' >> $f || exit 1
loaded() {{ [ "$(cat /sys/kernel/kexec_crash_loaded)" = 1 ]; }}
i=0
while ! loaded && [ $i -lt {tries} ]; do
  case "$(systemctl is-active kdump-tools)" in active|failed) break ;; esac
  sleep 1; i=$((i+1))
done
loaded || {{ journalctl -b -u kdump-tools --no-pager -o cat 2>/dev/null | tail -n 5 >&2; exit 1; }}"#
    );
    let out = guest.exec(&cmd, DISTRO_KDUMP_WAIT + Duration::from_secs(30)).await.map_err(|e| ctx.guest_error(e, during))?;
    if out.success() {
        ctx.events.emit(Event::KdumpLoaded { crashkernel: x.crashkernel });
        Ok(true)
    } else {
        let log = out.stderr.trim().replace('\n', "; ");
        let reason = format!("the guest's kdump-tools did not load the capture kernel ({log}); a panic will be dumped from the host");
        ctx.events.emit(Event::KdumpUnavailable { reason });
        Ok(false)
    }
}

/// What ended the workload phase early.
#[derive(Debug, Clone)]
pub(super) enum Trigger {
    Exhausted { mem_available: u64 },
    Hung { gaps: u32 },
    /// The guest panicked by itself (OOM with panic_on_oom, an oops…).
    Panicked(String),
}

impl Trigger {
    pub(super) fn from_sampler(end: &SamplerEnd) -> Trigger {
        match end {
            SamplerEnd::Exhausted { mem_available } => Trigger::Exhausted { mem_available: *mem_available },
            SamplerEnd::Hung { gaps } => Trigger::Hung { gaps: *gaps },
            SamplerEnd::Done | SamplerEnd::WorkloadFailed { .. } => Trigger::Panicked("no trigger".into()),
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Trigger::Exhausted { mem_available } => format!("MemAvailable fell to {} KiB, below the lab's headroom", mem_available / 1024),
            Trigger::Hung { gaps } => format!("the guest gave no sample for {gaps} intervals"),
            Trigger::Panicked(r) => r.clone(),
        }
    }
}

/// Panics the guest if it has not panicked yet, waits for the dump path the
/// lab chose (falling back to the host dump), and triages the vmcore.
pub(super) async fn collect(ctx: &mut Ctx, guest: &dyn GuestOps, trigger: Trigger, kdump_loaded: bool) -> Result<(), RunError> {
    let x = ctx.lab.exhaustion.clone().expect("collect is called with an exhaustion section");
    let start = Instant::now();
    let why = trigger.describe();
    ctx.events.emit(Event::Exhaustion { trigger: why.clone() });
    match &trigger {
        Trigger::Exhausted { .. } => {
            // sysrq-c over SSH; the command never returns, as the guest dies.
            let sent = guest.exec("echo c > /proc/sysrq-trigger", Duration::from_secs(3)).await;
            let how = match sent {
                Err(GuestError::Lost(_)) | Err(GuestError::Ssh(SshError::Timeout { .. } | SshError::Read { .. })) | Ok(_) => "sysrq-c over SSH",
                Err(_) => {
                    guest.inject_nmi().await;
                    "NMI from the host (SSH failed)"
                }
            };
            ctx.events.emit(Event::PanicTriggered { how: how.into() });
        }
        Trigger::Hung { .. } => {
            guest.inject_nmi().await;
            ctx.events.emit(Event::PanicTriggered { how: "NMI from the host (guest hung)".into() });
        }
        Trigger::Panicked(_) => {}
    }

    let crash_dir = dump::crash_dir(&ctx.dir.path)?;
    let deadline = start + x.deadline;
    let mut nmi_sent = matches!(trigger, Trigger::Hung { .. });
    let mut fallback_reason: Option<String> = None;

    if kdump_loaded {
        // The capture kernel powers off when the dump is written. If it
        // panics instead (a crashkernel too small says "System is
        // deadlocked on memory"), the console shows it and the host dump
        // need not wait for the deadline.
        // The console from here on, read as it grows; what the capture
        // kernel printed starts with its banner after GUEST_CRASHLOADED.
        let mut console = Tail::at(&ctx.dir.join(CONSOLE), guest.console_read());
        let (mut crashloaded, mut capture) = (false, false);
        loop {
            crashloaded = crashloaded || guest.seen("GUEST_CRASHLOADED");
            let mut failed = None;
            for line in console.lines() {
                // Lines before the event are the first kernel's.
                if !crashloaded {
                    continue;
                }
                capture = capture || line.contains("Linux version");
                if !capture || failed.is_some() {
                    continue;
                }
                if line.contains("kernlab-capture: FAILED") {
                    failed = Some(format!("the capture kernel could not write the dump ({})", line.trim()));
                } else if line.contains("Kernel panic - not syncing") {
                    failed = Some(format!(
                        "the capture kernel panicked ({}); is exhaustion.crashkernel ({} MiB) too small?",
                        line.trim(),
                        x.crashkernel >> 20
                    ));
                }
            }
            if failed.is_some() {
                fallback_reason = failed;
                guest.pause().await;
                break;
            }
            if guest.exited() {
                let disk = ctx.dir.join("dump.img");
                let record = match ctx.lab.image.boots_disk() {
                    false => collect_kernlab(&disk, &crash_dir, &why, x.dump_level).await,
                    true => collect_distro(&disk, &crash_dir, &why).await,
                };
                let mut record = match record {
                    Ok(r) => r,
                    Err(reason) => {
                        let console = fsx::tail_lines(&ctx.dir.join(CONSOLE), 30);
                        return Err(RunError::DumpFailed { reason, console });
                    }
                };
                // The vmcore is out; the disk copy need not stay.
                let _ = std::fs::remove_file(&disk);
                record.secs = start.elapsed().as_secs_f64();
                return finish(ctx, record, &crash_dir, &x).await;
            }
            if guest.seen("GUEST_PANICKED") {
                fallback_reason = Some("the panic did not reach kdump (pvpanic reported GUEST_PANICKED)".into());
                break;
            }
            if Instant::now() >= deadline {
                fallback_reason = Some(format!("the capture kernel did not finish within {:?}", x.deadline));
                guest.pause().await;
                break;
            }
            if !nmi_sent && !guest.seen("GUEST_CRASHLOADED") && start.elapsed() > Duration::from_secs(20) {
                guest.inject_nmi().await;
                nmi_sent = true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    } else {
        // Host dump: the guest pauses on its panic (pvpanic, -action panic=pause).
        loop {
            if guest.seen("GUEST_PANICKED") {
                break;
            }
            if guest.exited() {
                let console = fsx::tail_lines(&ctx.dir.join(CONSOLE), 30);
                return Err(RunError::DumpFailed { reason: "QEMU exited before the host could dump the guest".into(), console });
            }
            if Instant::now() >= deadline {
                fallback_reason = Some(format!("no panic event within {:?}; dumped the stopped guest", x.deadline));
                guest.pause().await;
                break;
            }
            if !nmi_sent && start.elapsed() > Duration::from_secs(15) {
                guest.inject_nmi().await;
                nmi_sent = true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let vmcore = crash_dir.join("vmcore");
    let t = Instant::now();
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(60));
    if let Err(e) = guest.dump_memory(&vmcore, left).await {
        // A partial vmcore is no use to crash and may be what filled the
        // disk: remove it so the report and the samples can still be written.
        let partial = std::fs::metadata(&vmcore).map(|m| m.len()).unwrap_or(0);
        let _ = std::fs::remove_file(&vmcore);
        let free = fsx::free_bytes(&crash_dir).map(|b| format!("{:.1} MiB", b as f64 / 1048576.0)).unwrap_or_else(|_| "unknown".into());
        let reason = format!(
            "writing the host dump to `{}` failed after {:.1} MiB ({e}); the partial file was removed; free space there now: {free} (a dump of this guest needs up to {} MiB)",
            vmcore.display(),
            partial as f64 / 1048576.0,
            ctx.lab.vm.memory >> 20
        );
        let console = fsx::tail_lines(&ctx.dir.join(CONSOLE), 30);
        return Err(RunError::DumpFailed { reason, console });
    }
    let _ = fsx::set_private(&vmcore);
    let bytes = std::fs::metadata(&vmcore).map(|m| m.len()).unwrap_or(0);
    tracing::debug!("host dump took {:.2} s", t.elapsed().as_secs_f64());
    let reason = match (&fallback_reason, x.action) {
        (Some(f), DumpAction::Kdump) => format!("{why}; fallback to the host dump: {f}"),
        (None, DumpAction::Kdump) => format!("{why}; kdump was not loaded, so the host dumped the guest"),
        (Some(f), _) => format!("{why}; {f}"),
        (None, _) => format!("{why}; the host dumped the panicked guest (QMP dump-guest-memory, kdump-zlib)"),
    };
    finish(ctx, DumpRecord { via: "host-dump".into(), reason, vmcore, bytes, dmesg: None, secs: start.elapsed().as_secs_f64() }, &crash_dir, &x).await
}

/// The vmcore and kernel log kernlab's capture initramfs wrote at the root
/// of the dump disk.
async fn collect_kernlab(disk: &std::path::Path, crash_dir: &std::path::Path, why: &str, level: u8) -> Result<DumpRecord, String> {
    let vmcore = crash_dir.join("vmcore");
    let (d, v) = (disk.to_path_buf(), vmcore.clone());
    let bytes = blocking(move || dump::extract(&d, "vmcore", &v)).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    let dmesg = crash_dir.join("dmesg.txt");
    let (d, m) = (disk.to_path_buf(), dmesg.clone());
    let dmesg = blocking(move || dump::extract(&d, "dmesg.txt", &m)).await.ok().and_then(Result::ok).map(|_| dmesg);
    Ok(DumpRecord {
        via: "kdump".into(),
        reason: format!("{why}; the capture kernel wrote the dump with makedumpfile -d {level}"),
        vmcore,
        bytes,
        dmesg,
        secs: 0.0,
    })
}

/// The vmcore the guest's own kdump-tools saved in /var/crash/<date>/ (the
/// dump disk), read after the guest stopped.
async fn collect_distro(disk: &std::path::Path, crash_dir: &std::path::Path, why: &str) -> Result<DumpRecord, String> {
    let d = disk.to_path_buf();
    let found = blocking(move || dump::find_distro_dump(&d)).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    let Some(found) = found else {
        return Err("the guest's kdump-tools saved no dump in /var/crash (the dump disk has no <date>/dump.<date>): see its lines on the console".into());
    };
    let vmcore = crash_dir.join("vmcore");
    let (d, v, name) = (disk.to_path_buf(), vmcore.clone(), found.vmcore.clone());
    let bytes = blocking(move || dump::extract(&d, &name, &v)).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    let dmesg = match found.dmesg.clone() {
        Some(name) => {
            let out = crash_dir.join("dmesg.txt");
            let (d, m) = (disk.to_path_buf(), out.clone());
            blocking(move || dump::extract(&d, &name, &m)).await.ok().and_then(Result::ok).map(|_| out)
        }
        None => None,
    };
    Ok(DumpRecord {
        via: "kdump-tools".into(),
        reason: format!("{why}; the guest's kdump-tools saved /var/crash/{} (its capture kernel, makedumpfile)", found.vmcore),
        vmcore,
        bytes,
        dmesg,
        secs: 0.0,
    })
}

async fn finish(ctx: &mut Ctx, record: DumpRecord, crash_dir: &std::path::Path, x: &crate::lab::Exhaustion) -> Result<(), RunError> {
    ctx.events.emit(Event::DumpWritten {
        via: record.via.clone(),
        path: record.vmcore.display().to_string(),
        bytes: record.bytes,
        secs: record.secs,
    });
    let vmcore = record.vmcore.clone();
    ctx.dump = Some(record);
    if !x.crash {
        ctx.triage_skipped = Some("the lab turned crash analysis off".into());
        return Ok(());
    }
    let Some(kernel) = ctx.manifest.kernel.clone() else { return Ok(()) };
    let desc = ctx.desc.clone();
    let cache = ctx.cache.clone();
    let (dir, engine) = (crash_dir.to_path_buf(), ctx.lab.triage.engine);
    let res = blocking(move || crate::triage::triage(&cache, &desc, &kernel, &vmcore, &dir, engine)).await?;
    match res {
        Ok(r) => {
            ctx.events.emit(Event::Triage {
                secs: r.secs,
                top_cache: r.top_caches.first().map(|c| c.name.clone()),
                panic: r.panic.clone(),
            });
            ctx.triage = Some(r);
        }
        Err(e) => {
            let reason = format!("{e}");
            ctx.events.emit(Event::TriageSkipped { reason: reason.clone() });
            ctx.triage_skipped = Some(reason);
        }
    }
    Ok(())
}
