//! A foreign architecture's guest programs. The minimal image copies the
//! host's own busybox and dropbear for a guest of the host's architecture;
//! for another (an arm64 guest on an x86 host) they come from that
//! architecture's Debian packages instead: `busybox-static`, `dropbear-bin`
//! and the libraries they depend on, fetched through the private apt
//! configuration ([`crate::kernel::apt::Apt::for_arch`]) and unpacked into
//! the cache (`sysroot/<arch>/`) once. A program's libraries are its
//! `DT_NEEDED` entries and its interpreter (`readelf`, which reads any
//! architecture's ELF), resolved inside that tree, never on the host.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::arch::Arch;
use crate::cache::{self, Cache, Lock};
use crate::kernel::apt::{self, Apt, AptError};
use crate::util::tool::{Tool, ToolError};

/// The packages whose programs the minimal image takes.
pub const PACKAGES: [&str; 2] = ["busybox-static", "dropbear-bin"];
/// A bound on the dependency walk (the closure of [`PACKAGES`] is ~8).
const MAX_PACKAGES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum SysrootError {
    #[error("the {arch} guest programs: {source}")]
    Apt { arch: Arch, source: AptError },
    #[error("the {arch} guest programs: more than {MAX_PACKAGES} packages in the dependencies of {}", PACKAGES.join(", "))]
    TooMany { arch: Arch },
    #[error("the {arch} guest programs: `{}`: {source}", path.display())]
    Io { arch: Arch, path: PathBuf, source: std::io::Error },
    #[error("the {arch} guest programs: {source}")]
    Tool { arch: Arch, source: ToolError },
    #[error("the {arch} guest program `{program}` needs `{library}`, which none of its packages ({}) holds", PACKAGES.join(", "))]
    Missing { arch: Arch, program: String, library: String },
}

/// The unpacked tree of `arch`'s guest programs, fetched and unpacked
/// into the cache on first use.
pub fn ensure(cache: &Cache, arch: Arch) -> Result<PathBuf, SysrootError> {
    let dir = cache.sysroot_dir(arch.debian());
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SysrootError::Io { arch, path, source }
    };
    if dir.join(".complete").exists() {
        return Ok(dir);
    }
    let lock_key = format!("sysroot-{}", arch.debian());
    let _lock = cache.lock(Lock::Image(&lock_key)).map_err(io(&cache.locks()))?;
    if dir.join(".complete").exists() {
        return Ok(dir);
    }
    let apt = Apt::for_arch(cache, arch).map_err(|source| SysrootError::Apt { arch, source })?;
    let packages = closure(&apt, arch)?;
    let scratch = cache.scratch("sysroot-").map_err(io(&cache.tmp()))?;
    let debs = scratch.path().join("debs");
    let root = scratch.path().join("root");
    std::fs::create_dir_all(&debs).map_err(io(&debs))?;
    std::fs::create_dir_all(&root).map_err(io(&root))?;
    apt.download(&packages, &debs).map_err(|source| SysrootError::Apt { arch, source })?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&debs).map_err(io(&debs))?.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "deb")).collect();
    files.sort();
    for deb in &files {
        Tool::new("dpkg-deb", Duration::from_secs(120)).arg("-x").arg(deb).arg(&root).run().map_err(|source| SysrootError::Tool { arch, source })?;
    }
    let list: String = packages.iter().map(|p| format!("{p}\n")).collect();
    std::fs::write(root.join(".complete"), list).map_err(io(&root))?;
    cache::publish_dir(&root, &dir).map_err(io(&dir))?;
    Ok(dir)
}

/// [`PACKAGES`] and everything they depend on, by name (the first of
/// alternatives), from `apt`'s records.
fn closure(apt: &Apt, arch: Arch) -> Result<Vec<String>, SysrootError> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut todo: VecDeque<String> = PACKAGES.iter().map(|p| p.to_string()).collect();
    while let Some(p) = todo.pop_front() {
        if !seen.insert(p.clone()) {
            continue;
        }
        if seen.len() > MAX_PACKAGES {
            return Err(SysrootError::TooMany { arch });
        }
        let record = apt.show(&p).map_err(|source| SysrootError::Apt { arch, source })?;
        for field in ["Pre-Depends", "Depends"] {
            todo.extend(apt::field(&record, field).map(depends).unwrap_or_default());
        }
    }
    Ok(seen.into_iter().collect())
}

/// The package names of a `Depends` field: the first alternative of each,
/// without version or `:any`. Pure.
pub fn depends(field: &str) -> Vec<String> {
    field
        .split(',')
        .filter_map(|d| {
            let first = d.split('|').next()?.trim();
            let name = first.split(['(', ' ']).next()?.trim();
            let name = name.split(':').next()?;
            (!name.is_empty()).then(|| name.to_string())
        })
        .collect()
}

/// A program of the sysroot at `guest` (an absolute path as in the guest),
/// with its libraries and interpreter: (guest path, bytes) each, the
/// program first. Symlinks inside the tree resolve inside it.
pub fn program_files(root: &Path, guest: &str, arch: Arch) -> Result<Vec<(String, Vec<u8>)>, SysrootError> {
    let read = |g: &str| -> Result<Vec<u8>, SysrootError> {
        let p = crate::kernel::tree::resolve_in_root(root, Path::new(g.trim_start_matches('/'))).unwrap_or_else(|| root.join(g.trim_start_matches('/')));
        std::fs::read(&p).map_err(|source| SysrootError::Io { arch, path: p, source })
    };
    let mut out = vec![(guest.to_string(), read(guest)?)];
    let mut seen: BTreeSet<String> = BTreeSet::from([guest.to_string()]);
    let mut todo: VecDeque<String> = VecDeque::from([guest.to_string()]);
    let dirs = [format!("/lib/{}", arch.multiarch()), format!("/usr/lib/{}", arch.multiarch()), "/lib".into(), "/usr/lib".into()];
    while let Some(file) = todo.pop_front() {
        let host_path = crate::kernel::tree::resolve_in_root(root, Path::new(file.trim_start_matches('/'))).unwrap_or_else(|| root.join(file.trim_start_matches('/')));
        let text = readelf(&host_path, arch)?;
        let (interp, needed) = parse_readelf(&text);
        let mut wanted: Vec<String> = interp.into_iter().collect();
        for lib in needed {
            let found = dirs.iter().map(|d| format!("{d}/{lib}")).find(|g| crate::kernel::tree::resolve_in_root(root, Path::new(g.trim_start_matches('/'))).is_some_and(|p| p.is_file()) || root.join(g.trim_start_matches('/')).is_file());
            wanted.push(found.ok_or_else(|| SysrootError::Missing { arch, program: guest.to_string(), library: lib.clone() })?);
        }
        for w in wanted {
            if seen.insert(w.clone()) {
                out.push((w.clone(), read(&w)?));
                todo.push_back(w);
            }
        }
    }
    Ok(out)
}

/// `readelf -d -l -W` of a file: its dynamic section and program headers.
fn readelf(path: &Path, arch: Arch) -> Result<String, SysrootError> {
    let out = Tool::new("readelf", Duration::from_secs(30)).args(["-d", "-l", "-W"]).arg(path).output().map_err(|source| SysrootError::Tool { arch, source })?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The interpreter and the `NEEDED` libraries `readelf -d -l -W` shows. Pure.
pub fn parse_readelf(text: &str) -> (Option<String>, Vec<String>) {
    let interp = text.lines().find_map(|l| l.split("Requesting program interpreter: ").nth(1)).map(|r| r.trim_end_matches(']').trim().to_string());
    let needed = text
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split_once("Shared library: [").map(|(_, r)| r.trim_end_matches(']').trim().to_string()))
        .collect();
    (interp, needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_takes_the_first_alternative_without_versions() {
        let f = "libc6 (>= 2.34), libcrypt1 (>= 1:4.1.0), libtomcrypt1 (>= 1.18.2) | libtomcrypt0, zlib1g:any (>= 1:1.1.4)";
        assert_eq!(depends(f), ["libc6", "libcrypt1", "libtomcrypt1", "zlib1g"]);
        assert!(depends("").is_empty());
    }

    #[test]
    fn readelf_gives_the_interpreter_and_the_needed_libraries() {
        let text = "  [Requesting program interpreter: /lib/ld-linux-aarch64.so.1]\n\
                    Dynamic section at offset 0x2d8 contains 27 entries:\n\
                    0x0000000000000001 (NEEDED)             Shared library: [libz.so.1]\n\
                    0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]\n\
                    0x000000000000000c (INIT)               0x4000\n";
        let (interp, needed) = parse_readelf(text);
        assert_eq!(interp.as_deref(), Some("/lib/ld-linux-aarch64.so.1"));
        assert_eq!(needed, ["libz.so.1", "libc.so.6"]);
        assert_eq!(parse_readelf("There is no dynamic section in this file.\n"), (None, vec![]));
    }
}
