//! `kernlab bench boot`: how fast kernlab gets a usable guest. For each
//! kernel and boot profile (pc + bzImage, pc + vmlinux, microvm + vmlinux
//! for x86 kernels; `virt` and the kernel's own image for the others, such
//! as arm64 under TCG) it runs a boot-only lab several times through the real run path and
//! reports medians: the boot floor (QEMU start → the guest's /init
//! running), QEMU start → SSH banner, QEMU start → first SSH command done,
//! their ratio to the floor, and `kernlab run` → QEMU start (the warm-cache
//! overhead); these cold boots run with `vm.snapshot: off`. Then the same
//! lab with snapshots: QEMU start → first command of a guest restored from
//! the snapshot (warm), and its ratio to the floor. The first run of each
//! series warms the cache (for the warm series: saves the snapshot) and is
//! not counted. With `boots`, it also boots each pair that many times
//! and counts the hangs: boots that needed their one retry, and runs that
//! failed even so. Each series runs once per guest image asked for
//! ([`BenchImage`]): `minimal` (the default) and `debian` (a systemd boot
//! of about a minute under TCG, so only when asked; pc profiles only).

use std::path::PathBuf;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::arch::Arch;
use crate::run::{self, RunOptions};
use crate::stats::median;
use crate::util::tool::Tool;

/// A machine profile and kernel image, as a lab asks for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    PcBzimage,
    PcVmlinux,
    MicrovmVmlinux,
    /// The machine of an architecture without PC machines (`virt`), the
    /// kernel's own boot image (arm64's `Image`).
    Virt,
}

impl Profile {
    pub const ALL: [Profile; 4] = [Profile::PcBzimage, Profile::PcVmlinux, Profile::MicrovmVmlinux, Profile::Virt];

    pub fn name(self) -> &'static str {
        match self {
            Profile::PcBzimage => "pc-bzimage",
            Profile::PcVmlinux => "pc-vmlinux",
            Profile::MicrovmVmlinux => "microvm-vmlinux",
            Profile::Virt => "virt",
        }
    }

    /// Whether a kernel of `arch` boots on it: the PC profiles for an
    /// architecture with PC machines, `virt` for the others.
    pub fn fits(self, arch: Arch) -> bool {
        (self == Profile::Virt) != arch.has_pc()
    }

    pub fn parse(s: &str) -> Result<Profile, String> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown profile `{s}`: expected one of pc-bzimage, pc-vmlinux, microvm-vmlinux, virt"))
    }

    /// The lab's `vm:` lines for it.
    fn vm_yaml(self) -> &'static str {
        match self {
            Profile::PcBzimage => "  machine: pc\n  kernel_format: bzimage\n",
            Profile::PcVmlinux => "  machine: pc\n  kernel_format: vmlinux\n",
            Profile::MicrovmVmlinux => "  machine: microvm\n  kernel_format: vmlinux\n",
            // `auto` is virt there, with the image the kernel ships.
            Profile::Virt => "",
        }
    }
}

/// The guest image a benchmark boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchImage {
    /// kernlab's initramfs: busybox and dropbear.
    Minimal,
    /// `image: debian`: systemd, sshd and kdump-tools on a disk (an overlay
    /// of the cached base), booted through the distro's initramfs.
    Debian,
}

impl BenchImage {
    pub const ALL: [BenchImage; 2] = [BenchImage::Minimal, BenchImage::Debian];

    pub fn name(self) -> &'static str {
        match self {
            BenchImage::Minimal => "minimal",
            BenchImage::Debian => "debian",
        }
    }

    pub fn parse(s: &str) -> Result<BenchImage, String> {
        BenchImage::ALL.into_iter().find(|i| i.name() == s).ok_or_else(|| format!("unknown image `{s}`: expected minimal or debian"))
    }

    /// Whether the image boots on the profile: a disk boots on pc only
    /// (`image: debian` is built for the host's architecture).
    pub fn boots_on(self, profile: Profile) -> bool {
        self == BenchImage::Minimal || matches!(profile, Profile::PcBzimage | Profile::PcVmlinux)
    }

    /// The lab's `image:` and `vm.boot_timeout` lines (a Debian boot under
    /// TCG takes about a minute; the default 60 s per attempt is too short).
    fn yaml(self) -> (&'static str, &'static str) {
        match self {
            BenchImage::Minimal => ("", ""),
            BenchImage::Debian => ("image: debian\n", "  boot_timeout: 5m\n"),
        }
    }
}

/// One series of boots: an image on a profile.
pub type Pair = (BenchImage, Profile);

/// The (image, profile) pairs to measure, in order, and the pairs left out
/// because the image cannot boot on the profile.
pub fn pairs(images: &[BenchImage], profiles: &[Profile]) -> (Vec<Pair>, Vec<Pair>) {
    images.iter().flat_map(|&i| profiles.iter().map(move |&p| (i, p))).partition(|(i, p)| i.boots_on(*p))
}

#[derive(Debug, Clone, Serialize)]
pub struct BootBench {
    pub kernel: String,
    pub image: BenchImage,
    pub profile: Profile,
    pub fast_boot: bool,
    pub runs: usize,
    /// The design notes' boot floor: QEMU start → exit, the same kernel,
    /// machine and command line booting a bare busybox initramfs whose
    /// /init powers off at once.
    pub bare_floor_s: f64,
    /// QEMU start → kernlab's /init running (the image's own floor).
    pub floor_s: f64,
    pub ssh_banner_s: f64,
    pub first_command_s: f64,
    pub ratio_first_command_to_floor: f64,
    /// First command (cold) over the bare floor.
    pub ratio_first_command_to_bare_floor: f64,
    pub run_to_qemu_start_s: f64,
    /// Boots that hung or died once and were retried, over the counted runs.
    pub retries: u32,
    /// Restored from the snapshot: QEMU start → first SSH command done.
    pub warm_first_command_s: f64,
    pub ratio_warm_first_command_to_floor: f64,
    pub ratio_warm_first_command_to_bare_floor: f64,
    /// Restored: QEMU start → the VM running.
    pub warm_running_s: f64,
    /// Counted warm runs that really restored (the others fell back).
    pub warm_restored: usize,
}

/// The hang check: `boots` boots of one kernel and profile.
#[derive(Debug, Clone, Serialize)]
pub struct HangCheck {
    pub kernel: String,
    pub image: BenchImage,
    pub profile: Profile,
    pub boots: usize,
    /// Runs whose first boot hung or died (their retry then ran).
    pub retried: usize,
    /// Runs that failed even with the retry.
    pub failed: usize,
    pub first_command_median_s: f64,
    pub first_command_max_s: f64,
    /// With `warm`: the boots restored from the snapshot (the others fell
    /// back to a cold boot, or failed).
    pub warm: bool,
    pub restored: usize,
    /// The first few failures' messages.
    pub errors: Vec<String>,
}

/// The boot-only lab for a kernel, image and profile, with or without the
/// fast-boot command-line flags, booting cold or (`warm`) from the snapshot.
pub fn lab_text(kernel: &str, image: BenchImage, profile: Profile, fast_boot: bool, warm: bool) -> String {
    let snapshot = if warm { "auto" } else { "off" };
    let (image_line, timeout) = image.yaml();
    format!(
        "name: bench-boot\nkernel: {kernel}\n{image_line}vm:\n  accel: auto\n  fast_boot: {fast_boot}\n  snapshot: {snapshot}\n{timeout}{}monitor:\n  sources: [meminfo]\n",
        profile.vm_yaml()
    )
}

/// Each kernel with its architecture and the pairs that boot it, from the
/// descriptors in `kernel_dirs` and the built-in ones. A kernel no pair
/// fits is an error that says which profile would.
pub fn kernel_pairs(kernels: &[String], pairs: &[Pair], kernel_dirs: &[PathBuf]) -> Result<Vec<(String, Arch, Vec<Pair>)>, String> {
    let mut dirs = kernel_dirs.to_vec();
    dirs.extend(crate::kernel::descriptor_dirs(None));
    let reg = crate::kernel::Registry::load(&dirs).map_err(|e| crate::util::error_chain(&e))?;
    kernels
        .iter()
        .map(|k| {
            let arch = reg.get(k).map_err(|e| crate::util::error_chain(&e))?.arch();
            let fit: Vec<Pair> = pairs.iter().copied().filter(|(_, p)| p.fits(arch)).collect();
            if fit.is_empty() {
                let want: Vec<&str> = Profile::ALL.iter().filter(|p| p.fits(arch)).map(|p| p.name()).collect();
                return Err(format!("kernel `{k}` is {arch}: none of the profiles asked for boots it (use --profile {})", want.join(" or --profile ")));
            }
            Ok((k.clone(), arch, fit))
        })
        .collect()
}

/// `kernel (image, profile)` for messages and file names.
fn series(kernel: &str, image: BenchImage, profile: Profile) -> String {
    format!("{kernel} ({}, {})", image.name(), profile.name())
}

async fn one_run(lab_file: &std::path::Path, out: PathBuf, kernel_dirs: &[PathBuf]) -> Result<crate::outcome::run::RunOutcome, String> {
    let opts = RunOptions { lab_file: lab_file.to_path_buf(), out: Some(out), kernel_dirs: kernel_dirs.to_vec(), kernel: None, duration: None, attribute: None };
    // No reporters: a benchmark boot needs only its outcome (its timings),
    // not an event log or a page per boot.
    let end = run::run(opts, &crate::outcome::event::Events::new(std::time::Instant::now()), CancellationToken::new()).await;
    // A run directory per boot would fill the disk over a long hang check;
    // what is kept is the report.
    match (end.exit_code, end.outcome) {
        (0, Some(r)) => Ok(r),
        (code, _) => Err(format!("exit {code}: {}", end.error.unwrap_or_default())),
    }
}

/// Runs the boot benchmark; `work` holds the lab files and run directories.
pub async fn boot(
    kernels: &[String],
    images: &[BenchImage],
    profiles: &[Profile],
    fast_boot: bool,
    runs: usize,
    work: &std::path::Path,
    kernel_dirs: &[PathBuf],
) -> Result<Vec<BootBench>, String> {
    let mut out = Vec::new();
    let cache = crate::cache::Cache::from_env().map_err(|e| crate::util::error_chain(&e))?;
    let (pairs, _) = pairs(images, profiles);
    for (kernel, arch, pairs) in &kernel_pairs(kernels, &pairs, kernel_dirs)? {
        let bare_initrd = work.join(format!("bare-{}.cpio", arch.debian()));
        if !bare_initrd.exists() {
            let cpio = crate::image::bare_cpio(&cache, *arch).map_err(|e| format!("the bare initramfs for {arch}: {}", crate::util::error_chain(&e)))?;
            std::fs::write(&bare_initrd, cpio).map_err(|e| e.to_string())?;
        }
        for &(image, profile) in pairs {
            let name = series(kernel, image, profile);
            let stem = format!("{kernel}-{}-{}", image.name(), profile.name());
            let lab_file = work.join(format!("bench-{stem}.yaml"));
            std::fs::write(&lab_file, lab_text(kernel, image, profile, fast_boot, false)).map_err(|e| e.to_string())?;
            let (mut floor, mut banner, mut first, mut start, mut retries) = (vec![], vec![], vec![], vec![], 0);
            let mut argv = None;
            for i in 0..=runs {
                let dir = work.join(format!("{stem}-{i}"));
                let rep = one_run(&lab_file, dir.clone(), kernel_dirs).await.map_err(|e| format!("bench run {i} of {name} failed: {e}"))?;
                if i == 0 {
                    argv = manifest_argv(&dir);
                }
                let _ = std::fs::remove_dir_all(&dir);
                if i == 0 {
                    continue; // cache warm-up
                }
                let t = &rep.timings;
                floor.push(t.init.unwrap_or(f64::NAN));
                banner.push(t.boot_to_ssh);
                first.push(t.first_command);
                start.push(t.qemu_start);
                retries += t.boot_attempts.saturating_sub(1);
            }
            // The bare floor, on the argv the warm-up run booted with.
            let argv = argv.ok_or_else(|| format!("the warm-up run of {name} left no qemu_argv in its manifest"))?;
            let mut bare = vec![];
            for i in 0..runs {
                let dir = work.join(format!("bare-{stem}-{i}"));
                bare.push(bare_floor(&argv, &bare_initrd, &dir).await.map_err(|e| format!("bare floor of {name}: {e}"))?);
                let _ = std::fs::remove_dir_all(&dir);
            }
            // Warm: the first run saves the snapshot (or finds one), the
            // others restore it.
            let warm_file = work.join(format!("bench-{stem}-warm.yaml"));
            std::fs::write(&warm_file, lab_text(kernel, image, profile, fast_boot, true)).map_err(|e| e.to_string())?;
            let (mut warm, mut running, mut restored) = (vec![], vec![], 0);
            for i in 0..=runs {
                let dir = work.join(format!("{stem}-warm-{i}"));
                let rep = one_run(&warm_file, dir.clone(), kernel_dirs).await.map_err(|e| format!("warm bench run {i} of {name} failed: {e}"))?;
                let running_s = manifest_snapshot_secs(&dir);
                let _ = std::fs::remove_dir_all(&dir);
                if i == 0 {
                    continue; // saves the snapshot
                }
                if rep.snapshot.as_deref() == Some("restored") {
                    restored += 1;
                    warm.push(rep.timings.first_command);
                    running.extend(running_s);
                }
            }
            let floor_s = median(&floor);
            let bare_floor_s = median(&bare);
            let first_command_s = median(&first);
            let warm_first_command_s = median(&warm);
            out.push(BootBench {
                kernel: kernel.clone(),
                image,
                profile,
                fast_boot,
                runs,
                bare_floor_s,
                floor_s,
                ssh_banner_s: median(&banner),
                first_command_s,
                ratio_first_command_to_floor: first_command_s / floor_s,
                ratio_first_command_to_bare_floor: first_command_s / bare_floor_s,
                run_to_qemu_start_s: median(&start),
                retries,
                warm_first_command_s,
                ratio_warm_first_command_to_floor: warm_first_command_s / floor_s,
                ratio_warm_first_command_to_bare_floor: warm_first_command_s / bare_floor_s,
                warm_running_s: median(&running),
                warm_restored: restored,
            });
        }
    }
    Ok(out)
}

/// The QEMU argv a run booted with, from its manifest.
fn manifest_argv(run_dir: &std::path::Path) -> Option<Vec<String>> {
    Some(crate::outcome::read_manifest(&crate::outcome::layout::manifest_json(run_dir)).ok()?.qemu_argv)
}

/// A run's argv made into the bare floor's: the bare initramfs, no QMP, no
/// incoming state, no port forward, no disks (a disk image's run files are
/// not in the bare run's directory, and the bare /init reads none); the
/// console and everything else as they were (relative paths land in the
/// bare run's own directory).
pub fn bare_argv(argv: &[String], initrd: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-qmp" | "-incoming" | "-drive" => {
                it.next();
            }
            "-device" if it.clone().next().is_some_and(|v| v.split(',').any(|p| p.starts_with("drive="))) => {
                it.next();
            }
            "-initrd" => {
                it.next();
                out.push(a.clone());
                out.push(initrd.display().to_string());
            }
            "-netdev" => {
                out.push(a.clone());
                if let Some(v) = it.next() {
                    out.push(v.split(',').filter(|p| !p.starts_with("hostfwd=")).collect::<Vec<_>>().join(","));
                }
            }
            _ => out.push(a.clone()),
        }
    }
    out
}

/// QEMU start → exit of one bare boot, in `dir` (made here); 30 s at most,
/// then QEMU is killed and it is an error.
async fn bare_floor(argv: &[String], initrd: &std::path::Path, dir: &std::path::Path) -> Result<f64, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let a = bare_argv(argv, initrd);
    let (program, args) = a.split_first().ok_or("an empty qemu_argv")?;
    let t = std::time::Instant::now();
    // Through the tool runner: its own process group, in the registry (a
    // second Ctrl-C kills it), killed at the deadline.
    match Tool::new(program, std::time::Duration::from_secs(30)).args(args).current_dir(dir).output_async().await {
        Ok(_) => Ok(t.elapsed().as_secs_f64()),
        Err(e) if e.is_deadline() => Err(format!("the bare guest did not power off within 30 s (console in {})", dir.display())),
        Err(e) => Err(e.to_string()),
    }
}

/// `boot.snapshot.secs` of a restored run (QEMU start → running).
fn manifest_snapshot_secs(run_dir: &std::path::Path) -> Option<f64> {
    let s = crate::outcome::read_manifest(&crate::outcome::layout::manifest_json(run_dir)).ok()?.boot?.snapshot?;
    (s.mode == crate::outcome::run::SnapshotMode::Restored).then_some(s.secs).flatten()
}

/// Boots each kernel and profile `boots` times, counting retries and failures.
/// With `warm`, every counted boot restores the snapshot a first,
/// uncounted run saves: the restore path's own hang check.
pub async fn hang_check(
    kernels: &[String],
    images: &[BenchImage],
    profiles: &[Profile],
    boots: usize,
    warm: bool,
    work: &std::path::Path,
    kernel_dirs: &[PathBuf],
) -> Result<Vec<HangCheck>, String> {
    let mut out = Vec::new();
    let (pairs, _) = pairs(images, profiles);
    for (kernel, _, pairs) in &kernel_pairs(kernels, &pairs, kernel_dirs)? {
        for &(image, profile) in pairs {
            let stem = format!("{kernel}-{}-{}", image.name(), profile.name());
            let lab_file = work.join(format!("hang-{stem}.yaml"));
            std::fs::write(&lab_file, lab_text(kernel, image, profile, true, warm)).map_err(|e| e.to_string())?;
            let mut c = HangCheck {
                kernel: kernel.clone(),
                image,
                profile,
                boots,
                retried: 0,
                failed: 0,
                first_command_median_s: 0.0,
                first_command_max_s: 0.0,
                warm,
                restored: 0,
                errors: vec![],
            };
            if warm {
                let dir = work.join(format!("hang-{stem}-save"));
                one_run(&lab_file, dir.clone(), kernel_dirs).await.map_err(|e| format!("the run saving the snapshot of {} failed: {e}", series(kernel, image, profile)))?;
                let _ = std::fs::remove_dir_all(&dir);
            }
            let mut first = Vec::new();
            for i in 0..boots {
                let dir = work.join(format!("hang-{stem}-{i}"));
                match one_run(&lab_file, dir.clone(), kernel_dirs).await {
                    Ok(rep) => {
                        if rep.timings.boot_attempts > 1 {
                            c.retried += 1;
                        }
                        if rep.snapshot.as_deref() == Some("restored") {
                            c.restored += 1;
                        }
                        first.push(rep.timings.first_command);
                        let _ = std::fs::remove_dir_all(&dir);
                    }
                    Err(e) => {
                        // The failed run's directory is kept for its console.
                        c.failed += 1;
                        if c.errors.len() < 3 {
                            c.errors.push(format!("{}: {e}", dir.display()));
                        }
                    }
                }
            }
            c.first_command_max_s = first.iter().copied().fold(0.0, f64::max);
            c.first_command_median_s = median(&first);
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kernel_gets_the_profiles_of_its_architecture() {
        let all = pairs(&[BenchImage::Minimal, BenchImage::Debian], &Profile::ALL).0;
        let arm = "debian-6.1.0-54-cloud-arm64".to_string();
        let amd = crate::kernel::DEFAULT_KERNEL.to_string();
        let got = kernel_pairs(&[amd.clone(), arm.clone()], &all, &[]).unwrap();
        assert_eq!((got[0].1, got[1].1), (Arch::X86_64, Arch::Aarch64));
        let names = |v: &[Pair]| v.iter().map(|(i, p)| format!("{}/{}", i.name(), p.name())).collect::<Vec<_>>();
        assert_eq!(names(&got[0].2), ["minimal/pc-bzimage", "minimal/pc-vmlinux", "minimal/microvm-vmlinux", "debian/pc-bzimage", "debian/pc-vmlinux"]);
        assert_eq!(names(&got[1].2), ["minimal/virt"], "no Debian disk and no PC profile for arm64");
        // Only PC profiles asked for an arm64 kernel: said, with the one that fits.
        let pc = pairs(&[BenchImage::Minimal], &[Profile::PcBzimage]).0;
        let e = kernel_pairs(std::slice::from_ref(&arm), &pc, &[]).unwrap_err();
        assert!(e.contains("kernel `debian-6.1.0-54-cloud-arm64` is aarch64") && e.contains("--profile virt"), "{e}");
        let e = kernel_pairs(&["no-such-kernel".into()], &pc, &[]).unwrap_err();
        assert!(e.contains("no-such-kernel"), "{e}");
    }

    #[tokio::test]
    async fn the_bare_floor_runs_its_program_through_the_tool_runner() {
        let d = tempfile::tempdir().unwrap();
        let initrd = d.path().join("bare.cpio");
        let secs = bare_floor(&["true".to_string()], &initrd, &d.path().join("bare")).await.unwrap();
        assert!(secs < 30.0);
        let err = bare_floor(&["/nonexistent/qemu".to_string()], &initrd, &d.path().join("bare2")).await.unwrap_err();
        assert!(err.contains("/nonexistent/qemu"), "{err}");
    }

    #[test]
    fn the_bare_argv_keeps_the_machine_and_drops_the_run() {
        let argv: Vec<String> = "qemu-system-x86_64 -machine microvm -kernel /k/vmlinux -initrd initrd.cpio -append console=ttyS0 -qmp unix:qmp.sock,server=on,wait=off -netdev user,id=n0,hostfwd=tcp:127.0.0.1:4022-:22 -device virtio-net-device,netdev=n0"
            .split(' ')
            .map(String::from)
            .collect();
        let bare = bare_argv(&argv, std::path::Path::new("/w/bare.cpio")).join(" ");
        assert_eq!(bare, "qemu-system-x86_64 -machine microvm -kernel /k/vmlinux -initrd /w/bare.cpio -append console=ttyS0 -netdev user,id=n0 -device virtio-net-device,netdev=n0");
    }

    #[test]
    fn each_profile_is_a_valid_lab() {
        let parse = |text: String| crate::lab::parse(&text, std::path::Path::new("bench.yaml")).unwrap_or_else(|e| panic!("{e}\n{text}"));
        for p in Profile::ALL {
            assert_eq!(Profile::parse(p.name()), Ok(p));
            for fast in [true, false] {
                let lab = parse(lab_text("debian-6.1.0-54-amd64", BenchImage::Minimal, p, fast, false));
                let microvm = lab.vm.machine == crate::qemu::MachineRequest::Microvm;
                assert_eq!(microvm, p == Profile::MicrovmVmlinux);
                assert_eq!(lab.vm.fast_boot, fast);
                assert_eq!(lab.vm.snapshot, crate::lab::SnapshotPolicy::Off, "cold boots are cold");
                assert_eq!(lab.image, crate::lab::Image::Minimal);
            }
            let warm = parse(lab_text("debian-6.1.0-54-amd64", BenchImage::Minimal, p, true, true));
            assert_eq!(warm.vm.snapshot, crate::lab::SnapshotPolicy::Auto);
        }
        assert!(Profile::parse("q35").unwrap_err().contains("pc-bzimage"));
    }

    #[test]
    fn debian_rows_boot_the_debian_image_on_pc_with_a_longer_deadline() {
        for i in BenchImage::ALL {
            assert_eq!(BenchImage::parse(i.name()), Ok(i));
        }
        assert!(BenchImage::parse("fedora").unwrap_err().contains("minimal or debian"));
        let (pairs, skipped) = pairs(&BenchImage::ALL, &Profile::ALL);
        assert_eq!(pairs.len(), 6);
        assert_eq!(skipped, [(BenchImage::Debian, Profile::MicrovmVmlinux), (BenchImage::Debian, Profile::Virt)]);
        for (image, p) in pairs {
            for warm in [false, true] {
                let text = lab_text("debian-6.1.0-54-cloud-amd64", image, p, true, warm);
                let lab = crate::lab::parse(&text, std::path::Path::new("bench.yaml")).unwrap_or_else(|e| panic!("{e}\n{text}"));
                assert_eq!(lab.image.kind(), image.name());
                let timeout = if image == BenchImage::Debian { 300 } else { 60 };
                assert_eq!(lab.vm.boot_timeout, std::time::Duration::from_secs(timeout));
            }
        }
    }

    #[test]
    fn the_bare_argv_drops_the_disks() {
        let argv: Vec<String> = "qemu-system-x86_64 -machine pc -kernel /k/vmlinux -initrd /c/initrd.img -append root=LABEL=kernlab-root -drive file=root.qcow2,if=none,id=root,format=qcow2 -device virtio-blk-pci,drive=root -drive file=seed.img,if=none,id=seed,format=raw,readonly=on -device virtio-blk-pci,drive=seed -device virtio-balloon-pci,id=balloon0"
            .split(' ')
            .map(String::from)
            .collect();
        let bare = bare_argv(&argv, std::path::Path::new("/w/bare.cpio")).join(" ");
        assert_eq!(bare, "qemu-system-x86_64 -machine pc -kernel /k/vmlinux -initrd /w/bare.cpio -append root=LABEL=kernlab-root -device virtio-balloon-pci,id=balloon0");
    }
}
