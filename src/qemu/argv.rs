//! The QEMU command line as a pure function of the VM's shape, so every
//! flag is unit-tested and the manifest records exactly what ran.

use std::ffi::OsString;
use std::path::PathBuf;

use super::accel::Accel;

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
}

impl Device {
    /// Guest modules to load for this device (dependencies come from modules.dep).
    pub fn driver_modules(&self) -> &'static [&'static str] {
        match self {
            Device::Net => &["virtio_pci", "virtio_net"],
            Device::Balloon => &["virtio_pci", "virtio_balloon"],
            // qemu_fw_cfg hands the kernel's vmcoreinfo to QEMU's vmcoreinfo
            // device, which a host dump needs to be readable by crash.
            Device::Pvpanic => &["pvpanic_pci", "qemu_fw_cfg"],
            Device::DumpDisk | Device::ChurnDisk => &["virtio_pci", "virtio_blk"],
        }
    }
}

/// Everything that shapes the QEMU command line.
#[derive(Debug, Clone, PartialEq)]
pub struct VmSpec {
    pub qemu: PathBuf,
    pub name: String,
    pub accel: Accel,
    pub memory_mib: u64,
    pub cpus: u32,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
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
    /// Pause the VM on a guest panic (`-action panic=pause`) so the host can
    /// dump its memory, and expose vmcoreinfo for that dump.
    pub pause_on_panic: bool,
}

/// The argv, program first.
pub fn argv(spec: &VmSpec) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &str| a.push(s.into());
    push(&spec.qemu.to_string_lossy());
    push("-name");
    push(&format!("{},debug-threads=on", spec.name));
    for f in ["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-machine", "pc"] {
        push(f);
    }
    match spec.accel {
        Accel::Kvm => {
            push("-accel");
            push("kvm");
            push("-cpu");
            push("host");
        }
        Accel::Tcg => {
            push("-accel");
            push("tcg");
            push("-cpu");
            push("max");
        }
    }
    push("-m");
    push(&format!("{}M", spec.memory_mib));
    push("-smp");
    push(&spec.cpus.to_string());
    push("-kernel");
    push(&spec.kernel.to_string_lossy());
    push("-initrd");
    push(&spec.initrd.to_string_lossy());
    push("-append");
    push(&spec.cmdline);
    push("-chardev");
    push(&format!("file,id=console,path={}", spec.console_log.to_string_lossy()));
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
                push("virtio-net-pci,netdev=n0");
            }
            Device::Balloon => {
                push("-device");
                push("virtio-balloon-pci,id=balloon0");
            }
            Device::Pvpanic => {
                push("-device");
                push("pvpanic-pci");
            }
            Device::DumpDisk => {
                if let Some(disk) = &spec.dump_disk {
                    raw_disk("dump", disk, "").iter().for_each(|w| push(w));
                }
            }
            Device::ChurnDisk => {
                if let Some(disk) = &spec.churn_disk {
                    raw_disk("churn", disk, ",discard=unmap").iter().for_each(|w| push(w));
                }
            }
        }
    }
    if spec.pause_on_panic {
        push("-device");
        push("vmcoreinfo");
        push("-action");
        push("panic=pause");
    }
    a
}

/// A raw image as a virtio-blk disk; `cache=unsafe` because the image is
/// scratch space that dies with the run (the dump is read after QEMU exits).
fn raw_disk(id: &str, path: &std::path::Path, extra: &str) -> [String; 4] {
    [
        "-drive".into(),
        format!("file={},if=none,id={id},format=raw,cache=unsafe{extra}", path.to_string_lossy()),
        "-device".into(),
        format!("virtio-blk-pci,drive={id}"),
    ]
}

/// The kernel command line kernlab owns, plus the lab's extra words.
pub fn cmdline(extra: &[String]) -> String {
    // console on the serial port (the console log); panic=-1 with -no-reboot
    // makes a panicking guest end QEMU at once, so a boot panic fails fast;
    // loglevel=5 keeps warnings (the OOM report) and drops the chatter.
    let mut words: Vec<String> =
        ["console=ttyS0", "rdinit=/init", "panic=-1", "loglevel=5", "tsc=reliable", "no_timer_check", "cryptomgr.notests"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    words.extend(extra.iter().cloned());
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VmSpec {
        VmSpec {
            qemu: "qemu-system-x86_64".into(),
            name: "kernlab-smoke".into(),
            accel: Accel::Tcg,
            memory_mib: 512,
            cpus: 1,
            kernel: "/cache/vmlinuz".into(),
            initrd: "initrd.cpio".into(),
            cmdline: cmdline(&["slub_nomerge".into()]),
            qmp_socket: "qmp.sock".into(),
            console_log: "console.log".into(),
            ssh_port: 40022,
            devices: vec![Device::Net, Device::Balloon, Device::Pvpanic],
            dump_disk: None,
            churn_disk: None,
            pause_on_panic: false,
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
        assert!(Device::Net.driver_modules().contains(&"virtio_net"));
        assert!(Device::Balloon.driver_modules().contains(&"virtio_balloon"));
    }
}
