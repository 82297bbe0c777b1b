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

use crate::analysis::leak::{Basis, LeakAnalysis};
use crate::exit;
use crate::kernel::Registry;
use crate::lab;
use crate::outcome::event::{round3, Event, Events};
use crate::outcome::AnyRecord;
use crate::run::{self, RunOptions};
pub use crate::outcome::matrix::{CellResult, CellVerdict, MatrixReport, TableEntry, Timing, SCHEMA};
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
        let matcher = self::glob(&glob);
        let mut hits: Vec<&String> = pool.iter().filter(|k| matcher.is_match(k)).collect();
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
    archive_names(&crate::kernel::apt::pkgnames("linux-image-").unwrap_or_default().join("\n"))
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

/// A kernel pattern as a matcher (globset): `*` matches any run of
/// characters, `?` one character; nothing else is special (`[`, `{` and
/// `\\` match themselves).
pub fn glob(pattern: &str) -> globset::GlobMatcher {
    let mut glob = String::new();
    for c in pattern.chars() {
        match c {
            // `**` would be globset's any-directories: one `*` is the same here.
            '*' if glob.ends_with('*') => {}
            '*' | '?' => glob.push(c),
            c => glob.push_str(&globset::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    globset::GlobBuilder::new(&glob)
        .literal_separator(false)
        .backslash_escape(false)
        .build()
        .expect("a pattern with its other metacharacters escaped is a valid glob")
        .compile_matcher()
}

/// Whether `name` matches the kernel pattern (see [`glob`]).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    glob(pattern).is_match(name)
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

/// Time to exhaustion of a finished cell: measured from its events, else
/// predicted by its leak analysis.
fn exhaustion_of(dir: &Path, analysis: Option<&LeakAnalysis>) -> (Option<f64>, Option<String>) {
    let events = std::fs::read_to_string(crate::outcome::layout::events_jsonl(crate::outcome::matrix::log_dir(dir))).unwrap_or_default();
    if let Some(s) = measured_exhaustion(&events) {
        return (Some(s), Some("measured".into()));
    }
    let predicted = analysis.and_then(|a| a.exhaustion.first()).map(|e| e.fastest_s);
    (predicted, predicted.map(|_| "predicted".into()))
}

/// Seconds from `workload-started` to `exhaustion` in an events.jsonl text.
pub fn measured_exhaustion(events_jsonl: &str) -> Option<f64> {
    let mut start = None;
    for s in crate::outcome::read_events(events_jsonl) {
        match s.event {
            Event::WorkloadStarted { .. } => start = Some(s.t),
            Event::Exhaustion { .. } => return Some(s.t - start?),
            _ => {}
        }
    }
    None
}

/// What a finished cell's directory says: its verdict (an A/B lab's) or
/// outcome (a plain run's), and the leak analysis when there is one.
fn read_cell(out: &Path) -> (Option<CellVerdict>, Option<LeakAnalysis>, Option<crate::outcome::leak::Attribution>) {
    match crate::outcome::read_any(&crate::outcome::layout::report_json(out)) {
        Ok(AnyRecord::Leak(r)) => (Some(CellVerdict::of_leak(r.verdict)), r.analysis, r.attribution),
        Ok(AnyRecord::Run(r)) => (Some(CellVerdict::of_outcome(&r.outcome)), None, None),
        _ => (None, None, None),
    }
}

/// A cell's result from how its run ended: its records as the run returned
/// them, or (a run that returned none) what its directory says.
fn cell_result(c: Cell, out: PathBuf, end: &run::RunEnd, secs: f64) -> CellResult {
    let (verdict, analysis, attribution) = match (&end.leak, &end.outcome) {
        (Some(r), _) => (Some(CellVerdict::of_leak(r.verdict)), r.analysis.clone(), r.attribution.clone()),
        (None, Some(r)) => (Some(CellVerdict::of_outcome(&r.outcome)), None, None),
        (None, None) => read_cell(&out),
    };
    let typed = analysis.as_ref();
    let reason = typed.map(|a| a.reason.clone());
    let (exhaustion_s, exhaustion) = exhaustion_of(&out, typed);
    CellResult {
        id: c.id,
        lab: c.lab,
        kernel: c.kernel,
        exit_code: end.exit_code,
        verdict: verdict.unwrap_or(CellVerdict::Failed),
        error: end.error.clone(),
        reason,
        dir: out,
        secs,
        vms: c.vms,
        delta_per_hour: typed.and_then(|a| a.total.as_ref()).and_then(|t| t.bytes_per_hour).map(|h| h[0]),
        delta_interval_per_hour: typed.and_then(|a| a.total.as_ref()).and_then(|t| t.bytes_per_hour).map(|h| (h[1], h[2])),
        bytes_per_op: typed.filter(|a| a.basis == Basis::PerOp).and_then(|a| a.total.as_ref()).map(|t| t.bytes[0]),
        rules_out: typed.filter(|a| a.verdict != crate::stats::Verdict::Leak).and_then(|a| {
            let d = a.detectable.as_ref()?;
            let u = a.basis.per();
            Some(match d.objects {
                Some(o) => format!("{} objects/{u} in {}", crate::analysis::leak::num(o), d.name),
                None => format!("{} bytes/{u} in {}", crate::analysis::leak::num(d.bytes), d.name),
            })
        }),
        exhaustion_s,
        exhaustion,
        leak_kind: attribution.as_ref().map(|a| crate::outcome::kebab(&a.kind)),
        leak_sites: attribution.as_ref().filter(|a| !a.sites.is_empty()).map(|a| {
            a.sites.iter().take(3).map(|s| format!("{} [{}] {} {}", s.function, s.module, s.cache, s.objects)).collect::<Vec<_>>().join("; ")
        }),
    }
}


/// A cell whose run never returned (its task panicked or was lost): an
/// error cell in every output, never a missing one.
fn lost_cell(c: Cell, out: PathBuf, why: String) -> CellResult {
    CellResult {
        id: c.id,
        lab: c.lab,
        kernel: c.kernel,
        exit_code: exit::INFRA,
        verdict: CellVerdict::Error,
        error: Some(why),
        reason: None,
        dir: out,
        secs: 0.0,
        vms: c.vms,
        delta_per_hour: None,
        delta_interval_per_hour: None,
        bytes_per_op: None,
        rules_out: None,
        exhaustion_s: None,
        exhaustion: None,
        leak_kind: None,
        leak_sites: None,
    }
}

/// Runs `cells` with at most `slots` VMs at a time; results in cell order.
/// Every cell has a result: one whose run panics is an error cell (exit
/// 101) with the panic's message.
pub async fn run_cells(cells: Vec<Cell>, dir: &Path, slots: usize, kernel_dirs: Vec<PathBuf>, events: &Events, cancel: CancellationToken) -> Vec<CellResult> {
    let runner = |opts: RunOptions, stream: Events, cancel: CancellationToken| async move { run::run(opts, &stream, cancel).await };
    run_cells_with(cells, dir, slots, kernel_dirs, events, cancel, runner).await
}

/// [`run_cells`] with the run itself given: `runner` runs one cell's lab.
pub async fn run_cells_with<F, Fut>(
    cells: Vec<Cell>,
    dir: &Path,
    slots: usize,
    kernel_dirs: Vec<PathBuf>,
    events: &Events,
    cancel: CancellationToken,
    runner: F,
) -> Vec<CellResult>
where
    F: Fn(RunOptions, Events, CancellationToken) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = run::RunEnd> + Send,
{
    let sem = Arc::new(tokio::sync::Semaphore::new(slots));
    let mut tasks = Vec::new();
    for c in cells {
        let (sem, dir, kernel_dirs, cancel, runner) = (sem.clone(), dir.to_path_buf(), kernel_dirs.clone(), cancel.clone(), runner.clone());
        let stream = events.within(Some(&c.id), None);
        let out = dir.join("cells").join(&c.id);
        let (cell, cell_out, cell_stream) = (c.clone(), out.clone(), stream.clone());
        let task = tokio::spawn(async move {
            let weight = c.vms.min(slots) as u32;
            let _permit = sem.acquire_many(weight).await.expect("semaphore stays open");
            let start = Instant::now();
            stream.emit(Event::CellStarted { lab: c.lab.clone(), kernel: c.kernel.clone() });
            let opts = RunOptions { lab_file: c.lab_file.clone(), out: Some(out.clone()), kernel_dirs, kernel: Some(c.kernel.clone()), duration: None, attribute: None };
            let end = runner(opts, stream.clone(), cancel).await;
            let r = cell_result(c, out, &end, start.elapsed().as_secs_f64());
            cell_finished(&stream, &r);
            r
        });
        tasks.push((task, cell, cell_out, cell_stream));
    }
    let mut results = Vec::new();
    for (task, cell, out, stream) in tasks {
        let r = match task.await {
            Ok(r) => r,
            Err(e) => {
                let why = match e.try_into_panic() {
                    Ok(p) => format!("the cell's run panicked: {}", panic_text(&*p)),
                    Err(e) => format!("the cell's run was lost: {e}"),
                };
                let r = lost_cell(cell, out, why);
                cell_finished(&stream, &r);
                r
            }
        };
        results.push(r);
    }
    results
}

fn cell_finished(stream: &Events, r: &CellResult) {
    stream.emit(Event::CellFinished {
        verdict: r.verdict.word().to_string(),
        exit_code: r.exit_code,
        secs: round3(r.secs),
        error: r.error.clone().or_else(|| r.reason.clone()),
        dir: r.dir.display().to_string(),
    });
}

/// The message of a panic payload.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_else(|| "(no message)".into())
}

/// The matrix's `report.json` from its cells.
pub fn report(name: &str, cells: Vec<CellResult>, partition: Option<String>, timing: Option<Timing>, merged_from: Option<Vec<PathBuf>>) -> MatrixReport {
    MatrixReport {
        schema: SCHEMA.to_string(),
        name: name.to_string(),
        exit_code: exit_code(&cells),
        table: crate::outcome::matrix::table(&cells),
        cells,
        partition,
        timing,
        merged_from,
    }
}

/// Writes the matrix's `report.json` into `dir`.
/// A cell's `dir` is written relative to `dir` when the cell is inside it
/// (`cells/<id>`); a merged report's cells, in the shards' directories,
/// keep the absolute path they were read with.
pub fn write_report(dir: &Path, r: &MatrixReport) -> std::io::Result<PathBuf> {
    let path = crate::outcome::layout::report_json(dir);
    let mut r = r.clone();
    for c in &mut r.cells {
        c.dir = crate::outcome::recorded(dir, &c.dir);
    }
    fsx::write_atomic(&path, &serde_json::to_vec_pretty(&r).unwrap_or_default())?;
    Ok(path)
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

/// Joins the cell results of several shards' matrix reports; a cell that
/// appears twice (a shard rerun) keeps its last result. Sorted by id.
pub fn merge(reports: &[MatrixReport]) -> Vec<CellResult> {
    let mut by_id: std::collections::BTreeMap<String, CellResult> = std::collections::BTreeMap::new();
    for r in reports {
        for c in &r.cells {
            by_id.insert(c.id.clone(), c.clone());
        }
    }
    by_id.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::matrix::{junit, ktap, table};

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
        assert_eq!(ids, ["l@debian-6.1.0-54-amd64", "l@debian-6.1.0-54-cloud-amd64", "l@debian-6.1.0-54-cloud-arm64", "l@debian-6.12.117+deb12-cloud-amd64"]);
    }

    #[test]
    fn table_shows_bytes_per_op_and_time_to_exhaustion() {
        let r = |lab: &str, k: &str, b: Option<f64>, e: Option<(f64, &str)>| CellResult {
            id: format!("{lab}@{k}"),
            lab: lab.into(),
            kernel: k.into(),
            exit_code: 0,
            verdict: if b.is_some() { CellVerdict::Leak } else { CellVerdict::NoLeak },
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
            leak_kind: None,
            leak_sites: None,
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
        let line = |t: f64, e: Event| serde_json::to_string(&crate::outcome::event::Stamped { schema: crate::outcome::event::SCHEMA.into(), t, wall: "w".into(), cell: None, arm: None, event: e }).unwrap() + "\n";
        let started = line(10.5, Event::WorkloadStarted { commands: 1, duration_secs: 60.0, until_exhaustion: false });
        let oom = line(100.5, Event::Exhaustion { trigger: "oom".into() });
        let ev = format!("{}{started}not json\n{oom}", line(1.0, Event::Teardown { how: "exit".into(), secs: 0.1 }));
        assert_eq!(measured_exhaustion(&ev), Some(90.0));
        assert_eq!(measured_exhaustion(&oom), None);
    }

    #[test]
    fn globs() {
        assert!(glob_match("debian-6.1.0-54-*", "debian-6.1.0-54-cloud-amd64"));
        assert!(glob_match("*-cloud-amd64", "debian-6.1.0-54-cloud-amd64"));
        assert!(!glob_match("debian-6.12.*", "debian-6.1.0-54-amd64"));
        assert!(glob_match("debian-6.1.0-5?-amd64", "debian-6.1.0-54-amd64"));
        assert!(glob_match("exact", "exact") && !glob_match("exact", "exactly"));
        assert!(glob_match("a**b", "axyb") && glob_match("*", "") && !glob_match("?", ""));
        // Nothing else is special.
        assert!(glob_match("k[1]{a,b}\\x", "k[1]{a,b}\\x") && !glob_match("k[1]", "k1") && !glob_match("{a,b}", "a"));
        assert!(glob_match("debian-*", "debian-6.1/x"), "a name is not a path");
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
        let r = |secs: f64| CellResult { id: "a".into(), lab: "a".into(), kernel: "k".into(), exit_code: 0, verdict: CellVerdict::Completed, error: None, reason: None, dir: "d".into(), secs, vms: 1, delta_per_hour: None, delta_interval_per_hour: None, bytes_per_op: None, rules_out: None, exhaustion_s: None, exhaustion: None, leak_kind: None, leak_sites: None };
        let t = Timing::new(50.0, 2, &[r(40.0), r(40.0)]);
        assert!((t.speedup - 1.6).abs() < 1e-9 && (t.parallel_efficiency - 0.8).abs() < 1e-9, "{t:?}");
        assert!(t.line().contains("speedup 1.60 on 2 slots (parallel efficiency 80 %, VM slots busy 80 %)"), "{}", t.line());
        let j = crate::outcome::matrix::table(&[r(1.0)]);
        assert_eq!(j["k"]["a"].verdict, CellVerdict::Completed);
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
        let r = |id: &str, c: i32| CellResult { id: id.into(), lab: "a".into(), kernel: id.into(), exit_code: c, verdict: CellVerdict::Inconclusive, error: None, reason: None, dir: "d".into(), secs: 0.0, vms: 1, delta_per_hour: None, delta_interval_per_hour: None, bytes_per_op: None, rules_out: None, exhaustion_s: None, exhaustion: None, leak_kind: None, leak_sites: None };
        let k = ktap(&[r("a@k1", 0), r("a@k2", 100), r("a@k3", 102)]);
        assert_eq!(k, "KTAP version 1\n1..3\nok 1 a@k1\nnot ok 2 a@k2\n# verdict inconclusive (exit 100)\nok 3 a@k3 # SKIP inconclusive\n");
        let rep = |cells: Vec<CellResult>| report("m", cells, None, None, None);
        let merged = merge(&[rep(vec![r("a@k2", 101), r("a@k1", 0)]), rep(vec![r("a@k2", 0)])]);
        assert_eq!(merged.iter().map(|c| (c.id.as_str(), c.exit_code)).collect::<Vec<_>>(), [("a@k1", 0), ("a@k2", 0)]);
        // A report of another schema is refused when read, by name.
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("report.json"), r#"{"schema": "other", "cells": []}"#).unwrap();
        let e = crate::outcome::read::<MatrixReport>(&d.path().join("report.json")).unwrap_err().to_string();
        assert!(e.contains("`other`") && e.contains(SCHEMA), "{e}");
    }

    /// Collects the stream's events.
    struct Collect(Arc<std::sync::Mutex<Vec<crate::outcome::event::Stamped>>>);
    impl crate::outcome::event::Reporter for Collect {
        fn report(&mut self, e: &crate::outcome::event::Stamped) {
            self.0.lock().unwrap().push(e.clone());
        }
    }

    #[tokio::test]
    async fn a_cell_whose_run_panics_is_an_error_cell_in_every_output() {
        let d = tempfile::tempdir().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let events = Events::new(Instant::now());
        events.add(Box::new(Collect(seen.clone())));
        let cells = cells(2);
        let runner = |opts: RunOptions, _: Events, _: CancellationToken| async move {
            if opts.kernel.as_deref() == Some("k1") {
                panic!("boom in the cell");
            }
            run::RunEnd { dir: opts.out, exit_code: exit::OK, error: None, outcome: None, leak: None }
        };
        let results = run_cells_with(cells, d.path(), 2, vec![], &events, CancellationToken::new(), runner).await;
        assert_eq!(results.len(), 2, "no cell vanishes");
        let lost = results.iter().find(|r| r.kernel == "k1").unwrap();
        assert_eq!((lost.exit_code, lost.verdict.word()), (exit::INFRA, "error"));
        assert!(lost.error.as_deref().unwrap().contains("panicked: boom in the cell"), "{lost:?}");
        let finished: Vec<_> = seen.lock().unwrap().iter().filter(|s| matches!(s.event, Event::CellFinished { .. })).map(|s| s.cell.clone().unwrap()).collect();
        assert_eq!(finished.len(), 2, "the lost cell's end is an event too: {finished:?}");
        let report = report("m", results, None, None, None);
        assert_eq!(report.exit_code, exit::INFRA);
        let x = junit("m", &report.cells);
        assert!(x.contains("<error") && x.contains("boom in the cell"), "{x}");
        assert!(ktap(&report.cells).contains("not ok") && table(&report.cells).contains("error (101)"));
    }

    #[test]
    fn exit_code_precedence() {
        let r = |c: i32| CellResult { id: "a".into(), lab: "a".into(), kernel: "k".into(), exit_code: c, verdict: CellVerdict::Completed, error: None, reason: None, dir: "d".into(), secs: 0.0, vms: 1, delta_per_hour: None, delta_interval_per_hour: None, bytes_per_op: None, rules_out: None, exhaustion_s: None, exhaustion: None, leak_kind: None, leak_sites: None };
        assert_eq!(exit_code(&[r(0), r(0)]), 0);
        assert_eq!(exit_code(&[r(0), r(102)]), 102);
        assert_eq!(exit_code(&[r(102), r(100)]), 100);
        assert_eq!(exit_code(&[r(100), r(101)]), 101);
        let x = junit("nightly", &[r(0), r(100), r(101), r(102)]);
        assert!(x.contains("<failure") && x.contains("<error") && x.contains("<skipped"), "{x}");
    }
}
