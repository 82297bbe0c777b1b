//! SSH sessions to the guest (the `ssh2` crate, i.e. libssh2): waiting for
//! readiness by the server's banner, executing commands with exit status
//! and output, uploading files. Authentication is both ways: the client key
//! is the run's (or the snapshot's), and the server's host key must be the
//! one made with it. ssh2 is blocking: everything here but
//! [`wait_for_banner`] runs on a blocking thread, which [`super::Guest`]
//! arranges; every read and write has a timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("ssh: cannot connect to {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("ssh: handshake with {addr} failed")]
    Handshake {
        addr: SocketAddr,
        #[source]
        source: ssh2::Error,
    },
    #[error("ssh: the guest's host key is not the one made for this run (possible port mix-up)")]
    HostKeyMismatch,
    #[error("ssh: public-key authentication as root failed")]
    Auth(#[source] ssh2::Error),
    #[error("ssh: `{command}`")]
    Exec {
        command: String,
        #[source]
        source: ssh2::Error,
    },
    #[error("ssh: `{command}` did not finish within {timeout:?}")]
    Timeout { command: String, timeout: Duration },
    #[error("ssh: reading the output of `{command}`")]
    Read {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("ssh: upload to `{}`", remote.display())]
    Upload {
        remote: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A finished remote command.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecOutput {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// Waits until something on `addr` sends an SSH banner, probing with a
/// fresh TCP connection (each waiting up to what is left of `budget`). QEMU's user-mode network accepts
/// connections before the guest's network is up and then stalls them, so
/// the caller first waits for the guest's own signal (its console line after
/// starting dropbear); from then on a probe gets the banner or a reset at
/// once, and the banner is the proof that dropbear answers. Returns false
/// when `budget` runs out first.
pub async fn wait_for_banner(addr: SocketAddr, budget: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let start = tokio::time::Instant::now();
    while start.elapsed() < budget {
        let attempt = async {
            let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.ok()?;
            Some(&buf == b"SSH-")
        };
        // One connection waits as long as the budget allows: a guest sshd
        // that is slow to answer (OpenSSH re-executes itself per
        // connection) is not helped by more connections.
        if let Ok(Some(true)) = tokio::time::timeout(budget.saturating_sub(start.elapsed()), attempt).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

pub struct GuestSession {
    session: ssh2::Session,
}

impl GuestSession {
    /// Connects as root with `key`, checking the guest's host key blob.
    pub fn connect(addr: SocketAddr, key: &Path, host_key_blob: &[u8], timeout: Duration) -> Result<Self, SshError> {
        let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(|source| SshError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let mut session = ssh2::Session::new().map_err(|source| SshError::Handshake { addr, source })?;
        session.set_tcp_stream(tcp);
        session.set_timeout(timeout.as_millis().min(u32::MAX as u128) as u32);
        session.handshake().map_err(|source| SshError::Handshake { addr, source })?;
        match session.host_key() {
            Some((blob, _)) if blob == host_key_blob => {}
            _ => return Err(SshError::HostKeyMismatch),
        }
        session.userauth_pubkey_file("root", None, key, None).map_err(SshError::Auth)?;
        if !session.authenticated() {
            return Err(SshError::Auth(ssh2::Error::from_errno(ssh2::ErrorCode::Session(-18))));
        }
        // No libssh2 keepalive: in blocking mode its poll returns
        // LIBSSH2_ERROR_TIMEOUT after one keepalive interval of silence, which
        // fails any quiet command. A dead guest is noticed by the per-call
        // timeout and by QEMU/QMP instead.
        Ok(GuestSession { session })
    }

    /// Runs `command` in the guest's shell; gives up after `timeout`.
    pub fn exec(&self, command: &str, timeout: Duration) -> Result<ExecOutput, SshError> {
        let err = |source| SshError::Exec { command: command.to_string(), source };
        self.session.set_timeout(timeout.as_millis().clamp(1, u32::MAX as u128) as u32);
        let mut ch = self.session.channel_session().map_err(err)?;
        ch.exec(command).map_err(err)?;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let read_err = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::TimedOut {
                SshError::Timeout { command: command.to_string(), timeout }
            } else {
                SshError::Read { command: command.to_string(), source: e }
            }
        };
        ch.read_to_end(&mut stdout).map_err(read_err)?;
        ch.stderr().read_to_end(&mut stderr).map_err(read_err)?;
        ch.wait_close().map_err(err)?;
        let status = ch.exit_status().map_err(err)?;
        Ok(ExecOutput {
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    /// Writes `data` to `remote` in the guest with `mode`. The guest has no
    /// scp or sftp server, so the bytes go through `cat` on the exec channel's stdin.
    pub fn upload(&self, remote: &Path, data: &[u8], mode: u32, timeout: Duration) -> Result<(), SshError> {
        let io = |source| SshError::Upload { remote: remote.to_path_buf(), source };
        let ssh = |e: ssh2::Error| io(std::io::Error::other(e));
        let path = crate::util::tool::shell_quote(remote.as_os_str());
        let command = format!("cat > {path} && chmod {mode:o} {path}");
        self.session.set_timeout(timeout.as_millis().clamp(1, u32::MAX as u128) as u32);
        let mut ch = self.session.channel_session().map_err(ssh)?;
        ch.exec(&command).map_err(ssh)?;
        ch.write_all(data).map_err(io)?;
        ch.send_eof().map_err(ssh)?;
        let mut sink = Vec::new();
        ch.read_to_end(&mut sink).map_err(io)?;
        ch.stderr().read_to_end(&mut sink).map_err(io)?;
        ch.wait_close().map_err(ssh)?;
        match ch.exit_status().map_err(ssh)? {
            0 => Ok(()),
            st => Err(io(std::io::Error::other(format!(
                "`{command}` exited with {st}: {}",
                String::from_utf8_lossy(&sink).trim()
            )))),
        }
    }
}

/// Opens sessions to one guest as root: its address and the keys its sshd
/// knows.
#[derive(Debug, Clone)]
pub struct Connector {
    pub addr: SocketAddr,
    /// The client's private key file.
    pub client_key: PathBuf,
    /// The guest's host key as the SSH wire blob, checked on connect.
    pub host_key_blob: Vec<u8>,
}

impl Connector {
    /// A new session, within `timeout` per step. Blocking: call it on a
    /// blocking thread.
    pub fn connect(&self, timeout: Duration) -> Result<GuestSession, SshError> {
        // Right after the banner, dropbear may still be dropping the
        // probes' connections; a refused handshake is retried briefly.
        let (mut attempt, t) = (0, Instant::now());
        loop {
            attempt += 1;
            match GuestSession::connect(self.addr, &self.client_key, &self.host_key_blob, timeout) {
                Err(SshError::Handshake { .. }) if attempt < 5 => std::thread::sleep(Duration::from_millis(100)),
                r => {
                    tracing::debug!("SSH session to {} in {:.3} s ({attempt} attempts)", self.addr, t.elapsed().as_secs_f64());
                    return r;
                }
            }
        }
    }
}

/// A long-lived guest command on an exec channel of its own session, which
/// answers request lines with framed output (the guest sampler): the
/// command starts once, and each request costs a line written and a
/// record read, not a channel or a process.
pub struct GuestStream {
    // The channel before the session: a channel is freed before its session.
    channel: ssh2::Channel,
    session: GuestSession,
    command: String,
    pending: Vec<u8>,
}

impl GuestStream {
    /// Starts `command` on `session` and reads its output until `ready`
    /// takes what it waits for off the front (the command's first line),
    /// within `timeout`.
    pub fn start<T>(session: GuestSession, command: &str, timeout: Duration, ready: impl FnMut(&mut Vec<u8>) -> Option<T>) -> Result<(GuestStream, T), SshError> {
        let err = |source| SshError::Exec { command: command.to_string(), source };
        session.session.set_timeout(timeout.as_millis().clamp(1, u32::MAX as u128) as u32);
        let mut channel = session.session.channel_session().map_err(err)?;
        channel.exec(command).map_err(err)?;
        let mut s = GuestStream { channel, session, command: command.to_string(), pending: Vec::new() };
        let first = s.read_frame(timeout, ready)?;
        Ok((s, first))
    }

    /// Writes `request`, then reads until `take` takes a frame off the
    /// output, within `timeout` in all.
    pub fn request<T>(&mut self, request: &[u8], timeout: Duration, take: impl FnMut(&mut Vec<u8>) -> Option<T>) -> Result<T, SshError> {
        self.session.session.set_timeout(timeout.as_millis().clamp(1, u32::MAX as u128) as u32);
        self.channel.write_all(request).and_then(|_| self.channel.flush()).map_err(|e| self.read_err(e, timeout))?;
        self.read_frame(timeout, take)
    }

    /// Holds the channel while the command serves elsewhere (the guest
    /// sampler on its virtio-serial port, which only watches its stdin for
    /// the end): blocks until the command's output ends or `stop` is set
    /// (seen within 200 ms), and says why it returned. Output meanwhile is
    /// dropped. The stream is dropped here, which closes the channel and so
    /// ends the command. No SSH traffic while it waits.
    pub fn hold(mut self, stop: &std::sync::atomic::AtomicBool) -> String {
        let mut chunk = vec![0u8; 4096];
        self.session.session.set_timeout(200);
        loop {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return "stopped by the host".into();
            }
            match self.channel.read(&mut chunk) {
                Ok(0) => {
                    let mut why = String::new();
                    let _ = self.channel.stderr().read_to_string(&mut why);
                    let status = self.channel.exit_status().unwrap_or(-1);
                    return format!("the command ended (status {status}){}{}", if why.trim().is_empty() { "" } else { ": " }, why.trim());
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => return format!("its SSH channel failed: {e}"),
            }
        }
    }

    fn read_err(&self, e: std::io::Error, timeout: Duration) -> SshError {
        if e.kind() == std::io::ErrorKind::TimedOut {
            SshError::Timeout { command: self.command.clone(), timeout }
        } else {
            SshError::Read { command: self.command.clone(), source: e }
        }
    }

    fn read_frame<T>(&mut self, timeout: Duration, mut take: impl FnMut(&mut Vec<u8>) -> Option<T>) -> Result<T, SshError> {
        let deadline = Instant::now() + timeout;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Some(t) = take(&mut self.pending) {
                return Ok(t);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(SshError::Timeout { command: self.command.clone(), timeout });
            }
            self.session.session.set_timeout(left.as_millis().clamp(1, u32::MAX as u128) as u32);
            match self.channel.read(&mut chunk) {
                Ok(0) => {
                    // The command ended: its stderr says why.
                    let mut why = String::new();
                    let _ = self.channel.stderr().read_to_string(&mut why);
                    let status = self.channel.exit_status().unwrap_or(-1);
                    let msg = format!("the command ended (status {status}){}{}", if why.trim().is_empty() { "" } else { ": " }, why.trim());
                    return Err(SshError::Read { command: self.command.clone(), source: std::io::Error::new(std::io::ErrorKind::UnexpectedEof, msg) });
                }
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(self.read_err(e, timeout)),
            }
        }
    }
}
