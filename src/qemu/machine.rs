//! Choosing the machine profile. `pc` is QEMU's PC: PCI, firmware, every
//! device kernlab attaches; it boots a bzImage or a PVH vmlinux. `microvm`
//! is the lean machine (no PCI, no legacy firmware work, virtio-mmio
//! devices described to the kernel by ACPI) that saves another 0.3–0.5 s of
//! every boot under TCG, but only boots the PVH vmlinux, needs the
//! `virtio_mmio` driver, and has no pvpanic or vmcoreinfo for the dump
//! paths. Under TCG it also needs `tsc_early_khz=` set to the host's TSC
//! rate, or about one boot in twenty hangs in `calibrate_delay`. The choice
//! is a pure function of those facts, so every rule is a table test; the
//! facts are gathered separately.

use serde::{Deserialize, Serialize};

use super::accel::Accel;

pub use crate::lab::MachineRequest;

/// The QEMU machine a VM runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Machine {
    Pc,
    Microvm,
    /// QEMU's generic virtual board: the machine of guests whose
    /// architecture has no PC ([`crate::arch::Arch::has_pc`]). PCI
    /// devices, firmware tables, the PL011 console.
    Virt,
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Machine::Pc => "pc",
            Machine::Microvm => "microvm",
            Machine::Virt => "virt",
        })
    }
}


/// How a kernel's driver is available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    BuiltIn,
    Module,
    Absent,
}

/// What the kernel allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelFacts {
    /// An extracted PVH vmlinux is there to boot; when not, why not.
    pub vmlinux: Result<(), String>,
    /// `CONFIG_VIRTIO_MMIO`.
    pub virtio_mmio: Driver,
}

/// What the lab needs of the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabNeeds {
    pub requested: MachineRequest,
    /// The lab turns panics into dumps (`exhaustion.action` other than
    /// `none`): pvpanic reports the panic to QMP, vmcoreinfo makes a host
    /// dump readable. kernlab attaches both on `pc` only.
    pub panic_devices: bool,
    pub accel: Accel,
    /// The guest boots from a disk (`image: debian`, a user's disk), which
    /// kernlab runs on `pc`: its firmware boots a disk's own bootloader, and
    /// a distro initramfs finds its disks on PCI.
    pub disk_boot: bool,
    /// The guest's architecture: which machines it has.
    pub arch: crate::arch::Arch,
}

/// The machine and why, for the log and the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MachineChoice {
    pub machine: Machine,
    pub reason: String,
}

/// Why a lab's explicit machine cannot be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("vm.machine: microvm is not possible here: {0}")]
pub struct MachineError(pub String);

/// The machine profile. `tsc_khz` is the host TSC rate when known (needed
/// for a hang-free microvm under TCG).
pub fn choose(kernel: &KernelFacts, lab: &LabNeeds, tsc_khz: Option<u64>) -> Result<MachineChoice, MachineError> {
    if !lab.arch.has_pc() {
        let why = format!("{} guests run on QEMU's virt machine", lab.arch.name());
        return match lab.requested {
            MachineRequest::Auto => Ok(MachineChoice { machine: Machine::Virt, reason: why }),
            MachineRequest::Pc | MachineRequest::Microvm => Err(MachineError(format!("vm.machine: {:?} is a PC machine; {why}", lab.requested).to_lowercase())),
        };
    }
    let pick = |machine, reason: String| Ok(MachineChoice { machine, reason });
    // Everything that rules microvm out, first one wins.
    let blocker = if lab.disk_boot {
        Some("the guest boots from a disk (image: debian or a user's disk), which kernlab runs on pc".to_string())
    } else if lab.panic_devices {
        Some("the lab's exhaustion section needs pvpanic and vmcoreinfo, which kernlab attaches on pc only".to_string())
    } else if let Err(why) = &kernel.vmlinux {
        Some(format!("microvm boots only the uncompressed PVH vmlinux, and there is none: {why}"))
    } else if kernel.virtio_mmio == Driver::Absent {
        Some("the kernel has no virtio_mmio driver (CONFIG_VIRTIO_MMIO)".to_string())
    } else if lab.accel == Accel::Tcg && tsc_khz.is_none() {
        Some("the host's TSC rate is unknown, and microvm under TCG hangs in calibrate_delay about once in 20 boots without tsc_early_khz".to_string())
    } else {
        None
    };
    match (lab.requested, blocker) {
        (MachineRequest::Pc, _) => pick(Machine::Pc, "the lab asks for pc".into()),
        (MachineRequest::Microvm, Some(why)) => Err(MachineError(why)),
        (MachineRequest::Microvm, None) => pick(Machine::Microvm, "the lab asks for microvm".into()),
        (MachineRequest::Auto, Some(why)) => pick(Machine::Pc, format!("pc, because {why}")),
        (MachineRequest::Auto, None) => pick(
            Machine::Microvm,
            "microvm: the kernel boots as a PVH vmlinux and has virtio_mmio, and the lab needs no device microvm lacks".into(),
        ),
    }
}

/// The host's TSC rate and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HostTsc {
    pub khz: u64,
    pub source: String,
}

impl HostTsc {
    /// The host's TSC rate, once per process: the kernel's own figure from
    /// its log (the refined calibration, else the detected rate), else CPUID
    /// leaf 0x15, else measured against CLOCK_MONOTONIC_RAW. Under TCG the
    /// guest's TSC is the host's, so this is what the guest should assume.
    pub fn detect() -> Option<HostTsc> {
        static ONCE: std::sync::OnceLock<Option<HostTsc>> = std::sync::OnceLock::new();
        ONCE.get_or_init(|| {
            let log = crate::util::tool::Tool::new("dmesg", std::time::Duration::from_secs(10))
                .run()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            from_kernel_log(&log).or_else(from_cpuid).or_else(measure)
        })
        .clone()
    }
}

/// The TSC rate from the host kernel's log. Pure.
pub fn from_kernel_log(log: &str) -> Option<HostTsc> {
    let mhz = |marker: &str| {
        log.lines().rev().find_map(|l| {
            let rest = &l[l.find(marker)? + marker.len()..];
            let v: f64 = rest.split_whitespace().next()?.parse().ok()?;
            (v > 100.0 && v < 100_000.0).then_some(v)
        })
    };
    if let Some(v) = mhz("tsc: Refined TSC clocksource calibration:") {
        return Some(HostTsc { khz: (v * 1000.0).round() as u64, source: "host kernel log: refined TSC calibration".into() });
    }
    if let Some(v) = mhz("tsc: Detected") {
        return Some(HostTsc { khz: (v * 1000.0).round() as u64, source: "host kernel log: tsc: Detected … MHz".into() });
    }
    None
}

/// The TSC rate from CPUID leaf 0x15 (crystal × ratio), when the CPU fills it in.
pub fn tsc_from_leaf_15(eax_denominator: u32, ebx_numerator: u32, ecx_crystal_hz: u32) -> Option<u64> {
    (eax_denominator != 0 && ebx_numerator != 0 && ecx_crystal_hz != 0)
        .then(|| ecx_crystal_hz as u64 * ebx_numerator as u64 / eax_denominator as u64 / 1000)
}

fn from_cpuid() -> Option<HostTsc> {
    let (eax, ebx, ecx) = crate::arch::host::cpuid_leaf_15()?;
    let khz = tsc_from_leaf_15(eax, ebx, ecx)?;
    Some(HostTsc { khz, source: "CPUID leaf 0x15".into() })
}

fn measure() -> Option<HostTsc> {
    let khz = crate::arch::host::measure_tsc_khz()?;
    Some(HostTsc { khz, source: "measured against CLOCK_MONOTONIC_RAW over 50 ms".into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(vmlinux: bool, mmio: Driver) -> KernelFacts {
        KernelFacts { vmlinux: if vmlinux { Ok(()) } else { Err("CONFIG_PVH is not set".into()) }, virtio_mmio: mmio }
    }
    fn lab(requested: MachineRequest, panic_devices: bool) -> LabNeeds {
        LabNeeds { requested, panic_devices, accel: Accel::Tcg, disk_boot: false, arch: crate::arch::Arch::X86_64 }
    }

    #[test]
    fn table() {
        use Driver::*;
        use Machine::*;
        use MachineRequest::Auto;
        let tsc = Some(2_300_000);
        // kernel, lab, host TSC, the machine (or the error's words), the reason's words
        type Case = (KernelFacts, LabNeeds, Option<u64>, Result<Machine, &'static str>, &'static str);
        let cases: Vec<Case> = vec![
            (kernel(true, Module), lab(Auto, false), tsc, Ok(Microvm), "PVH vmlinux"),
            (kernel(true, BuiltIn), lab(Auto, false), tsc, Ok(Microvm), "virtio_mmio"),
            (kernel(true, Module), lab(Auto, true), tsc, Ok(Pc), "pvpanic and vmcoreinfo"),
            (kernel(false, Module), lab(Auto, false), tsc, Ok(Pc), "CONFIG_PVH is not set"),
            (kernel(true, Absent), lab(Auto, false), tsc, Ok(Pc), "CONFIG_VIRTIO_MMIO"),
            (kernel(true, Module), lab(Auto, false), None, Ok(Pc), "TSC rate is unknown"),
            (kernel(true, Module), lab(MachineRequest::Pc, false), tsc, Ok(Pc), "asks for pc"),
            (kernel(false, Absent), lab(MachineRequest::Pc, true), None, Ok(Pc), "asks for pc"),
            (kernel(true, Module), lab(MachineRequest::Microvm, false), tsc, Ok(Microvm), "asks for microvm"),
            (kernel(false, Module), lab(MachineRequest::Microvm, false), tsc, Err("CONFIG_PVH"), ""),
            (kernel(true, Module), lab(MachineRequest::Microvm, true), tsc, Err("pvpanic"), ""),
        ];
        for (i, (k, l, t, want, reason)) in cases.into_iter().enumerate() {
            match (choose(&k, &l, t), want) {
                (Ok(c), Ok(m)) => {
                    assert_eq!(c.machine, m, "case {i}: {}", c.reason);
                    assert!(c.reason.contains(reason), "case {i}: {}", c.reason);
                }
                (Err(e), Err(w)) => assert!(e.to_string().contains(w) && e.to_string().starts_with("vm.machine: "), "case {i}: {e}"),
                (got, want) => panic!("case {i}: got {got:?}, want {want:?}"),
            }
        }
        // Under KVM the guest's TSC is not TCG's; an unknown host rate does not matter.
        let kvm = LabNeeds { accel: Accel::Kvm, ..lab(Auto, false) };
        assert_eq!(choose(&kernel(true, Module), &kvm, None).unwrap().machine, Microvm);
    }

    #[test]
    fn tsc_from_the_kernel_log() {
        let log = "[    0.000055] tsc: Detected 2300.000 MHz processor\n[    0.3] clocksource: tsc-early: mask\n";
        assert_eq!(from_kernel_log(log).unwrap().khz, 2_300_000);
        let refined = format!("{log}[    1.2] tsc: Refined TSC clocksource calibration: 2299.968 MHz\n");
        let t = from_kernel_log(&refined).unwrap();
        assert_eq!(t.khz, 2_299_968);
        assert!(t.source.contains("refined"));
        assert!(from_kernel_log("nothing here\n").is_none());
        assert!(from_kernel_log("tsc: Detected garbage MHz\n").is_none());
    }

    #[test]
    fn tsc_from_cpuid_leaf_15() {
        // A 24 MHz crystal × 188/2 = 2256 MHz.
        assert_eq!(tsc_from_leaf_15(2, 188, 24_000_000), Some(2_256_000));
        assert_eq!(tsc_from_leaf_15(0, 0, 0), None);
        assert_eq!(tsc_from_leaf_15(2, 188, 0), None);
    }

    #[test]
    fn this_host_has_a_tsc_rate() {
        let t = HostTsc::detect().expect("some source");
        assert!(t.khz > 500_000 && t.khz < 10_000_000, "{t:?}");
    }

    #[test]
    fn an_arm64_guest_runs_on_virt_and_a_pc_machine_is_refused_for_it() {
        let arm = |requested| LabNeeds { arch: crate::arch::Arch::Aarch64, ..lab(requested, true) };
        let c = choose(&kernel(false, Driver::Absent), &arm(MachineRequest::Auto), None).unwrap();
        assert_eq!(c.machine, Machine::Virt);
        assert!(c.reason.contains("arm64 guests run on QEMU's virt machine"), "{}", c.reason);
        for req in [MachineRequest::Pc, MachineRequest::Microvm] {
            let e = choose(&kernel(true, Driver::Module), &arm(req), Some(2_300_000)).unwrap_err().to_string();
            assert!(e.contains("is a pc machine") && e.contains("virt"), "{e}");
        }
    }
}
