//! `kernlab new LAB.yaml --module DIR`: a commented A/B leak lab for a
//! user's module tree. Reads the tree (a dkms.conf as dkms would, for each
//! known kernel, else its Kbuild and Makefiles), its module parameters,
//! picks the kernel, writes the lab ([`crate::lab::scaffold`] renders it)
//! and says what it did. Fetches and boots nothing.

use std::path::{Component, Path, PathBuf};

use super::registry;
use crate::exit;
use crate::lab::scaffold::{self, Candidate, DkmsModule, ObjM, Param, Scaffold, TreeKind};
use crate::payload::kmod::{dkms, tree};

pub struct NewArgs {
    pub lab: PathBuf,
    pub module: PathBuf,
    pub kernel: Option<String>,
    pub workload: String,
    pub force: bool,
    pub json: bool,
    pub kernel_dirs: Vec<PathBuf>,
}

/// A refusal: said, exit 2.
fn usage(msg: &str) -> i32 {
    eprintln!("kernlab: {msg}");
    exit::USAGE
}

pub fn new(a: NewArgs) -> i32 {
    if a.lab.exists() && !a.force {
        return usage(&format!("`{}` exists; pass --force to overwrite it", a.lab.display()));
    }
    if !a.module.is_dir() {
        return usage(&format!("`{}` is not a directory", a.module.display()));
    }
    let lab_dir = match a.lab.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => p.to_path_buf(),
        None => PathBuf::from("."),
    };
    let (Ok(lab_abs), Ok(tree_abs)) = (lab_dir.canonicalize(), a.module.canonicalize()) else {
        return usage(&format!("the lab's directory `{}` does not exist", lab_dir.display()));
    };
    let entries = match tree::entries(&tree_abs) {
        Ok(e) => e,
        Err(e) => return usage(&format!("cannot read `{}`: {e}", a.module.display())),
    };
    let files: Vec<PathBuf> = entries.iter().filter(|e| matches!(e, tree::Entry::File { .. })).map(|e| e.path().to_path_buf()).collect();
    let reg = match registry(&a.kernel_dirs) {
        Ok(r) => r,
        Err(e) => return super::fail(&e),
    };
    if let Some(k) = &a.kernel {
        if let Err(e) = reg.get(k) {
            return super::fail(&e);
        }
    }

    let conf = tree_abs.join("dkms.conf");
    let (kind, kernel, also) = if conf.is_file() {
        // Each known kernel with a release in its name, read as dkms
        // would for it: BUILD_EXCLUSIVE_* decides which it builds for.
        let mut candidates = Vec::new();
        let mut plans = Vec::new();
        for d in reg.iter() {
            let Some(release) = scaffold::release_of(&d.name) else { continue };
            if a.kernel.as_ref().is_some_and(|k| k != &d.name) {
                continue;
            }
            // Unasked, only kernels of this machine's own architecture
            // (another's runs under TCG only, and slower).
            if a.kernel.is_none() && crate::arch::Arch::host().is_some_and(|h| d.arch() != h) {
                continue;
            }
            let vars = dkms::Vars {
                kernelver: release.to_string(),
                arch: crate::arch::Arch::of_debian_name(release).unwrap_or_default().uname().into(),
                kernel_source_dir: PathBuf::from("/lib/modules").join(release).join("build"),
                dkms_tree: "/var/lib/dkms".into(),
                source_tree: "/usr/src".into(),
                install_tree: "/lib/modules".into(),
                module: String::new(),
                module_version: String::new(),
            };
            match dkms::read(&conf, &vars) {
                Ok((_, plan)) => {
                    candidates.push(Candidate { name: d.name.clone(), release: release.into(), refused: None });
                    plans.push((d.name.clone(), plan));
                }
                Err(dkms::DkmsError::Excluded { why, .. }) => candidates.push(Candidate { name: d.name.clone(), release: release.into(), refused: Some(why) }),
                Err(e) => return super::fail(&e),
            }
        }
        if let Some(k) = &a.kernel {
            match candidates.first() {
                Some(Candidate { refused: Some(why), .. }) => return usage(&format!("the dkms.conf of `{}` does not build for kernel `{k}`: {why}", a.module.display())),
                None => return usage(&format!("kernel `{k}` carries no release in its name (`debian-RELEASE`), so the dkms.conf cannot be read for it")),
                _ => {}
            }
        }
        let choice = match choose_or_given(&candidates, true, a.kernel.as_deref()) {
            Ok(c) => c,
            Err(why) => return usage(&format!("the dkms.conf of `{}` builds for no known kernel: {why}", a.module.display())),
        };
        let plan = plans.iter().find(|(n, _)| *n == choice.name).map(|(_, p)| p.clone()).expect("the chosen kernel has a plan");
        let modules = plan.modules.iter().map(|m| DkmsModule { name: m.name.clone(), path: m.path().display().to_string() }).collect();
        let also = candidates.iter().filter(|c| c.refused.is_none() && c.name != choice.name).map(|c| c.name.clone()).collect();
        (TreeKind::Dkms { package: plan.package_name, version: plan.package_version, modules }, choice, also)
    } else {
        let mut modules: Vec<ObjM> = Vec::new();
        for f in &files {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !["Kbuild", "Makefile", "makefile", "GNUmakefile"].contains(&name) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(tree_abs.join(f)) else { continue };
            for m in scaffold::scan_obj_m(&text) {
                if !modules.iter().any(|o| o.name == m) {
                    modules.push(ObjM { name: m, file: f.display().to_string() });
                }
            }
        }
        if modules.is_empty() {
            return usage(&format!("`{}` is not a module tree: no dkms.conf, and no `obj-m += NAME.o` in a Kbuild or Makefile", a.module.display()));
        }
        if !tree::buildable(&tree_abs) {
            return usage(&format!("`{}` names modules below its top but has no Kbuild or Makefile at the top to build them from; give the directory that has one", a.module.display()));
        }
        let candidates: Vec<Candidate> = reg.iter().map(|d| Candidate { name: d.name.clone(), release: scaffold::release_of(&d.name).unwrap_or("").into(), refused: None }).collect();
        let choice = match choose_or_given(&candidates, false, a.kernel.as_deref()) {
            Ok(c) => c,
            Err(why) => return usage(&why),
        };
        (TreeKind::Kbuild { modules }, choice, Vec::new())
    };

    let mut params: Vec<Param> = Vec::new();
    for f in files.iter().filter(|f| f.extension().is_some_and(|x| x == "c")) {
        let Ok(text) = std::fs::read_to_string(tree_abs.join(f)) else { continue };
        for (name, kind) in scaffold::scan_module_params(&text) {
            params.push(Param { name, kind, file: f.display().to_string() });
        }
    }

    let stem = a.lab.file_stem().and_then(|s| s.to_str()).unwrap_or("lab");
    let s = Scaffold {
        name: scaffold::lab_name(stem),
        source: relative(&tree_abs, &lab_abs).display().to_string(),
        tree_shown: a.module.display().to_string(),
        kind,
        params,
        kernel,
        also,
        workload: a.workload.clone(),
    };
    let text = scaffold::render(&s);
    if let Err(e) = std::fs::write(&a.lab, &text) {
        eprintln!("kernlab: cannot write `{}`: {e}", a.lab.display());
        return exit::INFRA;
    }
    report(&a, &s);
    exit::OK
}

/// The kernel asked for (already checked), else the scaffold's choice.
fn choose_or_given(candidates: &[Candidate], dkms: bool, given: Option<&str>) -> Result<scaffold::KernelChoice, String> {
    match given {
        Some(k) => Ok(scaffold::KernelChoice { name: k.into(), why: if dkms { "given with --kernel; the dkms.conf builds for it".into() } else { "given with --kernel".into() } }),
        None => scaffold::choose_kernel(candidates, dkms),
    }
}

/// What was written, for the terminal or as one JSON object.
fn report(a: &NewArgs, s: &Scaffold) {
    let leak = scaffold::leak_param(&s.params);
    let (how, modules) = match &s.kind {
        TreeKind::Dkms { package, version, .. } => (format!("DKMS package {package} {version}, from its dkms.conf"), s.kind.module_names()),
        TreeKind::Kbuild { .. } => ("Kbuild tree, obj-m from its Kbuild and Makefiles".to_string(), s.kind.module_names()),
    };
    let baseline = match leak {
        Some(p) => format!("the same modules with {}=0", p.name),
        None => "no module".to_string(),
    };
    let next = format!("kernlab run {}", a.lab.display());
    if a.json {
        let v = serde_json::json!({
            "lab": a.lab,
            "source": s.source,
            "tree": match s.kind { TreeKind::Dkms { .. } => "dkms", TreeKind::Kbuild { .. } => "kbuild" },
            "modules": modules,
            "params": s.params.iter().map(|p| serde_json::json!({"name": p.name, "type": p.kind, "file": p.file})).collect::<Vec<_>>(),
            "leak_param": leak.map(|p| p.name.clone()),
            "kernel": s.kernel.name,
            "kernel_why": s.kernel.why,
            "also_builds_for": s.also,
            "workload": s.workload,
            "next": next,
        });
        println!("{v}");
        return;
    }
    println!("wrote {}", a.lab.display());
    println!("  tree:     {} ({how})", s.tree_shown);
    println!("  modules:  {} (loaded in this order{})", modules.join(", "), if matches!(s.kind, TreeKind::Kbuild { .. }) { " once built; dependencies first" } else { "" });
    if !s.params.is_empty() {
        println!("  params:   {}", s.params.iter().map(|p| format!("{} ({})", p.name, p.kind)).collect::<Vec<_>>().join(", "));
    }
    println!("  kernel:   {} ({})", s.kernel.name, s.kernel.why);
    if !s.also.is_empty() {
        println!("  also builds for: {}", s.also.join(", "));
    }
    println!("  workload: churn of {} ({} per second)", s.workload, 1000);
    match leak {
        Some(p) => println!("  arms:     {}={} vs {baseline}; expect: leak", p.name, 1),
        None => println!("  arms:     the modules vs {baseline}; expect: leak"),
    }
    println!("next: {next}");
}

/// `path` relative to `base` (both absolute and canonical).
fn relative(path: &Path, base: &Path) -> PathBuf {
    let p: Vec<Component> = path.components().collect();
    let b: Vec<Component> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_relative_to_the_lab() {
        let cases = [("/w/r/tests/fixtures/pg", "/w/r/labs", "../tests/fixtures/pg"), ("/w/r/labs/khm", "/w/r/labs", "khm"), ("/w/r", "/w/r", "."), ("/a/b", "/c/d", "../../a/b")];
        for (p, b, want) in cases {
            assert_eq!(relative(Path::new(p), Path::new(b)), PathBuf::from(want));
        }
    }
}
