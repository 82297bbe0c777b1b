//! What a bisection runs, checked before anything starts: the lab (a leak
//! lab), the candidates in order (a module's first-parent history, or the
//! kernels a pattern matches in version order) and, for kernels, the ones
//! that cannot run the lab at all. Every error here is the user's (exit 2)
//! and names the flag and value at fault.

use std::path::{Path, PathBuf};

use super::git::{self, GitError};
use super::kernels::{self, KernelRangeError, Needs};
use crate::kernel::{Descriptor, DescriptorError, Registry};
use crate::lab::{self, Lab, LabError};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error("{}: bisect needs a leak lab (a `leak:` section): its verdict against `leak.expect` decides each step", file.display())]
    NotLeakLab { file: PathBuf },
    #[error("--source `{}` holds none of the lab's modules (the lab's module sources: {known})", dir.display())]
    NotAModule { dir: PathBuf, known: String },
    #[error("--source `{}`: {source}", dir.display())]
    Source {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Kernels(#[from] KernelRangeError),
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
}

impl PlanError {
    pub fn exit_code(&self) -> i32 {
        match self {
            PlanError::Git(g) if !g.is_usage() => crate::exit::INFRA,
            _ => crate::exit::USAGE,
        }
    }
}

/// One candidate: a commit (sha, subject) or a kernel (name).
#[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct Candidate {
    pub rev: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subject: String,
    /// Why it is skipped without a run (a kernel without headers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip: Option<String>,
}

/// A module directory of the lab inside the repository being bisected.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleDir {
    /// Where it is in the user's work tree (canonical).
    pub dir: PathBuf,
    /// Its path inside the repository (empty: the repository's top).
    pub sub: PathBuf,
}

#[derive(Debug, Clone)]
pub enum Axis {
    /// A module's history: the repository's top and the lab's module
    /// directories in it.
    Module { source: PathBuf, top: PathBuf, dirs: Vec<ModuleDir> },
    /// Kernels matching a pattern; `made` are descriptors of archive
    /// kernels (`debian:` patterns) to write where the runs find them.
    Kernel { pattern: String, made: Vec<(String, String)> },
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub lab_file: PathBuf,
    pub lab: Lab,
    pub axis: Axis,
    /// The known-good end (not a candidate).
    pub good: Candidate,
    /// After `good` through the known-bad end (the last), in order.
    pub candidates: Vec<Candidate>,
    pub kernel_dirs: Vec<PathBuf>,
}

fn leak_lab(lab_file: &Path) -> Result<Lab, PlanError> {
    let lab = lab::load(lab_file)?;
    lab.check_files(lab_file)?;
    if lab.leak.is_none() {
        return Err(PlanError::NotLeakLab { file: lab_file.to_path_buf() });
    }
    Ok(lab)
}

/// Every module source of the lab, both arms, as written.
fn module_sources(lab: &Lab) -> Vec<PathBuf> {
    let base = lab.leak.iter().flat_map(|l| l.baseline.modules.iter());
    lab.modules.iter().chain(base).filter_map(|m| m.source.clone()).collect()
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

/// The lab's module directories that are `source` or inside it, with
/// their paths inside the repository whose top is `top`.
pub fn module_dirs(lab: &Lab, lab_file: &Path, source: &Path, top: &Path) -> Result<Vec<ModuleDir>, PlanError> {
    let base = lab_file.parent().unwrap_or(Path::new(""));
    let src = source.canonicalize().map_err(|e| PlanError::Source { dir: source.to_path_buf(), source: e })?;
    let mut dirs: Vec<ModuleDir> = Vec::new();
    let all = module_sources(lab);
    for s in &all {
        let dir = canonical(&base.join(s));
        if !dir.starts_with(&src) || dirs.iter().any(|d| d.dir == dir) {
            continue;
        }
        if let Ok(sub) = dir.strip_prefix(top) {
            dirs.push(ModuleDir { sub: sub.to_path_buf(), dir });
        }
    }
    if dirs.is_empty() {
        let known = if all.is_empty() { "none".to_string() } else { all.iter().map(|s| format!("`{}`", canonical(&base.join(s)).display())).collect::<Vec<_>>().join(", ") };
        return Err(PlanError::NotAModule { dir: source.to_path_buf(), known });
    }
    Ok(dirs)
}

/// Points every module of `lab` (both arms) that lives in one of `dirs`
/// at its copy under `scratch` (`scratch/<sub>`); returns how many.
pub fn retarget(lab: &mut Lab, lab_file: &Path, dirs: &[ModuleDir], scratch: &Path) -> usize {
    let base = lab_file.parent().unwrap_or(Path::new("")).to_path_buf();
    let mut n = 0;
    let baseline = lab.leak.as_mut().map(|l| &mut l.baseline.modules);
    for m in lab.modules.iter_mut().chain(baseline.into_iter().flatten()) {
        let Some(source) = &m.source else { continue };
        let dir = canonical(&base.join(source));
        if let Some(d) = dirs.iter().find(|d| d.dir == dir) {
            m.source = Some(scratch.join(&d.sub));
            n += 1;
        }
    }
    n
}

/// A module bisection: `source` a git work tree holding one of the lab's
/// module directories, `good` and `bad` revisions in it.
pub fn module(lab_file: &Path, source: &Path, good: &str, bad: &str, kernel_dirs: Vec<PathBuf>) -> Result<Plan, PlanError> {
    let lab = leak_lab(lab_file)?;
    let top = git::toplevel(source)?;
    let dirs = module_dirs(&lab, lab_file, source, &top)?;
    let g = git::resolve(&top, "--good", good)?;
    let b = git::resolve(&top, "--bad", bad)?;
    if g == b {
        return Err(GitError::Same { good: good.into(), bad: bad.into() }.into());
    }
    if !git::is_ancestor(&top, &g, &b)? {
        return Err(GitError::NotAncestor { good: good.into(), bad: bad.into(), top }.into());
    }
    for d in &dirs {
        for (flag, rev, sha) in [("--good", good, &g), ("--bad", bad, &b)] {
            if !git::has_dir(&top, sha, &d.sub)? {
                return Err(GitError::NoModuleDir { flag, rev: rev.into(), sub: d.sub.clone() }.into());
            }
        }
    }
    let candidates: Vec<Candidate> = git::range(&top, &g, &b)?.into_iter().map(|c| Candidate { rev: c.sha, subject: c.subject, skip: None }).collect();
    if candidates.is_empty() {
        // An ancestor only through a merge's second parent: the first-parent line never passes it.
        return Err(GitError::NotAncestor { good: good.into(), bad: bad.into(), top }.into());
    }
    let good = Candidate { subject: git::subject(&top, &g)?, rev: g, skip: None };
    Ok(Plan { lab_file: lab_file.to_path_buf(), lab, axis: Axis::Module { source: source.to_path_buf(), top, dirs }, good, candidates, kernel_dirs })
}

/// A kernel bisection over the kernels `pattern` matches (descriptor names,
/// or `debian:GLOB` over the machine's apt sources); `in_archive` says
/// whether apt has a package (for the headers and `-dbg` checks).
pub fn kernel(lab_file: &Path, pattern: &str, good: &str, bad: &str, kernel_dirs: Vec<PathBuf>, in_archive: &dyn Fn(&str) -> bool) -> Result<Plan, PlanError> {
    use crate::matrix::{archive_descriptor, archive_kernels, glob, ARCHIVE_PREFIX};
    let lab = leak_lab(lab_file)?;
    let mut dirs = kernel_dirs.clone();
    dirs.extend(crate::kernel::descriptor_dirs(Some(lab_file)));
    let registry = Registry::load(&dirs)?;
    let (pool, matcher) = match pattern.strip_prefix(ARCHIVE_PREFIX) {
        Some(g) => (archive_kernels(), glob(&format!("debian-{g}"))),
        None => (registry.iter().map(|d| d.name.clone()).collect(), glob(pattern)),
    };
    let names = kernels::candidates(&pool, pattern, |n| matcher.is_match(n), good, bad)?;
    let needs = Needs::of(&lab);
    let mut made = Vec::new();
    let mut candidates = Vec::new();
    for name in names {
        let desc = match registry.get(&name) {
            Ok(d) => d.clone(),
            Err(e) => {
                let text = archive_descriptor(&name).ok_or(e)?;
                made.push((name.clone(), text.clone()));
                Descriptor::parse(&name, "archive", &text)?
            }
        };
        let skip = kernels::skip_reason(&desc, needs, in_archive);
        candidates.push(Candidate { rev: name, subject: desc.source_summary(), skip });
    }
    let good = Candidate { rev: good.to_string(), subject: String::new(), skip: None };
    Ok(Plan { lab_file: lab_file.to_path_buf(), lab, axis: Axis::Kernel { pattern: pattern.to_string(), made }, good, candidates, kernel_dirs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bisect::git::tests::{repo, sh};

    fn leak_lab_in(dir: &Path, modules: &str, baseline: &str) -> PathBuf {
        let f = dir.join("lab.yaml");
        let base = if baseline.is_empty() { String::new() } else { format!("  baseline:\n    modules:\n{baseline}") };
        let text = format!("name: b\nmodules:\n{modules}workload:\n  churn: {{}}\n  duration: 20s\nleak:\n  expect: no-leak\n{base}");
        std::fs::write(&f, text).unwrap();
        f
    }

    #[test]
    fn module_bisection_is_checked_before_anything_runs() {
        let (d, shas) = repo();
        let labs = tempfile::tempdir().unwrap();
        let src = d.path().join("mod");
        let m = format!("  - source: {}\n", src.display());
        let lab = leak_lab_in(labs.path(), &m, &format!("      - source: {}\n        params: {{v: '0'}}\n", src.display()));
        let p = module(&lab, &src, &shas[0], &shas[2], vec![]).unwrap();
        assert_eq!(p.candidates.iter().map(|c| c.rev.as_str()).collect::<Vec<_>>(), [shas[1].as_str(), shas[2].as_str()]);
        assert_eq!(p.good.subject, "v0");
        // The repository's top works as --source too.
        let p = module(&lab, d.path(), "HEAD~2", "HEAD", vec![]).unwrap();
        let Axis::Module { dirs, .. } = &p.axis else { panic!() };
        assert_eq!(dirs.len(), 1);
        assert_eq!(dirs[0].sub, Path::new("mod"));

        let err = |good: &str, bad: &str| module(&lab, &src, good, bad, vec![]).unwrap_err();
        let e = err(&shas[3], &shas[2]);
        assert!(e.to_string().starts_with(&format!("--good `{}` is not an ancestor of --bad", shas[3])), "{e}");
        assert_eq!(e.exit_code(), crate::exit::USAGE);
        assert!(err(&shas[2], &shas[0]).to_string().contains("is not an ancestor"));
        assert!(err("v9", &shas[2]).to_string().starts_with("--good `v9` does not name a commit"));
        assert!(err(&shas[0], "nope").to_string().starts_with("--bad `nope`"));
        assert!(err(&shas[2], "HEAD").to_string().contains("the same commit"));
        // A module directory that a revision does not have.
        sh(d.path(), &["mv", "mod", "mod2"]);
        sh(d.path(), &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "moved"]);
        sh(d.path(), &["mv", "mod2", "mod"]);
        sh(d.path(), &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "back"]);
        let e = module(&lab, &src, "HEAD~1", "HEAD", vec![]).unwrap_err();
        assert!(e.to_string().starts_with("--good `HEAD~1` has no directory `mod`"), "{e}");
    }

    #[test]
    fn a_source_that_is_none_of_the_labs_modules_is_a_usage_error() {
        let (d, shas) = repo();
        let labs = tempfile::tempdir().unwrap();
        std::fs::create_dir(labs.path().join("other")).unwrap();
        std::fs::write(labs.path().join("other/Kbuild"), "obj-m := o.o\n").unwrap();
        let lab = leak_lab_in(labs.path(), "  - source: other\n", "");
        let e = module(&lab, &d.path().join("mod"), &shas[0], &shas[2], vec![]).unwrap_err();
        assert!(e.to_string().starts_with(&format!("--source `{}` holds none of the lab's modules", d.path().join("mod").display())), "{e}");
        assert!(e.to_string().contains("other"), "{e}");
        assert_eq!(e.exit_code(), crate::exit::USAGE);
        // Not a leak lab.
        let plain = labs.path().join("plain.yaml");
        std::fs::write(&plain, "name: p\nmodules:\n  - source: other\n").unwrap();
        let e = module(&plain, &d.path().join("mod"), &shas[0], &shas[2], vec![]).unwrap_err();
        assert!(matches!(e, PlanError::NotLeakLab { .. }), "{e}");
        assert!(e.to_string().contains("needs a leak lab"));
    }

    #[test]
    fn retarget_moves_both_arms_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        for m in ["mine", "theirs"] {
            std::fs::create_dir(d.path().join(m)).unwrap();
        }
        let lab_file = leak_lab_in(d.path(), "  - source: mine\n  - source: theirs\n", "      - source: ./mine\n        params: {every: 0}\n");
        let mut lab = lab::load(&lab_file).unwrap();
        let dirs = [ModuleDir { dir: d.path().join("mine").canonicalize().unwrap(), sub: PathBuf::from("x/mine") }];
        assert_eq!(retarget(&mut lab, &lab_file, &dirs, Path::new("/scratch")), 2);
        assert_eq!(lab.modules[0].source.as_deref(), Some(Path::new("/scratch/x/mine")));
        assert_eq!(lab.modules[1].source.as_deref(), Some(Path::new("theirs")));
        let b = &lab.leak.as_ref().unwrap().baseline.modules[0];
        assert_eq!((b.source.as_deref(), b.params["every"].as_str()), (Some(Path::new("/scratch/x/mine")), "0"));
    }

    /// A baseline that gives the lab's modules other parameters runs the
    /// scratch copy too: it is derived from the retargeted lab.
    #[test]
    fn retarget_reaches_a_baseline_of_the_labs_modules_with_other_params() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("mine")).unwrap();
        let lab_file = d.path().join("lab.yaml");
        let text = "name: b\nmodules:\n  - source: mine\n    params: {leak: 1}\nworkload:\n  churn: {}\n  duration: 20s\nleak:\n  expect: leak\n  baseline:\n    params: {leak: 0}\n";
        std::fs::write(&lab_file, text).unwrap();
        let mut lab = lab::load(&lab_file).unwrap();
        let dirs = [ModuleDir { dir: d.path().join("mine").canonicalize().unwrap(), sub: PathBuf::from("mine") }];
        assert_eq!(retarget(&mut lab, &lab_file, &dirs, Path::new("/scratch")), 1);
        let b = lab::baseline_lab(&lab);
        assert_eq!((b.modules[0].source.as_deref(), b.modules[0].params["leak"].as_str()), (Some(Path::new("/scratch/mine")), "0"));
        assert_eq!(lab.modules[0].params["leak"], "1");
    }
}
