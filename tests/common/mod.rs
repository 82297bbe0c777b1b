//! Helpers shared by the integration tests: run the real `kernlab` binary,
//! read a run directory's events, check that processes are gone.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub fn kernlab() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kernlab"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

pub fn run(args: &[&str]) -> Output {
    kernlab().args(args).output().expect("kernlab runs")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Writes a lab file into `dir` and returns its path.
pub fn lab(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let p = dir.join(format!("{name}.yaml"));
    std::fs::write(&p, yaml).unwrap();
    p
}

/// The events of a run, parsed.
pub fn events(run_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line {l:?}: {e}")))
        .collect()
}

pub fn event_names(run_dir: &Path) -> Vec<String> {
    events(run_dir).iter().map(|e| e["event"].as_str().unwrap_or("").to_string()).collect()
}

/// The QEMU pids a run started.
pub fn qemu_pids(run_dir: &Path) -> Vec<i32> {
    events(run_dir)
        .iter()
        .filter(|e| e["event"] == "qemu-started")
        .map(|e| e["pid"].as_i64().unwrap() as i32)
        .collect()
}

/// True if `pid` is a live QEMU (not a zombie, not a reused pid of something else).
pub fn qemu_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let comm_is_qemu = stat.contains("(qemu-system-x86");
    let state = stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()).unwrap_or("");
    comm_is_qemu && state != "Z"
}

/// A run's `report.json`, checked against its committed schema.
pub fn report(run_dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(run_dir.join("report.json")).expect("report.json exists");
    let v = serde_json::from_str(&text).unwrap();
    assert_valid_record(&run_dir.join("report.json").display().to_string(), &v);
    v
}

/// Polls `cond` every 100 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Copies the hook module's source (labs/khm) into `dir/khm`. With `unique`,
/// a comment makes its source hash new, so the cache has no build of it and
/// the test sees the build happen.
pub fn copy_khm(dir: &Path, unique: bool) {
    std::fs::create_dir(dir.join("khm")).unwrap();
    for f in ["khm.c", "Kbuild"] {
        std::fs::copy(repo("labs/khm").join(f), dir.join("khm").join(f)).unwrap();
    }
    if unique {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let c = dir.join("khm/khm.c");
        let text = std::fs::read_to_string(&c).unwrap();
        std::fs::write(&c, format!("/* test build {nanos} {} */\n{text}", std::process::id())).unwrap();
    }
}

/// Waits for kernlab to exit after `what`; kills it and fails the test if
/// it has not within `timeout`.
pub fn exit_within(child: &mut std::process::Child, timeout: Duration, what: &str) -> std::process::ExitStatus {
    let mut status = None;
    wait_until(timeout, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("kernlab did not exit within {timeout:?} of {what}");
    })
}

/// Starts a long run and waits until it has taken `n` samples.
pub fn long_run_with_samples(d: &Path, n: usize) -> (std::process::Child, std::path::PathBuf) {
    let f = lab(d, "long", "name: long\nworkload:\n  commands: ['sleep 600']\n  duration: 5m\nmonitor:\n  interval: 1s\n");
    let run_dir = d.join("run");
    let mut child = kernlab()
        .args(["run", f.to_str().unwrap(), "--out", run_dir.to_str().unwrap(), "-q"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sampled = wait_until(Duration::from_secs(90), || event_names(&run_dir).iter().filter(|x| *x == "sample").count() >= n);
    if !sampled {
        let _ = child.kill();
        panic!("no samples within 90 s: {:?}", event_names(&run_dir));
    }
    (child, run_dir)
}

/// The run started QEMU, and none of it is alive any more.
pub fn assert_no_qemu_left(run_dir: &Path) {
    let pids = qemu_pids(run_dir);
    assert!(!pids.is_empty(), "the run started no QEMU");
    for pid in pids {
        assert!(!qemu_alive(pid), "QEMU {pid} outlived its run");
    }
}

/// Every directory under `root` (itself included) is 0700 and every file
/// 0600: a run can hold customer data (console logs, samples, dumps).
/// Returns how many entries it checked.
pub fn assert_private_tree(root: &Path) -> usize {
    let mut checked = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.file_type().is_symlink() {
            continue;
        }
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&p), want, "{} is {:o}, not {want:o}", p.display(), mode(&p));
        checked += 1;
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    checked
}

/// The committed schema (`docs/schemas/`) of the record kind `id`
/// (`kernlab.leak-report/2`), compiled once per test binary.
pub fn schema_validator(id: &str) -> std::sync::Arc<jsonschema::Validator> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap();
    cache
        .entry(id.to_string())
        .or_insert_with(|| {
            let path = repo("docs/schemas").join(format!("{}.schema.json", id.replace('/', "-")));
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("no schema for `{id}`: {}: {e}", path.display()));
            let schema: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Arc::new(jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{} is not a valid JSON Schema: {e}", path.display())))
        })
        .clone()
}

/// Checks one record against the committed schema its `schema` field
/// names; panics naming `what` (a file, a line) and every violation.
pub fn assert_valid_record(what: &str, record: &serde_json::Value) {
    let id = record["schema"].as_str().unwrap_or_else(|| panic!("{what}: no `schema` field"));
    let v = schema_validator(id);
    let errors: Vec<String> = v.iter_errors(record).map(|e| format!("  at `{}`: {e}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{what} does not match docs/schemas/ for `{id}`:\n{}", errors.join("\n"));
}

/// Checks a JSON record file against its committed schema.
pub fn assert_valid_record_file(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
    assert_valid_record(&path.display().to_string(), &v);
}

/// Checks every line of an `events.jsonl` against the event schema (the
/// current version: a run of this kernlab writes it) and reads it back
/// with `outcome::read_events`; returns how many lines it checked.
pub fn assert_valid_events(path: &Path) -> usize {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut n = 0;
    for (i, l) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{}:{}: not JSON: {e}", path.display(), i + 1));
        assert_eq!(v["schema"], kernlab::outcome::event::SCHEMA, "{}:{}", path.display(), i + 1);
        // kernlab's own reader reads it (no repeated key, the fields of its event).
        assert_eq!(kernlab::outcome::read_events(l).len(), 1, "{}:{}: does not read back as an event: {l}", path.display(), i + 1);
        assert_valid_record(&format!("{}:{}", path.display(), i + 1), &v);
        n += 1;
    }
    n
}

/// Checks every record a finished run, A/B, matrix, bisection or
/// calibration directory holds against the committed schemas, its arms,
/// cells and steps included (`report.json`, `manifest.json`, each line of
/// `events.jsonl`, `bisect.json`, `calibration.json`, `triage.json`).
/// Returns how many records (event lines counted one each) it checked, so
/// a caller can assert it saw what it expected.
pub fn assert_valid_records(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                // A guest tree or the key directory holds no records.
                if name != "keys" && name != "instruments" {
                    stack.push(p);
                }
            } else if name == "events.jsonl" {
                n += assert_valid_events(&p);
            } else if ["report.json", "manifest.json", "bisect.json", "calibration.json", "triage.json"].contains(&name.as_str()) {
                assert_valid_record_file(&p);
                n += 1;
            }
        }
    }
    n
}
