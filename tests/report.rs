//! report.html of a real run: a short A/B leak lab on the real kernel
//! writes it at its end; `kernlab report` rebuilds it from the run
//! directory alone, the same page; headless Chromium opens it from disk
//! with no console message, and its screenshot shows the plotted series.
//! Pages of recorded real runs (tests/data/pages: a LEAK with its
//! diagnosis, a NO-LEAK, a BOUNDED) are rendered by `kernlab report` and
//! checked in Chromium at a desktop's and a phone's width: the answer
//! first, legends off the data, no sideways scrolling of the page.
//! Screenshots are kept under target/test-artifacts/report/.

mod common;
#[path = "common/browser.rs"]
mod browser;
use browser::Browser;
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
    let browser = browser::chromium_or_skip("a_leak_run_has_a_self_contained_report_that_kernlab_report_rebuilds_and_chromium_renders");
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
    // The charts are what decided the verdict: each cache that rejected its
    // floor or levelled off (at most 6), the metric, then each arm's
    // memory; both arms on each of the first.
    let rec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let caches = rec["analysis"]["caches"].as_array().unwrap();
    assert!(caches.iter().any(|c| c["leak"] == true), "a LEAK with no cache rejecting its floor: {}", rec["analysis"]["reason"]);
    let rejected = caches.iter().filter(|c| c["leak"] == true || !c["bounded"].is_null()).count().min(6);
    let svgs = page.matches("<svg").count();
    assert_eq!(svgs, rejected + 3, "{svgs} charts for {rejected} caches that decided the verdict");
    let lines = polyline_lengths(&page);
    let lines_before_move = lines.clone();
    assert!(lines.iter().filter(|n| **n >= 12).count() >= 2 * (rejected + 1) + 2, "too few lines with the samples: {:?}", &lines[..lines.len().min(12)]);
    assert!(page.matches("<polygon").count() >= 4, "confidence bands missing");
    for label in ["module khm loaded", "workload started", "workload finished"] {
        assert!(page.contains(&format!(">\n{label}\n</text>")), "marker {label} missing");
    }
    assert!(page.contains("qemu-system-x86_64") && page.contains("debian-6.1.0-54-cloud-amd64"), "manifest missing");
    for external in ["<script", "src=", "href=\"http", "<link", "@import", "url("] {
        assert!(!page.contains(external), "the page is not self-contained: {external}");
    }

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
        // The arm's page from the moved directory draws the same series as
        // the page the run wrote (no samples read: no lines).
        let arm_page = std::fs::read_to_string(rendered.join(arm).join("report.html")).unwrap();
        let written = std::fs::read_to_string(moved.join(arm).join("report.html")).unwrap();
        let lines = polyline_lengths(&arm_page);
        assert!(lines.iter().any(|n| *n >= 8), "{arm}: the arm's samples did not read from the moved directory: {lines:?}");
        assert_eq!(lines, polyline_lengths(&written), "{arm}: not the series the run drew");
    }
    assert_eq!(assert_valid_records(&moved), checked, "the moved records still fit their schemas");
    std::fs::rename(&moved, &dir).unwrap();

    let Some(browser) = browser else { return };
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

    // The page of this version's run: the answer first, and the layout at
    // a desktop's and a phone's width.
    let mut b = Browser::launch(&browser);
    for width in [1280, 390] {
        let m = check_layout(&mut b, &dir.join("report.html"), width, &shots.join(format!("live-leak-{width}.png")));
        println!("live LEAK page at {width} px: {m}");
    }
}

/// What the page looks like in the browser: its sections in order, its
/// widths, and each plot's data area, legend box and legend labels.
const LAYOUT_JS: &str = r#"(() => {
  const box = e => { const b = e.getBoundingClientRect(); return {l: b.left, t: b.top + scrollY, r: b.right, b: b.bottom + scrollY}; };
  return {
    innerWidth: innerWidth,
    scrollWidth: document.documentElement.scrollWidth,
    sections: [...document.querySelectorAll('body > section')].map(s => ({id: s.id, top: box(s).t})),
    plots: [...document.querySelectorAll('figure svg')].map(svg => ({
      title: (svg.querySelector('text') || {textContent: ''}).textContent.trim(),
      svg: box(svg),
      area: svg.querySelector('.plot-area') && box(svg.querySelector('.plot-area')),
      legend: svg.querySelector('.legend-box') && box(svg.querySelector('.legend-box')),
      labels: [...svg.querySelectorAll('.legend-label')].map(box),
    })),
    tables: [...document.querySelectorAll('table')].map(t => ({scrolls: t.parentElement.classList.contains('scroll'), right: box(t.parentElement).r})),
  };
})()"#;

fn overlap(a: &serde_json::Value, b: &serde_json::Value) -> f64 {
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap();
    let w = f(a, "r").min(f(b, "r")) - f(a, "l").max(f(b, "l"));
    let h = f(a, "b").min(f(b, "b")) - f(a, "t").max(f(b, "t"));
    if w > 0.0 && h > 0.0 { w * h } else { 0.0 }
}

fn inside(inner: &serde_json::Value, outer: &serde_json::Value) -> bool {
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap();
    f(inner, "l") >= f(outer, "l") - 0.5 && f(inner, "r") <= f(outer, "r") + 0.5 && f(inner, "t") >= f(outer, "t") - 0.5 && f(inner, "b") <= f(outer, "b") + 0.5
}

/// Opens `page` at `width` CSS pixels and checks what the reader sees: the
/// verdict, then the diagnosis, then the evidence; no console message; no
/// sideways scrolling of the page (wide tables scroll in their own box);
/// every plot as wide as its column at most, with its legend outside its
/// data area and every legend label inside the legend box. Writes a
/// screenshot to `shot`; returns the plot titles in order and the numbers.
fn check_layout(b: &mut Browser, page: &Path, width: u32, shot: &Path) -> String {
    check_page(b, page, width, shot, true)
}

/// [`check_layout`], for an arm's page too (`ab` false: no verdict,
/// diagnosis and evidence sections to order).
fn check_page(b: &mut Browser, page: &Path, width: u32, shot: &Path, ab: bool) -> String {
    let tab = b.open(page, width);
    let v = b.eval(&tab, LAYOUT_JS);
    let console = b.console(&tab);
    let _ = std::fs::remove_file(shot);
    b.screenshot(&tab, shot);
    b.close(tab);
    let at = format!("{} at {width} px", page.display());
    assert!(console.is_empty(), "{at}: console messages:\n{}", console.join("\n"));
    // On a phone a page wider than the screen widens the layout viewport
    // (innerWidth) to fit itself, zoomed out: both must be the screen's.
    let inner = v["innerWidth"].as_f64().unwrap();
    let scroll = v["scrollWidth"].as_f64().unwrap();
    assert!(scroll <= inner && scroll <= width as f64, "{at}: the page scrolls sideways: scrollWidth {scroll}, innerWidth {inner}");
    assert_eq!(inner, width as f64, "{at}: the viewport is not the screen's (no <meta name=viewport>?)");

    let ids: Vec<&str> = v["sections"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    let pos = |id: &str| ids.iter().position(|s| *s == id).unwrap_or_else(|| panic!("{at}: no section {id} in {ids:?}"));
    if ab {
        assert!(pos("verdict") == 0 && pos("diagnosis") == 1 && pos("evidence") == 2, "{at}: sections out of order: {ids:?}");
    }
    let tops: Vec<f64> = v["sections"].as_array().unwrap().iter().map(|s| s["top"].as_f64().unwrap()).collect();
    assert!(tops.windows(2).all(|w| w[0] < w[1]), "{at}: sections are not drawn in their order: {ids:?} at {tops:?}");

    for t in v["tables"].as_array().unwrap() {
        assert!(t["scrolls"].as_bool().unwrap(), "{at}: a table outside a scrolling box");
        assert!(t["right"].as_f64().unwrap() <= inner + 0.5, "{at}: a table box wider than the page: {t}");
    }
    let plots = v["plots"].as_array().unwrap();
    assert!(!plots.is_empty(), "{at}: no plots");
    for p in plots {
        let title = p["title"].as_str().unwrap();
        let svg = &p["svg"];
        let w = svg["r"].as_f64().unwrap() - svg["l"].as_f64().unwrap();
        assert!(svg["r"].as_f64().unwrap() <= inner + 0.5 && w > 0.75 * inner.min(1100.0) - 40.0, "{at}: plot {title} is {w} px wide, not its column's width");
        let (area, legend) = (&p["area"], &p["legend"]);
        assert!(area.is_object() && legend.is_object(), "{at}: plot {title} lacks its marked data area or legend: {p}");
        assert_eq!(overlap(area, legend), 0.0, "{at}: the legend of {title} covers its data area: {p}");
        assert!(inside(legend, svg), "{at}: the legend of {title} is cut off: {p}");
        let labels = p["labels"].as_array().unwrap();
        assert!(!labels.is_empty(), "{at}: plot {title} has an empty legend");
        for l in labels {
            assert!(inside(l, legend), "{at}: a legend label of {title} runs out of its box: {l} in {legend}");
        }
    }
    let titles: Vec<&str> = plots.iter().map(|p| p["title"].as_str().unwrap()).collect();
    format!("{} plots {titles:?}, scrollWidth {scroll} of {inner}", plots.len())
}

/// A recorded run directory (tests/data/pages/NAME.tar.gz) unpacked under `into`.
fn recorded(name: &str, into: &Path) -> PathBuf {
    let dir = into.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let f = std::fs::File::open(repo("tests/data/pages").join(format!("{name}.tar.gz"))).unwrap();
    tar::Archive::new(flate2::read::GzDecoder::new(f)).unpack(&dir).unwrap();
    dir
}

/// The first `<figure>`s' chart titles, in page order.
fn plot_titles(page: &str) -> Vec<String> {
    page.split("<figure>")
        .skip(1)
        .filter_map(|f| Some(f.split("<text").nth(1)?.split_once(">\n")?.1.split_once("\n</text>")?.0.to_string()))
        .collect()
}

#[test]
fn recorded_pages_lead_with_the_answer_and_reflow_from_a_desktop_to_a_phone() {
    let d = tempfile::tempdir().unwrap();
    let shots = artifacts();
    let browser = browser::chromium_or_skip("recorded_pages_lead_with_the_answer_and_reflow_from_a_desktop_to_a_phone");
    let mut b = browser.as_ref().map(|p| Browser::launch(p));
    if let Some(b) = b.as_mut() {
        // The console check must see errors at all.
        let probe = d.path().join("probe.html");
        std::fs::write(&probe, "<!DOCTYPE html><html><body><script>console.error('kernlab-probe')</script></body></html>").unwrap();
        let tab = b.open(&probe, 1280);
        let console = b.console(&tab);
        b.close(tab);
        assert!(console.iter().any(|l| l.contains("kernlab-probe")), "the console check is blind: {console:?}");
        // And the layout check must see a legend on the data and a page
        // wider than the screen.
        let sections = "<section id=verdict><p>v</p></section><section id=diagnosis><p>d</p></section><section id=evidence>";
        let svg = |legend_y: u32| {
            format!(
                "<figure><svg viewBox='0 0 800 400' width='800' height='400'><text>t</text><rect class='plot-area' x='72' y='20' width='700' height='300'/>\
                 <rect class='legend-box' x='64' y='{legend_y}' width='200' height='30'/><text class='legend-label' x='90' y='{}'>module arm</text></svg></figure>",
                legend_y + 20
            )
        };
        let page = |name: &str, body: String| {
            let f = d.path().join(name);
            std::fs::write(&f, format!("<!DOCTYPE html><html><head><meta name=viewport content='width=device-width'><style>svg{{width:100%;height:auto}}</style></head><body>{sections}{body}</section></body></html>")).unwrap();
            f
        };
        let control = |b: &mut Browser, f: &Path, width: u32| {
            let shot = d.path().join("control.png");
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check_layout(b, f, width, &shot))).err().map(|e| e.downcast_ref::<String>().cloned().unwrap_or_default())
        };
        assert_eq!(control(b, &page("fine.html", svg(340)), 390), None, "the control page itself is fine");
        let e = control(b, &page("covered.html", svg(200)), 1280).expect("a legend over the data passed");
        assert!(e.contains("covers its data area"), "{e}");
        let e = control(b, &page("wide.html", format!("{}<div style='width:900px'>wide</div>", svg(340))), 390).expect("a page wider than the phone passed");
        assert!(e.contains("scrolls sideways"), "{e}");
        eprintln!("(the two panics above are the layout check failing on its control pages, as it must)");
    }
    // (record, the answer, what the diagnosis says, the first plots in order)
    let cases: [(&str, &str, &[&str], &[&str]); 3] = [
        (
            "leak-attributed",
            "<span class=\"badge bad\">LEAK</span> NOT as expected (expected no-leak): cache leaky_obj grows",
            &["<h3>What leaks</h3>", "allocation leak", "<td>leaky_alloc</td>", "allocated, never freed", "do_unlinkat [vmlinux]"],
            &["slab cache leaky_obj", "slab in both arms"],
        ),
        (
            "no-leak",
            "<span class=\"badge ok\">NO-LEAK</span> as expected: all 6 hypotheses",
            &["Nothing leaks: every hypothesis stays below its floor.", "Nearest to its floor: <strong>", "Rules out (80 % power)"],
            &["slab in both arms", "slab cache "],
        ),
        (
            "bounded",
            "<span class=\"badge ok\">BOUNDED</span> as expected: slab rose above the baseline and levelled off",
            &["Nothing leaks: this growth stopped within the run.", "<table class=\"bounded\">"],
            &["slab in both arms"],
        ),
    ];
    for (name, answer, diagnosis, first_plots) in cases {
        let src = recorded(name, d.path());
        let out = d.path().join("pages").join(name);
        let r = run(&["report", src.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert_eq!(r.status.code(), Some(0), "{name}: {}", text(&r.stderr));
        let page = std::fs::read_to_string(out.join("report.html")).unwrap();
        std::fs::copy(out.join("report.html"), shots.join(format!("{name}.html"))).unwrap();

        // The answer is the verdict section's one line; the diagnosis says
        // what the record's attribution or analysis found.
        let verdict = page.split("<section id=\"verdict\">").nth(1).and_then(|v| v.split("</section>").next()).unwrap_or_else(|| panic!("{name}: no verdict section"));
        assert!(verdict.contains(answer), "{name}: the verdict line is not the answer: {verdict}");
        assert_eq!(verdict.matches("<p").count(), 1, "{name}: the verdict is more than one line: {verdict}");
        let diag = page.split("<section id=\"diagnosis\">").nth(1).and_then(|v| v.split("<section id=").next()).unwrap_or_else(|| panic!("{name}: no diagnosis"));
        for w in diagnosis {
            assert!(diag.contains(w), "{name}: the diagnosis lacks {w}: {diag}");
        }
        // Plots by what decided the verdict, not by bytes.
        let titles = plot_titles(&page);
        for (i, want) in first_plots.iter().enumerate() {
            assert!(titles.get(i).is_some_and(|t| t.starts_with(want)), "{name}: plot {i} is not {want}: {titles:?}");
        }
        // The caches shown after the metric for a verdict other than LEAK
        // are those nearest to their floor, by the record's numbers.
        let rec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(src.join("report.json")).unwrap()).unwrap();
        let a = &rec["analysis"];
        if rec["verdict"] == "no-leak" {
            let near = |c: &serde_json::Value| c["upper"].as_f64().unwrap() / c["floor"].as_f64().unwrap();
            let caches = a["caches"].as_array().unwrap();
            let nearest = caches.iter().map(near).fold(f64::NEG_INFINITY, f64::max);
            let second = caches.iter().find(|c| titles[1] == format!("slab cache {}", c["name"].as_str().unwrap())).unwrap_or_else(|| panic!("{name}: {titles:?}"));
            assert_eq!(near(second), nearest, "{name}: the first cache shown is not the nearest to its floor: {titles:?}");
            println!("{name}: first cache shown {} at {:.3} of its floor (the nearest); largest in bytes {}", second["name"], near(second), caches[0]["name"]);
        }
        if let Some(b) = b.as_mut() {
            for width in [1280, 390] {
                let m = check_layout(b, &out.join("report.html"), width, &shots.join(format!("{name}-{width}.png")));
                println!("{name} at {width} px: {m}");
            }
            let m = check_page(b, &out.join("module/report.html"), 390, &shots.join(format!("{name}-module-390.png")), false);
            println!("{name}, module arm at 390 px: {m}");
        }
    }
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
