//! `kernlab bisect` end to end: a module repository made here, in which one
//! commit introduces a leak and another does not build, bisected on real
//! guests with the leak verdict as the oracle; and its usage errors, which
//! need no VM.

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// `git` in `dir` with a fixed identity and none of the user's configuration.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

/// Changes leaky.c with `edit` and commits it; returns the commit's sha.
fn commit(repo: &Path, subject: &str, edit: impl FnOnce(String) -> String) -> String {
    let f = repo.join("leaky.c");
    std::fs::write(&f, edit(std::fs::read_to_string(&f).unwrap())).unwrap();
    git(repo, &["commit", "-q", "-a", "-m", subject]);
    git(repo, &["rev-parse", "HEAD"])
}

/// The leaky module's history: imported clean, two comments, a commit that
/// does not build, its fix, the commit that keeps one object on every
/// operation by default (the leak), and a last comment. Returns the shas
/// in order.
fn leaky_repo(repo: &Path) -> Vec<String> {
    std::fs::create_dir_all(repo).unwrap();
    for f in ["leaky.c", "Kbuild"] {
        std::fs::copy(common::repo(&format!("labs/leaky/{f}")), repo.join(f)).unwrap();
    }
    git(repo, &["init", "-q", "-b", "main"]);
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "leaky: import"]);
    let mut shas = vec![git(repo, &["rev-parse", "HEAD"])];
    shas.push(commit(repo, "leaky: a comment", |s| s + "/* 1 */\n"));
    shas.push(commit(repo, "leaky: another comment", |s| s + "/* 2 */\n"));
    shas.push(commit(repo, "leaky: half a refactoring (does not build)", |s| s + "static int broken(void) { return undeclared_thing; }\n"));
    shas.push(commit(repo, "leaky: finish the refactoring", |s| s.replace("static int broken(void) { return undeclared_thing; }\n", "")));
    let leak = |s: String| {
        assert!(s.contains("static unsigned int every;\n"));
        s.replace("static unsigned int every;\n", "static unsigned int every = 1;\n")
    };
    shas.push(commit(repo, "leaky: keep an object on every operation by default", leak));
    shas.push(commit(repo, "leaky: a last comment", |s| s + "/* 5 */\n"));
    shas
}

/// A regression gate on the module in `repo`: the module arm with the
/// module's defaults against the same module at the same revision with
/// `every: 0`, so both arms load the same code and differ only in the
/// default under test. The lab's floors are the defaults, no tuning for
/// this module (issue 24): a clean revision is decided NO-LEAK in about a
/// minute (measured twice: good steps 46–70 s, bad ones 13–17 s, the whole
/// bisect 106–138 s); 3 min is the maximum.
fn gate(dir: &Path) -> PathBuf {
    lab(
        dir,
        "gate",
        "name: bisect-gate\nkernel: debian-6.1.0-54-cloud-amd64\nvm:\n  memory: 512M\n\
         modules:\n  - source: leaky\n    params: {size: 512}\n\
         workload:\n  churn: {fs: tmpfs, rate: 1000}\n  duration: 3m\n\
         monitor:\n  interval: 1s\n  reclaim: true\n\
         leak:\n  expect: no-leak\n\
         \x20 baseline:\n    modules:\n      - source: leaky\n        params: {every: 0, size: 512}\n",
    )
}

/// Every path under `dir`, .git included, sorted.
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            }
            v.push(e.path());
        }
    }
    v.sort();
    v
}

#[test]
fn bisect_names_the_commit_that_introduced_the_leak() {
    let d = tempfile::tempdir().unwrap();
    let repo = d.path().join("leaky");
    let shas = leaky_repo(&repo);
    let f = gate(d.path());
    // The user's tree has work in progress: it must stay as it is.
    std::fs::write(repo.join("notes.txt"), "mine\n").unwrap();
    let before = (listing(&repo), git(&repo, &["status", "--porcelain"]), git(&repo, &["rev-parse", "HEAD"]));
    let out_dir = d.path().join("bisect");
    let start = std::time::Instant::now();
    let out = run(&[
        "bisect",
        f.to_str().unwrap(),
        "--source",
        repo.to_str().unwrap(),
        "--good",
        &shas[0],
        "--bad",
        "main",
        "--out",
        out_dir.to_str().unwrap(),
        "--message-format",
        "json",
    ]);
    let secs = start.elapsed().as_secs_f64();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    eprintln!("bisect took {secs:.1} s");

    let b: serde_json::Value = serde_json::from_slice(&std::fs::read(out_dir.join("bisect.json")).unwrap()).unwrap();
    assert_eq!(b["schema"], "kernlab.bisect/1");
    assert_eq!(b["outcome"]["kind"], "found", "{b}");
    assert_eq!(b["outcome"]["first_bad"]["rev"], shas[5].as_str(), "{b}");
    assert_eq!(b["outcome"]["first_bad"]["subject"], "leaky: keep an object on every operation by default");
    // In JSON mode stdout is the result alone, the same as bisect.json.
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let j: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(j["outcome"], b["outcome"]);
    assert_eq!(j["steps"].as_array().unwrap().len(), b["steps"].as_array().unwrap().len());
    // bisect.json, stdout's line, and every step's records fit docs/schemas/.
    assert_valid_record("bisect stdout", &j);
    let checked = assert_valid_records(&out_dir);
    assert!(checked > 1 + 4 * b["steps"].as_array().unwrap().len(), "{checked} records");
    // The terminal account is on stderr then.
    assert!(stderr.contains(&format!("first bad revision: {}", shas[5])), "{stderr}");

    // Candidates: shas[1..]; the first midpoint (the broken commit) is
    // skipped without a run, then its neighbours decide. Every step agrees with the
    // truth: before the leak good (NO-LEAK, exit 0), from it on bad (LEAK, exit 100).
    let steps = b["steps"].as_array().unwrap();
    let broken = steps.iter().find(|s| s["rev"] == shas[3].as_str()).unwrap_or_else(|| panic!("the broken commit was not tried: {b}"));
    assert_eq!(broken["mark"], "skip");
    assert!(broken["reason"].as_str().unwrap().contains("does not build at this revision"), "{broken}");
    assert!(broken["reason"].as_str().unwrap().contains("undeclared_thing"), "{broken}");
    assert!(broken["exit_code"].is_null() && broken["run_dir"].is_null(), "{broken}");
    let leak_at = 5;
    for s in steps.iter().filter(|s| s["mark"] != "skip") {
        let i = shas.iter().position(|x| s["rev"] == x.as_str()).unwrap();
        // A good revision's verdict is NO-LEAK or BOUNDED (growth that levels
        // off is not a leak; bisect marks both good and the run exits 0).
        let (mark, verdicts, code): (_, &[&str], _) = if i >= leak_at { ("bad", &["leak"], 100) } else { ("good", &["no-leak", "bounded"], 0) };
        assert_eq!((s["mark"].as_str(), s["exit_code"].as_i64()), (Some(mark), Some(code)), "{s}");
        let verdict = s["verdict"].as_str().unwrap_or_default();
        assert!(verdicts.contains(&verdict), "{s}");
        // Relative to the bisection's directory.
        let rel = PathBuf::from(s["run_dir"].as_str().unwrap());
        assert!(rel.is_relative(), "{s}");
        let dir = out_dir.join(rel);
        assert_eq!(report(&dir)["verdict"], verdict);
        // Its page names the bisection's result in its diagnosis.
        let page = std::fs::read_to_string(dir.join("report.html")).unwrap();
        let diagnosis = page.split("<section id=\"diagnosis\">").nth(1).and_then(|d| d.split("<section id=\"evidence\">").next()).unwrap_or_default();
        assert!(diagnosis.contains("<h3>Bisection</h3>") && diagnosis.contains(&format!("first bad revision: {}", shas[5])), "{}: {diagnosis}", dir.display());
        // Both arms loaded the revision's module; every step restored the snapshot.
        for arm in ["module", "baseline"] {
            let names = event_names(&dir.join(arm));
            assert!(names.iter().any(|n| n == "module-loaded"), "{arm}: {names:?}");
            assert!(names.iter().any(|n| n == "snapshot-restored"), "{arm} of {}: {names:?}", dir.display());
        }
        eprintln!("step {} {}: {:.1} s", s["rev"], s["mark"], s["secs"].as_f64().unwrap());
    }
    assert!(steps.iter().filter(|s| s["mark"] == "bad").count() >= 1);

    // The user's repository: same files, same status, same HEAD; no scratch left behind.
    let after = (listing(&repo), git(&repo, &["status", "--porcelain"]), git(&repo, &["rev-parse", "HEAD"]));
    assert_eq!(before, after);
    assert_eq!(std::fs::read_to_string(repo.join("notes.txt")).unwrap(), "mine\n");
}

#[test]
fn bisect_usage_errors_start_nothing() {
    let d = tempfile::tempdir().unwrap();
    let repo = d.path().join("leaky");
    let shas = leaky_repo(&repo);
    let f = gate(d.path());
    git(&repo, &["checkout", "-q", "-b", "side", &shas[1]]);
    let side = commit(&repo, "leaky: elsewhere", |s| s + "/* side */\n");
    git(&repo, &["checkout", "-q", "main"]);
    let other = d.path().join("other");
    leaky_repo(&other);
    let plain = lab(d.path(), "plain", "name: plain\nmodules:\n  - source: leaky\n");
    let out_dir = d.path().join("out");
    let bisect = |lab: &Path, extra: &[&str]| {
        let mut args = vec!["bisect", lab.to_str().unwrap(), "--out", out_dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = run(&args);
        (out.status.code(), text(&out.stderr))
    };
    let src = repo.to_str().unwrap();
    let nowhere = d.path().join("nowhere");
    let cases: Vec<(&Path, Vec<&str>, String)> = vec![
        (&f, vec!["--source", src, "--good", &side, "--bad", &shas[5]], format!("--good `{side}` is not an ancestor of --bad")),
        (&f, vec!["--source", src, "--good", &shas[5], "--bad", &shas[0]], "is not an ancestor".into()),
        (&f, vec!["--source", src, "--good", "v0.1", "--bad", "main"], "--good `v0.1` does not name a commit".into()),
        (&f, vec!["--source", other.to_str().unwrap(), "--good", &shas[0], "--bad", "main"], "holds none of the lab's modules".into()),
        (&f, vec!["--source", nowhere.to_str().unwrap(), "--good", &shas[0], "--bad", "main"], "--source".into()),
        (&plain, vec!["--source", src, "--good", &shas[0], "--bad", "main"], "needs a leak lab".into()),
        (&f, vec!["--good", &shas[0], "--bad", "main"], "--source".into()),
        (&f, vec!["--kernel-pattern", "debian-6.1.0-54-*", "--good", "debian-6.1.0-54-amd64", "--bad", "debian-6.12.117+deb12-amd64"], "--bad `debian-6.12.117+deb12-amd64` is not among the kernels".into()),
        (&f, vec!["--kernel-pattern", "debian-*-cloud-amd64", "--good", "debian-6.12.117+deb12-cloud-amd64", "--bad", "debian-6.1.0-54-cloud-amd64"], "is not older than --bad".into()),
    ];
    for (lab, extra, want) in cases {
        let (code, stderr) = bisect(lab, &extra);
        assert_eq!(code, Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(&want), "{extra:?}: wanted {want:?} in {stderr}");
        assert!(!out_dir.exists(), "{extra:?} created {}", out_dir.display());
    }
}

#[test]
fn bisect_over_adjacent_kernels_names_the_bad_one_without_a_run() {
    // Two kernels in version order, nothing between them: the bad one is
    // the first bad by the user's word, and nothing boots.
    let d = tempfile::tempdir().unwrap();
    let repo = d.path().join("leaky");
    leaky_repo(&repo);
    let f = gate(d.path());
    let out_dir = d.path().join("k");
    let out = bisect_kernels(&f, &out_dir, None);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("first bad kernel: debian-6.12.117+deb12-cloud-amd64"), "{stdout}");
    let b: serde_json::Value = serde_json::from_slice(&std::fs::read(out_dir.join("bisect.json")).unwrap()).unwrap();
    assert_eq!(b["axis"], "kernel");
    assert_eq!(b["steps"].as_array().unwrap().len(), 0);
    assert_eq!(b["outcome"]["first_bad"]["rev"], "debian-6.12.117+deb12-cloud-amd64");
}

#[test]
fn a_kernel_without_headers_is_skipped_before_any_run_and_leaves_the_range() {
    // Between the two cached kernels, a local kernel tree without a build
    // directory: the lab builds modules, so it is skipped with the reason,
    // nothing boots, and the first bad is one of it and the bad end (102).
    let d = tempfile::tempdir().unwrap();
    leaky_repo(&d.path().join("leaky"));
    let f = gate(d.path());
    let kdir = d.path().join("kernels");
    std::fs::create_dir_all(d.path().join("tree/lib/modules/6.5.0-1-cloud-amd64")).unwrap();
    std::fs::create_dir_all(&kdir).unwrap();
    std::fs::write(kdir.join("debian-6.5.0-1-cloud-amd64.yaml"), "source:\n  local:\n    dir: ../tree\n").unwrap();
    let out_dir = d.path().join("k");
    let out = bisect_kernels(&f, &out_dir, Some(&kdir));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(102), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("skipping debian-6.5.0-1-cloud-amd64 without a run: no headers"), "{stdout}");
    assert!(stdout.contains("undecided"), "{stdout}");
    let b: serde_json::Value = serde_json::from_slice(&std::fs::read(out_dir.join("bisect.json")).unwrap()).unwrap();
    assert_eq!(b["steps"].as_array().unwrap().len(), 0, "{b}");
    assert_eq!(b["outcome"]["kind"], "undecided");
    let range: Vec<&str> = b["outcome"]["range"].as_array().unwrap().iter().map(|c| c["rev"].as_str().unwrap()).collect();
    assert_eq!(range, ["debian-6.5.0-1-cloud-amd64", "debian-6.12.117+deb12-cloud-amd64"]);
    assert_eq!(b["candidates"][0]["mark"], "skip");
    assert_eq!(assert_valid_records(&out_dir), 1, "bisect.json fits its schema");
    assert!(b["candidates"][0]["skip"].as_str().unwrap().contains("lib/modules/<release>/build"), "{b}");
}

/// `kernlab [--kernels DIR] bisect LAB --kernel-pattern debian-*-cloud-amd64`
/// between the two cached kernels, 6.1.0-54 good and 6.12.117 bad.
fn bisect_kernels(lab: &std::path::Path, out: &std::path::Path, kernels: Option<&std::path::Path>) -> std::process::Output {
    let mut args = vec!["bisect".to_string(), lab.display().to_string()];
    if let Some(k) = kernels {
        args.extend(["--kernels".into(), k.display().to_string()]);
    }
    for a in ["--kernel-pattern", "debian-*-cloud-amd64", "--good", "debian-6.1.0-54-cloud-amd64", "--bad", "debian-6.12.117+deb12-cloud-amd64", "--out"] {
        args.push(a.into());
    }
    args.push(out.display().to_string());
    run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A product repository (the prodguard DKMS tree in `driver/`, as vendors
/// keep their kernel side inside a larger repository): imported clean, a
/// comment, a refactoring of the compat header that the package's own 6.x
/// patch no longer applies to, the commit that refreshes the patch and
/// turns the leak on by default, and a last comment. Returns the shas in
/// order.
fn product_repo(repo: &Path) -> Vec<String> {
    std::fs::create_dir_all(repo).unwrap();
    let status = std::process::Command::new("cp").arg("-r").arg(common::repo("tests/fixtures/prodguard")).arg(repo.join("driver")).status().unwrap();
    assert!(status.success());
    std::fs::write(repo.join("README"), "the product: agent, driver, tools\n").unwrap();
    git(repo, &["init", "-q", "-b", "main"]);
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "import"]);
    let mut shas = vec![git(repo, &["rev-parse", "HEAD"])];
    let edit = |rel: &str, f: &dyn Fn(String) -> String, subject: &str| {
        let p = repo.join(rel);
        let s = std::fs::read_to_string(&p).unwrap();
        let t = f(s.clone());
        assert_ne!(s, t, "{subject}: the edit changes nothing");
        std::fs::write(&p, t).unwrap();
        git(repo, &["commit", "-q", "-a", "-m", subject]);
        git(repo, &["rev-parse", "HEAD"])
    };
    shas.push(edit("driver/README.md", &|s| s + "\nMaintained by the agent team.\n", "driver: a word on who maintains it"));
    shas.push(edit("driver/include/prodguard/compat.h", &|s| s.replace("#ifndef PRODGUARD_COMPAT_H\n#define PRODGUARD_COMPAT_H\n\n#endif\n", "#pragma once\n/* one header for every series */\n"), "compat: one header for every series"));
    std::fs::write(repo.join("driver/patches/0001-compat-pipe-symbols-for-6.x.patch"), REFRESHED_PATCH).unwrap();
    shas.push(edit("driver/cases/pipe/pg_pipe.c", &|s| s.replace("static int leak;\n", "static int leak = 1;\n"), "pipe: keep events for the agent's replay; refresh the 6.x patch"));
    shas.push(edit("README", &|s| s + "see driver/README.md\n", "README: point at the driver"));
    shas
}

/// The 6.x patch against the refactored header.
const REFRESHED_PATCH: &str = "--- a/include/prodguard/compat.h
+++ b/include/prodguard/compat.h
@@ -3,3 +3,5 @@
  * supports. The patch for each series (patches/) fills it in. */
 #pragma once
 /* one header for every series */
+/* x86-64 6.x: the syscall wrappers are the stable probe points. */
+#define PG_PIPE_SYMBOLS { \"__x64_sys_pipe\", \"__x64_sys_pipe2\" }
";

#[test]
fn bisect_of_a_dkms_tree_applies_its_patch_and_skips_a_revision_it_does_not_apply_to() {
    let d = tempfile::tempdir().unwrap();
    let repo = d.path().join("product");
    let shas = product_repo(&repo);
    // The gate: the driver at its defaults against the same driver with
    // leak=0; a floor of one object per 100 pipes (the default floor needs
    // minutes for this product's clean arm, docs/modules.md).
    let f = lab(
        d.path(),
        "gate",
        "name: product-gate\nkernel: debian-6.1.0-54-cloud-amd64\n\
         modules:\n  - source: product/driver\n\
         workload:\n  churn: {kind: pipes, rate: 1000}\n  duration: 90s\n\
         monitor:\n  interval: 1s\n\
         leak:\n  expect: no-leak\n  floor_objects_per_op: 0.01\n\
         \x20 baseline:\n    params: {leak: 0}\n",
    );
    let out_dir = d.path().join("bisect");
    let out = run(&["bisect", f.to_str().unwrap(), "--source", repo.to_str().unwrap(), "--good", &shas[0], "--bad", "main", "--out", out_dir.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    // Candidates: the comment, the refactoring, the leak (with the
    // refreshed patch), and the last comment (known bad). The midpoint,
    // the refactoring, cannot be judged (its patch does not apply) and is
    // skipped without a run; its lower neighbour builds with the patch and
    // passes, the leak builds with the refreshed patch and fails: the first
    // bad one is the refactoring or the leak, and bisect says so (102).
    assert_eq!(out.status.code(), Some(102), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let b: serde_json::Value = serde_json::from_slice(&std::fs::read(out_dir.join("bisect.json")).unwrap()).unwrap();
    let steps = b["steps"].as_array().unwrap();
    let step = |i: usize| steps.iter().find(|s| s["rev"] == shas[i].as_str()).unwrap_or_else(|| panic!("{} was not tried: {b}", shas[i]));
    let refactor = step(2);
    assert_eq!(refactor["mark"], "skip", "{refactor}");
    let why = refactor["reason"].as_str().unwrap();
    assert!(why.contains("patch `patches/0001-compat-pipe-symbols-for-6.x.patch` does not apply at this revision"), "{why}");
    assert!(why.contains("include/prodguard/compat.h: Hunk #1 FAILED"), "{why}");
    assert!(refactor["run_dir"].is_null(), "no run for a revision that does not build: {refactor}");
    for (i, mark, verdict) in [(1, "good", "no-leak"), (3, "bad", "leak")] {
        let s = step(i);
        assert_eq!((s["mark"].as_str(), s["verdict"].as_str()), (Some(mark), Some(verdict)), "{s}");
        let dir = out_dir.join(s["run_dir"].as_str().unwrap());
        let loaded: Vec<String> = events(&dir.join("module")).iter().filter(|e| e["event"] == "module-loaded").map(|e| e["name"].as_str().unwrap().to_string()).collect();
        assert_eq!(loaded, ["pg_core", "pg_pipe"], "{s}");
    }
    assert_eq!(b["outcome"]["kind"], "undecided", "{b}");
    let range: Vec<&str> = b["outcome"]["range"].as_array().unwrap().iter().map(|r| r["rev"].as_str().unwrap()).collect();
    assert_eq!(range, [shas[2].as_str(), shas[3].as_str()], "{b}");
}
