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

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use photon_bench::*;

struct Opts {
    c: Common,
    threads: usize,
    cpu: usize,
    readonly: bool,
}

const USAGE: &str =
    "usage: rocksdb [--reps N] [--secs S] [--threads N] [--cpu C] [--readonly] [--quiet-wait S] [--verbose]";

fn parse_opts(args: &mut Args) -> Result<Opts, String> {
    let mut o = Opts {
        c: Common::new(5, 2.0, &[]),
        threads: 128,
        cpu: 1,
        readonly: false,
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--threads" => o.threads = args.value(&a)?,
            "--cpu" => o.cpu = args.value(&a)?,
            "--readonly" => o.readonly = true,
            _ => o.c.take(&a, args)?,
        }
    }
    o.c.check()?;
    if o.threads == 0 {
        return Err("--threads must be > 0".into());
    }
    Ok(o)
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

struct Case {
    label: String,
    mode: &'static str,
    threads: usize,
    engine: &'static str,
    shim: bool,
}

fn main() -> ExitCode {
    let o = parse_or_exit(USAGE, parse_opts);
    remember_affinity();
    if !allowed_cpus().contains(&o.cpu) {
        return fatal(format!("CPU {} is not allowed here ({:?})", o.cpu, allowed_cpus()));
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
        Err(e) => return fatal(e),
    };

    let n = o.threads;
    let contenders: [Case; 4] = [
        Case {
            label: format!("{n} photon threads, 1 vcpu, shim, io_uring"),
            mode: "photon",
            threads: n,
            engine: "io_uring",
            shim: true,
        },
        Case {
            label: format!("{n} photon threads, 1 vcpu, shim, epoll"),
            mode: "photon",
            threads: n,
            engine: "epoll",
            shim: true,
        },
        Case {
            label: "1 plain thread".into(),
            mode: "pthreads",
            threads: 1,
            engine: "epoll",
            shim: false,
        },
        Case {
            label: format!("{n} plain pthreads"),
            mode: "pthreads",
            threads: n,
            engine: "epoll",
            shim: false,
        },
    ];

    print_header(
        "libphoton benchmark: unmodified RocksDB random Gets, direct reads, no block cache",
        &format!("every run's process on CPU {} only (sched_setaffinity)", o.cpu),
    );
    println!("library: {}", so.display());
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
        o.cpu, o.c.secs, o.c.reps
    );
    println!();

    let keys = ["gets_per_s", "cpu_ns_per_get"];
    let labels: Vec<String> = contenders.iter().map(|c| c.label.clone()).collect();
    let secs = o.c.secs.to_string();
    let timeout = Duration::from_secs_f64(60.0 + 10.0 * o.c.secs);
    let mut runner = Runner::new(&o.c);
    let series = runner.table("rocksdb", &labels, o.c.reps, &keys, |ci| {
        let c = &contenders[ci];
        let mut cmd = Contender::new(&c.label, &exe)
            .args([c.mode, &db.to_string_lossy(), &c.threads.to_string(), &secs])
            .args(o.readonly.then_some("ro"))
            .env("PHOTON_ENGINE", c.engine)
            .env_remove("LD_PRELOAD")
            .pin(o.cpu);
        if c.shim {
            cmd = cmd.env("LD_PRELOAD", &shim);
        }
        let out = run_child(cmd.command(), timeout)?;
        if (out.num("shim")? != 0.0) != c.shim {
            return Err(format!("{}: the shim is not as this contender needs", c.label));
        }
        Ok(out)
    });
    println!("CPU time while the table ran: {}", runner.last_load);
    println!();

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
    let mut targets = Vec::new();
    for (ci, c) in contenders.iter().enumerate().take(2) {
        let s = &series[ci][0];
        if s.ok() && plain.ok() && threads.ok() {
            let (a, b) = (s.median() / plain.median(), s.median() / threads.median());
            targets.push(format!(
                "{}: >= 2.0x one plain thread: {:.2}x {}; >= 1.0x {n} pthreads: {:.2}x {}",
                c.engine,
                a,
                verdict(a >= 2.0),
                b,
                verdict(b >= 1.0)
            ));
        }
    }
    runner.finish(&targets)
}
