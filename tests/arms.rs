//! Each arm of an A/B lab its own: a baseline that overrides the lab's
//! payload, setup or module parameters runs with them, on the real kernel,
//! and the report says what each arm ran. A/B tests run one at a time
//! (each already keeps both cores busy under TCG).

mod common;
use common::*;
use std::sync::Mutex;

static ONE_AB_AT_A_TIME: Mutex<()> = Mutex::new(());

/// No modules at all: the arms differ only in the payload file they get
/// and the setup command that reads it, and the shared workload prints
/// what the arm's own setup left.
#[test]
fn each_arm_runs_its_own_payload_and_setup() {
    let _one = ONE_AB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("module-marker.txt"), "module-payload\n").unwrap();
    std::fs::write(d.path().join("baseline-marker.txt"), "baseline-payload\n").unwrap();
    let f = lab(
        d.path(),
        "arms",
        "name: arms\n\
         payload:\n  - {src: module-marker.txt, dst: /opt/arm/marker}\n\
         setup:\n  - cp /opt/arm/marker /root/which-arm\n\
         workload:\n  commands:\n    - cat /root/which-arm\n  duration: 8s\n\
         monitor:\n  interval: 1s\n\
         leak:\n  expect: no-leak\n  warmup: 1s\n  attribute: off\n  baseline:\n\
         \x20   payload:\n      - {src: baseline-marker.txt, dst: /opt/arm/marker}\n\
         \x20   setup:\n      - '{ cat /opt/arm/marker; echo from-baseline-setup; } > /root/which-arm'\n",
    );
    let dir = d.path().join("run");
    let out = run(&["run", f.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    // Two arms alike but for a marker file: no leak, or too little data to say.
    assert!(matches!(out.status.code(), Some(0) | Some(102)), "stdout:\n{stdout}\nstderr:\n{stderr}");

    // What each arm's own setup left, read by the shared workload.
    let log = |arm: &str| std::fs::read_to_string(dir.join(arm).join("workload.log")).unwrap();
    let (m, b) = (log("module"), log("baseline"));
    assert!(m.contains("module-payload") && !m.contains("baseline-payload") && !m.contains("from-baseline-setup"), "module arm:\n{m}");
    assert!(b.contains("baseline-payload") && b.contains("from-baseline-setup") && !b.contains("module-payload"), "baseline arm:\n{b}");
    // Each arm's events: its own setup command, and no module.
    for (arm, want) in [("module", "cp /opt/arm/marker /root/which-arm"), ("baseline", "{ cat /opt/arm/marker; echo from-baseline-setup; } > /root/which-arm")] {
        let ev = events(&dir.join(arm));
        let setup: Vec<&str> = ev.iter().filter(|e| e["event"] == "setup-command").map(|e| e["command"].as_str().unwrap()).collect();
        assert_eq!(setup, [want], "{arm}");
        assert!(!ev.iter().any(|e| e["event"] == "module-loaded"), "{arm}");
        let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join(arm).join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["payload"][0]["src"], format!("{arm}-marker.txt"), "{arm}: {manifest}");
    }
    // The report says what each arm ran; the summary says how they differ.
    let r = report(&dir);
    assert_eq!(r["module"]["config"]["setup"][0], "cp /opt/arm/marker /root/which-arm", "{r}");
    assert_eq!(r["module"]["config"]["payload"][0]["src"], "module-marker.txt");
    assert_eq!(r["baseline"]["config"]["payload"][0], serde_json::json!({"src": "baseline-marker.txt", "dst": "/opt/arm/marker"}));
    assert_eq!(r["baseline"]["config"]["modules"], serde_json::json!([]));
    let arms = stdout.lines().find(|l| l.starts_with("  arms: ")).unwrap_or_else(|| panic!("no arms line:\n{stdout}"));
    assert!(arms.starts_with("  arms: module: no modules, setup `cp /opt/arm/marker /root/which-arm`, payload module-marker.txt → /opt/arm/marker; "), "{arms}");
    assert!(arms.contains("; baseline: no modules, setup `{ cat /opt/arm/marker;") && arms.ends_with(", payload baseline-marker.txt → /opt/arm/marker"), "{arms}");
    assert!(std::fs::read_to_string(dir.join("report.html")).unwrap().contains("what the arms ran"));
}

/// The shortcut for the usual A/B: the lab's own module in both arms, the
/// baseline with its bug switched off by `params`.
#[test]
fn a_baseline_of_the_labs_module_with_other_params_finds_the_leak() {
    let _one = ONE_AB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    copy_khm(d.path(), false);
    let f = lab(
        d.path(),
        "khm-params",
        "name: khm-params\n\
         modules:\n  - source: khm\n    params: {leak: 1}\n\
         workload:\n  churn: {rate: 1000}\n  duration: 12s\n\
         monitor:\n  interval: 1s\n  reclaim: true\n\
         leak:\n  expect: leak\n  attribute: off\n  baseline:\n    params: {leak: 0}\n",
    );
    let dir = d.path().join("run");
    let out = run(&["run", f.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("LEAK as expected") && stdout.contains("  arms: module: khm leak=1; baseline: khm leak=0\n"), "{stdout}");
    for (arm, leak) in [("module", "1"), ("baseline", "0")] {
        let ev = events(&dir.join(arm));
        let loaded = ev.iter().find(|e| e["event"] == "module-loaded").unwrap_or_else(|| panic!("{arm}: no module-loaded"));
        assert_eq!((loaded["name"].as_str(), loaded["params"]["leak"].as_str()), (Some("khm"), Some(leak)), "{arm}");
        assert_eq!(report(&dir)[arm]["config"]["modules"], serde_json::json!([{"source": "khm", "params": {"leak": leak}}]));
    }
}
