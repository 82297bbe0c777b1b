//! Snapshots in a run: whether a lab's VM may use one, saving a freshly
//! booted guest's state, and what the manifest says about it. The cache
//! entry itself (key, layout, publish, remove) is `crate::snapshot`; the
//! boot paths that restore or save are in `run::execute`.

use std::path::Path;
use std::time::{Duration, Instant};


use crate::lab::{Lab, SnapshotPolicy};
use crate::qemu::{Device, VmSpec};
use crate::qmp::Qmp;

/// How long a restore may take from QEMU start to an SSH banner before the
/// run gives up on it and boots cold. A good restore takes well under a
/// second; a bad one either fails at once (QEMU exits) or never answers.
pub(crate) const RESTORE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long saving may take, from `stop` to the state's end (a 512 MiB
/// guest writes ~75 MiB in well under a second).
const SAVE_TIMEOUT: Duration = Duration::from_secs(120);

/// The migration stream's socket, in the run directory (QEMU's cwd).
const MIGRATE_SOCKET: &str = "migrate.sock";

pub use crate::outcome::run::{SnapshotManifest, SnapshotMode};

/// May this lab's VM restore and save snapshots? `Err` says why not. Only a
/// guest that nothing in the lab changes before setup qualifies: its kernel
/// command line and devices are in the key, but a disk's contents (the
/// churn disk, the dump disk) are made per run and are not in any state,
/// and the dump paths are not yet proven on restored guests.
pub(crate) fn allowed(lab: &Lab, spec: &VmSpec) -> Result<(), String> {
    if lab.vm.snapshot == SnapshotPolicy::Off {
        return Err("the lab asks for a cold boot (vm.snapshot: off)".into());
    }
    if spec.devices.iter().any(|d| matches!(d, Device::DumpDisk | Device::ChurnDisk)) {
        return Err("the VM has a disk (the churn disk or the dump disk), made afresh for each run".into());
    }
    if spec.pause_on_panic {
        return Err("labs with a dump exhaustion.action boot cold (dumps are not yet tested on restored guests)".into());
    }
    Ok(())
}

/// Binds the migration socket in `dir` through a directory descriptor, so
/// the socket path stays short however deep the run directory is.
fn bind_in(dir: &Path, name: &str) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::fd::AsRawFd;
    let _ = std::fs::remove_file(dir.join(name));
    let handle = std::fs::File::open(dir)?;
    let short = format!("/proc/self/fd/{}/{name}", handle.as_raw_fd());
    tokio::net::UnixListener::bind(short)
}

/// Why a snapshot was not saved.
#[derive(Debug)]
pub(crate) enum SaveError {
    /// Nothing was saved; the guest runs on (a warning).
    NotSaved(String),
    /// The guest could not be resumed after `stop`: the run cannot go on.
    Paused(String),
}

/// Saves the running VM's state into `state`: `stop`, `migrate` to a unix
/// socket kernlab reads into the file, until QEMU closes it and says
/// `completed`; then `cont`, whatever happened, so the run goes on. Returns
/// the seconds the guest was paused.
///
/// Not `exec:cat > FILE`: when QEMU closes an exec channel it signals the
/// `cat` at once (SIGTERM, then SIGKILL after 10 ms) unless it has already
/// exited, which can cut off the last buffer of the stream. Reading the
/// socket here, the end of the stream is known exactly.
pub(crate) async fn save(qmp: &Qmp, run_dir: &Path, state: &Path) -> Result<f64, SaveError> {
    let listener = bind_in(run_dir, MIGRATE_SOCKET).map_err(|e| SaveError::NotSaved(format!("cannot listen on {MIGRATE_SOCKET}: {e}")))?;
    let t = Instant::now();
    qmp.stop().await.map_err(|e| SaveError::NotSaved(e.to_string()))?;
    let saved = write_state(qmp, listener, state).await;
    let _ = std::fs::remove_file(run_dir.join(MIGRATE_SOCKET));
    // The guest must run on whether or not the state was saved.
    qmp.cont().await.map_err(|e| SaveError::Paused(format!("the VM stayed paused after saving: {e}")))?;
    let paused = t.elapsed().as_secs_f64();
    saved.map(|()| paused).map_err(SaveError::NotSaved)
}

async fn write_state(qmp: &Qmp, listener: tokio::net::UnixListener, state: &Path) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    // 16 GiB/s: no cap that matters on a local file.
    if let Err(e) = qmp.set_migration_bandwidth(16 << 30).await {
        tracing::debug!("migration bandwidth stays capped: {e}");
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(state)
        .map_err(|e| format!("cannot create {}: {e}", state.display()))?;
    qmp.migrate(&format!("unix:{MIGRATE_SOCKET}")).await.map_err(|e| e.to_string())?;
    let run = async {
        let (mut stream, _) = listener.accept().await.map_err(|e| format!("QEMU did not connect to {MIGRATE_SOCKET}: {e}"))?;
        let mut file = tokio::fs::File::from_std(file);
        let bytes = tokio::io::copy(&mut stream, &mut file).await.map_err(|e| format!("writing {}: {e}", state.display()))?;
        use tokio::io::AsyncWriteExt;
        file.flush().await.map_err(|e| e.to_string())?;
        // QEMU closes the stream, then marks the migration done.
        loop {
            let (status, error) = qmp.migration().await.map_err(|e| e.to_string())?;
            match status.as_str() {
                "completed" => return Ok(bytes),
                "failed" | "cancelled" => return Err(format!("migration {status}: {}", error.unwrap_or_default())),
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    };
    match tokio::time::timeout(SAVE_TIMEOUT, run).await {
        Ok(Ok(0)) => Err("QEMU sent an empty state".into()),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("saving took longer than {SAVE_TIMEOUT:?}")),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::{Accel, Machine};

    fn spec() -> VmSpec {
        VmSpec {
            qemu: "qemu-system-x86_64".into(),
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
