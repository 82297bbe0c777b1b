//! The terminal summaries `kernlab run` and `kernlab report` print: a
//! plain run's, and an A/B lab's verdict with its culprit table.

use std::path::Path;

use crate::ui::columns::{self, Column};
use crate::analysis::leak::{self, LeakAnalysis};
use crate::analysis::attribution::Role;
use crate::outcome::leak::{ArmConfig, ArmModule, Attribution, LeakReport};
use crate::outcome::run::{ExhaustionOutcome, RunOutcome};
use crate::stats::Verdict;

/// The terminal summary of a run, as `kernlab run` prints it.
pub fn run_summary(rep: &RunOutcome, dir: Option<&Path>) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "lab {} on {} ({}): {}", rep.lab, rep.kernel, rep.accel.as_deref().unwrap_or("-"), rep.outcome);
    let _ = writeln!(
        s,
        "  samples {} (gaps {}), boot to SSH {:.2} s, total {:.1} s",
        rep.samples, rep.sample_gaps, rep.timings.boot_to_ssh, rep.timings.total
    );
    if let Some(o) = &rep.operations {
        let _ = writeln!(s, "  operations {}", o.words());
    }
    for key in ["MemAvailable", "Slab", "SUnreclaim"] {
        if let Some(v) = rep.meminfo.get(key) {
            let _ = writeln!(s, "  {key:<13} {:>10} KiB → {:>10} KiB ({:+} KiB)", v.first / 1024, v.last / 1024, v.delta / 1024);
        }
    }
    for g in rep.top_slab_growth.iter().take(3).filter(|g| g.delta_bytes > 0) {
        let _ = writeln!(s, "  slab {:<24} {:+} KiB ({:+} objects)", g.cache, g.delta_bytes / 1024, g.delta_objs);
    }
    if let Some(no) = rep.exhaustion.as_ref().and_then(ExhaustionOutcome::not_reached) {
        let _ = writeln!(s, "  {no}: the guest did not run out of memory");
    }
    if let Some(d) = &rep.dump {
        let vmcore = dir.map_or_else(|| d.vmcore.clone(), |dir| crate::outcome::resolve(dir, &d.vmcore));
        let _ = writeln!(s, "  vmcore by {}: {} ({:.1} MiB)", d.via, vmcore.display(), d.bytes as f64 / 1048576.0);
        let _ = writeln!(s, "    {}", d.reason);
    }
    if let Some(t) = &rep.triage {
        let e = t.engine.word();
        if let Some(p) = &t.panic {
            let _ = writeln!(s, "  {e}: {p}");
        }
        let top: Vec<String> = t.top_caches.iter().take(4).map(|c| format!("{} {:.1} MiB", c.name, c.bytes as f64 / 1048576.0)).collect();
        let _ = writeln!(s, "  {e}: largest slab caches: {}", top.join(", "));
        if let Some(r) = &t.refs {
            let _ = writeln!(s, "  {e}: {}", r.headline());
            for l in r.lines() {
                let _ = writeln!(s, "    {l}");
            }
        }
    }
    if let Some(why) = &rep.triage_skipped {
        let _ = writeln!(s, "  crash triage skipped: {why}");
    }
    if let Some(d) = dir {
        let _ = writeln!(s, "  run directory: {}", d.display());
    }
    s
}

pub fn mib(b: f64) -> String {
    format!("{:.2} MiB", b / 1048576.0)
}

/// `95 s`, `6 min`, `17.6 h`, `3.2 days`, `never`.
pub fn duration(s: f64) -> String {
    if !s.is_finite() {
        "never".into()
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 172800.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} days", s / 86400.0)
    }
}

/// The verdict and whether it was expected, as words: (`LEAK`, `as expected`).
pub fn verdict_words(r: &LeakReport) -> (&'static str, &'static str) {
    let v = match r.verdict {
        Some(Verdict::Leak) => "LEAK",
        Some(Verdict::NoLeak) => "NO-LEAK",
        Some(Verdict::Inconclusive) => "INCONCLUSIVE",
        Some(Verdict::Bounded) => "BOUNDED",
        None => "no verdict (an arm failed)",
    };
    let held = match r.expectation_held {
        Some(true) => "as expected",
        Some(false) => "NOT as expected",
        None => "",
    };
    (v, held)
}

/// The unit of a rate on this basis: `op` or `s`.
pub fn per(a: &LeakAnalysis) -> &'static str {
    a.basis.per()
}

/// `12.3 MiB/h`, or `-`.
fn per_hour(v: Option<f64>) -> String {
    v.map(|v| format!("{:.2} MiB/h", v / 1048576.0)).unwrap_or_else(|| "-".into())
}

/// The analysis as terminal lines (shared by the summary and `kernlab report`):
/// how it was decided, the metric, the culprit table (module − baseline,
/// with intervals), what a NO-LEAK rules out, what an INCONCLUSIVE needs,
/// and time to exhaustion for a LEAK.
pub fn analysis_lines(a: &LeakAnalysis, stopped: &str) -> Vec<String> {
    use leak::num;
    let mut out = Vec::new();
    let u = per(a);
    let rate = a.ops_per_s[0].map(|r| format!(" at {r:.0} ops/s")).unwrap_or_default();
    out.push(format!(
        "{}: {} (α {} over {} hypotheses and {} look{}; stopped: {stopped})",
        match a.verdict {
            Verdict::Leak => "why",
            Verdict::NoLeak | Verdict::Bounded => "why",
            Verdict::Inconclusive => "undecided",
        },
        a.reason,
        a.alpha,
        a.family,
        a.sequential.looks.len(),
        if a.sequential.looks.len() == 1 { "" } else { "s" }
    ));
    if let Some(n) = &a.basis_note {
        out.push(format!("basis: {n}"));
    }
    if let Some(n) = &a.rate_note {
        out.push(format!("rates: {n}"));
    }
    if let Some(t) = &a.total {
        out.push(format!(
            "{} module − baseline: {} bytes/{u} [{} .. {}], {}{rate}; floor {} bytes/{u}",
            t.name,
            num(t.delta),
            num(t.lower),
            num(t.upper),
            per_hour(t.bytes_per_hour.map(|h| h[0])),
            num(t.floor)
        ));
    }
    let shown: Vec<Vec<String>> = a
        .caches
        .iter()
        .filter(|c| c.leak || c.bytes[0] > 0.0)
        .take(6)
        .map(|c| {
            vec![
                c.name.clone(),
                format!("{:.0}", c.objsize),
                format!("{:.0}→{:.0}", c.module.first, c.module.last),
                format!("{:.0}→{:.0}", c.baseline.first, c.baseline.last),
                format!("{} [{} .. {}]", num(c.delta), num(c.lower), num(c.upper)),
                num(c.bytes[0]),
                c.bytes_per_hour.map(|h| format!("{:.2}", h[0] / 1048576.0)).unwrap_or_else(|| "-".into()),
                (if c.leak {
                    "yes"
                } else if c.bounded.is_some() {
                    "bounded"
                } else {
                    "no"
                })
                .into(),
            ]
        })
        .collect();
    if !shown.is_empty() {
        out.extend(culprit_table(u, &shown));
    }
    if a.verdict != Verdict::Leak {
        if let Some(d) = &a.detectable {
            let what = match d.objects {
                Some(o) => format!("{} objects/{u} ({} bytes/{u}, {})", num(o), num(d.bytes), per_hour(d.bytes_per_hour)),
                None => format!("{} bytes/{u} ({})", num(d.bytes), per_hour(d.bytes_per_hour)),
            };
            out.push(format!(
                "rules out (80 % power): a leak of {what} in the noisiest cache ({}), {} objects/{u} into a cache of the module's own{}",
                d.name,
                num(d.own_cache_objects),
                d.total_bytes.map(|b| format!(", {} bytes/{u} in {}", num(b), a.metric)).unwrap_or_default()
            ));
        }
    }
    if let Some(n) = &a.needs {
        out.push(format!("needs: {n}"));
    }
    for e in &a.exhaustion {
        out.push(format!("exhausts {}: in {} to {}", e.memory, duration(e.fastest_s), duration(e.slowest_s)));
    }
    out
}

/// A LEAK's diagnosis as terminal lines: its kind and the evidence, the
/// sites named, and what the attribution pass cost (or why none ran).
pub fn attribution_lines(a: &Attribution) -> Vec<String> {
    let mut out = vec![format!("kind: {}", a.kind.words())];
    out.extend(a.evidence.iter().map(|e| format!("  - {e}")));
    for s in a.sites.iter().take(5) {
        out.push(match s.role {
            Role::HoldsReferences => format!("code: {} [{}] took {} references on {} objects that were never dropped", s.function, s.module, s.objects, s.cache),
            Role::TakesReferences => format!(
                "code: {} [{}] is the only function of the lab's modules taking {} references: the likely holder of {} {} objects (from its code; tracing could not count its calls here)",
                s.function, s.module, s.cache, s.objects, s.cache
            ),
            Role::Allocates => format!("code: {} [{}] allocated {} {} objects that were never freed", s.function, s.module, s.objects, s.cache),
        });
    }
    match (&a.pass, &a.skipped) {
        (Some(p), _) => {
            out.push(format!(
                "attribution pass: {} in {} (both arms again, {} of workload, allocation traces of {})",
                p.status,
                duration(p.secs),
                duration(p.duration_s),
                if p.caches.is_empty() { "no cache".to_string() } else { p.caches.join(", ") }
            ));
            if a.sites.is_empty() {
                out.extend(p.tried.iter().map(|t| format!("  tried: {t}")));
            }
        }
        (None, Some(why)) => out.push(format!("attribution pass: not run: {why}")),
        (None, None) => {}
    }
    out
}

/// The culprit table for rates per `u` (`op` or `s`), header first: laid
/// out like crash's `kmem -s`, with the difference beside it. Each row is
/// the cache, its object size, module and baseline objects (first→last),
/// Δ objects per `u` with its interval, Δ bytes per `u`, Δ MiB per hour
/// and whether it leaks.
fn culprit_table(u: &str, rows: &[Vec<String>]) -> Vec<String> {
    let u = u.to_uppercase();
    let columns = [
        Column::left("CACHE", 22),
        Column::right("OBJSIZE", 7),
        Column::right("MODULE OBJS", 15),
        Column::right("BASELINE OBJS", 15),
        Column::right(format!("Δ OBJS/{u} [interval]"), 28),
        Column::right(format!("Δ BYTES/{u}"), 10),
        Column::right("Δ MiB/H", 12),
        Column::right("LEAK", 5),
    ];
    columns::lines(&columns, rows, 1)
}

/// The terminal summary of an A/B lab, as `kernlab run` prints it.
pub fn leak_summary(r: &LeakReport, dir: &Path) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let (v, held) = verdict_words(r);
    let v = if held.is_empty() { v.to_string() } else { format!("{v} {held}") };
    let _ = writeln!(s, "lab {} on {}: {v} (expect {:?}, exit {})", r.lab, r.kernel, r.expect, r.exit_code);
    if let (Some(m), Some(b)) = (&r.module.config, &r.baseline.config) {
        let _ = writeln!(s, "  arms: {}", arms_line(m, b));
    }
    if let Some(a) = &r.analysis {
        for line in analysis_lines(a, &r.stopped) {
            let _ = writeln!(s, "  {line}");
        }
        if r.module.sample_gaps + r.baseline.sample_gaps > 0 {
            let _ = writeln!(
                s,
                "  sample gaps: module {} of {}, baseline {} of {} (the fits use the samples' own times)",
                r.module.sample_gaps,
                a.samples[0] as u64 + r.module.sample_gaps,
                r.baseline.sample_gaps,
                a.samples[1] as u64 + r.baseline.sample_gaps
            );
        }
    }
    if let Some(a) = &r.attribution {
        for line in attribution_lines(a) {
            let _ = writeln!(s, "  {line}");
        }
    }
    if let Some(c) = &r.crash {
        if let Some(no) = c.exhaustion.as_ref().and_then(ExhaustionOutcome::not_reached) {
            let _ = writeln!(s, "  module arm: {no}: no vmcore");
        }
        if let Some(d) = &c.dump {
            let _ = writeln!(s, "  vmcore by {}: {} ({:.1} MiB)", d.via, crate::outcome::resolve(dir, &d.vmcore).display(), d.bytes as f64 / 1048576.0);
        }
        if let Some(t) = &c.triage {
            let e = t.engine.word();
            if let Some(p) = &t.panic {
                let _ = writeln!(s, "  {e}: {p}");
            }
            let caches: Vec<String> = t.top_caches.iter().take(4).map(|c| format!("{} {}", c.name, mib(c.bytes as f64))).collect();
            let _ = writeln!(s, "  {e}: largest slab caches at the panic: {}", caches.join(", "));
            if let Some(r) = &t.refs {
                let _ = writeln!(s, "  {e}: {}", r.headline());
                for l in r.lines() {
                    let _ = writeln!(s, "    {l}");
                }
            }
        }
        if let Some(why) = &c.triage_skipped {
            let _ = writeln!(s, "  crash triage skipped: {why}");
        }
    }
    let _ = writeln!(s, "  run directory: {}", dir.display());
    s
}

/// What each arm ran, in one line: each arm's modules with their
/// parameters (`khm leak=1`), and its setup and payload where the two arms
/// differ in them (what they share is the lab's and goes unsaid).
pub fn arms_line(m: &ArmConfig, b: &ArmConfig) -> String {
    let modules = |c: &ArmConfig| {
        if c.modules.is_empty() {
            return "no modules".to_string();
        }
        let one = |x: &ArmModule| {
            let name = Path::new(&x.source).file_name().map_or_else(|| x.source.clone(), |n| n.to_string_lossy().into_owned());
            std::iter::once(name).chain(x.params.iter().map(|(k, v)| format!("{k}={v}"))).collect::<Vec<_>>().join(" ")
        };
        c.modules.iter().map(one).collect::<Vec<_>>().join(", ")
    };
    let setup = |c: &ArmConfig| match c.setup.as_slice() {
        [] => "setup none".to_string(),
        cmds => format!("setup {}", cmds.iter().map(|c| format!("`{}`", shorten(c, 40))).collect::<Vec<_>>().join(" ")),
    };
    let payload = |c: &ArmConfig| match c.payload.as_slice() {
        [] => "payload none".to_string(),
        items => format!("payload {}", items.iter().map(|p| format!("{} → {}", p.src, p.dst)).collect::<Vec<_>>().join(" ")),
    };
    let arm = |name: &str, c: &ArmConfig| {
        let mut parts = vec![modules(c)];
        if m.setup != b.setup {
            parts.push(setup(c));
        }
        if m.payload != b.payload {
            parts.push(payload(c));
        }
        format!("{name}: {}", parts.join(", "))
    };
    format!("{}; {}", arm("module", m), arm("baseline", b))
}

/// `s` cut to `max` characters, with an ellipsis when cut.
fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod arms {
    use super::*;
    use crate::outcome::leak::ArmPayload;

    fn khm(leak: &str) -> ArmModule {
        ArmModule { source: "khm".into(), params: [("leak".to_string(), leak.to_string())].into() }
    }

    #[test]
    fn the_arms_line_names_each_arms_modules_and_only_what_differs_besides() {
        let setup = vec!["sysctl -w vm.dirty_ratio=10".to_string()];
        let m = ArmConfig { modules: vec![khm("1")], payload: vec![], setup: setup.clone() };
        let b = ArmConfig { modules: vec![khm("0")], payload: vec![], setup };
        assert_eq!(arms_line(&m, &b), "module: khm leak=1; baseline: khm leak=0");
        let m = ArmConfig { modules: vec![], payload: vec![ArmPayload { src: "x.c".into(), dst: "/opt/x".into() }], setup: vec!["touch /root/a-very-long-marker-file-name-for-the-module-arm".into()] };
        let b = ArmConfig::default();
        assert_eq!(
            arms_line(&m, &b),
            "module: no modules, setup `touch /root/a-very-long-marker-file-name…`, payload x.c → /opt/x; baseline: no modules, setup none, payload none"
        );
    }
}

#[cfg(test)]
mod readme {
    /// The line shapes the A/B summary prints: the prefix of each kind of
    /// line, or the whole table header.
    fn shapes() -> Vec<String> {
        let mut v: Vec<String> = ["lab ", "  why: ", "  kind: ", "    - ", "  code: ", "  attribution pass: ", "    tried: ", "  undecided: ", "  rules out (80 % power): ", "  needs: ", "  exhausts ", "  vmcore by ", "  crash: ", "  drgn: ", "  crash triage skipped: ", "  sample gaps: ", "  module arm: ", "  arms: ", "  run directory: "]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.push("  slab module − baseline: ".into());
        v.push("  sunreclaim module − baseline: ".into());
        v.push("  objects module − baseline: ".into());
        v
    }

    /// The pages that show A/B outputs: the README (the leak lab), the
    /// method (the no-leak lab, calibration) and dumps (leak-to-crash).
    const PAGES: [&str; 3] = [include_str!("../../README.md"), include_str!("../../docs/method.md"), include_str!("../../docs/dumps.md")];

    /// A culprit table's row as the README shows it: eleven words, the
    /// interval's four (`1.00 [1.00 .. 1.00]`) making one cell.
    fn cells(line: &str) -> Option<Vec<String>> {
        let w: Vec<&str> = line.split_whitespace().collect();
        (w.len() == 11).then(|| {
            let mut c: Vec<String> = w[..4].iter().map(|s| s.to_string()).collect();
            c.push(w[4..8].join(" "));
            c.extend(w[8..].iter().map(|s| s.to_string()));
            c
        })
    }

    /// Every A/B output block in the README and the docs (a fenced block
    /// whose first line is `lab … : LEAK|NO-LEAK|INCONCLUSIVE …`) has only
    /// lines this code prints, and its culprit table is laid out as this
    /// code lays out the same cells: a block pasted from an older kernlab
    /// fails here.
    #[test]
    fn the_readme_output_blocks_are_what_the_summary_prints() {
        let mut blocks = 0;
        for block in PAGES.iter().flat_map(|page| page.split("```").skip(1).step_by(2)) {
            let body = block.trim_start_matches(|c: char| c != '\n').trim_start_matches('\n');
            let first = body.lines().next().unwrap_or("");
            if !(first.starts_with("lab ") && [": LEAK", ": NO-LEAK", ": INCONCLUSIVE", ": BOUNDED"].iter().any(|v| first.contains(v))) {
                continue;
            }
            blocks += 1;
            // The culprit table: its header, then rows until a known line.
            let mut table: Option<(Vec<&str>, Vec<Vec<String>>)> = None;
            for line in body.lines().filter(|l| !l.trim().is_empty()) {
                if line.starts_with("  CACHE ") {
                    table = Some((vec![line], Vec::new()));
                    continue;
                }
                if shapes().iter().any(|p| line.starts_with(p.as_str())) {
                    if let Some((lines, rows)) = table.take() {
                        check_table(&lines, &rows, body);
                    }
                    continue;
                }
                let row = cells(line).filter(|_| line.starts_with("  "));
                match (table.as_mut(), row) {
                    (Some((lines, rows)), Some(r)) => {
                        lines.push(line);
                        rows.push(r);
                    }
                    _ => panic!("README or docs line not printed by this kernlab:\n{line}\nin block:\n{body}"),
                }
            }
            if let Some((lines, rows)) = table.take() {
                check_table(&lines, &rows, body);
            }
        }
        assert!(blocks >= 2, "the README and docs/dumps.md show at least the leak lab's and the leak-to-crash lab's output ({blocks} found)");
    }

    /// The table lines of a block are what `culprit_table` prints for the
    /// same cells (rates per op, as every shown lab counts operations).
    fn check_table(lines: &[&str], rows: &[Vec<String>], body: &str) {
        let printed: Vec<String> = super::culprit_table("op", rows).into_iter().map(|l| format!("  {l}")).collect();
        assert_eq!(lines, printed, "a culprit table in the README or docs is not laid out as this kernlab prints it; in block:\n{body}");
    }
}
