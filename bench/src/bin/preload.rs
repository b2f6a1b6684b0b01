//! Benchmark of `libphoton_preload.so`, the LD_PRELOAD shim that turns
//! blocking libc calls in photon threads into photon waits (see
//! bench/README.md and the team's benchmarking guide BENCH.md).
//!
//!   cargo run --release --bin preload -- [--reps 7] [--secs 1] [--warmup 0.5]
//!       [--conns 100] [--only rw,redis,mutex] [--redis-server /usr/bin/redis-server] [--verbose]
//!
//! Tables (the C programs are bench/c/preload_*.c, compiled at run time
//! against the libphoton.so this run builds; the shim is the
//! libphoton_preload.so that the same build puts beside it):
//! 1. hooked read/write on a plain pthread: `read(2)` of 64 B from /dev/zero
//!    and `write(2)` of 64 B to /dev/null on a main thread that never calls
//!    photon_init, ns per call, with and without
//!    LD_PRELOAD=libphoton_preload.so, pinned to CPU 1: what the shim costs
//!    a program's plain threads.
//! 2. hiredis GET throughput: a redis-server (Debian's) pinned to CPU 0 and
//!    a client pinned to CPU 1 in which 100 workers, each with its own
//!    blocking hiredis connection, loop GET on one key (checking each reply):
//!    100 photon threads on one vcpu under the shim (io_uring engine, epoll
//!    engine) against 100 pthreads without the shim.
//!
//! 3. uncontended `pthread_mutex_lock`/`unlock` pairs (bench/c/preload_mutex.c)
//!    on a plain pthread, on a vcpu's main photon thread and on another
//!    photon thread, with and without the shim (its pthread hooks).
//!
//! Runs are interleaved rep-major (for rep { for contender { one run } }),
//! every run its own process; each table shows median, range (min - max) and
//! ratios of medians. Exits non-zero if any run failed (no figure is shown
//! for a failed row).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use photon_bench::*;

/// The CPU of the measured programs (the client, in table 2).
const CLIENT_CPU: usize = 1;
/// The CPU of redis-server.
const SERVER_CPU: usize = 0;

// ------------------------------------------------------------------ options

struct Opts {
    c: Common,
    warmup: f64,
    conns: usize,
    redis_server: PathBuf,
}

const USAGE: &str = "usage: preload [--reps N] [--secs S] [--warmup S] [--conns N] [--only rw,redis,mutex] \
                     [--redis-server PATH] [--quiet-wait S] [--verbose]";
const PARTS: &[&str] = &["rw", "redis", "mutex"];

fn parse_opts(args: &mut Args) -> Result<Opts, String> {
    let mut o = Opts {
        c: Common::new(7, 1.0, PARTS).quiet_wait(10.0),
        warmup: 0.5,
        conns: 100,
        redis_server: PathBuf::from("/usr/bin/redis-server"),
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--warmup" => o.warmup = args.value(&a)?,
            "--conns" => o.conns = args.value(&a)?,
            "--redis-server" => o.redis_server = PathBuf::from(args.string(&a)?),
            _ => o.c.take(&a, args)?,
        }
    }
    o.c.check()?;
    if !(o.warmup.is_finite() && o.warmup >= 0.0) {
        return Err("--warmup must be >= 0".into());
    }
    if o.conns == 0 || o.conns > 10_000 {
        return Err("--conns must be 1 - 10000".into());
    }
    Ok(o)
}

// ------------------------------------------------------------------ helpers

/// Checks the `shim=` field of a RESULT line against what the run was meant
/// to be.
fn check_shim(o: &Output, want: bool) -> Result<(), String> {
    let got = o.num("shim")? != 0.0;
    if got != want {
        return Err(format!(
            "the program reports the shim {}loaded, but this contender runs {} LD_PRELOAD",
            if got { "" } else { "not " },
            if want { "with" } else { "without" }
        ));
    }
    Ok(())
}

// -------------------------------------------------------------- redis-server

/// A redis-server on a free loopback port, pinned to one CPU; stopped (by
/// its pid) on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start(bin: &Path, cpu: usize, log: &Path) -> Result<Redis, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("finding a free port: {e}"))?
            .port();
        let logf = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let logf2 = logf.try_clone().map_err(|e| format!("{}: {e}", log.display()))?;
        let mut cmd = Command::new(bin);
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        cmd.args(["--daemonize", "no", "--loglevel", "warning"]);
        cmd.env_remove("LD_PRELOAD");
        pin_command(&mut cmd, cpu);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(logf)
            .stderr(logf2)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut r = Redis { child, port };
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = r.child.try_wait() {
                return Err(format!(
                    "{} exited at start with {st} (log: {})",
                    bin.display(),
                    log.display()
                ));
            }
            if r.ping() {
                return Ok(r);
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err(format!(
                    "{} does not answer PING on port {port} after 10 s (log: {})",
                    bin.display(),
                    log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Err if the server has died or stopped answering.
    fn check(&mut self) -> Result<(), String> {
        if let Ok(Some(st)) = self.child.try_wait() {
            return Err(format!("redis-server died ({st})"));
        }
        if !self.ping() {
            return Err("redis-server does not answer PING".into());
        }
        Ok(())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill(); // this child only, by its pid
        }
        let _ = self.child.wait();
    }
}

// --------------------------------------------------------------------- main

fn main() -> ExitCode {
    let o = parse_or_exit(USAGE, parse_opts);
    remember_affinity();
    let allowed = allowed_cpus();
    if !(allowed.contains(&SERVER_CPU) && allowed.contains(&CLIENT_CPU)) {
        return fatal(format!(
            "this benchmark needs CPUs {SERVER_CPU} and {CLIENT_CPU} (allowed: {allowed:?})"
        ));
    }
    let want = |w: &str| o.c.want(w);
    if want("redis") && !o.redis_server.is_file() {
        return fatal(format!(
            "no redis-server at {} (apt-get install redis-server, or pass --redis-server)",
            o.redis_server.display()
        ));
    }

    struct Built {
        so: PathBuf,
        shim: PathBuf,
        rw: PathBuf,
        mutex: PathBuf,
        redis_photon: Option<PathBuf>,
        redis_pthreads: Option<PathBuf>,
    }
    let built = (|| -> Result<Built, String> {
        let so = build_libphoton()?;
        let shim = preload_beside(&so)?;
        let rw = compile("preload_rw.c", "preload_rw", None, &[])?;
        let mutex = compile("preload_mutex.c", "preload_mutex", Some(&so), &[])?;
        let (redis_photon, redis_pthreads) = if want("redis") {
            (
                Some(compile(
                    "preload_redis_photon.c",
                    "preload_redis_photon",
                    Some(&so),
                    &["-lhiredis"],
                )?),
                Some(compile(
                    "preload_redis_pthreads.c",
                    "preload_redis_pthreads",
                    None,
                    &["-lhiredis"],
                )?),
            )
        } else {
            (None, None)
        };
        Ok(Built {
            so,
            shim,
            rw,
            mutex,
            redis_photon,
            redis_pthreads,
        })
    })();
    let b = match built {
        Ok(b) => b,
        Err(e) => return fatal(e),
    };

    print_header(
        "libphoton benchmark: the LD_PRELOAD shim (libphoton_preload.so)",
        &format!("stated per table (measured programs on CPU {CLIENT_CPU}, redis-server on CPU {SERVER_CPU})"),
    );
    println!("library: {}", b.so.display());
    println!("shim:    {}", b.shim.display());
    if want("redis") {
        println!(
            "redis:   {} ({})",
            o.redis_server.display(),
            tool_version(&o.redis_server.to_string_lossy())
        );
    }
    println!(
        "method:  rep-major interleaved (for rep {{ for contender {{ one run }} }}), each run its own process; {} reps; \
         median, min - max, ratio of medians",
        o.c.reps
    );
    println!();

    let mut runner = Runner::new(&o.c);
    let mut targets: Vec<String> = Vec::new();
    let mut section = 0;
    let secs = o.c.secs.to_string();
    let reps = o.c.reps;

    if want("rw") {
        section += 1;
        let labels = vec!["no preload".to_string(), "LD_PRELOAD=libphoton_preload.so".to_string()];
        let timeout = Duration::from_secs_f64(60.0 + o.c.secs * 10.0);
        // per call: (libc call, raw syscall) keys
        let calls = [
            ("read(/dev/zero, 64 B)", "read_ns", "read_raw_ns"),
            ("write(/dev/null, 64 B)", "write_ns", "write_raw_ns"),
        ];
        let r = runner.table(
            "rw",
            &labels,
            reps,
            &["read_ns", "read_raw_ns", "write_ns", "write_raw_ns"],
            |ci| {
                let mut cmd = Command::new(&b.rw);
                cmd.arg(&secs);
                cmd.env_remove("LD_PRELOAD");
                if ci == 1 {
                    cmd.env("LD_PRELOAD", &b.shim);
                }
                pin_command(&mut cmd, CLIENT_CPU);
                let out = run_child(cmd, timeout)?;
                check_shim(&out, ci == 1)?;
                Ok(out)
            },
        );
        let load = runner.last_load.clone();
        println!("## {section}. Hooked read/write on a plain pthread: ns per call (lower is better)");
        println!();
        println!(
            "bench/c/preload_rw.c on its main thread (no photon_init, not linked to libphoton): read(2) of 64 B from \
             /dev/zero and write(2) of 64 B to /dev/null as plain libc calls, and the same system calls made with \
             syscall(2) (not hooked) as a reference in the same process, in alternating ~20 ms chunks for ~{} s each, \
             pinned to CPU {CLIENT_CPU}; run without and with LD_PRELOAD=libphoton_preload.so (the program checks \
             which object its read() comes from). With the shim every call asks libphoton photon_in_thread() (0 here) \
             and looks the fd up before calling libc. \"paired\": median over the reps of each rep's own ratio to the \
             no-preload run of that rep. \"libc / raw\": median over the reps of the libc call's time over the raw \
             syscall's in the same run (host drift cancels out). Load meanwhile: {load}.",
            o.c.secs
        );
        println!();
        let ratio3 = |a: &Series, b: &Series| {
            if a.ok() && b.ok() {
                format!("{:.3}x", a.median() / b.median())
            } else {
                "n/a".into()
            }
        };
        let mut rows = Vec::new();
        let mut key = 0;
        for (call, _, _) in &calls {
            let (ki, kr) = (key, key + 1);
            key += 2;
            let base = &r[0][ki];
            for (ci, label) in labels.iter().enumerate() {
                let s = &r[ci][ki];
                rows.push(vec![
                    call.to_string(),
                    label.clone(),
                    cell_median(s),
                    cell_range(s),
                    ratio3(s, base),
                    if ci == 0 {
                        String::new()
                    } else {
                        cell_fixed(&paired(s, base, |a, b| a / b), 3, "x")
                    },
                    cell_median(&r[ci][kr]),
                    cell_fixed(&paired(s, &r[ci][kr], |a, b| a / b), 3, "x"),
                ]);
            }
            let s = &r[1][ki];
            if s.ok() && base.ok() {
                let ratio = s.median() / base.median();
                let in_process =
                    paired(s, &r[1][kr], |a, b| a / b).median() / paired(base, &r[0][kr], |a, b| a / b).median();
                targets.push(format!(
                    "hooked {call} on a plain pthread: {:.3}x without the shim, {:+.1} ns per call \
                     (target <= 1.05x): {}; measured against the raw syscall in the same process: {:.3}x",
                    ratio,
                    s.median() - base.median(),
                    verdict(ratio <= 1.05),
                    in_process
                ));
            }
        }
        print_table(
            &[
                "call",
                "contender",
                "median ns/call",
                "range",
                "/ no preload",
                "paired",
                "raw syscall ns",
                "libc / raw",
            ],
            &rows,
        );
        println!();
    }

    if want("mutex") {
        section += 1;
        let labels = vec!["no preload".to_string(), "LD_PRELOAD=libphoton_preload.so".to_string()];
        let timeout = Duration::from_secs_f64(60.0 + o.c.secs * 10.0);
        let keys = ["plain_ns", "main_ns", "photon_ns"];
        let r = runner.table("mutex", &labels, reps, &keys, |ci| {
            let mut cmd = Command::new(&b.mutex);
            cmd.arg(&secs);
            cmd.env_remove("LD_PRELOAD");
            if ci == 1 {
                cmd.env("LD_PRELOAD", &b.shim);
            }
            pin_command(&mut cmd, CLIENT_CPU);
            let out = run_child(cmd, timeout)?;
            check_shim(&out, ci == 1)?;
            Ok(out)
        });
        let load = runner.last_load.clone();
        println!("## {section}. Uncontended pthread_mutex_lock + unlock: ns per pair (lower is better)");
        println!();
        println!(
            "bench/c/preload_mutex.c after photon_init, pinned to CPU {CLIENT_CPU}: pairs on a private normal mutex \
             in ~20 ms chunks for ~{:.2} s per thread kind, without and with LD_PRELOAD=libphoton_preload.so. \
             With the shim a free normal mutex is taken and released on glibc's lock word by the shim itself \
             (one compare-and-swap, one exchange) without asking who calls; only contention asks libphoton \
             photon_thread_number(). The machine is shared: compare the minima as well as the medians. \
             Load meanwhile: {load}.",
            o.c.secs / 3.0
        );
        println!();
        let mut rows = Vec::new();
        for (ki, what) in ["plain pthread", "vcpu main photon thread", "photon thread"]
            .iter()
            .enumerate()
        {
            let base = &r[0][ki];
            for (ci, label) in labels.iter().enumerate() {
                let s = &r[ci][ki];
                rows.push(vec![
                    what.to_string(),
                    label.clone(),
                    cell_median(s),
                    cell_range(s),
                    if s.ok() && base.ok() {
                        format!("{:.3}x", s.median() / base.median())
                    } else {
                        "n/a".into()
                    },
                    if ci == 0 {
                        String::new()
                    } else {
                        cell_fixed(&paired(s, base, |a, b| a / b), 3, "x")
                    },
                ]);
            }
            let s = &r[1][ki];
            if ki == 0 && s.ok() && base.ok() {
                let ratio = s.median() / base.median();
                targets.push(format!(
                    "uncontended pthread_mutex_lock/unlock on a plain pthread: {ratio:.3}x without the shim, \
                     {:+.2} ns per pair (target <= 1.05x): {}",
                    s.median() - base.median(),
                    verdict(ratio <= 1.05)
                ));
            }
        }
        print_table(
            &[
                "thread",
                "contender",
                "median ns/pair",
                "range",
                "/ no preload",
                "paired",
            ],
            &rows,
        );
        println!();
    }

    if want("redis") {
        section += 1;
        let (Some(p_photon), Some(p_pthreads)) = (&b.redis_photon, &b.redis_pthreads) else {
            unreachable!("the redis programs are built when the table is wanted");
        };
        let conns = o.conns.to_string();
        let labels = vec![
            format!("libphoton + shim, io_uring, {} photon threads on 1 vcpu", o.conns),
            format!("libphoton + shim, epoll, {} photon threads on 1 vcpu", o.conns),
            format!("{} pthreads, no preload", o.conns),
        ];
        let log = cbin_dir().join("preload-redis-server.log");
        let timeout = Duration::from_secs_f64(90.0 + o.c.secs + o.warmup);
        let mut server = match Redis::start(&o.redis_server, SERVER_CPU, &log) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("ERROR: {e}");
                runner.errors.push(format!("redis: {e}"));
                None
            }
        };
        let r = runner.table(
            "redis",
            &labels,
            reps,
            &["gets_s", "client_cpu", "server_cpu", "other_cpu"],
            |ci| {
                // a dead server is restarted (the run that saw it die is an error)
                if server.as_mut().is_none_or(|s| s.check().is_err()) {
                    drop(server.take());
                    server = Some(Redis::start(&o.redis_server, SERVER_CPU, &log)?);
                }
                let srv = server.as_mut().expect("started above");
                let mut cmd = Command::new(if ci < 2 { p_photon } else { p_pthreads });
                cmd.args([
                    &srv.port.to_string(),
                    &conns,
                    &secs,
                    &o.warmup.to_string(),
                    &srv.pid().to_string(),
                ]);
                cmd.env_remove("LD_PRELOAD");
                cmd.env_remove("PHOTON_ENGINE");
                if ci < 2 {
                    cmd.env("LD_PRELOAD", &b.shim);
                    cmd.env("PHOTON_ENGINE", if ci == 0 { "io_uring" } else { "epoll" });
                }
                pin_command(&mut cmd, CLIENT_CPU);
                let out = run_child(cmd, timeout)?;
                check_shim(&out, ci < 2)?;
                if out.num("errors")? != 0.0 {
                    return Err(format!("the client counted {} errors", out.num("errors")?));
                }
                if out.num("server_cpu")? < 0.0 || out.num("other_cpu")? < 0.0 {
                    return Err("the client could not read the server's or the machine's CPU time".into());
                }
                srv.check().map_err(|e| format!("after the run: {e}"))?;
                Ok(out)
            },
        );
        let load = runner.last_load.clone();
        drop(server);
        println!("## {section}. hiredis GET throughput: GETs per second (higher is better)");
        println!();
        println!(
            "A redis-server ({}, --save '' --appendonly no) on 127.0.0.1, pinned to CPU {SERVER_CPU}; the client \
             pinned to CPU {CLIENT_CPU}: {} workers, each with its own blocking hiredis connection (Debian libhiredis, \
             unmodified: redisConnect, redisCommand), loop GET of one key SET beforehand and check every reply; \
             counted for {} s after all connections are up and {} s of warm-up. Rows: \
             bench/c/preload_redis_photon.c (photon_init(PHOTON_EVENT_DEFAULT, 0), {} photon threads on that one \
             vcpu, run with LD_PRELOAD=libphoton_preload.so and PHOTON_ENGINE=io_uring or epoll) and \
             bench/c/preload_redis_pthreads.c ({} pthreads, no LD_PRELOAD). client / server CPU: CPU seconds per \
             second of the counted window (getrusage of the client; /proc/PID/stat of the server), and the same per \
             GET in microseconds; other CPU: the machine's busy time (/proc/stat) minus those two, median (max) over \
             the reps: other processes, and kernel work charged to no process. \"paired\": median over the reps of \
             each rep's own ratio to the pthreads run of that rep. Load meanwhile: {load}.",
            o.redis_server.display(),
            o.conns,
            o.c.secs,
            o.warmup,
            o.conns,
            o.conns
        );
        println!();
        let base = &r[2];
        let rows: Vec<Vec<String>> = labels
            .iter()
            .zip(&r)
            .map(|(label, s)| {
                let cli_us = paired(&s[1], &s[0], |c, g| c / g * 1e6);
                let srv_us = paired(&s[2], &s[0], |c, g| c / g * 1e6);
                vec![
                    label.clone(),
                    cell_median(&s[0]),
                    cell_range(&s[0]),
                    cell_ratio(&s[0], &base[0]),
                    cell_fixed(&paired(&s[0], &base[0], |a, b| a / b), 2, "x"),
                    cell_fixed(&s[1], 2, ""),
                    cell_fixed(&cli_us, 2, ""),
                    cell_fixed(&s[2], 2, ""),
                    cell_fixed(&srv_us, 2, ""),
                    if s[3].ok() {
                        format!("{:.2} ({:.2})", s[3].median(), s[3].max())
                    } else {
                        "ERROR".into()
                    },
                ]
            })
            .collect();
        print_table(
            &[
                "client",
                "median GET/s",
                "range",
                "/ pthreads",
                "paired",
                "client CPU",
                "client us/GET",
                "server CPU",
                "server us/GET",
                "other CPU (max)",
            ],
            &rows,
        );
        println!();
        for (ci, label) in labels.iter().take(2).enumerate() {
            if r[ci][0].ok() && base[0].ok() {
                let ratio = r[ci][0].median() / base[0].median();
                targets.push(format!(
                    "hiredis GET, {label}: {ratio:.2}x {} pthreads (target >= 1.0x): {}",
                    o.conns,
                    verdict(ratio >= 1.0)
                ));
            }
        }
    }

    runner.finish(&targets)
}
