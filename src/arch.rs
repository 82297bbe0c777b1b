//! The architecture seam: every fact that depends on the guest's (or the
//! host's) instruction set lives here, and nowhere else names one
//! (`arch::tests::no_other_file_names_an_architecture` holds the rest of
//! `src/` to that, with the list of files still to move).
//!
//! A kernel has an [`Arch`] (its descriptor's `arch:`, else what its Debian
//! package's suffix says, else x86_64); the VM, the module build, the boot
//! image check and the accelerator ask it, not a literal.

use serde::{Deserialize, Serialize};

/// An instruction set kernlab can run a guest of.
///
/// Written as `uname -m` says it (`x86_64`, `aarch64`); read from that,
/// Debian's (`amd64`, `arm64`) or kbuild's (`x86`) name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Arch {
    #[default]
    X86_64,
    Aarch64,
}

impl schemars::JsonSchema for Arch {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Arch".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = ALL.iter().map(|a| a.uname()).collect();
        schemars::json_schema!({"type": "string", "enum": names, "description": "An instruction set, as `uname -m` names it."})
    }
}

impl From<Arch> for String {
    fn from(a: Arch) -> String {
        a.uname().to_string()
    }
}

impl TryFrom<String> for Arch {
    type Error = String;
    fn try_from(s: String) -> Result<Arch, String> {
        s.parse()
    }
}

/// Every architecture, for listings and tests.
pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

impl Arch {
    /// The host's, when kernlab knows it.
    pub fn host() -> Option<Arch> {
        Arch::from_uname(std::env::consts::ARCH)
    }

    /// From `uname -m` (or Rust's `std::env::consts::ARCH`, which agrees
    /// for these two).
    pub fn from_uname(m: &str) -> Option<Arch> {
        ALL.into_iter().find(|a| a.uname() == m)
    }

    /// From a Debian architecture name (`amd64`, `arm64`).
    pub fn from_debian(d: &str) -> Option<Arch> {
        ALL.into_iter().find(|a| a.debian() == d)
    }

    /// From any of the names people use: `uname -m`, Debian's, kbuild's
    /// `ARCH=`.
    pub fn parse(s: &str) -> Option<Arch> {
        ALL.into_iter().find(|a| [a.uname(), a.debian(), a.kbuild()].contains(&s))
    }

    /// The architecture a Debian kernel package or release is built for, by
    /// its suffix (`linux-image-6.1.0-54-cloud-amd64`, `6.1.0-54-arm64`).
    pub fn of_debian_name(name: &str) -> Option<Arch> {
        ALL.into_iter().find(|a| name.ends_with(&format!("-{}", a.debian())) || name.ends_with(&format!("-{}-dbg", a.debian())))
    }

    /// `uname -m`, dkms's `$arch`, RPM's architecture.
    pub fn uname(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// Debian's architecture name: the kernel packages' suffix and
    /// `apt-get -o APT::Architecture=`.
    pub fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// kbuild's `ARCH=`.
    pub fn kbuild(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The GNU toolchain prefix that builds for it (`CROSS_COMPILE=`).
    pub fn cross_prefix(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-linux-gnu-",
            Arch::Aarch64 => "aarch64-linux-gnu-",
        }
    }

    /// Debian's multiarch tuple: the library directories
    /// (`/lib/<tuple>`, `/usr/lib/<tuple>`).
    pub fn multiarch(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-linux-gnu",
            Arch::Aarch64 => "aarch64-linux-gnu",
        }
    }

    /// The C compiler that builds static programs for it on `host`: the
    /// machine's `gcc` for its own architecture, else the cross compiler
    /// (whose static C library comes with `libc6-dev-<arch>-cross`).
    pub fn gcc(self, host: Option<Arch>) -> String {
        if host == Some(self) {
            "gcc".into()
        } else {
            format!("{}gcc", self.cross_prefix())
        }
    }

    /// The static C library the cross compiler links (`libc6-dev-<arch>-cross`).
    pub fn cross_libc_a(self) -> String {
        format!("/usr/{}/lib/libc.a", self.multiarch())
    }

    /// The Debian package of [`Arch::cross_libc_a`].
    pub fn cross_libc_package(self) -> String {
        format!("libc6-dev-{}-cross", self.debian())
    }

    /// The Debian package of that cross compiler.
    pub fn cross_gcc_package(self) -> &'static str {
        match self {
            Arch::X86_64 => "gcc-x86-64-linux-gnu",
            Arch::Aarch64 => "gcc-aarch64-linux-gnu",
        }
    }

    /// The environment a kbuild make for this architecture needs on `host`:
    /// nothing when they match, else `ARCH=` and `CROSS_COMPILE=`.
    pub fn kbuild_env(self, host: Option<Arch>) -> Vec<(&'static str, &'static str)> {
        if host == Some(self) {
            Vec::new()
        } else {
            vec![("ARCH", self.kbuild()), ("CROSS_COMPILE", self.cross_prefix())]
        }
    }

    /// The QEMU system emulator.
    pub fn qemu_binary(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Aarch64 => "qemu-system-aarch64",
        }
    }

    /// The Debian package that installs [`Arch::qemu_binary`].
    pub fn qemu_package(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86",
            Arch::Aarch64 => "qemu-system-arm",
        }
    }

    /// The CPU model under TCG. x86: everything QEMU can emulate. arm64:
    /// a Cortex-A57, which boots a Debian cloud kernel to `/init` in 2.7 s
    /// of guest time; `max` emulates pointer authentication and is about
    /// 3× slower (DESIGN.md).
    pub fn tcg_cpu(self) -> &'static str {
        match self {
            Arch::X86_64 => "max",
            Arch::Aarch64 => "cortex-a57",
        }
    }

    /// Whether it has QEMU's PC machines (`pc`, `microvm`); else its guests
    /// run on `virt`.
    pub fn has_pc(self) -> bool {
        self == Arch::X86_64
    }

    /// The CPU model under KVM: the host's own.
    pub fn kvm_cpu(self) -> &'static str {
        "host"
    }

    /// The kernel's console device on the machine kernlab gives it: the
    /// 16550 UART on x86 (`pc`, `microvm`), the PL011 on arm64 (`virt`).
    pub fn console(self) -> &'static str {
        match self {
            Arch::X86_64 => "ttyS0",
            Arch::Aarch64 => "ttyAMA0",
        }
    }

    /// The boot image Debian installs as `boot/vmlinuz-<release>`: a
    /// bzImage on x86, a gzip-compressed `Image` on arm64 (QEMU's `-kernel`
    /// takes both as they are).
    pub fn image_format(self) -> &'static str {
        match self {
            Arch::X86_64 => "bzImage",
            Arch::Aarch64 => "Image.gz",
        }
    }

    /// The ELF `e_machine` of its kernel and of a dump of its memory.
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => 62,   // EM_X86_64
            Arch::Aarch64 => 183, // EM_AARCH64
        }
    }

    /// How the rest of kernlab names it in words.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86-64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// Whether KVM can run this guest on a `host`: only the same
    /// instruction set.
    pub fn kvm_possible_on(self, host: Option<Arch>) -> bool {
        host == Some(self)
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.uname())
    }
}

impl std::str::FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Arch, String> {
        Arch::parse(s).ok_or_else(|| {
            let known: Vec<String> = ALL.iter().map(|a| format!("{} ({}, {})", a.uname(), a.debian(), a.kbuild())).collect();
            format!("unknown architecture `{s}`: known are {}", known.join(", "))
        })
    }
}

/// The static C library of the host's Debian multiarch directory, which the
/// guest's static programs (the churn, the sampler) link.
pub const HOST_LIBC_A: &str = if cfg!(target_arch = "aarch64") { "/usr/lib/aarch64-linux-gnu/libc.a" } else { "/usr/lib/x86_64-linux-gnu/libc.a" };

/// What only the host's own instruction set can read: the TSC rate that
/// `microvm` guests are told (`tsc_early_khz`). On other hosts there is none.
pub mod host {
    /// CPUID leaf 0x15 (denominator, numerator, crystal Hz), when the CPU
    /// has that leaf.
    #[cfg(target_arch = "x86_64")]
    pub fn cpuid_leaf_15() -> Option<(u32, u32, u32)> {
        use std::arch::x86_64::__cpuid;
        // CPUID exists on every x86-64 CPU; leaves above the maximum are not read.
        if __cpuid(0).eax < 0x15 {
            return None;
        }
        let r = __cpuid(0x15);
        Some((r.eax, r.ebx, r.ecx))
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub fn cpuid_leaf_15() -> Option<(u32, u32, u32)> {
        None
    }

    /// Counts TSC ticks over 50 ms of CLOCK_MONOTONIC_RAW; each end is the
    /// tightest of a few clock–TSC–clock brackets, so a preemption in between
    /// does not skew it. kHz, when plausible.
    #[cfg(target_arch = "x86_64")]
    pub fn measure_tsc_khz() -> Option<u64> {
        use std::arch::x86_64::_rdtsc;
        fn now_ns() -> u128 {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: a valid timespec pointer.
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_RAW, &mut ts) };
            ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
        }
        let sample = || {
            (0..5)
                .map(|_| {
                    let a = now_ns();
                    // SAFETY: RDTSC is unprivileged on Linux x86-64.
                    let t = unsafe { _rdtsc() };
                    let b = now_ns();
                    (b - a, (a + b) / 2, t)
                })
                .min()
                .expect("five samples")
        };
        let (_, n0, t0) = sample();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let (_, n1, t1) = sample();
        let khz = (t1.wrapping_sub(t0) as u128 * 1_000_000 / (n1 - n0).max(1)) as u64;
        (khz > 100_000).then_some(khz)
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub fn measure_tsc_khz() -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_maps_back_to_its_arch() {
        for a in ALL {
            assert_eq!(Arch::from_uname(a.uname()), Some(a));
            assert_eq!(Arch::from_debian(a.debian()), Some(a));
            for n in [a.uname(), a.debian(), a.kbuild()] {
                assert_eq!(n.parse::<Arch>(), Ok(a));
            }
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, format!("\"{}\"", a.uname()));
            assert_eq!(serde_json::from_str::<Arch>(&json).unwrap(), a);
            assert_eq!(serde_json::from_str::<Arch>(&format!("\"{}\"", a.debian())).unwrap(), a);
        }
        let e = "sparc".parse::<Arch>().unwrap_err();
        assert!(e.contains("unknown architecture `sparc`") && e.contains("aarch64 (arm64, arm64)"), "{e}");
    }

    #[test]
    fn a_debian_name_says_its_arch_by_its_suffix() {
        assert_eq!(Arch::of_debian_name("linux-image-6.1.0-54-cloud-amd64"), Some(Arch::X86_64));
        assert_eq!(Arch::of_debian_name("6.12.57+deb13-cloud-arm64"), Some(Arch::Aarch64));
        assert_eq!(Arch::of_debian_name("linux-image-6.1.0-54-cloud-arm64-dbg"), Some(Arch::Aarch64));
        assert_eq!(Arch::of_debian_name("6.4.0-150600.23.25-default"), None);
        // A suffix, not a substring.
        assert_eq!(Arch::of_debian_name("linux-image-amd64-thing"), None);
    }

    #[test]
    fn a_cross_build_says_arch_and_compiler_and_a_native_one_nothing() {
        assert!(Arch::X86_64.kbuild_env(Some(Arch::X86_64)).is_empty());
        assert_eq!(Arch::Aarch64.kbuild_env(Some(Arch::X86_64)), vec![("ARCH", "arm64"), ("CROSS_COMPILE", "aarch64-linux-gnu-")]);
        assert_eq!(Arch::X86_64.kbuild_env(None), vec![("ARCH", "x86"), ("CROSS_COMPILE", "x86_64-linux-gnu-")]);
    }

    #[test]
    fn kvm_only_for_the_hosts_own_arch() {
        assert!(Arch::X86_64.kvm_possible_on(Some(Arch::X86_64)));
        assert!(!Arch::Aarch64.kvm_possible_on(Some(Arch::X86_64)));
        assert!(!Arch::X86_64.kvm_possible_on(None));
    }

    /// The words that name an instruction set in code (comments aside).
    const NAMES: [&str; 10] = ["x86_64", "x86-64", "amd64", "aarch64", "arm64", "ttyS0", "ttyAMA0", "qemu-system-", "cortex-a", "target_arch"];

    /// Files that may still name one, each with why: data, not a fact the
    /// code decides on.
    const ALLOWED: [(&str, &str); 1] = [("src/kernel/descriptor.rs", "the embedded kernel descriptors' names: Debian package names, which end in their architecture")];

    /// Each non-test, non-comment line of `src/` (but this file) naming an
    /// architecture: (file, `path:line: text`).
    fn naming_lines() -> Vec<(String, String)> {
        crate::util::source_lines(&["src/arch.rs"]).into_iter().filter(|(_, _, l)| NAMES.iter().any(|w| l.contains(w))).map(|(f, n, l)| (f.clone(), format!("{f}:{n}: {l}"))).collect()
    }

    #[test]
    fn no_other_file_names_an_architecture() {
        let hits = naming_lines();
        let stray: Vec<&String> = hits.iter().filter(|(f, _)| !ALLOWED.iter().any(|(a, _)| a == f)).map(|(_, l)| l).collect();
        assert!(stray.is_empty(), "architecture-specific facts belong in src/arch.rs (`Arch`); these lines name an architecture:\n{}", stray.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n"));
        // The list only shrinks: a file that no longer names one leaves it.
        for (f, why) in ALLOWED {
            assert!(hits.iter().any(|(h, _)| h == f), "{f} no longer names an architecture; take it off ALLOWED ({why})");
        }
    }
}
