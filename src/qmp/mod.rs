//! QMP, QEMU's control protocol, through the `qapi` crate. One task pumps the
//! socket: it is what delivers command replies as well as events, and it
//! forwards every event (`GUEST_PANICKED`, `SHUTDOWN`, …) to the run, which
//! logs them. (`qapi`'s own `spawn_tokio` drops events; we pump ourselves.)
//! Every command has a timeout; a command pending when QEMU exits fails
//! with EOF instead of hanging.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use qapi::futures::{QapiService, QmpStreamTokio};
use qapi::qmp;
use serde::Serialize;
use tokio::io::WriteHalf;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

type Service = QapiService<QmpStreamTokio<WriteHalf<UnixStream>>>;

/// A QMP event as kernlab logs it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QmpEvent {
    pub name: String,
    pub data: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QMP socket `{}` did not accept a connection within {timeout:?}", path.display())]
    Connect {
        path: PathBuf,
        timeout: Duration,
        #[source]
        source: std::io::Error,
    },
    #[error("QMP capabilities negotiation failed")]
    Negotiate(#[source] std::io::Error),
    #[error("QMP command `{command}` timed out after {timeout:?}")]
    Timeout { command: &'static str, timeout: Duration },
    #[error("QMP command `{command}` failed: {message}")]
    Command { command: &'static str, message: String },
}

pub struct Qmp {
    service: Service,
    pump: tokio::task::JoinHandle<()>,
}

const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

impl Qmp {
    /// Connects to the QMP socket `name` in `dir`, retrying until QEMU has
    /// created it or `timeout` passes, and starts pumping events into `events`.
    pub async fn connect(
        dir: &Path,
        name: &str,
        timeout: Duration,
        events: mpsc::UnboundedSender<QmpEvent>,
    ) -> Result<Self, QmpError> {
        // A unix socket path is limited to 108 bytes; going through an open
        // directory descriptor keeps it short wherever the run directory is.
        let dir_handle = std::fs::File::open(dir).map_err(|source| QmpError::Connect {
            path: dir.join(name),
            timeout,
            source,
        })?;
        let short = PathBuf::from(format!("/proc/self/fd/{}/{}", dir_handle.as_raw_fd(), name));
        let start = tokio::time::Instant::now();
        let stream = loop {
            match UnixStream::connect(&short).await {
                Ok(s) => break s,
                Err(e) if start.elapsed() >= timeout => {
                    return Err(QmpError::Connect { path: dir.join(name), timeout, source: e })
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        drop(dir_handle);
        let negotiation = QmpStreamTokio::open(stream).await.map_err(QmpError::Negotiate)?;
        let stream = tokio::time::timeout(COMMAND_TIMEOUT, negotiation.negotiate())
            .await
            .map_err(|_| QmpError::Timeout { command: "qmp_capabilities", timeout: COMMAND_TIMEOUT })?
            .map_err(QmpError::Negotiate)?;
        let (service, mut stream) = stream.into_parts();
        let pump = tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                match item {
                    Ok(ev) => {
                        let raw = serde_json::to_value(&ev).and_then(serde_json::from_value::<RawEvent>);
                        let (name, data) = raw.map(|r| (r.event, r.data)).unwrap_or_else(|_| ("UNKNOWN".into(), serde_json::Value::Null));
                        let _ = events.send(QmpEvent { name, data });
                    }
                    Err(e) => tracing::debug!("QMP stream: {e}"),
                }
            }
        });
        Ok(Qmp { service, pump })
    }

    async fn exec<C>(&self, name: &'static str, cmd: C) -> Result<C::Ok, QmpError>
    where
        C: qapi::qmp::QmpCommand + qapi::Command + Send + 'static,
        C::Ok: Send + 'static,
        QmpStreamTokio<WriteHalf<UnixStream>>:
            futures::Sink<qapi::Execute<C, u32>, Error = std::io::Error> + Unpin,
    {
        self.exec_within(name, cmd, COMMAND_TIMEOUT).await
    }

    async fn exec_within<C>(&self, name: &'static str, cmd: C, timeout: Duration) -> Result<C::Ok, QmpError>
    where
        C: qapi::qmp::QmpCommand + qapi::Command + Send + 'static,
        C::Ok: Send + 'static,
        QmpStreamTokio<WriteHalf<UnixStream>>:
            futures::Sink<qapi::Execute<C, u32>, Error = std::io::Error> + Unpin,
    {
        // On a task of its own: a caller dropped mid-command (the sampler
        // ended while reading the balloon) must not leave the command half
        // done. Without out-of-band ids QEMU's replies carry no id, and the
        // qapi crate keys its one pending command by id 0: a cancelled one
        // stays pending and the next command panics ("duplicate command id").
        let task = tokio::spawn(self.service.execute(cmd));
        match tokio::time::timeout(timeout, task).await {
            Err(_) => Err(QmpError::Timeout { command: name, timeout }),
            Ok(Err(join)) => Err(QmpError::Command { command: name, message: join.to_string() }),
            Ok(Ok(Err(e))) => Err(QmpError::Command { command: name, message: e.to_string() }),
            Ok(Ok(Ok(v))) => Ok(v),
        }
    }

    /// The VM's run state, e.g. `running`, `internal-error`, `guest-panicked`.
    pub async fn status(&self) -> Result<String, QmpError> {
        let info = self.exec("query-status", qmp::query_status {}).await?;
        Ok(serde_json::to_value(info.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default())
    }

    /// Pauses the VM.
    pub async fn stop(&self) -> Result<(), QmpError> {
        self.exec("stop", qmp::stop {}).await.map(|_| ())
    }

    /// Resumes a paused VM (also one whose state has just been saved).
    pub async fn cont(&self) -> Result<(), QmpError> {
        self.exec("cont", qmp::cont {}).await.map(|_| ())
    }

    /// Lifts the migration bandwidth cap (QEMU's default is 128 MiB/s,
    /// meant for live migration over a network, not a paused VM's state
    /// written to a local file).
    pub async fn set_migration_bandwidth(&self, bytes_per_sec: u64) -> Result<(), QmpError> {
        let params = qmp::MigrateSetParameters { max_bandwidth: Some(bytes_per_sec), ..Default::default() };
        self.exec("migrate-set-parameters", qmp::migrate_set_parameters(params)).await.map(|_| ())
    }

    /// Starts migrating the VM's state to `uri`; returns once it started
    /// (see [`Qmp::migration`]).
    pub async fn migrate(&self, uri: &str) -> Result<(), QmpError> {
        let cmd = qmp::migrate { uri: Some(uri.to_string()), channels: None, detach: None, resume: None };
        self.exec("migrate", cmd).await.map(|_| ())
    }

    /// The migration's status (`setup`, `active`, `completed`, `failed`, …)
    /// and QEMU's error message when it failed.
    pub async fn migration(&self) -> Result<(String, Option<String>), QmpError> {
        let v = self.exec("query-migrate", QueryMigrate {}).await?;
        let m: MigrationInfo = serde_json::from_value(v).unwrap_or_default();
        Ok((m.status.unwrap_or_else(|| "none".into()), m.error_desc))
    }

    /// Sends an NMI to the guest (with `kernel.unknown_nmi_panic=1` it panics).
    pub async fn inject_nmi(&self) -> Result<(), QmpError> {
        self.exec("inject-nmi", qmp::inject_nmi {}).await.map(|_| ())
    }

    /// Writes the guest's memory to `path` in kdump-zlib format (filtered by
    /// nothing, compressed per page; `crash` reads it with the vmcoreinfo
    /// QEMU got from the guest). Synchronous: returns when the file is done.
    pub async fn dump_guest_memory(&self, path: &Path, timeout: Duration) -> Result<(), QmpError> {
        self.dump_guest_memory_as(path, timeout, false).await
    }

    /// [`Qmp::dump_guest_memory`], as an ELF core when `elf` (every page,
    /// uncompressed: as large as the guest's memory). drgn 0.0.22 reads
    /// QEMU's dumps only as ELF: its kdump reader (libkdumpfile 0.5.1)
    /// cannot tell the architecture of QEMU's `kdump-zlib`, of any guest.
    pub async fn dump_guest_memory_as(&self, path: &Path, timeout: Duration, elf: bool) -> Result<(), QmpError> {
        let format = if elf { qmp::DumpGuestMemoryFormat::elf } else { qmp::DumpGuestMemoryFormat::kdump_zlib };
        self.exec_within(
            "dump-guest-memory",
            qmp::dump_guest_memory {
                paging: false,
                protocol: format!("file:{}", path.display()),
                detach: Some(false),
                format: Some(format),
                begin: None,
                length: None,
            },
            timeout,
        )
        .await
        .map(|_| ())
    }

    pub async fn quit(&self) -> Result<(), QmpError> {
        self.exec("quit", qmp::quit {}).await.map(|_| ())
    }

    /// Asks virtio-balloon to refresh its statistics every `secs` seconds.
    pub async fn enable_balloon_stats(&self, secs: u64) -> Result<(), QmpError> {
        self.exec(
            "qom-set",
            qmp::qom_set {
                path: "/machine/peripheral/balloon0".into(),
                property: "guest-stats-polling-interval".into(),
                value: serde_json::json!(secs),
            },
        )
        .await
        .map(|_| ())
    }

    /// The balloon's latest guest statistics: `{"stats": {"stat-free-memory": …}, "last-update": …}`.
    pub async fn balloon_stats(&self) -> Result<serde_json::Value, QmpError> {
        self.exec(
            "qom-get",
            qmp::qom_get { path: "/machine/peripheral/balloon0".into(), property: "guest-stats".into() },
        )
        .await
    }
}

/// `query-migrate`, read as plain JSON: the crate's typed reply follows a
/// newer QEMU's schema, whose required statistics fields QEMU 7.2 lacks.
#[derive(Serialize)]
struct QueryMigrate {}

impl qapi::Command for QueryMigrate {
    type Ok = serde_json::Value;
    const NAME: &'static str = "query-migrate";
    const ALLOW_OOB: bool = false;
}

impl qmp::QmpCommand for QueryMigrate {}

impl Drop for Qmp {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

/// A QMP event as QEMU sends it: its name and its data.
#[derive(serde::Deserialize)]
struct RawEvent {
    event: String,
    #[serde(default)]
    data: serde_json::Value,
}

/// The fields of `query-migrate`'s answer that kernlab reads.
#[derive(serde::Deserialize, Default)]
struct MigrationInfo {
    status: Option<String>,
    #[serde(rename = "error-desc")]
    error_desc: Option<String>,
}
