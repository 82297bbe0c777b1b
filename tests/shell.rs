//! `kernlab shell`: the lab's guest as a run has it (modules loaded), one
//! command or an interactive shell over the system `ssh`, its exit status
//! as kernlab's, and the guest gone afterwards — also after Ctrl-C.

mod common;
use common::*;
use std::io::BufRead;
use std::time::Duration;

/// The QEMU pids kernlab said it started (its stderr's `QEMU pid N` lines).
fn said_pids(stderr: &str) -> Vec<i32> {
    stderr.lines().filter_map(|l| l.split("QEMU pid ").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()).collect()
}

/// Runs `kernlab shell` with its temporary directory under `tmp`.
fn shell(tmp: &std::path::Path, args: &[&str]) -> std::process::Output {
    kernlab().env("TMPDIR", tmp).arg("shell").args(args).output().unwrap()
}

#[test]
fn a_command_sees_the_labs_module_loaded_and_its_status_is_kernlabs() {
    let d = tempfile::tempdir().unwrap();
    let out = shell(d.path(), &["labs/no-leak-lab.yaml", "--", "cat", "/proc/modules"]);
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{so}\nstderr:\n{se}");
    assert!(so.lines().any(|l| l.starts_with("khm ")), "khm not in the guest's /proc/modules:\n{so}");
    assert!(se.contains("booting its module arm"), "the A/B lab's arm is not said:\n{se}");
    let pids = said_pids(&se);
    assert!(!pids.is_empty(), "no QEMU pid on stderr:\n{se}");
    assert!(pids.iter().all(|p| !qemu_alive(*p)), "QEMU left running: {pids:?}");
    // The temporary run directory is gone.
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "left in TMPDIR: {:?}", std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().path()).collect::<Vec<_>>());

    // The command's own exit status; argv words arrive as given.
    let out = shell(d.path(), &["labs/no-leak-lab.yaml", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert!(said_pids(&text(&out.stderr)).iter().all(|p| !qemu_alive(*p)));

    // The baseline arm boots without the module.
    let out = shell(d.path(), &["labs/no-leak-lab.yaml", "--arm", "baseline", "--", "cat", "/proc/modules"]);
    let so = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(so.contains("virtio_net") && !so.lines().any(|l| l.starts_with("khm ")), "baseline arm:\n{so}");
}

#[test]
fn a_bad_lab_fails_with_exit_2_before_any_boot() {
    let d = tempfile::tempdir().unwrap();
    let out = shell(d.path(), &["labs/no-such-lab.yaml", "--", "true"]);
    let se = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{se}");
    assert!(se.contains("labs/no-such-lab.yaml") && se.contains("No such file"), "{se}");
    assert!(!se.contains("QEMU"), "booted anyway:\n{se}");
    // A plain lab has no baseline arm.
    let out = shell(d.path(), &["labs/smoke.yaml", "--arm", "baseline", "--", "true"]);
    let se = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{se}");
    assert!(se.contains("labs/smoke.yaml") && se.contains("--arm baseline needs an A/B leak lab") && !se.contains("QEMU"), "{se}");
}

#[test]
fn json_gives_one_result_object_with_the_commands_output() {
    let d = tempfile::tempdir().unwrap();
    let out = kernlab().env("TMPDIR", d.path()).args(["--json", "shell", "labs/no-leak-lab.yaml", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]).output().unwrap();
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "stdout:\n{so}\nstderr:\n{se}");
    assert_eq!(so.lines().count(), 1, "one JSON document:\n{so}");
    let v: serde_json::Value = serde_json::from_str(&so).unwrap();
    assert_eq!((v["lab"].as_str(), v["arm"].as_str()), (Some("no-leak-lab"), Some("module")), "{v}");
    assert_eq!((v["exit_code"].as_i64(), v["status"].as_i64()), (Some(3), Some(3)), "{v}");
    assert_eq!((v["stdout"].as_str(), v["stderr"].as_str()), (Some("out\n"), Some("err\n")), "{v}");
    assert_eq!(v["command"], serde_json::json!(["sh", "-c", "echo out; echo err >&2; exit 3"]));
    assert!(v["error"].is_null() && v["kernel"] == "debian-6.1.0-54-cloud-amd64", "{v}");
}

/// The interactive shell on a terminal (`script` gives it a pty): what is
/// typed runs in the guest, and the shell's exit status is kernlab's.
#[test]
fn the_interactive_shell_runs_on_a_terminal_and_returns_its_status() {
    let d = tempfile::tempdir().unwrap();
    let cmd = format!("{} shell labs/no-leak-lab.yaml", env!("CARGO_BIN_EXE_kernlab"));
    let mut child = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("TMPDIR", d.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.as_mut().unwrap().write_all(b"echo in-guest $(grep -c ^khm /proc/modules) $(hostname); exit 5\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let so = text(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{so}\n{}", text(&out.stderr));
    assert!(so.contains("in-guest 1 kernlab"), "{so}");
    let pids = said_pids(&so);
    assert!(!pids.is_empty() && pids.iter().all(|p| !qemu_alive(*p)), "{so}");
}

/// Ctrl-C while the command runs: kernlab ends ssh, stops the guest and
/// exits 130.
#[test]
fn an_interrupt_ends_the_command_and_the_guest() {
    let d = tempfile::tempdir().unwrap();
    let mut child = kernlab()
        .env("TMPDIR", d.path())
        .args(["shell", "labs/no-leak-lab.yaml", "--", "sh", "-c", "echo ready; sleep 600"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().map(|l| l.unwrap()).as_deref(), Some("ready"));
    let stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap());
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = exit_within(&mut child, Duration::from_secs(30), "SIGINT");
    let se = err.join().unwrap();
    assert_eq!(status.code(), Some(130), "{se}");
    let pids = said_pids(&se);
    assert!(!pids.is_empty() && pids.iter().all(|p| !qemu_alive(*p)), "QEMU left running: {pids:?}\n{se}");
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "the temporary run directory is left");
}

/// Without a terminal, the shell reads its input as a script (no pty, no
/// warning about one) and its exit status is still kernlab's.
#[test]
fn piped_input_is_a_script_for_the_guests_shell() {
    let d = tempfile::tempdir().unwrap();
    let mut child = kernlab()
        .env("TMPDIR", d.path())
        .args(["-q", "shell", "labs/no-leak-lab.yaml"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"grep -c ^khm /proc/modules\nexit 4\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(4), "stdout:\n{so}\nstderr:\n{se}");
    assert_eq!(so, "1\n");
    assert!(!se.contains("Pseudo-terminal"), "{se}");
}
