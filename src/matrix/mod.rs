//! The matrix: labs × kernels, for nightly CI. A matrix file names lab
//! files and kernels (descriptor names, or `*` globs over the known
//! descriptors); each (lab, kernel) pair is a *cell* with a stable id
//! `<lab>@<kernel>`. Cells run in parallel within the machine's cores and
//! memory, each as a normal run directory under the matrix directory; a
//! failing cell never stops the others. `--partition` runs one shard, and
//! the shards of any N cover every cell exactly once. Results go to
//! `report.json`, `junit.xml` (quick-junit) and a kernels × labs table.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::exit;
use crate::kernel::Registry;
use crate::lab;
use crate::run::{self, RunOptions};
use crate::util::fsx;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixFile {
    /// Names the matrix directory and the JUnit report.
    pub name: String,
    /// Lab files, relative to the matrix file.
    pub labs: Vec<PathBuf>,
    /// Kernel descriptor names or globs (`debian-6.1.0-54-*`).
    pub kernels: Vec<String>,
    /// Parallel VMs at most; default: from cores and memory.
    #[serde(default)]
    pub jobs: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error("cannot read matrix file `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("matrix file `{}`: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error(transparent)]
    Lab(#[from] lab::LabError),
    #[error("matrix file `{}`: kernel pattern `{pattern}` matches no known kernel (known: {known})", path.display())]
    NoKernel { path: PathBuf, pattern: String, known: String },
    #[error("bad partition `{0}`: expected hash:M/N or count:M/N with 1 <= M <= N")]
    Partition(String),
}

/// One (lab, kernel) pair.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Cell {
    /// Stable id: `<lab name>@<kernel>`.
    pub id: String,
    pub lab: String,
    pub lab_file: PathBuf,
    pub kernel: String,
    /// VMs the cell runs at once (2 for an A/B leak lab).
    pub vms: usize,
    /// Guest memory of one VM, bytes.
    pub memory: u64,
}

/// Reads a matrix file and expands it into cells, sorted by id.
pub fn load(path: &Path, registry: &Registry) -> Result<(MatrixFile, Vec<Cell>), MatrixError> {
    let text = std::fs::read_to_string(path).map_err(|source| MatrixError::Read { path: path.into(), source })?;
    let m: MatrixFile =
        serde_saphyr::from_str(&text).map_err(|e| MatrixError::Parse { path: path.into(), message: e.to_string() })?;
    if m.labs.is_empty() || m.kernels.is_empty() {
        return Err(MatrixError::Parse { path: path.into(), message: "`labs` and `kernels` must each list at least one entry".into() });
    }
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let known: Vec<String> = registry.iter().map(|d| d.name.clone()).collect();
    let archive = if m.kernels.iter().any(|p| p.starts_with(ARCHIVE_PREFIX)) { archive_kernels() } else { Vec::new() };
    let mut kernels = Vec::new();
    for pattern in &m.kernels {
        let (pool, glob) = match pattern.strip_prefix(ARCHIVE_PREFIX) {
            Some(g) => (&archive, format!("debian-{g}")),
            None => (&known, pattern.clone()),
        };
        let hits: Vec<&String> = pool.iter().filter(|k| glob_match(&glob, k)).collect();
        if hits.is_empty() {
            return Err(MatrixError::NoKernel { path: path.into(), pattern: pattern.clone(), known: known.join(", ") });
        }
        for h in hits {
            if !kernels.contains(h) {
                kernels.push(h.clone());
            }
        }
    }
    let mut cells = Vec::new();
    for lab_rel in &m.labs {
        let lab_file = base.join(lab_rel);
        let l = lab::load(&lab_file)?;
        let vms = if l.leak.is_some() { 2 } else { 1 };
        for k in &kernels {
            cells.push(Cell { id: format!("{}@{k}", l.name), lab: l.name.clone(), lab_file: lab_file.clone(), kernel: k.clone(), vms, memory: l.vm.memory });
        }
    }
    cells.sort_by(|a, b| a.id.cmp(&b.id));
    cells.dedup_by(|a, b| a.id == b.id);
    Ok((m, cells))
}

/// Kernel patterns with this prefix are matched against the machine's apt
/// sources (`debian:6.1.*-cloud-amd64`), not the descriptors.
pub const ARCHIVE_PREFIX: &str = "debian:";

/// Debian kernels the machine's apt sources offer, as descriptor names
/// (`debian-<release>` for `linux-image-<release>`; meta, -dbg and
/// -unsigned packages left out).
pub fn archive_kernels() -> Vec<String> {
    let out = std::process::Command::new("apt-cache").args(["pkgnames", "linux-image-"]).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    archive_names(&text)
}

/// Pure part of [`archive_kernels`].
pub fn archive_names(pkgnames: &str) -> Vec<String> {
    let mut v: Vec<String> = pkgnames
        .lines()
        .filter_map(|l| l.trim().strip_prefix("linux-image-"))
        // A release has an ABI or point version: 6.1.0-54-cloud-amd64, 6.12.117+deb12-amd64.
        .filter(|r| r.chars().filter(|c| *c == '.').count() >= 2 || r.contains('+'))
        .filter(|r| !r.ends_with("-dbg") && !r.ends_with("-unsigned"))
        .map(|r| format!("debian-{r}"))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The descriptor for an archive kernel name (`debian-<release>`): its
/// `linux-image-<release>` package at apt's candidate version.
pub fn archive_descriptor(name: &str) -> Option<String> {
    let release = name.strip_prefix("debian-")?;
    Some(format!(
        "# made by kernlab matrix from a `debian:` pattern\ndescription: Debian linux-image-{release} (apt's candidate)\nsource:\n  debian:\n    package: linux-image-{release}\n"
    ))
}

/// `*` matches any run of characters, `?` one character; nothing else is special.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some(('?', rest)) => !n.is_empty() && go(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    go(&pattern.chars().collect::<Vec<_>>(), &name.chars().collect::<Vec<_>>())
}

/// Which shard to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Partition {
    /// By a hash of the cell id: stable when cells are added or removed.
    Hash { m: usize, n: usize },
    /// By position in the sorted cell list: even shard sizes.
    Count { m: usize, n: usize },
}

impl Partition {
    pub fn parse(s: &str) -> Result<Partition, MatrixError> {
        let bad = || MatrixError::Partition(s.to_string());
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        let (m, n) = rest.split_once('/').ok_or_else(bad)?;
        let (m, n): (usize, usize) = (m.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if m == 0 || n == 0 || m > n {
            return Err(bad());
        }
        match kind {
            "hash" => Ok(Partition::Hash { m, n }),
            "count" => Ok(Partition::Count { m, n }),
            _ => Err(bad()),
        }
    }

    /// From the CI's own variables: GitLab's `CI_NODE_INDEX`/`CI_NODE_TOTAL`
    /// (1-based), or Kubernetes' `JOB_COMPLETION_INDEX` (0-based) with
    /// `KERNLAB_SHARDS` for the total.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Option<Partition> {
        let num = |k: &str| get(k).and_then(|v| v.trim().parse::<usize>().ok());
        if let (Some(m), Some(n)) = (num("CI_NODE_INDEX"), num("CI_NODE_TOTAL")) {
            return (m >= 1 && m <= n).then_some(Partition::Hash { m, n });
        }
        if let (Some(i), Some(n)) = (num("JOB_COMPLETION_INDEX"), num("KERNLAB_SHARDS")) {
            return (i < n).then_some(Partition::Hash { m: i + 1, n });
        }
        None
    }

    pub fn select(&self, cells: &[Cell]) -> Vec<Cell> {
        match *self {
            Partition::Hash { m, n } => {
                cells.iter().filter(|c| (stable_hash(&c.id) % n as u64) as usize == m - 1).cloned().collect()
            }
            Partition::Count { m, n } => cells.iter().enumerate().filter(|(i, _)| i % n == m - 1).map(|(_, c)| c.clone()).collect(),
        }
    }
}

/// A hash of the cell id that never changes across versions or machines and
/// mixes every byte into the low bits (FNV-1a does not: ids that share a
/// suffix landed in one shard): the first 8 bytes of its sha256.
fn stable_hash(s: &str) -> u64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(s.as_bytes());
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// How many VMs may run at once: the cores (one TCG vCPU keeps one busy),
/// and what fits in 80 % of the available memory.
pub fn auto_slots(cores: usize, mem_available: u64, vm_memory: u64) -> usize {
    let by_mem = ((mem_available as f64 * 0.8) / vm_memory.max(1) as f64) as usize;
    cores.min(by_mem).max(1)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellResult {
    pub id: String,
    pub lab: String,
    pub kernel: String,
    pub exit_code: i32,
    /// `leak`/`no-leak`/`inconclusive` for leak labs, else the run's outcome.
    pub verdict: String,
    pub error: Option<String>,
    pub dir: PathBuf,
    pub secs: f64,
    /// Leak numbers, when the cell is a leak lab: bytes/h (module − baseline), bytes/op.
    pub delta_per_hour: Option<f64>,
    pub bytes_per_op: Option<f64>,
}

/// Runs `cells` with at most `slots` VMs at a time; results in cell order.
pub async fn run_cells(cells: Vec<Cell>, dir: &Path, slots: usize, kernel_dirs: Vec<PathBuf>, cancel: CancellationToken) -> Vec<CellResult> {
    let sem = Arc::new(tokio::sync::Semaphore::new(slots));
    let mut tasks = Vec::new();
    for c in cells {
        let (sem, dir, kernel_dirs, cancel) = (sem.clone(), dir.to_path_buf(), kernel_dirs.clone(), cancel.clone());
        tasks.push(tokio::spawn(async move {
            let weight = c.vms.min(slots) as u32;
            let _permit = sem.acquire_many(weight).await.expect("semaphore stays open");
            let start = Instant::now();
            let out = dir.join("cells").join(&c.id);
            eprintln!("cell {} started", c.id);
            let end = run::run(
                RunOptions { lab_file: c.lab_file.clone(), out: Some(out.clone()), kernel_dirs, quiet: true, kernel: Some(c.kernel.clone()) },
                cancel,
            )
            .await;
            let rep: serde_json::Value = std::fs::read(out.join("report.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            let verdict = rep["verdict"].as_str().or(rep["outcome"].as_str()).unwrap_or("failed").to_string();
            let an = &rep["analysis"];
            eprintln!("cell {} finished: {verdict} (exit {})", c.id, end.exit_code);
            CellResult {
                id: c.id,
                lab: c.lab,
                kernel: c.kernel,
                exit_code: end.exit_code,
                verdict,
                error: end.error,
                dir: out,
                secs: start.elapsed().as_secs_f64(),
                delta_per_hour: an["comparison"]["delta"].as_f64().map(|d| d * 3600.0),
                bytes_per_op: an["module"]["per_op"]["slope"].as_f64(),
            }
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        if let Ok(r) = t.await {
            results.push(r);
        }
    }
    results
}

/// The matrix's exit code: an infrastructure or lab error anywhere wins,
/// then an expectation that did not hold, then an inconclusive cell.
pub fn exit_code(results: &[CellResult]) -> i32 {
    let has = |c: i32| results.iter().any(|r| r.exit_code == c);
    if results.iter().any(|r| ![exit::OK, exit::EXPECTATION_FAILED, exit::INCONCLUSIVE].contains(&r.exit_code)) {
        exit::INFRA
    } else if has(exit::EXPECTATION_FAILED) {
        exit::EXPECTATION_FAILED
    } else if has(exit::INCONCLUSIVE) {
        exit::INCONCLUSIVE
    } else {
        exit::OK
    }
}

/// JUnit: one test case per cell, named by lab and kernel. A lab whose
/// expectation did not hold is a failure, a broken run an error, an
/// inconclusive cell skipped with its reason.
pub fn junit(name: &str, results: &[CellResult]) -> String {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new(format!("kernlab {name}"));
    let mut suite = TestSuite::new(name);
    for r in results {
        let mut status = match r.exit_code {
            exit::OK => TestCaseStatus::success(),
            exit::EXPECTATION_FAILED => TestCaseStatus::non_success(NonSuccessKind::Failure),
            exit::INCONCLUSIVE => TestCaseStatus::skipped(),
            _ => TestCaseStatus::non_success(NonSuccessKind::Error),
        };
        if r.exit_code != exit::OK {
            status.set_message(r.error.clone().unwrap_or_else(|| format!("verdict {}", r.verdict)));
        }
        let mut tc = TestCase::new(format!("{}@{}", r.lab, r.kernel), status);
        tc.set_classname(r.lab.clone());
        tc.set_time(std::time::Duration::from_secs_f64(r.secs));
        tc.add_property(("verdict", r.verdict.as_str()));
        tc.add_property(("run_dir", r.dir.to_string_lossy().as_ref()));
        if let Some(d) = r.delta_per_hour {
            tc.add_property(("delta_bytes_per_hour", format!("{d:.0}").as_str()));
        }
        if let Some(b) = r.bytes_per_op {
            tc.add_property(("bytes_per_op", format!("{b:.1}").as_str()));
        }
        let console = fsx::tail_lines(&r.dir.join("console.log"), 20);
        if !console.is_empty() {
            tc.set_system_out(console);
        }
        suite.add_test_case(tc);
    }
    report.add_test_suite(suite);
    report.to_string().unwrap_or_default()
}

/// KTAP (the kernel's test output format): one line per cell; an
/// inconclusive cell is a SKIP with its verdict.
pub fn ktap(results: &[CellResult]) -> String {
    let mut s = format!("KTAP version 1\n1..{}\n", results.len());
    for (i, r) in results.iter().enumerate() {
        let n = i + 1;
        match r.exit_code {
            exit::OK => s.push_str(&format!("ok {n} {}\n", r.id)),
            exit::INCONCLUSIVE => s.push_str(&format!("ok {n} {} # SKIP {}\n", r.id, r.verdict)),
            code => {
                s.push_str(&format!("not ok {n} {}\n", r.id));
                let why = r.error.clone().unwrap_or_else(|| format!("verdict {} (exit {code})", r.verdict));
                for line in why.lines().take(5) {
                    s.push_str(&format!("# {line}\n"));
                }
            }
        }
    }
    s
}

/// Joins the cell results of several shards' matrix reports; a cell that
/// appears twice (a shard rerun) keeps its last result. Sorted by id.
pub fn merge(reports: &[serde_json::Value]) -> Result<Vec<CellResult>, String> {
    let mut by_id: std::collections::BTreeMap<String, CellResult> = std::collections::BTreeMap::new();
    for (i, r) in reports.iter().enumerate() {
        if r["schema"] != "kernlab.matrix-report/1" {
            return Err(format!("report {} is not a kernlab matrix report (schema {})", i + 1, r["schema"]));
        }
        let cells: Vec<CellResult> = serde_json::from_value(r["cells"].clone()).map_err(|e| format!("report {}: {e}", i + 1))?;
        for c in cells {
            by_id.insert(c.id.clone(), c);
        }
    }
    Ok(by_id.into_values().collect())
}

/// The kernels × labs table.
pub fn table(results: &[CellResult]) -> String {
    let mut labs: Vec<&str> = results.iter().map(|r| r.lab.as_str()).collect();
    labs.sort();
    labs.dedup();
    let mut kernels: Vec<&str> = results.iter().map(|r| r.kernel.as_str()).collect();
    kernels.sort();
    kernels.dedup();
    let mut s = format!("{:<32}", "kernel \\ lab");
    for l in &labs {
        s.push_str(&format!(" {l:<16}"));
    }
    s.push('\n');
    for k in &kernels {
        s.push_str(&format!("{k:<32}"));
        for l in &labs {
            let cell = results.iter().find(|r| r.lab == *l && r.kernel == *k);
            let text = cell.map(|r| format!("{} ({})", r.verdict, r.exit_code)).unwrap_or_else(|| "-".into());
            s.push_str(&format!(" {text:<16}"));
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(n: usize) -> Vec<Cell> {
        (0..n)
            .map(|i| Cell { id: format!("lab{}@k{}", i % 7, i), lab: format!("lab{}", i % 7), lab_file: "x".into(), kernel: format!("k{i}"), vms: 1, memory: 1 })
            .collect()
    }

    #[test]
    fn archive_names_from_pkgnames() {
        let text = "linux-image-6.1.0-54-cloud-amd64\nlinux-image-6.12-cloud-amd64\nlinux-image-6.12.117+deb12-cloud-amd64\nlinux-image-6.1.0-54-cloud-amd64-dbg\nlinux-image-amd64\nlinux-image-6.1.0-54-amd64-unsigned\n";
        assert_eq!(archive_names(text), ["debian-6.1.0-54-cloud-amd64", "debian-6.12.117+deb12-cloud-amd64"]);
        assert!(archive_descriptor("debian-6.1.0-47-cloud-amd64").unwrap().contains("package: linux-image-6.1.0-47-cloud-amd64"));
    }

    #[test]
    fn globs() {
        assert!(glob_match("debian-6.1.0-54-*", "debian-6.1.0-54-cloud-amd64"));
        assert!(glob_match("*-cloud-amd64", "debian-6.1.0-54-cloud-amd64"));
        assert!(!glob_match("debian-6.12.*", "debian-6.1.0-54-amd64"));
        assert!(glob_match("debian-6.1.0-5?-amd64", "debian-6.1.0-54-amd64"));
        assert!(glob_match("exact", "exact") && !glob_match("exact", "exactly"));
    }

    #[test]
    fn shards_cover_every_cell_exactly_once() {
        let all = cells(53);
        for n in 1..=9 {
            for make in [|m, n| Partition::Hash { m, n }, |m, n| Partition::Count { m, n }] {
                let mut seen: Vec<String> = (1..=n).flat_map(|m| make(m, n).select(&all)).map(|c| c.id).collect();
                seen.sort();
                let mut want: Vec<String> = all.iter().map(|c| c.id.clone()).collect();
                want.sort();
                assert_eq!(seen, want, "n = {n}");
            }
        }
    }

    #[test]
    fn partitions_parse_and_come_from_ci_variables() {
        assert_eq!(Partition::parse("hash:2/3").unwrap(), Partition::Hash { m: 2, n: 3 });
        assert_eq!(Partition::parse("count:1/1").unwrap(), Partition::Count { m: 1, n: 1 });
        for bad in ["hash:0/3", "hash:4/3", "count:1", "mod:1/2", "hash:a/b"] {
            assert!(Partition::parse(bad).is_err(), "{bad}");
        }
        let env = |pairs: &'static [(&'static str, &'static str)]| move |k: &str| pairs.iter().find(|(a, _)| *a == k).map(|(_, v)| v.to_string());
        assert_eq!(Partition::from_env(env(&[("CI_NODE_INDEX", "2"), ("CI_NODE_TOTAL", "4")])), Some(Partition::Hash { m: 2, n: 4 }));
        assert_eq!(Partition::from_env(env(&[("JOB_COMPLETION_INDEX", "0"), ("KERNLAB_SHARDS", "3")])), Some(Partition::Hash { m: 1, n: 3 }));
        assert_eq!(Partition::from_env(env(&[])), None);
    }

    #[test]
    fn slots_from_cores_and_memory() {
        assert_eq!(auto_slots(2, 24 << 30, 512 << 20), 2);
        assert_eq!(auto_slots(8, 2 << 30, 1 << 30), 1);
        assert_eq!(auto_slots(1, 0, 1), 1);
    }

    #[test]
    fn ktap_and_merge() {
        let r = |id: &str, c: i32| CellResult { id: id.into(), lab: "a".into(), kernel: id.into(), exit_code: c, verdict: "v".into(), error: None, dir: "d".into(), secs: 0.0, delta_per_hour: None, bytes_per_op: None };
        let k = ktap(&[r("a@k1", 0), r("a@k2", 100), r("a@k3", 102)]);
        assert_eq!(k, "KTAP version 1\n1..3\nok 1 a@k1\nnot ok 2 a@k2\n# verdict v (exit 100)\nok 3 a@k3 # SKIP v\n");
        let rep = |cells: Vec<CellResult>| serde_json::json!({"schema": "kernlab.matrix-report/1", "cells": cells});
        let merged = merge(&[rep(vec![r("a@k2", 101), r("a@k1", 0)]), rep(vec![r("a@k2", 0)])]).unwrap();
        assert_eq!(merged.iter().map(|c| (c.id.as_str(), c.exit_code)).collect::<Vec<_>>(), [("a@k1", 0), ("a@k2", 0)]);
        assert!(merge(&[serde_json::json!({"schema": "other"})]).is_err());
    }

    #[test]
    fn exit_code_precedence() {
        let r = |c: i32| CellResult { id: "a".into(), lab: "a".into(), kernel: "k".into(), exit_code: c, verdict: "x".into(), error: None, dir: "d".into(), secs: 0.0, delta_per_hour: None, bytes_per_op: None };
        assert_eq!(exit_code(&[r(0), r(0)]), 0);
        assert_eq!(exit_code(&[r(0), r(102)]), 102);
        assert_eq!(exit_code(&[r(102), r(100)]), 100);
        assert_eq!(exit_code(&[r(100), r(101)]), 101);
        let x = junit("nightly", &[r(0), r(100), r(101), r(102)]);
        assert!(x.contains("<failure") && x.contains("<error") && x.contains("<skipped"), "{x}");
    }
}
