//! Unit tests for lab parsing and validation; the file corpus under
//! `tests/labs/` covers the same rules end to end.

use super::*;

fn p(text: &str) -> Result<Lab, LabError> {
    parse(text, Path::new("t.yaml"))
}

fn err(text: &str) -> String {
    match p(text) {
        Ok(lab) => panic!("expected an error for {text:?}, got {lab:?}"),
        Err(e) => e.to_string(),
    }
}

fn invalid_field(text: &str) -> String {
    match p(text) {
        Err(LabError::Invalid { field, .. }) => field,
        other => panic!("expected Invalid for {text:?}, got {other:?}"),
    }
}

const FULL: &str = "\
name: full
description: every field
kernel: debian-6.1.0-54-cloud-amd64
image: minimal
vm:
  memory: 1G
  cpus: 2
  accel: tcg
  cmdline: [slub_nomerge, \"slab_debug=FZ\"]
  boot_timeout: 90s
setup:
  - sysctl -w vm.dirty_ratio=10
workload:
  commands: [\"stress-ng --vm 1 --timeout 20s\"]
  duration: 2m
monitor:
  interval: 500ms
  sources: [slabinfo, meminfo]
";

#[test]
fn defaults_filled_in() {
    let lab = p("name: x\n").unwrap();
    assert_eq!(lab, Lab::new("x"));
    assert_eq!(lab.description, "");
    assert_eq!(lab.kernel, DEFAULT_KERNEL);
    assert_eq!(lab.image, Image::Minimal);
    assert_eq!(lab.vm.memory, 512 * MIB);
    assert_eq!(lab.vm.cpus, 1);
    assert_eq!(lab.vm.accel, AccelRequest::Auto);
    assert!(lab.vm.cmdline.is_empty());
    assert_eq!(lab.vm.boot_timeout, Duration::from_secs(60));
    assert!(lab.setup.is_empty());
    assert!(lab.workload.is_none());
    assert_eq!(lab.monitor.interval, Duration::from_secs(2));
    assert_eq!(lab.monitor.sources, Source::ALL.to_vec());
}

#[test]
fn workload_defaults() {
    let lab = p("name: x\nworkload:\n  commands: [\"true\"]\n").unwrap();
    assert_eq!(lab.workload.unwrap().duration, Duration::from_secs(30));
}

#[test]
fn full_lab_parses() {
    let lab = p(FULL).unwrap();
    assert_eq!(lab.vm.memory, GIB);
    assert_eq!(lab.vm.cpus, 2);
    assert_eq!(lab.vm.accel, AccelRequest::Tcg);
    assert_eq!(lab.vm.cmdline, ["slub_nomerge", "slab_debug=FZ"]);
    assert_eq!(lab.vm.boot_timeout, Duration::from_secs(90));
    let w = lab.workload.as_ref().unwrap();
    assert_eq!(w.duration, Duration::from_secs(120));
    assert_eq!(lab.monitor.interval, Duration::from_millis(500));
    assert_eq!(lab.monitor.sources, [Source::Slabinfo, Source::Meminfo]);
}

#[test]
fn round_trip() {
    for text in [
        "name: x\n",
        FULL,
        "name: y\nvm:\n  memory: 1000000000\n  boot_timeout: 10m\n",
    ] {
        let lab = p(text).unwrap();
        let yaml = lab.to_yaml();
        let again = p(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(lab, again, "{yaml}");
    }
    let yaml = p("name: x\n").unwrap().to_yaml();
    assert!(yaml.contains("512MiB"), "{yaml}");
    assert!(yaml.contains("dentry-state"), "{yaml}");
}

#[test]
fn integers_accepted_for_sizes_and_durations() {
    let lab = p("name: x\nvm:\n  memory: 268435456\n  boot_timeout: 30\n").unwrap();
    assert_eq!(lab.vm.memory, 256 * MIB);
    assert_eq!(lab.vm.boot_timeout, Duration::from_secs(30));
}

#[test]
fn parse_size_table() {
    let ok: &[(&str, u64)] = &[
        ("0", 0),
        ("4096", 4096),
        ("4096B", 4096),
        ("1K", 1024),
        ("65536K", 64 * MIB),
        ("512M", 512 * MIB),
        ("512MiB", 512 * MIB),
        ("512MB", 512 * MIB),
        ("512 MiB", 512 * MIB),
        ("512m", 512 * MIB),
        ("1G", GIB),
        ("1GiB", GIB),
        ("2T", 2 * 1024 * GIB),
        (" 8G ", 8 * GIB),
    ];
    for (s, want) in ok {
        assert_eq!(parse_size(s), Ok(*want), "{s}");
    }
    for s in [
        "",
        "M",
        "12Q",
        "1.5G",
        "-1G",
        "1GG",
        "1 G B",
        "99999999999999999999",
        "16777216T",
    ] {
        assert!(parse_size(s).is_err(), "{s} should be rejected");
    }
    assert!(parse_size("12Q").unwrap_err().contains("unknown unit"));
}

#[test]
fn format_size_picks_exact_unit() {
    assert_eq!(format_size(512 * MIB), "512MiB");
    assert_eq!(format_size(GIB), "1GiB");
    assert_eq!(format_size(1536 * MIB), "1536MiB");
    assert_eq!(format_size(1000), "1000");
    assert_eq!(format_size(0), "0");
}

#[test]
fn name_rules() {
    for good in ["x", "smoke", "a.b_c-1", "0lab", &"a".repeat(64)] {
        p(&format!("name: \"{good}\"\n")).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for bad in ["", "Smoke", "-x", ".x", "a b", "a/b", &"a".repeat(65)] {
        assert_eq!(
            invalid_field(&format!("name: \"{bad}\"\n")),
            "name",
            "{bad}"
        );
    }
}

#[test]
fn kernel_rules() {
    p("name: x\nkernel: linux-6.12+debug\n").unwrap();
    for bad in ["", "../etc", "a/b", "-x", "a b"] {
        assert_eq!(
            invalid_field(&format!("name: x\nkernel: \"{bad}\"\n")),
            "kernel",
            "{bad}"
        );
    }
}

#[test]
fn memory_limits() {
    p("name: x\nvm: {memory: 128M}\n").unwrap();
    p("name: x\nvm: {memory: 64G}\n").unwrap();
    let e = err("name: x\nvm:\n  memory: 0\n");
    assert_eq!(e, "t.yaml:3:11: vm.memory: must be at least 128 MiB, got 0");
    assert_eq!(invalid_field("name: x\nvm: {memory: 127M}\n"), "vm.memory");
    assert_eq!(invalid_field("name: x\nvm: {memory: 65G}\n"), "vm.memory");
    let e = err("name: x\nvm:\n  memory: -5\n");
    assert!(e.starts_with("t.yaml:3:11: vm.memory: "), "{e}");
    assert!(e.contains("negative"), "{e}");
    let e = err("name: x\nvm:\n  memory: 12Q\n");
    assert!(e.contains("vm.memory") && e.contains("unknown unit"), "{e}");
}

#[test]
fn cpus_limits() {
    p("name: x\nvm: {cpus: 64}\n").unwrap();
    assert_eq!(invalid_field("name: x\nvm: {cpus: 0}\n"), "vm.cpus");
    assert_eq!(invalid_field("name: x\nvm: {cpus: 65}\n"), "vm.cpus");
    let e = err("name: x\nvm:\n  cpus: two\n");
    assert!(e.starts_with("t.yaml:3:") && e.contains("vm.cpus: "), "{e}");
    let e = err("name: x\nvm:\n  cpus: -1\n");
    assert!(e.contains("vm.cpus") && e.contains("negative"), "{e}");
}

#[test]
fn cmdline_rules() {
    p("name: x\nvm: {cmdline: [slub_nomerge, \"kasan=on\"]}\n").unwrap();
    for (bad, what) in [
        ("\"\"", "empty"),
        ("\"a b\"", "whitespace"),
        ("\"a\\tb\"", "whitespace"),
        ("\"a\\u0001\"", "control"),
        ("\"console=ttyS1\"", "console="),
        ("\"init=/bin/sh\"", "init="),
        ("\"rdinit=/x\"", "rdinit="),
    ] {
        let e = err(&format!("name: x\nvm:\n  cmdline: [ok, {bad}]\n"));
        assert!(
            e.contains("vm.cmdline[1]") && e.contains(what),
            "{bad}: {e}"
        );
    }
}

#[test]
fn accel_is_an_enum() {
    for a in ["auto", "kvm", "tcg"] {
        p(&format!("name: x\nvm: {{accel: {a}}}\n")).unwrap();
    }
    let e = err("name: x\nvm:\n  accel: hyperv\n");
    assert!(
        e.contains("vm.accel") && e.contains("hyperv") && e.contains("tcg"),
        "{e}"
    );
}

#[test]
fn snapshot_is_auto_or_off() {
    assert_eq!(p("name: x\n").unwrap().vm.snapshot, SnapshotPolicy::Auto);
    assert_eq!(p("name: x\nvm:\n  snapshot: off\n").unwrap().vm.snapshot, SnapshotPolicy::Off);
    assert_eq!(p("name: x\nvm: {snapshot: auto}\n").unwrap().vm.snapshot, SnapshotPolicy::Auto);
    // A boolean is not a policy: `false` would read as "no snapshot" to some
    // and as "not off" to others.
    for bad in ["always", "false", "no"] {
        let e = err(&format!("name: x\nvm:\n  snapshot: {bad}\n"));
        assert!(e.contains("vm.snapshot") && e.contains("auto, off"), "{bad}: {e}");
    }
    let lab = p("name: x\nvm:\n  snapshot: off\n").unwrap();
    assert_eq!(p(&lab.to_yaml()).unwrap(), lab);
}

#[test]
fn boot_timeout_limits() {
    p("name: x\nvm: {boot_timeout: 5s}\n").unwrap();
    p("name: x\nvm: {boot_timeout: 10m}\n").unwrap();
    assert_eq!(
        invalid_field("name: x\nvm: {boot_timeout: 4s}\n"),
        "vm.boot_timeout"
    );
    assert_eq!(
        invalid_field("name: x\nvm: {boot_timeout: 11m}\n"),
        "vm.boot_timeout"
    );
}

#[test]
fn setup_commands_non_empty() {
    let e = err("name: x\nsetup:\n  - echo hi\n  - \"  \"\n");
    assert_eq!(e, "t.yaml:4:5: setup[1]: command must not be empty");
}

#[test]
fn workload_rules() {
    assert_eq!(
        invalid_field("name: x\nworkload:\n  duration: 10s\n"),
        "workload.commands"
    );
    assert_eq!(
        invalid_field("name: x\nworkload: {commands: []}\n"),
        "workload.commands"
    );
    assert_eq!(
        invalid_field("name: x\nworkload: {commands: [\"\"]}\n"),
        "workload.commands[0]"
    );
    assert_eq!(
        invalid_field("name: x\nworkload: {commands: [ls], duration: 500ms}\n"),
        "workload.duration"
    );
    assert_eq!(
        invalid_field("name: x\nworkload: {commands: [ls], duration: 8d}\n"),
        "workload.duration"
    );
    let e = err("name: x\nworkload:\n  commands: [ls]\n  duration: 100y\n");
    assert!(
        e.starts_with("t.yaml:4:13: workload.duration: must be at most 7days"),
        "{e}"
    );
    p("name: x\nworkload: {commands: [ls], duration: 7d}\n").unwrap();
}

#[test]
fn until_exhaustion_has_a_max_and_resolves_to_it() {
    let base = "name: x\nworkload:\n  commands: [\"sleep 1\"]\n  duration: 60s\nexhaustion:\n  action: kdump\n";
    // Without `until`, the phase is the workload's duration and there is no max.
    let lab = p(base).unwrap();
    let x = lab.exhaustion.as_ref().unwrap();
    assert!(!x.until && x.max.is_none() && x.until_max().is_none());
    assert_eq!(lab.phase_limit(), Duration::from_secs(60));
    assert!(!lab.to_yaml().contains("until") && !lab.to_yaml().contains("max"), "{}", lab.to_yaml());
    // `until` alone: the default max, written out in the resolved form.
    let lab = p(&format!("{base}  until: true\n")).unwrap();
    assert_eq!(lab.exhaustion.as_ref().unwrap().max, Some(DEFAULT_EXHAUSTION_MAX));
    assert_eq!(lab.phase_limit(), Duration::from_secs(600));
    let yaml = lab.to_yaml();
    assert!(yaml.contains("until: true") && yaml.contains("max: 10m"), "{yaml}");
    assert_eq!(p(&yaml).unwrap(), lab);
    // An explicit max; a lab built in code without one gets the default.
    let lab = p(&format!("{base}  until: true\n  max: 90s\n")).unwrap();
    assert_eq!(lab.phase_limit(), Duration::from_secs(90));
    let mut coded = lab.clone();
    coded.exhaustion.as_mut().unwrap().max = None;
    assert_eq!(coded.phase_limit(), DEFAULT_EXHAUSTION_MAX);
    // A headroom is a trigger too, with no dump action.
    assert!(p("name: x\nworkload:\n  commands: [\"sleep 1\"]\nexhaustion:\n  action: none\n  headroom: 64M\n  until: true\n").is_ok());
}

#[test]
fn until_exhaustion_rules() {
    let base = "name: x\nworkload:\n  commands: [\"sleep 1\"]\n  duration: 60s\nexhaustion:\n";
    for (tail, field, message) in [
        ("  action: kdump\n  max: 5m\n", "exhaustion.max", "only applies with `exhaustion.until: true`"),
        ("  action: kdump\n  until: true\n  max: 30s\n", "exhaustion.max", "must be at least workload.duration (1m)"),
        ("  action: kdump\n  until: true\n  max: 8d\n", "exhaustion.max", "must be at most 7days"),
        ("  action: none\n  until: true\n", "exhaustion.until", "nothing would end the run"),
        ("  action: kdump\n  until: true\n  max: soon\n", "exhaustion.max", "invalid duration"),
        ("  action: kdump\n  until: 1\n", "exhaustion.until", ""),
    ] {
        let e = err(&format!("{base}{tail}"));
        assert!(e.contains(&format!("{field}: ")) && e.contains(message), "{tail:?}: {e}");
        assert!(e.starts_with("t.yaml:"), "{e}");
    }
    let e = err("name: x\nexhaustion:\n  action: kdump\n  until: true\n");
    assert!(e.contains("t.yaml:4:10: exhaustion.until: a lab that runs until exhaustion needs a workload"), "{e}");
}

#[test]
fn monitor_rules() {
    p("name: x\nmonitor: {interval: 100ms}\n").unwrap();
    p("name: x\nmonitor: {interval: 1h}\n").unwrap();
    assert_eq!(
        invalid_field("name: x\nmonitor: {interval: 99ms}\n"),
        "monitor.interval"
    );
    assert_eq!(
        invalid_field("name: x\nmonitor: {interval: 2h}\n"),
        "monitor.interval"
    );
    let e =
        err("name: x\nworkload:\n  commands: [ls]\n  duration: 5s\nmonitor:\n  interval: 10s\n");
    assert!(
        e.starts_with("t.yaml:6:13: monitor.interval: must not be longer than workload.duration"),
        "{e}"
    );
    let e = err("name: x\nmonitor:\n  interval: -2s\n");
    assert!(
        e.contains("monitor.interval") && e.contains("negative"),
        "{e}"
    );
    let e = err("name: x\nmonitor:\n  interval: 99999999999999999999y\n");
    assert!(e.contains("monitor.interval"), "{e}");
    assert_eq!(
        invalid_field("name: x\nmonitor: {sources: []}\n"),
        "monitor.sources"
    );
    assert_eq!(
        invalid_field("name: x\nmonitor: {sources: [meminfo, slabinfo, meminfo]}\n"),
        "monitor.sources[2]"
    );
    let e = err("name: x\nmonitor: {sources: [vmstat]}\n");
    assert!(
        e.contains("monitor.sources[0]") && e.contains("vmstat"),
        "{e}"
    );
}

#[test]
fn unknown_keys_are_named() {
    let e = err("name: x\nbogus: 1\n");
    assert!(
        e.starts_with("t.yaml:2:1: bogus: unknown field `bogus`"),
        "{e}"
    );
    assert!(e.contains("workload"), "should list expected keys: {e}");
    let e = err("name: x\nvm:\n  memroy: 1G\n");
    assert!(
        e.starts_with("t.yaml:3:3: vm.memroy: unknown field `memroy`"),
        "{e}"
    );
    assert!(e.contains("memory"), "{e}");
}

#[test]
fn missing_name() {
    let e = err("description: no name\n");
    assert!(e.contains("missing required field `name`"), "{e}");
    assert!(matches!(p(""), Err(LabError::Syntax { .. })));
}

#[test]
fn yaml_syntax_error() {
    let e = p("name: x\nvm: [1, 2\n").unwrap_err();
    assert!(
        matches!(e, LabError::Syntax { line, .. } if line > 0),
        "{e:?}"
    );
    assert!(e.to_string().contains("invalid YAML"), "{e}");
}

#[test]
fn validate_without_locations_omits_position() {
    let mut lab = Lab::new("x");
    lab.vm.cpus = 0;
    let e = lab.validate(Path::new("gen")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "gen: vm.cpus: must be between 1 and 64, got 0"
    );
}

#[test]
fn read_error_names_file() {
    let e = load(Path::new("/nonexistent/lab.yaml")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot read lab file `/nonexistent/lab.yaml`"
    );
    assert!(std::error::Error::source(&e).is_some());
}

#[test]
fn churn_kind_parses_defaults_to_files_and_round_trips() {
    let kind = |yaml: &str| p(yaml).unwrap().workload.unwrap().churn.unwrap().kind;
    assert_eq!(kind("name: x\nworkload:\n  churn: {}\n"), ChurnKind::Files);
    assert_eq!(kind("name: x\nworkload:\n  churn: {kind: files}\n"), ChurnKind::Files);
    assert_eq!(kind("name: x\nworkload:\n  churn: {kind: sockets, rate: 1000}\n"), ChurnKind::Sockets);
    assert_eq!(kind("name: x\nworkload:\n  churn: {kind: mixed, fs: ext4}\n"), ChurnKind::Mixed);
    let lab = p("name: x\nworkload:\n  churn: {kind: sockets}\n").unwrap();
    assert!(lab.to_yaml().contains("kind: sockets"), "{}", lab.to_yaml());
    assert_eq!(p(&lab.to_yaml()).unwrap(), lab);
    assert!(!lab.workload.unwrap().churn.unwrap().uses_files());
}

#[test]
fn churn_kind_pipes_parses_and_makes_no_files() {
    let lab = p("name: x\nworkload:\n  churn: {kind: pipes, rate: 1000}\n").unwrap();
    let c = lab.workload.as_ref().unwrap().churn.as_ref().unwrap();
    assert_eq!((c.kind, c.kind.as_str(), c.uses_files()), (ChurnKind::Pipes, "pipes", false));
    assert_eq!(p(&lab.to_yaml()).unwrap(), lab);
}

#[test]
fn workload_ops_names_the_count_file() {
    let lab = p("name: x\nworkload:\n  commands: [/opt/app/run]\n  ops: /run/app/ops\n").unwrap();
    let w = lab.workload.as_ref().unwrap();
    assert_eq!((w.ops.as_deref(), w.ops_file(), w.counts_lines()), (Some("/run/app/ops"), "/run/app/ops", true));
    assert!(lab.to_yaml().contains("ops: /run/app/ops"), "{}", lab.to_yaml());
    assert_eq!(p(&lab.to_yaml()).unwrap(), lab);
    // Default: kernlab's own file, written by the churn or the commands' lines.
    let w = p("name: x\nworkload:\n  commands: [true]\n").unwrap().workload.unwrap();
    assert_eq!((w.ops.as_deref(), w.ops_file(), w.counts_lines()), (None, "/run/kernlab-ops", true));
    // A churn without `ops` owns the count: the commands' lines are plain output.
    let w = p("name: x\nworkload:\n  churn: {}\n  commands: [true]\n").unwrap().workload.unwrap();
    assert!(!w.counts_lines());
    // With `ops`, the lab's count wins over the churn's, and lines write it.
    let w = p("name: x\nworkload:\n  churn: {}\n  commands: [true]\n  ops: /tmp/n\n").unwrap().workload.unwrap();
    assert!(w.counts_lines() && w.ops_file() == "/tmp/n");
    // A churn alone has no commands to filter.
    assert!(!p("name: x\nworkload:\n  churn: {}\n  ops: /tmp/n\n").unwrap().workload.unwrap().counts_lines());
}

#[test]
fn workload_ops_errors_name_the_field_and_line() {
    let e = err("name: x\nworkload:\n  commands: [true]\n  ops: run/ops\n");
    assert_eq!(e, "t.yaml:4:8: workload.ops: must be an absolute guest path (starting with `/`), got \"run/ops\"");
    for bad in ["/run/a b", "/run/$(x)", "/run/'q'", "/run/ops/", "/run/../etc/x", "/proc/x", "/run/kernlab-ops", "/sys/kernel/x"] {
        assert_eq!(invalid_field(&format!("name: x\nworkload:\n  commands: [true]\n  ops: \"{bad}\"\n")), "workload.ops", "{bad}");
    }
    let e = err("name: x\nworkload:\n  commands: [true]\n  ops: /run/kernlab-ops\n");
    assert!(e.contains("leave `ops` out"), "{e}");
    let e = err("name: x\nworkload:\n  commands: [true]\n  opps: /run/x\n");
    assert!(e.contains("unknown field `opps`"), "{e}");
}

#[test]
fn churn_kind_errors_name_the_field_and_line() {
    let e = err("name: x\nworkload:\n  churn:\n    kind: fifos\n");
    assert!(e.starts_with("t.yaml:4:"), "{e}");
    assert!(e.contains("unknown variant `fifos`") && e.contains("files") && e.contains("sockets") && e.contains("mixed") && e.contains("pipes"), "{e}");
    // Pipes make no files either.
    assert_eq!(invalid_field("name: x\nworkload:\n  churn: {kind: pipes, fs: ext4}\n"), "workload.churn.fs");
    // Sockets make no files: a file system or a write size is a mistake.
    assert_eq!(invalid_field("name: x\nworkload:\n  churn: {kind: sockets, fs: ext4}\n"), "workload.churn.fs");
    let e = err("name: x\nworkload:\n  churn:\n    kind: sockets\n    write: 4K\n");
    assert!(e.contains("workload.churn.write: `sockets` makes no files"), "{e}");
    // mixed makes files too: both are fine there.
    assert!(p("name: x\nworkload:\n  churn: {kind: mixed, fs: ext4, write: 4K}\n").is_ok());
    // The socket share applies to mixed only, as a percentage.
    let lab = p("name: x\nworkload:\n  churn: {kind: mixed, sockets: 90}\n").unwrap();
    assert_eq!(lab.workload.as_ref().unwrap().churn.as_ref().unwrap().sockets, 90);
    assert_eq!(p(&lab.to_yaml()).unwrap(), lab);
    assert_eq!(invalid_field("name: x\nworkload:\n  churn: {kind: mixed, sockets: 100}\n"), "workload.churn.sockets");
    assert_eq!(invalid_field("name: x\nworkload:\n  churn: {kind: mixed, sockets: 0}\n"), "workload.churn.sockets");
    let e = err("name: x\nworkload:\n  churn:\n    kind: files\n    sockets: 90\n");
    assert!(e.contains("workload.churn.sockets: applies to `kind: mixed` only"), "{e}");
}

mod fuzz {
    //! The lab parser on mangled input: it may refuse, but it must not
    //! panic, and every refusal names the file.
    use super::*;
    use proptest::prelude::*;

    const SEEDS: [&str; 3] = [
        include_str!("../../tests/labs/good/full.yaml"),
        include_str!("../../labs/leak-lab.yaml"),
        include_str!("../../labs/leak-to-crash.yaml"),
    ];

    fn check(text: &str) {
        match parse(text, Path::new("fuzz.yaml")) {
            Ok(lab) => {
                // What parses also prints and parses again to the same lab.
                let again = parse(&lab.to_yaml(), Path::new("fuzz.yaml")).expect("a printed lab parses");
                assert_eq!(again.to_yaml(), lab.to_yaml());
            }
            Err(e) => assert!(e.to_string().contains("fuzz.yaml"), "{e}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
            check(&text);
        }

        #[test]
        fn mangled_labs_never_panic(seed in 0usize..3, edits in proptest::collection::vec((any::<prop::sample::Index>(), "[ -~\\n:#\\[\\]{}'\"-]{0,6}", 0usize..8), 1..6)) {
            let mut text = SEEDS[seed].to_string();
            for (at, insert, cut) in edits {
                let mut i = at.index(text.len() + 1);
                while !text.is_char_boundary(i) { i -= 1; }
                let mut j = (i + cut).min(text.len());
                while !text.is_char_boundary(j) { j -= 1; }
                text.replace_range(i..j, &insert);
            }
            check(&text);
        }
    }
}

#[test]
fn payload_entries_parse_and_round_trip() {
    let lab = p("name: x\npayload:\n  - {src: prog.c, dst: /usr/local/bin/prog}\n  - src: conf\n    dst: /etc/app/\n").unwrap();
    assert_eq!(lab.payload.len(), 2);
    assert_eq!(lab.payload[0], PayloadItem { src: "prog.c".into(), dst: "/usr/local/bin/prog".into() });
    assert_eq!(p(&lab.to_yaml()).unwrap(), lab);
    assert!(!Lab::new("x").to_yaml().contains("payload"), "absent when empty");
}

#[test]
fn payload_errors_name_the_line_and_field() {
    let e = err("name: x\npayload:\n  - src: prog.c\n    dst: usr/bin/prog\n");
    assert!(e.starts_with("t.yaml:4:10: payload[0].dst: must be an absolute guest path"), "{e}");
    assert_eq!(invalid_field("name: x\npayload:\n  - {src: '', dst: /a}\n"), "payload[0].src");
    assert!(err("name: x\npayload:\n  - {src: a, dst: /tmp/a}\n").contains("under /tmp"));
    assert!(err("name: x\npayload:\n  - {src: a, dst: /}\n").contains("payload[0].dst: must not be `/`"));
    assert!(err("name: x\npayload:\n  - {src: a, dst: /opt/../etc}\n").contains("`..`"));
    assert!(err("name: x\npayload:\n  - {src: a, dst: /opt/a}\n  - {src: b, dst: /opt/a/}\n").contains("payload[1].dst: \"/opt/a/\" is already the dst"));
    // A key the entry does not have.
    assert!(err("name: x\npayload:\n  - {src: a, dst: /a, mode: 755}\n").contains("payload[0]"));
    // dst is required.
    assert!(err("name: x\npayload:\n  - {src: a}\n").contains("dst"));
}

#[test]
fn a_missing_payload_src_names_its_line() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("there.conf"), "x\n").unwrap();
    let file = d.path().join("lab.yaml");
    let text = "name: x\npayload:\n  - {src: there.conf, dst: /etc/there.conf}\n  - {src: gone.c, dst: /usr/bin/gone}\n";
    let lab = parse(text, &file).unwrap();
    let e = lab.check_files(&file).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}:4:11: payload[1].src: `gone.c` does not exist", file.display())), "{e}");
    let ok = parse("name: x\npayload:\n  - {src: there.conf, dst: /etc/there.conf}\n", &file).unwrap();
    ok.check_files(&file).unwrap();
}


#[test]
fn image_forms_parse_and_round_trip() {
    let image = |yaml: &str| p(yaml).unwrap_or_else(|e| panic!("{e}")).image;
    let debian = |pkgs: &[&str]| Image::Debian(DebianImage { packages: pkgs.iter().map(|s| s.to_string()).collect() });
    let disk = |root: Option<&str>| Image::Disk(DiskImage { disk: "sles.qcow2".into(), root: root.map(String::from) });
    let cases = [
        ("name: x\n", Image::Minimal),
        ("name: x\nimage: minimal\n", Image::Minimal),
        ("name: x\nimage: debian\n", debian(&[])),
        // `debian:` with nothing after it, or an empty list: the base recipe.
        ("name: x\nimage:\n  debian:\n", debian(&[])),
        ("name: x\nimage: {debian: {packages: []}}\n", debian(&[])),
        ("name: x\nimage:\n  debian:\n    packages: [strace, libc6-dbg, g++]\n", debian(&["strace", "libc6-dbg", "g++"])),
        ("name: x\nimage: {disk: sles.qcow2}\n", disk(None)),
        ("name: x\nimage:\n  disk: sles.qcow2\n  root: /dev/vda2\n", disk(Some("/dev/vda2"))),
    ];
    for (yaml, want) in cases {
        let lab = p(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
        assert_eq!(lab.image, want, "{yaml}");
        let printed = lab.to_yaml();
        assert_eq!(p(&printed).unwrap_or_else(|e| panic!("{e}\n{printed}")), lab, "{printed}");
    }
    // The resolved form writes the short name when it says it all.
    assert!(p("name: x\nimage: {debian: {packages: []}}\n").unwrap().to_yaml().contains("image: debian\n"));
    let printed = p("name: x\nimage: {debian: {packages: [strace]}}\n").unwrap().to_yaml();
    assert!(printed.contains("debian:") && printed.contains("strace"), "{printed}");
    assert!(!p("name: x\nimage: {disk: a.raw}\n").unwrap().to_yaml().contains("root"), "no root when none was given");
    assert_eq!(image("name: x\nimage: debian\n").kind(), "debian");
    assert_eq!(image("name: x\nimage: {disk: a.raw, root: LABEL=root}\n").to_string(), "disk a.raw");
}

#[test]
fn image_shape_errors_name_the_key_and_line() {
    let e = err("name: x\nimage: fedora\n");
    assert!(e.starts_with("t.yaml:2:8: image: unknown image `fedora`: expected `minimal`, `debian`"), "{e}");
    // A key beside `debian` is named at its own line, with what may be there.
    let e = err("name: x\nimage:\n  debian: {packages: [strace]}\n  extra: 1\n");
    assert!(e.starts_with("t.yaml:4:3: image.extra: unknown field `extra`"), "{e}");
    assert!(e.contains("debian") && e.contains("disk") && e.contains("root"), "{e}");
    let e = err("name: x\nimage:\n  debian:\n    pkgs: [strace]\n");
    assert!(e.starts_with("t.yaml:4:5: image.debian.pkgs: unknown field `pkgs`") && e.contains("packages"), "{e}");
    let e = err("name: x\nimage:\n  disk: a.qcow2\n  rot: /dev/vda1\n");
    assert!(e.starts_with("t.yaml:4:3: image.rot: unknown field `rot`"), "{e}");
    let e = err("name: x\nimage:\n  debian: {packages: strace}\n");
    assert!(e.contains("image.debian.packages: expected a list"), "{e}");
    assert!(err("name: x\nimage: {debian: {}, disk: a.raw}\n").contains("`debian` and `disk` are two different images"));
    assert!(err("name: x\nimage: {root: /dev/vda1}\n").contains("`root` needs a `disk` beside it"));
    assert!(err("name: x\nimage: {}\n").contains("image: empty mapping: expected `minimal`"));
    assert!(err("name: x\nimage: [debian]\n").contains("image: invalid type: sequence, expected `minimal`"));
}

#[test]
fn image_rules_name_the_field() {
    let e = err("name: x\nimage:\n  debian:\n    packages: [strace, Bad_Name]\n");
    assert!(e.starts_with("t.yaml:4:24: image.debian.packages[1]: \"Bad_Name\" is not a Debian package name"), "{e}");
    assert_eq!(invalid_field("name: x\nimage: {debian: {packages: [\"a b\"]}}\n"), "image.debian.packages[0]");
    assert_eq!(invalid_field("name: x\nimage: {debian: {packages: [x]}}\n"), "image.debian.packages[0]", "one letter is too short");
    // A disk booted as it is runs its own kernel: the lab's modules do not fit it.
    let e = err("name: x\nimage: {disk: sles.qcow2}\nmodules:\n  - source: khm\n");
    assert!(e.starts_with("t.yaml:2:15: image.disk: this disk boots its own kernel (no image.root)") && e.contains("give image.root"), "{e}");
    let e = err("name: x\nimage: {disk: sles.qcow2}\nworkload: {churn: {}}\nleak:\n  expect: leak\n  baseline:\n    modules: [{source: khm}]\n");
    assert!(e.contains("image.disk: this disk boots its own kernel"), "the baseline's modules too: {e}");
    assert!(p("name: x\nimage: {disk: sles.qcow2, root: /dev/vda1}\nmodules:\n  - source: khm\n").is_ok());
    assert_eq!(invalid_field("name: x\nimage: {disk: ''}\n"), "image.disk");
    assert!(err("name: x\nimage: {disk: a.raw, root: '/dev/vda 1'}\n").contains("image.root: must be one word"));
    // kdump needs kernlab's own guest layout; a user's disk is dumped from the host.
    for root in ["", ", root: /dev/vda1"] {
        let e = err(&format!("name: x\nimage: {{disk: sles.qcow2{root}}}\nworkload: {{churn: {{}}}}\nexhaustion:\n  action: kdump\n"));
        assert!(e.starts_with("t.yaml:5:11: exhaustion.action: kdump needs kernlab's own guest layout") && e.contains("host-dump"), "{e}");
    }
    assert!(p("name: x\nimage: {disk: sles.qcow2}\nworkload: {churn: {}}\nexhaustion: {action: host-dump}\n").is_ok());
    assert!(p("name: x\nimage: debian\nworkload: {churn: {}}\nexhaustion: {action: kdump}\n").is_ok());
    // Disks boot on a PC machine.
    for image in ["debian", "{disk: a.raw}", "{debian: {packages: [strace]}}"] {
        let e = err(&format!("name: x\nimage: {image}\nvm:\n  machine: microvm\n"));
        assert!(e.starts_with("t.yaml:4:12: vm.machine: image `") && e.contains("boots a disk on a PC machine") && e.contains("`auto` or `pc`"), "{e}");
    }
    assert!(p("name: x\nimage: debian\nvm: {machine: pc}\n").is_ok());
}

/// A leak lab with `modules` and `baseline` as given (YAML under `leak:`).
fn ab(top: &str, baseline: &str) -> String {
    format!("name: x\n{top}workload:\n  commands: [\"true\"]\n  duration: 10s\nmonitor:\n  interval: 1s\nleak:\n  expect: leak\n  warmup: 1s\n{baseline}")
}

const KHM: &str = "modules:\n  - source: khm\n    params: {leak: 1, rate: 10}\n  - source: other\nsetup: [echo lab]\npayload:\n  - {src: a.c, dst: /opt/a}\n";

#[test]
fn a_baseline_without_overrides_has_no_modules_and_shares_payload_and_setup() {
    let lab = p(&ab(KHM, "")).unwrap();
    let b = baseline_lab(&lab);
    assert!(b.modules.is_empty(), "today's meaning: no modules");
    assert_eq!((&b.payload, &b.setup), (&lab.payload, &lab.setup));
    assert_eq!(Lab { modules: lab.modules.clone(), ..b }, lab, "nothing else differs");
}

#[test]
fn a_baseline_with_params_runs_the_labs_modules_with_them_merged() {
    let lab = p(&ab(KHM, "  baseline:\n    params: {leak: 0, extra: \"a b\"}\n")).unwrap();
    let b = baseline_lab(&lab);
    assert_eq!(b.modules.len(), 2);
    assert_eq!(b.modules[0].source.as_deref(), Some(Path::new("khm")));
    let params = |m: &Module| m.params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    assert_eq!(params(&b.modules[0]), "extra=a b,leak=0,rate=10", "the override wins, the rest stays");
    assert_eq!(params(&b.modules[1]), "extra=a b,leak=0", "merged into every entry");
    assert_eq!(params(&lab.modules[0]), "leak=1,rate=10", "the module arm is the lab as written");
    assert_eq!((&b.payload, &b.setup), (&lab.payload, &lab.setup));
}

#[test]
fn a_baseline_replaces_modules_payload_and_setup_it_names() {
    let lab = p(&ab(KHM, "  baseline:\n    modules:\n      - source: old\n    payload: []\n    setup:\n      - echo baseline\n      - \"true\"\n")).unwrap();
    let b = baseline_lab(&lab);
    assert_eq!(b.modules.iter().map(|m| m.source.clone()).collect::<Vec<_>>(), [Some(PathBuf::from("old"))]);
    assert!(b.payload.is_empty(), "`payload: []` is none, not the lab's");
    assert_eq!(b.setup, ["echo baseline", "true"]);
    // An error at the arm's setup points where the baseline's was written.
    assert_eq!(b.locations.position("setup[1]"), lab.locations.position("leak.baseline.setup[1]"));
    assert_ne!(b.locations.position("setup[1]"), lab.locations.position("setup"));
    // Printed and read again, the lab means the same.
    let again = p(&lab.to_yaml()).unwrap();
    assert_eq!(baseline_lab(&again), b);
}

#[test]
fn a_baseline_override_is_checked_like_the_labs_own_field() {
    let cases = [
        ("  baseline:\n    modules:\n      - source: old\n    params: {leak: 0}\n", "leak.baseline.params", "not both"),
        ("  baseline:\n    modules: []\n    params: {leak: 0}\n", "leak.baseline.params", "not both"),
        ("  baseline:\n    params: {\"le ak\": 0}\n", "leak.baseline.params.le ak", "not a C identifier"),
        ("  baseline:\n    params: {leak: \"a\\\"b\"}\n", "leak.baseline.params.leak", "double quote"),
        ("  baseline:\n    setup: [echo, \" \"]\n", "leak.baseline.setup[1]", "must not be empty"),
        ("  baseline:\n    payload:\n      - {src: a.c, dst: opt/a}\n", "leak.baseline.payload[0].dst", "absolute guest path"),
        ("  baseline:\n    payload:\n      - {src: a.c, dst: /tmp/a}\n", "leak.baseline.payload[0].dst", "under /tmp"),
        ("  baseline:\n    payload:\n      - {src: a.c, dst: /opt/a}\n      - {src: b.c, dst: /opt/a/}\n", "leak.baseline.payload[1].dst", "already the dst"),
        ("  baseline:\n    modules:\n      - source: \"\"\n", "leak.baseline.modules[0].source", "source directory"),
    ];
    for (baseline, field, words) in cases {
        let text = ab(KHM, baseline);
        assert_eq!(invalid_field(&text), field, "{baseline}");
        let e = err(&text);
        assert!(e.starts_with("t.yaml:") && e.contains(&format!(": {field}: ")) && e.contains(words), "{baseline}: {e}");
    }
    // Without modules of its own, the lab has nothing for `params` to change.
    let e = err(&ab("", "  baseline:\n    params: {leak: 0}\n"));
    assert!(e.contains("leak.baseline.params: the lab has no modules"), "{e}");
    // An unknown key under the baseline is an error, as everywhere.
    let e = err(&ab(KHM, "  baseline:\n    setpu: [x]\n"));
    assert!(e.contains("setpu"), "{e}");
}

#[test]
fn a_baseline_payload_file_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.c"), "int main(void) { return 0; }\n").unwrap();
    let file = dir.path().join("x.yaml");
    let text = ab("payload:\n  - {src: a.c, dst: /opt/a}\n", "  baseline:\n    payload:\n      - {src: gone.c, dst: /opt/a}\n");
    std::fs::write(&file, &text).unwrap();
    let lab = load(&file).unwrap();
    let e = lab.check_files(&file).unwrap_err().to_string();
    assert!(e.contains("leak.baseline.payload[0].src: `gone.c` does not exist"), "{e}");
}

/// Every default docs/lab-format.md quotes (a field whose default column
/// is one value in backticks) is the code's: a lab that gives none of
/// them, resolved, holds exactly those values.
#[test]
fn the_defaults_in_lab_format_md_are_the_codes() {
    let doc = include_str!("../../docs/lab-format.md");
    let lab = p("name: x\nworkload:\n  churn: {}\nleak:\n  expect: leak\nexhaustion:\n  action: kdump\n").unwrap();
    let resolved = serde_json::to_value(&lab).unwrap();
    let dur = |s: &str| humantime::parse_duration(s).ok();
    let same = |doc: &str, v: &serde_json::Value| -> bool {
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(a) if a.is_empty() => "[]".into(),
            serde_json::Value::Object(o) if o.is_empty() => "{}".into(),
            other => other.to_string(),
        };
        let doc = if doc == "\"\"" { "" } else { doc };
        // Left out of the resolved lab: an empty or false default.
        v.is_null() && ["[]", "{}", "false", "", "0"].contains(&doc)
            || text == doc
            || dur(doc).is_some() && dur(doc) == dur(&text)
            || units::parse_size(doc).is_ok() && units::parse_size(doc) == units::parse_size(&text)
            || doc.parse::<f64>().ok().zip(text.parse::<f64>().ok()).is_some_and(|(a, b)| a == b)
    };
    let (mut checked, mut wrong) = (0, Vec::new());
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let cols: Vec<&str> = line.split(" | ").collect();
        let (Some(field), Some(default)) = (cols.first().map(|c| c.trim_start_matches("| ").trim_matches('`')), cols.get(2)) else { continue };
        // One value in backticks, perhaps with a word on it in parentheses.
        let Some(value) = default.strip_prefix('`').and_then(|d| d.split_once('`')).filter(|(_, rest)| rest.is_empty() || rest.starts_with(" (")).map(|(v, _)| v) else { continue };
        if field.contains('[') || field.starts_with("image.") || field.starts_with("leak.baseline") {
            continue;
        }
        let mut at = &resolved;
        for key in field.split('.') {
            at = &at[key];
        }
        checked += 1;
        if !same(value, at) {
            wrong.push(format!("{field}: docs say `{value}`, the code {at}"));
        }
    }
    assert!(wrong.is_empty(), "docs/lab-format.md quotes stale defaults:\n{}", wrong.join("\n"));
    assert!(checked >= 40, "only {checked} defaults checked: the table's shape changed");
}

// One test per kind of lab error (issue 25): each message names the file,
// the line:column, the field and what is expected instead.

#[test]
fn error_kind_syntax_names_the_line_and_the_field_it_stopped_at() {
    assert_eq!(err("name: x\nvm:\n  memory: \"512M\n  cpus: 1\n"), "t.yaml:3:11: vm.memory: invalid YAML: unclosed quote");
    assert_eq!(err("name: x\nvm:\n\tcpus: 1\n"), "t.yaml:3:2: vm.cpus: invalid YAML: tabs disallowed within this context (block indentation)");
    assert_eq!(err("name: x\nname: y\n"), "t.yaml:2:1: name: invalid YAML: duplicate mapping key `name` is not allowed here");
    // Inside a list item the index is unknown from the text: no field, still the line.
    assert_eq!(err("name: x\npayload:\n  - src: \"a\n"), "t.yaml:3:10: invalid YAML: unclosed quote");
}

#[test]
fn error_kind_unknown_field_lists_the_known_ones() {
    let e = err("name: x\nvm:\n  memroy: 1G\n");
    assert!(e.starts_with("t.yaml:3:3: vm.memroy: unknown field `memroy`, expected one of memory, cpus, accel,"), "{e}");
    let e = err("name: x\nmodules:\n  - prebuilt: a.ko\n");
    assert_eq!(e, "t.yaml:3:5: modules[0].prebuilt: unknown field `prebuilt`, expected one of source, build, ko, patches, params");
}

#[test]
fn error_kind_wrong_type_says_what_was_written_and_what_is_expected() {
    assert_eq!(err("name: x\nvm:\n  cpus: two\n"), "t.yaml:3:3: vm.cpus: invalid type: string \"two\", expected a whole number");
    assert_eq!(err("name: x\nvm:\n  fast_boot: maybe\n"), "t.yaml:3:14: vm.fast_boot: invalid value `maybe`: expected true or false");
    assert_eq!(err("name: x\nleak:\n  expect: leak\n  alpha: abc  # note\n"), "t.yaml:4:10: leak.alpha: invalid value `abc`: expected a number, e.g. 0.01");
    assert_eq!(err("name: x\nworkload:\n  churn:\n    rate: lots\n"), "t.yaml:4:11: workload.churn.rate: invalid value `lots`: expected a whole number, 0 or more");
    assert_eq!(err("name: [x]\n"), "t.yaml:1:7: name: expected a string (one value), not a list or a mapping");
    assert_eq!(err("name: x\nsetup: {a: 1}\n"), "t.yaml:2:8: setup: expected a list");
}

#[test]
fn error_kind_bad_enum_value_lists_the_allowed_values() {
    assert_eq!(err("name: x\nvm:\n  accel: fast\n"), "t.yaml:3:10: vm.accel: unknown variant `fast`, expected one of auto, kvm, tcg");
    assert_eq!(err("name: x\nleak:\n  expect: maybe\n"), "t.yaml:3:11: leak.expect: unknown variant `maybe`, expected one of leak, no-leak");
    assert_eq!(
        err("name: x\nmonitor:\n  sources: [slabinfo, bogus]\n"),
        "t.yaml:3:23: monitor.sources[1]: unknown variant `bogus`, expected one of slabinfo, meminfo, dentry-state, balloon"
    );
    assert_eq!(err("name: x\nleak:\n  expect: leak\n  metric: bogus\n"), "t.yaml:4:11: leak.metric: must be `slab`, `sunreclaim`, `objects` or `cache:NAME`, got \"bogus\"");
}

#[test]
fn error_kind_missing_required_field_names_it_where_its_mapping_starts() {
    // At the top: the lab's first key (not where the parser ran out).
    assert_eq!(err("# a lab\ndescription: x\nkernel: foo\nsetup: [a]\n"), "t.yaml:2:1: missing required field `name`");
    assert_eq!(err("name: x\npayload:\n  - dst: /usr/bin/x\n"), "t.yaml:3:5: payload[0]: missing required field `src`");
}

#[test]
fn error_kind_out_of_range_gives_the_limits_and_the_value() {
    assert_eq!(err("name: x\nvm:\n  cpus: 999\n"), "t.yaml:3:9: vm.cpus: must be between 1 and 64, got 999");
    assert_eq!(err("name: x\nmonitor:\n  interval: 10ms\n"), "t.yaml:3:13: monitor.interval: must be at least 100ms, got 10ms");
    assert_eq!(err("name: x\nleak:\n  expect: leak\n  alpha: 2\n"), "t.yaml:4:10: leak.alpha: must be between 0 and 0.5 (exclusive), got 2");
    assert_eq!(err("name: x\nvm:\n  cpus: -1\n"), "t.yaml:3:9: vm.cpus: must not be negative, got -1");
}

#[test]
fn error_kind_bad_duration_or_size_shows_the_accepted_forms() {
    let e = err("name: x\nworkload:\n  commands: [true]\n  duration: 5 parsecs\n");
    assert!(e.starts_with("t.yaml:4:13: workload.duration: invalid duration \"5 parsecs\": unknown time unit \"parsecs\""), "{e}");
    assert!(e.ends_with("(expected e.g. \"500ms\", \"30s\", \"2m\", \"1h30m\")"), "{e}");
    assert_eq!(
        err("name: x\nvm:\n  memory: 512Q\n"),
        "t.yaml:3:11: vm.memory: invalid size \"512Q\": unknown unit \"Q\" (expected K, M, G or T, optionally followed by iB or B)"
    );
    assert_eq!(err("name: x\nvm:\n  memory: -5M\n"), "t.yaml:3:11: vm.memory: invalid size \"-5M\": must not be negative");
}

#[test]
fn error_kind_a_path_that_does_not_exist_names_the_field_and_where_it_looked() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("lab.yaml");
    let at = |rel: &str| d.path().join(rel).display().to_string();
    let check = |yaml: &str| {
        std::fs::write(&f, yaml).unwrap();
        load(&f).unwrap().check_files(&f).unwrap_err().to_string()
    };
    let file = f.display();
    assert_eq!(check("name: x\nmodules:\n  - source: nope-dir\n"), format!("{file}:3:13: modules[0].source: `nope-dir` does not exist (looked for `{}`)", at("nope-dir")));
    assert_eq!(check("name: x\nmodules:\n  - ko: [gone.ko]\n"), format!("{file}:3:10: modules[0].ko[0]: `gone.ko` does not exist (looked for `{}`)", at("gone.ko")));
    assert_eq!(check("name: x\npayload:\n  - src: nope.c\n    dst: /usr/bin/x\n"), format!("{file}:3:10: payload[0].src: `nope.c` does not exist (looked for `{}`)", at("nope.c")));
    assert_eq!(check("name: x\nimage: {disk: nope.qcow2}\n"), format!("{file}:2:15: image.disk: `nope.qcow2` does not exist (looked for `{}`)", at("nope.qcow2")));
    std::fs::create_dir(d.path().join("adir")).unwrap();
    assert_eq!(check("name: x\nimage: {disk: adir}\n"), format!("{file}:2:15: image.disk: `adir` is not a file: give a disk image (qcow2 or raw)"));
    std::fs::create_dir(d.path().join("khm")).unwrap();
    std::fs::write(d.path().join("khm/Kbuild"), "obj-m := khm.o\n").unwrap();
    assert_eq!(
        check("name: x\nmodules:\n  - source: khm\n    patches: [fix.patch]\n"),
        format!("{file}:4:15: modules[0].patches[0]: `fix.patch` does not exist (looked for `{}`)", at("fix.patch"))
    );
}

#[test]
fn a_metric_reads_from_its_word_and_writes_back_the_same() {
    use std::str::FromStr;
    for w in ["objects", "slab", "sunreclaim", "cache:dentry"] {
        let m = crate::lab::Metric::from_str(w).unwrap();
        assert_eq!(m.to_string(), w);
    }
    assert_eq!(crate::lab::Metric::default(), crate::lab::Metric::Objects);
    assert!(crate::lab::Metric::Slab.from_meminfo() && !crate::lab::Metric::Objects.from_meminfo());
    for bad in ["cache:", "cache:a b", "rss", ""] {
        assert!(crate::lab::Metric::from_str(bad).unwrap_err().contains("must be `slab`, `sunreclaim`, `objects` or `cache:NAME`"), "{bad}");
    }
}


#[test]
fn triage_engine_is_auto_by_default_and_crash_drgn_or_auto_when_written() {
    use crate::triage::EngineChoice;
    assert_eq!(p("name: x\n").unwrap().triage.engine, EngineChoice::Auto);
    for (w, e) in [("crash", EngineChoice::Crash), ("drgn", EngineChoice::Drgn), ("auto", EngineChoice::Auto)] {
        assert_eq!(p(&format!("name: x\ntriage:\n  engine: {w}\n")).unwrap().triage.engine, e);
    }
    assert_eq!(err("name: x\ntriage:\n  engine: gdb\n"), "t.yaml:3:11: triage.engine: unknown variant `gdb`, expected one of auto, crash, drgn");
    let e = err("name: x\ntriage:\n  engin: drgn\n");
    assert!(e.contains("triage") && e.contains("engin") && e.contains("engine"), "{e}");
}
