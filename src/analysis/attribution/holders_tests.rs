use super::*;

#[test]
#[ignore = "prints the guest scripts (for trying them by hand)"]
fn print_scripts() {
    println!("----- setup\n{}----- collect\n{}", setup_script(), collect_script());
}

#[test]
fn frames_are_split_into_function_and_module() {
    assert_eq!(frame("khm_entry+0x2c/0x80 [khm]"), ("khm_entry", Some("khm")));
    assert_eq!(frame("path_get+0x5/0x30"), ("path_get", None));
    assert_eq!(frame("0xffffffffc02070c8"), ("0xffffffffc02070c8", None));
}

const K61_LEAK1: &str = include_str!("testdata/holders-6.1-khm-leak1.txt");
const K61_LEAK0: &str = include_str!("testdata/holders-6.1-khm-leak0.txt");

#[test]
fn khm_on_6_1_kprobes_miss_the_gets_inside_its_kretprobe() {
    // Captured on debian-6.1.0-54-cloud-amd64, khm leak=1 against leak=0,
    // 20 s of tmpfs churn. /proc/khm: closes 18366, leaked 6883 (arm);
    // closes 14039 (baseline). khm's path_get runs inside its kretprobe's
    // entry handler, where kprobe events do not fire.
    let h = holders(K61_LEAK1, K61_LEAK0);
    assert!(h.sites.is_empty(), "{:?}", h.sites);
    let said = h.tried.join("\n");
    assert!(said.contains("kprobe events with stack hists on"), "{said}");
    assert!(said.contains("module arm: calls missed because they ran inside another kprobe's handler"), "{said}");
    assert!(said.contains("path_get 18409 of 25801"), "{said}");
    assert!(said.contains("[khm] mnt_cache references: module arm gets 0 puts 7763"), "{said}");
    assert!(said.contains("no module function holds references beyond the baseline"), "{said}");
}

const K612_LEAK1: &str = include_str!("testdata/holders-6.12-khm-leak1.txt");
const K612_LEAK0: &str = include_str!("testdata/holders-6.12-khm-leak0.txt");

#[test]
fn khm_on_6_12_fprobes_name_the_entry_handler() {
    // Captured on debian-6.12.117+deb12-cloud-amd64 (fprobe events), khm
    // leak=1 against leak=0, 20 s of tmpfs churn. /proc/khm in the module
    // arm: leaked 4184.
    let h = holders(K612_LEAK1, K612_LEAK0);
    assert_eq!(
        h.sites,
        vec![Site {
            function: "khm_entry".into(),
            module: "khm".into(),
            cache: "dentry".into(),
            objects: 4226,
            stack: vec!["path_get [vmlinux]".into(), "khm_entry [khm]".into()],
            role: Role::HoldsReferences,
        }]
    );
    let said = h.tried.join("\n");
    assert!(said.contains("fprobe events"), "{said}");
    // The dentry half is put through lockref_put_not_zero (notrace): the
    // mount half counts.
    assert!(said.contains("[khm] dentry references: module arm gets 14393 puts 0"), "{said}");
    assert!(
        said.contains("[khm] mnt_cache references: module arm gets 14393 puts 10153, baseline gets 13117 puts 13103, held beyond the baseline 4226"),
        "{said}"
    );
    // mntget inside path_get is not counted twice.
    assert!(said.contains("counted once, at the outer one: 14365"), "{said}");
}

#[test]
fn the_same_arm_twice_holds_nothing() {
    let h = holders(K612_LEAK1, K612_LEAK1);
    assert!(h.sites.is_empty(), "{:?}", h.sites);
}

#[test]
fn text_without_the_collect_output_is_said_plainly() {
    let h = holders("ssh: connection lost", K612_LEAK0);
    assert!(h.sites.is_empty());
    assert_eq!(h.tried, vec!["holders: module arm: no `# kernlab-holders 1` line: the collect script did not run".to_string()]);
    let cut = &K612_LEAK0[..K612_LEAK0.len() / 2];
    let h = holders(K612_LEAK1, cut);
    assert_eq!(h.tried, vec!["holders: baseline: the collected text stops before `== end` (cut off)".to_string()]);
}

#[test]
fn a_nested_put_counts_once_at_the_outer_primitive() {
    let arm = "# kernlab-holders 1\n== kernel k\n== mode f\n== profile\n\
== hist path_get\n{ stacktrace:\n  0xffffffffc0000000\n  path_get+0x5/0x30\n  grab+0x10/0x40 [m]\n  vfs_thing+0x1/0x2\n} hitcount: 100\n\
Totals:\n    Hits: 100\n    Entries: 1\n    Dropped: 3\n\
== hist dput\n{ stacktrace:\n  dput+0x5/0x30\n  path_put+0x9/0x20\n  drop+0x10/0x40 [m]\n} hitcount: 40\n\
== hist path_put\n{ stacktrace:\n  path_put+0x5/0x20\n  drop+0x10/0x40 [m]\n} hitcount: 40\n== end\n";
    let base = "# kernlab-holders 1\n== kernel k\n== mode f\n== end\n";
    let h = holders(arm, base);
    assert_eq!(h.sites.len(), 1, "{:?}", h.tried);
    let s = &h.sites[0];
    assert_eq!((s.function.as_str(), s.module.as_str(), s.cache.as_str(), s.objects), ("grab", "m", "dentry", 60));
    assert_eq!(s.stack, vec!["path_get [vmlinux]", "grab [m]"]);
    let said = h.tried.join("\n");
    assert!(said.contains("module arm: hist tables full, stacks dropped (counts are low): path_get 3"), "{said}");
    assert!(said.contains("counted once, at the outer one: 40 (module arm), 0 (baseline)"), "{said}");
}

