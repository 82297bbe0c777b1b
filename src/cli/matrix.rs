//! `kernlab matrix` and `kernlab merge`.

use std::path::PathBuf;

use super::{fail, spawn_signal_handler};
use crate::outcome::event::{Event, Events};
use crate::exit;

pub fn matrix(
    file: &std::path::Path,
    list: bool,
    partition: Option<String>,
    jobs: Option<usize>,
    out: Option<PathBuf>,
    dirs: &[PathBuf],
    events: &Events,
) -> i32 {
    use crate::matrix::{self, Partition};
    let json = crate::ui::get().json;
    let mut all_dirs = dirs.to_vec();
    all_dirs.extend(crate::kernel::descriptor_dirs(Some(file)));
    let registry = match crate::kernel::Registry::load(&all_dirs) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let (m, cells) = match matrix::load(file, &registry) {
        Ok(x) => x,
        Err(e) => return fail(&e),
    };
    let part = match partition.as_deref().map(Partition::parse).transpose() {
        Ok(Some(p)) => Some(p),
        Ok(None) => match Partition::from_env(|k| std::env::var(k).ok()) {
            Ok(p) => p,
            Err(e) => return fail(&e),
        },
        Err(e) => return fail(&e),
    };
    let cells = match part {
        Some(p) => p.select(&cells),
        None => cells,
    };
    if list {
        if json {
            println!("{}", serde_json::to_string_pretty(&cells).unwrap_or_default());
        } else {
            for c in &cells {
                println!("{}", c.id);
            }
        }
        return exit::OK;
    }
    let dir = out.unwrap_or_else(|| {
        let stamp = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"))
            .unwrap_or_default();
        PathBuf::from("runs/matrix").join(&m.name).join(stamp)
    });
    if dir.exists() && std::fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(false) {
        eprintln!("kernlab: `{}` exists and is not empty; kernlab never overwrites a run", dir.display());
        return exit::USAGE;
    }
    if let Err(e) = crate::util::fsx::private_dir(&dir.join("cells")) {
        return fail(&e);
    }
    // Kernels from `debian:` patterns get descriptors in the matrix directory,
    // which every cell's run then finds.
    let mut dirs = dirs.to_vec();
    let made: Vec<&matrix::Cell> = cells.iter().filter(|c| registry.get(&c.kernel).is_err()).collect();
    if !made.is_empty() {
        let kdir = dir.join("kernels");
        let _ = crate::util::fsx::private_dir(&kdir);
        for c in made {
            if let Some(text) = matrix::archive_descriptor(&c.kernel) {
                let _ = crate::util::fsx::write_atomic(&kdir.join(format!("{}.yaml", c.kernel)), text.as_bytes());
            }
        }
        dirs.insert(0, kdir);
    }
    let dirs = &dirs[..];
    let mem_available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| crate::sample::parse::parse_meminfo(&t).ok())
        .and_then(|m| m.get("MemAvailable"))
        .unwrap_or(1 << 30);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let vm_mem = cells.iter().map(|c| c.memory).max().unwrap_or(512 << 20);
    let slots = jobs.or(m.jobs).unwrap_or_else(|| matrix::auto_slots(cores, mem_available, vm_mem)).max(1);
    crate::ui::eprintln(&format!("matrix {}: {} cells, up to {slots} VMs at once → {}", m.name, cells.len(), dir.display()));
    let stream = events;
    stream.emit(Event::MatrixStarted {
        name: m.name.clone(),
        cells: cells.len(),
        slots,
        dir: dir.display().to_string(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let started = std::time::Instant::now();
    let results = rt.block_on(async {
        let cancel = tokio_util::sync::CancellationToken::new();
        spawn_signal_handler(cancel.clone());
        matrix::run_cells(cells, &dir, slots, dirs.to_vec(), stream, cancel).await
    });
    let timing = matrix::Timing::new(started.elapsed().as_secs_f64(), slots, &results);
    let report = matrix::report(&m.name, results, part.map(|p| format!("{p:?}")), Some(timing), None);
    finish_matrix(&dir, &report, stream);
    crate::ui::human(&format!("{}\nmatrix {}: exit {}; {}\n", timing.line(), m.name, report.exit_code, dir.display()));
    report.exit_code
}

/// Writes a matrix's `report.json` and tells the stream, whose reporters
/// write the JUnit, KTAP, page and table from it.
pub fn finish_matrix(dir: &std::path::Path, report: &crate::outcome::matrix::MatrixReport, stream: &Events) {
    match crate::matrix::write_report(dir, report) {
        Ok(path) => stream.emit(Event::MatrixFinished { exit_code: report.exit_code, report: path.display().to_string() }),
        Err(e) => eprintln!("kernlab: cannot write `{}`: {e}", crate::outcome::layout::report_json(dir).display()),
    }
}

pub fn merge(dirs: &[PathBuf], out: &std::path::Path, events: &Events) -> i32 {
    use crate::matrix;
    let mut reports = Vec::new();
    let mut shards = Vec::new();
    for d in dirs {
        match crate::outcome::read::<crate::outcome::matrix::MatrixReport>(&crate::outcome::layout::report_json(d)) {
            Ok(mut r) => {
                // Its cells' directories, relative to the shard, as absolute
                // paths: the merged report lives elsewhere.
                let d = std::fs::canonicalize(d).unwrap_or_else(|_| d.clone());
                for c in &mut r.cells {
                    c.dir = crate::outcome::resolve(&d, &c.dir);
                }
                shards.push(d);
                reports.push(r)
            }
            Err(e) => return fail(&e),
        }
    }
    let name = reports.last().map(|r| r.name.clone()).unwrap_or_else(|| "merged".into());
    let results = matrix::merge(&reports);
    if let Err(e) = crate::util::fsx::private_dir(out) {
        return fail(&e);
    }
    let n = results.len();
    let report = matrix::report(&name, results, None, None, Some(shards));
    finish_matrix(out, &report, events);
    if crate::ui::get().json {
        let v = serde_json::json!({"name": name, "merged": dirs, "cells": n, "exit_code": report.exit_code, "dir": out, "report": crate::outcome::layout::report_json(out)});
        crate::ui::json_line(&v.to_string());
    } else {
        println!("merged {} reports, {n} cells: exit {}; {}", dirs.len(), report.exit_code, out.display());
    }
    report.exit_code
}

