//! `kernlab shell LAB [-- CMD...]`: the lab's guest up as a run has it
//! (setup run, modules loaded), then an interactive SSH shell or one
//! command; the guest stopped after.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use crate::outcome::event::Events;
use crate::run::shell::{ShellArm, ShellOptions};

pub struct ShellArgs {
    pub lab: PathBuf,
    pub kernel: Option<String>,
    pub arm: Option<ShellArm>,
    pub command: Vec<String>,
    pub out: Option<PathBuf>,
    pub kernel_dirs: Vec<PathBuf>,
    pub quiet: bool,
    pub json: bool,
}

pub fn shell(a: ShellArgs) -> i32 {
    // The terminal's event lines only: stdout is the command's (or, with
    // --json, the one result object).
    let events = Events::new(std::time::Instant::now());
    events.add(Box::new(crate::report::terminal::Terminal::new(a.quiet)));
    let interactive = a.command.is_empty();
    let opts = ShellOptions { lab_file: a.lab, kernel_dirs: a.kernel_dirs, kernel: a.kernel, arm: a.arm, command: a.command.clone(), out: a.out, capture: a.json && !interactive };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let end = rt.block_on(async move {
        let cancel = CancellationToken::new();
        super::spawn_signal_handler(cancel.clone());
        crate::run::shell::shell(opts, &events, cancel).await
    });
    if let Some(e) = &end.error {
        crate::ui::eprintln(&format!("kernlab: {e}"));
    }
    if a.json {
        let v = serde_json::json!({
            "lab": end.lab,
            "kernel": end.kernel,
            "arm": end.arm,
            "command": if interactive { serde_json::Value::Null } else { serde_json::json!(a.command) },
            "exit_code": end.exit_code,
            "status": end.status,
            "stdout": end.stdout,
            "stderr": end.stderr,
            "error": end.error,
            "dir": end.dir,
        });
        crate::ui::json_line(&v.to_string());
    }
    end.exit_code
}
