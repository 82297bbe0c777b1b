//! The run's side of snapshots: whether a lab's VM may use one, restoring
//! the cached snapshot (QEMU started on the saved state), saving a freshly
//! booted guest and publishing it, giving up on an unusable one, and what
//! the manifest says about each. The cache entry itself (key, layout,
//! publish, remove, eviction) is `crate::snapshot`; the saving of a
//! running VM's state is `vm::state`.

use std::time::Duration;

use super::prepare::GuestImage;
use super::start::{boot, write_boot_files, BootFailure, Ready, RESTORE_TIMEOUT};
use super::events::{self, Event};
use super::{blocking, stop_guest, write, Ctx, RunError, SnapshotManifest, SnapshotMode, CONSOLE};
use crate::image::RunKeys;
use crate::kernel::Kernel;
use crate::lab::{Lab, SnapshotPolicy};
use crate::qemu::{self, AccelChoice, Device, VmSpec};
use crate::snapshot::{KeyInputs, Staged};
use crate::util::fsx;
use crate::vm::SaveError;


/// May this lab's VM restore and save snapshots? `Err` says why not. Only a
/// guest that nothing in the lab changes before setup qualifies: its kernel
/// command line and devices are in the key, but a disk's contents (the
/// churn disk, the dump disk) are made per run and are not in any state,
/// and the dump paths are not yet proven on restored guests.
pub(crate) fn allowed(lab: &Lab, spec: &VmSpec) -> Result<(), String> {
    if lab.vm.snapshot == SnapshotPolicy::Off {
        return Err("the lab asks for a cold boot (vm.snapshot: off)".into());
    }
    if let crate::lab::Image::Disk(_) = lab.image {
        return Err("a user's disk image boots cold (its contents are not part of a snapshot's key)".into());
    }
    if spec.devices.iter().any(|d| matches!(d, Device::DumpDisk | Device::ChurnDisk)) {
        return Err("the VM has a disk (the churn disk or the dump disk), made afresh for each run".into());
    }
    if spec.pause_on_panic {
        return Err("labs with a dump exhaustion.action boot cold (dumps are not yet tested on restored guests)".into());
    }
    Ok(())
}

/// The first command on a restored guest: its clock is the one it had when
/// it was saved, so set it to the host's; and its kernel's random pool is
/// every restored guest's, so stir in bytes of the host's (not credited as
/// entropy; a fresh key or nonce in the guest after this differs from run
/// to run).
pub(crate) fn after_restore_command() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let mut seed = [0u8; 32];
    let _ = getrandom(&mut seed);
    format!("date -s @{now} > /dev/null; echo {} > /dev/urandom", hex::encode(seed))
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// Why a restore did not give a usable guest.
pub(super) enum RestoreFailure {
    /// Fall back to a cold boot, with this warning.
    Failed(String),
    /// Not the snapshot's fault (Ctrl-C, the run directory): end the run.
    Run(RunError),
}

/// Starts QEMU on the snapshot's saved state (the same argv as the VM it
/// was saved from, plus `-incoming`), waits until it runs and its sshd
/// answers, and runs a first command with the snapshot's keys, all within
/// [`RESTORE_TIMEOUT`] or so.
pub(super) async fn restore(ctx: &mut Ctx, spec: &mut VmSpec, kernel: &Kernel, image: &GuestImage, entry: &crate::snapshot::Entry, choice: &AccelChoice) -> Result<Ready, RestoreFailure> {
    use RestoreFailure::{Failed, Run};
    let keys = entry.keys().map_err(Failed)?;
    // The initrd the saved guest booted from: the same image and keys, so
    // even what QEMU reads from it at start is what it was.
    // A disk guest's disk as it was saved: the snapshot's copy of the overlay.
    let overlay = entry.disk();
    if image.overlay_base().is_some() {
        let to = ctx.dir.join(super::prepare::ROOT_DISK);
        std::fs::copy(&overlay, &to).map_err(|e| Failed(format!("cannot copy the snapshot's disk `{}`: {e}", overlay.display())))?;
    }
    write_boot_files(ctx, image, &keys, None, false).await.map_err(Run)?;
    // The console (QEMU appends to it) starts with the boot that was saved.
    let mut console = std::fs::read(entry.console()).unwrap_or_default();
    console.extend_from_slice(format!("kernlab: --- restored from snapshot {} saved {}; the lines above are that boot ---\n", entry.meta.key, entry.meta.saved).as_bytes());
    write(&ctx.dir.join(CONSOLE), &console).map_err(Run)?;
    let state = std::path::absolute(entry.state()).map_err(|e| Failed(format!("{}: {e}", entry.state().display())))?;
    spec.incoming = Some(qemu::argv::incoming_from_file(&state));
    spec.accel = choice.accel;
    ctx.events.emit(Event::AccelChosen { accel: choice.accel.to_string(), reason: choice.reason.clone() });
    ctx.manifest.accel = Some(choice.clone());
    if let Some(b) = ctx.manifest.boot.as_mut() {
        b.attempts = 1;
    }
    ctx.timings.boot_attempts = 1;
    let booted = boot(ctx, spec, kernel, &keys).await;
    spec.incoming = None;
    let booted = match booted {
        Ok(b) => b,
        Err(BootFailure::Other(e @ RunError::Interrupted(_))) => return Err(Run(e)),
        Err(BootFailure::KvmEmulation(_)) => return Err(Failed("KVM stopped with an internal error".into())),
        Err(BootFailure::Retry(e) | BootFailure::Other(e)) => {
            let reason = match &e {
                RunError::Boot { reason, .. } => reason.clone(),
                other => other.chain(),
            };
            // QEMU says what was wrong with the state ("load of migration failed: …").
            let qemu = fsx::tail_lines(&ctx.dir.join("qemu.log"), 3).trim().replace('\n', "; ");
            return Err(Failed(if qemu.is_empty() { reason } else { format!("{reason}; QEMU: {qemu}") }));
        }
    };
    let key = entry.meta.key.clone();
    let running = booted.restored.unwrap_or(booted.secs);
    ctx.events.emit(Event::SnapshotRestored { key: key.clone(), bytes: entry.meta.state_bytes, secs: events::round3(running) });

    // Ready over SSH is the session itself here: the handshake reads the
    // banner, within what is left of the restore's deadline.
    let guest = ctx.guest().map_err(Run)?;
    let left = RESTORE_TIMEOUT.saturating_sub(booted.started.elapsed()).max(Duration::from_secs(2));
    if let Err(e) = guest.open_control(left).await {
        return Err(Failed(format!("SSH to the restored guest failed: {}", ctx.guest_error(e, "after the restore").chain())));
    }
    let mut booted = booted;
    booted.secs = booted.started.elapsed().as_secs_f64();
    tracing::debug!("restore: running {running:.3} s, SSH session {:.3} s after QEMU start", booted.secs);
    ctx.timings.boot_to_ssh = booted.secs;
    ctx.events.emit(Event::SshReady { secs_since_qemu_start: booted.secs });
    match guest.exec(&after_restore_command(), Duration::from_secs(5)).await {
        Ok(out) if out.success() => {}
        Ok(out) => return Err(Failed(format!("the first command on the restored guest exited {}: {}", out.status, out.stderr.trim()))),
        Err(e) => return Err(Failed(format!("the first command on the restored guest failed: {e}"))),
    }
    ctx.timings.first_command = booted.started.elapsed().as_secs_f64();
    crate::snapshot::mark_used(entry);
    set_snapshot(
        ctx,
        SnapshotManifest {
            mode: SnapshotMode::Restored,
            reason: format!("restored the snapshot of this kernel, image and VM shape saved {}", entry.meta.saved),
            key: Some(key),
            entry: Some(entry.dir.display().to_string()),
            state_bytes: Some(entry.meta.state_bytes),
            secs: Some(events::round3(running)),
            fallback: None,
        },
    );
    Ok(Ready { booted, upload_payload: true })
}

/// A snapshot that could not be used: warn, stop its QEMU (keeping its logs
/// as `console-restore.log` and `qemu-restore.log`), and remove the entry
/// so the cold boot that follows saves a good one. Returns the reason.
pub(super) async fn give_up(ctx: &mut Ctx, key: &str, expected: Option<&crate::snapshot::Meta>, reason: String) -> String {
    ctx.events.emit(Event::SnapshotFallback { key: key.to_string(), reason: reason.clone() });
    stop_guest(ctx).await;
    // Whether or not its QEMU lived long enough to be kept (one that exits
    // at once is never handed to the run), its logs are there.
    for f in [CONSOLE, "qemu.log"] {
        if ctx.dir.join(f).exists() {
            let _ = std::fs::rename(ctx.dir.join(f), ctx.dir.join(&f.replace(".log", "-restore.log")));
        }
    }
    let (cache, k, m) = (ctx.cache.clone(), key.to_string(), expected.cloned());
    match blocking(move || crate::snapshot::remove(&cache, &k, m.as_ref())).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("cannot remove snapshot {key}: {e}"),
        Err(e) => tracing::warn!("cannot remove snapshot {key}: {e}"),
    }
    reason
}

/// A fresh guest's saved state, not yet published (with the seconds the
/// guest was paused), or why it was not saved.
pub(super) type Saved = Result<(Staged, f64), String>;

/// Saves the freshly booted guest's state into a scratch entry of the
/// cache. A save that fails is a warning (the event says why); one that
/// leaves the guest paused ends the run.
pub(super) async fn save(ctx: &Ctx, key: &str) -> Result<Saved, RunError> {
    let guest = ctx.guest()?;
    let saved = match Staged::new(&ctx.cache) {
        Err(e) => Err(format!("cannot make a scratch directory in the cache: {e}")),
        Ok(stage) => match guest.save_state(&ctx.dir.path, &stage.state(), &disks(ctx, &stage)).await {
            Ok(secs) => {
                // The boot that later runs restore, for their console.log.
                if let Err(e) = stage.keep_console(&std::fs::read(ctx.dir.join(CONSOLE)).unwrap_or_default()) {
                    tracing::debug!("the saved boot's console is not kept: {e}");
                }
                Ok((stage, secs))
            }
            Err(SaveError::Paused(e)) => return Err(RunError::SnapshotSave(e)),
            Err(SaveError::NotSaved(e)) => Err(e),
        },
    };
    if let Err(reason) = &saved {
        ctx.events.emit(Event::SnapshotSaveFailed { key: key.to_string(), reason: reason.clone() });
    }
    Ok(saved)
}

/// A disk guest's root overlay, to be copied into the entry with the state.
fn disks(ctx: &Ctx, stage: &Staged) -> Vec<(std::path::PathBuf, std::path::PathBuf)> {
    let root = ctx.dir.join(super::prepare::ROOT_DISK);
    if root.exists() {
        vec![(root, stage.disk())]
    } else {
        vec![]
    }
}

/// After a cold boot: publishes the saved state (under the key of how the
/// guest really booted: a KVM failure moves it to TCG's key) and says in
/// the manifest how the guest came up and why.
pub(super) async fn record_cold(ctx: &mut Ctx, save: Option<&str>, saved: Option<Saved>, inputs: KeyInputs, keys: &RunKeys, fallback: Option<String>) -> Result<(), RunError> {
    let after = match &fallback {
        Some(_) => "the snapshot could not be restored: booted cold",
        None => "no snapshot of this kernel, image and VM shape yet: booted cold",
    };
    let mut manifest = SnapshotManifest {
        mode: SnapshotMode::Cold,
        reason: String::new(),
        key: save.map(str::to_string),
        entry: save.map(|k| crate::snapshot::entry_dir(&ctx.cache, k).display().to_string()),
        state_bytes: None,
        secs: None,
        fallback,
    };
    match (save, saved) {
        (Some(_), Some(Ok((stage, secs)))) => {
            let key = &inputs.key();
            manifest.key = Some(key.clone());
            manifest.entry = Some(crate::snapshot::entry_dir(&ctx.cache, key).display().to_string());
            let meta = crate::snapshot::Meta {
                key: key.to_string(),
                inputs,
                client_public: keys.client_public.clone(),
                host_public: keys.host_public()?,
                state_bytes: 0,
                saved: events::wall_clock(),
                save_secs: events::round3(secs),
                kernlab_version: env!("CARGO_PKG_VERSION").to_string(),
            };
            let state_bytes = std::fs::metadata(stage.state()).map(|m| m.len()).unwrap_or(0);
            let (cache, k) = (ctx.cache.clone(), keys.clone());
            match blocking(move || stage.publish(&cache, &k, meta)).await? {
                Ok(published) => {
                    ctx.events.emit(Event::SnapshotSaved { key: key.to_string(), bytes: state_bytes, secs: events::round3(secs), published });
                    if published {
                        evict(ctx, key).await?;
                    }
                    manifest.mode = SnapshotMode::Saved;
                    manifest.state_bytes = Some(state_bytes);
                    manifest.secs = Some(events::round3(secs));
                    manifest.reason = if published {
                        format!("{after} and saved a snapshot")
                    } else {
                        format!("{after}; saved, but another run published the same snapshot first")
                    };
                }
                Err(e) => {
                    let reason = format!("cannot publish it in the cache: {e}");
                    ctx.events.emit(Event::SnapshotSaveFailed { key: key.to_string(), reason: reason.clone() });
                    manifest.reason = format!("{after}; saving the snapshot failed: {reason}");
                }
            }
        }
        (Some(_), saved) => {
            let why = match saved {
                Some(Err(e)) => e,
                _ => String::new(),
            };
            manifest.reason = format!("{after}; saving the snapshot failed: {why}");
        }
        (None, _) => {
            // The lab cannot use snapshots: `allowed` said why already.
            if let Some(old) = ctx.manifest.boot.as_ref().and_then(|b| b.snapshot.clone()) {
                manifest = old;
            }
        }
    }
    set_snapshot(ctx, manifest);
    Ok(())
}

/// Keeps the cache's snapshots under their cap after `keep` was published:
/// the least recently used go, each with an event. A failure to evict is a
/// warning in the log, not the run's failure.
async fn evict(ctx: &mut Ctx, keep: &str) -> Result<(), RunError> {
    let max = crate::snapshot::max_bytes_from_env().map_err(RunError::Usage)?;
    let (cache, k) = (ctx.cache.clone(), keep.to_string());
    match blocking(move || crate::snapshot::evict(&cache, max, &k)).await? {
        Ok(removed) => {
            for (key, bytes) in removed {
                ctx.events.emit(Event::SnapshotEvicted { key, bytes });
            }
        }
        Err(e) => tracing::warn!("cannot evict old snapshots: {e}"),
    }
    Ok(())
}

pub(super) fn set_snapshot(ctx: &mut Ctx, s: SnapshotManifest) {
    if let Some(b) = ctx.manifest.boot.as_mut() {
        b.snapshot = Some(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::{Accel, Machine};
    use std::path::Path;

    fn spec() -> VmSpec {
        VmSpec {
            qemu: "qemu-system-x86_64".into(),
            arch: crate::arch::Arch::X86_64,
            name: "kernlab-x".into(),
            accel: Accel::Tcg,
            machine: Machine::Microvm,
            memory_mib: 512,
            cpus: 1,
            kernel: "vmlinux".into(),
            initrd: "initrd.cpio".into(),
            cmdline: String::new(),
            qmp_socket: "qmp.sock".into(),
            console_log: "console.log".into(),
            ssh_port: 0,
            devices: vec![Device::Net, Device::Balloon],
            dump_disk: None,
            churn_disk: None,
            root_disk: None,
            seed_disk: None,
            firmware_boot: false,
            pause_on_panic: false,
            snapshot: false,
            incoming: None,
        }
    }

    #[test]
    fn which_vms_may_use_a_snapshot() {
        let lab = crate::lab::parse("name: x\n", Path::new("x.yaml")).unwrap();
        assert_eq!(allowed(&lab, &spec()), Ok(()));
        let off = crate::lab::parse("name: x\nvm:\n  snapshot: off\n", Path::new("x.yaml")).unwrap();
        assert!(allowed(&off, &spec()).unwrap_err().contains("vm.snapshot: off"));
        let mut disk = spec();
        disk.devices.push(Device::ChurnDisk);
        assert!(allowed(&lab, &disk).unwrap_err().contains("disk"));
        let mut dumps = spec();
        dumps.pause_on_panic = true;
        assert!(allowed(&lab, &dumps).unwrap_err().contains("exhaustion.action"));
    }

    #[test]
    fn the_command_after_a_restore_sets_the_clock_and_stirs_the_pool() {
        let c = after_restore_command();
        assert!(c.starts_with("date -s @") && c.contains("> /dev/urandom"), "{c}");
        assert_ne!(c.split("echo ").nth(1), after_restore_command().split("echo ").nth(1), "fresh bytes each time");
    }
}
