//! Fetching a kernel into the cache. A Debian kernel is downloaded with
//! `apt-get download` into a scratch directory, hashed, unpacked with
//! `dpkg-deb -x`, given a `modules.dep` by `depmod -b` (the package ships
//! none), and only then renamed into `kernels/<sha256 of the .deb>/`; a
//! pointer `kernels/by-name/<name>.json` is written last. A crash at any step
//! leaves at most a scratch directory, never an entry that looks complete.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::descriptor::{Descriptor, Source};
use crate::cache::{self, Cache};
use crate::util::{fsx, tool};

/// A kernel unpacked in the cache, ready to boot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Kernel {
    /// Descriptor name, e.g. `debian-6.1.0-54-cloud-amd64`.
    pub name: String,
    /// `uname -r` of the kernel, e.g. `6.1.0-54-cloud-amd64`.
    pub release: String,
    /// Where it came from, e.g. `debian linux-image-…=6.1.190-1`.
    pub source: String,
    /// The package version that was fetched.
    pub version: String,
    /// sha256 of the fetched package: the cache key.
    pub package_sha256: String,
    /// sha256 of the bootable image.
    pub vmlinuz_sha256: String,
    /// The unpacked package root in the cache.
    pub root: PathBuf,
}

impl Kernel {
    pub fn vmlinuz(&self) -> PathBuf {
        self.root.join(format!("boot/vmlinuz-{}", self.release))
    }
    pub fn config(&self) -> PathBuf {
        self.root.join(format!("boot/config-{}", self.release))
    }
    /// `lib/modules/<release>` inside the unpacked package.
    pub fn modules_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("kernel `{name}`: package `{package}` is not in this machine's apt sources (run `apt-get update`, or pin a version the archive has): {detail}")]
    NotInArchive { name: String, package: String, detail: String },
    #[error("kernel `{name}`: download of `{package}` failed")]
    Download {
        name: String,
        package: String,
        #[source]
        source: tool::ToolError,
    },
    #[error("kernel `{name}`: cannot unpack `{}`", deb.display())]
    Unpack {
        name: String,
        deb: PathBuf,
        #[source]
        source: tool::ToolError,
    },
    #[error("kernel `{name}`: package `{package}` holds no boot/vmlinuz-*; is it a linux-image package?")]
    NoVmlinuz { name: String, package: String },
    #[error("kernel `{name}`: depmod failed for release {release}")]
    Depmod {
        name: String,
        release: String,
        #[source]
        source: tool::ToolError,
    },
    #[error("kernel `{name}`: cache I/O on `{}`", path.display())]
    Io {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Serialize, Deserialize)]
struct Pointer {
    package_sha256: String,
    source: String,
}

/// Resolves `desc` to an unpacked kernel, fetching it unless the cache has it.
/// Safe to call from several processes at once: the per-kernel lock makes the
/// second caller wait and then find the entry.
pub fn fetch(cache: &Cache, desc: &Descriptor) -> Result<Kernel, FetchError> {
    let name = desc.name.as_str();
    let io_err = |path: &Path| {
        let (name, path) = (name.to_string(), path.to_path_buf());
        move |source| FetchError::Io { name, path, source }
    };
    let _lock = cache.lock(&format!("kernel-{name}")).map_err(io_err(&cache.path("locks")))?;

    let pointer_path = cache.path(format!("kernels/by-name/{name}.json"));
    if let Some(k) = cached(cache, &pointer_path, desc) {
        return Ok(k);
    }

    let src = match &desc.source {
        Source::Debian(s) => s,
        Source::Local(l) => return local(desc, &l.dir),
    };
    let spec = match &src.version {
        Some(v) => format!("{}={}", src.package, v),
        None => src.package.clone(),
    };
    let scratch = cache.scratch("fetch-").map_err(io_err(&cache.path("tmp")))?;
    tracing::info!(kernel = name, package = %spec, "downloading kernel package with apt-get");
    let out = Command::new("apt-get")
        .args(["download", "-q", "-o", "APT::Sandbox::User=root"])
        .arg(&spec)
        .current_dir(scratch.path())
        .output()
        .map_err(|source| FetchError::Download {
            name: name.into(),
            package: spec.clone(),
            source: tool::ToolError::Spawn { program: "apt-get".into(), hint: tool::package_hint("apt-get"), source },
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let missing = ["Unable to locate package", "Can't select version", "was not found", "has no installation candidate"];
        if missing.iter().any(|m| stderr.contains(m)) {
            return Err(FetchError::NotInArchive { name: name.into(), package: spec, detail: stderr });
        }
        return Err(FetchError::Download {
            name: name.into(),
            package: spec.clone(),
            source: tool::ToolError::Failed { command: format!("apt-get download {spec}"), status: out.status, stderr },
        });
    }
    let deb = fs::read_dir(scratch.path())
        .map_err(io_err(scratch.path()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| FetchError::NoVmlinuz { name: name.into(), package: spec.clone() })?;
    let sha = fsx::sha256_file(&deb).map_err(io_err(&deb))?;
    let version = deb
        .file_name()
        .and_then(|f| f.to_str())
        .and_then(|f| f.split('_').nth(1))
        .unwrap_or("unknown")
        .replace("%3a", ":");

    let entry = cache.path(format!("kernels/{sha}"));
    if !entry.join("kernel.json").exists() {
        let root = scratch.path().join("root");
        tool::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))
            .map_err(|source| FetchError::Unpack { name: name.into(), deb: deb.clone(), source })?;
        let release = find_release(&root).ok_or_else(|| FetchError::NoVmlinuz { name: name.into(), package: spec.clone() })?;
        let modules = root.join("lib/modules").join(&release);
        if modules.is_dir() && !modules.join("modules.dep").exists() {
            tool::run(Command::new("depmod").arg("-b").arg(&root).arg(&release))
                .map_err(|source| FetchError::Depmod { name: name.into(), release: release.clone(), source })?;
        }
        let vmlinuz = root.join(format!("boot/vmlinuz-{release}"));
        let kernel = Kernel {
            name: name.into(),
            release,
            source: desc.source_summary(),
            version: version.clone(),
            package_sha256: sha.clone(),
            vmlinuz_sha256: fsx::sha256_file(&vmlinuz).map_err(io_err(&vmlinuz))?,
            root: entry.clone(),
        };
        let meta = serde_json::to_vec_pretty(&kernel).expect("kernel metadata serializes");
        fsx::write_atomic(&root.join("kernel.json"), &meta).map_err(io_err(&root))?;
        cache::publish_dir(&root, &entry).map_err(io_err(&entry))?;
    }
    let pointer = Pointer { package_sha256: sha, source: desc.source_summary() };
    fsx::write_atomic(&pointer_path, &serde_json::to_vec_pretty(&pointer).expect("pointer serializes"))
        .map_err(io_err(&pointer_path))?;
    cached(cache, &pointer_path, desc).ok_or_else(|| FetchError::Io {
        name: name.into(),
        path: entry,
        source: std::io::Error::other("published kernel entry is unreadable"),
    })
}

/// The cached kernel for a pointer, if complete and still matching the
/// descriptor's source (a changed descriptor refetches).
fn cached(cache: &Cache, pointer_path: &Path, desc: &Descriptor) -> Option<Kernel> {
    let pointer: Pointer = serde_json::from_slice(&fs::read(pointer_path).ok()?).ok()?;
    if pointer.source != desc.source_summary() {
        return None;
    }
    let entry = cache.path(format!("kernels/{}", pointer.package_sha256));
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
    })
}

/// The kernel release from `boot/vmlinuz-<release>`.
fn find_release(root: &Path) -> Option<String> {
    fs::read_dir(root.join("boot"))
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find_map(|n| n.strip_prefix("vmlinuz-").map(str::to_string))
}
