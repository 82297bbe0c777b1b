//! `kernlab new`'s pure half: what a module tree's files say (the `obj-m`
//! modules of its Kbuild and Makefiles, the `module_param`s of its C
//! sources), which kernel a lab for it should boot, and the commented A/B
//! leak lab written from all that. The reading of a `dkms.conf` and the
//! files themselves are the command's (`src/cli/new.rs`).

use std::fmt::Write as _;

use super::DEFAULT_KERNEL;

/// How the tree is built, as far as the lab is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeKind {
    /// A DKMS package: the modules are its `BUILT_MODULE_NAME`s, in order.
    Dkms { package: String, version: String, modules: Vec<DkmsModule> },
    /// A Kbuild tree: the `obj-m` names its Kbuild and Makefiles list.
    Kbuild { modules: Vec<ObjM> },
}

/// One `BUILT_MODULE_NAME[i]` of a dkms.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkmsModule {
    pub name: String,
    /// The built object relative to the tree (`core/pg_core.ko`).
    pub path: String,
}

/// One `obj-m` module and the file (relative to the tree) that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjM {
    pub name: String,
    pub file: String,
}

/// One `module_param(NAME, TYPE, PERM)` (or `module_param_named`) of the
/// tree's C sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub kind: String,
    pub file: String,
}

impl TreeKind {
    /// The module names, in load order (dkms) or as the files list them.
    pub fn module_names(&self) -> Vec<&str> {
        match self {
            TreeKind::Dkms { modules, .. } => modules.iter().map(|m| m.name.as_str()).collect(),
            TreeKind::Kbuild { modules } => modules.iter().map(|m| m.name.as_str()).collect(),
        }
    }
}

/// The `obj-m` modules one Kbuild or Makefile names: `obj-m += a.o`,
/// `obj-m := a.o b.o`, continued lines included. A directory (`obj-m +=
/// sub/`) is not a module, and `obj-$(CONFIG_X)` depends on a config this
/// scan cannot know, so both are left out. A textual scan, not make: a
/// name computed by make is not seen.
pub fn scan_obj_m(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    // Join backslash-continued lines first, as make does.
    let joined = text.replace("\\\r\n", " ").replace("\\\n", " ");
    for line in joined.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("obj-m") else { continue };
        let rest = rest.trim_start();
        let Some(words) = ["+=", ":=", "?=", "="].iter().find_map(|op| rest.strip_prefix(op)) else { continue };
        for w in words.split_whitespace() {
            if let Some(stem) = w.strip_suffix(".o") {
                if !stem.is_empty() && !stem.contains('/') && !stem.contains('$') && !out.iter().any(|o| o == stem) {
                    out.push(stem.to_string());
                }
            }
        }
    }
    out
}

/// The `module_param(NAME, TYPE, …)` and `module_param_named(NAME, VAR,
/// TYPE, …)` declarations of one C source, as `(name, type)`.
pub fn scan_module_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (macro_, type_at) in [("module_param(", 1), ("module_param_named(", 2)] {
        let mut rest = text;
        while let Some(i) = rest.find(macro_) {
            // Not a longer identifier that ends the same way (`my_module_param(`).
            let before = rest[..i].chars().next_back();
            rest = &rest[i + macro_.len()..];
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let args: Vec<&str> = rest.split(')').next().unwrap_or("").split(',').map(str::trim).collect();
            let name = args[0];
            if args.len() > type_at && !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                out.push((name.to_string(), args[type_at].to_string()));
            }
        }
    }
    out
}

/// The parameter that switches the bug on, if the tree has one: `leak`,
/// else the first whose name contains `leak`. The lab loads the module
/// with it at 1 and its baseline with it at 0.
pub fn leak_param(params: &[Param]) -> Option<&Param> {
    params.iter().find(|p| p.name == "leak").or_else(|| params.iter().find(|p| p.name.contains("leak")))
}

/// A kernel descriptor the lab could boot, with the release it carries
/// (`debian-RELEASE`) and, for a dkms tree, why its dkms.conf refuses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub release: String,
    pub refused: Option<String>,
}

/// The release a `debian-RELEASE` descriptor name carries; other
/// descriptors (local, rpm) say theirs only once fetched.
pub fn release_of(name: &str) -> Option<&str> {
    name.strip_prefix("debian-")
}

/// The kernel chosen and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelChoice {
    pub name: String,
    pub why: String,
}

/// Release order: the numbers in it compared as numbers, in turn
/// (`6.12.117` after `6.1.0`).
fn release_key(release: &str) -> Vec<u64> {
    release.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap_or(u64::MAX)).collect()
}

/// The kernel for a tree: the default kernel when the tree builds for it
/// (it is the one kernlab's own labs boot, so likely in the cache), else
/// the newest candidate the tree builds for, a cloud flavour first on a
/// tie (fewer drivers: a shorter boot under TCG). `Err`: no candidate is
/// accepted, with each refusal.
pub fn choose_kernel(candidates: &[Candidate], dkms: bool) -> Result<KernelChoice, String> {
    let accepted: Vec<&Candidate> = candidates.iter().filter(|c| c.refused.is_none()).collect();
    if let Some(d) = accepted.iter().find(|c| c.name == DEFAULT_KERNEL) {
        let why = if dkms { "kernlab's default kernel, and the dkms.conf builds for it" } else { "kernlab's default kernel" };
        return Ok(KernelChoice { name: d.name.clone(), why: why.into() });
    }
    let newest = accepted.iter().max_by(|a, b| release_key(&a.release).cmp(&release_key(&b.release)).then(a.name.contains("cloud").cmp(&b.name.contains("cloud"))));
    match newest {
        Some(c) => {
            let not_default = candidates.iter().find(|c| c.name == DEFAULT_KERNEL).and_then(|c| c.refused.clone()).map(|r| format!(" (not the default {DEFAULT_KERNEL}: {r})")).unwrap_or_default();
            Ok(KernelChoice { name: c.name.clone(), why: format!("the newest known kernel the dkms.conf builds for{not_default}") })
        }
        None => Err(candidates.iter().map(|c| format!("{}: {}", c.name, c.refused.as_deref().unwrap_or("accepted"))).collect::<Vec<_>>().join("; ")),
    }
}

/// A lab name from the lab file's stem: lowercase, other characters as
/// `-`, within the name rule (`[a-z0-9][a-z0-9._-]{0,63}`).
pub fn lab_name(stem: &str) -> String {
    let mut s: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c.to_ascii_lowercase() } else { '-' }).collect();
    s = s.trim_start_matches(['.', '_', '-']).chars().take(64).collect();
    if s.is_empty() {
        "lab".into()
    } else {
        s
    }
}

/// The churn kinds `kernlab new --workload` offers, with what one
/// operation is.
pub const WORKLOADS: [(&str, &str); 4] = [
    ("files", "one file created, closed and unlinked on tmpfs"),
    ("sockets", "one socket's last close (socketpair(AF_UNIX) and loopback TCP)"),
    ("mixed", "files and sockets, half each"),
    ("pipes", "one pipe() or pipe2(), both ends closed"),
];

/// Everything the written lab says.
#[derive(Debug, Clone)]
pub struct Scaffold {
    pub name: String,
    /// The tree, relative to the lab file's directory.
    pub source: String,
    /// The tree as the user gave it, for the comments.
    pub tree_shown: String,
    pub kind: TreeKind,
    pub params: Vec<Param>,
    pub kernel: KernelChoice,
    /// Other kernels the tree builds for.
    pub also: Vec<String>,
    pub workload: String,
}

/// A YAML scalar for a path: plain when that is unambiguous, else quoted.
fn yaml_str(s: &str) -> String {
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "._/+-".contains(c)) && !s.starts_with('-');
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

/// The lab file, every field with a comment (what it is, its default).
pub fn render(s: &Scaffold) -> String {
    let mut o = String::new();
    let leak = leak_param(&s.params);
    let names = s.kind.module_names().join(", ");
    let _ = writeln!(o, "# An A/B leak lab for the module tree `{}`, written by `kernlab new`.", s.tree_shown);
    let _ = writeln!(o, "# Arm A boots the kernel, builds the tree against it, loads {names} and runs");
    let _ = writeln!(o, "# the workload; arm B (the baseline) does the same {}.", if leak.is_some() { "with the bug switched off" } else { "without the modules" });
    let _ = writeln!(o, "# kernlab samples slab memory in both arms and decides LEAK / NO-LEAK /");
    let _ = writeln!(o, "# INCONCLUSIVE per operation. Check it: `kernlab validate FILE`; run it:");
    let _ = writeln!(o, "# `kernlab run FILE`. Fields: docs/lab-format.md; a walk-through:");
    let _ = writeln!(o, "# docs/your-module.md.");
    let _ = writeln!(o, "#");
    match &s.kind {
        TreeKind::Dkms { package, version, modules } => {
            let _ = writeln!(o, "# The tree is a DKMS package ({package} {version}): kernlab reads its dkms.conf as");
            let _ = writeln!(o, "# dkms does (MAKE, PATCH, BUILD_EXCLUSIVE_*) and loads its BUILT_MODULE_NAMEs,");
            let _ = writeln!(o, "# in this order:");
            for m in modules {
                let _ = writeln!(o, "#   {:<16} {}", m.name, m.path);
            }
        }
        TreeKind::Kbuild { modules } => {
            let _ = writeln!(o, "# The tree is built with `make -C $KDIR M=$PWD modules` at its top. Its Kbuild");
            let _ = writeln!(o, "# and Makefiles name these `obj-m` modules, which the build is expected to");
            let _ = writeln!(o, "# produce; kernlab loads every .ko the build makes, dependencies first:");
            for m in modules {
                let _ = writeln!(o, "#   {:<16} (obj-m in {})", m.name, m.file);
            }
        }
    }
    o.push('\n');

    let _ = writeln!(o, "# The lab's name, in run directories and reports; [a-z0-9][a-z0-9._-]{{0,63}}.");
    let _ = writeln!(o, "# Required.");
    let _ = writeln!(o, "name: {}", s.name);
    let _ = writeln!(o, "# Free text for humans. Default: \"\".");
    let what = match leak {
        Some(p) => format!("{names} {}=1 vs {}=0", p.name, p.name),
        None => format!("{names} vs no module"),
    };
    let _ = writeln!(o, "description: {}", yaml_str(&format!("{what} under {} churn", s.workload)));
    let _ = writeln!(o, "# The kernel descriptor to boot (`kernlab kernel list`; `kernlab run --kernel`");
    let _ = writeln!(o, "# overrides it). Chosen: {}.", s.kernel.why);
    if !s.also.is_empty() {
        let _ = writeln!(o, "# The tree also builds for:");
        for k in &s.also {
            let _ = writeln!(o, "#   {k}");
        }
    }
    let _ = writeln!(o, "# Default: {DEFAULT_KERNEL}.");
    let _ = writeln!(o, "kernel: {}", s.kernel.name);
    let _ = writeln!(o, "# The virtual machine; its other fields (accel, machine, snapshot, ...) keep");
    let _ = writeln!(o, "# their defaults (docs/lab-format.md).");
    let _ = writeln!(o, "vm:");
    let _ = writeln!(o, "  # Guest memory. Default: 512M; 128M..=64G.");
    let _ = writeln!(o, "  memory: 512M");
    let _ = writeln!(o, "  # Virtual CPUs. Default: 1.");
    let _ = writeln!(o, "  cpus: 1");
    let _ = writeln!(o, "# Files and programs put into the guest before `setup` (the product's own");
    let _ = writeln!(o, "# stress tool: `- {{src: tools/stress.c, dst: /usr/local/bin/stress}}`, C");
    let _ = writeln!(o, "# sources are compiled for the guest). Default: none.");
    let _ = writeln!(o, "payload: []");
    let _ = writeln!(o, "# Guest shell commands run once after boot, before the modules load.");
    let _ = writeln!(o, "# Default: none.");
    let _ = writeln!(o, "setup: []");
    let _ = writeln!(o, "# Kernel modules built from source against the kernel and loaded in order");
    let _ = writeln!(o, "# after `setup`, before the workload. Default: none.");
    let _ = writeln!(o, "modules:");
    let _ = writeln!(o, "    # The module tree, relative to this file: copied whole (less .git, build");
    let _ = writeln!(o, "    # outputs and what .gitignore ignores) and built out of tree. Default: none.");
    let _ = writeln!(o, "  - source: {}", yaml_str(&s.source));
    let _ = writeln!(o, "    # Module parameters for insmod, `name: value`; a name goes to the one");
    let _ = writeln!(o, "    # module that declares it (else write `module.name`). Default: none.");
    if s.params.is_empty() {
        let _ = writeln!(o, "    # The tree's C sources declare no module_param.");
    } else {
        let _ = writeln!(o, "    # The tree's C sources declare:");
        for p in &s.params {
            let _ = writeln!(o, "    #   {:<16} {:<8} {}", p.name, p.kind, p.file);
        }
    }
    match leak {
        Some(p) => {
            let _ = writeln!(o, "    # `{}` switches the bug on here and off in the baseline.", p.name);
            let _ = writeln!(o, "    params: {{{}: 1}}", p.name);
        }
        None => {
            let _ = writeln!(o, "    params: {{}}");
        }
    }
    let _ = writeln!(o, "    # Not written, so at their defaults:");
    match &s.kind {
        TreeKind::Dkms { .. } => {
            let _ = writeln!(o, "    #   build:   the commands; default: the dkms.conf's MAKE");
            let _ = writeln!(o, "    #   ko:      the modules to load; default: the BUILT_MODULE_NAMEs above");
            let _ = writeln!(o, "    #   patches: patches applied first; default: none (the dkms.conf's PATCH");
            let _ = writeln!(o, "    #            entries for the kernel are applied anyway)");
        }
        TreeKind::Kbuild { .. } => {
            let _ = writeln!(o, "    #   build:   the commands; default: make -C \"$KDIR\" M=\"$PWD\" modules");
            let _ = writeln!(o, "    #   ko:      the modules to load; default: every .ko the build made,");
            let _ = writeln!(o, "    #            dependencies first");
            let _ = writeln!(o, "    #   patches: patches applied with `patch -p1` first; default: none");
        }
    }

    let op = WORKLOADS.iter().find(|(k, _)| *k == s.workload).map(|(_, w)| *w).unwrap_or("");
    let _ = writeln!(o, "# The workload phase, the same in both arms.");
    let _ = writeln!(o, "workload:");
    let _ = writeln!(o, "  # kernlab's built-in churn (labs/workloads/churn.c), which counts its");
    let _ = writeln!(o, "  # operations so the verdict is per operation. Default: none.");
    let _ = writeln!(o, "  churn:");
    let _ = writeln!(o, "    # files | sockets | mixed | pipes; one operation here:");
    let _ = writeln!(o, "    # {op}.");
    let _ = writeln!(o, "    # Pick what reaches the module's leaking path. Default: files.");
    let _ = writeln!(o, "    kind: {}", s.workload);
    let _ = writeln!(o, "    # Operations per second; 0 = flat out. Default: 0.");
    let _ = writeln!(o, "    rate: 1000");
    let _ = writeln!(o, "  # Guest shell commands run alongside the churn, e.g. the product's stress");
    let _ = writeln!(o, "  # tool from `payload`. To count its operations instead of the churn's, have");
    let _ = writeln!(o, "  # it print `kernlab-ops N` lines and set `ops` (docs/lab-format.md,");
    let _ = writeln!(o, "  # \"Counting operations\"). Default: none.");
    let _ = writeln!(o, "  commands: []");
    let _ = writeln!(o, "  # How long the workload runs; a decided verdict ends it sooner. Default: 30s.");
    let _ = writeln!(o, "  duration: 30s");
    let _ = writeln!(o, "# What is sampled and how often; `sources` keeps its default (all four).");
    let _ = writeln!(o, "monitor:");
    let _ = writeln!(o, "  # Sampling interval. Default: 2s.");
    let _ = writeln!(o, "  interval: 1s");
    let reclaim = matches!(s.workload.as_str(), "files" | "mixed");
    let _ = writeln!(o, "  # Drop reclaimable caches before each sample, so what is left is held.");
    let _ = writeln!(o, "  # On for a file churn (its dentries are reclaimable). Default: false.");
    let _ = writeln!(o, "  reclaim: {reclaim}");
    let _ = writeln!(o, "# The leak policy: this makes the run an A/B comparison.");
    let _ = writeln!(o, "leak:");
    let _ = writeln!(o, "  # `leak`: a reproducer, NO-LEAK fails the lab (exit 100). Once the fix is in,");
    let _ = writeln!(o, "  # switch to `no-leak` to make it a regression gate: LEAK fails it. Required.");
    let _ = writeln!(o, "  expect: leak");
    let _ = writeln!(o, "  # The primary endpoint: objects | slab | sunreclaim | cache:NAME. Default: objects");
    let _ = writeln!(o, "  # (every cache's active objects × their size: the slab total without page steps).");
    let _ = writeln!(o, "  metric: objects");
    let _ = writeln!(o, "  # A slab cache difference below this many objects per operation is no leak");
    let _ = writeln!(o, "  # worth the name (docs/method.md; `kernlab calibrate` measures the noise).");
    let _ = writeln!(o, "  # Default: 0.0005.");
    let _ = writeln!(o, "  floor_objects_per_op: 0.0005");
    let _ = writeln!(o, "  # One-sided significance level of the verdict. Default: 0.01.");
    let _ = writeln!(o, "  alpha: 0.01");
    let _ = writeln!(o, "  # Also at their defaults: floor_bytes_per_op (4), floor_per_hour (16MiB),");
    let _ = writeln!(o, "  # warmup (2s), stop_early (true), slub_nomerge (true), and attribute (auto:");
    let _ = writeln!(o, "  # after a LEAK, a second instrumented run names the allocating code; `off`");
    let _ = writeln!(o, "  # stops at the verdict).");
    let _ = writeln!(o, "  # The B arm: this lab with these overrides (modules, params, payload, setup).");
    let _ = writeln!(o, "  baseline:");
    match leak {
        Some(p) => {
            let _ = writeln!(o, "    # The same modules with the bug switched off (merged into each entry's");
            let _ = writeln!(o, "    # params). Default: none, i.e. the baseline loads no module.");
            let _ = writeln!(o, "    params: {{{}: 0}}", p.name);
        }
        None => {
            let _ = writeln!(o, "    # No module in the baseline: the product against the bare kernel. To");
            let _ = writeln!(o, "    # compare two builds, list the other build's entries here. Default: none.");
            let _ = writeln!(o, "    modules: []");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn obj_m_lines_are_scanned() {
        let cases: [(&str, &[&str]); 7] = [
            ("obj-m += khm.o\n", &["khm"]),
            ("obj-m := a.o b.o\n", &["a", "b"]),
            ("obj-m += a.o \\\n\tb.o\n", &["a", "b"]),
            ("obj-m += sub/\nobj-$(CONFIG_X) += x.o\n", &[]),
            ("# obj-m += old.o\nobj-m+=new.o # the new one\n", &["new"]),
            ("ifneq ($(KERNELRELEASE),)\nobj-m := pg_core.o\npg_core-y := pg_main.o pg_queue.o\nelse\nall:\nendif\n", &["pg_core"]),
            ("obj-m += a.o\nobj-m += a.o\n", &["a"]),
        ];
        for (text, want) in cases {
            assert_eq!(scan_obj_m(text), want, "{text:?}");
        }
    }

    #[test]
    fn module_params_are_scanned() {
        let c = "static int leak;\nmodule_param(leak, int, 0444);\nMODULE_PARM_DESC(leak, \"x\");\nmodule_param(symbol, charp, 0444);\nmodule_param_named(debug, pg_debug, bool, 0644);\nmy_module_param(no, int, 0);\n";
        assert_eq!(
            scan_module_params(c),
            [("leak".to_string(), "int".to_string()), ("symbol".into(), "charp".into()), ("debug".into(), "bool".into())]
        );
    }

    #[test]
    fn the_leak_parameter_is_found() {
        let p = |n: &str| Param { name: n.into(), kind: "int".into(), file: "x.c".into() };
        assert_eq!(leak_param(&[p("debug"), p("leak_rate"), p("leak")]).unwrap().name, "leak");
        assert_eq!(leak_param(&[p("debug"), p("inject_leak")]).unwrap().name, "inject_leak");
        assert!(leak_param(&[p("debug")]).is_none());
    }

    fn cand(name: &str, refused: Option<&str>) -> Candidate {
        Candidate { name: name.into(), release: release_of(name).unwrap().into(), refused: refused.map(Into::into) }
    }

    #[test]
    fn the_kernel_is_the_default_else_the_newest_accepted() {
        let all = [cand("debian-6.1.0-54-cloud-amd64", None), cand("debian-6.12.117+deb12-amd64", None), cand("debian-6.12.117+deb12-cloud-amd64", None)];
        assert_eq!(choose_kernel(&all, true).unwrap().name, DEFAULT_KERNEL);
        let no_61 = [cand("debian-6.1.0-54-cloud-amd64", Some("BUILD_EXCLUSIVE_KERNEL")), cand("debian-6.1.0-54-amd64", Some("x")), cand("debian-6.12.117+deb12-amd64", None), cand("debian-6.12.117+deb12-cloud-amd64", None)];
        let c = choose_kernel(&no_61, true).unwrap();
        assert_eq!(c.name, "debian-6.12.117+deb12-cloud-amd64");
        assert!(c.why.contains("not the default"), "{}", c.why);
        assert!(choose_kernel(&[cand("debian-6.1.0-54-cloud-amd64", Some("no"))], true).unwrap_err().contains("no"));
    }

    #[test]
    fn lab_names_follow_the_rule() {
        assert_eq!(lab_name("Product Leak"), "product-leak");
        assert_eq!(lab_name("_x"), "x");
        assert_eq!(lab_name("..."), "lab");
    }

    fn scaffold(kind: TreeKind, params: Vec<Param>, workload: &str) -> Scaffold {
        Scaffold {
            name: "mine".into(),
            source: "../src/mod".into(),
            tree_shown: "src/mod".into(),
            kind,
            params,
            kernel: KernelChoice { name: DEFAULT_KERNEL.into(), why: "kernlab's default kernel".into() },
            also: vec!["debian-6.12.117+deb12-cloud-amd64".into()],
            workload: workload.into(),
        }
    }

    #[test]
    fn a_rendered_lab_parses_and_says_what_it_loads() {
        let dkms = TreeKind::Dkms {
            package: "prodguard".into(),
            version: "3.2.1".into(),
            modules: vec![DkmsModule { name: "pg_core".into(), path: "core/pg_core.ko".into() }, DkmsModule { name: "pg_pipe".into(), path: "cases/pipe/pg_pipe.ko".into() }],
        };
        let leak = vec![Param { name: "leak".into(), kind: "int".into(), file: "cases/pipe/pg_pipe.c".into() }];
        let text = render(&scaffold(dkms, leak, "pipes"));
        let lab = crate::lab::parse(&text, std::path::Path::new("mine.yaml")).unwrap();
        assert_eq!(lab.modules[0].params.get("leak").map(String::as_str), Some("1"));
        let policy = lab.leak.as_ref().unwrap();
        assert_eq!(policy.baseline.params.get("leak").map(String::as_str), Some("0"));
        assert_eq!(policy.attribute, crate::lab::Attribute::Auto);
        assert!(text.contains("#   pg_core          core/pg_core.ko\n#   pg_pipe"), "{text}");
        assert!(text.contains("kind: pipes"));

        let kbuild = TreeKind::Kbuild { modules: vec![ObjM { name: "plain".into(), file: "Kbuild".into() }] };
        let text = render(&scaffold(kbuild, vec![], "sockets"));
        let lab = crate::lab::parse(&text, std::path::Path::new("mine.yaml")).unwrap();
        assert!(lab.leak.unwrap().baseline.modules.is_empty());
        assert!(lab.modules[0].params.is_empty());
        assert!(text.contains("(obj-m in Kbuild)"));
        assert!(text.contains("declare no module_param"));
    }

    #[test]
    fn every_field_has_a_comment_above_it() {
        let kbuild = TreeKind::Kbuild { modules: vec![ObjM { name: "plain".into(), file: "Kbuild".into() }] };
        let text = render(&scaffold(kbuild, vec![], "files"));
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let t = l.trim_start().trim_start_matches("- ");
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            assert!(lines[i - 1].trim_start().starts_with('#'), "no comment above `{l}`");
        }
    }
}
