//! The `kernlab` command line. Exit codes are in `kernlab::exit` and docs/exit-codes.md.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use kernlab::outcome::event::{Event, Events};
use kernlab::{cache::Cache, exit, kernel, lab, run};
use tokio_util::sync::CancellationToken;

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
    /// (schema `kernlab.event/1`, docs/events.md) and nothing else there;
    /// for `doctor`, its checks as one JSON object; for `matrix --list`, the
    /// cells as JSON.
    #[arg(long, global = true, value_enum, default_value_t = MessageFormat::Human)]
    message_format: MessageFormat,
    /// Extra folders of kernel descriptors (`NAME.yaml`), searched before `kernels/`.
    #[arg(long = "kernels", global = true, value_name = "DIR")]
    kernel_dirs: Vec<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MessageFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a lab: boot its kernel, run setup and workload, sample, report.
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
    },
    /// Run every (lab, kernel) cell of a matrix file, in parallel.
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
    /// junit.xml, ktap.txt, the table).
    Merge {
        /// Matrix directories (each with a report.json).
        dirs: Vec<PathBuf>,
        /// Where the merged report goes (created).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Check a lab file and print it with every default filled in.
    Validate { lab: PathBuf },
    /// Kernels: list the descriptors, fetch one into the cache.
    #[command(subcommand)]
    Kernel(KernelCommand),
    /// Read a vmcore from anywhere (a customer's) with `crash`: memory
    /// summary and the largest slab caches.
    Triage {
        vmcore: PathBuf,
        /// The kernel the vmcore came from (a descriptor name).
        #[arg(long)]
        kernel: String,
        /// Where to write crash.txt and triage.json (created; default: a
        /// new triage-<UTC timestamp> directory here).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Rebuild report.html of a run, A/B or matrix directory from its files
    /// (samples, events, reports) and print its summary again.
    Report {
        /// A run directory (with report.json, manifest.json or events.jsonl),
        /// an A/B lab's directory, or a matrix directory.
        dir: PathBuf,
    },
    /// Check that this machine can run labs: QEMU, the accelerator (and why
    /// not KVM), apt and the kernel cache, the module toolchain, the image's
    /// and the dumps' tools, disk space. Exits 101 when the lab (default:
    /// labs/leak-lab.yaml) cannot run here.
    Doctor {
        /// The lab to check for (default: labs/leak-lab.yaml, built in).
        #[arg(long, value_name = "FILE")]
        lab: Option<PathBuf>,
    },
    /// Measure a leak lab's A/A noise on the real guest: N runs with both
    /// arms alike, per-cache noise, false LEAKs, the detectable leak.
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
    },
    /// Benchmarks (not tests): timings measured on this machine.
    #[command(subcommand)]
    Bench(BenchCommand),
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
        /// Kernels to measure (default: the two 6.1.0-54 kernels).
        #[arg(long = "kernel")]
        kernels: Vec<String>,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Profiles: pc-bzimage, pc-vmlinux, microvm-vmlinux (default: all three).
        #[arg(long = "profile")]
        profiles: Vec<String>,
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
enum KernelCommand {
    /// List known kernels and whether each is in the cache.
    List,
    /// Fetch a kernel into the cache (no-op when it is there).
    Fetch { name: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.message_format == MessageFormat::Json;
    let output = kernlab::ui::Output::decide(cli.quiet, cli.verbose, json, kernlab::ui::stderr_is_terminal(), |k| std::env::var(k).ok());
    kernlab::ui::init(output);
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
    let code = match cli.command {
        Command::Run { lab, out, kernel, duration } => run_lab(lab, out, kernel, duration, cli.kernel_dirs, cli.quiet),
        Command::Validate { lab } => match lab::load(&lab) {
            Ok(l) => {
                print!("{}", l.to_yaml());
                exit::OK
            }
            Err(e) => fail(&e),
        },
        Command::Kernel(KernelCommand::List) => kernel_list(&cli.kernel_dirs),
        Command::Kernel(KernelCommand::Fetch { name }) => kernel_fetch(&name, &cli.kernel_dirs),
        Command::Bench(BenchCommand::Boot { kernels, runs, profiles, boots, no_fast_boot, warm }) => {
            bench_boot(kernels, runs, profiles, boots, !no_fast_boot, warm, &cli.kernel_dirs)
        }
        Command::Bench(BenchCommand::Samples { run }) => bench_samples(&run),
        Command::Matrix { file, list, partition, jobs, out } => matrix(&file, list, json, partition, jobs, out, &cli.kernel_dirs),
        Command::Doctor { lab } => doctor(lab.as_deref(), json, &cli.kernel_dirs),
        Command::Merge { dirs, out } => merge(&dirs, &out),
        Command::Triage { vmcore, kernel, out } => triage(&vmcore, &kernel, out, &cli.kernel_dirs),
        Command::Report { dir } => report(&dir),
        Command::Calibrate { lab, runs, arms, duration, out } => calibrate(&lab, runs, &arms, duration, out, cli.kernel_dirs, cli.quiet),
    };
    ExitCode::from(code as u8)
}

fn fail(e: &dyn std::error::Error) -> i32 {
    eprintln!("kernlab: {}", kernlab::util::error_causes(e));
    exit::USAGE
}

fn registry(dirs: &[PathBuf]) -> Result<kernel::Registry, kernel::DescriptorError> {
    let mut all = dirs.to_vec();
    all.extend(kernel::descriptor_dirs(None));
    kernel::Registry::load(&all)
}

fn kernel_list(dirs: &[PathBuf]) -> i32 {
    let r = match registry(dirs) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let cache = Cache::from_env().ok();
    for d in r.iter() {
        let cached = cache
            .as_ref()
            .map(|c| c.path(format!("kernels/by-name/{}.json", d.name)).exists())
            .unwrap_or(false);
        println!(
            "{:<32} {:<8} {:<56} {}",
            d.name,
            if cached { "cached" } else { "-" },
            d.source_summary(),
            d.description
        );
    }
    exit::OK
}

fn kernel_fetch(name: &str, dirs: &[PathBuf]) -> i32 {
    let desc = match registry(dirs).and_then(|r| r.get(name).cloned()) {
        Ok(d) => d,
        Err(e) => return fail(&e),
    };
    let cache = match Cache::from_env() {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    match kernel::fetch(&cache, &desc) {
        Ok(k) => {
            println!("{} {} {} {}", k.name, k.release, k.package_sha256, k.root.display());
            exit::OK
        }
        Err(e) => {
            fail(&e);
            exit::INFRA
        }
    }
}

fn matrix(
    file: &std::path::Path,
    list: bool,
    json: bool,
    partition: Option<String>,
    jobs: Option<usize>,
    out: Option<PathBuf>,
    dirs: &[PathBuf],
) -> i32 {
    use kernlab::matrix::{self, Partition};
    let mut all_dirs = dirs.to_vec();
    all_dirs.extend(kernel::descriptor_dirs(Some(file)));
    let registry = match kernel::Registry::load(&all_dirs) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let (m, cells) = match matrix::load(file, &registry) {
        Ok(x) => x,
        Err(e) => return fail(&e),
    };
    let part = match partition.as_deref().map(Partition::parse).transpose() {
        Ok(Some(p)) => Some(p),
        Ok(None) => match Partition::from_env(|k| std::env::var(k).ok()) {
            Ok(p) => p,
            Err(e) => return fail(&e),
        },
        Err(e) => return fail(&e),
    };
    let cells = match part {
        Some(p) => p.select(&cells),
        None => cells,
    };
    if list {
        if json {
            println!("{}", serde_json::to_string_pretty(&cells).unwrap_or_default());
        } else {
            for c in &cells {
                println!("{}", c.id);
            }
        }
        return exit::OK;
    }
    let dir = out.unwrap_or_else(|| {
        let stamp = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"))
            .unwrap_or_default();
        PathBuf::from("runs/matrix").join(&m.name).join(stamp)
    });
    if dir.exists() && std::fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(false) {
        eprintln!("kernlab: `{}` exists and is not empty; kernlab never overwrites a run", dir.display());
        return exit::USAGE;
    }
    if let Err(e) = kernlab::util::fsx::private_dir(&dir.join("cells")) {
        return fail(&e);
    }
    // Kernels from `debian:` patterns get descriptors in the matrix directory,
    // which every cell's run then finds.
    let mut dirs = dirs.to_vec();
    let made: Vec<&matrix::Cell> = cells.iter().filter(|c| registry.get(&c.kernel).is_err()).collect();
    if !made.is_empty() {
        let kdir = dir.join("kernels");
        let _ = kernlab::util::fsx::private_dir(&kdir);
        for c in made {
            if let Some(text) = matrix::archive_descriptor(&c.kernel) {
                let _ = kernlab::util::fsx::write_atomic(&kdir.join(format!("{}.yaml", c.kernel)), text.as_bytes());
            }
        }
        dirs.insert(0, kdir);
    }
    let dirs = &dirs[..];
    let mem_available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| kernlab::sample::parse::parse_meminfo(&t).ok())
        .and_then(|m| m.get("MemAvailable"))
        .unwrap_or(1 << 30);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let vm_mem = cells.iter().map(|c| c.memory).max().unwrap_or(512 << 20);
    let slots = jobs.or(m.jobs).unwrap_or_else(|| matrix::auto_slots(cores, mem_available, vm_mem)).max(1);
    kernlab::ui::eprintln(&format!("matrix {}: {} cells, up to {slots} VMs at once → {}", m.name, cells.len(), dir.display()));
    let stream = outputs(kernlab::ui::get().quiet, false);
    stream.emit(Event::MatrixStarted {
        name: m.name.clone(),
        cells: cells.len(),
        slots,
        dir: dir.display().to_string(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let started = std::time::Instant::now();
    let results = rt.block_on(async {
        let cancel = tokio_util::sync::CancellationToken::new();
        spawn_signal_handler(cancel.clone());
        matrix::run_cells(cells, &dir, slots, dirs.to_vec(), &stream, cancel).await
    });
    let timing = matrix::Timing::new(started.elapsed().as_secs_f64(), slots, &results);
    let report = matrix::report(&m.name, results, part.map(|p| format!("{p:?}")), Some(timing), None);
    finish_matrix(&dir, &report, &stream);
    kernlab::ui::human(&format!("{}\nmatrix {}: exit {}; {}\n", timing.line(), m.name, report.exit_code, dir.display()));
    report.exit_code
}

/// Writes a matrix's `report.json` and tells the stream, whose reporters
/// write the JUnit, KTAP, page and table from it.
fn finish_matrix(dir: &std::path::Path, report: &kernlab::outcome::matrix::MatrixReport, stream: &Events) {
    match kernlab::matrix::write_report(dir, report) {
        Ok(path) => stream.emit(Event::MatrixFinished { exit_code: report.exit_code, report: path.display().to_string() }),
        Err(e) => eprintln!("kernlab: cannot write `{}`: {e}", dir.join("report.json").display()),
    }
}

fn merge(dirs: &[PathBuf], out: &std::path::Path) -> i32 {
    use kernlab::matrix;
    let mut reports = Vec::new();
    for d in dirs {
        match kernlab::outcome::read::<kernlab::outcome::matrix::MatrixReport>(&d.join("report.json")) {
            Ok(r) => reports.push(r),
            Err(e) => return fail(&e),
        }
    }
    let name = reports.last().map(|r| r.name.clone()).unwrap_or_else(|| "merged".into());
    let results = matrix::merge(&reports);
    if let Err(e) = kernlab::util::fsx::private_dir(out) {
        return fail(&e);
    }
    let n = results.len();
    let report = matrix::report(&name, results, None, None, Some(dirs.to_vec()));
    finish_matrix(out, &report, &outputs(kernlab::ui::get().quiet, false));
    println!("merged {} reports, {n} cells: exit {}; {}", dirs.len(), report.exit_code, out.display());
    report.exit_code
}

fn triage(vmcore: &std::path::Path, name: &str, out: Option<PathBuf>, dirs: &[PathBuf]) -> i32 {
    if !vmcore.is_file() {
        eprintln!("kernlab: vmcore `{}` is not a readable file", vmcore.display());
        return exit::USAGE;
    }
    let desc = match registry(dirs).and_then(|r| r.get(name).cloned()) {
        Ok(d) => d,
        Err(e) => return fail(&e),
    };
    let out = out.unwrap_or_else(|| {
        let stamp = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"))
            .unwrap_or_default();
        PathBuf::from(format!("triage-{stamp}"))
    });
    if let Err(e) = kernlab::util::fsx::private_dir(&out) {
        return fail(&e);
    }
    let infra = |e: &dyn std::error::Error| {
        fail(e);
        exit::INFRA
    };
    let cache = match Cache::from_env() {
        Ok(c) => c,
        Err(e) => return infra(&e),
    };
    let kernel = match kernel::fetch(&cache, &desc) {
        Ok(k) => k,
        Err(e) => return infra(&e),
    };
    let vmlinux = match kernlab::triage::debug_vmlinux(&cache, &desc, &kernel) {
        Ok(v) => v,
        Err(e) => return infra(&e),
    };
    let report = match kernlab::triage::run_crash(&kernel.name, &vmlinux, vmcore, &out.join("crash.txt")) {
        Ok(r) => r,
        Err(e) => return infra(&e),
    };
    let _ = kernlab::util::fsx::write_atomic(&out.join("triage.json"), &serde_json::to_vec_pretty(&report).unwrap_or_default());
    println!("vmcore {} (kernel {}), read by crash in {:.1} s", vmcore.display(), kernel.name, report.secs);
    if let Some(p) = &report.panic {
        println!("  panic: {p}");
    }
    println!("  memory (kmem -i):");
    for (label, bytes) in &report.memory {
        println!("    {label:<12} {:>10.1} MiB", *bytes as f64 / 1048576.0);
    }
    println!("  largest slab caches (kmem -s):");
    for c in &report.top_caches {
        println!("    {:<28} {:>10.1} MiB  {:>9} objects of {} B", c.name, c.bytes as f64 / 1048576.0, c.allocated, c.objsize);
    }
    println!("  full text: {}", out.join("crash.txt").display());
    exit::OK
}

fn report(dir: &std::path::Path) -> i32 {
    match kernlab::report::rebuild(dir) {
        Ok(r) => {
            print!("{}", r.summary);
            println!("  report: {}", r.html.display());
            exit::OK
        }
        Err(e @ (kernlab::report::ReportError::Write { .. } | kernlab::report::ReportError::Read { .. })) => {
            fail(&e);
            exit::INFRA
        }
        Err(e) => fail(&e),
    }
}

fn doctor(lab: Option<&std::path::Path>, json: bool, dirs: &[PathBuf]) -> i32 {
    use kernlab::doctor;
    let (lab_name, lab) = match lab {
        Some(p) => match lab::load(p) {
            Ok(l) => (p.display().to_string(), l),
            Err(e) => return fail(&e),
        },
        None => match doctor::default_lab() {
            Ok(l) => ("labs/leak-lab.yaml".to_string(), l),
            Err(e) => return fail(&e),
        },
    };
    let registry = match registry(dirs) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let facts = doctor::Facts::gather(&lab, &registry);
    let report = doctor::Report::new(&lab_name, &lab, &facts);
    if json {
        kernlab::ui::json_line(&serde_json::to_string(&report).unwrap_or_default());
    } else {
        kernlab::ui::human(&report.render());
    }
    report.exit_code
}

fn bench_samples(run: &std::path::Path) -> i32 {
    use kernlab::analysis::leak::{self, ArmSeries};
    let lab = match lab::load(&run.join("lab.yaml")) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    if lab.leak.is_none() {
        eprintln!("kernlab: `{}` is not an A/B leak run (its lab has no `leak` section)", run.display());
        return exit::USAGE;
    };
    let read = |arm: &str| {
        let f = |n: &str| std::fs::read_to_string(run.join(arm).join("samples").join(n)).unwrap_or_default();
        ArmSeries::parse(&f("meminfo.csv"), &f("slabinfo.csv"), &f("ops.csv"))
    };
    let (a, b) = (read("module"), read("baseline"));
    let full = leak::analyze(&a, &b, &kernlab::run::ab::policy_of(&lab), true);
    let interval = lab.monitor.interval.as_secs_f64();
    let q = &full.sequential;
    for (k, l) in q.looks.iter().enumerate() {
        println!("{}: look {} of {} planned: {} samples per arm ({:.0} s of workload), α {:.2e} → {:?}", lab.name, k + 1, q.planned.len(), l.samples, (l.samples.saturating_sub(1)) as f64 * interval, l.alpha, l.verdict);
    }
    let l = &q.looks[q.decided_at.min(q.looks.len().saturating_sub(1))];
    println!(
        "{}: verdict {:?} at look {} ({} samples per arm, {:.0} s of workload at a {interval} s interval){}",
        lab.name,
        full.verdict,
        q.decided_at + 1,
        l.samples,
        (l.samples.saturating_sub(1)) as f64 * interval,
        if q.early { ", before the planned duration" } else { "" }
    );
    exit::OK
}

fn bench_boot(mut kernels: Vec<String>, runs: usize, profiles: Vec<String>, boots: Option<usize>, fast_boot: bool, warm: bool, dirs: &[PathBuf]) -> i32 {
    use kernlab::bench::Profile;
    if kernels.is_empty() {
        kernels = vec!["debian-6.1.0-54-cloud-amd64".into(), "debian-6.1.0-54-amd64".into()];
    }
    let profiles: Vec<Profile> = if profiles.is_empty() {
        Profile::ALL.to_vec()
    } else {
        match profiles.iter().map(|p| Profile::parse(p)).collect::<Result<_, _>>() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("kernlab: --profile: {e}");
                return exit::USAGE;
            }
        }
    };
    let work = match tempfile::tempdir() {
        Ok(w) => w,
        Err(e) => return fail(&e),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    if let Some(n) = boots {
        return match rt.block_on(kernlab::bench::hang_check(&kernels, &profiles, n, warm, work.path(), dirs)) {
            Ok(rows) => {
                println!("hang check: {n} {} boots per kernel and profile, accel as chosen by `auto`", if warm { "restored" } else { "cold" });
                println!("{:<36} {:<16} {:>6} {:>8} {:>7} {:>9} {:>14} {:>11}", "kernel", "profile", "boots", "retried", "failed", "restored", "first cmd med", "max");
                for r in &rows {
                    println!(
                        "{:<36} {:<16} {:>6} {:>8} {:>7} {:>9} {:>14.2} {:>11.2}",
                        r.kernel,
                        r.profile.name(),
                        r.boots,
                        r.retried,
                        r.failed,
                        if r.warm { r.restored.to_string() } else { "-".into() },
                        r.first_command_median_s,
                        r.first_command_max_s
                    );
                    for e in &r.errors {
                        println!("  {e}");
                    }
                }
                println!("{}", serde_json::to_string(&rows).unwrap_or_default());
                // Failed runs keep their directories for a look.
                if rows.iter().any(|r| r.failed > 0) {
                    let _ = work.keep();
                }
                exit::OK
            }
            Err(e) => {
                eprintln!("kernlab: {e}");
                exit::INFRA
            }
        };
    }
    match rt.block_on(kernlab::bench::boot(&kernels, &profiles, fast_boot, runs, work.path(), dirs)) {
        Ok(rows) => {
            println!("median of {runs} runs, accel as chosen by `auto`, fast-boot flags {}; warm = restored from the snapshot", if fast_boot { "on" } else { "off" });
            println!("bare = the same kernel, machine and command line booting a bare busybox initramfs that powers off (the design notes' floor)");
            println!(
                "{:<36} {:<16} {:>7} {:>7} {:>8} {:>8} {:>6} {:>6} {:>9} {:>7} {:>6} {:>8} {:>8}",
                "kernel", "profile", "bare s", "init s", "banner s", "first s", "/bare", "/init", "run→QEMU", "retries", "warm s", "w/bare", "restored"
            );
            for r in &rows {
                println!(
                    "{:<36} {:<16} {:>7.2} {:>7.2} {:>8.2} {:>8.2} {:>6.2} {:>6.2} {:>9.3} {:>7} {:>6.2} {:>8.2} {:>8}",
                    r.kernel,
                    r.profile.name(),
                    r.bare_floor_s,
                    r.floor_s,
                    r.ssh_banner_s,
                    r.first_command_s,
                    r.ratio_first_command_to_bare_floor,
                    r.ratio_first_command_to_floor,
                    r.run_to_qemu_start_s,
                    r.retries,
                    r.warm_first_command_s,
                    r.ratio_warm_first_command_to_bare_floor,
                    format!("{}/{runs}", r.warm_restored)
                );
            }
            println!("{}", serde_json::to_string(&rows).unwrap_or_default());
            exit::OK
        }
        Err(e) => {
            eprintln!("kernlab: {e}");
            exit::INFRA
        }
    }
}

fn calibrate(lab_file: &std::path::Path, runs: usize, arms: &str, duration: Option<std::time::Duration>, out: Option<PathBuf>, kernel_dirs: Vec<PathBuf>, quiet: bool) -> i32 {
    use kernlab::calibrate::{self, Arms};
    let Some(arms) = Arms::parse(arms) else {
        eprintln!("kernlab: --arms {arms:?}: must be `baseline`, `module` or `lab`");
        return exit::USAGE;
    };
    if runs == 0 {
        eprintln!("kernlab: --runs must be at least 1");
        return exit::USAGE;
    }
    let lab = match lab::load(lab_file) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    if lab.leak.is_none() {
        eprintln!("kernlab: {}: calibration needs a leak lab (one with a `leak` section)", lab_file.display());
        return exit::USAGE;
    }
    let out = out.unwrap_or_else(|| {
        let stamp = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default().replace(':', "");
        PathBuf::from("runs").join(format!("{}-calibration", lab.name)).join(stamp)
    });
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("kernlab: cannot create {}: {e}", out.display());
        return exit::INFRA;
    }
    let aa = calibrate::aa_lab(&lab, lab_file, arms);
    let aa_file = out.join("aa.yaml");
    if let Err(e) = std::fs::write(&aa_file, aa.to_yaml()) {
        eprintln!("kernlab: cannot write {}: {e}", aa_file.display());
        return exit::INFRA;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let events = outputs(quiet, false);
    rt.block_on(async move {
        let cancel = CancellationToken::new();
        spawn_signal_handler(cancel.clone());
        let start = std::time::Instant::now();
        let mut results = Vec::new();
        for k in 1..=runs {
            let dir = out.join(format!("run-{k:02}"));
            let t = std::time::Instant::now();
            let end = run::run(run::RunOptions { lab_file: aa_file.clone(), out: Some(dir.clone()), kernel_dirs: kernel_dirs.clone(), kernel: None, duration }, &events, cancel.clone()).await;
            let (r, an) = calibrate::read_run(&dir, end.exit_code, t.elapsed().as_secs_f64());
            kernlab::ui::human(&format!("calibration run {k} of {runs}: {}\n", r.verdict.map(|v| format!("{v:?}")).unwrap_or_else(|| format!("failed: {}", end.error.as_deref().unwrap_or("?")))));
            results.push((r, an));
            if end.exit_code == exit::INTERRUPTED {
                break;
            }
        }
        let c = calibrate::summarise(&lab.name, arms, results, start.elapsed().as_secs_f64());
        kernlab::ui::human(&calibrate::render(&c));
        match calibrate::write(&out, &c) {
            Ok(p) => kernlab::ui::human(&format!("  written: {}\n", p.display())),
            Err(e) => eprintln!("kernlab: cannot write calibration.json: {e}"),
        }
        if c.verdicts[3] > 0 { exit::INFRA } else if c.false_leaks > 0 { exit::EXPECTATION_FAILED } else { exit::OK }
    })
}

/// The process's one event stream and every output on it: the terminal
/// (quiet: errors and warnings only), JSON lines on stdout in JSON mode,
/// each run directory's `events.jsonl` and page, `kernlab run`'s summary,
/// a matrix's JUnit, KTAP, page and table.
fn outputs(quiet: bool, summaries: bool) -> Events {
    use kernlab::report::{outputs, terminal};
    let events = Events::new(std::time::Instant::now());
    events.add(Box::new(outputs::RunLogs::default()));
    if kernlab::ui::get().json {
        events.add(Box::new(terminal::JsonStdout));
    }
    events.add(Box::new(terminal::Terminal::new(quiet)));
    events.add(Box::new(outputs::Pages::default()));
    if summaries {
        events.add(Box::new(outputs::Summaries::default()));
    }
    events.add(Box::new(outputs::MatrixOutputs));
    events
}

fn run_lab(lab: PathBuf, out: Option<PathBuf>, kernel: Option<String>, duration: Option<std::time::Duration>, kernel_dirs: Vec<PathBuf>, quiet: bool) -> i32 {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let events = outputs(quiet, true);
    rt.block_on(async move {
        let cancel = CancellationToken::new();
        spawn_signal_handler(cancel.clone());
        let end = run::run(run::RunOptions { lab_file: lab, out, kernel_dirs, kernel, duration }, &events, cancel).await;
        if let Some(e) = &end.error {
            kernlab::ui::eprintln(&format!("kernlab: {e}"));
        }
        end.exit_code
    })
}

/// First SIGINT/SIGTERM: cancel the run, which tears down and keeps what it
/// has. Second: kill every QEMU now and exit.
fn spawn_signal_handler(cancel: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            return;
        };
        let mut seen = 0;
        loop {
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
            seen += 1;
            if seen == 1 {
                cancel.cancel();
            } else {
                eprintln!("kernlab: second signal: killing every VM now");
                kernlab::qemu::process::kill_all();
                std::process::exit(exit::INTERRUPTED);
            }
        }
    });
}
