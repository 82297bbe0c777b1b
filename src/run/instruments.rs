//! Guest scripts an attribution pass adds to an arm (see `ab`): set up
//! before the modules are loaded, collected after the workload, each one's
//! output kept in the arm's `instruments/` directory. An instrument that
//! fails is written down beside the others and the run goes on: the
//! verdict was already decided by the first pass.

use std::time::Duration;

use super::Ctx;
use crate::outcome::event::Event;
use crate::util::fsx;
use super::guest::GuestOps;

/// How long one instrument's script may take in the guest.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// The directory of an arm's instrument outputs.
pub const DIR: &str = "instruments";

/// The scripts of one arm, each `(name, script)`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Instruments {
    /// Run before the modules are loaded (probes, triggers).
    pub setup: Vec<(String, String)>,
    /// Run after the workload; stdout goes to `instruments/NAME.txt`.
    pub collect: Vec<(String, String)>,
}

/// Runs each script; `suffix` names what failed in the error file
/// `instruments/NAME.SUFFIX-error`, and the output of collect scripts is
/// kept in `instruments/NAME.txt`.
async fn each(ctx: &Ctx, guest: &dyn GuestOps, scripts: &[(String, String)], keep_output: bool, suffix: &str) {
    let dir = ctx.dir.join(DIR);
    let _ = crate::util::fsx::private_dir(&dir);
    for (name, script) in scripts {
        let started = std::time::Instant::now();
        let failure = match guest.exec(script, SCRIPT_TIMEOUT).await {
            Ok(out) => {
                if keep_output {
                    let _ = fsx::write_atomic(&dir.join(format!("{name}.txt")), out.stdout.as_bytes());
                }
                (!out.success()).then(|| format!("exited {}: {}", out.status, out.stderr.trim()))
            }
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = &failure {
            let _ = fsx::write_atomic(&dir.join(format!("{name}.{suffix}-error")), why.as_bytes());
        }
        ctx.events.emit(Event::Instrument { name: name.clone(), phase: suffix.into(), ok: failure.is_none(), secs: started.elapsed().as_secs_f64() });
    }
}

pub(super) async fn set_up(ctx: &Ctx, guest: &dyn GuestOps) {
    each(ctx, guest, &ctx.instruments.setup, false, "setup").await;
}

pub(super) async fn collect(ctx: &Ctx, guest: &dyn GuestOps) {
    each(ctx, guest, &ctx.instruments.collect, true, "collect").await;
}
