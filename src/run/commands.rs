//! The guest commands a run sends, as text: the sampling command, `insmod`
//! with its parameters, and the workload script with its start and stop.
//! Pure functions of the lab, so their quoting is unit-tested; a lab's text
//! reaches the guest as data (quoted words, an uploaded file), never as
//! kernlab's own shell.

use std::time::Duration;

use crate::lab::{self, Lab};
use crate::sample::parse::{self as sparse, Section};
use crate::util::tool;

/// Which `/proc` sections a lab samples (uptime always, to place samples in guest time).
pub(super) fn sections(lab: &Lab) -> Vec<Section> {
    let mut s = vec![Section::Uptime];
    for src in &lab.monitor.sources {
        match src {
            lab::Source::Slabinfo => s.push(Section::Slabinfo),
            lab::Source::Meminfo => s.push(Section::Meminfo),
            lab::Source::DentryState => s.push(Section::DentryState),
            lab::Source::Balloon => {}
        }
    }
    // Any workload may count operations: the churn, the commands'
    // `kernlab-ops N` lines, or the lab's `workload.ops` file. One that
    // never does samples 0 throughout, which the analysis reads as no count.
    if lab.workload.is_some() {
        s.push(Section::Ops);
    }
    s
}

/// The guest directory for the lab's modules.
pub(super) const GUEST_MODULES: &str = "/opt/kernlab/modules";

/// The churn workload's source, built into a static binary for the guest.
pub(super) const CHURN_C: &str = include_str!("../../labs/workloads/churn.c");

/// The ext4 label of the churn disk; the guest finds it with `findfs`.
pub(super) const CHURN_LABEL: &str = "kernlab-churn";

/// The sampling command: optionally drop reclaimable caches first, so what
/// the sample sees is what is held.
pub(super) fn capture_command(lab: &Lab, sections: &[Section]) -> String {
    let mut cmd = String::new();
    // The workload is paused while the slabs are flushed and read: an
    // allocation between the flush and the read would take a fresh CPU
    // slab and count it whole again.
    let quiesce = lab.workload.is_some() && (lab.monitor.shrink || !lab.monitor.quiesce.is_zero());
    if quiesce {
        cmd.push_str(&format!("w=$(cat {WORKLOAD_PID} 2>/dev/null); [ -n \"$w\" ] && kill -STOP -- -$w 2>/dev/null; "));
        if !lab.monitor.quiesce.is_zero() {
            cmd.push_str(&format!("sleep {:.3}; ", lab.monitor.quiesce.as_secs_f64()));
        }
    }
    if lab.monitor.reclaim {
        cmd.push_str("sync; echo 2 > /proc/sys/vm/drop_caches; ");
    }
    // After the reclaim, so that what it freed is flushed too, and right
    // before the slab section.
    let shrink = if lab.monitor.shrink { "for f in /sys/kernel/slab/*/shrink; do echo 1 > $f; done 2>/dev/null; " } else { "" };
    let ops_file = lab.workload.as_ref().map_or(sparse::OPS_FILE, |w| w.ops_file());
    cmd.push_str(&sparse::capture_command_with(sections, shrink, ops_file));
    if quiesce {
        // Resume whatever the capture did; its status is the command's.
        cmd = format!("{{ {cmd}; }}; rc=$?; [ -n \"$w\" ] && kill -CONT -- -$w 2>/dev/null; exit $rc");
    }
    cmd
}

/// The guest sampler's source (see `labs/guest/sampler.c`), built into a
/// static binary for the guest, and where it goes.
pub(super) const SAMPLER_C: &str = include_str!("../../labs/guest/sampler.c");
pub(super) const SAMPLER_BIN: &str = "/usr/bin/kernlab-sampler";

/// The guest sampler's command line for `monitor.sampler: stream`: the
/// same pause, reclaim, flush and sections as [`capture_command`], done by
/// one process that opens its files once (`exec`, so no shell stays
/// around it); with `port`, over that virtio-serial port when the guest
/// has it.
pub(super) fn sampler_command(lab: &Lab, sections: &[Section], port: Option<&str>) -> String {
    let mut cmd = format!("exec {SAMPLER_BIN}");
    let quiesce = lab.workload.is_some() && (lab.monitor.shrink || !lab.monitor.quiesce.is_zero());
    if lab.monitor.reclaim {
        cmd.push_str(" -r");
    }
    if lab.monitor.shrink {
        cmd.push_str(" -s");
    }
    if quiesce {
        cmd.push_str(&format!(" -w {WORKLOAD_PID}"));
        if !lab.monitor.quiesce.is_zero() {
            cmd.push_str(&format!(" -q {}", lab.monitor.quiesce.as_millis()));
        }
    }
    let ops_file = lab.workload.as_ref().map_or(sparse::OPS_FILE, |w| w.ops_file());
    cmd.push_str(&format!(" -o {}", tool::shell_quote(ops_file)));
    if let Some(port) = port {
        cmd.push_str(&format!(" -p {}", tool::shell_quote(port)));
    }
    // Uptime first, each section once, as in the exec capture.
    let mut order = vec![Section::Uptime];
    for &s in sections {
        if !order.contains(&s) {
            order.push(s);
        }
    }
    for s in order {
        cmd.push(' ');
        cmd.push_str(s.name());
    }
    cmd
}

/// `insmod` of a lab module with its parameters. The guest shell sees data only: each `name=value` is one single-quoted
/// word. The kernel then splits the joined arguments at blanks unless a
/// value is in double quotes, so a value with blanks is wrapped in them
/// (lab validation refuses values that contain a double quote).
pub fn insmod_command(name: &str, params: &std::collections::BTreeMap<String, String>) -> String {
    let mut cmd = format!("insmod {GUEST_MODULES}/{name}.ko");
    for (k, v) in params {
        let v = if v.chars().any(char::is_whitespace) { format!("\"{v}\"") } else { v.clone() };
        cmd.push(' ');
        cmd.push_str(&tool::shell_quote(format!("{k}={v}")));
    }
    cmd
}

/// The workload's guest commands: the churn program (in the background when
/// there are commands too) on a fresh tmpfs or the churn disk (no file
/// system for `kind: sockets`), then the lab's commands. The churn stops by itself after `limit` (the phase's, see
/// [`Lab::phase_limit`]), in case kernlab's stop at that moment is lost.
pub fn workload_commands(w: &lab::Workload, limit: Duration) -> Vec<String> {
    let mut cmds = Vec::new();
    if w.counts_lines() {
        cmds.extend(ops_filter(w.ops_file()));
    }
    if let Some(c) = &w.churn {
        if c.uses_files() {
            cmds.push(match c.fs {
                lab::ChurnFs::Tmpfs => "mkdir -p /mnt/churn && mount -t tmpfs -o nr_inodes=0,mode=1777 kernlab-churn /mnt/churn || exit 90".to_string(),
                lab::ChurnFs::Ext4 => {
                    format!("mkdir -p /mnt/churn && mount -t ext4 \"$(findfs LABEL={CHURN_LABEL})\" /mnt/churn || exit 90")
                }
            });
        }
        // The churn outlives the sampling by a margin (the run ends it when
        // sampling is over): its exit (the last closes, a hook module's
        // deferred work) must not land in the last samples as a step.
        let mut churn = "churn".to_string();
        if c.kind != lab::ChurnKind::Files {
            churn.push_str(&format!(" -k {}", c.kind.as_str()));
        }
        if c.kind == lab::ChurnKind::Mixed && c.sockets != 50 {
            churn.push_str(&format!(" -m {}", c.sockets));
        }
        if c.uses_files() {
            churn.push_str(" -d /mnt/churn");
        }
        churn.push_str(&format!(" -c {} -t {}", sparse::OPS_FILE, limit.as_secs().max(1) + CHURN_MARGIN_SECS));
        if c.rate > 0 {
            churn.push_str(&format!(" -r {}", c.rate));
        }
        if c.count > 0 {
            churn.push_str(&format!(" -n {}", c.count));
        }
        if c.write > 0 {
            churn.push_str(&format!(" -w {}", c.write));
        }
        if w.commands.is_empty() {
            cmds.push(churn);
        } else {
            cmds.push(format!("{churn} &"));
        }
    }
    cmds.extend(w.commands.iter().cloned());
    if w.churn.is_some() && !w.commands.is_empty() {
        cmds.push("wait".into());
    }
    cmds
}

/// The script's first lines when the commands may count operations: from
/// here on the script's stdout goes through a filter in which a line
/// `kernlab-ops N` (N decimal, the cumulative count) replaces `ops_file`
/// with N (a temporary file and `mv`, so a sample never reads half a
/// number) and every other line passes through unchanged. stderr is not
/// filtered.
///
/// The filter takes the whole script's stdout (`exec > FIFO`) rather than
/// a pipe per command: the commands keep running in the one shell, so
/// `cd`, variables, `cmd &` with a later `wait`, and the script's exit
/// status are what they would be unfiltered; busybox sh has no `pipefail`
/// to keep a piped command's status anyway. The awk runs in a subshell
/// of a subshell, so it is not the script's child and a bare `wait` does
/// not wait for it (it ends when the last writer of the FIFO does). At exit the script
/// closes its stdout and gives the awk up to 2 s to pass the last lines on
/// to the log, then exits with its own status. mawk (Debian's awk) reads
/// ahead in blocks unless `-W interactive`; busybox awk and gawk handle a
/// line as it comes. `ops_file` is a validated path (plain characters
/// only), so it is safe inside the shell and awk text.
pub fn ops_filter(ops_file: &str) -> Vec<String> {
    ops_filter_at(ops_file, OPS_FIFO, OPS_FILTER_RUNNING)
}

/// [`ops_filter`] with its FIFO and pid file elsewhere (host tests).
fn ops_filter_at(ops_file: &str, fifo: &str, running: &str) -> Vec<String> {
    let dir = match ops_file.rsplit_once('/') {
        Some(("", _)) | None => "/".to_string(),
        Some((d, _)) => d.to_string(),
    };
    let awk = r#"BEGIN { t = f ".kernlab-tmp" } /^kernlab-ops [0-9]+$/ { print $2 > t; close(t); system("mv -f " t " " f); next } { print; fflush() }"#;
    vec![
        format!("# kernlab: stdout from here on passes a filter: `kernlab-ops N` lines set the operation count in {ops_file}"),
        format!("mkdir -p {dir} && rm -f {fifo} && mkfifo {fifo} || exit 91"),
        "a=awk; awk -W version 2>/dev/null | grep -q mawk && a='awk -W interactive'".to_string(),
        format!(": > {running}; (($a -v f={ops_file} '{awk}' < {fifo}; rm -f {running}) &)"),
        format!("exec > {fifo}; rm -f {fifo}"),
        format!(
            "trap 'rc=$?; exec >&-; i=0; while [ $i -lt 20 ] && [ -e {running} ]; do sleep 0.1; i=$((i+1)); done; exit $rc' EXIT"
        ),
    ]
}

/// When the churn owns the count (no `workload.ops`) and the commands
/// printed `kernlab-ops N` lines anyway, those lines counted nothing: the
/// warning that says so, else `None`.
pub fn ignored_ops_lines(w: &lab::Workload, log: &str) -> Option<String> {
    let is_count = |l: &str| l.strip_prefix("kernlab-ops ").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    (w.churn.is_some() && !w.counts_lines() && !w.commands.is_empty() && log.lines().any(is_count)).then(|| {
        format!(
            "the workload printed `kernlab-ops N` lines, but the churn counts this lab's operations, so they were ignored; give `workload.ops` to count with them instead (see {})",
            crate::analysis::leak::OPS_DOC
        )
    })
}

/// The FIFO the workload's stdout goes through, and the file that is there
/// while the filter runs (a pid would outlive it as an unreaped zombie
/// where pid 1 does not reap orphans).
const OPS_FIFO: &str = "/run/kernlab-ops.fifo";
const OPS_FILTER_RUNNING: &str = "/run/kernlab-ops-filter.running";

/// Seconds the churn runs past the sampling.
const CHURN_MARGIN_SECS: u64 = 15;

/// The workload as a guest shell script: the lab's commands, one per line.
/// It is uploaded as a file, so the lab's text reaches the guest as data and
/// is never pasted into a command line of kernlab's own.
pub fn workload_file(commands: &[String]) -> String {
    format!("# written by kernlab: the lab's workload commands\n{}\n", commands.join("\n"))
}

/// The guest command that runs the uploaded workload script. It runs in its
/// own session (`setsid`), so at the end of the duration [`workload_stop`]
/// can end it and everything it started; the shell that waits for it exits
/// normally with the workload's status. Output goes to a guest file rather
/// than the SSH channel, so nothing left behind can hold the channel open;
/// the file is fetched afterwards.
pub fn workload_command() -> String {
    format!("setsid sh {WORKLOAD_SCRIPT} > {WORKLOAD_LOG} 2>&1 < /dev/null & echo $! > {WORKLOAD_PID}; wait $!")
}

/// The guest command that ends the workload's whole process group.
pub fn workload_stop() -> String {
    // CONT after TERM: a workload a broken sample left paused would keep
    // the TERM pending.
    format!("[ -s {WORKLOAD_PID} ] && {{ w=$(cat {WORKLOAD_PID}); kill -TERM -- -$w; kill -CONT -- -$w; }} 2>/dev/null; true")
}

/// Where the workload's output and process id go in the guest.
pub(super) const WORKLOAD_LOG: &str = "/tmp/kernlab-workload.log";
const WORKLOAD_PID: &str = "/run/kernlab-workload.pid";
pub(super) const WORKLOAD_SCRIPT: &str = "/run/kernlab-workload.sh";

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn workload_text_is_a_file_not_a_command_line() {
        let cmds = ["echo $(id); rm -rf /x".to_string(), "echo 'a'".to_string()];
        assert_eq!(workload_file(&cmds), "# written by kernlab: the lab's workload commands\necho $(id); rm -rf /x\necho 'a'\n");
        assert_eq!(
            workload_command(),
            "setsid sh /run/kernlab-workload.sh > /tmp/kernlab-workload.log 2>&1 < /dev/null & echo $! > /run/kernlab-workload.pid; wait $!"
        );
    }

    #[test]
    fn the_stream_sampler_does_what_the_capture_command_does() {
        let mut lab = crate::lab::parse("name: x\n", Path::new("x.yaml")).unwrap();
        lab.workload = Some(lab::Workload { churn: Some(lab::Churn::default()), commands: vec![], duration: Duration::from_secs(30), ops: None });
        let s = sections(&lab);
        assert_eq!(sampler_command(&lab, &s, None), "exec /usr/bin/kernlab-sampler -s -w /run/kernlab-workload.pid -o /run/kernlab-ops uptime slabinfo meminfo dentry-state ops");
        assert_eq!(
            sampler_command(&lab, &s, Some("org.kernlab.sampler")),
            "exec /usr/bin/kernlab-sampler -s -w /run/kernlab-workload.pid -o /run/kernlab-ops -p org.kernlab.sampler uptime slabinfo meminfo dentry-state ops"
        );
        lab.monitor.reclaim = true;
        lab.monitor.quiesce = Duration::from_millis(300);
        lab.workload.as_mut().unwrap().ops = Some("/run/app/ops".into());
        assert_eq!(sampler_command(&lab, &s, None), "exec /usr/bin/kernlab-sampler -r -s -w /run/kernlab-workload.pid -q 300 -o /run/app/ops uptime slabinfo meminfo dentry-state ops");
        // No workload: nothing to pause.
        lab.workload = None;
        lab.monitor.shrink = false;
        assert_eq!(sampler_command(&lab, &sections(&lab), None), "exec /usr/bin/kernlab-sampler -r -o /run/kernlab-ops uptime slabinfo meminfo dentry-state");
    }

    #[test]
    fn insmod_parameters_are_quoted_words() {
        let mut p = std::collections::BTreeMap::new();
        p.insert("leak".to_string(), "1".to_string());
        p.insert("symbol".to_string(), "x; reboot".to_string());
        assert_eq!(insmod_command("khm", &p), "insmod /opt/kernlab/modules/khm.ko leak=1 'symbol=\"x; reboot\"'");
        p.insert("symbol".to_string(), "it's$(x)`y`;z".to_string());
        assert_eq!(insmod_command("khm", &p), "insmod /opt/kernlab/modules/khm.ko leak=1 'symbol=it'\\''s$(x)`y`;z'");
    }

    #[test]
    fn kernlab_ops_lines_beside_a_churn_are_warned_about() {
        let mut w = lab::Workload { churn: Some(lab::Churn::default()), commands: vec!["app".into()], duration: Duration::from_secs(5), ops: None };
        assert!(ignored_ops_lines(&w, "x\nkernlab-ops 12\n").unwrap().contains("give `workload.ops`"));
        assert_eq!(ignored_ops_lines(&w, "kernlab-ops x\nkernlab-ops \n"), None);
        w.ops = Some("/run/app/ops".into());
        assert_eq!(ignored_ops_lines(&w, "kernlab-ops 12\n"), None);
    }

    #[test]
    fn ops_filter_text() {
        assert_eq!(
            ops_filter("/run/app/ops"),
            [
                "# kernlab: stdout from here on passes a filter: `kernlab-ops N` lines set the operation count in /run/app/ops",
                "mkdir -p /run/app && rm -f /run/kernlab-ops.fifo && mkfifo /run/kernlab-ops.fifo || exit 91",
                "a=awk; awk -W version 2>/dev/null | grep -q mawk && a='awk -W interactive'",
                r#": > /run/kernlab-ops-filter.running; (($a -v f=/run/app/ops 'BEGIN { t = f ".kernlab-tmp" } /^kernlab-ops [0-9]+$/ { print $2 > t; close(t); system("mv -f " t " " f); next } { print; fflush() }' < /run/kernlab-ops.fifo; rm -f /run/kernlab-ops-filter.running) &)"#,
                "exec > /run/kernlab-ops.fifo; rm -f /run/kernlab-ops.fifo",
                "trap 'rc=$?; exec >&-; i=0; while [ $i -lt 20 ] && [ -e /run/kernlab-ops-filter.running ]; do sleep 0.1; i=$((i+1)); done; exit $rc' EXIT",
            ]
        );
        assert!(ops_filter("/n")[1].starts_with("mkdir -p / &&"));
    }

    #[test]
    fn commands_alone_are_filtered_and_a_churn_owns_its_count() {
        let limit = Duration::from_secs(10);
        let mut w = lab::Workload { churn: None, commands: vec!["app".into()], duration: limit, ops: None };
        let cmds = workload_commands(&w, limit);
        assert_eq!(cmds.len(), 7, "{cmds:?}");
        assert!(cmds[1].starts_with("mkdir -p /run &&") && cmds[3].contains("-v f=/run/kernlab-ops "), "{cmds:?}");
        assert_eq!(cmds[6], "app");
        // A churn without `ops` writes the count; the commands are not filtered.
        w.churn = Some(lab::Churn { kind: lab::ChurnKind::Pipes, ..Default::default() });
        assert_eq!(workload_commands(&w, limit), ["churn -k pipes -c /run/kernlab-ops -t 25 &", "app", "wait"]);
        // With `ops`, the lab's count wins: the filter writes it, the churn is load.
        w.ops = Some("/run/app/ops".into());
        let cmds = workload_commands(&w, limit);
        assert!(cmds[3].contains("-v f=/run/app/ops "), "{cmds:?}");
        assert_eq!(&cmds[6..], ["churn -k pipes -c /run/kernlab-ops -t 25 &", "app", "wait"]);
    }

    /// Runs `script` with `shell` (PATH = `path`), returning (status, stdout, count file).
    fn run_filtered(shell: &str, path: &str, body: &str) -> (i32, String, Option<String>) {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().display().to_string();
        let ops = format!("{dir}/sub/ops");
        let mut text = ops_filter_at(&ops, &format!("{dir}/fifo"), &format!("{dir}/running")).join("\n");
        text.push('\n');
        text.push_str(body);
        let script = d.path().join("w.sh");
        std::fs::write(&script, text).unwrap();
        let out = std::process::Command::new(shell).arg(&script).env("PATH", path).stdin(std::process::Stdio::null()).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), std::fs::read_to_string(&ops).ok())
    }

    /// The filter's text run for real: busybox sh and awk (the minimal
    /// image's), and dash with mawk (Debian's), when the host has them.
    #[test]
    fn ops_filter_runs_in_busybox_and_dash() {
        let bb = tempfile::tempdir().unwrap();
        let busybox = ["/usr/bin/busybox", "/bin/busybox"].into_iter().find(|p| Path::new(p).exists()).expect("busybox (scripts/setup.sh installs it)");
        for applet in ["sh", "awk", "mv", "mkdir", "mkfifo", "rm", "grep", "cat", "kill", "sleep", "echo", "true", "false"] {
            std::os::unix::fs::symlink(busybox, bb.path().join(applet)).unwrap();
        }
        let bb_path = bb.path().display().to_string();
        let mut shells = vec![(format!("{bb_path}/sh"), bb_path.clone())];
        if Path::new("/bin/dash").exists() && Path::new("/usr/bin/mawk").exists() {
            shells.push(("/bin/dash".into(), "/usr/bin:/bin".into()));
        }
        for (sh, path) in &shells {
            // Counts replace the file; other lines pass through in order; the
            // shell's state carries across commands; `wait` does not hang on the filter.
            let body = "cd /\nx=1\necho first\necho kernlab-ops 5\necho 'kernlab-ops 5x'\nsleep 0.2 &\nwait\necho kernlab-ops 12\necho \"x=$x pwd=$(pwd)\"\n";
            let (rc, out, ops) = run_filtered(sh, path, body);
            assert_eq!(rc, 0, "{sh}: {out}");
            assert_eq!(out, "first\nkernlab-ops 5x\nx=1 pwd=/\n", "{sh}");
            assert_eq!(ops.as_deref(), Some("12\n"), "{sh}");
            // The workload's own exit status survives the filter, also `exit`.
            let (rc, out, ops) = run_filtered(sh, path, "echo kernlab-ops 3\necho bye\nfalse\n");
            assert_eq!((rc, out.as_str(), ops.as_deref()), (1, "bye\n", Some("3\n")), "{sh}");
            let (rc, _, ops) = run_filtered(sh, path, "exit 7\n");
            assert_eq!((rc, ops), (7, None), "{sh}");
        }
    }

    #[test]
    fn churn_command_line_per_kind() {
        let w = |kind, fs, write| lab::Workload {
            churn: Some(lab::Churn { kind, fs, rate: 500, write, ..Default::default() }),
            commands: vec![],
            duration: Duration::from_secs(30),
            ops: None,
        };
        let limit = Duration::from_secs(30);
        let files = workload_commands(&w(lab::ChurnKind::Files, lab::ChurnFs::Tmpfs, 4096), limit);
        assert_eq!(
            files,
            [
                "mkdir -p /mnt/churn && mount -t tmpfs -o nr_inodes=0,mode=1777 kernlab-churn /mnt/churn || exit 90",
                "churn -d /mnt/churn -c /run/kernlab-ops -t 45 -r 500 -w 4096"
            ]
        );
        // Sockets need no file system: no mount, no -d.
        let sockets = workload_commands(&w(lab::ChurnKind::Sockets, lab::ChurnFs::Tmpfs, 0), limit);
        assert_eq!(sockets, ["churn -k sockets -c /run/kernlab-ops -t 45 -r 500"]);
        let mixed = workload_commands(&w(lab::ChurnKind::Mixed, lab::ChurnFs::Ext4, 0), limit);
        assert_eq!(mixed.len(), 2);
        assert!(mixed[0].contains("findfs LABEL=kernlab-churn"), "{mixed:?}");
        assert_eq!(mixed[1], "churn -k mixed -d /mnt/churn -c /run/kernlab-ops -t 45 -r 500");
        let mut heavy = w(lab::ChurnKind::Mixed, lab::ChurnFs::Tmpfs, 0);
        heavy.churn.as_mut().unwrap().sockets = 90;
        assert_eq!(workload_commands(&heavy, limit)[1], "churn -k mixed -m 90 -d /mnt/churn -c /run/kernlab-ops -t 45 -r 500");
    }
}
