//! Kernels from other sources than Debian's archive, booted for real: an
//! RPM kernel (SUSE's layout: `kernel-default` with `/boot/vmlinuz-<rel>`
//! and `/lib/modules/<rel>`, `kernel-default-devel` with the build tree
//! under `/usr/src/linux-<ver>-obj/x86_64/default`, `kernel-devel` with the
//! source tree under `/usr/src/linux-<ver>`) and a local directory. Both
//! are made by the test from the Debian cloud kernel the suite already
//! uses, its files repackaged with the `rpm` crate; each lab builds the
//! hook module against the kernel's own build tree, boots, loads it and
//! runs a command. One VM at a time; each run has its own fresh cache.

mod common;
use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use kernlab::cache::Cache;
use kernlab::kernel::{self, Kernel, Registry, DEFAULT_KERNEL};
use rpm::{BuildConfig, CompressionWithLevel, FileOptions, PackageBuilder};

static ONE_VM_AT_A_TIME: Mutex<()> = Mutex::new(());

const RELEASE: &str = "6.1.0-54-cloud-amd64";
/// The version in SUSE's directory names (`linux-<ver>`, `linux-<ver>-obj`).
const VER: &str = "6.1.0-54";

/// The Debian kernel in the machine's cache, and its headers' build directory.
fn debian() -> (Kernel, PathBuf) {
    let cache = Cache::from_env().unwrap();
    let desc = Registry::builtin().get(DEFAULT_KERNEL).unwrap().clone();
    let k = kernel::fetch(&cache, &desc).unwrap();
    assert_eq!(k.release, RELEASE);
    let build = kernel::headers::build_dir(&cache, &desc, &k).unwrap();
    (k, build)
}

/// What to do with a symlink met while packaging a tree.
enum Link {
    /// A link in the package with this target.
    Keep(String),
    /// Package what it points at, under the link's name.
    Follow,
}

/// Adds the tree `src` to `b` as `dest`, files with their modes; `keep`
/// filters files, `link` decides about symlinks.
fn add_tree(b: &mut PackageBuilder, src: &Path, dest: &str, keep: &dyn Fn(&Path) -> bool, link: &dyn Fn(&Path) -> Link) -> usize {
    b.with_dir_entry(FileOptions::dir(dest).permissions(0o755)).unwrap();
    let mut entries: Vec<_> = fs::read_dir(src).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    let mut n = 0;
    for p in entries {
        let to = format!("{dest}/{}", p.file_name().unwrap().to_str().unwrap());
        let meta = fs::symlink_metadata(&p).unwrap();
        if meta.file_type().is_symlink() {
            match link(&p) {
                Link::Keep(t) => {
                    b.with_symlink(FileOptions::symlink(to, t)).unwrap();
                    n += 1;
                }
                Link::Follow if p.is_dir() => n += add_tree(b, &p.canonicalize().unwrap(), &to, keep, link),
                Link::Follow => {
                    b.with_file(p.canonicalize().unwrap(), FileOptions::new(to)).unwrap();
                    n += 1;
                }
            }
        } else if meta.is_dir() {
            n += add_tree(b, &p, &to, keep, link);
        } else if keep(&p) {
            b.with_file(&p, FileOptions::new(to)).unwrap();
            n += 1;
        }
    }
    n
}

fn package(name: &str, arch: &str, compression: CompressionWithLevel) -> PackageBuilder {
    let mut b = PackageBuilder::new(name, "6.1.190", "GPL-2.0-only", arch, "Debian's cloud kernel, repackaged SUSE-style by kernlab's tests");
    b.using_config(BuildConfig::default().compression(compression)).release("1");
    b
}

fn keep_link(p: &Path) -> Link {
    Link::Keep(fs::read_link(p).unwrap().to_string_lossy().into_owned())
}

/// Writes the three SUSE-style RPMs into `dir`; returns their file names:
/// kernel package first.
fn build_rpms(debian: &Kernel, headers: &Path, dir: &Path) -> [String; 3] {
    let t = Instant::now();
    let names = [
        "kernel-default-6.1.190-1.x86_64.rpm".to_string(),
        "kernel-default-devel-6.1.190-1.x86_64.rpm".to_string(),
        "kernel-devel-6.1.190-1.noarch.rpm".to_string(),
    ];

    // kernel-default: the image, config and System.map in /boot, the module
    // tree as the package has it (no modules.dep: depmod's outputs left out).
    let mut b = package("kernel-default", "x86_64", CompressionWithLevel::Zstd(3));
    let boot = add_tree(&mut b, &debian.root.join("boot"), "/boot", &|_| true, &keep_link);
    let shipped = |p: &Path| {
        let n = p.file_name().unwrap().to_str().unwrap();
        !n.starts_with("modules.") || ["modules.builtin", "modules.builtin.modinfo", "modules.order"].contains(&n)
    };
    let mods = add_tree(&mut b, &debian.modules_dir(), &format!("/lib/modules/{RELEASE}"), &shipped, &keep_link);
    b.build().unwrap().write_file(dir.join(&names[0])).unwrap();

    // kernel-default-devel: the flavour's build tree (Debian's flavour
    // headers) as SUSE's obj directory, with a generated Makefile that
    // includes the source tree's by absolute path, absolute links to the
    // source tree's kbuild programs, and the absolute build link.
    let obj = format!("/usr/src/linux-{VER}-obj/x86_64/default");
    let src = format!("/usr/src/linux-{VER}");
    let mut b = package("kernel-default-devel", "x86_64", CompressionWithLevel::Xz(1));
    let not_makefile = |p: &Path| p.file_name().unwrap() != "Makefile";
    let to_src = |p: &Path| Link::Keep(format!("{src}/{}", p.file_name().unwrap().to_str().unwrap()));
    let devel = add_tree(&mut b, headers, &obj, &not_makefile, &to_src);
    let makefile = format!("# Automatically generated by {src}/Makefile: don't edit\ninclude {src}/Makefile\n");
    b.with_file_contents(makefile, FileOptions::new(format!("{obj}/Makefile")).permissions(0o644)).unwrap();
    b.with_symlink(FileOptions::symlink(format!("/lib/modules/{RELEASE}/build"), obj.clone())).unwrap();
    b.build().unwrap().write_file(dir.join(&names[1])).unwrap();

    // kernel-devel: the source tree (Debian's common headers) with the kbuild
    // scripts and tools in it, as SUSE has them; links within it kept.
    let common = headers.parent().unwrap().join(format!("linux-headers-{VER}-common"));
    let mut b = package("kernel-devel", "noarch", CompressionWithLevel::Gzip(1));
    let follow_dirs = |p: &Path| if p.is_dir() { Link::Follow } else { keep_link(p) };
    let source = add_tree(&mut b, &common, &src, &|_| true, &follow_dirs);
    b.build().unwrap().write_file(dir.join(&names[2])).unwrap();

    let size = |n: &String| fs::metadata(dir.join(n)).unwrap().len() >> 20;
    eprintln!(
        "built RPMs in {:.1} s: kernel-default {} entries, {} MiB; kernel-default-devel {} entries, {} MiB; kernel-devel {} entries, {} MiB",
        t.elapsed().as_secs_f64(),
        boot + mods,
        size(&names[0]),
        devel,
        size(&names[1]),
        source,
        size(&names[2])
    );
    names
}

/// A lab beside the hook module's source: load it, then show the release,
/// the module list and the module's counters.
fn khm_lab(dir: &Path, kernel: &str) -> PathBuf {
    fs::create_dir_all(dir.join("khm")).unwrap();
    for f in ["khm.c", "Kbuild"] {
        fs::copy(repo("labs/khm").join(f), dir.join("khm").join(f)).unwrap();
    }
    lab(
        dir,
        kernel,
        &format!(
            "name: {kernel}\nkernel: {kernel}\nvm:\n  memory: 512M\n  cpus: 1\n\
             modules:\n  - source: khm\n    params: {{leak: 0}}\n\
             workload:\n  commands: ['uname -r; grep -w khm /proc/modules; cat /proc/khm']\n  duration: 2s\n\
             monitor:\n  interval: 1s\n"
        ),
    )
}

/// Runs the lab with `kernels` and a fresh cache in `d`; checks that the
/// guest ran the kernel and loaded the module built against it.
fn run_khm_lab(d: &Path, kernel: &str, kernels: &Path) -> serde_json::Value {
    let f = khm_lab(&d.join("lab"), kernel);
    let run_dir = d.join("run");
    let t = Instant::now();
    let out = kernlab()
        .env("KERNLAB_CACHE", d.join("cache"))
        .args(["--kernels", kernels.to_str().unwrap(), "run", f.to_str().unwrap(), "--out", run_dir.to_str().unwrap()])
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    eprintln!("{kernel}: lab run in {:.1} s (fresh cache: image and module built)", t.elapsed().as_secs_f64());
    assert!(stdout.contains(&format!("lab {kernel} on {kernel}")) && stdout.contains("completed"), "{stdout}");

    let log = fs::read_to_string(run_dir.join("workload.log")).unwrap();
    let mut lines = log.lines();
    assert_eq!(lines.next(), Some(RELEASE), "{log}");
    assert!(lines.next().is_some_and(|l| l.starts_with("khm ")), "khm not in /proc/modules:\n{log}");
    assert!(log.contains("\nleak 0\n") && log.contains("\ncloses "), "{log}");
    let ev = events(&run_dir);
    let built = ev.iter().find(|e| e["event"] == "module-built").expect("module-built event");
    assert_eq!(built["cached"], false);
    let loaded = ev.iter().find(|e| e["event"] == "module-loaded").expect("module-loaded event");
    assert_eq!(loaded["name"], "khm");
    for pid in qemu_pids(&run_dir) {
        assert!(!qemu_alive(pid), "QEMU {pid} outlived its run");
    }
    let m: serde_json::Value = serde_json::from_str(&fs::read_to_string(run_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["kernel"]["release"], RELEASE);
    m["kernel"].clone()
}

#[test]
fn rpm_kernel_with_devel_boots_and_builds_the_hook_module() {
    let _one = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (debian, headers) = debian();
    let d = tempfile::tempdir().unwrap();
    let kernels = d.path().join("kernels");
    fs::create_dir(&kernels).unwrap();
    let [k, dd, kd] = build_rpms(&debian, &headers, &kernels);
    fs::write(
        kernels.join("suse-style.yaml"),
        format!("description: Debian's cloud kernel in SUSE's packaging\nsource:\n  rpm:\n    package: ./{k}\n    devel: [./{dd}, ./{kd}]\n"),
    )
    .unwrap();

    let kernel = run_khm_lab(d.path(), "suse-style", &kernels);
    assert_eq!(kernel["version"], "6.1.190-1");
    assert!(kernel["source"].as_str().unwrap().starts_with(&format!("rpm {}", kernels.join(&k).display())), "{kernel}");
    // The boot image is the Debian one, byte for byte.
    assert_eq!(kernel["vmlinuz_sha256"], debian.vmlinuz_sha256.as_str());

    // One entry, complete, self-contained: its build link resolves inside it.
    let cache = d.path().join("cache");
    let root = PathBuf::from(kernel["root"].as_str().unwrap());
    assert_eq!(root, cache.join("kernels").join(kernel["package_sha256"].as_str().unwrap()));
    assert!(root.join(format!("lib/modules/{RELEASE}/modules.dep")).is_file());
    let build = root.join(format!("lib/modules/{RELEASE}/build")).canonicalize().unwrap();
    assert_eq!(build, root.canonicalize().unwrap().join(format!("usr/src/linux-{VER}-obj/x86_64/default")));
    assert_eq!(fs::read_dir(cache.join("tmp")).unwrap().count(), 0, "scratch left behind");

    // Fetched again: found by its stamp, without rehashing or unpacking.
    let t = Instant::now();
    let out = kernlab()
        .env("KERNLAB_CACHE", &cache)
        .args(["--kernels", kernels.to_str().unwrap(), "kernel", "fetch", "suse-style"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).split_whitespace().nth(3), Some(root.to_str().unwrap()));
    assert!(t.elapsed().as_secs_f64() < 2.0, "a cached RPM kernel took {:?}", t.elapsed());
}

#[test]
fn local_directory_with_an_absolute_build_link_boots_and_builds_the_hook_module() {
    let _one = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (debian, headers) = debian();
    let d = tempfile::tempdir().unwrap();
    // A tree laid out like the unpacked packages: the image, the module
    // tree, the flavour's headers in /usr/src, and `build` an absolute link
    // as Debian ships it (`/usr/src/linux-headers-<rel>`): a path in the
    // tree, absent from this machine.
    let tree = d.path().join("tree");
    assert!(!Path::new("/usr/src").join(format!("linux-headers-{RELEASE}")).exists(), "this machine has the headers installed: the test would not tell");
    fs::create_dir_all(tree.join("boot")).unwrap();
    fs::copy(debian.vmlinuz(), tree.join(format!("boot/vmlinuz-{RELEASE}"))).unwrap();
    let mods = tree.join("lib/modules").join(RELEASE);
    fs::create_dir_all(&mods).unwrap();
    std::os::unix::fs::symlink(debian.modules_dir().join("kernel"), mods.join("kernel")).unwrap();
    for e in fs::read_dir(debian.modules_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            fs::copy(&p, mods.join(p.file_name().unwrap())).unwrap();
        }
    }
    std::os::unix::fs::symlink(format!("/usr/src/linux-headers-{RELEASE}"), mods.join("build")).unwrap();
    let flavour = tree.join(format!("usr/src/linux-headers-{RELEASE}"));
    fs::create_dir_all(&flavour).unwrap();
    for e in fs::read_dir(&headers).unwrap() {
        let p = e.unwrap().path();
        let to = flavour.join(p.file_name().unwrap());
        if fs::symlink_metadata(&p).unwrap().file_type().is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&p).unwrap(), to).unwrap(); // ../../lib/linux-kbuild-6.1/…
        } else {
            let status = std::process::Command::new("cp").arg("-a").arg(&p).arg(&to).status().unwrap();
            assert!(status.success());
        }
    }
    let kbuild = headers.join("scripts").canonicalize().unwrap().parent().unwrap().to_path_buf();
    fs::create_dir_all(tree.join("usr/lib")).unwrap();
    std::os::unix::fs::symlink(&kbuild, tree.join("usr/lib").join(kbuild.file_name().unwrap())).unwrap();

    let kernels = d.path().join("kernels");
    fs::create_dir(&kernels).unwrap();
    fs::write(kernels.join("local-tree.yaml"), "description: a kernel tree on disk\nsource:\n  local:\n    dir: ../tree\n").unwrap();
    let kernel = run_khm_lab(d.path(), "local-tree", &kernels);
    assert_eq!(kernel["version"], "local");
    assert_eq!(kernel["vmlinuz_sha256"], debian.vmlinuz_sha256.as_str());
}

#[test]
fn a_file_that_is_not_an_rpm_is_named_before_anything_starts() {
    let d = tempfile::tempdir().unwrap();
    let kernels = d.path().join("kernels");
    fs::create_dir(&kernels).unwrap();
    fs::write(kernels.join("kernel-default.rpm"), "<html>404 Not Found</html>\n").unwrap();
    fs::write(kernels.join("broken.yaml"), "source:\n  rpm:\n    package: kernel-default.rpm\n").unwrap();
    let f = lab(d.path(), "broken", "name: broken\nkernel: broken\n");
    let run_dir = d.path().join("run");
    let out = kernlab()
        .env("KERNLAB_CACHE", d.path().join("cache"))
        .args(["--kernels", kernels.to_str().unwrap(), "run", f.to_str().unwrap(), "--out", run_dir.to_str().unwrap(), "-q"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "{err}");
    let file = kernels.join("kernel-default.rpm");
    assert!(err.contains("broken.yaml") && err.contains(file.to_str().unwrap()) && err.contains("not an RPM package"), "{err}");
    assert!(qemu_pids(&run_dir).is_empty(), "QEMU started for a kernel that is not there");
}
