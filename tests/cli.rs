//! The command line on bad input: every lab-file and kernel error is clear,
//! names the file, line or thing at fault, and has the documented exit code.
//! These need no VM; the kernel-fetch ones use the machine's apt sources.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("tests/labs").join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn good_labs_validate_and_print_the_resolved_lab() {
    let files = yaml_files("good");
    assert!(files.len() >= 2);
    for f in files.iter().chain([repo("labs/smoke.yaml")].iter()) {
        let out = run(&["validate", f.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}: {}", f.display(), text(&out.stderr));
        let printed = text(&out.stdout);
        // Defaults are filled in.
        for key in ["name:", "kernel:", "memory:", "boot_timeout:", "interval:", "sources:"] {
            assert!(printed.contains(key), "{}: resolved lab lacks {key}:\n{printed}", f.display());
        }
    }
}

#[test]
fn bad_labs_fail_with_file_line_and_field() {
    let files = yaml_files("bad");
    assert!(files.len() >= 14, "too few bad labs: {}", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let body = std::fs::read_to_string(f).unwrap();
        let expect = body.lines().next().and_then(|l| l.strip_prefix("# expect: ")).expect("first line `# expect: …`").trim();
        let out = run(&["validate", f.to_str().unwrap()]);
        let err = text(&out.stderr);
        if out.status.code() != Some(2) || !err.contains(expect) || !err.contains(&f.display().to_string()) {
            failures.push(format!("{}: exit {:?}, wanted {expect:?} in:\n{err}", f.display(), out.status.code()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn missing_lab_file_is_a_usage_error() {
    let out = run(&["run", "/nonexistent/lab.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/lab.yaml"), "{}", text(&out.stderr));
}

#[test]
fn unknown_kernel_names_the_lab_line_and_known_kernels() {
    let d = tempfile::tempdir().unwrap();
    let f = lab(d.path(), "k", "name: k\ndescription: x\nkernel: debian-9.9-nonexistent\n");
    let out = run(&["run", f.to_str().unwrap(), "--out", d.path().join("run").to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("{}:3:", f.display())), "{err}");
    assert!(err.contains("unknown kernel `debian-9.9-nonexistent`") && err.contains("debian-6.1.0-54-cloud-amd64"), "{err}");
    assert!(!d.path().join("run").exists(), "no run directory for a lab error");
}

#[test]
fn kernel_package_missing_from_the_archive_is_an_infrastructure_error() {
    let d = tempfile::tempdir().unwrap();
    let kdir = d.path().join("kernels");
    std::fs::create_dir(&kdir).unwrap();
    std::fs::write(kdir.join("gone.yaml"), "source:\n  debian:\n    package: linux-image-6.1.0-999-cloud-amd64\n").unwrap();
    let cache = d.path().join("cache");
    let out = kernlab()
        .env("KERNLAB_CACHE", &cache)
        .args(["--kernels", kdir.to_str().unwrap(), "kernel", "fetch", "gone"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "{err}");
    assert!(err.contains("kernel `gone`") && err.contains("linux-image-6.1.0-999-cloud-amd64") && err.contains("not in this machine's apt sources"), "{err}");
    // Nothing half-made is left as a kernel entry.
    assert!(!cache.join("kernels/by-name/gone.json").exists());
}

#[test]
fn kernel_list_shows_builtin_descriptors() {
    let out = run(&["kernel", "list"]);
    assert_eq!(out.status.code(), Some(0));
    let o = text(&out.stdout);
    assert!(o.contains("debian-6.1.0-54-cloud-amd64") && o.contains("debian-6.1.0-54-amd64"), "{o}");
    assert!(o.contains("linux-image-6.1.0-54-cloud-amd64=6.1.190-1"), "{o}");
}

#[test]
fn an_existing_run_directory_is_never_overwritten() {
    let d = tempfile::tempdir().unwrap();
    let out_dir = d.path().join("run");
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::write(out_dir.join("keep.txt"), "earlier run").unwrap();
    let out = run(&["run", "labs/smoke.yaml", "--out", out_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("never overwrites"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(out_dir.join("keep.txt")).unwrap(), "earlier run");
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 1);
    let _ = Path::new("");
}

#[test]
fn matrix_cells_are_listed_stably_and_shards_cover_them() {
    let out = run(&["matrix", "labs/nightly.yaml", "--list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let all: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    // 2 labs × the newest kernel of each of 4 patterns, whatever the archive's newest is today.
    assert_eq!(all.len(), 8, "{all:?}");
    let kernels: std::collections::BTreeSet<&str> = all.iter().map(|id| id.split_once('@').unwrap().1).collect();
    assert_eq!(kernels.len(), 4, "{kernels:?}");
    let one = |pred: &dyn Fn(&str) -> bool| kernels.iter().filter(|k| pred(k)).count() == 1;
    assert!(one(&|k| k.starts_with("debian-6.1.0-") && k.ends_with("-cloud-amd64")), "{kernels:?}");
    assert!(one(&|k| k.starts_with("debian-6.1.0-") && !k.contains("cloud") && !k.contains("-rt-")), "{kernels:?}");
    assert!(one(&|k| k.starts_with("debian-6.12.") && k.ends_with("+deb12-cloud-amd64")), "{kernels:?}");
    assert!(one(&|k| k.starts_with("debian-6.12.") && k.ends_with("+deb12-amd64")), "{kernels:?}");
    // Newest: not older than the pinned 6.12 descriptor, which the archive has.
    let k612 = kernels.iter().find(|k| k.ends_with("+deb12-cloud-amd64")).unwrap();
    let point: u32 = k612["debian-6.12.".len()..].split('+').next().unwrap().parse().unwrap();
    assert!(point >= 117, "{k612}");
    for lab in ["leak-lab", "no-leak-lab"] {
        assert_eq!(all.iter().filter(|id| id.starts_with(&format!("{lab}@"))).count(), 4, "{all:?}");
    }
    for n in 1..=3 {
        let mut seen = Vec::new();
        for m in 1..=n {
            let o = run(&["matrix", "labs/nightly.yaml", "--list", "--partition", &format!("hash:{m}/{n}")]);
            seen.extend(text(&o.stdout).lines().map(str::to_string));
        }
        seen.sort();
        assert_eq!(seen, all, "hash shards of {n}");
    }
    // GitLab's variables pick the shard too.
    let o = kernlab().env("CI_NODE_INDEX", "1").env("CI_NODE_TOTAL", "4").args(["matrix", "labs/nightly.yaml", "--list", "--message-format", "json"]).output().unwrap();
    let cells: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let shard: Vec<&str> = cells.as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    let o = run(&["matrix", "labs/nightly.yaml", "--list", "--partition", "hash:1/4"]);
    assert_eq!(shard, text(&o.stdout).lines().collect::<Vec<_>>(), "CI_NODE_INDEX=1/4 is hash:1/4");
    // A pattern that matches no kernel names itself.
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("m.yaml"), format!("name: m\nlabs: [{}]\nkernels: ['debian-9.*']\n", repo("labs/smoke.yaml").display())).unwrap();
    let o = run(&["matrix", d.path().join("m.yaml").to_str().unwrap(), "--list"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("kernel pattern `debian-9.*` matches no known kernel"), "{}", text(&o.stderr));
}

/// Every lab shipped in labs/ validates (the matrix files beside them are
/// not labs): one `kernlab validate` of them all, each its own result.
#[test]
fn every_shipped_lab_validates() {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(repo("labs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !std::fs::read_to_string(p).unwrap().lines().any(|l| l.starts_with("labs:")))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    let mut args = vec!["validate".to_string()];
    args.extend(files.iter().map(|p| p.display().to_string()));
    let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for f in &files {
        assert!(stdout.contains(&format!("ok: {}", f.display())), "{}: {stdout}", f.display());
    }
}
