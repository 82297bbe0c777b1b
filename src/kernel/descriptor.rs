//! Kernel descriptors: a small YAML file per kernel naming where it comes
//! from. The descriptors in the repository's `kernels/` folder are built into
//! the binary, so `kernlab` works from any directory; a `kernels/` folder
//! given on the command line (or found beside the lab) adds to or overrides
//! them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The descriptors shipped with kernlab, built in at compile time.
const BUILTIN: &[(&str, &str)] = &[
    ("debian-6.1.0-54-cloud-amd64", include_str!("../../kernels/debian-6.1.0-54-cloud-amd64.yaml")),
    ("debian-6.1.0-54-amd64", include_str!("../../kernels/debian-6.1.0-54-amd64.yaml")),
    ("debian-6.12.117+deb12-cloud-amd64", include_str!("../../kernels/debian-6.12.117+deb12-cloud-amd64.yaml")),
    ("debian-6.12.117+deb12-amd64", include_str!("../../kernels/debian-6.12.117+deb12-amd64.yaml")),
    ("debian-6.1.0-54-cloud-arm64", include_str!("../../kernels/debian-6.1.0-54-cloud-arm64.yaml")),
];

/// The kernel used when a lab names none.
pub const DEFAULT_KERNEL: &str = "debian-6.1.0-54-cloud-amd64";

/// What `kernlab bench boot` compares by default: the cloud flavour and
/// the generic one of the same release.
pub const BENCH_KERNELS: [&str; 2] = [DEFAULT_KERNEL, "debian-6.1.0-54-amd64"];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Descriptor {
    /// The descriptor's name: its file name without `.yaml`. Not in the file.
    #[serde(skip)]
    pub name: String,
    /// Where the descriptor came from (`builtin` or a path). Not in the file.
    #[serde(skip)]
    pub origin: String,
    /// Free text shown by `kernlab kernel list`. Default: empty.
    #[serde(default)]
    pub description: String,
    /// Where the kernel comes from.
    pub source: PackageSource,
    /// The architecture it is built for (`x86_64`, `aarch64`; Debian's and
    /// kbuild's names also read). Default: what a Debian package's suffix
    /// says (`-amd64`, `-arm64`), else x86_64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<crate::arch::Arch>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum PackageSource {
    /// A Debian binary package fetched with `apt-get download`.
    Debian(DebianSource),
    /// An unpacked kernel in a local directory, laid out like a package:
    /// `boot/vmlinuz-<release>` and `lib/modules/<release>/` (a self-built
    /// tree after `make modules_install INSTALL_MOD_PATH=DIR`). Used in place.
    Local(LocalSource),
    /// A kernel RPM on this machine (e.g. SUSE's `kernel-default`), with the
    /// `-devel` packages that hold its build tree; unpacked into the cache.
    Rpm(RpmSource),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RpmSource {
    /// The kernel package (`kernel-default-*.rpm`); relative paths are
    /// relative to the descriptor's folder.
    pub package: PathBuf,
    /// The packages with the build tree for out-of-tree modules (SUSE:
    /// `kernel-default-devel` and `kernel-devel`); needed only by labs that
    /// build modules. Relative paths as for `package`. Default: none.
    #[serde(default)]
    pub devel: Vec<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LocalSource {
    /// The directory; relative paths are relative to the descriptor's folder.
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DebianSource {
    /// The `linux-image-*` package.
    pub package: String,
    /// An exact package version to pin; default: apt's candidate version.
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DescriptorError {
    #[error("cannot read kernel descriptor `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("kernel descriptor `{origin}`: {message}")]
    Parse { origin: String, message: String },
    #[error("unknown kernel `{name}`; known kernels: {known} (add kernels/{name}.yaml, see `kernlab kernel list`)")]
    Unknown { name: String, known: String },
}

impl Descriptor {
    pub fn parse(name: &str, origin: &str, text: &str) -> Result<Self, DescriptorError> {
        let mut d: Descriptor = serde_saphyr::from_str(text)
            .map_err(|e| DescriptorError::Parse { origin: origin.to_string(), message: e.to_string() })?;
        let bad = |m: &str| DescriptorError::Parse { origin: origin.to_string(), message: m.to_string() };
        match &d.source {
            PackageSource::Debian(s) => {
                if !is_package_name(&s.package) {
                    return Err(bad(&format!("source.debian.package: `{}` is not a Debian package name", s.package)));
                }
                if let Some(v) = &s.version {
                    if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || ".+-~:".contains(c)) {
                        return Err(bad(&format!("source.debian.version: `{v}` is not a Debian version")));
                    }
                }
            }
            PackageSource::Local(l) => {
                if l.dir.as_os_str().is_empty() {
                    return Err(bad("source.local.dir: must not be empty"));
                }
            }
            PackageSource::Rpm(r) => {
                if r.package.as_os_str().is_empty() {
                    return Err(bad("source.rpm.package: must not be empty"));
                }
                if let Some(i) = r.devel.iter().position(|d| d.as_os_str().is_empty()) {
                    return Err(bad(&format!("source.rpm.devel[{i}]: must not be empty")));
                }
            }
        }
        if let (Some(a), PackageSource::Debian(s)) = (d.arch, &d.source) {
            if let Some(p) = crate::arch::Arch::of_debian_name(&s.package).filter(|p| *p != a) {
                return Err(bad(&format!("arch: `{a}`, but source.debian.package `{}` is a package for {p} ({})", s.package, p.debian())));
            }
        }
        d.name = name.to_string();
        d.origin = origin.to_string();
        Ok(d)
    }

    /// The architecture of the kernel it names: `arch:`, else its Debian
    /// package's suffix, else x86_64.
    pub fn arch(&self) -> crate::arch::Arch {
        let by_package = match &self.source {
            PackageSource::Debian(s) => crate::arch::Arch::of_debian_name(&s.package),
            _ => None,
        };
        self.arch.or(by_package).unwrap_or_default()
    }

    /// A stable one-line summary of where the kernel comes from.
    pub fn source_summary(&self) -> String {
        match &self.source {
            PackageSource::Debian(s) => match &s.version {
                Some(v) => format!("debian {}={}", s.package, v),
                None => format!("debian {}", s.package),
            },
            PackageSource::Local(l) => format!("local {}", l.dir.display()),
            PackageSource::Rpm(r) => {
                let mut s = format!("rpm {}", r.package.display());
                for d in &r.devel {
                    s.push_str(&format!(" + {}", d.display()));
                }
                s
            }
        }
    }
}

/// Debian package names: lowercase alphanumerics and `+-.`, starting alphanumeric.
fn is_package_name(s: &str) -> bool {
    s.len() >= 2
        && s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

/// All known descriptors by name: built-ins first, then each directory's
/// `*.yaml` files in order, later ones overriding earlier ones.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    kernels: BTreeMap<String, Descriptor>,
}

impl Registry {
    pub fn builtin() -> Self {
        let mut r = Registry::default();
        for (name, text) in BUILTIN {
            let d = Descriptor::parse(name, "builtin", text).expect("built-in kernel descriptors parse");
            r.kernels.insert(name.to_string(), d);
        }
        r
    }

    /// Built-ins plus the descriptors in `dirs` (missing directories are skipped).
    pub fn load(dirs: &[PathBuf]) -> Result<Self, DescriptorError> {
        let mut r = Self::builtin();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(dir) else { continue };
            let mut paths: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            paths.sort();
            for path in paths {
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| DescriptorError::Read { path: path.clone(), source })?;
                let name = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
                let mut d = Descriptor::parse(&name, &path.display().to_string(), &text)?;
                let beside = |p: &mut PathBuf| {
                    if p.is_relative() {
                        *p = dir.join(p.strip_prefix(".").unwrap_or(p));
                    }
                };
                match &mut d.source {
                    PackageSource::Local(l) => beside(&mut l.dir),
                    PackageSource::Rpm(r) => {
                        beside(&mut r.package);
                        r.devel.iter_mut().for_each(beside);
                    }
                    PackageSource::Debian(_) => {}
                }
                r.kernels.insert(name, d);
            }
        }
        Ok(r)
    }

    pub fn get(&self, name: &str) -> Result<&Descriptor, DescriptorError> {
        self.kernels.get(name).ok_or_else(|| DescriptorError::Unknown {
            name: name.to_string(),
            known: self.kernels.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Descriptor> {
        self.kernels.values()
    }
}

/// The `kernels/` folders to search for a lab: one beside the lab's folder
/// (`labs/x.yaml` → `kernels/`), then the current directory's.
pub fn default_dirs(lab_file: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("kernels")];
    if let Some(parent) = lab_file.and_then(|f| f.parent()).and_then(|p| p.parent()) {
        let d = parent.join("kernels");
        if !dirs.contains(&d) {
            dirs.insert(0, d);
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse_and_include_default() {
        let r = Registry::builtin();
        let d = r.get(DEFAULT_KERNEL).unwrap();
        assert_eq!(d.source_summary(), "debian linux-image-6.1.0-54-cloud-amd64=6.1.190-1");
    }

    #[test]
    fn unknown_kernel_lists_known_ones() {
        let err = Registry::builtin().get("debian-9.9").unwrap_err().to_string();
        assert!(err.contains("unknown kernel `debian-9.9`") && err.contains(DEFAULT_KERNEL), "{err}");
    }

    #[test]
    fn bad_descriptors_are_rejected() {
        let cases = [
            ("source:\n  debian:\n    package: linux-image-x\n    flavour: cloud\n", "flavour"),
            ("source:\n  rpm:\n    path: x.rpm\n", "path"),
            ("source:\n  rpm:\n    package: ''\n", "source.rpm.package"),
            ("source:\n  rpm:\n    package: k.rpm\n    devel: [d.rpm, '']\n", "source.rpm.devel[1]"),
            ("source:\n  suse:\n    package: k.rpm\n", "suse"),
            ("source:\n  debian:\n    package: 'Linux Image'\n", "package"),
            ("source:\n  debian:\n    package: linux-image-x\n    version: 'a b'\n", "version"),
        ];
        for (text, want) in cases {
            let err = Descriptor::parse("x", "kernels/x.yaml", text).unwrap_err().to_string();
            assert!(err.contains("kernels/x.yaml") && err.contains(want), "{text:?} gave {err}");
        }
    }

    #[test]
    fn rpm_descriptor_paths_are_relative_to_its_folder() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("sles.yaml"),
            "description: SLES 15 SP6\nsource:\n  rpm:\n    package: ./kernel-default-6.4.0-150600.23.25.1.x86_64.rpm\n    \
             devel: [./kernel-default-devel-6.4.0-150600.23.25.1.x86_64.rpm, /srv/rpms/kernel-devel-6.4.0-150600.23.25.1.noarch.rpm]\n",
        )
        .unwrap();
        std::fs::write(d.path().join("nodevel.yaml"), "source:\n  rpm:\n    package: k.rpm\n").unwrap();
        let r = Registry::load(&[d.path().to_path_buf()]).unwrap();
        let PackageSource::Rpm(s) = &r.get("sles").unwrap().source else { panic!("not an rpm source") };
        assert_eq!(s.package.as_os_str(), d.path().join("kernel-default-6.4.0-150600.23.25.1.x86_64.rpm").as_os_str());
        assert_eq!(
            s.devel,
            [d.path().join("./kernel-default-devel-6.4.0-150600.23.25.1.x86_64.rpm"), PathBuf::from("/srv/rpms/kernel-devel-6.4.0-150600.23.25.1.noarch.rpm")]
        );
        assert!(r.get("sles").unwrap().source_summary().starts_with("rpm /"));
        let PackageSource::Rpm(s) = &r.get("nodevel").unwrap().source else { panic!("not an rpm source") };
        assert!(s.devel.is_empty());
    }

    #[test]
    fn directory_descriptors_override_builtins() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join(format!("{DEFAULT_KERNEL}.yaml")),
            "description: mine\nsource:\n  debian:\n    package: linux-image-6.1.0-53-cloud-amd64\n",
        )
        .unwrap();
        let r = Registry::load(&[d.path().to_path_buf()]).unwrap();
        assert_eq!(r.get(DEFAULT_KERNEL).unwrap().description, "mine");
    }

    #[test]
    fn a_descriptor_says_its_arch_or_its_package_does() {
        let d = |t: &str| Descriptor::parse("k", "kernels/k.yaml", t);
        let arm = d("source:\n  debian:\n    package: linux-image-6.1.0-57-cloud-arm64\n").unwrap();
        assert_eq!(arm.arch(), crate::arch::Arch::Aarch64);
        let amd = d("source:\n  debian:\n    package: linux-image-6.1.0-54-cloud-amd64\n").unwrap();
        assert_eq!(amd.arch(), crate::arch::Arch::X86_64);
        let local = d("arch: arm64\nsource:\n  local:\n    dir: /k\n").unwrap();
        assert_eq!(local.arch(), crate::arch::Arch::Aarch64);
        let e = d("arch: x86_64\nsource:\n  debian:\n    package: linux-image-6.1.0-57-cloud-arm64\n").unwrap_err().to_string();
        assert!(e.contains("kernels/k.yaml") && e.contains("arch: `x86_64`, but source.debian.package `linux-image-6.1.0-57-cloud-arm64` is a package for aarch64 (arm64)"), "{e}");
        let e = d("arch: sparc\nsource:\n  local:\n    dir: /k\n").unwrap_err().to_string();
        assert!(e.contains("unknown architecture `sparc`"), "{e}");
    }
}
