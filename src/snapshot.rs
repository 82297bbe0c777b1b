//! Snapshots of a booted guest in the cache, so later runs restore it
//! instead of booting. An entry is QEMU's saved state of a guest that has
//! just come up (SSH answering, before any setup, module or workload), the
//! SSH keys that live inside that state, and what it was made from. It is
//! found by a key over everything that shapes the state, so any change of
//! input misses and the run boots cold. This module owns the key, the
//! layout and an entry's life in the cache; the run saves and restores
//! (`run::restore`, with `vm::state` saving the VM's state).
//!
//! Layout, every directory 0700 and every file 0600:
//!
//! ```text
//! snapshots/<key>/state                     QEMU's migration stream
//! snapshots/<key>/keys/client_ed25519       the SSH client key the guest authorizes
//! snapshots/<key>/keys/guest_host_ed25519   the guest's dropbear host key
//! snapshots/<key>/meta.json                 the key's inputs, the public keys, sizes
//! snapshots/<key>/console.log               the guest's console up to the save
//! snapshots/<key>/root.qcow2                a disk guest's root overlay at the save
//! ```
//!
//! The guest's host key and its authorized key are in its memory, so a run
//! that restores an entry uses the entry's keys: keys are per snapshot and
//! private to the cache, not per run.

use std::fs;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cache::{Cache, Lock};
use crate::image::RunKeys;
use crate::qemu::VmSpec;
use crate::util::fsx;

/// Bumped whenever what is saved, or how it is restored, changes in a way
/// the other inputs do not show.
pub const FORMAT: u32 = 1;

/// A disk guest's root overlay in an entry.
const DISK: &str = "root.qcow2";

/// Everything that shapes a saved guest, hashed into its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInputs {
    pub format: u32,
    /// The kernel image booted, e.g. `vmlinux (extraction 1) of bzImage sha256:…`.
    pub kernel_image: String,
    /// sha256 of the base image (without any run's keys or payload).
    pub image_sha256: String,
    /// `qemu-system-x86_64 --version`, first line.
    pub qemu_version: String,
    /// The QEMU argv without what differs from run to run: see [`shape_argv`].
    pub argv: Vec<String>,
}

impl KeyInputs {
    pub fn new(spec: &VmSpec, kernel_image: String, image_sha256: &str, qemu_version: &str) -> Self {
        KeyInputs {
            format: FORMAT,
            kernel_image,
            image_sha256: image_sha256.to_string(),
            qemu_version: qemu_version.to_string(),
            argv: shape_argv(spec),
        }
    }

    /// The entry's key: sha256 of the inputs as JSON (quoted strings and
    /// arrays, so no two different inputs encode alike).
    pub fn key(&self) -> String {
        fsx::sha256_bytes(&serde_json::to_vec(self).expect("plain data serializes"))
    }
}

/// The QEMU argv with the parts that differ from run to run replaced by
/// fixed words: the QEMU binary (its version is an input of its own), the
/// VM name, the kernel and initrd paths (the kernel's and the image's
/// hashes are inputs), the QMP socket, the console file and the SSH port.
/// What remains is the VM's shape: machine, accelerator and CPU, memory,
/// vCPUs, devices, the kernel command line.
pub fn shape_argv(spec: &VmSpec) -> Vec<String> {
    let mut s = spec.clone();
    s.qemu = "qemu".into();
    s.name = "kernlab".into();
    s.kernel = "KERNEL".into();
    s.initrd = "INITRD".into();
    s.qmp_socket = "qmp.sock".into();
    s.console_log = "console.log".into();
    s.ssh_port = 0;
    s.dump_disk = s.dump_disk.map(|_| "DISK".into());
    s.churn_disk = s.churn_disk.map(|_| "DISK".into());
    s.root_disk = s.root_disk.map(|_| "DISK".into());
    s.seed_disk = s.seed_disk.map(|_| "DISK".into());
    s.incoming = None;
    crate::qemu::argv(&s).iter().map(|a| a.to_string_lossy().into_owned()).collect()
}

/// `meta.json` of an entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub key: String,
    pub inputs: KeyInputs,
    /// The public halves of the entry's keys, as OpenSSH lines.
    pub client_public: String,
    pub host_public: String,
    /// Size of `state`: a shorter file is a truncated one.
    pub state_bytes: u64,
    /// When it was saved (RFC 3339 UTC), how long saving took, by which kernlab.
    pub saved: String,
    pub save_secs: f64,
    pub kernlab_version: String,
}

/// A usable entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub dir: PathBuf,
    pub meta: Meta,
}

impl Entry {
    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// A disk guest's root disk overlay as it was at the save (the state
    /// refers to its contents); absent for the minimal image.
    pub fn disk(&self) -> PathBuf {
        self.dir.join(DISK)
    }

    /// The saved guest's boot, as its console showed it (may be absent).
    pub fn console(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    /// The entry's SSH keys, by path in the cache.
    pub fn keys(&self) -> Result<RunKeys, String> {
        RunKeys::existing(&self.dir.join("keys"), &self.meta.client_public, &self.meta.host_public).map_err(|e| crate::util::error_chain(&e))
    }
}

/// What the cache holds for a key.
#[derive(Debug)]
pub enum Lookup {
    Missing,
    Found(Box<Entry>),
    /// There is an entry, but it cannot be used; why.
    Unusable(String),
}

/// The entry directory for `key`.
pub fn entry_dir(cache: &Cache, key: &str) -> PathBuf {
    cache.snapshot_dir(key)
}

/// Finds the entry for `key` and checks what can be checked without QEMU:
/// its meta.json, its format and key, its keys, and the state's size.
pub fn lookup(cache: &Cache, key: &str) -> Lookup {
    let dir = entry_dir(cache, key);
    if !dir.exists() {
        return Lookup::Missing;
    }
    let meta: Meta = match fs::read(dir.join("meta.json")).map_err(|e| e.to_string()).and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string())) {
        Ok(m) => m,
        Err(e) => return Lookup::Unusable(format!("its meta.json is unreadable: {e}")),
    };
    if meta.key != key || meta.inputs.format != FORMAT {
        return Lookup::Unusable(format!("its meta.json is for key {} (format {}), not {key} (format {FORMAT})", meta.key, meta.inputs.format));
    }
    match fs::metadata(dir.join("state")) {
        Ok(m) if m.len() == meta.state_bytes => {}
        Ok(m) => return Lookup::Unusable(format!("its state is {} bytes where {} were saved (truncated or overwritten)", m.len(), meta.state_bytes)),
        Err(e) => return Lookup::Unusable(format!("its state is unreadable: {e}")),
    }
    let entry = Entry { dir, meta };
    match entry.keys() {
        Ok(_) => Lookup::Found(Box::new(entry)),
        Err(e) => Lookup::Unusable(format!("its keys are unusable: {e}")),
    }
}

/// An entry being saved: a private scratch directory in the cache (the same
/// file system, so publishing it is one rename).
pub struct Staged {
    dir: tempfile::TempDir,
}

impl Staged {
    pub fn new(cache: &Cache) -> io::Result<Staged> {
        let dir = cache.scratch("snapshot-")?;
        fsx::private_dir(dir.path())?;
        Ok(Staged { dir })
    }

    /// Where the state goes.
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Where the root disk's overlay is copied while the guest is paused.
    pub fn disk(&self) -> PathBuf {
        self.dir.path().join(DISK)
    }

    /// Keeps the guest's console up to the save (optional).
    pub fn keep_console(&self, text: &[u8]) -> io::Result<()> {
        fsx::write_atomic(&self.dir.path().join("console.log"), text)
    }

    /// Completes the entry (keys, meta.json, the state flushed to disk) and
    /// publishes it as `key` unless another run published one first; true
    /// when this one is now the entry. Dropped unpublished, the scratch
    /// directory is removed.
    pub fn publish(self, cache: &Cache, keys: &RunKeys, mut meta: Meta) -> io::Result<bool> {
        let state = self.state();
        fsx::set_private(&state)?;
        let f = fs::File::open(&state)?;
        f.sync_all()?;
        meta.state_bytes = f.metadata()?.len();
        keys.copy_to(&self.dir.path().join("keys")).map_err(|e| io::Error::other(crate::util::error_chain(&e)))?;
        fsx::write_atomic(&self.dir.path().join("meta.json"), &serde_json::to_vec_pretty(&meta).expect("plain data serializes"))?;
        fsx::private_dir(&cache.snapshots())?;
        let _lock = cache.lock(Lock::Snapshot(&meta.key))?;
        let dest = entry_dir(cache, &meta.key);
        if dest.exists() {
            return Ok(false);
        }
        let staged = self.dir.keep();
        crate::cache::publish_dir(&staged, &dest)?;
        Ok(true)
    }
}

/// Removes the entry for `key` if it is still the one described by
/// `expected` (another run may have replaced a bad entry with a good one
/// since), or whatever is there when `expected` is `None` (an entry too
/// broken to describe). Under the entry's lock; the directory is first
/// renamed away, so no run finds it half removed. True when removed.
pub fn remove(cache: &Cache, key: &str, expected: Option<&Meta>) -> io::Result<bool> {
    let _lock = cache.lock(Lock::Snapshot(key))?;
    let dir = entry_dir(cache, key);
    if !dir.exists() {
        return Ok(false);
    }
    match expected {
        Some(want) => {
            let now: Option<Meta> = fs::read(dir.join("meta.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
            if now.as_ref().is_some_and(|m| m != want) {
                return Ok(false);
            }
        }
        // Replaced by a good one since it was found broken: keep that.
        None if matches!(lookup(cache, key), Lookup::Found(_)) => return Ok(false),
        None => {}
    }
    rename_away(cache, &dir)
}

/// Removes whatever is at `key` (an entry without a readable meta.json),
/// under the entry's lock.
fn remove_any(cache: &Cache, key: &str) -> io::Result<bool> {
    let _lock = cache.lock(Lock::Snapshot(key))?;
    let dir = entry_dir(cache, key);
    if !dir.exists() {
        return Ok(false);
    }
    rename_away(cache, &dir)
}

/// Renames `dir` into a scratch directory and removes it there, so no run
/// finds it half removed.
fn rename_away(cache: &Cache, dir: &std::path::Path) -> io::Result<bool> {
    let doomed = cache.scratch("snapshot-removed-")?;
    let to = doomed.path().join("entry");
    fs::rename(dir, &to)?;
    drop(doomed); // removes it, and the entry with it
    Ok(true)
}

/// Marks an entry as just used (a restore), for eviction: the mtime of its
/// `used` file. Best effort: an entry that cannot be marked is only evicted
/// sooner.
pub fn mark_used(entry: &Entry) {
    if let Err(e) = fsx::write_atomic(&entry.dir.join("used"), b"") {
        tracing::debug!("cannot mark snapshot {} used: {e}", entry.meta.key);
    }
}

/// The default cap on the bytes all snapshots take together (`state` files):
/// 4 GiB, some 40-55 kernels and VM shapes of 512 MiB guests.
pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;

/// The cap: `$KERNLAB_SNAPSHOTS_MAX_MIB` (0 keeps only the newest entry),
/// else [`DEFAULT_MAX_BYTES`].
pub fn max_bytes_from_env() -> Result<u64, String> {
    max_bytes(std::env::var("KERNLAB_SNAPSHOTS_MAX_MIB").ok().as_deref())
}

/// The cap from the variable's value, if set; a value that is not a whole
/// number of MiB is an error naming the variable.
pub fn max_bytes(var: Option<&str>) -> Result<u64, String> {
    match var {
        None => Ok(DEFAULT_MAX_BYTES),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map(|mib| mib.saturating_mul(1 << 20))
            .map_err(|_| format!("KERNLAB_SNAPSHOTS_MAX_MIB={v:?} is not a whole number of MiB")),
    }
}

/// One entry as eviction sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub key: String,
    pub bytes: u64,
    /// Last restored, else saved: seconds since the epoch.
    pub last_used: u64,
}

/// Which entries to evict so the rest fit in `max_bytes`: the least
/// recently used first, never `keep` (the entry just saved, which a run is
/// about to rely on). Pure; ties go by key so the plan is stable.
pub fn plan_eviction(held: &[Held], max_bytes: u64, keep: &str) -> Vec<String> {
    let mut total: u64 = held.iter().map(|h| h.bytes).sum();
    let mut order: Vec<&Held> = held.iter().filter(|h| h.key != keep).collect();
    order.sort_by(|a, b| a.last_used.cmp(&b.last_used).then_with(|| a.key.cmp(&b.key)));
    let mut out = Vec::new();
    for h in order {
        if total <= max_bytes {
            break;
        }
        total -= h.bytes;
        out.push(h.key.clone());
    }
    out
}

/// The entries in the cache, with their sizes and when they were last used.
/// Entries too broken to describe count with the size of their `state`.
fn held(cache: &Cache) -> io::Result<Vec<(Held, Option<Meta>)>> {
    let mut out = Vec::new();
    let secs = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    for e in fs::read_dir(cache.snapshots())? {
        let e = e?;
        let Some(key) = e.file_name().to_str().map(str::to_string) else { continue };
        let dir = e.path();
        if !dir.is_dir() {
            continue;
        }
        let meta: Option<Meta> = fs::read(dir.join("meta.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let bytes = fs::metadata(dir.join("state")).map(|m| m.len()).unwrap_or(0);
        let last_used = ["used", "meta.json", "state"]
            .iter()
            .find_map(|f| fs::metadata(dir.join(f)).and_then(|m| m.modified()).ok())
            .map(secs)
            .unwrap_or(0);
        out.push((Held { key, bytes, last_used }, meta));
    }
    Ok(out)
}

/// Evicts the least recently used entries until all fit in `max_bytes`,
/// keeping `keep`; returns what was removed (key, bytes). An entry
/// replaced by another run since it was listed stays.
pub fn evict(cache: &Cache, max_bytes: u64, keep: &str) -> io::Result<Vec<(String, u64)>> {
    let held = held(cache)?;
    let plan = plan_eviction(&held.iter().map(|(h, _)| h.clone()).collect::<Vec<_>>(), max_bytes, keep);
    let mut removed = Vec::new();
    for key in plan {
        let Some((h, meta)) = held.iter().find(|(h, _)| h.key == key) else { continue };
        let gone = match meta {
            Some(m) => remove(cache, &key, Some(m))?,
            None => remove_any(cache, &key)?,
        };
        if gone {
            removed.push((key, h.bytes));
        }
    }
    Ok(removed)
}


#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use crate::qemu::{Accel, Device, Machine};

    fn spec() -> VmSpec {
        VmSpec {
            qemu: "/usr/bin/qemu-system-x86_64".into(),
            arch: crate::arch::Arch::X86_64,
            name: "kernlab-smoke".into(),
            accel: Accel::Tcg,
            machine: Machine::Microvm,
            memory_mib: 512,
            cpus: 1,
            kernel: "/cache/kernels/abc/vmlinux".into(),
            initrd: "initrd.cpio".into(),
            cmdline: "console=ttyS0 rdinit=/init panic=-1".into(),
            qmp_socket: "qmp.sock".into(),
            console_log: "console.log".into(),
            ssh_port: 40022,
            devices: vec![Device::Net, Device::Balloon],
            dump_disk: None,
            churn_disk: None,
            root_disk: None,
            seed_disk: None,
            firmware_boot: false,
            pause_on_panic: false,
            snapshot: true,
            incoming: None,
        }
    }

    /// A change to a VM's spec.
    type Tweak = Box<dyn Fn(&mut VmSpec)>;

    fn key(spec: &VmSpec, kernel: &str, image: &str, qemu: &str) -> String {
        KeyInputs::new(spec, kernel.into(), image, qemu).key()
    }

    #[test]
    fn the_key_changes_with_every_input_that_shapes_the_guest() {
        let base = spec();
        let k0 = key(&base, "vmlinux of sha256:aa", "bb", "QEMU emulator version 7.2.19");
        assert_eq!(k0.len(), 64);
        let mut changed: Vec<(&str, String)> = vec![
            ("kernel", key(&base, "vmlinux of sha256:ab", "bb", "QEMU emulator version 7.2.19")),
            ("kernel format", key(&base, "bzImage sha256:aa", "bb", "QEMU emulator version 7.2.19")),
            ("image", key(&base, "vmlinux of sha256:aa", "bc", "QEMU emulator version 7.2.19")),
            ("qemu", key(&base, "vmlinux of sha256:aa", "bb", "QEMU emulator version 8.0.0")),
        ];
        let variants: Vec<(&str, Tweak)> = vec![
            ("memory", Box::new(|s| s.memory_mib = 1024)),
            ("cpus", Box::new(|s| s.cpus = 2)),
            ("machine", Box::new(|s| s.machine = Machine::Pc)),
            ("accel", Box::new(|s| s.accel = Accel::Kvm)),
            ("cmdline", Box::new(|s| s.cmdline.push_str(" slub_nomerge"))),
            ("devices", Box::new(|s| s.devices.retain(|d| *d != Device::Balloon))),
            ("panic device", Box::new(|s| s.pause_on_panic = true)),
            ("snapshot flag", Box::new(|s| s.snapshot = false)),
        ];
        for (what, f) in &variants {
            let mut s = spec();
            f(&mut s);
            changed.push((what, key(&s, "vmlinux of sha256:aa", "bb", "QEMU emulator version 7.2.19")));
        }
        for (what, k) in &changed {
            assert_ne!(*k, k0, "{what} must change the key");
        }
        let mut all: Vec<&String> = changed.iter().map(|(_, k)| k).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), changed.len(), "every change gives its own key");
    }

    #[test]
    fn run_specific_parts_do_not_change_the_key() {
        let base = spec();
        let k0 = key(&base, "k", "i", "q");
        let variants: Vec<Tweak> = vec![
            Box::new(|s| s.ssh_port = 51234),
            Box::new(|s| s.qmp_socket = "/run/x/qmp.sock".into()),
            Box::new(|s| s.console_log = "/runs/y/console.log".into()),
            Box::new(|s| s.initrd = "/runs/y/initrd.cpio".into()),
            Box::new(|s| s.kernel = "/elsewhere/vmlinux".into()),
            Box::new(|s| s.name = "kernlab-other-lab".into()),
            Box::new(|s| s.qemu = "/opt/qemu/bin/qemu-system-x86_64".into()),
            Box::new(|s| s.incoming = Some("exec:cat /cache/snapshots/k/state".into())),
        ];
        for f in variants {
            let mut s = spec();
            f(&mut s);
            assert_eq!(key(&s, "k", "i", "q"), k0, "{s:?}");
        }
        let argv = shape_argv(&base).join(" ");
        assert!(argv.contains("hostfwd=tcp:127.0.0.1:0-:22") && argv.contains("-kernel KERNEL -initrd INITRD"), "{argv}");
        assert!(argv.contains("-global migration.store-global-state=off") && !argv.contains("-incoming"), "{argv}");
    }

    /// A random ed25519 public key line.
    fn public_line() -> String {
        use ssh_key::{rand_core::OsRng, Algorithm, PrivateKey};
        PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap().public_key().to_openssh().unwrap()
    }

    fn fake_keys(dir: &Path) -> (RunKeys, String, String) {
        // Real public halves; the private files' contents do not matter here.
        let (client, host) = (public_line(), public_line());
        fsx::private_dir(dir).unwrap();
        fs::write(dir.join("client_ed25519"), b"client").unwrap();
        fs::write(dir.join("guest_host_ed25519"), b"host").unwrap();
        (RunKeys::existing(dir, &client, &host).unwrap(), client, host)
    }

    fn meta(key: &str, keys: &(RunKeys, String, String)) -> Meta {
        Meta {
            key: key.into(),
            inputs: KeyInputs::new(&spec(), "k".into(), "i", "q"),
            client_public: keys.1.clone(),
            host_public: keys.2.clone(),
            state_bytes: 0,
            saved: "2025-01-01T10:00:00Z".into(),
            save_secs: 0.5,
            kernlab_version: "0.1.0".into(),
        }
    }

    #[test]
    fn an_entry_is_published_private_found_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::at(d.path().join("cache")).unwrap();
        let key = KeyInputs::new(&spec(), "k".into(), "i", "q").key();
        assert!(matches!(lookup(&cache, &key), Lookup::Missing));

        let keys = fake_keys(&d.path().join("run-keys"));
        let staged = Staged::new(&cache).unwrap();
        fs::write(staged.state(), vec![7u8; 4096]).unwrap();
        staged.keep_console(b"kernlab: sshd started\n").unwrap();
        assert!(staged.publish(&cache, &keys.0, meta(&key, &keys)).unwrap());
        let dir = entry_dir(&cache, &key);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        for p in [cache.snapshots(), dir.clone(), dir.join("keys")] {
            assert_eq!(mode(&p), 0o700, "{}", p.display());
        }
        for f in ["state", "meta.json", "console.log", "keys/client_ed25519", "keys/guest_host_ed25519"] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
        let entry = match lookup(&cache, &key) {
            Lookup::Found(e) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(entry.meta.state_bytes, 4096);
        assert_eq!(entry.keys().unwrap().client_key, dir.join("keys/client_ed25519"));

        // A second publisher of the same key loses quietly; its scratch goes.
        let late = Staged::new(&cache).unwrap();
        fs::write(late.state(), b"other").unwrap();
        assert!(!late.publish(&cache, &keys.0, meta(&key, &keys)).unwrap());
        assert_eq!(fs::read_dir(cache.tmp()).unwrap().count(), 0);

        // A removal that expects another entry leaves this one alone.
        let mut other = entry.meta.clone();
        other.saved = "2030-01-01T00:00:00Z".into();
        assert!(!remove(&cache, &key, Some(&other)).unwrap());
        assert!(remove(&cache, &key, Some(&entry.meta)).unwrap());
        assert!(matches!(lookup(&cache, &key), Lookup::Missing));
        assert_eq!(fs::read_dir(cache.tmp()).unwrap().count(), 0);
    }

    fn h(key: &str, mib: u64, last_used: u64) -> Held {
        Held { key: key.into(), bytes: mib << 20, last_used }
    }

    #[test]
    fn eviction_removes_the_least_recently_used_until_the_rest_fit() {
        let held = vec![h("a", 100, 30), h("b", 100, 10), h("c", 100, 20), h("new", 100, 5)];
        assert_eq!(plan_eviction(&held, 400 << 20, "new"), Vec::<String>::new(), "everything fits");
        assert_eq!(plan_eviction(&held, 350 << 20, "new"), vec!["b"]);
        assert_eq!(plan_eviction(&held, 200 << 20, "new"), vec!["b", "c"]);
        // The entry just saved stays even when it alone is over the cap.
        assert_eq!(plan_eviction(&held, 0, "new"), vec!["b", "c", "a"]);
        // Ties by key, so two runs plan alike.
        let tie = vec![h("y", 1, 7), h("x", 1, 7), h("k", 1, 9)];
        assert_eq!(plan_eviction(&tie, 1 << 20, "k"), vec!["x", "y"]);
    }

    #[test]
    fn the_cap_is_the_variable_in_mib_or_4_gib() {
        assert_eq!(max_bytes(None), Ok(4 << 30));
        assert_eq!(max_bytes(Some("256")), Ok(256 << 20));
        assert_eq!(max_bytes(Some("0")), Ok(0));
        assert!(max_bytes(Some("lots")).unwrap_err().contains("KERNLAB_SNAPSHOTS_MAX_MIB=\"lots\""));
        assert!(max_bytes(Some("-1")).is_err());
    }

    #[test]
    fn evict_in_the_cache_keeps_the_recently_used_and_the_new() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::at(d.path().join("cache")).unwrap();
        let keys = fake_keys(&d.path().join("run-keys"));
        let mut entries = vec![];
        for (i, name) in ["old", "used", "new"].iter().enumerate() {
            let key = name.repeat(64 / name.len() + 1)[..64].to_string();
            let staged = Staged::new(&cache).unwrap();
            fs::write(staged.state(), vec![i as u8; 3000]).unwrap();
            assert!(staged.publish(&cache, &keys.0, meta(&key, &keys)).unwrap());
            // Saved a minute apart, oldest first.
            let t = std::time::SystemTime::now() - std::time::Duration::from_secs(600 - 60 * i as u64);
            for f in ["meta.json", "state"] {
                fs::File::options().write(true).open(entry_dir(&cache, &key).join(f)).unwrap().set_modified(t).unwrap();
            }
            entries.push(key);
        }
        // A broken entry (no meta.json) counts by its state and can go too.
        let broken = entry_dir(&cache, &"f".repeat(64));
        fsx::private_dir(&broken).unwrap();
        fs::write(broken.join("state"), vec![0u8; 3000]).unwrap();
        fs::File::options().write(true).open(broken.join("state")).unwrap().set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        // "old" was saved before "used", but "used" was restored just now.
        match lookup(&cache, &entries[1]) {
            Lookup::Found(e) => mark_used(&e),
            other => panic!("{other:?}"),
        }
        let removed = evict(&cache, 6000, &entries[2]).unwrap();
        assert_eq!(removed, vec![("f".repeat(64), 3000), (entries[0].clone(), 3000)]);
        assert!(matches!(lookup(&cache, &entries[0]), Lookup::Missing));
        assert!(matches!(lookup(&cache, &entries[1]), Lookup::Found(_)));
        assert!(matches!(lookup(&cache, &entries[2]), Lookup::Found(_)));
        assert_eq!(fs::read_dir(cache.tmp()).unwrap().count(), 0);
    }

    #[test]
    fn a_truncated_or_mislabelled_entry_is_unusable() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::at(d.path().join("cache")).unwrap();
        let key = "k".repeat(64);
        let keys = fake_keys(&d.path().join("run-keys"));
        let staged = Staged::new(&cache).unwrap();
        fs::write(staged.state(), vec![1u8; 1000]).unwrap();
        assert!(staged.publish(&cache, &keys.0, meta(&key, &keys)).unwrap());
        let dir = entry_dir(&cache, &key);
        fs::write(dir.join("state"), vec![1u8; 999]).unwrap();
        match lookup(&cache, &key) {
            Lookup::Unusable(why) => assert!(why.contains("999 bytes where 1000"), "{why}"),
            other => panic!("{other:?}"),
        }
        fs::write(dir.join("meta.json"), b"{").unwrap();
        assert!(matches!(lookup(&cache, &key), Lookup::Unusable(w) if w.contains("meta.json")));
        // Too broken to describe: removed whatever it is.
        assert!(remove(&cache, &key, None).unwrap());
        assert!(matches!(lookup(&cache, &key), Lookup::Missing));
    }
}
