//! Benchmark of libphoton's locks and of serving from several vcpus, side by
//! side with OS-thread peers in one run (see bench/README.md and
//! the team's benchmarking guide BENCH.md).
//!
//!   cargo run --release --bin locks -- [--reps 7] [--secs 1] [--echo-reps 5]
//!       [--echo-secs 3] [--echo-warmup 1] [--echo-engines io_uring,epoll]
//!       [--only contended,uncontended,pingpong,echo] [--client-bin PATH] [--verbose]
//!
//! Tables (the C programs are bench/c/locks_*.c, compiled at run time
//! against the libphoton.so this run builds):
//! 1. contended mutex: 8 photon threads on 2 vcpus (4 on the main vcpu, 4 on
//!    a work pool of one vcpu) incrementing one counter under a photon_mutex,
//!    against 8 pthreads on a pthread_mutex_t; lock/unlock pairs per second
//!    (the counter is checked against the increments counted).
//! 2. uncontended lock/unlock pair, one thread on CPU 1, ns per pair, against
//!    pthread_mutex_lock/unlock.
//! 3. cross-vcpu ping-pong: a photon_sem pair (and a photon_cond) between the
//!    main vcpu on CPU 0 and a pool vcpu on CPU 1; median and p99 of the
//!    round trip in us, against a pthread_cond_t (and a sem_t) ping-pong
//!    between two pthreads on CPU 0 and CPU 1.
//! 4. echo from several vcpus: bench/c/locks_echo_vcpus.c (a work pool of N
//!    vcpus, each serving the same port through its own
//!    PHOTON_SERVER_REUSEPORT listener) with 1 and 2 vcpus, driven by the
//!    C client (<repository>/build/echo_client, one vcpu, 64 connections,
//!    ping-pong of 512 B). The machine has 2 cores, so the client shares
//!    them with the server: once with everything free to run on both CPUs,
//!    once with the client pinned to CPU 1 and the server on CPU 0 (1 vcpu)
//!    or CPUs 0-1 (2 vcpus). Besides requests/s it shows the CPU the server
//!    and the client used during the measured window (from /proc/PID/stat).
//!
//! Runs are interleaved rep-major (for rep { for contender { one run } })
//! and each table shows median, range (min - max) and ratios of medians.
//! Exits non-zero if any run failed (no figure is shown for a failed row).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use photon_bench::*;

// ------------------------------------------------------------------ options

struct Opts {
    reps: usize,
    secs: f64,
    echo_reps: usize,
    echo_secs: f64,
    echo_warmup: f64,
    echo_engines: Vec<String>,
    only: Vec<String>,
    client_bin: PathBuf,
    verbose: bool,
}

const USAGE: &str = "usage: locks [--reps N] [--secs S] [--echo-reps N] [--echo-secs S] [--echo-warmup S] \
                     [--echo-engines io_uring,epoll] [--only contended,uncontended,pingpong,echo] \
                     [--client-bin PATH] [--verbose]";
const PARTS: [&str; 4] = ["contended", "uncontended", "pingpong", "echo"];

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        reps: 7,
        secs: 1.0,
        echo_reps: 5,
        echo_secs: 3.0,
        echo_warmup: 1.0,
        echo_engines: vec!["io_uring".into()],
        only: PARTS.iter().map(|s| s.to_string()).collect(),
        client_bin: root_dir().join("build").join("echo_client"),
        verbose: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--reps" => o.reps = val(a)?.parse().map_err(|_| "bad --reps")?,
            "--secs" => o.secs = val(a)?.parse().map_err(|_| "bad --secs")?,
            "--echo-reps" => o.echo_reps = val(a)?.parse().map_err(|_| "bad --echo-reps")?,
            "--echo-secs" => o.echo_secs = val(a)?.parse().map_err(|_| "bad --echo-secs")?,
            "--echo-warmup" => o.echo_warmup = val(a)?.parse().map_err(|_| "bad --echo-warmup")?,
            "--echo-engines" => o.echo_engines = val(a)?.split(',').map(str::to_string).collect(),
            "--only" => o.only = val(a)?.split(',').map(str::to_string).collect(),
            "--client-bin" => o.client_bin = PathBuf::from(val(a)?),
            "--verbose" | "-v" => o.verbose = true,
            "--help" | "-h" => return Err(USAGE.into()),
            _ => return Err(format!("unknown argument {a}\n{USAGE}")),
        }
    }
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if o.reps == 0
        || o.echo_reps == 0
        || !positive(o.secs)
        || !positive(o.echo_secs)
        || o.echo_warmup.is_nan()
        || o.echo_warmup < 0.0
    {
        return Err("--reps, --echo-reps, --secs, --echo-secs must be > 0, --echo-warmup >= 0".into());
    }
    for w in &o.only {
        if !PARTS.contains(&w.as_str()) {
            return Err(format!("--only: unknown part {w} ({})", PARTS.join(", ")));
        }
    }
    for e in &o.echo_engines {
        if e != "io_uring" && e != "epoll" {
            return Err(format!("--echo-engines: unknown engine {e}"));
        }
    }
    Ok(o)
}

// --------------------------------------------------------------- contenders

/// One row of a table: a label and how to start one run of it.
struct Contender {
    label: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Contender {
    fn new(label: &str, program: &Path, args: &[&str], engine: Option<&str>) -> Contender {
        Contender {
            label: label.to_string(),
            program: program.to_path_buf(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: engine
                .map(|e| vec![("PHOTON_ENGINE".to_string(), e.to_string())])
                .unwrap_or_default(),
        }
    }
    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }
}

struct Runner {
    verbose: bool,
    errors: Vec<String>,
    engines: Vec<String>,
}

impl Runner {
    /// Runs every contender `reps` times, rep-major, collecting `keys` of
    /// each RESULT line. A contender that fails once is not run again.
    fn run(
        &mut self,
        title: &str,
        cs: &[Contender],
        reps: usize,
        keys: &[&str],
        timeout: Duration,
    ) -> Vec<Vec<Series>> {
        let mut out: Vec<Vec<Series>> = cs
            .iter()
            .map(|_| keys.iter().map(|_| Series::default()).collect())
            .collect();
        for rep in 1..=reps {
            for (ci, c) in cs.iter().enumerate() {
                if out[ci][0].error.is_some() {
                    continue;
                }
                let r = run_child(c.command(), timeout).and_then(|o| {
                    let vals = keys.iter().map(|k| o.num(k)).collect::<Result<Vec<f64>, String>>()?;
                    Ok((o, vals))
                });
                match r {
                    Ok((o, vals)) => {
                        let shown: Vec<String> = keys
                            .iter()
                            .zip(&vals)
                            .map(|(k, v)| format!("{k}={}", fmt_num(*v)))
                            .collect();
                        eprintln!("[{title}] rep {rep}/{reps} {}: {}", c.label, shown.join(" "));
                        if self.verbose {
                            for i in &o.info {
                                eprintln!("    {i}");
                            }
                        }
                        if let Some(e) = o.fields.get("engine") {
                            let e = format!("{} -> engine {e}", c.label);
                            if !self.engines.contains(&e) {
                                self.engines.push(e);
                            }
                        }
                        for (s, v) in out[ci].iter_mut().zip(vals) {
                            s.values.push(v);
                        }
                    }
                    Err(e) => {
                        eprintln!("[{title}] rep {rep}/{reps} {}: ERROR\n{e}", c.label);
                        self.errors.push(format!("{}: {e}", c.label));
                        for s in out[ci].iter_mut() {
                            s.error = Some(e.clone());
                        }
                    }
                }
            }
        }
        out
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

// --------------------------------------------------------------------- echo

/// CPU time (user + system) of a process so far, in seconds.
fn cpu_secs(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // the command name (field 2) may hold spaces: count from the closing ')'
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or("bad /proc/PID/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime field 15
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or("bad /proc/PID/stat field")
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((ticks(14)? + ticks(15)?) / hz)
}

struct EchoConfig {
    label: String,
    vcpus: u32,
    engine: String,
    server_cpus: &'static str,
    client_cpus: &'static str,
}

struct EchoRun {
    req_s: f64,
    server_cores: f64,
    client_cores: f64,
    conns_per_vcpu: String,
}

/// Kills (by its pid) and reaps a child that is still running.
fn reap(mut c: Child) {
    if let Ok(None) = c.try_wait() {
        let _ = c.kill();
    }
    let _ = c.wait();
}

fn echo_once(server: &Path, client: &Path, cfg: &EchoConfig, secs: f64, warmup: f64) -> Result<EchoRun, String> {
    let mut srv = Command::new("taskset");
    srv.args(["-c", cfg.server_cpus]).arg(server).arg(cfg.vcpus.to_string());
    srv.env("PHOTON_ENGINE", &cfg.engine);
    let mut child = srv
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", server.display()))?;
    let server_pid = child.id();
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let err_pipe = child.stderr.take().expect("piped stderr");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(err_pipe), &mut s);
        s
    });
    let result = (|| -> Result<(EchoRun, u32), String> {
        let port = loop {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(l) => {
                    if let Some(p) = l.strip_prefix("PORT ") {
                        break p.trim().parse::<u16>().map_err(|_| format!("bad port line {l}"))?;
                    }
                }
                Err(_) => return Err("the server did not print its port within 10 s".into()),
            }
        };
        let mut cl = Command::new("taskset");
        cl.args(["-c", cfg.client_cpus]).arg(client);
        cl.args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--conns",
            "64",
            "--size",
            "512",
        ]);
        cl.args([
            "--duration",
            &secs.to_string(),
            "--warmup",
            &warmup.to_string(),
            "--mode",
            "pingpong",
        ]);
        let client_child = cl
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", client.display()))?;
        let client_pid = client_child.id();
        std::thread::sleep(Duration::from_secs_f64(warmup + 0.05));
        let (s0, c0, t0) = (cpu_secs(server_pid), cpu_secs(client_pid), Instant::now());
        std::thread::sleep(Duration::from_secs_f64((secs - 0.1).max(0.1)));
        let (s1, c1, dt) = (cpu_secs(server_pid), cpu_secs(client_pid), t0.elapsed().as_secs_f64());
        let co = client_child.wait_with_output().map_err(|e| format!("client: {e}"))?;
        let stdout = String::from_utf8_lossy(&co.stdout).into_owned();
        if !co.status.success() {
            return Err(format!(
                "client exited with {}: {}{}",
                co.status,
                stdout,
                String::from_utf8_lossy(&co.stderr)
            ));
        }
        let field = |k: &str| -> Result<f64, String> {
            stdout
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or_else(|| format!("client output has no {k}=: {stdout}"))
        };
        let req_s = field("req/s")?;
        if field("errors")? != 0.0 {
            return Err(format!("client reported errors: {stdout}"));
        }
        let server_cores = (s1? - s0?) / dt;
        let client_cores = (c1? - c0?) / dt;
        Ok((
            EchoRun {
                req_s,
                server_cores,
                client_cores,
                conns_per_vcpu: String::new(),
            },
            port as u32,
        ))
    })();
    // stop the server: close its stdin, then read its RESULT line
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut result_line = None;
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(l) if l.starts_with("RESULT ") => {
                result_line = Some(l);
                break;
            }
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => break None,
        }
    };
    if status.is_none() {
        reap(child);
    }
    let _ = reader.join();
    let stderr = err_reader.join().unwrap_or_default();
    let (mut run, _port) = result?;
    match (status, result_line) {
        (Some(st), Some(l)) if st.success() => {
            let per: Vec<&str> = l.split_whitespace().filter(|kv| kv.starts_with("conns_vcpu")).collect();
            run.conns_per_vcpu = per
                .iter()
                .map(|kv| kv.split_once('=').map_or("?", |x| x.1))
                .collect::<Vec<_>>()
                .join("+");
            Ok(run)
        }
        (st, _) => Err(format!("server ended with {st:?} without a clean RESULT: {stderr}")),
    }
}

// --------------------------------------------------------------------- main

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
    let allowed = allowed_cpus();
    if !(allowed.contains(&0) && allowed.contains(&1)) {
        eprintln!("ERROR: this benchmark needs CPUs 0 and 1 (allowed: {allowed:?})");
        return ExitCode::FAILURE;
    }
    let want = |w: &str| o.only.iter().any(|x| x == w);
    if want("echo") && !o.client_bin.is_file() {
        eprintln!(
            "ERROR: no echo client at {} (build it: cmake --build build in the repository, or pass --client-bin)",
            o.client_bin.display()
        );
        return ExitCode::FAILURE;
    }

    let built = (|| -> Result<(PathBuf, PathBuf, PathBuf, PathBuf), String> {
        let so = build_libphoton()?;
        Ok((
            so.clone(),
            compile("locks_photon.c", "locks_photon", Some(&so), &[])?,
            compile("locks_pthread.c", "locks_pthread", None, &[])?,
            compile("locks_echo_vcpus.c", "locks_echo_vcpus", Some(&so), &[])?,
        ))
    })();
    let (so, p_photon, p_pthread, p_echo) = match built {
        Ok(b) => b,
        Err(e) => {
            eprintln!("ERROR: {e}");
            return ExitCode::FAILURE;
        }
    };

    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    println!("# libphoton benchmark: locks and several vcpus");
    println!();
    println!(
        "machine: {}, nproc {} (CPUs online: {online}, allowed: {allowed:?})",
        cpu_model(),
        allowed.len()
    );
    println!("kernel:  {}", kernel_release());
    println!("rustc:   {}", tool_version("rustc"));
    println!("cc:      {}", tool_version(env!("BENCH_CC")));
    println!("libphoton: git {} of {}", git_revision(), root_dir().display());
    println!("library: {}", so.display());
    println!(
        "method:  rep-major interleaved (for rep {{ for contender {{ one run }} }}); {} reps of ~{} s for tables 1-3, \
         {} reps of {} s (+{} s warm-up) for table 4; median, min - max, ratio of medians",
        o.reps, o.secs, o.echo_reps, o.echo_secs, o.echo_warmup
    );
    println!(
        "pinning: stated per table (the machine has {} CPUs; nothing else of this benchmark runs meanwhile)",
        allowed.len()
    );
    println!();

    let secs = o.secs.to_string();
    let timeout = Duration::from_secs_f64(60.0 + o.secs * 20.0);
    let mut runner = Runner {
        verbose: o.verbose,
        errors: Vec::new(),
        engines: Vec::new(),
    };
    let mut targets: Vec<String> = Vec::new();
    let mut section = 0;

    if want("contended") {
        section += 1;
        let cs = vec![
            Contender::new(
                "libphoton io_uring, 8 threads on 2 vcpus (main + pool of 1)",
                &p_photon,
                &["contended", &secs, "8", "2"],
                Some("io_uring"),
            ),
            Contender::new(
                "libphoton epoll, 8 threads on 2 vcpus (main + pool of 1)",
                &p_photon,
                &["contended", &secs, "8", "2"],
                Some("epoll"),
            ),
            Contender::new(
                "8 pthreads, pthread_mutex_t",
                &p_pthread,
                &["contended", &secs, "8"],
                None,
            ),
        ];
        let t0 = cpu_times();
        let r = runner.run("contended", &cs, o.reps, &["value"], timeout);
        let load = describe_load(&t0, &cpu_times());
        println!("## {section}. Contended mutex: lock + increment + unlock, pairs per second (higher is better)");
        println!();
        println!("Both CPUs, unpinned (the kernel places the 2 vcpus / 8 pthreads). Load meanwhile: {load}.");
        println!();
        let peer = &r[2][0];
        let rows: Vec<Vec<String>> = cs
            .iter()
            .zip(&r)
            .map(|(c, s)| {
                vec![
                    c.label.clone(),
                    cell_median(&s[0]),
                    cell_range(&s[0]),
                    cell_ratio(&s[0], peer),
                ]
            })
            .collect();
        print_table(&["contender", "median pairs/s", "range", "/ pthread"], &rows);
        println!();
        for (i, c) in cs.iter().take(2).enumerate() {
            if r[i][0].ok() && peer.ok() {
                let ratio = r[i][0].median() / peer.median();
                targets.push(format!(
                    "contended, {}: {:.2}x pthread (target >= 1.0x): {}",
                    c.label,
                    ratio,
                    met(ratio >= 1.0)
                ));
            }
        }
    }

    if want("uncontended") {
        section += 1;
        let cs = vec![
            Contender::new(
                "libphoton photon_mutex_lock + unlock",
                &p_photon,
                &["uncontended", &secs],
                Some("io_uring"),
            ),
            Contender::new("pthread_mutex_lock + unlock", &p_pthread, &["uncontended", &secs], None),
        ];
        let t0 = cpu_times();
        let r = runner.run("uncontended", &cs, o.reps, &["value"], timeout);
        let load = describe_load(&t0, &cpu_times());
        println!("## {section}. Uncontended lock/unlock pair: ns per pair (lower is better)");
        println!();
        println!(
            "One thread on CPU 1, calibrated to ~{} s per run. Load meanwhile: {load}.",
            o.secs
        );
        println!();
        let peer = &r[1][0];
        let rows: Vec<Vec<String>> = cs
            .iter()
            .zip(&r)
            .map(|(c, s)| {
                vec![
                    c.label.clone(),
                    cell_median(&s[0]),
                    cell_range(&s[0]),
                    cell_ratio(&s[0], peer),
                ]
            })
            .collect();
        print_table(&["contender", "median ns", "range ns", "/ pthread"], &rows);
        println!();
        if r[0][0].ok() && peer.ok() {
            let ratio = r[0][0].median() / peer.median();
            targets.push(format!(
                "uncontended pair: {:.2}x pthread's time (target <= 1.2x): {}",
                ratio,
                met(ratio <= 1.2)
            ));
        }
    }

    if want("pingpong") {
        section += 1;
        let cs = vec![
            Contender::new(
                "libphoton photon_sem pair, io_uring",
                &p_photon,
                &["pingpong", &secs, "sem"],
                Some("io_uring"),
            ),
            Contender::new(
                "libphoton photon_sem pair, epoll",
                &p_photon,
                &["pingpong", &secs, "sem"],
                Some("epoll"),
            ),
            Contender::new(
                "libphoton photon_cond + mutex, io_uring",
                &p_photon,
                &["pingpong", &secs, "cond"],
                Some("io_uring"),
            ),
            Contender::new(
                "libphoton photon_cond + mutex, epoll",
                &p_photon,
                &["pingpong", &secs, "cond"],
                Some("epoll"),
            ),
            Contender::new(
                "pthread_cond_t + pthread_mutex_t",
                &p_pthread,
                &["pingpong", &secs, "cond"],
                None,
            ),
            Contender::new("POSIX sem_t pair", &p_pthread, &["pingpong", &secs, "sem"], None),
        ];
        let t0 = cpu_times();
        let r = runner.run("pingpong", &cs, o.reps, &["median_us", "p99_us", "max_us"], timeout);
        let load = describe_load(&t0, &cpu_times());
        println!("## {section}. Cross-vcpu ping-pong: round trip in us (lower is better)");
        println!();
        println!(
            "libphoton: main vcpu on CPU 0, a pool vcpu on CPU 1 (each an OS thread; a waiting vcpu sleeps in its \
             engine). Peers: two pthreads on CPU 0 and CPU 1. Per run: median, p99 and max of all round trips after \
             a 100 ms warm-up; the table shows the median (and range) of those over the reps. Load meanwhile: {load}."
        );
        println!();
        let peer = &r[4];
        let rows: Vec<Vec<String>> = cs
            .iter()
            .zip(&r)
            .map(|(c, s)| {
                vec![
                    c.label.clone(),
                    cell_median(&s[0]),
                    cell_range(&s[0]),
                    cell_median(&s[1]),
                    cell_range(&s[1]),
                    cell_median(&s[2]),
                    cell_ratio(&s[0], &peer[0]),
                    cell_ratio(&s[1], &peer[1]),
                ]
            })
            .collect();
        print_table(
            &[
                "contender",
                "median",
                "range",
                "p99",
                "range",
                "max",
                "median / pthread cond",
                "p99 / pthread cond",
            ],
            &rows,
        );
        println!();
        for (i, c) in cs.iter().take(2).enumerate() {
            if r[i][0].ok() {
                let (m, p) = (r[i][0].median(), r[i][1].median());
                targets.push(format!(
                    "cross-vcpu wake, {}: round-trip median {:.1} us (target < 20): {}; p99 {:.1} us (target < 200): {}",
                    c.label,
                    m,
                    met(m < 20.0),
                    p,
                    met(p < 200.0)
                ));
            }
        }
    }

    if want("echo") {
        section += 1;
        let mut cfgs = Vec::new();
        for e in &o.echo_engines {
            for (server_cpus, client_cpus, place) in [("0,1", "0,1", "all on CPUs 0-1"), ("", "1", "client on CPU 1")] {
                for vcpus in [1u32, 2] {
                    let sc = if !server_cpus.is_empty() {
                        server_cpus
                    } else if vcpus == 1 {
                        "0"
                    } else {
                        "0,1"
                    };
                    cfgs.push(EchoConfig {
                        label: format!(
                            "{e}, {vcpus} vcpu{}, {place}, server on CPU {sc}",
                            if vcpus > 1 { "s" } else { "" }
                        ),
                        vcpus,
                        engine: e.clone(),
                        server_cpus: sc,
                        client_cpus,
                    });
                }
            }
        }
        let mut req: Vec<Series> = cfgs.iter().map(|_| Series::default()).collect();
        let mut srv: Vec<Series> = cfgs.iter().map(|_| Series::default()).collect();
        let mut cli: Vec<Series> = cfgs.iter().map(|_| Series::default()).collect();
        let mut spread: Vec<Vec<String>> = cfgs.iter().map(|_| Vec::new()).collect();
        let t0 = cpu_times();
        for rep in 1..=o.echo_reps {
            for (i, cfg) in cfgs.iter().enumerate() {
                if req[i].error.is_some() {
                    continue;
                }
                match echo_once(&p_echo, &o.client_bin, cfg, o.echo_secs, o.echo_warmup) {
                    Ok(run) => {
                        eprintln!(
                            "[echo] rep {rep}/{} {}: req/s={} server cores={:.2} client cores={:.2} conns per vcpu {}",
                            o.echo_reps,
                            cfg.label,
                            fmt_num(run.req_s),
                            run.server_cores,
                            run.client_cores,
                            run.conns_per_vcpu
                        );
                        req[i].values.push(run.req_s);
                        srv[i].values.push(run.server_cores);
                        cli[i].values.push(run.client_cores);
                        spread[i].push(run.conns_per_vcpu);
                    }
                    Err(e) => {
                        eprintln!("[echo] rep {rep}/{} {}: ERROR\n{e}", o.echo_reps, cfg.label);
                        runner.errors.push(format!("echo {}: {e}", cfg.label));
                        req[i].error = Some(e);
                    }
                }
            }
        }
        let load = describe_load(&t0, &cpu_times());
        println!("## {section}. Echo from several vcpus: requests/s (higher is better)");
        println!();
        println!(
            "bench/c/locks_echo_vcpus.c: a work pool of N vcpus, each with its own PHOTON_SERVER_REUSEPORT listener on \
             the same port (photon_workpool_spawn + photon_server_new_tcp_flags + photon_server_serve). Client: {} \
             (one vcpu, io_uring), 64 connections, ping-pong of 512 B, {} s measured after {} s of warm-up. The machine \
             has only 2 cores, so the client always shares them with the server: rows \"all on CPUs 0-1\" let the \
             kernel place server and client on both; rows \"client on CPU 1\" pin the client to CPU 1 and the server \
             to CPU 0 (1 vcpu) or CPUs 0-1 (2 vcpus: one of them shares CPU 1 with the client). Server / client \
             cores: CPU seconds per second of the measured window (/proc/PID/stat). Load meanwhile: {load}.",
            o.client_bin.display(),
            o.echo_secs,
            o.echo_warmup
        );
        println!();
        let mut rows = Vec::new();
        for (i, cfg) in cfgs.iter().enumerate() {
            let base = i - (i % 2); // the 1-vcpu row of the same placement
            let per_core = Series {
                values: req[i]
                    .values
                    .iter()
                    .zip(&srv[i].values)
                    .map(|(r, c)| r / c.max(1e-9))
                    .collect(),
                error: req[i].error.clone(),
            };
            let mut conns = spread[i].clone();
            conns.sort();
            conns.dedup();
            rows.push(vec![
                cfg.label.clone(),
                cell_median(&req[i]),
                cell_range(&req[i]),
                if i % 2 == 1 {
                    cell_ratio(&req[i], &req[base])
                } else {
                    "1.00x".into()
                },
                if srv[i].ok() {
                    format!("{:.2}", srv[i].median())
                } else {
                    "ERROR".into()
                },
                if cli[i].ok() {
                    format!("{:.2}", cli[i].median())
                } else {
                    "ERROR".into()
                },
                cell_median(&per_core),
                if conns.len() > 3 {
                    format!("{} ...", conns[..3].join(", "))
                } else {
                    conns.join(", ")
                },
            ]);
            if i % 2 == 1 && req[i].ok() && req[base].ok() {
                let ratio = req[i].median() / req[base].median();
                targets.push(format!(
                    "echo, {}: {:.2}x one vcpu (target >= 1.6x when the client is lighter than the server; here the \
                     client uses {:.2} cores against the server's {:.2}): {}",
                    cfg.label,
                    ratio,
                    cli[i].median(),
                    srv[i].median(),
                    met(ratio >= 1.6)
                ));
            }
        }
        print_table(
            &[
                "server",
                "median req/s",
                "range",
                "/ 1 vcpu",
                "server cores",
                "client cores",
                "req/s per server core",
                "conns per vcpu",
            ],
            &rows,
        );
        println!();
    }

    if !runner.engines.is_empty() {
        println!("engines used: {}", runner.engines.join("; "));
        println!();
    }
    if !targets.is_empty() {
        println!("## Targets (for information)");
        println!();
        for t in &targets {
            println!("- {t}");
        }
        println!();
    }
    let _ = std::io::stdout().flush();
    if !runner.errors.is_empty() {
        println!(
            "ERRORS ({}): the rows marked ERROR have no figures",
            runner.errors.len()
        );
        for e in &runner.errors {
            println!("- {}", e.lines().next().unwrap_or(""));
        }
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
