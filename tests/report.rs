//! report.html of a real run: a short A/B leak lab on the real kernel
//! writes it at its end; `kernlab report` rebuilds it from the run
//! directory alone, the same page; headless Chromium opens it from disk
//! with no console message, and its screenshot shows the plotted series.
//! The screenshot is kept under target/test-artifacts/report/.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A copy of the hook module's source beside a test's lab.
fn copy_khm(dir: &Path) {
    std::fs::create_dir(dir.join("khm")).unwrap();
    for f in ["khm.c", "Kbuild"] {
        std::fs::copy(repo("labs/khm").join(f), dir.join("khm").join(f)).unwrap();
    }
}

fn artifacts() -> PathBuf {
    let d = repo("target/test-artifacts/report");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Headless Chromium, which the issue asks the report to be checked in. Not
/// a skip when it is missing: the check would silently not happen.
fn chromium() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        for name in ["chromium", "chromium-browser"] {
            let p = Path::new(dir).join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("headless Chromium is needed to check report.html: `apt-get install chromium` (scripts/setup.sh installs it)");
}

/// Opens a local page in headless Chromium with its logging on stderr.
/// `--dump-dom` prints the DOM once the page has loaded; every console
/// message (a script error, a blocked resource, a CSP violation) is logged
/// as a `:CONSOLE` line. Returns the DOM and those lines.
fn open(chromium: &Path, page: &Path, extra: &[&str]) -> (String, Vec<String>) {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--enable-logging=stderr", "--v=0"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "chromium failed: {}", text(&out.stderr));
    let console = text(&out.stderr).lines().filter(|l| l.contains(":CONSOLE")).map(str::to_string).collect();
    (text(&out.stdout), console)
}

/// Pixels of the screenshot within a small distance of `rgb`.
fn pixels_near(png_file: &Path, rgb: [u8; 3]) -> usize {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png_file).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = info.color_type.samples();
    assert!(step >= 3, "colour screenshot expected, got {:?}", info.color_type);
    buf[..info.buffer_size()]
        .chunks(step)
        .filter(|p| p[..3].iter().zip(rgb).all(|(a, b)| (*a as i32 - b as i32).abs() <= 24))
        .count()
}

/// The longest `<polyline>`s of a page, by their number of points.
fn polyline_lengths(html: &str) -> Vec<usize> {
    let mut v: Vec<usize> = html
        .split("<polyline")
        .skip(1)
        .map(|p| p.split("points=\"").nth(1).unwrap_or("").split('"').next().unwrap_or("").split_whitespace().count())
        .collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    v
}

fn without_footer(page: &str) -> String {
    page.lines().filter(|l| !l.starts_with("<footer>")).collect::<Vec<_>>().join("\n")
}

#[test]
fn a_leak_run_has_a_self_contained_report_that_kernlab_report_rebuilds_and_chromium_renders() {
    let browser = chromium();
    let d = tempfile::tempdir().unwrap();
    copy_khm(d.path());
    let f = lab(
        d.path(),
        "short-leak",
        "name: short-leak\nmodules:\n  - source: khm\n    params: {leak: 1}\n\
         workload:\n  churn: {rate: 1000}\n  duration: 12s\nmonitor:\n  interval: 1s\n  reclaim: true\n\
         leak:\n  expect: leak\n  stop_early: false\n  attribute: off\n  baseline:\n    modules:\n      - source: khm\n        params: {leak: 0}\n",
    );
    let dir = d.path().join("run");
    let out = run(&["run", f.to_str().unwrap(), "--out", dir.to_str().unwrap(), "-q"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));
    assert!(stdout.contains("LEAK as expected"), "{stdout}");

    // Every record the run wrote fits its committed schema (docs/schemas/):
    // the lab's report.json and events, each arm's report.json, manifest.json
    // and every event line.
    let checked = assert_valid_records(&dir);
    let lines: usize = ["", "module", "baseline"].iter().map(|a| events(&dir.join(a)).len()).sum();
    assert_eq!(checked, 5 + lines, "records checked");
    // Paths inside the records are relative to the record's directory.
    let r = report(&dir);
    assert_eq!((r["module"]["dir"].as_str(), r["baseline"]["dir"].as_str()), (Some("module"), Some("baseline")), "{r}");
    for p in [dir.join("report.json"), dir.join("module/report.json"), dir.join("baseline/report.json")] {
        let t = std::fs::read_to_string(&p).unwrap();
        assert!(!t.contains(&dir.display().to_string()), "{} holds the run directory's absolute path:\n{t}", p.display());
    }

    // Written at the end of the run: the lab's page and each arm's.
    for p in [dir.join("report.html"), dir.join("module/report.html"), dir.join("baseline/report.html")] {
        assert!(p.is_file(), "{} missing", p.display());
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    let live = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let live_arm = std::fs::read_to_string(dir.join("module/report.html")).unwrap();

    // Rebuilt from the directory alone, the same page.
    std::fs::remove_file(dir.join("report.html")).unwrap();
    std::fs::remove_file(dir.join("module/report.html")).unwrap();
    let start = std::time::Instant::now();
    let out = run(&["report", dir.to_str().unwrap()]);
    let rebuild_secs = start.elapsed().as_secs_f64();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("LEAK as expected") && stdout.contains("report.html"), "{stdout}");
    let page = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert_eq!(without_footer(&page), without_footer(&live), "the rebuilt page differs from the run's");
    assert_eq!(without_footer(&std::fs::read_to_string(dir.join("module/report.html")).unwrap()), without_footer(&live_arm));

    // Rendered elsewhere, the run directory is left byte for byte as it was.
    let before = tree_digest(&dir);
    let elsewhere = d.path().join("rendered");
    let out = run(&["report", dir.to_str().unwrap(), "--out", elsewhere.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{}\nstderr:\n{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(tree_digest(&dir), before, "kernlab report --out changed the run directory");
    assert_eq!(without_footer(&std::fs::read_to_string(elsewhere.join("report.html")).unwrap()), without_footer(&page));
    assert_eq!(without_footer(&std::fs::read_to_string(elsewhere.join("module/report.html")).unwrap()), without_footer(&live_arm));
    assert!(elsewhere.join("baseline/report.html").is_file());
    assert_eq!(run(&["report", dir.to_str().unwrap(), "--out", dir.to_str().unwrap()]).status.code(), Some(2), "--out the run itself is refused");

    // The verdict, the plots with the samples in them, bands, event markers.
    assert!(page.contains("<span class=\"badge ok\">LEAK</span> as expected"), "verdict missing");
    assert!(page.contains("shmem_inode_cache") && page.contains("bytes/op"));
    let svgs = page.matches("<svg").count();
    assert!(svgs >= 6, "{svgs} charts");
    let lines = polyline_lengths(&page);
    let lines_before_move = lines.clone();
    assert!(lines.iter().filter(|n| **n >= 12).count() >= 8, "too few lines with the samples: {:?}", &lines[..lines.len().min(12)]);
    assert!(page.matches("<polygon").count() >= 4, "confidence bands missing");
    for label in ["module khm loaded", "workload started", "workload finished"] {
        assert!(page.contains(&format!(">\n{label}\n</text>")), "marker {label} missing");
    }
    assert!(page.contains("qemu-system-x86_64") && page.contains("debian-6.1.0-54-cloud-amd64"), "manifest missing");
    for external in ["<script", "src=", "href=\"http", "<link", "@import", "url("] {
        assert!(!page.contains(external), "the page is not self-contained: {external}");
    }

    // Chromium: first prove that the console check sees errors at all.
    let probe = d.path().join("probe.html");
    std::fs::write(&probe, "<!DOCTYPE html><html><body><script>console.error('kernlab-probe')</script></body></html>").unwrap();
    let (_, console) = open(&browser, &probe, &["--dump-dom"]);
    assert!(console.iter().any(|l| l.contains("kernlab-probe")), "chromium's console is not visible on stderr; the check below would be blind");

    let (dom, console) = open(&browser, &dir.join("report.html"), &["--dump-dom"]);
    assert!(console.is_empty(), "console messages:\n{}", console.join("\n"));
    assert_eq!(dom.matches("<svg").count(), svgs, "the loaded DOM lacks charts");
    assert!(dom.contains("LEAK"));

    let shots = artifacts();
    let png_file = shots.join("leak-lab-report.png");
    let _ = std::fs::remove_file(&png_file);
    let (_, console) = open(&browser, &dir.join("report.html"), &["--window-size=1280,2400", &format!("--screenshot={}", png_file.display())]);
    assert!(console.is_empty(), "console messages:\n{}", console.join("\n"));
    std::fs::copy(dir.join("report.html"), shots.join("report.html")).unwrap();
    // The module arm's line (#d62728) and the baseline's (#1f77b4) are drawn.
    let (red, blue) = (pixels_near(&png_file, [0xd6, 0x27, 0x28]), pixels_near(&png_file, [0x1f, 0x77, 0xb4]));
    assert!(red > 2000 && blue > 1000, "the plotted series are not on screen: {red} red, {blue} blue pixels");
    println!("screenshot: {} ({red} module-red, {blue} baseline-blue pixels); kernlab report took {rebuild_secs:.2} s", png_file.display());

    // Moved elsewhere (the original gone), the run directory still reads:
    // `kernlab report --out` finds both arms through the report's relative
    // paths and renders the same verdict and arm pages.
    let moved = d.path().join("archive/2026/run-moved");
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::rename(&dir, &moved).unwrap();
    assert!(!dir.exists());
    let rendered = d.path().join("rendered-moved");
    let out = run(&["report", moved.to_str().unwrap(), "--out", rendered.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("LEAK as expected"), "{stdout}");
    let again = std::fs::read_to_string(rendered.join("report.html")).unwrap();
    assert!(again.contains("<span class=\"badge ok\">LEAK</span> as expected"), "verdict missing");
    assert_eq!(polyline_lengths(&again), lines_before_move, "the moved run's arms did not read back the same series");
    for arm in ["module", "baseline"] {
        let arm_page = std::fs::read_to_string(rendered.join(arm).join("report.html")).unwrap();
        assert!(arm_page.contains("shmem_inode_cache"), "{arm}: the arm's samples did not read from the moved directory");
    }
    assert_eq!(assert_valid_records(&moved), checked, "the moved records still fit their schemas");
}

#[test]
fn kernlab_report_names_a_directory_that_is_no_run() {
    let d = tempfile::tempdir().unwrap();
    let out = run(&["report", d.path().to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("`{}` is neither a run directory nor a matrix directory", d.path().display())), "{err}");
    let out = run(&["report", d.path().join("missing").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("does not exist"), "{}", text(&out.stderr));
}

#[test]
fn kernlab_report_writes_a_matrix_index_linking_each_cell() {
    // A matrix directory as `kernlab matrix` leaves it, with one cell that
    // ran (its events) and one that left nothing.
    let d = tempfile::tempdir().unwrap();
    let cell = d.path().join("cells/smoke@debian-6.1.0-54-cloud-amd64");
    std::fs::create_dir_all(cell.join("samples")).unwrap();
    std::fs::write(cell.join("events.jsonl"), "{\"t\":1.0,\"event\":\"workload-started\",\"commands\":1,\"duration_secs\":2}\n").unwrap();
    std::fs::write(cell.join("samples/meminfo.csv"), "t,uptime,key,bytes\n1,0,Slab,100\n2,0,Slab,200\n").unwrap();
    let report = serde_json::json!({"schema": "kernlab.matrix-report/1", "name": "nightly", "exit_code": 101, "cells": [
        {"id": "smoke@debian-6.1.0-54-cloud-amd64", "lab": "smoke", "kernel": "debian-6.1.0-54-cloud-amd64", "exit_code": 0,
         "verdict": "completed", "error": null, "dir": cell, "secs": 9.0, "delta_per_hour": null, "bytes_per_op": null},
        {"id": "smoke@debian-6.1.0-54-amd64", "lab": "smoke", "kernel": "debian-6.1.0-54-amd64", "exit_code": 101,
         "verdict": "failed", "error": "boot <failed>", "dir": d.path().join("cells/smoke@debian-6.1.0-54-amd64"), "secs": 1.0,
         "delta_per_hour": null, "bytes_per_op": null}]});
    std::fs::write(d.path().join("report.json"), report.to_string()).unwrap();
    let out = run(&["report", d.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("matrix nightly: exit 101"), "{}", text(&out.stdout));
    let index = std::fs::read_to_string(d.path().join("report.html")).unwrap();
    assert!(index.contains("href=\"cells/smoke@debian-6.1.0-54-cloud-amd64/report.html\""), "{index}");
    assert!(index.contains("href=\"cells/smoke@debian-6.1.0-54-amd64/report.html\""));
    assert!(index.contains("boot &lt;failed&gt;"));
    assert!(cell.join("report.html").is_file(), "the cell's own page was not rebuilt");
}

/// Every file under `root` with its content's hash and its mode, sorted.
fn tree_digest(root: &std::path::Path) -> Vec<(std::path::PathBuf, u32, u64)> {
    use std::hash::{Hash, Hasher};
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if meta.is_file() {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::fs::read(&p).unwrap().hash(&mut h);
            out.push((p.strip_prefix(root).unwrap().to_path_buf(), mode(&p), h.finish()));
        }
    }
    out.sort();
    out
}
