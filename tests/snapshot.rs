//! Snapshot restore on the real thing: a lab run twice restores the second
//! time and its commands work; a corrupt or truncated snapshot falls back
//! to a cold boot with a warning and is replaced; `vm.snapshot: off` boots
//! cold. Each test's lab has its own kernel command-line word, so its
//! snapshots are its own (the cache is the normal one: the kernel is
//! there), and each removes its snapshots when it ends.

mod common;
use common::*;
use kernlab::cache::Cache;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One VM at a time: the machine is small and timings are compared.
static ONE_VM_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_vm() -> std::sync::MutexGuard<'static, ()> {
    ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A lab whose VM shape no other test shares: a harmless, unique kernel
/// command-line word. With `churn`, the lab has a payload (the churn
/// program), which a snapshot's guest gets over SSH.
fn unique_lab(dir: &Path, name: &str, extra_vm: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    lab(
        dir,
        name,
        &format!(
            "name: {name}\nvm:\n  cmdline: [kernlab.test={nanos}]\n{extra_vm}setup:\n  - uname -r\nworkload:\n  churn: {{count: 500}}\n  commands: ['uname -r; ls /usr/bin/churn; cat /proc/uptime']\n  duration: 2s\nmonitor:\n  interval: 1s\n  sources: [meminfo]\n"
        ),
    )
}

fn manifest(run_dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run_dir.join("manifest.json")).unwrap()).unwrap()
}

/// Runs a lab into `dir/<out>`; the run must succeed.
fn run_ok(lab: &Path, dir: &Path, out: &str) -> PathBuf {
    let run_dir = dir.join(out);
    let o = run(&["run", lab.to_str().unwrap(), "--out", run_dir.to_str().unwrap(), "-q"]);
    assert_eq!(o.status.code(), Some(0), "{out}: {}\n{:?}", text(&o.stderr), event_names(&run_dir));
    for pid in qemu_pids(&run_dir) {
        assert!(!qemu_alive(pid), "QEMU {pid} outlived {out}");
    }
    run_dir
}

fn snapshot_of(run_dir: &Path) -> serde_json::Value {
    manifest(run_dir)["boot"]["snapshot"].clone()
}

fn ssh_ready(run_dir: &Path) -> f64 {
    let ev = events(run_dir);
    ev.iter().rev().find(|e| e["event"] == "ssh-ready").unwrap()["secs_since_qemu_start"].as_f64().unwrap()
}

/// Removes the snapshot entries a test made, however the test ends.
struct Entries(Vec<PathBuf>);

impl Entries {
    fn of(&mut self, run_dir: &Path) -> PathBuf {
        let key = snapshot_of(run_dir)["key"].as_str().expect("a snapshot key").to_string();
        let dir = kernlab::snapshot::entry_dir(&Cache::from_env().unwrap(), &key);
        if !self.0.contains(&dir) {
            self.0.push(dir.clone());
        }
        dir
    }
}

impl Drop for Entries {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

#[test]
fn a_lab_run_twice_restores_the_second_time_and_its_commands_work() {
    let _one = one_vm();
    let d = tempfile::tempdir().unwrap();
    let f = unique_lab(d.path(), "twice", "");
    let mut entries = Entries(vec![]);

    // First run: a cold boot, saved as the snapshot before setup.
    let first = run_ok(&f, d.path(), "first");
    let s1 = snapshot_of(&first);
    assert_eq!(s1["mode"], "saved", "{s1}");
    let entry = entries.of(&first);
    let names = event_names(&first);
    let pos = |n: &str| names.iter().position(|x| x == n).unwrap_or_else(|| panic!("no {n} in {names:?}"));
    assert!(pos("ssh-ready") < pos("snapshot-saved") && pos("snapshot-saved") < pos("setup-command"), "{names:?}");
    // The entry: private, complete, keyed as the manifest says.
    assert_eq!(mode(&entry), 0o700);
    assert_eq!(mode(&entry.join("keys")), 0o700);
    for f in ["state", "meta.json", "console.log", "keys/client_ed25519", "keys/guest_host_ed25519"] {
        assert_eq!(mode(&entry.join(f)), 0o600, "{f}");
    }
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(entry.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["key"], s1["key"]);
    assert_eq!(meta["state_bytes"].as_u64(), Some(std::fs::metadata(entry.join("state")).unwrap().len()));
    let argv = meta["inputs"]["argv"].as_array().unwrap();
    assert!(argv.iter().any(|a| a.as_str().unwrap().contains("kernlab.test=")), "the lab's cmdline is in the key: {argv:?}");
    // The sampler's port is a device of the saved VM (so of the restored
    // one, whose argv is the saved one), and it carried the records.
    assert!(argv.iter().any(|a| a.as_str().unwrap().contains("virtserialport")), "the port is in the key: {argv:?}");
    assert_eq!(manifest(&first)["sampler_transport"], "port");

    // Second run: restored, much sooner ready, the same kernel answering,
    // the payload (churn) uploaded, setup and workload as usual.
    let second = run_ok(&f, d.path(), "second");
    let s2 = snapshot_of(&second);
    assert_eq!(s2["mode"], "restored", "{s2}");
    assert_eq!(s2["key"], s1["key"]);
    let names = event_names(&second);
    assert!(names.contains(&"snapshot-restored".to_string()) && !names.iter().any(|n| n.starts_with("snapshot-fallback")), "{names:?}");
    let (cold, warm) = (ssh_ready(&first), ssh_ready(&second));
    let rep = report(&second);
    eprintln!(
        "ssh-ready: cold {cold:.2} s, restored {warm:.2} s; restored first command {:.2} s after QEMU start",
        rep["timings"]["first_command"].as_f64().unwrap()
    );
    assert!(warm < cold / 2.0, "restored {warm} s vs cold {cold} s");
    assert_eq!(rep["snapshot"], "restored");
    assert_eq!(rep["timings"]["init"], serde_json::Value::Null, "a restored guest has no boot floor");
    let log = std::fs::read_to_string(second.join("workload.log")).unwrap();
    let release = manifest(&second)["kernel"]["release"].as_str().unwrap().to_string();
    assert!(log.starts_with(&format!("{release}\n")) && log.contains("/usr/bin/churn"), "{log}");
    let argv: Vec<String> = serde_json::from_value(manifest(&second)["qemu_argv"].clone()).unwrap();
    assert!(argv.windows(2).any(|w| w[0] == "-incoming" && w[1].starts_with("exec:cat ") && w[1].contains(s1["key"].as_str().unwrap())), "{argv:?}");
    // The port works on the restored guest: the sampler's records came over it.
    assert_eq!(manifest(&second)["sampler_transport"], "port", "{:?}", event_names(&second));
    // The restored run uses the snapshot's keys, not keys of its own.
    assert!(!second.join("keys").exists());
    let console = std::fs::read_to_string(second.join("console.log")).unwrap();
    assert!(console.contains("kernlab: sshd started") && console.contains("restored from snapshot"), "{console}");
}

#[test]
fn a_corrupt_or_truncated_snapshot_falls_back_to_a_cold_boot_and_is_replaced() {
    let _one = one_vm();
    let d = tempfile::tempdir().unwrap();
    let f = unique_lab(d.path(), "corrupt", "");
    let mut entries = Entries(vec![]);
    let first = run_ok(&f, d.path(), "first");
    let entry = entries.of(&first);
    let saved_at = |e: &Path| -> String {
        let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(e.join("meta.json")).unwrap()).unwrap();
        m["saved"].as_str().unwrap().to_string()
    };
    let first_saved = saved_at(&entry);

    // Garbage over the stream's header, same size: only QEMU can tell.
    {
        use std::io::{Seek, Write};
        let mut state = std::fs::OpenOptions::new().write(true).open(entry.join("state")).unwrap();
        state.seek(std::io::SeekFrom::Start(0)).unwrap();
        state.write_all(&[0x5a; 4096]).unwrap();
    }
    let second = run_ok(&f, d.path(), "second");
    let ev = events(&second);
    let fallback = ev.iter().find(|e| e["event"] == "snapshot-fallback").unwrap_or_else(|| panic!("no fallback: {:?}", event_names(&second)));
    let why = fallback["reason"].as_str().unwrap();
    assert!(why.contains("QEMU exited") && why.contains("migration"), "{why}");
    // Then a cold boot, which saved a fresh snapshot in place of the bad one.
    assert_eq!(qemu_pids(&second).len(), 2);
    let s2 = snapshot_of(&second);
    assert_eq!(s2["mode"], "saved", "{s2}");
    assert!(s2["fallback"].as_str().unwrap().contains("migration"), "{s2}");
    // The failed restore's QEMU log is kept beside the cold boot's, which used keys of its own.
    let qemu_log = std::fs::read_to_string(second.join("qemu-restore.log")).unwrap();
    assert!(qemu_log.contains("load of migration failed"), "{qemu_log}");
    assert!(second.join("keys/client_ed25519").is_file());
    assert!(std::fs::read_to_string(second.join("console.log")).unwrap().contains("kernlab: sshd started"));
    assert_ne!(saved_at(&entry), first_saved, "the bad entry was replaced");

    // A truncated state is caught before QEMU starts.
    let len = std::fs::metadata(entry.join("state")).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(entry.join("state")).unwrap().set_len(len / 2).unwrap();
    let third = run_ok(&f, d.path(), "third");
    let ev = events(&third);
    let fallback = ev.iter().find(|e| e["event"] == "snapshot-fallback").unwrap();
    assert!(fallback["reason"].as_str().unwrap().contains("truncated"), "{fallback}");
    assert_eq!(qemu_pids(&third).len(), 1, "no QEMU was started on the truncated state");
    assert_eq!(snapshot_of(&third)["mode"], "saved");

    // And the replacement restores.
    let fourth = run_ok(&f, d.path(), "fourth");
    assert_eq!(snapshot_of(&fourth)["mode"], "restored");
}

#[test]
fn a_lab_that_asks_for_a_cold_boot_gets_one_even_with_a_snapshot_there() {
    let _one = one_vm();
    let d = tempfile::tempdir().unwrap();
    let auto = unique_lab(d.path(), "auto", "");
    let mut entries = Entries(vec![]);
    let first = run_ok(&auto, d.path(), "first");
    entries.of(&first);
    // The same lab (same command-line word) with `vm.snapshot: off`.
    let text_auto = std::fs::read_to_string(&auto).unwrap();
    let off = lab(d.path(), "off", &text_auto.replace("name: auto", "name: off").replace("vm:\n", "vm:\n  snapshot: off\n"));
    let cold = run_ok(&off, d.path(), "cold");
    let s = snapshot_of(&cold);
    assert_eq!(s["mode"], "cold", "{s}");
    assert!(s["reason"].as_str().unwrap().contains("vm.snapshot: off"), "{s}");
    assert!(!event_names(&cold).iter().any(|n| n.starts_with("snapshot-")), "{:?}", event_names(&cold));
    let argv = manifest(&cold)["qemu_argv"].to_string();
    assert!(!argv.contains("-incoming") && !argv.contains("store-global-state"), "{argv}");
    assert!(cold.join("keys/client_ed25519").is_file());
    assert_eq!(report(&cold)["snapshot"], "cold");
    let log = std::fs::read_to_string(cold.join("workload.log")).unwrap();
    assert!(log.contains("/usr/bin/churn"), "the payload came in the initrd: {log}");
}

/// A cache of its own whose kernels, images and built things are the
/// normal cache's (symlinked, so nothing is fetched or built again) and
/// whose snapshots are its own, so capping them touches no one else's. It
/// lives inside the normal cache's `tmp/`: the same file system, so what a
/// run publishes through a symlink is still one rename.
fn private_snapshot_cache() -> tempfile::TempDir {
    let real = Cache::from_env().unwrap();
    let d = tempfile::Builder::new().prefix("test-cache-").tempdir_in(real.tmp()).unwrap();
    for e in std::fs::read_dir(real.root()).unwrap() {
        let name = e.unwrap().file_name();
        if !["snapshots", "locks", "tmp"].contains(&name.to_str().unwrap()) {
            std::os::unix::fs::symlink(real.root().join(&name), d.path().join(&name)).unwrap();
        }
    }
    d
}

#[test]
fn snapshots_over_the_cap_are_evicted_least_recently_used_first() {
    let _one = one_vm();
    let d = tempfile::tempdir().unwrap();
    let cache = private_snapshot_cache();
    let run_in = |lab: &Path, out: &str, cap_mib: &str| {
        let run_dir = d.path().join(out);
        let o = kernlab()
            .args(["run", lab.to_str().unwrap(), "--out", run_dir.to_str().unwrap(), "-q"])
            .env("KERNLAB_CACHE", cache.path())
            .env("KERNLAB_SNAPSHOTS_MAX_MIB", cap_mib)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{out}: {}", text(&o.stderr));
        run_dir
    };
    let private = Cache::at(cache.path().to_path_buf()).unwrap();
    let entry = |run_dir: &Path| kernlab::snapshot::entry_dir(&private, snapshot_of(run_dir)["key"].as_str().unwrap());

    // Two VM shapes (two command-line words), each saved once; the cap
    // holds both (each is ~75 MiB).
    let (a, b) = (unique_lab(d.path(), "a", ""), unique_lab(d.path(), "b", ""));
    let a1 = run_in(&a, "a1", "1024");
    let b1 = run_in(&b, "b1", "1024");
    assert_eq!((snapshot_of(&a1)["mode"].as_str(), snapshot_of(&b1)["mode"].as_str()), (Some("saved"), Some("saved")));
    let (ea, eb) = (entry(&a1), entry(&b1));
    assert!(ea.is_dir() && eb.is_dir());
    assert!(!event_names(&b1).contains(&"snapshot-evicted".to_string()), "{:?}", event_names(&b1));

    // A restores (and so is the most recently used); then a third shape is
    // saved under a cap that holds two: B, used least recently, goes.
    let a2 = run_in(&a, "a2", "1024");
    assert_eq!(snapshot_of(&a2)["mode"], "restored");
    let state = std::fs::metadata(ea.join("state")).unwrap().len();
    let two = (2 * state + (state / 2)) >> 20; // MiB for two entries, not three
    let c = unique_lab(d.path(), "c", "");
    let c1 = run_in(&c, "c1", &two.to_string());
    assert_eq!(snapshot_of(&c1)["mode"], "saved");
    let evicted: Vec<serde_json::Value> = events(&c1).into_iter().filter(|e| e["event"] == "snapshot-evicted").collect();
    assert_eq!(evicted.len(), 1, "{evicted:?}");
    assert_eq!(evicted[0]["key"], snapshot_of(&b1)["key"]);
    assert!(evicted[0]["bytes"].as_u64().unwrap() > 1 << 20);
    assert!(!eb.exists(), "B is evicted");
    assert!(ea.is_dir() && entry(&c1).is_dir(), "A (restored last) and C (just saved) stay");

    // B boots cold again and saves anew; A still restores.
    assert_eq!(snapshot_of(&run_in(&b, "b2", "1024"))["mode"], "saved");
    assert_eq!(snapshot_of(&run_in(&a, "a3", "1024"))["mode"], "restored");

    // A cap that is not a number is refused before anything boots, naming
    // the variable.
    let o = kernlab()
        .args(["run", a.to_str().unwrap(), "--out", d.path().join("bad").to_str().unwrap(), "-q"])
        .env("KERNLAB_CACHE", cache.path())
        .env("KERNLAB_SNAPSHOTS_MAX_MIB", "4G")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("KERNLAB_SNAPSHOTS_MAX_MIB=\"4G\""), "{}", text(&o.stderr));
    assert!(qemu_pids(&d.path().join("bad")).is_empty(), "nothing booted");
}
