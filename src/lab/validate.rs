//! A lab's own rules: ranges, names, cross-field checks (each error names
//! the file, line and field), and the values derived from its fields.

use super::*;

impl Lab {
    /// Whether a guest panic in this lab is the dump path (see
    /// [`Exhaustion::dumps`]) rather than the end of the run.
    pub fn dumps(&self) -> bool {
        self.exhaustion.as_ref().is_some_and(Exhaustion::dumps)
    }

    /// How long the workload phase may last: `exhaustion.max` for a lab that
    /// runs until exhaustion, else `workload.duration` (zero without a
    /// workload).
    pub fn phase_limit(&self) -> Duration {
        match self.exhaustion.as_ref().and_then(Exhaustion::until_max) {
            Some(max) => max,
            None => self.workload.as_ref().map(|w| w.duration).unwrap_or_default(),
        }
    }

    /// A lab with the given name and every other field at its default.
    pub fn new(name: impl Into<String>) -> Lab {
        Lab {
            name: name.into(),
            description: String::new(),
            kernel: default_kernel(),
            image: Image::default(),
            vm: Vm::default(),
            payload: Vec::new(),
            setup: Vec::new(),
            modules: Vec::new(),
            workload: None,
            monitor: Monitor::default(),
            leak: None,
            exhaustion: None,
            triage: Triage::default(),
            locations: SourceMap::default(),
        }
    }

    /// Checks ranges, names and cross-field rules; returns the first problem
    /// in file order. `file` is used only in error messages; positions come
    /// from `self.locations` (0:0, i.e. omitted, for labs built in code).
    pub fn validate(&self, file: &Path) -> Result<(), LabError> {
        let bad = |field: &str, message: String| {
            let (line, column) = self.locations.position(field);
            Err(LabError::Invalid {
                file: file.to_path_buf(),
                line,
                column,
                field: field.to_string(),
                message,
            })
        };

        if let Err(m) = check_name(&self.name) {
            return bad("name", m);
        }
        if let Err(m) = check_kernel(&self.kernel) {
            return bad("kernel", m);
        }

        let vm = &self.vm;
        if vm.memory < MIN_MEMORY {
            let m = format!(
                "must be at least {}, got {}",
                human_size(MIN_MEMORY),
                human_size(vm.memory)
            );
            return bad("vm.memory", m);
        }
        if vm.memory > MAX_MEMORY {
            let m = format!(
                "must be at most {}, got {}",
                human_size(MAX_MEMORY),
                human_size(vm.memory)
            );
            return bad("vm.memory", m);
        }
        if !(1..=MAX_CPUS).contains(&vm.cpus) {
            return bad(
                "vm.cpus",
                format!("must be between 1 and {MAX_CPUS}, got {}", vm.cpus),
            );
        }
        for (i, word) in vm.cmdline.iter().enumerate() {
            if let Err(m) = check_cmdline_word(word) {
                return bad(&format!("vm.cmdline[{i}]"), m);
            }
        }
        if let Err(m) = check_range(vm.boot_timeout, MIN_BOOT_TIMEOUT, MAX_BOOT_TIMEOUT) {
            return bad("vm.boot_timeout", m);
        }
        if vm.machine == MachineRequest::Microvm {
            if vm.kernel_format == KernelFormat::Bzimage {
                return bad("vm.machine", "microvm boots only the uncompressed vmlinux, but vm.kernel_format is `bzimage`".into());
            }
            if let Some(x) = self.exhaustion.as_ref().filter(|x| x.dumps()) {
                let action = match x.action {
                    DumpAction::Kdump => "kdump",
                    _ => "host-dump",
                };
                return bad(
                    "vm.machine",
                    format!("microvm has no pvpanic or vmcoreinfo, which exhaustion.action `{action}` needs; use `auto` or `pc`"),
                );
            }
        }

        match &self.image {
            Image::Minimal => {}
            Image::Debian(d) => {
                for (i, pkg) in d.packages.iter().enumerate() {
                    if let Err(m) = check_package(pkg) {
                        return bad(&format!("image.debian.packages[{i}]"), m);
                    }
                }
            }
            Image::Disk(d) => {
                if d.disk.as_os_str().is_empty() {
                    return bad("image.disk", "must name a qcow2 or raw disk image, relative to the lab file".into());
                }
                if let Some(root) = &d.root {
                    if root.is_empty() || root.chars().any(|c| c.is_whitespace() || c.is_control()) {
                        return bad("image.root", format!("must be one word naming the root device for `root=` (e.g. /dev/vda1, LABEL=root), got {root:?}"));
                    }
                } else if !self.modules.is_empty() || self.leak.as_ref().is_some_and(|l| !l.baseline.modules.is_empty()) {
                    return bad(
                        "image.disk",
                        "this disk boots its own kernel (no image.root), but the lab's modules are built against the lab's kernel; give image.root to boot the lab's kernel on the disk".into(),
                    );
                }
                if self.exhaustion.as_ref().is_some_and(|x| x.action == DumpAction::Kdump) {
                    return bad("exhaustion.action", "kdump needs kernlab's own guest layout (image: minimal or debian); a user's disk is dumped from the host: use `host-dump`".into());
                }
            }
        }
        if self.image.boots_disk() && self.vm.machine == MachineRequest::Microvm {
            return bad("vm.machine", format!("image `{}` boots a disk on a PC machine (firmware, the distro's initramfs); use `auto` or `pc`", self.image.kind()));
        }

        if let Err((field, m)) = check_payload(&self.payload, "payload") {
            return bad(&field, m);
        }
        if let Err((field, m)) = check_setup(&self.setup, "setup") {
            return bad(&field, m);
        }
        if let Err((field, m)) = check_modules(&self.modules, "modules") {
            return bad(&field, m);
        }
        if let Some(b) = self.leak.as_ref().map(|l| &l.baseline) {
            if let Err((field, m)) = check_modules(&b.modules, "leak.baseline.modules") {
                return bad(&field, m);
            }
            if !b.params.is_empty() {
                // `modules: []` with `params` is a contradiction too: the
                // position says whether `modules` was written at all.
                if !b.modules.is_empty() || self.locations.position("leak.baseline.modules") != self.locations.position("leak.baseline") {
                    return bad("leak.baseline.params", "give either `modules` (the baseline's own modules) or `params` (the lab's modules with other parameters), not both".into());
                }
                if self.modules.is_empty() {
                    return bad("leak.baseline.params", "the lab has no modules to give these parameters to; list the lab's `modules`, or give the baseline its own `modules`".into());
                }
                if let Err((field, m)) = check_params(&b.params, "leak.baseline.params") {
                    return bad(&field, m);
                }
            }
            if let Some(p) = &b.payload {
                if let Err((field, m)) = check_payload(p, "leak.baseline.payload") {
                    return bad(&field, m);
                }
            }
            if let Some(s) = &b.setup {
                if let Err((field, m)) = check_setup(s, "leak.baseline.setup") {
                    return bad(&field, m);
                }
            }
        }

        if let Some(w) = &self.workload {
            if w.commands.is_empty() && w.churn.is_none() {
                return bad(
                    "workload.commands",
                    "at least one command (or a `churn` workload) is required when a workload section is present"
                        .to_string(),
                );
            }
            for (i, cmd) in w.commands.iter().enumerate() {
                if cmd.trim().is_empty() {
                    return bad(
                        &format!("workload.commands[{i}]"),
                        "command must not be empty".to_string(),
                    );
                }
            }
            if let Some(path) = &w.ops {
                if let Err(m) = check_ops_file(path) {
                    return bad("workload.ops", m);
                }
            }
            if let Some(c) = &w.churn {
                if !c.uses_files() {
                    // Sockets need no file system and have nothing to write:
                    // a lab that says otherwise means something kernlab would not do.
                    if c.fs != ChurnFs::Tmpfs {
                        return bad("workload.churn.fs", format!("`{}` makes no files; `fs` applies to `kind: files` or `mixed`", c.kind.as_str()));
                    }
                    if c.write > 0 {
                        return bad("workload.churn.write", format!("`{}` makes no files; `write` applies to `kind: files` or `mixed`", c.kind.as_str()));
                    }
                }
                if !(1..=99).contains(&c.sockets) {
                    return bad("workload.churn.sockets", format!("must be a percentage from 1 to 99, got {}", c.sockets));
                }
                if c.sockets != 50 && c.kind != ChurnKind::Mixed {
                    return bad("workload.churn.sockets", format!("applies to `kind: mixed` only; this churn is `{}`", c.kind.as_str()));
                }
                if c.fs == ChurnFs::Ext4 && !(64 * MIB..=64 * GIB).contains(&c.disk) {
                    return bad("workload.churn.disk", format!("must be between 64 MiB and 64 GiB, got {}", human_size(c.disk)));
                }
            }
            if let Err(m) = check_range(w.duration, MIN_WORKLOAD, MAX_WORKLOAD) {
                return bad("workload.duration", m);
            }
        }

        let mon = &self.monitor;
        if let Err(m) = check_range(mon.interval, MIN_INTERVAL, MAX_INTERVAL) {
            return bad("monitor.interval", m);
        }
        if let Some(w) = &self.workload {
            if mon.interval > w.duration {
                let m = format!(
                    "must not be longer than workload.duration ({}), got {}",
                    human_duration(w.duration),
                    human_duration(mon.interval)
                );
                return bad("monitor.interval", m);
            }
        }
        if mon.quiesce * 2 > mon.interval {
            return bad("monitor.quiesce", format!("must be at most half of monitor.interval ({}), got {}", humantime::format_duration(mon.interval), humantime::format_duration(mon.quiesce)));
        }
        if mon.sources.is_empty() {
            return bad(
                "monitor.sources",
                "must list at least one source".to_string(),
            );
        }
        if let Some(l) = &self.leak {
            let m = l.metric.as_str();
            let metric: super::Metric = match m.parse() {
                Ok(metric) => metric,
                Err(e) => return bad("leak.metric", e),
            };
            if !(l.alpha > 0.0 && l.alpha < 0.5) {
                return bad("leak.alpha", format!("must be between 0 and 0.5 (exclusive), got {}", l.alpha));
            }
            for (field, v) in [("leak.floor_objects_per_op", l.floor_objects_per_op), ("leak.floor_bytes_per_op", l.floor_bytes_per_op)] {
                if !(v.is_finite() && v > 0.0) {
                    return bad(field, format!("must be a number above 0, got {v}"));
                }
            }
            if l.floor_per_hour == 0 {
                return bad("leak.floor_per_hour", "must be above 0 (a floor of 0 calls any difference a leak)".into());
            }
            let Some(w) = &self.workload else {
                return bad("leak", "a leak lab needs a workload to measure".into());
            };
            let planned = planned_samples(w.duration, mon.interval).saturating_sub(warmup_samples(l.warmup, mon.interval));
            if planned < MIN_LEAK_SAMPLES {
                return bad(
                    "workload.duration",
                    format!(
                        "a leak lab needs at least {MIN_LEAK_SAMPLES} samples per arm after the warm-up: {} at a {} interval, less {} of warm-up, gives {planned}",
                        humantime::format_duration(w.duration),
                        humantime::format_duration(mon.interval),
                        humantime::format_duration(l.warmup)
                    ),
                );
            }
            if l.warmup >= w.duration {
                return bad("leak.warmup", format!("must be shorter than workload.duration ({})", humantime::format_duration(w.duration)));
            }
            let needs = if metric.from_meminfo() { Source::Meminfo } else { Source::Slabinfo };
            if !mon.sources.contains(&needs) {
                return bad("monitor.sources", format!("leak.metric `{m}` needs the `{needs}` source"));
            }
        }
        if let Some(x) = &self.exhaustion {
            if x.dump_level > 31 {
                return bad("exhaustion.dump_level", format!("must be 0..=31, got {}", x.dump_level));
            }
            if x.action == DumpAction::Kdump {
                if x.crashkernel < 64 * MIB {
                    return bad("exhaustion.crashkernel", format!("must be at least 64 MiB, got {}", human_size(x.crashkernel)));
                }
                if x.crashkernel + MIN_MEMORY / 2 > vm.memory {
                    return bad(
                        "exhaustion.crashkernel",
                        format!("{} leaves too little of vm.memory ({}) for the kernel under test", human_size(x.crashkernel), human_size(vm.memory)),
                    );
                }
            }
            if x.headroom >= vm.memory {
                return bad("exhaustion.headroom", format!("must be below vm.memory ({}), got {}", human_size(vm.memory), human_size(x.headroom)));
            }
            if x.headroom > 0 && !mon.sources.contains(&Source::Meminfo) {
                return bad("monitor.sources", "exhaustion.headroom needs the `meminfo` source".into());
            }
            if let Err(m) = check_range(x.deadline, Duration::from_secs(10), Duration::from_secs(3600)) {
                return bad("exhaustion.deadline", m);
            }
            if x.hang_intervals < 2 {
                return bad("exhaustion.hang_intervals", format!("must be at least 2, got {}", x.hang_intervals));
            }
            if x.until {
                if self.workload.is_none() {
                    return bad("exhaustion.until", "a lab that runs until exhaustion needs a workload".into());
                }
                if !x.watched() {
                    return bad(
                        "exhaustion.until",
                        "nothing would end the run: with action `none` the guest does not panic on OOM; use `kdump` or `host-dump`, or set a `headroom`".into(),
                    );
                }
            }
            if let Some(max) = x.max {
                if !x.until {
                    return bad("exhaustion.max", "only applies with `exhaustion.until: true`; without it the run lasts workload.duration".into());
                }
                if let Err(m) = check_range(max, MIN_WORKLOAD, MAX_WORKLOAD) {
                    return bad("exhaustion.max", m);
                }
                if let Some(w) = self.workload.as_ref().filter(|w| max < w.duration) {
                    return bad(
                        "exhaustion.max",
                        format!(
                            "must be at least workload.duration ({}), which an A/B lab's baseline arm runs, got {}",
                            human_duration(w.duration),
                            human_duration(max)
                        ),
                    );
                }
            }
        }
        let mut seen = HashSet::new();
        for (i, s) in mon.sources.iter().enumerate() {
            if !seen.insert(*s) {
                return bad(
                    &format!("monitor.sources[{i}]"),
                    format!("duplicate source `{s}`"),
                );
            }
        }
        Ok(())
    }

    /// Checks that every `payload` entry's `src` (the baseline's too)
    /// exists, relative to the
    /// directory of `file` (the lab file as given: the copy in a run
    /// directory is not checked this way, its paths are relative to the
    /// original).
    pub fn check_files(&self, file: &Path) -> Result<(), LabError> {
        let base = file.parent().unwrap_or(Path::new(""));
        let bad = |field: String, message: String| {
            let (line, column) = self.locations.position(&field);
            Err(LabError::Invalid { file: file.to_path_buf(), line, column, field, message })
        };
        let missing = |e: &io::Error| if e.kind() == io::ErrorKind::NotFound { "does not exist".to_string() } else { format!("cannot be read: {e}") };
        let baseline = self.leak.as_ref().and_then(|l| l.baseline.payload.as_ref());
        for (list, items) in [("payload", &self.payload)].into_iter().chain(baseline.map(|p| ("leak.baseline.payload", p))) {
            for (i, p) in items.iter().enumerate() {
                let path = base.join(&p.src);
                if let Err(e) = std::fs::metadata(&path) {
                    return bad(format!("{list}[{i}].src"), format!("`{}` {} (looked for `{}`)", p.src.display(), missing(&e), path.display()));
                }
            }
        }
        if let Image::Disk(d) = &self.image {
            let path = base.join(&d.disk);
            match std::fs::metadata(&path) {
                Err(e) => return bad("image.disk".into(), format!("`{}` {} (looked for `{}`)", d.disk.display(), missing(&e), path.display())),
                Ok(md) if !md.is_file() => return bad("image.disk".into(), format!("`{}` is not a file: give a disk image (qcow2 or raw)", d.disk.display())),
                Ok(_) => {}
            }
        }
        let baseline = self.leak.as_ref().map(|l| ("leak.baseline.modules", &l.baseline.modules));
        for (list, mods) in [("modules", &self.modules)].into_iter().chain(baseline) {
            for (i, m) in mods.iter().enumerate() {
                if let Some(src) = &m.source {
                    let dir = base.join(src);
                    match std::fs::metadata(&dir) {
                        Err(e) => return bad(format!("{list}[{i}].source"), format!("`{}` {} (looked for `{}`)", src.display(), missing(&e), dir.display())),
                        Ok(md) if !md.is_dir() => return bad(format!("{list}[{i}].source"), format!("`{}` is not a directory: give the module's source tree", src.display())),
                        Ok(_) => {}
                    }
                    if m.build.is_empty() && !crate::payload::kmod::tree::buildable(&dir) {
                        return bad(format!("{list}[{i}].source"), format!("`{}` has no Kbuild, Makefile or dkms.conf at its top: kernlab cannot tell how to build it (give `build` commands)", src.display()));
                    }
                    let conf = dir.join("dkms.conf");
                    if m.build.is_empty() && conf.is_file() {
                        if let Err(e) = self.check_dkms(&conf) {
                            return bad(format!("{list}[{i}].source"), e);
                        }
                    }
                } else {
                    for (j, k) in m.ko.iter().enumerate() {
                        let path = base.join(k);
                        if let Err(e) = std::fs::metadata(&path) {
                            return bad(format!("{list}[{i}].ko[{j}]"), format!("`{}` {} (looked for `{}`)", k.display(), missing(&e), path.display()));
                        }
                        if let Err(why) = crate::payload::kmod::modinfo::read(&path) {
                            return bad(format!("{list}[{i}].ko[{j}]"), why);
                        }
                    }
                }
                for (j, p) in m.patches.iter().enumerate() {
                    let path = base.join(p);
                    match std::fs::metadata(&path) {
                        Err(e) => return bad(format!("{list}[{i}].patches[{j}]"), format!("`{}` {} (looked for `{}`)", p.display(), missing(&e), path.display())),
                        Ok(md) if !md.is_file() => return bad(format!("{list}[{i}].patches[{j}]"), format!("`{}` is not a file", p.display())),
                        Ok(_) => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads a module tree's dkms.conf as dkms would for this lab's kernel
    /// (its release from a `debian-RELEASE` name; other kernels' releases
    /// are known only once fetched, so their `BUILD_EXCLUSIVE_*` is
    /// checked at the build).
    fn check_dkms(&self, conf: &Path) -> Result<(), String> {
        use crate::payload::kmod::dkms;
        let release = self.kernel.strip_prefix("debian-");
        let vars = dkms::Vars {
            kernelver: release.unwrap_or(&self.kernel).to_string(),
            arch: crate::arch::Arch::of_debian_name(release.unwrap_or(&self.kernel)).unwrap_or_default().uname().into(),
            kernel_source_dir: PathBuf::from(format!("/lib/modules/{}/build", release.unwrap_or(&self.kernel))),
            dkms_tree: "/var/lib/dkms".into(),
            source_tree: "/usr/src".into(),
            install_tree: "/lib/modules".into(),
            module: String::new(),
            module_version: String::new(),
        };
        match dkms::read(conf, &vars) {
            Ok(_) => Ok(()),
            Err(dkms::DkmsError::Excluded { .. }) if release.is_none() => Ok(()),
            Err(e) => Err(crate::util::error_causes(&e)),
        }
    }

    /// The resolved lab as YAML, every default filled in; `parse` of the
    /// result gives an equal `Lab`.
    pub fn to_yaml(&self) -> String {
        // Serializing plain structs, strings, integers and unit enums cannot
        // fail; a failure here is a bug in this module.
        serde_saphyr::to_string(self).expect("a lab always serializes to YAML")
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok_first = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok_rest = |c: char| ok_first(c) || matches!(c, '.' | '_' | '-');
    let mut chars = name.chars();
    let valid = match chars.next() {
        None => false,
        Some(c) => ok_first(c) && chars.all(ok_rest) && name.len() <= MAX_NAME,
    };
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid lab name {name:?}: must be 1 to {MAX_NAME} characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
        ))
    }
}

fn check_kernel(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = match chars.next() {
        None => false,
        Some(c) => {
            c.is_ascii_alphanumeric()
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
                && name.len() <= MAX_KERNEL_NAME
        }
    };
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid kernel name {name:?}: must be up to {MAX_KERNEL_NAME} characters of A-Z, a-z, 0-9, '.', '_', '+', '-', starting with a letter or digit"
        ))
    }
}

fn check_cmdline_word(word: &str) -> Result<(), String> {
    if word.is_empty() {
        return Err("command-line word must not be empty".to_string());
    }
    if word.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "command-line word {word:?} must not contain whitespace or control characters (use one list item per word)"
        ));
    }
    if let Some(p) = RESERVED_CMDLINE.iter().find(|p| word.starts_with(*p)) {
        return Err(format!(
            "`{p}` is set by kernlab and cannot be overridden, got {word:?}"
        ));
    }
    Ok(())
}

/// Directories the minimal guest mounts a file system on at boot: a file
/// put there in the initrd would be hidden on a cold boot but not on a
/// restored guest.
const MOUNTED_DIRS: [&str; 6] = ["/proc", "/sys", "/dev", "/tmp", "/run", "/var/run"];

fn check_payload_dst(dst: &str) -> Result<(), String> {
    if !dst.starts_with('/') {
        return Err(format!("must be an absolute guest path (starting with `/`), got {dst:?}"));
    }
    if dst.chars().any(|c| c.is_control()) {
        return Err(format!("must not contain control characters, got {dst:?}"));
    }
    let trimmed = dst.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err("must not be `/` itself: name a file or directory under it".into());
    }
    if trimmed.split('/').any(|c| c == ".." || c == ".") {
        return Err(format!("must not contain `.` or `..` components, got {dst:?}"));
    }
    if let Some(m) = MOUNTED_DIRS.iter().find(|m| trimmed == **m || trimmed.starts_with(&format!("{m}/"))) {
        return Err(format!("{dst:?} is under {m}, which the guest mounts a fresh file system on at boot; use another directory (e.g. /opt or /root)"));
    }
    Ok(())
}

/// A field path and what is wrong there.
type FieldError = (String, String);

/// A payload list (`list` is its field path): each `src` named, each `dst`
/// a usable guest path, no `dst` twice.
fn check_payload(items: &[PayloadItem], list: &str) -> Result<(), FieldError> {
    let mut dsts = HashSet::new();
    for (i, p) in items.iter().enumerate() {
        if p.src.as_os_str().is_empty() {
            return Err((format!("{list}[{i}].src"), "must name a file or directory, relative to the lab file".into()));
        }
        check_payload_dst(&p.dst).map_err(|m| (format!("{list}[{i}].dst"), m))?;
        if !dsts.insert(p.dst.trim_end_matches('/')) {
            return Err((format!("{list}[{i}].dst"), format!("{:?} is already the dst of an earlier payload entry", p.dst)));
        }
    }
    Ok(())
}

/// A list of setup commands, each non-empty.
fn check_setup(commands: &[String], list: &str) -> Result<(), FieldError> {
    match commands.iter().position(|c| c.trim().is_empty()) {
        Some(i) => Err((format!("{list}[{i}]"), "command must not be empty".into())),
        None => Ok(()),
    }
}

/// A list of modules: each with a source, its parameters well formed.
fn check_modules(mods: &[Module], list: &str) -> Result<(), FieldError> {
    for (i, m) in mods.iter().enumerate() {
        let at = |f: &str| format!("{list}[{i}]{f}");
        match &m.source {
            Some(s) if s.as_os_str().is_empty() => return Err((at(".source"), "must name the module's source directory".into())),
            Some(_) => {}
            None if m.ko.is_empty() => return Err((at(""), "give `source` (the module's source tree) or `ko` (a prebuilt module)".into())),
            None if !m.build.is_empty() => return Err((at(".build"), "`build` needs a `source` tree to build in".into())),
            None if !m.patches.is_empty() => return Err((at(".patches"), "`patches` need a `source` tree to apply to".into())),
            None => {}
        }
        for (j, c) in m.build.iter().enumerate() {
            if c.trim().is_empty() {
                return Err((at(&format!(".build[{j}]")), "command must not be empty".into()));
            }
        }
        for (j, k) in m.ko.iter().enumerate() {
            if k.extension().is_none_or(|e| e != "ko") {
                return Err((at(&format!(".ko[{j}]")), format!("`{}` is not a `.ko` file name", k.display())));
            }
            if m.source.is_some() && (k.is_absolute() || k.components().any(|c| c == std::path::Component::ParentDir)) {
                return Err((at(&format!(".ko[{j}]")), format!("`{}` must be a path inside the source tree (it names a built object)", k.display())));
            }
        }
        check_params(&m.params, &format!("{list}[{i}].params"))?;
    }
    Ok(())
}

/// Module parameters (`at` is the map's field path): names are C
/// identifiers, values one line the kernel's parser can take.
fn check_params(params: &BTreeMap<String, String>, at: &str) -> Result<(), FieldError> {
    for (k, v) in params {
        let field = format!("{at}.{k}");
        let ident = |k: &str| k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        // `module.name` picks one of an entry's modules.
        let ok = match k.split_once('.') {
            Some((m, p)) => ident(m) && ident(p),
            None => ident(k),
        };
        if !ok {
            return Err((field, format!("parameter name {k:?} is not a C identifier (or `module.name`)")));
        }
        if v.chars().any(|c| c.is_control()) {
            return Err((field, "value must not contain control characters".into()));
        }
        if v.contains('"') {
            // The kernel's argument parser has no escape for it.
            return Err((field, "value must not contain a double quote (the kernel cannot take one in a module parameter)".into()));
        }
    }
    Ok(())
}

/// `workload.ops`: an absolute guest path of plain characters (it is put
/// into the guest's shell and awk text), not a directory, and not the file
/// kernlab's own count uses.
fn check_ops_file(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("must be an absolute guest path (starting with `/`), got {path:?}"));
    }
    if let Some(c) = path.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | ','))) {
        return Err(format!("may hold only letters, digits and `/._-+,`, got {c:?} in {path:?}"));
    }
    if path.ends_with('/') {
        return Err(format!("must name a file, not a directory, got {path:?}"));
    }
    if path.split('/').any(|c| c == ".." || c == ".") {
        return Err(format!("must not contain `.` or `..` components, got {path:?}"));
    }
    if path == crate::sample::parse::OPS_FILE {
        return Err(format!("{path} is where the churn and `kernlab-ops` lines keep the count without `workload.ops`; leave `ops` out, or name your own file"));
    }
    if ["/proc", "/sys", "/dev"].iter().any(|m| path == *m || path.starts_with(&format!("{m}/"))) {
        return Err(format!("{path:?} is in a kernel file system; name a file the workload writes (e.g. under /run)"));
    }
    Ok(())
}

fn check_range(d: Duration, min: Duration, max: Duration) -> Result<(), String> {
    if d < min {
        Err(format!(
            "must be at least {}, got {}",
            human_duration(min),
            human_duration(d)
        ))
    } else if d > max {
        Err(format!(
            "must be at most {}, got {}",
            human_duration(max),
            human_duration(d)
        ))
    } else {
        Ok(())
    }
}

/// A Debian package name (policy 5.6.1): lower-case letters, digits, `+`,
/// `-`, `.`; at least two characters, starting with a letter or digit.
fn check_package(name: &str) -> Result<(), String> {
    let ok = name.len() >= 2
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a Debian package name (lower-case letters, digits, `+`, `-`, `.`)"))
    }
}
