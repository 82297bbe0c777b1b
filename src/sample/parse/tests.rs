//! The parsers on real captures, every error they report, and random input.

use super::*;
use proptest::prelude::*;

const HOST_SLABINFO: &str = include_str!("../testdata/host-6.18-slabinfo.txt");
const HOST_MEMINFO: &str = include_str!("../testdata/host-6.18-meminfo.txt");
const HOST_DENTRY: &str = include_str!("../testdata/host-6.18-dentry-state.txt");
const HOST_UPTIME: &str = include_str!("../testdata/host-6.18-uptime.txt");

const MINI_SLABINFO: &str = "slabinfo - version: 2.1
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>
dentry             49854  49854    192   21    1 : tunables    0    0    0 : slabdata   2374   2374      0
kmalloc-64          2112   2112     64   64    1 : tunables    0    0    0 : slabdata     33     33      0
";

const MINI_MEMINFO: &str = "MemTotal:       24684084 kB
MemFree:        22728172 kB
MemAvailable:   24205528 kB
Active(anon):       1520 kB
Slab:             120300 kB
SReclaimable:      95416 kB
SUnreclaim:        24884 kB
HugePages_Total:       3
";

fn host_capture() -> String {
    let mut s = String::new();
    for (section, body) in [
        (Section::Uptime, HOST_UPTIME),
        (Section::Slabinfo, HOST_SLABINFO),
        (Section::Meminfo, HOST_MEMINFO),
        (Section::DentryState, HOST_DENTRY),
    ] {
        s.push_str(SECTION_MARKER);
        s.push_str(section.name());
        s.push('\n');
        s.push_str(body);
    }
    s
}

fn cache<'a>(caches: &'a [SlabCache], name: &str) -> &'a SlabCache {
    caches.iter().find(|c| c.name == name).unwrap()
}

// --- real captures ------------------------------------------------------

#[test]
fn host_slabinfo() {
    let caches = parse_slabinfo(HOST_SLABINFO).unwrap();
    assert_eq!(caches.len(), 235);
    assert_eq!(caches[0].name, "btrfs_delayed_node");
    assert_eq!(caches[0].objsize, 312);
    assert_eq!(caches[0].objperslab, 13);

    let dentry = cache(&caches, "dentry");
    assert_eq!(dentry.objsize, 192);
    assert_eq!(dentry.objperslab, 21);
    assert_eq!(dentry.pagesperslab, 1);

    let task = cache(&caches, "task_struct");
    assert_eq!(task.objsize, 5824);
    assert_eq!(task.objperslab, 5);
    assert_eq!(task.pagesperslab, 8);

    let inode = cache(&caches, "inode_cache");
    assert_eq!(
        (inode.objsize, inode.objperslab, inode.pagesperslab),
        (624, 13, 2)
    );

    let k64 = cache(&caches, "kmalloc-64");
    assert_eq!(k64.objsize, 64);
    assert_eq!(k64.objperslab, 64);
    assert!(caches.iter().all(|c| c.active_objs <= c.num_objs));
}

#[test]
fn host_meminfo() {
    let m = parse_meminfo(HOST_MEMINFO).unwrap();
    assert_eq!(m.get("MemTotal"), Some(24684084 * 1024));
    assert_eq!(m.get("VmallocTotal"), Some(34359738367 * 1024));
    assert_eq!(m.get("Hugepagesize"), Some(2048 * 1024));
    assert_eq!(m.get("HugePages_Total"), Some(0));
    assert!(m.get("Active(anon)").is_some());
    assert!(m.get("NFS_Unstable").is_some());
    assert_eq!(m.fields.len(), 54);
    assert_eq!(m.fields[0].0, "MemTotal");
    assert_eq!(m.fields.last().unwrap().0, "DirectMap1G");
    assert_eq!(m.get("NoSuchField"), None);
}

#[test]
fn host_dentry_state() {
    let d = parse_dentry_state(HOST_DENTRY).unwrap();
    assert_eq!(
        d,
        DentryState {
            nr_dentry: 49719,
            nr_unused: 48373,
            age_limit: 45,
            want_pages: 0,
            nr_negative: 7369,
        }
    );
}

// Captured from the real guest: Debian's 6.1.0-54-cloud-amd64 booted by
// kernlab (512 MiB, minimal image).
const GUEST_SLABINFO: &str = include_str!("../testdata/guest-6.1.0-54-cloud-slabinfo.txt");
const GUEST_MEMINFO: &str = include_str!("../testdata/guest-6.1.0-54-cloud-meminfo.txt");
const GUEST_DENTRY: &str = include_str!("../testdata/guest-6.1.0-54-cloud-dentry-state.txt");

#[test]
fn guest_captures_parse_to_their_numbers() {
    let caches = parse_slabinfo(GUEST_SLABINFO).unwrap();
    assert_eq!(caches.len(), 153);
    let dentry = caches.iter().find(|c| c.name == "dentry").unwrap();
    assert_eq!((dentry.active_objs, dentry.num_objs, dentry.objsize, dentry.objperslab), (10689, 10689, 192, 21));
    let shmem = caches.iter().find(|c| c.name == "shmem_inode_cache").unwrap();
    assert_eq!((shmem.objsize, shmem.pagesperslab, shmem.num_slabs), (784, 2, 44));
    let m = parse_meminfo(GUEST_MEMINFO).unwrap();
    assert_eq!(m.get("MemTotal"), Some(480288 * 1024));
    assert_eq!(m.get("SUnreclaim"), Some(6760 * 1024));
    let d = parse_dentry_state(GUEST_DENTRY).unwrap();
    assert_eq!((d.nr_dentry, d.nr_unused, d.age_limit, d.nr_negative), (10679, 18, 45, 0));
    // A truncated guest capture is an error naming the line, never a short list.
    let cut = &GUEST_SLABINFO[..GUEST_SLABINFO.len() / 2];
    let cut = &cut[..cut.rfind(' ').unwrap()];
    let e = parse_slabinfo(cut).unwrap_err().to_string();
    assert!(e.contains("/proc/slabinfo line"), "{e}");
}

#[test]
fn host_uptime() {
    assert_eq!(parse_uptime(HOST_UPTIME).unwrap(), 2603.01);
    assert_eq!(parse_uptime("5 1\n").unwrap(), 5.0);
}

#[test]
fn host_capture_parses() {
    let text = host_capture();
    let split = split_capture(&text).unwrap();
    let names: Vec<_> = split.iter().map(|(s, _)| *s).collect();
    assert_eq!(names, Section::ALL[..4]);
    assert_eq!(split[1].1, HOST_SLABINFO);
    assert_eq!(split[3].1, HOST_DENTRY);

    let c = parse_capture(&text).unwrap();
    assert_eq!(c.uptime_s, Some(2603.01));
    assert_eq!(c.slabinfo.unwrap().len(), 235);
    assert_eq!(c.meminfo.unwrap().get("MemTotal"), Some(24684084 * 1024));
    assert_eq!(c.dentry.unwrap().nr_dentry, 49719);
}

// --- small behaviours ---------------------------------------------------

#[test]
fn slab_byte_accounting() {
    let caches = parse_slabinfo(MINI_SLABINFO).unwrap();
    assert_eq!(caches[0].active_bytes(), 49854 * 192);
    assert_eq!(caches[0].total_bytes(), 2374 * 4096);
    let huge = SlabCache {
        name: "x".into(),
        active_objs: u64::MAX,
        num_objs: u64::MAX,
        objsize: 2,
        objperslab: 1,
        pagesperslab: 2,
        active_slabs: u64::MAX,
        num_slabs: u64::MAX,
    };
    assert_eq!(huge.active_bytes(), u64::MAX);
    assert_eq!(huge.total_bytes(), u64::MAX);
}

#[test]
fn slabinfo_tolerances() {
    // Trailing whitespace on the version line, CRLF, no final newline.
    let text = MINI_SLABINFO
        .replacen("2.1\n", "2.1  \n", 1)
        .replace('\n', "\r\n");
    assert_eq!(parse_slabinfo(text.trim_end()).unwrap().len(), 2);
    // Duplicate names are kept in order.
    let dup = format!("{MINI_SLABINFO}dentry 1 2 3 4 5 : tunables 0 0 0 : slabdata 1 1 0\n");
    let caches = parse_slabinfo(&dup).unwrap();
    assert_eq!(caches.len(), 3);
    assert_eq!(
        (caches[0].name.as_str(), caches[0].active_objs),
        ("dentry", 49854)
    );
    assert_eq!(
        (caches[2].name.as_str(), caches[2].active_objs),
        ("dentry", 1)
    );
}

#[test]
fn meminfo_units() {
    let m = parse_meminfo(MINI_MEMINFO).unwrap();
    assert_eq!(m.get("HugePages_Total"), Some(3));
    assert_eq!(m.get("Active(anon)"), Some(1520 * 1024));
    assert_eq!(m.fields.len(), 8);
}

#[test]
fn dentry_state_old_and_new_widths() {
    let d = parse_dentry_state("10 5 45 0 0 0\n").unwrap();
    assert_eq!(d.nr_dentry, 10);
    let d = parse_dentry_state("10\t5\t45\t0\t3").unwrap();
    assert_eq!(d.nr_negative, 3);
}

#[test]
fn capture_command_shape() {
    let cmd = capture_command(&[Section::Slabinfo, Section::Meminfo, Section::Slabinfo]);
    assert_eq!(
        cmd,
        "echo '@@kernlab-section uptime'; cat /proc/uptime; \
         echo '@@kernlab-section slabinfo'; cat /proc/slabinfo; \
         echo '@@kernlab-section meminfo'; cat /proc/meminfo"
    );
    let all = capture_command(&Section::ALL);
    assert_eq!(all.matches("@@kernlab-section uptime").count(), 1);
    assert!(all.ends_with(
        "echo '@@kernlab-section dentry-state'; cat /proc/sys/fs/dentry-state; \
         echo '@@kernlab-section ops'; cat /run/kernlab-ops 2>/dev/null || echo 0"
    ));
    let c = parse_capture("@@kernlab-section uptime\n3.5 1\n@@kernlab-section ops\n12345\n").unwrap();
    assert_eq!(c.ops, Some(12345));
    assert!(parse_capture("@@kernlab-section ops\n12x\n").is_err());
    for s in Section::ALL {
        assert_eq!(Section::from_name(s.name()), Some(s));
    }
}

#[test]
fn capture_partial_and_leading_blank() {
    let text = format!("\n{SECTION_MARKER}uptime\n{HOST_UPTIME}");
    let c = parse_capture(&text).unwrap();
    assert_eq!(c.uptime_s, Some(2603.01));
    assert!(c.slabinfo.is_none() && c.meminfo.is_none() && c.dentry.is_none());
}

// --- errors -------------------------------------------------------------

fn err_slab(text: &str) -> ParseError {
    parse_slabinfo(text).unwrap_err()
}

#[test]
fn error_table() {
    let mini_line3 = MINI_SLABINFO.lines().nth(2).unwrap();
    let cut = &MINI_SLABINFO[..MINI_SLABINFO.find(" : slabdata   2374").unwrap()];
    let long_junk = format!("{}\n", "x".repeat(300));
    let long_want = format!("found 1: `{}...`", "x".repeat(80));

    let cases: Vec<(&str, ParseError, &str)> = vec![
        (
            "slabinfo wrong version",
            err_slab(&MINI_SLABINFO.replace("2.1", "1.1")),
            "/proc/slabinfo line 1: unsupported slabinfo version `1.1` (expected 2.1)",
        ),
        (
            "slabinfo not a version line",
            err_slab("hello\n"),
            "/proc/slabinfo line 1: expected `slabinfo - version: 2.1`: `hello`",
        ),
        (
            "slabinfo missing header",
            err_slab(&format!("slabinfo - version: 2.1\n{mini_line3}\n")),
            "/proc/slabinfo line 2: expected `# name ...` header, found `dentry",
        ),
        (
            "slabinfo header only line",
            err_slab("slabinfo - version: 2.1\n"),
            "/proc/slabinfo line 2: expected `# name ...` header, found ``",
        ),
        (
            "slabinfo no caches",
            err_slab(&MINI_SLABINFO[..MINI_SLABINFO.find("dentry").unwrap()]),
            "/proc/slabinfo: no entries after the header",
        ),
        (
            "slabinfo truncated mid-line",
            err_slab(cut),
            "/proc/slabinfo line 3: truncated line, expected 16 fields but found 11: `dentry",
        ),
        (
            "slabinfo non-numeric",
            err_slab(&MINI_SLABINFO.replace("    192 ", "   19x2 ")),
            "/proc/slabinfo line 3: field `objsize` is not a valid number (`19x2`)",
        ),
        (
            "slabinfo plus sign",
            err_slab(&MINI_SLABINFO.replace("   64   64 ", "  +64   64 ")),
            "/proc/slabinfo line 4: field `objsize` is not a valid number (`+64`)",
        ),
        (
            "slabinfo u64 overflow",
            err_slab(&MINI_SLABINFO.replace("    192 ", " 99999999999999999999 ")),
            "field `objsize` is not a valid number (`99999999999999999999`)",
        ),
        (
            "slabinfo bad separator",
            err_slab(&MINI_SLABINFO.replacen("    1 : tunables", "    1 ; tunables", 1)),
            "/proc/slabinfo line 3: expected `:` as field 7, found `;`",
        ),
        (
            "slabinfo bad word",
            err_slab(&MINI_SLABINFO.replacen(": slabdata   2374", ": slabdat   2374", 1)),
            "/proc/slabinfo line 3: expected `slabdata` as field 13, found `slabdat`",
        ),
        (
            "slabinfo extra field",
            err_slab(&MINI_SLABINFO.replacen("      0\n", "      0 7\n", 1)),
            "/proc/slabinfo line 3: expected 16 fields, found 17",
        ),
        (
            "slabinfo active > num objects",
            err_slab(&MINI_SLABINFO.replace("2112   2112", "2113   2112")),
            "/proc/slabinfo line 4: active objects 2113 exceeds total 2112",
        ),
        (
            "slabinfo active > num slabs",
            err_slab(&MINI_SLABINFO.replace("33     33", "34     33")),
            "/proc/slabinfo line 4: active slabs 34 exceeds total 33",
        ),
        ("slabinfo empty", err_slab(""), "/proc/slabinfo: empty input"),
        (
            "slabinfo long line quoted truncated",
            err_slab(&format!("{MINI_SLABINFO}{long_junk}")),
            &long_want,
        ),
        (
            "meminfo missing field",
            parse_meminfo(&MINI_MEMINFO.replace("SUnreclaim:        24884 kB\n", "")).unwrap_err(),
            "/proc/meminfo: required field `SUnreclaim` is missing",
        ),
        (
            "meminfo overflow",
            parse_meminfo(&MINI_MEMINFO.replace("24684084 kB", "18014398509481984 kB")).unwrap_err(),
            "/proc/meminfo line 1: value overflows u64 when converted from kB to bytes: `MemTotal:",
        ),
        (
            "meminfo non-numeric",
            parse_meminfo(&MINI_MEMINFO.replace("22728172", "2272817z")).unwrap_err(),
            "/proc/meminfo line 2: field `value` is not a valid number (`2272817z`)",
        ),
        (
            "meminfo unknown unit",
            parse_meminfo(&MINI_MEMINFO.replace("1520 kB", "1520 MB")).unwrap_err(),
            "/proc/meminfo line 4: unknown unit `MB`",
        ),
        (
            "meminfo no colon",
            parse_meminfo(&format!("{MINI_MEMINFO}Garbage 12\n")).unwrap_err(),
            "/proc/meminfo line 9: expected `Key: value`: `Garbage 12`",
        ),
        (
            "meminfo truncated value",
            parse_meminfo(&format!("{MINI_MEMINFO}Shmem:")).unwrap_err(),
            "/proc/meminfo line 9: truncated line, expected 1 fields but found 0: `Shmem:`",
        ),
        (
            "meminfo duplicate key",
            parse_meminfo(&format!("{MINI_MEMINFO}{MINI_MEMINFO}")).unwrap_err(),
            "/proc/meminfo line 9: duplicate key `MemTotal`",
        ),
        (
            "meminfo bad key",
            parse_meminfo(&format!("{MINI_MEMINFO}Bad Key: 1 kB\n")).unwrap_err(),
            "/proc/meminfo line 9: invalid key `Bad Key`",
        ),
        ("meminfo empty", parse_meminfo(" \n").unwrap_err(), "/proc/meminfo: empty input"),
        (
            "dentry-state too short",
            parse_dentry_state("49719 48373 45 0\n").unwrap_err(),
            "/proc/sys/fs/dentry-state line 1: truncated line, expected 6 fields but found 4: `49719 48373 45 0`",
        ),
        (
            "dentry-state non-numeric",
            parse_dentry_state("1 2 3 4 five 0\n").unwrap_err(),
            "/proc/sys/fs/dentry-state line 1: field `nr_negative` is not a valid number (`five`)",
        ),
        (
            "dentry-state two lines",
            parse_dentry_state("1 2 3 4 5 0\n1 2 3 4 5 0\n").unwrap_err(),
            "/proc/sys/fs/dentry-state line 2: expected a single line",
        ),
        ("dentry-state empty", parse_dentry_state("").unwrap_err(), "/proc/sys/fs/dentry-state: empty input"),
        (
            "uptime nan",
            parse_uptime("NaN 1.0\n").unwrap_err(),
            "/proc/uptime line 1: field `uptime` is not a valid number (`NaN`)",
        ),
        (
            "uptime one field",
            parse_uptime("12.5\n").unwrap_err(),
            "/proc/uptime line 1: truncated line, expected 2 fields but found 1",
        ),
        ("uptime empty", parse_uptime("").unwrap_err(), "/proc/uptime: empty input"),
        (
            "capture unknown section",
            split_capture(&format!("{SECTION_MARKER}uptime\n1.0 2.0\n{SECTION_MARKER}vmstat\nx 1\n")).unwrap_err(),
            "capture line 3: unknown section `vmstat`",
        ),
        (
            "capture bare marker",
            split_capture("@@kernlab-section\n").unwrap_err(),
            "capture line 1: unknown section ``",
        ),
        (
            "capture text before marker",
            split_capture(&format!("Welcome to guest\n{SECTION_MARKER}uptime\n1.0 2.0\n")).unwrap_err(),
            "capture line 1: text before the first section marker: `Welcome to guest`",
        ),
        (
            "capture without markers",
            split_capture(HOST_DENTRY).unwrap_err(),
            "capture line 1: text before the first section marker",
        ),
        (
            "capture duplicate section",
            split_capture(&format!("{SECTION_MARKER}uptime\n1 2\n{SECTION_MARKER}uptime\n1 2\n")).unwrap_err(),
            "capture line 3: section `uptime` appears more than once",
        ),
        ("capture empty", parse_capture("").unwrap_err(), "capture: empty input"),
        (
            "capture section error names section",
            parse_capture(&format!("{SECTION_MARKER}uptime\n1.0 2.0\n{SECTION_MARKER}slabinfo\n{}", &MINI_SLABINFO.replace("2.1", "1.1"))).unwrap_err(),
            "capture section `slabinfo` (marker at capture line 3): /proc/slabinfo line 1: unsupported slabinfo version `1.1`",
        ),
        (
            "capture empty section (cat failed)",
            parse_capture(&format!("{SECTION_MARKER}uptime\n1.0 2.0\n{SECTION_MARKER}slabinfo\n{SECTION_MARKER}meminfo\n{MINI_MEMINFO}")).unwrap_err(),
            "capture section `slabinfo` (marker at capture line 3): /proc/slabinfo: empty input",
        ),
    ];

    for (name, err, want) in cases {
        let msg = err.to_string();
        assert!(
            msg.contains(want),
            "{name}: got {msg:?}, want it to contain {want:?}"
        );
    }
}

#[test]
fn error_variants() {
    assert!(matches!(
        err_slab(&MINI_SLABINFO.replace("2.1", "1.1")),
        ParseError::SlabinfoVersion { found } if found == "1.1"
    ));
    assert!(matches!(
        parse_meminfo(&MINI_MEMINFO.replace("MemAvailable", "MemAvail")).unwrap_err(),
        ParseError::MissingField {
            field: "MemAvailable",
            ..
        }
    ));
    assert!(matches!(
        err_slab(&MINI_SLABINFO[..MINI_SLABINFO.len() - 10]),
        ParseError::Truncated { line: 4, .. }
    ));
    assert!(matches!(
        parse_capture(&format!("{SECTION_MARKER}dentry-state\n1 2\n")).unwrap_err(),
        ParseError::InSection { section: Section::DentryState, line: 1, ref inner }
            if matches!(**inner, ParseError::Truncated { file: DENTRY_STATE, .. })
    ));
}

// --- properties ---------------------------------------------------------

fn all_parsers(text: &str) {
    let _ = parse_slabinfo(text);
    let _ = parse_meminfo(text);
    let _ = parse_dentry_state(text);
    let _ = parse_uptime(text);
    let _ = split_capture(text);
    let _ = parse_capture(text);
}

/// Byte-level mutation of `base`: cut at `cut`, then overwrite one byte,
/// then drop a span; invalid UTF-8 is repaired lossily, as a caller
/// reading guest output would have to.
fn mutate(base: &str, cut: usize, pos: usize, byte: u8, del: usize) -> String {
    let mut b = base.as_bytes()[..cut % (base.len() + 1)].to_vec();
    if !b.is_empty() {
        let p = pos % b.len();
        b[p] = byte;
        let end = (p + del).min(b.len());
        b.drain(p..end);
    }
    String::from_utf8_lossy(&b).into_owned()
}

fn arb_cache() -> impl Strategy<Value = SlabCache> {
    (
        "[a-z][a-z0-9_:.()-]{0,20}",
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(name, a, b, objsize, objperslab, pagesperslab, c)| SlabCache {
                name,
                active_objs: a.min(b),
                num_objs: a.max(b),
                objsize,
                objperslab,
                pagesperslab,
                active_slabs: c / 2,
                num_slabs: c,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_strings_never_panic(s in "\\PC{0,200}") {
        all_parsers(&s);
    }

    #[test]
    fn random_lines_never_panic(s in "([ a-z0-9:#@().\t-]{0,40}\n){0,8}") {
        all_parsers(&s);
        all_parsers(&format!("slabinfo - version: 2.1\n# name\n{s}"));
        all_parsers(&format!("{SECTION_MARKER}meminfo\n{s}"));
    }

    #[test]
    fn truncated_and_mutated_captures_never_panic(
        which in 0usize..5,
        cut in any::<usize>(),
        pos in any::<usize>(),
        byte in any::<u8>(),
        del in 0usize..40,
    ) {
        let capture = host_capture();
        let base = [HOST_SLABINFO, HOST_MEMINFO, HOST_DENTRY, HOST_UPTIME, capture.as_str()][which];
        all_parsers(&mutate(base, cut, pos, byte, del));
        // Plain truncation at a line boundary-or-not of the real slabinfo
        // must either parse as a prefix or fail; never yield extra caches.
        let cut_text = &HOST_SLABINFO[..cut % (HOST_SLABINFO.len() + 1)];
        if let Ok(caches) = parse_slabinfo(cut_text) {
            prop_assert!(caches.len() <= 235);
        }
    }

    #[test]
    fn rendered_slab_lines_round_trip(caches in proptest::collection::vec(arb_cache(), 1..8)) {
        let mut text = String::from("slabinfo - version: 2.1\n# name <active_objs> ...\n");
        for c in &caches {
            text.push_str(&format!(
                "{} {} {} {} {} {} : tunables 0 0 0 : slabdata {} {} 0\n",
                c.name, c.active_objs, c.num_objs, c.objsize, c.objperslab,
                c.pagesperslab, c.active_slabs, c.num_slabs,
            ));
        }
        prop_assert_eq!(parse_slabinfo(&text).unwrap(), caches);
    }
}

// --- the guest sampler's stream -------------------------------------------

/// Two records as the guest sampler writes them, after its ready line.
fn stream_text() -> (String, String, String) {
    let first = host_capture();
    let second = format!("{SECTION_MARKER}uptime\n12.5 20.0\n{SECTION_MARKER}ops\n0\n");
    let text = format!("{SAMPLER_READY} pid=42 shrink=150\n{first}{RECORD_END}1\n{second}{RECORD_END}2\n");
    (text, first, second)
}

#[test]
fn stream_records_split_at_their_end_lines_however_the_bytes_arrive() {
    let (text, first, second) = stream_text();
    let want = vec![Record { seq: Some(1), text: first.clone() }, Record { seq: Some(2), text: second.clone() }];
    // Every split of the stream into two reads gives the same records.
    for cut in 0..=text.len() {
        let mut buf = Vec::new();
        let mut got = Vec::new();
        let mut ready = None;
        for chunk in [&text.as_bytes()[..cut], &text.as_bytes()[cut..]] {
            buf.extend_from_slice(chunk);
            if ready.is_none() {
                ready = take_ready(&mut buf);
                if ready.is_none() {
                    continue;
                }
            }
            while let Some(r) = take_record(&mut buf) {
                got.push(r);
            }
        }
        assert_eq!(ready.as_deref(), Some("@@kernlab-ready pid=42 shrink=150"), "cut at {cut}");
        assert_eq!(got, want, "cut at {cut}");
        assert!(buf.is_empty(), "cut at {cut}");
    }
    // A record's text is a capture.
    let c = parse_capture(&first).unwrap();
    assert!(c.slabinfo.is_some() && c.meminfo.is_some() && c.dentry.is_some());
    assert_eq!(parse_capture(&second).unwrap().ops, Some(0));
}

#[test]
fn a_partial_record_waits_and_a_bad_sequence_number_is_none() {
    let mut buf = format!("{SECTION_MARKER}ops\n5\n{RECORD_END}").into_bytes();
    assert_eq!(take_record(&mut buf), None, "the end line is not whole yet");
    buf.extend_from_slice(b"x7\n");
    assert_eq!(take_record(&mut buf), Some(Record { seq: None, text: format!("{SECTION_MARKER}ops\n5\n") }));
    // A marker inside a line is not an end line.
    let mut buf = format!("a {RECORD_END}3\n").into_bytes();
    assert_eq!(take_record(&mut buf), None);
    assert_eq!(record_request(17), "s 17\n");
}
