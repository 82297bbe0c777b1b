//! The engine after boot, run against the scripted guest
//! ([`super::testing::Scripted`]) under paused time: setup, modules, the
//! workload and the sampling loop, the decision, the dump and the records,
//! each test in milliseconds and without QEMU.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::guest::GuestOps;
use super::phases::Booted;
use super::rundir::RunDir;
use super::testing::{capture_text, leak_series, read, Reply, Scripted, Series, Step};
use super::{ab, run_arm, Arm, GuestSource, RunEnd};
use crate::exit;
use crate::outcome::event::Events;
use crate::outcome::leak::LeakReport;
use crate::outcome::run::RunOutcome;
use crate::payload::kmod::{BuiltModule, How};
use crate::stats::Verdict;

/// A builtin kernel descriptor's name (the scripted guest boots none).
fn kernel() -> String {
    format!("debian-6.1.0-54-cloud-{}", crate::arch::Arch::X86_64.debian())
}

fn module(name: &str) -> (BuiltModule, BTreeMap<String, String>) {
    let built = BuiltModule {
        name: name.into(),
        ko: format!("/nonexistent/{name}.ko").into(),
        sha256: String::new(),
        cached: true,
        origin: "scripted".into(),
        params: Vec::new(),
        vermagic: String::new(),
        how: How::Prebuilt,
    };
    (built, BTreeMap::new())
}

/// What a boot would have given the phases: the named modules, the
/// payload in the initrd already, no sampler port.
fn booted(modules: &[&str]) -> Booted {
    Booted { payload: Default::default(), upload_payload: false, modules: modules.iter().map(|m| module(m)).collect(), sampler_port: false }
}

/// An arm of the lab `yaml` (written into `tmp`), its run directory
/// `tmp/run`, its guests made by `make` for each arm's directory name.
fn arm(tmp: &Path, yaml: &str, make: impl Fn(&str) -> (Arc<dyn GuestOps>, Booted) + Send + Sync + 'static) -> Arm {
    let lab_file = super::testing::lab_file(tmp, yaml);
    let lab = crate::lab::load(&lab_file).unwrap_or_else(|e| panic!("the test's lab: {e}"));
    let desc = crate::kernel::Registry::load(&[]).unwrap().get(&lab.kernel).unwrap().clone();
    let cache = crate::cache::Cache::at(tmp.join("cache")).unwrap();
    let dir = RunDir::create(Some(&tmp.join("run")), &lab.name, &lab.kernel).unwrap();
    Arm {
        lab,
        lab_file,
        desc,
        cache,
        dir,
        events: Events::new(Instant::now()),
        decided: CancellationToken::new(),
        instruments: Default::default(),
        source: GuestSource::Scripted(Arc::new(make)),
    }
}

/// A plain run of one scripted guest.
async fn plain(tmp: &Path, yaml: &str, guest: Scripted, modules: &'static [&'static str]) -> RunEnd {
    let g = guest.clone();
    let arm = arm(tmp, yaml, move |_| (Arc::new(g.clone()) as Arc<dyn GuestOps>, booted(modules)));
    run_arm(arm, CancellationToken::new(), Instant::now()).await
}

fn series_of(texts: impl Fn(u64) -> Step + Send + Sync + 'static) -> Series {
    Arc::new(texts)
}

/// The samples on disk in a run directory: the distinct sample times of
/// its `meminfo.csv` (a row per field per sample).
fn samples_on_disk(dir: &Path) -> usize {
    let text = read(dir, "samples/meminfo.csv");
    let times: std::collections::BTreeSet<&str> = text.lines().skip(1).filter_map(|l| l.split(',').next()).filter(|t| !t.is_empty()).collect();
    times.len()
}

fn leak_lab(duration: &str) -> String {
    format!(
        "name: engine-leak\nkernel: {}\nmodules:\n  - source: leaky\n    params: {{every: 100}}\nworkload:\n  commands: [\"true\"]\n  duration: {duration}\nmonitor:\n  interval: 1s\nleak:\n  expect: leak\n  baseline:\n    modules: []\n",
        kernel()
    )
}

/// A/B with a planted leak of one `leaky` object per 100 operations (10
/// per sample) in the module arm's guest and none in the baseline's, both
/// with the same noise: LEAK, on `leaky`, the lab's expectation held.
#[tokio::test(start_paused = true)]
async fn a_planted_leak_is_leak_on_its_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let (module_guest, baseline_guest) = (Scripted::new(vec![], leak_series(0.01, 1000, 3, 1)), Scripted::new(vec![], leak_series(0.0, 1000, 3, 2)));
    let (m, b) = (module_guest.clone(), baseline_guest.clone());
    let arm = arm(tmp.path(), &leak_lab("60s"), move |name| match name {
        "module" => (Arc::new(m.clone()) as Arc<dyn GuestOps>, booted(&["leaky"])),
        _ => (Arc::new(b.clone()) as Arc<dyn GuestOps>, booted(&[])),
    });
    let wall = Instant::now();
    let end = ab::run_ab(arm, CancellationToken::new(), Instant::now()).await;
    eprintln!("leak run: {:.3} s wall", wall.elapsed().as_secs_f64());
    let top = end.dir.clone().unwrap();
    let report: LeakReport = crate::outcome::read(&crate::outcome::layout::report_json(&top)).unwrap();
    assert_eq!(report.verdict, Some(Verdict::Leak), "{:?}", report.analysis.as_ref().map(|a| &a.reason));
    assert_eq!(end.exit_code, exit::OK, "{:?}", end.error);
    // The caller has the record in hand, typed, as it was written.
    let typed = end.leak.as_ref().expect("no LeakReport in the run's end");
    assert_eq!((typed.verdict, typed.exit_code, typed.stopped.as_str()), (report.verdict, report.exit_code, report.stopped.as_str()));
    assert_eq!(report.expectation_held, Some(true));
    // Decided before the duration: the sampling stopped early.
    assert!(report.stopped.starts_with("decided at look"), "{}", report.stopped);
    let an = report.analysis.as_ref().unwrap();
    assert_eq!(an.caches.first().map(|c| c.name.as_str()), Some("leaky"), "{:?}", an.caches.iter().map(|c| &c.name).collect::<Vec<_>>());
    // The module was loaded in the module arm's guest only, and unloaded.
    let (ml, bl) = (module_guest.log(), baseline_guest.log());
    assert!(ml.iter().any(|l| l.starts_with("exec insmod") && l.contains("leaky")), "{ml:?}");
    assert!(ml.iter().any(|l| l == "exec rmmod leaky"), "{ml:?}");
    assert!(!bl.iter().any(|l| l.contains("insmod")), "{bl:?}");
    // Both samples series are on disk, one row per sample taken.
    for (arm, g) in [("module", &module_guest), ("baseline", &baseline_guest)] {
        assert_eq!(samples_on_disk(&top.join(arm)) as u64, g.samples_taken(), "{arm}");
        assert!(g.samples_taken() >= 10, "{arm}: {} samples", g.samples_taken());
        assert!(g.log().iter().any(|l| l == "shutdown"), "{arm}: the guest was not stopped");
    }
}

/// A baseline guest that misses every other sample leaves too few samples
/// for a verdict: INCONCLUSIVE, with its exit code, saying why.
#[tokio::test(start_paused = true)]
async fn too_few_samples_are_inconclusive() {
    let tmp = tempfile::tempdir().unwrap();
    let planted = leak_series(0.01, 1000, 3, 1);
    let quiet = leak_series(0.0, 1000, 3, 2);
    let gappy = series_of(move |k| if k % 2 == 1 { Step::Gap("ssh: scripted gap".into()) } else { quiet(k) });
    let (m, b) = (Scripted::new(vec![], planted), Scripted::new(vec![], gappy));
    let arm = arm(tmp.path(), &leak_lab("20s"), move |name| match name {
        "module" => (Arc::new(m.clone()) as Arc<dyn GuestOps>, booted(&["leaky"])),
        _ => (Arc::new(b.clone()) as Arc<dyn GuestOps>, booted(&[])),
    });
    let end = ab::run_ab(arm, CancellationToken::new(), Instant::now()).await;
    let top = end.dir.clone().unwrap();
    let report: LeakReport = crate::outcome::read(&crate::outcome::layout::report_json(&top)).unwrap();
    assert_eq!(report.verdict, Some(Verdict::Inconclusive));
    assert_eq!(end.leak.as_ref().and_then(|r| r.verdict), Some(Verdict::Inconclusive));
    assert_eq!(end.exit_code, exit::INCONCLUSIVE);
    assert_eq!(report.expectation_held, None);
    let reason = &report.analysis.as_ref().unwrap().reason;
    assert!(reason.contains("the baseline arm missed") && reason.contains("too many gaps for a verdict"), "{reason}");
    assert!(report.baseline.sample_gaps >= 9, "{}", report.baseline.sample_gaps);
}

fn plain_lab(extra: &str) -> String {
    format!("name: engine-plain\nkernel: {}\nsetup: [\"mount -t tmpfs none /mnt\"]\nworkload:\n  commands: [\"true\"]\n  duration: 20s\nmonitor:\n  interval: 1s\n{extra}", kernel())
}

fn flat(k: u64, mem_available_kib: u64) -> Step {
    Step::Text(capture_text(10.0 + k as f64, &[("dentry", 20000, 192), ("kmalloc-64", 5000, 64)], mem_available_kib, k * 100))
}

/// A guest that panics during its sixth sample: the run fails with the
/// panic line, and the five samples taken are on disk and in the report.
#[tokio::test(start_paused = true)]
async fn a_guest_that_dies_mid_sample_fails_the_run_and_keeps_its_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let series = series_of(|k| if k == 5 { Step::Die("Kernel panic - not syncing: scripted oops".into()) } else { flat(k, 400_000) });
    let guest = Scripted::new(vec![], series);
    let end = plain(tmp.path(), &plain_lab(""), guest.clone(), &[]).await;
    assert_eq!(end.exit_code, exit::INFRA);
    let error = end.error.clone().unwrap();
    assert!(error.contains("during the run") && error.contains("Kernel panic - not syncing: scripted oops"), "{error}");
    let dir = end.dir.clone().unwrap();
    assert_eq!(samples_on_disk(&dir), 5);
    let report: RunOutcome = crate::outcome::read(&crate::outcome::layout::report_json(&dir)).unwrap();
    assert_eq!((report.outcome.as_str(), report.samples), ("failed", 5));
    assert_eq!(report.error.as_deref(), Some(error.as_str()));
    assert_eq!(end.outcome.as_ref().map(|o| o.samples), Some(5));
}

/// MemAvailable falling below the lab's headroom at the fourth sample:
/// the guest is panicked (sysrq-c), dumped from the host, and the record
/// says so; the run itself completes.
#[tokio::test(start_paused = true)]
async fn exhaustion_is_dumped_from_the_host_and_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let series = series_of(|k| flat(k, if k >= 3 { 30_000 } else { 400_000 }));
    let guest = Scripted::new(vec![], series);
    let lab = plain_lab("exhaustion:\n  action: host-dump\n  headroom: 64M\n  crash: false\n");
    let end = plain(tmp.path(), &lab, guest.clone(), &[]).await;
    assert_eq!(end.exit_code, exit::OK, "{:?}", end.error);
    let dir = end.dir.clone().unwrap();
    let log = guest.log();
    let sysrq = log.iter().position(|l| l.contains("echo c > /proc/sysrq-trigger")).expect("no sysrq-c");
    let dump = log.iter().position(|l| l.starts_with("dump ")).expect("no dump requested");
    assert!(sysrq < dump, "{log:?}");
    assert_eq!(guest.samples_taken(), 4);
    let report: RunOutcome = crate::outcome::read(&crate::outcome::layout::report_json(&dir)).unwrap();
    let d = report.dump.clone().expect("no dump in the report");
    assert_eq!(d.via, "host-dump");
    assert!(d.reason.contains("below the lab's headroom"), "{}", d.reason);
    let vmcore = dir.join(&d.vmcore);
    assert!(std::fs::read(&vmcore).unwrap().starts_with(b"\x7fELF"), "{}", vmcore.display());
    let x = report.exhaustion.expect("no exhaustion record");
    assert!(x.reached && x.trigger.as_deref().is_some_and(|t| t.contains("MemAvailable fell to")), "{x:?}");
    assert_eq!(report.triage_skipped.as_deref(), Some("the lab turned crash analysis off"));
}

/// A setup command that never answers ends at its deadline (300 s, in
/// paused time) with an error naming it; nothing after it is run.
#[tokio::test(start_paused = true)]
async fn a_command_that_never_returns_hits_its_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let guest = Scripted::new(vec![("mount -t tmpfs", Reply::Hang)], series_of(|k| flat(k, 400_000)));
    let wall = Instant::now();
    let virt = tokio::time::Instant::now();
    let end = plain(tmp.path(), &plain_lab(""), guest.clone(), &[]).await;
    assert!(virt.elapsed() >= std::time::Duration::from_secs(300), "{:?}", virt.elapsed());
    assert!(wall.elapsed() < std::time::Duration::from_secs(10), "{:?}", wall.elapsed());
    assert_eq!(end.exit_code, exit::INFRA);
    let error = end.error.unwrap();
    assert!(error.contains("`mount -t tmpfs none /mnt` did not finish within 300s"), "{error}");
    assert_eq!(guest.samples_taken(), 0);
    assert!(!guest.log().iter().any(|l| l.starts_with("session")), "the workload started: {:?}", guest.log());
}

/// A module whose insmod fails ends the run with insmod's own words; the
/// workload never starts.
#[tokio::test(start_paused = true)]
async fn a_module_that_will_not_load_fails_the_run_with_its_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let why = "insmod: ERROR: could not insert module leaky.ko: Invalid parameters";
    let guest = Scripted::new(vec![("insmod", Reply::Fail(1, why.into()))], series_of(|k| flat(k, 400_000)));
    let end = plain(tmp.path(), &plain_lab(""), guest.clone(), &["leaky"]).await;
    assert_eq!(end.exit_code, exit::INFRA);
    let error = end.error.unwrap();
    assert!(error.contains("leaky") && error.contains(why), "{error}");
    assert_eq!(guest.samples_taken(), 0);
}

/// A guest that stops answering in a dump lab is hung after its hang
/// window: an NMI from the host panics it and the host dumps it.
#[tokio::test(start_paused = true)]
async fn a_hung_guest_gets_an_nmi_and_is_dumped() {
    let tmp = tempfile::tempdir().unwrap();
    let guest = Scripted::new(vec![], series_of(|k| if k >= 3 { Step::Hang } else { flat(k, 400_000) }));
    let lab = plain_lab("exhaustion:\n  action: host-dump\n  crash: false\n");
    let end = plain(tmp.path(), &lab, guest.clone(), &[]).await;
    assert_eq!(end.exit_code, exit::OK, "{:?}", end.error);
    let log = guest.log();
    let nmi = log.iter().position(|l| l == "nmi").expect("no NMI");
    let dump = log.iter().position(|l| l.starts_with("dump ")).expect("no dump requested");
    assert!(nmi < dump, "{log:?}");
    let dir = end.dir.unwrap();
    let report: RunOutcome = crate::outcome::read(&crate::outcome::layout::report_json(&dir)).unwrap();
    let d = report.dump.expect("no dump in the report");
    assert!(d.reason.contains("the guest gave no sample for"), "{}", d.reason);
    assert_eq!(samples_on_disk(&dir), 3);
}
