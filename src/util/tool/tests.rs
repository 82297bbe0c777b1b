use super::*;
use std::time::Instant;

const SEC: Duration = Duration::from_secs(1);

#[test]
fn quoting() {
    let cases = [
        ("plain", "plain"),
        ("", "''"),
        ("a b", "'a b'"),
        ("$(reboot)", "'$(reboot)'"),
        ("it's", r"'it'\''s'"),
        ("x;rm -rf /", "'x;rm -rf /'"),
    ];
    for (input, want) in cases {
        assert_eq!(shell_quote(input), want, "quoting {input:?}");
    }
}

#[test]
fn missing_tool_names_package() {
    let err = Tool::new("/nonexistent/dropbearkey", SEC).run().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("/nonexistent/dropbearkey") && msg.contains("dropbear-bin"), "{msg}");
}

#[test]
fn failure_carries_stderr() {
    let err = Tool::new("sh", 10 * SEC).args(["-c", "echo boom >&2; exit 3"]).run().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("boom") && msg.contains("exit status: 3"), "{msg}");
    // `output` leaves the judging to the caller.
    let out = Tool::new("sh", 10 * SEC).args(["-c", "echo out; exit 3"]).output().unwrap();
    assert_eq!((out.status.code(), out.stdout.as_slice()), (Some(3), b"out\n".as_slice()));
}

#[test]
fn the_deadline_kills_the_whole_group_and_names_the_command() {
    let t = Instant::now();
    // The shell's child holds the pipes: only a kill of the group ends it.
    let err = Tool::new("sh", Duration::from_millis(300)).args(["-c", "echo started >&2; sleep 30 & wait"]).run().unwrap_err();
    assert!(err.is_deadline(), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("`sh -c 'echo started >&2; sleep 30 & wait'` did not finish within 300ms") && msg.contains("started"), "{msg}");
    assert!(t.elapsed() < 10 * SEC, "took {:?}", t.elapsed());
}

#[test]
fn leftovers_in_the_group_do_not_hold_the_output() {
    // The tool exits at once but leaves a child holding its stdout.
    let t = Instant::now();
    let out = Tool::new("sh", 20 * SEC).args(["-c", "sleep 30 & echo done"]).run().unwrap();
    assert_eq!(out.stdout, b"done\n");
    assert!(t.elapsed() < 10 * SEC, "took {:?}", t.elapsed());
}

#[test]
fn a_stream_is_read_by_the_caller_and_finished() {
    let mut s = Tool::new("sh", 20 * SEC).args(["-c", "echo one; echo two; echo warn >&2"]).stream().unwrap();
    let mut text = String::new();
    s.stdout().read_to_string(&mut text).unwrap();
    assert_eq!(text, "one\ntwo\n");
    let (status, stderr) = s.finish().unwrap();
    assert!(status.success());
    assert_eq!(stderr, "warn");
}

#[test]
fn a_stream_past_its_deadline_ends_and_says_so() {
    let mut s = Tool::new("sh", Duration::from_millis(300)).args(["-c", "echo one; sleep 30"]).stream().unwrap();
    let mut text = String::new();
    s.stdout().read_to_string(&mut text).unwrap();
    assert_eq!(text, "one\n");
    assert!(s.finish().unwrap_err().is_deadline());
}

#[test]
fn a_stream_closed_early_ends_the_writer() {
    let mut s = Tool::new("yes", 20 * SEC).stream().unwrap();
    let mut buf = [0u8; 4];
    s.stdout().read_exact(&mut buf).unwrap();
    let (status, _) = s.finish().unwrap();
    assert!(!status.success(), "yes dies of SIGPIPE");
    // Dropped unfinished: killed and reaped, not left behind.
    drop(Tool::new("sleep", 20 * SEC).arg("30").stream().unwrap());
}

#[tokio::test]
async fn the_async_form_runs_off_the_runtime() {
    let out = Tool::new("echo", 10 * SEC).arg("hi").run_async().await.unwrap();
    assert_eq!(out.stdout, b"hi\n");
    let err = Tool::new("sleep", Duration::from_millis(200)).arg("30").output_async().await.unwrap_err();
    assert!(err.is_deadline(), "{err}");
}
