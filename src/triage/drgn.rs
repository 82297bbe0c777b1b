//! Triage with drgn, the second engine next to `crash`: Debian's
//! `python3-drgn` reads a dump of any architecture it knows with the
//! kernel's debug vmlinux (Debian's `crash` reads only its own), so a guest
//! of another architecture than the host's is triaged here.
//!
//! kernlab embeds a small Python program (`drgn_triage.py`), runs it with
//! Debian's interpreter (the one `python3-drgn` installs into) and parses
//! its one JSON document into the same [`CrashReport`] the crash path makes:
//! the memory summary, every slab cache's counts (read from SLUB's own
//! counters the way `kmem -s` reads them, so the two engines' tables agree
//! to the object), the panic line, the crashed task's stack and the log's
//! tail.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{CacheAtCrash, CrashReport, Engine, TriageError};
use crate::util::fsx;
use crate::util::tool::Tool;

/// The program kernlab runs under drgn.
pub const SCRIPT: &str = include_str!("drgn_triage.py");

/// Debian's interpreter: `python3-drgn` installs its module for it alone
/// (a `python3` earlier on `PATH`, e.g. a pyenv one, does not see it).
pub const PYTHON: &str = "/usr/bin/python3";

/// The Debian package that provides drgn.
pub const PACKAGE: &str = "python3-drgn";

/// The oldest drgn whose helpers the script uses: `for_each_slab_cache`,
/// `Program.crashed_thread`, the lockless printk ring buffer (6.x kernels)
/// and `struct slab` (6.1's SLUB). 0.0.22 is Debian 12's.
pub const MIN_VERSION: (u32, u32, u32) = (0, 0, 22);

/// drgn reading a vmcore: the counters are read per cache (not by walking
/// memory), 0.4 s for a 512 MiB x86 guest's dump; the deadline is crash's.
pub const DEADLINE: Duration = super::CRASH_DEADLINE;

/// The installed drgn's version, or why there is none usable: absent, or
/// older than [`MIN_VERSION`] (naming both).
pub fn version() -> Result<String, TriageError> {
    let o = Tool::new(PYTHON, Duration::from_secs(30)).args(["-c", "import drgn; print(drgn.__version__)"]).output().map_err(TriageError::Drgn)?;
    if !o.status.success() {
        return Err(TriageError::NoDrgn {
            detail: format!("`{PYTHON} -c 'import drgn'` failed: {}", String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("").trim()),
        });
    }
    let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
    match parse_version(&v) {
        Some(found) if found >= MIN_VERSION => Ok(v),
        _ => Err(TriageError::NoDrgn { detail: format!("drgn {v} is installed; kernlab needs {} or newer", min_version()) }),
    }
}

/// [`MIN_VERSION`] in words.
pub fn min_version() -> String {
    let (a, b, c) = MIN_VERSION;
    format!("{a}.{b}.{c}")
}

/// `0.0.22`, `0.0.22+unknown`, `0.1.0.dev3` → the first three numbers.
pub fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let mut n = v.split(['.', '+', '-']).map(|p| p.parse::<u32>());
    match (n.next(), n.next(), n.next()) {
        (Some(Ok(a)), Some(Ok(b)), Some(Ok(c))) => Some((a, b, c)),
        (Some(Ok(a)), Some(Ok(b)), _) => Some((a, b, 0)),
        _ => None,
    }
}

/// What `drgn_triage.py` prints.
#[derive(Debug, Deserialize)]
struct Output {
    drgn: String,
    memory: Vec<(String, u64)>,
    caches: Vec<ScriptCache>,
    panic: Option<String>,
    task: Option<Task>,
    log: Vec<String>,
    warnings: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ScriptCache {
    name: String,
    objsize: u64,
    allocated: u64,
    total: u64,
}

#[derive(Debug, Deserialize)]
struct Task {
    pid: i64,
    comm: String,
    stack: Vec<String>,
}

/// Every slab cache drgn read, largest allocated bytes first: the table
/// `kmem -s` gives (the report keeps the first ten).
pub fn slab_table(json: &str) -> Result<Vec<CacheAtCrash>, serde_json::Error> {
    let o: Output = serde_json::from_str(json)?;
    Ok(ranked(o.caches))
}

fn ranked(caches: Vec<ScriptCache>) -> Vec<CacheAtCrash> {
    let mut out: Vec<CacheAtCrash> =
        caches.into_iter().map(|c| CacheAtCrash { bytes: c.objsize * c.allocated, name: c.name, objsize: c.objsize, allocated: c.allocated, total: c.total }).collect();
    out.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.name.cmp(&b.name)));
    out
}

/// Whether `vmcore` is makedumpfile's flattened format (what `makedumpfile
/// -F` streams, e.g. over SSH), which drgn does not read as it is.
fn is_flattened(vmcore: &Path) -> bool {
    let mut head = [0u8; 12];
    std::fs::File::open(vmcore).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head == b"makedumpfile"
}

/// Runs drgn on `vmcore` with `vmlinux`; writes its JSON beside `out`
/// (`drgn.json`) and a text rendition to `out` (`drgn.txt`), parses it.
pub fn run_drgn(kernel: &str, vmlinux: &Path, vmcore: &Path, out: &Path) -> Result<CrashReport, TriageError> {
    let t = std::time::Instant::now();
    version()?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TriageError::Io { path, source }
    };
    // A flattened dump is reassembled next to the output, read, removed.
    let reassembled: Option<PathBuf> = if is_flattened(vmcore) {
        let tmp = out.with_extension("reassembled.vmcore");
        let input = std::fs::File::open(vmcore).map_err(io(vmcore))?;
        // A file-to-file copy of the dump's pages (0.14 s for 50 MB).
        let status = std::process::Command::new("makedumpfile")
            .arg("-R")
            .arg(&tmp)
            .stdin(input)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if !status.as_ref().is_ok_and(|s| s.success()) {
            let _ = std::fs::remove_file(&tmp);
            return Err(TriageError::DrgnFailed {
                kernel: kernel.into(),
                vmcore: vmcore.into(),
                detail: format!("`makedumpfile -R` could not reassemble the flattened dump ({})", status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())),
            });
        }
        Some(tmp)
    } else {
        None
    };
    // Not `drgn.py`: a script of that name would shadow the module.
    let script = out.with_file_name("kernlab_drgn_triage.py");
    std::fs::write(&script, SCRIPT).map_err(io(&script))?;
    let read = reassembled.as_deref().unwrap_or(vmcore);
    let o = Tool::new(PYTHON, DEADLINE).arg("-I").arg(&script).arg(vmlinux).arg(read).output();
    let _ = std::fs::remove_file(&script);
    if let Some(r) = &reassembled {
        let _ = std::fs::remove_file(r);
    }
    let o = o.map_err(TriageError::Drgn)?;
    let stdout = String::from_utf8_lossy(&o.stdout);
    let parsed: Result<Output, _> = serde_json::from_str(&stdout);
    let parsed = match parsed {
        Ok(p) if o.status.success() => p,
        _ => {
            let err = String::from_utf8_lossy(&o.stderr);
            let detail: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).rev().take(3).collect::<Vec<_>>().into_iter().rev().collect();
            let mut detail = detail.join(" / ");
            if err.contains("KDUMP_ATTR_ARCH_NAME") {
                // libkdumpfile 0.5.1 (drgn 0.0.22's kdump reader) finds no
                // architecture in QEMU's kdump-zlib dumps, of any guest;
                // makedumpfile's kdump and ELF cores it reads.
                detail.push_str(" (drgn's kdump reader cannot tell this dump's architecture, as with every QEMU kdump-zlib dump (kernlab's host dump): read it with crash, or take the dump as an ELF core, `dump-guest-memory` with format `elf`)");
            }
            return Err(TriageError::DrgnFailed { kernel: kernel.into(), vmcore: vmcore.into(), detail });
        }
    };
    let json_path = out.with_extension("json");
    fsx::write_atomic(&json_path, stdout.as_bytes()).map_err(io(&json_path))?;
    let Output { drgn, memory, caches, panic, task, log, warnings } = parsed;
    let all = ranked(caches);
    fsx::write_atomic(out, render(&drgn, &memory, &all, panic.as_deref(), task.as_ref(), &log, &warnings).as_bytes()).map_err(io(out))?;
    let mut top_caches = all;
    top_caches.truncate(10);
    Ok(CrashReport {
        engine: Engine::Drgn,
        memory,
        top_caches,
        panic,
        text: out.into(),
        secs: t.elapsed().as_secs_f64(),
        refs: None,
        refs_error: Some("the reference survey of deleted files' objects is crash's (`triage.engine: crash`); the drgn engine does not make it".into()),
    })
}

/// The text kept as `drgn.txt`: what a reader of `crash.txt` looks for.
fn render(version: &str, memory: &[(String, u64)], caches: &[CacheAtCrash], panic: Option<&str>, task: Option<&Task>, log: &[String], warnings: &[String]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "drgn {version}");
    if let Some(p) = panic {
        let _ = writeln!(s, "PANIC: \"{p}\"");
    }
    let _ = writeln!(s, "\nmemory:");
    for (label, bytes) in memory {
        let _ = writeln!(s, "  {label:<12} {:>12} pages  {:>10.1} MiB", bytes / 4096, *bytes as f64 / 1048576.0);
    }
    let _ = writeln!(s, "\n{:<28} {:>8} {:>10} {:>10} {:>12}", "CACHE", "OBJSIZE", "ALLOCATED", "TOTAL", "BYTES");
    for c in caches {
        let _ = writeln!(s, "{:<28} {:>8} {:>10} {:>10} {:>12}", c.name, c.objsize, c.allocated, c.total, c.bytes);
    }
    if let Some(t) = task {
        let _ = writeln!(s, "\ncrashed task: pid {} ({})", t.pid, t.comm);
        for (i, f) in t.stack.iter().enumerate() {
            let _ = writeln!(s, " #{i:<2} {f}");
        }
    }
    let _ = writeln!(s, "\nlog (last {} lines):", log.len());
    for l in log {
        let _ = writeln!(s, "{l}");
    }
    if !warnings.is_empty() {
        let _ = writeln!(s, "\nnot read:");
        for w in warnings {
            let _ = writeln!(s, "  {w}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_their_numbers() {
        assert_eq!(parse_version("0.0.22"), Some((0, 0, 22)));
        assert_eq!(parse_version("0.0.22+unknown"), Some((0, 0, 22)));
        assert_eq!(parse_version("0.1"), Some((0, 1, 0)));
        assert_eq!(parse_version("0.0.30.dev1"), Some((0, 0, 30)));
        assert_eq!(parse_version("drgn"), None);
        assert!(parse_version("0.0.21").unwrap() < MIN_VERSION);
        assert!(parse_version("0.1.0").unwrap() > MIN_VERSION);
    }

    #[test]
    fn the_scripts_table_is_ranked_by_allocated_bytes() {
        let json = r#"{"drgn": "0.0.22", "memory": [["TOTAL MEM", 4096]], "panic": null, "task": null, "log": [], "warnings": [], "secs": 0.1,
            "caches": [{"name": "kmalloc-64", "objsize": 64, "size": 64, "allocated": 100, "total": 128},
                       {"name": "dentry", "objsize": 192, "size": 192, "allocated": 1000, "total": 1020}]}"#;
        let t = slab_table(json).unwrap();
        assert_eq!(t[0], CacheAtCrash { name: "dentry".into(), objsize: 192, allocated: 1000, total: 1020, bytes: 192_000 });
        assert_eq!(t[1].name, "kmalloc-64");
    }

    /// The installed drgn (scripts/setup.sh installs it) passes the pin.
    #[test]
    fn the_installed_drgn_is_new_enough() {
        let v = version().unwrap();
        assert!(parse_version(&v).unwrap() >= MIN_VERSION, "{v}");
    }
}
