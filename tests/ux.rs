//! What people and scripts see: `kernlab doctor` on this machine and on one
//! without QEMU, `--message-format json` of a run (one real VM) and of a
//! matrix (no VM: its kernel has left the archive), and a piped run's stderr
//! free of progress-bar control sequences.

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// The JSON lines of stdout, each parsed; a line that is not JSON fails.
fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l:?}\n{stdout}")))
        .collect()
}

fn no_terminal_control(stderr: &str) {
    assert!(!stderr.contains('\r'), "carriage return in piped stderr:\n{stderr:?}");
    assert!(!stderr.contains("\x1b["), "ANSI escape in piped stderr:\n{stderr:?}");
}

#[test]
fn doctor_on_this_machine_says_tcg_and_why_and_exits_0() {
    let out = run(&["doctor"]);
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{so}\nstderr:\n{se}");
    let accel = so.lines().find(|l| l.contains("accelerator")).unwrap_or_else(|| panic!("no accelerator line:\n{so}"));
    let loaded = |m: &str| Path::new("/sys/module").join(m).exists();
    if loaded("kvm_pvm") && !loaded("kvm_intel") && !loaded("kvm_amd") {
        assert!(accel.contains("TCG") && accel.contains("kvm_pvm") && accel.contains("warn"), "{accel}");
    }
    for name in ["qemu", "kernel", "cache", "modules", "dumps", "crash", "disk"] {
        assert!(so.lines().any(|l| l.split_whitespace().nth(1) == Some(name)), "no `{name}` check:\n{so}");
    }
    assert!(so.contains("yes: labs/leak-lab.yaml can run here"), "{so}");
    no_terminal_control(&so);

    let out = run(&["doctor", "--message-format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let v = json_lines(&text(&out.stdout));
    assert_eq!(v.len(), 1, "one JSON object");
    assert_eq!(v[0]["schema"], "kernlab.doctor/1");
    assert_valid_record("kernlab doctor's JSON", &v[0]);
    assert_eq!(v[0]["can_run"], true);
    let checks = v[0]["checks"].as_array().unwrap();
    let a = checks.iter().find(|c| c["name"] == "accelerator").unwrap();
    assert!(["ok", "warn"].contains(&a["status"].as_str().unwrap()), "{a}");
}

/// A PATH with every program of this machine's PATH but QEMU's: a folder
/// of links.
fn path_without_qemu(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let path = std::env::var_os("PATH").unwrap();
    for d in std::env::split_paths(&path) {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.filter_map(|e| e.ok()) {
            let name = e.file_name();
            if name.to_string_lossy().starts_with("qemu-system") || bin.join(&name).symlink_metadata().is_ok() {
                continue;
            }
            let _ = std::os::unix::fs::symlink(e.path(), bin.join(&name));
        }
    }
    bin
}

#[test]
fn doctor_without_qemu_says_missing_and_how_to_install_it() {
    let d = tempfile::tempdir().unwrap();
    let bin = path_without_qemu(d.path());
    let out = kernlab().env("PATH", &bin).env_remove("KERNLAB_QEMU").arg("doctor").output().unwrap();
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(101), "stdout:\n{so}\nstderr:\n{se}");
    let qemu = so.lines().position(|l| l.contains("MISSING") && l.contains("qemu")).unwrap_or_else(|| panic!("{so}"));
    assert!(so.lines().nth(qemu + 1).unwrap().contains("fix: apt-get install -y qemu-system-x86"), "{so}");
    assert!(so.contains("no: labs/leak-lab.yaml cannot run here"), "{so}");
    assert!(so.contains("to install every package named above: apt-get install -y qemu-system-x86"), "{so}");

    let out = kernlab().env("PATH", &bin).env_remove("KERNLAB_QEMU").args(["doctor", "--message-format", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(101));
    let v = &json_lines(&text(&out.stdout))[0];
    assert_valid_record("kernlab doctor's JSON without QEMU", v);
    assert_eq!((v["can_run"].as_bool(), v["exit_code"].as_i64()), (Some(false), Some(101)));
    let q = v["checks"].as_array().unwrap().iter().find(|c| c["name"] == "qemu").unwrap();
    assert_eq!((q["status"].as_str(), q["fix"].as_str()), (Some("missing"), Some("apt-get install -y qemu-system-x86")));
}

#[test]
fn run_json_is_only_event_lines_and_a_pipe_gets_no_progress() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("run");
    let out = run(&["run", "labs/smoke.yaml", "--message-format", "json", "--out", dir.to_str().unwrap()]);
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{so}\nstderr:\n{se}");
    let lines = json_lines(&so);
    assert!(lines.len() > 10, "{so}");
    for (i, l) in lines.iter().enumerate() {
        assert_valid_record(&format!("stdout line {}", i + 1), l);
        assert_eq!(l["schema"], "kernlab.event/2", "{l}");
        assert!(l["t"].is_f64() || l["t"].is_u64(), "{l}");
        assert!(l["event"].is_string() && l["wall"].is_string(), "{l}");
        assert!(l.get("cell").is_none() && l.get("arm").is_none(), "a plain run is neither a cell nor an arm: {l}");
    }
    let names: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(names.first(), Some(&"run-started"), "{names:?}");
    assert_eq!(names.last(), Some(&"run-finished"), "{names:?}");
    assert!(names.contains(&"accel-chosen") && names.contains(&"sample"), "{names:?}");
    assert_eq!(lines.last().unwrap()["exit_code"], 0);
    // stdout carries what events.jsonl holds, line for line; the run's
    // records fit their schemas.
    assert_eq!(events(&dir), lines);
    assert_eq!(assert_valid_records(&dir), 2 + lines.len());
    // The human side went to stderr, as plain lines.
    assert!(se.contains("lab smoke on debian-6.1.0-54-cloud-amd64") && se.contains("run directory:"), "{se}");
    no_terminal_control(&se);
}

#[test]
fn matrix_json_lines_carry_the_cell() {
    let d = tempfile::tempdir().unwrap();
    let kdir = d.path().join("kernels");
    std::fs::create_dir(&kdir).unwrap();
    std::fs::write(kdir.join("gone-6.1.0-999.yaml"), "source:\n  debian:\n    package: linux-image-6.1.0-999-cloud-amd64\n").unwrap();
    lab(d.path(), "quick", "name: quick\nworkload:\n  commands: ['echo hi']\n  duration: 3s\n");
    std::fs::write(d.path().join("m.yaml"), "name: m\nlabs: [quick.yaml]\nkernels: ['gone-*']\n").unwrap();
    let dir = d.path().join("out");
    let m = d.path().join("m.yaml");
    let out = run(&["--kernels", kdir.to_str().unwrap(), "matrix", m.to_str().unwrap(), "--out", dir.to_str().unwrap(), "--message-format", "json"]);
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(101), "stdout:\n{so}\nstderr:\n{se}");
    let lines = json_lines(&so);
    let names: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(names.first(), Some(&"matrix-started"), "{names:?}");
    assert_eq!(names.last(), Some(&"matrix-finished"), "{names:?}");
    for want in ["cell-started", "run-started", "error", "run-finished", "cell-finished"] {
        assert!(names.contains(&want), "no {want}: {names:?}");
    }
    for l in &lines[1..lines.len() - 1] {
        assert_eq!(l["cell"], "quick@gone-6.1.0-999", "{l}");
    }
    let finished = lines.iter().find(|l| l["event"] == "cell-finished").unwrap();
    assert_eq!(finished["exit_code"], 101);
    assert!(finished["error"].as_str().unwrap().contains("linux-image-6.1.0-999-cloud-amd64"), "{finished}");
    assert_eq!(lines.last().unwrap()["exit_code"], 101);
    // The table went to stderr.
    assert!(se.contains("failed (101)"), "{se}");
    no_terminal_control(&se);
}

#[test]
fn verbose_and_quiet_do_not_go_together() {
    let out = run(&["-q", "-v", "doctor"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn ab_lab_json_stream_marks_arms_and_ends_with_the_verdict() {
    // Both arms fail at the kernel fetch (no VM): the stream's shape is the same.
    let d = tempfile::tempdir().unwrap();
    let kdir = d.path().join("kernels");
    std::fs::create_dir(&kdir).unwrap();
    std::fs::write(kdir.join("gone-6.1.0-999.yaml"), "source:\n  debian:\n    package: linux-image-6.1.0-999-cloud-amd64\n").unwrap();
    let f = lab(
        d.path(),
        "ab",
        "name: ab\nkernel: gone-6.1.0-999\nworkload:\n  commands: ['true']\n  duration: 20s\nmonitor:\n  interval: 1s\nleak:\n  expect: no-leak\n",
    );
    let dir = d.path().join("run");
    let out = run(&["--kernels", kdir.to_str().unwrap(), "run", f.to_str().unwrap(), "--out", dir.to_str().unwrap(), "--message-format", "json"]);
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(101), "stdout:\n{so}\nstderr:\n{se}");
    let lines = json_lines(&so);
    let (first, last) = (&lines[0], lines.last().unwrap());
    assert_eq!((first["event"].as_str(), first.get("arm")), (Some("run-started"), None), "{first}");
    assert_eq!((last["event"].as_str(), last.get("arm"), last["exit_code"].as_i64()), (Some("run-finished"), None, Some(101)), "{last}");
    let verdict = &lines[lines.len() - 2];
    assert_eq!(verdict["event"], "leak-verdict", "{verdict}");
    assert!(verdict["verdict"].is_null() && verdict["expect"] == "no-leak", "{verdict}");
    for arm in ["module", "baseline"] {
        let mine: Vec<&str> = lines.iter().filter(|l| l["arm"] == arm).map(|l| l["event"].as_str().unwrap()).collect();
        assert_eq!(mine.first(), Some(&"run-started"), "{arm}: {mine:?}");
        assert_eq!(mine.last(), Some(&"run-finished"), "{arm}: {mine:?}");
    }
    assert!(se.contains("no verdict (an arm failed)"), "{se}");
    no_terminal_control(&se);
}

/// `--color`: `always` colours a piped stderr (and wins over `NO_COLOR`),
/// `never` and the default on a pipe do not. The run fails at the kernel
/// fetch (no VM), which prints an error line: red when colour is on.
#[test]
fn color_always_colours_a_pipe_and_never_does_not() {
    let d = tempfile::tempdir().unwrap();
    let kdir = d.path().join("kernels");
    std::fs::create_dir(&kdir).unwrap();
    std::fs::write(kdir.join("gone-6.1.0-999.yaml"), "source:\n  debian:\n    package: linux-image-6.1.0-999-cloud-amd64\n").unwrap();
    let f = lab(d.path(), "gone", "name: gone\nkernel: gone-6.1.0-999\nworkload:\n  commands: ['true']\n  duration: 2s\n");
    let stderr_with = |color: &str, k: usize| {
        let dir = d.path().join(format!("run-{k}"));
        let out = kernlab()
            .args(["--kernels", kdir.to_str().unwrap(), "--color", color, "run", f.to_str().unwrap(), "--out", dir.to_str().unwrap()])
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(101), "--color {color}: {}", text(&out.stderr));
        text(&out.stderr)
    };
    let always = stderr_with("always", 1);
    assert!(always.contains("\x1b["), "no ANSI escape with --color always:\n{always}");
    no_terminal_control(&stderr_with("never", 2));
    no_terminal_control(&stderr_with("auto", 3));
}

/// `kernlab completions SHELL` prints a script that knows the commands and
/// their flags, for bash, zsh and fish.
#[test]
fn completions_know_the_commands_and_flags() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        let so = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out.stderr));
        for word in ["calibrate", "bisect", "matrix", "full-length", "message-format", "color"] {
            assert!(so.contains(word), "{shell} completions lack {word}");
        }
    }
    let out = run(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "an unknown shell is a usage error");
}

/// Every command's `--help` says what it writes or prints and its exit
/// codes (issue 25: the usual habits).
#[test]
fn every_commands_help_says_what_it_writes_and_its_exit_codes() {
    let cmds = ["run", "matrix", "merge", "validate", "new", "kernel", "image", "triage", "report", "doctor", "calibrate", "bisect", "bench", "shell", "completions"];
    for cmd in cmds {
        let out = run(&[cmd, "--help"]);
        let help = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{cmd} --help: {}", text(&out.stderr));
        let lower = help.to_lowercase();
        assert!(lower.contains("exit"), "`kernlab {cmd} --help` does not give its exit codes:\n{help}");
        assert!(["writes", "write ", "prints", "print "].iter().any(|w| lower.contains(w)), "`kernlab {cmd} --help` does not say what it writes or prints:\n{help}");
    }
    // And the list is every command there is.
    let top = text(&run(&["--help"]).stdout);
    let listed: Vec<&str> = top.lines().skip_while(|l| !l.starts_with("Commands:")).skip(1).take_while(|l| l.starts_with("  ")).filter_map(|l| l.split_whitespace().next()).filter(|c| *c != "help").collect();
    assert_eq!(listed.iter().copied().collect::<std::collections::BTreeSet<_>>(), cmds.into_iter().collect(), "{top}");
}

/// stdout of a command under `--json`: exactly one JSON document, parsed.
fn one_json(args: &[&str], code: i32) -> serde_json::Value {
    let out = run(args);
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(code), "{args:?}: stdout:\n{so}\nstderr:\n{se}");
    let v = json_lines(&so);
    assert_eq!(v.len(), 1, "{args:?}: not one JSON document on stdout:\n{so}");
    no_terminal_control(&so);
    v.into_iter().next().unwrap()
}

fn keys(v: &serde_json::Value, want: &[&str]) {
    for k in want {
        assert!(v.get(k).is_some(), "no `{k}` in {v}");
    }
}

/// `--json` (the same as `--message-format json`) on the commands that
/// print a result: one JSON document each, with its keys; the human text
/// goes to stderr.
#[test]
fn json_results_of_kernel_report_merge_and_bench_samples() {
    // kernel list and fetch (the default kernel is in the cache).
    let v = one_json(&["--json", "kernel", "list"], 0);
    let ks = v["kernels"].as_array().unwrap();
    let k = ks.iter().find(|k| k["name"] == "debian-6.1.0-54-cloud-amd64").unwrap_or_else(|| panic!("{v}"));
    keys(k, &["name", "cached", "source", "description"]);
    assert_eq!(k["cached"], true, "{k}");
    assert_eq!(one_json(&["--message-format", "json", "kernel", "list"], 0), v, "--json and --message-format json differ");
    let v = one_json(&["--json", "kernel", "fetch", "debian-6.1.0-54-cloud-amd64"], 0);
    keys(&v, &["name", "release", "source", "version", "package_sha256", "vmlinuz_sha256", "root"]);
    assert_eq!(v["release"], "6.1.0-54-cloud-amd64");
    assert!(Path::new(v["root"].as_str().unwrap()).is_dir(), "{v}");

    // report and merge on a matrix directory (no VM).
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("m");
    let cell = m.join("cells/smoke@debian-6.1.0-54-cloud-amd64");
    std::fs::create_dir_all(cell.join("samples")).unwrap();
    std::fs::write(cell.join("events.jsonl"), "{\"t\":1.0,\"event\":\"workload-started\",\"commands\":1,\"duration_secs\":2}\n").unwrap();
    let report = serde_json::json!({"schema": "kernlab.matrix-report/1", "name": "nightly", "exit_code": 0, "cells": [
        {"id": "smoke@debian-6.1.0-54-cloud-amd64", "lab": "smoke", "kernel": "debian-6.1.0-54-cloud-amd64", "exit_code": 0,
         "verdict": "completed", "error": null, "dir": cell, "secs": 9.0, "delta_per_hour": null, "bytes_per_op": null}]});
    std::fs::write(m.join("report.json"), report.to_string()).unwrap();
    let v = one_json(&["--json", "report", m.to_str().unwrap()], 0);
    keys(&v, &["dir", "kind", "html", "summary"]);
    assert_eq!(v["kind"], "matrix");
    assert!(Path::new(v["html"].as_str().unwrap()).is_file() && v["summary"].as_str().unwrap().contains("matrix nightly: exit 0"), "{v}");
    let merged = d.path().join("merged");
    let v = one_json(&["--json", "merge", m.to_str().unwrap(), "--out", merged.to_str().unwrap()], 0);
    keys(&v, &["name", "merged", "cells", "exit_code", "dir", "report"]);
    assert_eq!((v["cells"].as_u64(), v["exit_code"].as_i64()), (Some(1), Some(0)), "{v}");
    assert!(Path::new(v["report"].as_str().unwrap()).is_file(), "{v}");

    // bench samples on an A/B run made of a recorded A/A pair.
    let pair = kernlab::stats::aa::load_corpus(&repo("tests/data/aa")).unwrap().remove(0);
    let run_dir = d.path().join("ab");
    std::fs::create_dir(&run_dir).unwrap();
    std::fs::copy(repo("labs/no-leak-lab.yaml"), run_dir.join("lab.yaml")).unwrap();
    for (arm, series) in ["module", "baseline"].iter().zip(&pair.arms) {
        let s = run_dir.join(arm).join("samples");
        std::fs::create_dir_all(&s).unwrap();
        let (mut mem, mut slab, mut ops) = ("t,uptime,key,bytes\n".to_string(), "t,uptime,cache,active_objs,num_objs,objsize\n".to_string(), "t,uptime,ops\n".to_string());
        for (name, rows) in series {
            for &(t, _, v) in rows {
                match name.strip_prefix("meminfo:") {
                    Some(key) => mem.push_str(&format!("{t},{t},{key},{v}\n")),
                    None => slab.push_str(&format!("{t},{t},{name},{v},{v},64\n")),
                }
            }
        }
        for &(t, n, _) in series.values().next().unwrap() {
            ops.push_str(&format!("{t},{t},{n}\n"));
        }
        std::fs::write(s.join("meminfo.csv"), mem).unwrap();
        std::fs::write(s.join("slabinfo.csv"), slab).unwrap();
        std::fs::write(s.join("ops.csv"), ops).unwrap();
    }
    let v = one_json(&["--json", "bench", "samples", run_dir.to_str().unwrap()], 0);
    keys(&v, &["lab", "verdict", "decided_at", "early", "planned", "interval_secs", "looks"]);
    let looks = v["looks"].as_array().unwrap();
    assert!(!looks.is_empty() && (v["decided_at"].as_u64().unwrap() as usize) < looks.len(), "{v}");
    keys(&looks[0], &["samples", "alpha", "alpha_no_leak", "verdict", "workload_secs", "undecided"]);
    assert_eq!(v["lab"], "no-leak-lab");
}

/// `calibrate` (its runs fail at the kernel fetch: no VM), `image debian`
/// (the cached disk), `bench boot` (one run of one profile: real boots)
/// under `--json`: the result object; nothing on stdout when there is no
/// result (usage errors).
#[test]
fn json_results_of_calibrate_image_bench_boot_and_usage_errors() {
    let d = tempfile::tempdir().unwrap();
    let kdir = d.path().join("kernels");
    std::fs::create_dir(&kdir).unwrap();
    std::fs::write(kdir.join("gone-6.1.0-999.yaml"), "source:\n  debian:\n    package: linux-image-6.1.0-999-cloud-amd64\n").unwrap();
    let f = lab(d.path(), "ab", "name: ab\nkernel: gone-6.1.0-999\nworkload:\n  commands: ['true']\n  duration: 20s\nmonitor:\n  interval: 1s\nleak:\n  expect: no-leak\n");
    let out = d.path().join("cal");
    // Every run fails at the kernel fetch: the calibration still says so.
    let v = one_json(&["--json", "--kernels", kdir.to_str().unwrap(), "calibrate", f.to_str().unwrap(), "--runs", "1", "--out", out.to_str().unwrap()], 101);
    keys(&v, &["file", "dir", "exit_code", "false_leaks", "verdicts"]);
    assert_eq!(v["exit_code"], 101);
    assert!(Path::new(v["file"].as_str().unwrap()).is_file(), "{v}");
    let disk = d.path().join("disk.qcow2");
    let v = one_json(&["--json", "image", "debian", "--out", disk.to_str().unwrap()], 0);
    keys(&v, &["out", "kernel", "release", "format", "root_label", "packages", "bytes", "built"]);
    assert_eq!((v["format"].as_str(), v["root_label"].as_str()), (Some("qcow2"), Some("kernlab-root")), "{v}");
    assert_eq!(v["bytes"].as_u64(), Some(std::fs::metadata(&disk).unwrap().len()));
    std::fs::remove_file(&disk).unwrap();
    let v = one_json(&["-q", "--json", "bench", "boot", "--runs", "1", "--profile", "microvm-vmlinux", "--kernel", "debian-6.1.0-54-cloud-amd64"], 0);
    assert_eq!(v["kind"], "timings");
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    keys(&rows[0], &["kernel", "profile", "bare_floor_s", "floor_s", "first_command_s", "warm_first_command_s"]);
    assert!(rows[0]["first_command_s"].as_f64().unwrap() > 0.0, "{v}");
    // Usage errors print no result: stdout stays empty.
    for args in [vec!["--json", "bench", "boot", "--profile", "nope"], vec!["--json", "image", "debian", "--out", f.to_str().unwrap()], vec!["--json", "triage", "/nonexistent", "--kernel", "x"]] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o.stderr));
        assert!(o.stdout.is_empty(), "{args:?}: {}", text(&o.stdout));
    }
}

/// A reader that stops early (`kernlab kernel list | head -1`): a quiet
/// exit 141, as a shell reports a command a pipe ended, not a panic.
#[test]
fn a_closed_stdout_is_a_quiet_exit_141() {
    // A pipe whose read end is closed before kernlab starts: its first
    // write meets EPIPE, whatever the timing (closing the read end after
    // the spawn raced kernlab's write of 741 bytes, which fit the pipe).
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child = kernlab().args(["kernel", "list"]).stdout(writer).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let out = child.wait_with_output().unwrap();
    let se = text(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{se}");
    assert!(!se.contains("panicked"), "{se}");
}
