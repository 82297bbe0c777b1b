//! `kernlab doctor`: can this machine run a lab (by default the leak lab)?
//! The facts are gathered once ([`Facts::gather`]: PATH look-ups, QEMU's
//! version, the accelerator, `apt-cache policy`, the cache, free space);
//! the checks are a pure function of the facts and of what the lab needs
//! ([`checks`]), so each rule is tested with made-up facts. Each check is
//! ok, warn (works, or only some labs need it) or missing (this lab cannot
//! run), with the command that fixes it. The packages are scripts/setup.sh's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::exit;
use crate::kernel::{apt, PackageSource, Registry};
use crate::lab::{self, DumpAction, Lab};
use crate::qemu::accel::{self, Accel, HostAccel};

pub const SCHEMA: &str = "kernlab.doctor/1";

/// The lab `kernlab doctor` checks for when given none.
const DEFAULT_LAB: &str = include_str!("../labs/leak-lab.yaml");

pub fn default_lab() -> Result<Lab, lab::LabError> {
    lab::parse(DEFAULT_LAB, Path::new("labs/leak-lab.yaml"))
}

/// Host programs kernlab runs from PATH, and host files the guest images
/// copy from fixed paths, each with the Debian package that provides it.
const PROGRAMS: &[(&str, &str)] = &[
    ("apt-get", "apt"),
    ("apt-cache", "apt"),
    ("dpkg-deb", "dpkg"),
    ("depmod", "kmod"),
    ("modinfo", "kmod"),
    ("dropbearkey", "dropbear-bin"),
    ("ldd", "libc-bin"),
    ("gcc", "gcc"),
    ("make", "make"),
    ("pahole", "dwarves"),
    ("mkfs.ext4", "e2fsprogs"),
    ("debugfs", "e2fsprogs"),
    ("crash", "crash"),
    ("chromium", "chromium"),
    ("qemu-img", "qemu-utils"),
    ("mmdebstrap", "mmdebstrap"),
    ("newuidmap", "uidmap"),
    ("unshare", "util-linux"),
];
const FILES: &[(&str, &str)] = &[
    ("/bin/busybox", "busybox-static"),
    ("/usr/sbin/dropbear", "dropbear-bin"),
    ("/usr/sbin/kexec", "kexec-tools"),
    ("/usr/bin/makedumpfile", "makedumpfile"),
    (crate::arch::HOST_LIBC_A, "libc6-dev"),
];

/// A guest of another architecture than the host's: its modules, churn and
/// sampler are cross-built and its programs' libraries read with readelf.
fn cross_check(f: &Facts) -> Option<Check> {
    let host = crate::arch::Arch::host();
    if host == Some(f.arch) {
        return None;
    }
    let (gcc, libc) = (f.arch.gcc(host), f.arch.cross_libc_a());
    let on_path = |p: &str| f.programs.get(p).is_some_and(|x| x.is_some()) || std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(p).is_file()));
    let mut missing: Vec<(String, String)> = Vec::new();
    if !on_path(&gcc) {
        missing.push((gcc.clone(), f.arch.cross_gcc_package().to_string()));
    }
    if !std::path::Path::new(&libc).is_file() {
        missing.push((libc.clone(), f.arch.cross_libc_package()));
    }
    if !on_path("readelf") {
        missing.push(("readelf".into(), "binutils".into()));
    }
    let what = format!("a {} guest's modules and programs are cross-built ({gcc}, {libc}), its busybox and dropbear come from its packages (readelf)", f.arch.name());
    Some(if missing.is_empty() {
        Check { name: "cross", status: Status::Ok, detail: format!("{gcc}, {libc}, readelf"), fix: None, packages: vec![] }
    } else {
        let pkgs: Vec<&str> = missing.iter().map(|(_, p)| p.as_str()).collect();
        Check {
            name: "cross",
            status: Status::Missing,
            detail: format!("{} not found; {what}", missing.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>().join(", ")),
            fix: Some(install(&pkgs)),
            packages: pkgs.iter().map(|p| p.to_string()).collect(),
        }
    })
}

fn package_of(what: &str) -> &'static str {
    PROGRAMS.iter().chain(FILES).find(|(p, _)| *p == what).map(|(_, pkg)| *pkg).unwrap_or("?")
}

/// What the lab needs beyond QEMU, the kernel and the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, schemars::JsonSchema)]
pub struct Needs {
    /// Out-of-tree modules built against the kernel's headers.
    pub modules: bool,
    /// The churn workload, a static program.
    pub churn: bool,
    /// An ext4 disk (churn on ext4, the kdump dump disk).
    pub ext4: bool,
    /// In-guest kdump: kexec and makedumpfile in the images.
    pub kdump: bool,
    /// A vmcore to keep and read with `crash`.
    pub dumps: bool,
    /// That vmcore read with drgn (`triage.engine: drgn`, or `auto` for a
    /// guest of another architecture than the host's).
    #[serde(default)]
    pub drgn: bool,
    /// The lab insists on KVM.
    pub kvm: bool,
    /// The Debian image gets built: `image: debian`, or a user's disk
    /// booted with the lab's kernel (`{disk, root}`: its initramfs is the
    /// Debian image's). mmdebstrap, root for the chroot, namespaces.
    pub debian: bool,
    /// A disk image (`debian` or `{disk: PATH}`), booted through a qcow2
    /// overlay that qemu-img makes.
    pub disk_image: bool,
    /// Guest memory, bytes: the size of a vmcore at most.
    pub memory: u64,
}

impl Needs {
    pub fn of(lab: &Lab) -> Needs {
        let churn = lab.workload.as_ref().and_then(|w| w.churn.as_ref());
        let action = lab.exhaustion.as_ref().map(|x| x.action);
        let dumps = matches!(action, Some(DumpAction::Kdump | DumpAction::HostDump));
        Needs {
            modules: !lab.modules.is_empty() || lab.leak.as_ref().is_some_and(|l| !l.baseline.modules.is_empty()),
            churn: churn.is_some(),
            ext4: churn.is_some_and(|c| c.fs == lab::ChurnFs::Ext4) || action == Some(DumpAction::Kdump),
            kdump: action == Some(DumpAction::Kdump),
            dumps,
            drgn: dumps && {
                let arch = crate::arch::Arch::of_debian_name(&lab.kernel).unwrap_or_default();
                lab.triage.engine.resolve(Some(arch), crate::arch::Arch::host()) == crate::triage::Engine::Drgn
            },
            kvm: lab.vm.accel == crate::qemu::AccelRequest::Kvm,
            debian: builds_debian(&lab.image),
            disk_image: lab.image.boots_disk(),
            memory: lab.vm.memory,
        }
    }
}

/// Whether a run of a lab on `image` builds the Debian image.
fn builds_debian(image: &lab::Image) -> bool {
    match image {
        lab::Image::Debian(_) => true,
        lab::Image::Disk(d) => d.root.is_some(),
        lab::Image::Minimal => false,
    }
}

/// The lab's kernel as the cache and apt see it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KernelCheck {
    pub name: String,
    /// Not a known descriptor: why.
    pub unknown: Option<String>,
    /// The Debian package, for a Debian kernel.
    pub package: Option<String>,
    /// `apt-cache policy`'s candidate (None: the archive has none); Err:
    /// apt-cache did not run.
    pub candidate: Option<Result<Option<String>, String>>,
    pub cached: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CacheFacts {
    pub root: Option<PathBuf>,
    /// Not usable (cannot be made, or not writable): why.
    pub error: Option<String>,
    pub bytes: u64,
    pub kernels: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Disk {
    /// `cache` or `runs`.
    pub what: String,
    pub path: PathBuf,
    /// Free bytes for an unprivileged writer; None: statvfs failed.
    pub free: Option<u64>,
}

/// Everything the checks look at.
#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    /// Program → its path on PATH, None when it is not there.
    pub programs: BTreeMap<String, Option<PathBuf>>,
    /// Fixed host path → whether it exists.
    pub files: BTreeMap<String, bool>,
    /// The lab's kernel's architecture (see `arch`).
    pub arch: crate::arch::Arch,
    /// The QEMU binary kernlab would run (`$KERNLAB_QEMU` or the
    /// architecture's system emulator).
    pub qemu: String,
    /// Its `--version` first line, or why it did not run.
    pub qemu_version: Result<String, String>,
    pub host_accel: HostAccel,
    pub kernel: KernelCheck,
    pub cache: CacheFacts,
    pub disks: Vec<Disk>,
    /// kernlab runs as root (effective uid 0).
    pub root: bool,
    /// Whether the namespaces `mmdebstrap --mode=unshare` makes can be made
    /// here (probed only for a Debian lab): Err with the probe's error.
    pub namespaces: Option<Result<(), String>>,
    /// drgn's version (Debian's `python3-drgn`), or why it cannot triage:
    /// absent, or older than kernlab needs.
    pub drgn: Result<String, String>,
}

/// The probe for `mmdebstrap --mode=unshare`: as root it unshares the
/// mount, PID, UTS and IPC namespaces; as a user it needs a user namespace
/// first (and newuidmap to map its subordinate ids into it).
fn unshare_probe(root: bool) -> &'static [&'static str] {
    if root {
        &["--mount", "--pid", "--fork", "--uts", "--ipc", "true"]
    } else {
        &["--user", "--map-root-user", "true"]
    }
}

impl Facts {
    pub fn gather(lab: &Lab, registry: &Registry) -> Facts {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let programs = PROGRAMS.iter().map(|(p, _)| (p.to_string(), on_path(p, &path))).collect();
        let files = FILES.iter().map(|(f, _)| (f.to_string(), Path::new(f).exists())).collect();
        let arch = crate::arch::Arch::of_debian_name(&lab.kernel).unwrap_or_default();
        let qemu = crate::qemu::binary(arch);
        let qemu_found = if qemu.components().count() > 1 { qemu.exists().then(|| qemu.clone()) } else { on_path(&qemu.to_string_lossy(), &path) };
        let qemu_version = match qemu_found {
            None => Err(format!("`{}` is not on PATH", qemu.display())),
            Some(q) => crate::qemu::qemu_version(&q).map_err(|e| e.to_string()),
        };
        let cache = match crate::cache::Cache::from_env() {
            Err(e) => CacheFacts { error: Some(e.to_string()), ..Default::default() },
            Ok(c) => {
                let root = c.root().to_path_buf();
                let error = tempfile::tempfile_in(c.tmp()).err().map(|e| format!("`{}` is not writable: {e}", root.display()));
                let mut kernels: Vec<String> = std::fs::read_dir(c.kernel_pointers())
                    .map(|rd| {
                        rd.filter_map(|e| e.ok())
                            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".json")).map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                kernels.sort();
                CacheFacts { bytes: crate::util::fsx::dir_bytes(&root), root: Some(root), error, kernels }
            }
        };
        let mut kernel = KernelCheck { name: lab.kernel.clone(), cached: cache.kernels.contains(&lab.kernel), ..Default::default() };
        match registry.get(&lab.kernel) {
            Err(e) => kernel.unknown = Some(e.to_string()),
            Ok(d) => {
                if let PackageSource::Debian(s) = &d.source {
                    kernel.package = Some(s.package.clone());
                    kernel.candidate = Some(apt::candidate(&s.package).map_err(|e| e.to_string()));
                }
            }
        }
        let mut disks = Vec::new();
        if let Some(root) = &cache.root {
            disks.push(Disk { what: "cache".into(), path: root.clone(), free: free_bytes(root) });
        }
        let runs = std::env::current_dir().map(|d| d.join("runs")).unwrap_or_else(|_| "runs".into());
        disks.push(Disk { what: "runs".into(), free: free_bytes(&runs), path: runs });
        let root = rustix::process::geteuid().is_root();
        let namespaces = builds_debian(&lab.image).then(|| {
            crate::util::tool::Tool::new("unshare", std::time::Duration::from_secs(10)).args(unshare_probe(root)).run().map(|_| ()).map_err(|e| e.to_string())
        });
        Facts {
            arch,
            programs,
            files,
            qemu: qemu.display().to_string(),
            qemu_version,
            host_accel: HostAccel::detect(),
            kernel,
            cache,
            disks,
            root,
            namespaces,
            drgn: crate::triage::drgn::version().map_err(|e| e.to_string()),
        }
    }
}

/// `prog` on `path` (a PATH value), as an executable file.
pub fn on_path(prog: &str, path: &std::ffi::OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .map(|d| d.join(prog))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// Free space at `path` or its nearest existing ancestor.
fn free_bytes(path: &Path) -> Option<u64> {
    let mut p = path;
    while !p.exists() {
        p = p.parent()?;
    }
    crate::util::fsx::free_bytes(p).ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Missing,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Check {
    /// Short name: `qemu`, `accelerator`, `kernel`, `cache`, `image`, …
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// The command that fixes it, when one does.
    pub fix: Option<String>,
    /// The Debian packages that are missing, for the summary's one command.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
}

const MIB: u64 = 1 << 20;
/// Room for a kernel and its headers unpacked in the cache.
const KERNEL_ROOM: u64 = 1024 * MIB;
/// Room for a run directory (two arms' initrds, samples, logs).
const RUN_ROOM: u64 = 256 * MIB;
/// Beside a vmcore of guest memory: the kernel log, crash's output.
const DUMP_SLACK: u64 = 256 * MIB;
/// `image: debian` in the cache: the root file system's tar (~300 MiB),
/// one kernel's disk (~500 MiB on the host, sparse) and, while that disk is
/// made, the tree it is made from.
const DEBIAN_ROOM: u64 = 1536 * MIB;
/// A Debian debug vmlinux unpacked (~600 MiB) and its package while it is extracted.
const DEBUG_ROOM: u64 = 1024 * MIB;

fn install(pkgs: &[&str]) -> String {
    let mut v: Vec<&str> = pkgs.to_vec();
    v.dedup();
    format!("apt-get install -y {}", v.join(" "))
}

fn mib(b: u64) -> String {
    if b >= 10 * 1024 * MIB {
        format!("{:.1} GiB", b as f64 / (1024 * MIB) as f64)
    } else {
        format!("{} MiB", b / MIB)
    }
}

/// A check over a set of tools: ok when all are there, else `status` with
/// the packages that provide the missing ones.
fn tools(f: &Facts, name: &'static str, what: &[&str], need: &str, status_if_missing: Status, ok_detail: &str) -> Check {
    let missing: Vec<&str> = what
        .iter()
        .copied()
        .filter(|w| if w.starts_with('/') { !f.files.get(*w).copied().unwrap_or(false) } else { f.programs.get(*w).is_none_or(|p| p.is_none()) })
        .collect();
    if missing.is_empty() {
        return Check { name, status: Status::Ok, detail: ok_detail.to_string(), fix: None, packages: vec![] };
    }
    let mut pkgs: Vec<&str> = missing.iter().map(|m| package_of(m)).collect();
    pkgs.sort();
    pkgs.dedup();
    Check {
        name,
        status: status_if_missing,
        detail: format!("{} not found; {need}", missing.join(", ")),
        fix: Some(install(&pkgs)),
        packages: pkgs.iter().map(|p| p.to_string()).collect(),
    }
}

/// Every check, in the order a run needs them.
pub fn checks(needs: &Needs, f: &Facts) -> Vec<Check> {
    let required = |yes: bool| if yes { Status::Missing } else { Status::Warn };
    let mut out = Vec::new();

    out.push(match &f.qemu_version {
        Ok(v) => Check { name: "qemu", status: Status::Ok, detail: format!("{v} ({})", f.qemu), fix: None, packages: vec![] },
        Err(e) => Check {
            name: "qemu",
            status: Status::Missing,
            detail: format!("{e}; every lab boots its kernel in it"),
            fix: Some(install(&[f.arch.qemu_package()])),
            packages: vec![f.arch.qemu_package().into()],
        },
    });

    let choice = accel::choose(if needs.kvm { accel::AccelRequest::Kvm } else { accel::AccelRequest::Auto }, &f.host_accel, f.arch);
    out.push(match choice.accel {
        Accel::Kvm if needs.kvm && !f.host_accel.kvm_usable => Check {
            name: "accelerator",
            status: Status::Missing,
            detail: format!("the lab asks for KVM, which is not usable here ({})", f.host_accel.kvm_error.as_deref().unwrap_or("no /dev/kvm")),
            fix: Some("set `vm.accel: auto` (or tcg) in the lab".into()),
            packages: vec![],
        },
        Accel::Kvm => Check { name: "accelerator", status: Status::Ok, detail: format!("KVM: {}", choice.reason), fix: None, packages: vec![] },
        Accel::Tcg => Check {
            name: "accelerator",
            status: Status::Warn,
            detail: format!("TCG (emulation, several times slower than KVM; labs still run): {}", choice.reason),
            fix: None,
            packages: vec![],
        },
    });

    let k = &f.kernel;
    out.push(if let Some(why) = &k.unknown {
        Check { name: "kernel", status: Status::Missing, detail: why.clone(), fix: Some("see `kernlab kernel list`".into()), packages: vec![] }
    } else if k.cached {
        Check { name: "kernel", status: Status::Ok, detail: format!("{} is in the cache", k.name), fix: None, packages: vec![] }
    } else {
        match (&k.package, &k.candidate) {
            (Some(p), Some(Ok(Some(v)))) => Check {
                name: "kernel",
                status: Status::Ok,
                detail: format!("{} not cached yet; apt has {p} {v} (fetched on the first run)", k.name),
                fix: None,
                packages: vec![],
            },
            (Some(p), Some(Ok(None))) => Check {
                name: "kernel",
                status: Status::Missing,
                detail: format!("{} is not cached and apt has no candidate for {p}", k.name),
                fix: Some("apt-get update".into()),
                packages: vec![],
            },
            (Some(_), Some(Err(e))) => Check {
                name: "kernel",
                status: Status::Missing,
                detail: format!("{} is not cached and apt cannot be asked: {e}", k.name),
                fix: Some(install(&["apt"])),
                packages: vec!["apt".into()],
            },
            _ => Check { name: "kernel", status: Status::Ok, detail: format!("{} (not a Debian package; fetched from its descriptor)", k.name), fix: None, packages: vec![] },
        }
    });

    out.push(match &f.cache.error {
        Some(e) => Check {
            name: "cache",
            status: Status::Missing,
            detail: e.clone(),
            fix: Some("set KERNLAB_CACHE to a writable directory".into()),
            packages: vec![],
        },
        None => Check {
            name: "cache",
            status: Status::Ok,
            detail: format!(
                "{}: {}, {} kernel{} cached{}",
                f.cache.root.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
                mib(f.cache.bytes),
                f.cache.kernels.len(),
                if f.cache.kernels.len() == 1 { "" } else { "s" },
                if f.cache.kernels.is_empty() { String::new() } else { format!(" ({})", f.cache.kernels.join(", ")) }
            ),
            fix: None,
            packages: vec![],
        },
    });

    let fetch_needed = !k.cached && k.package.is_some();
    out.push(tools(f, "apt", &["apt-get", "apt-cache", "dpkg-deb", "depmod"], "needed to fetch and unpack Debian kernels", required(fetch_needed), "apt-get, apt-cache, dpkg-deb, depmod"));
    out.push(tools(
        f,
        "image",
        &["/bin/busybox", "/usr/sbin/dropbear", "dropbearkey", "ldd"],
        "the guest image is built from the host's static busybox and dropbear",
        Status::Missing,
        "static busybox, dropbear, dropbearkey",
    ));
    out.push(tools(f, "modules", &["gcc", "make", "modinfo"], "the lab's modules are built against the kernel's headers", required(needs.modules), "gcc, make, modinfo"));
    out.push(tools(f, "pahole", &["pahole"], "module builds for kernels with BTF (6.12) look for it", Status::Warn, "pahole (BTF for 6.12 module builds)"));
    out.push(tools(f, "workload", &["gcc", crate::arch::HOST_LIBC_A], "the churn workload is a static program", required(needs.churn), "gcc and the static libc for the churn program"));
    if let Some(cross) = cross_check(f) {
        out.push(cross);
    }
    out.push(tools(
        f,
        "dumps",
        &["/usr/sbin/kexec", "/usr/bin/makedumpfile", "mkfs.ext4", "debugfs"],
        "labs with `exhaustion: {action: kdump}` need them (e.g. labs/leak-to-crash.yaml)",
        required(needs.kdump || needs.ext4),
        "kexec, makedumpfile, mkfs.ext4, debugfs",
    ));
    out.push(tools(f, "crash", &["crash"], "vmcores are read with crash", required(needs.dumps && !needs.drgn), "crash"));
    out.push(match &f.drgn {
        Ok(v) => Check { name: "drgn", status: Status::Ok, detail: format!("drgn {v} (vmcores of any architecture; triage.engine)"), fix: None, packages: vec![] },
        Err(e) => Check {
            name: "drgn",
            status: required(needs.drgn),
            detail: format!("{e}; vmcores of a guest of another architecture than the host's are read with drgn"),
            fix: Some(install(&[crate::triage::drgn::PACKAGE])),
            packages: vec![crate::triage::drgn::PACKAGE.to_string()],
        },
    });
    out.push(tools(
        f,
        "qemu-img",
        &["qemu-img"],
        "a disk image (`image: debian` or `{disk: PATH}`) boots through a per-run qcow2 overlay it makes",
        required(needs.disk_image),
        "qemu-img (per-run overlays of disk images)",
    ));
    out.extend(debian(needs, f));
    out.push(tools(f, "chromium", &["chromium"], "optional: only the report test (tests/report.rs) opens report.html in it", Status::Warn, "chromium (for the report test)"));

    let vmcore = needs.memory + DUMP_SLACK;
    for d in &f.disks {
        let Some(free) = d.free else {
            out.push(Check { name: "disk", status: Status::Warn, detail: format!("{}: free space unknown ({})", d.what, d.path.display()), fix: None, packages: vec![] });
            continue;
        };
        let (room, dump_room, why) = if d.what == "cache" {
            let kernel = if fetch_needed { KERNEL_ROOM } else { 0 };
            match needs.debian {
                true => (kernel + DEBIAN_ROOM, DEBUG_ROOM, if fetch_needed { "a kernel, its headers and the Debian image" } else { "the Debian image" }),
                false => (kernel, DEBUG_ROOM, "a kernel and its headers"),
            }
        } else {
            (RUN_ROOM, vmcore, "a run directory")
        };
        let where_ = format!("{} ({})", d.what, d.path.display());
        out.push(if free < room {
            Check {
                name: "disk",
                status: Status::Missing,
                detail: format!("{where_}: {} free, {why} needs {}", mib(free), mib(room)),
                fix: Some(format!("free space under {}", d.path.display())),
                packages: vec![],
            }
        } else if free < room + dump_room {
            let what = if d.what == "cache" { "the debug vmlinux crash reads".to_string() } else { format!("a vmcore of a {} guest", mib(needs.memory)) };
            Check {
                name: "disk",
                status: required(needs.dumps),
                detail: format!("{where_}: {} free, not room for {what} ({})", mib(free), mib(room + dump_room)),
                fix: Some(format!("free space under {}", d.path.display())),
                packages: vec![],
            }
        } else {
            Check { name: "disk", status: Status::Ok, detail: format!("{where_}: {} free", mib(free)), fix: None, packages: vec![] }
        });
    }
    out
}

/// `image: debian`'s checks: mmdebstrap (and newuidmap for a user), and
/// for a Debian lab, root and the namespaces of `mmdebstrap --mode=unshare`.
fn debian(needs: &Needs, f: &Facts) -> Vec<Check> {
    let required = if needs.debian { Status::Missing } else { Status::Warn };
    let what: &[&str] = if f.root { &["mmdebstrap"] } else { &["mmdebstrap", "newuidmap"] };
    let mut out = vec![tools(
        f,
        "debian",
        what,
        "labs with `image: debian` (or `{disk, root}`, booted with the Debian image's initramfs) build it with mmdebstrap --mode=unshare",
        required,
        "mmdebstrap (image: debian)",
    )];
    if !needs.debian {
        return out;
    }
    out.push(if f.root {
        Check { name: "root", status: Status::Ok, detail: "running as root: the Debian disk's tools run in a chroot".into(), fix: None, packages: vec![] }
    } else {
        Check {
            name: "root",
            status: Status::Missing,
            detail: "not root: the Debian disk is made by running the guest's depmod, mkinitramfs and kdump-config in a chroot, which needs root".into(),
            fix: Some("run kernlab as root (e.g. `sudo kernlab run LAB`), or use `image: minimal`".into()),
            packages: vec![],
        }
    });
    let probe = format!("unshare {}", unshare_probe(f.root).join(" "));
    out.push(match &f.namespaces {
        None => Check { name: "namespaces", status: Status::Warn, detail: format!("not probed (`{probe}`)"), fix: None, packages: vec![] },
        Some(Ok(())) if f.root => Check {
            name: "namespaces",
            status: Status::Ok,
            detail: "mount, PID, UTS and IPC namespaces can be unshared (mmdebstrap --mode=unshare)".into(),
            fix: None,
            packages: vec![],
        },
        Some(Ok(())) => Check { name: "namespaces", status: Status::Ok, detail: "unprivileged user namespaces work (mmdebstrap --mode=unshare)".into(), fix: None, packages: vec![] },
        Some(Err(e)) => Check {
            name: "namespaces",
            status: Status::Missing,
            detail: format!("`{probe}` failed, so mmdebstrap --mode=unshare cannot build the root file system: {e}"),
            fix: Some(if f.root {
                "run on a host or VM that allows unshare(2) (a container needs CAP_SYS_ADMIN, e.g. --privileged)".into()
            } else {
                "allow unprivileged user namespaces (`user.max_user_namespaces` above 0; on a Debian kernel also `sysctl -w kernel.unprivileged_userns_clone=1`) and give the user /etc/subuid and /etc/subgid ranges, or run as root".into()
            }),
            packages: vec![],
        },
    });
    out
}

/// `kernlab doctor`'s answer.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DoctorReport {
    pub schema: &'static str,
    /// The lab checked for (a path, or `labs/leak-lab.yaml`).
    pub lab: String,
    pub kernel: String,
    pub needs: Needs,
    /// No check is missing.
    pub can_run: bool,
    /// 0, or 101 (infrastructure) when the lab cannot run here.
    pub exit_code: i32,
    pub checks: Vec<Check>,
    /// One command for every missing or wanted package.
    pub install: Option<String>,
}

impl DoctorReport {
    pub fn new(lab_name: &str, lab: &Lab, facts: &Facts) -> DoctorReport {
        let needs = Needs::of(lab);
        let checks = checks(&needs, facts);
        let can_run = checks.iter().all(|c| c.status != Status::Missing);
        let mut pkgs: Vec<&str> = checks.iter().flat_map(|c| c.packages.iter().map(String::as_str)).collect();
        pkgs.sort();
        pkgs.dedup();
        DoctorReport {
            schema: SCHEMA,
            lab: lab_name.to_string(),
            kernel: lab.kernel.clone(),
            needs,
            can_run,
            exit_code: if can_run { exit::OK } else { exit::INFRA },
            install: (!pkgs.is_empty()).then(|| install(&pkgs)),
            checks,
        }
    }

    /// The terminal form: one line per check, its fix below it.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = format!("kernlab doctor: can this machine run {} (kernel {})?\n", self.lab, self.kernel);
        for c in &self.checks {
            let status = match c.status {
                Status::Ok => console::style("ok     ").green(),
                Status::Warn => console::style("warn   ").yellow(),
                Status::Missing => console::style("MISSING").red().bold(),
            };
            let _ = writeln!(s, "  {status}  {:<11}  {}", c.name, c.detail);
            if let (Some(fix), false) = (&c.fix, c.status == Status::Ok) {
                let _ = writeln!(s, "  {:7}  {:<11}  fix: {fix}", "", "");
            }
        }
        let warns = self.checks.iter().filter(|c| c.status == Status::Warn).count();
        let missing = self.checks.iter().filter(|c| c.status == Status::Missing).count();
        if self.can_run {
            let _ = writeln!(s, "yes: {} can run here ({warns} warning{})", self.lab, if warns == 1 { "" } else { "s" });
        } else {
            let _ = writeln!(s, "no: {} cannot run here ({missing} missing; exit {})", self.lab, self.exit_code);
        }
        if let Some(cmd) = &self.install {
            let _ = writeln!(s, "to install every package named above: {cmd}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine with everything, a cached kernel, room to spare and TCG
    /// because of kvm_pvm (the machine this was written on).
    fn facts() -> Facts {
        Facts {
            arch: crate::arch::Arch::X86_64,
            programs: PROGRAMS.iter().map(|(p, _)| (p.to_string(), Some(PathBuf::from("/usr/bin").join(p)))).collect(),
            files: FILES.iter().map(|(f, _)| (f.to_string(), true)).collect(),
            qemu: "qemu-system-x86_64".into(),
            qemu_version: Ok("QEMU emulator version 7.2.0".into()),
            host_accel: HostAccel { kvm_usable: true, kvm_error: None, hardware_kvm: false, pvm: true, arch: Some(crate::arch::Arch::X86_64) },
            kernel: KernelCheck {
                name: "debian-6.1.0-54-cloud-amd64".into(),
                package: Some("linux-image-6.1.0-54-cloud-amd64".into()),
                candidate: Some(Ok(Some("6.1.190-1".into()))),
                cached: true,
                unknown: None,
            },
            cache: CacheFacts { root: Some("/c".into()), error: None, bytes: 3 << 30, kernels: vec!["debian-6.1.0-54-cloud-amd64".into()] },
            disks: vec![
                Disk { what: "cache".into(), path: "/c".into(), free: Some(50 << 30) },
                Disk { what: "runs".into(), path: "/r".into(), free: Some(50 << 30) },
            ],
            root: true,
            namespaces: None,
            drgn: Ok("0.0.22".into()),
        }
    }

    fn leak_lab() -> Needs {
        Needs::of(&default_lab().unwrap())
    }

    fn by_name<'a>(cs: &'a [Check], name: &str) -> &'a Check {
        cs.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no check {name}"))
    }

    #[test]
    fn the_leak_lab_needs_modules_and_churn_but_no_dumps() {
        let n = leak_lab();
        assert!(n.modules && n.churn && !n.dumps && !n.kdump && !n.ext4 && !n.kvm);
        assert_eq!(n.memory, 512 << 20);
    }

    #[test]
    fn a_full_machine_can_run_and_says_why_not_kvm() {
        let r = DoctorReport::new("labs/leak-lab.yaml", &default_lab().unwrap(), &facts());
        assert!(r.can_run && r.exit_code == 0, "{}", r.render());
        let a = by_name(&r.checks, "accelerator");
        assert_eq!(a.status, Status::Warn);
        assert!(a.detail.starts_with("TCG") && a.detail.contains("kvm_pvm"), "{}", a.detail);
        assert!(r.install.is_none());
    }

    #[test]
    fn missing_qemu_blocks_with_the_install_command() {
        let mut f = facts();
        f.qemu_version = Err("`qemu-system-x86_64` is not on PATH".into());
        let r = DoctorReport::new("labs/leak-lab.yaml", &default_lab().unwrap(), &f);
        assert!(!r.can_run && r.exit_code == exit::INFRA);
        let q = by_name(&r.checks, "qemu");
        assert_eq!((q.status, q.fix.as_deref()), (Status::Missing, Some("apt-get install -y qemu-system-x86")));
        assert!(r.render().contains("MISSING") && r.render().contains("fix: apt-get install -y qemu-system-x86"), "{}", r.render());
    }

    #[test]
    fn dump_tools_matter_only_to_labs_that_dump() {
        let mut f = facts();
        f.programs.insert("crash".into(), None);
        f.files.insert("/usr/sbin/kexec".into(), false);
        let cs = checks(&leak_lab(), &f);
        assert_eq!(by_name(&cs, "crash").status, Status::Warn);
        let d = by_name(&cs, "dumps");
        assert_eq!((d.status, d.fix.as_deref()), (Status::Warn, Some("apt-get install -y kexec-tools")));
        let dumping = Needs { kdump: true, dumps: true, ext4: true, ..leak_lab() };
        let cs = checks(&dumping, &f);
        assert_eq!(by_name(&cs, "crash").status, Status::Missing);
        assert_eq!(by_name(&cs, "dumps").status, Status::Missing);
    }

    #[test]
    fn drgn_is_reported_and_required_only_where_it_triages() {
        let mut f = facts();
        let cs = checks(&leak_lab(), &f);
        let d = by_name(&cs, "drgn");
        assert_eq!(d.status, Status::Ok);
        assert!(d.detail.contains("drgn 0.0.22"), "{}", d.detail);
        f.drgn = Err("drgn 0.0.20 is installed; kernlab needs 0.0.22 or newer".into());
        let d = by_name(&checks(&Needs { dumps: true, ..leak_lab() }, &f), "drgn").clone();
        assert_eq!((d.status, d.fix.as_deref()), (Status::Warn, Some("apt-get install -y python3-drgn")));
        assert!(d.detail.contains("0.0.20") && d.detail.contains("0.0.22"), "{}", d.detail);
        let cs = checks(&Needs { dumps: true, drgn: true, ..leak_lab() }, &f);
        assert_eq!(by_name(&cs, "drgn").status, Status::Missing);
        // A lab triaged by drgn does not need crash.
        f.programs.insert("crash".into(), None);
        assert_eq!(by_name(&cs, "crash").status, Status::Ok);
        assert_eq!(by_name(&checks(&Needs { dumps: true, drgn: true, ..leak_lab() }, &f), "crash").status, Status::Warn);
    }

    #[test]
    fn module_toolchain_and_static_libc() {
        let mut f = facts();
        f.programs.insert("make".into(), None);
        f.files.insert(crate::arch::HOST_LIBC_A.into(), false);
        let cs = checks(&leak_lab(), &f);
        let m = by_name(&cs, "modules");
        assert_eq!((m.status, m.fix.as_deref()), (Status::Missing, Some("apt-get install -y make")));
        let w = by_name(&cs, "workload");
        assert_eq!((w.status, w.fix.as_deref()), (Status::Missing, Some("apt-get install -y libc6-dev")));
        // A lab without modules or churn does not care.
        let cs = checks(&Needs { modules: false, churn: false, ..leak_lab() }, &f);
        assert_eq!(by_name(&cs, "modules").status, Status::Warn);
        assert_eq!(by_name(&cs, "workload").status, Status::Warn);
    }

    #[test]
    fn kernel_not_cached_needs_an_apt_candidate() {
        let mut f = facts();
        f.kernel.cached = false;
        assert_eq!(by_name(&checks(&leak_lab(), &f), "kernel").status, Status::Ok);
        f.kernel.candidate = Some(Ok(None));
        let k = by_name(&checks(&leak_lab(), &f), "kernel").clone();
        assert_eq!((k.status, k.fix.as_deref()), (Status::Missing, Some("apt-get update")));
        // apt-get missing matters only while the kernel is to be fetched.
        f.programs.insert("apt-get".into(), None);
        assert_eq!(by_name(&checks(&leak_lab(), &f), "apt").status, Status::Missing);
        f.kernel.cached = true;
        assert_eq!(by_name(&checks(&leak_lab(), &f), "apt").status, Status::Warn);
    }

    #[test]
    fn disk_space_for_runs_and_vmcores() {
        let mut f = facts();
        f.disks[1].free = Some(100 << 20);
        let d = checks(&leak_lab(), &f).into_iter().filter(|c| c.name == "disk").nth(1).unwrap();
        assert_eq!(d.status, Status::Missing, "{}", d.detail);
        f.disks[1].free = Some(600 << 20);
        let cs = checks(&leak_lab(), &f);
        let d = cs.iter().filter(|c| c.name == "disk").nth(1).unwrap();
        assert_eq!(d.status, Status::Warn, "{}", d.detail);
        assert!(d.detail.contains("vmcore of a 512 MiB guest"), "{}", d.detail);
        let cs = checks(&Needs { dumps: true, ..leak_lab() }, &f);
        assert_eq!(cs.iter().filter(|c| c.name == "disk").nth(1).unwrap().status, Status::Missing);
        // The Debian image's two stages take room in the cache.
        f.disks[0].free = Some(1000 << 20);
        let cache = |n: &Needs| checks(n, &f).into_iter().find(|c| c.name == "disk").unwrap();
        assert_eq!(cache(&leak_lab()).status, Status::Warn, "room for a kernel, not the debug vmlinux");
        let d = cache(&Needs { debian: true, disk_image: true, ..leak_lab() });
        assert!(d.status == Status::Missing && d.detail.contains("the Debian image needs 1536 MiB"), "{}", d.detail);
    }

    #[test]
    fn kvm_required_but_unusable() {
        let mut f = facts();
        f.host_accel = HostAccel { kvm_usable: false, kvm_error: Some("/dev/kvm: No such file or directory".into()), hardware_kvm: false, pvm: false, arch: Some(crate::arch::Arch::X86_64) };
        let cs = checks(&Needs { kvm: true, ..leak_lab() }, &f);
        assert_eq!(by_name(&cs, "accelerator").status, Status::Missing);
        let cs = checks(&leak_lab(), &f);
        let a = by_name(&cs, "accelerator");
        assert!(a.status == Status::Warn && a.detail.contains("No such file"), "{}", a.detail);
    }

    fn debian_lab() -> Lab {
        lab::parse("name: d\nimage: debian\n", Path::new("d.yaml")).unwrap()
    }

    #[test]
    fn a_debian_lab_needs_mmdebstrap_qemu_img_root_and_namespaces() {
        let n = Needs::of(&debian_lab());
        assert!(n.debian && n.disk_image);
        let disk = lab::parse("name: d\nimage: {disk: a.qcow2}\n", Path::new("d.yaml")).unwrap();
        assert!(!Needs::of(&disk).debian && Needs::of(&disk).disk_image);
        let with_kernel = lab::parse("name: d\nimage: {disk: a.qcow2, root: /dev/vda1}\n", Path::new("d.yaml")).unwrap();
        assert!(Needs::of(&with_kernel).debian, "the lab's kernel boots with the Debian image's initramfs");
        let mut f = facts();
        f.namespaces = Some(Ok(()));
        let r = DoctorReport::new("d.yaml", &debian_lab(), &f);
        assert!(r.can_run, "{}", r.render());
        assert!(by_name(&r.checks, "namespaces").detail.contains("mount, PID"), "{}", r.render());
        // Missing tools: each with its package.
        f.programs.insert("mmdebstrap".into(), None);
        f.programs.insert("qemu-img".into(), None);
        let r = DoctorReport::new("d.yaml", &debian_lab(), &f);
        assert!(!r.can_run);
        let d = by_name(&r.checks, "debian");
        assert_eq!((d.status, d.fix.as_deref()), (Status::Missing, Some("apt-get install -y mmdebstrap")));
        let q = by_name(&r.checks, "qemu-img");
        assert_eq!((q.status, q.fix.as_deref()), (Status::Missing, Some("apt-get install -y qemu-utils")));
        assert!(r.install.as_deref().is_some_and(|i| i.contains("mmdebstrap") && i.contains("qemu-utils")), "{:?}", r.install);
        // Labs on the minimal image only warn, and have no root or namespace check.
        let cs = checks(&leak_lab(), &f);
        assert_eq!((by_name(&cs, "debian").status, by_name(&cs, "qemu-img").status), (Status::Warn, Status::Warn));
        assert!(!cs.iter().any(|c| c.name == "root" || c.name == "namespaces"));
    }

    #[test]
    fn a_debian_lab_as_a_user_or_without_namespaces_says_how_to_fix_it() {
        let mut f = facts();
        f.root = false;
        f.namespaces = Some(Err("`unshare --user --map-root-user true` failed with exit status: 1: unshare failed: Operation not permitted".into()));
        f.programs.insert("newuidmap".into(), None);
        let r = DoctorReport::new("d.yaml", &debian_lab(), &f);
        assert!(!r.can_run);
        let root = by_name(&r.checks, "root");
        assert!(root.status == Status::Missing && root.detail.contains("chroot") && root.fix.as_deref().unwrap().contains("as root"), "{root:?}");
        let ns = by_name(&r.checks, "namespaces");
        assert!(ns.status == Status::Missing && ns.detail.contains("Operation not permitted"), "{ns:?}");
        assert!(ns.fix.as_deref().unwrap().contains("unprivileged_userns_clone"), "{ns:?}");
        let d = by_name(&r.checks, "debian");
        assert_eq!((d.status, d.fix.as_deref()), (Status::Missing, Some("apt-get install -y uidmap")), "a user's unshare maps its subuids with newuidmap");
        // As root, the probe is the namespaces without a user namespace.
        assert_eq!(unshare_probe(true), ["--mount", "--pid", "--fork", "--uts", "--ipc", "true"]);
        assert_eq!(unshare_probe(false), ["--user", "--map-root-user", "true"]);
    }

    #[test]
    fn path_lookup() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("tool"), "#!/bin/sh\n").unwrap();
        std::fs::write(d.path().join("data"), "").unwrap();
        std::fs::set_permissions(d.path().join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths(["/nonexistent", d.path().to_str().unwrap()]).unwrap();
        assert_eq!(on_path("tool", &path), Some(d.path().join("tool")));
        assert_eq!(on_path("data", &path), None);
        assert_eq!(on_path("absent", &path), None);
    }

    #[test]
    fn a_foreign_guest_needs_the_cross_tools_and_a_native_one_does_not() {
        let native = checks(&leak_lab(), &facts());
        assert!(!native.iter().any(|c| c.name == "cross"));
        let mut f = facts();
        f.arch = crate::arch::ALL.into_iter().find(|a| Some(*a) != crate::arch::Arch::host()).unwrap();
        let cs = checks(&leak_lab(), &f);
        let c = by_name(&cs, "cross");
        let gcc = f.arch.gcc(crate::arch::Arch::host());
        match c.status {
            Status::Ok => assert!(c.detail.contains(&gcc) && c.detail.contains(&f.arch.cross_libc_a()), "{}", c.detail),
            _ => assert!(c.packages.iter().any(|p| p == f.arch.cross_gcc_package() || *p == f.arch.cross_libc_package() || p == "binutils"), "{c:?}"),
        }
    }
}
