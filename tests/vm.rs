//! Integration tests on the real thing: Debian's kernel booted under QEMU
//! (TCG here), real QMP, real SSH into dropbear in the guest. Each test
//! checks that no QEMU process outlives its run.

mod common;
use common::*;
use kernlab::sample::rows::{self, MeminfoRow};
use std::path::Path;
use std::time::Duration;

#[test]
fn smoke_lab_end_to_end() {
    let d = tempfile::tempdir().unwrap();
    let run_dir = d.path().join("smoke");
    let out = run(&["run", "labs/smoke.yaml", "--out", run_dir.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("lab smoke on debian-6.1.0-54-cloud-amd64") && stdout.contains("completed"), "{stdout}");

    // The run directory has every artifact, private.
    for f in ["manifest.json", "lab.yaml", "console.log", "events.jsonl", "report.json", "workload.log", "samples/slabinfo.csv", "samples/meminfo.csv", "samples/dentry-state.csv", "samples/balloon.csv"] {
        assert!(run_dir.join(f).is_file(), "missing {f}");
    }
    assert_eq!(mode(&run_dir), 0o700);
    for f in ["manifest.json", "events.jsonl", "report.json", "samples/meminfo.csv"] {
        assert_eq!(mode(&run_dir.join(f)), 0o600, "{f}");
    }

    // Manifest: kernel hash, image hash, QEMU version and argv, accel and why.
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("manifest.json")).unwrap()).unwrap();
    // The SSH keys: this run's own after a cold boot; a restored run uses
    // its snapshot's, private in the cache.
    let snap = &m["boot"]["snapshot"];
    let keys = match snap["mode"].as_str() {
        Some("restored") => Path::new(snap["entry"].as_str().unwrap()).join("keys"),
        Some("saved" | "cold") => run_dir.join("keys"),
        other => panic!("boot.snapshot.mode {other:?}"),
    };
    for f in ["client_ed25519", "guest_host_ed25519"] {
        assert_eq!(mode(&keys.join(f)), 0o600, "{}", keys.join(f).display());
    }
    assert_eq!(m["kernel"]["package_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(m["kernel"]["release"], "6.1.0-54-cloud-amd64");
    assert_eq!(m["image_sha256"].as_str().unwrap().len(), 64);
    assert!(m["qemu_version"].as_str().unwrap().starts_with("QEMU emulator version"));
    let argv: Vec<String> = serde_json::from_value(m["qemu_argv"].clone()).unwrap();
    assert!(argv.iter().any(|a| a.contains("hostfwd=tcp:127.0.0.1:")), "{argv:?}");
    // QMP listens on a socket inside the private run directory, nowhere
    // else: a bare name, relative to QEMU's working directory (the run
    // directory), or a path under it.
    let qmp = argv.iter().position(|a| a == "-qmp").map(|i| argv[i + 1].clone()).unwrap();
    let sock = Path::new(qmp.strip_prefix("unix:").and_then(|s| s.split(',').next()).unwrap());
    let bare = sock.components().count() == 1 && sock.is_relative();
    assert!(bare || sock.starts_with(std::fs::canonicalize(&run_dir).unwrap()) || sock.starts_with(&run_dir), "{qmp}");
    assert!(run_dir.join(sock).starts_with(&run_dir), "{qmp}");
    assert!(m["accel"]["accel"] == "tcg" || m["accel"]["accel"] == "kvm");
    assert!(!m["accel"]["reason"].as_str().unwrap().is_empty());

    // Lifecycle events in order.
    let names = event_names(&run_dir);
    let pos = |n: &str| names.iter().position(|x| x == n).unwrap_or_else(|| panic!("no {n} event in {names:?}"));
    assert!(pos("run-started") < pos("kernel-ready"));
    assert!(pos("kernel-ready") < pos("image-ready"));
    assert!(pos("qemu-started") < pos("ssh-ready"));
    assert!(pos("ssh-ready") < pos("setup-command"));
    assert!(pos("workload-started") < pos("sample"));
    assert!(pos("sample") < pos("teardown"));
    assert!(pos("teardown") < pos("run-finished"));

    // Setup ran in the guest: the resolved uname is the Debian kernel's.
    let ev = events(&run_dir);
    let setups: Vec<_> = ev.iter().filter(|e| e["event"] == "setup-command").collect();
    assert_eq!(setups.len(), 2);
    assert!(setups.iter().all(|e| e["status"] == 0));

    // Samples: 10 s at 1 s → 11 or so, each series with rows from the guest.
    let rep = report(&run_dir);
    assert_eq!(rep["outcome"], "completed");
    assert_eq!(rep["exit_code"], 0);
    let n = rep["samples"].as_u64().unwrap();
    assert!((8..=14).contains(&n), "samples {n}");
    let slab = std::fs::read_to_string(run_dir.join("samples/slabinfo.csv")).unwrap();
    assert!(slab.lines().any(|l| l.contains(",dentry,")), "no dentry cache rows");
    let mem = rows::read::<MeminfoRow>(&run_dir.join("samples")).unwrap();
    let total: Vec<u64> = mem.iter().filter(|r| r.key == "MemTotal").map(|r| r.bytes).collect();
    assert_eq!(total.len() as u64, n);
    // A 512 MiB guest reports a MemTotal a little under 512 MiB.
    assert!(total[0] > 400 << 20 && total[0] <= 512 << 20, "MemTotal {}", total[0]);
    let dentry = std::fs::read_to_string(run_dir.join("samples/dentry-state.csv")).unwrap();
    assert_eq!(dentry.lines().count() as u64, n + 1);
    // The workload created 200 files on tmpfs: shmem inodes and dentries grew.
    let growth = rep["top_slab_growth"].as_array().unwrap();
    assert!(growth.iter().any(|g| g["cache"] == "shmem_inode_cache" && g["delta_objs"].as_i64().unwrap() >= 150), "{growth:?}");
    // Host-side balloon figures were sampled over QMP.
    let balloon = std::fs::read_to_string(run_dir.join("samples/balloon.csv")).unwrap();
    assert!(balloon.lines().any(|l| l.contains("stat-total-memory")), "{balloon}");

    // The console shows the guest's init (for a restored run, the boot that
    // was saved), and QEMU is gone.
    let console = std::fs::read_to_string(run_dir.join("console.log")).unwrap();
    assert!(console.contains("kernlab: sshd started"), "{console}");
    assert_no_qemu_left(&run_dir);
}

#[test]
fn sigint_mid_run_keeps_samples_and_leaves_no_qemu() {
    let d = tempfile::tempdir().unwrap();
    let (mut child, run_dir) = long_run_with_samples(d.path(), 3);
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = exit_within(&mut child, Duration::from_secs(30), "SIGINT");
    assert_eq!(status.code(), Some(130));
    let rep = report(&run_dir);
    assert_eq!(rep["outcome"], "interrupted");
    assert!(rep["samples"].as_u64().unwrap() >= 3);
    let mem = std::fs::read_to_string(run_dir.join("samples/meminfo.csv")).unwrap();
    assert!(mem.lines().filter(|l| l.contains(",MemAvailable,")).count() >= 3);
    let names = event_names(&run_dir);
    assert!(names.contains(&"interrupted".to_string()) && names.contains(&"teardown".to_string()), "{names:?}");
    assert_no_qemu_left(&run_dir);
}

#[test]
fn a_file_that_is_not_a_kernel_fails_fast_with_the_reason() {
    // A local kernel directory whose vmlinuz is garbage, with the real
    // module tree beside it so the image builds.
    let d = tempfile::tempdir().unwrap();
    let fetched = run(&["kernel", "fetch", "debian-6.1.0-54-cloud-amd64"]);
    assert_eq!(fetched.status.code(), Some(0), "{}", text(&fetched.stderr));
    let root = text(&fetched.stdout).split_whitespace().nth(3).unwrap().to_string();
    let kroot = d.path().join("fake");
    std::fs::create_dir_all(kroot.join("boot")).unwrap();
    std::fs::write(kroot.join("boot/vmlinuz-6.1.0-54-cloud-amd64"), vec![0x5a; 1 << 20]).unwrap();
    std::os::unix::fs::symlink(Path::new(&root).join("lib"), kroot.join("lib")).unwrap();
    let kdir = d.path().join("kernels");
    std::fs::create_dir(&kdir).unwrap();
    std::fs::write(kdir.join("fake.yaml"), format!("source:\n  local:\n    dir: {}\n", kroot.display())).unwrap();
    let f = lab(d.path(), "fake", "name: fake\nkernel: fake\n");
    let run_dir = d.path().join("run");
    let start = std::time::Instant::now();
    let out = run(&["--kernels", kdir.to_str().unwrap(), "run", f.to_str().unwrap(), "--out", run_dir.to_str().unwrap(), "-q"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "{err}");
    assert!(start.elapsed() < Duration::from_secs(30), "took {:?}", start.elapsed());
    assert!(err.contains("failed to boot kernel `fake`") && err.contains("QEMU exited"), "{err}");
    // QEMU's own complaint is shown.
    assert!(err.contains("--- QEMU ---"), "{err}");
    assert_eq!(report(&run_dir)["outcome"], "failed");
    assert_no_qemu_left(&run_dir);
}

#[test]
fn two_runs_in_parallel_share_a_fresh_cache_without_colliding() {
    // Both runs fetch the same kernel into an empty cache at once: the lock
    // makes one download and the other wait; ports, sockets and directories
    // are per run.
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let f = lab(d.path(), "par", "name: par\nworkload:\n  commands: ['echo hello; sleep 1']\n  duration: 3s\nmonitor:\n  interval: 1s\n");
    let spawn = |i: u32| {
        kernlab()
            .env("KERNLAB_CACHE", &cache)
            .args(["run", f.to_str().unwrap(), "--out", d.path().join(format!("run{i}")).to_str().unwrap(), "-q"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(1), spawn(2));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(a.status.code(), Some(0), "{}", text(&a.stderr));
    assert_eq!(b.status.code(), Some(0), "{}", text(&b.stderr));
    let m = |i: u32| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.path().join(format!("run{i}/manifest.json"))).unwrap()).unwrap()
    };
    let (m1, m2) = (m(1), m(2));
    assert_ne!(m1["ssh_port"], m2["ssh_port"]);
    assert_eq!(m1["kernel"]["package_sha256"], m2["kernel"]["package_sha256"]);
    assert_eq!(m1["image_sha256"], m2["image_sha256"], "the image build is deterministic");
    // Exactly one kernel entry and no leftover scratch directories.
    let entries: Vec<_> = std::fs::read_dir(cache.join("kernels")).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n != "by-name").collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(std::fs::read_dir(cache.join("tmp")).unwrap().count(), 0);
    for i in [1, 2] {
        assert_eq!(std::fs::read_to_string(d.path().join(format!("run{i}/workload.log"))).unwrap(), "hello\n");
        assert_no_qemu_left(&d.path().join(format!("run{i}")));
    }
    // Different keys per run.
    let k1 = std::fs::read(d.path().join("run1/keys/client_ed25519")).unwrap();
    let k2 = std::fs::read(d.path().join("run2/keys/client_ed25519")).unwrap();
    assert_ne!(k1, k2);
}

#[test]
fn missing_qemu_and_failing_setup_are_clear_infrastructure_errors() {
    let d = tempfile::tempdir().unwrap();
    let out = kernlab()
        .env("KERNLAB_QEMU", "/nonexistent/qemu-system-x86_64")
        .args(["run", "labs/smoke.yaml", "--out", d.path().join("noqemu").to_str().unwrap(), "-q"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "{err}");
    assert!(err.contains("/nonexistent/qemu-system-x86_64") && err.contains("qemu-system-x86"), "{err}");

    let f = lab(d.path(), "setup", "name: setup\nsetup:\n  - 'echo about to fail >&2; exit 3'\n");
    let run_dir = d.path().join("setup-run");
    let out = run(&["run", f.to_str().unwrap(), "--out", run_dir.to_str().unwrap(), "-q"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "{err}");
    assert!(err.contains("setup command 0") && err.contains("exited with 3") && err.contains("about to fail"), "{err}");
    assert_no_qemu_left(&run_dir);
}

#[test]
fn kill_9_of_kernlab_takes_qemu_with_it_and_keeps_every_sample() {
    let d = tempfile::tempdir().unwrap();
    let (mut child, run_dir) = long_run_with_samples(d.path(), 3);
    child.kill().unwrap(); // SIGKILL: no handler, no teardown
    child.wait().unwrap();
    let pids = qemu_pids(&run_dir);
    assert!(wait_until(Duration::from_secs(10), || pids.iter().all(|p| !qemu_alive(*p))), "QEMU outlived a killed kernlab");
    // Every sample up to the kill is complete on disk: whole CSV rows, one
    // MemTotal row per sample event, and parseable events.
    let samples = event_names(&run_dir).iter().filter(|x| *x == "sample").count();
    let mem = std::fs::read_to_string(run_dir.join("samples/meminfo.csv")).unwrap();
    assert!(mem.ends_with('\n'));
    assert_eq!(rows::parse::<MeminfoRow>(&mem).count(), mem.lines().count() - 1, "torn row in meminfo.csv");
    let rows = mem.lines().filter(|l| l.contains(",MemTotal,")).count();
    assert!(rows >= samples && rows >= 3, "{rows} MemTotal rows for {samples} sample events");
}

#[test]
fn a_second_sigint_tears_down_at_once() {
    let d = tempfile::tempdir().unwrap();
    let (mut child, run_dir) = long_run_with_samples(d.path(), 2);
    let pid = child.id() as i32;
    // Two separate signals (not coalesced into one pending SIGINT).
    unsafe { libc::kill(pid, libc::SIGINT) };
    std::thread::sleep(Duration::from_millis(20));
    unsafe { libc::kill(pid, libc::SIGINT) };
    let status = exit_within(&mut child, Duration::from_secs(10), "a second SIGINT");
    assert_eq!(status.code(), Some(130));
    for p in qemu_pids(&run_dir) {
        assert!(wait_until(Duration::from_secs(5), || !qemu_alive(p)), "QEMU {p} left behind");
    }
}
