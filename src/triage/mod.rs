//! Triage of a vmcore with `crash`, the way a support engineer reads a
//! customer's dump: the memory summary (`kmem -i`), the slab caches
//! (`kmem -s`), the panicking task's backtrace (`bt`) and the end of the
//! kernel log. The debug vmlinux comes from Debian's `-dbg` package; only
//! that one member is extracted (the package is ~280 MB, the vmlinux ~590
//! MB) and it is cached by the kernel package's hash.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::cache::{self, Cache};
use crate::kernel::{Descriptor, Kernel, Source};
use crate::ui::Bar;
use crate::util::{fsx, tool};

#[derive(Debug, thiserror::Error)]
pub enum TriageError {
    #[error("no debug vmlinux for kernel `{kernel}`: {reason}")]
    NoDebugInfo { kernel: String, reason: String },
    #[error("fetching the debug vmlinux of kernel `{kernel}`")]
    Fetch {
        kernel: String,
        #[source]
        source: tool::ToolError,
    },
    #[error("cannot run `crash` ({hint})")]
    CrashMissing {
        hint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`crash` could not read `{}` with the debug vmlinux of kernel `{kernel}` (is it this kernel's dump?): {detail}", vmcore.display())]
    CrashFailed { kernel: String, vmcore: PathBuf, detail: String },
    #[error("triage I/O on `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What `crash` said, parsed.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct CrashReport {
    /// `kmem -i` rows: label → bytes (`TOTAL MEM`, `FREE`, `USED`, `SLAB`, …).
    pub memory: Vec<(String, u64)>,
    /// The largest slab caches at crash time, by allocated bytes.
    pub top_caches: Vec<CacheAtCrash>,
    /// The panic line from the log, when found.
    pub panic: Option<String>,
    /// Where the full text is.
    pub text: PathBuf,
    pub secs: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CacheAtCrash {
    pub name: String,
    pub objsize: u64,
    pub allocated: u64,
    pub total: u64,
    pub bytes: u64,
}

/// The kernel's debug vmlinux, fetched and extracted into the cache once.
pub fn debug_vmlinux(cache: &Cache, desc: &Descriptor, kernel: &Kernel) -> Result<PathBuf, TriageError> {
    let name = kernel.name.clone();
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| TriageError::Io { path: p, source }
    };
    let src = match &desc.source {
        Source::Debian(s) => s,
        Source::Local(l) => {
            let v = l.dir.join(format!("usr/lib/debug/boot/vmlinux-{}", kernel.release));
            let alt = l.dir.join("vmlinux");
            return [v, alt].into_iter().find(|p| p.exists()).ok_or(TriageError::NoDebugInfo {
                kernel: name,
                reason: "a local kernel needs `vmlinux` (with debug info) in its directory".into(),
            });
        }
        Source::Rpm(_) => {
            return Err(TriageError::NoDebugInfo {
                kernel: name,
                reason: "the debug vmlinux of an RPM kernel (kernel-default-debuginfo) is not supported yet".into(),
            })
        }
    };
    let dest = cache.path(format!("debug/{}/vmlinux", kernel.package_sha256));
    if dest.exists() {
        return Ok(dest);
    }
    let _lock = cache.lock(&format!("debug-{}", kernel.package_sha256)).map_err(io(&cache.path("locks")))?;
    if dest.exists() {
        return Ok(dest);
    }
    let spec = format!("{}-dbg={}", src.package, kernel.version);
    let size = Command::new("apt-cache")
        .args(["show", "--no-all-versions", &spec])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout).lines().find_map(|l| l.strip_prefix("Size: ").and_then(|v| v.trim().parse::<u64>().ok()))
        })
        .ok_or_else(|| TriageError::NoDebugInfo { kernel: name.clone(), reason: format!("`{spec}` is not in this machine's apt sources") })?;
    tracing::info!("fetching the debug vmlinux: {spec} ({} MiB download, ~2x that unpacked; cached afterwards)", size >> 20);
    let scratch = cache.scratch("debug-").map_err(io(&cache.path("tmp")))?;
    // apt-get stays quiet; on a terminal a bar follows the download (apt's
    // own progress would fight the run's progress lines).
    let mut apt = Command::new("apt-get");
    apt.args(["download", "-q", "-o", "APT::Sandbox::User=root", &spec]).current_dir(scratch.path());
    let bar = Bar::bytes(&kernel.name, &format!("downloading {spec}"), Some(size));
    crate::ui::follow_bytes(&bar, scratch.path(), || tool::run(&mut apt)).map_err(|source| TriageError::Fetch { kernel: name.clone(), source })?;
    drop(bar);
    let deb = std::fs::read_dir(scratch.path())
        .map_err(io(scratch.path()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| TriageError::NoDebugInfo { kernel: name.clone(), reason: "apt-get download gave no .deb".into() })?;
    tracing::info!("extracting vmlinux-{} from {}", kernel.release, deb.display());
    let out_dir = scratch.path().join("out");
    fsx::private_dir(&out_dir).map_err(io(&out_dir))?;
    let out = out_dir.join("vmlinux");
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(&deb)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(io(&deb))?;
    let member = format!("./usr/lib/debug/boot/vmlinux-{}", kernel.release);
    let mut tar = Command::new("tar")
        .args(["-xO", &member])
        .stdin(dpkg.stdout.take().expect("piped"))
        .stdout(File::create(&out).map_err(io(&out))?)
        .spawn()
        .map_err(io(&out))?;
    // Progress: the extraction streams the whole package (~25 s for the
    // cloud kernel's): a bar on a terminal, else a log line every few seconds.
    let bar = Bar::bytes(&kernel.name, "extracting the debug vmlinux", None);
    let mut last_report = std::time::Instant::now();
    let status = loop {
        if let Some(st) = tar.try_wait().map_err(io(&out))? {
            break st;
        }
        let done = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        bar.position(done);
        if !bar.is_shown() && last_report.elapsed() >= std::time::Duration::from_secs(5) {
            tracing::info!("extracting the debug vmlinux: {} MiB written", done >> 20);
            last_report = std::time::Instant::now();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    drop(bar);
    let _ = dpkg.wait();
    if !status.success() || std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0) == 0 {
        return Err(TriageError::NoDebugInfo { kernel: name, reason: format!("{} holds no {member}", deb.display()) });
    }
    let entry = dest.parent().expect("has a parent");
    std::fs::create_dir_all(entry.parent().expect("has a parent")).map_err(io(entry))?;
    cache::publish_dir(&out_dir, entry).map_err(io(entry))?;
    Ok(dest)
}

/// The commands kernlab gives `crash`.
pub const COMMANDS: &str = "sys\nkmem -i\nkmem -s\nbt\nlog | tail -n 40\nquit\n";

/// Runs `crash` in batch mode on `vmcore`, writes its text to `out`, parses it.
pub fn run_crash(kernel: &str, vmlinux: &Path, vmcore: &Path, out: &Path) -> Result<CrashReport, TriageError> {
    let t = std::time::Instant::now();
    let cmds = out.with_extension("cmds");
    std::fs::write(&cmds, COMMANDS).map_err(|source| TriageError::Io { path: cmds.clone(), source })?;
    let o = Command::new("timeout")
        .args(["300", "crash", "-s"])
        .arg(vmlinux)
        .arg(vmcore)
        .arg("-i")
        .arg(&cmds)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| TriageError::CrashMissing { hint: "`apt-get install crash` provides it".into(), source })?;
    let _ = std::fs::remove_file(&cmds);
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    fsx::write_atomic(out, text.as_bytes()).map_err(|source| TriageError::Io { path: out.to_path_buf(), source })?;
    if o.status.code() == Some(127) || text.contains("timeout: failed to run command") {
        return Err(TriageError::CrashMissing {
            hint: "`apt-get install crash` provides it".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "crash not found"),
        });
    }
    let memory = parse_kmem_i(&text);
    if memory.is_empty() {
        let detail: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).take(6).collect();
        return Err(TriageError::CrashFailed { kernel: kernel.into(), vmcore: vmcore.into(), detail: detail.join(" / ") });
    }
    let mut top_caches = parse_kmem_s(&text);
    top_caches.truncate(10);
    let panic = parse_panic(&text);
    Ok(CrashReport { memory, top_caches, panic, text: out.into(), secs: t.elapsed().as_secs_f64() })
}

/// The panic message from `sys` (`PANIC: "Kernel panic - not syncing: …"`).
pub fn parse_panic(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.trim().strip_prefix("PANIC:")?.trim().trim_matches('"').to_string();
        (!v.is_empty()).then_some(v)
    })
}

/// Parses `kmem -i`: rows like `SLAB    96914     378.6 MB   81% of TOTAL MEM`.
pub fn parse_kmem_i(text: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.contains("PAGES") && line.contains("TOTAL") && line.contains("PERCENTAGE") {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            if !out.is_empty() {
                break;
            }
            continue;
        }
        // The label is the words before the first integer (the page count).
        let Some(i) = words.iter().position(|w| w.parse::<u64>().is_ok()) else { continue };
        if i == 0 {
            continue;
        }
        let pages: u64 = words[i].parse().unwrap_or(0);
        out.push((words[..i].join(" "), pages * 4096));
        if words[..i].join(" ") == "SWAP FREE" || line.contains("COMMIT") {
            // kmem -i ends with the swap and commit rows; keep reading
            // until the blank line anyway.
        }
    }
    out
}

/// Parses `kmem -s` rows `CACHE OBJSIZE ALLOCATED TOTAL SLABS SSIZE NAME`,
/// largest allocated bytes first.
pub fn parse_kmem_s(text: &str) -> Vec<CacheAtCrash> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.first() == Some(&"CACHE") && w.contains(&"OBJSIZE") && w.contains(&"ALLOCATED") {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        if w.len() < 7 || !w[0].chars().all(|c| c.is_ascii_hexdigit()) {
            if w.first().is_some_and(|x| x.starts_with("crash>")) {
                break;
            }
            continue;
        }
        let (Ok(objsize), Ok(allocated), Ok(total)) = (w[1].parse::<u64>(), w[2].parse::<u64>(), w[3].parse::<u64>()) else { continue };
        out.push(CacheAtCrash { name: w[6..].join(" "), objsize, allocated, total, bytes: objsize * allocated });
    }
    out.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.name.cmp(&b.name)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KMEM_I: &str = "crash> kmem -i
                 PAGES        TOTAL      PERCENTAGE
    TOTAL MEM   119227     465.7 MB         ----
         FREE     3066        12 MB    2% of TOTAL MEM
         USED   116161     453.8 MB   97% of TOTAL MEM
       SHARED      170       680 KB    0% of TOTAL MEM
      BUFFERS        0            0    0% of TOTAL MEM
       CACHED      935       3.7 MB    0% of TOTAL MEM
         SLAB    96914     378.6 MB   81% of TOTAL MEM

   TOTAL HUGE        0            0         ----
";

    const KMEM_S: &str = "crash> kmem -s
CACHE             OBJSIZE  ALLOCATED     TOTAL  SLABS  SSIZE  NAME
ffff888003c41200      192     123456    123480   5880     4k  dentry
ffff888003c41300      768     120000    120010  12001     8k  shmem_inode_cache
ffff888003c41400       64        100       128      2     4k  kmalloc-64
crash> bt
";

    #[test]
    fn panic_from_sys() {
        let sys = "      KERNEL: vmlinux\n       PANIC: \"Kernel panic - not syncing: Out of memory: system-wide panic_on_oom is enabled\"\n";
        assert_eq!(parse_panic(sys).unwrap(), "Kernel panic - not syncing: Out of memory: system-wide panic_on_oom is enabled");
        assert_eq!(parse_panic("no such line"), None);
    }

    #[test]
    fn kmem_i_rows() {
        let m = parse_kmem_i(KMEM_I);
        assert_eq!(m[0], ("TOTAL MEM".to_string(), 119227 * 4096));
        assert!(m.contains(&("SLAB".to_string(), 96914 * 4096)));
        assert_eq!(m.len(), 7);
    }

    #[test]
    fn kmem_s_ranked_by_bytes() {
        let c = parse_kmem_s(KMEM_S);
        assert_eq!(c[0].name, "shmem_inode_cache");
        assert_eq!(c[0].bytes, 768 * 120000);
        assert_eq!(c[1].name, "dentry");
        assert_eq!(c.len(), 3);
    }
}
