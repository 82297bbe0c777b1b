//! The lab's guest payload built on the host: kernel modules under test,
//! built out of tree against the run kernel's headers, and the workload
//! programs (static binaries, so they run in the minimal image without
//! their libraries). Both are cached by a hash of their sources and what
//! they are built against; a build error carries the compiler's output and
//! names the kernel.

pub mod calls;
mod files;

pub use files::{install, kind, Installed, Kind};

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
    #[error("building module `{}` for kernel `{kernel}` failed:\n{output}", dir.display())]
    ModuleBuild { dir: PathBuf, kernel: String, output: String },
    #[error("building module `{}` for kernel `{kernel}` produced no .ko", dir.display())]
    NoModule { dir: PathBuf, kernel: String },
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

/// A module built for one kernel.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuiltModule {
    /// The module name (`khm` for `khm.ko`).
    pub name: String,
    pub ko: PathBuf,
    pub sha256: String,
    /// Whether this build came from the cache.
    pub cached: bool,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PayloadError {
    let path = path.to_path_buf();
    move |source| PayloadError::Io { path, source }
}

/// The files of a module source directory that affect the build, sorted.
fn source_files(dir: &Path) -> Result<Vec<PathBuf>, PayloadError> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|source| PayloadError::Source { dir: dir.to_path_buf(), source })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n == "Kbuild" || n == "Makefile" || n.ends_with(".c") || n.ends_with(".h")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Builds the module in `dir` against the headers at `build_dir` (which
/// belong to the kernel `kernel_key` names uniquely), or takes it from the cache.
pub fn build_module(cache: &Cache, kernel: &str, kernel_key: &str, build_dir: &Path, dir: &Path) -> Result<BuiltModule, PayloadError> {
    let files = source_files(dir)?;
    let mut h = format!("module-v1\n{kernel_key}\n");
    for f in &files {
        h.push_str(&format!("{}\n{}\n", f.file_name().unwrap().to_string_lossy(), fsx::sha256_file(f).map_err(io(f))?));
    }
    let key = fsx::sha256_bytes(h.as_bytes());
    let entry = cache.module_dir(&key);
    if let Some(m) = find_ko(&entry, true)? {
        return Ok(m);
    }
    let _lock = cache.lock(Lock::Module(&key)).map_err(io(&cache.locks()))?;
    if let Some(m) = find_ko(&entry, true)? {
        return Ok(m);
    }
    // make writes its objects next to the sources: build in a copy.
    let scratch = cache.scratch("module-").map_err(io(&cache.tmp()))?;
    let work = scratch.path().join("src");
    fs::create_dir(&work).map_err(io(&work))?;
    for f in &files {
        fs::copy(f, work.join(f.file_name().unwrap())).map_err(io(f))?;
    }
    let out = Tool::new("make", MAKE_DEADLINE)
        .arg("-C")
        .arg(build_dir)
        .arg(format!("M={}", work.display()))
        .arg("modules")
        .output()
        .map_err(PayloadError::Tool)?;
    if !out.status.success() {
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        return Err(PayloadError::ModuleBuild { dir: dir.to_path_buf(), kernel: kernel.into(), output: crate::util::tool::tail(text.as_bytes()) });
    }
    let built = work.join("out");
    fs::create_dir(&built).map_err(io(&built))?;
    let mut any = false;
    for e in fs::read_dir(&work).map_err(io(&work))?.filter_map(|e| e.ok()) {
        if e.path().extension().is_some_and(|x| x == "ko") {
            fs::copy(e.path(), built.join(e.file_name())).map_err(io(&e.path()))?;
            any = true;
        }
    }
    if !any {
        return Err(PayloadError::NoModule { dir: dir.to_path_buf(), kernel: kernel.into() });
    }
    cache::publish_dir(&built, &entry).map_err(io(&entry))?;
    find_ko(&entry, false)?.ok_or_else(|| PayloadError::NoModule { dir: dir.to_path_buf(), kernel: kernel.into() })
}

/// The parameter names a built module declares (`modinfo -p`).
pub fn module_params(ko: &Path) -> Result<Vec<String>, PayloadError> {
    let out = Tool::new("modinfo", QUERY_DEADLINE).arg("-p").arg(ko).run().map_err(|e| PayloadError::ProgramBuild {
        source_file: ko.to_path_buf(),
        output: e.to_string(),
    })?;
    Ok(parse_modinfo_params(&String::from_utf8_lossy(&out.stdout)))
}

/// `modinfo -p` prints `name:description (type)` per parameter.
pub fn parse_modinfo_params(text: &str) -> Vec<String> {
    text.lines().filter_map(|l| l.split(':').next()).map(str::trim).filter(|n| !n.is_empty()).map(str::to_string).collect()
}

fn find_ko(entry: &Path, cached: bool) -> Result<Option<BuiltModule>, PayloadError> {
    let Ok(rd) = fs::read_dir(entry) else { return Ok(None) };
    let mut kos: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "ko")).collect();
    kos.sort();
    let Some(ko) = kos.into_iter().next() else { return Ok(None) };
    let name = ko.file_stem().unwrap().to_string_lossy().into_owned();
    let sha256 = fsx::sha256_file(&ko).map_err(io(&ko))?;
    Ok(Some(BuiltModule { name, ko, sha256, cached }))
}

/// Builds a static workload program `name` from C source `src`, or takes it from the cache.
pub fn build_program(cache: &Cache, name: &str, src: &[u8]) -> Result<PathBuf, PayloadError> {
    let source_file = PathBuf::from(format!("{name}.c"));
    let gcc = Tool::new("gcc", QUERY_DEADLINE).arg("--version").run().map_err(|e| PayloadError::ProgramBuild {
        source_file: source_file.clone(),
        output: e.to_string(),
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
    let out = Tool::new("gcc", GCC_DEADLINE)
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

#[cfg(test)]
mod tests {
    #[test]
    fn modinfo_params() {
        let text = "leak:1 = skip the put of last-reference closes (the bug), 0 = correct (int)\nsymbol:function to probe (charp)\n";
        assert_eq!(super::parse_modinfo_params(text), ["leak", "symbol"]);
        assert!(super::parse_modinfo_params("").is_empty());
    }
}
