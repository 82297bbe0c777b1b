//! kernlab's reading of a dkms.conf against the real dkms (Debian's
//! package, installed by scripts/setup.sh) as the reference: the same
//! package built by `dkms build` into scratch trees and by kernlab for the
//! same kernel's headers must give the same make command (dkms prints the
//! one it runs), the same modules with the same `.modinfo` and symbols,
//! and the same refusal for a kernel the package excludes. Where dkms is
//! not installed the comparison is skipped, saying so. No VM.

mod common;
use common::*;
use kernlab::payload::kmod::{dkms, modinfo};
use std::path::{Path, PathBuf};
use std::process::Command;

const DKMS: &str = "/usr/sbin/dkms";
const KERNEL: &str = "debian-6.1.0-54-cloud-amd64";

/// The kernel's prepared headers, from kernlab's cache (fetched if need be).
fn headers() -> (kernlab::cache::Cache, kernlab::kernel::Kernel, PathBuf) {
    let cache = kernlab::cache::Cache::from_env().unwrap();
    let reg = kernlab::kernel::Registry::load(&kernlab::kernel::descriptor_dirs(None)).unwrap();
    let desc = reg.get(KERNEL).unwrap().clone();
    let k = kernlab::kernel::fetch(&cache, &desc).unwrap();
    let h = kernlab::kernel::headers::build_dir(&cache, &desc, &k).unwrap();
    (cache, k, h)
}

/// `dkms add` + `dkms build` of the tree at `src` (copied to
/// `t/src/NAME-VERSION`) into scratch trees under `t`; returns dkms's exit
/// status, its output, and its built modules.
fn dkms_build(t: &Path, src: &Path, name: &str, version: &str, release: &str, headers: &Path) -> (i32, String, Vec<PathBuf>) {
    for d in ["src", "dkms", "inst"] {
        std::fs::create_dir_all(t.join(d)).unwrap();
    }
    let status = Command::new("cp").arg("-r").arg(src).arg(t.join("src").join(format!("{name}-{version}"))).status().unwrap();
    assert!(status.success());
    let trees = |c: &mut Command| {
        c.arg("--sourcetree").arg(t.join("src")).arg("--dkmstree").arg(t.join("dkms")).arg("--installtree").arg(t.join("inst"));
    };
    let mut add = Command::new(DKMS);
    add.args(["add", "-m", name, "-v", version]);
    trees(&mut add);
    let out = add.output().unwrap();
    assert!(out.status.success(), "dkms add: {}{}", text(&out.stdout), text(&out.stderr));
    let mut build = Command::new(DKMS);
    build.args(["build", "-m", name, "-v", version, "-k", release, "-a", "x86_64", "--kernelsourcedir"]).arg(headers);
    trees(&mut build);
    let out = build.output().unwrap();
    let log = format!("{}{}", text(&out.stdout), text(&out.stderr));
    let dir = t.join("dkms").join(name).join(version).join(release).join("x86_64/module");
    let mut kos: Vec<PathBuf> = std::fs::read_dir(&dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
    kos.sort();
    (out.status.code().unwrap_or(-1), log, kos)
}

/// The names of an object's symbols, sorted (what it defines and exports).
fn symbols(ko: &Path) -> Vec<String> {
    use object::{Object, ObjectSymbol};
    let data = std::fs::read(ko).unwrap();
    let f = object::File::parse(&*data).unwrap();
    let mut v: Vec<String> = f.symbols().filter(|s| s.is_definition()).filter_map(|s| s.name().ok().map(str::to_string)).filter(|n| !n.is_empty() && !n.starts_with(".L")).collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn the_fixture_builds_as_dkms_builds_it() {
    if !Path::new(DKMS).exists() {
        eprintln!("skipped: {DKMS} is not installed (scripts/setup.sh installs it); no reference to compare with");
        return;
    }
    let (cache, k, h) = headers();
    let t = tempfile::tempdir().unwrap();
    let fixture = repo("tests/fixtures/prodguard");
    let (code, log, kos) = dkms_build(t.path(), &fixture, "prodguard", "3.2.1", &k.release, &h);
    assert_eq!(code, 0, "dkms build:\n{log}");

    // The make command dkms ran (it prints it, then dots while it runs) is
    // the one kernlab's plan gives for the same trees.
    let printed = log.lines().find(|l| l.starts_with("make -j")).unwrap_or_else(|| panic!("no make command in dkms's output:\n{log}"));
    let printed = printed.trim_end_matches('.').trim_end();
    let vars = dkms::Vars {
        kernelver: k.release.clone(),
        arch: "x86_64".into(),
        kernel_source_dir: h.clone(),
        dkms_tree: t.path().join("dkms"),
        source_tree: t.path().join("src"),
        install_tree: t.path().join("inst"),
        module: String::new(),
        module_version: String::new(),
    };
    let (vars, plan) = dkms::read(&fixture.join("dkms.conf"), &vars).unwrap();
    assert_eq!((vars.module.as_str(), vars.module_version.as_str()), ("prodguard", "3.2.1"));
    assert_eq!(plan.make, printed, "kernlab's make command against dkms's");
    assert_eq!(plan.patches, ["0001-compat-pipe-symbols-for-6.x.patch"]);
    assert!(log.contains("applying patch 0001-compat-pipe-symbols-for-6.x.patch"), "{log}");

    // The same modules, in BUILT_MODULE_NAME order, with the same .modinfo
    // and the same symbols.
    let target = kernlab::payload::Target::of(&k, h.clone());
    let lab_dir = fixture.parent().unwrap();
    let ours = kernlab::payload::build_entry(&cache, &target, lab_dir, &kernlab::lab::Module::tree("prodguard"), &[]).unwrap();
    let names: Vec<&str> = ours.modules.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["pg_core", "pg_pipe"]);
    let theirs: Vec<String> = kos.iter().map(|p| p.file_stem().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(theirs, ["pg_core", "pg_pipe"], "dkms built {kos:?}");
    for (m, ko) in ours.modules.iter().zip(&kos) {
        let (a, b) = (modinfo::read(&m.ko).unwrap(), modinfo::read(ko).unwrap());
        assert_eq!(a, b, "{}: .modinfo", m.name);
        assert_eq!(symbols(&m.ko), symbols(ko), "{}: symbols", m.name);
    }
    assert!(symbols(&ours.modules[0].ko).iter().any(|s| s == "__ksymtab_pg_event_submit"), "the core exports its API");
    assert_eq!(ours.how, kernlab::payload::kmod::How::Dkms { package: "prodguard".into(), version: "3.2.1".into() });
}

#[test]
fn an_excluded_kernel_is_refused_by_both() {
    if !Path::new(DKMS).exists() {
        eprintln!("skipped: {DKMS} is not installed (scripts/setup.sh installs it); no reference to compare with");
        return;
    }
    let (cache, k, h) = headers();
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("excl");
    let status = Command::new("cp").arg("-r").arg(repo("tests/fixtures/prodguard")).arg(&tree).status().unwrap();
    assert!(status.success());
    let conf = tree.join("dkms.conf");
    let text0 = std::fs::read_to_string(&conf).unwrap();
    let text1 = text0.replace("BUILD_EXCLUSIVE_KERNEL=\"^(5\\.1[0-9]|6)\\.\"", "BUILD_EXCLUSIVE_KERNEL=\"^5\\.\"");
    assert_ne!(text0, text1);
    std::fs::write(&conf, text1).unwrap();
    let (code, log, kos) = dkms_build(&t.path().join("ref"), &tree, "prodguard", "3.2.1", &k.release, &h);
    // dkms: `die 77` when BUILD_EXCLUSIVE excludes the kernel.
    assert_eq!(code, 77, "dkms build:\n{log}");
    assert!(kos.is_empty());
    let target = kernlab::payload::Target::of(&k, h);
    let e = kernlab::payload::build_entry(&cache, &target, t.path(), &kernlab::lab::Module::tree("excl"), &[]).unwrap_err();
    let e = kernlab::util::error_causes(&e);
    assert!(e.contains("excludes kernel `6.1.0-54-cloud-amd64`") && e.contains("BUILD_EXCLUSIVE_KERNEL=\"^5\\.\""), "{e}");
}
