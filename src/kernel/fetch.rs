//! Fetching a kernel into the cache, through the one package path
//! (`package.rs`). A Debian kernel is downloaded with `apt-get download`,
//! hashed, unpacked with `dpkg-deb -x`; a kernel RPM on this machine (with
//! its `-devel` packages) is hashed and unpacked with the `rpm` crate (see
//! `rpm.rs`). Either is given a `modules.dep` by `depmod -b` (neither
//! package ships one), and only then renamed into `kernels/<key>/`, the key
//! being the sha256 of the package (or of the packages' hashes, for an RPM
//! with `-devel`); a pointer `kernels/by-name/<name>.json` is written last.
//! A crash at any step leaves at most a scratch directory, never an entry
//! that looks complete.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::apt::AptError;
use super::descriptor::{DebianSource, Descriptor, PackageSource, RpmSource};
use super::package::{self, Fetch, Package, PackageError};
use super::rpm::{self, UnpackError};
use super::types::Kernel;
use super::{headers, tree};
use crate::cache::{Cache, Lock};
use crate::util::fsx;
use crate::util::tool::{Tool, ToolError};

/// `depmod` over a kernel's module tree.
const DEPMOD_DEADLINE: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("kernel `{name}`: package `{package}` is not in this machine's apt sources (run `apt-get update`, or pin a version the archive has): {detail}")]
    NotInArchive { name: String, package: String, detail: String },
    #[error("kernel `{name}`: fetching `{package}`")]
    Package {
        name: String,
        package: String,
        #[source]
        source: Box<PackageError>,
    },
    #[error("kernel `{name}`: package `{package}` holds no boot/vmlinuz-*; is it a linux-image package?")]
    NoVmlinuz { name: String, package: String },
    #[error("kernel `{name}` ({origin}): cannot read the RPM `{}`", path.display())]
    RpmMissing {
        name: String,
        origin: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("kernel `{name}` ({origin}): package `{}`", path.display())]
    Rpm {
        name: String,
        origin: String,
        path: PathBuf,
        #[source]
        source: UnpackError,
    },
    #[error("kernel `{name}` ({origin}): the RPM `{}` holds no {what}", path.display())]
    RpmLayout { name: String, origin: String, path: PathBuf, what: String },
    #[error("kernel `{name}`: depmod failed for release {release}")]
    Depmod {
        name: String,
        release: String,
        #[source]
        source: ToolError,
    },
    #[error("kernel `{name}`: cache I/O on `{}`", path.display())]
    Io {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl FetchError {
    /// A failure of the package path for kernel `name`'s `package`; a
    /// package apt does not have keeps its own, actionable message.
    fn package(name: &str, package: &str) -> impl FnOnce(PackageError) -> FetchError {
        let (name, package) = (name.to_string(), package.to_string());
        move |source| match source {
            PackageError::Apt(AptError::NotInArchive { detail, .. }) => FetchError::NotInArchive { name, package, detail },
            source => FetchError::Package { name, package, source: Box::new(source) },
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Pointer {
    package_sha256: String,
    source: String,
    /// For local packages: their paths, sizes, mtimes and inodes when they
    /// were hashed; a change rehashes them. Empty for Debian packages.
    #[serde(default)]
    stamp: String,
}

/// Resolves `desc` to an unpacked kernel, fetching it unless the cache has it.
/// Safe to call from several processes at once: the per-kernel lock makes the
/// second caller wait and then find the entry.
pub fn fetch(cache: &Cache, desc: &Descriptor) -> Result<Kernel, FetchError> {
    match &desc.source {
        PackageSource::Local(l) => local(desc, &l.dir),
        PackageSource::Debian(s) => into_cache(cache, desc, String::new(), |f| download_deb(desc, s, f)),
        PackageSource::Rpm(r) => into_cache(cache, desc, rpm_stamp(desc, r)?, |_| stage_rpm(desc, r)),
    }
}

/// A package set ready to unpack: its cache key and version, and what to unpack.
struct Staged<'a> {
    key: String,
    version: String,
    packages: Packages<'a>,
}

enum Packages<'a> {
    Deb(Package),
    Rpm(&'a RpmSource),
}

/// The common path of every source that lands in the cache: lock, find or
/// stage the packages (`stage` may download them), unpack into scratch,
/// `depmod`, publish, point.
fn into_cache<'a>(
    cache: &Cache,
    desc: &Descriptor,
    stamp: String,
    stage: impl FnOnce(&mut Fetch) -> Result<Staged<'a>, FetchError>,
) -> Result<Kernel, FetchError> {
    let name = desc.name.as_str();
    let io_err = |path: &Path| {
        let (name, path) = (name.to_string(), path.to_path_buf());
        move |source| FetchError::Io { name, path, source }
    };
    let pkg_err = || FetchError::package(name, &desc.source_summary());
    let mut f = Fetch::begin(cache, Lock::Kernel(name), "fetch-").map_err(pkg_err())?;

    let pointer_path = cache.kernel_pointer(name);
    if let Some(k) = cached(cache, &pointer_path, desc, &stamp) {
        return Ok(k);
    }
    let staged = stage(&mut f)?;
    let sha = staged.key.clone();
    let entry = cache.kernel_dir(&sha);
    if !entry.join("kernel.json").exists() {
        let root = f.root().map_err(pkg_err())?;
        match &staged.packages {
            Packages::Deb(deb) => f.unpack_debs(std::slice::from_ref(deb), &root).map_err(pkg_err())?,
            Packages::Rpm(r) => unpack_rpm(desc, r, &root, &entry)?,
        }
        let release = find_release(&root).ok_or_else(|| FetchError::NoVmlinuz { name: name.into(), package: desc.source_summary() })?;
        let modules = root.join("lib/modules").join(&release);
        if modules.is_dir() && !modules.join("modules.dep").exists() {
            Tool::new("depmod", DEPMOD_DEADLINE)
                .arg("-b")
                .arg(&root)
                .arg(&release)
                .run()
                .map_err(|source| FetchError::Depmod { name: name.into(), release: release.clone(), source })?;
        }
        let vmlinuz = root.join(format!("boot/vmlinuz-{release}"));
        let kernel = Kernel {
            name: name.into(),
            release,
            source: desc.source_summary(),
            version: staged.version.clone(),
            package_sha256: sha.clone(),
            vmlinuz_sha256: fsx::sha256_file(&vmlinuz).map_err(io_err(&vmlinuz))?,
            root: entry.clone(),
            arch: desc.arch,
        };
        let meta = serde_json::to_vec_pretty(&kernel).expect("kernel metadata serializes");
        fsx::write_atomic(&root.join("kernel.json"), &meta).map_err(io_err(&root))?;
        f.publish(&root, &entry).map_err(pkg_err())?;
    }
    let pointer = Pointer { package_sha256: sha, source: desc.source_summary(), stamp };
    fsx::write_atomic(&pointer_path, &serde_json::to_vec_pretty(&pointer).expect("pointer serializes"))
        .map_err(io_err(&pointer_path))?;
    cached(cache, &pointer_path, desc, &pointer.stamp).ok_or_else(|| FetchError::Io {
        name: name.into(),
        path: entry,
        source: std::io::Error::other("published kernel entry is unreadable"),
    })
}

/// `apt-get download` of the descriptor's package.
fn download_deb(desc: &Descriptor, src: &DebianSource, f: &mut Fetch) -> Result<Staged<'static>, FetchError> {
    let name = desc.name.as_str();
    let spec = match &src.version {
        Some(v) => format!("{}={}", src.package, v),
        None => src.package.clone(),
    };
    tracing::info!(kernel = name, package = %spec, "downloading kernel package with apt-get");
    let bar = crate::ui::Bar::bytes(name, &format!("downloading {spec}"), None);
    let deb = f.download_for(desc.arch(), std::slice::from_ref(&spec), &bar).map_err(FetchError::package(name, &spec))?.remove(0);
    let version = deb
        .path
        .file_name()
        .and_then(|f| f.to_str())
        .and_then(|f| f.split('_').nth(1))
        .unwrap_or("unknown")
        .replace("%3a", ":");
    Ok(Staged { key: deb.sha256.clone(), version, packages: Packages::Deb(deb) })
}

/// The RPM kernel's packages, in order: the kernel package, then `devel`.
fn rpm_files(r: &RpmSource) -> impl Iterator<Item = &PathBuf> {
    std::iter::once(&r.package).chain(&r.devel)
}

/// What the cache remembers of local packages to know they have not
/// changed since they were hashed; an unreadable one is an error here.
fn rpm_stamp(desc: &Descriptor, r: &RpmSource) -> Result<String, FetchError> {
    use std::os::unix::fs::MetadataExt;
    let mut stamp = String::new();
    for p in rpm_files(r) {
        let m = fs::metadata(p).and_then(|m| {
            if m.is_file() {
                Ok(m)
            } else {
                Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"))
            }
        });
        let m = m.map_err(|source| FetchError::RpmMissing { name: desc.name.clone(), origin: desc.origin.clone(), path: p.clone(), source })?;
        stamp.push_str(&format!("{}\t{}\t{}.{}\t{}\n", p.display(), m.len(), m.mtime(), m.mtime_nsec(), m.ino()));
    }
    Ok(stamp)
}

/// Checks that every package is a binary RPM, then hashes them all.
fn stage_rpm<'a>(desc: &Descriptor, r: &'a RpmSource) -> Result<Staged<'a>, FetchError> {
    let mut version = String::new();
    for p in rpm_files(r) {
        let (nvr, meta) = rpm::identify(p).map_err(|source| FetchError::Rpm { name: desc.name.clone(), origin: desc.origin.clone(), path: p.clone(), source })?;
        if version.is_empty() {
            version = format!("{}-{}", meta.get_version().unwrap_or("unknown"), meta.get_release().unwrap_or("unknown"));
        }
        tracing::info!(kernel = %desc.name, package = %nvr, "hashing kernel RPM");
    }
    let files: Vec<PathBuf> = rpm_files(r).cloned().collect();
    let hashes: Vec<String> = package::hash(&files).map_err(FetchError::package(&desc.name, &desc.source_summary()))?.into_iter().map(|p| p.sha256).collect();
    let key = if hashes.len() == 1 { hashes[0].clone() } else { fsx::sha256_bytes(format!("{}\n", hashes.join("\n")).as_bytes()) };
    Ok(Staged { key, version, packages: Packages::Rpm(r) })
}

/// Unpacks the kernel package and its `-devel` packages into `root`, checks
/// that there is a kernel with modules, and points the build tree's
/// Makefile (which includes the source tree's by absolute path) at `entry`,
/// where `root` will be published.
fn unpack_rpm(desc: &Descriptor, r: &RpmSource, root: &Path, entry: &Path) -> Result<(), FetchError> {
    let (name, origin) = (desc.name.clone(), desc.origin.clone());
    for p in rpm_files(r) {
        tracing::info!(kernel = %name, package = %p.display(), "unpacking kernel RPM");
        rpm::unpack(p, root).map_err(|source| FetchError::Rpm { name: name.clone(), origin: origin.clone(), path: p.clone(), source })?;
    }
    let io_err = |path: &Path| {
        let (name, path) = (name.clone(), path.to_path_buf());
        move |source| FetchError::Io { name, path, source }
    };
    rpm::finish_layout(root).map_err(io_err(root))?;
    let layout = |what: &str| FetchError::RpmLayout { name: name.clone(), origin: origin.clone(), path: r.package.clone(), what: what.into() };
    let release = find_release(root).ok_or_else(|| {
        layout("kernel image (/boot/vmlinuz-<release> or /usr/lib/modules/<release>/vmlinuz); is it the kernel package (e.g. kernel-default), not a -devel one?")
    })?;
    if !root.join("lib/modules").join(&release).is_dir() {
        return Err(layout(&format!("module directory (/lib/modules/{release} or /usr/lib/modules/{release})")));
    }
    let build = Path::new("lib/modules").join(&release).join("build");
    if let Some(makefile) = tree::resolve_in_root(root, &build).map(|b| b.join("Makefile")).filter(|m| m.is_file()) {
        let text = fs::read_to_string(&makefile).map_err(io_err(&makefile))?;
        let new = headers::rewrite_includes(&text, entry);
        if new != text {
            fsx::write_atomic(&makefile, new.as_bytes()).map_err(io_err(&makefile))?;
        }
    }
    Ok(())
}

/// The cached kernel for a pointer, if complete and still matching the
/// descriptor's source (a changed descriptor refetches).
fn cached(cache: &Cache, pointer_path: &Path, desc: &Descriptor, stamp: &str) -> Option<Kernel> {
    let pointer: Pointer = serde_json::from_slice(&fs::read(pointer_path).ok()?).ok()?;
    if pointer.source != desc.source_summary() || pointer.stamp != stamp {
        return None;
    }
    let entry = cache.kernel_dir(&pointer.package_sha256);
    let mut k: Kernel = serde_json::from_slice(&fs::read(entry.join("kernel.json")).ok()?).ok()?;
    // The entry may have been renamed into place from a scratch path.
    k.root = entry;
    k.name = desc.name.clone();
    k.vmlinuz().exists().then_some(k)
}

/// A kernel in a local directory, used in place (no copy, no lock needed:
/// kernlab only reads it). Its modules need a `modules.dep`; run
/// `depmod -b DIR RELEASE` once if the tree lacks it.
fn local(desc: &Descriptor, dir: &Path) -> Result<Kernel, FetchError> {
    let name = desc.name.as_str();
    let release = find_release(dir).ok_or_else(|| FetchError::NoVmlinuz { name: name.into(), package: dir.display().to_string() })?;
    let vmlinuz = dir.join(format!("boot/vmlinuz-{release}"));
    let sha = fsx::sha256_file(&vmlinuz).map_err(|source| FetchError::Io { name: name.into(), path: vmlinuz.clone(), source })?;
    Ok(Kernel {
        name: name.into(),
        release,
        source: desc.source_summary(),
        version: "local".into(),
        package_sha256: sha.clone(),
        vmlinuz_sha256: sha,
        root: dir.to_path_buf(),
        arch: desc.arch,
    })
}

/// The kernel release from `boot/vmlinuz-<release>`; of several, the first
/// by name that has a module directory, else the first.
fn find_release(root: &Path) -> Option<String> {
    let mut found: Vec<String> = fs::read_dir(root.join("boot"))
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_prefix("vmlinuz-").map(str::to_string))
        .filter(|r| root.join("boot").join(format!("vmlinuz-{r}")).is_file())
        .collect();
    found.sort();
    let with_modules = found.iter().position(|r| root.join("lib/modules").join(r).is_dir()).unwrap_or(0);
    (!found.is_empty()).then(|| found.swap_remove(with_modules))
}

#[cfg(test)]
mod tests {
    use super::super::rpm::tests::{build, E};
    use super::super::Registry;
    use super::*;
    use ::rpm::CompressionType;

    const R: &str = "6.4.0-150600.23.25-default";

    /// A cache, a `kernels/` folder, and the descriptor `name` written into it.
    fn setup(d: &Path, name: &str, yaml: &str) -> (Cache, Descriptor) {
        let cache = Cache::at(d.join("cache")).unwrap();
        fs::create_dir_all(d.join("kernels")).unwrap();
        fs::write(d.join("kernels").join(format!("{name}.yaml")), yaml).unwrap();
        let desc = Registry::load(&[d.join("kernels")]).unwrap().get(name).unwrap().clone();
        (cache, desc)
    }

    fn kernel_rpm(path: &Path) {
        build(
            path,
            "kernel-default",
            CompressionType::Gzip,
            &[
                E::File(&format!("/boot/vmlinuz-{R}"), b"not really a kernel"),
                E::File(&format!("/boot/config-{R}"), b"CONFIG_MODULES=y\n"),
                E::Dir(&format!("/lib/modules/{R}/kernel")),
                E::File(&format!("/lib/modules/{R}/modules.builtin"), b""),
            ],
        );
    }

    #[test]
    fn an_rpm_kernel_with_devel_is_unpacked_once_with_its_build_tree() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("kernels")).unwrap();
        kernel_rpm(&d.path().join("kernels/kernel-default.rpm"));
        let obj = "/usr/src/linux-6.4.0-150600.23.25-obj/x86_64/default";
        build(
            &d.path().join("kernels/kernel-default-devel.rpm"),
            "kernel-default-devel",
            CompressionType::Zstd,
            &[
                E::File(&format!("{obj}/Makefile"), b"# generated\ninclude /usr/src/linux-6.4.0-150600.23.25/Makefile\n"),
                E::Link(&format!("/lib/modules/{R}/build"), obj),
            ],
        );
        build(
            &d.path().join("kernels/kernel-devel.rpm"),
            "kernel-devel",
            CompressionType::None,
            &[E::File("/usr/src/linux-6.4.0-150600.23.25/Makefile", b"VERSION = 6\n")],
        );
        let (cache, desc) = setup(
            d.path(),
            "sles",
            "source:\n  rpm:\n    package: ./kernel-default.rpm\n    devel: [kernel-default-devel.rpm, ./kernel-devel.rpm]\n",
        );
        let k = fetch(&cache, &desc).unwrap();
        assert_eq!(k.release, R);
        assert_eq!(k.version, "6.4.0-150600.23.25.1");
        assert!(k.source.starts_with("rpm ") && k.source.contains(" + "), "{}", k.source);
        assert_eq!(k.root, cache.kernel_dir(&k.package_sha256));
        assert_ne!(k.package_sha256, fsx::sha256_file(&d.path().join("kernels/kernel-default.rpm")).unwrap(), "the key covers the devel packages");
        assert_eq!(fs::read(k.vmlinuz()).unwrap(), b"not really a kernel");
        assert!(k.modules_dir().join("modules.dep").is_file(), "depmod ran");
        assert_eq!(fs::read_dir(cache.tmp()).unwrap().count(), 0);

        // The build tree is the unpacked obj directory; its Makefile includes
        // the unpacked source tree's.
        let b = headers::build_dir(&cache, &desc, &k).unwrap();
        assert_eq!(b, k.root.join(obj.trim_start_matches('/')));
        let makefile = fs::read_to_string(b.join("Makefile")).unwrap();
        let include = format!("include {}/usr/src/linux-6.4.0-150600.23.25/Makefile", k.root.display());
        assert!(makefile.contains(&include), "{makefile}");
        assert!(Path::new(include.trim_start_matches("include ")).is_file());

        // Found again without unpacking; a touched package is rehashed to the same entry.
        assert_eq!(fetch(&cache, &desc).unwrap(), k);
        let f = fs::File::options().append(true).open(d.path().join("kernels/kernel-devel.rpm")).unwrap();
        f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5)).unwrap();
        assert_eq!(fetch(&cache, &desc).unwrap(), k);
    }

    #[test]
    fn usr_merged_kernel_without_devel_boots_but_builds_nothing() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("kernels")).unwrap();
        build(
            &d.path().join("kernels/k.rpm"),
            "kernel-default",
            CompressionType::Xz,
            &[E::File(&format!("/usr/lib/modules/{R}/vmlinuz"), b"image"), E::Dir(&format!("/usr/lib/modules/{R}/kernel"))],
        );
        let (cache, desc) = setup(d.path(), "tw", "source:\n  rpm:\n    package: k.rpm\n");
        let k = fetch(&cache, &desc).unwrap();
        assert_eq!(k.release, R);
        assert_eq!(fs::read(k.vmlinuz()).unwrap(), b"image");
        assert!(k.modules_dir().join("modules.dep").is_file());
        let err = headers::build_dir(&cache, &desc, &k).unwrap_err().to_string();
        assert!(err.contains("kernel `tw`") && err.contains("kernels/tw.yaml") && err.contains("source.rpm.devel"), "{err}");
    }

    #[test]
    fn bad_rpm_sources_name_the_descriptor_and_the_file() {
        let d = tempfile::tempdir().unwrap();
        let k = d.path().join("kernels");
        fs::create_dir(&k).unwrap();
        fs::write(k.join("page.rpm"), "<html>404</html>").unwrap();
        build(&k.join("devel.rpm"), "kernel-default-devel", CompressionType::Gzip, &[E::Link(&format!("/lib/modules/{R}/build"), "/usr/src/x")]);
        build(&k.join("nomods.rpm"), "kernel-default", CompressionType::Gzip, &[E::File(&format!("/boot/vmlinuz-{R}"), b"image")]);
        kernel_rpm(&k.join("good.rpm"));
        let cases = [
            ("package: missing.rpm", "missing.rpm", "cannot read the RPM"),
            ("package: page.rpm", "page.rpm", "not an RPM package"),
            ("package: good.rpm\n    devel: [page.rpm]", "page.rpm", "not an RPM package"),
            ("package: devel.rpm", "devel.rpm", "holds no kernel image"),
            ("package: nomods.rpm", "nomods.rpm", "holds no module directory"),
        ];
        for (src, file, want) in cases {
            let (cache, desc) = setup(d.path(), "bad", &format!("source:\n  rpm:\n    {src}\n"));
            let err = fetch(&cache, &desc).unwrap_err();
            let text = format!("{err}: {}", std::error::Error::source(&err).map(|s| s.to_string()).unwrap_or_default());
            assert!(text.contains("kernels/bad.yaml") && text.contains(&format!("kernels/{file}")) && text.contains(want), "{src}: {text}");
            assert_eq!(fs::read_dir(cache.tmp()).unwrap().count(), 0, "{src}: scratch left behind");
            assert!(!cache.kernel_pointer("bad").exists());
        }
    }

    #[test]
    fn a_local_tree_finds_its_build_tree_inside_or_on_this_machine() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("tree");
        fs::create_dir_all(dir.join("boot")).unwrap();
        fs::write(dir.join(format!("boot/vmlinuz-{R}")), b"image").unwrap();
        let mods = dir.join("lib/modules").join(R);
        fs::create_dir_all(&mods).unwrap();
        // Package-style: an absolute link that means a path inside the tree.
        fs::create_dir_all(dir.join("usr/src/linux-obj")).unwrap();
        fs::write(dir.join("usr/src/linux-obj/Makefile"), "").unwrap();
        std::os::unix::fs::symlink("/usr/src/linux-obj", mods.join("build")).unwrap();
        let (cache, desc) = setup(d.path(), "mine", "source:\n  local:\n    dir: ../tree\n");
        let k = fetch(&cache, &desc).unwrap();
        assert_eq!(k.release, R);
        let canon = |p: PathBuf| p.canonicalize().unwrap();
        assert_eq!(canon(headers::build_dir(&cache, &desc, &k).unwrap()), canon(dir.join("usr/src/linux-obj")));
        // Self-built: an absolute link to the build directory on this machine.
        let elsewhere = d.path().join("linux-build");
        fs::create_dir(&elsewhere).unwrap();
        fs::write(elsewhere.join("Makefile"), "").unwrap();
        fs::remove_file(mods.join("build")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, mods.join("build")).unwrap();
        assert_eq!(canon(headers::build_dir(&cache, &desc, &k).unwrap()), canon(elsewhere));
        // Neither: a clear error.
        fs::remove_file(mods.join("build")).unwrap();
        let err = headers::build_dir(&cache, &desc, &k).unwrap_err().to_string();
        assert!(err.contains("no build directory"), "{err}");
    }

    #[test]
    fn a_local_kernel_is_of_the_arch_its_descriptor_names() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("boot")).unwrap();
        std::fs::write(d.path().join("boot/vmlinuz-6.1.0-mine"), b"kernel").unwrap();
        let text = format!("arch: arm64\nsource:\n  local:\n    dir: {}\n", d.path().display());
        let desc = Descriptor::parse("mine", "kernels/mine.yaml", &text).unwrap();
        let cache = Cache::at(d.path().join("cache")).unwrap();
        let k = fetch(&cache, &desc).unwrap();
        assert_eq!((k.arch, k.arch()), (Some(crate::arch::Arch::Aarch64), crate::arch::Arch::Aarch64));
        let plain = Descriptor::parse("mine", "kernels/mine.yaml", &text.replace("arch: arm64\n", "")).unwrap();
        assert_eq!(fetch(&cache, &plain).unwrap().arch(), crate::arch::Arch::X86_64, "a release without a suffix, no arch: x86_64");
    }
}
