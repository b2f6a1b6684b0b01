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
//!    (the counter is checked against the increments counted); the same
//!    with a photon_sem of count 1 (FIFO hand-off) and a photon_rwlock's
//!    write side as the lock, against the mutex.
//! 2. uncontended lock/unlock pair, one thread on CPU 1, ns per pair, against
//!    pthread_mutex_lock/unlock in a process with a second (sleeping) thread,
//!    and for information in a single-threaded one (no atomics in glibc).
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

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use photon_bench::*;

// ------------------------------------------------------------------ options

struct Opts {
    c: Common,
    echo_reps: usize,
    echo_secs: f64,
    echo_warmup: f64,
    echo_engines: Vec<String>,
    client_bin: PathBuf,
}

const USAGE: &str = "usage: locks [--reps N] [--secs S] [--echo-reps N] [--echo-secs S] [--echo-warmup S] \
                     [--echo-engines io_uring,epoll] [--only contended,uncontended,pingpong,echo] \
                     [--client-bin PATH] [--quiet-wait S] [--verbose]";
const PARTS: &[&str] = &["contended", "uncontended", "pingpong", "echo"];

fn parse_opts(args: &mut Args) -> Result<Opts, String> {
    let mut o = Opts {
        c: Common::new(7, 1.0, PARTS),
        echo_reps: 5,
        echo_secs: 3.0,
        echo_warmup: 1.0,
        echo_engines: vec!["io_uring".into()],
        client_bin: root_dir().join("build").join("echo_client"),
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--echo-reps" => o.echo_reps = args.value(&a)?,
            "--echo-secs" => o.echo_secs = args.value(&a)?,
            "--echo-warmup" => o.echo_warmup = args.value(&a)?,
            "--echo-engines" => o.echo_engines = args.list(&a)?,
            "--client-bin" => o.client_bin = PathBuf::from(args.string(&a)?),
            _ => o.c.take(&a, args)?,
        }
    }
    o.c.check()?;
    if o.echo_reps == 0
        || !(o.echo_secs.is_finite() && o.echo_secs > 0.0)
        || !(o.echo_warmup.is_finite() && o.echo_warmup >= 0.0)
    {
        return Err("--echo-reps, --echo-secs must be > 0, --echo-warmup >= 0".into());
    }
    for e in &o.echo_engines {
        if e != "io_uring" && e != "epoll" {
            return Err(format!("--echo-engines: unknown engine {e}"));
        }
    }
    Ok(o)
}

/// A row run on libphoton's `engine` (None: a peer, the variable removed).
fn contender(label: &str, program: &Path, args: &[&str], engine: Option<&str>) -> Contender {
    let c = Contender::new(label, program).args(args);
    match engine {
        Some(e) => c.env("PHOTON_ENGINE", e),
        None => c,
    }
}

// --------------------------------------------------------------------- echo

/// CPU time (user + system) of a process so far, in seconds.
fn cpu_secs(pid: u32) -> Result<f64, String> {
    proc_cpu(pid).map(|(u, s)| u + s)
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
    let o = parse_or_exit(USAGE, parse_opts);
    remember_affinity();
    let allowed = allowed_cpus();
    if !(allowed.contains(&0) && allowed.contains(&1)) {
        return fatal(format!("this benchmark needs CPUs 0 and 1 (allowed: {allowed:?})"));
    }
    let want = |w: &str| o.c.want(w);
    if want("echo") && !o.client_bin.is_file() {
        return fatal(format!(
            "no echo client at {} (build it: cmake --build build in the repository, or pass --client-bin)",
            o.client_bin.display()
        ));
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
        Err(e) => return fatal(e),
    };

    print_header(
        "libphoton benchmark: locks and several vcpus",
        &format!(
            "stated per table (the machine has {} CPUs; nothing else of this benchmark runs meanwhile)",
            allowed.len()
        ),
    );
    println!("library: {}", so.display());
    println!(
        "method:  rep-major interleaved (for rep {{ for contender {{ one run }} }}); {} reps of ~{} s for tables 1-3, \
         {} reps of {} s (+{} s warm-up) for table 4; median, min - max, ratio of medians",
        o.c.reps, o.c.secs, o.echo_reps, o.echo_secs, o.echo_warmup
    );
    println!();

    let secs = o.c.secs.to_string();
    let reps = o.c.reps;
    let timeout = Duration::from_secs_f64(60.0 + o.c.secs * 20.0);
    let mut runner = Runner::new(&o.c);
    let mut targets: Vec<String> = Vec::new();
    let mut section = 0;

    if want("contended") {
        section += 1;
        let cs = vec![
            contender(
                "libphoton io_uring, 8 threads on 2 vcpus (main + pool of 1)",
                &p_photon,
                &["contended", &secs, "8", "2"],
                Some("io_uring"),
            ),
            contender(
                "libphoton epoll, 8 threads on 2 vcpus (main + pool of 1)",
                &p_photon,
                &["contended", &secs, "8", "2"],
                Some("epoll"),
            ),
            contender(
                "8 pthreads, pthread_mutex_t",
                &p_pthread,
                &["contended", &secs, "8"],
                None,
            ),
            contender(
                "libphoton io_uring, photon_sem (count 1, FIFO hand-off) as the lock",
                &p_photon,
                &["contended", &secs, "8", "2", "sem"],
                Some("io_uring"),
            ),
            contender(
                "libphoton epoll, photon_sem (count 1, FIFO hand-off) as the lock",
                &p_photon,
                &["contended", &secs, "8", "2", "sem"],
                Some("epoll"),
            ),
            contender(
                "libphoton io_uring, photon_rwlock write lock",
                &p_photon,
                &["contended", &secs, "8", "2", "rwlock"],
                Some("io_uring"),
            ),
            contender(
                "libphoton epoll, photon_rwlock write lock",
                &p_photon,
                &["contended", &secs, "8", "2", "rwlock"],
                Some("epoll"),
            ),
        ];
        let r = runner.run("contended", &cs, reps, &["value"], timeout);
        let load = runner.last_load.clone();
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
        println!(
            "The semaphore and rwlock rows use the same 8 threads on 2 vcpus, the lock being a photon_sem of count 1 \
             (wait 1 / signal 1) or a photon_rwlock's write side; target: within 2x of the mutex on the same engine."
        );
        println!();
        for (i, mutex) in [(3, 0), (4, 1), (5, 0), (6, 1)] {
            if r[i][0].ok() && r[mutex][0].ok() {
                let ratio = r[mutex][0].median() / r[i][0].median();
                targets.push(format!(
                    "hand-off, {}: the mutex does {:.2}x its pairs/s (target <= 2x): {}",
                    cs[i].label,
                    ratio,
                    verdict(ratio <= 2.0)
                ));
            }
        }
        for (i, c) in cs.iter().take(2).enumerate() {
            if r[i][0].ok() && peer.ok() {
                let ratio = r[i][0].median() / peer.median();
                targets.push(format!(
                    "contended, {}: {:.2}x pthread (target >= 1.0x): {}",
                    c.label,
                    ratio,
                    verdict(ratio >= 1.0)
                ));
            }
        }
    }

    if want("uncontended") {
        section += 1;
        let cs = vec![
            contender(
                "libphoton photon_mutex_lock + unlock",
                &p_photon,
                &["uncontended", &secs],
                Some("io_uring"),
            ),
            contender(
                "pthread_mutex_lock + unlock (a 2nd thread alive)",
                &p_pthread,
                &["uncontended", &secs],
                None,
            ),
            contender(
                "pthread_mutex_lock + unlock, single-threaded process",
                &p_pthread,
                &["uncontended", &secs, "single"],
                None,
            ),
        ];
        let r = runner.run("uncontended", &cs, reps, &["value"], timeout);
        let load = runner.last_load.clone();
        println!("## {section}. Uncontended lock/unlock pair: ns per pair (lower is better)");
        println!();
        println!(
            "One thread on CPU 1, calibrated to ~{} s per run. Load meanwhile: {load}. The target's \
             peer is pthread's pair while a second thread of the process exists (libphoton's process \
             always has its service threads); in a single-threaded process glibc skips the atomic \
             instructions (last row, information only).",
            o.c.secs
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
                verdict(ratio <= 1.2)
            ));
        }
    }

    if want("pingpong") {
        section += 1;
        let cs = vec![
            contender(
                "libphoton photon_sem pair, io_uring",
                &p_photon,
                &["pingpong", &secs, "sem"],
                Some("io_uring"),
            ),
            contender(
                "libphoton photon_sem pair, epoll",
                &p_photon,
                &["pingpong", &secs, "sem"],
                Some("epoll"),
            ),
            contender(
                "libphoton photon_cond + mutex, io_uring",
                &p_photon,
                &["pingpong", &secs, "cond"],
                Some("io_uring"),
            ),
            contender(
                "libphoton photon_cond + mutex, epoll",
                &p_photon,
                &["pingpong", &secs, "cond"],
                Some("epoll"),
            ),
            contender(
                "pthread_cond_t + pthread_mutex_t",
                &p_pthread,
                &["pingpong", &secs, "cond"],
                None,
            ),
            contender("POSIX sem_t pair", &p_pthread, &["pingpong", &secs, "sem"], None),
        ];
        let r = runner.run("pingpong", &cs, reps, &["median_us", "p99_us", "max_us"], timeout);
        let load = runner.last_load.clone();
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
            if r[i][0].ok() && peer[0].ok() {
                let (m, p) = (r[i][0].median() / peer[0].median(), r[i][1].median() / peer[1].median());
                targets.push(format!(
                    "cross-vcpu wake, {}: round trip {:.1} us median, {:.1} us p99 = {m:.2}x / {p:.2}x the pthread \
                     condvar ping-pong (target <= 1.0x both): {}",
                    c.label,
                    r[i][0].median(),
                    r[i][1].median(),
                    verdict(m <= 1.0 && p <= 1.0)
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
        let labels: Vec<String> = cfgs.iter().map(|c| c.label.clone()).collect();
        let rows = runner.interleave(
            "echo",
            &labels,
            o.echo_reps,
            |i, _| echo_once(&p_echo, &o.client_bin, &cfgs[i], o.echo_secs, o.echo_warmup),
            |run| {
                format!(
                    "req/s={} server cores={:.2} client cores={:.2} conns per vcpu {}",
                    fmt_num(run.req_s),
                    run.server_cores,
                    run.client_cores,
                    run.conns_per_vcpu
                )
            },
        );
        let load = runner.last_load.clone();
        let req: Vec<Series> = rows.iter().map(|r| r.series(|x| x.req_s)).collect();
        let srv: Vec<Series> = rows.iter().map(|r| r.series(|x| x.server_cores)).collect();
        let cli: Vec<Series> = rows.iter().map(|r| r.series(|x| x.client_cores)).collect();
        let spread: Vec<Vec<String>> = rows
            .iter()
            .map(|r| r.runs.iter().map(|x| x.conns_per_vcpu.clone()).collect())
            .collect();
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
                    verdict(ratio >= 1.6)
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

    runner.finish(&targets)
}
