//! Kernel headers for building out-of-tree modules, unpacked into the cache
//! without root. A Debian kernel's headers are three packages: the flavour's
//! `linux-headers-<release>`, the shared `linux-headers-<abi>-common` and
//! `linux-kbuild-<series>`, whose names and versions come from the flavour
//! package's own `Depends`. The flavour's Makefile includes the common one by
//! absolute path (`/usr/src/…`); it is rewritten to the cache path before the
//! entry is published, so the tree works where it lies. An RPM kernel's
//! build tree comes with it from its `-devel` packages (unpacked and
//! rewritten the same way when the kernel is fetched); a local kernel's is
//! `lib/modules/<release>/build`.

use std::fs;
use std::path::{Path, PathBuf};

use super::apt::{self, AptError};
use super::descriptor::{Descriptor, PackageSource};
use super::package::{Fetch, PackageError};
use super::tree;
use super::types::Kernel;
use crate::cache::{Cache, Lock};
use crate::util::fsx;

#[derive(Debug, thiserror::Error)]
pub enum HeadersError {
    #[error("kernel `{name}`: cannot find the headers package `{package}` in this machine's apt sources: {detail}")]
    NotInArchive { name: String, package: String, detail: String },
    #[error("kernel `{name}`: {step}")]
    Package {
        name: String,
        step: String,
        #[source]
        source: Box<PackageError>,
    },
    #[error("kernel `{name}`: the local tree `{}` has no build directory (lib/modules/<release>/build); build its modules elsewhere", dir.display())]
    NoLocalBuild { name: String, dir: PathBuf },
    #[error("kernel `{name}` ({origin}): the lab builds modules, but the descriptor names no `-devel` packages to build them against (source.rpm.devel: e.g. kernel-default-devel and kernel-devel of the same version)")]
    NoDevel { name: String, origin: String },
    #[error("kernel `{name}` ({origin}): the -devel packages ({devel}) hold no build tree for {release} (lib/modules/{release}/build with a Makefile)")]
    NoRpmBuild { name: String, origin: String, devel: String, release: String },
    #[error("kernel `{name}`: the headers hold no `{}`", path.display())]
    Layout { name: String, path: PathBuf },
    #[error("kernel `{name}`: cache I/O on `{}`", path.display())]
    Io {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl HeadersError {
    /// A failure of the package path at `step`; a package apt does not have
    /// keeps its own message.
    fn package(name: &str, step: &str) -> impl FnOnce(PackageError) -> HeadersError {
        let (name, step) = (name.to_string(), step.to_string());
        move |source| match source {
            PackageError::Apt(AptError::NotInArchive { package, detail }) => HeadersError::NotInArchive { name, package, detail },
            source => HeadersError::Package { name, step, source: Box::new(source) },
        }
    }
}

/// The directory to run `make -C` in for `kernel`'s out-of-tree modules,
/// fetching the headers into the cache if needed.
pub fn build_dir(cache: &Cache, desc: &Descriptor, kernel: &Kernel) -> Result<PathBuf, HeadersError> {
    let name = kernel.name.as_str();
    let io = |path: &Path| {
        let (name, path) = (name.to_string(), path.to_path_buf());
        move |source| HeadersError::Io { name, path, source }
    };
    let build = Path::new("lib/modules").join(&kernel.release).join("build");
    let src = match &desc.source {
        PackageSource::Local(l) => {
            // A tree unpacked from packages names its build tree by absolute
            // path inside the tree (Debian: `build -> /usr/src/linux-headers-…`);
            // a self-built one (`make modules_install`) by its path on this
            // machine. The first is tried first: the tree's own wins.
            let inside = tree::resolve_in_root(&l.dir, &build);
            return inside
                .into_iter()
                .chain([l.dir.join(&build)])
                .find(|b| b.join("Makefile").is_file())
                .ok_or_else(|| HeadersError::NoLocalBuild { name: name.into(), dir: l.dir.clone() });
        }
        PackageSource::Rpm(r) => {
            if r.devel.is_empty() {
                return Err(HeadersError::NoDevel { name: name.into(), origin: desc.origin.clone() });
            }
            return tree::resolve_in_root(&kernel.root, &build).filter(|b| b.join("Makefile").is_file()).ok_or_else(|| HeadersError::NoRpmBuild {
                name: name.into(),
                origin: desc.origin.clone(),
                devel: r.devel.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
                release: kernel.release.clone(),
            });
        }
        PackageSource::Debian(s) => s,
    };
    let flavour = src.package.replacen("linux-image-", "linux-headers-", 1);
    let mut f = Fetch::begin(cache, Lock::Headers(name), "headers-").map_err(HeadersError::package(name, "locking the headers"))?;
    let pointer = cache.headers_pointer(&kernel.package_sha256);
    let tree_in = |entry: &Path| entry.join(format!("usr/src/linux-headers-{}", kernel.release));
    if let Ok(key) = fs::read_to_string(&pointer) {
        let dir = tree_in(&cache.headers_dir(key.trim()));
        if dir.join("Makefile").exists() {
            return Ok(dir);
        }
    }
    let pointers = pointer.parent().expect("a pointer has a directory");
    fsx::private_dir(pointers).map_err(io(pointers))?;

    // The flavour package at the kernel's exact version, and what it
    // depends on: from the kernel's architecture's apt, but kbuild's
    // programs (fixdep, modpost) run on this machine, so its linux-kbuild
    // comes from the machine's own.
    let arch = desc.arch();
    let spec = format!("{flavour}={}", kernel.version);
    let record = apt::Apt::for_arch(cache, arch).and_then(|a| a.show(&spec)).map_err(|e| HeadersError::package(name, "apt-cache show")(e.into()))?;
    let mut specs = vec![spec.clone()];
    specs.extend(header_dependencies(&record));
    let host = crate::arch::Arch::host().unwrap_or_default();
    let (kbuild, headers): (Vec<String>, Vec<String>) = specs.iter().cloned().partition(|s| s.starts_with("linux-kbuild-") && host != arch);

    tracing::info!(kernel = name, "downloading headers: {}", specs.join(" "));
    let bar = crate::ui::Bar::bytes(name, "downloading headers", None);
    let step = format!("downloading {}", specs.join(" "));
    let mut debs = f.download_for(arch, &headers, &bar).map_err(HeadersError::package(name, &step))?;
    if !kbuild.is_empty() {
        debs = f.download_for(host, &kbuild, &bar).map_err(HeadersError::package(name, &step))?;
    }
    bar.message("unpacking headers");
    let hashes: String = debs.iter().map(|d| d.sha256.as_str()).collect();
    let key = fsx::sha256_bytes(hashes.as_bytes());
    let entry = cache.headers_dir(&key);
    let build = tree_in(&entry);
    if !build.join("Makefile").exists() {
        let root = f.root().map_err(HeadersError::package(name, "unpacking the headers"))?;
        f.unpack_debs(&debs, &root).map_err(HeadersError::package(name, "unpacking the headers"))?;
        let makefile = tree_in(&root).join("Makefile");
        let text = fs::read_to_string(&makefile).map_err(|_| HeadersError::Layout { name: name.into(), path: makefile.clone() })?;
        fs::write(&makefile, rewrite_includes(&text, &entry)).map_err(io(&makefile))?;
        f.publish(&root, &entry).map_err(HeadersError::package(name, "publishing the headers"))?;
    }
    fsx::write_atomic(&pointer, key.as_bytes()).map_err(io(&pointer))?;
    Ok(build)
}

/// The header packages a flavour headers package depends on, from its
/// `apt-cache show` record: `linux-headers-*` and `linux-kbuild-*`, pinned
/// where the dependency says `(= version)`. The compiler package is not
/// needed: the host's gcc of the same major version builds the modules.
pub fn header_dependencies(record: &str) -> Vec<String> {
    let Some(depends) = apt::field(record, "Depends") else { return Vec::new() };
    depends
        .split(',')
        .filter_map(|dep| {
            let dep = dep.split('|').next()?.trim();
            let (name, constraint) = match dep.split_once('(') {
                Some((n, c)) => (n.trim(), Some(c.trim_end_matches(')').trim())),
                None => (dep, None),
            };
            if !(name.starts_with("linux-headers-") || name.starts_with("linux-kbuild-")) {
                return None;
            }
            match constraint.and_then(|c| c.strip_prefix('=')) {
                Some(v) => Some(format!("{name}={}", v.trim())),
                None => Some(name.to_string()),
            }
        })
        .collect()
}

/// Points `include /usr/src/…` lines at the same paths under `root`.
pub fn rewrite_includes(makefile: &str, root: &Path) -> String {
    makefile
        .lines()
        .map(|l| match l.strip_prefix("include /usr/src/") {
            Some(rest) => format!("include {}/usr/src/{rest}", root.display()),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_from_the_real_record() {
        let rec = "Package: linux-headers-6.1.0-54-cloud-amd64\nVersion: 6.1.190-1\nDepends: linux-headers-6.1.0-54-common (= 6.1.190-1), linux-kbuild-6.1 (>= 6.1.190-1), linux-compiler-gcc-12-x86\n";
        assert_eq!(header_dependencies(rec), ["linux-headers-6.1.0-54-common=6.1.190-1", "linux-kbuild-6.1"]);
    }

    #[test]
    fn absolute_include_is_rewritten() {
        let m = "include /usr/src/linux-headers-6.1.0-54-common/Makefile\n";
        assert_eq!(
            rewrite_includes(m, Path::new("/c/headers/abc")),
            "include /c/headers/abc/usr/src/linux-headers-6.1.0-54-common/Makefile\n"
        );
    }
}
