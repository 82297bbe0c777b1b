//! Everything a run needs before QEMU starts: the kernel, the lab's payload
//! built against it (modules, workload programs), the accelerator, the boot
//! profile (machine and kernel image, each with its reason), the image and
//! the disks, and the VM's spec. Slow steps (downloads, builds, tools run
//! as child processes) run on blocking threads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::commands::{CHURN_C, CHURN_LABEL, GUEST_MODULES, SAMPLER_BIN, SAMPLER_C};
use super::events::Event;
use super::{blocking, exhaust, write, BootManifest, Ctx, RunError, CONSOLE, QMP_SOCKET};
use crate::image::{self, tree::Tree};
use crate::kernel::vmlinux::{self, BootImages, ImageFormat};
use crate::kernel::{self, Kernel};
use crate::lab::{self, Lab};
use crate::outcome::run::{ModuleEntry, PayloadEntry};
use crate::payload::{self, BuiltModule};
use crate::qemu::machine::{self as qmachine, Driver, KernelFacts, LabNeeds};
use crate::qemu::{self, accel, Accel, AccelChoice, AccelRequest, Device, HostTsc, Machine, MachineChoice, VmSpec};

/// The devices every VM gets (those its machine has). The sampler's
/// port is there whatever `monitor.sampler` says, so every lab's VM (and
/// the snapshot of it) has the same devices.
const DEVICES: [Device; 4] = [Device::Net, Device::Balloon, Device::Pvpanic, Device::SamplerPort];

/// What the run boots, and what it loads once the guest is up.
pub(super) struct Prepared {
    pub kernel: Kernel,
    /// The lab's modules and programs, as files at their guest paths.
    pub payload: Tree,
    /// The lab's modules, built, with their parameters.
    pub modules: Vec<(BuiltModule, BTreeMap<String, String>)>,
    pub requested: AccelRequest,
    pub choice: AccelChoice,
    pub profile: BootProfile,
    pub image: GuestImage,
    pub qemu_version: String,
    pub spec: VmSpec,
}

/// The guest's image as this run boots it.
pub(super) enum GuestImage {
    /// kernlab's initramfs; the run's keys (and payload) go on top of it.
    Minimal(image::BuiltImage),
    /// A Debian disk; the run boots an overlay of it, keys on a seed disk.
    Debian(image::debian::DebianImage),
    /// The user's disk; the run boots an overlay of it, keys through its
    /// cloud-init. With `kernel`, the lab's kernel boots it (`root=` and the
    /// Debian image's initramfs-tools initrd for that kernel); without, its
    /// own bootloader does.
    Disk { info: image::DiskInfo, kernel: Option<DiskKernel> },
}

/// How the lab's kernel boots a user's disk.
pub(super) struct DiskKernel {
    pub root: String,
    pub initrd: PathBuf,
}

impl GuestImage {
    /// What a snapshot's key names it by.
    pub fn id(&self) -> &str {
        match self {
            GuestImage::Minimal(i) => &i.sha256,
            GuestImage::Debian(d) => &d.key,
            GuestImage::Disk { info, .. } => info.path.to_str().unwrap_or("disk"),
        }
    }

    /// The disk a run's overlay is made over, for the images that boot one.
    pub fn overlay_base(&self) -> Option<image::DiskInfo> {
        match self {
            GuestImage::Minimal(_) => None,
            GuestImage::Debian(d) => Some(image::DiskInfo { path: d.disk.clone(), format: image::DiskFormat::Raw, virtual_size: 0 }),
            GuestImage::Disk { info, .. } => Some(info.clone()),
        }
    }
}

/// The root disk's overlay and the seed disk, in the run directory.
pub(super) const ROOT_DISK: &str = "root.qcow2";
pub(super) const SEED_DISK: &str = "seed.img";

/// Kernel, payload, boot profile, image, and the VM's spec.
pub(super) async fn prepare(ctx: &mut Ctx) -> Result<Prepared, RunError> {
    let lab_yaml = ctx.lab.to_yaml();
    write(&ctx.dir.join("lab.yaml"), lab_yaml.as_bytes())?;

    // The lab's own payload first: it needs no kernel, and a compile error
    // is the lab's to fix before anything is fetched or booted.
    let own = lab_payload(ctx).await?;

    // Kernel.
    let t = Instant::now();
    let (cache, d) = (ctx.cache.clone(), ctx.desc.clone());
    let kernel = blocking(move || kernel::fetch(&cache, &d)).await??;
    ctx.timings.kernel = t.elapsed().as_secs_f64();
    ctx.events.emit(Event::KernelReady {
        name: kernel.name.clone(),
        release: kernel.release.clone(),
        package_sha256: kernel.package_sha256.clone(),
        secs: ctx.timings.kernel,
    });
    ctx.manifest.kernel = Some(kernel.clone());

    let (payload, modules) = build_payload(ctx, &kernel, own).await?;
    ctx.manifest.modules = modules
        .iter()
        .map(|(m, p)| ModuleEntry { name: m.name.clone(), ko: m.ko.display().to_string(), sha256: m.sha256.clone(), origin: m.origin.clone(), built_by: m.how.to_string(), vermagic: m.vermagic.clone(), params: p.clone() })
        .collect();

    // Accelerator, kernel image and machine profile.
    let requested = ctx.lab.vm.accel;
    let marker = accel::kvm_failed_marker(&ctx.cache, &kernel.vmlinuz_sha256);
    let (host, kvm_failed) = blocking(move || (qemu::HostAccel::detect(), std::fs::read_to_string(&marker).ok())).await?;
    let choice = accel::choose_for_kernel(requested, &host, kvm_failed.as_deref(), kernel.arch());
    ctx.manifest.host_accel = Some(host);
    let images = if ctx.lab.vm.kernel_format == lab::KernelFormat::Bzimage {
        BootImages {
            bzimage: kernel.vmlinuz(),
            vmlinux: None,
            compression: None,
            pvh: None,
            note: "the lab asks for the bzImage (vm.kernel_format)".into(),
        }
    } else {
        let (cache, k) = (ctx.cache.clone(), kernel.clone());
        blocking(move || vmlinux::boot_images(&cache, &k)).await?
    };
    let (lab, k, accel) = (ctx.lab.clone(), kernel.clone(), choice.accel);
    let profile = blocking(move || boot_profile(&lab, &k, images, accel))
        .await?
        .map_err(|reason| RunError::Profile { kernel: kernel.name.clone(), reason })?;
    ctx.events.emit(Event::BootProfile {
        machine: profile.machine.machine.to_string(),
        kernel_image: profile.image.to_string(),
        reason: format!("{}; {}", profile.machine.reason, profile.image_reason),
    });
    let machine = profile.machine.machine;

    // Image (the SSH keys go on top of it, or on a seed disk, when the
    // guest boots), and disks.
    let t = Instant::now();
    let (cache, k) = (ctx.cache.clone(), kernel.clone());
    let devices = devices(&ctx.lab, machine);
    let kdump = exhaust::kdump_wanted(&ctx.lab);
    let image = match &ctx.lab.image {
        lab::Image::Minimal => {
            let early: Vec<&'static str> = Device::Net.driver_modules(machine).to_vec();
            let late: Vec<&'static str> = devices.iter().flat_map(|d| d.driver_modules(machine).iter().copied()).collect();
            let extra: Vec<&'static str> = if kdump { vec!["/usr/sbin/kexec"] } else { vec![] };
            GuestImage::Minimal(blocking(move || image::build_minimal(&cache, &k, &early, &late, &extra)).await??)
        }
        lab::Image::Debian(d) => GuestImage::Debian(debian_image(ctx, &kernel, image::debian::Recipe { packages: d.packages.clone() }).await?),
        lab::Image::Disk(d) => {
            let base = ctx.lab_file.parent().map(Path::to_path_buf).unwrap_or_default();
            let path = base.join(&d.disk);
            let info = match blocking(move || image::disk::inspect(&path)).await? {
                Ok(info) => info,
                Err(e) => {
                    let (line, column) = ctx.lab.locations.position("image.disk");
                    return Err(RunError::Lab(lab::LabError::Invalid {
                        file: ctx.lab_file.clone(),
                        line,
                        column,
                        field: "image.disk".into(),
                        message: crate::util::error_chain(&e),
                    }));
                }
            };
            let kernel = match &d.root {
                None => None,
                // The lab's kernel needs an initramfs with its own disk
                // drivers: the one the Debian image makes for it.
                Some(root) => Some(DiskKernel { root: root.clone(), initrd: debian_image(ctx, &kernel, image::debian::Recipe::default()).await?.initrd }),
            };
            GuestImage::Disk { info, kernel }
        }
    };
    let dump_disk = match (&image, kdump) {
        (GuestImage::Minimal(_), true) => Some(exhaust::prepare_disk(ctx, &kernel).await?),
        // The distro's kdump-tools brings its own capture kernel: the dump
        // disk is an empty /var/crash.
        (_, true) => Some(exhaust::prepare_crash_disk(ctx).await?),
        (_, false) => None,
    };
    let churn_disk = match ctx.lab.workload.as_ref().and_then(|w| w.churn.as_ref()) {
        Some(c) if c.fs == lab::ChurnFs::Ext4 => {
            let path = ctx.dir.join("churn.img");
            let (p, size) = (path.clone(), c.disk);
            blocking(move || crate::dump::make_ext4(&p, size, CHURN_LABEL)).await??;
            Some(path)
        }
        _ => None,
    };
    ctx.timings.image = t.elapsed().as_secs_f64();
    let (bytes, image_modules) = match &image {
        GuestImage::Minimal(i) => (i.size, i.modules.clone()),
        GuestImage::Debian(d) => (d.bytes, vec![]),
        GuestImage::Disk { info, .. } => (info.virtual_size, vec![]),
    };
    ctx.events.emit(Event::ImageReady { sha256: image.id().to_string(), bytes, modules: image_modules.len(), secs: ctx.timings.image });
    ctx.manifest.image = Some(ctx.lab.image.kind().to_string());
    ctx.manifest.image_sha256 = Some(image.id().to_string());
    ctx.manifest.image_bytes = Some(bytes);
    ctx.manifest.image_modules = image_modules;
    if let GuestImage::Debian(d) = &image {
        ctx.manifest.image_packages = d.packages.clone();
    }
    let (initrd, root, disk_words): (PathBuf, Option<String>, Vec<String>) = match &image {
        GuestImage::Minimal(_) => ("initrd.cpio".into(), None, vec![]),
        // kernlab.seed: the image's kernlab-seed unit installs the run's
        // keys from the seed disk.
        GuestImage::Debian(d) => (d.initrd.clone(), Some(format!("LABEL={}", image::debian::ROOT_LABEL)), vec!["kernlab.seed".into()]),
        GuestImage::Disk { kernel: Some(k), .. } => (k.initrd.clone(), Some(k.root.clone()), vec![]),
        GuestImage::Disk { kernel: None, .. } => (PathBuf::new(), None, vec![]),
    };
    let firmware_boot = matches!(&image, GuestImage::Disk { kernel: None, .. });
    let mut words = extra_cmdline(&ctx.lab);
    words.extend(disk_words);
    let disk_boot = image.overlay_base().is_some();

    // QEMU.
    let qemu_bin = qemu::binary(kernel.arch());
    let bin = qemu_bin.clone();
    let qemu_version = blocking(move || qemu::qemu_version(&bin)).await?.map_err(RunError::QemuVersion)?;
    ctx.manifest.qemu_version = Some(qemu_version.clone());
    let spec = VmSpec {
        qemu: qemu_bin,
        arch: kernel.arch(),
        name: format!("kernlab-{}", ctx.lab.name),
        accel: choice.accel,
        machine,
        memory_mib: ctx.lab.vm.memory / (1024 * 1024),
        cpus: ctx.lab.vm.cpus,
        kernel: profile.path.clone(),
        initrd,
        cmdline: qemu::argv::cmdline(&qemu::CmdlineOpts { arch: kernel.arch(), fast_boot: ctx.lab.vm.fast_boot, machine, tsc_khz: profile.host_tsc.as_ref().map(|t| t.khz), root }, &words),
        firmware_boot,
        qmp_socket: QMP_SOCKET.into(),
        console_log: CONSOLE.into(),
        ssh_port: 0,
        devices,
        dump_disk,
        churn_disk,
        root_disk: disk_boot.then(|| ROOT_DISK.into()),
        seed_disk: disk_boot.then(|| SEED_DISK.into()),
        pause_on_panic: ctx.lab.dumps(),
        snapshot: false,
        incoming: None,
    };
    ctx.manifest.boot = Some(BootManifest {
        machine,
        machine_reason: profile.machine.reason.clone(),
        kernel_image: profile.image,
        kernel_image_path: profile.path.display().to_string(),
        kernel_image_reason: profile.image_reason.clone(),
        images: profile.images.clone(),
        fast_boot: ctx.lab.vm.fast_boot,
        fast_boot_flags: if ctx.lab.vm.fast_boot { qemu::argv::FAST_BOOT_FLAGS.iter().map(|s| s.to_string()).collect() } else { vec![] },
        host_tsc: profile.host_tsc.clone(),
        attempts: 0,
        retries: vec![],
        snapshot: None,
    });
    Ok(Prepared { kernel, payload, modules, requested, choice, profile, image, qemu_version, spec })
}

/// The Debian disk for `kernel`, built or found, with an event for each
/// stage built now.
async fn debian_image(ctx: &Ctx, kernel: &Kernel, recipe: image::debian::Recipe) -> Result<image::debian::DebianImage, RunError> {
    let (cache, k) = (ctx.cache.clone(), kernel.clone());
    let built = blocking(move || image::debian::build(&cache, &k, &recipe)).await??;
    for (stage, secs) in &built.built {
        ctx.events.emit(Event::ImageBuilt { stage: stage.clone(), secs: *secs });
    }
    Ok(built)
}

/// The lab's `payload` entries, built or read, in a tree at their guest
/// paths; each listed in the manifest. A compile error is the lab's error,
/// at the entry's `src`.
async fn lab_payload(ctx: &mut Ctx) -> Result<Tree, RunError> {
    let base = ctx.lab_file.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut tree = Tree::new();
    for (i, item) in ctx.lab.payload.clone().into_iter().enumerate() {
        let (cache, src, dst) = (ctx.cache.clone(), base.join(&item.src), item.dst.clone());
        let (res, t) = blocking(move || {
            let r = payload::install(&cache, &src, &dst, &mut tree);
            (r, tree)
        })
        .await?;
        tree = t;
        let installed = match res {
            Ok(i) => i,
            Err(payload::PayloadError::ProgramBuild { source_file, output }) => {
                let field = format!("payload[{i}].src");
                let (line, column) = ctx.lab.locations.position(&field);
                return Err(RunError::Lab(lab::LabError::Invalid {
                    file: ctx.lab_file.clone(),
                    line,
                    column,
                    field,
                    message: format!("building `{}` failed:\n{output}", source_file.display()),
                }));
            }
            Err(e) => return Err(e.into()),
        };
        ctx.manifest.payload.push(PayloadEntry { src: item.src.display().to_string(), dst: item.dst, sha256: installed.sha256, built: installed.built });
    }
    Ok(tree)
}

/// The lab's payload, built against `kernel`: its modules, entry by entry
/// (each later entry against the earlier ones' `Module.symvers`, each
/// entry's parameters assigned to its modules and checked against what
/// they declare), and the churn program, added to `payload` (the lab's own
/// entries).
async fn build_payload(ctx: &Ctx, kernel: &Kernel, mut payload: Tree) -> Result<(Tree, Vec<(BuiltModule, BTreeMap<String, String>)>), RunError> {
    let mut modules: Vec<(BuiltModule, BTreeMap<String, String>)> = Vec::new();
    if !ctx.lab.modules.is_empty() {
        let needs_headers = ctx.lab.modules.iter().any(|m| m.source.is_some());
        let headers = if needs_headers {
            let (cache, d, k) = (ctx.cache.clone(), ctx.desc.clone(), kernel.clone());
            blocking(move || kernel::headers::build_dir(&cache, &d, &k)).await??
        } else {
            PathBuf::new()
        };
        let target = payload::Target::of(kernel, headers);
        let base = ctx.lab_file.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut symvers: Vec<PathBuf> = Vec::new();
        for (i, m) in ctx.lab.modules.clone().into_iter().enumerate() {
            let t = Instant::now();
            let (cache, tg, b, mm, sv) = (ctx.cache.clone(), target.clone(), base.clone(), m.clone(), symvers.clone());
            let built = blocking(move || payload::build_entry(&cache, &tg, &b, &mm, &sv)).await??;
            symvers.extend(built.symvers.iter().cloned());
            for b in &built.modules {
                ctx.events.emit(Event::ModuleBuilt { name: b.name.clone(), sha256: b.sha256.clone(), cached: b.cached, secs: t.elapsed().as_secs_f64() });
            }
            if !built.ignored.is_empty() {
                tracing::info!("modules[{i}]: dkms.conf variables that only matter to an installing dkms, ignored: {}", built.ignored.join(", "));
            }
            // insmod ignores parameters a module does not have (with a
            // warning in dmesg); a typo in a lab must not pass silently.
            let declared: Vec<(String, Vec<String>)> = built.modules.iter().map(|b| (b.name.clone(), b.params.clone())).collect();
            let params = payload::kmod::assign_params(&m.params, &declared).map_err(|message| {
                let field = format!("modules[{i}].params");
                let (line, column) = ctx.lab.locations.position(&field);
                RunError::Lab(lab::LabError::Invalid { file: ctx.lab_file.clone(), line, column, field, message })
            })?;
            for (b, p) in built.modules.into_iter().zip(params) {
                if modules.iter().any(|(o, _)| o.name == b.name) {
                    let field = format!("modules[{i}]");
                    let (line, column) = ctx.lab.locations.position(&field);
                    return Err(RunError::Lab(lab::LabError::Invalid { file: ctx.lab_file.clone(), line, column, field, message: format!("module `{}` is loaded by an earlier entry too", b.name) }));
                }
                let data = std::fs::read(&b.ko).map_err(|source| RunError::Write { path: b.ko.clone(), source })?;
                payload.file(&format!("{GUEST_MODULES}/{}.ko", b.name), 0o644, data);
                modules.push((b, p));
            }
        }
    }
    if ctx.lab.workload.as_ref().is_some_and(|w| w.churn.is_some()) {
        let cache = ctx.cache.clone();
        let arch = kernel.arch();
        let churn = blocking(move || payload::build_program(&cache, "churn", CHURN_C.as_bytes(), arch)).await??;
        let data = std::fs::read(&churn).map_err(|source| RunError::Write { path: churn.clone(), source })?;
        payload.file("/usr/bin/churn", 0o755, data);
    }
    if ctx.lab.monitor.sampler == lab::SamplerKind::Stream {
        // Without it the run samples by command, as before: a host that
        // cannot build static programs loses only the quieter sampler.
        let cache = ctx.cache.clone();
        let arch = kernel.arch();
        match blocking(move || payload::build_program(&cache, "kernlab-sampler", SAMPLER_C.as_bytes(), arch)).await? {
            Ok(bin) => {
                let data = std::fs::read(&bin).map_err(|source| RunError::Write { path: bin.clone(), source })?;
                payload.file(SAMPLER_BIN, 0o755, data);
            }
            Err(e) => tracing::warn!("the guest sampler cannot be built, sampling by SSH command instead: {}", crate::util::error_chain(&e)),
        }
    }
    Ok((payload, modules))
}

/// The devices a lab's VM gets on `machine`: the base set that the machine
/// has, plus the dump disk for kdump and the churn disk.
fn devices(lab: &Lab, machine: Machine) -> Vec<Device> {
    let mut d: Vec<Device> = match lab.image.boots_disk() {
        false => vec![],
        true => vec![Device::RootDisk, Device::SeedDisk],
    };
    d.extend(DEVICES.iter().copied().filter(|d| d.available_on(machine)));
    if exhaust::kdump_wanted(lab) {
        d.push(Device::DumpDisk);
    }
    if lab.workload.as_ref().and_then(|w| w.churn.as_ref()).is_some_and(|c| c.fs == lab::ChurnFs::Ext4) {
        d.push(Device::ChurnDisk);
    }
    d
}

/// A run's kernel image and machine, each with its reason.
pub(super) struct BootProfile {
    pub machine: MachineChoice,
    pub image: ImageFormat,
    pub path: PathBuf,
    pub image_reason: String,
    pub images: BootImages,
    pub host_tsc: Option<HostTsc>,
}

/// Puts the kernel facts, the lab's needs and the host's TSC into the pure
/// machine choice, then picks the image that machine boots. Blocking (it
/// reads the kernel's config and may measure the TSC).
fn boot_profile(lab: &Lab, kernel: &Kernel, images: BootImages, accel: Accel) -> Result<BootProfile, String> {
    let config = std::fs::read_to_string(kernel.config()).unwrap_or_default();
    let virtio_mmio = match vmlinux::config_enabled(&config, "CONFIG_VIRTIO_MMIO") {
        Some('y') => Driver::BuiltIn,
        Some(_) => Driver::Module,
        None => Driver::Absent,
    };
    let facts = KernelFacts { vmlinux: images.vmlinux.as_ref().map(|_| ()).ok_or_else(|| images.note.clone()), virtio_mmio };
    let needs = LabNeeds { requested: lab.vm.machine, panic_devices: lab.dumps(), accel, disk_boot: lab.image.boots_disk(), arch: kernel.arch() };
    let host_tsc = HostTsc::detect();
    let machine = qmachine::choose(&facts, &needs, host_tsc.as_ref().map(|t| t.khz)).map_err(|e| e.to_string())?;
    let (image, image_reason) = match (&images.vmlinux, lab.vm.kernel_format) {
        _ if !kernel.arch().has_pc() => (ImageFormat::Image, images.note.clone()),
        (_, lab::KernelFormat::Bzimage) => (ImageFormat::Bzimage, "the lab asks for the bzImage (vm.kernel_format)".to_string()),
        (Some(_), _) => (ImageFormat::Vmlinux, images.note.clone()),
        (None, lab::KernelFormat::Vmlinux) => return Err(format!("vm.kernel_format: vmlinux is not possible here: {}", images.note)),
        (None, _) => (ImageFormat::Bzimage, images.note.clone()),
    };
    let path = match image {
        ImageFormat::Vmlinux => images.vmlinux.clone().expect("matched above"),
        ImageFormat::Bzimage | ImageFormat::Image => images.bzimage.clone(),
    };
    Ok(BootProfile { machine, image, path, image_reason, images, host_tsc })
}

/// Kernel command-line words from the lab, plus `slub_nomerge` for leak labs
/// (so each slab cache is counted on its own) and the crash kernel
/// reservation for kdump labs.
fn extra_cmdline(lab: &Lab) -> Vec<String> {
    let mut words = exhaust::cmdline(lab);
    words.extend(lab.vm.cmdline.iter().cloned());
    if lab.leak.as_ref().is_some_and(|l| l.slub_nomerge) && !words.iter().any(|w| w == "slub_nomerge") {
        words.push("slub_nomerge".into());
    }
    words
}
