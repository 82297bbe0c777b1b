//! The guest sampler (`monitor.sampler: stream`) on the real thing: one
//! process in a real Debian guest under QEMU answers every sample over the
//! VM's virtio-serial port (never silently over SSH on the shipped image),
//! a quiet guest's dentry count does not move under it, and neither does
//! skbuff_head_cache (no SSH traffic per sample); a sampler killed in the
//! guest mid-run costs no sample (the exec command takes over, then the
//! sampler is restarted, on the port again); a guest without the port
//! (virtio_console unloaded) is sampled over the SSH channel, said in the
//! events and the manifest. One guest at a time.

mod common;
use common::*;
use std::path::Path;
use std::sync::Mutex;

static ONE_VM_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs a single-arm lab whose workload is `commands` for 12 s, sampled
/// every second with `reclaim: false`, after the `setup` commands, and
/// returns its run directory.
fn run_lab(d: &Path, name: &str, setup: &[&str], commands: &[&str]) -> std::path::PathBuf {
    let list = |l: &[&str], indent: &str| l.iter().map(|c| format!("{indent}- {c:?}\n")).collect::<String>();
    let setup = if setup.is_empty() { String::new() } else { format!("setup:\n{}", list(setup, "  ")) };
    let cmds = list(commands, "    ");
    let f = lab(d, name, &format!("name: {name}\n{setup}workload:\n  commands:\n{cmds}  duration: 12s\nmonitor:\n  interval: 1s\n  reclaim: false\n  sampler: stream\n"));
    let dir = d.join(format!("{name}-run"));
    let out = run(&["run", f.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    // The workload outlives the duration and is ended by kernlab.
    assert_eq!(out.status.code(), Some(0), "stdout:\n{}\nstderr:\n{}", text(&out.stdout), text(&out.stderr));
    dir
}

fn manifest(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap()
}

fn named<'a>(ev: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
    ev.iter().filter(|e| e["event"] == name).collect()
}

/// The `active_objs` of `cache` in every sample, in order.
fn active(run: &Path, cache: &str) -> Vec<u64> {
    let text = std::fs::read_to_string(run.join("samples/slabinfo.csv")).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[2] == cache).then(|| f[3].parse().unwrap())
        })
        .collect()
}

/// Every sample arrives about an interval after the previous one.
fn assert_every_interval(ev: &[serde_json::Value]) {
    let t: Vec<f64> = named(ev, "sample").iter().map(|e| e["sample_t"].as_f64().unwrap()).collect();
    assert!(t.len() >= 12, "{} samples in 12 s at 1 s: {t:?}", t.len());
    let mut steps: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
    steps.sort_by(f64::total_cmp);
    assert!((0.9..1.1).contains(&steps[steps.len() / 2]), "median step: {steps:?}");
    assert!(*steps.last().unwrap() < 3.0, "a sample came late: {steps:?}");
}

#[test]
fn one_guest_process_samples_every_interval_and_a_quiet_guest_stays_constant() {
    let _one = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let dir = run_lab(d.path(), "quiet", &[], &["sleep 30"]);
    let ev = events(&dir);
    let started = named(&ev, "sampler-started");
    assert_eq!(started.len(), 1, "started once: {started:?}");
    assert!(started[0]["shrink"].as_u64().unwrap() > 50, "it holds the caches' shrink files: {:?}", started[0]);
    // The shipped image has the port: records never silently come over SSH.
    assert_eq!(started[0]["transport"], "port", "{:?}", started[0]);
    assert_eq!(manifest(&dir)["sampler_transport"], "port");
    assert!(named(&ev, "sampler-fallback").is_empty() && named(&ev, "sample-failed").is_empty(), "{ev:?}");
    assert_every_interval(&ev);
    // With no reclaim and nothing running, the sampler's own footprint is
    // nil in the dentry cache: the same count in every sample after the
    // first (taken as the workload starts), and at most a few objects of
    // movement in filp, where a sample by command moved by tens.
    let dentry = active(&dir, "dentry");
    assert!(dentry[1..].windows(2).all(|w| w[0] == w[1]), "dentry moves: {dentry:?}");
    let filp = active(&dir, "filp");
    let (lo, hi) = (filp[1..].iter().min().unwrap(), filp[1..].iter().max().unwrap());
    assert!(hi - lo <= 8, "filp moves: {filp:?}");
    // No SSH segment per sample: over the SSH channel the socket buffers
    // in flight at a read moved by a few in most samples (SD 1-5); over
    // the port the count settles within the first samples (the run's own
    // sessions starting the workload) and then stays.
    let skb = active(&dir, "skbuff_head_cache");
    eprintln!("skbuff_head_cache over the port: {skb:?}");
    let moves = skb[1..].windows(2).filter(|w| w[0] != w[1]).count();
    assert!(moves <= 3, "skbuff_head_cache moves in {moves} samples: {skb:?}");
}

#[test]
fn a_guest_sampler_killed_mid_run_costs_no_sample() {
    let _one = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let dir = run_lab(d.path(), "killed", &[], &["sleep 4", "kill -9 $(cat /run/kernlab-sampler.pid)", "sleep 30"]);
    let ev = events(&dir);
    let fallback = named(&ev, "sampler-fallback");
    assert!(!fallback.is_empty(), "the broken stream is said: {ev:?}");
    let restarts: Vec<_> = named(&ev, "sampler-started").into_iter().filter(|e| e["restart"] == true).collect();
    assert!(!restarts.is_empty(), "the sampler is restarted: {ev:?}");
    // Its death is not the port's fault: the restart is on the port again.
    assert!(named(&ev, "sampler-started").iter().all(|e| e["transport"] == "port"), "{ev:?}");
    assert_eq!(manifest(&dir)["sampler_transport"], "port");
    assert!(named(&ev, "sample-failed").is_empty(), "no gap: {ev:?}");
    assert_every_interval(&ev);
    let report = std::fs::read_to_string(dir.join("report.json")).unwrap_or_default();
    assert!(!report.contains("\"gaps\": 1"), "{report}");
}

#[test]
fn a_guest_without_the_port_is_sampled_over_the_ssh_channel_and_says_so() {
    let _one = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    // As a user's disk whose kernel lacks virtio_console: the driver gone
    // before the sampler starts (setup runs first).
    let dir = run_lab(d.path(), "noport", &["rmmod virtio_console"], &["sleep 30"]);
    let ev = events(&dir);
    let started = named(&ev, "sampler-started");
    assert_eq!(started.len(), 1, "started once: {started:?}");
    assert_eq!(started[0]["transport"], "ssh", "{:?}", started[0]);
    assert_eq!(started[0]["port"], "no-virtio-ports", "why not the port: {:?}", started[0]);
    assert_eq!(manifest(&dir)["sampler_transport"], "ssh");
    eprintln!("skbuff_head_cache over SSH: {:?}", active(&dir, "skbuff_head_cache"));
    assert!(named(&ev, "sampler-fallback").is_empty() && named(&ev, "sample-failed").is_empty(), "{ev:?}");
    assert_every_interval(&ev);
}

#[test]
fn a_port_that_stops_answering_is_given_up_for_the_ssh_channel_without_a_gap() {
    let _one = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    // A sampler that is there but does not answer (stopped): the request
    // on the port times out; the sample is taken by command, and the
    // sampler restarted on its SSH channel for the rest of the arm.
    let dir = run_lab(d.path(), "stalled", &[], &["sleep 4", "kill -STOP $(cat /run/kernlab-sampler.pid)", "sleep 30"]);
    let ev = events(&dir);
    let fallback = named(&ev, "sampler-fallback");
    assert_eq!(fallback.len(), 1, "{fallback:?}");
    assert!(fallback[0]["reason"].as_str().unwrap().contains("over SSH from now on"), "{fallback:?}");
    let started: Vec<_> = named(&ev, "sampler-started").iter().map(|e| e["transport"].as_str().unwrap().to_string()).collect();
    assert_eq!(started, ["port", "ssh"], "{ev:?}");
    assert!(named(&ev, "sampler-started")[1]["port"].as_str().unwrap().contains("the port broke"), "{ev:?}");
    assert_eq!(manifest(&dir)["sampler_transport"], "port+ssh");
    assert!(named(&ev, "sample-failed").is_empty(), "no gap: {ev:?}");
    // Every interval but the one the stalled request held (its timeout,
    // 5 s, then the sample by command).
    let t: Vec<f64> = named(&ev, "sample").iter().map(|e| e["sample_t"].as_f64().unwrap()).collect();
    let late = t.windows(2).filter(|w| w[1] - w[0] > 1.5).count();
    assert!(t.len() >= 8 && late == 1 && t.windows(2).all(|w| w[1] - w[0] < 8.0), "{t:?}");
}
