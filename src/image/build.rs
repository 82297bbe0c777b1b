//! Building the `minimal` image: gather host binaries and their libraries,
//! the kernel's driver modules, and the guest init into a [`Tree`], hash it,
//! and write the cpio into the cache unless an identical one is there.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::modules::{DepTable, ModuleError};
use super::tree::Tree;
use crate::arch::Arch;
use crate::cache::Cache;
use crate::kernel::Kernel;
use crate::util::tool::{self, Tool};
use crate::util::{decompress, fsx};

/// Bumped whenever the layout of the image changes in a way its inputs do not show.
const FORMAT: &str = "kernlab-minimal-1";

const INIT: &str = include_str!("../../images/minimal/init");
const INITTAB: &str = include_str!("../../images/minimal/inittab");
const CAPTURE_INIT: &str = include_str!("../../images/capture/init");

/// Host programs copied into the image, with the guest path they live at
/// (a foreign architecture's guest takes the same guest paths from its
/// packages, `sysroot`).
/// busybox must be the static build (`busybox-static`): it runs before any
/// library path is set up and provides every other command.
const PROGRAMS: &[(&str, &str)] = &[("/bin/busybox", "/bin/busybox"), ("/usr/sbin/dropbear", "/usr/sbin/dropbear")];

/// A guest image built (or found) in the cache.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The cached cpio archive.
    pub path: PathBuf,
    /// sha256 of the archive (equal to the hash of its inputs, as the encoding is deterministic).
    pub sha256: String,
    /// Module files the guest loads at boot, in order.
    pub modules: Vec<String>,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image: cannot read host program `{path}` (install it: {hint})")]
    Program {
        path: String,
        hint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("image: cannot list the libraries of `{path}`")]
    Ldd {
        path: String,
        #[source]
        source: tool::ToolError,
    },
    #[error("image: kernel `{kernel}` has no readable modules.dep in `{}`", dir.display())]
    ModulesDep {
        kernel: String,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image: kernel `{kernel}`")]
    Modules {
        kernel: String,
        #[source]
        source: ModuleError,
    },
    #[error("image: cannot read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image: {0}")]
    Sysroot(#[from] super::sysroot::SysrootError),
    #[error("image: a {arch} guest cannot have the host program `{program}` yet (kdump labs run only on guests of the host's architecture: kexec and makedumpfile are the host's)")]
    ForeignExtra { arch: crate::arch::Arch, program: String },
    #[error("image: cannot write `{}` into the cache", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Builds (or finds in the cache) the minimal image for `kernel`, with the
/// driver modules `early` (loaded before SSH starts: the network) and `late`
/// (loaded after), plus their dependencies, and the host programs `extra`
/// (e.g. `/usr/sbin/kexec` for kdump labs) at their host paths.
pub fn build_minimal(cache: &Cache, kernel: &Kernel, early: &[&str], late: &[&str], extra: &[&str]) -> Result<BuiltImage, ImageError> {
    let mut tree = minimal_tree(kernel, early, late)?;
    let arch = kernel.arch();
    if crate::arch::Arch::host() == Some(arch) {
        for (host, guest) in PROGRAMS {
            add_program(&mut tree, host, guest)?;
        }
        for program in extra {
            add_program(&mut tree, program, program)?;
        }
    } else {
        // Another architecture's guest: its programs from its packages.
        if let Some(program) = extra.first() {
            return Err(ImageError::ForeignExtra { arch, program: program.to_string() });
        }
        let root = super::sysroot::ensure(cache, arch)?;
        for (_, guest) in PROGRAMS {
            for (path, data) in super::sysroot::program_files(&root, guest, arch)? {
                if tree.get(&path).is_none() {
                    tree.file(&path, 0o755, data);
                }
            }
        }
    }
    let cpio = tree.to_cpio();
    let sha256 = fsx::sha256_bytes(&cpio);
    let path = cache.image(&sha256);
    if !path.exists() {
        fsx::write_atomic(&path, &cpio).map_err(|source| ImageError::Write { path: path.clone(), source })?;
    }
    let modules = match tree.get("etc/kernlab/modules") {
        Some(super::tree::Node::File { data, .. }) => {
            String::from_utf8_lossy(data).lines().filter(|l| !l.starts_with('@')).map(str::to_string).collect()
        }
        _ => Vec::new(),
    };
    Ok(BuiltImage { path, sha256, modules, size: cpio.len() as u64 })
}

/// The capture kernel's initramfs for in-guest kdump: busybox, makedumpfile
/// and its libraries, the drivers for the dump disk, and the capture init
/// (`images/capture/init`). Deterministic like the minimal image.
pub fn capture_cpio(kernel: &Kernel, dump_level: u8) -> Result<Vec<u8>, ImageError> {
    let mut t = Tree::new();
    for d in ["bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "mnt"] {
        t.dir(d, 0o755);
    }
    t.file("/init", 0o755, CAPTURE_INIT.as_bytes().to_vec());
    t.file("/etc/kernlab/dump_level", 0o644, format!("{dump_level}\n").into_bytes());
    add_program(&mut t, "/bin/busybox", "/bin/busybox")?;
    add_program(&mut t, "/usr/bin/makedumpfile", "/usr/bin/makedumpfile")?;
    let (table, release_dir) = dep_table(kernel)?;
    let order = table
        .load_order(&["virtio_pci", "virtio_blk"])
        .map_err(|source| ImageError::Modules { kernel: kernel.name.clone(), source })?;
    let mut list = String::new();
    for rel in &order {
        list.push_str(&add_module(&mut t, kernel, &release_dir, rel)?);
    }
    t.file("/etc/kernlab/modules", 0o644, list.into_bytes());
    Ok(t.to_cpio())
}

/// The bare initramfs of the boot floor (`kernlab bench boot`): the static
/// busybox and an /init that powers the machine off at once, so QEMU start
/// → QEMU exit is the kernel's own boot and nothing of kernlab's image.
/// For a guest of another architecture, its busybox comes from the
/// sysroot of its packages.
pub fn bare_cpio(cache: &Cache, arch: Arch) -> Result<Vec<u8>, ImageError> {
    let mut t = Tree::new();
    for d in ["bin", "proc", "dev"] {
        t.dir(d, 0o755);
    }
    t.file("/init", 0o755, b"#!/bin/busybox sh\n/bin/busybox poweroff -f || /bin/busybox reboot -f\n".to_vec());
    if Arch::host() == Some(arch) {
        add_program(&mut t, "/bin/busybox", "/bin/busybox")?;
    } else {
        let root = super::sysroot::ensure(cache, arch)?;
        for (path, data) in super::sysroot::program_files(&root, "/bin/busybox", arch)? {
            t.file(&path, 0o755, data);
        }
    }
    Ok(t.to_cpio())
}

/// Puts one module into the tree as a plain `.ko` (compressed modules, as
/// 6.12 and SUSE kernels ship them, are decompressed on the host) and
/// returns its line for `/etc/kernlab/modules`.
fn add_module(t: &mut Tree, kernel: &Kernel, release_dir: &Path, rel: &str) -> Result<String, ImageError> {
    let data = decompress::read_file(&release_dir.join(rel)).map_err(|e| ImageError::Read { path: e.path, source: e.source })?;
    let plain = decompress::strip_suffix(rel);
    t.file(&format!("/lib/modules/{}/{plain}", kernel.release), 0o644, data);
    Ok(format!("{}/{plain}\n", kernel.release))
}

/// The kernel's module dependency table and its module directory.
fn dep_table(kernel: &Kernel) -> Result<(DepTable, PathBuf), ImageError> {
    let release_dir = kernel.modules_dir();
    let read = |name: &str| std::fs::read_to_string(release_dir.join(name));
    let dep = read("modules.dep").map_err(|source| ImageError::ModulesDep {
        kernel: kernel.name.clone(),
        dir: release_dir.clone(),
        source,
    })?;
    let table = DepTable::parse(&kernel.release, &dep, &read("modules.builtin").unwrap_or_default());
    Ok((table, release_dir))
}

fn minimal_tree(kernel: &Kernel, early: &[&str], late: &[&str]) -> Result<Tree, ImageError> {
    let mut t = Tree::new();
    for d in ["bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "run", "mnt", "var"] {
        t.dir(d, 0o755);
    }
    t.file("/init", 0o755, INIT.as_bytes().to_vec());
    t.file("/etc/inittab", 0o644, INITTAB.as_bytes().to_vec());
    t.file("/etc/passwd", 0o644, b"root:*:0:0:root:/root:/bin/sh\n".to_vec());
    t.file("/etc/group", 0o644, b"root:x:0:\n".to_vec());
    t.file("/etc/shells", 0o644, b"/bin/sh\n".to_vec());
    t.file("/etc/kernlab/format", 0o644, FORMAT.as_bytes().to_vec());

    let (table, release_dir) = dep_table(kernel)?;
    let modules_err = |source| ImageError::Modules { kernel: kernel.name.clone(), source };
    let early_order = table.load_order(early).map_err(modules_err)?;
    let all = table.load_order(&[early, late].concat()).map_err(modules_err)?;
    // The guest's /init starts SSH at the `@sshd` line (see images/minimal/init).
    let late_order = all.iter().filter(|r| !early_order.contains(r));
    let mut list = String::new();
    for (i, rel) in early_order.iter().chain(late_order).enumerate() {
        if i == early_order.len() {
            list.push_str("@sshd\n");
        }
        list.push_str(&add_module(&mut t, kernel, &release_dir, rel)?);
    }
    if !list.contains("@sshd") {
        list.push_str("@sshd\n");
    }
    t.file("/etc/kernlab/modules", 0o644, list.into_bytes());
    Ok(t)
}

/// Copies a host program and every library `ldd` names for it.
fn add_program(t: &mut Tree, host: &str, guest: &str) -> Result<(), ImageError> {
    let data = std::fs::read(host).map_err(|source| ImageError::Program {
        path: host.to_string(),
        hint: tool::package_hint(Path::new(host).file_name().and_then(|f| f.to_str()).unwrap_or(host)),
        source,
    })?;
    t.file(guest, 0o755, data);
    for lib in libraries(host)? {
        if t.get(&lib).is_some() {
            continue;
        }
        let data = std::fs::read(&lib).map_err(|source| ImageError::Read { path: lib.clone().into(), source })?;
        t.file(&lib, 0o755, data);
    }
    Ok(())
}

/// The absolute library paths `ldd` prints for `program`; none for a static one.
fn libraries(program: &str) -> Result<Vec<String>, ImageError> {
    let out = Tool::new("ldd", Duration::from_secs(60))
        .arg(program)
        .output()
        .map_err(|source| ImageError::Ldd { path: program.to_string(), source })?;
    // ldd exits 1 for static binaries ("not a dynamic executable").
    Ok(parse_ldd(&String::from_utf8_lossy(&out.stdout)))
}

/// Pure parse of `ldd` output: `libz.so.1 => /lib/.../libz.so.1 (0x…)` and
/// `/lib64/ld-linux-x86-64.so.2 (0x…)`; the vdso has no file.
pub fn parse_ldd(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rhs)) => rhs.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| path.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_is_parsed() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibtomcrypt.so.1 => /lib/x86_64-linux-gnu/libtomcrypt.so.1 (0x7f)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)\n\t/lib64/ld-linux-x86-64.so.2 (0x7f)\n";
        assert_eq!(
            parse_ldd(text),
            ["/lib/x86_64-linux-gnu/libtomcrypt.so.1", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]
        );
        assert!(parse_ldd("\tnot a dynamic executable\n").is_empty());
    }
}
