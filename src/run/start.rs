//! One start of the run's VM: QEMU started on a free loopback port, handed
//! to a [`Guest`], and the wait for the guest's sshd, which ends at once if
//! the guest dies. Cold boots and restores both go through here.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use super::events::Event;
use super::{blocking, fmt_status, write, Ctx, RunError, CONSOLE, QMP_SOCKET};
use super::prepare::{GuestImage, ROOT_DISK, SEED_DISK};
use crate::image::{self, tree::Tree, RunKeys};
use crate::kernel::vmlinux::{self, ImageFormat};
use crate::kernel::Kernel;
use crate::qemu::{self, Accel, Qemu, VmSpec};
use crate::util::fsx;
use crate::vm::{self, console, wait_for_banner, AttachFailure, Connector, Guest};

const PORT_ATTEMPTS: u32 = 5;

/// How long a restore may take from QEMU start to an SSH banner before the
/// run gives up on it and boots cold. A good restore takes well under a
/// second; a bad one either fails at once (QEMU exits) or never answers.
pub(crate) const RESTORE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one probe waits for the SSH banner once the guest's sshd has
/// said it listens.
const BANNER_WAIT: Duration = Duration::from_secs(20);

/// A guest answering over SSH (it is `ctx.guest`), however it came up.
pub(super) struct Ready {
    pub(super) booted: Booted,
    /// The lab's payload is not in the guest yet (a snapshot's guest boots
    /// from the base image alone).
    pub(super) upload_payload: bool,
}

/// The kernel image a VM boots, for a snapshot's key: the bzImage by its
/// hash, or the vmlinux extracted from it (deterministic, so the bzImage's
/// hash and the extraction's format name it).
pub(super) fn kernel_image_id(format: ImageFormat, kernel: &Kernel) -> String {
    match format {
        ImageFormat::Bzimage => format!("bzImage sha256:{}", kernel.vmlinuz_sha256),
        ImageFormat::Vmlinux => format!("vmlinux (extraction {}) of bzImage sha256:{}", vmlinux::FORMAT, kernel.vmlinuz_sha256),
        ImageFormat::Image => format!("{} sha256:{}", kernel.arch().image_format(), kernel.vmlinuz_sha256),
    }
}

/// Writes what the run's guest boots from besides the kernel. The minimal
/// image: the initrd, i.e. the cached image, the keys' archive on top, and
/// the lab's payload when it goes in at boot. A Debian disk: the seed disk
/// with the keys, and (unless a restore brought its own) the overlay of
/// the cached base disk that the run writes instead of it.
pub(super) async fn write_boot_files(ctx: &Ctx, image: &GuestImage, keys: &RunKeys, payload: Option<Tree>, overlay: bool) -> Result<(), RunError> {
    match image {
        GuestImage::Minimal(image) => {
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
        GuestImage::Debian(_) | GuestImage::Disk { .. } => {
            // A fresh instance id per run: cloud-init applies the seed's
            // keys again even on a disk that has booted before.
            let instance = ctx.dir.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "kernlab".into());
            let seed = keys.seed(&format!("kernlab-{instance}"), "kernlab")?;
            let (seed_path, root) = (ctx.dir.join(SEED_DISK), ctx.dir.join(ROOT_DISK));
            let base = image.overlay_base().filter(|_| overlay);
            blocking(move || {
                image::seed::write_seed(&seed, &seed_path)?;
                if let Some(base) = base {
                    image::disk::overlay(&base, &root)?;
                }
                Ok::<(), RunError>(())
            })
            .await?
        }
    }
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
pub(super) fn worth_a_retry(console: &[u8]) -> bool {
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
        write(&crate::outcome::layout::manifest_json(&ctx.dir), &serde_json::to_vec_pretty(&ctx.manifest).unwrap_or_default())?;
        let _ = std::fs::remove_file(ctx.dir.join(QMP_SOCKET));
        let _ = std::fs::remove_file(ctx.dir.join(qemu::argv::SAMPLER_SOCKET));
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
        let user_disk = matches!(ctx.lab.image, crate::lab::Image::Disk(_));
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
            if !user_disk {
                let _ = guest.console().state().wait_for(|s| s.sshd).await;
            } else {
                // A user's disk prints no marker of kernlab's: probe until a
                // banner comes (QEMU's user network stalls a connection made
                // before the guest's network is up, so each probe is short
                // until one gets through).
                while !wait_for_banner(addr, Duration::from_secs(2)).await {}
            }
            // Each probe costs the guest an sshd process (OpenSSH re-executes
            // itself for every connection, seconds under TCG): a probe that
            // gives up early and probes again only queues more of them. Once
            // sshd is listening, one patient probe answers.
            while !wait_for_banner(addr, BANNER_WAIT).await {}
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

