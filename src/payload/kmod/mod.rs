//! The lab's kernel modules, built for the run kernel: one `modules[i]`
//! entry at a time, in list order, each a source tree built the way its
//! vendor builds it or a prebuilt `.ko`.
//!
//! - A tree with a `dkms.conf` is built as dkms builds it ([`dkms`]): a
//!   scratch copy laid out where its `MAKE` expects it
//!   (`$dkms_tree/$module/$module_version/build`), its `PATCH`es, its
//!   `MAKE`, its `BUILT_MODULE_NAME`s in order.
//! - Otherwise the lab's `build` commands, or kbuild's own
//!   `make -C $KDIR M=$PWD modules`, in a scratch copy of the tree
//!   ([`tree`]); the modules to load are the lab's `ko` list, or every
//!   `.ko` built, dependencies first.
//! - A prebuilt `.ko` is taken as it is once its `vermagic` names the run
//!   kernel's release.
//!
//! The lab's `patches` go on the scratch copy with `patch -p1` first. A
//! later entry builds against every earlier entry's `Module.symvers`
//! (`KBUILD_EXTRA_SYMBOLS`), as a product's second module builds against
//! its core. Builds are cached by the hash of everything that goes into
//! them: the tree's content, the patches, the commands, the kernel, the
//! earlier entries' symbols.

pub mod dkms;
pub mod modinfo;
pub mod tree;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::{io, PayloadError, MAKE_DEADLINE};
use crate::cache::{self, Cache, Lock};
use crate::lab;
use crate::util::fsx;
use crate::util::tool::Tool;

/// The default build of a tree without a dkms.conf: kbuild's external
/// module build.
pub const DEFAULT_BUILD: &str = "make -C \"$KDIR\" M=\"$PWD\" modules";

/// The kernel a module is built for.
#[derive(Debug, Clone)]
pub struct Target {
    /// The kernel's descriptor name, for messages.
    pub name: String,
    /// What identifies the kernel's build uniquely (its package's sha256).
    pub key: String,
    /// `uname -r`.
    pub release: String,
    /// Its architecture (`uname -m` is dkms's `$arch`); a build for
    /// another than the host's gets `ARCH=` and `CROSS_COMPILE=`.
    pub arch: crate::arch::Arch,
    /// The kernel's headers, prepared for out-of-tree builds (`KDIR`).
    pub headers: PathBuf,
}

impl Target {
    /// `kernel`, whose prepared headers are at `headers` (none needed for
    /// prebuilt modules).
    pub fn of(kernel: &crate::kernel::Kernel, headers: PathBuf) -> Target {
        Target { name: kernel.name.clone(), key: kernel.package_sha256.clone(), release: kernel.release.clone(), arch: kernel.arch(), headers }
    }
}

/// How an entry's modules came to be.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum How {
    /// kbuild's `make M=`.
    Kbuild,
    /// The lab's `build` commands.
    Commands,
    /// The tree's dkms.conf.
    Dkms { package: String, version: String },
    /// A vendor's `.ko`, as it is.
    Prebuilt,
}

impl std::fmt::Display for How {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            How::Kbuild => f.write_str("kbuild"),
            How::Commands => f.write_str("commands"),
            How::Dkms { package, version } => write!(f, "dkms {package} {version}"),
            How::Prebuilt => f.write_str("prebuilt"),
        }
    }
}

/// One module ready to load.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BuiltModule {
    /// The name the kernel knows it by (`khm`), as insmod and rmmod use it.
    pub name: String,
    /// The object (in the module cache, or the vendor's file).
    pub ko: PathBuf,
    pub sha256: String,
    /// Whether this build came from the cache.
    pub cached: bool,
    /// Where the object was in the tree (or the vendor's path), for reports.
    pub origin: String,
    /// The parameters it declares.
    pub params: Vec<String>,
    /// `vermagic=`.
    pub vermagic: String,
    /// How its entry was built.
    pub how: How,
}

/// One `modules[i]` entry, built.
#[derive(Debug, Clone)]
pub struct BuiltEntry {
    /// Its modules, in load order.
    pub modules: Vec<BuiltModule>,
    /// The `Module.symvers` its build wrote, for later entries.
    pub symvers: Vec<PathBuf>,
    pub how: How,
    /// dkms.conf variables set that kernlab does not act on.
    pub ignored: Vec<String>,
}

/// What a cache entry records besides the objects.
#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    how: How,
    ignored: Vec<String>,
    /// (file in the entry, origin in the tree), in load order.
    modules: Vec<(String, String)>,
    symvers: Vec<String>,
}

/// Builds (or takes from the cache) the entry `m` of a lab in `lab_dir`
/// for `target`, with `extra_symvers` from the entries before it.
pub fn build_entry(cache: &Cache, target: &Target, lab_dir: &Path, m: &lab::Module, extra_symvers: &[PathBuf]) -> Result<BuiltEntry, PayloadError> {
    let Some(source) = &m.source else {
        return prebuilt(target, lab_dir, &m.ko);
    };
    let dir = lab_dir.join(source);
    let entries = tree::entries(&dir).map_err(|source| PayloadError::Source { dir: dir.clone(), source })?;
    let mut key = format!("kmod-v2\n{}\n{}\n{}\n", target.key, target.arch, tree::hash(&dir, &entries).map_err(|source| PayloadError::Source { dir: dir.clone(), source })?);
    for p in &m.patches {
        let path = lab_dir.join(p);
        key.push_str(&format!("patch {} {}\n", p.display(), fsx::sha256_file(&path).map_err(|source| PayloadError::MissingFile { what: "patch", path: path.clone(), source })?));
    }
    for c in &m.build {
        key.push_str(&format!("build {c}\n"));
    }
    for k in &m.ko {
        key.push_str(&format!("ko {}\n", k.display()));
    }
    for s in extra_symvers {
        key.push_str(&format!("symvers {}\n", fsx::sha256_file(s).map_err(io(s))?));
    }
    let key = fsx::sha256_bytes(key.as_bytes());
    let entry = cache.module_dir(&key);
    if let Some(b) = read_entry(&entry, true)? {
        return Ok(b);
    }
    let _lock = cache.lock(Lock::Module(&key)).map_err(io(&cache.locks()))?;
    if let Some(b) = read_entry(&entry, true)? {
        return Ok(b);
    }
    let scratch = cache.scratch("module-").map_err(io(&cache.tmp()))?;
    let staged = build_fresh(scratch.path(), target, lab_dir, &dir, &entries, m, extra_symvers)?;
    cache::publish_dir(&staged, &entry).map_err(io(&entry))?;
    read_entry(&entry, false)?.ok_or_else(|| PayloadError::NoModule { dir: dir.clone(), kernel: target.name.clone() })
}

/// The build itself, in `scratch`; returns the staged cache entry.
fn build_fresh(scratch: &Path, target: &Target, lab_dir: &Path, dir: &Path, entries: &[tree::Entry], m: &lab::Module, extra_symvers: &[PathBuf]) -> Result<PathBuf, PayloadError> {
    let conf = dir.join("dkms.conf");
    let dkms = m.build.is_empty() && conf.is_file();
    // dkms's layout when the tree is a dkms package; else the tree under
    // its own name (so paths in compiler messages read like the user's).
    let (work, plan, vars) = if dkms {
        let vars = dkms::Vars {
            kernelver: target.release.clone(),
            arch: target.arch.uname().into(),
            kernel_source_dir: target.headers.clone(),
            dkms_tree: scratch.join("dkms"),
            source_tree: scratch.join("src"),
            install_tree: PathBuf::from("/lib/modules"),
            module: String::new(),
            module_version: String::new(),
        };
        let (vars, plan) = dkms::read(&conf, &vars).map_err(|e| PayloadError::Dkms { dir: dir.to_path_buf(), kernel: target.name.clone(), source: Box::new(e) })?;
        let source = vars.source_dir();
        fs::create_dir_all(&source).map_err(io(&source))?;
        tree::copy(dir, entries, &source).map_err(io(&source))?;
        let work = vars.build_dir();
        fs::create_dir_all(&work).map_err(io(&work))?;
        tree::copy(dir, entries, &work).map_err(io(&work))?;
        std::os::unix::fs::symlink(&source, work.parent().unwrap().join("source")).map_err(io(&work))?;
        (work, Some(plan), Some(vars))
    } else {
        let name = dir.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "module".into());
        let work = scratch.join("src").join(name);
        fs::create_dir_all(&work).map_err(io(&work))?;
        tree::copy(dir, entries, &work).map_err(io(&work))?;
        (work, None, None)
    };
    let symvers_env = extra_symvers.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" ");
    let shell = |cmd: &str, what: &str| -> Result<(), PayloadError> {
        let prelude = vars.as_ref().map(dkms::Vars::shell_prelude).unwrap_or_default();
        let script = format!("{prelude}eval \"$1\"");
        let mut t = Tool::new("bash", MAKE_DEADLINE).arg("-c").arg(script).arg("kernlab-build").arg(cmd).current_dir(&work).env("KDIR", &target.headers).env("KVER", &target.release);
        if !symvers_env.is_empty() {
            t = t.env("KBUILD_EXTRA_SYMBOLS", &symvers_env);
        }
        for (k, v) in target.arch.kbuild_env(crate::arch::Arch::host()) {
            t = t.env(k, v);
        }
        let out = t.output().map_err(PayloadError::Tool)?;
        if out.status.success() {
            return Ok(());
        }
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let text = text.replace(&format!("{}/", work.display()), &format!("{}/", dir.display()));
        let at = first_error(&text).map(|f| format!(" at `{f}`")).unwrap_or_default();
        let what = if what.starts_with("the ") { what.to_string() } else { format!("`{what}`") };
        Err(PayloadError::ModuleBuild { dir: dir.to_path_buf(), kernel: target.name.clone(), output: format!("{what} failed{at}:\n{}", crate::util::tool::tail(text.as_bytes())) })
    };

    // The package's own patches (dkms), then the lab's.
    if let Some(plan) = &plan {
        for p in &plan.patches {
            let file = work.join("patches").join(p);
            if !file.is_file() {
                return Err(PayloadError::PatchMissing { patch: PathBuf::from("patches").join(p), dir: dir.to_path_buf() });
            }
            apply_patch(&work, &file, &PathBuf::from("patches").join(p), dir, &target.name)?;
        }
    }
    for p in &m.patches {
        apply_patch(&work, &lab_dir.join(p), p, dir, &target.name)?;
    }

    let how;
    let mut wanted: Vec<PathBuf> = m.ko.clone();
    if let (Some(plan), Some(_)) = (&plan, &vars) {
        how = How::Dkms { package: plan.package_name.clone(), version: plan.package_version.clone() };
        // dkms runs the clean command first and does not check it.
        let _ = shell(&plan.clean, &plan.clean);
        if let Some(s) = &plan.pre_build {
            shell(&format!("./{s}"), s)?;
        }
        shell(&plan.make, "the dkms.conf's MAKE")?;
        if let Some(s) = &plan.post_build {
            shell(&format!("./{s}"), s)?;
        }
        if wanted.is_empty() {
            wanted = plan.modules.iter().map(|b| b.path()).collect();
        }
        for b in plan.modules.iter().filter(|b| b.strip) {
            let ko = work.join(b.path());
            if ko.is_file() {
                let _ = Tool::new("strip", MAKE_DEADLINE).arg("-g").arg(&ko).output();
            }
        }
    } else if m.build.is_empty() {
        how = How::Kbuild;
        shell(DEFAULT_BUILD, DEFAULT_BUILD)?;
    } else {
        how = How::Commands;
        for c in &m.build {
            shell(c, c)?;
        }
    }

    let kos = if wanted.is_empty() {
        built_in_order(&work).map_err(io(&work))?
    } else {
        let mut v = Vec::new();
        for k in &wanted {
            let p = work.join(k);
            if !p.is_file() {
                let found = built_in_order(&work).unwrap_or_default().iter().map(|p| p.strip_prefix(&work).unwrap_or(p).display().to_string()).collect::<Vec<_>>();
                return Err(PayloadError::MissingKo { dir: dir.to_path_buf(), kernel: target.name.clone(), ko: k.clone(), found: if found.is_empty() { "none".into() } else { found.join(", ") } });
            }
            v.push(p);
        }
        v
    };
    if kos.is_empty() {
        return Err(PayloadError::NoModule { dir: dir.to_path_buf(), kernel: target.name.clone() });
    }
    let staged = scratch.join("out");
    fs::create_dir(&staged).map_err(io(&staged))?;
    let mut record = Record { how, ignored: plan.map(|p| p.ignored).unwrap_or_default(), modules: Vec::new(), symvers: Vec::new() };
    for (i, ko) in kos.iter().enumerate() {
        let file = format!("{i:02}-{}", ko.file_name().unwrap().to_string_lossy());
        fs::copy(ko, staged.join(&file)).map_err(io(ko))?;
        record.modules.push((file, ko.strip_prefix(&work).unwrap_or(ko).display().to_string()));
    }
    for (i, s) in symvers(&work).into_iter().enumerate() {
        let file = format!("{i:02}-Module.symvers");
        fs::copy(&s, staged.join(&file)).map_err(io(&s))?;
        record.symvers.push(file);
    }
    let json = serde_json::to_vec_pretty(&record).expect("a record serializes");
    fs::write(staged.join("kmod.json"), json).map_err(io(&staged))?;
    Ok(staged)
}

/// Applies `patch` (shown as `shown`) to `work` with `patch -p1`; a patch
/// that does not apply is an error naming it, the file and the hunks.
fn apply_patch(work: &Path, patch: &Path, shown: &Path, dir: &Path, kernel: &str) -> Result<(), PayloadError> {
    if !patch.is_file() {
        return Err(PayloadError::PatchMissing { patch: shown.to_path_buf(), dir: dir.to_path_buf() });
    }
    let out = Tool::new("patch", MAKE_DEADLINE).args(["-p1", "--batch", "--forward", "--no-backup-if-mismatch", "-r", "-", "-i"]).arg(patch).current_dir(work).output().map_err(PayloadError::Tool)?;
    if out.status.success() {
        return Ok(());
    }
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Err(PayloadError::Patch { patch: shown.to_path_buf(), dir: dir.to_path_buf(), kernel: kernel.to_string(), failed: failed_hunks(&text), output: crate::util::tool::tail(text.as_bytes()) })
}

/// `patch`'s own words on what failed: `FILE: Hunk #N FAILED at L` per
/// failed hunk, or its complaint when it found nothing to patch.
pub fn failed_hunks(text: &str) -> String {
    let mut file = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(f) = line.strip_prefix("patching file ") {
            file = f.trim().trim_matches('\'').to_string();
        } else if line.starts_with("Hunk #") && line.contains("FAILED") {
            let hunk = line.split(" (").next().unwrap_or(line).trim_end_matches('.');
            out.push(format!("{file}: {hunk}"));
        } else if line.starts_with("can't find file to patch") || line.contains("No such file") || line.contains("Reversed (or previously applied) patch") || line.contains("Only garbage") {
            out.push(format!("{}{}", if file.is_empty() { String::new() } else { format!("{file}: ") }, line.trim()));
        }
    }
    if out.is_empty() {
        text.lines().find(|l| !l.trim().is_empty()).unwrap_or("patch failed").trim().to_string()
    } else {
        out.join("; ")
    }
}

/// The first `FILE:LINE:COL: error` (or `FILE:LINE: error`) of compiler or
/// make output, as `FILE:LINE`.
pub fn first_error(text: &str) -> Option<String> {
    for line in text.lines() {
        let mut parts = line.splitn(4, ':');
        let (Some(file), Some(l)) = (parts.next(), parts.next()) else { continue };
        if l.trim().parse::<u32>().is_err() || file.contains(' ') {
            continue;
        }
        if line.contains("error") || line.contains("Error") {
            return Some(format!("{}:{}", file.trim(), l.trim()));
        }
    }
    text.lines().find(|l| l.contains("ERROR:")).map(|l| l.trim().to_string())
}

/// Every `.ko` under `work`, dependencies first (modinfo's `depends`), else
/// in kbuild's `modules.order`, else by path.
fn built_in_order(work: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut kos = Vec::new();
    let mut orders = Vec::new();
    for e in walk(work)? {
        let name = e.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.ends_with(".ko") {
            kos.push(e);
        } else if name == "modules.order" {
            orders.push(e);
        }
    }
    kos.sort();
    // modules.order names objects relative to the M= directory it is in,
    // `dir/x.ko` (6.1) or `dir/x.o` (6.12).
    let mut rank: BTreeMap<PathBuf, usize> = BTreeMap::new();
    orders.sort_by_key(|p| p.components().count());
    for o in &orders {
        let base = o.parent().unwrap_or(work);
        for line in fs::read_to_string(o).unwrap_or_default().lines() {
            let p = base.join(line.trim().trim_start_matches("kernel/")).with_extension("ko");
            let n = rank.len();
            rank.entry(p).or_insert(n);
        }
    }
    let infos: Vec<modinfo::ModInfo> = kos.iter().map(|k| modinfo::read(k).unwrap_or_default()).collect();
    let mut idx: Vec<usize> = (0..kos.len()).collect();
    idx.sort_by_key(|i| (rank.get(&kos[*i]).copied().unwrap_or(usize::MAX), *i));
    let names: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
    let deps: Vec<Vec<usize>> = infos.iter().map(|i| i.depends.iter().filter_map(|d| names.iter().position(|n| n == d)).collect()).collect();
    Ok(topo(&idx, &deps).into_iter().map(|i| kos[i].clone()).collect())
}

/// `order` rearranged so that each item comes after its `deps` (a stable
/// topological sort; a cycle keeps the given order for its members).
pub fn topo(order: &[usize], deps: &[Vec<usize>]) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    fn visit(i: usize, deps: &[Vec<usize>], out: &mut Vec<usize>, on: &mut Vec<usize>) {
        if out.contains(&i) || on.contains(&i) {
            return;
        }
        on.push(i);
        for d in &deps[i] {
            visit(*d, deps, out, on);
        }
        on.pop();
        out.push(i);
    }
    for i in order {
        visit(*i, deps, &mut out, &mut Vec::new());
    }
    out
}

/// Every file under `dir` (no symlinks followed).
fn walk(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)? {
            let e = e?;
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }
    Ok(out)
}

/// The non-empty `Module.symvers` files a build wrote.
fn symvers(work: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walk(work).unwrap_or_default().into_iter().filter(|p| p.file_name().is_some_and(|n| n == "Module.symvers") && fs::metadata(p).is_ok_and(|m| m.len() > 0)).collect();
    v.sort();
    v
}

/// A cache entry, if complete.
fn read_entry(entry: &Path, cached: bool) -> Result<Option<BuiltEntry>, PayloadError> {
    let Ok(text) = fs::read(entry.join("kmod.json")) else { return Ok(None) };
    let Ok(record) = serde_json::from_slice::<Record>(&text) else { return Ok(None) };
    let mut modules = Vec::new();
    for (file, origin) in &record.modules {
        let ko = entry.join(file);
        let info = modinfo::read(&ko).map_err(|why| PayloadError::NotAModule { ko: ko.clone(), why })?;
        modules.push(BuiltModule { name: info.name.clone(), sha256: fsx::sha256_file(&ko).map_err(io(&ko))?, ko, cached, origin: origin.clone(), params: info.params, vermagic: info.vermagic, how: record.how.clone() });
    }
    let symvers = record.symvers.iter().map(|f| entry.join(f)).collect();
    Ok(Some(BuiltEntry { modules, symvers, how: record.how, ignored: record.ignored }))
}

/// A vendor's `.ko` files, checked against the run kernel.
fn prebuilt(target: &Target, lab_dir: &Path, kos: &[PathBuf]) -> Result<BuiltEntry, PayloadError> {
    let mut modules = Vec::new();
    for k in kos {
        let ko = lab_dir.join(k);
        if !ko.is_file() {
            return Err(PayloadError::MissingFile { what: "prebuilt module", path: ko.clone(), source: std::io::Error::from(std::io::ErrorKind::NotFound) });
        }
        let info = modinfo::read(&ko).map_err(|why| PayloadError::NotAModule { ko: ko.clone(), why })?;
        check_vermagic(&info, &ko, target)?;
        modules.push(BuiltModule { name: info.name.clone(), sha256: fsx::sha256_file(&ko).map_err(io(&ko))?, ko, cached: false, origin: k.display().to_string(), params: info.params, vermagic: info.vermagic, how: How::Prebuilt });
    }
    Ok(BuiltEntry { modules, symvers: Vec::new(), how: How::Prebuilt, ignored: Vec::new() })
}

/// insmod refuses a module whose vermagic names another release (or other
/// flags); say so before anything boots.
pub fn check_vermagic(info: &modinfo::ModInfo, ko: &Path, target: &Target) -> Result<(), PayloadError> {
    if info.release() == target.release {
        return Ok(());
    }
    Err(PayloadError::Vermagic { ko: ko.to_path_buf(), vermagic: info.vermagic.clone(), kernel: target.name.clone(), release: target.release.clone() })
}

/// The parameters of `entry` (the lab's `params`) assigned to its modules:
/// `module.name` to that module, a plain `name` to the one module that
/// declares it. Errors name the parameter and what the modules declare.
pub fn assign_params(params: &BTreeMap<String, String>, modules: &[(String, Vec<String>)]) -> Result<Vec<BTreeMap<String, String>>, String> {
    let mut out = vec![BTreeMap::new(); modules.len()];
    let declared = || modules.iter().map(|(n, p)| format!("{n}: {}", if p.is_empty() { "none".to_string() } else { p.join(", ") })).collect::<Vec<_>>().join("; ");
    for (k, v) in params {
        let (target, name) = match k.split_once('.') {
            Some((m, p)) => match modules.iter().position(|(n, _)| n == m) {
                Some(i) => (i, p),
                None => return Err(format!("parameter `{k}` names module `{m}`, which this entry does not load (it loads {})", modules.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", "))),
            },
            None => {
                let owners: Vec<usize> = (0..modules.len()).filter(|i| modules[*i].1.iter().any(|p| p == k)).collect();
                match owners.as_slice() {
                    [i] => (*i, k.as_str()),
                    [] if modules.len() == 1 => (0, k.as_str()),
                    [] => return Err(format!("no module of this entry declares parameter `{k}` (declared: {})", declared())),
                    many => {
                        let names: Vec<&str> = many.iter().map(|i| modules[*i].0.as_str()).collect();
                        return Err(format!("parameter `{k}` is declared by {}: write `{}.{k}`", names.join(" and "), names[0]));
                    }
                }
            }
        };
        if !modules[target].1.iter().any(|p| p == name) {
            return Err(format!("module `{}` has no parameter `{name}` (it declares: {})", modules[target].0, if modules[target].1.is_empty() { "none".to_string() } else { modules[target].1.join(", ") }));
        }
        out[target].insert(name.to_string(), v.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_go_to_the_module_that_declares_them() {
        let mods = vec![("prod_core".to_string(), vec!["debug".to_string(), "queue".to_string()]), ("prod_pipe".to_string(), vec!["debug".to_string(), "leak".to_string()])];
        let p = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
        let a = assign_params(&p(&[("leak", "1"), ("queue", "64"), ("prod_pipe.debug", "2")]), &mods).unwrap();
        assert_eq!(a[0], p(&[("queue", "64")]));
        assert_eq!(a[1], p(&[("leak", "1"), ("debug", "2")]));
        let e = assign_params(&p(&[("debug", "1")]), &mods).unwrap_err();
        assert!(e.contains("declared by prod_core and prod_pipe: write `prod_core.debug`"), "{e}");
        let e = assign_params(&p(&[("lek", "1")]), &mods).unwrap_err();
        assert!(e.contains("no module of this entry declares parameter `lek`") && e.contains("prod_pipe: debug, leak"), "{e}");
        let e = assign_params(&p(&[("other.x", "1")]), &mods).unwrap_err();
        assert!(e.contains("which this entry does not load"), "{e}");
        let e = assign_params(&p(&[("prod_core.leak", "1")]), &mods).unwrap_err();
        assert!(e.contains("module `prod_core` has no parameter `leak`"), "{e}");
        // One module: a typo is that module's error.
        let e = assign_params(&p(&[("lek", "1")]), &mods[1..]).unwrap_err();
        assert!(e.contains("module `prod_pipe` has no parameter `lek`"), "{e}");
    }

    #[test]
    fn topological_order_keeps_the_given_order_otherwise() {
        // 0 depends on 2; 1 on nothing; 2 on 1.
        let deps = vec![vec![2], vec![], vec![1]];
        assert_eq!(topo(&[0, 1, 2], &deps), [1, 2, 0]);
        assert_eq!(topo(&[1, 0, 2], &deps), [1, 2, 0]);
        // A cycle does not loop.
        assert_eq!(topo(&[0, 1], &[vec![1], vec![0]]), [1, 0]);
    }

    #[test]
    fn patch_and_compiler_output_are_read_for_the_culprit() {
        let out = "patching file core/api.c\nHunk #1 succeeded at 10.\nHunk #2 FAILED at 41.\n1 out of 2 hunks FAILED\npatching file include/linux/prod.h\n";
        assert_eq!(failed_hunks(out), "core/api.c: Hunk #2 FAILED at 41");
        assert!(failed_hunks("can't find file to patch at input line 3\n").contains("can't find file to patch"));
        let cc = "make: Entering directory '/k'\n  CC [M]  /w/core/api.o\n/w/core/api.c:12:5: error: implicit declaration of function 'foo'\nmake[2]: *** [x] Error 1\n";
        assert_eq!(first_error(cc).as_deref(), Some("/w/core/api.c:12"));
        assert_eq!(first_error("ERROR: modpost: \"prod_register\" [cases/pipe/prod_pipe.ko] undefined!\n").as_deref(), Some("ERROR: modpost: \"prod_register\" [cases/pipe/prod_pipe.ko] undefined!"));
    }
}
