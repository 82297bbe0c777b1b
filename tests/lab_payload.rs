//! The lab's `payload:` on the real thing: a C program (built on the host,
//! static), a directory with a Makefile (built) and a config file with its
//! mode (copied) are in the guest before `setup`, on a cold boot (in the
//! initrd) and on the guest that saves a snapshot and the one restored from
//! it (uploaded over SSH); and the bad inputs: a missing `src`, a compile
//! error, a relative `dst`, each the lab's error (exit 2) at its line.

mod common;
use common::*;
use kernlab::cache::Cache;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One VM at a time: the machine is small.
static ONE_VM_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_vm() -> std::sync::MutexGuard<'static, ()> {
    ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The test payload (`tests/payload/files`) copied next to a lab in `dir`,
/// with the config file's mode set (git keeps only 644 and 755).
fn payload_files(dir: &Path) {
    let src = repo("tests/payload/files");
    for f in ["prog.c", "app.conf", "broken.c"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    std::fs::create_dir_all(dir.join("tools")).unwrap();
    for f in ["Makefile", "hello.c"] {
        std::fs::copy(src.join("tools").join(f), dir.join("tools").join(f)).unwrap();
    }
    std::fs::set_permissions(dir.join("app.conf"), std::fs::Permissions::from_mode(0o640)).unwrap();
}

/// A lab whose setup runs the payload's programs and checks the config's
/// contents and mode, and whose workload runs the program again. `vm` is
/// the `vm:` section's body.
fn payload_lab(dir: &Path, name: &str, vm: &str) -> PathBuf {
    payload_files(dir);
    lab(
        dir,
        name,
        &format!(
            "name: {name}
vm:
{vm}payload:
  - {{src: prog.c, dst: /usr/local/bin/prog}}
  - {{src: app.conf, dst: /etc/app/app.conf}}
  - {{src: tools, dst: /opt/tools}}
setup:
  - /usr/local/bin/prog setup
  - ls -ln /etc/app/app.conf | grep -q '^-rw-r-----' && grep -qx answer=42 /etc/app/app.conf
  - /opt/tools/hello
workload:
  commands: ['/usr/local/bin/prog workload; /opt/tools/hello']
  duration: 2s
monitor:
  interval: 1s
  sources: [meminfo]
"
        ),
    )
}

fn manifest(run_dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run_dir.join("manifest.json")).unwrap()).unwrap()
}

/// Runs the lab into `dir/<out>`; it must succeed, with the payload's
/// programs' output in the workload's log and the entries in the manifest.
fn run_payload_lab(lab: &Path, dir: &Path, out: &str) -> PathBuf {
    let run_dir = dir.join(out);
    let o = run(&["run", lab.to_str().unwrap(), "--out", run_dir.to_str().unwrap(), "-q"]);
    assert_eq!(o.status.code(), Some(0), "{out}: {}\n{:?}", text(&o.stderr), event_names(&run_dir));
    for pid in qemu_pids(&run_dir) {
        assert!(!qemu_alive(pid), "QEMU {pid} outlived {out}");
    }
    let ev = events(&run_dir);
    let setup: Vec<_> = ev.iter().filter(|e| e["event"] == "setup-command").map(|e| e["status"].as_i64()).collect();
    assert_eq!(setup, [Some(0); 3], "{out}: {ev:?}");
    let log = std::fs::read_to_string(run_dir.join("workload.log")).unwrap();
    assert!(log.contains("payload-prog workload answer=42") && log.contains("payload-make-hello"), "{out}: {log}");
    let m = manifest(&run_dir);
    let entries = m["payload"].as_array().unwrap_or_else(|| panic!("{out}: no payload in {m}"));
    let summary: Vec<(&str, &str, bool)> = entries.iter().map(|e| (e["src"].as_str().unwrap(), e["dst"].as_str().unwrap(), e["built"].as_bool().unwrap())).collect();
    assert_eq!(summary, [("prog.c", "/usr/local/bin/prog", true), ("app.conf", "/etc/app/app.conf", false), ("tools", "/opt/tools", true)]);
    let conf = kernlab::util::fsx::sha256_bytes(&std::fs::read(dir.join("app.conf")).unwrap());
    assert_eq!(entries[1]["sha256"], conf.as_str());
    assert!(entries.iter().all(|e| e["sha256"].as_str().unwrap().len() == 64));
    run_dir
}

#[test]
fn payload_is_in_a_cold_booted_guest_before_setup() {
    let _one = one_vm();
    let d = tempfile::tempdir().unwrap();
    let lab = payload_lab(d.path(), "payload-cold", "  snapshot: off\n");
    let run_dir = run_payload_lab(&lab, d.path(), "cold");
    assert_eq!(manifest(&run_dir)["boot"]["snapshot"]["mode"], "cold");
}

#[test]
fn payload_is_uploaded_to_the_guest_that_saves_a_snapshot_and_the_restored_one() {
    let _one = one_vm();
    let d = tempfile::tempdir().unwrap();
    // A kernel command-line word of its own: this test's snapshot is its own.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let lab = payload_lab(d.path(), "payload-snap", &format!("  cmdline: [kernlab.test={nanos}]\n"));
    let first = run_payload_lab(&lab, d.path(), "first");
    let snap = manifest(&first)["boot"]["snapshot"].clone();
    let key = snap["key"].as_str().map(str::to_string);
    let _cleanup = Remove(key.iter().map(|k| kernlab::snapshot::entry_dir(&Cache::from_env().unwrap(), k)).collect());
    assert_eq!(snap["mode"], "saved", "{snap}");
    let second = run_payload_lab(&lab, d.path(), "second");
    assert_eq!(manifest(&second)["boot"]["snapshot"]["mode"], "restored");
}

/// Removes the snapshot entries a test made, however it ends.
struct Remove(Vec<PathBuf>);

impl Drop for Remove {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A lab with one payload entry; the run's exit code and its output.
fn bad_run(dir: &Path, entry: &str) -> (Option<i32>, String, PathBuf) {
    payload_files(dir);
    let lab = lab(dir, "bad", &format!("name: bad\npayload:\n  - {entry}\nsetup:\n  - 'true'\n"));
    let run_dir = dir.join("run");
    let o = run(&["run", lab.to_str().unwrap(), "--out", run_dir.to_str().unwrap(), "-q"]);
    (o.status.code(), format!("{}{}", text(&o.stdout), text(&o.stderr)), lab)
}

#[test]
fn a_missing_payload_file_is_the_labs_error_at_its_line() {
    let d = tempfile::tempdir().unwrap();
    let (code, out, lab) = bad_run(d.path(), "{src: gone.c, dst: /usr/local/bin/gone}");
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains(&format!("{}:3:11: payload[0].src: `gone.c` does not exist", lab.display())), "{out}");
    assert!(!d.path().join("run").exists(), "nothing started: {out}");
    // `kernlab validate` says the same.
    let o = run(&["validate", lab.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("payload[0].src: `gone.c` does not exist"), "{}", text(&o.stderr));
}

#[test]
fn a_compile_error_is_the_labs_error_with_the_compilers_message() {
    let d = tempfile::tempdir().unwrap();
    let (code, out, lab) = bad_run(d.path(), "{src: broken.c, dst: /usr/local/bin/broken}");
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains(&format!("{}:3:11: payload[0].src: building", lab.display())), "{out}");
    assert!(out.contains("broken.c:3:") && out.contains("error") && out.contains("payload_undeclared_name"), "{out}");
    let names = event_names(&d.path().join("run"));
    assert!(!names.iter().any(|n| n == "qemu-started" || n == "kernel-ready"), "failed before the kernel: {names:?}");
    assert_eq!(report(&d.path().join("run"))["exit_code"], 2);
}

#[test]
fn a_relative_dst_is_the_labs_error_at_its_line() {
    let d = tempfile::tempdir().unwrap();
    let (code, out, lab) = bad_run(d.path(), "{src: app.conf, dst: etc/app.conf}");
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains(&format!("{}:3:26: payload[0].dst: must be an absolute guest path", lab.display())), "{out}");
}
