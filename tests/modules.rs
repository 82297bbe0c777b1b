//! A product's module tree as its vendor ships it, on the real thing: the
//! prodguard fixture (`tests/fixtures/prodguard`: a DKMS package of a core
//! module that exports an API and a pipe case in a sub-directory that uses
//! it, a shared include/, a compatibility patch the build needs) built
//! against Debian's headers and loaded into a real guest; the same tree
//! through explicit `build`/`ko` entries (the second built against the
//! first's symbols with nothing said); a vendor's prebuilt `.ko`; and the
//! bad inputs, each refused before anything boots or, where the lab itself
//! is wrong, before anything is fetched.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One guest (or A/B pair) at a time: the machine is small.
static ONE_VM_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_vm() -> std::sync::MutexGuard<'static, ()> {
    ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A copy of the fixture tree at `dir/prodguard`, as a user's checkout sits
/// beside their lab, with build leftovers and a .git a real one has.
fn product_tree(dir: &Path) -> PathBuf {
    let to = dir.join("prodguard");
    let status = std::process::Command::new("cp").arg("-r").arg(repo("tests/fixtures/prodguard")).arg(&to).status().unwrap();
    assert!(status.success());
    // What a developer's checkout also holds: none of it may reach the build.
    std::fs::create_dir_all(to.join(".git")).unwrap();
    std::fs::write(to.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::write(to.join("core/stale.o"), "not an object").unwrap();
    std::fs::create_dir_all(to.join("build-local")).unwrap();
    std::fs::write(to.join("build-local/junk.c"), "#error this file is ignored by .gitignore\n").unwrap();
    to
}

const PATCH: &str = "prodguard/patches/0001-compat-pipe-symbols-for-6.x.patch";

/// The events of `arm` named `name`, in order.
fn named<'a>(ev: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
    ev.iter().filter(|e| e["event"] == name).collect()
}

#[test]
fn a_dkms_tree_builds_as_dkms_builds_it_and_its_leak_is_found_per_pipe() {
    let _one = one_vm();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("run");
    let out = run(&["run", "labs/product-leak.yaml", "--out", dir.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("LEAK as expected"), "{stdout}");
    let r = report(&dir);
    assert_eq!(r["verdict"], "leak");
    let a = &r["analysis"];
    // Per pipe() of the product's own stress program, from its
    // `kernlab-ops` lines: one ~2 KiB event record per pipe.
    assert_eq!(a["basis"], "per-op", "{a}");
    let caches = a["caches"].as_array().unwrap();
    let k2 = caches.iter().find(|c| c["name"] == "kmalloc-2k").unwrap_or_else(|| panic!("no kmalloc-2k among {caches:?}"));
    let per = k2["delta"].as_f64().unwrap();
    assert!((0.9..1.1).contains(&per), "kmalloc-2k {per} objects/op");
    assert_eq!(k2["leak"], true, "{k2}");
    assert_eq!(r["attribution"]["kind"], "allocation", "{}", r["attribution"]);
    assert!(stdout.contains("kind: allocation leak"), "{stdout}");

    // Both arms loaded BUILT_MODULE_NAME[0] then [1], the parameter on the
    // module that declares it, and unloaded them in reverse.
    for (arm, leak) in [("module", "1"), ("baseline", "0")] {
        let ev = events(&dir.join(arm));
        let loaded: Vec<_> = named(&ev, "module-loaded").iter().map(|e| e["name"].as_str().unwrap().to_string()).collect();
        assert_eq!(loaded, ["pg_core", "pg_pipe"], "{arm}");
        let pipe = named(&ev, "module-loaded")[1];
        assert_eq!(pipe["params"]["leak"], leak, "{arm}: {pipe}");
        assert!(named(&ev, "module-loaded")[0]["params"].as_object().unwrap().is_empty(), "{arm}");
        let unloaded: Vec<_> = named(&ev, "module-unloaded").iter().map(|e| (e["name"].as_str().unwrap().to_string(), e["ok"].as_bool().unwrap())).collect();
        assert_eq!(unloaded, [("pg_pipe".to_string(), true), ("pg_core".to_string(), true)], "{arm}");
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join(arm).join("manifest.json")).unwrap()).unwrap();
        let names: Vec<_> = m["modules"].as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["pg_core", "pg_pipe"], "{arm}: manifest {m}");
        let core = &m["modules"][0];
        assert_eq!((core["origin"].as_str(), core["built_by"].as_str()), (Some("core/pg_core.ko"), Some("dkms prodguard 3.2.1")), "{arm}: {core}");
        assert!(core["vermagic"].as_str().unwrap().starts_with("6.1.0-54-cloud-amd64 "), "{core}");
        assert_eq!(m["modules"][1]["params"]["leak"], leak, "{arm}");
    }
}

#[test]
fn the_same_tree_through_build_and_ko_entries_is_no_leak_with_the_leak_off() {
    let _one = one_vm();
    let d = tempfile::tempdir().unwrap();
    product_tree(d.path());
    // The core, then the case: its modpost resolves the core's exported
    // symbols only through the core's Module.symvers, which kernlab passes
    // on (KBUILD_EXTRA_SYMBOLS) without the lab saying so. The case needs
    // the compatibility patch; the lab applies it, not dkms.
    let f = lab(
        d.path(),
        "product-gate",
        &format!(
            "name: product-gate
kernel: debian-6.1.0-54-cloud-amd64
modules:
  - source: prodguard
    build: ['make -C \"$KDIR\" M=\"$PWD/core\" modules']
    ko: core/pg_core.ko
  - source: prodguard
    build: ['make -C \"$KDIR\" M=\"$PWD/cases/pipe\" modules']
    ko: [cases/pipe/pg_pipe.ko]
    patches: [{PATCH}]
    params: {{leak: 0}}
workload:
  churn: {{kind: pipes, rate: 1000}}
  duration: 90s
monitor:
  interval: 1s
leak:
  expect: no-leak
  attribute: off
  # One object per 100 pipes: at the default floor (one per 2,000) the
  # sampler's own kmalloc-96 noise keeps this clean product INCONCLUSIVE
  # for many minutes (measured: 0.000729 [-0.00415 .. 0.00560] at 60 s).
  floor_objects_per_op: 0.01
  baseline:
    modules: []
"
        ),
    );
    let dir = d.path().join("run");
    let out = run(&["run", f.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("NO-LEAK as expected"), "{stdout}");
    let r = report(&dir);
    assert_eq!(r["verdict"], "no-leak");
    assert_eq!(r["analysis"]["basis"], "per-op");
    let ev = events(&dir.join("module"));
    let loaded: Vec<_> = named(&ev, "module-loaded").iter().map(|e| e["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(loaded, ["pg_core", "pg_pipe"]);
    assert!(named(&events(&dir.join("baseline")), "module-loaded").is_empty(), "the baseline runs without the product");
}

#[test]
fn a_vendors_prebuilt_ko_loads_as_it_is_and_one_for_another_kernel_is_refused_before_boot() {
    let _one = one_vm();
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("vendor")).unwrap();
    let ko = std::fs::read(repo("src/payload/testdata/khm-6.1.0-54-cloud.ko")).unwrap();
    std::fs::write(d.path().join("vendor/khm.ko"), &ko).unwrap();
    let body = |name: &str, file: &str| {
        format!(
            "name: {name}
kernel: debian-6.1.0-54-cloud-amd64
modules:
  - ko: vendor/{file}
    params: {{leak: 0}}
workload:
  commands: ['cat /proc/khm']
  duration: 2s
monitor:
  interval: 1s
  sources: [meminfo]
"
        )
    };
    let f = lab(d.path(), "prebuilt", &body("prebuilt", "khm.ko"));
    let dir = d.path().join("ok");
    let out = run(&["run", f.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{}\nstderr:\n{}", text(&out.stdout), text(&out.stderr));
    let ev = events(&dir);
    let loaded = named(&ev, "module-loaded");
    assert_eq!(loaded.len(), 1);
    assert_eq!((loaded[0]["name"].as_str(), loaded[0]["params"]["leak"].as_str()), (Some("khm"), Some("0")));
    assert_eq!(named(&ev, "module-unloaded")[0]["ok"], true);

    // The same module with another release in its vermagic (same length,
    // so the ELF stays whole): refused once the kernel is known, before
    // any QEMU starts, naming both releases.
    let at = ko.windows(29).position(|w| w == b"vermagic=6.1.0-54-cloud-amd64").expect("vermagic in the .ko's .modinfo");
    let mut other = ko.clone();
    other[at..at + 29].copy_from_slice(b"vermagic=6.1.0-99-cloud-amd64");
    std::fs::write(d.path().join("vendor/khm-other.ko"), &other).unwrap();
    let f = lab(d.path(), "foreign", &body("foreign", "khm-other.ko"));
    let dir = d.path().join("foreign-run");
    let out = run(&["run", f.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "{stderr}");
    assert!(stderr.contains("khm-other.ko") && stderr.contains("vermagic is `6.1.0-99-cloud-amd64") && stderr.contains("release `6.1.0-54-cloud-amd64`"), "{stderr}");
    assert!(named(&events(&dir), "qemu-started").is_empty(), "nothing boots for a module that cannot load");
}

#[test]
fn a_patch_that_does_not_apply_names_the_patch_the_file_and_the_hunk_before_boot() {
    let d = tempfile::tempdir().unwrap();
    product_tree(d.path());
    std::fs::write(
        d.path().join("stale.patch"),
        "--- a/core/pg_main.c\n+++ b/core/pg_main.c\n@@ -1,3 +1,3 @@\n-// the product as it was two releases ago\n+// patched\n /* prodguard core: the probes the cases register go through here. */\n #include <linux/module.h>\n",
    )
    .unwrap();
    let f = lab(
        d.path(),
        "stale",
        "name: stale
kernel: debian-6.1.0-54-cloud-amd64
modules:
  - source: prodguard
    patches: [stale.patch]
",
    );
    let dir = d.path().join("run");
    let out = run(&["run", f.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "{stderr}");
    assert!(stderr.contains("patch `stale.patch` does not apply"), "{stderr}");
    assert!(stderr.contains("core/pg_main.c: Hunk #1 FAILED at 1"), "{stderr}");
    assert!(named(&events(&dir), "qemu-started").is_empty());
}

#[test]
fn a_compile_error_in_a_sub_directory_names_the_kernel_and_the_file() {
    let d = tempfile::tempdir().unwrap();
    let tree = product_tree(d.path());
    let c = tree.join("cases/pipe/pg_pipe.c");
    let src = std::fs::read_to_string(&c).unwrap().replace("atomic_long_inc(&pg_pipe_events);", "atomic_long_inc(&pg_pipe_events) /* a missing semicolon */");
    std::fs::write(&c, src).unwrap();
    let f = lab(d.path(), "broken", "name: broken\nkernel: debian-6.1.0-54-cloud-amd64\nmodules:\n  - source: prodguard\n");
    let out = run(&["run", f.to_str().unwrap(), "--out", d.path().join("run").to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "{stderr}");
    assert!(stderr.contains("for kernel `debian-6.1.0-54-cloud-amd64` failed: the dkms.conf's MAKE failed at `"), "{stderr}");
    assert!(stderr.contains("cases/pipe/pg_pipe.c:"), "the file in the user's tree: {stderr}");
    assert!(stderr.contains("error:"), "the compiler's own words: {stderr}");
}

#[test]
fn lab_mistakes_are_caught_by_validate_and_run_before_anything_is_fetched() {
    let d = tempfile::tempdir().unwrap();
    product_tree(d.path());
    // An empty cache: nothing may be downloaded into it.
    let cache = d.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let cases: [(&str, &str, &str); 6] = [
        ("no-dir", "  - source: nowhere\n", "modules[0].source: `nowhere` does not exist"),
        ("not-a-tree", "  - source: prodguard/include\n", "has no Kbuild, Makefile or dkms.conf"),
        ("no-patch", "  - source: prodguard\n    patches: [gone.patch]\n", "modules[0].patches[0]: `gone.patch` does not exist"),
        ("no-ko", "  - ko: vendor/x.ko\n", "modules[0].ko[0]: `vendor/x.ko` does not exist"),
        ("not-a-ko", "  - ko: prodguard/README.ko\n", "not an ELF object"),
        ("excluded", "  - source: excl\n", "excludes kernel `6.1.0-54-cloud-amd64`"),
    ];
    std::fs::write(d.path().join("prodguard/README.ko"), "text").unwrap();
    // A copy whose dkms.conf builds only for 5.x kernels.
    let excl = d.path().join("excl");
    std::fs::create_dir(&excl).unwrap();
    let conf = std::fs::read_to_string(d.path().join("prodguard/dkms.conf")).unwrap().replace("BUILD_EXCLUSIVE_KERNEL=\"^(5\\.1[0-9]|6)\\.\"", "BUILD_EXCLUSIVE_KERNEL=\"^5\\.\"");
    assert!(conf.contains("BUILD_EXCLUSIVE_KERNEL=\"^5\\.\""), "{conf}");
    std::fs::write(excl.join("dkms.conf"), conf).unwrap();
    let mut files = Vec::new();
    for (name, modules, want) in cases {
        let f = lab(d.path(), name, &format!("name: {name}\nkernel: debian-6.1.0-54-cloud-amd64\nmodules:\n{modules}"));
        for cmd in ["validate", "run"] {
            let out = kernlab().args([cmd, f.to_str().unwrap()]).env("XDG_CACHE_HOME", &cache).output().unwrap();
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cmd} {name}: {stderr}");
            assert!(stderr.contains(want), "{cmd} {name}: want {want:?} in {stderr}");
            assert!(stderr.contains(&format!("{name}.yaml:")), "{cmd} {name}: the file and line: {stderr}");
        }
        files.push(f);
    }
    let entries: Vec<_> = walk(&cache);
    assert!(entries.iter().all(|p| !p.to_string_lossy().contains("kernels")), "nothing fetched: {entries:?}");
    // Several files at once: each its own result; 2 if any is wrong.
    let good = lab(d.path(), "good", "name: good\nkernel: debian-6.1.0-54-cloud-amd64\nmodules:\n  - source: prodguard\n    params: {leak: 1}\n");
    let out = kernlab().args(["validate", good.to_str().unwrap(), files[0].to_str().unwrap(), files[2].to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stdout).contains(&format!("ok: {}", good.display())), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no-dir.yaml") && stderr.contains("no-patch.yaml"), "{stderr}");
    let out = kernlab().args(["--message-format", "json", "validate", good.to_str().unwrap(), files[0].to_str().unwrap()]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v[0]["valid"].as_bool(), v[1]["valid"].as_bool()), (Some(true), Some(false)), "{v}");
}

/// Every path under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            out.push(e.path());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    out
}
