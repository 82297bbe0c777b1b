//! The sections of a lab besides `leak` and `exhaustion`: the VM, the
//! workload and its churn, modules, monitoring, the image.

use super::*;

/// Virtual machine settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Vm {
    /// Guest memory in bytes; written as a size (`512M`, `1GiB`) or integer
    /// bytes. Default: 512 MiB; 128 MiB..=64 GiB.
    #[serde(with = "units::size")]
    pub memory: u64,
    /// Virtual CPUs. Default: 1; 1..=64.
    #[serde(deserialize_with = "units::count::deserialize")]
    pub cpus: u32,
    /// Accelerator: `auto` (KVM when usable, else TCG), `kvm` or `tcg`.
    /// Default: `auto`.
    pub accel: AccelRequest,
    /// Extra kernel command-line words, appended after kernlab's own. Each
    /// non-empty, without whitespace or control characters, and not
    /// `console=`, `init=` or `rdinit=` (kernlab owns those). Default: none.
    pub cmdline: Vec<String>,
    /// How long to wait for the guest to come up, per attempt (a boot that
    /// misses it is tried once more). Default: 60s; 5s..=10m.
    #[serde(with = "units::duration")]
    pub boot_timeout: Duration,
    /// QEMU machine profile: `auto` (microvm where the kernel and the lab
    /// allow it, else pc), `pc` or `microvm`. Default: `auto`.
    pub machine: MachineRequest,
    /// Which kernel image to boot: `auto` (the uncompressed PVH vmlinux
    /// when the kernel has CONFIG_PVH, else the bzImage), `bzimage` or
    /// `vmlinux`. Default: `auto`.
    pub kernel_format: KernelFormat,
    /// Kernel command-line flags that shorten boots under TCG
    /// (`tsc=reliable no_timer_check cryptomgr.notests`). Default: true.
    pub fast_boot: bool,
    /// Restore a saved snapshot of the booted guest instead of booting
    /// (`auto`: when the VM can have one, saving it on the first run), or
    /// always boot cold (`off`). Default: `auto`.
    pub snapshot: SnapshotPolicy,
}

impl Default for Vm {
    fn default() -> Self {
        Vm {
            memory: 512 * MIB,
            cpus: 1,
            accel: AccelRequest::Auto,
            cmdline: Vec::new(),
            boot_timeout: Duration::from_secs(60),
            machine: MachineRequest::Auto,
            kernel_format: KernelFormat::Auto,
            fast_boot: true,
            snapshot: SnapshotPolicy::Auto,
        }
    }
}

/// Whether a run may restore (and save) a snapshot of the booted guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotPolicy {
    /// Restore the cached snapshot for this kernel, image and VM shape, or
    /// boot cold and save one, when the VM can have one.
    #[default]
    Auto,
    /// Always boot cold, with this run's own keys.
    Off,
}

/// Which kernel image a VM boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KernelFormat {
    /// The PVH vmlinux when the kernel has one, else the bzImage.
    #[default]
    Auto,
    Bzimage,
    Vmlinux,
}

/// The workload phase: the built-in file churn and/or commands run in order
/// in one guest shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// The built-in churn workload of files, sockets or pipes (`labs/workloads/churn.c`), run
    /// before and alongside the commands. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churn: Option<Churn>,
    /// Guest shell commands, each non-empty. At least one unless `churn` is
    /// given: a `workload` section must do something.
    #[serde(default)]
    pub commands: Vec<String>,
    /// How long the phase lasts; commands still running at the end are
    /// stopped. Default: 30s; 1s..=7d.
    #[serde(default = "default_workload_duration", with = "units::duration")]
    pub duration: Duration,
    /// An absolute guest path the workload keeps its cumulative operation
    /// count in (one decimal number; write it atomically: a temporary file
    /// and `mv`), sampled like the churn's count so that rates are per
    /// operation. With a `churn`, this count wins and the churn is only
    /// background load. The commands' `kernlab-ops N` lines write to it
    /// too. Default: none (the churn's count, or the commands'
    /// `kernlab-ops N` lines, else no count: rates per second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops: Option<String>,
}

impl Workload {
    /// The guest file the run samples the operation count from: the lab's
    /// `ops`, else the one the churn and the `kernlab-ops` lines write.
    pub fn ops_file(&self) -> &str {
        self.ops.as_deref().unwrap_or(crate::sample::parse::OPS_FILE)
    }

    /// Whether the commands' output is filtered for `kernlab-ops N` lines:
    /// when there are commands and no churn owns the count file (a churn
    /// without `ops` does, and its count is the lab's).
    pub fn counts_lines(&self) -> bool {
        !self.commands.is_empty() && (self.churn.is_none() || self.ops.is_some())
    }
}

/// The churn workload: each operation creates a unique file (optionally
/// writes to it), closes it and unlinks it, or closes a socket for the last
/// time (see [`ChurnKind`]): the patterns that exercise a close hook on
/// every file's last reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Churn {
    /// What is churned: `files` (default), `sockets` (socketpair(AF_UNIX)
    /// and TCP on the guest's loopback; one operation = one socket's last
    /// close), `mixed` (both, interleaved; see `sockets`) or `pipes`
    /// (pipe() or pipe2(), both ends closed; one operation per pipe).
    pub kind: ChurnKind,
    /// With `kind: mixed`, the percentage of operations that close a
    /// socket; the rest are files. Default: 50; 1..=99.
    pub sockets: u8,
    /// Where the files live: `tmpfs`, mounted with `nr_inodes=0` so leaked
    /// inodes cannot make it run out of inodes before memory, or `ext4` on
    /// a virtio disk kernlab attaches (one inode per 2 KiB, so leaked,
    /// unlinked-but-pinned inodes do not exhaust the disk first). Default: tmpfs.
    pub fs: ChurnFs,
    /// Size of the ext4 disk (sparse on the host). Default: 2GiB; 64MiB..=64GiB.
    #[serde(with = "units::size")]
    pub disk: u64,
    /// Operations per second; 0 = flat out. Default: 0.
    pub rate: u64,
    /// Stop after this many operations; 0 = run for the workload's duration. Default: 0.
    pub count: u64,
    /// Bytes written to each file; default 0.
    #[serde(with = "units::size")]
    pub write: u64,
}

impl Default for Churn {
    fn default() -> Self {
        Churn { kind: ChurnKind::Files, sockets: 50, fs: ChurnFs::Tmpfs, disk: 2 * GIB, rate: 0, count: 0, write: 0 }
    }
}

impl Churn {
    /// Whether the churn makes files (and so needs its file system).
    pub fn uses_files(&self) -> bool {
        matches!(self.kind, ChurnKind::Files | ChurnKind::Mixed)
    }
}

/// What the churn workload creates and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChurnKind {
    /// One operation = a file created, written, closed and unlinked.
    #[default]
    Files,
    /// One operation = one socket's last close: socketpair(AF_UNIX) (two
    /// per pair) and TCP connect/accept on 127.0.0.1 (two per connection).
    Sockets,
    /// Half the operations files, half sockets.
    Mixed,
    /// One operation = a pipe made (pipe() and pipe2(O_CLOEXEC) in turn)
    /// and both its ends closed: the pipefs inode and its two files.
    Pipes,
}

impl ChurnKind {
    /// The churn program's `-k` word.
    pub fn as_str(self) -> &'static str {
        match self {
            ChurnKind::Files => "files",
            ChurnKind::Sockets => "sockets",
            ChurnKind::Mixed => "mixed",
            ChurnKind::Pipes => "pipes",
        }
    }
}

/// File systems the churn workload can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChurnFs {
    #[default]
    Tmpfs,
    Ext4,
}

/// A file, directory or program the lab puts into the guest before `setup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadItem {
    /// Relative to the lab file. A C source file (`*.c`) or a directory
    /// with a `Makefile` is built on the host for the guest (statically);
    /// any other file or directory is copied as is, modes kept.
    pub src: PathBuf,
    /// Absolute guest path it is installed at (a built C file: the program
    /// itself; a built directory: the directory after `make`).
    pub dst: String,
}

/// A kernel module under test: a source tree kernlab builds against the run
/// kernel's headers (its own build system, a `dkms.conf`, or the lab's
/// `build` commands), or a vendor's prebuilt `.ko`. One entry may load
/// several modules; entries load in list order and unload in reverse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Module {
    /// The module's source tree, relative to the lab file: copied whole
    /// (sub-directories included; `.git`, build outputs and what the
    /// tree's `.gitignore` files ignore left out) and built out of tree.
    /// A tree with a `dkms.conf` is built as dkms builds it (see
    /// docs/modules.md). Absent for a prebuilt `ko`. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PathBuf>,
    /// Build commands, each run by bash at the top of the scratch copy,
    /// with `KDIR` (the kernel's headers), `KVER` (its release) and
    /// `KBUILD_EXTRA_SYMBOLS` (the earlier entries' `Module.symvers`) in
    /// the environment. Default: `make -C "$KDIR" M="$PWD" modules`, or
    /// the `dkms.conf`'s `MAKE` when the tree has one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub build: Vec<String>,
    /// The modules to load, in order. With `source`: built objects,
    /// relative to the tree (default: the dkms.conf's `BUILT_MODULE_NAME`s,
    /// else every `.ko` the build made, dependencies first). Without: a
    /// vendor's prebuilt `.ko` files, relative to the lab file, loaded as
    /// they are once their `vermagic` matches the run kernel. One path or a
    /// list. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "one_or_many")]
    pub ko: Vec<PathBuf>,
    /// Patches applied with `patch -p1` to the scratch copy before the
    /// build, in order, relative to the lab file. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<PathBuf>,
    /// Module parameters for insmod, `name: value`. Names are C
    /// identifiers; in an entry that loads several modules a name goes to
    /// the one module that declares it, or is written `module.name`.
    /// Values are passed as one shell word each. Default: none.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

impl Module {
    /// A module built from the tree at `source` with its own build system.
    pub fn tree(source: impl Into<PathBuf>) -> Module {
        Module { source: Some(source.into()), build: Vec::new(), ko: Vec::new(), patches: Vec::new(), params: BTreeMap::new() }
    }

    /// The entry with its paths relative to the lab file (`source`,
    /// `patches`, a prebuilt `ko`) made absolute against `base` (the lab
    /// file's directory), for a lab written elsewhere.
    pub fn absolute(&mut self, base: &Path) {
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = std::fs::canonicalize(base.join(&*p)).unwrap_or_else(|_| base.join(&*p));
            }
        };
        if let Some(s) = self.source.as_mut() {
            abs(s);
        } else {
            self.ko.iter_mut().for_each(abs);
        }
        self.patches.iter_mut().for_each(abs);
    }
}

/// One path, or a list of them.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(PathBuf),
        Many(Vec<PathBuf>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(p) => vec![p],
        OneOrMany::Many(v) => v,
    })
}
/// Sampling of guest memory state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Monitor {
    /// Sampling interval. Default: 2s; 100ms..=1h, and at most
    /// `workload.duration` when there is a workload (else it never samples).
    #[serde(with = "units::duration")]
    pub interval: Duration,
    /// What to sample; non-empty, no duplicates. Default: all four.
    pub sources: Vec<Source>,
    /// Drop reclaimable caches (`echo 2 > /proc/sys/vm/drop_caches`) before
    /// each sample, so what is left is what is held. Default: false.
    pub reclaim: bool,
    /// Flush every cache's per-CPU slabs (`/sys/kernel/slab/*/shrink`)
    /// before each sample. SLUB counts the free objects of a CPU's slab as
    /// active, so without it a cache's count moves in whole slabs (16 or
    /// 32 objects at a time) and a rare leak hides in the steps; with it
    /// the count is exact. The workload is paused (SIGSTOP to its process
    /// group) from the flush to the end of the read, else its next
    /// allocation takes a fresh CPU slab that counts whole. Default: true.
    pub shrink: bool,
    /// Wait this long with the workload paused before each sample: objects
    /// in flight and frees waiting for an RCU grace period settle. 0s = no
    /// wait (the workload is still paused for the read when `shrink` is
    /// on). Default: 0s (100ms did not measurably lower the noise of the
    /// tmpfs churn's dentry or lsm_inode_cache); at most half the interval.
    #[serde(with = "units::duration")]
    pub quiesce: Duration,
    /// How the guest is sampled. `stream`: one long-lived guest process
    /// (`kernlab-sampler`, built by kernlab) started once per run over one
    /// SSH channel, which opens its files once and answers each sample
    /// request with a record, so sampling opens no session, shell or file
    /// per sample; if the stream breaks, that sample and the next are
    /// taken by `exec` until it is restarted. `exec`: a fresh SSH command
    /// per sample (a shell that opens every file again). Default: stream.
    pub sampler: SamplerKind,
}

/// `monitor.sampler`: see [`Monitor::sampler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SamplerKind {
    #[default]
    Stream,
    Exec,
}

impl Default for Monitor {
    fn default() -> Self {
        Monitor {
            interval: Duration::from_secs(2),
            sources: Source::ALL.to_vec(),
            reclaim: false,
            shrink: true,
            quiesce: Duration::ZERO,
            sampler: SamplerKind::Stream,
        }
    }
}

/// Guest root filesystem image.
///
/// In a lab file: `minimal`, `debian`, `{debian: {packages: [...]}}`, or
/// `{disk: PATH}` (with `root: DEVICE` to boot the lab's kernel on it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Image {
    /// The small initramfs-based image kernlab builds itself.
    #[default]
    Minimal,
    /// A Debian 12 disk built from the machine's apt sources: systemd,
    /// openssh-server, kdump-tools, with the lab kernel's modules.
    Debian(DebianImage),
    /// The user's own disk image, booted through a throwaway overlay.
    Disk(DiskImage),
}

/// `image: {debian: {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebianImage {
    /// Packages installed on top of the base recipe (the product's
    /// dependencies, debugging tools). Each a Debian package name.
    /// Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
}

/// `image: {disk: PATH, root: DEVICE}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskImage {
    /// The disk image (qcow2 or raw), relative to the lab file. Never
    /// written: the run boots a qcow2 overlay of it.
    pub disk: PathBuf,
    /// Without it, the disk boots as it is: firmware, its own bootloader
    /// and kernel. With it, the lab's `kernel` boots with `root=ROOT`
    /// (e.g. `/dev/vda1`, `LABEL=root`) and an initramfs kernlab makes for
    /// that kernel. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
}

impl Image {
    /// The guest runs from a root disk (Debian's or the user's) with a
    /// distro userland, rather than kernlab's initramfs.
    pub fn boots_disk(&self) -> bool {
        !matches!(self, Image::Minimal)
    }

    /// The image's name in reports and snapshot keys.
    pub fn kind(&self) -> &'static str {
        match self {
            Image::Minimal => "minimal",
            Image::Debian(_) => "debian",
            Image::Disk(_) => "disk",
        }
    }
}

/// The shapes `image:` takes in a lab file.
#[derive(Serialize)]
#[serde(untagged)]
enum ImageRepr<'a> {
    Name(&'a str),
    Debian { debian: &'a DebianImage },
    Disk(&'a DiskImage),
}

impl Serialize for Image {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Image::Minimal => ImageRepr::Name("minimal"),
            Image::Debian(d) if d.packages.is_empty() => ImageRepr::Name("debian"),
            Image::Debian(d) => ImageRepr::Debian { debian: d },
            Image::Disk(d) => ImageRepr::Disk(d),
        }
        .serialize(s)
    }
}

/// What `image:` may be, for error messages.
const IMAGE_SHAPES: &str = "`minimal`, `debian`, `{debian: {packages: [...]}}` or `{disk: PATH}` (with an optional `root`)";

impl<'de> Deserialize<'de> for Image {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ImageVisitor)
    }
}

/// Reads `image:` from the YAML events themselves (not through a generic
/// value), so an error inside it (an unknown key, a bad `packages` entry)
/// carries that key's or value's own position and field path.
struct ImageVisitor;

impl<'de> serde::de::Visitor<'de> for ImageVisitor {
    type Value = Image;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(IMAGE_SHAPES)
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Image, E> {
        match s {
            "minimal" => Ok(Image::Minimal),
            "debian" => Ok(Image::Debian(DebianImage::default())),
            _ => Err(E::custom(format!("unknown image `{s}`: expected {IMAGE_SHAPES}"))),
        }
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Image, A::Error> {
        use serde::de::Error;
        let (mut debian, mut disk, mut root) = (None, None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                // `debian:` with nothing after it is the base recipe.
                "debian" => debian = Some(map.next_value::<Option<DebianImage>>()?.unwrap_or_default()),
                "disk" => disk = Some(map.next_value::<PathBuf>()?),
                "root" => root = Some(map.next_value::<String>()?),
                other => return Err(A::Error::unknown_field(other, &["debian", "disk", "root"])),
            }
        }
        match (debian, disk, root) {
            (Some(d), None, None) => Ok(Image::Debian(d)),
            (Some(_), _, _) => Err(A::Error::custom("`debian` and `disk` are two different images: give one (`root` goes with `disk`)")),
            (None, Some(disk), root) => Ok(Image::Disk(DiskImage { disk, root })),
            (None, None, Some(_)) => Err(A::Error::custom("`root` needs a `disk` beside it: `{disk: PATH, root: DEVICE}`")),
            (None, None, None) => Err(A::Error::custom(format!("empty mapping: expected {IMAGE_SHAPES}"))),
        }
    }
}

/// A monitor data source in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// `/proc/slabinfo`.
    Slabinfo,
    /// `/proc/meminfo`.
    Meminfo,
    /// `/proc/sys/fs/dentry-state`.
    DentryState,
    /// virtio-balloon statistics.
    Balloon,
}

impl Source {
    pub const ALL: [Source; 4] = [
        Source::Slabinfo,
        Source::Meminfo,
        Source::DentryState,
        Source::Balloon,
    ];

    /// The name used in lab files.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Slabinfo => "slabinfo",
            Source::Meminfo => "meminfo",
            Source::DentryState => "dentry-state",
            Source::Balloon => "balloon",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Image::Disk(d) => write!(f, "disk {}", d.disk.display()),
            other => f.write_str(other.kind()),
        }
    }
}




/// The accelerator a lab asks for (`vm.accel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccelRequest {
    /// KVM when `/dev/kvm` is usable, else TCG.
    #[default]
    Auto,
    Kvm,
    Tcg,
}

impl fmt::Display for AccelRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccelRequest::Auto => "auto",
            AccelRequest::Kvm => "kvm",
            AccelRequest::Tcg => "tcg",
        })
    }
}

/// The machine profile a lab asks for (`vm.machine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MachineRequest {
    /// microvm where the kernel and the lab allow it, else pc.
    #[default]
    Auto,
    Pc,
    Microvm,
}
