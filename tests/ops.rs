//! The user's workload counts operations, on the real thing: a real Debian
//! kernel under QEMU, the minimal image's busybox. A command's
//! `kernlab-ops N` lines and a `workload.ops` file give an A/B lab a
//! per-operation verdict; the pipe churn counts its own; a workload that
//! counts nothing is told so in the report. One guest at a time.

mod common;
use common::*;
use kernlab::sample::rows::{self, OpsRow};
use std::path::Path;
use std::sync::Mutex;

static ONE_VM_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The op counts an arm sampled, in order.
fn ops(run: &Path) -> Vec<u64> {
    rows::read::<OpsRow>(&run.join("samples")).unwrap_or_else(|e| panic!("{}: ops.csv: {e}", run.display())).iter().map(|r| r.ops).collect()
}

/// Counts that start at 0 or above and rise to the end.
fn assert_rising(arm: &str, v: &[u64]) {
    assert!(v.len() >= 8, "{arm}: {v:?}");
    assert!(v.windows(2).all(|w| w[0] <= w[1]), "{arm}: the count never falls: {v:?}");
    assert!(v.last().unwrap() > &v[v.len() / 2] && v[v.len() / 2] > v[0], "{arm}: rising: {v:?}");
}

/// Runs an A/B lab with no modules in either arm (A/A: the lab is about
/// the count, not a leak) and returns its run directory and stdout.
fn run_ab(d: &Path, name: &str, workload: &str) -> (std::path::PathBuf, String) {
    let f = lab(
        d,
        name,
        &format!("name: {name}\nworkload:\n{workload}  duration: 10s\nmonitor:\n  interval: 1s\nleak:\n  expect: no-leak\n  warmup: 2s\n  stop_early: false\n"),
    );
    let dir = d.join(format!("{name}-run"));
    let out = run(&["run", f.to_str().unwrap(), "--out", dir.to_str().unwrap(), "--attribute", "off"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    // A/A: NO-LEAK, or INCONCLUSIVE in 10 s; never LEAK.
    let code = out.status.code();
    assert!(code == Some(0) || code == Some(102), "stdout:\n{stdout}\nstderr:\n{stderr}");
    (dir, stdout)
}

/// (a) A `commands` workload printing `kernlab-ops N`: per-op verdict, the
/// count sampled rising, its other output passed through to the log.
#[test]
fn kernlab_ops_lines_give_a_per_operation_verdict() {
    let _one = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let w = "  commands:\n    - echo before\n    - 'i=0; while :; do i=$((i+50)); echo kernlab-ops $i; echo tick; sleep 0.1; done'\n";
    let (dir, stdout) = run_ab(d.path(), "ops-lines", w);
    let r = report(&dir);
    let a = &r["analysis"];
    assert_eq!(a["basis"], "per-op", "{stdout}");
    assert!(a.get("basis_note").is_none(), "{a}");
    assert!(!stdout.contains("basis: per second"), "{stdout}");
    for arm in ["module", "baseline"] {
        let v = ops(&dir.join(arm));
        assert_rising(arm, &v);
        assert!(v.iter().all(|n| n % 50 == 0), "{arm}: only the printed counts: {v:?}");
        let log = std::fs::read_to_string(dir.join(arm).join("workload.log")).unwrap();
        assert!(log.starts_with("before\ntick\n") && !log.contains("kernlab-ops"), "{arm}: {log}");
    }
    // ~500 ops/s (50 per 0.1 s, less the loop's own time under TCG).
    let rate = a["ops_per_s"][0].as_f64().unwrap();
    assert!((100.0..600.0).contains(&rate), "ops/s {rate}");
}

/// (b) `workload.ops` written by a command: per op too. A churn beside it
/// is background load only: the lab's count wins (the churn's would be
/// thousands a second).
#[test]
fn a_workload_ops_file_gives_a_per_operation_verdict_over_the_churn() {
    let _one = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let w = "  churn: {kind: pipes, rate: 2000}\n  ops: /run/app/ops\n  commands:\n    - 'mkdir -p /run/app; i=0; while :; do i=$((i+10)); echo $i > /run/app/ops.new; mv /run/app/ops.new /run/app/ops; sleep 0.1; done'\n";
    let (dir, stdout) = run_ab(d.path(), "ops-file", w);
    let r = report(&dir);
    let a = &r["analysis"];
    assert_eq!(a["basis"], "per-op", "{stdout}");
    for arm in ["module", "baseline"] {
        let v = ops(&dir.join(arm));
        assert_rising(arm, &v);
        assert!(v.iter().all(|n| n % 10 == 0), "{arm}: the lab's counts, not the churn's: {v:?}");
    }
    let rate = a["ops_per_s"][0].as_f64().unwrap();
    assert!((20.0..120.0).contains(&rate), "ops/s {rate}: ~100 from the file, not the churn's 2000");
}

/// (c) The pipe churn runs and counts its operations, in a plain run.
#[test]
fn pipe_churn_counts_its_operations() {
    let _one = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let f = lab(d.path(), "pipes", "name: pipes\nworkload:\n  churn: {kind: pipes, rate: 1000}\n  duration: 4s\nmonitor:\n  interval: 1s\n");
    let dir = d.path().join("pipes-run");
    let out = run(&["run", f.to_str().unwrap(), "--out", dir.to_str().unwrap(), "-q"]);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{}\nstderr:\n{}", text(&out.stdout), text(&out.stderr));
    let rows = rows::read::<OpsRow>(&dir.join("samples")).unwrap();
    let (first, last) = (rows.first().unwrap(), rows.last().unwrap());
    let rate = (last.ops - first.ops) as f64 / (last.t - first.t);
    assert!(rows.len() >= 4 && rate > 0.0, "ops/s {rate}: {rows:?}");
    assert!((300.0..1200.0).contains(&rate), "ops/s {rate} at rate 1000");
    // The plain run's report.json and summary carry the count too.
    let o = &report(&dir)["operations"];
    assert_eq!(o["total"].as_u64().unwrap(), last.ops - first.ops, "{o}");
    assert!(o["per_s"].as_f64().unwrap() > 0.0, "{o}");
    let again = run(&["report", dir.to_str().unwrap()]);
    assert!(text(&again.stdout).contains(&format!("operations {} (", last.ops - first.ops)), "{}", text(&again.stdout));
    // The churn's own last line, fetched after it was stopped, when it got there.
    let log = std::fs::read_to_string(dir.join("workload.log")).unwrap();
    assert!(!log.contains("usage") && !log.contains("failed"), "{log}");
}

/// A `commands` workload that counts nothing: rates per second, and the
/// report says so plainly (report.json, the terminal, report.html).
#[test]
fn a_workload_without_a_count_is_told_so_in_the_report() {
    let _one = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let (dir, stdout) = run_ab(d.path(), "no-count", "  commands:\n    - 'while :; do echo kernlab-ops x; sleep 0.2; done'\n");
    let r = report(&dir);
    let a = &r["analysis"];
    let note = "per second: this workload reports no operations; see docs/lab-format.md#counting-operations";
    assert_eq!(a["basis"], "per-second");
    assert_eq!(a["basis_note"], note);
    assert!(stdout.contains(&format!("basis: {note}")), "{stdout}");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains(note), "report.html");
    // Not a count: passed through as output.
    let log = std::fs::read_to_string(dir.join("module/workload.log")).unwrap();
    assert!(log.contains("kernlab-ops x"), "{log}");
}
