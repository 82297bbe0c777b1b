//! How the run's guest comes up: restored from the cached snapshot of its
//! kernel, image and VM shape (see [`super::restore`]), or booted cold
//! with a deadline and one retry, under TCG after a KVM failure, and saved
//! as that snapshot. One attempt starts QEMU, hands it to a [`Guest`] and
//! waits for the guest's sshd, a wait that ends at once if the guest dies.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use super::events::{self, Event};
use super::prepare::Prepared;
use super::restore::{self, RestoreFailure, RESTORE_TIMEOUT};
use super::{blocking, fmt_status, stop_guest, write, Ctx, RunError, SnapshotManifest, SnapshotMode, CONSOLE, QMP_SOCKET};
use crate::image::{self, tree::Tree, RunKeys};
use crate::kernel::vmlinux::{self, ImageFormat};
use crate::kernel::Kernel;
use crate::qemu::{self, accel, Accel, AccelChoice, AccelRequest, Qemu, VmSpec};
use crate::snapshot::{KeyInputs, Lookup};
use crate::util::fsx;
use crate::vm::{self, console, wait_for_banner, AttachFailure, Connector, Guest};

/// A boot that hangs or dies once is tried again once, with the reason logged.
const BOOT_ATTEMPTS: u32 = 2;
const PORT_ATTEMPTS: u32 = 5;
/// Each step of opening an SSH session.
pub(super) const SSH_TIMEOUT: Duration = Duration::from_secs(20);

/// A guest answering over SSH (it is `ctx.guest`), however it came up.
pub(super) struct Ready {
    pub(super) booted: Booted,
    /// The lab's payload is not in the guest yet (a snapshot's guest boots
    /// from the base image alone).
    pub(super) upload_payload: bool,
}

/// The guest: restored from the cached snapshot of this kernel, image and
/// VM shape, or booted cold (and saved as that snapshot when the lab
/// allows one). A restore that fails falls back to a cold boot.
pub(super) async fn bring_up(ctx: &mut Ctx, p: &mut Prepared) -> Result<Ready, RunError> {
    let snapshot_key = match restore::allowed(&ctx.lab, &p.spec) {
        Ok(()) => {
            // A bad cap is the user's error, said before anything is booted.
            crate::snapshot::max_bytes_from_env().map_err(RunError::Usage)?;
            p.spec.snapshot = true;
            Some(KeyInputs::new(&p.spec, kernel_image_id(p.profile.image, &p.kernel), &p.image.sha256, &p.qemu_version).key())
        }
        Err(reason) => {
            restore::set_snapshot(ctx, SnapshotManifest { mode: SnapshotMode::Cold, reason, key: None, entry: None, state_bytes: None, secs: None, fallback: None });
            None
        }
    };
    let mut fallback = None;
    if let Some(key) = &snapshot_key {
        let (cache, k) = (ctx.cache.clone(), key.clone());
        match blocking(move || crate::snapshot::lookup(&cache, &k)).await? {
            Lookup::Missing => {}
            Lookup::Unusable(reason) => fallback = Some(restore::give_up(ctx, key, None, reason).await),
            Lookup::Found(entry) => match restore::restore(ctx, &mut p.spec, &p.kernel, &p.image, &entry, &p.choice).await {
                Ok(r) => return Ok(r),
                Err(RestoreFailure::Run(e)) => return Err(e),
                Err(RestoreFailure::Failed(reason)) => fallback = Some(restore::give_up(ctx, key, Some(&entry.meta), reason).await),
            },
        }
    }
    let cold = Cold {
        kernel: &p.kernel,
        kernel_image: kernel_image_id(p.profile.image, &p.kernel),
        image: &p.image,
        qemu_version: &p.qemu_version,
        payload: &p.payload,
        requested: p.requested,
        save: snapshot_key.as_deref(),
        fallback,
    };
    boot_cold(ctx, &mut p.spec, &mut p.choice, cold).await
}

/// What a cold boot needs besides the run and the VM.
pub(super) struct Cold<'a> {
    pub(super) kernel: &'a Kernel,
    /// The kernel image booted, as a snapshot's key names it.
    pub(super) kernel_image: String,
    pub(super) image: &'a image::BuiltImage,
    pub(super) qemu_version: &'a str,
    pub(super) payload: &'a Tree,
    pub(super) requested: AccelRequest,
    /// Save the fresh guest as the snapshot with this key.
    pub(super) save: Option<&'a str>,
    /// Why a restore was given up before this boot.
    pub(super) fallback: Option<String>,
}

/// Boots the VM from its kernel with this run's own keys (once more after a
/// hang, under TCG after a KVM failure). When `save` is set, the fresh
/// guest's state is saved before anything happens in it, and published once
/// a first command has worked in the guest that goes on running.
async fn boot_cold(ctx: &mut Ctx, spec: &mut VmSpec, choice: &mut AccelChoice, cold: Cold<'_>) -> Result<Ready, RunError> {
    let Cold { kernel, kernel_image, image, qemu_version, payload, requested, save, fallback } = cold;
    let dir = ctx.dir.join("keys");
    let keys = blocking(move || RunKeys::generate(&dir)).await??;
    // A guest that becomes a snapshot boots without the lab's payload (it
    // is uploaded afterwards, as on a restored guest), so that one snapshot
    // serves every lab with this kernel and VM shape.
    write_initrd(ctx, image, &keys, if save.is_some() { None } else { Some(payload.clone()) }).await?;
    let mut attempt = 0;
    let boot = loop {
        attempt += 1;
        ctx.events.emit(Event::AccelChosen { accel: choice.accel.to_string(), reason: choice.reason.clone() });
        ctx.manifest.accel = Some(choice.clone());
        if let Some(b) = ctx.manifest.boot.as_mut() {
            b.attempts = attempt;
        }
        ctx.timings.boot_attempts = attempt;
        spec.accel = choice.accel;
        match boot(ctx, spec, kernel, &keys).await {
            Err(BootFailure::KvmEmulation(console)) if requested == AccelRequest::Auto => {
                // KVM that cannot run this kernel: say so, keep its console,
                // and boot again under TCG.
                tracing::warn!("KVM internal error booting {}; retrying with TCG", kernel.name);
                stop_guest(ctx).await;
                for f in [CONSOLE, "qemu.log"] {
                    let _ = std::fs::rename(ctx.dir.join(f), ctx.dir.join(&f.replace(".log", "-kvm.log")));
                }
                let reason = kvm_retry_reason(&console);
                ctx.events.emit(Event::BootRetry { attempt, reason: reason.clone() });
                if let Some(b) = ctx.manifest.boot.as_mut() {
                    b.retries.push(reason);
                }
                // Later runs of this kernel go to TCG at once (and find the
                // snapshot this boot saves under TCG's key).
                let marker = accel::kvm_failed_marker(&ctx.cache, &kernel.vmlinuz_sha256);
                let written = marker.parent().map_or(Ok(()), fsx::private_dir).and_then(|()| fsx::write_atomic(&marker, format!("{}\n", events::wall_clock()).as_bytes()));
                if let Err(e) = written {
                    tracing::warn!("cannot record the KVM failure in {}: {e}", marker.display());
                }
                *choice = AccelChoice {
                    accel: Accel::Tcg,
                    reason: "KVM stopped with an internal error (emulation failure) on this kernel; using TCG".into(),
                };
            }
            Err(BootFailure::KvmEmulation(console)) => {
                return Err(RunError::Boot {
                    kernel: kernel.name.clone(),
                    reason: "KVM stopped with an internal error (emulation failure); try `accel: tcg`".into(),
                    console,
                })
            }
            Err(BootFailure::Retry(e)) if attempt < BOOT_ATTEMPTS => {
                // A hang (TCG's rare calibrate_delay hang, a stuck device)
                // or a guest that died after it started: once more, with
                // the reason logged and the first attempt's logs kept.
                let reason = match &e {
                    RunError::Boot { reason, .. } => reason.clone(),
                    other => other.to_string(),
                };
                tracing::warn!("boot attempt {attempt} of {} failed ({reason}); booting once more", kernel.name);
                ctx.events.emit(Event::BootRetry { attempt, reason: reason.clone() });
                if let Some(b) = ctx.manifest.boot.as_mut() {
                    b.retries.push(reason);
                }
                stop_guest(ctx).await;
                for f in [CONSOLE, "qemu.log"] {
                    let kept = f.replace(".log", &format!("-attempt{attempt}.log"));
                    let _ = std::fs::rename(ctx.dir.join(f), ctx.dir.join(&kept));
                }
            }
            Err(BootFailure::Retry(e)) | Err(BootFailure::Other(e)) => return Err(e),
            Ok(b) => break b,
        }
    };
    ctx.timings.boot_to_ssh = boot.secs;
    ctx.events.emit(Event::SshReady { secs_since_qemu_start: boot.secs });

    // Save now, while the guest is exactly what every run of this kernel,
    // image and VM shape boots to: no SSH session yet, nothing run in it.
    let staged = match save {
        Some(key) => Some(restore::save(ctx, key).await?),
        None => None,
    };

    let guest = ctx.guest()?;
    guest.open_control(SSH_TIMEOUT).await.map_err(|e| ctx.guest_error(e, "while opening the first SSH session"))?;
    guest.exec("true", Duration::from_secs(10)).await.map_err(|e| ctx.guest_error(e, "at the first command"))?;
    ctx.timings.first_command = boot.started.elapsed().as_secs_f64();

    let inputs = KeyInputs::new(spec, kernel_image, &image.sha256, qemu_version);
    restore::record_cold(ctx, save, staged, inputs, &keys, fallback).await?;
    Ok(Ready { booted: boot, upload_payload: save.is_some() })
}

/// Why a boot is tried again under TCG after KVM failed it, with the last
/// line its console got to (the whole console is kept as `console-kvm.log`).
fn kvm_retry_reason(console_tail: &str) -> String {
    let last = console_tail.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("(nothing)");
    format!("KVM stopped with an internal error (emulation failure); booting again under TCG (its console is in console-kvm.log, last line: {last})")
}

/// The kernel image a VM boots, for a snapshot's key: the bzImage by its
/// hash, or the vmlinux extracted from it (deterministic, so the bzImage's
/// hash and the extraction's format name it).
pub(super) fn kernel_image_id(format: ImageFormat, kernel: &Kernel) -> String {
    match format {
        ImageFormat::Bzimage => format!("bzImage sha256:{}", kernel.vmlinuz_sha256),
        ImageFormat::Vmlinux => format!("vmlinux (extraction {}) of bzImage sha256:{}", vmlinux::FORMAT, kernel.vmlinuz_sha256),
    }
}

/// Writes the run's initrd: the cached image, the keys' archive on top,
/// and the lab's payload when it goes in at boot.
pub(super) async fn write_initrd(ctx: &Ctx, image: &image::BuiltImage, keys: &RunKeys, payload: Option<Tree>) -> Result<(), RunError> {
    let (src, keys, out) = (image.path.clone(), keys.clone(), ctx.dir.join("initrd.cpio"));
    blocking(move || {
        let mut bytes = std::fs::read(&src).map_err(|source| RunError::Write { path: src.clone(), source })?;
        bytes.extend_from_slice(&keys.overlay()?.to_cpio());
        if let Some(p) = payload.filter(|p| !p.is_empty()) {
            bytes.extend_from_slice(&p.to_cpio());
        }
        write(&out, &bytes)
    })
    .await?
}

pub(super) struct Booted {
    /// QEMU start → SSH banner.
    pub(super) secs: f64,
    /// Restored from a snapshot: QEMU start → the VM running.
    pub(super) restored: Option<f64>,
    /// QEMU start → the guest's /init running (the boot floor).
    pub(super) init: Option<f64>,
    pub(super) started: Instant,
}

pub(super) enum BootFailure {
    /// KVM could not run the kernel (QEMU `internal-error`); the console tail.
    KvmEmulation(String),
    /// The guest started but hung or died before it was ready: worth one retry.
    Retry(RunError),
    Other(RunError),
}

impl From<RunError> for BootFailure {
    fn from(e: RunError) -> Self {
        BootFailure::Other(e)
    }
}

/// Whether a boot whose guest died is worth one more try, from its console:
/// it printed (the kernel ran) and did not panic.
fn worth_a_retry(console: &[u8]) -> bool {
    !console.is_empty() && console::panic_in(&String::from_utf8_lossy(console)).is_none()
}

/// A failed boot with its console tail and QEMU's own last words. A panic
/// is the cause, whatever QEMU did next (reset, exit, stop).
fn boot_fail(ctx: &Ctx, kernel: &Kernel, reason: String) -> BootFailure {
    let reason = match console::panic_in(&fsx::tail_lines(&ctx.dir.join(CONSOLE), 400)) {
        Some(line) => format!("the kernel panicked during boot: {line} (then: {reason})"),
        None => reason,
    };
    let mut tail = fsx::tail_lines(&ctx.dir.join(CONSOLE), 30);
    let qemu_log = fsx::tail_lines(&ctx.dir.join("qemu.log"), 10);
    if !qemu_log.is_empty() {
        tail.push_str(&format!("\n--- QEMU ---\n{qemu_log}"));
    }
    BootFailure::Other(RunError::Boot { kernel: kernel.name.clone(), reason, console: tail })
}

/// A guest that printed something and then died without a panic may have
/// met a rare race; one that never printed (QEMU refused the kernel) or
/// that panicked will do the same a second time, and its panic is the
/// finding.
fn retry(e: BootFailure, console: &Path) -> BootFailure {
    match e {
        BootFailure::Other(e) if worth_a_retry(&std::fs::read(console).unwrap_or_default()) => BootFailure::Retry(e),
        e => e,
    }
}

/// Starts QEMU (retrying on a port taken by someone else), makes it the
/// run's [`Guest`], and waits for the guest to be ready within the lab's
/// boot timeout: its sshd's console line and banner, or for a restored
/// guest the VM running. The wait ends early when the guest dies, or when
/// KVM stops with an internal error.
pub(super) async fn boot(ctx: &mut Ctx, spec: &mut VmSpec, kernel: &Kernel, keys: &RunKeys) -> Result<Booted, BootFailure> {
    let console = ctx.dir.join(CONSOLE);
    for attempt in 1..=PORT_ATTEMPTS {
        spec.ssh_port = qemu::free_port().map_err(|source| RunError::Write { path: "127.0.0.1:0".into(), source })?;
        let argv = qemu::argv(spec);
        ctx.manifest.qemu_argv = argv.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        ctx.manifest.ssh_port = Some(spec.ssh_port);
        write(&ctx.dir.join("manifest.json"), &serde_json::to_vec_pretty(&ctx.manifest).unwrap_or_default())?;
        let _ = std::fs::remove_file(ctx.dir.join(QMP_SOCKET));
        let started = Instant::now();
        let q = Qemu::spawn(&argv, &ctx.dir.path, &ctx.dir.join("qemu.log")).map_err(RunError::from)?;
        ctx.events.emit(Event::QemuStarted { pid: q.pid(), ssh_port: spec.ssh_port, attempt });
        let addr: SocketAddr = ([127, 0, 0, 1], spec.ssh_port).into();
        let ssh = Connector { addr, client_key: keys.client_key.clone(), host_key_blob: keys.host_key_blob.clone() };
        let files = vm::Files { dir: &ctx.dir.path, qmp_socket: QMP_SOCKET, console: console.clone() };
        let events = ctx.events.clone();
        let on_event = move |ev: crate::qmp::QmpEvent| events.emit(Event::Qmp { name: ev.name, data: ev.data });
        let guest = match Guest::attach(q, files, started, ssh, on_event).await {
            Ok(g) => g,
            Err(AttachFailure::Qmp(e, mut q)) => {
                let t = Instant::now();
                q.kill().await;
                ctx.events.emit(Event::Teardown { how: "sigkill".into(), secs: t.elapsed().as_secs_f64() });
                return Err(RunError::Qmp(e).into());
            }
            Err(AttachFailure::Exited { status, log }) => {
                if log.contains("host forwarding rule") && attempt < PORT_ATTEMPTS {
                    tracing::info!("port {} was taken; retrying", spec.ssh_port);
                    continue;
                }
                return Err(boot_fail(ctx, kernel, format!("QEMU exited ({}) before the guest was ready", fmt_status(status))));
            }
        };
        ctx.guest = Some(guest.clone());

        // A restored guest prints nothing: it is up when QEMU has loaded the
        // state and runs it, and its sshd (already listening) answers.
        let restoring = spec.incoming.is_some();
        let timeout = if restoring { RESTORE_TIMEOUT } else { ctx.lab.vm.boot_timeout };
        let ready = async {
            if restoring {
                loop {
                    match guest.qmp().status().await.as_deref() {
                        // Its sshd is listening already: the caller connects
                        // at once (a banner probe first would cost a second
                        // sshd process, which TCG runs slowly until its code
                        // is translated again).
                        Ok("running") => return Ok(()),
                        // Still loading the state (a failed load makes QEMU exit).
                        Ok("inmigrate" | "prelaunch") | Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                        Ok(other) => return Err(format!("the restored VM is `{other}`, not running")),
                    }
                }
            }
            // The guest reports progress on its console: /init running (the
            // boot floor) and dropbear started (from then on probing the SSH
            // port cannot hang in QEMU's user-mode network).
            let _ = guest.console().state().wait_for(|s| s.sshd).await;
            while !wait_for_banner(addr, Duration::from_millis(300)).await {}
            Ok(())
        };
        let kvm_failed = async {
            if spec.accel != Accel::Kvm {
                return std::future::pending().await;
            }
            loop {
                if guest.qmp().status().await.is_ok_and(|s| s == "internal-error") {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let outcome = tokio::select! {
            r = guest.wait(tokio::time::timeout(timeout.saturating_sub(started.elapsed()), ready)) => r,
            () = kvm_failed => return Err(BootFailure::KvmEmulation(fsx::tail_lines(&console, 30))),
            () = ctx.cancel.cancelled() => return Err(RunError::Interrupted("signal".into()).into()),
        };
        let secs = started.elapsed().as_secs_f64();
        return match outcome {
            Ok(Ok(Ok(()))) if restoring => Ok(Booted { secs, restored: Some(secs), init: None, started }),
            Ok(Ok(Ok(()))) => Ok(Booted { secs, restored: None, init: guest.console().state().borrow().init, started }),
            Ok(Ok(Err(reason))) => Err(boot_fail(ctx, kernel, reason)),
            Ok(Err(_)) => {
                let reason = match restoring {
                    false => format!("no SSH banner within the boot timeout of {timeout:?}"),
                    true => format!("the VM was not running within {timeout:?} of QEMU start (still loading the state?)"),
                };
                Err(match boot_fail(ctx, kernel, reason) {
                    BootFailure::Other(e) => BootFailure::Retry(e),
                    other => other,
                })
            }
            Err(lost) => {
                let reason = match (&lost.event, &lost.exit) {
                    (None, Some(status)) => format!("QEMU exited ({status}) before the guest was ready"),
                    _ => lost.cause(),
                };
                Err(retry(boot_fail(ctx, kernel, reason), &console))
            }
        };
    }
    Err(boot_fail(ctx, kernel, format!("no free loopback port after {PORT_ATTEMPTS} attempts")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kvm_failure_says_where_its_console_went_and_how_far_it_got() {
        let r = kvm_retry_reason("[    0.00] Linux version 6.1\n[    0.12] smpboot: CPU0: AMD EPYC\n\n");
        assert!(r.contains("console-kvm.log") && r.ends_with("last line: [    0.12] smpboot: CPU0: AMD EPYC)"), "{r}");
        assert!(kvm_retry_reason("").ends_with("last line: (nothing))"));
    }

    #[test]
    fn only_a_guest_that_ran_and_did_not_panic_is_booted_again() {
        assert!(!worth_a_retry(b""), "QEMU refused the kernel: the same again");
        assert!(worth_a_retry(b"[    0.30] PCI: System does not support PCI\n"));
        assert!(!worth_a_retry(b"[    1.0] Kernel panic - not syncing: VFS: Unable to mount root fs\n"));
    }
}
