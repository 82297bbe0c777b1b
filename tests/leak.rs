//! The leak lab end to end on the real kernel: the hook module built
//! against Debian's headers, loaded into the guest, the churn workload, both
//! arms side by side, and the statistics' verdict. A/B tests run one at a
//! time (each already keeps both cores busy under TCG).

mod common;
use common::*;
use std::sync::Mutex;

static ONE_AB_AT_A_TIME: Mutex<()> = Mutex::new(());

fn arm_events(dir: &std::path::Path, arm: &str) -> Vec<serde_json::Value> {
    events(&dir.join(arm))
}

#[test]
fn leak_lab_reproduces_the_customer_leak_with_numbers() {
    let _one = ONE_AB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("leak");
    let out = run(&["run", "labs/leak-lab.yaml", "--out", dir.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("LEAK as expected"), "{stdout}");

    let r = report(&dir);
    assert_eq!(r["schema"], "kernlab.leak-report/1");
    assert_eq!(r["verdict"], "leak");
    assert_eq!(r["expectation_held"], true);
    let a = &r["analysis"];
    // One dentry plus one shmem inode (and its LSM blob) per created-and-
    // deleted file: about 1 KB per operation on tmpfs.
    let per_op = a["module"]["per_op"]["slope"].as_f64().unwrap();
    assert!((800.0..1400.0).contains(&per_op), "bytes/op {per_op}");
    let ops_rate = a["module"]["ops_per_s"].as_f64().unwrap();
    assert!((800.0..1100.0).contains(&ops_rate), "ops/s {ops_rate}");
    // The culprits are named, at about one object per operation.
    let caches = a["top_caches"].as_array().unwrap();
    for want in ["dentry", "shmem_inode_cache"] {
        let c = caches.iter().find(|c| c["cache"] == want).unwrap_or_else(|| panic!("{want} not among {caches:?}"));
        let per = c["objects_per_op"].as_f64().unwrap();
        assert!((0.9..1.2).contains(&per), "{want}: {per} objects/op");
    }
    // The baseline (leak=0) does not grow: its interval includes zero or is tiny.
    let base = &a["baseline"]["fit"];
    assert!(base["lower"].as_f64().unwrap() < 300.0, "baseline grows: {base}");
    // The interval of the difference is above the floor.
    assert!(a["comparison"]["lower"].as_f64().unwrap() > a["comparison"]["floor"].as_f64().unwrap());
    assert!(!a["exhaustion"].as_array().unwrap().is_empty());

    // Each arm loaded its module with its own parameter, and the kernel
    // notes an out-of-tree, unsigned module (taint bits O and E).
    for (arm, leak) in [("module", "1"), ("baseline", "0")] {
        let ev = arm_events(&dir, arm);
        let loaded = ev.iter().find(|e| e["event"] == "module-loaded").unwrap_or_else(|| panic!("{arm}: no module-loaded"));
        assert_eq!(loaded["name"], "khm");
        assert_eq!(loaded["params"]["leak"], leak);
        let taint = loaded["tainted"].as_u64().unwrap();
        assert_ne!(taint & (1 << 12), 0, "{arm}: taint {taint} lacks O");
        assert!(dir.join(arm).join("samples/ops.csv").is_file());
    }
}

#[test]
fn regression_gate_passes_for_the_fixed_module_and_rmmod_works_under_load() {
    let _one = ONE_AB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    // The lab lives beside a copy of the module source, as a vendor's would.
    std::fs::create_dir(d.path().join("khm")).unwrap();
    for f in ["khm.c", "Kbuild"] {
        std::fs::copy(repo("labs/khm").join(f), d.path().join("khm").join(f)).unwrap();
    }
    let f = lab(
        d.path(),
        "gate",
        "name: gate\n\
         modules:\n  - source: khm\n    params: {leak: 0}\n\
         workload:\n  churn: {rate: 1000}\n  commands:\n    - 'sleep 12; if grep -q ^khm /proc/modules; then rmmod khm && echo rmmod-ok; else echo no-module; fi'\n  duration: 20s\n\
         monitor:\n  interval: 1s\n  reclaim: true\n\
         leak:\n  expect: no-leak\n",
    );
    let dir = d.path().join("gate-run");
    let out = run(&["run", f.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let r = report(&dir);
    assert_eq!(r["verdict"], "no-leak", "{r}");
    assert_eq!(r["expectation_held"], true);
    // rmmod while churn runs: the module arm unloaded it and kept sampling.
    let log = std::fs::read_to_string(dir.join("module/workload.log")).unwrap();
    assert!(log.contains("rmmod-ok"), "{log}");
    let base_log = std::fs::read_to_string(dir.join("baseline/workload.log")).unwrap();
    assert!(base_log.contains("no-module"), "{base_log}");
    let samples = report(&dir.join("module"))["samples"].as_u64().unwrap();
    assert!(samples >= 18, "samples {samples}");
    assert_eq!(report(&dir.join("module"))["sample_gaps"], 0);
}

#[test]
fn a_module_that_does_not_compile_shows_the_compiler_and_the_kernel() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("broken")).unwrap();
    std::fs::write(d.path().join("broken/Kbuild"), "obj-m += broken.o\n").unwrap();
    std::fs::write(d.path().join("broken/broken.c"), "#include <linux/module.h>\nint x = undefined_symbol_here;\nMODULE_LICENSE(\"GPL\");\n").unwrap();
    let f = lab(d.path(), "broken", "name: broken\nmodules:\n  - source: broken\n");
    let out = run(&["run", f.to_str().unwrap(), "--out", d.path().join("run").to_str().unwrap(), "-q"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "{err}");
    assert!(err.contains("building module") && err.contains("for kernel `debian-6.1.0-54-cloud-amd64`"), "{err}");
    assert!(err.contains("undefined_symbol_here") && err.contains("error:"), "{err}");
    assert_eq!(report(&d.path().join("run"))["outcome"], "failed");
}
