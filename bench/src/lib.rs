//! Shared plumbing of libphoton's benchmark programs (see README.md and
//! the team's benchmarking guide BENCH.md): machine description, CPU pinning, calibration of
//! ~1 s runs, building libphoton.so and the C/C++ helper programs, running
//! each measurement as a child process, statistics and tables.
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
    Ok(cpu)
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

/// Prints the machine, kernel and toolchain block every benchmark starts with.
pub fn print_header(title: &str, pinned: usize) {
    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let before = allowed_cpus_before_pin();
    println!("# {title}");
    println!();
    println!(
        "machine: {}, nproc {} (CPUs online: {online}, allowed: {before:?})",
        cpu_model(),
        before.len()
    );
    println!("kernel:  {}", kernel_release());
    println!("pinned:  every contender runs on CPU {pinned} only (sched_setaffinity, inherited)");
    println!("rustc:   {}", tool_version("rustc"));
    println!("cc:      {}", tool_version(env!("BENCH_CC")));
    println!("libphoton: git {} of {}", git_revision(), root_dir().display());
}

static BEFORE_PIN: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();

/// Records the affinity before pinning (for the header).
pub fn remember_affinity() {
    let _ = BEFORE_PIN.set(allowed_cpus());
}

fn allowed_cpus_before_pin() -> Vec<usize> {
    BEFORE_PIN.get().cloned().unwrap_or_default()
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
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = root_dir().join("Cargo.toml");
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
    let cpp = src.ends_with(".cpp");
    let (compiler, args) = if cpp {
        (env!("BENCH_CXX"), split_args(env!("BENCH_CXX_ARGS")))
    } else {
        (env!("BENCH_CC"), split_args(env!("BENCH_CC_ARGS")))
    };
    let out_dir = cbin_dir();
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("mkdir {}: {e}", out_dir.display()))?;
    let out = out_dir.join(name);
    let mut cmd = Command::new(compiler);
    cmd.args(&args);
    cmd.args(if cpp { ["-std=c++14"] } else { ["-std=c11"] });
    cmd.args(["-O2", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-pthread"]);
    cmd.arg("-I").arg(bench_dir().join("c"));
    if libphoton.is_some() {
        cmd.arg("-I").arg(root_dir().join("include"));
    }
    cmd.arg(bench_dir().join("c").join(src)).arg("-o").arg(&out);
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
    Ok(out)
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

/// Runs `cmd` to completion (killing it after `timeout`) and parses its
/// output; any failure becomes an Err carrying the child's stderr.
pub fn run_child(mut cmd: Command, timeout: Duration) -> Result<Output, String> {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {desc}: {e}"))?;
    let out_t = pipe_reader(child.stdout.take());
    let err_t = pipe_reader(child.stderr.take());
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Ok(st),
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill(); // this child only, by its pid
                let _ = child.wait();
                break Err(format!("timed out after {} s", timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => break Err(format!("wait: {e}")),
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
    let status = status.map_err(fail)?;
    if !status.success() {
        return Err(fail(format!("exited with {status}")));
    }
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
