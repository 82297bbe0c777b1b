//! The report pages, as pure functions from a run's parsed data to HTML:
//! one run (an arm, or a plain lab), an A/B leak lab, and a matrix index.

use std::path::Path;

use maud::{html, Markup};

use super::html::{self, TableCell};
use super::plot::{self, Chart, Line, Marker, FitBand};
use super::RunData;
use crate::outcome::event::{Event, Stamped};
use crate::outcome::run::Manifest;
use crate::analysis::leak::{num, ArmSeries, Evidence, LeakAnalysis};
use super::summary as ab;
use crate::outcome::leak::LeakReport;
use crate::outcome::matrix::CellResult;
use crate::stats;

const MIB: f64 = 1048576.0;

fn mib(b: f64) -> String {
    format!("{:.2} MiB", b / MIB)
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

/// The event markers of a run: the moments that explain a bend in a curve.
pub fn markers(events: &[Stamped]) -> Vec<Marker> {
    let mut v = Vec::new();
    for e in events {
        let (label, color) = match &e.event {
            Event::ModuleLoaded { name, .. } => (format!("module {name} loaded"), plot::PURPLE),
            Event::WorkloadStarted { .. } => ("workload started".to_string(), plot::GREEN),
            Event::WorkloadFinished { .. } => ("workload finished".to_string(), plot::Rgb(0x1a, 0x6b, 0x1a)),
            Event::Exhaustion { trigger } => (format!("exhaustion: {}", short(trigger, 48)), plot::ORANGE),
            Event::PanicTriggered { how } => (format!("panic: {}", short(how, 48)), plot::DARK_RED),
            Event::Qmp { name, .. } if matches!(name.as_str(), "GUEST_PANICKED" | "GUEST_CRASHLOADED") => ("guest panicked".to_string(), plot::DARK_RED),
            Event::DumpWritten { via, .. } => (format!("dump written ({via})"), plot::BROWN),
            _ => continue,
        };
        v.push(Marker { x: e.t, label, color });
    }
    v
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// A chart as a figure, or a note saying why it could not be drawn: a
/// chart never takes the rest of the page down with it.
fn figure(chart: &Chart, caption: &str) -> Markup {
    if chart.is_empty() {
        return html::note("none", &format!("{}: no samples.", chart.title));
    }
    match plot::svg(chart) {
        Ok(svg) => html::figure(&svg, caption),
        Err(e) => html::note("bad", &format!("{}: chart not drawn: {e}", chart.title)),
    }
}

fn cache_bytes(rows: &[(f64, f64, f64)]) -> Vec<(f64, f64)> {
    rows.iter().map(|&(t, a, sz)| (t, a * sz)).collect()
}

/// A series against the cumulative operation count at the same sample
/// times (the sampler writes both with the same `t`, to the millisecond).
fn against_ops(series: &[(f64, f64)], arm: &ArmSeries) -> Vec<(f64, f64)> {
    let ms = |t: f64| (t * 1000.0).round() as i64;
    let ops: std::collections::HashMap<i64, f64> = arm.ops.iter().map(|&(t, n)| (ms(t), n)).collect();
    series.iter().filter_map(|&(t, y)| ops.get(&ms(t)).map(|&n| (n, y))).collect()
}

/// Theil–Sen of a series that has no fit in a report yet (a plain run),
/// on at most 1,000 points: the pairwise slopes are O(n²).
fn fit_of(points: &[(f64, f64)], alpha: f64) -> Option<stats::Fit> {
    let (t, y): (Vec<f64>, Vec<f64>) = plot::thin(points, 1000).into_iter().unzip();
    stats::fit(&t, &y, alpha).ok()
}

fn band_label(arm: &str, alpha: f64) -> String {
    format!("{arm}: Theil–Sen fit, {:.0} % band", (1.0 - alpha) * 100.0)
}

fn meminfo_chart(title: &str, d: &RunData, markers: &[Marker]) -> Chart {
    let mut c = Chart::new(title, "run time (s)", "memory");
    c.y_from_zero = true;
    for (key, color) in [("MemAvailable", plot::GREEN), ("Slab", plot::MODULE), ("SUnreclaim", plot::ORANGE)] {
        if let Some(p) = d.series.meminfo.get(key) {
            c.lines.push(Line { label: key.into(), color, points: p.clone() });
        }
    }
    // The host's view through the balloon device, when it was sampled.
    for (key, label, color) in [
        ("stat-available-memory", "balloon: available (host view)", plot::CYAN),
        ("stat-free-memory", "balloon: free (host view)", plot::GREY),
    ] {
        if let Some(p) = d.balloon.get(key).filter(|p| !p.is_empty()) {
            c.lines.push(Line { label: label.into(), color, points: p.clone() });
        }
    }
    c.markers = markers.to_vec();
    c
}

/// An event's name and its fields as `key=value` text, for the table.
fn event_detail(e: &Event) -> (String, String) {
    let serde_json::Value::Object(mut fields) = serde_json::to_value(e).unwrap_or_default() else { return (String::new(), String::new()) };
    let name = match fields.remove("event") {
        Some(serde_json::Value::String(n)) => n,
        _ => String::new(),
    };
    let detail: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={}", v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))).collect();
    (name, detail.join(", "))
}

fn events_table(events: &[Stamped]) -> Markup {
    let rows: Vec<Vec<TableCell>> = events
        .iter()
        .filter(|e| !matches!(e.event, Event::Sample { .. }))
        .take(300)
        .map(|e| {
            let (name, detail) = event_detail(&e.event);
            vec![TableCell::Num(format!("{:.3}", e.t)), TableCell::Text(name), TableCell::Text(short(&detail, 400))]
        })
        .collect();
    if rows.is_empty() {
        return html::note("none", "No events recorded.");
    }
    html::table("events", &["t (s)", "event", "detail"], &rows)
}

fn manifest_table(m: Option<&Manifest>) -> Markup {
    let Some(m) = m else { return html::note("none", "No manifest.json.") };
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    // One option and its value per line, quoted as a shell would need them.
    let mut argv_text = String::new();
    for a in &m.qemu_argv {
        if a.starts_with('-') && !argv_text.is_empty() {
            argv_text.push_str(" \\\n  ");
        } else if !argv_text.is_empty() {
            argv_text.push(' ');
        }
        argv_text.push_str(&crate::util::tool::shell_quote(a));
    }
    let k = m.kernel.as_ref();
    let kernel = k.map(|k| format!("{} (release {}, {} {})", k.name, k.release, k.source, k.version)).unwrap_or_else(|| "-".into());
    let rows: Vec<(&str, TableCell)> = vec![
        ("kernlab", TableCell::Text(m.kernlab_version.clone())),
        ("lab", TableCell::Text(format!("{} ({}, sha256 {})", m.lab_name, m.lab_file, m.lab_sha256))),
        ("kernel", TableCell::Text(kernel)),
        ("kernel package sha256", TableCell::Html(html::code(&or_dash(k.map(|k| k.package_sha256.clone()))))),
        ("vmlinuz sha256", TableCell::Html(html::code(&or_dash(k.map(|k| k.vmlinuz_sha256.clone()))))),
        ("image", TableCell::Html(html! { (html::code(&or_dash(m.image_sha256.clone()))) " (" (or_dash(m.image_bytes.map(|b| b.to_string()))) " bytes)" })),
        ("image modules", TableCell::Text(m.image_modules.join(" "))),
        ("accelerator", TableCell::Text(m.accel.as_ref().map(|a| format!("{}: {}", a.accel, a.reason)).unwrap_or_else(|| "-: -".into()))),
        ("QEMU", TableCell::Text(or_dash(m.qemu_version.clone()))),
        ("QEMU argv", TableCell::Html(html::pre(&argv_text))),
        ("SSH port", TableCell::Text(or_dash(m.ssh_port.map(|p| p.to_string())))),
        ("host kernel", TableCell::Text(m.host_kernel.clone())),
        ("started", TableCell::Text(m.started.clone())),
    ];
    html::pairs("manifest", &rows)
}

/// The vmcore and `crash`'s reading of it, when the run took one.
/// The dump and its triage. `arm` is the arm's directory under the page's
/// (`module` on an A/B lab's page, none on a run's own): the record's
/// relative paths are shown as seen from the page.
fn crash_section(d: &RunData, arm: Option<&str>) -> Markup {
    let Some(r) = &d.report else { return html! {} };
    if r.dump.is_none() && r.triage.is_none() && r.triage_skipped.is_none() {
        return html! {};
    }
    let seen = |p: &Path| -> String {
        match arm {
            Some(sub) if p.is_relative() => Path::new(sub).join(p).display().to_string(),
            _ => p.display().to_string(),
        }
    };
    let dump = r.dump.as_ref().map(|dump| {
        html::pairs(
            "dump",
            &[
                ("vmcore", TableCell::Html(html::code(&seen(&dump.vmcore)))),
                ("written by", TableCell::Text(dump.via.clone())),
                ("why", TableCell::Text(dump.reason.clone())),
                ("size", TableCell::Text(mib(dump.bytes as f64))),
                ("trigger → vmcore", TableCell::Text(format!("{:.1} s", dump.secs))),
            ],
        )
    });
    let triage = r.triage.as_ref().map(|t| {
        let mem: Vec<Vec<TableCell>> = t.memory.iter().map(|(k, b)| vec![TableCell::Text(k.clone()), TableCell::Num(mib(*b as f64))]).collect();
        let caches: Vec<Vec<TableCell>> = t
            .top_caches
            .iter()
            .map(|c| {
                vec![
                    TableCell::Text(c.name.clone()),
                    TableCell::Num(c.objsize.to_string()),
                    TableCell::Num(c.allocated.to_string()),
                    TableCell::Num(c.total.to_string()),
                    TableCell::Num(mib(c.bytes as f64)),
                ]
            })
            .collect();
        html! {
            @if let Some(p) = &t.panic { p { strong { "Panic:" } " " (p) } "\n" }
            h3 { "Memory at the crash (" code { "kmem -i" } ")" } "\n"
            (html::table("kmem-i", &["", "size"], &mem))
            h3 { "Largest slab caches at the crash (" code { "kmem -s" } ")" } "\n"
            (html::table("kmem-s", &["cache", "objsize", "allocated", "total", "size"], &caches))
            @if let Some(refs) = &t.refs { (super::dumprefs::markup(refs)) }
            p { "crash's full output: " (html::code(&seen(&t.text))) } "\n"
        }
    });
    let skipped = r.triage_skipped.as_ref().map(|why| html::note("warn", &format!("Triage skipped: {why}")));
    html::section("crash", "Crash dump and triage", html! { (dump.unwrap_or_default()) (triage.unwrap_or_default()) (skipped.unwrap_or_default()) })
}

/// The terminal summary, folded.
fn terminal_summary(text: &str) -> Markup {
    html! { details { summary { "terminal summary" } "\n" (html::pre(text)) } "\n" }
}

/// The page of one run directory: a plain lab, or one arm of an A/B lab.
pub fn run_page(d: &RunData, footer: &str) -> String {
    let marks = markers(&d.events);
    let mut body: Vec<Markup> = Vec::new();

    // The verdict table: what the terminal summary says, laid out.
    let (title, subtitle) = match &d.report {
        Some(r) => (
            format!("{} on {}: {}", r.lab, r.kernel, r.outcome),
            format!("{} · {}", r.kernel_release.as_deref().unwrap_or("-"), d.dir.display()),
        ),
        None => (format!("run {}", d.dir.display()), "no report.json: the run did not finish".into()),
    };
    if let Some(r) = &d.report {
        let mut rows = vec![
            ("outcome", TableCell::Html(html::badge(r.exit_code, &r.outcome))),
            ("exit code", TableCell::Text(r.exit_code.to_string())),
        ];
        if let Some(e) = &r.error {
            rows.push(("error", TableCell::Html(html::pre(e))));
        }
        rows.extend([
            ("accelerator", TableCell::Text(r.accel.clone().unwrap_or_else(|| "-".into()))),
            ("samples", TableCell::Text(format!("{} ({} gaps)", r.samples, r.sample_gaps))),
            ("operations", TableCell::Text(r.operations.map(|o| o.words()).unwrap_or_else(|| "- (no workload)".into()))),
            ("boot to SSH", TableCell::Text(format!("{:.2} s (init {})", r.timings.boot_to_ssh, opt(r.timings.init, |s| format!("{s:.2} s"))))),
            ("total", TableCell::Text(format!("{:.1} s", r.timings.total))),
        ]);
        let mut v = vec![html::pairs("verdict", &rows)];
        let mem: Vec<Vec<TableCell>> = r
            .meminfo
            .iter()
            .map(|(k, fl)| vec![TableCell::Text(k.clone()), TableCell::Num(mib(fl.first as f64)), TableCell::Num(mib(fl.last as f64)), TableCell::Num(format!("{:+.2} MiB", fl.delta as f64 / MIB))])
            .collect();
        if !mem.is_empty() {
            v.push(html::table("meminfo", &["meminfo", "first", "last", "change"], &mem));
        }
        let slab: Vec<Vec<TableCell>> = r
            .top_slab_growth
            .iter()
            .map(|g| {
                vec![
                    TableCell::Text(g.cache.clone()),
                    TableCell::Num(format!("{:.1} KiB", g.first_bytes as f64 / 1024.0)),
                    TableCell::Num(format!("{:.1} KiB", g.last_bytes as f64 / 1024.0)),
                    TableCell::Num(format!("{:+.1} KiB", g.delta_bytes as f64 / 1024.0)),
                    TableCell::Num(format!("{:+}", g.delta_objs)),
                ]
            })
            .collect();
        if !slab.is_empty() {
            v.push(html::table("slab-growth", &["slab cache", "first", "last", "growth", "objects"], &slab));
        }
        v.push(terminal_summary(&super::summary::run_summary(r, Some(&d.dir))));
        body.push(html::section("verdict", "Summary", join(v)));
    }
    // What the dump says comes right after the answer: it is the diagnosis
    // of a run that ran out of memory. The series are the evidence.
    body.push(crash_section(d, None));

    // The fastest-growing caches, each with its Theil–Sen line and band.
    let mut charts: Vec<Markup> = Vec::new();
    let top: Vec<&str> = d.slab_growth.iter().filter(|g| g.delta_bytes > 0).take(4).map(|g| g.cache.as_str()).collect();
    for name in &top {
        let Some(rows) = d.series.caches.get(*name) else { continue };
        let pts = cache_bytes(rows);
        let mut c = Chart::new(&format!("slab cache {name}"), "run time (s)", "active bytes");
        c.height = 320;
        if let Some(f) = fit_of(&pts, stats::DEFAULT_FIT_ALPHA) {
            c.trends.extend(FitBand::fit(&band_label("fit", f.alpha), plot::MODULE, &pts, f.slope, f.lower, f.upper));
        }
        c.lines.push(Line { label: (*name).into(), color: plot::MODULE, points: pts });
        c.markers = marks.clone();
        charts.push(figure(&c, &format!("Active bytes of {name} at each sample, with the Theil–Sen line and the band of Sen's interval.")));
    }
    if let Some(slab) = d.series.meminfo.get("Slab").filter(|_| d.series.ops_total().is_some()) {
        let pts = against_ops(slab, &d.series);
        let mut c = Chart::new("Slab against workload operations", "cumulative operations", "Slab");
        c.height = 320;
        let (n, y): (Vec<f64>, Vec<f64>) = plot::thin(&pts, 1000).into_iter().unzip();
        if let Ok(f) = stats::fit(&n, &y, stats::DEFAULT_FIT_ALPHA) {
            c.trends.extend(FitBand::fit(&band_label("fit", f.alpha), plot::MODULE, &pts, f.slope, f.lower, f.upper));
        }
        c.lines.push(Line { label: "Slab".into(), color: plot::MODULE, points: pts });
        charts.push(figure(&c, "meminfo Slab against the workload's cumulative operation count: the slope is bytes per operation."));
    }
    if !charts.is_empty() {
        body.push(html::section("growth", "Growing slab caches", join(charts)));
    }
    let mem = meminfo_chart("memory", d, &marks);
    body.push(html::section("memory", "Memory over time", figure(&mem, "meminfo (and the balloon's host view) at each sample; vertical lines are the run's events.")));
    body.push(html::section("events", "Events", events_table(&d.events)));
    body.push(html::section("manifest", "Manifest", manifest_table(d.manifest.as_ref())));
    html::page(&title, &subtitle, join(body), footer)
}

/// Pieces of a page, one after the other.
fn join(parts: Vec<Markup>) -> Markup {
    html! { @for p in parts { (p) } }
}

fn verdict_text(r: &LeakReport) -> (&'static str, &'static str) {
    ab::verdict_words(r)
}

/// Why a hypothesis' plot is on the page: what it did for the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Holm rejected "at most its floor": it is the LEAK.
    Rejected,
    /// It rose and levelled off: the BOUNDED.
    LevelledOff,
    /// Below its floor, the nearest to it: the last to be decided.
    Closest,
}

/// One plot of the evidence: a cache, or the lab's metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Plotted<'a> {
    Cache(&'a Evidence, Why),
    Metric,
}

/// How near a hypothesis' upper bound is to its floor (1 is on it; the
/// per-second check counts too when there was one).
fn nearness(e: &Evidence) -> f64 {
    let r = |upper: f64, floor: f64| if floor > 0.0 && upper.is_finite() { upper / floor } else { f64::NEG_INFINITY };
    let per_op = r(e.upper, e.floor);
    e.per_second.map(|s| per_op.max(r(s.upper, s.floor))).unwrap_or(per_op)
}

/// The caches in the order that explains the verdict: those that rejected
/// their floor (strongest first), those that levelled off, then the rest,
/// the nearest to its floor first. Not by bytes: a big cache that stayed
/// far below its floor decided nothing.
pub fn by_decision(a: &LeakAnalysis) -> Vec<(&Evidence, Why)> {
    let mut rejected: Vec<&Evidence> = a.caches.iter().filter(|c| c.leak).collect();
    rejected.sort_by(|x, y| x.p_holm.total_cmp(&y.p_holm).then(y.bytes[0].total_cmp(&x.bytes[0])));
    let levelled = a.caches.iter().filter(|c| !c.leak && c.bounded.is_some());
    let mut rest: Vec<&Evidence> = a.caches.iter().filter(|c| !c.leak && c.bounded.is_none()).collect();
    rest.sort_by(|x, y| nearness(y).total_cmp(&nearness(x)));
    rejected
        .into_iter()
        .map(|c| (c, Why::Rejected))
        .chain(levelled.map(|c| (c, Why::LevelledOff)))
        .chain(rest.into_iter().map(|c| (c, Why::Closest)))
        .collect()
}

/// The plots that show what decided the verdict, in order: the caches that
/// rejected their floor, those that levelled off, the metric, and for a
/// verdict other than LEAK the caches nearest to their floor (the last to
/// be decided). At most `max_caches` caches.
pub fn deciding_plots(a: &LeakAnalysis, max_caches: usize) -> Vec<Plotted<'_>> {
    let ranked = by_decision(a);
    let mut out: Vec<Plotted> = ranked.iter().filter(|(_, w)| *w != Why::Closest).take(max_caches).map(|&(c, w)| Plotted::Cache(c, w)).collect();
    out.push(Plotted::Metric);
    if a.verdict != stats::Verdict::Leak {
        let room = max_caches.saturating_sub(out.len() - 1).min(3);
        out.extend(ranked.iter().filter(|(_, w)| *w == Why::Closest).take(room).map(|&(c, w)| Plotted::Cache(c, w)));
    }
    out
}

/// The answer in one line: the verdict, whether it was expected, and why
/// in one sentence (the analysis' reason, or the arm that failed).
fn answer(r: &LeakReport) -> Markup {
    let (v, held) = verdict_text(r);
    let expected = if r.expectation_held == Some(false) { format!(" (expected {})", crate::outcome::kebab(&r.expect)) } else { String::new() };
    let why = match &r.analysis {
        Some(a) => a.reason.clone(),
        None => arm_failure(r),
    };
    html! { p.answer { (html::badge(r.exit_code, v)) @if !held.is_empty() { " " (held) } (expected) ": " (why) } "\n" }
}

/// Which arm failed and how, in one line.
fn arm_failure(r: &LeakReport) -> String {
    for (name, o) in [("module", &r.module), ("baseline", &r.baseline)] {
        if let Some(e) = &o.error {
            return format!("the {name} arm failed (exit {}): {}", o.exit_code, e.lines().next().unwrap_or(""));
        }
    }
    "an arm did not finish, so there is nothing to compare".into()
}

/// A rate with its interval, `0.000557 [0.000544 .. 0.000571]`.
fn interval(e: &Evidence) -> String {
    format!("{} [{} .. {}]", num(e.delta), num(e.lower), num(e.upper))
}

/// The page of an A/B leak lab. It leads with the answer: the verdict in
/// one line, then the diagnosis (what leaks, per operation, its kind and
/// code, a bisection's result), then the evidence (the plots of what
/// decided it, the tables, the looks, the arms), then each arm's memory,
/// crash, events and manifest.
pub fn ab_page(r: &LeakReport, top: &Path, module: &RunData, baseline: &RunData, footer: &str) -> String {
    let (v, held) = verdict_text(r);
    let title = format!("{} on {}: {v} {held}", r.lab, r.kernel);
    let subtitle = format!("A/B leak lab, module arm against baseline arm · {}", top.display());
    let marks = markers(&module.events);
    let mut body: Vec<Markup> = vec![html::section("verdict", "Verdict", answer(r)), diagnosis_section(r, top)];

    let mut evidence: Vec<Markup> = Vec::new();
    // The plots of what decided the verdict, against the regressor it used,
    // each arm with its fitted line and band.
    if let Some(a) = &r.analysis {
        let u = ab::per(a);
        let per_op = a.basis == crate::analysis::leak::Basis::PerOp;
        let xlabel = if per_op { "cumulative operations" } else { "run time (s)" };
        let against = |pts: &[(f64, f64)], arm: &ArmSeries| if per_op { against_ops(pts, arm) } else { pts.to_vec() };
        let mut charts: Vec<Markup> = Vec::new();
        for p in deciding_plots(a, 6) {
            match p {
                Plotted::Metric => {
                    // The record's word, read back as the type the series knows.
                    let metric: crate::lab::Metric = a.metric.parse().unwrap_or_default();
                    let (m, b) = (module.series.metric(&metric), baseline.series.metric(&metric));
                    let mut c = Chart::new(&format!("{} in both arms", a.metric), xlabel, &a.metric);
                    let fits = a.total.as_ref().map(|t| (t.module.trend.clone(), t.baseline.trend.clone())).unwrap_or_default();
                    for (label, color, arm, pts, fit) in [("module", plot::MODULE, &module.series, &m, fits.0), ("baseline", plot::BASELINE, &baseline.series, &b, fits.1)] {
                        let p = against(pts, arm);
                        if let Some(f) = fit {
                            let t = stats::student::t_quantile(1.0 - a.alpha, f.df);
                            c.trends.extend(FitBand::fit(&format!("{label} fit ± t·se"), color, &p, f.slope, f.slope - t * f.se, f.slope + t * f.se));
                        }
                        c.lines.push(Line { label: format!("{label} arm"), color, points: p });
                    }
                    if !per_op {
                        c.markers = marks.clone();
                    }
                    let what = match &a.total {
                        Some(t) if t.leak => format!("The metric rejected its floor: Δ {} bytes/{u}, floor {}.", interval(t), num(t.floor)),
                        Some(t) => match t.bounded {
                            Some(b) => format!("The metric levelled off: {} bytes held, late growth at most {} bytes/{u}.", num(b.held), num(b.late_upper)),
                            None => format!("Δ {} bytes/{u}, floor {}: the upper bound is {:.0} % of the floor.", interval(t), num(t.floor), 100.0 * nearness(t).max(0.0)),
                        },
                        None => String::new(),
                    };
                    charts.push(figure(&c, &format!("The lab's metric in both arms with each arm's fitted line (GLS with AR(1) noise, or first differences) and its band; the verdict tests the difference of the slopes. {what}")));
                }
                Plotted::Cache(f, why) => {
                    let objs = |arm: &ArmSeries| arm.caches.get(&f.name).map(|r| r.iter().map(|&(t, o, _)| (t, o)).collect::<Vec<_>>()).unwrap_or_default();
                    let (m, b) = (against(&objs(&module.series), &module.series), against(&objs(&baseline.series), &baseline.series));
                    // Objects, not bytes: the axis shows the counts as they are.
                    let mut c = Chart::new(&format!("slab cache {}", f.name), xlabel, "active");
                    c.y_unit = plot::YUnit::Plain("objects");
                    c.height = 320;
                    for (label, color, pts, fit) in [("module", plot::MODULE, &m, &f.module.trend), ("baseline", plot::BASELINE, &b, &f.baseline.trend)] {
                        if let Some(fit) = fit {
                            let t = stats::student::t_quantile(1.0 - a.alpha, fit.df);
                            c.trends.extend(FitBand::fit(&format!("{label} fit ± t·se"), color, pts, fit.slope, fit.slope - t * fit.se, fit.slope + t * fit.se));
                        }
                        c.lines.push(Line { label: format!("{label} arm"), color, points: pts.clone() });
                    }
                    let why = match why {
                        Why::Rejected => format!("Rejected its floor {} (Holm p {:.1e}).", num(f.floor), f.p_holm),
                        Why::LevelledOff => f.bounded.map(|b| format!("Levelled off: {} objects held, late growth at most {} objects/{u}.", num(b.held), num(b.late_upper))).unwrap_or_default(),
                        Why::Closest => format!("Below its floor {}: the upper bound is {:.0} % of it (the caches nearest to their floor are shown).", num(f.floor), 100.0 * nearness(f).max(0.0)),
                    };
                    charts.push(figure(&c, &format!("Active objects of {} in both arms; Δ {} objects per {u}. {why}", f.name, interval(f))));
                }
            }
        }
        evidence.push(html! { h3 { "What decided it" } "\n" (join(charts)) });
        evidence.push(hypotheses_table(a));
        evidence.push(looks_table(a));
        let ex: Vec<Vec<TableCell>> = a
            .exhaustion
            .iter()
            .map(|e| vec![TableCell::Text(e.memory.clone()), TableCell::Text(ab::duration(e.fastest_s)), TableCell::Text(ab::duration(e.slowest_s))])
            .collect();
        if !ex.is_empty() {
            evidence.push(html! { h3 { "Time to exhaustion" } "\n" (html::table("exhaustion", &["exhausts", "at the fastest", "at the slowest"], &ex)) });
        }
    } else {
        evidence.push(html::note("none", "No analysis: an arm failed. Each arm's own report has its series."));
    }
    evidence.push(html! { h3 { "How it was decided" } "\n" (numbers_table(r)) });
    evidence.push(terminal_summary(&ab::leak_summary(r, top)));
    body.push(html::section("evidence", "Evidence", join(evidence)));

    let mem = html! {
        (figure(&meminfo_chart("memory, module arm", module, &marks), "meminfo of the module arm; vertical lines are its events."))
        (figure(&meminfo_chart("memory, baseline arm", baseline, &markers(&baseline.events)), "meminfo of the baseline arm."))
    };
    body.push(html::section("memory", "Memory over time", mem));
    body.push(crash_section(module, Some("module")));
    body.push(html::section("events", "Events of the module arm", events_table(&module.events)));
    let man = html! {
        h3 { "module arm" } "\n" (manifest_table(module.manifest.as_ref()))
        h3 { "baseline arm" } "\n" (manifest_table(baseline.manifest.as_ref()))
    };
    body.push(html::section("manifest", "Manifests", man));
    html::page(&title, &subtitle, join(body), footer)
}

/// The lab's numbers around the verdict, line for line what the terminal
/// summary says: method, metric, what a NO-LEAK rules out, the arms.
fn numbers_table(r: &LeakReport) -> Markup {
    let mut rows = vec![
        ("expected", TableCell::Text(crate::outcome::kebab(&r.expect))),
        ("exit code", TableCell::Text(r.exit_code.to_string())),
    ];
    if let Some(a) = &r.analysis {
        let u = ab::per(a);
        rows.push(("stopped", TableCell::Text(r.stopped.clone())));
        rows.push((
            "method",
            TableCell::Text(format!(
                "{} hypotheses (the {} and every cache that changed), Holm at α {} spent over {} of {} planned looks; fits per {}",
                a.family,
                a.metric,
                a.alpha,
                a.sequential.looks.len(),
                a.sequential.planned.len(),
                if u == "op" { "operation" } else { "second" }
            )),
        ));
        if let Some(n) = &a.basis_note {
            rows.push(("basis", TableCell::Text(n.clone())));
        }
        if let Some(n) = &a.rate_note {
            rows.push(("rates", TableCell::Text(n.clone())));
        }
        if let Some(t) = &a.total {
            rows.push((
                "metric, module − baseline",
                TableCell::Text(format!("{} bytes/{u} [{} .. {}] of {}, floor {} bytes/{u}", num(t.delta), num(t.lower), num(t.upper), a.metric, num(t.floor))),
            ));
        }
        if a.verdict != stats::Verdict::Leak {
            if let Some(d) = &a.detectable {
                rows.push(("rules out (80 % power)", TableCell::Text(rules_out(d, u))));
            }
        }
        if let Some(n) = &a.needs {
            rows.push(("needs", TableCell::Text(n.clone())));
        }
        rows.push(("samples per arm", TableCell::Text(format!("module {}, baseline {}", a.samples[0], a.samples[1]))));
        if let Some(rate) = a.ops_per_s[0] {
            rows.push(("operations", TableCell::Text(format!("{rate:.0} ops/s in the module arm"))));
        }
    }
    for (name, o) in [("module arm error", &r.module), ("baseline arm error", &r.baseline)] {
        if let Some(e) = &o.error {
            rows.push((name, TableCell::Html(html::pre(e))));
        }
    }
    if let (Some(m), Some(b)) = (&r.module.config, &r.baseline.config) {
        rows.push(("what the arms ran", TableCell::Text(super::summary::arms_line(m, b))));
    }
    rows.push(("arms", TableCell::Html(html! { (html::link("module/report.html", "module arm report")) " · " (html::link("baseline/report.html", "baseline arm report")) })));
    rows.push(("duration", TableCell::Text(format!("{:.1} s", r.secs))));
    html::pairs("verdict", &rows)
}

fn rules_out(d: &crate::analysis::leak::Detectable, u: &str) -> String {
    format!(
        "{} bytes/{u}{} in the noisiest cache ({}); {} objects/{u} into a cache of the module's own",
        num(d.bytes),
        d.objects.map(|o| format!(" ({} objects/{u})", num(o))).unwrap_or_default(),
        d.name,
        num(d.own_cache_objects)
    )
}

/// Every hypothesis of the family: the metric, then the caches in the
/// order that explains the verdict (at most 12).
fn hypotheses_table(a: &LeakAnalysis) -> Markup {
    let u = ab::per(a);
    let state = |e: &Evidence| match (e.leak, e.bounded) {
        (true, _) => "LEAK".to_string(),
        (false, Some(p)) => format!("BOUNDED at {} held", num(p.held)),
        _ if e.upper < e.floor => "below".into(),
        _ => "undecided".into(),
    };
    let row = |e: &Evidence, objs: &str| {
        vec![
            TableCell::Text(e.name.clone()),
            TableCell::Num(format!("{:.0}", e.objsize)),
            TableCell::Num(format!("{} → {}", num(e.module.first), num(e.module.last))),
            TableCell::Num(format!("{} → {}", num(e.baseline.first), num(e.baseline.last))),
            TableCell::Num(format!("{} {objs}", interval(e))),
            TableCell::Num(num(e.floor)),
            TableCell::Num(num(e.bytes[0])),
            TableCell::Num(e.bytes_per_hour.map(|h| format!("{:.2} MiB", h[0] / MIB)).unwrap_or_else(|| "-".into())),
            TableCell::Num(format!("{:.1e}", e.p_holm)),
            TableCell::Text(state(e)),
        ]
    };
    let mut rows: Vec<Vec<TableCell>> = a.total.iter().map(|t| row(t, "bytes")).collect();
    rows.extend(by_decision(a).into_iter().take(12).map(|(c, _)| row(c, "objs")));
    if rows.is_empty() {
        return html::note("none", "No hypothesis was tested.");
    }
    let h1 = format!("Δ per {u} [interval]");
    let h2 = format!("Δ bytes/{u}");
    html! {
        h3 { "Every hypothesis, module − baseline" } "\n"
        (html::table("caches", &["hypothesis", "objsize", "module", "baseline", &h1, "floor", &h2, "Δ per hour", "Holm p", "verdict"], &rows))
    }
}

/// The looks taken at the run, the deciding one marked.
fn looks_table(a: &LeakAnalysis) -> Markup {
    let s = &a.sequential;
    let rows: Vec<Vec<TableCell>> = s
        .looks
        .iter()
        .enumerate()
        .map(|(i, l)| {
            vec![
                TableCell::Num((i + 1).to_string()),
                TableCell::Num(l.samples.to_string()),
                TableCell::Num(format!("{:.2e}", l.alpha)),
                TableCell::Num(if l.alpha_no_leak > 0.0 { format!("{:.2e}", l.alpha_no_leak) } else { "-".into() }),
                TableCell::Text(format!("{}{}", l.verdict.word(), if i == s.decided_at { " (decided)" } else { "" })),
            ]
        })
        .collect();
    let planned: Vec<String> = s.planned.iter().map(|n| n.to_string()).collect();
    html! {
        h3 { "Looks" } "\n"
        p { "Planned at " (planned.join(", ")) " samples per arm; " (if s.early { "decided early." } else { "decided at the last look taken." }) } "\n"
        (html::table("looks", &["look", "samples per arm", "α against a false LEAK", "α against a false NO-LEAK", "verdict"], &rows))
    }
}

/// What the verdict means for the module: what leaks, per operation, of
/// what kind and from which code; what levelled off; what a NO-LEAK rules
/// out; what an INCONCLUSIVE needs; a bisection's result.
fn diagnosis_section(r: &LeakReport, top: &Path) -> Markup {
    use stats::Verdict;
    let mut parts: Vec<Markup> = Vec::new();
    match (&r.analysis, r.verdict) {
        (Some(a), Some(Verdict::Leak)) => {
            let u = ab::per(a);
            let leaking: Vec<&Evidence> = a.total.iter().filter(|t| t.leak).chain(by_decision(a).into_iter().filter(|(_, w)| *w == Why::Rejected).map(|(c, _)| c)).collect();
            let rows: Vec<Vec<TableCell>> = leaking
                .iter()
                .map(|e| {
                    let unit = if e.kind == crate::analysis::leak::Kind::Total { "bytes" } else { "objects" };
                    vec![
                        TableCell::Text(e.name.clone()),
                        TableCell::Num(format!("{} {unit}", interval(e))),
                        TableCell::Num(num(e.bytes[0])),
                        TableCell::Num(e.bytes_per_hour.map(|h| format!("{:.2} MiB", h[0] / MIB)).unwrap_or_else(|| "-".into())),
                    ]
                })
                .collect();
            let h1 = format!("module − baseline per {}", if u == "op" { "operation" } else { "second" });
            let h2 = format!("bytes/{u}");
            parts.push(html! { h3 { "What leaks" } "\n" (html::table("leaks", &["what", &h1, &h2, "per hour"], &rows)) });
        }
        (Some(a), Some(Verdict::Bounded)) => {
            let rows: Vec<Vec<TableCell>> = a
                .total
                .iter()
                .chain(a.caches.iter())
                .filter_map(|e| e.bounded.map(|b| vec![TableCell::Text(e.name.clone()), TableCell::Num(num(b.held)), TableCell::Num(num(b.level)), TableCell::Num(format!("{} (floor {})", num(b.late_upper), num(e.floor)))]))
                .collect();
            parts.push(html! {
                p { "Nothing leaks: this growth stopped within the run." } "\n"
                (html::table("bounded", &["what", "held above the start", "module level", "late growth at most"], &rows))
            });
        }
        (Some(a), Some(Verdict::NoLeak)) => {
            let u = ab::per(a);
            let nearest = a.total.iter().chain(a.caches.iter()).max_by(|x, y| nearness(x).total_cmp(&nearness(y)));
            parts.push(html! {
                p { "Nothing leaks: every hypothesis stays below its floor." }
                @if let Some(e) = nearest { p { "Nearest to its floor: " strong { (e.name) } ", upper bound " (num(e.upper)) " of the floor " (num(e.floor)) " (" (format!("{:.0}", 100.0 * nearness(e).max(0.0))) " %)." } }
                @if let Some(d) = &a.detectable { p { "Rules out (80 % power): " (rules_out(d, u)) "." } }
            });
        }
        (Some(a), _) => {
            let undecided: Vec<Vec<TableCell>> = a
                .total
                .iter()
                .chain(a.caches.iter())
                .filter(|e| !e.leak && e.bounded.is_none() && e.upper >= e.floor)
                .take(8)
                .map(|e| vec![TableCell::Text(e.name.clone()), TableCell::Num(interval(e)), TableCell::Num(num(e.floor))])
                .collect();
            parts.push(html! {
                @if let Some(n) = &a.needs { p { "Needs: " (n) } }
                @if !undecided.is_empty() { h3 { "Not yet decided" } "\n" (html::table("undecided", &["hypothesis", "module − baseline [interval]", "floor"], &undecided)) }
            });
        }
        (None, _) => parts.push(html::note("bad", &format!("No analysis: {}.", arm_failure(r)))),
    }
    if let Some(a) = &r.attribution {
        parts.push(attribution_markup(a));
    } else if r.verdict == Some(Verdict::Leak) {
        parts.push(html::note("none", "No attribution in this record (kind and code were not looked for)."));
    }
    if let Some(b) = bisect_markup(top) {
        parts.push(b);
    }
    html::section("diagnosis", "Diagnosis", join(parts))
}

/// A LEAK's kind with its evidence, the code its attribution pass named,
/// and what the pass cost.
fn attribution_markup(a: &crate::outcome::leak::Attribution) -> Markup {
    use crate::analysis::attribution::Role;
    let mut parts = vec![html! {
        p { "Kind: " strong { (a.kind.words()) } }
        ul { @for e in &a.evidence { li { (e) } } }
    }];
    let rows: Vec<Vec<TableCell>> = a
        .sites
        .iter()
        .map(|s| {
            vec![
                TableCell::Text(s.function.clone()),
                TableCell::Text(s.module.clone()),
                TableCell::Text(s.cache.clone()),
                TableCell::Num(s.objects.to_string()),
                TableCell::Text(match s.role {
                    Role::Allocates => "allocated, never freed".into(),
                    Role::HoldsReferences => "took references never dropped".into(),
                    Role::TakesReferences => "the only code of the module taking such references (not counted: see tried)".into(),
                }),
                TableCell::Html(html::pre(&s.stack.join("\n"))),
            ]
        })
        .collect();
    if !rows.is_empty() {
        parts.push(html! { h3 { "Code" } "\n" (html::table("sites", &["function", "module", "cache", "objects (module − baseline)", "what it did", "stack"], &rows)) });
    }
    match (&a.pass, &a.skipped) {
        (Some(p), _) => parts.push(html::pairs(
            "attribution pass",
            &[
                ("status", TableCell::Text(p.status.clone())),
                ("cost", TableCell::Text(format!("{:.1} s (both arms again, {:.0} s of workload each)", p.secs, p.duration_s))),
                ("allocation traces of", TableCell::Text(p.caches.join(", "))),
                ("tried", TableCell::Html(html! { ul { @for t in &p.tried { li { (t) } } } })),
                ("run directory", TableCell::Text(p.dir.clone())),
            ],
        )),
        (None, Some(why)) => parts.push(html::note("none", &format!("No attribution pass: {why}."))),
        (None, None) => {}
    }
    join(parts)
}

/// When this run is a step of `kernlab bisect` (its directory sits beside
/// the bisection's `bisect.json`): which step, and what the bisection
/// found. None for any other run, or a `bisect.json` that is not one.
fn bisect_markup(top: &Path) -> Option<Markup> {
    use serde_json::Value;
    let parent = top.parent()?;
    let text = std::fs::read_to_string(crate::outcome::layout::bisect_json(parent)).ok()?;
    let b: Value = serde_json::from_str(&text).ok()?;
    if b.get("schema")?.as_str()? != crate::bisect::SCHEMA {
        return None;
    }
    let name = top.file_name()?.to_string_lossy().into_owned();
    let steps = b.get("steps")?.as_array()?;
    let (i, step) = steps.iter().enumerate().find(|(_, s)| {
        s.get("run_dir").and_then(Value::as_str).map(|d| Path::new(d).file_name().map(|f| f.to_string_lossy() == name).unwrap_or(false)).unwrap_or(false)
    })?;
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let cand = |c: &Value| {
        let (rev, subject) = (str_of(c, "rev"), str_of(c, "subject"));
        if subject.is_empty() { rev } else { format!("{rev} {subject}") }
    };
    let axis = str_of(&b, "axis");
    let outcome = b.get("outcome")?;
    let result = match outcome.get("kind").and_then(Value::as_str)? {
        "found" => format!("first bad {}: {}", if axis == "module" { "revision" } else { "kernel" }, outcome.get("first_bad").map(cand).unwrap_or_default()),
        "undecided" => format!(
            "undecided: skipped steps hide the first bad one, one of {}",
            outcome.get("range").and_then(Value::as_array).map(|r| r.iter().map(cand).collect::<Vec<_>>().join(", ")).unwrap_or_default()
        ),
        other => other.to_string(),
    };
    Some(html! {
        h3 { "Bisection" } "\n"
        (html::pairs("bisect", &[
            ("result", TableCell::Text(result)),
            ("this run", TableCell::Text(format!("step {} of {}: {} marked {}", i + 1, steps.len(), cand(step), str_of(step, "mark")))),
            ("over", TableCell::Text(format!("{} {}", axis, str_of(&b, "over")))),
            ("record", TableCell::Html(html::code(&crate::outcome::layout::bisect_json(parent).display().to_string()))),
        ]))
    })
}

/// A matrix's index page: the kernels × labs table, each cell linking to
/// its run's report (`href`, relative to the matrix directory).
pub fn matrix_page(name: &str, exit_code: i32, cells: &[(CellResult, String)], footer: &str) -> String {
    let mut labs: Vec<&str> = cells.iter().map(|(c, _)| c.lab.as_str()).collect();
    labs.sort();
    labs.dedup();
    let mut kernels: Vec<&str> = cells.iter().map(|(c, _)| c.kernel.as_str()).collect();
    kernels.sort();
    kernels.dedup();
    let cell_html = |c: &CellResult, href: &str| html! { a class={ "badge " (html::exit_class(c.exit_code)) } href=(href) { (c.verdict) " (" (c.exit_code) ")" } };
    let grid: Vec<Vec<TableCell>> = kernels
        .iter()
        .map(|k| {
            let mut row = vec![TableCell::Text(k.to_string())];
            for l in &labs {
                row.push(match cells.iter().find(|(c, _)| c.lab == *l && c.kernel == *k) {
                    Some((c, href)) => TableCell::Html(cell_html(c, href)),
                    None => TableCell::Text("-".into()),
                });
            }
            row
        })
        .collect();
    let mut header = vec!["kernel \\ lab"];
    header.extend(labs.iter().copied());
    let mut body = vec![html::section("table", "Kernels × labs", html::table("matrix", &header, &grid))];
    let list: Vec<Vec<TableCell>> = cells
        .iter()
        .map(|(c, href)| {
            vec![
                TableCell::Html(html::link(href, &c.id)),
                TableCell::Html(cell_html(c, href)),
                TableCell::Num(format!("{:.1} s", c.secs)),
                TableCell::Num(opt(c.delta_per_hour, |d| format!("{:.2} MiB/h", d / MIB))),
                TableCell::Num(opt(c.bytes_per_op, |b| format!("{b:.0}"))),
                TableCell::Text(match (c.exhaustion_s, &c.exhaustion) {
                    (Some(e), Some(how)) => format!("{} ({how})", super::summary::duration(e)),
                    _ => String::new(),
                }),
                TableCell::Text(c.error.as_deref().or(c.reason.as_deref()).and_then(|e| e.lines().next()).unwrap_or("").to_string()),
            ]
        })
        .collect();
    let header = ["cell", "verdict (exit)", "time", "growth Δ", "bytes/op", "time to exhaustion", "error or reason"];
    body.push(html::section("cells", "Cells", html::table("cells", &header, &list)));
    let results: Vec<CellResult> = cells.iter().map(|(c, _)| c.clone()).collect();
    body.push(html::section("text", "Terminal table", html::pre(&super::matrix::table(&results))));
    html::page(&format!("matrix {name}: exit {exit_code}"), &format!("{} cells", cells.len()), join(body), footer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: f64, event: Event) -> Stamped {
        Stamped { schema: crate::outcome::event::SCHEMA.into(), t, wall: "w".into(), cell: None, arm: None, event }
    }

    fn run_data() -> RunData {
        let mut mem = String::from("t,uptime,key,bytes\n");
        let mut slab = String::from("t,uptime,cache,active_objs,num_objs,objsize\n");
        let mut ops = String::from("t,uptime,ops\n");
        let mut balloon = String::from("t,key,value\n");
        for i in 0..30u64 {
            let t = 10.0 + i as f64;
            mem.push_str(&format!("{t},0,MemAvailable,{}\n", 400_000_000 - i * 1_000_000));
            mem.push_str(&format!("{t},0,Slab,{}\n", 30_000_000 + i * 1_000_000));
            mem.push_str(&format!("{t},0,SUnreclaim,{}\n", 10_000_000 + i * 100_000));
            slab.push_str(&format!("{t},0,dentry,{},{},192\n", 1000 + i * 1000, 1000 + i * 1000));
            slab.push_str(&format!("{t},0,kmalloc-64,500,500,64\n"));
            ops.push_str(&format!("{t},0,{}\n", i * 1000));
            balloon.push_str(&format!("{t},stat-available-memory,{}\n", 410_000_000 - i * 1_000_000));
        }
        RunData {
            dir: "/runs/x <y>".into(),
            report: None,
            manifest: Some(Manifest {
                kernlab_version: "0.1.0".into(),
                qemu_argv: ["qemu-system-x86_64", "-m", "512", "-append", "console=ttyS0 slub_nomerge"].map(String::from).to_vec(),
                kernel: Some(crate::kernel::Kernel {
                    name: "k<1>".into(),
                    release: String::new(),
                    source: String::new(),
                    version: String::new(),
                    package_sha256: String::new(),
                    vmlinuz_sha256: String::new(),
                    root: "/".into(),
                    arch: None,
                }),
                ..Default::default()
            }),
            events: vec![
                ev(8.0, Event::ModuleLoaded { name: "khm".into(), params: [("leak".to_string(), "1".to_string())].into(), tainted: None, secs: 0.1 }),
                ev(9.5, Event::WorkloadStarted { commands: 0, duration_secs: 30.0, until_exhaustion: false }),
                ev(20.0, Event::Sample { index: 1, sample_t: 20.0, uptime: None, mem_available: None, slab: None, s_unreclaim: None, nr_dentry: None, caches: None }),
                ev(39.5, Event::Exhaustion { trigger: "MemAvailable below <headroom>".into() }),
                ev(40.0, Event::Qmp { name: "GUEST_PANICKED".into(), data: serde_json::Value::Null }),
                ev(45.0, Event::DumpWritten { via: "kdump".into(), path: "/v".into(), bytes: 1, secs: 1.0 }),
            ],
            slab_growth: crate::analysis::growth::slab_growth(&slab, 10),
            series: ArmSeries::parse(&mem, &slab, &ops),
            balloon: super::super::parse_balloon(&balloon),
        }
    }

    #[test]
    fn markers_come_from_the_events_that_matter() {
        let m = markers(&run_data().events);
        let labels: Vec<&str> = m.iter().map(|m| m.label.as_str()).collect();
        assert_eq!(labels, ["module khm loaded", "workload started", "exhaustion: MemAvailable below <headroom>", "guest panicked", "dump written (kdump)"]);
        assert_eq!(m[0].x, 8.0);
    }

    #[test]
    fn a_run_page_has_charts_with_data_bands_markers_and_escaped_text() {
        let page = run_page(&run_data(), "footer");
        assert!(page.starts_with("<!DOCTYPE html>") && !page.contains("<script"), "{}", &page[..200]);
        // Charts: the growing cache (dentry), Slab against operations, memory.
        assert!(page.matches("<svg").count() >= 3, "{}", page.matches("<svg").count());
        assert!(page.contains(&plot::svg_text("slab cache dentry")) && page.contains(&plot::svg_text("memory")));
        let longest = page.split("<polyline").skip(1).map(|p| p.split("points=\"").nth(1).unwrap_or("").split('"').next().unwrap_or("").split_whitespace().count()).max();
        assert_eq!(longest, Some(30), "a line with every sample");
        assert!(page.contains("<polygon"), "a confidence band");
        assert!(page.contains(&plot::svg_text("module khm loaded")) && page.contains(&plot::svg_text("dump written (kdump)")));
        assert!(page.contains("balloon: available (host view)"));
        // Text from the run is escaped in tables and the SVG alike.
        assert!(page.contains("exhaustion: MemAvailable below &lt;headroom&gt;"));
        assert!(page.contains("/runs/x &lt;y&gt;") && !page.contains("<y>"));
        assert!(page.contains("k&lt;1&gt;") && page.contains("console=ttyS0 slub_nomerge"));
        assert!(page.contains("no report.json"));
        // Only external-resource-free markup.
        for external in ["src=", "href=\"http", "<link", "@import", "url("] {
            assert!(!page.contains(external), "{external}");
        }
    }

    #[test]
    fn a_finished_run_shows_its_summary_and_its_crash_triage() {
        let mut d = run_data();
        d.report = Some(
            serde_json::from_value(serde_json::json!({
                "schema": "kernlab.report/1", "lab": "leak-to-crash", "kernel": "debian-6.1", "kernel_release": "6.1.0-54-cloud-amd64", "accel": "tcg",
                "outcome": "completed", "exit_code": 0, "error": null, "samples": 30, "sample_gaps": 1,
                "timings": {"boot_to_ssh": 3.1, "total": 70.0},
                "meminfo": {"Slab": {"first": 30000000, "last": 59000000, "delta": 29000000}},
                "top_slab_growth": [{"cache": "dentry", "first_bytes": 192000, "last_bytes": 5760000, "delta_bytes": 5568000, "delta_objs": 29000}],
                "dump": {"via": "kdump", "reason": "MemAvailable below the headroom", "vmcore": "/r/crash/x/vmcore", "bytes": 93323264, "dmesg": null, "secs": 13.0},
                "triage": {"memory": [["TOTAL MEM", 500000000], ["SLAB", 290000000]],
                           "top_caches": [{"name": "shmem_inode_cache", "objsize": 784, "allocated": 290000, "total": 290100, "bytes": 227000000}],
                           "panic": "Kernel panic - not syncing: Out of memory", "text": "/r/crash/x/crash.txt", "secs": 8.0}
            }))
            .unwrap(),
        );
        let page = run_page(&d, "f");
        assert!(page.contains("<title>leak-to-crash on debian-6.1: completed</title>"));
        assert!(page.contains("<span class=\"badge ok\">completed</span>") && page.contains("30 (1 gaps)"));
        assert!(page.contains("<td>dentry</td>") && page.contains("+5437.5 KiB"), "slab growth table");
        assert!(page.contains("<section id=\"crash\">") && page.contains("Kernel panic - not syncing: Out of memory"));
        assert!(page.contains("<td>SLAB</td><td class=\"num\">276.57 MiB</td>"), "kmem -i");
        assert!(page.contains("<td>shmem_inode_cache</td><td class=\"num\">784</td>"), "kmem -s");
        assert!(page.contains("/r/crash/x/vmcore") && page.contains("89.00 MiB"));
        // The answer first: the summary, then what the dump says, then the
        // series that led there.
        let at = |id: &str| page.find(&format!("<section id=\"{id}\">")).unwrap_or_else(|| panic!("no section {id}"));
        assert!(at("verdict") < at("crash") && at("crash") < at("growth") && at("growth") < at("memory") && at("memory") < at("events"), "sections out of order");
        // The record's relative paths, seen from an A/B lab's page: under
        // the module arm's directory.
        let mut r = d.report.clone().unwrap();
        r.dump.as_mut().unwrap().vmcore = "crash/x/vmcore".into();
        r.triage.as_mut().unwrap().text = "crash/x/crash.txt".into();
        d.report = Some(r);
        let on_lab_page = crash_section(&d, Some("module")).into_string();
        assert!(on_lab_page.contains("<code>module/crash/x/vmcore</code>") && on_lab_page.contains("<code>module/crash/x/crash.txt</code>"), "{on_lab_page}");
        let on_own_page = crash_section(&d, None).into_string();
        assert!(on_own_page.contains("<code>crash/x/vmcore</code>") && !on_own_page.contains("module/"), "{on_own_page}");
        // The terminal summary, as `kernlab run` printed it.
        assert!(page.contains("lab leak-to-crash on debian-6.1 (tcg): completed"));
    }

    #[test]
    fn an_ab_page_overlays_the_baseline_on_the_module_with_both_fits() {
        let module = run_data();
        let mut baseline = run_data();
        baseline.dir = "/runs/x/baseline".into();
        let flat = |v: &mut Vec<(f64, f64)>| v.iter_mut().for_each(|p| p.1 = 30_000_000.0 + (p.0 * 7.0) % 3.0 * 1000.0);
        flat(baseline.series.meminfo.get_mut("Slab").unwrap());
        let policy = crate::analysis::leak::Policy {
            metric: crate::lab::Metric::Slab,
            floors: crate::analysis::leak::Floors { objects_per_op: 0.0005, bytes_per_op: 4.0, bytes_per_hour: 16.0 * MIB },
            alpha: 0.01,
            planned_samples: 30,
            warmup_samples: 0,
            stop_early: true,
            interval_s: 1.0,
        };
        let an = crate::analysis::leak::analyze(&module.series, &baseline.series, &policy, true);
        assert_eq!(an.verdict, crate::stats::Verdict::Leak, "{}", an.reason);
        let outcome = |dir: &str| crate::outcome::leak::ArmOutcome { dir: dir.into(), exit_code: 0, error: None, sample_gaps: 0, config: None };
        let r = LeakReport {
            schema: crate::outcome::leak::SCHEMA.into(),
            lab: "leak-lab".into(),
            kernel: "debian-6.1".into(),
            expect: crate::lab::Expect::Leak,
            verdict: Some(an.verdict),
            expectation_held: Some(true),
            exit_code: 0,
            floors: policy.floors,
            alpha: 0.01,
            stopped: "duration".into(),
            module: outcome("/runs/x/module"),
            baseline: outcome("/runs/x/baseline"),
            analysis: Some(an),
            crash: None,
            attribution: None,
            secs: 40.0,
        };
        let page = ab_page(&r, Path::new("/runs/x"), &module, &baseline, "f");
        assert!(page.contains("<span class=\"badge ok\">LEAK</span> as expected"));
        assert!(page.contains("href=\"module/report.html\"") && page.contains("href=\"baseline/report.html\""));
        // slab in both arms and two memory charts (no cache grew in the module arm).
        assert_eq!(page.matches("<svg").count(), 3, "{page}");
        let slab = page.split("<figure>").nth(1).unwrap();
        assert!(slab.contains(&plot::svg_text("slab in both arms")));
        assert!(slab.contains("stroke=\"#D62728\"") && slab.contains("stroke=\"#1F77B4\""), "both arms drawn");
        assert_eq!(slab.matches("<polygon").count(), 2, "a band per arm");
        assert!(page.contains(&plot::svg_text("module khm loaded")), "events mark the memory charts");
        assert!(page.contains("LEAK as expected (expect Leak, exit 0)"), "the terminal summary");
        // The answer first: the verdict in one line, the diagnosis, the evidence.
        let at = |id: &str| page.find(&format!("<section id=\"{id}\">")).unwrap_or_else(|| panic!("no {id}"));
        assert!(at("verdict") < at("diagnosis") && at("diagnosis") < at("evidence") && at("evidence") < at("memory"));
        let verdict = &page[at("verdict")..at("diagnosis")];
        assert_eq!(verdict.matches("<p").count(), 1, "{verdict}");
        assert!(verdict.contains("<p class=\"answer\"><span class=\"badge ok\">LEAK</span> as expected: metric slab grows"), "{verdict}");
        let diagnosis = &page[at("diagnosis")..at("evidence")];
        assert!(diagnosis.contains("<h3>What leaks</h3>") && diagnosis.contains("<td>slab</td>") && diagnosis.contains("No attribution in this record"), "{diagnosis}");
    }

    /// An analysis with the given caches: (name, leak, upper, floor,
    /// bytes, Holm p, levelled off).
    fn analysis(verdict: &str, caches: &[(&str, bool, f64, f64, f64, f64, bool)]) -> LeakAnalysis {
        let fit = serde_json::json!({"samples": 10, "first": 1.0, "last": 2.0, "trend": null});
        let ev = |name: &str, kind: &str, leak: bool, upper: f64, floor: f64, bytes: f64, p: f64, bounded: bool| {
            let mut e = serde_json::json!({"name": name, "kind": kind, "objsize": 64.0, "module": fit, "baseline": fit, "delta": upper / 2.0, "se": 0.1,
                "df": 10.0, "lower": 0.0, "upper": upper, "floor": floor, "p": p, "p_holm": p, "leak": leak, "detectable": 0.1,
                "bytes": [bytes, 0.0, 0.0, 0.0], "bytes_per_hour": null});
            if bounded {
                e["bounded"] = serde_json::json!({"held": 100.0, "level": 200.0, "late_upper": 0.0});
            }
            e
        };
        serde_json::from_value(serde_json::json!({
            "metric": "slab", "basis": "per-op", "floors": {"objects_per_op": 0.0005, "bytes_per_op": 4.0, "bytes_per_hour": 1.0},
            "alpha": 0.01, "samples": [10, 10], "ops_per_s": [1000.0, 1000.0], "verdict": verdict, "reason": "r",
            "total": ev("slab", "total", false, 1.0, 4.0, 1.0, 1.0, false),
            "caches": caches.iter().map(|&(n, l, u, f, b, p, bo)| ev(n, "cache", l, u, f, b, p, bo)).collect::<Vec<_>>(),
            "family": caches.len() + 1, "detectable": null, "needs": null,
            "sequential": {"planned": [10], "looks": [], "decided_at": 0, "early": false}, "exhaustion": []
        }))
        .unwrap()
    }

    fn names<'a>(p: &[Plotted<'a>]) -> Vec<String> {
        p.iter().map(|p| match p {
            Plotted::Metric => "metric".to_string(),
            Plotted::Cache(e, w) => format!("{} {w:?}", e.name),
        }).collect()
    }

    #[test]
    fn plots_follow_what_decided_the_verdict_not_the_bytes() {
        // A LEAK: the rejecting caches, strongest first, then the metric;
        // the biggest cache that decided nothing is not drawn.
        let a = analysis("leak", &[("big", false, 0.0001, 0.0005, 1e9, 1.0, false), ("weak", true, 0.01, 0.0005, 10.0, 1e-3, false), ("strong", true, 0.01, 0.0005, 5.0, 1e-9, false)]);
        assert_eq!(names(&deciding_plots(&a, 6)), ["strong Rejected", "weak Rejected", "metric"]);
        // A NO-LEAK: the metric, then the caches nearest to their floor.
        let a = analysis("no-leak", &[("big", false, 0.0001, 0.0005, 1e9, 1.0, false), ("near", false, 0.00049, 0.0005, 1.0, 1.0, false), ("mid", false, 0.0003, 0.0005, 2.0, 1.0, false), ("far", false, 0.0, 0.0005, 3.0, 1.0, false), ("farther", false, -1.0, 0.0005, 3.0, 1.0, false)]);
        assert_eq!(names(&deciding_plots(&a, 6)), ["metric", "near Closest", "mid Closest", "big Closest"]);
        // A BOUNDED: what levelled off, the metric, then the nearest.
        let a = analysis("bounded", &[("near", false, 0.00049, 0.0005, 1.0, 1.0, false), ("filled", false, 0.001, 0.0005, 1.0, 1.0, true)]);
        assert_eq!(names(&deciding_plots(&a, 6)), ["filled LevelledOff", "metric", "near Closest"]);
        // Many rejecting caches: at most the cap, then the metric.
        let many: Vec<(String, f64)> = (0..9).map(|i| (format!("c{i}"), 10f64.powi(-i))).collect();
        let caches: Vec<(&str, bool, f64, f64, f64, f64, bool)> = many.iter().map(|(n, p)| (n.as_str(), true, 1.0, 0.0005, 1.0, *p, false)).collect();
        let a = analysis("leak", &caches);
        assert_eq!(names(&deciding_plots(&a, 4)), ["c8 Rejected", "c7 Rejected", "c6 Rejected", "c5 Rejected", "metric"]);
    }

    fn leak_report(analysis: Option<LeakAnalysis>, module_error: Option<&str>) -> LeakReport {
        let outcome = |dir: &str, error: Option<&str>| crate::outcome::leak::ArmOutcome { dir: dir.into(), exit_code: if error.is_some() { 101 } else { 0 }, error: error.map(String::from), sample_gaps: 0, config: None };
        LeakReport {
            schema: crate::outcome::leak::SCHEMA.into(),
            lab: "leak-lab".into(),
            kernel: "debian-6.1".into(),
            expect: crate::lab::Expect::Leak,
            verdict: analysis.as_ref().map(|a| a.verdict),
            expectation_held: None,
            exit_code: if module_error.is_some() { 101 } else { 102 },
            floors: crate::analysis::leak::Floors { objects_per_op: 0.0005, bytes_per_op: 4.0, bytes_per_hour: 1.0 },
            alpha: 0.01,
            stopped: "duration".into(),
            module: outcome("/runs/x/module", module_error),
            baseline: outcome("/runs/x/baseline", None),
            analysis,
            crash: None,
            attribution: None,
            secs: 40.0,
        }
    }

    #[test]
    fn an_inconclusive_or_failed_lab_still_answers_first() {
        let mut a = analysis("inconclusive", &[("near", false, 0.0007, 0.0005, 1.0, 0.2, false), ("far", false, 0.0001, 0.0005, 1e6, 1.0, false)]);
        a.reason = "no hypothesis is decided".into();
        a.needs = Some("about 40 more samples per arm".into());
        let r = leak_report(Some(a), None);
        let page = ab_page(&r, Path::new("/runs/x"), &run_data(), &run_data(), "f");
        let at = |id: &str| page.find(&format!("<section id=\"{id}\">")).unwrap_or_else(|| panic!("no {id}"));
        assert!(at("verdict") < at("diagnosis") && at("diagnosis") < at("evidence"));
        assert!(page[at("verdict")..].contains("<p class=\"answer\"><span class=\"badge warn\">INCONCLUSIVE</span>: no hypothesis is decided</p>"), "{}", &page[at("verdict")..at("diagnosis")]);
        let diagnosis = &page[at("diagnosis")..at("evidence")];
        assert!(diagnosis.contains("Needs: about 40 more samples per arm") && diagnosis.contains("<h3>Not yet decided</h3>"), "{diagnosis}");
        assert!(diagnosis.contains("<td>near</td>") && !diagnosis.contains("<td>far</td>"), "only the hypotheses above their floor are undecided: {diagnosis}");
        // The plots: the metric, then the undecided cache first (these
        // caches have no samples in the arms here: a note in their place).
        let evidence = &page[at("evidence")..];
        let pos = |t: &str| evidence.find(t).unwrap_or_else(|| panic!("{t} missing"));
        assert!(pos(&plot::svg_text("slab in both arms")) < pos("slab cache near: no samples.") && pos("slab cache near: no samples.") < pos("slab cache far: no samples."));

        // An arm failed: no analysis, the answer says which and how.
        let r = leak_report(None, Some("boot failed: no SSH within 60 s\nconsole tail"));
        let page = ab_page(&r, Path::new("/runs/x"), &run_data(), &run_data(), "f");
        assert!(page.contains("no verdict (an arm failed)</span>: the module arm failed (exit 101): boot failed: no SSH within 60 s</p>"), "{page}");
        assert!(page.contains("No analysis: the module arm failed (exit 101)"));
    }

    #[test]
    fn a_bisection_step_shows_the_bisections_result() {
        use crate::bisect::{search::Mark, BisectReport, Candidate, Known, Outcome, Step};
        let d = tempfile::tempdir().unwrap();
        let cand = |rev: &str, subject: &str| Candidate { rev: rev.into(), subject: subject.into(), skip: None };
        let step = |i: usize, rev: &str, mark: Mark| Step {
            index: i,
            rev: rev.into(),
            subject: format!("change {i}"),
            mark,
            verdict: Some(crate::stats::Verdict::Leak),
            exit_code: Some(100),
            run_dir: Some(d.path().join(format!("step-{i}-{rev}")).display().to_string()),
            reason: None,
            retried: false,
            secs: 30.0,
        };
        let b = BisectReport {
            schema: crate::bisect::SCHEMA.into(),
            lab: "leak-lab".into(),
            lab_file: "lab.yaml".into(),
            axis: "module".into(),
            over: "/src/khm".into(),
            expect: crate::lab::Expect::NoLeak,
            good: cand("aaa", "good one"),
            bad: cand("ddd", "bad one"),
            candidates: vec![Known { candidate: cand("bbb", "change 1"), mark: Mark::Good }, Known { candidate: cand("ccc", "the <culprit>"), mark: Mark::Bad }],
            steps: vec![step(1, "bbb", Mark::Good), step(2, "ccc", Mark::Bad)],
            outcome: Outcome::Found { first_bad: cand("ccc", "the <culprit>") },
            exit_code: 0,
            secs: 60.0,
        };
        std::fs::write(d.path().join("bisect.json"), serde_json::to_string(&b).unwrap()).unwrap();
        let m = bisect_markup(&d.path().join("step-2-ccc")).expect("a step's page shows its bisection").into_string();
        assert!(m.contains("first bad revision: ccc the &lt;culprit&gt;"), "{m}");
        assert!(m.contains("step 2 of 2: ccc change 2 marked bad"), "{m}");
        // A run that is no step of it, or with no bisection beside it: nothing.
        assert!(bisect_markup(&d.path().join("elsewhere")).is_none());
        assert!(bisect_markup(&d.path().join("step-2-ccc").join("module")).is_none());
    }

    #[test]
    fn a_matrix_index_links_every_cell() {
        let cell = |lab: &str, kernel: &str, code: i32, verdict: &str| CellResult {
            id: format!("{lab}@{kernel}"),
            lab: lab.into(),
            kernel: kernel.into(),
            exit_code: code,
            verdict: serde_json::from_value(serde_json::json!(verdict)).unwrap(),
            error: (code == 101).then(|| "boot failed\nconsole tail".into()),
            dir: format!("/m/cells/{lab}@{kernel}").into(),
            secs: 12.0,
            vms: 2,
            reason: None,
            delta_per_hour: Some(3.0 * MIB),
            delta_interval_per_hour: None,
            bytes_per_op: None,
            rules_out: None,
            exhaustion_s: (verdict == "leak").then_some(388.0),
            exhaustion: (verdict == "leak").then(|| "predicted".into()),
            leak_kind: (verdict == "leak").then(|| "reference".into()),
            leak_sites: None,
        };
        let cells = vec![
            (cell("leak-lab", "debian-6.1", 0, "leak"), "cells/leak-lab@debian-6.1/report.html".to_string()),
            (cell("smoke", "debian-6.1", 0, "completed"), "cells/smoke@debian-6.1/report.html".to_string()),
            (cell("leak-lab", "debian-6.12+x", 101, "failed"), "cells/leak-lab@debian-6.12+x/report.html".to_string()),
        ];
        let page = matrix_page("nightly <1>", 101, &cells, "f");
        assert!(page.contains("<title>matrix nightly &lt;1&gt;: exit 101</title>"));
        assert!(page.contains("6 min (predicted)"), "time to exhaustion per cell");
        for (c, href) in &cells {
            assert!(page.contains(&format!("href=\"{href}\"")), "{} not linked", c.id);
        }
        assert!(page.contains("<th>kernel \\ lab</th><th>leak-lab</th><th>smoke</th>"), "{page}");
        assert!(page.contains("class=\"badge bad\"") && page.contains("failed (101)") && page.contains("<td>boot failed</td>"));
        // The kernel with only one lab has a dash in the other column.
        assert!(page.contains("<tr><td>debian-6.12+x</td>") && page.contains("<td>-</td>"));
        assert!(!page.contains("<script"));
    }
}
