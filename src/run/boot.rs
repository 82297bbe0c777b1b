//! How the run's guest comes up: restored from the cached snapshot of its
//! kernel, image and VM shape, or booted cold (with a deadline and one
//! retry, under TCG after a KVM failure) and saved as that snapshot; then
//! the SSH session the run drives it with. The snapshot entry itself is
//! `crate::snapshot`; saving a running guest is `run::snapshot`.

use super::*;

/// A guest answering over SSH, however it came up.
pub(super) struct Ready {
    pub(super) booted: Booted,
    /// The keys its sshd knows: this run's, or the snapshot's.
    pub(super) keys: RunKeys,
    pub(super) control: Arc<GuestSession>,
    /// The lab's payload is not in the guest yet (a snapshot's guest boots
    /// from the base image alone).
    pub(super) upload_payload: bool,
}

/// What a cold boot needs besides the run and the VM.
pub(super) struct Cold<'a> {
    pub(super) kernel: &'a Kernel,
    /// The kernel image booted, as a snapshot's key names it.
    pub(super) kernel_image: String,
    pub(super) image: &'a image::BuiltImage,
    pub(super) qemu_version: &'a str,
    pub(super) payload: &'a Tree,
    pub(super) requested: accel::Requested,
    /// Save the fresh guest as the snapshot with this key.
    pub(super) save: Option<&'a str>,
    /// Why a restore was given up before this boot.
    pub(super) fallback: Option<String>,
}

/// Boots the VM from its kernel with this run's own keys (once more after a
/// hang, under TCG after a KVM failure). When `save` is set, the fresh
/// guest's state is saved before anything happens in it, and published once
/// a first command has worked in the guest that goes on running.
pub(super) async fn boot_cold(ctx: &mut Ctx, spec: &mut VmSpec, choice: &mut AccelChoice, cold: Cold<'_>) -> Result<Ready, RunError> {
    let Cold { kernel, kernel_image, image, qemu_version, payload, requested, save, fallback } = cold;
    let keys = RunKeys::generate(&ctx.dir.join("keys"))?;
    // A guest that becomes a snapshot boots without the lab's payload (it
    // is uploaded afterwards, as on a restored guest), so that one snapshot
    // serves every lab with this kernel and VM shape.
    write_initrd(ctx, image, &keys, if save.is_some() { None } else { Some(payload) })?;
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
        // A fresh fatal flag per attempt: events of a QEMU torn down before
        // this one go to the old one.
        let (fatal_tx, fatal) = watch::channel(None);
        (ctx.fatal_tx, ctx.fatal) = (fatal_tx, fatal);
        match boot(ctx, spec, kernel).await {
            Err(BootFailure::KvmEmulation(console)) if requested == accel::Requested::Auto => {
                // KVM that cannot run this kernel: say so and boot again under TCG.
                tracing::warn!("KVM internal error booting {}; retrying with TCG", kernel.name);
                let _ = console;
                teardown(ctx).await;
                // Later runs of this kernel go to TCG at once (and find the
                // snapshot this boot saves under TCG's key).
                let marker = accel::kvm_failed_marker(&ctx.cache, &kernel.vmlinuz_sha256);
                let written = marker.parent().map_or(Ok(()), crate::util::fsx::private_dir).and_then(|()| crate::util::fsx::write_atomic(&marker, format!("{}\n", events::wall_clock()).as_bytes()));
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
                teardown(ctx).await;
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
    let mut staged = None;
    let mut save_error = None;
    if let Some(key) = save {
        match crate::snapshot::Staged::new(&ctx.cache) {
            Err(e) => save_error = Some(format!("cannot make a scratch directory in the cache: {e}")),
            Ok(stage) => {
                let qmp = ctx.qmp.clone().ok_or_else(|| RunError::SnapshotSave("no QMP connection after boot".into()))?;
                match snapshot::save(&qmp, &ctx.dir.path, &stage.state()).await {
                    Ok(secs) => {
                        // The boot that later runs restore, for their console.log.
                        if let Err(e) = stage.keep_console(&std::fs::read(ctx.dir.join(CONSOLE)).unwrap_or_default()) {
                            tracing::debug!("the saved boot's console is not kept: {e}");
                        }
                        staged = Some((stage, secs))
                    }
                    Err(snapshot::SaveError::Paused(e)) => return Err(RunError::SnapshotSave(e)),
                    Err(snapshot::SaveError::NotSaved(e)) => save_error = Some(e),
                }
            }
        }
        if let Some(reason) = &save_error {
            ctx.events.emit(Event::SnapshotSaveFailed { key: key.to_string(), reason: reason.clone() });
        }
    }

    let addr: SocketAddr = ([127, 0, 0, 1], spec.ssh_port).into();
    let connect = connector(addr, keys.clone(), kernel.name.clone(), SSH_TIMEOUT);
    let control = Arc::new(blocking(connect).await??);
    let probe = control.clone();
    blocking(move || probe.exec("true", Duration::from_secs(10)))
        .await?
        .map_err(|source| RunError::Ssh { kernel: kernel.name.clone(), source })?;
    ctx.timings.first_command = boot.started.elapsed().as_secs_f64();

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
    match (save, staged) {
        (Some(_), Some((stage, secs))) => {
            // The key as looked up, unless a KVM failure moved this boot to TCG.
            let inputs = KeyInputs::new(spec, kernel_image, &image.sha256, qemu_version);
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
                        evict_snapshots(ctx, key).await?;
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
        (Some(_), None) => manifest.reason = format!("{after}; saving the snapshot failed: {}", save_error.unwrap_or_default()),
        (None, _) => {
            // The lab cannot use snapshots: `allowed` said why already.
            if let Some(old) = ctx.manifest.boot.as_ref().and_then(|b| b.snapshot.clone()) {
                manifest = old;
            }
        }
    }
    set_snapshot(ctx, manifest);
    Ok(Ready { booted: boot, keys, control, upload_payload: save.is_some() })
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
/// [`snapshot::RESTORE_TIMEOUT`] or so.
pub(super) async fn restore(ctx: &mut Ctx, spec: &mut VmSpec, kernel: &Kernel, image: &image::BuiltImage, entry: &crate::snapshot::Entry, choice: &AccelChoice) -> Result<Ready, RestoreFailure> {
    use RestoreFailure::{Failed, Run};
    let keys = entry.keys().map_err(Failed)?;
    // The initrd the saved guest booted from: the same image and keys, so
    // even what QEMU reads from it at start is what it was.
    write_initrd(ctx, image, &keys, None).map_err(Run)?;
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
    let (fatal_tx, fatal) = watch::channel(None);
    (ctx.fatal_tx, ctx.fatal) = (fatal_tx, fatal);
    let booted = boot(ctx, spec, kernel).await;
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
    let addr: SocketAddr = ([127, 0, 0, 1], spec.ssh_port).into();
    let left = snapshot::RESTORE_TIMEOUT.saturating_sub(booted.started.elapsed()).max(Duration::from_secs(2));
    let connect = connector(addr, keys.clone(), kernel.name.clone(), left);
    let control = match blocking(connect).await.map_err(Run)? {
        Ok(s) => Arc::new(s),
        Err(e) => return Err(Failed(format!("SSH to the restored guest failed: {}", e.chain()))),
    };
    let mut booted = booted;
    booted.secs = booted.started.elapsed().as_secs_f64();
    tracing::debug!("restore: running {running:.3} s, SSH session {:.3} s after QEMU start", booted.secs);
    ctx.timings.boot_to_ssh = booted.secs;
    ctx.events.emit(Event::SshReady { secs_since_qemu_start: booted.secs });
    let (c, cmd) = (control.clone(), snapshot::after_restore_command());
    match blocking(move || c.exec(&cmd, Duration::from_secs(5))).await.map_err(Run)? {
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
    Ok(Ready { booted, keys, control, upload_payload: true })
}

/// A snapshot that could not be used: warn, stop its QEMU (keeping its logs
/// as `console-restore.log` and `qemu-restore.log`), and remove the entry
/// so the cold boot that follows saves a good one. Returns the reason.
pub(super) async fn give_up_restore(ctx: &mut Ctx, key: &str, expected: Option<&crate::snapshot::Meta>, reason: String) -> String {
    ctx.events.emit(Event::SnapshotFallback { key: key.to_string(), reason: reason.clone() });
    teardown(ctx).await;
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

/// Keeps the cache's snapshots under their cap after `keep` was published:
/// the least recently used go, each with an event. A failure to evict is a
/// warning in the log, not the run's failure.
pub(super) async fn evict_snapshots(ctx: &mut Ctx, keep: &str) -> Result<(), RunError> {
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
pub(super) fn write_initrd(ctx: &Ctx, image: &image::BuiltImage, keys: &RunKeys, payload: Option<&Tree>) -> Result<(), RunError> {
    let mut bytes = std::fs::read(&image.path).map_err(|source| RunError::Write { path: image.path.clone(), source })?;
    bytes.extend_from_slice(&keys.overlay()?.to_cpio());
    if let Some(p) = payload.filter(|p| !p.is_empty()) {
        bytes.extend_from_slice(&p.to_cpio());
    }
    write(&ctx.dir.join("initrd.cpio"), &bytes)
}

/// Opens SSH sessions to the guest as root with `keys`.
pub(super) fn connector(addr: SocketAddr, keys: RunKeys, kernel: String, timeout: Duration) -> impl Fn() -> Result<GuestSession, RunError> + Clone + Send + Sync + 'static {
    move || {
        // Right after the banner, dropbear may still be dropping the
        // probes' connections; a refused handshake is retried briefly.
        let (mut attempt, t) = (0, Instant::now());
        loop {
            attempt += 1;
            match GuestSession::connect(addr, &keys.client_key, &keys.host_key_blob, timeout) {
                Err(crate::guest::SshError::Handshake { .. }) if attempt < 5 => std::thread::sleep(Duration::from_millis(100)),
                r => {
                    tracing::debug!("SSH session to {addr} in {:.3} s ({attempt} attempts)", t.elapsed().as_secs_f64());
                    return r.map_err(|source| RunError::Ssh { kernel: kernel.clone(), source });
                }
            }
        }
    }
}

/// Puts the payload's files in the guest at their paths, with their modes.
pub(super) fn upload(session: &GuestSession, payload: &Tree) -> Result<(), crate::guest::SshError> {
    let dirs: std::collections::BTreeSet<String> =
        payload.files().filter_map(|(p, _, _)| Path::new(&p).parent().map(|d| tool::shell_quote(d.as_os_str()))).collect();
    let mkdir = format!("mkdir -p {}", dirs.into_iter().collect::<Vec<_>>().join(" "));
    let out = session.exec(&mkdir, Duration::from_secs(30))?;
    if !out.success() {
        return Err(crate::guest::SshError::Upload { remote: "/".into(), source: std::io::Error::other(format!("`{mkdir}` exited {}: {}", out.status, out.stderr.trim())) });
    }
    for (path, mode, data) in payload.files() {
        session.upload(Path::new(&path), data, mode, Duration::from_secs(60))?;
    }
    Ok(())
}

pub(super) struct Booted {
    /// QEMU start → SSH banner.
    secs: f64,
    /// Restored from a snapshot: QEMU start → the VM running.
    restored: Option<f64>,
    /// QEMU start → the guest's /init running (the boot floor).
    pub(super) init: Option<f64>,
    pub(super) started: Instant,
}

/// Lines the guest's /init prints (images/minimal/init): first thing, and
/// after starting dropbear.
pub(super) const INIT_MARKER: &[u8] = b"kernlab: init running";
pub(super) const SSHD_MARKER: &[u8] = b"kernlab: sshd started";

#[derive(Default)]
pub(super) struct ConsoleMarks {
    init: Option<f64>,
    sshd: bool,
}

pub(super) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

pub(super) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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

/// Starts QEMU (retrying on a port taken by someone else), connects QMP, and
/// waits for the guest's SSH banner within the lab's boot timeout, watching
/// QEMU and QMP the whole time.
pub(super) async fn boot(ctx: &mut Ctx, spec: &mut VmSpec, kernel: &Kernel) -> Result<Booted, BootFailure> {
    let console = ctx.dir.join(CONSOLE);
    let boot_fail = |ctx: &Ctx, reason: String| {
        // A panic is the cause, whatever QEMU did next (reset, exit, stop).
        let reason = match console_panic(&fsx::tail_lines(&ctx.dir.join(CONSOLE), 400)) {
            Some(line) => format!("the kernel panicked during boot: {line} (then: {reason})"),
            None => reason,
        };
        let mut tail = fsx::tail_lines(&ctx.dir.join(CONSOLE), 30);
        let qemu_log = fsx::tail_lines(&ctx.dir.join("qemu.log"), 10);
        if !qemu_log.is_empty() {
            tail.push_str(&format!("\n--- QEMU ---\n{qemu_log}"));
        }
        BootFailure::Other(RunError::Boot { kernel: kernel.name.clone(), reason, console: tail })
    };
    for attempt in 1..=PORT_ATTEMPTS {
        spec.ssh_port = qemu::free_port().map_err(|source| RunError::Write { path: "127.0.0.1:0".into(), source })?;
        let argv = qemu::argv(spec);
        ctx.manifest.qemu_argv = argv.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        ctx.manifest.ssh_port = Some(spec.ssh_port);
        write(&ctx.dir.join("manifest.json"), &serde_json::to_vec_pretty(&ctx.manifest).unwrap_or_default())?;
        let _ = std::fs::remove_file(ctx.dir.join(QMP_SOCKET));
        let started = Instant::now();
        let mut q = Qemu::spawn(&argv, &ctx.dir.path, &ctx.dir.join("qemu.log")).map_err(RunError::from)?;
        ctx.events.emit(Event::QemuStarted { pid: q.pid(), ssh_port: spec.ssh_port, attempt });

        // QMP: connect while watching that QEMU is still there.
        let (tx, rx) = mpsc::unbounded_channel();
        let connect = Qmp::connect(&ctx.dir.path, QMP_SOCKET, Duration::from_secs(10), tx);
        tokio::pin!(connect);
        let qmp = loop {
            tokio::select! {
                r = &mut connect => break Some(r),
                _ = tokio::time::sleep(Duration::from_millis(25)) => {
                    if q.try_exited().is_some() { break None; }
                }
            }
        };
        let qmp = match qmp {
            Some(Ok(qmp)) => qmp,
            other => {
                // A QMP failure is often QEMU dying under it (a bad kernel
                // makes it exit right after opening the socket): give it a
                // moment to exit, and report the exit, which says more.
                let status = q.wait_exit(Duration::from_millis(1500)).await;
                if status.is_none() {
                    if let Some(Err(e)) = other {
                        ctx.qemu = Some(q);
                        return Err(RunError::Qmp(e).into());
                    }
                }
                let log = q.log_tail(10);
                if log.contains("host forwarding rule") && attempt < PORT_ATTEMPTS {
                    tracing::info!("port {} was taken; retrying", spec.ssh_port);
                    continue;
                }
                return Err(boot_fail(ctx, format!("QEMU exited ({}) before the guest was ready", fmt_status(status))));
            }
        };
        ctx.qemu = Some(q);
        tracing::debug!("QMP connected {:.3} s after QEMU start", started.elapsed().as_secs_f64());
        let qmp = Arc::new(qmp);
        ctx.qmp = Some(qmp.clone());
        spawn_router(rx, ctx.events.clone(), ctx.fatal_tx.clone(), ctx.qmp_seen.clone());

        // The guest reports progress on its console: /init running (the
        // boot floor) and dropbear started (from then on probing the SSH
        // port cannot hang in QEMU's user-mode network).
        let marks = Arc::new(Mutex::new(ConsoleMarks::default()));
        let watcher = {
            let (console, marks) = (console.clone(), marks.clone());
            tokio::spawn(async move {
                loop {
                    let text = std::fs::read(&console).unwrap_or_default();
                    let done = {
                        let mut m = marks.lock().unwrap();
                        if m.init.is_none() && contains(&text, INIT_MARKER) {
                            m.init = Some(started.elapsed().as_secs_f64());
                        }
                        m.sshd = contains(&text, SSHD_MARKER);
                        m.sshd
                    };
                    if done {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        let _abort_watcher = AbortOnDrop(watcher);
        // A restored guest prints nothing: it is up when QEMU has loaded the
        // state and runs it, and its sshd (already listening) answers.
        let restoring = spec.incoming.is_some();
        let timeout = if restoring { snapshot::RESTORE_TIMEOUT } else { ctx.lab.vm.boot_timeout };
        let deadline = started + timeout;
        let addr: SocketAddr = ([127, 0, 0, 1], spec.ssh_port).into();
        loop {
            // A guest that printed something and then died without a panic
            // may have met a rare race; one that never printed (QEMU refused
            // the kernel) or that panicked will do the same a second time,
            // and its panic is the finding.
            let retry = |e: BootFailure, console: &Path| match e {
                BootFailure::Other(e) if worth_a_retry(&std::fs::read(console).unwrap_or_default()) => BootFailure::Retry(e),
                e => e,
            };
            if let Some(st) = ctx.qemu.as_mut().and_then(|q| q.try_exited()) {
                return Err(retry(boot_fail(ctx, format!("QEMU exited ({}) before the guest was ready", fmt_status(Some(st)))), &console));
            }
            let fatal = ctx.fatal.borrow().clone();
            if let Some(f) = fatal {
                return Err(retry(boot_fail(ctx, f), &console));
            }
            if spec.accel == Accel::Kvm {
                if let Ok(s) = qmp.status().await {
                    if s == "internal-error" {
                        return Err(BootFailure::KvmEmulation(fsx::tail_lines(&console, 30)));
                    }
                }
            }
            if Instant::now() >= deadline {
                let reason = match restoring {
                    false => format!("no SSH banner within the boot timeout of {timeout:?}"),
                    true => format!("the VM was not running within {timeout:?} of QEMU start (still loading the state?)"),
                };
                return Err(match boot_fail(ctx, reason) {
                    BootFailure::Other(e) => BootFailure::Retry(e),
                    other => other,
                });
            }
            if ctx.cancel.is_cancelled() {
                return Err(RunError::Interrupted("signal".into()).into());
            }
            if restoring {
                match qmp.status().await.as_deref() {
                    // Its sshd is listening already: the caller connects at
                    // once (a banner probe first would cost a second sshd
                    // process, which TCG runs slowly until its code is
                    // translated again).
                    Ok("running") => {
                        let secs = started.elapsed().as_secs_f64();
                        return Ok(Booted { secs, restored: Some(secs), init: None, started });
                    }
                    // Still loading the state (a failed load makes QEMU exit).
                    Ok("inmigrate" | "prelaunch") | Err(_) => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    Ok(other) => return Err(boot_fail(ctx, format!("the restored VM is `{other}`, not running"))),
                }
            } else if !restoring && !marks.lock().unwrap().sshd {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            if wait_for_banner(addr, Duration::from_millis(300)).await {
                let init = marks.lock().unwrap().init;
                return Ok(Booted { secs: started.elapsed().as_secs_f64(), restored: None, init, started });
            }
        }
    }
    Err(boot_fail(ctx, format!("no free loopback port after {PORT_ATTEMPTS} attempts")))
}

/// Logs QMP events and raises the run's fatal flag on a guest panic or a
/// QEMU shutdown, which ends any wait on the guest at once.
pub(super) fn spawn_router(
    mut rx: mpsc::UnboundedReceiver<QmpEvent>,
    events: Events,
    fatal: watch::Sender<Option<String>>,
    seen: Arc<Mutex<Vec<String>>>,
) {
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            seen.lock().unwrap().push(ev.name.clone());
            let reason = match ev.name.as_str() {
                "GUEST_PANICKED" => Some("the guest kernel panicked (QMP GUEST_PANICKED)".to_string()),
                "GUEST_CRASHLOADED" => Some("the guest kernel panicked into kdump (QMP GUEST_CRASHLOADED)".to_string()),
                "SHUTDOWN" => Some(format!("QEMU shut down (QMP SHUTDOWN {})", ev.data)),
                _ => None,
            };
            events.emit(Event::Qmp { name: ev.name, data: ev.data });
            if let Some(r) = reason {
                raise(&fatal, r);
            }
        }
        // The event stream ends when QEMU's QMP socket closes: QEMU is gone
        // (killed, crashed) unless the run already quit it.
        raise(&fatal, "QEMU's QMP connection closed: QEMU exited or was killed".to_string());
    });
}

/// Sets the fatal flag unless an earlier reason is already there.
pub(super) fn raise(fatal: &watch::Sender<Option<String>>, reason: String) {
    fatal.send_if_modified(|f| {
        if f.is_none() {
            *f = Some(reason);
            true
        } else {
            false
        }
    });
}

