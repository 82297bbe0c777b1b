//! Triage of a vmcore with `crash`, the way a support engineer reads a
//! customer's dump: the memory summary (`kmem -i`), the slab caches
//! (`kmem -s`), the panicking task's backtrace (`bt`) and the end of the
//! kernel log. The debug vmlinux comes from Debian's `-dbg` package; only
//! that one member is extracted (the package is ~280 MB, the vmlinux ~590
//! MB) and it is cached by the kernel package's hash.

pub mod drgn;
pub mod refs;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::cache::{Cache, Lock};
use crate::kernel::apt::{self, AptError};
use crate::kernel::package::{Fetch, PackageError};
use crate::kernel::{Descriptor, Kernel, PackageSource};
use crate::ui::Bar;
use crate::util::fsx;
use crate::util::tool::{Tool, ToolError};

/// `crash` reading a vmcore in batch mode.
pub const CRASH_DEADLINE: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum TriageError {
    #[error("no debug vmlinux for kernel `{kernel}`: {reason}")]
    NoDebugInfo { kernel: String, reason: String },
    #[error("fetching the debug vmlinux of kernel `{kernel}`")]
    Fetch {
        kernel: String,
        #[source]
        source: PackageError,
    },
    #[error("reading the vmcore with `crash`")]
    Crash(#[source] ToolError),
    #[error("`crash` could not read `{}` with the debug vmlinux of kernel `{kernel}` (is it this kernel's dump?): {detail}", vmcore.display())]
    CrashFailed { kernel: String, vmcore: PathBuf, detail: String },
    #[error("reading the vmcore with drgn")]
    Drgn(#[source] ToolError),
    #[error("drgn cannot triage: {detail} (Debian's `python3-drgn`: `apt-get install -y python3-drgn`)")]
    NoDrgn { detail: String },
    #[error("drgn could not read `{}` with the debug vmlinux of kernel `{kernel}` (is it this kernel's dump?): {detail}", vmcore.display())]
    DrgnFailed { kernel: String, vmcore: PathBuf, detail: String },
    #[error("`crash` cannot read `{}`: it is a dump of a{} {dump} guest and this {host} machine's crash reads only its own architecture; use `triage.engine: drgn` (or `auto`)", vmcore.display(), if dump.starts_with('a') { "n" } else { "" })]
    CrashForeign { vmcore: PathBuf, dump: String, host: String },
    #[error("triage I/O on `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `kernlab triage`'s `triage.json`'s schema.
pub const SCHEMA: &str = "kernlab.triage/1";

/// `kernlab triage`'s `triage.json`: the [`CrashReport`] with its schema.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TriageRecord {
    /// `kernlab.triage/1`.
    pub schema: String,
    #[serde(flatten)]
    pub report: CrashReport,
}

/// The program that read a vmcore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Debian's `crash` (`kmem -i`, `kmem -s`, `bt`, `log`).
    #[default]
    Crash,
    /// drgn (Debian's `python3-drgn`) with kernlab's own script.
    Drgn,
}

impl Engine {
    pub fn word(self) -> &'static str {
        match self {
            Engine::Crash => "crash",
            Engine::Drgn => "drgn",
        }
    }
}

/// Which engine triages a vmcore: a lab's `triage.engine`, `kernlab
/// triage --engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// crash when it can read the dump (the dump's architecture is the
    /// host's), else drgn.
    #[default]
    Auto,
    Crash,
    Drgn,
}

impl EngineChoice {
    /// The engine for a dump of `dump`'s architecture (unknown: the
    /// kernel's) on `host`.
    pub fn resolve(self, dump: Option<Arch>, host: Option<Arch>) -> Engine {
        match self {
            EngineChoice::Crash => Engine::Crash,
            EngineChoice::Drgn => Engine::Drgn,
            EngineChoice::Auto if dump.is_some() && dump == host => Engine::Crash,
            EngineChoice::Auto => Engine::Drgn,
        }
    }
}

/// The architecture of the machine a vmcore was taken of: an ELF core's
/// `e_machine` (`/proc/vmcore`, QEMU's ELF dump), else the `machine` of a
/// kdump-compressed dump's header (makedumpfile's; also inside the
/// flattened stream makedumpfile -F and QEMU's `kdump-zlib` write), else
/// the kernel release its vmcoreinfo names (`OSRELEASE=`; QEMU writes
/// `Unknown` as the machine of an arm64 guest). None when none says.
pub fn dump_arch(vmcore: &Path) -> Option<Arch> {
    use std::io::Read;
    let mut head = Vec::with_capacity(HEAD);
    std::fs::File::open(vmcore).ok()?.take(HEAD as u64).read_to_end(&mut head).ok()?;
    dump_arch_of(&head)
}

/// How much of a dump [`dump_arch`] reads: the headers and vmcoreinfo.
const HEAD: usize = 256 << 10;

/// [`dump_arch`] of a dump's first bytes.
pub fn dump_arch_of(head: &[u8]) -> Option<Arch> {
    if head.starts_with(b"\x7fELF") && head.len() >= 20 {
        // EI_DATA 1 = little-endian, 2 = big-endian.
        let m = if head[5] == 2 { u16::from_be_bytes([head[18], head[19]]) } else { u16::from_le_bytes([head[18], head[19]]) };
        return crate::arch::ALL.into_iter().find(|a| a.elf_machine() == m);
    }
    // The flattened format: a 4 KiB header, then (offset, size) before
    // each piece; the first piece is the kdump header at offset 0.
    let kdump = if head.starts_with(b"makedumpfile") { head.get(4096 + 16..)? } else { head };
    if !kdump.starts_with(b"KDUMP   ") {
        return None;
    }
    // signature[8], header_version (4), then new_utsname's six 65-byte
    // fields: sysname, nodename, release, version, machine, domainname.
    let at = 8 + 4 + 4 * 65;
    let field = kdump.get(at..at + 65)?;
    let machine = String::from_utf8_lossy(&field[..field.iter().position(|&b| b == 0).unwrap_or(field.len())]).to_lowercase();
    if let Some(a) = Arch::parse(&machine) {
        return Some(a);
    }
    let key = b"OSRELEASE=";
    let i = kdump.windows(key.len()).position(|w| w == key)? + key.len();
    let release: Vec<u8> = kdump[i..].iter().take_while(|&&b| b != b'\n' && b != 0).copied().collect();
    Arch::of_debian_name(&String::from_utf8_lossy(&release))
}

/// Triages `vmcore` of `kernel` into `dir` with the engine `choice`
/// resolves to (`crash.txt` or `drgn.txt` there): the debug vmlinux
/// fetched (for the kernel's own architecture), then the engine run.
pub fn triage(cache: &Cache, desc: &Descriptor, kernel: &Kernel, vmcore: &Path, dir: &Path, choice: EngineChoice) -> Result<CrashReport, TriageError> {
    let dump = dump_arch(vmcore);
    let host = Arch::host();
    let engine = choice.resolve(dump.or(Some(kernel.arch())), host);
    if engine == Engine::Crash {
        if let Some(d) = dump.filter(|d| Some(*d) != host) {
            return Err(TriageError::CrashForeign { vmcore: vmcore.into(), dump: d.name().into(), host: host.map(|h| h.name()).unwrap_or("unknown").into() });
        }
    }
    if engine == Engine::Drgn {
        // Refused before the debug vmlinux's download, not after it.
        drgn::version()?;
    }
    let vmlinux = debug_vmlinux(cache, desc, kernel)?;
    match engine {
        Engine::Crash => run_crash(&kernel.name, &vmlinux, vmcore, &dir.join("crash.txt")),
        Engine::Drgn => drgn::run_drgn(&kernel.name, &vmlinux, vmcore, &dir.join("drgn.txt")),
    }
}

/// What `crash` (or drgn) said, parsed.
#[derive(Debug, Clone, Serialize, Deserialize, Default, schemars::JsonSchema)]
pub struct CrashReport {
    /// Which engine read the vmcore: `crash` or `drgn`. Records from
    /// before there were two say nothing: crash.
    #[serde(default)]
    pub engine: Engine,
    /// `kmem -i` rows: label → bytes (`TOTAL MEM`, `FREE`, `USED`, `SLAB`, …).
    pub memory: Vec<(String, u64)>,
    /// The largest slab caches at crash time, by allocated bytes.
    pub top_caches: Vec<CacheAtCrash>,
    /// The panic line from the log, when found.
    pub panic: Option<String>,
    /// Where the full text is.
    pub text: PathBuf,
    pub secs: f64,
    /// The largest caches' referenced objects of deleted files, and the
    /// kind of leak from the dump alone (`refs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refs: Option<refs::DumpRefs>,
    /// Why there is no `refs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refs_error: Option<String>,
}

impl CrashReport {
    /// With `text` as a record in `dir` names it (relative to it).
    pub fn recorded_in(mut self, dir: &Path) -> CrashReport {
        self.text = crate::outcome::recorded(dir, &self.text);
        self
    }

    /// With a relative `text` seen from `sub`'s parent.
    pub fn under(mut self, sub: &str) -> CrashReport {
        if !self.text.is_absolute() {
            self.text = Path::new(sub).join(&self.text);
        }
        self
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
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
    let src = match &desc.source {
        PackageSource::Debian(s) => s,
        PackageSource::Local(l) => {
            let v = l.dir.join(format!("usr/lib/debug/boot/vmlinux-{}", kernel.release));
            let alt = l.dir.join("vmlinux");
            return [v, alt].into_iter().find(|p| p.exists()).ok_or(TriageError::NoDebugInfo {
                kernel: name,
                reason: "a local kernel needs `vmlinux` (with debug info) in its directory".into(),
            });
        }
        PackageSource::Rpm(_) => {
            return Err(TriageError::NoDebugInfo {
                kernel: name,
                reason: "the debug vmlinux of an RPM kernel (kernel-default-debuginfo) is not supported yet".into(),
            })
        }
    };
    let entry = cache.debug_dir(&kernel.package_sha256);
    let dest = entry.join("vmlinux");
    if dest.exists() {
        return Ok(dest);
    }
    let fetch_err = |source| TriageError::Fetch { kernel: kernel.name.clone(), source };
    let mut f = Fetch::begin(cache, Lock::Debug(&kernel.package_sha256), "debug-").map_err(fetch_err)?;
    if dest.exists() {
        return Ok(dest);
    }
    let spec = format!("{}-dbg={}", src.package, kernel.version);
    let not_there = |detail: String| TriageError::NoDebugInfo { kernel: name.clone(), reason: format!("`{spec}` is not in this machine's apt sources{detail}") };
    let arch = desc.arch();
    let size = match apt::Apt::for_arch(cache, arch).and_then(|a| a.show(&spec)) {
        Ok(record) => apt::field(&record, "Size").and_then(|v| v.parse::<u64>().ok()),
        Err(AptError::NotInArchive { .. }) => return Err(not_there(String::new())),
        Err(e) => return Err(not_there(format!(" (apt-cache: {e})"))),
    };
    tracing::info!("fetching the debug vmlinux: {spec} ({} MiB download, ~2x that unpacked; cached afterwards)", size.unwrap_or(0) >> 20);
    let bar = Bar::bytes(&kernel.name, &format!("downloading {spec}"), size);
    let deb = f.download_for(arch, std::slice::from_ref(&spec), &bar).map_err(fetch_err)?.remove(0);
    drop(bar);
    tracing::info!("extracting vmlinux-{} from {}", kernel.release, deb.path.display());
    let out_dir = f.root().map_err(fetch_err)?;
    fsx::private_dir(&out_dir).map_err(|source| TriageError::Io { path: out_dir.clone(), source })?;
    let member = format!("./usr/lib/debug/boot/vmlinux-{}", kernel.release);
    let bar = Bar::bytes(&kernel.name, "extracting the debug vmlinux", None);
    match f.extract_member(&deb, &member, &out_dir.join("vmlinux"), &bar) {
        Ok(_) => {}
        Err(PackageError::NoMember { deb, member }) => {
            return Err(TriageError::NoDebugInfo { kernel: name, reason: format!("{} holds no {member}", deb.display()) })
        }
        Err(e) => return Err(fetch_err(e)),
    }
    drop(bar);
    f.publish(&out_dir, &entry).map_err(fetch_err)?;
    Ok(dest)
}

/// The commands kernlab gives `crash`.
pub const COMMANDS: &str = "sys\nkmem -i\nkmem -s\nbt\nlog | tail -n 40\nquit\n";

/// Runs `crash` in batch mode on `vmcore`, writes its text to `out`, parses it.
pub fn run_crash(kernel: &str, vmlinux: &Path, vmcore: &Path, out: &Path) -> Result<CrashReport, TriageError> {
    let t = std::time::Instant::now();
    let cmds = out.with_extension("cmds");
    std::fs::write(&cmds, COMMANDS).map_err(|source| TriageError::Io { path: cmds.clone(), source })?;
    // crash's exit status says little (it is 0 after `quit` even when the
    // dump could not be read): the text is judged below.
    let o = Tool::new("crash", CRASH_DEADLINE).arg("-s").arg(vmlinux).arg(vmcore).arg("-i").arg(&cmds).output();
    let _ = std::fs::remove_file(&cmds);
    let o = o.map_err(TriageError::Crash)?;
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    fsx::write_atomic(out, text.as_bytes()).map_err(|source| TriageError::Io { path: out.to_path_buf(), source })?;
    let memory = parse_kmem_i(&text);
    if memory.is_empty() {
        let detail: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).take(6).collect();
        return Err(TriageError::CrashFailed { kernel: kernel.into(), vmcore: vmcore.into(), detail: detail.join(" / ") });
    }
    let mut top_caches = parse_kmem_s(&text);
    top_caches.truncate(10);
    let panic = parse_panic(&text);
    let secs = t.elapsed().as_secs_f64();
    let (refs, refs_error) = match refs::survey_beside(vmlinux, vmcore, &text, &top_caches, out) {
        Ok(r) => (Some(r), None),
        Err(e) => {
            tracing::warn!("the dump's reference survey failed: {e}");
            (None, Some(e))
        }
    };
    Ok(CrashReport { engine: Engine::Crash, memory, top_caches, panic, text: out.into(), secs, refs, refs_error })
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
    fn a_dumps_architecture_from_its_headers() {
        let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
        elf.resize(64, 0);
        elf[18..20].copy_from_slice(&Arch::Aarch64.elf_machine().to_le_bytes());
        assert_eq!(dump_arch_of(&elf), Some(Arch::Aarch64));
        let kdump = |machine: &str, tail: &str| {
            let mut k = b"KDUMP   \x06\0\0\0".to_vec();
            k.resize(12 + 4 * 65, 0);
            k.extend(machine.as_bytes());
            k.resize(12 + 6 * 65 + 64, 0);
            k.extend(tail.as_bytes());
            k
        };
        assert_eq!(dump_arch_of(&kdump(Arch::X86_64.uname(), "")), Some(Arch::X86_64));
        // QEMU's arm64 kdump-zlib: machine `Unknown`, the release in vmcoreinfo.
        let arm = kdump("Unknown", &format!("OSRELEASE=6.1.0-54-cloud-{}\nPAGESIZE=4096\n", Arch::Aarch64.debian()));
        assert_eq!(dump_arch_of(&arm), Some(Arch::Aarch64));
        let mut flat = b"makedumpfile".to_vec();
        flat.resize(4096 + 16, 0);
        flat.extend(&arm);
        assert_eq!(dump_arch_of(&flat), Some(Arch::Aarch64));
        assert_eq!(dump_arch_of(&kdump("Unknown", "")), None);
        assert_eq!(dump_arch_of(&[7u8; 4096]), None);
    }

    #[test]
    fn an_auto_engine_is_crash_only_for_the_hosts_own_dumps() {
        let (x, a) = (Some(Arch::X86_64), Some(Arch::Aarch64));
        assert_eq!(EngineChoice::Auto.resolve(x, x), Engine::Crash);
        assert_eq!(EngineChoice::Auto.resolve(a, x), Engine::Drgn);
        assert_eq!(EngineChoice::Auto.resolve(None, x), Engine::Drgn);
        assert_eq!(EngineChoice::Crash.resolve(a, x), Engine::Crash);
        assert_eq!(EngineChoice::Drgn.resolve(x, x), Engine::Drgn);
    }

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
