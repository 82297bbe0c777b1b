//! `kernlab bench boot` and `kernlab bench samples`.

use std::path::PathBuf;

use super::fail;
use crate::exit;

/// A line of the human output: stdout, or stderr under `--json` (where
/// stdout is the one JSON document).
macro_rules! say {
    ($($t:tt)*) => {
        crate::ui::human(&format!("{}\n", format_args!($($t)*)))
    };
}

pub fn bench_samples(run: &std::path::Path) -> i32 {
    use crate::analysis::leak::{self, ArmSeries};
    let lab = match crate::lab::load(&run.join("lab.yaml")) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    if lab.leak.is_none() {
        eprintln!("kernlab: `{}` is not an A/B leak run (its lab has no `leak` section)", run.display());
        return exit::USAGE;
    };
    let read = |arm: &str| ArmSeries::read(&run.join(arm).join("samples"));
    let (a, b) = (read("module"), read("baseline"));
    let full = leak::analyze(&a, &b, &crate::run::ab::policy_of(&lab), true);
    let interval = lab.monitor.interval.as_secs_f64();
    let q = &full.sequential;
    let policy = crate::run::ab::policy_of(&lab);
    // Seconds of workload a look at `n` samples after the warm-up waited for.
    let workload_s = |n: usize| (policy.warmup_samples + n).saturating_sub(1) as f64 * interval;
    if q.looks.is_empty() {
        eprintln!("kernlab: `{}`: no looks to replay (the arms have too few samples)", run.display());
        return exit::USAGE;
    }
    let mut looks = Vec::new();
    for (k, l) in q.looks.iter().enumerate() {
        let mut why = None;
        say!("{}: look {} of {} planned: {} samples per arm after the warm-up ({:.0} s of workload), α {:.2e} against LEAK, {:.2e} against NO-LEAK → {:?}", lab.name, k + 1, q.planned.len(), l.samples, workload_s(l.samples), l.alpha, l.alpha_no_leak, l.verdict);
        if l.verdict == crate::stats::Verdict::Inconclusive && k + 1 < q.looks.len() {
            // The look at its own α: why the run went on.
            if let Some((_, w)) = leak::look_at(&a, &b, &policy, k) {
                say!("    undecided: {w}");
                why = Some(w.to_string());
            }
        }
        let mut v = serde_json::to_value(l).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("workload_secs".into(), serde_json::json!(workload_s(l.samples)));
            o.insert("undecided".into(), serde_json::json!(why));
        }
        looks.push(v);
    }
    let l = &q.looks[q.decided_at.min(q.looks.len().saturating_sub(1))];
    say!(
        "{}: verdict {:?} at look {} ({} samples per arm after the warm-up, {:.0} s of workload at a {interval} s interval){}",
        lab.name,
        full.verdict,
        q.decided_at + 1,
        l.samples,
        workload_s(l.samples),
        if q.early { ", before the planned duration" } else { "" }
    );
    if crate::ui::get().json {
        let v = serde_json::json!({
            "lab": lab.name,
            "verdict": full.verdict,
            "decided_at": q.decided_at,
            "early": q.early,
            "planned": q.planned,
            "interval_secs": interval,
            "looks": looks,
        });
        crate::ui::json_line(&v.to_string());
    }
    exit::OK
}

/// The rows as one JSON line on stdout: under `--json` an object with the
/// kind of measurement, else the bare array after the table (as before).
fn rows_out(kind: &str, rows: serde_json::Value) {
    if crate::ui::get().json {
        crate::ui::json_line(&serde_json::json!({"kind": kind, "rows": rows}).to_string());
    } else {
        println!("{rows}");
    }
}

/// What `kernlab bench boot` measures: which kernels, images and profiles,
/// how many runs or boots.
pub struct BootArgs {
    pub kernels: Vec<String>,
    pub runs: usize,
    pub images: Vec<String>,
    pub profiles: Vec<String>,
    pub boots: Option<usize>,
    pub fast_boot: bool,
    pub warm: bool,
}

pub fn bench_boot(args: BootArgs, dirs: &[PathBuf]) -> i32 {
    use crate::bench::{BenchImage, Profile};
    let BootArgs { mut kernels, runs, images, profiles, boots, fast_boot, warm } = args;
    if kernels.is_empty() {
        kernels = crate::kernel::BENCH_KERNELS.iter().map(|k| k.to_string()).collect();
    }
    // Debian boots take about a minute each under TCG: only when asked.
    let images: Vec<BenchImage> = if images.is_empty() {
        vec![BenchImage::Minimal]
    } else {
        match images.iter().map(|i| BenchImage::parse(i)).collect::<Result<_, _>>() {
            Ok(i) => i,
            Err(e) => {
                eprintln!("kernlab: --image: {e}");
                return exit::USAGE;
            }
        }
    };
    let profiles: Vec<Profile> = if profiles.is_empty() {
        Profile::ALL.to_vec()
    } else {
        match profiles.iter().map(|p| Profile::parse(p)).collect::<Result<_, _>>() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("kernlab: --profile: {e}");
                return exit::USAGE;
            }
        }
    };
    let (pairs, skipped) = crate::bench::pairs(&images, &profiles);
    for (i, p) in &skipped {
        eprintln!("kernlab: skipping {} on {}: a disk image boots on a pc machine only", i.name(), p.name());
    }
    if pairs.is_empty() {
        eprintln!("kernlab: nothing to measure: no --image boots on the --profile given");
        return exit::USAGE;
    }
    let work = match tempfile::tempdir() {
        Ok(w) => w,
        Err(e) => return fail(&e),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    if let Some(n) = boots {
        return match rt.block_on(crate::bench::hang_check(&kernels, &images, &profiles, n, warm, work.path(), dirs)) {
            Ok(rows) => {
                say!("hang check: {n} {} boots per kernel, image and profile, accel as chosen by `auto`", if warm { "restored" } else { "cold" });
                say!("{:<36} {:<8} {:<16} {:>6} {:>8} {:>7} {:>9} {:>14} {:>11}", "kernel", "image", "profile", "boots", "retried", "failed", "restored", "first cmd med", "max");
                for r in &rows {
                    say!(
                        "{:<36} {:<8} {:<16} {:>6} {:>8} {:>7} {:>9} {:>14.2} {:>11.2}",
                        r.kernel,
                        r.image.name(),
                        r.profile.name(),
                        r.boots,
                        r.retried,
                        r.failed,
                        if r.warm { r.restored.to_string() } else { "-".into() },
                        r.first_command_median_s,
                        r.first_command_max_s
                    );
                    for e in &r.errors {
                        say!("  {e}");
                    }
                }
                rows_out("hang-check", serde_json::to_value(&rows).unwrap_or_default());
                // Failed runs keep their directories for a look.
                if rows.iter().any(|r| r.failed > 0) {
                    let _ = work.keep();
                }
                exit::OK
            }
            Err(e) => {
                eprintln!("kernlab: {e}");
                exit::INFRA
            }
        };
    }
    match rt.block_on(crate::bench::boot(&kernels, &images, &profiles, fast_boot, runs, work.path(), dirs)) {
        Ok(rows) => {
            say!("median of {runs} runs, accel as chosen by `auto`, fast-boot flags {}; warm = restored from the snapshot", if fast_boot { "on" } else { "off" });
            say!("bare = the same kernel, machine and command line booting a bare busybox initramfs that powers off (the design notes' floor)");
            say!(
                "{:<36} {:<8} {:<16} {:>7} {:>7} {:>8} {:>8} {:>6} {:>6} {:>9} {:>7} {:>6} {:>8} {:>8}",
                "kernel", "image", "profile", "bare s", "init s", "banner s", "first s", "/bare", "/init", "run→QEMU", "retries", "warm s", "w/bare", "restored"
            );
            for r in &rows {
                say!(
                    "{:<36} {:<8} {:<16} {:>7.2} {:>7.2} {:>8.2} {:>8.2} {:>6.2} {:>6.2} {:>9.3} {:>7} {:>6.2} {:>8.2} {:>8}",
                    r.kernel,
                    r.image.name(),
                    r.profile.name(),
                    r.bare_floor_s,
                    r.floor_s,
                    r.ssh_banner_s,
                    r.first_command_s,
                    r.ratio_first_command_to_bare_floor,
                    r.ratio_first_command_to_floor,
                    r.run_to_qemu_start_s,
                    r.retries,
                    r.warm_first_command_s,
                    r.ratio_warm_first_command_to_bare_floor,
                    format!("{}/{runs}", r.warm_restored)
                );
            }
            rows_out("timings", serde_json::to_value(&rows).unwrap_or_default());
            exit::OK
        }
        Err(e) => {
            eprintln!("kernlab: {e}");
            exit::INFRA
        }
    }
}

