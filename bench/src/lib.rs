//! Shared plumbing of libphoton's benchmark programs (see README.md and
//! the team's benchmarking guide BENCH.md): option parsing ([`Common`],
//! [`Args`]), the one runner every benchmark measures with ([`Runner`]:
//! interleaved repetitions, a wait for a quiet machine before each run, one
//! error policy, the closing summary), machine description, CPU pinning,
//! calibration of ~1 s runs, building libphoton.so and the C/C++ helper
//! programs, running each measurement as a child process, statistics and
//! tables.
//!
//! Child protocol (C programs and self-executed Rust children alike): the
//! child prints `RESULT key=value ...` once on stdout, optional `INFO ...`
//! lines (shown with `--verbose`) and `NOTE ...` lines (always shown), and
//! exits 0. Anything else (non-zero exit, signal, no RESULT line, timeout)
//! is an error of that contender.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// This crate's directory (bench/).
pub fn bench_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The library's repository root (bench/..).
pub fn root_dir() -> PathBuf {
    bench_dir().parent().expect("bench/ has a parent").to_path_buf()
}

// ----------------------------------------------------------------- options

/// The command line, consumed one argument at a time; `value`/`list` take
/// an option's value. `--help` anywhere prints the usage and exits 0; any
/// error prints it and exits 2 (see [`parse_or_exit`]).
pub struct Args {
    args: std::vec::IntoIter<String>,
    help: bool,
}

impl Args {
    /// The program's arguments after its name.
    pub fn from_env() -> Args {
        Args::new(std::env::args().skip(1).collect())
    }

    /// These arguments (a test's).
    pub fn new(args: Vec<String>) -> Args {
        Args {
            args: args.into_iter(),
            help: false,
        }
    }

    /// The next argument.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<String> {
        self.args.next()
    }

    /// The value of option `opt` as a string.
    pub fn string(&mut self, opt: &str) -> Result<String, String> {
        self.args.next().ok_or_else(|| format!("{opt} needs a value"))
    }

    /// The value of option `opt`, parsed.
    pub fn value<T: std::str::FromStr>(&mut self, opt: &str) -> Result<T, String> {
        let v = self.string(opt)?;
        v.parse().map_err(|_| format!("bad {opt} {v}"))
    }

    /// The value of option `opt` as a comma-separated list (empty items dropped).
    pub fn list(&mut self, opt: &str) -> Result<Vec<String>, String> {
        Ok(self
            .string(opt)?
            .split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect())
    }

    /// Asks for the usage (what `--help` does): [`parse_or_exit`] prints it
    /// on stdout and exits 0.
    pub fn help(&mut self) -> String {
        self.help = true;
        String::new()
    }
}

/// Parses the command line with `parse` (which reads `args` and returns the
/// options or an error); on `--help` prints `usage` and exits 0, on an error
/// prints it with `usage` on stderr and exits 2.
pub fn parse_or_exit<T>(usage: &str, parse: impl FnOnce(&mut Args) -> Result<T, String>) -> T {
    let mut args = Args::from_env();
    match parse(&mut args) {
        Ok(o) => o,
        Err(_) if args.help => {
            println!("{}", usage.trim_end());
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("{e}\n{}", usage.trim_end());
            std::process::exit(2)
        }
    }
}

/// The options every benchmark takes: `--reps N`, `--secs S`, `--only A,B`
/// (parts of the benchmark, from those it names), `--quiet-wait S` (before
/// each run wait up to S seconds for the machine to be quiet; 0: do not
/// wait), `--verbose`/`-v`, `--help`/`-h`.
#[derive(Debug, Clone)]
pub struct Common {
    pub reps: usize,
    pub secs: f64,
    pub only: Vec<String>,
    pub quiet_wait: f64,
    pub verbose: bool,
    parts: &'static [&'static str],
}

impl Common {
    /// Defaults: `reps` repetitions of `secs` seconds, every part of
    /// `parts` (none: the benchmark has no `--only`), no quiet wait.
    pub fn new(reps: usize, secs: f64, parts: &'static [&'static str]) -> Common {
        Common {
            reps,
            secs,
            only: parts.iter().map(|p| p.to_string()).collect(),
            quiet_wait: 0.0,
            verbose: false,
            parts,
        }
    }

    /// The same with a default `--quiet-wait`.
    pub fn quiet_wait(mut self, secs: f64) -> Common {
        self.quiet_wait = secs;
        self
    }

    /// Takes `arg` (with its value from `args`) if it is a common option;
    /// anything else is an unknown argument.
    pub fn take(&mut self, arg: &str, args: &mut Args) -> Result<(), String> {
        match arg {
            "--reps" => self.reps = args.value(arg)?,
            "--secs" => self.secs = args.value(arg)?,
            "--quiet-wait" => self.quiet_wait = args.value(arg)?,
            "--verbose" | "-v" => self.verbose = true,
            "--only" if !self.parts.is_empty() => self.only = args.list(arg)?,
            "--help" | "-h" => return Err(args.help()),
            _ => return Err(format!("unknown argument {arg}")),
        }
        Ok(())
    }

    /// Checks the common options' values (call after the last argument).
    pub fn check(&self) -> Result<(), String> {
        if self.reps == 0 {
            return Err("--reps must be > 0".into());
        }
        if !(self.secs.is_finite() && self.secs > 0.0) {
            return Err("--secs must be > 0".into());
        }
        if !(self.quiet_wait.is_finite() && self.quiet_wait >= 0.0) {
            return Err("--quiet-wait must be >= 0".into());
        }
        for w in &self.only {
            if !self.parts.contains(&w.as_str()) {
                return Err(format!("--only: unknown part {w} ({})", self.parts.join(", ")));
            }
        }
        Ok(())
    }

    /// Whether part `p` is to run.
    pub fn want(&self, p: &str) -> bool {
        self.only.iter().any(|x| x == p)
    }
}

// ------------------------------------------------------------------ runner

/// One row of a table that runs a program speaking the child protocol: a
/// label, the program, its arguments and environment, and optionally the
/// CPU its process is pinned to.
#[derive(Debug, Clone)]
pub struct Contender {
    pub label: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, Option<String>)>,
    pub cpu: Option<usize>,
}

impl Contender {
    pub fn new(label: impl Into<String>, program: impl AsRef<Path>) -> Contender {
        Contender {
            label: label.into(),
            program: program.as_ref().to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
            cpu: None,
        }
    }

    /// This benchmark binary re-executed as `--child NAME SECS`.
    pub fn self_child(label: impl Into<String>, name: &str, secs: f64) -> Contender {
        let exe = std::env::current_exe().expect("current_exe");
        Contender::new(label, exe).args(["--child", name, &secs.to_string()])
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, args: I) -> Contender {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Contender {
        self.env
            .push((k.to_string(), Some(v.as_ref().to_string_lossy().into_owned())));
        self
    }

    /// Removes `k` from the child's environment.
    pub fn env_remove(mut self, k: &str) -> Contender {
        self.env.push((k.to_string(), None));
        self
    }

    /// Pins the child to `cpu` (between fork and exec).
    pub fn pin(mut self, cpu: usize) -> Contender {
        self.cpu = Some(cpu);
        self
    }

    /// The command of one run.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(cpu) = self.cpu {
            pin_command(&mut c, cpu);
        }
        c
    }
}

/// The runs of one contender in one table: what each successful run gave,
/// or the error that stopped the contender.
#[derive(Debug, Clone)]
pub struct Row<T> {
    pub runs: Vec<T>,
    pub error: Option<String>,
}

impl<T> Row<T> {
    /// `f` of every run, as a [`Series`] carrying the row's error.
    pub fn series(&self, f: impl Fn(&T) -> f64) -> Series {
        Series {
            values: self.runs.iter().map(f).collect(),
            error: self.error.clone(),
        }
    }
}

/// The one way every benchmark measures: for each table, `for rep { for
/// contender { one run } }` (interleaved, so drift of the machine hits every
/// contender alike), after waiting (up to `--quiet-wait` s) for the machine
/// to be quiet before each run. A contender whose run fails is not run again
/// in that table and its row reads ERROR; the error is kept for the summary
/// ([`Runner::finish`]), which makes the program exit non-zero.
#[derive(Debug, Default)]
pub struct Runner {
    pub verbose: bool,
    pub quiet_wait: f64,
    /// "table / contender: error" of every failed contender.
    pub errors: Vec<String>,
    /// NOTE lines seen (each printed once, on stdout).
    pub notes: Vec<String>,
    /// "contender -> engine E" from RESULT lines with `engine=`.
    pub engines: Vec<String>,
    /// [`describe_load`] over the last table.
    pub last_load: String,
}

impl Runner {
    pub fn new(c: &Common) -> Runner {
        Runner {
            verbose: c.verbose,
            quiet_wait: c.quiet_wait,
            ..Runner::default()
        }
    }

    /// Runs `one(contender index, rep)` for every contender `reps` times,
    /// interleaved; `show` describes a run on the progress line (stderr).
    pub fn interleave<T>(
        &mut self,
        title: &str,
        labels: &[String],
        reps: usize,
        mut one: impl FnMut(usize, usize) -> Result<T, String>,
        show: impl Fn(&T) -> String,
    ) -> Vec<Row<T>> {
        let mut rows: Vec<Row<T>> = labels
            .iter()
            .map(|_| Row {
                runs: Vec::new(),
                error: None,
            })
            .collect();
        let t0 = cpu_times();
        for rep in 1..=reps {
            for (ci, label) in labels.iter().enumerate() {
                if rows[ci].error.is_some() {
                    continue;
                }
                if self.quiet_wait > 0.0 {
                    wait_quiet(self.quiet_wait);
                }
                match one(ci, rep) {
                    Ok(v) => {
                        eprintln!("[{title}] rep {rep}/{reps} {label}: {}", show(&v));
                        rows[ci].runs.push(v);
                    }
                    Err(e) => {
                        eprintln!("[{title}] rep {rep}/{reps} {label}: ERROR\n{e}");
                        self.errors.push(format!("{title} / {label}: {e}"));
                        rows[ci].error = Some(e);
                    }
                }
            }
        }
        self.last_load = describe_load(&t0, &cpu_times());
        rows
    }

    /// [`Runner::interleave`] of runs that print the child protocol (`one`
    /// returns a run's [`Output`]): per contender, one [`Series`] per key of
    /// `keys` read from the RESULT line. INFO lines show with `--verbose`,
    /// NOTE lines once, `engine=` goes into [`Runner::engines`].
    pub fn table(
        &mut self,
        title: &str,
        labels: &[String],
        reps: usize,
        keys: &[&str],
        mut one: impl FnMut(usize) -> Result<Output, String>,
    ) -> Vec<Vec<Series>> {
        let verbose = self.verbose;
        let mut notes = std::mem::take(&mut self.notes);
        let mut engines = std::mem::take(&mut self.engines);
        let rows = self.interleave(
            title,
            labels,
            reps,
            |ci, _| {
                let o = one(ci)?;
                let vals = keys.iter().map(|k| o.num(k)).collect::<Result<Vec<f64>, String>>()?;
                if verbose {
                    for i in &o.info {
                        eprintln!("    {i}");
                    }
                }
                for n in &o.notes {
                    if !notes.contains(n) {
                        println!("note: {n}");
                        notes.push(n.clone());
                    }
                }
                if let Some(e) = o.fields.get("engine") {
                    let e = format!("{} -> engine {e}", labels[ci]);
                    if !engines.contains(&e) {
                        engines.push(e);
                    }
                }
                Ok(vals)
            },
            |vals| {
                keys.iter()
                    .zip(vals)
                    .map(|(k, v)| format!("{k}={}", fmt_num(*v)))
                    .collect::<Vec<_>>()
                    .join(" ")
            },
        );
        self.notes = notes;
        self.engines = engines;
        rows.iter()
            .map(|r| (0..keys.len()).map(|k| r.series(|v| v[k])).collect())
            .collect()
    }

    /// [`Runner::table`] of contenders run as they are, each run killed
    /// after `timeout`.
    pub fn run(
        &mut self,
        title: &str,
        cs: &[Contender],
        reps: usize,
        keys: &[&str],
        timeout: Duration,
    ) -> Vec<Vec<Series>> {
        let labels: Vec<String> = cs.iter().map(|c| c.label.clone()).collect();
        self.table(title, &labels, reps, keys, |ci| run_child(cs[ci].command(), timeout))
    }

    /// The closing summary on stdout: the engines the contenders reported,
    /// the targets (information), and the errors; SUCCESS only if no run
    /// failed.
    pub fn finish(&self, targets: &[String]) -> std::process::ExitCode {
        if !self.engines.is_empty() {
            println!("engines used: {}", self.engines.join("; "));
            println!();
        }
        if !targets.is_empty() {
            println!("## Targets (information; the exit status reflects errors only)");
            println!();
            for t in targets {
                println!("- {t}");
            }
            println!();
        }
        if self.errors.is_empty() {
            println!("all contenders ran without error");
            std::process::ExitCode::SUCCESS
        } else {
            println!(
                "FAILED: {} contender(s) errored; their rows are marked ERROR:",
                self.errors.len()
            );
            for e in &self.errors {
                println!("- {}", e.lines().next().unwrap_or(""));
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// "met" or "NOT met".
pub fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// Prints `ERROR: e` on stderr and returns the failure exit code (for
/// set-up errors before anything is measured).
pub fn fatal(e: impl std::fmt::Display) -> std::process::ExitCode {
    eprintln!("ERROR: {e}");
    std::process::ExitCode::FAILURE
}

// ---------------------------------------------------------------- machine

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// CPU model from /proc/cpuinfo.
pub fn cpu_model() -> String {
    read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// `uname -r`.
pub fn kernel_release() -> String {
    // SAFETY: uname fills a caller-owned struct; the fields are NUL-terminated.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return "unknown".into();
        }
        std::ffi::CStr::from_ptr(u.release.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

/// CPUs this process may run on (what `nproc` prints).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills a caller-owned cpu_set_t.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Pins the calling thread (call it first thing in main, before any thread
/// exists, so every later thread and child process inherits it) to CPU 1, or
/// to `$BENCH_CPU`, or to the last allowed CPU if 1 is not allowed.
pub fn pin_to_one_cpu() -> Result<usize, String> {
    let allowed = allowed_cpus();
    let cpu = match std::env::var("BENCH_CPU") {
        Ok(v) => v
            .parse::<usize>()
            .map_err(|_| format!("BENCH_CPU={v} is not a CPU number"))?,
        Err(_) if allowed.contains(&1) => 1,
        Err(_) => *allowed.last().unwrap_or(&0),
    };
    pin_self(cpu)?;
    Ok(cpu)
}

/// Pins the calling thread (and what it starts afterwards) to `cpu`.
pub fn pin_self(cpu: usize) -> Result<(), String> {
    // SAFETY: plain syscall on a caller-owned cpu_set_t.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(format!(
                "sched_setaffinity(CPU {cpu}): {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// Makes `cmd`'s process run on `cpu` only (sched_setaffinity between fork
/// and exec, as `taskset -c CPU` does).
pub fn pin_command(cmd: &mut Command, cpu: usize) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and makes one
    // async-signal-safe syscall on a local cpu_set_t; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// CPUs online (not this process's affinity).
pub fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 { n as usize } else { 1 }
}

/// Clock ticks per second (the unit of /proc/stat and /proc/PID/stat).
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// CPU seconds (user, system) of process `pid` so far, from /proc/PID/stat.
pub fn proc_cpu(pid: u32) -> Result<(f64, f64), String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // The command name (field 2) may hold spaces: fields resume after the last ')'.
    let rest = s.rsplit_once(')').map(|(_, r)| r).ok_or("malformed /proc/PID/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let field = |i: usize| -> Result<f64, String> {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| format!("no field {i} in /proc/{pid}/stat"))
    };
    let tck = clk_tck();
    Ok((field(14)? / tck, field(15)? / tck))
}

/// CPU seconds spent in user and system mode by all CPUs so far
/// (/proc/stat: user, nice, system), the same kinds of time as processes'
/// utime + stime.
pub fn machine_busy() -> f64 {
    let s = read("/proc/stat");
    let Some(l) = s.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let f: Vec<f64> = l.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...
    (f.first().unwrap_or(&0.0) + f.get(1).unwrap_or(&0.0) + f.get(2).unwrap_or(&0.0)) / clk_tck()
}

/// The machine-busy check run before each run: waits (at most `max` s)
/// until the machine is quiet, less than 10% of one CPU busy over 300 ms
/// (none of our processes runs then). Says on stderr when it waits, and when
/// it gives up (returning the load seen last).
pub fn wait_quiet(max: f64) -> Option<f64> {
    if max <= 0.0 {
        return None;
    }
    let end = Instant::now() + Duration::from_secs_f64(max);
    let mut said = false;
    loop {
        let (b0, t0) = (machine_busy(), Instant::now());
        std::thread::sleep(Duration::from_millis(300));
        let load = (machine_busy() - b0) / t0.elapsed().as_secs_f64();
        if load < 0.10 {
            return None;
        }
        if Instant::now() >= end {
            eprintln!(
                "  the machine is still busy ({:.0}% of a CPU): running anyway",
                100.0 * load
            );
            return Some(load);
        }
        if !said {
            eprintln!(
                "  waiting for the machine to be quiet ({:.0}% of a CPU busy with other processes)",
                100.0 * load
            );
            said = true;
        }
        std::thread::sleep(Duration::from_millis(700));
    }
}

/// Versions of crate `name` in this crate's Cargo.lock ("a/b" if several).
pub fn locked_versions(name: &str) -> String {
    const LOCK: &str = include_str!("../Cargo.lock");
    let mut out = Vec::new();
    let want = format!("name = \"{name}\"");
    let mut lines = LOCK.lines();
    while let Some(l) = lines.next() {
        if l == want
            && let Some(v) = lines.next().and_then(|v| v.strip_prefix("version = \""))
        {
            out.push(v.trim_end_matches('"').to_string());
        }
    }
    if out.is_empty() { "?".into() } else { out.join("/") }
}

/// First line of `prog --version`.
pub fn tool_version(prog: &str) -> String {
    Command::new(prog)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// `git describe --always --dirty` of the library's repository.
pub fn git_revision() -> String {
    Command::new("git")
        .arg("-C")
        .arg(root_dir())
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

/// Prints the machine, kernel and toolchain block every benchmark starts
/// with; `pinning` says where the contenders run.
pub fn print_header(title: &str, pinning: &str) {
    let before = allowed_cpus_before_pin();
    println!("# {title}");
    println!();
    println!(
        "machine: {}, nproc {} (CPUs online: {}, allowed: {before:?})",
        cpu_model(),
        before.len(),
        online_cpus()
    );
    println!("kernel:  {}", kernel_release());
    println!("pinned:  {pinning}");
    println!("rustc:   {}", tool_version("rustc"));
    println!("cc:      {}", tool_version(env!("BENCH_CC")));
    println!("libphoton: git {} of {}", git_revision(), root_dir().display());
}

/// The `pinning` of [`print_header`] for benchmarks pinned with
/// [`pin_to_one_cpu`].
pub fn pinned_to(cpu: usize) -> String {
    format!("every contender runs on CPU {cpu} only (sched_setaffinity, inherited)")
}

static BEFORE_PIN: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();

/// Records the affinity before pinning (for the header).
pub fn remember_affinity() {
    let _ = BEFORE_PIN.set(allowed_cpus());
}

fn allowed_cpus_before_pin() -> Vec<usize> {
    BEFORE_PIN.get().cloned().unwrap_or_else(allowed_cpus)
}

/// A CPU the process could run on before [`pin_to_one_cpu`] other than
/// `cpu`: where a driver's sampler thread stays off the contenders' CPU.
pub fn spare_cpu(cpu: usize) -> Option<usize> {
    allowed_cpus_before_pin().into_iter().find(|&c| c != cpu)
}

/// Per-CPU jiffies from /proc/stat: (cpu, busy, idle, steal).
#[derive(Debug, Clone, Default)]
pub struct CpuTimes(Vec<(usize, u64, u64, u64)>);

/// Samples /proc/stat.
pub fn cpu_times() -> CpuTimes {
    let mut v = Vec::new();
    for l in read("/proc/stat").lines() {
        let mut f = l.split_whitespace();
        let Some(cpu) = f
            .next()
            .and_then(|n| n.strip_prefix("cpu"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        let x: Vec<u64> = f.map(|t| t.parse().unwrap_or(0)).collect();
        if x.len() < 8 {
            continue;
        }
        // user nice system idle iowait irq softirq steal
        let idle = x[3] + x[4];
        let steal = x[7];
        let busy = x[0] + x[1] + x[2] + x[5] + x[6];
        v.push((cpu, busy, idle, steal));
    }
    CpuTimes(v)
}

/// "CPU 0: 3% busy, CPU 1: 99% busy, 0% steal" between two samples: other
/// work on the CPU sharing the core (or the host's steal time) disturbs the
/// figures, so each table says how much there was.
pub fn describe_load(a: &CpuTimes, b: &CpuTimes) -> String {
    let mut parts = Vec::new();
    for (cpu, busy1, idle1, steal1) in &b.0 {
        let Some((_, busy0, idle0, steal0)) = a.0.iter().find(|t| t.0 == *cpu) else {
            continue;
        };
        let (db, di, ds) = (busy1 - busy0, idle1 - idle0, steal1 - steal0);
        let total = (db + di + ds).max(1) as f64;
        parts.push(format!(
            "CPU {cpu} {:.0}% busy, {:.0}% steal",
            100.0 * db as f64 / total,
            100.0 * ds as f64 / total
        ));
    }
    parts.join("; ")
}

/// MXCSR (SSE control and status register) of the calling thread.
#[cfg(target_arch = "x86_64")]
pub fn mxcsr() -> u32 {
    let mut v: u32 = 0;
    // SAFETY: stmxcsr stores 4 bytes into `v`.
    unsafe { std::arch::asm!("stmxcsr [{}]", in(reg) &raw mut v, options(nostack)) };
    v
}

/// Loads MXCSR.
#[cfg(target_arch = "x86_64")]
pub fn set_mxcsr(v: u32) {
    // SAFETY: loads 4 bytes from `v`; callers pass a valid MXCSR value.
    unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &raw const v, options(nostack)) };
}

/// Sets MXCSR's sticky "inexact" status flag (as any program does with its
/// first inexact floating-point operation), so that every context created
/// afterwards starts with the same MXCSR as the main one and the timing
/// arithmetic between runs cannot make them differ. Call it first thing in
/// every switch contender (the C programs call `bench_fp_settle()`).
///
/// Why: a context switch that reloads a *different* MXCSR value (Boost's
/// fcontext reloads on every switch; a switch may compare and reload only
/// when different) and then reads it back with `stmxcsr` stalls for 60-90 ns
/// on this VM. Whether the main context's sticky flags differed from its
/// peer's used to depend on whether `--secs` was exactly representable in
/// binary (1.0: slow, 0.9: fast). The row "MXCSR status flags differ"
/// measures the differing case on purpose.
pub fn fp_settle() {
    let x = std::hint::black_box(1.0f64) / std::hint::black_box(3.0f64);
    std::hint::black_box(x);
}

// ------------------------------------------------------------ calibration

/// Runs `body(n)` with growing n until one call takes >= 50 ms (warm-up and
/// calibration), then times one call of the n that takes about `secs`.
/// Returns (n, seconds of the timed call).
pub fn timed<F: FnMut(u64)>(secs: f64, mut body: F) -> (u64, f64) {
    let mut n: u64 = 64;
    let target = loop {
        let t = Instant::now();
        body(n);
        let dt = t.elapsed().as_secs_f64();
        if dt >= 0.05 {
            break ((n as f64) * secs / dt).max(1.0) as u64;
        }
        n *= if dt < 0.005 { 8 } else { 2 };
    };
    let t = Instant::now();
    body(target);
    (target, t.elapsed().as_secs_f64())
}

// ---------------------------------------------------------------- building

/// Builds the library (`cargo build --release --lib` in the repository root,
/// i.e. the same command and target directory as the library's own release
/// build) and returns the path of libphoton.so, from cargo's JSON messages.
pub fn build_libphoton() -> Result<PathBuf, String> {
    build_libphoton_at(&root_dir())
}

/// [`build_libphoton`] of the libphoton tree at `root` (another checkout:
/// `files --lib-root`), in that tree's own target directory.
pub fn build_libphoton_at(root: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = root.join("Cargo.toml");
    eprintln!(
        "building libphoton.so: cargo build --release --lib --manifest-path {}",
        manifest.display()
    );
    let out = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "--lib",
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo build --release of the library failed ({})", out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines() {
        if !line.contains("\"reason\":\"compiler-artifact\"") || !line.contains("\"name\":\"photon\"") {
            continue;
        }
        let Some(start) = line.find("\"filenames\":[") else {
            continue;
        };
        let rest = &line[start + "\"filenames\":[".len()..];
        let list = &rest[..rest.find(']').unwrap_or(rest.len())];
        for f in list.split(',') {
            let f = f.trim().trim_matches('"');
            if f.ends_with("/libphoton.so") {
                return Ok(PathBuf::from(f));
            }
        }
    }
    Err("cargo build of the library produced no libphoton.so (is crate-type cdylib still set?)".into())
}

/// `libphoton_preload.so`, the LD_PRELOAD shim, beside the `libphoton.so`
/// that [`build_libphoton`] returned: the root workspace's default members
/// include `preload/`, so the same `cargo build --release --lib` builds both
/// into one directory, where the shim finds `libphoton.so.0` through its
/// `$ORIGIN` run path. Checks that both files are there.
pub fn preload_beside(libphoton: &Path) -> Result<PathBuf, String> {
    let dir = libphoton.parent().ok_or("libphoton.so has no directory")?;
    let shim = dir.join("libphoton_preload.so");
    if !shim.is_file() {
        return Err(format!(
            "no {} beside libphoton.so (build it: cargo build --release in {})",
            shim.display(),
            root_dir().display()
        ));
    }
    let soname = dir.join("libphoton.so.0");
    if !soname.exists() {
        return Err(format!(
            "no {} (the shim loads libphoton.so.0 from its own directory)",
            soname.display()
        ));
    }
    Ok(shim)
}

/// Where the helper programs are built (bench/target/cbin).
pub fn cbin_dir() -> PathBuf {
    bench_dir().join("target").join("cbin")
}

fn split_args(joined: &str) -> Vec<String> {
    joined
        .split('\x1f')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Compiles `bench/c/<src>` into `bench/target/cbin/<name>`, warnings as
/// errors, with the compiler and flags the `cc` crate found at build time.
/// With `libphoton = Some(path of libphoton.so)` it links against it (with an
/// rpath) and includes the library's include/photon.h.
pub fn compile(src: &str, name: &str, libphoton: Option<&Path>, extra_libs: &[&str]) -> Result<PathBuf, String> {
    compile_in(src, &cbin_dir().join(name), &root_dir(), libphoton, extra_libs)
}

/// [`compile`] into the file `out`, with the header of the libphoton tree at
/// `root` (`files --lib-root` measures another tree).
pub fn compile_in(
    src: &str,
    out: &Path,
    root: &Path,
    libphoton: Option<&Path>,
    extra_libs: &[&str],
) -> Result<PathBuf, String> {
    let cpp = src.ends_with(".cpp");
    let (compiler, args) = if cpp {
        (env!("BENCH_CXX"), split_args(env!("BENCH_CXX_ARGS")))
    } else {
        (env!("BENCH_CC"), split_args(env!("BENCH_CC_ARGS")))
    };
    let out_dir = out.parent().ok_or("output has no directory")?;
    std::fs::create_dir_all(out_dir).map_err(|e| format!("mkdir {}: {e}", out_dir.display()))?;
    let mut cmd = Command::new(compiler);
    cmd.args(&args);
    cmd.args(if cpp { ["-std=c++14"] } else { ["-std=c11"] });
    cmd.args(["-O2", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-pthread"]);
    cmd.arg("-I").arg(bench_dir().join("c"));
    if libphoton.is_some() {
        cmd.arg("-I").arg(root.join("include"));
    }
    cmd.arg(bench_dir().join("c").join(src)).arg("-o").arg(out);
    if let Some(so) = libphoton {
        let dir = so.parent().ok_or("libphoton.so has no directory")?;
        cmd.arg(format!("-L{}", dir.display()));
        cmd.arg(format!("-Wl,-rpath,{}", dir.display()));
        cmd.arg("-lphoton");
    }
    cmd.args(extra_libs);
    let o = cmd.output().map_err(|e| format!("cannot run {compiler}: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "compiling {src} failed ({}):\n{:?}\n{}{}",
            o.status,
            cmd,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(out.to_path_buf())
}

// ---------------------------------------------------------------- children

/// What one child run printed.
#[derive(Debug, Default, Clone)]
pub struct Output {
    pub fields: BTreeMap<String, String>,
    pub info: Vec<String>,
    pub notes: Vec<String>,
}

impl Output {
    pub fn num(&self, key: &str) -> Result<f64, String> {
        let v = self
            .fields
            .get(key)
            .ok_or_else(|| format!("RESULT line has no {key}="))?;
        let x: f64 = v.parse().map_err(|_| format!("RESULT {key}={v} is not a number"))?;
        if x.is_finite() {
            Ok(x)
        } else {
            Err(format!("RESULT {key}={v} is not finite"))
        }
    }
}

fn pipe_reader<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut r) = r {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            s = String::from_utf8_lossy(&buf).into_owned();
        }
        s
    })
}

/// Reads a pipe to its end on a thread.
pub fn drain<R: Read + Send + 'static>(r: R) -> std::thread::JoinHandle<String> {
    pipe_reader(Some(r))
}

/// "exit status N" or "killed by signal N".
pub fn describe_status(st: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "ended".into(),
    }
}

/// Waits for `child` at most `timeout`; None if it is still running.
pub fn wait_timeout(child: &mut std::process::Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + timeout;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `sig` to our own child `child` (by its pid, not yet reaped).
pub fn signal(child: &std::process::Child, sig: i32) {
    // SAFETY: kill() on our own child's pid; the child is not yet reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

/// The last `n` lines of `s`, joined for an indented error message.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n    ")
}

/// Runs `cmd` to completion (killing it after `timeout`) and returns its
/// stdout and stderr; a failure to start, a timeout or a non-zero exit is an
/// Err carrying the command and its output.
pub fn run_capture(mut cmd: Command, timeout: Duration) -> Result<(String, String), String> {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {desc}: {e}"))?;
    let out_t = pipe_reader(child.stdout.take());
    let err_t = pipe_reader(child.stderr.take());
    let status = match wait_timeout(&mut child, timeout) {
        Some(st) => Ok(st),
        None => {
            let _ = child.kill(); // this child only, by its pid
            let _ = child.wait();
            Err(format!("timed out after {} s", timeout.as_secs()))
        }
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    let fail = |why: String| {
        let mut m = format!("{desc}: {why}");
        for l in stdout.lines().chain(stderr.lines()).take(40) {
            let _ = write!(m, "\n    | {l}");
        }
        m
    };
    match status {
        Ok(st) if st.success() => Ok((stdout, stderr)),
        Ok(st) => Err(fail(format!("exited with {st}"))),
        Err(e) => Err(fail(e)),
    }
}

/// Runs `cmd` to completion (killing it after `timeout`) and parses its
/// output; any failure becomes an Err carrying the child's stderr.
pub fn run_child(cmd: Command, timeout: Duration) -> Result<Output, String> {
    let desc = format!("{cmd:?}");
    let (stdout, stderr) = run_capture(cmd, timeout)?;
    let fail = |why: String| {
        let mut m = format!("{desc}: {why}");
        for l in stdout.lines().chain(stderr.lines()).take(40) {
            let _ = write!(m, "\n    | {l}");
        }
        m
    };
    let mut o = Output::default();
    let mut results = 0;
    for l in stdout.lines() {
        if let Some(r) = l.strip_prefix("RESULT ") {
            results += 1;
            for kv in r.split_whitespace() {
                if let Some((k, v)) = kv.split_once('=') {
                    o.fields.insert(k.to_string(), v.to_string());
                }
            }
        } else if let Some(i) = l.strip_prefix("INFO ") {
            o.info.push(i.to_string());
        } else if let Some(n) = l.strip_prefix("NOTE ") {
            o.notes.push(n.to_string());
        }
    }
    if results != 1 {
        return Err(fail(format!("printed {results} RESULT lines, expected 1")));
    }
    Ok(o)
}

/// One step of xorshift64 (Marsaglia's 13/7/17): advances `x` (never 0)
/// and returns it. The benchmarks' cheap deterministic stream of offsets
/// and fill bytes; `bench/c/pread_nowait.c` makes the same sequence.
pub fn xorshift64(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

// -------------------------------------------------------------- statistics

/// The figures of one contender over the repetitions, or its error.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub values: Vec<f64>,
    pub error: Option<String>,
}

impl Series {
    pub fn ok(&self) -> bool {
        self.error.is_none() && !self.values.is_empty()
    }
    pub fn median(&self) -> f64 {
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            f64::NAN
        } else if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }
    pub fn min(&self) -> f64 {
        self.values.iter().copied().fold(f64::INFINITY, f64::min)
    }
    pub fn max(&self) -> f64 {
        self.values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }
}

/// Ratio of medians a/b, if both series are good.
pub fn ratio(a: &Series, b: &Series) -> Option<f64> {
    (a.ok() && b.ok()).then(|| a.median() / b.median())
}

/// Series of per-rep values `f(a[i], b[i])` (both series from the same
/// reps): e.g. each rep's own ratio to the baseline run of that rep.
pub fn paired(a: &Series, b: &Series, f: impl Fn(f64, f64) -> f64) -> Series {
    if !(a.ok() && b.ok()) || a.values.len() != b.values.len() {
        return Series {
            values: Vec::new(),
            error: Some("n/a".into()),
        };
    }
    Series {
        values: a.values.iter().zip(&b.values).map(|(x, y)| f(*x, *y)).collect(),
        error: None,
    }
}

/// The median with `digits` decimals and `suffix`, or ERROR.
pub fn cell_fixed(s: &Series, digits: usize, suffix: &str) -> String {
    if s.ok() {
        format!("{:.digits$}{suffix}", s.median())
    } else {
        "ERROR".into()
    }
}

/// Formats a number with about 3-4 significant digits and thousands separators.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let digits = if x.abs() >= 1000.0 {
        0
    } else if x.abs() >= 100.0 {
        1
    } else if x.abs() >= 10.0 {
        2
    } else {
        3
    };
    let s = format!("{x:.digits$}");
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i.to_string(), format!(".{f}")),
        None => (s.clone(), String::new()),
    };
    let (sign, int) = int.strip_prefix('-').map(|i| ("-", i.to_string())).unwrap_or(("", int));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}{frac}")
}

/// "median" cell.
pub fn cell_median(s: &Series) -> String {
    if s.ok() { fmt_num(s.median()) } else { "ERROR".into() }
}

/// "min - max" cell.
pub fn cell_range(s: &Series) -> String {
    if s.ok() {
        format!("{} - {}", fmt_num(s.min()), fmt_num(s.max()))
    } else {
        "ERROR".into()
    }
}

/// Ratio of medians a/b as "1.23x".
pub fn cell_ratio(a: &Series, b: &Series) -> String {
    if a.ok() && b.ok() {
        format!("{:.2}x", a.median() / b.median())
    } else {
        "n/a".into()
    }
}

/// Prints a markdown table with aligned columns.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::from("|");
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i] - c.chars().count();
            if i == 0 {
                let _ = write!(s, " {c}{} |", " ".repeat(pad));
            } else {
                let _ = write!(s, " {}{c} |", " ".repeat(pad));
            }
        }
        println!("{s}");
    };
    line(header.iter().map(|h| h.to_string()).collect());
    let mut sep = String::from("|");
    for (i, wi) in w.iter().enumerate() {
        if i == 0 {
            let _ = write!(sep, "{}|", "-".repeat(wi + 2));
        } else {
            let _ = write!(sep, "{}:|", "-".repeat(wi + 1));
        }
    }
    println!("{sep}");
    for r in rows {
        line(r.clone());
    }
}
