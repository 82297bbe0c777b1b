//! `kernlab new`: the real binary on the repository's module trees (the
//! prodguard DKMS fixture, the khm Kbuild tree), its refusals, and
//! `kernlab validate` on what it wrote. Nothing is fetched or booted.

mod common;

use common::{repo, run, text};

fn new_lab(dir: &std::path::Path, name: &str, module: &str, extra: &[&str]) -> (std::path::PathBuf, std::process::Output) {
    let lab = dir.join(name);
    let mut args = vec!["new", lab.to_str().unwrap(), "--module", module];
    args.extend_from_slice(extra);
    let out = run(&args);
    (lab, out)
}

fn validates(lab: &std::path::Path) {
    let v = run(&["validate", lab.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(0), "validate {}:\n{}{}", lab.display(), text(&v.stdout), text(&v.stderr));
}

#[test]
fn a_dkms_tree_gets_its_modules_in_load_order_and_a_params_baseline() {
    let d = tempfile::tempdir().unwrap();
    let (lab, out) = new_lab(d.path(), "prod.yaml", "tests/fixtures/prodguard", &["--workload", "pipes"]);
    let so = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{so}{}", text(&out.stderr));
    assert!(so.contains("modules:  pg_core, pg_pipe (loaded in this order)"), "{so}");
    assert!(so.contains("kernel:   debian-6.1.0-54-cloud-amd64"), "{so}");
    assert!(so.contains(&format!("next: kernlab run {}", lab.display())), "{so}");
    let y = std::fs::read_to_string(&lab).unwrap();
    let core = y.find("#   pg_core").expect("pg_core listed");
    let pipe = y.find("#   pg_pipe").expect("pg_pipe listed");
    assert!(core < pipe, "load order:\n{y}");
    assert!(y.contains("kind: pipes") && y.contains("params: {leak: 1}") && y.contains("params: {leak: 0}"), "{y}");
    // The source is relative to the lab file's directory and resolves to the fixture.
    let source = y.lines().find_map(|l| l.trim().strip_prefix("- source: ")).unwrap();
    assert!(!source.starts_with('/'), "{source}");
    assert_eq!(d.path().join(source).canonicalize().unwrap(), repo("tests/fixtures/prodguard").canonicalize().unwrap());
    validates(&lab);
}

#[test]
fn a_kbuild_tree_gets_its_obj_m_and_its_leak_parameter() {
    let d = tempfile::tempdir().unwrap();
    let (lab, out) = new_lab(d.path(), "khm.yaml", "labs/khm", &["--message-format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["tree"], "kbuild");
    assert_eq!(v["modules"], serde_json::json!(["khm"]));
    assert_eq!(v["leak_param"], "leak");
    assert_eq!(v["kernel"], "debian-6.1.0-54-cloud-amd64");
    let y = std::fs::read_to_string(&lab).unwrap();
    assert!(y.contains("(obj-m in Kbuild)") && y.contains("#   symbol") && y.contains("kind: files"), "{y}");
    validates(&lab);
}

#[test]
fn without_a_leak_parameter_the_baseline_has_no_module() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("plain");
    std::fs::create_dir(&m).unwrap();
    std::fs::write(m.join("Makefile"), "obj-m := plain.o\n").unwrap();
    std::fs::write(m.join("plain.c"), "static int debug;\nmodule_param(debug, int, 0644);\n").unwrap();
    let (lab, out) = new_lab(d.path(), "plain.yaml", m.to_str().unwrap(), &["--workload", "sockets"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let y = std::fs::read_to_string(&lab).unwrap();
    assert!(y.contains("source: plain\n") && y.contains("modules: []") && y.contains("#   debug"), "{y}");
    validates(&lab);
}

#[test]
fn build_exclusive_kernel_picks_the_kernel() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("pkg");
    std::fs::create_dir(&m).unwrap();
    std::fs::write(m.join("Kbuild"), "obj-m += pkg.o\n").unwrap();
    let conf = |re: &str| format!("PACKAGE_NAME=pkg\nPACKAGE_VERSION=1.0\nBUILT_MODULE_NAME[0]=pkg\nBUILD_EXCLUSIVE_KERNEL=\"{re}\"\n");
    std::fs::write(m.join("dkms.conf"), conf("^6\\.12\\.")).unwrap();
    let (lab, out) = new_lab(d.path(), "pkg.yaml", m.to_str().unwrap(), &[]);
    let so = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{so}{}", text(&out.stderr));
    assert!(so.contains("kernel:   debian-6.12.117+deb12-cloud-amd64 (the newest known kernel the dkms.conf builds for (not the default"), "{so}");
    validates(&lab);

    // A kernel it refuses, asked for by name; then none at all.
    let (_, out) = new_lab(d.path(), "pkg2.yaml", m.to_str().unwrap(), &["--kernel", "debian-6.1.0-54-cloud-amd64"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("does not build for kernel `debian-6.1.0-54-cloud-amd64`: BUILD_EXCLUSIVE_KERNEL"), "{}", text(&out.stderr));
    std::fs::write(m.join("dkms.conf"), conf("^4\\.")).unwrap();
    let (_, out) = new_lab(d.path(), "pkg3.yaml", m.to_str().unwrap(), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("builds for no known kernel"), "{}", text(&out.stderr));
}

#[test]
fn refusals_exit_2_and_write_nothing() {
    let d = tempfile::tempdir().unwrap();
    let existing = d.path().join("there.yaml");
    std::fs::write(&existing, "keep me\n").unwrap();
    let (_, out) = new_lab(d.path(), "there.yaml", "labs/khm", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("exists; pass --force to overwrite it"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me\n");
    let (_, out) = new_lab(d.path(), "there.yaml", "labs/khm", &["--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    validates(&existing);

    let (lab, out) = new_lab(d.path(), "docs.yaml", "docs", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("`docs` is not a module tree"), "{}", text(&out.stderr));
    assert!(!lab.exists());
}

/// The lab `kernlab new` writes for the prodguard fixture, run for real
/// (one A/B run, ~15 s on a warm cache): LEAK, as it expects.
#[test]
fn the_written_prodguard_lab_finds_the_leak() {
    let d = tempfile::tempdir().unwrap();
    let (lab, out) = new_lab(d.path(), "prod.yaml", "tests/fixtures/prodguard", &["--workload", "pipes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dir = d.path().join("run");
    let r = run(&["run", lab.to_str().unwrap(), "--attribute", "off", "--duration", "20s", "--out", dir.to_str().unwrap()]);
    let all = format!("{}{}", text(&r.stdout), text(&r.stderr));
    assert_eq!(r.status.code(), Some(0), "{all}");
    assert!(all.contains("LEAK as expected"), "{all}");
    assert!(all.contains("arms: module: prodguard leak=1; baseline: prodguard leak=0"), "{all}");
}
