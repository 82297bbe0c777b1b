//! What kernlab shows a person and what it prints for a script. The output
//! mode is decided once per process from the flags and the environment
//! ([`Output::decide`], a pure function): progress bars only on a terminal
//! outside CI, colour only on a terminal without `NO_COLOR`, and with
//! `--message-format json` nothing on stdout but JSON lines. Every line
//! kernlab writes to stderr (its own, and `tracing`'s through
//! [`StderrWriter`]) goes through the bars' `suspend`, so a log line and a
//! redrawn bar never tear each other.

pub mod columns;

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How this process talks: decided once, read everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Output {
    /// Progress bars on stderr: a terminal, not CI, not `TERM=dumb`, not `-q`.
    pub progress: bool,
    /// ANSI colour on stderr: a terminal and no `NO_COLOR`.
    pub color: bool,
    /// `-q`: warnings and errors only.
    pub quiet: bool,
    /// `-v` count: 1 shows every sample and debug logs, 2 trace logs.
    pub verbose: u8,
    /// `--message-format json`: events as JSON lines on stdout, and nothing
    /// else there (the human summary goes to stderr).
    pub json: bool,
    /// `--color always`: colour on stdout too, terminal or not.
    pub color_always: bool,
}

/// `--color`: `auto` (a terminal without `NO_COLOR`), `always`, `never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

impl Output {
    /// The mode from the flags, the environment (`get`) and whether stderr
    /// is a terminal. `NO_COLOR` counts when set to anything but the empty
    /// string (no-color.org); `CI` when set at all, as every CI engine does.
    pub fn decide(quiet: bool, verbose: u8, json: bool, stderr_tty: bool, get: impl Fn(&str) -> Option<String>) -> Output {
        let ci = get("CI").is_some();
        let dumb = get("TERM").is_some_and(|t| t == "dumb");
        let no_color = get("NO_COLOR").is_some_and(|v| !v.is_empty());
        Output {
            progress: stderr_tty && !ci && !dumb && !quiet,
            color: stderr_tty && !no_color && !dumb,
            quiet,
            verbose,
            json,
            color_always: false,
        }
    }

    /// `--color`: `always` and `never` override the terminal test and
    /// `NO_COLOR` (an explicit flag wins over the environment, as in
    /// cargo and git); `auto` keeps what [`Output::decide`] chose.
    pub fn with_color(mut self, choice: ColorChoice) -> Output {
        match choice {
            ColorChoice::Auto => {}
            ColorChoice::Always => (self.color, self.color_always) = (true, true),
            ColorChoice::Never => (self.color, self.color_always) = (false, false),
        }
        self
    }

    /// The `tracing` filter when `RUST_LOG` is not set.
    pub fn log_level(&self) -> &'static str {
        match (self.quiet, self.verbose) {
            (true, _) => "warn",
            (false, 0) => "info",
            (false, 1) => "debug",
            (false, _) => "trace",
        }
    }
}

static OUTPUT: OnceLock<Output> = OnceLock::new();
static MULTI: OnceLock<MultiProgress> = OnceLock::new();
/// Serializes whole lines on stdout, so JSON lines from concurrent runs
/// never interleave.
static STDOUT: Mutex<()> = Mutex::new(());

/// Sets the process's output mode (first call wins) and colour.
pub fn init(o: Output) {
    let _ = OUTPUT.set(o);
    console::set_colors_enabled_stderr(o.color);
    console::set_colors_enabled(o.color && (o.color_always || std::io::stdout().is_terminal()));
}

/// The process's output mode; without [`init`] (library use, unit tests):
/// plain lines, no bars, no colour.
pub fn get() -> Output {
    OUTPUT.get().copied().unwrap_or_default()
}

/// Whether stderr is a terminal (for [`Output::decide`]).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

fn multi() -> &'static MultiProgress {
    MULTI.get_or_init(|| {
        let target = if get().progress { ProgressDrawTarget::stderr_with_hz(10) } else { ProgressDrawTarget::hidden() };
        MultiProgress::with_draw_target(target)
    })
}

/// Runs `f` with the bars cleared, and redraws them after.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    match MULTI.get() {
        Some(m) => m.suspend(f),
        None => f(),
    }
}

/// One line on stderr, above the bars.
pub fn eprintln(line: &str) {
    suspend(|| {
        let mut e = std::io::stderr().lock();
        let _ = writeln!(e, "{line}");
        let _ = e.flush();
    });
}

/// Text meant for a person (a summary, a table): on stdout, except in JSON
/// mode, where stdout is the scripts' and it goes to stderr.
pub fn human(text: &str) {
    if get().json {
        suspend(|| {
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        });
    } else {
        let _g = STDOUT.lock().unwrap_or_else(|e| e.into_inner());
        suspend(|| {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(text.as_bytes());
            let _ = o.flush();
        });
    }
}

/// One JSON line on stdout, whole, flushed.
pub fn json_line(line: &str) {
    let _g = STDOUT.lock().unwrap_or_else(|e| e.into_inner());
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

/// `tracing`'s writer: each formatted event is written to stderr with the
/// bars suspended (the fmt layer writes one event in one `write_all`).
#[derive(Clone, Copy, Default)]
pub struct StderrWriter;

impl Write for StderrWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        suspend(|| std::io::stderr().lock().write_all(buf))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrWriter {
    type Writer = StderrWriter;
    fn make_writer(&'a self) -> Self::Writer {
        StderrWriter
    }
}

/// A progress line, or nothing when the output has no bars. Cleared when
/// dropped, so a step that fails leaves no stale bar behind.
#[derive(Default)]
pub struct Bar(Option<ProgressBar>);

const TICKS: &str = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ";

impl Bar {
    /// A spinner with elapsed time: `⠋ prefix  message [12s]`.
    pub fn spinner(prefix: &str, message: &str) -> Bar {
        if !get().progress {
            return Bar(None);
        }
        let pb = multi().add(ProgressBar::new_spinner());
        pb.set_style(ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg} [{elapsed}]").expect("template").tick_chars(TICKS));
        pb.set_prefix(prefix.to_string());
        pb.set_message(message.to_string());
        pb.enable_steady_tick(Duration::from_millis(120));
        Bar(Some(pb))
    }

    /// A byte counter against `total` (a spinner with a byte count when
    /// the total is unknown).
    pub fn bytes(prefix: &str, message: &str, total: Option<u64>) -> Bar {
        if !get().progress {
            return Bar(None);
        }
        let pb = multi().add(total.map(ProgressBar::new).unwrap_or_else(ProgressBar::no_length));
        let template = if total.is_some() {
            "{spinner} {prefix:.bold} {msg} [{bar:20}] {bytes}/{total_bytes} {bytes_per_sec} [{elapsed}]"
        } else {
            "{spinner} {prefix:.bold} {msg} {bytes} {bytes_per_sec} [{elapsed}]"
        };
        pb.set_style(ProgressStyle::with_template(template).expect("template").tick_chars(TICKS).progress_chars("=> "));
        pb.set_prefix(prefix.to_string());
        pb.set_message(message.to_string());
        pb.enable_steady_tick(Duration::from_millis(120));
        Bar(Some(pb))
    }

    pub fn is_shown(&self) -> bool {
        self.0.is_some()
    }

    pub fn message(&self, m: impl Into<String>) {
        if let Some(pb) = &self.0 {
            pb.set_message(m.into());
        }
    }

    /// Turns the line into a bar of `total` steps of `unit` (the workload's
    /// seconds), keeping its prefix.
    pub fn steps(&self, total: u64, unit: &str) {
        if let Some(pb) = &self.0 {
            pb.set_length(total);
            pb.set_position(0);
            let t = format!("{{spinner}} {{prefix:.bold}} [{{bar:20}}] {{pos}}/{{len}} {unit} {{wide_msg}} [{{elapsed}}]");
            pb.set_style(ProgressStyle::with_template(&t).expect("template").tick_chars(TICKS).progress_chars("=> "));
        }
    }

    /// Back to a spinner after [`Bar::steps`].
    pub fn spin(&self) {
        if let Some(pb) = &self.0 {
            pb.set_style(ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg} [{elapsed}]").expect("template").tick_chars(TICKS));
        }
    }

    pub fn position(&self, n: u64) {
        if let Some(pb) = &self.0 {
            pb.set_position(match pb.length() {
                Some(len) if len > 0 => n.min(len),
                _ => n,
            });
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(pb) = self.0.take() {
            pb.finish_and_clear();
            if let Some(m) = MULTI.get() {
                m.remove(&pb);
            }
        }
    }
}

/// Runs `f` (a download or an extraction into `dir`) while the bar follows
/// the bytes under `dir`; without a bar, just runs `f`.
pub fn follow_bytes<T: Send>(bar: &Bar, dir: &Path, f: impl FnOnce() -> T + Send) -> T {
    if !bar.is_shown() {
        return f();
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                bar.position(crate::util::fsx::dir_bytes(dir));
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        let r = f();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = watcher.join();
        r
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(a, _)| *a == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn bars_only_on_a_terminal_outside_ci() {
        let o = Output::decide(false, 0, false, true, env(&[("TERM", "xterm")]));
        assert!(o.progress && o.color);
        // A pipe: neither.
        let o = Output::decide(false, 0, false, false, env(&[]));
        assert!(!o.progress && !o.color);
        // CI with a pseudo-terminal: no bars (logs are kept as text), colour stays.
        let o = Output::decide(false, 0, false, true, env(&[("CI", "true")]));
        assert!(!o.progress && o.color);
        // NO_COLOR: bars yes, colour no; an empty NO_COLOR does not count.
        let o = Output::decide(false, 0, false, true, env(&[("NO_COLOR", "1")]));
        assert!(o.progress && !o.color);
        assert!(Output::decide(false, 0, false, true, env(&[("NO_COLOR", "")])).color);
        assert!(!Output::decide(false, 0, false, true, env(&[("TERM", "dumb")])).progress);
        // -q: errors only, no bars.
        let o = Output::decide(true, 0, false, true, env(&[]));
        assert!(!o.progress && o.log_level() == "warn");
    }

    #[test]
    fn verbosity_sets_the_default_log_level() {
        // --color: always and never win over the terminal and NO_COLOR.
        let piped = Output::decide(false, 0, false, false, env(&[("NO_COLOR", "1")]));
        assert!(!piped.color);
        assert!(piped.with_color(ColorChoice::Always).color && piped.with_color(ColorChoice::Always).color_always);
        assert!(!Output::decide(false, 0, false, true, env(&[])).with_color(ColorChoice::Never).color);
        assert_eq!(piped.with_color(ColorChoice::Auto), piped);
        let lvl = |v| Output::decide(false, v, false, false, env(&[])).log_level();
        assert_eq!([lvl(0), lvl(1), lvl(2), lvl(5)], ["info", "debug", "trace", "trace"]);
    }

    #[test]
    fn without_bars_steps_are_inert_and_follow_just_runs() {
        let b = Bar::spinner("x", "y");
        assert!(!b.is_shown());
        b.steps(10, "s");
        b.position(3);
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), b"12345").unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/b"), b"123").unwrap();
        assert_eq!(follow_bytes(&b, d.path(), || 7), 7);
        assert_eq!(crate::util::fsx::dir_bytes(d.path()), 8);
    }
}
