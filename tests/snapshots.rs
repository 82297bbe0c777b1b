//! Snapshot tests (insta) of what kernlab prints and writes for people and
//! CI: a run's terminal summary (plain and after a crash), an A/B leak
//! lab's summary, the terminal log lines and the JSON event lines, the
//! matrix table and JUnit. The inputs are fixed (built structs, synthetic
//! sample series written as a run directory); values that differ from run
//! to run (times, paths, pids, ports, hashes) are redacted or normalized
//! before the comparison. `cargo insta review` (or INSTA_UPDATE=always)
//! after an intended change; the .snap files are committed.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kernlab::outcome::event::{Event, Events, Stamped};
use kernlab::outcome::matrix::CellResult;
use kernlab::outcome::run as report;
use kernlab::report::matrix;
use kernlab::report::summary;
use kernlab::report::terminal::{JsonLines, Terminal};
use kernlab::run;

/// Replaces a temporary directory's path with a fixed word.
fn normalize(text: &str, dir: &Path, word: &str) -> String {
    text.replace(&dir.display().to_string(), word)
}

/// Synthetic arms in the sampler's CSV layout: 31 samples a second apart;
/// the module arm's Slab grows 1,070 bytes per operation at 1,000 ops/s
/// (dentry and shmem_inode_cache objects), the baseline's is flat; both
/// carry the same small deterministic noise.
fn write_arm(dir: &Path, leaking: bool) {
    std::fs::create_dir_all(dir.join("samples")).unwrap();
    let mut mem = String::from("t,uptime,key,bytes\n");
    let mut slab = String::from("t,uptime,cache,active_objs,num_objs,objsize\n");
    let mut ops = String::from("t,uptime,ops\n");
    for i in 0..31u64 {
        let t = 8.0 + i as f64;
        let up = 5.0 + i as f64;
        let noise = (i * 7919) % 13 * 1000;
        let grow = if leaking { i * 1_070_000 } else { 0 };
        mem.push_str(&format!("{t:.3},{up:.2},MemAvailable,{}\n", 430_000_000 - grow - noise));
        mem.push_str(&format!("{t:.3},{up:.2},MemFree,{}\n", 440_000_000 - grow - noise));
        mem.push_str(&format!("{t:.3},{up:.2},Slab,{}\n", 20_000_000 + grow + noise));
        mem.push_str(&format!("{t:.3},{up:.2},SUnreclaim,{}\n", 9_000_000 + grow + noise));
        let n = if leaking { i * 1000 } else { 0 };
        slab.push_str(&format!("{t:.3},{up:.2},dentry,{},{},192\n", 10_000 + n, 10_000 + n));
        slab.push_str(&format!("{t:.3},{up:.2},shmem_inode_cache,{},{},784\n", 400 + n, 400 + n));
        slab.push_str(&format!("{t:.3},{up:.2},kmalloc-64,{},{},64\n", 3000 + (i % 3), 3072));
        ops.push_str(&format!("{t:.3},{up:.2},{}\n", i * 1000));
    }
    std::fs::write(dir.join("samples/meminfo.csv"), mem).unwrap();
    std::fs::write(dir.join("samples/slabinfo.csv"), slab).unwrap();
    std::fs::write(dir.join("samples/ops.csv"), ops).unwrap();
}

fn smoke_lab() -> kernlab::lab::Lab {
    kernlab::lab::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("labs/smoke.yaml")).unwrap()
}

fn manifest() -> run::Manifest {
    run::Manifest {
        schema: report::MANIFEST_SCHEMA.into(),
        kernel: Some(kernlab::kernel::Kernel {
            name: "debian-6.1.0-54-cloud-amd64".into(),
            release: "6.1.0-54-cloud-amd64".into(),
            source: "debian linux-image-6.1.0-54-cloud-amd64".into(),
            version: "6.1.190-1".into(),
            package_sha256: "0".repeat(64),
            vmlinuz_sha256: "1".repeat(64),
            root: "/cache/kernels/0".into(),
            arch: None,
        }),
        accel: Some(kernlab::qemu::AccelChoice { accel: kernlab::qemu::Accel::Tcg, reason: "kvm_pvm".into() }),
        ..Default::default()
    }
}

fn timings() -> report::Timings {
    report::Timings { kernel: 0.01, image: 0.05, qemu_start: 0.07, init: Some(2.36), boot_to_ssh: 3.11, first_command: 3.31, boot_attempts: 1, total: 14.87 }
}

#[test]
fn run_summary() {
    let d = tempfile::tempdir().unwrap();
    write_arm(d.path(), true);
    let rep = run::record::build(d.path(), &smoke_lab(), &manifest(), "completed", 0, None, 31, 0, timings());
    insta::assert_snapshot!(summary::run_summary(&rep, Some(Path::new("runs/smoke/20250101T100000Z-debian-6.1.0-54-cloud-amd64"))));
}

#[test]
fn run_summary_after_a_crash() {
    let d = tempfile::tempdir().unwrap();
    write_arm(d.path(), true);
    let mut rep = run::record::build(d.path(), &smoke_lab(), &manifest(), "completed", 0, None, 31, 1, timings());
    // As the record holds them: relative to the run directory.
    let crash = PathBuf::from("crash/2025-01-01-10:00");
    rep.dump = Some(kernlab::dump::DumpRecord {
        via: "kdump".into(),
        reason: "MemAvailable 31 MiB below the headroom of 32 MiB; sysrq-c over SSH; the capture kernel wrote the dump with makedumpfile -d 31".into(),
        vmcore: crash.join("vmcore"),
        bytes: 93_323_264,
        dmesg: Some(crash.join("dmesg.txt")),
        secs: 13.0,
    });
    let cache = |name: &str, objsize: u64, allocated: u64| kernlab::triage::CacheAtCrash {
        name: name.into(),
        objsize,
        allocated,
        total: allocated,
        bytes: allocated * objsize,
    };
    rep.triage = Some(kernlab::triage::CrashReport {
        engine: kernlab::triage::Engine::Crash,
        memory: vec![("TOTAL MEM".into(), 471_859_200), ("SLAB".into(), 301_989_888)],
        top_caches: vec![cache("shmem_inode_cache", 784, 290_000), cache("dentry", 192, 303_000), cache("lsm_inode_cache", 32, 304_000)],
        panic: Some("Kernel panic - not syncing: sysrq triggered crash".into()),
        text: crash.join("crash.txt"),
        secs: 7.4,
        refs: None,
        refs_error: None,
    });
    insta::assert_snapshot!(summary::run_summary(&rep, Some(Path::new("runs/leak-to-crash/X"))));
    common::assert_valid_record("a run's report.json with a dump and its triage", &serde_json::to_value(&rep).unwrap());
    common::assert_valid_record("manifest.json", &serde_json::to_value(manifest()).unwrap());
}

/// An A/B run directory as a leak lab leaves it: the resolved lab, each
/// arm's report.json and samples; read back by `ab::rebuild`, the same path
/// `kernlab report` takes.
fn ab_dir(top: &Path, baseline_exit: i32) {
    let lab = kernlab::doctor::default_lab().unwrap();
    std::fs::write(top.join("lab.yaml"), lab.to_yaml()).unwrap();
    for (arm, leaking, code) in [("module", true, 0), ("baseline", false, baseline_exit)] {
        let dir = top.join(arm);
        write_arm(&dir, leaking);
        let error = (code != 0).then_some("failed to boot kernel `debian-6.1.0-54-cloud-amd64`: no SSH banner within the boot timeout of 60s");
        let outcome = if code == 0 { "completed" } else { "failed" };
        let rep = serde_json::json!({"schema": report::SCHEMA, "lab": lab.name, "kernel": lab.kernel, "outcome": outcome, "exit_code": code, "error": error});
        std::fs::write(dir.join("report.json"), rep.to_string()).unwrap();
    }
}

#[test]
fn leak_lab_summary() {
    let d = tempfile::tempdir().unwrap();
    ab_dir(d.path(), 0);
    let r = run::ab::recover(d.path()).unwrap();
    assert_eq!(r.exit_code, 0);
    insta::assert_snapshot!(normalize(&summary::leak_summary(&r, d.path()), d.path(), "[run_dir]"));
    // The verdict's record, with its analysis, fits the leak-report schema;
    // its arms are named relative to the lab's directory.
    let v = serde_json::to_value(&r).unwrap();
    common::assert_valid_record("an A/B lab's report.json", &v);
    assert_eq!((v["module"]["dir"].as_str(), v["baseline"]["dir"].as_str()), (Some("module"), Some("baseline")));
}

#[test]
fn leak_lab_summary_when_an_arm_failed() {
    let d = tempfile::tempdir().unwrap();
    ab_dir(d.path(), 101);
    let r = run::ab::recover(d.path()).unwrap();
    assert_eq!(r.exit_code, 101);
    insta::assert_snapshot!(normalize(&summary::leak_summary(&r, d.path()), d.path(), "[run_dir]"));
}

#[test]
fn leak_lab_summary_says_when_the_module_arm_did_not_exhaust() {
    let d = tempfile::tempdir().unwrap();
    ab_dir(d.path(), 0);
    // The module arm ran until exhaustion and reached its max instead.
    let arm = d.path().join("module/report.json");
    let mut r: serde_json::Value = serde_json::from_slice(&std::fs::read(&arm).unwrap()).unwrap();
    r["exhaustion"] = serde_json::json!({"until": true, "reached": false, "within_secs": 600.0});
    std::fs::write(&arm, r.to_string()).unwrap();
    let rep = run::ab::recover(d.path()).unwrap();
    let x = rep.crash.as_ref().and_then(|c| c.exhaustion.as_ref()).expect("read back from the arm's report.json");
    assert!(x.until && !x.reached && x.within_secs == 600.0, "{x:?}");
    let s = summary::leak_summary(&rep, d.path());
    assert!(s.contains("\n  module arm: no exhaustion within 600 s (exhaustion.max): no vmcore\n"), "{s}");
    // Reached, it says nothing of the kind (the vmcore lines speak).
    r["exhaustion"] = serde_json::json!({"until": true, "reached": true, "within_secs": 600.0, "after_secs": 23.4, "trigger": "oom"});
    std::fs::write(&arm, r.to_string()).unwrap();
    assert!(!summary::leak_summary(&run::ab::recover(d.path()).unwrap(), d.path()).contains("no exhaustion"));
}

#[test]
fn run_summary_says_no_exhaustion_within_the_max() {
    let d = tempfile::tempdir().unwrap();
    write_arm(d.path(), false);
    let mut rep = run::record::build(d.path(), &smoke_lab(), &manifest(), "completed", 0, None, 31, 0, timings());
    rep.exhaustion = Some(report::ExhaustionOutcome { until: true, reached: false, within_secs: 600.0, after_secs: None, trigger: None });
    let s = summary::run_summary(&rep, None);
    assert!(s.contains("\n  no exhaustion within 600 s (exhaustion.max): the guest did not run out of memory\n"), "{s}");
    let json = serde_json::to_value(&rep).unwrap();
    assert_eq!(json["exhaustion"], serde_json::json!({"until": true, "reached": false, "within_secs": 600.0}));
}

/// One arm of a leak lab in a matrix cell, as its events come: every type
/// a run without a dump emits, then a dump's.
fn arm_events() -> Vec<Event> {
    let params: std::collections::BTreeMap<String, String> = [("leak".to_string(), "1".to_string())].into();
    vec![
        Event::RunStarted { lab: "leak-lab".into(), kernel: "debian-6.1.0-54-cloud-amd64".into(), run_dir: "/tmp/.tmpA1b2C3/cells/leak-lab@debian-6.1.0-54-cloud-amd64/module".into() },
        Event::KernelReady { name: "debian-6.1.0-54-cloud-amd64".into(), release: "6.1.0-54-cloud-amd64".into(), package_sha256: "9f86d08".repeat(9), secs: 0.011 },
        Event::ModuleBuilt { name: "khm".into(), sha256: "e3b0c44".repeat(9), cached: true, secs: 0.02 },
        Event::ImageReady { sha256: "2c26b46".repeat(9), bytes: 7_340_032, modules: 9, secs: 0.05 },
        Event::AccelChosen { accel: "tcg".into(), reason: "/dev/kvm is provided by kvm_pvm, which cannot run a stock distro kernel (KVM emulation failure); using TCG".into() },
        Event::QemuStarted { pid: 41_213, ssh_port: 40_517, attempt: 1 },
        Event::SnapshotRestored { key: "5feceb6".repeat(9) + "0", bytes: 76_655_543, secs: 0.14 },
        Event::SshReady { secs_since_qemu_start: 3.11 },
        Event::SnapshotSaved { key: "5feceb6".repeat(9) + "0", bytes: 76_655_543, secs: 0.29, published: true },
        Event::SetupCommand { index: 0, command: "uname -a".into(), status: 0, secs: 0.02 },
        Event::KdumpLoaded { crashkernel: 192 << 20 },
        Event::ModuleLoaded { name: "khm".into(), params, tainted: Some(4096), secs: 0.3 },
        Event::WorkloadStarted { commands: 0, duration_secs: 30.0, until_exhaustion: false },
        Event::Sample { index: 0, sample_t: 8.01, uptime: Some(5.2), mem_available: Some(430_000_000), slab: Some(20_000_000), s_unreclaim: Some(9_000_000), nr_dentry: Some(10_000), caches: Some(160) },
        Event::Sample { index: 1, sample_t: 9.01, uptime: Some(6.2), mem_available: Some(428_930_000), slab: Some(21_070_000), s_unreclaim: Some(10_070_000), nr_dentry: Some(11_000), caches: Some(160) },
        Event::SampleFailed { sample_t: 10.01, reason: "ssh: timed out".into() },
        Event::Qmp { name: "BALLOON_CHANGE".into(), data: serde_json::json!({"actual": 536870912}) },
        Event::WorkloadFinished { status: Some(0), secs: 30.02 },
        Event::Exhaustion { trigger: "MemAvailable 31 MiB below the headroom of 32 MiB".into() },
        Event::PanicTriggered { how: "sysrq-c over SSH".into() },
        Event::DumpWritten { via: "kdump".into(), path: "/tmp/.tmpA1b2C3/crash/2025-01-01-10:00/vmcore".into(), bytes: 93_323_264, secs: 13.0 },
        Event::Triage { secs: 7.4, top_cache: Some("shmem_inode_cache".into()), panic: Some("Kernel panic - not syncing: sysrq triggered crash".into()) },
        Event::Teardown { how: "qmp-quit".into(), secs: 0.4 },
        Event::RunFinished { outcome: "completed".into(), exit_code: 0 },
    ]
}

/// A writer the test keeps a handle on after the reporter owns it.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The other events: a matrix's, a cell's, an A/B lab's verdict, and the
/// ways a run goes wrong.
fn other_events() -> Vec<(Option<&'static str>, Event)> {
    let cell = Some("leak-lab@debian-6.1.0-54-cloud-amd64");
    vec![
        (None, Event::MatrixStarted { name: "nightly".into(), cells: 8, slots: 2, dir: "/tmp/.tmpA1b2C3".into() }),
        (cell, Event::CellStarted { lab: "leak-lab".into(), kernel: "debian-6.1.0-54-cloud-amd64".into() }),
        (cell, Event::SnapshotFallback { key: "5feceb6".repeat(9) + "0", reason: "QEMU exited (exit status: 1) before the guest was ready; QEMU: qemu-system-x86_64: Not a migration stream".into() }),
        (cell, Event::SnapshotSaveFailed { key: "5feceb6".repeat(9) + "0", reason: "migration failed: Unable to write to socket: Broken pipe".into() }),
        (cell, Event::WorkloadStarted { commands: 0, duration_secs: 600.0, until_exhaustion: true }),
        (cell, Event::NoExhaustion { within_secs: 600.0, until_exhaustion: true }),
        (cell, Event::NoExhaustion { within_secs: 60.0, until_exhaustion: false }),
        (cell, Event::KdumpUnavailable { reason: "kexec -p failed: Cannot load /boot/vmlinuz; using the host dump".into() }),
        (cell, Event::TriageSkipped { reason: "`linux-image-6.1.0-54-cloud-amd64-dbg=6.1.190-1` is not in this machine's apt sources".into() }),
        (cell, Event::Interrupted { signal: "SIGINT/SIGTERM".into() }),
        (cell, Event::Error { message: "interrupted by signal".into() }),
        (
            cell,
            Event::LeakVerdict {
                verdict: Some("leak".into()),
                expect: "leak".into(),
                expectation_held: Some(true),
                delta_bytes_per_hour: Some(3.84e9),
                bytes_per_op: Some(1069.2),
                report: "/tmp/.tmpA1b2C3/cells/leak-lab@debian-6.1.0-54-cloud-amd64/report.json".into(),
            },
        ),
        (cell, Event::RunFinished { outcome: "interrupted".into(), exit_code: 130 }),
        (
            cell,
            Event::CellFinished {
                verdict: "interrupted".into(),
                exit_code: 130,
                secs: 12.5,
                error: Some("interrupted by signal".into()),
                dir: "/tmp/.tmpA1b2C3/cells/leak-lab@debian-6.1.0-54-cloud-amd64".into(),
            },
        ),
        (None, Event::MatrixFinished { exit_code: 130, report: "/tmp/.tmpA1b2C3/report.json".into() }),
    ]
}

/// The lines `events` wrote, parsed.
fn emitted(buf: &Shared) -> (String, Vec<serde_json::Value>) {
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let lines = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (text, lines)
}

#[test]
fn json_event_lines_of_a_matrix() {
    let buf = Shared::default();
    let top = Events::new(Instant::now());
    top.add(Box::new(JsonLines(buf.clone())));
    for (cell, e) in other_events() {
        top.within(cell, None).emit(e);
    }
    let (_, lines) = emitted(&buf);
    for (i, l) in lines.iter().enumerate() {
        common::assert_valid_record(&format!("matrix event line {}", i + 1), l);
    }
    insta::assert_json_snapshot!(lines, {
        "[].t" => "[t]",
        "[].wall" => "[wall]",
        "[].dir" => "[dir]",
        "[].report" => "[path]",
    });
}

#[test]
fn json_event_lines() {
    // Through the real stamping: `t` and `wall` are this test's clock.
    let buf = Shared::default();
    let events = Events::new(Instant::now()).within(Some("leak-lab@debian-6.1.0-54-cloud-amd64"), Some("module"));
    events.add(Box::new(JsonLines(buf.clone())));
    for e in arm_events() {
        events.emit(e);
    }
    let (text, lines) = emitted(&buf);
    for (i, l) in lines.iter().enumerate() {
        common::assert_valid_record(&format!("event line {}", i + 1), l);
    }
    // One `t` a line (the stamp's; a sample's own is `sample_t`), and
    // every line reads back, the samples included.
    assert!(text.lines().all(|l| l.matches("\"t\":").count() == 1), "{text}");
    assert_eq!(kernlab::outcome::read_events(&text).len(), lines.len());
    // Field order is part of the format: schema, t, wall, cell, arm, event.
    let first = text.lines().next().unwrap();
    assert!(first.starts_with("{\"schema\":\"kernlab.event/2\",\"t\":") && first.contains("\"cell\":\"leak-lab@debian-6.1.0-54-cloud-amd64\",\"arm\":\"module\",\"event\":\"run-started\""), "{first}");
    let t = insta::dynamic_redaction(|v, _| {
        assert!(v.as_f64().is_some_and(|t| (0.0..60.0).contains(&t)), "t is seconds since the start: {v:?}");
        "[t]"
    });
    let wall = insta::dynamic_redaction(|v, _| {
        let s = v.as_str().unwrap_or_default();
        assert!(time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok(), "wall is RFC 3339: {s}");
        "[wall]"
    });
    insta::assert_json_snapshot!(lines, {
        "[].t" => t,
        "[].wall" => wall,
        "[].pid" => "[pid]",
        "[].ssh_port" => "[port]",
        "[].run_dir" => "[run_dir]",
        "[].path" => "[path]",
        "[].sha256" => "[sha256]",
        "[].package_sha256" => "[sha256]",
    });
}

#[test]
fn terminal_event_lines() {
    let term = Terminal::new(false);
    let mut out = String::new();
    for e in arm_events().into_iter().chain(other_events().into_iter().map(|(_, e)| e)) {
        if let Some(line) = term.line(&e) {
            out.push_str(&format!("module: {line}\n"));
        }
    }
    // Every tenth sample only, unless -v: index 1 is not shown.
    assert!(!out.contains("sample 1:"));
    insta::assert_snapshot!(out);
}

#[test]
fn stamped_serializes_without_cell_or_arm_outside_a_matrix() {
    let s = Stamped { schema: "kernlab.event/2".into(), t: 1.5, wall: "2025-01-01T10:00:00Z".into(), cell: None, arm: None, event: Event::SshReady { secs_since_qemu_start: 3.11 } };
    insta::assert_snapshot!(serde_json::to_string(&s).unwrap(), @r#"{"schema":"kernlab.event/2","t":1.5,"wall":"2025-01-01T10:00:00Z","event":"ssh-ready","secs_since_qemu_start":3.11}"#);
}

fn cells(dir: &Path) -> Vec<CellResult> {
    let cell = |lab: &str, kernel: &str, code: i32, verdict: &str| CellResult {
        id: format!("{lab}@{kernel}"),
        lab: lab.into(),
        kernel: kernel.into(),
        exit_code: code,
        verdict: serde_json::from_value(serde_json::json!(verdict)).unwrap(),
        error: None,
        reason: None,
        dir: dir.join("cells").join(format!("{lab}@{kernel}")),
        secs: 38.2,
        vms: 2,
        delta_per_hour: None,
        delta_interval_per_hour: None,
        bytes_per_op: None,
        rules_out: None,
        exhaustion_s: None,
        exhaustion: None,
        leak_kind: None,
        leak_sites: None,
    };
    let k61 = "debian-6.1.0-56-cloud-amd64";
    let k612 = "debian-6.12.117+deb12-cloud-amd64";
    let mut v = vec![
        CellResult { delta_per_hour: Some(3.84e9), delta_interval_per_hour: Some((3.83e9, 3.85e9)), bytes_per_op: Some(1066.4), exhaustion_s: Some(410.0), exhaustion: Some("predicted".into()), ..cell("leak-lab", k61, 0, "leak") },
        CellResult { bytes_per_op: Some(1.2), rules_out: Some("0.000636 objects/op in task_struct".into()), ..cell("no-leak-lab", k61, 0, "no-leak") },
        CellResult { delta_per_hour: Some(3.9e9), bytes_per_op: Some(1087.0), reason: Some("module − baseline above the floor".into()), ..cell("no-leak-lab", k612, 100, "leak") },
        CellResult { reason: Some("too few samples: 3 (need 5)".into()), ..cell("crash-lab", k61, 102, "inconclusive") },
        CellResult {
            error: Some("kernel `debian-6.12.117+deb12-cloud-amd64`: download of `linux-image-6.12.117+deb12-cloud-amd64` failed".into()),
            secs: 1.5,
            ..cell("leak-lab", k612, 101, "failed")
        },
        CellResult { exhaustion_s: Some(95.0), exhaustion: Some("measured".into()), vms: 1, ..cell("crash-lab", k612, 0, "completed") },
    ];
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}

#[test]
fn matrix_table() {
    insta::assert_snapshot!(matrix::table(&cells(Path::new("/m"))));
}

#[test]
fn matrix_junit() {
    let d = tempfile::tempdir().unwrap();
    let results = cells(d.path());
    // The console tail of a failed boot becomes its system-out.
    let cell = d.path().join("cells/leak-lab@debian-6.12.117+deb12-cloud-amd64/module");
    std::fs::create_dir_all(&cell).unwrap();
    std::fs::write(cell.join("events.jsonl"), "").unwrap();
    std::fs::write(cell.join("console.log"), "[    0.000000] Linux version 6.12.117+deb12-cloud-amd64\n[    2.310000] kernlab: init running\n").unwrap();
    let xml = matrix::junit("nightly", &results);
    junit_parser::from_reader(std::io::Cursor::new(xml.as_bytes())).expect("valid JUnit");
    insta::assert_snapshot!(normalize(&xml, d.path(), "[matrix_dir]"));
}
