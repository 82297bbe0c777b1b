//! The fast boot paths on the real thing: the uncompressed vmlinux
//! extracted from each compression Debian's kernels use, a microvm booting
//! it and answering over SSH, and the slow simple path (pc + bzImage) still
//! there when a lab asks for it. Each VM test checks that no QEMU outlives
//! its run.

mod common;
use common::*;
use kernlab::cache::Cache;
use kernlab::kernel::vmlinux::{self, PayloadCompression};
use kernlab::kernel::{self, Kernel, Registry};
use std::path::Path;
use std::sync::Mutex;

/// One VM at a time: the machine is small and timings are printed.
static ONE_VM_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_vm() -> std::sync::MutexGuard<'static, ()> {
    ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn fetched(name: &str) -> (Cache, Kernel) {
    let cache = Cache::from_env().unwrap();
    let reg = Registry::load(&kernel::descriptor_dirs(None)).unwrap();
    let k = kernel::fetch(&cache, reg.get(name).unwrap()).unwrap_or_else(|e| panic!("fetch {name}: {e}"));
    (cache, k)
}

fn manifest(run_dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run_dir.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn debian_kernels_of_each_compression_extract_to_a_pvh_vmlinux() {
    for (name, compression, config) in [
        ("debian-6.1.0-54-cloud-amd64", PayloadCompression::Lz4, "CONFIG_KERNEL_LZ4"),
        ("debian-6.1.0-54-amd64", PayloadCompression::Xz, "CONFIG_KERNEL_XZ"),
        ("debian-6.12.117+deb12-cloud-amd64", PayloadCompression::Zstd, "CONFIG_KERNEL_ZSTD"),
    ] {
        let (cache, k) = fetched(name);
        let cfg = std::fs::read_to_string(k.config()).unwrap();
        assert_eq!(vmlinux::config_enabled(&cfg, config), Some('y'), "{name}: the config says {config}");
        assert_eq!(vmlinux::config_enabled(&cfg, "CONFIG_PVH"), Some('y'), "{name}");

        // The pure path, from the package's bzImage.
        let t = std::time::Instant::now();
        let x = vmlinux::extract(&std::fs::read(k.vmlinuz()).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        eprintln!("{name}: {compression} → {} MiB in {:.2} s", x.elf.len() >> 20, t.elapsed().as_secs_f64());
        assert_eq!(x.compression, compression, "{name}");
        // The PVH entry is a physical address in the kernel's first 16 MiB-aligned load area.
        assert!(x.pvh_entry >= 0x100_0000 && x.pvh_entry < 0x1_0000_0000, "{name}: entry {:#x}", x.pvh_entry);
        assert!(x.elf.len() > 40 << 20, "{name}: {} bytes", x.elf.len());

        // The cached path: the same bytes, next to the kernel, private.
        let b = vmlinux::boot_images(&cache, &k);
        let path = b.vmlinux.clone().unwrap_or_else(|| panic!("{name}: {}", b.note));
        assert!(path.starts_with(&k.root), "{}", path.display());
        assert_eq!(b.compression, Some(compression));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), x.elf.len() as u64);
        assert_eq!(mode(&path), 0o600);
        assert!(!vmlinux::is_bzimage(&path) && vmlinux::is_bzimage(&k.vmlinuz()));
    }
}

#[test]
fn microvm_boots_the_vmlinux_and_runs_a_command() {
    let _one = one_vm();
    let d = tempfile::tempdir().unwrap();
    let f = lab(
        d.path(),
        "micro",
        "name: micro\nvm:\n  machine: microvm\nworkload:\n  commands: ['cat /proc/cmdline; ls /sys/bus/virtio/devices; uname -r']\n  duration: 1s\nmonitor:\n  interval: 1s\n  sources: [meminfo, balloon]\n",
    );
    let run_dir = d.path().join("run");
    let out = run(&["run", f.to_str().unwrap(), "--out", run_dir.to_str().unwrap(), "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let m = manifest(&run_dir);
    let b = &m["boot"];
    assert_eq!(b["machine"], "microvm", "{b}");
    assert_eq!(b["kernel_image"], "vmlinux", "{b}");
    assert_eq!(b["images"]["compression"], "lz4");
    assert_eq!(b["attempts"], 1);
    let khz = b["host_tsc"]["khz"].as_u64().unwrap();
    let argv: Vec<String> = serde_json::from_value(m["qemu_argv"].clone()).unwrap();
    let joined = argv.join(" ");
    assert!(joined.contains("-machine microvm,") && joined.contains("virtio-net-device") && !joined.contains("-pci"), "{joined}");
    assert!(joined.contains(&format!("-kernel {}", b["kernel_image_path"].as_str().unwrap())), "{joined}");

    // In the guest: the command line kernlab wrote (QEMU adds no
    // virtio_mmio.device= words: the devices are in the ACPI tables), both
    // virtio-mmio devices bound, the Debian kernel.
    let log = std::fs::read_to_string(run_dir.join("workload.log")).unwrap();
    assert!(log.contains(&format!("tsc_early_khz={khz}")) && log.contains("no_timer_check"), "{log}");
    assert!(!log.contains("virtio_mmio.device="), "{log}");
    assert!(log.contains("virtio0") && log.contains("virtio1"), "{log}");
    assert!(log.contains("6.1.0-54-cloud-amd64"), "{log}");
    // Balloon statistics work on the mmio balloon too.
    let balloon = std::fs::read_to_string(run_dir.join("samples/balloon.csv")).unwrap();
    assert!(balloon.lines().count() > 1, "{balloon}");
    let rep = report(&run_dir);
    assert_eq!(rep["timings"]["boot_attempts"], 1);
    eprintln!("microvm + vmlinux: first command {:.2} s after QEMU start", rep["timings"]["first_command"].as_f64().unwrap());
    assert_no_qemu_left(&run_dir);
}

#[test]
fn a_pc_lab_boots_the_bzimage_without_fast_boot_flags() {
    let _one = one_vm();
    let d = tempfile::tempdir().unwrap();
    let f = lab(
        d.path(),
        "slow",
        "name: slow\nvm:\n  machine: pc\n  kernel_format: bzimage\n  fast_boot: false\nworkload:\n  commands: ['cat /proc/cmdline; ls /sys/bus/virtio/devices']\n  duration: 1s\nmonitor:\n  interval: 1s\n  sources: [meminfo]\n",
    );
    let run_dir = d.path().join("run");
    let out = run(&["run", f.to_str().unwrap(), "--out", run_dir.to_str().unwrap(), "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let m = manifest(&run_dir);
    let b = &m["boot"];
    assert_eq!(b["machine"], "pc", "{b}");
    assert_eq!(b["machine_reason"], "the lab asks for pc");
    assert_eq!(b["kernel_image"], "bzimage", "{b}");
    assert!(b["kernel_image_reason"].as_str().unwrap().contains("vm.kernel_format"), "{b}");
    assert_eq!(b["fast_boot"], false);
    assert!(vmlinux::is_bzimage(Path::new(b["kernel_image_path"].as_str().unwrap())));
    let argv = serde_json::to_string(&m["qemu_argv"]).unwrap();
    assert!(argv.contains("\"pc\"") && argv.contains("virtio-net-pci") && argv.contains("pvpanic-pci") && argv.contains("virtio-serial-pci"), "{argv}");
    // The sampler's port on PCI: its records came over it.
    assert_eq!(m["sampler_transport"], "port", "{:?}", event_names(&run_dir));
    let log = std::fs::read_to_string(run_dir.join("workload.log")).unwrap();
    assert!(!log.contains("no_timer_check") && !log.contains("tsc_early_khz"), "{log}");
    assert!(log.contains("virtio0"), "{log}");
    assert_no_qemu_left(&run_dir);
}

#[test]
fn a_dump_lab_gets_pc_and_says_why() {
    let _one = one_vm();
    // `vm.machine: auto` with an exhaustion section: microvm lacks pvpanic,
    // so the profile is pc, booting the vmlinux.
    let d = tempfile::tempdir().unwrap();
    let f = lab(d.path(), "dumps", "name: dumps\nworkload:\n  commands: [true]\n  duration: 1s\nmonitor:\n  interval: 1s\n  sources: [meminfo]\nexhaustion:\n  action: host-dump\n  crash: false\n");
    let run_dir = d.path().join("run");
    let out = run(&["run", f.to_str().unwrap(), "--out", run_dir.to_str().unwrap(), "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let b = &manifest(&run_dir)["boot"];
    assert_eq!(b["machine"], "pc", "{b}");
    assert!(b["machine_reason"].as_str().unwrap().contains("pvpanic"), "{b}");
    assert_eq!(b["kernel_image"], "vmlinux", "{b}");
    assert_no_qemu_left(&run_dir);
}

#[test]
fn a_boot_that_never_gets_ready_is_tried_once_more_and_both_consoles_are_kept() {
    let _one = one_vm();
    // A guest that boots but never answers: its network driver is
    // blacklisted, so dropbear starts with no network and the banner never
    // comes. Deterministic, so the retry fails the same way, with the reason.
    let d = tempfile::tempdir().unwrap();
    let f = lab(d.path(), "mute", "name: mute\nvm:\n  boot_timeout: 5s\n  cmdline: [module_blacklist=virtio_net]\n");
    let run_dir = d.path().join("run");
    let start = std::time::Instant::now();
    let out = run(&["run", f.to_str().unwrap(), "--out", run_dir.to_str().unwrap(), "-q"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "{err}");
    assert!(err.contains("no SSH banner within the boot timeout of 5s"), "{err}");
    // Two boots of 5 s and their teardown, not the default 2 min each
    // (a bound with room for a loaded machine).
    assert!(start.elapsed() < std::time::Duration::from_secs(120), "took {:?}", start.elapsed());
    let retries: Vec<_> = events(&run_dir).into_iter().filter(|e| e["event"] == "boot-retry").collect();
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert_eq!(retries[0]["attempt"], 1);
    assert!(retries[0]["reason"].as_str().unwrap().contains("boot timeout"), "{retries:?}");
    assert_eq!(qemu_pids(&run_dir).len(), 2, "two boots");
    let b = &manifest(&run_dir)["boot"];
    assert_eq!(b["attempts"], 2, "{b}");
    assert_eq!(b["retries"].as_array().unwrap().len(), 1, "{b}");
    assert_eq!(report(&run_dir)["timings"]["boot_attempts"], 2);
    // Each boot's console is kept whole from its first line (how far a
    // boot gets in 5 s is the machine's load, not the test's to assert).
    for console in ["console-attempt1.log", "console.log"] {
        let text = std::fs::read_to_string(run_dir.join(console)).unwrap();
        assert!(text.lines().any(|l| l.starts_with("[ ") && l.contains("] ")), "{console}: no kernel line: {text}");
    }
    assert_no_qemu_left(&run_dir);
}
