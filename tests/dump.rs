//! Panics, dumps and triage on the real kernel: in-guest kdump with the
//! capture kernel and makedumpfile, the host dump over QMP, the NMI path
//! when SSH is dead, the fallback when the capture kernel cannot run, a
//! module that panics the guest as it loads, the leak run until OOM, and
//! `crash` reading every vmcore. The debug vmlinux
//! (a 270 MiB package) is fetched once into the cache and kept.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

// Each of these keeps a core busy (the leak test two); one test at a time
// keeps TCG guests from starving each other on this 2-core machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn run_lab(d: &Path, name: &str, yaml: &str) -> (std::process::Output, PathBuf) {
    let f = lab(d, name, yaml);
    let dir = d.join(format!("{name}-run"));
    let out = run(&["run", f.to_str().unwrap(), "--out", dir.to_str().unwrap(), "-q"]);
    (out, dir)
}

fn dump_of(dir: &Path) -> serde_json::Value {
    report(dir)["dump"].clone()
}

#[test]
fn sysrq_panic_goes_through_kdump_into_a_vmcore_crash_reads() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let (out, dir) = run_lab(
        d.path(),
        "kdump",
        "name: kdump\nexhaustion:\n  action: kdump\nworkload:\n  commands: ['sleep 3; echo c > /proc/sysrq-trigger']\n  duration: 60s\nmonitor:\n  interval: 1s\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dump = dump_of(&dir);
    assert_eq!(dump["via"], "kdump", "{dump}");
    // Relative to the run directory: crash/<YYYY-MM-DD-HH:MM>/vmcore,
    // private, with the kernel log beside it.
    let rel = PathBuf::from(dump["vmcore"].as_str().unwrap());
    assert!(rel.starts_with("crash"), "{dump}");
    let vmcore = dir.join(rel);
    let crash_dir = vmcore.parent().unwrap();
    assert_eq!(crash_dir.parent().unwrap(), dir.join("crash"));
    assert_eq!(crash_dir.file_name().unwrap().len(), "2026-11-26-10:57".len());
    assert_eq!(mode(&vmcore), 0o600);
    assert!(std::fs::read_to_string(crash_dir.join("dmesg.txt")).unwrap().contains("sysrq"));
    let names = event_names(&dir);
    for e in ["kdump-loaded", "dump-written", "triage"] {
        assert!(names.iter().any(|n| n == e), "no {e} in {names:?}");
    }
    assert!(events(&dir).iter().any(|e| e["event"] == "qmp" && e["name"] == "GUEST_CRASHLOADED"));
    let t = &report(&dir)["triage"];
    assert!(t["panic"].as_str().unwrap().contains("sysrq triggered crash"), "{t}");
    assert!(t["memory"].as_array().unwrap().iter().any(|m| m[0] == "SLAB"), "{t}");
    assert!(!t["top_caches"].as_array().unwrap().is_empty());
    assert!(crash_dir.join("crash.txt").is_file());
    assert_eq!(t["engine"], "crash", "auto on the host's own architecture is crash: {t}");
    assert_no_qemu(&dir);
    // drgn on the same vmcore (makedumpfile's flattened stream) agrees.
    eprintln!("crash triage in the run: {} s", t["secs"]);
    drgn_agrees_with_crash(&vmcore, &crash_dir.join("crash.txt"), &d.path().join("drgn"));

    // The same vmcore through `kernlab triage`, as a customer's would come.
    let tri = d.path().join("triage");
    let o = run(&["triage", vmcore.to_str().unwrap(), "--kernel", "debian-6.1.0-54-cloud-amd64", "--out", tri.to_str().unwrap()]);
    let so = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(so.contains("panic: Kernel panic - not syncing: sysrq triggered crash") && so.contains("largest slab caches"), "{so}");
    assert!(tri.join("triage.json").is_file() && tri.join("crash.txt").is_file());
    assert_valid_record_file(&tri.join("triage.json"));
    assert!(assert_valid_records(&dir) > 3, "the run's records fit their schemas");
    // The same under --json: one document, triage.json's record inside.
    let tri_json = d.path().join("triage-json");
    let o = run(&["--json", "triage", vmcore.to_str().unwrap(), "--kernel", "debian-6.1.0-54-cloud-amd64", "--out", tri_json.to_str().unwrap()]);
    let so = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(so.lines().count(), 1, "one JSON document:\n{so}");
    let v: serde_json::Value = serde_json::from_str(&so).unwrap();
    for k in ["vmcore", "kernel", "dir", "crash_txt", "triage_json", "triage"] {
        assert!(v.get(k).is_some(), "no `{k}` in {v}");
    }
    assert!(v["triage"]["panic"].as_str().unwrap().contains("sysrq triggered crash"), "{v}");
    assert_eq!(v["triage"], serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(tri_json.join("triage.json")).unwrap()).unwrap());

    // Something that is not this kernel's vmcore is a clear error.
    let bogus = d.path().join("not-a-vmcore");
    std::fs::write(&bogus, vec![7u8; 1 << 20]).unwrap();
    let o = run(&["triage", bogus.to_str().unwrap(), "--kernel", "debian-6.1.0-54-cloud-amd64", "--out", d.path().join("t2").to_str().unwrap()]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(101), "{err}");
    assert!(err.contains("`crash` could not read") && err.contains("not-a-vmcore"), "{err}");
    let o = run(&["triage", bogus.to_str().unwrap(), "--engine", "drgn", "--kernel", "debian-6.1.0-54-cloud-amd64", "--out", d.path().join("t3").to_str().unwrap()]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(101), "{err}");
    assert!(err.contains("drgn could not read") && err.contains("not-a-vmcore"), "{err}");
}

/// The drgn engine on a vmcore `crash` read (its text in `crash_txt`):
/// the same slab caches with the same counts. Both read SLUB's own
/// counters from the same memory image: the nodes' `total_objects` (so
/// total objects and object sizes must be equal), and for the free ones
/// the partial slabs, each CPU's partial slabs and each CPU's active slab
/// with its lockless freelist. Allocated objects may differ by what a CPU
/// was doing when the dump stopped it: in a sysrq panic's dump a cache in
/// use on a CPU at that moment (task_struct, vm_area_struct, files_cache)
/// differed by 1 or 2 objects, the per-CPU freelist read one way by crash
/// and another by drgn; in an NMI panic's dump all 274 caches were equal.
/// So: allocated equal within 2 % of the cache's total or 4 objects, and
/// at least 95 % of the caches exactly equal. crash's text can lose a row
/// where the console's lines interleave with `kmem -s`'s, so drgn may list
/// a cache crash's table lacks, never the other way round.
fn drgn_agrees_with_crash(vmcore: &Path, crash_txt: &Path, out: &Path) {
    let t = std::time::Instant::now();
    let o = run(&["triage", "--engine", "drgn", "--kernel", "debian-6.1.0-54-cloud-amd64", vmcore.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let secs = t.elapsed().as_secs_f64();
    let so = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "stdout:\n{so}\nstderr:\n{}", text(&o.stderr));
    assert!(so.contains("read by drgn"), "{so}");
    let tj: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("triage.json")).unwrap()).unwrap();
    assert_eq!(tj["engine"], "drgn", "{tj}");
    assert_valid_record_file(&out.join("triage.json"));
    let crash = kernlab::triage::parse_kmem_s(&std::fs::read_to_string(crash_txt).unwrap());
    let drgn_json = std::fs::read_to_string(out.join("drgn.json")).unwrap();
    let drgn = kernlab::triage::drgn::slab_table(&drgn_json).unwrap();
    // How far the two readings of one cache may be apart: the objects of
    // one slab per CPU. A CPU's active slab is the one whose state moves
    // under a panic (its lockless freelist, and what other CPUs freed into
    // it), and the two tools read it differently; every other slab is on
    // a list both walk the same way.
    let raw: serde_json::Value = serde_json::from_str(&drgn_json).unwrap();
    let cpus = raw["cpus"].as_u64().unwrap_or_else(|| panic!("drgn.json names no cpus: {}", &drgn_json[..drgn_json.len().min(300)]));
    let per_slab = |name: &str| -> u64 { raw["caches"].as_array().unwrap().iter().find(|c| c["name"] == name).and_then(|c| c["per_slab"].as_u64()).unwrap_or(0) };
    assert!(crash.len() > 100, "crash's table: {} caches", crash.len());
    let (mut exact, mut differ, mut near) = (0, Vec::new(), Vec::new());
    for c in &crash {
        let d = drgn.iter().find(|d| d.name == c.name);
        let line = format!("{}: crash {}/{} of {} B, drgn {:?}", c.name, c.allocated, c.total, c.objsize, d.map(|d| (d.allocated, d.total, d.objsize)));
        match d {
            Some(d) if (d.objsize, d.allocated, d.total) == (c.objsize, c.allocated, c.total) => exact += 1,
            Some(d) if (d.objsize, d.total) == (c.objsize, c.total) && d.allocated.abs_diff(c.allocated) <= cpus * per_slab(&c.name) => near.push(line),
            _ => differ.push(line),
        }
    }
    assert!(differ.is_empty(), "the engines' slab tables differ:\n{}", differ.join("\n"));
    assert!(exact * 100 >= crash.len() * 95, "only {exact} of {} caches equal; within the tolerance:\n{}", crash.len(), near.join("\n"));
    let extra: Vec<&str> = drgn.iter().filter(|d| !crash.iter().any(|c| c.name == d.name)).map(|d| d.name.as_str()).collect();
    assert!(extra.len() <= 2, "drgn lists caches crash does not: {extra:?}");
    eprintln!(
        "drgn agrees with crash on {} caches ({exact} equal, within the tolerance: {near:?}; {} more in drgn's: {extra:?}); `kernlab triage --engine drgn` {secs:.1} s (drgn's own {} s)",
        crash.len(),
        extra.len(),
        tj["secs"]
    );
}

fn assert_no_qemu(dir: &Path) {
    for pid in qemu_pids(dir) {
        assert!(!qemu_alive(pid), "QEMU {pid} outlived its run");
    }
}

#[test]
fn host_dump_when_kdump_is_not_configured() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let (out, dir) = run_lab(
        d.path(),
        "hostdump",
        "name: hostdump\nexhaustion:\n  action: host-dump\nworkload:\n  commands: ['sleep 3; echo c > /proc/sysrq-trigger']\n  duration: 60s\nmonitor:\n  interval: 1s\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dump = dump_of(&dir);
    assert_eq!(dump["via"], "host-dump", "{dump}");
    assert!(dump["reason"].as_str().unwrap().contains("dump-guest-memory"), "{dump}");
    // QEMU's kdump-zlib dump of a 512 MiB guest, read by crash with the
    // vmcoreinfo the guest handed QEMU.
    assert!(dump["bytes"].as_u64().unwrap() > 1 << 20);
    let t = &report(&dir)["triage"];
    assert!(t["panic"].as_str().unwrap().contains("sysrq"), "{t}");
    assert_eq!(t["engine"], "crash", "{t}");
    assert_no_qemu(&dir);
    // drgn 0.0.22 cannot read QEMU's kdump-zlib (its kdump reader finds
    // no architecture in it), and says so and what to do instead.
    let vmcore = dir.join(dump["vmcore"].as_str().unwrap());
    let o = run(&["triage", "--engine", "drgn", "--kernel", "debian-6.1.0-54-cloud-amd64", vmcore.to_str().unwrap(), "--out", d.path().join("drgn").to_str().unwrap()]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(101), "{err}");
    assert!(err.contains("drgn could not read") && err.contains("QEMU kdump-zlib") && err.contains("ELF core"), "{err}");
}

/// In a lab that takes dumps, a module that panics the guest at `insmod`
/// is a finding like any other panic: the run fails with the panic line,
/// and the vmcore of that panic is taken first.
#[test]
fn a_module_that_panics_at_insmod_in_a_dump_lab_fails_with_the_vmcore_taken() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("panic")).unwrap();
    for f in ["panic.c", "Kbuild"] {
        std::fs::copy(repo("tests/payload/panic").join(f), d.path().join("panic").join(f)).unwrap();
    }
    let (out, dir) = run_lab(
        d.path(),
        "panicdump",
        "name: panicdump\nmodules:\n  - source: panic\nexhaustion:\n  action: host-dump\n  crash: false\nworkload:\n  commands: ['sleep 600']\n  duration: 30s\n",
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "{err}");
    assert!(err.contains("while loading module `panic`") && err.contains("Kernel panic - not syncing: kernlab test: panic at insmod"), "{err}");
    let dump = dump_of(&dir);
    assert_eq!(dump["via"], "host-dump", "{dump}");
    assert!(dump["reason"].as_str().unwrap().contains("kernlab test: panic at insmod"), "{dump}");
    assert!(dump["bytes"].as_u64().unwrap() > 1 << 20, "{dump}");
    assert_no_qemu(&dir);
}

#[test]
fn a_hung_guest_with_ssh_dead_is_panicked_by_nmi_and_dumped() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let (out, dir) = run_lab(
        d.path(),
        "nmi",
        "name: nmi\nexhaustion:\n  action: host-dump\n  hang_intervals: 3\nworkload:\n  commands: ['sleep 3; killall dropbear']\n  duration: 60s\nmonitor:\n  interval: 1s\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let ev = events(&dir);
    assert!(ev.iter().filter(|e| e["event"] == "sample-failed").count() >= 3);
    let how = ev.iter().find(|e| e["event"] == "panic-triggered").expect("panic-triggered")["how"].as_str().unwrap().to_string();
    assert!(how.contains("NMI"), "{how}");
    assert_eq!(dump_of(&dir)["via"], "host-dump");
    // The VM pauses on the panic before the console is flushed; the vmcore
    // has the panic message.
    let t = &report(&dir)["triage"];
    assert!(t["panic"].as_str().unwrap().contains("NMI"), "{t}");
    assert_no_qemu(&dir);
}

#[test]
fn a_crashkernel_too_small_falls_back_to_the_host_dump_and_says_why() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let (out, dir) = run_lab(
        d.path(),
        "small",
        "name: small\nexhaustion:\n  action: kdump\n  crashkernel: 64M\n  deadline: 30s\n  crash: false\nworkload:\n  commands: ['sleep 3; echo c > /proc/sysrq-trigger']\n  duration: 60s\nmonitor:\n  interval: 1s\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dump = dump_of(&dir);
    assert_eq!(dump["via"], "host-dump", "{dump}");
    // The starved capture kernel usually panics ("System is deadlocked on
    // memory"), which the console shows at once; sometimes it thrashes in
    // the OOM killer instead, and the deadline ends the wait.
    let reason = dump["reason"].as_str().unwrap();
    let panicked = reason.contains("capture kernel panicked") && reason.contains("crashkernel (64 MiB) too small");
    let timed_out = reason.contains("capture kernel did not finish within 30s");
    assert!(panicked || timed_out, "{reason}");
    assert!(dump["secs"].as_f64().unwrap() < 60.0, "{dump}");
    assert_no_qemu(&dir);
}

#[test]
fn the_leak_runs_until_oom_and_crash_names_the_culprits() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("l2c");
    let out = run(&["run", "labs/leak-to-crash.yaml", "--out", dir.to_str().unwrap(), "--attribute", "off"]);
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{so}\nstderr:\n{se}");
    // The module arm ran until the guest was out of memory, however long
    // the churn took on this machine's load (exhaustion.until): the test
    // waits on that state, and the lab's max bounds it.
    let module = report(&dir.join("module"));
    let x = &module["exhaustion"];
    assert_eq!(x["until"], true, "{x}");
    assert_eq!(x["reached"], true, "the module arm did not run out of memory: {x}\nstdout:\n{so}");
    assert_eq!(x["within_secs"], 600.0, "{x}");
    assert!(x["after_secs"].as_f64().unwrap() < 600.0, "{x}");
    assert!(x["trigger"].as_str().unwrap().contains("kdump"), "{x}");
    let started = events(&dir.join("module")).into_iter().find(|e| e["event"] == "workload-started").expect("workload-started");
    assert_eq!((started["duration_secs"].as_f64(), started["until_exhaustion"].as_bool()), (Some(600.0), Some(true)));
    let r = report(&dir);
    assert_eq!(r["verdict"], "leak");
    assert_eq!(r["crash"]["exhaustion"]["reached"], true, "{}", r["crash"]);
    let crash = &r["crash"];
    assert_eq!(crash["dump"]["via"], "kdump", "{crash}");
    assert!(crash["triage"]["panic"].as_str().unwrap().contains("Out of memory"), "{crash}");
    let top: Vec<&str> = crash["triage"]["top_caches"].as_array().unwrap().iter().take(3).map(|c| c["name"].as_str().unwrap()).collect();
    assert!(top.contains(&"dentry") && top.contains(&"shmem_inode_cache"), "top caches at the panic: {top:?}");
    assert!(so.contains("largest slab caches at the panic"), "{so}");
    assert!(!so.contains("no exhaustion"), "{so}");
    // From the dump alone: most dentries and shmem inodes are referenced
    // objects of deleted tmpfs files (the khm bug), the kind a reference leak.
    let refs = &crash["triage"]["refs"];
    assert_eq!(refs["kind"], "reference", "{refs:#}");
    for name in ["dentry", "shmem_inode_cache"] {
        let c = refs["caches"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("{name} not read: {refs:#}"));
        let allocated = c["allocated"].as_f64().unwrap();
        let tmpfs = &c["deleted_by_fs"]["tmpfs"];
        assert!(c["sample"].as_u64().unwrap() >= 1000, "{c:#}");
        assert!(tmpfs["low"].as_f64().unwrap() > 0.9 * allocated, "{name}: fewer than 90 % referenced deleted tmpfs files: {c:#}");
        assert!(tmpfs["low"].as_u64() <= tmpfs["count"].as_u64() && tmpfs["count"].as_u64() <= tmpfs["high"].as_u64(), "{tmpfs}");
    }
    assert!(so.contains("crash: reference leak (from the dump alone"), "{so}");
    // `kernlab triage` on that vmcore says the same.
    // Relative to the lab's directory: module/crash/<stamp>/vmcore.
    let vmcore = dir.join(crash["dump"]["vmcore"].as_str().unwrap());
    assert!(vmcore.starts_with(dir.join("module/crash")) && vmcore.is_file(), "{}", vmcore.display());
    assert!(dir.join(crash["triage"]["text"].as_str().unwrap()).is_file(), "{crash}");
    assert!(assert_valid_records(&dir) > 5);
    let vmcore = vmcore.to_str().unwrap();
    let t = run(&["triage", "--kernel", "debian-6.1.0-54-cloud-amd64", vmcore, "--out", d.path().join("triage").to_str().unwrap()]);
    let ts = text(&t.stdout);
    assert_eq!(t.status.code(), Some(0), "stdout:\n{ts}\nstderr:\n{}", text(&t.stderr));
    assert!(ts.contains("referenced objects of deleted files: reference leak (from the dump alone"), "{ts}");
    assert!(ts.lines().any(|l| l.trim_start().starts_with("dentry: ") && l.contains("tmpfs")), "{ts}");
    let tj: serde_json::Value = serde_json::from_slice(&std::fs::read(d.path().join("triage/triage.json")).unwrap()).unwrap();
    assert_eq!(tj["refs"]["kind"], "reference", "{tj:#}");
    // drgn on the same dump of the leak: the same table.
    drgn_agrees_with_crash(Path::new(vmcore), &d.path().join("triage/crash.txt"), &d.path().join("drgn"));
    // The baseline ran its workload.duration (not the module arm's max),
    // did not run out of memory, and took no dump.
    let base = report(&dir.join("baseline"));
    assert!(base["dump"].is_null());
    let bx = &base["exhaustion"];
    assert_eq!((bx["until"].as_bool(), bx["reached"].as_bool(), bx["within_secs"].as_f64()), (Some(false), Some(false), Some(60.0)), "{bx}");
    let finished = events(&dir.join("baseline")).into_iter().find(|e| e["event"] == "workload-finished").expect("workload-finished");
    assert!(finished["secs"].as_f64().unwrap() < 120.0, "the baseline ran past its duration: {finished}");
}

#[test]
fn a_run_until_exhaustion_that_gets_none_says_so_at_its_max() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    // A workload that leaks nothing: the guest never runs out of memory,
    // so the run ends at exhaustion.max, well past workload.duration.
    let f = lab(
        d.path(),
        "never",
        "name: never\nworkload:\n  commands: ['sleep 600']\n  duration: 2s\nmonitor:\n  interval: 1s\nexhaustion:\n  action: host-dump\n  until: true\n  max: 8s\n",
    );
    let dir = d.path().join("never-run");
    let out = run(&["run", f.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{so}\nstderr:\n{se}");
    let r = report(&dir);
    assert_eq!(r["exhaustion"], serde_json::json!({"until": true, "reached": false, "within_secs": 8.0}), "{r}");
    assert!(r["dump"].is_null(), "{r}");
    assert!(so.contains("no exhaustion within 8 s (exhaustion.max)"), "{so}");
    let ev = events(&dir);
    let no = ev.iter().find(|e| e["event"] == "no-exhaustion").expect("a no-exhaustion event");
    assert_eq!((no["within_secs"].as_f64(), no["until_exhaustion"].as_bool()), (Some(8.0), Some(true)), "{no}");
    // Sampling went on to the max, not only the workload's 2 s.
    let started = ev.iter().find(|e| e["event"] == "workload-started").unwrap()["t"].as_f64().unwrap();
    let last = ev.iter().rfind(|e| e["event"] == "sample").unwrap()["sample_t"].as_f64().unwrap();
    assert!(last - started >= 7.0, "sampling stopped {:.1} s after the workload started", last - started);
    assert!(!ev.iter().any(|e| e["event"] == "exhaustion" || e["event"] == "dump-written"));
    assert_no_qemu(&dir);
}

#[test]
fn without_debug_info_the_vmcore_is_kept_and_the_report_says_why() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    // A local kernel (the cached Debian one, used in place) has no debug
    // package to fetch, and this one has no vmlinux beside it.
    let fetched = run(&["kernel", "fetch", "debian-6.1.0-54-cloud-amd64"]);
    assert_eq!(fetched.status.code(), Some(0), "{}", text(&fetched.stderr));
    let root = PathBuf::from(text(&fetched.stdout).split_whitespace().nth(3).unwrap());
    let kroot = d.path().join("local-kernel");
    std::fs::create_dir(&kroot).unwrap();
    for sub in ["boot", "lib"] {
        std::os::unix::fs::symlink(root.join(sub), kroot.join(sub)).unwrap();
    }
    let kdir = d.path().join("kernels");
    std::fs::create_dir(&kdir).unwrap();
    std::fs::write(kdir.join("mine.yaml"), format!("source:\n  local:\n    dir: {}\n", kroot.display())).unwrap();
    let f = lab(
        d.path(),
        "nodebug",
        "name: nodebug\nkernel: mine\nexhaustion:\n  action: host-dump\nworkload:\n  commands: ['sleep 3; echo c > /proc/sysrq-trigger']\n  duration: 60s\nmonitor:\n  interval: 1s\n",
    );
    let dir = d.path().join("nodebug-run");
    let out = run(&["--kernels", kdir.to_str().unwrap(), "run", f.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let r = report(&dir);
    let vmcore = dir.join(r["dump"]["vmcore"].as_str().unwrap());
    assert!(vmcore.is_file() && std::fs::metadata(&vmcore).unwrap().len() > 1 << 20);
    let why = r["triage_skipped"].as_str().unwrap();
    assert!(why.contains("no debug vmlinux for kernel `mine`") && why.contains("vmlinux"), "{why}");
    assert!(r["triage"].is_null());
    assert!(text(&out.stdout).contains("crash triage skipped"), "{}", text(&out.stdout));
}
