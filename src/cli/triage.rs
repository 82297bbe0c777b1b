//! `kernlab triage`: read a vmcore with `crash` or drgn.

use std::path::PathBuf;

use super::{cached_kernel, fail, infra, registry};
use crate::exit;

pub fn triage(vmcore: &std::path::Path, name: &str, out: Option<PathBuf>, engine: crate::triage::EngineChoice, dirs: &[PathBuf], json: bool) -> i32 {
    if !vmcore.is_file() {
        eprintln!("kernlab: vmcore `{}` is not a readable file", vmcore.display());
        return exit::USAGE;
    }
    let desc = match registry(dirs).and_then(|r| r.get(name).cloned()) {
        Ok(d) => d,
        Err(e) => return fail(&e),
    };
    let out = out.unwrap_or_else(|| {
        let stamp = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"))
            .unwrap_or_default();
        PathBuf::from(format!("triage-{stamp}"))
    });
    if let Err(e) = crate::util::fsx::private_dir(&out) {
        return fail(&e);
    }
    let (cache, kernel) = match cached_kernel(&desc) {
        Ok(ck) => ck,
        Err(code) => return code,
    };
    let report = match crate::triage::triage(&cache, &desc, &kernel, vmcore, &out, engine) {
        Ok(r) => r,
        Err(e) => return infra(&e),
    };
    let (word, text) = (report.engine.word(), out.join(format!("{}.txt", report.engine.word())));
    let record = crate::triage::TriageRecord { schema: crate::triage::SCHEMA.into(), report: report.clone().recorded_in(&out) };
    let _ = crate::util::fsx::write_atomic(&crate::outcome::layout::triage_json(&out), &serde_json::to_vec_pretty(&record).unwrap_or_default());
    if json {
        let v = serde_json::json!({"vmcore": vmcore, "kernel": kernel.name, "dir": out, "engine": word, "text": text, "crash_txt": (word == "crash").then(|| out.join("crash.txt")), "triage_json": crate::outcome::layout::triage_json(&out), "triage": record});
        crate::ui::json_line(&v.to_string());
        return exit::OK;
    }
    println!("vmcore {} (kernel {}), read by {word} in {:.1} s", vmcore.display(), kernel.name, report.secs);
    if let Some(p) = &report.panic {
        println!("  panic: {p}");
    }
    println!("  memory{}:", if word == "crash" { " (kmem -i)" } else { "" });
    for (label, bytes) in &report.memory {
        println!("    {label:<12} {:>10.1} MiB", *bytes as f64 / 1048576.0);
    }
    println!("  largest slab caches{}:", if word == "crash" { " (kmem -s)" } else { "" });
    for c in &report.top_caches {
        println!("    {:<28} {:>10.1} MiB  {:>9} objects of {} B", c.name, c.bytes as f64 / 1048576.0, c.allocated, c.objsize);
    }
    match (&report.refs, &report.refs_error) {
        (Some(r), _) => {
            println!("  referenced objects of deleted files: {}", r.headline());
            for l in r.lines() {
                println!("    {l}");
            }
        }
        (None, Some(e)) => println!("  referenced objects of deleted files: not read ({e})"),
        (None, None) => {}
    }
    println!("  full text: {}", text.display());
    exit::OK
}

