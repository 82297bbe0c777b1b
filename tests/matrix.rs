//! A real matrix: one lab on two kernels, one of which has left the
//! archive. Its cell fails with an error naming it; the other cell runs to
//! the end; JUnit and the report say which is which.

mod common;
use common::*;

#[test]
fn a_kernel_gone_from_the_archive_fails_only_its_cell() {
    let d = tempfile::tempdir().unwrap();
    let kdir = d.path().join("kernels");
    std::fs::create_dir(&kdir).unwrap();
    std::fs::write(kdir.join("gone-6.1.0-999.yaml"), "source:\n  debian:\n    package: linux-image-6.1.0-999-cloud-amd64\n").unwrap();
    lab(d.path(), "quick", "name: quick\nworkload:\n  commands: ['echo hi']\n  duration: 3s\nmonitor:\n  interval: 1s\n");
    std::fs::write(d.path().join("m.yaml"), "name: m\nlabs: [quick.yaml]\nkernels: [debian-6.1.0-54-cloud-amd64, 'gone-*']\n").unwrap();
    let dir = d.path().join("out");
    let out = run(&["--kernels", kdir.to_str().unwrap(), "matrix", d.path().join("m.yaml").to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(101), "stdout:\n{so}\nstderr:\n{se}");
    assert!(so.contains("completed (0)") && so.contains("failed (101)"), "{so}");

    let r = report(&dir);
    let cells = r["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    let good = cells.iter().find(|c| c["kernel"] == "debian-6.1.0-54-cloud-amd64").unwrap();
    assert_eq!(good["exit_code"], 0);
    let gone = cells.iter().find(|c| c["kernel"] == "gone-6.1.0-999").unwrap();
    assert_eq!(gone["exit_code"], 101);
    assert!(gone["error"].as_str().unwrap().contains("linux-image-6.1.0-999-cloud-amd64"), "{gone}");
    // Each cell is a normal run directory.
    assert!(dir.join("cells/quick@debian-6.1.0-54-cloud-amd64/samples/meminfo.csv").is_file());

    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert!(junit.contains("name=\"quick@debian-6.1.0-54-cloud-amd64\"") && junit.contains("name=\"quick@gone-6.1.0-999\""), "{junit}");
    assert_eq!(junit.matches("<error").count(), 1, "{junit}");
    assert!(junit.contains("property name=\"verdict\" value=\"completed\""), "{junit}");
    let ktap = std::fs::read_to_string(dir.join("ktap.txt")).unwrap();
    assert!(ktap.starts_with("KTAP version 1\n1..2\n") && ktap.contains("not ok 2 quick@gone-6.1.0-999"), "{ktap}");

    // Shards' reports join into one.
    let merged = d.path().join("merged");
    let o = run(&["merge", dir.to_str().unwrap(), "--out", merged.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(101), "{}", text(&o.stderr));
    assert_eq!(report(&merged)["cells"].as_array().unwrap().len(), 2);
    assert!(merged.join("junit.xml").is_file() && merged.join("ktap.txt").is_file());
}

#[test]
fn debian_patterns_come_from_the_apt_sources_and_run() {
    let d = tempfile::tempdir().unwrap();
    lab(d.path(), "quick", "name: quick\nworkload:\n  commands: ['uname -r']\n  duration: 2s\nmonitor:\n  interval: 1s\n");
    std::fs::write(d.path().join("m.yaml"), "name: m\nlabs: [quick.yaml]\nkernels: ['debian:6.1.0-5*-cloud-amd64']\n").unwrap();
    let o = run(&["matrix", d.path().join("m.yaml").to_str().unwrap(), "--list"]);
    let listed = text(&o.stdout);
    assert!(listed.contains("quick@debian-6.1.0-53-cloud-amd64") && listed.contains("quick@debian-6.1.0-54-cloud-amd64"), "{listed}");
    // Run one such cell: a kernel no descriptor names, fetched by package.
    std::fs::write(d.path().join("one.yaml"), "name: one\nlabs: [quick.yaml]\nkernels: ['debian:6.1.0-53-cloud-amd64']\n").unwrap();
    let dir = d.path().join("out");
    let o = run(&["matrix", d.path().join("one.yaml").to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", text(&o.stdout), text(&o.stderr));
    let log = std::fs::read_to_string(dir.join("cells/quick@debian-6.1.0-53-cloud-amd64/workload.log")).unwrap();
    assert_eq!(log.trim(), "6.1.0-53-cloud-amd64");
}
