//! Saving a running VM's state to a file (QEMU's migration stream), so a
//! later run can start QEMU on it (`-incoming`) instead of booting. What
//! the state is kept as, and when a VM may have one, is the snapshot
//! cache's (`crate::snapshot`) and the run's business.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::qmp::Qmp;

/// How long saving may take, from `stop` to the state's end (a 512 MiB
/// guest writes ~75 MiB in well under a second).
const SAVE_TIMEOUT: Duration = Duration::from_secs(120);

/// The migration stream's socket, in the run directory (QEMU's cwd).
const MIGRATE_SOCKET: &str = "migrate.sock";

/// Binds the migration socket in `dir` through a directory descriptor, so
/// the socket path stays short however deep the run directory is.
fn bind_in(dir: &Path, name: &str) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::fd::AsRawFd;
    let _ = std::fs::remove_file(dir.join(name));
    let handle = std::fs::File::open(dir)?;
    let short = format!("/proc/self/fd/{}/{name}", handle.as_raw_fd());
    tokio::net::UnixListener::bind(short)
}

/// Why the state was not saved.
#[derive(Debug)]
pub enum SaveError {
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
pub(crate) async fn save(qmp: &Qmp, run_dir: &Path, state: &Path, disks: &[(std::path::PathBuf, std::path::PathBuf)]) -> Result<f64, SaveError> {
    let listener = bind_in(run_dir, MIGRATE_SOCKET).map_err(|e| SaveError::NotSaved(format!("cannot listen on {MIGRATE_SOCKET}: {e}")))?;
    let t = Instant::now();
    qmp.stop().await.map_err(|e| SaveError::NotSaved(e.to_string()))?;
    let mut saved = write_state(qmp, listener, state).await;
    // The disks the state refers to, copied while the VM is paused (the
    // stop flushed them; QEMU writes nothing until `cont`).
    if saved.is_ok() {
        for (from, to) in disks {
            if let Err(e) = std::fs::copy(from, to) {
                saved = Err(format!("cannot copy the disk `{}` to `{}`: {e}", from.display(), to.display()));
                break;
            }
        }
    }
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
