//! The lab's guest payload built on the host: kernel modules under test,
//! built out of tree against the run kernel's headers, and the workload
//! programs (static binaries, so they run in the minimal image without
//! their libraries). Both are cached by a hash of their sources and what
//! they are built against; a build error carries the compiler's output and
//! names the kernel.

pub mod calls;
mod files;
pub mod kmod;

pub use files::{install, kind, Installed, Kind};
pub use kmod::{build_entry, BuiltEntry, BuiltModule, Target};

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cache::{self, Cache, Lock};
use crate::util::fsx;
use crate::util::tool::{Tool, ToolError};

/// `make modules` of one module against a kernel's headers.
const MAKE_DEADLINE: Duration = Duration::from_secs(10 * 60);
/// `gcc` of one workload program.
const GCC_DEADLINE: Duration = Duration::from_secs(5 * 60);
/// A quick query (`gcc --version`, `modinfo`).
const QUERY_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("module source `{}` cannot be read", dir.display())]
    Source {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("building module `{}` for kernel `{kernel}` failed: {output}", dir.display())]
    ModuleBuild { dir: PathBuf, kernel: String, output: String },
    #[error("building module `{}` for kernel `{kernel}` produced no .ko", dir.display())]
    NoModule { dir: PathBuf, kernel: String },
    #[error("building module `{}` for kernel `{kernel}` made no `{}` (built: {found})", dir.display(), ko.display())]
    MissingKo { dir: PathBuf, kernel: String, ko: PathBuf, found: String },
    #[error("the dkms package in `{}` cannot be built for kernel `{kernel}`", dir.display())]
    Dkms {
        dir: PathBuf,
        kernel: String,
        #[source]
        source: Box<kmod::dkms::DkmsError>,
    },
    #[error("patch `{}` does not apply to `{}` for kernel `{kernel}`: {failed}\n{output}", patch.display(), dir.display())]
    Patch { patch: PathBuf, dir: PathBuf, kernel: String, failed: String, output: String },
    #[error("patch `{}` for `{}` does not exist", patch.display(), dir.display())]
    PatchMissing { patch: PathBuf, dir: PathBuf },
    #[error("{what} `{}` cannot be read", path.display())]
    MissingFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` is not a loadable kernel module: {why}", ko.display())]
    NotAModule { ko: PathBuf, why: String },
    #[error("module `{}` was built for another kernel: its vermagic is `{vermagic}`, the run kernel `{kernel}` is release `{release}` (insmod would refuse it: rebuild it for {release}, or run the lab on the kernel it was built for)", ko.display())]
    Vermagic { ko: PathBuf, vermagic: String, kernel: String, release: String },
    #[error("building `{}` failed:\n{output}", source_file.display())]
    ProgramBuild { source_file: PathBuf, output: String },
    #[error("building the payload")]
    Tool(#[source] ToolError),
    #[error("payload cache I/O on `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PayloadError {
    let path = path.to_path_buf();
    move |source| PayloadError::Io { path, source }
}

/// Builds a static program `name` for guests of `arch` from C source
/// `src` (with the cross compiler when `arch` is not the host's), or takes
/// it from the cache.
pub fn build_program(cache: &Cache, name: &str, src: &[u8], arch: crate::arch::Arch) -> Result<PathBuf, PayloadError> {
    let source_file = PathBuf::from(format!("{name}.c"));
    let compiler = arch.gcc(crate::arch::Arch::host());
    let gcc = Tool::new(&compiler, QUERY_DEADLINE).arg("--version").run().map_err(|e| PayloadError::ProgramBuild {
        source_file: source_file.clone(),
        output: format!("{e} (for {arch} guests: apt-get install {} libc6-dev-{}-cross)", arch.cross_gcc_package(), arch.debian()),
    })?;
    let key = fsx::sha256_bytes(&[b"program-v1\n".as_slice(), &gcc.stdout, src].concat());
    let entry = cache.program_dir(&key);
    let dest = entry.join(name);
    if dest.exists() {
        return Ok(dest);
    }
    let scratch = cache.scratch("program-").map_err(io(&cache.tmp()))?;
    let dir = scratch.path().join("out");
    fs::create_dir(&dir).map_err(io(&dir))?;
    let c_file = scratch.path().join(&source_file);
    fs::write(&c_file, src).map_err(io(&c_file))?;
    let out = Tool::new(&compiler, GCC_DEADLINE)
        .args(["-O2", "-static", "-Wall", "-Wextra", "-o"])
        .arg(dir.join(name))
        .arg(&c_file)
        .output()
        .map_err(PayloadError::Tool)?;
    if !out.status.success() {
        return Err(PayloadError::ProgramBuild {
            source_file,
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let _lock = cache.lock(Lock::Program(&key)).map_err(io(&cache.locks()))?;
    cache::publish_dir(&dir, &entry).map_err(io(&entry))?;
    Ok(dest)
}

