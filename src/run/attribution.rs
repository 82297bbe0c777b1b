//! The attribution pass of a LEAK (`leak.attribute: auto`): the lab once
//! more, both arms, with the guests instrumented, to name the code that
//! took the memory. The verdict and its kind come from the first pass and
//! stand whatever this one finds; it only adds the sites.
//!
//! - Every leaking cache (the largest few) is booted with SLUB allocation
//!   traces (`slub_debug=U,…`); after the workload each arm's
//!   `alloc_traces` are read and the module arm's sites minus the
//!   baseline's are the allocating functions (`analysis::attribution::slab`).
//! - The workload runs as long as the first pass needed to decide (at
//!   least `MIN_SECS`), not the lab's full duration: the traces need
//!   objects, not statistics.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::ab::{arm_labs, sub_arm};
use super::instruments::{self, Instruments};
use super::{run_arm, Arm};
use crate::analysis::attribution::{holders, slab, Role, Site};
use crate::analysis::kind::{CacheClass, LeakKind};
use crate::lab::{Attribute, Lab};
use crate::outcome::event::Event;
use crate::outcome::leak::{AttributionPass, LeakReport};
use crate::exit;

/// The pass's directory in the lab's run directory.
pub const DIR: &str = "attribution";
/// The most caches traced: each traced cache slows its allocations.
const MAX_CACHES: usize = 4;
/// The shortest workload of a pass.
const MIN_SECS: f64 = 10.0;

/// Why a LEAK gets no attribution pass, if it gets none.
pub(super) fn skipped(lab: &Lab, report: &LeakReport, interrupted: bool) -> Option<String> {
    let policy = lab.leak.as_ref()?;
    if policy.attribute == Attribute::Off {
        return Some("leak.attribute is off".into());
    }
    if interrupted {
        return Some("the run was interrupted".into());
    }
    if report.attribution.as_ref().is_some_and(|a| a.kind == LeakKind::Unknown) && caches(report).is_empty() {
        return Some("no leaking cache to trace: only the metric grows".into());
    }
    None
}

/// The leaking caches to trace, the most bytes first.
fn caches(report: &LeakReport) -> Vec<String> {
    let Some(an) = report.analysis.as_ref() else { return Vec::new() };
    an.culprits().take(MAX_CACHES).map(|c| c.name.clone()).collect()
}

/// How long the pass's workload runs: as long as the first pass took to
/// decide (its deciding look and the warm-up), within `MIN_SECS` and the
/// lab's duration.
fn pass_duration(lab: &Lab, report: &LeakReport) -> Duration {
    let interval = lab.monitor.interval.as_secs_f64();
    let full = lab.workload.as_ref().map(|w| w.duration.as_secs_f64()).unwrap_or(MIN_SECS);
    let decided = report.analysis.as_ref().map(|an| {
        let q = &an.sequential;
        let n = q.looks.get(q.decided_at).map_or(an.samples[0], |l| l.samples);
        let warm = lab.leak.as_ref().map_or(0.0, |l| l.warmup.as_secs_f64());
        n as f64 * interval + warm
    });
    Duration::from_secs_f64(decided.unwrap_or(full).max(MIN_SECS).min(full.max(MIN_SECS)).ceil())
}

/// The pass's lab: traced caches on the command line, no exhaustion, the
/// pass's duration.
fn pass_lab(lab: &Lab, caches: &[String], duration: Duration) -> Lab {
    let mut l = lab.clone();
    l.vm.cmdline.push(slab::cmdline(caches));
    l.exhaustion = None;
    if let Some(w) = l.workload.as_mut() {
        w.duration = duration;
    }
    l
}

/// Runs the pass and returns it with the sites it named and what it adds
/// to the evidence.
pub(super) async fn run(arm: &Arm, top: &Path, report: &LeakReport, cancel: CancellationToken, start: Instant) -> (AttributionPass, Vec<Site>, Vec<String>) {
    let began = Instant::now();
    let kind = report.attribution.as_ref().map_or(LeakKind::Unknown, |a| a.kind);
    let caches = caches(report);
    let duration = pass_duration(&arm.lab, report);
    let dir = top.join(DIR);
    arm.events.emit(Event::AttributionStarted { kind: kind.words().into(), caches: caches.clone(), duration_secs: duration.as_secs_f64() });
    let mut pass = AttributionPass {
        dir: crate::outcome::recorded(top, &dir).display().to_string(),
        caches: caches.clone(),
        duration_s: duration.as_secs_f64(),
        secs: 0.0,
        status: "done".into(),
        tried: Vec::new(),
    };
    let (module_lab, base_lab) = arm_labs(&pass_lab(&arm.lab, &caches, duration));
    let mut instruments = Instruments { setup: Vec::new(), collect: vec![("slab".into(), slab::collect_script(&caches))] };
    if kind == LeakKind::Reference {
        instruments.setup.push(("holders".into(), holders::setup_script()));
        instruments.collect.push(("holders".into(), holders::collect_script()));
    }
    let never = CancellationToken::new();
    let arms = (
        sub_arm(arm, &dir, "module", module_lab, never.clone(), instruments.clone()),
        sub_arm(arm, &dir, "baseline", base_lab, never.clone(), instruments),
    );
    let (a, b) = match arms {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            pass.status = format!("failed: {}", e.error.unwrap_or_default());
            pass.secs = began.elapsed().as_secs_f64();
            return (pass, Vec::new(), Vec::new());
        }
    };
    let (a_dir, b_dir) = (a.dir.path.clone(), b.dir.path.clone());
    let (ra, rb) = tokio::join!(run_arm(a, cancel.clone(), start), run_arm(b, cancel, start));
    for (name, r) in [("module", &ra), ("baseline", &rb)] {
        if r.exit_code != exit::OK {
            pass.status = format!("failed: the {name} arm: {}", r.error.clone().unwrap_or_else(|| format!("exit {}", r.exit_code)));
        }
    }
    let held = if kind == LeakKind::Reference { read_holders(&a_dir, &b_dir, &mut pass.tried) } else { Vec::new() };
    let allocated = read_allocations(&a_dir, &b_dir, &caches, &mut pass.tried);
    let evidence = allocation_evidence(kind, &allocated);
    // The holders first: for a reference leak they are the answer. Its
    // objects were allocated by the kernel for the workload: where is
    // evidence, not the code at fault; the sites are what a module
    // allocated itself.
    let mut sites: Vec<Site> = held.into_iter().chain(allocated.iter().filter(|s| kind != LeakKind::Reference || s.module != "vmlinux").cloned()).collect();
    if kind == LeakKind::Reference && !sites.iter().any(|s| s.role == Role::HoldsReferences) {
        let (site, why) = from_the_code(report, &a_dir, &allocated);
        pass.tried.push(why);
        if let Some(s) = site {
            sites.insert(0, s);
        }
    }
    pass.secs = began.elapsed().as_secs_f64();
    arm.events.emit(Event::Attributed {
        kind: kind.words().into(),
        sites: sites.iter().take(3).map(|s| format!("{} [{}] {} {} objects", s.function, s.module, s.cache, s.objects)).collect(),
        status: pass.status.clone(),
        secs: pass.secs,
    });
    (pass, sites, evidence)
}

/// An instrument's output in an arm.
fn output(arm: &Path, name: &str) -> std::io::Result<String> {
    std::fs::read_to_string(arm.join(instruments::DIR).join(format!("{name}.txt")))
}

/// Why some arms left no output of an instrument, in words.
fn missing(name: &str, results: [(&str, Option<std::io::Error>); 2]) -> String {
    let why = results.into_iter().filter_map(|(arm, e)| e.map(|e| format!("{arm} arm: {e}"))).collect::<Vec<_>>().join("; ");
    format!("{name} left no output ({why})")
}

/// The functions holding a reference leak's references, from both arms'
/// reference tracing.
fn read_holders(module: &Path, baseline: &Path, tried: &mut Vec<String>) -> Vec<Site> {
    if let Ok(e) = std::fs::read_to_string(module.join(instruments::DIR).join("holders.setup-error")) {
        tried.push(format!("reference tracing could not be set up in the guest: {}", e.trim()));
        return Vec::new();
    }
    match (output(module, "holders"), output(baseline, "holders")) {
        (Ok(m), Ok(b)) => {
            let h = holders::holders(&m, &b);
            tried.extend(h.tried);
            h.sites
        }
        (m, b) => {
            tried.push(missing("reference tracing", [("module", m.err()), ("baseline", b.err())]));
            Vec::new()
        }
    }
}

/// The allocating sites of the traced caches, module arm minus baseline,
/// from both arms' SLUB allocation traces.
fn read_allocations(module: &Path, baseline: &Path, caches: &[String], tried: &mut Vec<String>) -> Vec<Site> {
    let (m, b) = match (output(module, "slab"), output(baseline, "slab")) {
        (Ok(m), Ok(b)) => (m, b),
        (m, b) => {
            tried.push(missing("the allocation traces", [("module", m.err()), ("baseline", b.err())]));
            return Vec::new();
        }
    };
    let ((tm, em), (tb, eb)) = (slab::parse(&m), slab::parse(&b));
    tried.extend(em.iter().map(|e| format!("module arm: {e}")).chain(eb.iter().map(|e| format!("baseline arm: {e}"))));
    let count = |t: &[slab::Trace]| t.iter().map(|x| x.objects).sum::<i64>();
    tried.push(format!(
        "SLUB allocation traces of {}: {} live objects at {} sites in the module arm, {} at {} in the baseline",
        caches.join(", "),
        count(&tm),
        tm.len(),
        count(&tb),
        tb.len()
    ));
    slab::sites(&tm, &tb)
}

/// A reference leak whose holders tracing could not count: the functions
/// of the lab's modules that take references on the largest leaking
/// reference-counted cache, read from the built modules' relocations. One
/// such function is named (with the cache's growth in the pass as its
/// objects); several are listed in the reason.
fn from_the_code(report: &LeakReport, module_arm: &Path, alloc: &[Site]) -> (Option<Site>, String) {
    // The object the references are taken on: a dentry (or file) pins its
    // inode, so a leaking dentry cache names the reference first.
    let rank = |c: &str| match CacheClass::of(c) {
        CacheClass::Dentry => 0,
        CacheClass::File => 1,
        CacheClass::Inode => 2,
        CacheClass::Other => 3,
    };
    let culprit = report.analysis.as_ref().and_then(|an| an.culprits().filter(|c| CacheClass::of(&c.name).referenced()).min_by_key(|c| rank(&c.name)).map(|c| c.name.clone()));
    let Some(cache) = culprit else {
        return (None, "from the code: no reference-counted cache leaks".into());
    };
    let manifest: crate::outcome::run::Manifest = match crate::outcome::read_manifest(&crate::outcome::layout::manifest_json(module_arm)) {
        Ok(m) => m,
        Err(e) => return (None, format!("from the code: the module arm's manifest: {e}")),
    };
    use crate::payload::calls::{DENTRY_GETS, FILE_GETS, INODE_GETS};
    // A dentry's reference pins its inode too.
    let gets: Vec<&str> = match CacheClass::of(&cache) {
        CacheClass::Dentry => DENTRY_GETS.to_vec(),
        CacheClass::Inode => DENTRY_GETS.iter().chain(&INODE_GETS).copied().collect(),
        CacheClass::File => FILE_GETS.to_vec(),
        CacheClass::Other => Vec::new(),
    };
    let mut takers = Vec::new();
    for m in &manifest.modules {
        match crate::payload::calls::reference_takers(Path::new(&m.ko), &gets) {
            Ok(t) => takers.extend(t.into_iter().map(|(f, calls)| (m.name.clone(), f, calls))),
            Err(e) => return (None, format!("from the code: {}: {e}", m.ko)),
        }
    }
    let held: i64 = alloc.iter().filter(|s| s.cache == cache).map(|s| s.objects).sum();
    let list = takers.iter().map(|(m, f, c)| format!("{f} [{m}] ({})", c.join(", "))).collect::<Vec<_>>().join("; ");
    match takers.as_slice() {
        [] => (None, format!("from the code: no function of the lab's modules calls a kernel function that takes {cache} references (the reference may be taken inline, or by the kernel on the module's behalf)")),
        [(m, f, calls)] => (
            Some(Site { function: f.clone(), module: m.clone(), cache: cache.clone(), objects: held, stack: Vec::new(), role: Role::TakesReferences }),
            format!(
                "from the code: {f} [{m}] is the only function of the lab's modules that takes {cache} references ({}); tracing could not count them here, so its objects are the {cache} objects the kernel allocated and the module arm still holds beyond the baseline",
                calls.join(", ")
            ),
        ),
        _ => (None, format!("from the code: several functions of the lab's modules take {cache} references, tracing could not tell which holds them: {list}")),
    }
}

/// What the allocating sites add to the kind's evidence: objects a module
/// allocated itself, or objects the kernel allocated that something keeps.
fn allocation_evidence(kind: LeakKind, sites: &[Site]) -> Vec<String> {
    let mut out = Vec::new();
    for s in sites.iter().filter(|s| s.role == Role::Allocates).take(3) {
        let by_module = s.module != "vmlinux";
        let line = match (by_module, kind == LeakKind::Reference, kind) {
            (true, _, _) => format!("{} {} objects were allocated by {} in module {} and never freed (module arm minus baseline)", s.objects, s.cache, s.function, s.module),
            (false, true, LeakKind::Reference) => format!(
                "{} {} objects were allocated by the kernel ({}{}), not by a module: they stay because something holds references to them",
                s.objects,
                s.cache,
                s.function,
                s.stack.iter().skip(1).take(3).map(|f| format!(" ← {f}")).collect::<String>()
            ),
            (false, _, _) => format!("{} {} objects were allocated by the kernel's {} and never freed (module arm minus baseline)", s.objects, s.cache, s.function),
        };
        out.push(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pass_lab_traces_the_caches_without_exhaustion_for_its_duration() {
        let text = "name: x\nmodules:\n  - source: khm\nworkload:\n  churn: {fs: tmpfs}\n  duration: 60s\nmonitor:\n  interval: 1s\nexhaustion:\n  action: kdump\nleak:\n  expect: leak\n";
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.yaml");
        std::fs::write(&f, text).unwrap();
        let lab = crate::lab::load(&f).unwrap();
        let l = pass_lab(&lab, &["dentry".into(), "kmalloc-256".into()], Duration::from_secs(12));
        assert!(l.vm.cmdline.ends_with(&["slub_debug=U,dentry,kmalloc-256".to_string()]), "{:?}", l.vm.cmdline);
        assert!(l.exhaustion.is_none());
        assert_eq!(l.workload.as_ref().unwrap().duration, Duration::from_secs(12));
        assert_eq!(l.modules, lab.modules);
        let (m, b) = arm_labs(&l);
        assert_eq!(m.modules.len(), 1);
        assert!(b.modules.is_empty(), "the baseline's modules: none by default");
    }

    #[test]
    fn a_missing_output_says_which_arm_and_why() {
        let e = |k| Some(std::io::Error::from(k));
        let s = missing("the allocation traces", [("module", None), ("baseline", e(std::io::ErrorKind::NotFound))]);
        assert!(s.starts_with("the allocation traces left no output (baseline arm: "), "{s}");
        assert!(!s.contains("module arm"), "{s}");
    }
}
