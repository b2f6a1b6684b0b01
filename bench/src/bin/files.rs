//! Benchmark of libphoton's file I/O against fio and OS threads, side by
//! side in one run (see bench/README.md and the team's benchmarking guide BENCH.md).
//!
//!   cargo run --release --bin files -- [--reps 5] [--secs 3] [--warmup 0.5]
//!       [--depths 1,16,64] [--only randread,write] [--dir /var/tmp/photon-bench]
//!       [--write-mib 2048] [--verbose]
//!
//! Tables:
//! - 4 KiB random reads of a 1 GiB file, O_DIRECT and buffered (from the page
//!   cache: the file is read once beforehand and its residency checked), at
//!   1, 16 and 64 in flight: libphoton on one vcpu with N photon threads
//!   (io_uring engine; epoll engine, whose file calls run on the offload
//!   pool), fio `--ioengine=io_uring --iodepth=N --rw=randread --bs=4k
//!   --direct=0/1`, and N OS threads calling pread(2) (bench/c/files_pthreads.c).
//!   The buffered tables add one OS thread's plain pread loop (the target's
//!   bar) and the same loop calling preadv2(RWF_NOWAIT), libphoton's call
//!   for a buffered read: the most that a read that never blocks reaches.
//!   The O_DIRECT tables also show each contender's mean reads in flight at
//!   the block device ([`InflightSampler`]).
//! - sequential 1 MiB writes of a new file, fsync at the end (MB/s):
//!   libphoton (both engines), fio `--ioengine=io_uring --rw=write --bs=1m
//!   --end_fsync=1`, one OS thread calling pwrite(2).
//!
//! Every contender is a child process pinned (by inheritance) to the same one
//! CPU; runs are interleaved rep-major (for rep { for case { for contender
//! { one run } } }); each table shows median, range and ratios of medians.
//! Exits non-zero if any run failed (a short read, a wrong block, a fio
//! error, a timeout, ...): no figure is printed for a failed contender.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use photon_bench::*;

const GIB: u64 = 1 << 30;
const MIB: usize = 1 << 20;
const BLOCK: usize = 4096;
/// The buffered tables' bar beyond depth 1 (at depth 1 it is the row of one
/// OS thread calling pread).
const PREAD_LOOP: &str = "1 OS thread calling pread (plain loop)";
/// The buffered tables' row of a one-thread `preadv2(RWF_NOWAIT)` loop.
const NOWAIT_LOOP: &str = "1 OS thread calling preadv2(RWF_NOWAIT) (plain loop)";
/// Must match FILES_STAMP in bench/c/files_common.h.
const STAMP_XOR: u64 = 0x50484F544F4E0000;

// ------------------------------------------------------------------ options

struct Opts {
    c: Common,
    warmup: f64,
    depths: Vec<usize>,
    dir: PathBuf,
    write_mib: u64,
    /// Another libphoton source tree to build and measure (default: this repository).
    lib_root: Option<PathBuf>,
}

const USAGE: &str = "usage: files [--reps N] [--secs S] [--warmup S] [--depths 1,16,64] \
                     [--only randread,write] [--dir DIR] [--write-mib N] [--lib-root DIR] [--quiet-wait S] [--verbose]";

fn parse_opts(args: &mut Args) -> Result<Opts, String> {
    let mut o = Opts {
        c: Common::new(5, 3.0, &["randread", "write"]),
        warmup: 0.5,
        depths: vec![1, 16, 64],
        dir: PathBuf::from("/var/tmp/photon-bench"),
        write_mib: 2048,
        lib_root: None,
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--warmup" => o.warmup = args.value(&a)?,
            "--depths" => {
                o.depths = args
                    .list(&a)?
                    .iter()
                    .map(|d| d.parse::<usize>().map_err(|_| format!("bad depth {d}")))
                    .collect::<Result<_, _>>()?
            }
            "--dir" => o.dir = PathBuf::from(args.string(&a)?),
            "--write-mib" => o.write_mib = args.value(&a)?,
            "--lib-root" => o.lib_root = Some(PathBuf::from(args.string(&a)?)),
            _ => o.c.take(&a, args)?,
        }
    }
    o.c.check()?;
    if !(o.warmup.is_finite() && o.warmup >= 0.0) || o.write_mib == 0 {
        return Err("--write-mib must be > 0, --warmup >= 0".into());
    }
    if o.depths.is_empty() || o.depths.iter().any(|&d| d == 0 || d > 1024) {
        return Err("--depths: each in 1..=1024".into());
    }
    Ok(o)
}

// ---------------------------------------------------------------- the files

fn stamp(block: u64) -> u64 {
    block ^ STAMP_XOR
}

/// Fills `buf` (whole 4 KiB blocks, starting at block `first`) with the
/// stamped contents the readers check; the rest of each block is varied
/// bytes so that nothing about the file is special (no holes, no zeros).
fn fill_blocks(buf: &mut [u8], first: u64) {
    for (i, b) in buf.chunks_mut(BLOCK).enumerate() {
        let n = first + i as u64;
        b[..8].copy_from_slice(&stamp(n).to_le_bytes());
        let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for w in b[8..].chunks_mut(8) {
            w.copy_from_slice(&xorshift64(&mut x).to_le_bytes()[..w.len()]);
        }
    }
}

/// True if `path` is the 1 GiB data file (size and a sample of stamps).
fn data_file_ok(path: &Path) -> bool {
    let Ok(f) = File::open(path) else { return false };
    if f.metadata().map(|m| m.len()).unwrap_or(0) != GIB {
        return false;
    }
    let blocks = GIB / BLOCK as u64;
    let mut buf = [0u8; 8];
    for b in [0, 1, blocks / 3, blocks / 2, blocks - 1] {
        use std::os::unix::fs::FileExt;
        if f.read_exact_at(&mut buf, b * BLOCK as u64).is_err() || u64::from_le_bytes(buf) != stamp(b) {
            return false;
        }
    }
    true
}

/// Creates the 1 GiB data file unless a valid one is there. Returns what it did.
fn ensure_data_file(path: &Path) -> Result<String, String> {
    if data_file_ok(path) {
        return Ok("reused (already there, size and stamps checked)".into());
    }
    eprintln!("creating the 1 GiB data file {} ...", path.display());
    let tmp = path.with_extension("tmp");
    let t = Instant::now();
    let mut f = File::create(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
    let mut buf = vec![0u8; 8 * MIB];
    let per = (buf.len() / BLOCK) as u64;
    for chunk in 0..(GIB / buf.len() as u64) {
        fill_blocks(&mut buf, chunk * per);
        f.write_all(&buf).map_err(|e| format!("write {}: {e}", tmp.display()))?;
    }
    f.sync_all().map_err(|e| format!("fsync {}: {e}", tmp.display()))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| format!("rename to {}: {e}", path.display()))?;
    if !data_file_ok(path) {
        return Err(format!("{} does not check out right after writing it", path.display()));
    }
    Ok(format!("created by this run in {:.1} s", t.elapsed().as_secs_f64()))
}

/// Fraction of `path`'s pages in the page cache (mmap + mincore).
fn residency(path: &Path) -> Result<f64, String> {
    let f = File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let len = f.metadata().map_err(|e| e.to_string())?.len() as usize;
    use std::os::fd::AsRawFd;
    // SAFETY: a read-only shared mapping of a file we hold open, unmapped below;
    // mincore writes one byte per page into a vector of that many bytes.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        if p == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        let pages = len.div_ceil(4096);
        let mut v = vec![0u8; pages];
        let r = libc::mincore(p, len, v.as_mut_ptr());
        let err = std::io::Error::last_os_error();
        libc::munmap(p, len);
        if r != 0 {
            return Err(format!("mincore: {err}"));
        }
        Ok(v.iter().filter(|&&b| b & 1 != 0).count() as f64 / pages as f64)
    }
}

/// Reads the whole file (buffered) so that it sits in the page cache, and
/// checks that it does. A machine's own housekeeping may drop the page
/// cache (`/proc/sys/vm/drop_caches`; seen once on a VM of this kind, in
/// the middle of a run), so a short residency is read again, up to three
/// times, before it fails the row.
fn warm_page_cache(path: &Path) -> Result<f64, String> {
    let mut buf = vec![0u8; 4 * MIB];
    let mut r = 0.0;
    for attempt in 1..=3 {
        let mut f = File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
        while f.read(&mut buf).map_err(|e| format!("read {}: {e}", path.display()))? > 0 {}
        r = residency(path)?;
        if r >= 0.99 {
            return Ok(r);
        }
        eprintln!(
            "files: only {:.1}% of {} in the page cache after reading it (attempt {attempt} of 3)",
            r * 100.0,
            path.display()
        );
    }
    Err(format!(
        "only {:.1}% of {} stays in the page cache after reading it three times: buffered figures would not be page-cache figures",
        r * 100.0,
        path.display()
    ))
}

/// "ext4 on /dev/vda" for the filesystem holding `dir`.
fn describe_fs(dir: &Path) -> String {
    let out = Command::new("findmnt")
        .args(["-n", "-o", "FSTYPE,SOURCE", "--target"])
        .arg(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match out {
        Some(s) if !s.is_empty() => {
            let mut p = s.split_whitespace();
            let fstype = p.next().unwrap_or("?");
            let src = p.next().unwrap_or("?");
            format!("{fstype} on {src}")
        }
        _ => "unknown filesystem".into(),
    }
}

fn o_direct_ok(path: &Path) -> Result<(), String> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map(drop)
        .map_err(|e| {
            format!(
                "O_DIRECT open of {}: {e} (this filesystem has no O_DIRECT?)",
                path.display()
            )
        })
}

/// The sysfs `inflight` file of the block device holding `path`
/// (`/sys/dev/block/MAJ:MIN/inflight`: reads and writes the device has
/// been handed and not finished), if the file system sits on one.
fn inflight_file(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dev = fs::metadata(path).ok()?.dev();
    let f = PathBuf::from(format!(
        "/sys/dev/block/{}:{}/inflight",
        libc::major(dev),
        libc::minor(dev)
    ));
    f.exists().then_some(f)
}

/// Samples a device's reads in flight every millisecond, on a thread of
/// its own (on a CPU other than the contenders' when there is one),
/// within a window of a run: the mean shows whether a contender keeps the
/// device's queue as full as its depth asks (Little's law: IOPS = in
/// flight / latency), which tells a slower disk from a runtime that lets
/// the queue run dry.
struct InflightSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Option<f64>>,
}

impl InflightSampler {
    /// Starts sampling `file` between `from` and `until` after now.
    fn start(file: &Path, cpu: Option<usize>, from: Duration, until: Duration) -> Result<InflightSampler, String> {
        let f = File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let t0 = Instant::now();
        let thread = std::thread::spawn(move || {
            if let Some(c) = cpu {
                let _ = pin_self(c);
            }
            let (mut sum, mut n) = (0u64, 0u64);
            let mut buf = [0u8; 64];
            while !stopped.load(Ordering::Relaxed) {
                let t = t0.elapsed();
                if t >= until {
                    break;
                }
                if t >= from {
                    use std::os::unix::fs::FileExt;
                    // sysfs gives the whole value at offset 0 each time
                    let got = f.read_at(&mut buf, 0).unwrap_or(0);
                    let reads = std::str::from_utf8(&buf[..got])
                        .ok()
                        .and_then(|s| s.split_whitespace().next())
                        .and_then(|v| v.parse::<u64>().ok());
                    if let Some(r) = reads {
                        sum += r;
                        n += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            (n > 0).then(|| sum as f64 / n as f64)
        });
        Ok(InflightSampler { stop, thread })
    }

    /// The mean reads in flight over the window (None: no sample in it).
    fn finish(self) -> Option<f64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().ok().flatten()
    }
}

// ------------------------------------------------------------- running runs

/// How one contender is run and read.
enum How {
    /// A bench/c program speaking the RESULT protocol.
    Child(Box<dyn Fn() -> Command>),
    /// fio with JSON output; the section ("read" or "write") to read, and
    /// its --ramp_time in seconds.
    Fio(Box<dyn Fn() -> Command>, &'static str, f64),
}

/// A bench/c program run as `prog args` with `env` set in its environment.
fn child(prog: &Path, args: Vec<String>, env: Vec<(&'static str, &'static str)>) -> How {
    let prog = prog.to_path_buf();
    How::Child(Box::new(move || {
        let mut c = Command::new(&prog);
        c.args(&args).envs(env.iter().copied());
        c
    }))
}

struct Contender {
    label: String,
    how: How,
    /// Removed before each run (the write benchmark's output file).
    fresh_file: Option<PathBuf>,
}

/// One run's figures: the main value (IOPS or MB/s) and CPU per I/O.
struct Figures {
    value: f64,
    cpu_us: f64,
    info: Vec<String>,
    /// Mean reads in flight at the device (tables that sample it).
    inflight: Option<f64>,
}

/// The number after `"key" :` that follows `anchor` in fio's JSON.
fn json_num(text: &str, anchor: &str, key: &str) -> Result<f64, String> {
    let from = text.find(anchor).ok_or_else(|| format!("fio JSON has no {anchor}"))?;
    let rest = &text[from..];
    let pat = format!("\"{key}\" :");
    let at = rest
        .find(&pat)
        .ok_or_else(|| format!("fio JSON has no {key} after {anchor}"))?;
    let num: String = rest[at + pat.len()..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+'))
        .collect();
    num.parse::<f64>()
        .map_err(|_| format!("fio JSON {key} = {num:?} is not a number"))
}

/// User + system CPU seconds of this process's reaped children (and theirs).
fn children_cpu_s() -> f64 {
    // SAFETY: getrusage fills a caller-owned struct.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) != 0 {
            return f64::NAN;
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }
}

/// fio's figures. fio's own usr_cpu/sys_cpu count only its job thread (not
/// the io_uring workers doing buffered writes for it), so the CPU figure is
/// the whole fio process tree's (`cpu_s`, measured by the caller around the
/// run) scaled by runtime / (ramp + runtime): an approximation that also
/// counts fio's start-up, unlike the C programs' in-window figure.
fn parse_fio(stdout: &str, section: &str, cpu_s: f64, ramp_s: f64) -> Result<Figures, String> {
    let json = &stdout[stdout.find('{').ok_or("fio printed no JSON")?..];
    let err = json_num(json, "\"jobs\"", "error")?;
    if err != 0.0 {
        return Err(format!("fio job error {err}"));
    }
    let anchor = format!("\"{section}\" : {{");
    let ios = json_num(json, &anchor, "total_ios")?;
    let bytes = json_num(json, &anchor, "io_bytes")?;
    let job_ms = json_num(json, "\"jobs\"", "job_runtime")?;
    if ios <= 0.0 || job_ms <= 0.0 {
        return Err(format!("fio did no {section} I/O ({ios} I/Os in {job_ms} ms)"));
    }
    let run_s = job_ms / 1000.0;
    let cpu_s = cpu_s * run_s / (run_s + ramp_s);
    let info = vec![format!(
        "fio: {ios} I/Os, {bytes} bytes, job_runtime {job_ms} ms, process tree CPU {cpu_s:.3} s"
    )];
    if section == "read" {
        let iops = json_num(json, &anchor, "iops")?;
        // the read section's runtime excludes the ramp; so does total_ios
        Ok(Figures {
            value: iops,
            cpu_us: cpu_s * 1e6 / ios,
            info,
            inflight: None,
        })
    } else {
        // job_runtime includes the end_fsync (checked: it grows by the fsync's time)
        let mbps = bytes / (job_ms / 1000.0) / 1e6;
        Ok(Figures {
            value: mbps,
            cpu_us: cpu_s * 1e6 / (bytes / MIB as f64),
            info,
            inflight: None,
        })
    }
}

fn run_one(c: &Contender, timeout: Duration) -> Result<Figures, String> {
    if let Some(p) = &c.fresh_file {
        match fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("remove {}: {e}", p.display())),
        }
    }
    match &c.how {
        How::Child(cmd) => {
            let o = run_child(cmd(), timeout)?;
            let key = if o.fields.contains_key("iops") { "iops" } else { "mbps" };
            Ok(Figures {
                value: o.num(key)?,
                cpu_us: o.num("cpu_us")?,
                info: o.info,
                inflight: None,
            })
        }
        How::Fio(cmd, section, ramp) => {
            let c0 = children_cpu_s();
            let (stdout, _) = run_capture(cmd(), timeout)?;
            parse_fio(&stdout, section, children_cpu_s() - c0, *ramp)
        }
    }
}

/// The figures of one table: per contender, values and CPU per I/O.
struct TableData {
    title: String,
    contenders: Vec<Contender>,
    value: Vec<Series>,
    cpu: Vec<Series>,
    /// Mean device reads in flight per contender (filled for tables with `sample`).
    inflight: Vec<Series>,
    /// Run before each rep's round of this table (warming the page cache).
    before: Option<PathBuf>,
    /// The device `inflight` file sampled during each run ([`InflightSampler`]).
    sample: Option<PathBuf>,
}

/// Where and when [`run_all`] samples a device's queue: the sampler's CPU,
/// and the window after a run's start (past its warm-up, before its end).
struct SampleAt {
    cpu: Option<usize>,
    from: Duration,
    until: Duration,
}

/// Runs every table's contenders, interleaved: for rep { for table { for
/// contender { one run } } }, warming the page cache before a table that
/// asks for it.
fn run_all(runner: &mut Runner, tables: &mut [TableData], reps: usize, timeout: Duration, at: &SampleAt) {
    let flat: Vec<(usize, usize)> = tables
        .iter()
        .enumerate()
        .flat_map(|(ti, t)| (0..t.contenders.len()).map(move |ci| (ti, ci)))
        .collect();
    let labels: Vec<String> = flat
        .iter()
        .map(|&(ti, ci)| {
            let t = &tables[ti];
            format!(
                "{} | {}",
                t.title.split(':').next().unwrap_or(""),
                t.contenders[ci].label
            )
        })
        .collect();
    let verbose = runner.verbose;
    let mut warmed = None;
    let rows = runner.interleave(
        "files",
        &labels,
        reps,
        |i, rep| {
            let (ti, ci) = flat[i];
            let t = &tables[ti];
            if let Some(p) = &t.before
                && warmed != Some((rep, ti))
            {
                let r = warm_page_cache(p)?;
                warmed = Some((rep, ti));
                if verbose {
                    eprintln!("[{}] page cache holds {:.1}% of {}", t.title, r * 100.0, p.display())
                }
            }
            // A diagnostic: a sampler that cannot start leaves its cell n/a,
            // not the run failed.
            let sampler = t.sample.as_ref().and_then(|file| {
                InflightSampler::start(file, at.cpu, at.from, at.until)
                    .map_err(|e| eprintln!("[files] device queue not sampled: {e}"))
                    .ok()
            });
            let mut f = run_one(&t.contenders[ci], timeout);
            if let (Some(s), Ok(f)) = (sampler, f.as_mut()) {
                f.inflight = s.finish();
            }
            let f = f?;
            if verbose {
                for i in &f.info {
                    eprintln!("    {i}");
                }
            }
            Ok(f)
        },
        |f| format!("{} (CPU {} us per I/O or MiB)", fmt_num(f.value), fmt_num(f.cpu_us)),
    );
    for (&(ti, ci), row) in flat.iter().zip(&rows) {
        tables[ti].value[ci] = row.series(|f| f.value);
        tables[ti].cpu[ci] = row.series(|f| f.cpu_us);
        if tables[ti].sample.is_some() {
            tables[ti].inflight[ci] = row.series(|f| f.inflight.unwrap_or(f64::NAN));
        }
    }
}

/// The median of the per-rep ratios a / b, as information beside a ratio
/// of medians: the contenders of one rep run one after the other, so each
/// rep's own ratio is free of the drift between reps (this VM's disk swings
/// by 2x over minutes), which the medians taken apart are not.
fn paired_note(a: &Series, b: &Series) -> String {
    let p = paired(a, b, |x, y| x / y);
    if p.ok() && p.values.len() > 1 {
        format!(" (median of the per-rep ratios: {:.2}x)", p.median())
    } else {
        String::new()
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn print_data(t: &TableData, unit: &str, cpu_unit: &str) {
    println!("## {}", t.title);
    println!();
    let (io, ep) = (&t.value[0], &t.value[1]);
    let sampled = t.sample.is_some();
    let rows: Vec<Vec<String>> = t
        .contenders
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut row = vec![
                c.label.clone(),
                cell_median(&t.value[i]),
                cell_range(&t.value[i]),
                cell_median(&t.cpu[i]),
                cell_ratio(io, &t.value[i]),
                cell_ratio(ep, &t.value[i]),
            ];
            if sampled {
                row.push(cell_median(&t.inflight[i]));
            }
            row
        })
        .collect();
    let mut header = vec![
        "contender".to_string(),
        format!("median {unit}"),
        format!("range {unit}"),
        cpu_unit.to_string(),
        "io_uring / row".to_string(),
        "epoll / row".to_string(),
    ];
    if sampled {
        header.push("device reads in flight".to_string());
    }
    print_table(&header.iter().map(String::as_str).collect::<Vec<_>>(), &rows);
    println!();
}

fn main() -> ExitCode {
    let o = parse_or_exit(USAGE, parse_opts);
    remember_affinity();
    let cpu = match pin_to_one_cpu() {
        Ok(c) => c,
        Err(e) => return fatal(e),
    };

    // Everything that can fail before measuring: fatal.
    let setup = (|| -> Result<_, String> {
        let fio_version = tool_version("fio");
        if !fio_version.starts_with("fio-") {
            return Err("fio not found: install it (Debian: apt-get install fio)".into());
        }
        let (so, p_photon) = match &o.lib_root {
            None => {
                let so = build_libphoton()?;
                let p = compile("files_photon.c", "files_photon", Some(&so), &[])?;
                (so, p)
            }
            Some(root) => {
                let so = build_libphoton_at(root)?;
                let out = cbin_dir().join("lib-root").join("files_photon");
                let p = compile_in("files_photon.c", &out, root, Some(&so), &[])?;
                (so, p)
            }
        };
        let p_threads = compile("files_pthreads.c", "files_pthreads", None, &[])?;
        fs::create_dir_all(&o.dir).map_err(|e| format!("mkdir {}: {e}", o.dir.display()))?;
        let data = o.dir.join("files-1g.dat");
        let how = ensure_data_file(&data)?;
        o_direct_ok(&data)?;
        Ok((fio_version, so, p_photon, p_threads, data, how))
    })();
    let (fio_version, so, p_photon, p_threads, data, data_how) = match setup {
        Ok(s) => s,
        Err(e) => return fatal(e),
    };
    let wfile = o.dir.join("files-write.dat");

    print_header("libphoton benchmark: files", &pinned_to(cpu));
    println!("fio:     {fio_version}");
    match &o.lib_root {
        None => println!("library: {}", so.display()),
        Some(r) => println!(
            "library: {} (built from the tree at {}, given by --lib-root)",
            so.display(),
            r.display()
        ),
    }
    println!(
        "data:    {} (1 GiB, every 4 KiB block stamped and checked by our readers), {}; {}",
        data.display(),
        describe_fs(&o.dir),
        data_how
    );
    println!(
        "method:  {} reps, rep-major interleaved (for rep {{ for table {{ for contender {{ one run }} }} }}), \
         each run {} s timed after {} s of warm-up, in its own process; median, min - max, ratio of medians",
        o.c.reps, o.c.secs, o.warmup
    );
    println!(
        "         one vcpu = one CPU: every contender (its helper threads, the offload pool, fio) is pinned to CPU {cpu}"
    );
    println!("         CPU us/IO: the contender's user+system CPU time (all its threads) per I/O in the timed window;");
    println!(
        "         for fio, its whole process tree's CPU (from the driver's RUSAGE_CHILDREN) scaled by runtime / (ramp + runtime)"
    );
    let device_queue = inflight_file(&data);
    let sample_at = SampleAt {
        cpu: spare_cpu(cpu),
        from: Duration::from_secs_f64(o.warmup + 0.25),
        until: Duration::from_secs_f64(o.warmup + (o.c.secs - 0.05).max(0.3)),
    };
    match &device_queue {
        Some(f) => println!(
            "         device reads in flight (O_DIRECT tables): mean of {} sampled every 1 ms from {:.2} s to {:.2} s \
             after a run's start, by a thread on {}; median of the reps",
            f.display(),
            sample_at.from.as_secs_f64(),
            sample_at.until.as_secs_f64(),
            sample_at.cpu.map_or("the same CPU".into(), |c| format!("CPU {c}"))
        ),
        None => println!("         device reads in flight: not sampled (the data's file system is on no block device)"),
    }
    println!();

    let secs = o.c.secs.to_string();
    let warm = o.warmup.to_string();
    let path = data.to_string_lossy().into_owned();
    let mut tables: Vec<TableData> = Vec::new();
    if o.c.want("randread") {
        for direct in [true, false] {
            for &n in &o.depths {
                let d = if direct { "1" } else { "0" };
                let threads_args: Vec<String> = vec![
                    "randread".into(),
                    path.clone(),
                    d.into(),
                    n.to_string(),
                    secs.clone(),
                    warm.clone(),
                ];
                let photon_env = |engine: &'static str, var: &'static str, val: &'static str| {
                    child(
                        &p_photon,
                        threads_args.clone(),
                        vec![("PHOTON_ENGINE", engine), (var, val)],
                    )
                };
                let fio_args: Vec<String> = vec![
                    "--name=randread".into(),
                    format!("--filename={path}"),
                    "--ioengine=io_uring".into(),
                    format!("--iodepth={n}"),
                    format!("--direct={d}"),
                    "--bs=4k".into(),
                    "--rw=randread".into(),
                    "--time_based".into(),
                    format!("--runtime={}ms", (o.c.secs * 1000.0) as u64),
                    format!("--ramp_time={}ms", (o.warmup * 1000.0) as u64),
                    "--norandommap".into(),
                    "--randrepeat=0".into(),
                    "--invalidate=0".into(),
                    "--output-format=json".into(),
                ];
                let photon = |engine: &'static str| photon_env(engine, "PHOTON_IO_OFF", "");
                let mut one_thread_args = threads_args.clone();
                one_thread_args[3] = "1".into();
                let mut contenders = vec![
                    Contender {
                        label: format!("libphoton io_uring, 1 vcpu, {n} photon thread{}", plural(n)),
                        how: photon("io_uring"),
                        fresh_file: None,
                    },
                    Contender {
                        label: format!(
                            "libphoton epoll + {}, 1 vcpu, {n} photon thread{}",
                            if direct { "kernel AIO" } else { "offload pool" },
                            plural(n)
                        ),
                        how: photon("epoll"),
                        fresh_file: None,
                    },
                    Contender {
                        label: format!("fio io_uring, iodepth={n}"),
                        how: How::Fio(
                            Box::new(move || {
                                let mut c = Command::new("fio");
                                c.args(&fio_args);
                                c
                            }),
                            "read",
                            o.warmup,
                        ),
                        fresh_file: None,
                    },
                    Contender {
                        label: format!("{n} OS thread{} calling pread", plural(n)),
                        how: child(&p_threads, threads_args.clone(), vec![]),
                        fresh_file: None,
                    },
                ];
                if !direct {
                    // A/B: ring reads only, no preadv2(RWF_NOWAIT) attempt on the vcpu first.
                    contenders.push(Contender {
                        label: format!("libphoton io_uring -cached_read, {n} photon thread{}", plural(n)),
                        how: photon_env("io_uring", "PHOTON_IO_OFF", "cached_read"),
                        fresh_file: None,
                    });
                    // A/B: reads made while other readers are ready go on the ring, the
                    // turn's reads in one io_uring_enter (opt-in: PHOTON_IO_ON=batched_read).
                    contenders.push(Contender {
                        label: format!("libphoton io_uring +batched_read, {n} photon thread{}", plural(n)),
                        how: photon_env("io_uring", "PHOTON_IO_ON", "batched_read"),
                        fresh_file: None,
                    });
                }
                if direct {
                    // A/B: O_DIRECT ring transfers submitted only at the scheduler turn's end.
                    contenders.push(Contender {
                        label: format!("libphoton io_uring -eager_direct, {n} photon thread{}", plural(n)),
                        how: photon_env("io_uring", "PHOTON_IO_OFF", "eager_direct"),
                        fresh_file: None,
                    });
                    // A/B: epoll's O_DIRECT reads on the offload pool's helper threads, not kernel AIO.
                    contenders.push(Contender {
                        label: format!("libphoton epoll -aio (offload pool), {n} photon thread{}", plural(n)),
                        how: photon_env("epoll", "PHOTON_IO_OFF", "aio"),
                        fresh_file: None,
                    });
                }
                if !direct && n > 1 {
                    // The bar for page-cache reads: one thread's plain pread loop.
                    contenders.push(Contender {
                        label: PREAD_LOOP.into(),
                        how: child(&p_threads, one_thread_args.clone(), vec![]),
                        fresh_file: None,
                    });
                }
                if !direct {
                    // The floor of a read that never blocks: the same one-thread
                    // loop making libphoton's call, preadv2(RWF_NOWAIT), with no
                    // library around it.
                    contenders.push(Contender {
                        label: NOWAIT_LOOP.into(),
                        how: child(
                            &p_threads,
                            one_thread_args.clone(),
                            vec![("FILES_READ", "preadv2_nowait")],
                        ),
                        fresh_file: None,
                    });
                }
                let k = contenders.len();
                tables.push(TableData {
                    title: format!(
                        "4 KiB random reads, {}, {n} in flight: IOPS (higher is better)",
                        if direct {
                            "O_DIRECT"
                        } else {
                            "buffered from the page cache"
                        }
                    ),
                    contenders,
                    value: (0..k).map(|_| Series::default()).collect(),
                    cpu: (0..k).map(|_| Series::default()).collect(),
                    inflight: (0..k).map(|_| Series::default()).collect(),
                    before: (!direct).then(|| data.clone()),
                    // a page-cache read never reaches the device
                    sample: if direct { device_queue.clone() } else { None },
                });
            }
        }
    }
    if o.c.want("write") {
        let wpath = wfile.to_string_lossy().into_owned();
        let mib = o.write_mib.to_string();
        let wargs = vec!["write".to_string(), wpath.clone(), mib.clone()];
        let photon = |engine: &'static str| child(&p_photon, wargs.clone(), vec![("PHOTON_ENGINE", engine)]);
        let fio_args: Vec<String> = vec![
            "--name=write".into(),
            format!("--filename={wpath}"),
            "--ioengine=io_uring".into(),
            "--rw=write".into(),
            "--bs=1m".into(),
            "--end_fsync=1".into(),
            format!("--size={}m", o.write_mib),
            "--output-format=json".into(),
        ];
        let contenders = vec![
            Contender {
                label: "libphoton io_uring, 1 photon thread".into(),
                how: photon("io_uring"),
                fresh_file: Some(wfile.clone()),
            },
            Contender {
                label: "libphoton epoll + offload pool, 1 photon thread".into(),
                how: photon("epoll"),
                fresh_file: Some(wfile.clone()),
            },
            Contender {
                label: "fio io_uring, --rw=write --bs=1m --end_fsync=1".into(),
                how: How::Fio(
                    Box::new(move || {
                        let mut c = Command::new("fio");
                        c.args(&fio_args);
                        c
                    }),
                    "write",
                    0.0,
                ),
                fresh_file: Some(wfile.clone()),
            },
            Contender {
                label: "1 OS thread calling pwrite".into(),
                how: child(&p_threads, wargs.clone(), vec![]),
                fresh_file: Some(wfile.clone()),
            },
        ];
        let k = contenders.len();
        tables.push(TableData {
            title: format!(
                "Sequential 1 MiB writes of a new {} MiB file, fsync at the end: MB/s including the fsync (higher is better)",
                o.write_mib
            ),
            contenders,
            value: (0..k).map(|_| Series::default()).collect(),
            cpu: (0..k).map(|_| Series::default()).collect(),
            inflight: (0..k).map(|_| Series::default()).collect(),
            before: None,
            sample: None,
        });
    }

    let timeout = Duration::from_secs_f64(120.0 + o.c.secs * 10.0 + o.warmup);
    let mut runner = Runner::new(&o.c);
    let t0 = Instant::now();
    run_all(&mut runner, &mut tables, o.c.reps, timeout, &sample_at);
    let load = runner.last_load.clone();
    let _ = fs::remove_file(&wfile);

    let mut targets = Vec::new();
    for t in &tables {
        let write = t.title.starts_with("Sequential");
        if write {
            print_data(t, "MB/s", "CPU us/MiB");
        } else {
            print_data(t, "IOPS", "CPU us/IO");
        }
        let (io, ep, fio, thr) = (&t.value[0], &t.value[1], &t.value[2], &t.value[3]);
        let short = t.title.split(':').next().unwrap_or("").to_string();
        if write {
            if let Some(x) = ratio(io, fio) {
                targets.push(format!("{short}: libphoton io_uring / fio = {x:.2}x (information)"));
            }
            if let Some(x) = ratio(ep, io) {
                targets.push(format!("{short}: epoll / io_uring = {x:.2}x (information)"));
            }
            continue;
        }
        if t.title.contains("O_DIRECT") {
            if let Some(x) = ratio(io, fio) {
                targets.push(format!(
                    "{short}: io_uring / fio = {x:.2}x (target >= 0.95x): {}{}",
                    verdict(x >= 0.95),
                    paired_note(io, fio)
                ));
            }
            if let Some(x) = ratio(io, thr) {
                targets.push(format!(
                    "{short}: io_uring / OS-thread pread = {x:.2}x (target >= 1.0x): {}",
                    verdict(x >= 1.0)
                ));
            }
        } else {
            // The bar: one OS thread's plain pread loop (its own row at
            // depth 1, the PREAD_LOOP row above that).
            let one = t.contenders.iter().position(|c| c.label == PREAD_LOOP).unwrap_or(3);
            if let Some(x) = ratio(io, &t.value[one]) {
                let cpu = ratio(&t.cpu[one], &t.cpu[0]).map_or(String::new(), |c| {
                    format!("; CPU per read: pread loop / io_uring = {c:.2}x")
                });
                targets.push(format!(
                    "{short}: io_uring / one-thread pread loop = {x:.2}x (target >= 1.0x): {}{cpu}{}",
                    verdict(x >= 1.0),
                    paired_note(io, &t.value[one])
                ));
            }
            // What the kernel's non-blocking read allows: the bare preadv2
            // loop against the pread loop, and libphoton against the former.
            if let Some(nw) = t.contenders.iter().position(|c| c.label == NOWAIT_LOOP) {
                if let Some(x) = ratio(&t.value[nw], &t.value[one]) {
                    targets.push(format!(
                        "{short}: one-thread preadv2(RWF_NOWAIT) loop / pread loop = {x:.2}x (information: the \
                         most a read that never blocks reaches){}",
                        paired_note(&t.value[nw], &t.value[one])
                    ));
                }
                if let Some(x) = ratio(io, &t.value[nw]) {
                    targets.push(format!(
                        "{short}: io_uring / one-thread preadv2(RWF_NOWAIT) loop = {x:.2}x (information: the \
                         library's own cost){}",
                        paired_note(io, &t.value[nw])
                    ));
                }
            }
        }
        if let Some(x) = ratio(ep, io) {
            targets.push(format!(
                "{short}: epoll offload / io_uring = {x:.2}x (target >= 0.7x): {}",
                verdict(x >= 0.7)
            ));
        }
    }
    println!(
        "CPU time over the whole run ({:.0} s): {load}",
        t0.elapsed().as_secs_f64()
    );
    println!();
    runner.finish(&targets)
}
