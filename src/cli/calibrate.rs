//! `kernlab calibrate`: A/A runs of a leak lab, and its false-LEAK rate.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use super::{fail, spawn_signal_handler};
use crate::outcome::event::Events;
use crate::exit;

/// What `kernlab calibrate` was asked for, as its flags gave it.
pub struct CalibrateArgs {
    pub lab_file: PathBuf,
    pub runs: usize,
    /// `baseline`, `module` or `lab`, checked here.
    pub arms: String,
    pub duration: Option<std::time::Duration>,
    pub full_length: bool,
    pub out: Option<PathBuf>,
    pub kernel_dirs: Vec<PathBuf>,
}

pub fn calibrate(args: CalibrateArgs, events: &Events) -> i32 {
    use crate::calibrate::{self, Arms};
    let CalibrateArgs { lab_file, runs, arms, duration, full_length, out, kernel_dirs } = args;
    let (lab_file, arms) = (lab_file.as_path(), arms.as_str());
    let Some(arms) = Arms::parse(arms) else {
        eprintln!("kernlab: --arms {arms:?}: must be `baseline`, `module` or `lab`");
        return exit::USAGE;
    };
    if runs == 0 {
        eprintln!("kernlab: --runs must be at least 1");
        return exit::USAGE;
    }
    let lab = match crate::lab::load(lab_file) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    if lab.leak.is_none() {
        eprintln!("kernlab: {}: calibration needs a leak lab (one with a `leak` section)", lab_file.display());
        return exit::USAGE;
    }
    let out = out.unwrap_or_else(|| {
        let stamp = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default().replace(':', "");
        PathBuf::from("runs").join(format!("{}-calibration", lab.name)).join(stamp)
    });
    if let Err(e) = crate::util::fsx::private_dir(&out) {
        eprintln!("kernlab: cannot create {}: {e}", out.display());
        return exit::INFRA;
    }
    let mut aa = calibrate::aa_lab(&lab, lab_file, arms);
    if full_length {
        aa.leak.as_mut().expect("checked above").stop_early = false;
    }
    let aa_file = out.join("aa.yaml");
    if let Err(e) = crate::util::fsx::write_atomic(&aa_file, aa.to_yaml().as_bytes()) {
        eprintln!("kernlab: cannot write {}: {e}", aa_file.display());
        return exit::INFRA;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let cancel = CancellationToken::new();
        spawn_signal_handler(cancel.clone());
        let start = std::time::Instant::now();
        let mut results = Vec::new();
        for k in 1..=runs {
            let dir = out.join(format!("run-{k:02}"));
            let t = std::time::Instant::now();
            let end = crate::run::run(crate::run::RunOptions { lab_file: aa_file.clone(), out: Some(dir.clone()), kernel_dirs: kernel_dirs.clone(), kernel: None, duration, attribute: None }, events, cancel.clone()).await;
            let (r, an) = calibrate::run_result(&dir, &end, t.elapsed().as_secs_f64());
            crate::ui::human(&format!("calibration run {k} of {runs}: {}\n", r.verdict.map(|v| format!("{v:?}")).unwrap_or_else(|| format!("failed: {}", end.error.as_deref().unwrap_or("?")))));
            results.push((r, an));
            if end.exit_code == exit::INTERRUPTED {
                break;
            }
        }
        let c = calibrate::summarise(&lab.name, arms, results, start.elapsed().as_secs_f64());
        crate::ui::human(&calibrate::render(&c));
        let written = match calibrate::write(&out, &c) {
            Ok(p) => {
                crate::ui::human(&format!("  written: {}\n", p.display()));
                Some(p)
            }
            Err(e) => {
                eprintln!("kernlab: cannot write calibration.json: {e}");
                None
            }
        };
        if let Err(e) = crate::util::fsx::seal_tree(&out) {
            eprintln!("kernlab: cannot make {} private: {e}", out.display());
        }
        let code = if c.verdicts[3] > 0 { exit::INFRA } else if c.false_leaks > 0 { exit::EXPECTATION_FAILED } else { exit::OK };
        if crate::ui::get().json {
            // calibration.json as written, with where it is and the exit code.
            let mut v = serde_json::to_value(&c).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("file".into(), serde_json::json!(written));
                o.insert("dir".into(), serde_json::json!(out));
                o.insert("exit_code".into(), serde_json::json!(code));
            }
            crate::ui::json_line(&v.to_string());
        }
        code
    })
}

