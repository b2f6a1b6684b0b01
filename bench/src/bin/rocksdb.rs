//! Benchmark: unmodified RocksDB (Debian's librocksdb) random Gets with
//! direct reads, from photon threads under the LD_PRELOAD shim against OS
//! threads (issue 12's proof that a thread-based library switches to
//! coroutines without a rewrite).
//!
//!   cargo run --release --bin rocksdb -- [--reps 5] [--secs 2] [--threads 128]
//!       [--cpu 1] [--readonly] [--verbose]
//!
//! The program is bench/c/rocksdb_gets.cpp, compiled at run time against the
//! libphoton.so this run builds. It builds a database of 200,000 keys of
//! 100 B values once (bench/target/rocksdb-db, compacted), then every run
//! opens it with `use_direct_reads` and does random Gets with
//! `fill_cache=false` (every Get reads its block from the file), checking
//! every value. Contenders, each run its own process pinned to one CPU
//! (`--cpu`): N photon threads on one vcpu under the shim (io_uring engine,
//! epoll engine), one plain thread, N plain pthreads. Figures: Gets/s and
//! CPU per Get (getrusage of the process, user + system, over the measured
//! window). Runs are interleaved rep-major; the table shows medians, ranges
//! and ratios of medians. Targets (issue 12): photon >= 2.0x one plain
//! thread and >= 1.0x N pthreads. `--readonly` opens the database
//! read-only (RocksDB then keeps no SuperVersion in a thread-local).
//! Exits non-zero if any run failed.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use photon_bench::*;

struct Opts {
    reps: usize,
    secs: f64,
    threads: usize,
    cpu: usize,
    readonly: bool,
    verbose: bool,
}

const USAGE: &str = "usage: rocksdb [--reps N] [--secs S] [--threads N] [--cpu C] [--readonly] [--verbose]";

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        reps: 5,
        secs: 2.0,
        threads: 128,
        cpu: 1,
        readonly: false,
        verbose: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--reps" => o.reps = val()?.parse().map_err(|_| "bad --reps")?,
            "--secs" => o.secs = val()?.parse().map_err(|_| "bad --secs")?,
            "--threads" => o.threads = val()?.parse().map_err(|_| "bad --threads")?,
            "--cpu" => o.cpu = val()?.parse().map_err(|_| "bad --cpu")?,
            "--readonly" => o.readonly = true,
            "--verbose" => o.verbose = true,
            _ => return Err(format!("unknown argument {a}\n{USAGE}")),
        }
    }
    if o.reps == 0 || o.secs <= 0.0 || o.threads == 0 {
        return Err(USAGE.into());
    }
    Ok(o)
}

/// Makes `cmd`'s process run on `cpu` only (as `taskset -c CPU`).
fn pin(cmd: &mut Command, cpu: usize) {
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

/// The installed librocksdb-dev's Debian version.
fn rocksdb_version() -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "librocksdb-dev"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "?".into())
}

struct Contender {
    label: String,
    mode: &'static str,
    threads: usize,
    engine: &'static str,
    shim: bool,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let o = match parse_opts(&args[1..]) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    remember_affinity();
    if !allowed_cpus().contains(&o.cpu) {
        eprintln!("ERROR: CPU {} is not allowed here ({:?})", o.cpu, allowed_cpus());
        return ExitCode::FAILURE;
    }
    let db: PathBuf = bench_dir().join("target").join("rocksdb-db");
    let built = (|| -> Result<(PathBuf, PathBuf, PathBuf), String> {
        let so = build_libphoton()?;
        let shim = preload_beside(&so)?;
        let exe = compile(
            "rocksdb_gets.cpp",
            "rocksdb_gets",
            Some(&so),
            &["-std=c++17", "-lrocksdb"],
        )?;
        if !db.join("CURRENT").is_file() {
            eprintln!("building the database in {}", db.display());
            let mut cmd = Command::new(&exe);
            cmd.arg("build").arg(&db).env_remove("LD_PRELOAD");
            run_child(cmd, Duration::from_secs(300))?;
        }
        Ok((so, shim, exe))
    })();
    let (so, shim, exe) = match built {
        Ok(b) => b,
        Err(e) => {
            eprintln!("ERROR: {e}");
            return ExitCode::FAILURE;
        }
    };

    let n = o.threads;
    let contenders = [
        Contender {
            label: format!("{n} photon threads, 1 vcpu, shim, io_uring"),
            mode: "photon",
            threads: n,
            engine: "io_uring",
            shim: true,
        },
        Contender {
            label: format!("{n} photon threads, 1 vcpu, shim, epoll"),
            mode: "photon",
            threads: n,
            engine: "epoll",
            shim: true,
        },
        Contender {
            label: "1 plain thread".into(),
            mode: "pthreads",
            threads: 1,
            engine: "epoll",
            shim: false,
        },
        Contender {
            label: format!("{n} plain pthreads"),
            mode: "pthreads",
            threads: n,
            engine: "epoll",
            shim: false,
        },
    ];

    println!("# libphoton benchmark: unmodified RocksDB random Gets, direct reads, no block cache");
    println!();
    println!("machine: {}, nproc {}", cpu_model(), allowed_cpus().len());
    println!("kernel:  {}", kernel_release());
    println!("libphoton: git {} ({})", git_revision(), so.display());
    println!("shim:    {}", shim.display());
    println!(
        "rocksdb: {} (Debian librocksdb), database {} (200,000 keys, 100 B values), opened {}",
        rocksdb_version(),
        db.display(),
        if o.readonly { "read-only" } else { "read-write" }
    );
    println!(
        "method:  every run its own process pinned to CPU {}; 0.3 s warm-up then {} s measured; {} reps rep-major \
         interleaved; median, min - max, ratio of medians; CPU = getrusage (user + system) / Gets",
        o.cpu, o.secs, o.reps
    );
    println!();

    let keys = ["gets_per_s", "cpu_ns_per_get"];
    let mut series: Vec<Vec<Series>> = contenders
        .iter()
        .map(|_| keys.iter().map(|_| Series::default()).collect())
        .collect();
    let mut errors = Vec::new();
    let secs = o.secs.to_string();
    let timeout = Duration::from_secs_f64(60.0 + 10.0 * o.secs);
    for rep in 1..=o.reps {
        for (ci, c) in contenders.iter().enumerate() {
            if series[ci][0].error.is_some() {
                continue;
            }
            let mut cmd = Command::new(&exe);
            cmd.arg(c.mode).arg(&db).arg(c.threads.to_string()).arg(&secs);
            if o.readonly {
                cmd.arg("ro");
            }
            cmd.env("PHOTON_ENGINE", c.engine).env_remove("LD_PRELOAD");
            if c.shim {
                cmd.env("LD_PRELOAD", &shim);
            }
            pin(&mut cmd, o.cpu);
            let r = run_child(cmd, timeout).and_then(|out| {
                if (out.num("shim")? != 0.0) != c.shim {
                    return Err(format!("{}: the shim is not as this contender needs", c.label));
                }
                let vals = keys.iter().map(|k| out.num(k)).collect::<Result<Vec<_>, _>>()?;
                Ok((out, vals))
            });
            match r {
                Ok((out, vals)) => {
                    eprintln!(
                        "rep {rep}/{} {}: {} Gets/s, {} ns CPU/Get",
                        o.reps,
                        c.label,
                        fmt_num(vals[0]),
                        fmt_num(vals[1])
                    );
                    if o.verbose {
                        for i in &out.info {
                            eprintln!("    {i}");
                        }
                    }
                    for (s, v) in series[ci].iter_mut().zip(vals) {
                        s.values.push(v);
                    }
                }
                Err(e) => {
                    eprintln!("rep {rep}/{} {}: ERROR\n{e}", o.reps, c.label);
                    errors.push(format!("{}: {e}", c.label));
                    for s in series[ci].iter_mut() {
                        s.error = Some(e.clone());
                    }
                }
            }
        }
    }

    let plain = &series[2][0];
    let threads = &series[3][0];
    let rows: Vec<Vec<String>> = contenders
        .iter()
        .zip(&series)
        .map(|(c, s)| {
            vec![
                c.label.clone(),
                cell_median(&s[0]),
                cell_range(&s[0]),
                cell_median(&s[1]),
                cell_ratio(&s[0], plain),
                cell_ratio(&s[0], threads),
            ]
        })
        .collect();
    print_table(
        &[
            "contender",
            "Gets/s",
            "range",
            "CPU ns/Get",
            "x 1 plain thread",
            &format!("x {n} pthreads"),
        ],
        &rows,
    );
    println!();
    for (ci, c) in contenders.iter().enumerate().take(2) {
        let s = &series[ci][0];
        if s.ok() && plain.ok() && threads.ok() {
            let (a, b) = (s.median() / plain.median(), s.median() / threads.median());
            println!(
                "target ({}): >= 2.0x one plain thread: {:.2}x {}; >= 1.0x {n} pthreads: {:.2}x {}",
                c.engine,
                a,
                if a >= 2.0 { "met" } else { "NOT met" },
                b,
                if b >= 1.0 { "met" } else { "NOT met" }
            );
        }
    }
    if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("{} contender(s) failed:", errors.len());
        for e in &errors {
            eprintln!("  {e}");
        }
        ExitCode::FAILURE
    }
}
