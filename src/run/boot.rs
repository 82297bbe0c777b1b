//! How the run's guest comes up: restored from the cached snapshot of its
//! kernel, image and VM shape (see [`super::restore`]), or booted cold
//! with a deadline and one retry, under TCG after a KVM failure, and saved
//! as that snapshot. One attempt starts QEMU, hands it to a [`Guest`] and
//! waits for the guest's sshd, a wait that ends at once if the guest dies.

use std::time::Duration;

use super::events::{self, Event};
use super::prepare::Prepared;
use super::restore::{self, RestoreFailure};
use super::prepare::GuestImage;
use super::start::{boot, kernel_image_id, write_boot_files, BootFailure, Ready};
use super::{blocking, stop_guest, Ctx, RunError, SnapshotManifest, SnapshotMode, CONSOLE};
use crate::image::{tree::Tree, RunKeys};
use crate::kernel::Kernel;
use crate::qemu::{accel, Accel, AccelChoice, AccelRequest, VmSpec};
use crate::snapshot::{KeyInputs, Lookup};
use crate::util::fsx;

/// A boot that hangs or dies once is tried again once, with the reason logged.
const BOOT_ATTEMPTS: u32 = 2;
/// Each step of opening an SSH session.
pub(super) const SSH_TIMEOUT: Duration = Duration::from_secs(20);


/// The guest: restored from the cached snapshot of this kernel, image and
/// VM shape, or booted cold (and saved as that snapshot when the lab
/// allows one). A restore that fails falls back to a cold boot.
pub(super) async fn bring_up(ctx: &mut Ctx, p: &mut Prepared) -> Result<Ready, RunError> {
    let snapshot_key = match restore::allowed(&ctx.lab, &p.spec) {
        Ok(()) => {
            // A bad cap is the user's error, said before anything is booted.
            crate::snapshot::max_bytes_from_env().map_err(RunError::Usage)?;
            p.spec.snapshot = true;
            Some(KeyInputs::new(&p.spec, kernel_image_id(p.profile.image, &p.kernel), p.image.id(), &p.qemu_version).key())
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
    pub(super) image: &'a GuestImage,
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
    // dropbear reads only its own key format; OpenSSH only OpenSSH's.
    let keys = match image {
        GuestImage::Minimal(_) => blocking(move || RunKeys::generate(&dir)).await??,
        GuestImage::Debian(_) | GuestImage::Disk { .. } => blocking(move || RunKeys::generate_openssh(&dir)).await??,
    };
    // A guest that becomes a snapshot boots without the lab's payload (it
    // is uploaded afterwards, as on a restored guest), so that one snapshot
    // serves every lab with this kernel and VM shape. A disk guest always
    // gets it over SSH.
    let at_boot = save.is_none() && matches!(image, GuestImage::Minimal(_));
    write_boot_files(ctx, image, &keys, at_boot.then(|| payload.clone()), true).await?;
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
    if let Err(e) = guest.open_control(SSH_TIMEOUT).await {
        let keys_refused = matches!(&e, crate::vm::GuestError::Ssh(crate::vm::SshError::HostKeyMismatch | crate::vm::SshError::Auth(_)));
        if keys_refused && matches!(image, GuestImage::Disk { .. }) {
            return Err(RunError::Boot {
                kernel: kernel.name.clone(),
                reason: format!(
                    "the disk's sshd answers but does not use this run's keys ({}): kernlab gives them through a cloud-init NoCloud seed disk (label cidata); install cloud-init in the image",
                    crate::util::error_chain(&e)
                ),
                console: fsx::tail_lines(&ctx.dir.join(CONSOLE), 30),
            });
        }
        return Err(ctx.guest_error(e, "while opening the first SSH session"));
    }
    guest.exec("true", Duration::from_secs(10)).await.map_err(|e| ctx.guest_error(e, "at the first command"))?;
    ctx.timings.first_command = boot.started.elapsed().as_secs_f64();

    let inputs = KeyInputs::new(spec, kernel_image, image.id(), qemu_version);
    restore::record_cold(ctx, save, staged, inputs, &keys, fallback).await?;
    Ok(Ready { booted: boot, upload_payload: !at_boot })
}

/// Why a boot is tried again under TCG after KVM failed it, with the last
/// line its console got to (the whole console is kept as `console-kvm.log`).
fn kvm_retry_reason(console_tail: &str) -> String {
    let last = console_tail.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("(nothing)");
    format!("KVM stopped with an internal error (emulation failure); booting again under TCG (its console is in console-kvm.log, last line: {last})")
}

#[cfg(test)]
mod tests {
    use super::super::start::worth_a_retry;
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
