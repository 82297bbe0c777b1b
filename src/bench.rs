//! `kernlab bench boot`: how fast kernlab gets a usable guest. For each
//! kernel it runs a boot-only lab several times through the real run path
//! and reports medians: the boot floor (QEMU start → the guest's /init
//! running), QEMU start → SSH banner, QEMU start → first SSH command done,
//! their ratio to the floor, and `kernlab run` → QEMU start (the warm-cache
//! overhead). The first run of each kernel warms the cache and is not counted.

use std::path::PathBuf;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::run::{self, RunOptions};

#[derive(Debug, Clone, Serialize)]
pub struct BootBench {
    pub kernel: String,
    pub runs: usize,
    pub floor_s: f64,
    pub ssh_banner_s: f64,
    pub first_command_s: f64,
    pub ratio_first_command_to_floor: f64,
    pub run_to_qemu_start_s: f64,
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs the boot benchmark; `work` holds the lab file and run directories.
pub async fn boot(kernels: &[String], runs: usize, work: &std::path::Path, kernel_dirs: &[PathBuf]) -> Result<Vec<BootBench>, String> {
    let mut out = Vec::new();
    for kernel in kernels {
        let lab_file = work.join(format!("bench-{kernel}.yaml"));
        let text = format!("name: bench-boot\nkernel: {kernel}\nvm:\n  accel: auto\nmonitor:\n  sources: [meminfo]\n");
        std::fs::write(&lab_file, text).map_err(|e| e.to_string())?;
        let (mut floor, mut banner, mut first, mut start) = (vec![], vec![], vec![], vec![]);
        for i in 0..=runs {
            let opts = RunOptions {
                lab_file: lab_file.clone(),
                out: Some(work.join(format!("{kernel}-{i}"))),
                kernel_dirs: kernel_dirs.to_vec(),
                quiet: true,
                summary: false,
                kernel: None,
                duration: None,
                cell: None,
            };
            let end = run::run(opts, CancellationToken::new()).await;
            let rep = match (end.exit_code, end.summary) {
                (0, Some(r)) => r,
                (code, _) => return Err(format!("bench run {i} of {kernel} failed ({code}): {}", end.error.unwrap_or_default())),
            };
            if i == 0 {
                continue; // cache warm-up
            }
            let t = &rep.timings;
            floor.push(t.init.unwrap_or(f64::NAN));
            banner.push(t.boot_to_ssh);
            first.push(t.first_command);
            start.push(t.qemu_start);
        }
        let floor_s = median(floor);
        let first_command_s = median(first);
        out.push(BootBench {
            kernel: kernel.clone(),
            runs,
            floor_s,
            ssh_banner_s: median(banner),
            first_command_s,
            ratio_first_command_to_floor: first_command_s / floor_s,
            run_to_qemu_start_s: median(start),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_odd_even_empty() {
        assert_eq!(super::median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(super::median(vec![]).is_nan());
    }
}
