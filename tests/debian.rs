//! Bring your own case, on the real thing: a Debian 12 guest kernlab builds
//! from packages (systemd as PID 1, OpenSSH with this run's keys, the lab
//! kernel's modules for modprobe, the distro's kdump-tools), restored from
//! its snapshot; the user's own disk image reached through cloud-init; and
//! the bad inputs: an apt failure while building the image, a disk image
//! that does not exist, is not a disk image, is in use by another QEMU, or
//! has no cloud-init.
//!
//! The Debian image is built once per cache (a cold build here: about 30 s
//! for the root file system with a warm apt cache, 60 s with cloud-init,
//! and 10 s per kernel for its disk); later runs find it.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// One VM at a time: the machine is small, and a systemd boot under TCG
/// takes most of a core for a minute.
static ONE_VM_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_vm() -> std::sync::MutexGuard<'static, ()> {
    ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn manifest(run_dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run_dir.join("manifest.json")).unwrap()).unwrap()
}

fn run_lab(lab: &Path, run_dir: &Path) -> (Option<i32>, String) {
    let o = run(&["run", lab.to_str().unwrap(), "--out", run_dir.to_str().unwrap(), "-q"]);
    for pid in qemu_pids(run_dir) {
        assert!(!qemu_alive(pid), "QEMU {pid} outlived the run in {}", run_dir.display());
    }
    (o.status.code(), format!("{}{}", text(&o.stdout), text(&o.stderr)))
}

fn setup_statuses(run_dir: &Path) -> Vec<Option<i64>> {
    events(run_dir).iter().filter(|e| e["event"] == "setup-command").map(|e| e["status"].as_i64()).collect()
}

/// The base disk of a Debian run (from its manifest) with its size and
/// modification time, to show the run never wrote it.
fn base_disk(run_dir: &Path) -> PathBuf {
    let root = run_dir.join("root.qcow2");
    let info = std::process::Command::new("qemu-img").args(["info", "-U", "--output=json"]).arg(&root).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap_or_else(|_| panic!("qemu-img info {}: {}", root.display(), text(&info.stderr)));
    PathBuf::from(v["full-backing-filename"].as_str().or(v["backing-filename"].as_str()).unwrap_or_else(|| panic!("{} has no backing file: {v}", root.display())))
}

fn stamp(p: &Path) -> (u64, std::time::SystemTime) {
    let m = std::fs::metadata(p).unwrap();
    (m.len(), m.modified().unwrap())
}

#[test]
fn a_debian_guest_runs_systemd_sshd_and_the_labs_kernel_modules_and_restores_from_its_snapshot() {
    let _one = one_vm();
    let d = tempfile::tempdir().unwrap();
    copy_khm(d.path(), true);
    // A command-line word of its own: this test's snapshot is its own.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let lab = lab(
        d.path(),
        "debian",
        &format!(
            "name: debian
image: debian
vm:
  memory: 768M
  boot_timeout: 5m
  cmdline: [kernlab.test={nanos}]
setup:
  - test \"$(readlink /proc/1/exe)\" = /usr/lib/systemd/systemd
  - systemctl is-active ssh.service
  - modprobe dummy && lsmod | grep -q '^dummy '
  - test \"$(ls /etc/ssh/ssh_host_*_key)\" = /etc/ssh/ssh_host_ed25519_key
modules:
  - source: khm
    params: {{leak: 0}}
workload:
  commands: ['grep -q ^khm /proc/modules && cat /etc/debian_version']
  duration: 2s
monitor:
  interval: 1s
  sources: [meminfo, slabinfo]
"
        ),
    );
    let first = d.path().join("first");
    let (code, out) = run_lab(&lab, &first);
    assert_eq!(code, Some(0), "{out}\n{:?}", event_names(&first));
    assert_eq!(setup_statuses(&first), [Some(0); 4], "{:?}", events(&first));
    let m = manifest(&first);
    assert_eq!(m["image"], "debian");
    assert!(m["image_packages"].as_array().unwrap().iter().any(|p| p == "kdump-tools"), "{m}");
    // Debian's udev loads virtio_console for the sampler's port: the
    // samples come over it, not over the SSH channel.
    assert_eq!(m["sampler_transport"], "port", "{m}");
    let log = std::fs::read_to_string(first.join("workload.log")).unwrap();
    assert!(log.trim().starts_with("12."), "the guest is Debian 12: {log}");
    let snap = m["boot"]["snapshot"].clone();
    assert_eq!(snap["mode"], "saved", "{snap}");
    let key = snap["key"].as_str().unwrap().to_string();
    let _cleanup = RemoveSnapshot(kernlab::snapshot::entry_dir(&kernlab::cache::Cache::from_env().unwrap(), &key));
    assert!(Path::new(snap["entry"].as_str().unwrap()).join("root.qcow2").is_file(), "the snapshot keeps the disk's overlay: {snap}");

    // The base disk is never written: runs write their own overlay.
    let base = base_disk(&first);
    let before = stamp(&base);
    let second = d.path().join("second");
    let (code, out) = run_lab(&lab, &second);
    assert_eq!(code, Some(0), "{out}\n{:?}", event_names(&second));
    assert_eq!(manifest(&second)["boot"]["snapshot"]["mode"], "restored");
    assert_eq!(setup_statuses(&second), [Some(0); 4]);
    assert_eq!(stamp(&base), before, "{} was written", base.display());
}

/// Removes a snapshot entry a test made, however it ends.
struct RemoveSnapshot(PathBuf);

impl Drop for RemoveSnapshot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn an_apt_failure_while_building_the_image_is_a_clear_error_and_caches_nothing() {
    // Alone: the other tests here build images into the same cache, which
    // would show up as entries and scratch directories this one did not make.
    let _one = one_vm();
    let d = tempfile::tempdir().unwrap();
    let pkg = format!("kernlab-no-such-package-{}", std::process::id());
    let lab = lab(d.path(), "apt-fail", &format!("name: apt-fail\nimage:\n  debian:\n    packages: [{pkg}]\nvm:\n  boot_timeout: 5m\n"));
    let cache = kernlab::cache::Cache::from_env().unwrap();
    let listing = || -> Vec<String> {
        let dir = cache.root().join("images/debian");
        let mut v: Vec<String> = std::fs::read_dir(&dir).map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
        v.sort();
        v
    };
    let before = listing();
    let run_dir = d.path().join("run");
    let (code, out) = run_lab(&lab, &run_dir);
    assert_eq!(code, Some(101), "{out}");
    assert!(out.contains("mmdebstrap could not build") && out.contains(&pkg) && out.contains("nothing was cached"), "{out}");
    assert!(out.contains("Unable to locate package"), "apt's own words: {out}");
    assert_eq!(listing(), before, "a failed build left something in the cache");
    let scratch: Vec<_> = std::fs::read_dir(cache.tmp()).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("debian-rootfs-")).collect();
    assert!(scratch.is_empty(), "scratch left behind: {scratch:?}");
}

/// `kernlab image debian` into `out` (cached after the first build).
fn export_debian(out: &Path, packages: &[&str]) {
    let mut args = vec!["image", "debian", "--out", out.to_str().unwrap()];
    for p in packages {
        args.extend(["--package", p]);
    }
    let o = run(&args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), out.to_str().unwrap());
}

fn disk_lab(dir: &Path, name: &str, disk: &Path, boot_timeout: &str) -> PathBuf {
    lab(
        dir,
        name,
        &format!(
            "name: {name}
image:
  disk: {}
  root: LABEL=kernlab-root
vm:
  memory: 768M
  boot_timeout: {boot_timeout}
setup:
  - cloud-init status --wait >/dev/null || true
  - grep -q '^kernlab-' /var/lib/cloud/data/instance-id
workload:
  commands: ['uname -r']
  duration: 2s
monitor:
  interval: 1s
  sources: [meminfo]
",
            disk.display()
        ),
    )
}

#[test]
fn a_users_disk_is_booted_through_an_overlay_and_reached_with_keys_from_cloud_init() {
    let _one = one_vm();
    let d = tempfile::tempdir().unwrap();
    let disk = d.path().join("with-cloud-init.qcow2");
    export_debian(&disk, &["cloud-init"]);
    let sha = kernlab::util::fsx::sha256_file(&disk).unwrap();
    let lab = disk_lab(d.path(), "user-disk", &disk, "5m");
    let run_dir = d.path().join("run");
    let (code, out) = run_lab(&lab, &run_dir);
    assert_eq!(code, Some(0), "{out}\n{:?}", event_names(&run_dir));
    assert_eq!(setup_statuses(&run_dir), [Some(0); 2]);
    let m = manifest(&run_dir);
    assert_eq!(m["image"], "disk");
    assert_eq!(m["boot"]["snapshot"]["mode"], "cold");
    assert_eq!(base_disk(&run_dir), std::fs::canonicalize(&disk).unwrap());
    assert_eq!(kernlab::util::fsx::sha256_file(&disk).unwrap(), sha, "the user's disk was written");
    let argv = m["qemu_argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect::<Vec<_>>().join(" ");
    assert!(argv.contains("root=LABEL=kernlab-root") && argv.contains("file=seed.img") && argv.contains("readonly=on"), "{argv}");
}

#[test]
fn a_disk_without_cloud_init_fails_within_the_boot_deadline_saying_so() {
    let _one = one_vm();
    let d = tempfile::tempdir().unwrap();
    let disk = d.path().join("plain.qcow2");
    export_debian(&disk, &[]);
    let lab = disk_lab(d.path(), "no-cloud-init", &disk, "3m");
    let run_dir = d.path().join("run");
    let started = std::time::Instant::now();
    let (code, out) = run_lab(&lab, &run_dir);
    assert_eq!(code, Some(101), "{out}");
    assert!(out.contains("cloud-init"), "the error names what is missing: {out}");
    assert!(out.contains("last console lines") || out.contains("console"), "with the console tail: {out}");
    // Two attempts at most, each within the boot deadline.
    assert!(started.elapsed() < Duration::from_secs(2 * 180 + 120), "took {:?}", started.elapsed());
}

#[test]
fn a_disk_image_that_is_missing_not_a_disk_or_in_use_is_the_labs_error() {
    let d = tempfile::tempdir().unwrap();
    let bad = |name: &str, disk: &Path| {
        let lab = lab(d.path(), name, &format!("name: {name}\nimage: {{disk: {}}}\nsetup: ['true']\n", disk.display()));
        let run_dir = d.path().join(name);
        let (code, out) = run_lab(&lab, &run_dir);
        assert_eq!(code, Some(2), "{name}: {out}");
        assert!(out.contains(&format!("{}:2", lab.display())) && out.contains("image.disk"), "{name}: the lab file, line and field: {out}");
        out
    };
    let out = bad("missing", &d.path().join("nope.qcow2"));
    assert!(out.contains("nope.qcow2") && out.contains("does not exist"), "{out}");
    let text_file = d.path().join("notes.txt");
    std::fs::write(&text_file, "not a disk\n").unwrap();
    let out = bad("not-a-disk", &text_file);
    assert!(out.contains("not a disk image"), "{out}");

    // A disk another QEMU has open.
    let held = d.path().join("held.qcow2");
    let o = std::process::Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&held).arg("64M").output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let mut q = std::process::Command::new("qemu-system-x86_64")
        .args(["-S", "-nodefaults", "-display", "none", "-drive"])
        .arg(format!("file={},if=none,id=d0,format=qcow2", held.display()))
        .args(["-device", "virtio-blk-pci,drive=d0"])
        .spawn()
        .unwrap();
    let _kill = KillOnDrop(q.id());
    // Wait (bounded) until QEMU holds the image's lock.
    let locked = wait_until(Duration::from_secs(30), || {
        let o = std::process::Command::new("qemu-img").arg("info").arg(&held).output().unwrap();
        !o.status.success()
    });
    assert!(locked, "QEMU did not lock {}", held.display());
    let out = bad("in-use", &held);
    assert!(out.contains("in use") || out.contains("another process"), "{out}");
    let _ = q.kill();
    let _ = q.wait();
}

struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = rustix::process::kill_process(rustix::process::Pid::from_raw(self.0 as i32).unwrap(), rustix::process::Signal::KILL);
    }
}

#[test]
fn the_customers_case_on_a_debian_guest_leaks_hangs_and_kdump_tools_dumps_sockets_and_dentries() {
    let _one = one_vm();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("customer");
    let out = run(&["run", "labs/customer-crash.yaml", "--out", dir.to_str().unwrap(), "--attribute", "off"]);
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{so}\nstderr:\n{se}");
    let r = report(&dir);
    assert_eq!(r["verdict"], "leak", "{r}");
    // The product's stand-in ran beside the module in both arms.
    for arm in ["module", "baseline"] {
        assert_eq!(setup_statuses(&dir.join(arm)), [Some(0); 2], "{arm}");
        let m = manifest(&dir.join(arm));
        let dsts: Vec<&str> = m["payload"].as_array().unwrap().iter().map(|e| e["dst"].as_str().unwrap()).collect();
        assert_eq!(dsts, ["/usr/local/bin/scanner", "/etc/scanner.conf", "/etc/systemd/system/scanner.service"], "{arm}");
    }
    // The module arm ran out of memory; the guest's own kdump-tools saved
    // the vmcore in /var/crash/<date>/, and crash read it.
    let crash = &r["crash"];
    assert_eq!(crash["exhaustion"]["reached"], true, "{crash}");
    assert_eq!(crash["dump"]["via"], "kdump-tools", "{crash}");
    let why = crash["dump"]["reason"].as_str().unwrap();
    assert!(why.contains("/var/crash/") && why.contains("/dump."), "{why}");
    let top: Vec<&str> = crash["triage"]["top_caches"].as_array().unwrap().iter().take(2).map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(top, ["sock_inode_cache", "dentry"], "the customer's kmem -s: {crash}");
    assert!(report(&dir.join("baseline"))["dump"].is_null());
}
