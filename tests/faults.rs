//! Faults a long lab must survive, on real QEMU: QEMU killed under the run,
//! the SSH connection dropped mid-workload, a kernel that panics while
//! booting, a module that panics the guest as it loads, a disk that fills
//! up while the vmcore is written, and lab values full of shell
//! metacharacters.

mod common;
use common::*;
use std::path::Path;
use std::time::Duration;

fn sample_count(run_dir: &Path) -> usize {
    event_names(run_dir).iter().filter(|x| *x == "sample").count()
}

#[test]
fn qemu_killed_under_the_run_is_an_infrastructure_error_that_keeps_the_samples() {
    let d = tempfile::tempdir().unwrap();
    let (mut child, run_dir) = long_run_with_samples(d.path(), 3);
    let pids = qemu_pids(&run_dir);
    assert_eq!(pids.len(), 1);
    unsafe { libc::kill(pids[0], libc::SIGKILL) };
    let status = exit_within(&mut child, Duration::from_secs(30), "QEMU was killed");
    assert_eq!(status.code(), Some(101));
    let r = report(&run_dir);
    assert_eq!(r["outcome"], "failed", "{r}");
    let err = r["error"].as_str().unwrap_or_default();
    assert!(err.contains("QEMU") || err.contains("guest died"), "the report says what happened: {err}");
    // What was collected before is all there, and the pages were written.
    let mem = std::fs::read_to_string(run_dir.join("samples/meminfo.csv")).unwrap();
    assert!(mem.lines().filter(|l| l.contains(",MemTotal,")).count() >= 3, "{mem}");
    assert!(run_dir.join("report.html").is_file());
    assert_eq!(event_names(&run_dir).last().map(String::as_str), Some("run-finished"));
}

/// Both arms of the leak lab lose every SSH session four seconds into the
/// workload: the sampler reconnects (with backoff), the gap is recorded, the
/// churn goes on in the guest, and the verdict still stands on the samples'
/// own times, with the gaps shown beside it.
#[test]
fn a_dropped_ssh_connection_is_reconnected_and_the_gap_recorded() {
    let d = tempfile::tempdir().unwrap();
    copy_khm(d.path(), false);
    // Kills every dropbear but the listener: each of kernlab's sessions drops.
    let drop = r#"sleep 4; for p in $(pidof dropbear); do [ "$p" = "$(cat /run/dropbear.pid)" ] || kill $p; done; sleep 600"#;
    let f = lab(
        d.path(),
        "drop",
        &format!(
            "name: drop\nmodules:\n  - source: khm\n    params: {{leak: 1}}\nworkload:\n  churn: {{fs: tmpfs, rate: 1000}}\n  commands:\n    - {}\n  duration: 20s\nmonitor:\n  interval: 1s\n  reclaim: true\nleak:\n  expect: leak\n  stop_early: false\n  attribute: off\n  baseline:\n    modules:\n      - source: khm\n        params: {{leak: 0}}\n",
            serde_json::to_string(drop).unwrap()
        ),
    );
    let run_dir = d.path().join("run");
    let out = run(&["run", f.to_str().unwrap(), "--out", run_dir.to_str().unwrap()]);
    let arm = run_dir.join("module");
    let ev = events(&arm);
    let names: Vec<&str> = ev.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(out.status.code(), Some(0), "{}\n{}\n{names:?}", text(&out.stdout), text(&out.stderr));
    let failed = names.iter().position(|n| *n == "sample-failed").unwrap_or_else(|| panic!("no gap recorded: {names:?}"));
    let resumed = names.iter().position(|n| *n == "sampling-resumed").unwrap_or_else(|| panic!("sampling never resumed: {names:?}"));
    assert!(failed < resumed);
    let after = names[resumed..].iter().filter(|n| **n == "sample").count();
    assert!(after >= 5, "samples after the reconnect: {after} ({names:?})");
    let gap = &ev[resumed];
    assert!(gap["gaps"].as_u64().unwrap() >= 1 && gap["secs"].as_f64().unwrap() < 15.0, "{gap}");
    let r = report(&run_dir);
    assert_eq!(r["verdict"], "leak", "{r}");
    assert!(r["module"]["sample_gaps"].as_u64().unwrap() >= 1, "the report counts the gap: {}", r["module"]);
    assert!(text(&out.stdout).contains("sample gaps: module"), "{}", text(&out.stdout));
}

#[test]
fn a_kernel_that_panics_while_booting_fails_fast_with_the_panic_text() {
    let d = tempfile::tempdir().unwrap();
    // 40 MiB is too little for the kernel and the initramfs: it panics out
    // of memory before /init runs.
    let f = lab(d.path(), "tiny", "name: tiny\nvm:\n  cmdline: ['mem=40M']\n  boot_timeout: 60s\nworkload:\n  commands: ['true']\n  duration: 2s\n");
    let run_dir = d.path().join("run");
    let start = std::time::Instant::now();
    let out = run(&["run", f.to_str().unwrap(), "--out", run_dir.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "{err}");
    assert!(start.elapsed() < Duration::from_secs(60), "took {:?}", start.elapsed());
    assert!(err.contains("panicked during boot") && err.contains("Kernel panic - not syncing"), "{err}");
    for p in qemu_pids(&run_dir) {
        assert!(wait_until(Duration::from_secs(5), || !qemu_alive(p)), "QEMU {p} left behind");
    }
}

/// A module whose init panics the kernel: the run fails at once (the
/// guest's loss ends the `insmod` wait), within 2 s of the panic by the
/// run's own clock, with the panic line, and not as an SSH error after a
/// timeout.
#[test]
fn a_module_that_panics_the_guest_at_insmod_fails_the_run_at_once_with_the_panic_line() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("panic")).unwrap();
    for f in ["panic.c", "Kbuild"] {
        std::fs::copy(repo("tests/payload/panic").join(f), d.path().join("panic").join(f)).unwrap();
    }
    let f = lab(d.path(), "panicky", "name: panicky\nmodules:\n  - source: panic\nworkload:\n  commands: ['sleep 600']\n  duration: 30s\n");
    let run_dir = d.path().join("run");
    let out = run(&["run", f.to_str().unwrap(), "--out", run_dir.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "{err}");
    let ev = events(&run_dir);
    let names: Vec<&str> = ev.iter().map(|e| e["event"].as_str().unwrap()).collect();
    // The guest's end as QEMU reports it (pvpanic's event where the machine
    // has pvpanic, else the reset that panic=-1 makes) and the run's error,
    // both stamped by the run.
    let lost = ev
        .iter()
        .find(|e| e["event"] == "qmp" && matches!(e["name"].as_str(), Some("GUEST_PANICKED" | "SHUTDOWN")))
        .unwrap_or_else(|| panic!("no QMP event for the panic: {names:?}"));
    let error = ev.iter().find(|e| e["event"] == "error").unwrap_or_else(|| panic!("no error event: {names:?}"));
    let gap = error["t"].as_f64().unwrap() - lost["t"].as_f64().unwrap();
    eprintln!("QMP {} at {} s, error at {} s: {gap:.3} s", lost["name"], lost["t"], error["t"]);
    assert!((0.0..2.0).contains(&gap), "the error came {gap:.3} s after the panic: {lost} {error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("Kernel panic - not syncing: kernlab test: panic at insmod"), "{message}");
    assert!(message.contains("while loading module `panic`"), "{message}");
    assert!(!message.contains("SSH") && !message.contains("ssh:"), "not an SSH error: {message}");
    assert!(err.contains("kernlab test: panic at insmod"), "{err}");
    assert!(!names.contains(&"module-loaded") && !names.contains(&"workload-started"), "{names:?}");
    assert_eq!(report(&run_dir)["outcome"], "failed");
    assert_no_qemu_left(&run_dir);
}

#[test]
fn a_full_disk_while_the_vmcore_is_written_is_a_clear_error_and_loses_nothing_else() {
    let d = tempfile::tempdir().unwrap();
    // The run directory on a 24 MiB tmpfs: room for the samples, not for
    // the host dump of a 512 MiB guest (~44 MiB).
    let mnt = d.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let st = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs"]).arg(&mnt).status().unwrap();
    assert!(st.success(), "mounting a tmpfs needs root (the test suite runs as root)");
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&mnt);
    let f = lab(
        d.path(),
        "full",
        "name: full\nexhaustion:\n  action: host-dump\n  crash: false\nworkload:\n  commands: ['sleep 4; echo c > /proc/sysrq-trigger']\n  duration: 60s\nmonitor:\n  interval: 1s\n",
    );
    let run_dir = mnt.join("run");
    let out = run(&["run", f.to_str().unwrap(), "--out", run_dir.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "{err}");
    assert!(err.contains("writing the host dump") && err.contains("partial file was removed"), "{err}");
    // No partial vmcore; samples, events and the report are whole.
    let vmcores: Vec<_> = walk(&run_dir).into_iter().filter(|p| p.ends_with("vmcore")).collect();
    assert!(vmcores.is_empty(), "{vmcores:?}");
    assert!(sample_count(&run_dir) >= 3);
    let r = report(&run_dir);
    assert!(r["error"].as_str().unwrap().contains("writing the host dump"), "{r}");
    assert_eq!(event_names(&run_dir).last().map(String::as_str), Some("run-finished"));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn lab_values_reach_the_guest_as_data_not_as_shell() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("note")).unwrap();
    for f in ["note.c", "Kbuild"] {
        std::fs::copy(repo("tests/payload/note").join(f), d.path().join("note").join(f)).unwrap();
    }
    let value = "a;b $(touch /tmp/pwned) `touch /tmp/pwned2` it's | & > /tmp/pwned3";
    let yaml = format!(
        "name: quoting\nmodules:\n  - source: note\n    params: {{note: {}}}\nworkload:\n  commands: ['cat /sys/module/note/parameters/note', 'ls /tmp/pwned /tmp/pwned2 /tmp/pwned3 2>&1 || true']\n  duration: 2s\n",
        serde_json::to_string(value).unwrap()
    );
    let f = lab(d.path(), "quoting", &yaml);
    let run_dir = d.path().join("run");
    let out = run(&["run", f.to_str().unwrap(), "--out", run_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let log = std::fs::read_to_string(run_dir.join("workload.log")).unwrap();
    let mut lines = log.lines();
    assert_eq!(lines.next(), Some(value), "the module got the value verbatim: {log}");
    let ls: Vec<&str> = lines.collect();
    assert_eq!(ls.len(), 3, "{log}");
    assert!(ls.iter().all(|l| l.contains("No such file")), "nothing ran: {log}");
}

/// Four VMs at once on a 2-core machine (a matrix of four one-VM cells with
/// four slots): every cell completes, and all four ran at the same time.
#[test]
fn four_vms_at_once_without_errors() {
    let d = tempfile::tempdir().unwrap();
    let mut labs = Vec::new();
    for name in ["a", "b", "c", "d"] {
        lab(d.path(), name, &format!("name: {name}\nworkload:\n  commands: ['sleep 600']\n  duration: 20s\nmonitor:\n  interval: 1s\n"));
        labs.push(format!("{name}.yaml"));
    }
    std::fs::write(d.path().join("m.yaml"), format!("name: four\nlabs: [{}]\nkernels: [debian-6.1.0-54-cloud-amd64]\n", labs.join(", "))).unwrap();
    let out_dir = d.path().join("out");
    let o = run(&["matrix", d.path().join("m.yaml").to_str().unwrap(), "--jobs", "4", "--out", out_dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", text(&o.stdout), text(&o.stderr));
    let mut spans = Vec::new();
    for e in std::fs::read_dir(out_dir.join("cells")).unwrap() {
        let dir = e.unwrap().path();
        let r = report(&dir);
        assert_eq!(r["outcome"], "completed", "{r}");
        assert_eq!(r["sample_gaps"], 0, "{}: {r}", dir.display());
        let ev = events(&dir);
        let at = |name: &str| {
            let w = ev.iter().find(|e| e["event"] == name).and_then(|e| e["wall"].as_str()).unwrap();
            time::OffsetDateTime::parse(w, &time::format_description::well_known::Rfc3339).unwrap()
        };
        spans.push((at("workload-started"), at("run-finished")));
    }
    assert_eq!(spans.len(), 4);
    let latest_start = spans.iter().map(|s| s.0).max().unwrap();
    let earliest_end = spans.iter().map(|s| s.1).min().unwrap();
    assert!(latest_start < earliest_end, "the four workloads never ran all at once: {spans:?}");
}
