//! The `kernlab` command line. Exit codes are in `kernlab::exit` and docs/exit-codes.md.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use kernlab::cli::*;
use kernlab::{exit, lab};

#[derive(Parser)]
#[command(name = "kernlab", version, about = "Kernel test labs in QEMU: boot, load, stress, sample, decide")]
struct Cli {
    /// Less output on the terminal: warnings and errors only, no progress.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More output: `-v` every sample and debug logs, `-vv` trace logs
    /// (`RUST_LOG` overrides the log level).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// `json`: for `run` and `matrix`, the events as JSON lines on stdout
    /// (schema `kernlab.event/2`, docs/events.md) and nothing else there;
    /// every other command that prints a result (kernel, validate, doctor,
    /// new, matrix --list, merge, report, triage, calibrate, bisect, bench,
    /// image, shell -- CMD) prints it as one JSON document on stdout, its
    /// human text on stderr (docs/commands.md#json-results).
    #[arg(long, global = true, value_enum, default_value_t = MessageFormat::Human)]
    message_format: MessageFormat,
    /// The same as `--message-format json`.
    #[arg(long, global = true)]
    json: bool,
    /// Leave finished run directories group-readable (directories 0750,
    /// files 0640; SSH keys stay 0600) instead of private (0700/0600).
    #[arg(long, global = true)]
    share: bool,
    /// Colour on the terminal: `auto` (a terminal, and `NO_COLOR` unset or
    /// empty), `always` (also when piped; wins over `NO_COLOR`), `never`.
    #[arg(long, global = true, value_enum, default_value_t = ColorArg::Auto)]
    color: ColorArg,
    /// Extra folders of kernel descriptors (`NAME.yaml`), searched before `kernels/`.
    #[arg(long = "kernels", global = true, value_name = "DIR")]
    kernel_dirs: Vec<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ColorArg {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ArmArg {
    Module,
    Baseline,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MessageFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a lab: boot its kernel, run setup and workload, sample, report.
    /// Writes the run directory (manifest.json, events.jsonl, samples/,
    /// report.json, report.html; an A/B lab: module/ and baseline/ and its
    /// own report.json; docs/run-directory.md) and prints a summary. Exit 0:
    /// done, the verdict as expected; 100: the leak expectation failed;
    /// 102: INCONCLUSIVE; 101: infrastructure; 2: usage or lab error;
    /// 130: interrupted (docs/exit-codes.md).
    Run {
        /// The lab file (YAML).
        lab: PathBuf,
        /// The run directory to create (must not exist or be empty). Default:
        /// runs/<lab>/<UTC timestamp>-<kernel>.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Run on this kernel (a descriptor name, see `kernlab kernel list`)
        /// instead of the lab's own `kernel`.
        #[arg(long, value_name = "NAME")]
        kernel: Option<String>,
        /// Run the workload this long instead of the lab's `workload.duration`
        /// (a soak: `--duration 2h`).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        duration: Option<std::time::Duration>,
        /// After a LEAK, name the code with a second, instrumented run
        /// (`auto`), or stop at the verdict and its kind (`off`). Default: the
        /// lab's `leak.attribute`.
        #[arg(long, value_name = "auto|off", value_parser = parse_attribute)]
        attribute: Option<lab::Attribute>,
    },
    /// Run every (lab, kernel) cell of a matrix file, in parallel. Writes
    /// the matrix directory (cells/<lab>@<kernel>/ run directories,
    /// report.json, junit.xml, ktap.txt, report.html) and prints the
    /// kernels × labs table. Exit: the worst cell's (docs/ci.md#exit-codes).
    Matrix {
        /// The matrix file (YAML: name, labs, kernels, jobs).
        file: PathBuf,
        /// Print the cells (after partitioning) and exit.
        #[arg(long)]
        list: bool,
        /// Run one shard: hash:M/N or count:M/N (default: from CI_NODE_INDEX/CI_NODE_TOTAL,
        /// or JOB_COMPLETION_INDEX with KERNLAB_SHARDS, when set).
        #[arg(long)]
        partition: Option<String>,
        /// VMs at once (default: the matrix file's `jobs`, else from cores and memory).
        #[arg(long)]
        jobs: Option<usize>,
        /// The matrix directory (default: runs/matrix/<name>/<UTC timestamp>).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Join the matrix reports of several shards into one (report.json,
    /// junit.xml, ktap.txt, the table), written under --out. Exit: the
    /// merged matrix's (docs/ci.md#exit-codes); 2 on a directory that is no
    /// matrix.
    Merge {
        /// Matrix directories (each with a report.json).
        dirs: Vec<PathBuf>,
        /// Where the merged report goes (created).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Check lab files without fetching or booting anything: the schema,
    /// every rule, and the files they name (module trees, dkms.conf,
    /// patches, prebuilt .ko, payload). One file: print it with every
    /// default filled in. Several: one line each (`ok: FILE` or the error).
    /// Exit 0 when all are valid, else 2.
    Validate {
        #[arg(required = true, num_args = 1..)]
        labs: Vec<PathBuf>,
    },
    /// Write an A/B leak lab for a module tree: detects a dkms.conf (its
    /// modules in load order, the kernels it builds for) or a Kbuild tree
    /// (its `obj-m` modules), lists the tree's module parameters, picks the
    /// kernel, and comments every field (docs/your-module.md). Fetches and
    /// boots nothing. Exit 0: written; 2: refused (the file exists, not a
    /// module tree, no kernel the tree builds for).
    New {
        /// The lab file to write (refused when it exists, unless --force).
        lab: PathBuf,
        /// The module's source tree (a DKMS package or a Kbuild tree);
        /// written into the lab relative to the lab file's directory.
        #[arg(long, value_name = "DIR")]
        module: PathBuf,
        /// The kernel to boot (a descriptor name). Default: kernlab's
        /// default kernel, or the newest one the dkms.conf builds for.
        #[arg(long, value_name = "NAME")]
        kernel: Option<String>,
        /// The churn workload: what one operation is.
        #[arg(long, default_value = "files", value_parser = ["files", "sockets", "pipes", "mixed"])]
        workload: String,
        /// Overwrite the lab file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Kernels: list the descriptors, fetch one into the cache
    /// (~/.cache/kernlab, or $KERNLAB_CACHE). Exit 0; 2: unknown kernel;
    /// 101: the fetch failed.
    #[command(subcommand)]
    Kernel(KernelCommand),
    /// Guest images: `kernlab image debian --out DISK.qcow2` writes the
    /// Debian disk kernlab builds for a kernel as a standalone qcow2. Exit
    /// 0; 2: usage; 101: the build failed.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Read a vmcore from anywhere (a customer's) with `crash` or drgn:
    /// memory summary and the largest slab caches. Writes crash.txt (or
    /// drgn.txt) and triage.json under --out and prints the summary. Exit
    /// 0: read; 2: usage (no such file or kernel); 101: the engine or the
    /// kernel's debug package failed.
    Triage {
        vmcore: PathBuf,
        /// The kernel the vmcore came from (a descriptor name).
        #[arg(long)]
        kernel: String,
        /// Where to write crash.txt and triage.json (created; default: a
        /// new triage-<UTC timestamp> directory here).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Which engine reads it: `crash`, `drgn`, or `auto` (crash when
        /// the dump is of the host's architecture, else drgn).
        #[arg(long, value_enum, default_value = "auto")]
        engine: kernlab::triage::EngineChoice,
    },
    /// Rebuild report.html of a run, A/B or matrix directory from its files
    /// (samples, events, reports) and print its summary again. Writes
    /// report.html in the directory (and its arms' or cells'), or with
    /// --out only under DIR, leaving the run untouched. Exit 0; 2 on a
    /// directory that is none of these; 101 when a file cannot be read or
    /// written.
    Report {
        /// A run directory (with report.json, manifest.json or events.jsonl),
        /// an A/B lab's directory, or a matrix directory.
        dir: PathBuf,
        /// Write the pages here (same layout: report.html, module/,
        /// baseline/, cells/<id>/) and only read the run directory.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Check that this machine can run labs: QEMU, the accelerator (and why
    /// not KVM), apt and the kernel cache, the module toolchain, the image's
    /// and the dumps' tools, disk space. Prints one line per check (one
    /// JSON object with --message-format json) and writes nothing. Exits 0
    /// when the lab (default: labs/leak-lab.yaml) can run here, 101 when
    /// it cannot.
    Doctor {
        /// The lab to check for (default: labs/leak-lab.yaml, built in).
        #[arg(long, value_name = "FILE")]
        lab: Option<PathBuf>,
    },
    /// Measure a leak lab's A/A noise on the real guest: N runs with both
    /// arms alike, per-cache noise, false LEAKs, the detectable leak, and
    /// where each verdict was decided. Writes run-NN/ run directories and
    /// calibration.json under --out. Exit 0: no LEAK; 100: a LEAK (false,
    /// when the arms are alike); 101: a run failed; 2: usage.
    Calibrate {
        /// The leak lab (YAML).
        lab: PathBuf,
        /// How many A/A runs.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// What both arms run: `baseline` (the lab's baseline twice),
        /// `module` (its module arm twice) or `lab` (the lab as written,
        /// for a module known not to leak).
        #[arg(long, default_value = "baseline")]
        arms: String,
        /// Run each workload this long instead of the lab's duration.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        duration: Option<std::time::Duration>,
        /// Where the runs and calibration.json go. Default:
        /// runs/<lab>-calibration/<UTC timestamp>.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Run every arm its whole duration and decide once at the end with
        /// all of α (`leak.stop_early: false`): the long A/A series a
        /// false-LEAK claim for long runs, or the A/A corpus, needs.
        #[arg(long)]
        full_length: bool,
    },
    /// Find the first bad module revision (`--source DIR --good REV --bad REV`)
    /// or kernel (`--kernel-pattern PATTERN --good NAME --bad NAME`), with the
    /// leak lab's verdict against `leak.expect` as the oracle (docs/bisect.md).
    /// Exit 0: found; 102: skipped steps hide it; 2: usage; 101: infrastructure.
    Bisect {
        /// The leak lab (YAML, with a `leak:` section).
        lab: PathBuf,
        /// The git work tree of one of the lab's module sources (the module
        /// directory itself, or a repository holding it). Never written:
        /// each step exports its revision into a scratch directory.
        #[arg(long, value_name = "DIR", conflicts_with = "kernel_pattern", required_unless_present = "kernel_pattern")]
        source: Option<PathBuf>,
        /// Bisect over the kernels this pattern matches (descriptor names,
        /// `*` and `?`; or `debian:GLOB` over this machine's apt sources),
        /// in Debian version order.
        #[arg(long, value_name = "PATTERN")]
        kernel_pattern: Option<String>,
        /// The known-good revision or kernel (the lab's expectation holds).
        #[arg(long, value_name = "REV")]
        good: String,
        /// The known-bad revision or kernel (it does not).
        #[arg(long, value_name = "REV")]
        bad: String,
        /// Where the steps' runs and bisect.json go (must not exist or be
        /// empty). Default: runs/<lab>-bisect/<UTC timestamp>.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Benchmarks (not tests): timings measured on this machine, printed
    /// (`bench boot` also as a table); nothing else is written but their
    /// own run directories. Exit 0, or 101 when a boot fails.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Boot a lab's guest as `kernlab run` does (its kernel, image and
    /// modules built, the setup run, the modules loaded; an A/B leak lab's
    /// module arm unless --arm baseline) and open an interactive SSH shell
    /// in it, or run `-- CMD...` there. The guest is stopped when the shell
    /// or command ends, Ctrl-C included. Writes a private temporary run
    /// directory (removed at the end; kept with --out), and the caches a
    /// run fills. Exit: the shell's or the command's exit status (255: ssh
    /// itself failed); 2: usage or lab error, before any boot; 101:
    /// infrastructure (the guest did not come up, or died); 130:
    /// interrupted.
    Shell {
        /// The lab file (YAML).
        lab: PathBuf,
        /// Boot this kernel (a descriptor name) instead of the lab's `kernel`.
        #[arg(long, value_name = "NAME")]
        kernel: Option<String>,
        /// Which arm of an A/B leak lab: `module` (the lab as written, the
        /// default) or `baseline`.
        #[arg(long, value_enum)]
        arm: Option<ArmArg>,
        /// Keep the run directory (console.log, keys, manifest.json) here
        /// (must not exist or be empty) instead of a temporary one.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// The command to run in the guest instead of a shell (after `--`;
        /// each word is passed as one argument: `-- sh -c 'A | B'` for a
        /// pipeline).
        #[arg(last = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Print a shell completion script on stdout, e.g.
    /// `kernlab completions bash > /etc/bash_completion.d/kernlab`.
    /// Writes nothing else; exit 0.
    Completions {
        shell: clap_complete::Shell,
    },
    /// Write the JSON Schema of every record kind (report.json, manifest.json,
    /// events, …), generated from kernlab's types, one file per schema
    /// identifier (docs/schemas/README.md). For maintainers: `kernlab schemas
    /// --out docs/schemas` after changing a record type. Exit 0; 101 when a
    /// file cannot be written.
    #[command(hide = true)]
    Schemas {
        /// The directory to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Replay a finished leak run's looks: the verdict at each, and where it was decided.
    Samples {
        /// The run directory of an A/B leak lab (with module/ and baseline/).
        run: PathBuf,
    },
    /// Boot floor vs. first SSH command per kernel and boot profile, median of N;
    /// with --boots, a hang check.
    Boot {
        /// Kernels to measure, of any architecture (default: the two
        /// 6.1.0-54 amd64 kernels).
        #[arg(long = "kernel")]
        kernels: Vec<String>,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Profiles: pc-bzimage, pc-vmlinux, microvm-vmlinux (x86 kernels),
        /// virt (arm64 kernels); default: every one that boots each kernel.
        #[arg(long = "profile")]
        profiles: Vec<String>,
        /// Guest images: minimal, debian, or both as `minimal,debian`
        /// (default: minimal; a Debian boot takes about a minute under TCG,
        /// and boots on the pc profiles only).
        #[arg(long = "image", value_delimiter = ',')]
        images: Vec<String>,
        /// Instead of timings, boot each kernel and profile N times and
        /// count the hangs (boots that needed their retry) and failures.
        #[arg(long)]
        boots: Option<usize>,
        /// Time the boots without the fast-boot command-line flags (`vm.fast_boot: false`).
        #[arg(long)]
        no_fast_boot: bool,
        /// With --boots: restore the snapshot each time (a first run saves it)
        /// instead of booting cold.
        #[arg(long, requires = "boots")]
        warm: bool,
    },
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Build (or find in the cache) the Debian guest disk for a kernel and
    /// write it as a qcow2 (whole-disk ext4, label kernlab-root, no bootloader).
    Debian {
        /// The kernel whose modules, initramfs and kdump initrd go in (a descriptor name).
        #[arg(long, default_value = kernlab::lab::DEFAULT_KERNEL)]
        kernel: String,
        /// Extra packages (repeatable), e.g. `--package cloud-init`.
        #[arg(long, value_name = "PKG")]
        package: Vec<String>,
        /// The qcow2 to write (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum KernelCommand {
    /// List known kernels and whether each is in the cache.
    List,
    /// Fetch a kernel into the cache (no-op when it is there).
    Fetch { name: String },
}

fn main() -> ExitCode {
    quiet_on_a_closed_pipe();
    let cli = Cli::parse();
    let json = cli.message_format == MessageFormat::Json || cli.json;
    let color = match cli.color {
        ColorArg::Auto => kernlab::ui::ColorChoice::Auto,
        ColorArg::Always => kernlab::ui::ColorChoice::Always,
        ColorArg::Never => kernlab::ui::ColorChoice::Never,
    };
    let output = kernlab::ui::Output::decide(cli.quiet, cli.verbose, json, kernlab::ui::stderr_is_terminal(), |k| std::env::var(k).ok()).with_color(color);
    kernlab::ui::init(output);
    kernlab::util::fsx::set_share(cli.share);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(output.log_level())),
        )
        .with_writer(kernlab::ui::StderrWriter)
        .with_ansi(output.color)
        .with_target(false)
        .without_time()
        .init();
    // The one event stream, every output a reporter on it; `kernlab run`
    // also prints its summary.
    // Under --json, `run` and `matrix` stream their events on stdout; every
    // other command prints one JSON document there, its result.
    let events = outputs(cli.quiet, matches!(cli.command, Command::Run { .. }), matches!(cli.command, Command::Run { .. } | Command::Matrix { .. }));
    let code = match cli.command {
        Command::Run { lab, out, kernel, duration, attribute } => run_lab(lab, out, kernel, duration, attribute, cli.kernel_dirs, &events),
        Command::Validate { labs } => validate(&labs, json),
        Command::New { lab, module, kernel, workload, force } => new(NewArgs { lab, module, kernel, workload, force, json, kernel_dirs: cli.kernel_dirs }),
        Command::Kernel(KernelCommand::List) => kernel_list(&cli.kernel_dirs, json),
        Command::Kernel(KernelCommand::Fetch { name }) => kernel_fetch(&name, &cli.kernel_dirs, json),
        Command::Bench(BenchCommand::Boot { kernels, runs, profiles, images, boots, no_fast_boot, warm }) => {
            bench_boot(BootArgs { kernels, runs, images, profiles, boots, fast_boot: !no_fast_boot, warm }, &cli.kernel_dirs)
        }
        Command::Bench(BenchCommand::Samples { run }) => bench_samples(&run),
        Command::Shell { lab, kernel, arm, out, command } => {
            let arm = arm.map(|a| match a {
                ArmArg::Module => kernlab::run::shell::ShellArm::Module,
                ArmArg::Baseline => kernlab::run::shell::ShellArm::Baseline,
            });
            shell(ShellArgs { lab, kernel, arm, command, out, kernel_dirs: cli.kernel_dirs, quiet: cli.quiet, json })
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "kernlab", &mut std::io::stdout());
            exit::OK
        }
        Command::Schemas { out } => match kernlab::outcome::schemas::write_all(&out) {
            Ok(written) => {
                for p in written {
                    println!("{}", p.display());
                }
                exit::OK
            }
            Err(e) => {
                eprintln!("kernlab: {e}");
                exit::INFRA
            }
        },
        Command::Matrix { file, list, partition, jobs, out } => matrix(&file, list, partition, jobs, out, &cli.kernel_dirs, &events),
        Command::Doctor { lab } => doctor(lab.as_deref(), json, &cli.kernel_dirs),
        Command::Merge { dirs, out } => merge(&dirs, &out, &events),
        Command::Triage { vmcore, kernel, out, engine } => triage(&vmcore, &kernel, out, engine, &cli.kernel_dirs, json),
        Command::Report { dir, out } => report(&dir, out.as_deref(), json),
        Command::Image(ImageCommand::Debian { kernel, package, out }) => image_debian(&kernel, package, &out, &cli.kernel_dirs, json),
        Command::Bisect { lab, source, kernel_pattern, good, bad, out } => {
            bisect(BisectArgs { lab, source, kernel_pattern, good, bad, out, kernel_dirs: cli.kernel_dirs, quiet: cli.quiet })
        }
        Command::Calibrate { lab, runs, arms, duration, out, full_length } => {
            calibrate(CalibrateArgs { lab_file: lab, runs, arms, duration, full_length, out, kernel_dirs: cli.kernel_dirs }, &events)
        }
    };
    ExitCode::from(code as u8)
}

/// `kernlab kernel list | head -1`: a reader that stops early is no
/// error. Rust ignores SIGPIPE (so kernlab's sockets to its guests fail
/// with EPIPE rather than kill it), and `println!` then panics on the
/// closed stdout; that panic becomes a quiet exit 141 (128 + SIGPIPE, what
/// a shell reports for a command a pipe ended). Any VM goes with kernlab
/// (its QEMU dies with its parent).
fn quiet_on_a_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let p = info.payload();
        let msg = p.downcast_ref::<String>().map(String::as_str).or_else(|| p.downcast_ref::<&str>().copied()).unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

/// `kernlab validate`: each file on its own; 2 if any is invalid.
fn validate(labs: &[PathBuf], json: bool) -> i32 {
    let results: Vec<(&PathBuf, Result<lab::Lab, lab::LabError>)> = labs.iter().map(|f| (f, lab::load(f).and_then(|l| l.check_files(f).map(|()| l)))).collect();
    let ok = results.iter().all(|(_, r)| r.is_ok());
    if json {
        let v: Vec<serde_json::Value> = results
            .iter()
            .map(|(f, r)| match r {
                Ok(_) => serde_json::json!({"file": f, "valid": true}),
                Err(e) => serde_json::json!({"file": f, "valid": false, "error": kernlab::util::error_causes(e)}),
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else if let [(_, Ok(l))] = results.as_slice() {
        print!("{}", l.to_yaml());
    } else {
        for (f, r) in &results {
            match r {
                Ok(_) => println!("ok: {}", f.display()),
                Err(e) => eprintln!("kernlab: {}", kernlab::util::error_causes(e)),
            }
        }
    }
    if ok {
        exit::OK
    } else {
        exit::USAGE
    }
}

fn parse_attribute(s: &str) -> Result<lab::Attribute, String> {
    match s {
        "auto" => Ok(lab::Attribute::Auto),
        "off" => Ok(lab::Attribute::Off),
        _ => Err(format!("`{s}`: expected auto or off")),
    }
}

/// The docs cannot drift from the command line: every `kernlab …` command
/// shown in README.md and docs/ names only flags its (sub)command has, and
/// every one without placeholders parses as a whole; the labs they name
/// exist.
#[cfg(test)]
mod docs_drift {
    use super::Cli;
    use clap::{CommandFactory, Parser};

    /// Every `kernlab …` command in a Markdown text: inline code spans
    /// (which may wrap lines) and the lines of fenced blocks; cut at a
    /// comment, a pipe or a redirection.
    fn commands(md: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut fenced = false;
        let mut prose = String::new();
        for line in md.lines() {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                continue;
            }
            if fenced {
                out.extend(from(line));
            } else {
                prose.push_str(line);
                prose.push(' ');
            }
        }
        for (k, span) in prose.split('`').enumerate() {
            if k % 2 == 1 {
                out.extend(from(span));
            }
        }
        out
    }

    fn from(text: &str) -> Option<String> {
        let text = text.replace("cargo run --release -- ", "kernlab ");
        let at = text.find("kernlab ")?;
        if at > 0 && !text[..at].trim_end().ends_with('$') && !text[..at].trim().is_empty() && !text[..at].ends_with(' ') {
            return None;
        }
        let mut cmd = text[at..].to_string();
        // A synopsis line's description follows two spaces.
        for stop in [" #", " |", " >", " &&", ";", " 2>", " <", "  "] {
            if let Some(i) = cmd.find(stop) {
                cmd.truncate(i);
            }
        }
        let cmd = cmd.trim().to_string();
        // A sentence about kernlab, not a command: the word after it is no subcommand.
        let sub = cmd.split_whitespace().nth(1)?;
        Cli::command().get_subcommands().any(|s| s.get_name() == sub).then_some(cmd)
    }

    fn placeholder(tok: &str) -> bool {
        let caps = tok.chars().take_while(|c| c.is_ascii_uppercase()).count();
        caps >= 2 || tok.len() == 1 && caps == 1 || ["[", "]", "|", "…", "...", "<", ">"].iter().any(|p| tok.contains(p))
    }

    fn docs() -> Vec<(String, String)> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = vec![root.join("README.md")];
        let mut pages: Vec<_> = std::fs::read_dir(root.join("docs")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "md")).collect();
        pages.sort();
        files.extend(pages);
        files.into_iter().map(|f| (f.strip_prefix(root).unwrap().display().to_string(), std::fs::read_to_string(&f).unwrap())).collect()
    }

    #[test]
    fn every_command_in_the_docs_uses_real_flags_and_parses() {
        use clap::error::ErrorKind;
        let root = Cli::command();
        let globals: Vec<String> = root.get_arguments().filter_map(|a| a.get_long().map(str::to_string)).collect();
        let (mut seen, mut parsed, mut bad) = (0, 0, Vec::new());
        for (file, text) in docs() {
            let commands = commands(&text);
            // Labs a page makes with `kernlab new` before it uses them.
            let made: Vec<String> = commands.iter().filter_map(|c| c.strip_prefix("kernlab new ")?.split_whitespace().next().map(str::to_string)).collect();
            for cmd in commands {
                seen += 1;
                let toks = shell_words::split(&cmd).unwrap_or_else(|_| cmd.split_whitespace().map(str::to_string).collect());
                // The (sub)command the flags belong to: follow subcommand names.
                let mut at = root.clone();
                let mut flags: Vec<String> = globals.clone();
                for t in &toks[1..] {
                    let Some(s) = at.find_subcommand(t).cloned() else { break };
                    flags.extend(s.get_arguments().filter_map(|a| a.get_long().map(str::to_string)));
                    at = s;
                }
                flags.push("help".into());
                for t in toks.iter().filter(|t| t.starts_with("--")) {
                    let name = t.trim_start_matches('-').split('=').next().unwrap().trim_end_matches([',', '.', ')', ':']);
                    if !name.is_empty() && !flags.iter().any(|f| f == name) {
                        bad.push(format!("{file}: `{cmd}`: no flag --{name} on `kernlab {}`", at.get_name()));
                    }
                }
                if toks.iter().any(|t| placeholder(t)) {
                    continue;
                }
                parsed += 1;
                match Cli::try_parse_from(&toks) {
                    Ok(_) => {}
                    // A mention of a command or a flag in prose ("`kernlab
                    // bisect`", "`kernlab run --kernel`"), not a command line.
                    Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::MissingRequiredArgument | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand) => {}
                    Err(e) if e.kind() == ErrorKind::InvalidValue && toks.last().is_some_and(|t| t.starts_with("--")) => {}
                    Err(e) => bad.push(format!("{file}: `{cmd}` does not parse: {}", e.kind())),
                }
                for t in toks.iter().filter(|t| t.starts_with("labs/") && t.ends_with(".yaml") && !made.contains(t)) {
                    if !std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(t).is_file() {
                        bad.push(format!("{file}: `{cmd}`: {t} does not exist"));
                    }
                }
            }
        }
        assert!(bad.is_empty(), "{} stale command lines:\n{}", bad.len(), bad.join("\n"));
        assert!(seen >= 60 && parsed >= 25, "only {seen} commands found, {parsed} parsed: the extraction is broken");
    }

    #[test]
    fn the_extraction_finds_commands_and_skips_prose() {
        let md = "Run `kernlab run labs/smoke.yaml --out x`.\nkernlab is a tool, `kernlab\nmatrix labs/nightly.yaml --list`\n```\nkernlab validate labs/smoke.yaml   # check\n$ kernlab doctor | jq .\n```\n";
        assert_eq!(commands(md), ["kernlab validate labs/smoke.yaml", "kernlab doctor", "kernlab run labs/smoke.yaml --out x", "kernlab matrix labs/nightly.yaml --list"]);
        assert!(placeholder("LAB") && placeholder("[--out") && placeholder("N") && placeholder("LAB.yaml") && !placeholder("labs/x.yaml") && !placeholder("2h"));
    }
}

/// docs/source-layout.md against the tree: every path it names exists,
/// and every module directory and file under src/ (two levels down) is
/// named, so a new part of the code cannot go unlisted.
#[cfg(test)]
mod source_layout {
    use std::path::Path;

    #[test]
    fn the_source_layout_names_every_module_and_only_real_paths() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let doc = std::fs::read_to_string(root.join("docs/source-layout.md")).unwrap();
        let named: Vec<String> = doc
            .split(|c: char| c.is_whitespace() || "`(),;:".contains(c))
            .filter(|w| w.starts_with("src/"))
            .map(|w| w.trim_end_matches(['.', ']']).to_string())
            .collect();
        let mut wrong = Vec::new();
        for p in &named {
            if !root.join(p).exists() {
                wrong.push(format!("names {p}, which does not exist"));
            }
        }
        // Two levels: src/X and src/X/Y for directories X; files within a
        // named directory count when their name appears anywhere on the page.
        let mut checked = 0;
        for e in std::fs::read_dir(root.join("src")).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let is_dir = p.is_dir();
            checked += 1;
            let listed = |rel: &str| named.iter().any(|n| n.trim_end_matches('/') == rel.trim_end_matches('/'));
            if !listed(&rel) {
                wrong.push(format!("does not name {rel}{}", if is_dir { "/" } else { "" }));
            }
            if is_dir {
                for e in std::fs::read_dir(&p).unwrap() {
                    let q = e.unwrap().path();
                    let name = q.file_name().unwrap().to_string_lossy().to_string();
                    if name == "mod.rs" || name == "tests.rs" || name == "testdata" || name.starts_with('.') {
                        continue;
                    }
                    checked += 1;
                    let sub = q.strip_prefix(root).unwrap().display().to_string();
                    if !listed(&sub) && !doc.contains(&name) && !doc.contains(name.trim_end_matches(".rs")) {
                        wrong.push(format!("does not name {sub}"));
                    }
                }
            }
        }
        assert!(wrong.is_empty(), "docs/source-layout.md is stale:\n{}", wrong.join("\n"));
        assert!(checked >= 60, "only {checked} entries checked");
    }
}
