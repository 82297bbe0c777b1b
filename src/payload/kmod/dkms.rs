//! A `dkms.conf`, read as dkms 3.0 reads it: bash sources it (it is a
//! shell script, and real ones branch on `$kernelver`) with the variables
//! dkms defines, and kernlab turns what it set into a build plan with
//! dkms's rules (`read_conf`, `prepare_build`, `actual_build` in
//! `/usr/sbin/dkms`): which `MAKE[i]` by `MAKE_MATCH`, which `PATCH[i]` by
//! `PATCH_MATCH`, `BUILD_EXCLUSIVE_*`, the default make and clean commands,
//! `KERNELRELEASE=` put after a leading `make`, and where each
//! `BUILT_MODULE_NAME[i]` is found. What kernlab does not do is refused
//! with the reason (see [`REFUSED`]) or, for what only matters when dkms
//! installs into a system, ignored (see [`IGNORED`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::tool::Tool;

/// The reader (sources the file, prints what it set).
const READER: &str = include_str!("dkms.sh");

/// Sourcing a dkms.conf is quick; one that hangs is a broken one.
const SOURCE_DEADLINE: Duration = Duration::from_secs(30);

/// Variables kernlab refuses, with why.
pub const REFUSED: [(&str, &str); 1] = [("BUILD_DEPENDS", "it names other dkms packages to build first; give them as earlier `modules` entries instead")];

/// Variables that only matter when dkms installs into a system (module
/// destinations, initrd, signing, module configuration): kernlab loads
/// the built modules with insmod, so they change nothing here.
pub const IGNORED: [&str; 17] = [
    "AUTOINSTALL",
    "REMAKE_INITRD",
    "DEST_MODULE_NAME",
    "DEST_MODULE_LOCATION",
    "POST_ADD",
    "POST_INSTALL",
    "POST_REMOVE",
    "PRE_INSTALL",
    "OBSOLETE_BY",
    "NO_WEAK_MODULES",
    "SIGN_FILE",
    "MOK_SIGNING_KEY",
    "MOK_CERTIFICATE",
    "MODULES_CONF",
    "MODULES_CONF_OBSOLETES",
    "MODULES_CONF_ALIAS_TYPE",
    "MODULES_CONF_OBSOLETE_ONLY",
];

#[derive(Debug, thiserror::Error)]
pub enum DkmsError {
    #[error("`{}` is not a shell script bash can read:\n{output}", file.display())]
    Syntax { file: PathBuf, output: String },
    #[error("sourcing `{}` failed:\n{output}", file.display())]
    Source { file: PathBuf, output: String },
    #[error("`{}`: {message}", file.display())]
    Invalid { file: PathBuf, message: String },
    #[error("`{}` excludes kernel `{kernelver}` ({arch}): {why}", file.display())]
    Excluded { file: PathBuf, kernelver: String, arch: String, why: String },
    #[error("reading `{}`", file.display())]
    Tool {
        file: PathBuf,
        #[source]
        source: crate::util::tool::ToolError,
    },
}

/// The variables dkms defines while it sources a dkms.conf (and while it
/// evaluates the make, clean and patch commands), with the same meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vars {
    /// The kernel release being built for (`uname -r` of that kernel).
    pub kernelver: String,
    /// Its architecture as `uname -m` says it (`x86_64`).
    pub arch: String,
    /// The kernel's headers (dkms: `/lib/modules/$kernelver/build`).
    pub kernel_source_dir: PathBuf,
    /// dkms's tree (dkms: `/var/lib/dkms`); the build is in
    /// `$dkms_tree/$module/$module_version/build`.
    pub dkms_tree: PathBuf,
    /// Where sources live (dkms: `/usr/src`), `$source_tree/$module-$module_version`.
    pub source_tree: PathBuf,
    /// Where modules are installed (dkms: `/lib/modules`); only named.
    pub install_tree: PathBuf,
    /// `PACKAGE_NAME` and `PACKAGE_VERSION`, as dkms add takes them.
    pub module: String,
    pub module_version: String,
}

impl Vars {
    /// dkms's build directory for this package.
    pub fn build_dir(&self) -> PathBuf {
        self.dkms_tree.join(&self.module).join(&self.module_version).join("build")
    }

    /// The pristine copy of the package's source.
    pub fn source_dir(&self) -> PathBuf {
        self.source_tree.join(format!("{}-{}", self.module, self.module_version))
    }

    /// The shell assignments that define them, for a command dkms evaluates.
    pub fn shell_prelude(&self) -> String {
        use crate::util::tool::shell_quote as q;
        let config = self.kernel_source_dir.join(".config");
        [
            ("kernelver", q(&self.kernelver)),
            ("arch", q(&self.arch)),
            ("kernel_source_dir", q(&self.kernel_source_dir)),
            ("kernel_config", q(&config)),
            ("dkms_tree", q(&self.dkms_tree)),
            ("source_tree", q(&self.source_tree)),
            ("install_tree", q(&self.install_tree)),
            ("module", q(&self.module)),
            ("module_version", q(&self.module_version)),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect()
    }
}

/// What sourcing a dkms.conf set: each variable's elements by index, and
/// the results of dkms's regular-expression tests on this kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sourced {
    pub vars: BTreeMap<String, BTreeMap<usize, String>>,
    /// `MAKE_MATCH[i]` indexes that match `$kernelver`.
    pub make_matches: Vec<usize>,
    /// `PATCH_MATCH[i]` indexes that match `$kernelver`.
    pub patch_matches: Vec<usize>,
    /// Why `BUILD_EXCLUSIVE_*` excludes this kernel: `(kernel|arch|config, value)`.
    pub excluded: Vec<(String, String)>,
}

impl Sourced {
    /// Parses the reader's NUL-separated `NAME INDEX VALUE` records.
    pub fn parse(out: &[u8]) -> Result<Sourced, String> {
        let mut s = Sourced::default();
        let mut fields = out.split(|b| *b == 0);
        while let Some(name) = fields.next() {
            if name.is_empty() {
                break;
            }
            let (Some(index), Some(value)) = (fields.next(), fields.next()) else {
                return Err("the reader's output ends inside a record".into());
            };
            let name = String::from_utf8_lossy(name).into_owned();
            let index = String::from_utf8_lossy(index).into_owned();
            let value = String::from_utf8_lossy(value).into_owned();
            match name.as_str() {
                "MAKE_MATCHES" => s.make_matches.push(index.parse().map_err(|_| format!("bad index {index:?}"))?),
                "PATCH_MATCHES" => s.patch_matches.push(index.parse().map_err(|_| format!("bad index {index:?}"))?),
                "EXCLUDED" => s.excluded.push((index, value)),
                _ => {
                    // Arrays have numeric indexes; a scalar is element 0.
                    let i: usize = index.parse().map_err(|_| format!("{name}: index {index:?} is not a number (associative arrays are not dkms's)"))?;
                    s.vars.entry(name).or_default().insert(i, value);
                }
            }
        }
        Ok(s)
    }

    /// A scalar (element 0), empty when unset.
    pub fn scalar(&self, name: &str) -> &str {
        self.vars.get(name).and_then(|v| v.get(&0)).map(String::as_str).unwrap_or("")
    }

    /// An element, empty when unset.
    pub fn at(&self, name: &str, i: usize) -> &str {
        self.vars.get(name).and_then(|v| v.get(&i)).map(String::as_str).unwrap_or("")
    }

    /// The number of elements bash's `${#NAME[@]}` gives.
    pub fn len(&self, name: &str) -> usize {
        self.vars.get(name).map(BTreeMap::len).unwrap_or(0)
    }

    /// The variables set that kernlab ignores.
    pub fn ignored(&self) -> Vec<String> {
        IGNORED.iter().filter(|n| self.vars.get(**n).is_some_and(|v| v.values().any(|x| !x.is_empty()))).map(|n| n.to_string()).collect()
    }
}

/// One module dkms builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// `BUILT_MODULE_NAME[i]`, no `.ko`.
    pub name: String,
    /// `BUILT_MODULE_LOCATION[i]` relative to the build directory, with
    /// its trailing `/` (empty for the top).
    pub location: String,
    /// dkms runs `strip -g` on it unless `STRIP[i]` says no.
    pub strip: bool,
}

impl Built {
    /// The built object, relative to the build directory.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("{}{}.ko", self.location, self.name))
    }
}

/// How dkms would build this package for this kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub package_name: String,
    pub package_version: String,
    /// The command dkms evaluates in the build directory, as dkms runs it
    /// (`make -jN KERNELRELEASE=$kernelver …` for a leading `make`).
    pub make: String,
    /// The clean command, run before the build.
    pub clean: String,
    /// `PATCH[i]` that apply to this kernel, in order, from `patches/`.
    pub patches: Vec<String>,
    /// The modules, in `BUILT_MODULE_NAME` order (the load order).
    pub modules: Vec<Built>,
    /// `PRE_BUILD` and `POST_BUILD` scripts, relative to the build directory.
    pub pre_build: Option<String>,
    pub post_build: Option<String>,
    /// Variables set that only matter to an installing dkms.
    pub ignored: Vec<String>,
}

/// Sources `conf` with `vars` (module and version as given: dkms reads
/// PACKAGE_NAME and PACKAGE_VERSION from a first sourcing when it adds a
/// tree by path).
pub fn source(conf: &Path, vars: &Vars) -> Result<Sourced, DkmsError> {
    let tool = |e| DkmsError::Tool { file: conf.to_path_buf(), source: e };
    // bash runs in the conf's directory (as dkms sources it from the
    // package's tree), so the path must not be relative to ours.
    let shown = conf;
    let conf = &conf.canonicalize().map_err(|e| DkmsError::Source { file: shown.to_path_buf(), output: e.to_string() })?;
    let syntax = Tool::new("bash", SOURCE_DEADLINE).arg("-n").arg(conf).output().map_err(tool)?;
    if !syntax.status.success() {
        let output = String::from_utf8_lossy(&syntax.stderr).into_owned();
        return Err(DkmsError::Syntax { file: conf.to_path_buf(), output });
    }
    let out = Tool::new("bash", SOURCE_DEADLINE)
        .arg("-c")
        .arg(READER)
        .arg("kernlab-dkms")
        .arg(conf)
        .env("KL_kernelver", &vars.kernelver)
        .env("KL_arch", &vars.arch)
        .env("KL_kernel_source_dir", &vars.kernel_source_dir)
        .env("KL_kernel_config", vars.kernel_source_dir.join(".config"))
        .env("KL_dkms_tree", &vars.dkms_tree)
        .env("KL_source_tree", &vars.source_tree)
        .env("KL_install_tree", &vars.install_tree)
        .env("KL_module", &vars.module)
        .env("KL_module_version", &vars.module_version)
        .current_dir(conf.parent().unwrap_or(Path::new(".")))
        .output()
        .map_err(tool)?;
    if !out.status.success() {
        let output = String::from_utf8_lossy(&out.stderr).into_owned();
        return Err(DkmsError::Source { file: conf.to_path_buf(), output });
    }
    Sourced::parse(&out.stdout).map_err(|message| DkmsError::Invalid { file: conf.to_path_buf(), message })
}

/// Reads `conf` for `vars`'s kernel as dkms would: a first sourcing for
/// the package's name and version, a second with them set, then the plan.
pub fn read(conf: &Path, vars: &Vars) -> Result<(Vars, Plan), DkmsError> {
    let first = source(conf, vars)?;
    let mut vars = vars.clone();
    vars.module = first.scalar("PACKAGE_NAME").to_string();
    vars.module_version = first.scalar("PACKAGE_VERSION").to_string();
    let sourced = source(conf, &vars)?;
    let plan = plan(&sourced, &vars, &num_cpus()).map_err(|message| match message {
        PlanError::Invalid(message) => DkmsError::Invalid { file: conf.to_path_buf(), message },
        PlanError::Excluded(why) => DkmsError::Excluded { file: conf.to_path_buf(), kernelver: vars.kernelver.clone(), arch: vars.arch.clone(), why },
    })?;
    Ok((vars, plan))
}

fn num_cpus() -> String {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).to_string()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    Invalid(String),
    Excluded(String),
}

/// dkms's rules over what the conf set (pure). `jobs` is dkms's
/// `parallel_jobs` (the CPU count).
pub fn plan(s: &Sourced, vars: &Vars, jobs: &str) -> Result<Plan, PlanError> {
    let invalid = |m: String| Err(PlanError::Invalid(m));
    let package_name = s.scalar("PACKAGE_NAME").to_string();
    let package_version = s.scalar("PACKAGE_VERSION").to_string();
    if package_name.is_empty() {
        return invalid("no `PACKAGE_NAME` directive (dkms refuses it too)".into());
    }
    if package_version.is_empty() {
        return invalid("no `PACKAGE_VERSION` directive (dkms refuses it too)".into());
    }
    for (name, why) in REFUSED {
        if s.vars.get(name).is_some_and(|v| v.values().any(|x| !x.is_empty())) {
            return invalid(format!("`{name}` is not supported: {why}"));
        }
    }
    if !s.excluded.is_empty() {
        let why = s
            .excluded
            .iter()
            .map(|(what, v)| match what.as_str() {
                "kernel" => format!("BUILD_EXCLUSIVE_KERNEL=\"{v}\" does not match kernel release `{}`", vars.kernelver),
                "arch" => format!("BUILD_EXCLUSIVE_ARCH=\"{v}\" does not match architecture `{}`", vars.arch),
                _ => format!("BUILD_EXCLUSIVE_CONFIG needs `{v}` in the kernel's config"),
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Err(PlanError::Excluded(why));
    }

    // Module records: as many as the longest of the four arrays.
    let records = ["BUILT_MODULE_NAME", "BUILT_MODULE_LOCATION", "DEST_MODULE_NAME", "DEST_MODULE_LOCATION"]
        .iter()
        .map(|n| s.vars.get(*n).and_then(|v| v.keys().max()).map(|m| m + 1).unwrap_or(0))
        .max()
        .unwrap_or(0);
    if records == 0 {
        return invalid("no `BUILT_MODULE_NAME` directive: nothing to build".into());
    }
    let strip0 = strip_word(s.at("STRIP", 0)).unwrap_or(true);
    let mut modules = Vec::new();
    for i in 0..records {
        let mut name = s.at("BUILT_MODULE_NAME", i).to_string();
        // dkms: a lone DEST_MODULE_LOCATION names the package's module.
        if name.is_empty() && s.len("DEST_MODULE_LOCATION") == 1 {
            name = package_name.clone();
        }
        if name.is_empty() {
            return invalid(format!("no `BUILT_MODULE_NAME` for record #{i}"));
        }
        if name.ends_with(".o") || name.ends_with(".ko") {
            return invalid(format!("`BUILT_MODULE_NAME[{i}]` ends in `.o` or `.ko` (`{name}`): give the module's name"));
        }
        let mut location = s.at("BUILT_MODULE_LOCATION", i).to_string();
        if location.starts_with('/') || Path::new(&location).components().any(|c| c == std::path::Component::ParentDir) {
            return invalid(format!("`BUILT_MODULE_LOCATION[{i}]` (`{location}`) must be inside the build directory"));
        }
        if !location.is_empty() && !location.ends_with('/') {
            location.push('/');
        }
        let strip = strip_word(s.at("STRIP", i)).unwrap_or(strip0);
        modules.push(Built { name, location, strip });
    }

    // MAKE: MAKE[0] unless MAKE_MATCH[0] is set; then the last MAKE[i]
    // whose MAKE_MATCH[i] matches.
    let mut make = if s.at("MAKE_MATCH", 0).is_empty() { s.at("MAKE", 0).to_string() } else { String::new() };
    if let Some(m) = s.vars.get("MAKE") {
        for (i, cmd) in m {
            if !cmd.is_empty() && s.make_matches.contains(i) {
                make = cmd.clone();
            }
        }
    }
    let build = vars.build_dir();
    if make.is_empty() {
        make = format!("make -C {} M={}", vars.kernel_source_dir.display(), build.display());
    }
    let mut clean = s.scalar("CLEAN").to_string();
    if clean.is_empty() {
        clean = format!("make -C {} M={} clean", vars.kernel_source_dir.display(), build.display());
    }
    // dkms: ${make_command/#make/make -j$parallel_jobs KERNELRELEASE=$kernelver}
    let make = match make.strip_prefix("make") {
        Some(rest) => format!("make -j{jobs} KERNELRELEASE={}{rest}", vars.kernelver),
        None => make,
    };

    let mut patches = Vec::new();
    if let Some(p) = s.vars.get("PATCH") {
        for (i, name) in p {
            if name.is_empty() {
                continue;
            }
            if s.at("PATCH_MATCH", *i).is_empty() || s.patch_matches.contains(i) {
                patches.push(name.clone());
            }
        }
    }
    let script = |n: &str| Some(s.scalar(n).to_string()).filter(|x| !x.is_empty());
    Ok(Plan { package_name, package_version, make, clean, patches, modules, pre_build: script("PRE_BUILD"), post_build: script("POST_BUILD"), ignored: s.ignored() })
}

/// dkms's reading of `STRIP[i]`: `n…`/`N…` no, `y…`/`Y…` yes, else unset.
fn strip_word(w: &str) -> Option<bool> {
    match w.chars().next() {
        Some('n' | 'N') => Some(false),
        Some('y' | 'Y') => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars {
            kernelver: "6.1.0-54-cloud-amd64".into(),
            arch: "x86_64".into(),
            kernel_source_dir: "/k/build".into(),
            dkms_tree: "/t/dkms".into(),
            source_tree: "/t/src".into(),
            install_tree: "/lib/modules".into(),
            module: "prod".into(),
            module_version: "2.1".into(),
        }
    }

    fn conf(text: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("dkms.conf");
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    #[test]
    fn a_product_conf_is_read_with_dkms_variables_and_rules() {
        let (_d, p) = conf(
            r#"PACKAGE_NAME="prod"
PACKAGE_VERSION="2.1"
MAKE[0]="make -C ${kernel_source_dir} M=${dkms_tree}/${PACKAGE_NAME}/${PACKAGE_VERSION}/build KVER=$kernelver"
CLEAN="make clean"
BUILT_MODULE_NAME[0]="prod_core"
BUILT_MODULE_LOCATION[0]="core"
BUILT_MODULE_NAME[1]="prod_pipe"
BUILT_MODULE_LOCATION[1]="cases/pipe/"
DEST_MODULE_LOCATION[0]="/updates/dkms"
DEST_MODULE_LOCATION[1]="/updates/dkms"
STRIP[1]=no
PATCH[0]="compat-6.1.patch"
PATCH_MATCH[0]="^6\.1\."
PATCH[1]="only-5.x.patch"
PATCH_MATCH[1]="^5\."
if [[ $kernelver == 6.1.* ]]; then EXTRA=1; fi
echo "noise on stdout is discarded"
AUTOINSTALL="yes"
REMAKE_INITRD=no
"#,
        );
        let (v, plan) = read(&p, &vars()).unwrap();
        assert_eq!((v.module.as_str(), v.module_version.as_str()), ("prod", "2.1"));
        assert_eq!(plan.make, format!("make -j{} KERNELRELEASE=6.1.0-54-cloud-amd64 -C /k/build M=/t/dkms/prod/2.1/build KVER=6.1.0-54-cloud-amd64", num_cpus()));
        assert_eq!(plan.clean, "make clean");
        assert_eq!(plan.patches, ["compat-6.1.patch"]);
        assert_eq!(plan.modules[0], Built { name: "prod_core".into(), location: "core/".into(), strip: true });
        assert_eq!(plan.modules[1].path(), Path::new("cases/pipe/prod_pipe.ko"));
        assert!(!plan.modules[1].strip);
        assert_eq!(plan.ignored, ["AUTOINSTALL", "REMAKE_INITRD", "DEST_MODULE_LOCATION"]);
    }

    #[test]
    fn defaults_are_dkms_defaults() {
        let (_d, p) = conf("PACKAGE_NAME=m\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME[0]=m\n");
        let (_, plan) = read(&p, &vars()).unwrap();
        assert_eq!(plan.make, format!("make -j{} KERNELRELEASE=6.1.0-54-cloud-amd64 -C /k/build M=/t/dkms/m/1/build", num_cpus()));
        assert_eq!(plan.clean, "make -C /k/build M=/t/dkms/m/1/build clean");
        assert_eq!(plan.modules, [Built { name: "m".into(), location: String::new(), strip: true }]);
        // A lone DEST_MODULE_LOCATION names the package's own module.
        let (_d, p) = conf("PACKAGE_NAME=solo\nPACKAGE_VERSION=1\nDEST_MODULE_LOCATION=/extra\n");
        assert_eq!(read(&p, &vars()).unwrap().1.modules[0].name, "solo");
    }

    #[test]
    fn make_match_picks_the_last_matching_make() {
        let (_d, p) = conf("PACKAGE_NAME=m\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME=m\nMAKE[0]='make old'\nMAKE_MATCH[0]='^5'\nMAKE[1]='./build.sh $kernelver'\nMAKE_MATCH[1]='^6\\.1'\n");
        let (_, plan) = read(&p, &vars()).unwrap();
        // Not a leading `make`: dkms adds nothing; single quotes keep the
        // variable for dkms's eval.
        assert_eq!(plan.make, "./build.sh $kernelver");
    }

    #[test]
    fn build_exclusive_excludes_with_the_reason() {
        let (_d, p) = conf("PACKAGE_NAME=m\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME=m\nBUILD_EXCLUSIVE_KERNEL=\"^5\\.\"\nBUILD_EXCLUSIVE_ARCH='aarch64'\n");
        let e = read(&p, &vars()).unwrap_err().to_string();
        assert!(e.contains("excludes kernel `6.1.0-54-cloud-amd64`"), "{e}");
        assert!(e.contains("BUILD_EXCLUSIVE_KERNEL=\"^5\\.\" does not match"), "{e}");
        assert!(e.contains("BUILD_EXCLUSIVE_ARCH=\"aarch64\" does not match architecture `x86_64`"), "{e}");
        let (_d, p) = conf("PACKAGE_NAME=m\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME=m\nBUILD_EXCLUSIVE_KERNEL='^6\\.(1|12)\\.'\n");
        assert!(read(&p, &vars()).is_ok());
    }

    #[test]
    fn bad_confs_are_named() {
        let (_d, p) = conf("PACKAGE_NAME=m\nif then fi\n");
        assert!(matches!(read(&p, &vars()), Err(DkmsError::Syntax { .. })));
        let (_d, p) = conf("PACKAGE_VERSION=1\nBUILT_MODULE_NAME=m\n");
        assert!(read(&p, &vars()).unwrap_err().to_string().contains("no `PACKAGE_NAME`"));
        let (_d, p) = conf("PACKAGE_NAME=m\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME=m.ko\n");
        assert!(read(&p, &vars()).unwrap_err().to_string().contains("ends in `.o` or `.ko`"));
        let (_d, p) = conf("PACKAGE_NAME=m\nPACKAGE_VERSION=1\n");
        assert!(read(&p, &vars()).unwrap_err().to_string().contains("nothing to build"));
        let (_d, p) = conf("PACKAGE_NAME=m\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME=m\nBUILD_DEPENDS=other\n");
        assert!(read(&p, &vars()).unwrap_err().to_string().contains("`BUILD_DEPENDS` is not supported"));
        let (_d, p) = conf("PACKAGE_NAME=m\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME=m\nBUILT_MODULE_LOCATION=../out\n");
        assert!(read(&p, &vars()).unwrap_err().to_string().contains("inside the build directory"));
    }
}
