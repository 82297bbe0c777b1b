//! arm64 guests through the architecture seam, on the real thing: Debian's
//! arm64 cloud kernel fetched through kernlab's private apt configuration
//! for a foreign architecture, booted under TCG on QEMU's `virt` machine
//! with the argv, console and accelerator choice `Arch` gives, to an
//! initramfs whose `/init` is Debian's static arm64 busybox. What is not
//! here yet: SSH, modules and the sampler in an arm64 guest (issue 26).

mod common;
use common::*;
use kernlab::arch::Arch;
use kernlab::cache::Cache;
use kernlab::kernel::apt::Apt;
use kernlab::kernel::{self, Registry};
use kernlab::qemu::{self, accel, argv::VmSpec, CmdlineOpts, Machine};
use std::time::Duration;

/// Whether qemu-system-aarch64 is here; under CI it must be (scripts/setup.sh
/// installs it), elsewhere its absence skips the test, loudly.
fn have_qemu(arch: Arch) -> bool {
    let found = std::process::Command::new(arch.qemu_binary()).arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "{} is missing under CI: scripts/setup.sh installs {}", arch.qemu_binary(), arch.qemu_package());
        eprintln!("SKIPPED: {} is not installed (apt-get install {})", arch.qemu_binary(), arch.qemu_package());
    }
    found
}

#[test]
fn an_arm64_debian_kernel_boots_on_virt_under_tcg_to_a_busybox_init() {
    let arch = Arch::Aarch64;
    if !have_qemu(arch) {
        return;
    }
    let cache = Cache::from_env().unwrap();
    let reg = Registry::load(&[repo("tests/fixtures/kernels-arm64")]).unwrap();
    let desc = reg.get("debian-6.1.0-54-cloud-arm64").unwrap();
    assert_eq!(desc.arch(), arch);
    let k = kernel::fetch(&cache, desc).unwrap_or_else(|e| panic!("fetch the arm64 kernel: {}", kernlab::util::error_causes(&e)));
    assert_eq!((k.release.as_str(), k.arch()), ("6.1.0-54-cloud-arm64", arch));
    assert!(k.vmlinuz().is_file() && k.modules_dir().join("modules.dep").is_file(), "{k:?}");

    // Debian's static arm64 busybox, through the same private apt.
    let d = tempfile::tempdir().unwrap();
    let apt = Apt::for_arch(&cache, arch).unwrap();
    apt.download(&["busybox-static".into()], d.path()).unwrap();
    let deb = std::fs::read_dir(d.path()).unwrap().flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|x| x == "deb")).expect("busybox-static .deb");
    let x = d.path().join("x");
    let st = std::process::Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x).status().unwrap();
    assert!(st.success());
    let busybox = std::fs::read(x.join("bin/busybox")).unwrap();
    assert_eq!(u16::from_le_bytes([busybox[0x12], busybox[0x13]]), arch.elf_machine(), "busybox-static from the arm64 lists is an arm64 ELF");

    let mut t = kernlab::image::tree::Tree::new();
    t.file("/bin/busybox", 0o755, busybox);
    t.file("/init", 0o755, b"#!/bin/busybox sh\n/bin/busybox echo \"KERNLAB-INIT $(/bin/busybox uname -m) $(/bin/busybox uname -r)\"\n/bin/busybox poweroff -f\n".to_vec());
    let initrd = d.path().join("initrd.cpio");
    std::fs::write(&initrd, t.to_cpio()).unwrap();

    // The accelerator: KVM runs only the host's own architecture.
    let choice = accel::choose(accel::AccelRequest::Auto, &accel::HostAccel::detect(), arch);
    if Arch::host() != Some(arch) {
        assert_eq!(choice.accel, accel::Accel::Tcg, "{}", choice.reason);
        assert!(choice.reason.contains("guest aarch64"), "{}", choice.reason);
    }
    let spec = VmSpec {
        qemu: qemu::binary(arch),
        arch,
        name: "kernlab-arm64".into(),
        accel: choice.accel,
        machine: Machine::Virt,
        memory_mib: 512,
        cpus: 1,
        kernel: k.vmlinuz(),
        initrd: initrd.clone(),
        cmdline: qemu::argv::cmdline(&CmdlineOpts { arch, fast_boot: true, machine: Machine::Virt, tsc_khz: None, root: None }, &[]),
        firmware_boot: false,
        qmp_socket: "qmp.sock".into(),
        console_log: "console.log".into(),
        ssh_port: 0,
        devices: vec![],
        dump_disk: None,
        churn_disk: None,
        root_disk: None,
        seed_disk: None,
        pause_on_panic: false,
        snapshot: false,
        incoming: None,
    };
    let argv = qemu::argv(&spec);
    let words: Vec<String> = argv.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let joined = words.join(" ");
    assert!(joined.starts_with("qemu-system-aarch64 ") || joined.contains("/qemu-system-aarch64 "), "{joined}");
    assert!(joined.contains("-machine virt") && joined.contains("console=ttyAMA0"), "{joined}");

    let mut child = std::process::Command::new(&argv[0]).args(&argv[1..]).current_dir(d.path()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // A bound, not a timing: a TCG boot here takes seconds; poweroff -f
    // with -no-reboot ends QEMU.
    let status = exit_within(&mut child, Duration::from_secs(600), "the arm64 guest");
    let console = std::fs::read_to_string(d.path().join("console.log")).unwrap_or_default();
    assert!(status.success(), "QEMU: {status}; console:\n{console}");
    assert!(console.contains("KERNLAB-INIT aarch64 6.1.0-54-cloud-arm64"), "the busybox /init ran on the arm64 kernel:\n{console}");
}
