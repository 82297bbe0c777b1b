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
    #[error("bad partition `{0}`: expected hash:M/N or count:M/N with 1 <= M <= N (or CI_NODE_INDEX/CI_NODE_TOTAL, JOB_COMPLETION_INDEX with KERNLAB_SHARDS)")]
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
        let (body, newest) = match pattern.strip_suffix(NEWEST_SUFFIX) {
            Some(b) => (b, true),
            None => (pattern.as_str(), false),
        };
        let (pool, glob) = match body.strip_prefix(ARCHIVE_PREFIX) {
            Some(g) => (&archive, format!("debian-{g}")),
            None => (&known, body.to_string()),
        };
        let mut hits: Vec<&String> = pool.iter().filter(|k| glob_match(&glob, k)).collect();
        if newest {
            hits = hits.into_iter().max_by(|a, b| version_cmp(a, b)).into_iter().collect();
        }
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

/// A kernel pattern ending in this keeps only the newest kernel it matches
/// (`debian:6.12.*-cloud-amd64@newest`): a nightly that follows the archive.
pub const NEWEST_SUFFIX: &str = "@newest";

/// Orders kernel names as versions: runs of digits compare as numbers
/// (`6.1.0-9` < `6.1.0-56`, `6.12.99+deb12` < `6.12.117+deb12`).
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> Vec<(u64, String)> {
        let mut v = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if digits > 0 {
                v.push((rest[..digits].parse().unwrap_or(u64::MAX), String::new()));
                rest = &rest[digits..];
            } else {
                let text = rest.len() - rest.trim_start_matches(|c: char| !c.is_ascii_digit()).len();
                v.push((0, rest[..text].to_string()));
                rest = &rest[text..];
            }
        }
        v
    }
    parts(a).cmp(&parts(b))
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
    /// `KERNLAB_SHARDS` for the total. Set but out of range or not numbers is
    /// an error: running the whole matrix on every shard would be worse.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Option<Partition>, MatrixError> {
        let var = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let bad = |what: String| MatrixError::Partition(what);
        let num = |k: &str, v: String| v.trim().parse::<usize>().map_err(|_| bad(format!("{k}={v}")));
        if let (Some(i), Some(n)) = (var("CI_NODE_INDEX"), var("CI_NODE_TOTAL")) {
            let (m, n) = (num("CI_NODE_INDEX", i)?, num("CI_NODE_TOTAL", n)?);
            if m == 0 || n == 0 || m > n {
                return Err(bad(format!("CI_NODE_INDEX={m} CI_NODE_TOTAL={n} (1 <= index <= total)")));
            }
            return Ok(Some(Partition::Hash { m, n }));
        }
        if let Some(i) = var("JOB_COMPLETION_INDEX") {
            let Some(n) = var("KERNLAB_SHARDS") else {
                return Err(bad("JOB_COMPLETION_INDEX is set but KERNLAB_SHARDS (the number of shards) is not".into()));
            };
            let (i, n) = (num("JOB_COMPLETION_INDEX", i)?, num("KERNLAB_SHARDS", n)?);
            if i >= n {
                return Err(bad(format!("JOB_COMPLETION_INDEX={i} KERNLAB_SHARDS={n} (0 <= index < shards)")));
            }
            return Ok(Some(Partition::Hash { m: i + 1, n }));
        }
        Ok(None)
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
    /// Why the analysis decided as it did (leak labs).
    #[serde(default)]
    pub reason: Option<String>,
    pub dir: PathBuf,
    pub secs: f64,
    /// VMs the cell ran at once.
    #[serde(default = "one")]
    pub vms: usize,
    /// Leak numbers, when the cell is a leak lab: bytes/h (module − baseline), bytes/op.
    pub delta_per_hour: Option<f64>,
    /// The one-sided interval of `delta_per_hour` (bytes/h), at the lab's α.
    #[serde(default)]
    pub delta_interval_per_hour: Option<(f64, f64)>,
    pub bytes_per_op: Option<f64>,
    /// For a NO-LEAK or INCONCLUSIVE leak cell: the smallest leak it would
    /// have caught (80 % power), e.g. `0.0004 objects/op in kmalloc-64`.
    #[serde(default)]
    pub rules_out: Option<String>,
    /// Seconds of workload until the guest runs out of memory: measured
    /// when the cell ran into exhaustion, else predicted from the leak rate
    /// and the guest's MemAvailable (the fastest end of the interval).
    #[serde(default)]
    pub exhaustion_s: Option<f64>,
    /// `measured` or `predicted`, with `exhaustion_s`.
    #[serde(default)]
    pub exhaustion: Option<String>,
}

fn one() -> usize {
    1
}

/// The arm directory whose logs speak for a cell: `module/` of an A/B run,
/// else the run directory itself.
fn arm_dir(dir: &Path) -> PathBuf {
    let module = dir.join("module");
    if module.join("events.jsonl").is_file() { module } else { dir.to_path_buf() }
}

/// Time to exhaustion of a finished cell, from its report and events.
fn exhaustion_of(dir: &Path, rep: &serde_json::Value) -> (Option<f64>, Option<String>) {
    let events = std::fs::read_to_string(arm_dir(dir).join("events.jsonl")).unwrap_or_default();
    if let Some(s) = measured_exhaustion(&events) {
        return (Some(s), Some("measured".into()));
    }
    let predicted = rep["analysis"]["exhaustion"].as_array().and_then(|a| a.first()).and_then(|e| e["fastest_s"].as_f64());
    (predicted, predicted.map(|_| "predicted".into()))
}

/// Seconds from `workload-started` to `exhaustion` in an events.jsonl text.
pub fn measured_exhaustion(events_jsonl: &str) -> Option<f64> {
    let mut start = None;
    for line in events_jsonl.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        match v["event"].as_str() {
            Some("workload-started") => start = v["t"].as_f64(),
            Some("exhaustion") => return Some(v["t"].as_f64()? - start?),
            _ => {}
        }
    }
    None
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
            let stream = run::events::top().within(Some(&c.id), None);
            stream.emit(run::events::Event::CellStarted { lab: c.lab.clone(), kernel: c.kernel.clone() });
            let end = run::run(
                RunOptions { lab_file: c.lab_file.clone(), out: Some(out.clone()), kernel_dirs, quiet: true, summary: false, kernel: Some(c.kernel.clone()), duration: None, cell: Some(c.id.clone()) },
                cancel,
            )
            .await;
            let rep: serde_json::Value = std::fs::read(out.join("report.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            let verdict = rep["verdict"].as_str().or(rep["outcome"].as_str()).unwrap_or("failed").to_string();
            let an = &rep["analysis"];
            let typed: Option<crate::analysis::leak::LeakAnalysis> = serde_json::from_value(an.clone()).ok();
            let reason = an["reason"].as_str().map(str::to_string);
            let why = end.error.as_deref().or(reason.as_deref()).map(str::to_string);
            stream.emit(run::events::Event::CellFinished {
                verdict: verdict.clone(),
                exit_code: end.exit_code,
                secs: run::events::round3(start.elapsed().as_secs_f64()),
                error: why,
                dir: out.display().to_string(),
            });
            let (exhaustion_s, exhaustion) = exhaustion_of(&out, &rep);
            CellResult {
                id: c.id,
                lab: c.lab,
                kernel: c.kernel,
                exit_code: end.exit_code,
                verdict,
                error: end.error,
                reason,
                dir: out,
                secs: start.elapsed().as_secs_f64(),
                vms: c.vms,
                delta_per_hour: typed.as_ref().and_then(|a| a.total.as_ref()).and_then(|t| t.bytes_per_hour).map(|h| h[0]),
                delta_interval_per_hour: typed.as_ref().and_then(|a| a.total.as_ref()).and_then(|t| t.bytes_per_hour).map(|h| (h[1], h[2])),
                bytes_per_op: typed.as_ref().filter(|a| a.basis == crate::analysis::leak::Basis::PerOp).and_then(|a| a.total.as_ref()).map(|t| t.bytes[0]),
                rules_out: typed.as_ref().filter(|a| a.verdict != crate::stats::Verdict::Leak).and_then(|a| {
                    let d = a.detectable.as_ref()?;
                    let u = crate::run::ab::per(a);
                    Some(match d.objects {
                        Some(o) => format!("{} objects/{u} in {}", crate::analysis::leak::num(o), d.name),
                        None => format!("{} bytes/{u} in {}", crate::analysis::leak::num(d.bytes), d.name),
                    })
                }),
                exhaustion_s,
                exhaustion,
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

/// Wall time against the sum of the cells' own times.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Timing {
    pub wall_secs: f64,
    pub cells_secs: f64,
    /// Sum over cells of their time × their VMs (an A/B cell runs 2).
    pub vm_secs: f64,
    pub slots: usize,
    /// cells_secs / wall_secs: how many cells ran at once on average.
    pub speedup: f64,
    /// speedup / slots.
    pub parallel_efficiency: f64,
    /// vm_secs / wall_secs / slots: how busy the VM slots were.
    pub slot_utilisation: f64,
}

impl Timing {
    pub fn new(wall_secs: f64, slots: usize, results: &[CellResult]) -> Timing {
        let cells_secs: f64 = results.iter().map(|r| r.secs).sum();
        let vm_secs: f64 = results.iter().map(|r| r.secs * r.vms as f64).sum();
        let per = |x: f64| if wall_secs > 0.0 { x / wall_secs } else { 0.0 };
        let speedup = per(cells_secs);
        let slots_f = slots.max(1) as f64;
        Timing { wall_secs, cells_secs, vm_secs, slots, speedup, parallel_efficiency: speedup / slots_f, slot_utilisation: per(vm_secs) / slots_f }
    }

    pub fn line(&self) -> String {
        format!(
            "wall {:.1} s for {:.1} s of cells: speedup {:.2} on {} slots (parallel efficiency {:.0} %, VM slots busy {:.0} %)",
            self.wall_secs,
            self.cells_secs,
            self.speedup,
            self.slots,
            self.parallel_efficiency * 100.0,
            self.slot_utilisation * 100.0
        )
    }
}

/// Writes a matrix directory's `report.json` (with `extra`'s fields),
/// `junit.xml` and `ktap.txt`, prints the table, returns the exit code.
pub fn write_outputs(dir: &Path, name: &str, results: &[CellResult], extra: serde_json::Value) -> i32 {
    let code = exit_code(results);
    let mut report = serde_json::json!({
        "schema": "kernlab.matrix-report/1",
        "name": name,
        "exit_code": code,
        "table": table_json(results),
        "cells": results,
    });
    if let (Some(r), Some(e)) = (report.as_object_mut(), extra.as_object()) {
        r.extend(e.clone());
    }
    let writes = [
        ("report.json", serde_json::to_vec_pretty(&report).unwrap_or_default()),
        ("junit.xml", junit(name, results).into_bytes()),
        ("ktap.txt", ktap(results).into_bytes()),
    ];
    for (file, bytes) in writes {
        if let Err(e) = fsx::write_atomic(&dir.join(file), &bytes) {
            eprintln!("kernlab: cannot write `{}`: {e}", dir.join(file).display());
        }
    }
    crate::report::write_or_warn(dir, || crate::report::write_matrix(dir));
    crate::ui::human(&table(results));
    code
}

/// The kernels × labs table as JSON: kernel → lab → the cell's verdict,
/// exit code, bytes per operation and time to exhaustion.
pub fn table_json(results: &[CellResult]) -> serde_json::Value {
    let mut t = serde_json::Map::new();
    for r in results {
        let row = t.entry(r.kernel.clone()).or_insert_with(|| serde_json::json!({}));
        row[&r.lab] = serde_json::json!({
            "id": r.id,
            "verdict": r.verdict,
            "exit_code": r.exit_code,
            "bytes_per_op": r.bytes_per_op,
            "rules_out": r.rules_out,
            "exhaustion_s": r.exhaustion_s,
            "exhaustion": r.exhaustion,
        });
    }
    serde_json::Value::Object(t)
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
            let why = r.reason.as_ref().map(|w| format!(": {w}")).unwrap_or_default();
            status.set_message(r.error.clone().unwrap_or_else(|| format!("verdict {}{why}", r.verdict)));
        }
        let mut tc = TestCase::new(format!("{}@{}", r.lab, r.kernel), status);
        tc.set_classname(r.lab.clone());
        tc.set_time(std::time::Duration::from_secs_f64(r.secs));
        tc.add_property(("verdict", r.verdict.as_str()));
        tc.add_property(("run_dir", r.dir.to_string_lossy().as_ref()));
        if let Some(d) = r.delta_per_hour {
            tc.add_property(("delta_bytes_per_hour", format!("{d:.0}").as_str()));
        }
        if let Some((l, u)) = r.delta_interval_per_hour {
            tc.add_property(("delta_lower_bytes_per_hour", format!("{l:.0}").as_str()));
            tc.add_property(("delta_upper_bytes_per_hour", format!("{u:.0}").as_str()));
        }
        if let Some(b) = r.bytes_per_op {
            tc.add_property(("bytes_per_op", format!("{b:.1}").as_str()));
        }
        if let Some(d) = &r.rules_out {
            tc.add_property(("rules_out", d.as_str()));
        }
        if let (Some(e), Some(how)) = (r.exhaustion_s, &r.exhaustion) {
            tc.add_property(("time_to_exhaustion_s", format!("{e:.0}").as_str()));
            tc.add_property(("time_to_exhaustion", how.as_str()));
        }
        let console = fsx::tail_lines(&arm_dir(&r.dir).join("console.log"), 20);
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
            exit::INCONCLUSIVE => {
                let why = r.reason.as_ref().map(|w| format!(": {w}")).unwrap_or_default();
                s.push_str(&format!("ok {n} {} # SKIP {}{why}\n", r.id, r.verdict))
            }
            code => {
                s.push_str(&format!("not ok {n} {}\n", r.id));
                let reason = r.reason.as_ref().map(|w| format!(": {w}")).unwrap_or_default();
                let why = r.error.clone().unwrap_or_else(|| format!("verdict {} (exit {code}){reason}", r.verdict));
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

/// The kernels × labs table: each cell's verdict and exit code, then for a
/// leak lab its bytes per operation and time to exhaustion (`~` predicted,
/// `=` measured).
pub fn table(results: &[CellResult]) -> String {
    let mut labs: Vec<&str> = results.iter().map(|r| r.lab.as_str()).collect();
    labs.sort();
    labs.dedup();
    let mut kernels: Vec<&str> = results.iter().map(|r| r.kernel.as_str()).collect();
    kernels.sort();
    kernels.dedup();
    let texts: Vec<String> = results.iter().map(cell_text).collect();
    let width = texts.iter().map(|t| t.chars().count()).chain(labs.iter().map(|l| l.len())).max().unwrap_or(8);
    let kwidth = kernels.iter().map(|k| k.len()).max().unwrap_or(0).max(12);
    let mut s = format!("{:<kwidth$}", "kernel \\ lab");
    for l in &labs {
        s.push_str(&format!("  {l:<width$}"));
    }
    s.push('\n');
    for k in &kernels {
        s.push_str(&format!("{k:<kwidth$}"));
        for l in &labs {
            let text = results.iter().position(|r| r.lab == *l && r.kernel == *k).map(|i| texts[i].as_str()).unwrap_or("-");
            s.push_str(&format!("  {text:<width$}"));
        }
        s.push('\n');
    }
    s.lines().map(|l| format!("{}\n", l.trim_end())).collect()
}

fn cell_text(r: &CellResult) -> String {
    let mut t = format!("{} ({})", r.verdict, r.exit_code);
    if let Some(b) = r.bytes_per_op.filter(|_| r.rules_out.is_none()) {
        t.push_str(&format!(" {b:.0} B/op"));
    }
    if let Some(d) = &r.rules_out {
        // The number and unit; the cache is in the JUnit property and the page.
        let short = d.split(" in ").next().unwrap_or(d).replace("objects", "obj");
        t.push_str(&format!(" rules out ≥{short}"));
    }
    if let (Some(e), Some(how)) = (r.exhaustion_s, &r.exhaustion) {
        let mark = if how == "measured" { "=" } else { "~" };
        t.push_str(&format!(" OOM{mark}{}", crate::run::duration(e)));
    }
    t
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
    fn newest_by_version_not_by_text() {
        use std::cmp::Ordering::*;
        assert_eq!(version_cmp("debian-6.1.0-9-amd64", "debian-6.1.0-56-amd64"), Less);
        assert_eq!(version_cmp("debian-6.12.117+deb12-amd64", "debian-6.12.99+deb12-amd64"), Greater);
        assert_eq!(version_cmp("debian-6.12.1+deb12-amd64", "debian-6.1.0-56-amd64"), Greater);
        let names = ["debian-6.12.99+deb12-cloud-amd64", "debian-6.12.117+deb12-cloud-amd64", "debian-6.12.107+deb12-cloud-amd64"];
        assert_eq!(names.iter().max_by(|a, b| version_cmp(a, b)), Some(&"debian-6.12.117+deb12-cloud-amd64"));
    }

    #[test]
    fn newest_pattern_keeps_one_kernel_per_pattern() {
        let d = tempfile::tempdir().unwrap();
        let reg = Registry::builtin();
        std::fs::write(d.path().join("l.yaml"), "name: l\nworkload:\n  commands: [true]\n").unwrap();
        std::fs::write(d.path().join("m.yaml"), "name: m\nlabs: [l.yaml]\nkernels: ['debian-6.1*-cloud-amd64@newest', 'debian-6.1.0-54-*']\n").unwrap();
        let (_, cells) = load(&d.path().join("m.yaml"), &reg).unwrap();
        let ids: Vec<&str> = cells.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["l@debian-6.1.0-54-amd64", "l@debian-6.1.0-54-cloud-amd64", "l@debian-6.12.117+deb12-cloud-amd64"]);
    }

    #[test]
    fn table_shows_bytes_per_op_and_time_to_exhaustion() {
        let r = |lab: &str, k: &str, b: Option<f64>, e: Option<(f64, &str)>| CellResult {
            id: format!("{lab}@{k}"),
            lab: lab.into(),
            kernel: k.into(),
            exit_code: 0,
            verdict: if b.is_some() { "leak" } else { "no-leak" }.into(),
            error: None,
            reason: None,
            dir: "d".into(),
            secs: 1.0,
            vms: 1,
            delta_per_hour: None,
            delta_interval_per_hour: None,
            bytes_per_op: b,
            rules_out: None,
            exhaustion_s: e.map(|x| x.0),
            exhaustion: e.map(|x| x.1.to_string()),
        };
        let t = table(&[r("leak-lab", "k-6.1", Some(1069.4), Some((388.0, "predicted"))), r("crash", "k-6.1", None, Some((95.0, "measured"))), r("leak-lab", "k-6.12", Some(1084.0), None)]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("kernel \\ lab") && lines[0].contains("crash") && lines[0].contains("leak-lab"), "{t}");
        assert!(lines[1].starts_with("k-6.1 ") && lines[1].contains("no-leak (0) OOM=95 s") && lines[1].contains("leak (0) 1069 B/op OOM~6 min"), "{t}");
        assert!(lines[2].contains("  -  ") && lines[2].contains("1084 B/op"), "{t}");
    }

    #[test]
    fn exhaustion_is_measured_from_the_events() {
        let ev = "{\"t\":1.0,\"event\":\"run-started\"}\n{\"t\":10.5,\"event\":\"workload-started\"}\nnot json\n{\"t\":100.5,\"event\":\"exhaustion\",\"trigger\":\"oom\"}\n";
        assert_eq!(measured_exhaustion(ev), Some(90.0));
        assert_eq!(measured_exhaustion("{\"t\":1.0,\"event\":\"exhaustion\"}\n"), None);
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
    fn hash_shards_keep_their_cells_when_cells_are_added() {
        let before = cells(20);
        let after = cells(35);
        for n in 1..=7 {
            for m in 1..=n {
                let p = Partition::Hash { m, n };
                let old: Vec<String> = p.select(&before).into_iter().map(|c| c.id).collect();
                let new: Vec<String> = p.select(&after).into_iter().map(|c| c.id).collect();
                assert!(old.iter().all(|id| new.contains(id)), "shard {m}/{n} lost a cell when cells were added");
            }
        }
        // Ids are `<lab>@<kernel>`, independent of order and of the other cells.
        assert_eq!(before[3].id, after[3].id);
    }

    #[test]
    fn timing_is_against_the_sum_of_cells() {
        let r = |secs: f64| CellResult { id: "a".into(), lab: "a".into(), kernel: "k".into(), exit_code: 0, verdict: "x".into(), error: None, reason: None, dir: "d".into(), secs, vms: 1, delta_per_hour: None, delta_interval_per_hour: None, bytes_per_op: None, rules_out: None, exhaustion_s: None, exhaustion: None };
        let t = Timing::new(50.0, 2, &[r(40.0), r(40.0)]);
        assert!((t.speedup - 1.6).abs() < 1e-9 && (t.parallel_efficiency - 0.8).abs() < 1e-9, "{t:?}");
        assert!(t.line().contains("speedup 1.60 on 2 slots (parallel efficiency 80 %, VM slots busy 80 %)"), "{}", t.line());
        let j = table_json(&[r(1.0)]);
        assert_eq!(j["k"]["a"]["verdict"], "x");
    }

    #[test]
    fn partitions_parse_and_come_from_ci_variables() {
        assert_eq!(Partition::parse("hash:2/3").unwrap(), Partition::Hash { m: 2, n: 3 });
        assert_eq!(Partition::parse("count:1/1").unwrap(), Partition::Count { m: 1, n: 1 });
        for bad in ["hash:0/3", "hash:4/3", "count:1", "mod:1/2", "hash:a/b"] {
            assert!(Partition::parse(bad).is_err(), "{bad}");
        }
        let env = |pairs: &'static [(&'static str, &'static str)]| move |k: &str| pairs.iter().find(|(a, _)| *a == k).map(|(_, v)| v.to_string());
        assert_eq!(Partition::from_env(env(&[("CI_NODE_INDEX", "2"), ("CI_NODE_TOTAL", "4")])).unwrap(), Some(Partition::Hash { m: 2, n: 4 }));
        assert_eq!(Partition::from_env(env(&[("JOB_COMPLETION_INDEX", "0"), ("KERNLAB_SHARDS", "3")])).unwrap(), Some(Partition::Hash { m: 1, n: 3 }));
        assert_eq!(Partition::from_env(env(&[])).unwrap(), None);
        for bad in [
            &[("CI_NODE_INDEX", "5"), ("CI_NODE_TOTAL", "4")][..],
            &[("CI_NODE_INDEX", "0"), ("CI_NODE_TOTAL", "4")],
            &[("CI_NODE_INDEX", "x"), ("CI_NODE_TOTAL", "4")],
            &[("JOB_COMPLETION_INDEX", "3"), ("KERNLAB_SHARDS", "3")],
            &[("JOB_COMPLETION_INDEX", "0")],
        ] {
            let e = Partition::from_env(env(bad)).unwrap_err().to_string();
            assert!(e.contains(bad[0].0), "{bad:?}: {e}");
        }
    }

    #[test]
    fn slots_from_cores_and_memory() {
        assert_eq!(auto_slots(2, 24 << 30, 512 << 20), 2);
        assert_eq!(auto_slots(8, 2 << 30, 1 << 30), 1);
        assert_eq!(auto_slots(1, 0, 1), 1);
    }

    #[test]
    fn ktap_and_merge() {
        let r = |id: &str, c: i32| CellResult { id: id.into(), lab: "a".into(), kernel: id.into(), exit_code: c, verdict: "v".into(), error: None, reason: None, dir: "d".into(), secs: 0.0, vms: 1, delta_per_hour: None, delta_interval_per_hour: None, bytes_per_op: None, rules_out: None, exhaustion_s: None, exhaustion: None };
        let k = ktap(&[r("a@k1", 0), r("a@k2", 100), r("a@k3", 102)]);
        assert_eq!(k, "KTAP version 1\n1..3\nok 1 a@k1\nnot ok 2 a@k2\n# verdict v (exit 100)\nok 3 a@k3 # SKIP v\n");
        let rep = |cells: Vec<CellResult>| serde_json::json!({"schema": "kernlab.matrix-report/1", "cells": cells});
        let merged = merge(&[rep(vec![r("a@k2", 101), r("a@k1", 0)]), rep(vec![r("a@k2", 0)])]).unwrap();
        assert_eq!(merged.iter().map(|c| (c.id.as_str(), c.exit_code)).collect::<Vec<_>>(), [("a@k1", 0), ("a@k2", 0)]);
        assert!(merge(&[serde_json::json!({"schema": "other"})]).is_err());
    }

    #[test]
    fn exit_code_precedence() {
        let r = |c: i32| CellResult { id: "a".into(), lab: "a".into(), kernel: "k".into(), exit_code: c, verdict: "x".into(), error: None, reason: None, dir: "d".into(), secs: 0.0, vms: 1, delta_per_hour: None, delta_interval_per_hour: None, bytes_per_op: None, rules_out: None, exhaustion_s: None, exhaustion: None };
        assert_eq!(exit_code(&[r(0), r(0)]), 0);
        assert_eq!(exit_code(&[r(0), r(102)]), 102);
        assert_eq!(exit_code(&[r(102), r(100)]), 100);
        assert_eq!(exit_code(&[r(100), r(101)]), 101);
        let x = junit("nightly", &[r(0), r(100), r(101), r(102)]);
        assert!(x.contains("<failure") && x.contains("<error") && x.contains("<skipped"), "{x}");
    }
}
