//! arm64 guests through the architecture seam, on the real thing: Debian's
//! arm64 cloud kernel fetched through kernlab's private apt configuration
//! for a foreign architecture, booted under TCG on QEMU's `virt` machine
//! with the argv, console and accelerator choice `Arch` gives, to an
//! initramfs whose `/init` is Debian's static arm64 busybox; a module
//! cross-built by kernlab's module build, loaded there; and a whole leak
//! lab on an arm64 guest (SSH, churn, sampler, verdict, attribution).

mod common;
use common::*;
use kernlab::arch::Arch;
use kernlab::cache::Cache;
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

/// The arm64 kernel, fetched (its descriptor and the kernel).
fn arm64_kernel(cache: &Cache) -> (kernlab::kernel::Descriptor, kernlab::kernel::Kernel) {
    let reg = Registry::builtin();
    let desc = reg.get("debian-6.1.0-54-cloud-arm64").unwrap().clone();
    assert_eq!(desc.arch(), Arch::Aarch64);
    let k = kernel::fetch(cache, &desc).unwrap_or_else(|e| panic!("fetch the arm64 kernel: {}", kernlab::util::error_causes(&e)));
    assert_eq!((k.release.as_str(), k.arch()), ("6.1.0-54-cloud-arm64", Arch::Aarch64));
    (desc, k)
}

/// Debian's static arm64 busybox, from kernlab's own arm64 guest programs
/// (`image::sysroot`: the arm64 packages through the private apt).
fn arm64_busybox(cache: &Cache) -> Vec<u8> {
    let root = kernlab::image::sysroot::ensure(cache, Arch::Aarch64).unwrap_or_else(|e| panic!("{}", kernlab::util::error_causes(&e)));
    let busybox = std::fs::read(root.join("bin/busybox")).unwrap();
    assert_eq!(elf_machine(&busybox), Arch::Aarch64.elf_machine(), "busybox-static from the arm64 lists is an arm64 ELF");
    busybox
}

fn elf_machine(elf: &[u8]) -> u16 {
    u16::from_le_bytes([elf[0x12], elf[0x13]])
}

/// Boots `kernel` on virt under the accelerator `Arch` allows, with an
/// initramfs of `files` (path, mode, bytes) and busybox; returns the
/// console once the guest's `/init` has powered it off.
fn boot(cache: &Cache, k: &kernlab::kernel::Kernel, files: Vec<(&str, u32, Vec<u8>)>) -> String {
    let d = tempfile::tempdir().unwrap();
    let mut child = start(cache, k, files, d.path(), false);
    // A bound, not a timing: a TCG boot here takes seconds; poweroff -f
    // with -no-reboot ends QEMU.
    let status = exit_within(&mut child, Duration::from_secs(600), "the arm64 guest");
    let console = std::fs::read_to_string(d.path().join("console.log")).unwrap_or_default();
    assert!(status.success(), "QEMU: {status}; console:\n{console}");
    console
}

/// Starts QEMU in `d` (its QMP socket `qmp.sock`, its console
/// `console.log`) on `kernel` and an initramfs of `files` and busybox;
/// `vmcoreinfo` adds QEMU's vmcoreinfo device, for a dump drgn can read.
fn start(cache: &Cache, k: &kernlab::kernel::Kernel, files: Vec<(&str, u32, Vec<u8>)>, d: &std::path::Path, vmcoreinfo: bool) -> std::process::Child {
    let arch = Arch::Aarch64;
    let mut t = kernlab::image::tree::Tree::new();
    t.file("/bin/busybox", 0o755, arm64_busybox(cache));
    t.dir("/proc", 0o755);
    t.dir("/sys", 0o755);
    for (p, mode, data) in files {
        t.file(p, mode, data);
    }
    let initrd = d.join("initrd.cpio");
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
        pause_on_panic: vmcoreinfo,
        snapshot: false,
        incoming: None,
    };
    let argv = qemu::argv(&spec);
    let joined = argv.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ");
    assert!(joined.contains("qemu-system-aarch64 ") && joined.contains("-machine virt") && joined.contains("-cpu cortex-a57"), "{joined}");
    assert!(joined.contains("console=ttyAMA0"), "{joined}");

    std::process::Command::new(&argv[0]).args(&argv[1..]).current_dir(d).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap()
}

#[test]
fn an_arm64_debian_kernel_boots_on_virt_under_tcg_to_a_busybox_init() {
    if !have_qemu(Arch::Aarch64) {
        return;
    }
    let cache = Cache::from_env().unwrap();
    let (_, k) = arm64_kernel(&cache);
    assert!(k.vmlinuz().is_file() && k.modules_dir().join("modules.dep").is_file(), "{k:?}");
    let init = b"#!/bin/busybox sh\n/bin/busybox echo \"KERNLAB-INIT $(/bin/busybox uname -m) $(/bin/busybox uname -r)\"\n/bin/busybox poweroff -f\n".to_vec();
    let console = boot(&cache, &k, vec![("/init", 0o755, init)]);
    assert!(console.contains("KERNLAB-INIT aarch64 6.1.0-54-cloud-arm64"), "the busybox /init ran on the arm64 kernel:\n{console}");
}

/// labs/khm cross-built by kernlab's module build for `target`: the .ko's
/// bytes and what the build says of it.
fn khm_ko(cache: &Cache, target: kernlab::payload::Target) -> (Vec<u8>, kernlab::payload::kmod::BuiltModule) {
    let d = tempfile::tempdir().unwrap();
    let lab_file = lab(d.path(), "arm64.yaml", &format!("name: arm64\nmodules:\n  - source: {}\n", repo("labs/khm").display()));
    let lab = kernlab::lab::load(&lab_file).unwrap();
    let built = kernlab::payload::kmod::build_entry(cache, &target, d.path(), &lab.modules[0], &[]).unwrap_or_else(|e| panic!("cross-build khm: {}", kernlab::util::error_causes(&e)));
    let m = built.modules[0].clone();
    (std::fs::read(&m.ko).unwrap(), m)
}

#[test]
fn a_module_cross_builds_against_the_arm64_headers_and_loads_in_the_guest() {
    if !have_qemu(Arch::Aarch64) {
        return;
    }
    let cache = Cache::from_env().unwrap();
    let (desc, k) = arm64_kernel(&cache);
    // kernlab's own module build: the arm64 headers (the amd64 kbuild's
    // programs), ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- from `Arch`.
    let headers = kernel::headers::build_dir(&cache, &desc, &k).unwrap_or_else(|e| panic!("arm64 headers: {}", kernlab::util::error_causes(&e)));
    let target = kernlab::payload::Target::of(&k, headers);
    assert_eq!(target.arch, Arch::Aarch64);
    let (ko, m) = khm_ko(&cache, target);
    assert_eq!((m.name.as_str(), elf_machine(&ko)), ("khm", Arch::Aarch64.elf_machine()), "khm.ko is an arm64 object");
    assert!(m.vermagic.starts_with("6.1.0-54-cloud-arm64 SMP") && m.vermagic.contains("aarch64"), "{}", m.vermagic);

    let init = b"#!/bin/busybox sh\nB=/bin/busybox\n$B mount -t proc proc /proc\n$B mount -t sysfs sysfs /sys\n$B insmod /khm.ko leak=0 && $B echo \"KERNLAB-MOD $($B grep -c '^khm ' /proc/modules) $($B cat /sys/module/khm/parameters/leak)\"\n$B rmmod khm && $B echo \"KERNLAB-RMMOD $($B grep -c '^khm ' /proc/modules)\"\n$B poweroff -f\n".to_vec();
    let console = boot(&cache, &k, vec![("/init", 0o755, init), ("/khm.ko", 0o644, ko)]);
    assert!(console.contains("KERNLAB-MOD 1 0"), "khm loaded in the arm64 guest with leak=0:\n{console}");
    assert!(console.contains("KERNLAB-RMMOD 0"), "and unloaded:\n{console}");
}

#[test]
fn the_leak_lab_on_an_arm64_guest_is_a_leak_named_and_attributed() {
    if !have_qemu(Arch::Aarch64) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let run_dir = d.path().join("run");
    let out = kernlab().args(["run", &repo("labs/arm64-leak-lab.yaml").to_string_lossy(), "--out", &run_dir.to_string_lossy()]).output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let r = report(&run_dir);
    assert_eq!(r["verdict"], "leak", "{r}");
    // The guest was arm64, under TCG on virt, sampled over its port.
    for arm in ["module", "baseline"] {
        let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join(arm).join("manifest.json")).unwrap()).unwrap();
        assert_eq!(m["accel"]["accel"], "tcg", "{arm}: {}", m["accel"]);
        assert!(m["accel"]["reason"].as_str().unwrap_or("").contains("guest aarch64") || Arch::host() == Some(Arch::Aarch64), "{}", m["accel"]);
        let argv = m["qemu_argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap_or("")).collect::<Vec<_>>().join(" ");
        assert!(argv.contains("qemu-system-aarch64") && argv.contains("-machine virt") && argv.contains("console=ttyAMA0"), "{argv}");
        assert_eq!(m["sampler_transport"], "port", "{arm}");
        assert_eq!(m["kernel"]["release"], "6.1.0-54-cloud-arm64");
    }
    // What leaks: one dentry per file, a reference leak, and the code.
    let caches = r["analysis"]["caches"].as_array().unwrap();
    let dentry = caches.iter().find(|c| c["name"] == "dentry").expect("dentry evidence");
    assert_eq!(dentry["leak"], true, "{dentry}");
    let per_op = dentry["delta"].as_f64().unwrap();
    assert!((0.8..1.2).contains(&per_op), "about one dentry per file: {per_op}");
    assert!(stdout.contains("kind: reference leak"), "{stdout}");
    assert_private_tree(&run_dir);
}


/// An arm64 guest's memory dumped over QMP and triaged with drgn, the
/// engine `auto` picks for a dump `crash` cannot read on this host: the
/// guest loads khm with leak=1 and creates and removes files on tmpfs, so
/// each file's dentry (and its tmpfs inode) stays referenced; QEMU's
/// `dump-guest-memory` as an ELF core (drgn 0.0.22 cannot tell the
/// architecture of QEMU's arm64 kdump-zlib, what kernlab's x86 host dump
/// writes) with the vmcoreinfo the guest handed QEMU; `kernlab triage` with
/// the arm64 `-dbg` vmlinux (fetched through the private apt
/// configuration). There is no lab-run path to this dump yet: Debian's
/// arm64 cloud kernel has no pvpanic (`CONFIG_PVPANIC` unset), so a panic
/// does not reach QMP.
#[test]
fn an_arm64_guests_dump_is_triaged_by_drgn_naming_the_leaking_caches() {
    if !have_qemu(Arch::Aarch64) {
        return;
    }
    let cache = Cache::from_env().unwrap();
    let (desc, k) = arm64_kernel(&cache);
    let headers = kernel::headers::build_dir(&cache, &desc, &k).unwrap_or_else(|e| panic!("arm64 headers: {}", kernlab::util::error_causes(&e)));
    let (khm, _) = khm_ko(&cache, kernlab::payload::Target::of(&k, headers));
    let fw_cfg = std::fs::read(k.modules_dir().join("kernel/drivers/firmware/qemu_fw_cfg.ko")).unwrap();
    // kernlab's own churn, cross-built: each file created, written, closed
    // and unlinked in one process (a shell loop forks per file and took
    // minutes under TCG).
    let churn = std::fs::read(kernlab::payload::build_program(&cache, "churn", include_bytes!("../labs/workloads/churn.c"), Arch::Aarch64).unwrap()).unwrap();
    const FILES: u32 = 12_000;
    let init = format!(
        "#!/bin/busybox sh\nB=/bin/busybox\n$B mount -t proc proc /proc\n$B mount -t sysfs sysfs /sys\n$B insmod /qemu_fw_cfg.ko\n$B mkdir /t\n$B mount -t tmpfs tmpfs /t\n\
         $B insmod /khm.ko leak=1\n/churn -k files -d /t -n {FILES}\n\
         echo \"KERNLAB-LEAKED $($B grep leaked /proc/khm)\"\nwhile :; do $B sleep 60; done\n"
    );
    let d = tempfile::tempdir().unwrap();
    let t0 = std::time::Instant::now();
    let mut child = start(&cache, &k, vec![("/init", 0o755, init.into_bytes()), ("/khm.ko", 0o644, khm), ("/qemu_fw_cfg.ko", 0o644, fw_cfg), ("/churn", 0o755, churn)], d.path(), true);
    let console = || std::fs::read_to_string(d.path().join("console.log")).unwrap_or_default();
    // A bound, not a timing: the guest says when its files are done.
    let done = wait_until(Duration::from_secs(1200), || console().contains("KERNLAB-LEAKED") || child.try_wait().ok().flatten().is_some());
    let c = console();
    if !done || !c.contains("KERNLAB-LEAKED") {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the guest did not finish its {FILES} files (done: {done}); console:\n{c}");
    }
    let leaked: u64 = c.lines().find_map(|l| l.split("KERNLAB-LEAKED leaked ").nth(1)).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    eprintln!("arm64 guest: {FILES} files with khm leak=1 in {:.0} s (khm leaked {leaked})", t0.elapsed().as_secs_f64());
    assert!(leaked >= FILES as u64, "khm leaked {leaked} of {FILES} closes:\n{c}");

    let vmcore = d.path().join("vmcore");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t_dump = std::time::Instant::now();
    rt.block_on(async {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let qmp = kernlab::qmp::Qmp::connect(d.path(), "qmp.sock", Duration::from_secs(10), tx).await.unwrap();
        qmp.dump_guest_memory_as(&vmcore, Duration::from_secs(600), true).await.unwrap();
        let _ = qmp.quit().await;
    });
    eprintln!("arm64 dump: {} MiB in {:.1} s", std::fs::metadata(&vmcore).unwrap().len() >> 20, t_dump.elapsed().as_secs_f64());
    exit_within(&mut child, Duration::from_secs(60), "the arm64 guest after quit");
    assert_eq!(kernlab::triage::dump_arch(&vmcore), Some(Arch::Aarch64), "the dump's header says arm64");

    // `auto`: crash cannot read an arm64 dump here, so drgn does.
    let out = d.path().join("triage");
    let t_triage = std::time::Instant::now();
    let o = run(&["--json", "triage", vmcore.to_str().unwrap(), "--kernel", "debian-6.1.0-54-cloud-arm64", "--out", out.to_str().unwrap()]);
    let secs = t_triage.elapsed().as_secs_f64();
    assert_eq!(o.status.code(), Some(0), "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(&text(&o.stdout)).unwrap();
    let t = &v["triage"];
    assert_eq!((v["engine"].as_str(), t["engine"].as_str()), (Some("drgn"), Some("drgn")), "{v}");
    assert_valid_record_file(&out.join("triage.json"));
    let top: Vec<(String, u64, u64)> = t["top_caches"].as_array().unwrap().iter().map(|c| (c["name"].as_str().unwrap().to_string(), c["allocated"].as_u64().unwrap(), c["bytes"].as_u64().unwrap())).collect();
    eprintln!("arm64 drgn triage: {secs:.1} s (drgn itself {:.1} s); largest slab caches: {top:?}", t["secs"].as_f64().unwrap());
    let names: Vec<&str> = top.iter().take(5).map(|c| c.0.as_str()).collect();
    assert!(names.contains(&"dentry") && names.contains(&"shmem_inode_cache"), "the leaked files' dentries and tmpfs inodes lead: {names:?}");
    let dentry = top.iter().find(|c| c.0 == "dentry").unwrap();
    assert!(dentry.1 >= FILES as u64, "at least one dentry per leaked file: {dentry:?}");
    assert!(t["memory"].as_array().unwrap().iter().any(|m| m[0] == "SLAB" && m[1].as_u64().unwrap() > 0), "{t}");
    assert!(out.join("drgn.txt").is_file() && out.join("drgn.json").is_file());

    // crash, asked for by name, says why it cannot.
    let o = run(&["triage", vmcore.to_str().unwrap(), "--kernel", "debian-6.1.0-54-cloud-arm64", "--engine", "crash", "--out", d.path().join("t2").to_str().unwrap()]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(101), "{err}");
    assert!(err.contains("`crash` cannot read") && err.contains("arm64") && err.contains("triage.engine: drgn"), "{err}");
}
