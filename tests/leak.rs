//! The leak lab end to end on the real kernel: the hook module built
//! against Debian's headers, loaded into the guest, the churn workload, both
//! arms side by side, and the statistics' verdict. A/B tests run one at a
//! time (each already keeps both cores busy under TCG).

mod common;
use common::*;
use kernlab::sample::rows::{self, OpsRow};
use std::sync::Mutex;

static ONE_AB_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A copy of the hook module's source beside a test's lab, as a vendor's
/// module would sit beside their lab file.
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
    assert_eq!(r["schema"], "kernlab.leak-report/2");
    assert_eq!(r["verdict"], "leak");
    assert_eq!(r["expectation_held"], true);
    let a = &r["analysis"];
    assert_eq!(a["basis"], "per-op");
    // One dentry plus one shmem inode (and its LSM blob) per created-and-
    // deleted file: about 1 KB per operation on tmpfs, module − baseline.
    let per_op = a["total"]["delta"].as_f64().unwrap();
    assert!((800.0..1400.0).contains(&per_op), "bytes/op {per_op}");
    let ops_rate = a["ops_per_s"][0].as_f64().unwrap();
    // Never above the churn's rate; below it only as far as a loaded host
    // slows the TCG guest (390/s seen with other QEMU guests on the cores).
    assert!((200.0..1100.0).contains(&ops_rate), "ops/s {ops_rate}");
    // The culprits are named, at about one object per operation more than
    // in the baseline. The run stops at the first look that decides the
    // verdict, so at least one of them is a LEAK there with its interval
    // above the floor; the other may still be short of its Holm threshold
    // at that look (seen once on a loaded machine: p 2.5e-4), not wrong.
    let caches = a["caches"].as_array().unwrap();
    let mut flagged = 0;
    for want in ["dentry", "shmem_inode_cache"] {
        let c = caches.iter().find(|c| c["name"] == want).unwrap_or_else(|| panic!("{want} not among {caches:?}"));
        let per = c["delta"].as_f64().unwrap();
        assert!((0.9..1.2).contains(&per), "{want}: {per} objects/op");
        if c["leak"] == true {
            assert!(c["lower"].as_f64().unwrap() > c["floor"].as_f64().unwrap(), "{c}");
            flagged += 1;
        }
    }
    assert!(flagged >= 1, "neither dentry nor shmem_inode_cache is a LEAK: {caches:?}");
    // The baseline (leak=0) grows by background noise only: under 1 % of the leak.
    let base = a["total"]["baseline"]["trend"]["slope"].as_f64().unwrap();
    assert!(base < per_op / 100.0, "baseline grows like the module: {base}");
    assert!(!a["exhaustion"].as_array().unwrap().is_empty());
    // A leak this size is decided at the first look, and both workloads end there.
    let q = &a["sequential"];
    assert_eq!(q["early"], true, "{q}");
    assert!(r["stopped"].as_str().unwrap().starts_with("decided at look"), "{}", r["stopped"]);
    let samples = q["looks"][q["decided_at"].as_u64().unwrap() as usize]["samples"].as_u64().unwrap();
    assert!(samples < 20, "decided at {samples} samples of a planned 31");
    assert!(stdout.contains("stopped: decided at look"), "{stdout}");

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

    // The diagnosis: a reference leak (dentries in use grow with the
    // caches), the held objects allocated by the kernel for the churn, not
    // by the module; the pass ran and says what it cost.
    let at = &r["attribution"];
    assert_eq!(at["kind"], "reference", "{at}");
    let evidence: Vec<&str> = at["evidence"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert!(evidence.iter().any(|e| e.starts_with("dentries in use (nr_dentry − nr_unused) grow")), "{evidence:?}");
    assert!(evidence.iter().any(|e| e.contains("dentry objects were allocated by the kernel (__d_alloc")), "{evidence:?}");
    let pass = &at["pass"];
    assert_eq!(pass["status"], "done", "{pass}");
    assert!(pass["secs"].as_f64().unwrap() > 0.0 && pass["caches"].as_array().unwrap().iter().any(|c| c == "dentry"), "{pass}");
    // The holder: on 6.1 khm takes its references inside its own kprobe
    // handler, where kprobe events cannot see (and 6.1 has no fprobe
    // events), so the pass says so and names the module's only function
    // taking dentry references from its code, with the dentries it holds.
    let tried = pass["tried"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect::<Vec<_>>().join("\n");
    assert!(tried.contains("inside another kprobe's handler"), "{tried}");
    let s = &at["sites"][0];
    assert_eq!((s["function"].as_str(), s["module"].as_str(), s["cache"].as_str(), s["role"].as_str()), (Some("khm_entry"), Some("khm"), Some("dentry"), Some("takes-references")), "{at}");
    assert!(s["objects"].as_i64().unwrap() > 1000, "{s}");
    assert!(stdout.contains("code: khm_entry [khm] is the only function of the lab's modules taking dentry references"), "{stdout}");
    assert!(stdout.contains("  kind: reference leak"), "{stdout}");
    assert!(stdout.contains("  attribution pass: done in "), "{stdout}");
    assert!(std::fs::read_to_string(dir.join("report.html")).unwrap().contains("<section id=\"diagnosis\">"));

    // The whole run, the attribution pass's instruments included, is private.
    assert!(assert_private_tree(&dir) > 30);
    let instruments: Vec<_> = ["module", "baseline", "attribution/module", "attribution/baseline"].iter().map(|a| dir.join(a).join("instruments")).filter(|p| p.is_dir()).collect();
    assert!(!instruments.is_empty(), "no instruments/ directory in the run");
}

/// The pass's module arm's `leaked` count from `/proc/leaky` at the end of
/// its workload (the leaky labs print it on SIGTERM).
fn leaked_in_pass(dir: &std::path::Path) -> i64 {
    let log = std::fs::read_to_string(dir.join("attribution/module/workload.log")).unwrap();
    let tail = log.rsplit_once("final").map(|t| t.1).unwrap_or_else(|| panic!("no final counters: {log}"));
    tail.lines().find_map(|l| l.strip_prefix("leaked ")).and_then(|v| v.trim().parse().ok()).unwrap_or_else(|| panic!("{log}"))
}

/// An allocation leak's diagnosis: the kind, and the one site the pass
/// names with exactly the objects the module kept (its own counter).
fn assert_allocation_leak_named(dir: &std::path::Path, cache: &str) {
    let r = report(dir);
    let at = &r["attribution"];
    assert_eq!(at["kind"], "allocation", "{at}");
    let sites = at["sites"].as_array().unwrap();
    let s = sites.first().unwrap_or_else(|| panic!("no site named: {at}"));
    assert_eq!((s["function"].as_str(), s["module"].as_str(), s["cache"].as_str()), (Some("leaky_alloc"), Some("leaky"), Some(cache)), "{at}");
    let leaked = leaked_in_pass(dir);
    assert!(leaked > 0);
    assert_eq!(s["objects"].as_i64(), Some(leaked), "the site holds exactly what the module kept: {at}");
    assert_eq!(sites.len(), 1, "nothing else named: {sites:?}");
    assert_eq!(at["pass"]["status"], "done");
}

#[test]
fn a_kmalloc_leak_is_an_allocation_leak_named_by_its_function() {
    let _one = ONE_AB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("kmalloc");
    let out = run(&["run", "labs/leaky-kmalloc.yaml", "--out", dir.to_str().unwrap(), "-q"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_allocation_leak_named(&dir, "kmalloc-256");
    assert!(stdout.contains("code: leaky_alloc [leaky] allocated "), "{stdout}");
}

#[test]
fn no_leak_lab_passes_the_regression_gate() {
    let _one = ONE_AB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("noleak");
    let out = run(&["run", "labs/no-leak-lab.yaml", "--out", dir.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    // No false LEAK. Within the lab's 30 s the busiest caches of the churn
    // (dentry, shmem_inode_cache, lsm_inode_cache, ±50–100 objects from
    // one sample to the next) may not yet rule out the floor: then the
    // verdict is INCONCLUSIVE (102) and says what it would take.
    let code = out.status.code();
    assert!(code == Some(0) || code == Some(102), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let r = report(&dir);
    assert_ne!(r["verdict"], "leak", "{stdout}");
    let a = &r["analysis"];
    assert!(a["detectable"]["bytes"].as_f64().unwrap() > 0.0, "a NO-LEAK or INCONCLUSIVE states what it rules out: {a}");
    assert!(stdout.contains("rules out (80 % power)"), "{stdout}");
    // BOUNDED (a cache that rose and levelled off, e.g. skbuff_head_cache
    // settling by one in the first samples) also holds the expectation.
    if r["verdict"] == "inconclusive" {
        assert!(a["needs"].as_str().unwrap().contains("samples per arm"), "{}", a["needs"]);
    } else {
        assert!(stdout.contains("NO-LEAK as expected") || stdout.contains("BOUNDED as expected"), "{stdout}");
    }
    // The module arm loaded the fixed module; the baseline none.
    assert!(arm_events(&dir, "module").iter().any(|e| e["event"] == "module-loaded" && e["params"]["leak"] == "0"));
    assert!(!arm_events(&dir, "baseline").iter().any(|e| e["event"] == "module-loaded"));
}

#[test]
fn a_a_comparison_is_no_leak_and_rmmod_works_under_load() {
    let _one = ONE_AB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    copy_khm(d.path(), false);
    // Baseline against baseline: both arms the same fixed module, unloaded
    // while the churn runs.
    let f = lab(
        d.path(),
        "aa",
        "name: aa\n\
         modules:\n  - source: khm\n    params: {leak: 0}\n\
         workload:\n  churn: {rate: 1000}\n  commands:\n    - 'sleep 12; cat /proc/khm; rmmod khm && echo rmmod-ok'\n  duration: 20s\n\
         monitor:\n  interval: 1s\n  reclaim: true\n\
         leak:\n  expect: no-leak\n  stop_early: false\n  baseline:\n    modules:\n      - source: khm\n        params: {leak: 0}\n",
    );
    // stop_early off: the arms sample their whole 20 s around the rmmod
    // (with the objects metric a clean A/A is decided by 12 s and stops).
    let dir = d.path().join("aa-run");
    let out = run(&["run", f.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let code = out.status.code();
    assert!(code == Some(0) || code == Some(102), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let r = report(&dir);
    assert_ne!(r["verdict"], "leak", "{r}");
    for arm in ["module", "baseline"] {
        let log = std::fs::read_to_string(dir.join(arm).join("workload.log")).unwrap();
        assert!(log.contains("rmmod-ok"), "{arm}: {log}");
        // The hook saw the churn's closes, and leaked none.
        assert!(log.contains("leaked 0"), "{arm}: {log}");
        let samples = report(&dir.join(arm))["samples"].as_u64().unwrap();
        assert!(samples >= 18, "{arm}: samples {samples}");
        assert_eq!(report(&dir.join(arm))["sample_gaps"], 0);
    }
}

#[test]
fn a_leak_lab_too_short_for_a_verdict_is_refused_before_it_boots() {
    let d = tempfile::tempdir().unwrap();
    copy_khm(d.path(), false);
    let f = lab(
        d.path(),
        "short",
        "name: short\nmodules:\n  - source: khm\n    params: {leak: 1}\nworkload:\n  churn: {rate: 1000}\n  duration: 2s\nmonitor:\n  interval: 1s\nleak:\n  expect: leak\n",
    );
    let out = run(&["run", f.to_str().unwrap(), "--out", d.path().join("short-run").to_str().unwrap(), "-q"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("short.yaml:7") && stderr.contains("workload.duration") && stderr.contains("at least 8 samples"), "{stderr}");
    assert!(!d.path().join("short-run").join("module").exists(), "nothing booted");
}

/// A leak that is not khm's: the fixture module keeps one 256-byte object
/// of its own cache per 1,000 unlinks. Found from the cache alone (the
/// total Slab cannot see 0.26 bytes per operation), and the run stops as
/// soon as it is decided.
#[test]
fn a_rare_leak_into_a_cache_of_its_own_is_found_and_named() {
    let _one = ONE_AB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("rare");
    let out = run(&["run", "labs/leaky-rare.yaml", "--out", dir.to_str().unwrap(), "-q"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let r = report(&dir);
    let a = &r["analysis"];
    assert_eq!(r["verdict"], "leak");
    let c = a["caches"].as_array().unwrap().iter().find(|c| c["name"] == "leaky_obj").expect("leaky_obj evidence");
    assert_eq!(c["leak"], true);
    let per = c["delta"].as_f64().unwrap();
    assert!((0.0008..0.0012).contains(&per), "{per} objects/op");
    assert_eq!((c["baseline"]["first"].as_f64(), c["baseline"]["last"].as_f64()), (Some(0.0), Some(0.0)), "absent from the baseline");
    assert_eq!(a["sequential"]["early"], true, "decided before the planned 120 s: {}", a["sequential"]);
    assert_allocation_leak_named(&dir, "leaky_obj");
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

#[test]
fn module_parameter_typos_load_failures_and_failing_workloads_are_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    copy_khm(d.path(), false);
    // A parameter the module does not have: caught on the host, before boot.
    let f = lab(d.path(), "typo", "name: typo\nmodules:\n  - source: khm\n    params: {leek: 1}\n");
    let out = run(&["run", f.to_str().unwrap(), "--out", d.path().join("typo-run").to_str().unwrap(), "-q"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("module `khm` has no parameter `leek`") && err.contains("leak"), "{err}");
    assert!(qemu_pids(&d.path().join("typo-run")).is_empty(), "no VM for a lab error");

    // A value the module refuses: insmod's error and the kernel's words.
    let f = lab(d.path(), "bad", "name: bad\nmodules:\n  - source: khm\n    params: {leak: 7}\n");
    let out = run(&["run", f.to_str().unwrap(), "--out", d.path().join("bad-run").to_str().unwrap(), "-q"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "{err}");
    assert!(err.contains("loading module `khm` into kernel `debian-6.1.0-54-cloud-amd64` failed") && err.contains("insmod"), "{err}");
    assert!(err.contains("khm"), "{err}");

    // A workload that exits non-zero early ends the run at once with its output.
    let f = lab(d.path(), "wl", "name: wl\nworkload:\n  commands: ['echo about to fail; sleep 1; exit 4']\n  duration: 60s\nmonitor:\n  interval: 1s\n");
    let start = std::time::Instant::now();
    let out = run(&["run", f.to_str().unwrap(), "--out", d.path().join("wl-run").to_str().unwrap(), "-q"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "{err}");
    assert!(err.contains("workload exited with status 4") && err.contains("about to fail"), "{err}");
    assert!(start.elapsed().as_secs() < 40, "waited for the duration: {:?}", start.elapsed());
}

#[test]
fn the_module_builds_and_works_on_the_generic_kernel_too() {
    let d = tempfile::tempdir().unwrap();
    copy_khm(d.path(), false);
    let f = lab(
        d.path(),
        "generic",
        "name: generic\nkernel: debian-6.1.0-54-amd64\nmodules:\n  - source: khm\n    params: {leak: 1}\n\
         workload:\n  churn: {rate: 500}\n  commands: ['sleep 4; cat /proc/khm']\n  duration: 6s\nmonitor:\n  interval: 1s\n",
    );
    let dir = d.path().join("generic-run");
    let out = run(&["run", f.to_str().unwrap(), "--out", dir.to_str().unwrap(), "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let ev = events(&dir);
    let loaded = ev.iter().find(|e| e["event"] == "module-loaded").expect("module-loaded");
    assert_eq!(loaded["params"]["leak"], "1");
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["kernel"]["release"], "6.1.0-54-amd64");
    // The hook counted the churn's last-reference closes and leaked them.
    let log = std::fs::read_to_string(dir.join("workload.log")).unwrap();
    let leaked: u64 = log.lines().find_map(|l| l.strip_prefix("leaked ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    assert!(leaked > 500, "{log}");
}

#[test]
fn churn_on_an_ext4_disk_leaks_ext4_inodes() {
    let d = tempfile::tempdir().unwrap();
    copy_khm(d.path(), false);
    let f = lab(
        d.path(),
        "ext4",
        "name: ext4\nmodules:\n  - source: khm\n    params: {leak: 1}\n\
         workload:\n  churn: {fs: ext4, disk: 512M, rate: 400}\n  duration: 8s\nmonitor:\n  interval: 1s\n  reclaim: true\n",
    );
    let dir = d.path().join("ext4-run");
    let out = run(&["run", f.to_str().unwrap(), "--out", dir.to_str().unwrap(), "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let last_ops = rows::read::<OpsRow>(&dir.join("samples")).unwrap().last().expect("ops rows").ops;
    assert!(last_ops > 1500, "ops {last_ops}");
    // Each leaked file pins an ext4 inode and its dentry, even after reclaim.
    let growth = report(&dir)["top_slab_growth"].as_array().unwrap().clone();
    let g = |name: &str| growth.iter().find(|c| c["cache"] == name).map(|c| c["delta_objs"].as_i64().unwrap()).unwrap_or(0);
    assert!(g("ext4_inode_cache") as f64 > 0.8 * last_ops as f64, "ext4_inode_cache {} for {last_ops} ops: {growth:?}", g("ext4_inode_cache"));
    assert!(g("dentry") as f64 > 0.8 * last_ops as f64, "dentry {}: {growth:?}", g("dentry"));
    // The scratch disk is gone after the run.
    assert!(!dir.join("churn.img").exists());
}

/// The customer's own picture: socket churn through the leaking close hook
/// pins one sockfs dentry and one `sock_inode_cache` object per socket
/// closed (one operation = one socket's last close; a socketpair is two,
/// a loopback TCP connection two: the connecting and the accepted socket).
#[test]
fn socket_churn_leaks_sock_inode_cache_and_dentry_one_per_socket() {
    let _one = ONE_AB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("sockets");
    let out = run(&["run", "labs/leak-sockets.yaml", "--out", dir.to_str().unwrap(), "-q", "--attribute", "off"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let r = report(&dir);
    assert_eq!(r["verdict"], "leak", "{stdout}");
    assert_eq!(r["expectation_held"], true);
    let a = &r["analysis"];
    assert_eq!(a["basis"], "per-op");
    let ops_rate = a["ops_per_s"][0].as_f64().unwrap();
    // Never above the churn's rate; below it only as far as a loaded host
    // slows the TCG guest (390/s seen with other QEMU guests on the cores).
    assert!((200.0..1150.0).contains(&ops_rate), "ops/s {ops_rate}");
    // Closed sockets whose dentries stay referenced: a reference leak, told
    // from the first pass alone (no attribution pass asked for).
    assert_eq!(r["attribution"]["kind"], "reference", "{}", r["attribution"]);
    assert_eq!(r["attribution"]["skipped"], "leak.attribute is off");
    // About one object of each per socket closed, module − baseline. At an
    // early stop not every cache need be past its Holm threshold yet; the
    // estimates are what is asserted.
    let caches = a["caches"].as_array().unwrap();
    for want in ["sock_inode_cache", "dentry"] {
        let c = caches.iter().find(|c| c["name"] == want).unwrap_or_else(|| panic!("{want} not among {caches:?}"));
        let per = c["delta"].as_f64().unwrap();
        assert!((SOCK_PER_OP_LOW..SOCK_PER_OP_HIGH).contains(&per), "{want}: {per} objects/op");
    }
    // No file is made: shmem inodes move only by the churn's own count
    // file, replaced on /run ten times a second (~0.005 per operation).
    if let Some(c) = caches.iter().find(|c| c["name"] == "shmem_inode_cache") {
        assert!(c["delta"].as_f64().unwrap().abs() < 0.05, "{c}");
    }
    // Each socket leaks a dentry, a socket inode (832 bytes) and its LSM
    // blob: about 1.1 KB per operation (1,060–1,131 measured).
    let per_op = a["total"]["delta"].as_f64().unwrap();
    assert!((900.0..1400.0).contains(&per_op), "bytes/op {per_op}");
    let log = std::fs::read_to_string(dir.join("module/workload.log")).unwrap_or_default();
    assert!(!log.contains("failed"), "{log}");
}

/// Objects per operation for the socket lab: 0.96–1.03 for both caches in
/// six A/B runs on this machine (TCG, all decided at look 1), ±15 % kept.
const SOCK_PER_OP_LOW: f64 = 0.85;
const SOCK_PER_OP_HIGH: f64 = 1.15;
