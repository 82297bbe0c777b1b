//! A matrix directory's outputs beside its `report.json`: `junit.xml`
//! (quick-junit), `ktap.txt`, and the kernels × labs table.

use crate::ui::columns::{self, Column};
use crate::exit;
use crate::outcome::matrix::{log_dir, CellResult};
use crate::util::fsx;

/// JUnit: one test case per cell, named by lab and kernel. A lab whose
/// expectation did not hold is a failure, a broken run an error, an
/// inconclusive cell skipped with its reason.
pub fn junit(name: &str, results: &[CellResult]) -> String {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new(format!("kernlab {name}"));
    let mut suite = TestSuite::new(name);
    for r in results {
        let mut status = match r.exit_code {
            exit::OK => TestCaseStatus::success(),
            exit::EXPECTATION_FAILED => TestCaseStatus::non_success(NonSuccessKind::Failure),
            exit::INCONCLUSIVE => TestCaseStatus::skipped(),
            _ => TestCaseStatus::non_success(NonSuccessKind::Error),
        };
        if r.exit_code != exit::OK {
            let why = r.reason.as_ref().map(|w| format!(": {w}")).unwrap_or_default();
            status.set_message(r.error.clone().unwrap_or_else(|| format!("verdict {}{why}", r.verdict)));
        }
        let mut tc = TestCase::new(format!("{}@{}", r.lab, r.kernel), status);
        tc.set_classname(r.lab.clone());
        tc.set_time(std::time::Duration::from_secs_f64(r.secs));
        tc.add_property(("verdict", r.verdict.word()));
        tc.add_property(("run_dir", r.dir.to_string_lossy().as_ref()));
        if let Some(d) = r.delta_per_hour {
            tc.add_property(("delta_bytes_per_hour", format!("{d:.0}").as_str()));
        }
        if let Some((l, u)) = r.delta_interval_per_hour {
            tc.add_property(("delta_lower_bytes_per_hour", format!("{l:.0}").as_str()));
            tc.add_property(("delta_upper_bytes_per_hour", format!("{u:.0}").as_str()));
        }
        if let Some(b) = r.bytes_per_op {
            tc.add_property(("bytes_per_op", format!("{b:.1}").as_str()));
        }
        if let Some(d) = &r.rules_out {
            tc.add_property(("rules_out", d.as_str()));
        }
        if let Some(k) = &r.leak_kind {
            tc.add_property(("leak_kind", k.as_str()));
        }
        if let Some(sites) = &r.leak_sites {
            tc.add_property(("leak_sites", sites.as_str()));
        }
        if let (Some(e), Some(how)) = (r.exhaustion_s, &r.exhaustion) {
            tc.add_property(("time_to_exhaustion_s", format!("{e:.0}").as_str()));
            tc.add_property(("time_to_exhaustion", how.as_str()));
        }
        let console = fsx::tail_lines(&log_dir(&r.dir).join("console.log"), 20);
        if !console.is_empty() {
            tc.set_system_out(console);
        }
        suite.add_test_case(tc);
    }
    report.add_test_suite(suite);
    report.to_string().unwrap_or_default()
}

/// KTAP (the kernel's test output format): one line per cell; an
/// inconclusive cell is a SKIP with its verdict.
pub fn ktap(results: &[CellResult]) -> String {
    let mut s = format!("KTAP version 1\n1..{}\n", results.len());
    for (i, r) in results.iter().enumerate() {
        let n = i + 1;
        match r.exit_code {
            exit::OK => s.push_str(&format!("ok {n} {}\n", r.id)),
            exit::INCONCLUSIVE => {
                let why = r.reason.as_ref().map(|w| format!(": {w}")).unwrap_or_default();
                s.push_str(&format!("ok {n} {} # SKIP {}{why}\n", r.id, r.verdict))
            }
            code => {
                s.push_str(&format!("not ok {n} {}\n", r.id));
                let reason = r.reason.as_ref().map(|w| format!(": {w}")).unwrap_or_default();
                let why = r.error.clone().unwrap_or_else(|| format!("verdict {} (exit {code}){reason}", r.verdict));
                for line in why.lines().take(5) {
                    s.push_str(&format!("# {line}\n"));
                }
            }
        }
    }
    s
}

/// The kernels × labs table: each cell's verdict and exit code, then for a
/// leak lab its bytes per operation and time to exhaustion (`~` predicted,
/// `=` measured).
pub fn table(results: &[CellResult]) -> String {
    let mut labs: Vec<&str> = results.iter().map(|r| r.lab.as_str()).collect();
    labs.sort();
    labs.dedup();
    let mut kernels: Vec<&str> = results.iter().map(|r| r.kernel.as_str()).collect();
    kernels.sort();
    kernels.dedup();
    let mut columns = vec![Column::left("kernel \\ lab", 12)];
    columns.extend(labs.iter().map(|l| Column::left(*l, 0)));
    let rows: Vec<Vec<String>> = kernels
        .iter()
        .map(|k| {
            let mut row = vec![k.to_string()];
            row.extend(labs.iter().map(|l| results.iter().find(|r| r.lab == *l && r.kernel == *k).map(cell_text).unwrap_or_else(|| "-".into())));
            row
        })
        .collect();
    columns::lines(&columns, &rows, 2).into_iter().map(|l| l + "\n").collect()
}

fn cell_text(r: &CellResult) -> String {
    let mut t = format!("{} ({})", r.verdict, r.exit_code);
    if let Some(b) = r.bytes_per_op.filter(|_| r.rules_out.is_none()) {
        t.push_str(&format!(" {b:.0} B/op"));
    }
    if let Some(d) = &r.rules_out {
        // The number and unit; the cache is in the JUnit property and the page.
        let short = d.split(" in ").next().unwrap_or(d).replace("objects", "obj");
        t.push_str(&format!(" rules out ≥{short}"));
    }
    if let (Some(e), Some(how)) = (r.exhaustion_s, &r.exhaustion) {
        let mark = if how == "measured" { "=" } else { "~" };
        t.push_str(&format!(" OOM{mark}{}", super::summary::duration(e)));
    }
    t
}
