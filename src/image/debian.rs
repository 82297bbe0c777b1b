//! `image: debian`: a Debian 12 guest disk, the userland a customer's server
//! runs (systemd as PID 1, openssh-server, kdump-tools, makedumpfile,
//! crash), built from the machine's own apt sources.
//!
//! Two cached stages:
//! 1. the root file system as a tar, made by `mmdebstrap --mode=unshare`
//!    (no root-only mounts), keyed by the package list, the recipe and the
//!    apt sources (about a minute, once);
//! 2. per kernel, a raw ext4 disk (`mkfs.ext4 -d`, no mount) holding that
//!    tree plus the lab kernel's modules (depmod'ed, so `modprobe` and
//!    `lsmod` behave as on a real server), its initramfs made by the
//!    guest's own initramfs-tools, and the kdump initrd kdump-tools makes
//!    at kernel install, with kernlab's files from `images/debian/root/`
//!    (a few seconds). This stage runs the guest's own tools in a `chroot`,
//!    which needs root.
//!
//! A run never writes the disk: it boots a qcow2 overlay of it. Per-run SSH
//! keys come from a seed disk (see `seed`), not from the image.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cache::{self, Cache, Lock};
use crate::kernel::Kernel;
use crate::util::fsx;
use crate::util::tool::{self, Tool};

/// Bumped whenever the recipe changes in a way its inputs do not show.
const FORMAT: &str = "kernlab-debian-1";
const SUITE: &str = "bookworm";
const PACKAGES: &str = include_str!("../../images/debian/packages");
const ESSENTIAL_HOOK: &str = include_str!("../../images/debian/essential-hook.sh");
const ENABLE: &str = include_str!("../../images/debian/enable");

/// kernlab's files in the guest (`images/debian/root/`): path, mode, text.
const FILES: &[(&str, u32, &str)] = &[
    ("etc/fstab", 0o644, include_str!("../../images/debian/root/etc/fstab")),
    ("etc/hostname", 0o644, include_str!("../../images/debian/root/etc/hostname")),
    ("etc/modprobe.d/kernlab.conf", 0o644, include_str!("../../images/debian/root/etc/modprobe.d/kernlab.conf")),
    ("etc/ssh/sshd_config.d/kernlab.conf", 0o644, include_str!("../../images/debian/root/etc/ssh/sshd_config.d/kernlab.conf")),
    ("etc/systemd/network/10-kernlab.network", 0o644, include_str!("../../images/debian/root/etc/systemd/network/10-kernlab.network")),
    (
        "etc/systemd/system/kdump-tools-dump.service.d/kernlab.conf",
        0o644,
        include_str!("../../images/debian/root/etc/systemd/system/kdump-tools-dump.service.d/kernlab.conf"),
    ),
    ("etc/systemd/system/kernlab-marker-init.service", 0o644, include_str!("../../images/debian/root/etc/systemd/system/kernlab-marker-init.service")),
    ("etc/systemd/system/kernlab-marker-sshd.service", 0o644, include_str!("../../images/debian/root/etc/systemd/system/kernlab-marker-sshd.service")),
    ("etc/systemd/system/kernlab-ssh-keygen.service", 0o644, include_str!("../../images/debian/root/etc/systemd/system/kernlab-ssh-keygen.service")),
    ("etc/systemd/system/kernlab-seed.service", 0o644, include_str!("../../images/debian/root/etc/systemd/system/kernlab-seed.service")),
    ("usr/local/sbin/kernlab-seed", 0o755, include_str!("../../images/debian/root/usr/local/sbin/kernlab-seed")),
];

/// The ext4 label of the root disk (`root=LABEL=…`, the guest's fstab).
pub const ROOT_LABEL: &str = "kernlab-root";

/// Free room on the root disk beyond the tree: the lab's payload, logs,
/// packages a user installs in a run. The file is sparse, and the run's
/// overlay holds what is written.
const HEADROOM: u64 = 2 << 30;

/// mmdebstrap downloads and installs a few hundred packages.
const BOOTSTRAP_DEADLINE: Duration = Duration::from_secs(30 * 60);
const STEP_DEADLINE: Duration = Duration::from_secs(10 * 60);

/// What the lab asks of the Debian image beyond the base recipe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipe {
    /// Extra packages (the product's dependencies, debugging tools).
    pub packages: Vec<String>,
}

impl Recipe {
    /// The full package list: the base recipe's and the lab's, sorted.
    pub fn packages(&self) -> Vec<String> {
        let mut all: Vec<String> = PACKAGES
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
            .filter(|l| !l.is_empty())
            .chain(self.packages.iter().cloned())
            .collect();
        all.sort();
        all.dedup();
        all
    }
}

/// A Debian disk built (or found) in the cache for one kernel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DebianImage {
    /// The disk's key (recipe, sources, kernel, kernlab's files).
    pub key: String,
    /// The root file system tar's key (recipe and sources).
    pub rootfs_key: String,
    /// The raw ext4 root disk; never written (runs boot an overlay).
    pub disk: PathBuf,
    /// The initramfs the first kernel boots (the guest's initramfs-tools).
    pub initrd: PathBuf,
    pub release: String,
    pub packages: Vec<String>,
    /// What the disk takes on the host (it is sparse).
    pub bytes: u64,
    /// Stages built now rather than found, with their seconds.
    #[serde(default)]
    pub built: Vec<(String, f64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum DebianError {
    #[error("image: debian: no apt sources on this machine (looked at {})", looked.join(", "))]
    NoSources { looked: Vec<String> },
    #[error("image: debian: mmdebstrap could not build the root file system from the packages [{packages}]; nothing was cached. Its last words:\n{tail}")]
    Bootstrap { packages: String, tail: String },
    #[error("image: debian: {step} failed while making the disk for kernel {release}")]
    Step {
        step: String,
        release: String,
        #[source]
        source: tool::ToolError,
    },
    #[error("image: debian: the disk is made by running the guest's own tools (depmod, mkinitramfs, kdump-tools) in a chroot, which needs root; run kernlab as root or use `image: minimal`")]
    NotRoot,
    #[error("image: debian: cannot write `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DebianError {
    let path = path.to_path_buf();
    move |source| DebianError::Io { path, source }
}

/// The machine's apt sources, given to mmdebstrap as its mirror argument:
/// the guest gets its packages where the host does.
fn sources() -> Result<(PathBuf, String), DebianError> {
    let candidates = ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"];
    for c in candidates {
        if let Ok(text) = std::fs::read_to_string(c) {
            if text.lines().any(|l| l.trim_start().starts_with("deb ") || l.trim_start().starts_with("URIs:")) {
                return Ok((PathBuf::from(c), text));
            }
        }
    }
    Err(DebianError::NoSources { looked: candidates.iter().map(|s| s.to_string()).collect() })
}

fn hash_of(parts: &[&str]) -> String {
    let mut joined = String::new();
    for p in parts {
        joined.push_str(&format!("{}\n{p}\n", p.len()));
    }
    fsx::sha256_bytes(joined.as_bytes())
}

/// The disk for `kernel`, built (or found) in the cache.
pub fn build(cache: &Cache, kernel: &Kernel, recipe: &Recipe) -> Result<DebianImage, DebianError> {
    let (sources_path, sources_text) = sources()?;
    let packages = recipe.packages();
    let rootfs_key = hash_of(&[FORMAT, SUITE, &packages.join(" "), ESSENTIAL_HOOK, &sources_text]);
    let mut built = Vec::new();
    let tar = rootfs(cache, &rootfs_key, &packages, &sources_path, &mut built)?;

    let files: Vec<String> = FILES.iter().map(|(p, m, t)| format!("{p} {m:o}\n{t}")).collect();
    let key = hash_of(&[FORMAT, &rootfs_key, &kernel.package_sha256, &kernel.release, ENABLE, &files.join("\n")]);
    let dir = cache.debian_disk(&key);
    let meta = dir.join("image.json");
    if let Some(found) = read_meta(&meta) {
        return Ok(DebianImage { built, ..found });
    }
    let _lock = cache.lock(Lock::Image(&key)).map_err(io_err(&dir))?;
    if let Some(found) = read_meta(&meta) {
        return Ok(DebianImage { built, ..found });
    }
    if !rustix::process::geteuid().is_root() {
        return Err(DebianError::NotRoot);
    }
    let t = Instant::now();
    let scratch = cache.scratch("debian-disk-").map_err(io_err(&cache.tmp()))?;
    let tree = scratch.path().join("tree");
    let staged = scratch.path().join("disk");
    fsx::private_dir(&staged).map_err(io_err(&staged))?;
    make_tree(&tar, &tree, kernel)?;
    let initrd = staged.join("initrd.img");
    std::fs::copy(tree.join(format!("boot/initrd.img-{}", kernel.release)), &initrd).map_err(io_err(&initrd))?;
    let disk = staged.join("root.raw");
    let used = fsx::dir_bytes(&tree);
    let f = fsx::create_private(&disk).map_err(io_err(&disk))?;
    f.set_len(used + used / 4 + HEADROOM).map_err(io_err(&disk))?;
    drop(f);
    step("mkfs.ext4 -d", &kernel.release, Tool::new("mkfs.ext4", STEP_DEADLINE).args(["-F", "-q", "-L", ROOT_LABEL, "-d"]).arg(&tree).arg(&disk))?;
    // What the sparse disk really takes on the host.
    let bytes = std::fs::metadata(&disk).map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512).map_err(io_err(&disk))?;
    let image = DebianImage {
        key: key.clone(),
        rootfs_key,
        disk: dir.join("root.raw"),
        initrd: dir.join("initrd.img"),
        release: kernel.release.clone(),
        packages,
        bytes,
        built: vec![],
    };
    let json = serde_json::to_vec_pretty(&image).unwrap_or_default();
    fsx::write_atomic(&staged.join("image.json"), &json).map_err(io_err(&staged))?;
    cache::publish_dir(&staged, &dir).map_err(io_err(&dir))?;
    built.push(("disk".to_string(), t.elapsed().as_secs_f64()));
    Ok(DebianImage { built, ..image })
}

fn read_meta(path: &Path) -> Option<DebianImage> {
    let image: DebianImage = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    (image.disk.exists() && image.initrd.exists()).then_some(image)
}

fn step(what: &str, release: &str, tool: Tool) -> Result<(), DebianError> {
    tool.run().map(|_| ()).map_err(|source| DebianError::Step { step: what.to_string(), release: release.to_string(), source })
}

/// Stage 1: the root file system tar, by `key`. A failed bootstrap leaves
/// nothing in the cache (it is built in scratch space and renamed).
fn rootfs(cache: &Cache, key: &str, packages: &[String], sources: &Path, built: &mut Vec<(String, f64)>) -> Result<PathBuf, DebianError> {
    let tar = cache.debian_rootfs(key);
    if tar.exists() {
        return Ok(tar);
    }
    let _lock = cache.lock(Lock::Image(key)).map_err(io_err(&tar))?;
    if tar.exists() {
        return Ok(tar);
    }
    let t = Instant::now();
    let scratch = cache.scratch("debian-rootfs-").map_err(io_err(&cache.tmp()))?;
    let hook = scratch.path().join("essential-hook.sh");
    std::fs::write(&hook, ESSENTIAL_HOOK).map_err(io_err(&hook))?;
    let out = scratch.path().join("rootfs.tar");
    let res = Tool::new("mmdebstrap", BOOTSTRAP_DEADLINE)
        // Not --quiet: apt's own error (`E: Unable to locate package …`)
        // is what the user needs to see.
        .args(["--mode=unshare", "--variant=minbase", "--format=tar"])
        .arg(format!("--include={}", packages.join(",")))
        .arg(format!("--essential-hook=sh {} \"$1\"", tool::shell_quote(&hook)))
        .arg(SUITE)
        .arg(&out)
        .arg(sources)
        .output();
    match res {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return Err(DebianError::Bootstrap { packages: packages.join(", "), tail: apt_errors(&o.stderr) });
        }
        Err(e) => {
            return Err(DebianError::Bootstrap { packages: packages.join(", "), tail: e.to_string() });
        }
    }
    if let Some(parent) = tar.parent() {
        fsx::private_dir(parent).map_err(io_err(parent))?;
    }
    std::fs::rename(&out, &tar).map_err(io_err(&tar))?;
    built.push(("rootfs".to_string(), t.elapsed().as_secs_f64()));
    Ok(tar)
}

/// apt's own errors (`E: …`) from mmdebstrap's output when it names them,
/// else the output's tail.
fn apt_errors(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    // apt's own lines; mmdebstrap's restatement of the apt-get command
    // line it ran adds nothing.
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E: ") && !l.starts_with("E: setup failed: E: apt-get ")).collect();
    if errors.is_empty() {
        tool::tail(stderr)
    } else {
        errors.join("\n")
    }
}

/// Stage 2's tree: the root file system, the kernel, kernlab's files, and
/// what the guest's own tools make of them.
fn make_tree(tar: &Path, tree: &Path, kernel: &Kernel) -> Result<(), DebianError> {
    let r = &kernel.release;
    std::fs::create_dir_all(tree).map_err(io_err(tree))?;
    step("unpacking the root file system", r, Tool::new("tar", STEP_DEADLINE).args(["-xpf"]).arg(tar).args(["--numeric-owner", "-C"]).arg(tree))?;
    // /lib is a link to usr/lib on Debian 12 (merged /usr).
    let modules = tree.join("usr/lib/modules");
    std::fs::create_dir_all(&modules).map_err(io_err(&modules))?;
    step("copying the kernel's modules", r, Tool::new("cp", STEP_DEADLINE).arg("-a").arg(kernel.modules_dir()).arg(&modules))?;
    let boot = tree.join("boot");
    std::fs::create_dir_all(&boot).map_err(io_err(&boot))?;
    for name in ["vmlinuz", "config", "System.map"] {
        let src = kernel.root.join(format!("boot/{name}-{r}"));
        if src.exists() {
            let dst = boot.join(format!("{name}-{r}"));
            std::fs::copy(&src, &dst).map_err(io_err(&dst))?;
        }
    }
    for (path, mode, text) in FILES {
        let dst = tree.join(path);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        std::fs::write(&dst, text).map_err(io_err(&dst))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(*mode)).map_err(io_err(&dst))?;
    }
    // Host keys come fresh with each run (the seed disk), never from the image.
    if let Ok(entries) = std::fs::read_dir(tree.join("etc/ssh")) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("ssh_host_") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let chroot = |what: &str, args: &[&str]| step(what, r, Tool::new("chroot", STEP_DEADLINE).arg(tree).args(args));
    chroot("depmod", &["depmod", r])?;
    let (enable, mask) = units();
    let mut args = vec!["systemctl", "enable", "--quiet"];
    args.extend(enable.iter().map(String::as_str));
    chroot("systemctl enable", &args)?;
    let mut args = vec!["systemctl", "mask", "--quiet"];
    args.extend(mask.iter().map(String::as_str));
    chroot("systemctl mask", &args)?;
    chroot("passwd -l root", &["passwd", "-q", "-l", "root"])?;
    let initrd = format!("/boot/initrd.img-{r}");
    chroot("mkinitramfs", &["mkinitramfs", "-o", &initrd, r])?;
    // What kdump-tools' kernel hook does when a kernel package is
    // installed: its own initrd in /var/lib/kdump, and the links to it.
    chroot("kdump-config symlinks", &["kdump-config", "symlinks", r])?;
    // kdump-config rebuilds that initrd at boot (80 s under TCG) unless its
    // record of the sysctls it was built with matches.
    chroot("recording kdump's sysctls", &["cp", "/etc/kdump/sysctl.conf", &format!("/var/lib/kdump/latest_sysctls-{r}")])?;
    Ok(())
}

/// `images/debian/enable`: units to enable, and `mask UNIT` lines.
fn units() -> (Vec<String>, Vec<String>) {
    let (mut enable, mut mask) = (Vec::new(), Vec::new());
    for line in ENABLE.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        match line.strip_prefix("mask ") {
            Some(u) => mask.push(u.trim().to_string()),
            None => enable.push(line.to_string()),
        }
    }
    (enable, mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_lists_the_base_packages_and_the_labs() {
        let base = Recipe::default().packages();
        for p in ["systemd-sysv", "openssh-server", "kdump-tools", "makedumpfile", "crash", "initramfs-tools"] {
            assert!(base.contains(&p.to_string()), "{p} missing from {base:?}");
        }
        let more = Recipe { packages: vec!["strace".into(), "crash".into()] }.packages();
        assert_eq!(more.len(), base.len() + 1, "duplicates are merged");
        assert!(more.windows(2).all(|w| w[0] < w[1]), "sorted: {more:?}");
    }

    #[test]
    fn units_file_splits_enable_and_mask() {
        let (enable, mask) = units();
        assert!(enable.contains(&"kernlab-seed.service".to_string()) && enable.contains(&"systemd-networkd.service".to_string()));
        assert!(mask.contains(&"networking.service".to_string()));
        assert!(enable.iter().chain(&mask).all(|u| u.ends_with(".service") || u.ends_with(".timer")), "{enable:?} {mask:?}");
    }

    #[test]
    fn every_file_of_the_recipe_is_embedded() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/debian/root");
        let mut on_disk = Vec::new();
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    on_disk.push(e.path().strip_prefix(&dir).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        on_disk.sort();
        let mut listed: Vec<String> = FILES.iter().map(|(p, _, _)| p.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed, "images/debian/root and FILES must list the same files");
    }

    #[test]
    fn apt_errors_are_picked_out() {
        let err = b"I: running apt-get update...\nE: Unable to locate package no-such-pkg\nE: apt-get failed\nmore\n";
        assert_eq!(apt_errors(err), "E: Unable to locate package no-such-pkg\nE: apt-get failed");
        let long = b"E: Unable to locate package x\nE: setup failed: E: apt-get -o Dir::Bin::dpkg=env install x failed\nE: mmdebstrap failed to run\n";
        assert_eq!(apt_errors(long), "E: Unable to locate package x\nE: mmdebstrap failed to run");
        assert!(apt_errors(b"plain failure\n").contains("plain failure"));
    }
}
