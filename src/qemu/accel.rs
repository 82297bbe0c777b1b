//! Choosing the accelerator. `auto` takes KVM only where it can run a stock
//! distro kernel. Some hosts expose a `/dev/kvm` that cannot: a PVM
//! implementation (`kvm_pvm` loaded without `kvm_intel`/`kvm_amd`) runs only
//! PVM-enabled guests, and a stock kernel dies at once with a KVM emulation
//! failure. There kernlab picks TCG and says why. The decision is a pure
//! function of the host facts, which are gathered separately.

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::lab::AccelRequest;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}



/// Host facts that decide the accelerator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HostAccel {
    /// `/dev/kvm` exists and opens read-write.
    pub kvm_usable: bool,
    /// Why it does not, when it does not.
    pub kvm_error: Option<String>,
    /// `kvm_intel` or `kvm_amd` is loaded: hardware virtualization.
    pub hardware_kvm: bool,
    /// `kvm_pvm` is loaded.
    pub pvm: bool,
    /// The host's architecture: KVM runs only guests of the same.
    /// (Absent in manifests written before the architecture seam.)
    #[serde(default = "crate::arch::Arch::host", skip_serializing_if = "Option::is_none")]
    pub arch: Option<crate::arch::Arch>,
}

impl HostAccel {
    pub fn detect() -> Self {
        let (kvm_usable, kvm_error) =
            match std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
                Ok(_) => (true, None),
                Err(e) => (false, Some(format!("/dev/kvm: {e}"))),
            };
        let loaded = |m: &str| Path::new("/sys/module").join(m).exists();
        HostAccel { kvm_usable, kvm_error, hardware_kvm: loaded("kvm_intel") || loaded("kvm_amd"), pvm: loaded("kvm_pvm"), arch: crate::arch::Arch::host() }
    }
}

/// The accelerator to use and the reason, for the log and the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AccelChoice {
    pub accel: Accel,
    pub reason: String,
}

/// The accelerator for a lab's request on this host. `kvm_failed` is what
/// an earlier run recorded when KVM stopped with an emulation failure on
/// this very kernel (see [`kvm_failed_marker`]): `auto` then goes straight
/// to TCG instead of failing under KVM again first, and its snapshots are
/// the TCG ones that fallback saved.
pub fn choose_for_kernel(requested: AccelRequest, host: &HostAccel, kvm_failed: Option<&str>, guest: crate::arch::Arch) -> AccelChoice {
    match (requested, kvm_failed) {
        (AccelRequest::Auto, _) if !guest.kvm_possible_on(host.arch) => choose(requested, host, guest),
        (AccelRequest::Auto, Some(when)) if host.kvm_usable => AccelChoice {
            accel: Accel::Tcg,
            reason: format!("KVM stopped with an emulation failure on this kernel before ({}); using TCG", when.trim()),
        },
        _ => choose(requested, host, guest),
    }
}

/// Where a run records that KVM failed on a kernel, by its bzImage's sha256:
/// `accel/kvm-failed-<sha256>` in the cache, holding when. Removing it makes
/// `auto` try KVM on that kernel again.
pub fn kvm_failed_marker(cache: &crate::cache::Cache, vmlinuz_sha256: &str) -> std::path::PathBuf {
    cache.kvm_failed_marker(vmlinuz_sha256)
}

pub fn choose(requested: AccelRequest, host: &HostAccel, guest: crate::arch::Arch) -> AccelChoice {
    let pick = |accel, reason: &str| AccelChoice { accel, reason: reason.to_string() };
    match requested {
        AccelRequest::Tcg => pick(Accel::Tcg, "the lab asks for tcg"),
        AccelRequest::Kvm => pick(Accel::Kvm, "the lab asks for kvm"),
        AccelRequest::Auto if !guest.kvm_possible_on(host.arch) => AccelChoice {
            accel: Accel::Tcg,
            reason: format!(
                "KVM runs only guests of the host's own architecture (host {}, guest {guest}); using TCG",
                host.arch.map_or("unknown".to_string(), |a| a.to_string())
            ),
        },
        AccelRequest::Auto if !host.kvm_usable => AccelChoice {
            accel: Accel::Tcg,
            reason: format!(
                "KVM is not usable ({}); using TCG",
                host.kvm_error.as_deref().unwrap_or("no /dev/kvm")
            ),
        },
        AccelRequest::Auto if host.pvm && !host.hardware_kvm => pick(
            Accel::Tcg,
            "/dev/kvm is provided by kvm_pvm, which cannot run a stock distro kernel (KVM emulation failure); using TCG",
        ),
        AccelRequest::Auto => pick(Accel::Kvm, "/dev/kvm is usable hardware KVM"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch::{Aarch64, X86_64};

    fn host(kvm_usable: bool, hardware_kvm: bool, pvm: bool) -> HostAccel {
        HostAccel {
            kvm_usable,
            kvm_error: (!kvm_usable).then(|| "/dev/kvm: No such file or directory".into()),
            hardware_kvm,
            pvm,
            arch: Some(crate::arch::Arch::X86_64),
        }
    }

    #[test]
    fn table() {
        let cases = [
            (AccelRequest::Auto, host(true, true, false), Accel::Kvm, "hardware"),
            (AccelRequest::Auto, host(true, false, true), Accel::Tcg, "kvm_pvm"),
            (AccelRequest::Auto, host(true, true, true), Accel::Kvm, "hardware"),
            (AccelRequest::Auto, host(false, false, false), Accel::Tcg, "No such file"),
            (AccelRequest::Tcg, host(true, true, false), Accel::Tcg, "asks"),
            (AccelRequest::Kvm, host(true, false, true), Accel::Kvm, "asks"),
        ];
        for (req, h, want, reason) in cases {
            let c = choose(req, &h, X86_64);
            assert_eq!(c.accel, want, "{req:?} {h:?}");
            assert!(c.reason.contains(reason), "{}", c.reason);
        }
    }

    #[test]
    fn a_kernel_kvm_failed_on_before_goes_to_tcg_under_auto_only() {
        let hw = host(true, true, false);
        let when = Some("2026-11-26T10:00:00Z\n");
        let c = choose_for_kernel(AccelRequest::Auto, &hw, when, X86_64);
        assert_eq!(c.accel, Accel::Tcg);
        assert!(c.reason.contains("before (2026-11-26T10:00:00Z)"), "{}", c.reason);
        assert_eq!(choose_for_kernel(AccelRequest::Auto, &hw, None, X86_64).accel, Accel::Kvm);
        // An explicit request is the lab's to make.
        assert_eq!(choose_for_kernel(AccelRequest::Kvm, &hw, when, X86_64).accel, Accel::Kvm);
        // No usable KVM: the usual reason, not the marker's.
        assert!(choose_for_kernel(AccelRequest::Auto, &host(false, false, false), when, X86_64).reason.contains("not usable"));
    }

    #[test]
    fn kvm_only_for_a_guest_of_the_hosts_architecture() {
        let hw = host(true, true, false);
        let c = choose_for_kernel(AccelRequest::Auto, &hw, None, Aarch64);
        assert_eq!(c.accel, Accel::Tcg);
        assert!(c.reason.contains("host x86_64, guest aarch64"), "{}", c.reason);
        assert_eq!(choose(AccelRequest::Auto, &HostAccel { arch: None, ..hw.clone() }, X86_64).accel, Accel::Tcg);
        assert_eq!(choose(AccelRequest::Auto, &hw, X86_64).accel, Accel::Kvm);
    }
}
