//! The sampler: reads the guest's `/proc` sections every interval, stores
//! them as time series, watches for exhaustion and hangs, and reconnects
//! with backoff when the session drops. A sample is a request to the
//! guest sampler's stream (`monitor.sampler: stream`, one guest process
//! for the run, over the VM's virtio-serial port or else its SSH channel)
//! or a fresh SSH command (`exec`, and the fallback whenever the stream is
//! not there). It runs inside the guest's wait (a lost guest ends it
//! there); its SSH calls run on blocking threads through the [`Guest`].

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

use super::boot::SSH_TIMEOUT;
use super::events::{self, Event, Events};
use crate::sample::parse as sparse;
use crate::sample::store::SampleStore;
use crate::qemu::argv::SAMPLER_SOCKET;
use futures::future::BoxFuture;

use super::guest::{Capture, CapturePlan, GuestOps, PortPlan, StreamPlan};
use crate::vm::{Guest, GuestError, GuestStream, Session};

/// Why the sampler stopped.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SamplerEnd {
    /// The duration is over.
    Done,
    /// MemAvailable fell below the lab's headroom.
    Exhausted { mem_available: u64 },
    /// No sample for this many intervals in a row.
    Hung { gaps: u32 },
    /// The workload exited non-zero before its duration was over.
    WorkloadFailed { status: i32, secs: f64 },
}

pub(super) struct Sampler {
    pub(super) events: Events,
    pub(super) store: Arc<Mutex<SampleStore>>,
    pub(super) guest: Arc<dyn GuestOps>,
    /// Read the balloon's statistics over QMP too.
    pub(super) balloon: bool,
    /// How each sample is read (see [`Capture`]).
    pub(super) capture: Option<Box<dyn Capture>>,
    pub(super) gaps: Arc<Mutex<u64>>,
    /// End with `Exhausted` when MemAvailable falls below this.
    pub(super) headroom: Option<u64>,
    /// End with `Hung` after this many failed samples in a row (or two, when
    /// the guest has not answered for this many intervals).
    pub(super) hang_intervals: Option<u32>,
    /// When the current run of failed samples began (run time), if one is on.
    pub(super) gap_since: Option<(f64, u64)>,
    /// The verdict is decided: this sample is the last.
    pub(super) decided: CancellationToken,
}

/// The real guest's [`Capture`]: the guest sampler's stream when the lab
/// samples through it, else (and whenever the stream is not there) a fresh
/// SSH command on the sampling session, which is re-made with backoff when
/// it broke.
pub(crate) struct SshCapture {
    events: Events,
    guest: Guest,
    command: String,
    /// The session samples are read over; `None` after it broke.
    session: Option<Session>,
    /// Reconnects after a lost SSH session back off (see [`Backoff`]).
    backoff: Backoff,
    /// The guest sampler's stream, when the lab samples through it.
    stream: Option<Stream>,
}

impl SshCapture {
    pub(crate) fn new(guest: Guest, plan: CapturePlan, session: Session) -> SshCapture {
        SshCapture { events: plan.events, guest, command: plan.command, session: Some(session), backoff: Backoff::default(), stream: plan.stream.map(Stream::new) }
    }
}

impl Capture for SshCapture {
    fn take(&mut self, t: f64, interval: Duration) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move {
            match self.by_stream(t, interval).await {
                Some(text) => Ok(text),
                None => self.by_command(t, interval).await,
            }
        })
    }

    fn close(mut self: Box<Self>) {
        // Closing the channel ends the guest sampler (end of its stdin);
        // libssh2's teardown blocks, so not on a runtime worker (a port's
        // channel is dropped on its holding thread).
        match self.stream.as_mut().and_then(|s| s.conn.take()) {
            Some(Conn::Ssh(conn)) => drop(tokio::task::spawn_blocking(move || drop(conn))),
            Some(Conn::Port(link)) => drop(link),
            None => {}
        }
    }
}

/// The guest sampler (`labs/guest/sampler.c`): started over SSH at the
/// first sample, restarted with backoff when it breaks, given up after
/// [`Stream::MAX_START_FAILURES`] failed starts in a row. Its requests and
/// records go over the VM's virtio-serial port when there is one (no SSH
/// traffic per sample; the SSH channel that started it stays open and
/// idle, and its end is the sampler's end), else over that SSH channel.
/// A port that breaks while the sampler lives is not used again in the
/// run. While no sampler is there, samples are taken by the exec command,
/// so none is lost to it.
pub(crate) struct Stream {
    /// The guest command that starts it on its SSH channel.
    pub(super) command: String,
    /// The port: the command that starts it there and the host's way to it;
    /// `None` when the VM has no port or it is given up.
    port: Option<PortPlan>,
    /// Why the port is not used (the guest has none, it broke).
    port_lost: Option<String>,
    conn: Option<Conn>,
    started: bool,
    backoff: Backoff,
    failed_starts: u32,
    /// The last request's number; a record must carry it.
    seq: u64,
    /// The transports that carried records, in order of first use.
    pub(super) used: Arc<Mutex<Vec<&'static str>>>,
}


enum Conn {
    Ssh(GuestStream),
    Port(PortLink),
}

/// A sampler on the port: the socket, what came on it past the last
/// record, and its SSH channel held on a blocking thread ([`GuestStream::hold`])
/// that says when the sampler ends; dropping the link closes that channel.
struct PortLink {
    sock: UnixStream,
    pending: Vec<u8>,
    stop: Arc<AtomicBool>,
    ended: tokio::sync::oneshot::Receiver<String>,
}

impl Drop for PortLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Why a request on the port got no record.
enum PortFailure {
    /// The sampler ended (its SSH channel did): restart it, on the port.
    Ended(String),
    /// The port failed the sampler while it lives: SSH from now on.
    Broken(String),
}

impl Stream {
    const MAX_START_FAILURES: u32 = 3;

    pub(crate) fn new(plan: StreamPlan) -> Stream {
        Stream {
            command: plan.command,
            port: plan.port,
            port_lost: None,
            conn: None,
            started: false,
            backoff: Backoff::default(),
            failed_starts: 0,
            seq: 0,
            used: plan.used,
        }
    }

    fn used(&self, transport: &'static str) {
        let mut u = self.used.lock().unwrap();
        if !u.contains(&transport) {
            u.push(transport);
        }
    }
}

/// Connects to the port's socket in `dir` (through the directory's
/// descriptor: a unix socket path is limited to 108 bytes), made 0600 (the
/// run directory is 0700 already).
async fn connect_port(dir: &Path) -> std::io::Result<UnixStream> {
    use std::os::unix::fs::PermissionsExt;
    let handle = std::fs::File::open(dir)?;
    let _ = std::fs::set_permissions(dir.join(SAMPLER_SOCKET), std::fs::Permissions::from_mode(0o600));
    let short = PathBuf::from(format!("/proc/self/fd/{}/{SAMPLER_SOCKET}", handle.as_raw_fd()));
    match tokio::time::timeout(Duration::from_secs(5), UnixStream::connect(&short)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connecting timed out after 5 s")),
    }
}

/// One request on the port and its record, within `timeout`; ends early
/// when the sampler does.
async fn port_request<T>(link: &mut PortLink, seq: u64, timeout: Duration, mut take: impl FnMut(&mut Vec<u8>) -> Option<T>) -> Result<T, PortFailure> {
    let deadline = tokio::time::Instant::now() + timeout;
    let request = sparse::record_request(seq);
    match tokio::time::timeout_at(deadline, link.sock.write_all(request.as_bytes())).await {
        Err(_) => return Err(PortFailure::Broken(format!("the request was not taken within {timeout:?}"))),
        Ok(Err(e)) => return Err(PortFailure::Broken(format!("writing the request: {e}"))),
        Ok(Ok(())) => {}
    }
    loop {
        if let Some(v) = take(&mut link.pending) {
            return Ok(v);
        }
        // Read straight into the pending buffer: its capacity is kept
        // between samples, so a sample allocates nothing once it has grown.
        link.pending.reserve(64 * 1024);
        tokio::select! {
            biased;
            why = &mut link.ended => return Err(PortFailure::Ended(why.unwrap_or_else(|_| "its SSH channel was dropped".into()))),
            r = link.sock.read_buf(&mut link.pending) => match r {
                Ok(0) => return Err(PortFailure::Broken("QEMU closed the port's socket".into())),
                Ok(_) => {}
                Err(e) => return Err(PortFailure::Broken(format!("reading the port: {e}"))),
            },
            _ = tokio::time::sleep_until(deadline) => return Err(PortFailure::Broken(format!("no record within {timeout:?}"))),
        }
    }
}

/// The shortest silence (no sample answered) that counts as a hang when
/// failed samples come slowly.
const HANG_MIN_SILENCE: Duration = Duration::from_secs(30);

/// Exponential backoff for SSH reconnects: the first retry at the next
/// sample, then waits of 0.5, 1, 2, 4, 8 s at most between attempts, so a
/// guest whose sshd is gone is not hammered and one that comes back is
/// found within 8 s. Pure: the caller passes the time.
#[derive(Debug, Default, Clone)]
pub struct Backoff {
    failures: u32,
    next: Option<f64>,
}

impl Backoff {
    pub const MAX_WAIT: f64 = 8.0;

    /// May a reconnect be tried at run time `now`?
    pub fn ready(&self, now: f64) -> bool {
        self.next.is_none_or(|n| now >= n)
    }

    /// A reconnect failed at `now`; returns the wait before the next one.
    pub fn failed(&mut self, now: f64) -> f64 {
        let wait = (0.5 * 2f64.powi(self.failures as i32)).min(Self::MAX_WAIT);
        self.failures = self.failures.saturating_add(1);
        self.next = Some(now + wait);
        wait
    }

    pub fn succeeded(&mut self) {
        *self = Backoff::default();
    }
}

impl Sampler {
    /// Samples at `interval` from now until `duration` has passed (at least
    /// once, and once more at the end). A failed sample is recorded as a gap
    /// and the session is re-made at the next tick; the run goes on.
    pub(super) async fn run(mut self, interval: Duration, duration: Duration) -> SamplerEnd {
        let end = self.run_until(interval, duration).await;
        if let Some(c) = self.capture.take() {
            c.close();
        }
        end
    }

    async fn run_until(&mut self, interval: Duration, duration: Duration) -> SamplerEnd {
        let start = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut index = 0u64;
        let mut failed_in_a_row = 0u32;
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tick.tick().await;
            let last = start.elapsed() >= duration || self.decided.is_cancelled();
            // In a dump lab a sample may not outlast the hang window: a
            // guest thrashing under memory pressure can hold one (and its
            // reconnect) for minutes.
            let sampled = match self.hang_intervals {
                Some(n) => {
                    let window = (interval * n).max(HANG_MIN_SILENCE);
                    match tokio::time::timeout_at(last_ok + window, self.sample(index, interval)).await {
                        Ok(s) => s,
                        Err(_) => {
                            let gaps = (last_ok.elapsed().as_secs_f64() / interval.as_secs_f64()).floor() as u32;
                            return SamplerEnd::Hung { gaps: gaps.max(failed_in_a_row + 1) };
                        }
                    }
                }
                None => self.sample(index, interval).await,
            };
            match sampled {
                Some(mem_available) => {
                    failed_in_a_row = 0;
                    last_ok = tokio::time::Instant::now();
                    if let (Some(h), Some(avail)) = (self.headroom, mem_available) {
                        if avail < h {
                            return SamplerEnd::Exhausted { mem_available: avail };
                        }
                    }
                }
                None => {
                    failed_in_a_row += 1;
                    if let Some(n) = self.hang_intervals {
                        // n failures in a row, or (a guest thrashing under memory
                        // pressure takes a timeout and a reconnect per failure)
                        // two failures and no sample for n intervals, 30 s at least.
                        let silent = last_ok.elapsed();
                        let long = silent >= (interval * n).max(HANG_MIN_SILENCE);
                        if failed_in_a_row >= n || (failed_in_a_row >= 2 && long) {
                            let gaps = (silent.as_secs_f64() / interval.as_secs_f64()).floor() as u32;
                            return SamplerEnd::Hung { gaps: gaps.max(failed_in_a_row) };
                        }
                    }
                }
            }
            index += 1;
            if last {
                return SamplerEnd::Done;
            }
        }
    }

    /// Takes one sample; `Some(MemAvailable)` when the guest answered.
    async fn sample(&mut self, index: u64, interval: Duration) -> Option<Option<u64>> {
        let t = self.events.now();
        let _ = self.store.lock().unwrap().append_self(t);
        if self.balloon {
            if let Ok(stats) = self.guest.balloon_stats().await {
                let _ = self.store.lock().unwrap().append_balloon(t, &stats);
            }
        }
        let taken = match self.capture.as_mut() {
            Some(c) => c.take(t, interval).await,
            None => Err("no capture: the sampling is over".into()),
        };
        match taken {
            Ok(text) => self.record(index, t, &text),
            Err(reason) => {
                self.gap(t, reason);
                None
            }
        }
    }
}

impl SshCapture {
    /// A record from the guest sampler, or `None` when it is not there
    /// (then the caller samples by command).
    async fn by_stream(&mut self, t: f64, interval: Duration) -> Option<String> {
        let st = self.stream.as_mut()?;
        // A record is ready within milliseconds; a slow one means a
        // stalled stream, and the fallback still has time in the interval.
        let timeout = (interval * 2).max(Duration::from_secs(5));
        if st.conn.is_none() {
            if st.failed_starts >= Stream::MAX_START_FAILURES || !st.backoff.ready(t) {
                return None;
            }
            let t0 = std::time::Instant::now();
            // The port's host end is open before the sampler starts, so the
            // guest sees it open from the first request on.
            let mut sock = None;
            if let Some(plan) = &st.port {
                match connect_port(&plan.dir).await {
                    Ok(s) => sock = Some(s),
                    Err(e) => {
                        st.port_lost = Some(format!("host-socket: {e}"));
                        st.port = None;
                    }
                }
            }
            let command = match (&sock, &st.port) {
                (Some(_), Some(plan)) => plan.command.clone(),
                _ => st.command.clone(),
            };
            match self.guest.open_stream(&command, SSH_TIMEOUT.max(timeout), sparse::take_ready).await {
                Ok((conn, ready)) => {
                    st.backoff.succeeded();
                    st.failed_starts = 0;
                    let word = |k: &str| ready.split_whitespace().find_map(|w| w.strip_prefix(k)).map(str::to_string);
                    let shrink = word("shrink=").and_then(|n| n.parse().ok());
                    let transport = match sock {
                        Some(sock) if word("transport=").as_deref() == Some("port") => {
                            let stop = Arc::new(AtomicBool::new(false));
                            let (tx, ended) = tokio::sync::oneshot::channel();
                            let holding = stop.clone();
                            tokio::task::spawn_blocking(move || {
                                let _ = tx.send(conn.hold(&holding));
                            });
                            st.conn = Some(Conn::Port(PortLink { sock, pending: Vec::new(), stop, ended }));
                            "port"
                        }
                        sock => {
                            if sock.is_some() {
                                // The guest has no such port (a kernel
                                // without virtio_console): not asked again.
                                st.port_lost = Some(word("port=").unwrap_or_else(|| "the guest sampler did not take the port".into()));
                                st.port = None;
                            }
                            st.conn = Some(Conn::Ssh(conn));
                            "ssh"
                        }
                    };
                    st.used(transport);
                    let port = if transport == "ssh" { st.port_lost.clone() } else { None };
                    self.events.emit(Event::SamplerStarted { restart: st.started, shrink, secs: events::round3(t0.elapsed().as_secs_f64()), transport: transport.into(), port });
                    st.started = true;
                }
                Err(e) => {
                    st.failed_starts += 1;
                    let wait = st.backoff.failed(self.events.now());
                    let next = if st.failed_starts >= Stream::MAX_START_FAILURES {
                        format!("{} failed starts, sampling by command from now on", st.failed_starts)
                    } else {
                        format!("next try in {wait:.1} s")
                    };
                    self.events.emit(Event::SamplerFallback { sample_t: events::round3(t), reason: format!("cannot start it: {} ({next})", crate::util::error_chain(&e)) });
                    return None;
                }
            }
        }
        st.seq += 1;
        let seq = st.seq;
        // A late record of an earlier, timed-out request is skipped; any
        // other number means the stream is not what was asked.
        let take = move |buf: &mut Vec<u8>| loop {
            match sparse::take_record(buf) {
                Some(r) if r.seq == Some(seq) => return Some(Ok(r.text)),
                Some(r) if r.seq.is_some_and(|s| s < seq) => continue,
                Some(r) => return Some(Err(r.seq)),
                None => return None,
            }
        };
        let reason = match st.conn.take()? {
            Conn::Ssh(conn) => match self.guest.stream_request(conn, sparse::record_request(seq).into_bytes(), timeout, take).await {
                Ok((conn, Ok(text))) => {
                    st.conn = Some(Conn::Ssh(conn));
                    return Some(text);
                }
                Ok((conn, Err(got))) => {
                    tokio::task::spawn_blocking(move || drop(conn));
                    format!("record {got:?} came for request {seq}")
                }
                Err(e) => crate::util::error_chain(&e),
            },
            Conn::Port(mut link) => match port_request(&mut link, seq, timeout, take).await {
                Ok(Ok(text)) => {
                    st.conn = Some(Conn::Port(link));
                    return Some(text);
                }
                // The link is dropped: its SSH channel closes, which ends
                // the guest sampler; restarted over SSH.
                Ok(Err(got)) => {
                    st.port = None;
                    st.port_lost = Some(format!("record {got:?} came for request {seq} on the port"));
                    format!("on the port, record {got:?} came for request {seq} (over SSH from now on)")
                }
                Err(PortFailure::Broken(why)) => {
                    st.port = None;
                    st.port_lost = Some(format!("the port broke: {why}"));
                    format!("on the port: {why} (over SSH from now on)")
                }
                Err(PortFailure::Ended(why)) => format!("the guest sampler on the port ended: {why}"),
            },
        };
        // Restarted at the next sample, with backoff if it keeps breaking.
        st.backoff.failed(t);
        self.events.emit(Event::SamplerFallback { sample_t: events::round3(t), reason });
        None
    }

    /// A capture by a fresh SSH command on the sampling session, which is
    /// re-made when it broke; `None` (a gap recorded) when the guest did
    /// not answer.
    async fn by_command(&mut self, t: f64, interval: Duration) -> Result<String, String> {
        let session = match self.session.clone() {
            Some(s) => s,
            None if !self.backoff.ready(t) => return Err("reconnect: backing off".into()),
            None => match self.guest.reconnect(SSH_TIMEOUT).await {
                Ok(s) => {
                    self.backoff.succeeded();
                    self.session = Some(s.clone());
                    s
                }
                Err(e) => {
                    let wait = self.backoff.failed(self.events.now());
                    return Err(format!("reconnect: {} (next try in {wait:.1} s)", crate::util::error_chain(&e)));
                }
            },
        };
        let timeout = (interval * 3).max(Duration::from_secs(10));
        match self.guest.probe(&session, &self.command, timeout).await {
            Ok(out) if out.success() => Ok(out.stdout),
            Ok(out) => Err(format!("capture exited {}: {}", out.status, out.stderr.trim())),
            Err(e @ GuestError::Ssh(_)) => {
                self.session = None;
                Err(e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }

}

impl Sampler {
    /// Parses and stores one capture; `Some(MemAvailable)` when it parsed.
    fn record(&mut self, index: u64, t: f64, text: &str) -> Option<Option<u64>> {
        match sparse::parse_capture(text) {
            Ok(c) => {
                let written = self.store.lock().unwrap().append_capture(t, &c);
                if let Err(e) = written {
                    self.gap(t, format!("writing samples: {e}"));
                    return None;
                }
                let m = c.meminfo.as_ref();
                if let Some((since, gaps)) = self.gap_since.take() {
                    self.events.emit(Event::SamplingResumed { gaps, secs: events::round3(t - since) });
                }
                self.events.emit(Event::Sample {
                    index,
                    sample_t: events::round3(t),
                    uptime: c.uptime_s,
                    mem_available: m.and_then(|m| m.get("MemAvailable")),
                    slab: m.and_then(|m| m.get("Slab")),
                    s_unreclaim: m.and_then(|m| m.get("SUnreclaim")),
                    nr_dentry: c.dentry.map(|d| d.nr_dentry),
                    caches: c.slabinfo.as_ref().map(|s| s.len()),
                });
                Some(m.and_then(|m| m.get("MemAvailable")))
            }
            Err(e) => {
                self.gap(t, format!("unparsable capture: {e}"));
                None
            }
        }
    }

    fn gap(&mut self, t: f64, reason: String) {
        *self.gaps.lock().unwrap() += 1;
        let (since, n) = self.gap_since.unwrap_or((t, 0));
        self.gap_since = Some((since, n + 1));
        self.events.emit(Event::SampleFailed { sample_t: events::round3(t), reason });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_back_off_up_to_eight_seconds_and_reset() {
        let mut b = Backoff::default();
        assert!(b.ready(0.0));
        let waits: Vec<f64> = (0..7).map(|i| b.failed(i as f64 * 10.0)).collect();
        assert_eq!(waits, [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]);
        assert!(!b.ready(61.0) && b.ready(68.0));
        b.succeeded();
        assert!(b.ready(0.0));
        assert_eq!(b.failed(0.0), 0.5);
    }
}
