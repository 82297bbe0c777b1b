//! The QEMU command line as a pure function of the VM's shape, so every
//! flag is unit-tested and the manifest records exactly what ran.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::arch::Arch;
use super::accel::Accel;
use super::machine::Machine;

/// A device kernlab attaches, and the guest driver module it needs. The image
/// builder takes the driver list from here, so the initramfs holds exactly
/// the modules for the devices the VM really has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// virtio-net on QEMU's user-mode network, SSH forwarded from 127.0.0.1.
    Net,
    /// virtio-balloon, for host-side memory statistics without a guest agent.
    Balloon,
    /// pvpanic, so a guest panic reaches QMP as GUEST_PANICKED (or
    /// GUEST_CRASHLOADED when kdump takes over).
    Pvpanic,
    /// The dump disk (virtio-blk, raw, `VmSpec::dump_disk`): holds the
    /// capture kernel and receives the vmcore.
    DumpDisk,
    /// The ext4 disk the churn workload runs on (`VmSpec::churn_disk`).
    ChurnDisk,
    /// The guest's root disk (`VmSpec::root_disk`): the run's qcow2 overlay
    /// of a Debian or user disk. First, so it is the first disk the
    /// firmware boots and the guest sees.
    RootDisk,
    /// The cloud-init NoCloud seed (`VmSpec::seed_disk`, vfat, read-only):
    /// the run's SSH keys.
    SeedDisk,
    /// virtio-serial with one port, [`SAMPLER_PORT`], on a unix socket in
    /// the run directory ([`SAMPLER_SOCKET`], QEMU the server): the guest
    /// sampler's requests and records, with no SSH traffic per sample.
    SamplerPort,
}

/// The guest sampler's virtio-serial port: its name in the guest
/// (`/sys/class/virtio-ports/vportNpM/name`, and `/dev/virtio-ports/NAME`
/// where udev makes the link).
pub const SAMPLER_PORT: &str = "org.kernlab.sampler";

/// The host end of [`SAMPLER_PORT`]: a unix socket QEMU listens on, its
/// name relative to the run directory (QEMU's working directory, private).
pub const SAMPLER_SOCKET: &str = "sampler.sock";

impl Device {
    /// Guest modules to load for this device on `machine` (dependencies
    /// come from modules.dep): virtio devices sit on PCI on `pc` and `virt`
    /// and on virtio-mmio on `microvm`.
    pub fn driver_modules(&self, machine: Machine) -> &'static [&'static str] {
        match (self, machine) {
            (Device::Net, Machine::Pc | Machine::Virt) => &["virtio_pci", "virtio_net"],
            (Device::Net, Machine::Microvm) => &["virtio_mmio", "virtio_net"],
            (Device::Balloon, Machine::Pc | Machine::Virt) => &["virtio_pci", "virtio_balloon"],
            (Device::Balloon, Machine::Microvm) => &["virtio_mmio", "virtio_balloon"],
            // qemu_fw_cfg hands the kernel's vmcoreinfo to QEMU's vmcoreinfo
            // device, which a host dump needs to be readable by crash.
            (Device::Pvpanic, _) => &["pvpanic_pci", "qemu_fw_cfg"],
            (Device::DumpDisk | Device::ChurnDisk | Device::RootDisk | Device::SeedDisk, Machine::Pc | Machine::Virt) => &["virtio_pci", "virtio_blk"],
            (Device::DumpDisk | Device::ChurnDisk | Device::RootDisk | Device::SeedDisk, Machine::Microvm) => &["virtio_mmio", "virtio_blk"],
            (Device::SamplerPort, Machine::Pc | Machine::Virt) => &["virtio_pci", "virtio_console"],
            (Device::SamplerPort, Machine::Microvm) => &["virtio_mmio", "virtio_console"],
        }
    }

    /// Whether kernlab can attach this device on `machine`. pvpanic is a
    /// PCI device here (microvm has no PCI, and its ISA variant is not
    /// described to the guest), so microvm has none.
    pub fn available_on(&self, machine: Machine) -> bool {
        !(machine != Machine::Pc && *self == Device::Pvpanic)
    }
}

/// Everything that shapes the QEMU command line.
#[derive(Debug, Clone, PartialEq)]
pub struct VmSpec {
    pub qemu: PathBuf,
    /// The guest's architecture: its CPU model (and, with the machine, its
    /// console).
    pub arch: Arch,
    pub name: String,
    pub accel: Accel,
    pub machine: Machine,
    pub memory_mib: u64,
    pub cpus: u32,
    /// The kernel, initrd and command line QEMU loads directly, unless
    /// `firmware_boot`.
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
    /// Boot the root disk the way a server does: firmware, then the disk's
    /// own bootloader and kernel (no `-kernel`, `-initrd`, `-append`).
    pub firmware_boot: bool,
    /// Paths are relative to the run directory (QEMU's working directory),
    /// which keeps the QMP socket path short whatever the run directory is.
    pub qmp_socket: PathBuf,
    pub console_log: PathBuf,
    pub ssh_port: u16,
    pub devices: Vec<Device>,
    /// The raw dump disk image, for `Device::DumpDisk`.
    pub dump_disk: Option<PathBuf>,
    /// The raw churn disk image, for `Device::ChurnDisk`.
    pub churn_disk: Option<PathBuf>,
    /// The qcow2 root disk (an overlay), for `Device::RootDisk`.
    pub root_disk: Option<PathBuf>,
    /// The raw seed disk, for `Device::SeedDisk`.
    pub seed_disk: Option<PathBuf>,
    /// Pause the VM on a guest panic (`-action panic=pause`) so the host can
    /// dump its memory, and expose vmcoreinfo for that dump.
    pub pause_on_panic: bool,
    /// The VM's state may be saved as a snapshot, or is restored from one:
    /// `-global migration.store-global-state=off`, so a VM restored from
    /// the saved state runs at once instead of staying paused (the state
    /// was saved while paused) and waiting for a `cont`.
    pub snapshot: bool,
    /// Restore the VM from this migration source instead of booting
    /// (`-incoming`, e.g. `exec:cat '<state>'`); the rest of the argv must
    /// be the one the state was saved with.
    pub incoming: Option<String>,
}

/// The argv, program first.
pub fn argv(spec: &VmSpec) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &str| a.push(s.into());
    push(&spec.qemu.to_string_lossy());
    push("-name");
    push(&format!("{},debug-threads=on", spec.name));
    for f in ["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-machine"] {
        push(f);
    }
    push(match spec.machine {
        Machine::Pc => "pc",
        // No option ROMs (the kernel is loaded directly), the ISA serial
        // port for the console, and the RTC the guest's clock starts from.
        Machine::Microvm => "microvm,x-option-roms=off,isa-serial=on,rtc=on",
        Machine::Virt => "virt",
    });
    let virtio = |pci: &str| match spec.machine {
        Machine::Pc | Machine::Virt => format!("virtio-{pci}-pci"),
        Machine::Microvm => format!("virtio-{pci}-device"),
    };
    match spec.accel {
        Accel::Kvm => {
            push("-accel");
            push("kvm");
            push("-cpu");
            push(spec.arch.kvm_cpu());
        }
        Accel::Tcg => {
            push("-accel");
            push("tcg");
            push("-cpu");
            push(spec.arch.tcg_cpu());
        }
    }
    push("-m");
    push(&format!("{}M", spec.memory_mib));
    push("-smp");
    push(&spec.cpus.to_string());
    if !spec.firmware_boot {
        push("-kernel");
        push(&spec.kernel.to_string_lossy());
        push("-initrd");
        push(&spec.initrd.to_string_lossy());
        push("-append");
        push(&spec.cmdline);
    }
    push("-chardev");
    // With snapshots the console file is appended to: a restored run's
    // console starts with the boot that was saved (written by kernlab).
    let append = if spec.snapshot { ",append=on" } else { "" };
    push(&format!("file,id=console,path={}{append}", spec.console_log.to_string_lossy()));
    push("-serial");
    push("chardev:console");
    push("-qmp");
    push(&format!("unix:{},server=on,wait=off", spec.qmp_socket.to_string_lossy()));
    for d in &spec.devices {
        match d {
            Device::Net => {
                push("-netdev");
                // 127.0.0.1 only: the guest's sshd must not be reachable from the network.
                push(&format!("user,id=n0,hostfwd=tcp:127.0.0.1:{}-:22", spec.ssh_port));
                push("-device");
                push(&format!("{},netdev=n0", virtio("net")));
            }
            Device::Balloon => {
                push("-device");
                push(&format!("{},id=balloon0", virtio("balloon")));
            }
            Device::Pvpanic if spec.machine == Machine::Pc => {
                push("-device");
                push("pvpanic-pci");
            }
            Device::Pvpanic => {}
            Device::DumpDisk => {
                if let Some(disk) = &spec.dump_disk {
                    raw_disk("dump", disk, "", &virtio("blk")).iter().for_each(|w| push(w));
                }
            }
            Device::ChurnDisk => {
                if let Some(disk) = &spec.churn_disk {
                    raw_disk("churn", disk, ",discard=unmap", &virtio("blk")).iter().for_each(|w| push(w));
                }
            }
            Device::RootDisk => {
                if let Some(disk) = &spec.root_disk {
                    // The default cache mode (writeback): a `stop` flushes the
                    // overlay, so a snapshot's copy of it is whole.
                    push("-drive");
                    push(&format!("file={},if=none,id=root,format=qcow2,discard=unmap", disk.to_string_lossy()));
                    push("-device");
                    // The firmware boots it (with -kernel, QEMU's own loader is first).
                    let boot = if spec.firmware_boot { ",bootindex=0" } else { "" };
                    push(&format!("{},drive=root{boot}", virtio("blk")));
                }
            }
            Device::SeedDisk => {
                if let Some(disk) = &spec.seed_disk {
                    push("-drive");
                    push(&format!("file={},if=none,id=seed,format=raw,readonly=on", disk.to_string_lossy()));
                    push("-device");
                    push(&format!("{},drive=seed", virtio("blk")));
                }
            }
            Device::SamplerPort => {
                // wait=off: QEMU runs without a client; the guest learns
                // when the host connects (the port's host side opens).
                push("-chardev");
                push(&format!("socket,id=sampler,path={SAMPLER_SOCKET},server=on,wait=off"));
                push("-device");
                push(&format!("{},id=vser0", virtio("serial")));
                push("-device");
                push(&format!("virtserialport,bus=vser0.0,chardev=sampler,id=sampler0,name={SAMPLER_PORT}"));
            }
        }
    }
    if spec.pause_on_panic {
        push("-device");
        push("vmcoreinfo");
        push("-action");
        push("panic=pause");
    }
    if spec.snapshot {
        push("-global");
        push("migration.store-global-state=off");
    }
    if let Some(src) = &spec.incoming {
        push("-incoming");
        push(src);
    }
    a
}

/// The `-incoming` source that restores the state saved in `state`. QEMU
/// runs it with `/bin/sh -c`, so the path is one quoted word.
pub fn incoming_from_file(state: &std::path::Path) -> String {
    format!("exec:cat {}", crate::util::tool::shell_quote(state.as_os_str()))
}

/// A raw image as a virtio-blk disk; `cache=unsafe` because the image is
/// scratch space that dies with the run (the dump is read after QEMU exits).
fn raw_disk(id: &str, path: &std::path::Path, extra: &str, device: &str) -> [String; 4] {
    [
        "-drive".into(),
        format!("file={},if=none,id={id},format=raw,cache=unsafe{extra}", path.to_string_lossy()),
        "-device".into(),
        format!("{device},drive={id}"),
    ]
}

/// Kernel command-line flags that shorten a boot under TCG, on by default
/// (`vm.fast_boot`): trust the TSC instead of watching it against another
/// clock, skip the timer check that waits on interrupts, and skip the
/// crypto self-tests that run at every boot.
pub const FAST_BOOT_FLAGS: [&str; 3] = ["tsc=reliable", "no_timer_check", "cryptomgr.notests"];

/// What shapes the kernel command line besides the lab's own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdlineOpts {
    /// The guest's architecture: the console device.
    pub arch: Arch,
    pub fast_boot: bool,
    pub machine: Machine,
    /// The host TSC rate in kHz, given to the guest as `tsc_early_khz` on
    /// microvm (where without it about one boot in twenty hangs under TCG).
    pub tsc_khz: Option<u64>,
    /// Boot a root disk (`root=…`, mounted read-only first, by the
    /// initramfs) instead of running the initramfs's own `/init`.
    pub root: Option<String>,
}

/// The kernel command line kernlab owns, plus the lab's extra words.
pub fn cmdline(opts: &CmdlineOpts, extra: &[String]) -> String {
    // console on the serial port (the console log); panic=-1 with -no-reboot
    // makes a panicking guest end QEMU at once, so a boot panic fails fast;
    // loglevel=5 keeps warnings (the OOM report) and drops the chatter.
    let mut words: Vec<String> = vec![format!("console={}", opts.arch.console())];
    match &opts.root {
        Some(root) => words.extend([format!("root={root}"), "ro".into()]),
        None => words.push("rdinit=/init".into()),
    }
    words.extend(["panic=-1", "loglevel=5"].iter().map(|s| s.to_string()));
    if opts.fast_boot {
        words.extend(FAST_BOOT_FLAGS.iter().map(|s| s.to_string()));
    }
    if let (Machine::Microvm, Some(khz)) = (opts.machine, opts.tsc_khz) {
        words.push(format!("tsc_early_khz={khz}"));
    }
    words.extend(extra.iter().cloned());
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VmSpec {
        VmSpec {
            qemu: "qemu-system-x86_64".into(),
            arch: Arch::X86_64,
            name: "kernlab-smoke".into(),
            accel: Accel::Tcg,
            machine: Machine::Pc,
            memory_mib: 512,
            cpus: 1,
            kernel: "/cache/vmlinuz".into(),
            initrd: "initrd.cpio".into(),
            cmdline: cmdline(&CmdlineOpts { arch: Arch::X86_64, fast_boot: true, machine: Machine::Pc, tsc_khz: Some(2_300_000), root: None }, &["slub_nomerge".into()]),
            qmp_socket: "qmp.sock".into(),
            console_log: "console.log".into(),
            ssh_port: 40022,
            devices: vec![Device::Net, Device::Balloon, Device::Pvpanic, Device::SamplerPort],
            dump_disk: None,
            churn_disk: None,
            root_disk: None,
            seed_disk: None,
            firmware_boot: false,
            pause_on_panic: false,
            snapshot: false,
            incoming: None,
        }
    }

    fn joined(s: &VmSpec) -> String {
        argv(s).iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn tcg_argv() {
        let a = joined(&spec());
        for want in [
            "-accel tcg -cpu max",
            "-m 512M -smp 1",
            "-kernel /cache/vmlinuz -initrd initrd.cpio",
            "-append console=ttyS0 rdinit=/init panic=-1 loglevel=5 tsc=reliable no_timer_check cryptomgr.notests slub_nomerge",
            "-chardev file,id=console,path=console.log -serial chardev:console",
            "-qmp unix:qmp.sock,server=on,wait=off",
            "user,id=n0,hostfwd=tcp:127.0.0.1:40022-:22",
            "-device virtio-balloon-pci,id=balloon0",
            "-device pvpanic-pci",
            "-chardev socket,id=sampler,path=sampler.sock,server=on,wait=off -device virtio-serial-pci,id=vser0 -device virtserialport,bus=vser0.0,chardev=sampler,id=sampler0,name=org.kernlab.sampler",
            "-no-reboot",
            "-nodefaults",
        ] {
            assert!(a.contains(want), "missing `{want}` in {a}");
        }
        assert!(a.starts_with("qemu-system-x86_64 "));
    }

    #[test]
    fn dump_devices() {
        let mut s = spec();
        assert!(!joined(&s).contains("panic=pause"));
        s.devices.push(Device::DumpDisk);
        s.dump_disk = Some("dump.img".into());
        s.pause_on_panic = true;
        let a = joined(&s);
        assert!(a.contains("-drive file=dump.img,if=none,id=dump,format=raw,cache=unsafe -device virtio-blk-pci,drive=dump"), "{a}");
        assert!(a.contains("-device vmcoreinfo -action panic=pause"), "{a}");
    }

    #[test]
    fn snapshot_flags_and_incoming() {
        let mut s = spec();
        let plain = joined(&s);
        assert!(!plain.contains("-global") && !plain.contains("-incoming"), "{plain}");
        s.snapshot = true;
        let saving = joined(&s);
        assert_eq!(
            saving,
            format!("{plain} -global migration.store-global-state=off").replace("path=console.log ", "path=console.log,append=on ")
        );
        s.incoming = Some(incoming_from_file(std::path::Path::new("/cache/snapshots/ab c/state")));
        let restoring = argv(&s).iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>();
        // The restoring argv is the saving one plus `-incoming`, last, as one word.
        assert_eq!(restoring[restoring.len() - 2..], ["-incoming", "exec:cat '/cache/snapshots/ab c/state'"]);
        assert_eq!(restoring[..restoring.len() - 2].join(" "), saving);
    }

    #[test]
    fn kvm_uses_host_cpu() {
        let mut s = spec();
        s.accel = Accel::Kvm;
        assert!(joined(&s).contains("-accel kvm -cpu host"));
    }

    #[test]
    fn ssh_is_never_forwarded_beyond_loopback() {
        let a = joined(&spec());
        let fwd: Vec<_> = a.split_whitespace().filter(|w| w.contains("hostfwd")).collect();
        assert_eq!(fwd.len(), 1);
        assert!(fwd[0].contains("hostfwd=tcp:127.0.0.1:"), "{}", fwd[0]);
    }

    #[test]
    fn drivers_cover_devices() {
        for m in [Machine::Pc, Machine::Microvm] {
            let bus = if m == Machine::Pc { "virtio_pci" } else { "virtio_mmio" };
            assert_eq!(Device::Net.driver_modules(m), [bus, "virtio_net"]);
            assert_eq!(Device::Balloon.driver_modules(m), [bus, "virtio_balloon"]);
            assert_eq!(Device::ChurnDisk.driver_modules(m), [bus, "virtio_blk"]);
            assert_eq!(Device::SamplerPort.driver_modules(m), [bus, "virtio_console"]);
        }
        assert!(!Device::Pvpanic.available_on(Machine::Microvm) && Device::Pvpanic.available_on(Machine::Pc));
    }

    #[test]
    fn microvm_argv_uses_virtio_mmio_devices() {
        let mut s = spec();
        s.machine = Machine::Microvm;
        s.devices.push(Device::ChurnDisk);
        s.churn_disk = Some("churn.img".into());
        let a = joined(&s);
        for want in [
            "-machine microvm,x-option-roms=off,isa-serial=on,rtc=on",
            "-device virtio-net-device,netdev=n0",
            "-device virtio-balloon-device,id=balloon0",
            "-device virtio-blk-device,drive=churn",
            "-device virtio-serial-device,id=vser0",
        ] {
            assert!(a.contains(want), "missing `{want}` in {a}");
        }
        assert!(!a.contains("-pci") && !a.contains("pvpanic"), "{a}");
    }

    #[test]
    fn command_line_flags() {
        let opts = |fast_boot, machine| CmdlineOpts { arch: Arch::X86_64, fast_boot, machine, tsc_khz: Some(2_300_000), root: None };
        let pc = cmdline(&opts(true, Machine::Pc), &[]);
        assert_eq!(pc, "console=ttyS0 rdinit=/init panic=-1 loglevel=5 tsc=reliable no_timer_check cryptomgr.notests");
        let micro = cmdline(&opts(true, Machine::Microvm), &["x".into()]);
        assert!(micro.ends_with("cryptomgr.notests tsc_early_khz=2300000 x"), "{micro}");
        // Fast boot off drops the speed flags but never the microvm hang fix.
        let slow = cmdline(&opts(false, Machine::Microvm), &[]);
        assert_eq!(slow, "console=ttyS0 rdinit=/init panic=-1 loglevel=5 tsc_early_khz=2300000");
        let unknown = cmdline(&CmdlineOpts { arch: Arch::X86_64, fast_boot: false, machine: Machine::Microvm, tsc_khz: None, root: None }, &[]);
        assert!(!unknown.contains("tsc_early_khz"));
    }
}
