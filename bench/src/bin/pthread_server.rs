//! Benchmark of issue 19: an unmodified thread-per-connection server
//! (tests/preload/pthread_server.c: a pthread per connection, a pthread
//! mutex, a sleeping background pthread, an outbound connection per
//! request) as plain pthreads against the same binary under
//! `LD_PRELOAD=libphoton_preload.so PHOTON_PRELOAD_THREADS=photon` on 1 and
//! 2 vcpus, and against its port to the C API (bench/c/pthread_server_capi.c:
//! main accepts as a vcpu, connections are photon threads on a pool of 1 or
//! 2 vcpus; and the port a user writes with `photon_server_serve_on`,
//! `SERVE_ON=1`: 1 or 2 vcpus in all).
//!
//!   cargo run --release --bin pthread_server -- [--reps 3] [--secs 3] [--conns 1000]
//!
//! Each run is its own server process; runs are interleaved rep-major. The
//! client (tests/preload/pthread_client.c, one OS thread with poll) keeps
//! `conns` connections busy, each sending its next request when the reply
//! to the last arrived, for `secs`. Measured on the server, over the
//! client's window: requests/s; CPU per request (the sum of
//! /proc/<pid>/task/*/schedstat run times, every connection's thread alive
//! throughout); RSS (VmRSS) and OS threads (Threads) at the window's end;
//! kernel stacks estimated at 16 KiB per OS thread. The upstream service is
//! a child process of the server, not counted. Nothing is pinned: the
//! machine's cores are shared, so figures vary between runs.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};
use std::time::Duration;

use photon_bench::*;

struct Opts {
    reps: usize,
    secs: u32,
    conns: u32,
}

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        reps: 3,
        secs: 3,
        conns: 1000,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--reps" => o.reps = v.parse().map_err(|_| "bad --reps")?,
            "--secs" => o.secs = v.parse().map_err(|_| "bad --secs")?,
            "--conns" => o.conns = v.parse().map_err(|_| "bad --conns")?,
            _ => {
                return Err(format!(
                    "unknown option {a}; usage: pthread_server [--reps N] [--secs S] [--conns N]"
                ));
            }
        }
    }
    Ok(o)
}

/// One contender: a name and the server's environment.
struct Contender {
    name: &'static str,
    /// The C-API port instead of the unmodified server.
    capi: bool,
    env: Vec<(&'static str, String)>,
}

/// What one run measured.
#[derive(Clone, Copy, Default)]
struct Sample {
    rps: f64,
    cpu_us_per_req: f64,
    rss_mb: f64,
    threads: f64,
}

fn task_cpu_ns(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

fn status_field(pid: u32, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|r| r.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

fn read_line(r: &mut BufReader<ChildStdout>) -> Result<String, String> {
    let mut s = String::new();
    r.read_line(&mut s).map_err(|e| e.to_string())?;
    if s.is_empty() {
        return Err("child closed its output".into());
    }
    Ok(s.trim().to_string())
}

struct Killer(Child);
impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn one_run(servers: (&Path, &Path), client: &Path, c: &Contender, o: &Opts) -> Result<Sample, String> {
    let mut cmd = Command::new(if c.capi { servers.1 } else { servers.0 });
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    for (k, v) in &c.env {
        cmd.env(k, v);
    }
    let mut srv = Killer(cmd.spawn().map_err(|e| format!("start server: {e}"))?);
    let pid = srv.0.id();
    let mut sout = BufReader::new(srv.0.stdout.take().ok_or("no server stdout")?);
    let port_line = read_line(&mut sout)?;
    let port = port_line
        .strip_prefix("port ")
        .ok_or_else(|| format!("server printed {port_line:?}"))?
        .to_string();
    let mut cl = Killer(
        Command::new(client)
            .args(["bench", &port, &o.conns.to_string(), &o.secs.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("start client: {e}"))?,
    );
    let mut cout = BufReader::new(cl.0.stdout.take().ok_or("no client stdout")?);
    if read_line(&mut cout)? != "start" {
        return Err("client did not start".into());
    }
    let cpu0 = task_cpu_ns(pid);
    let req_line = read_line(&mut cout)?;
    let cpu1 = task_cpu_ns(pid);
    let rss_kb = status_field(pid, "VmRSS:");
    let threads = status_field(pid, "Threads:");
    let _status = read_line(&mut cout)?;
    let requests: f64 = req_line
        .strip_prefix("requests ")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("client printed {req_line:?}"))?;
    // Let the client close its connections, then stop the server.
    let _ = cl.0.stdin.take().map(|mut i| i.write_all(b"x"));
    let _ = cl.0.wait();
    std::thread::sleep(Duration::from_millis(200));
    if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port.parse::<u16>().map_err(|e| e.to_string())?)) {
        let _ = s.write_all(b"QUIT\n");
    }
    let _ = srv.0.wait();
    if requests <= 0.0 {
        return Err("no request completed".into());
    }
    Ok(Sample {
        rps: requests / o.secs as f64,
        cpu_us_per_req: (cpu1 - cpu0) as f64 / 1000.0 / requests,
        rss_mb: rss_kb / 1024.0,
        threads,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
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
    let built = (|| -> Result<_, String> {
        let so = build_libphoton()?;
        let shim = preload_beside(&so)?;
        let server = compile("../../tests/preload/pthread_server.c", "pthread_server", None, &[])?;
        let client = compile("../../tests/preload/pthread_client.c", "pthread_client", None, &[])?;
        let capi = compile("pthread_server_capi.c", "pthread_server_capi", Some(&so), &[])?;
        Ok((so, shim, server, client, capi))
    })();
    let (so, shim, server, client, capi) = match built {
        Ok(b) => b,
        Err(e) => {
            eprintln!("ERROR: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shim_s = shim.display().to_string();
    let contenders = [
        Contender {
            name: "pthreads (no shim)",
            capi: false,
            env: vec![],
        },
        Contender {
            name: "photon threads, 1 vcpu",
            capi: false,
            env: vec![
                ("LD_PRELOAD", shim_s.clone()),
                ("PHOTON_PRELOAD_THREADS", "photon".into()),
                ("PHOTON_VCPUS", "1".into()),
            ],
        },
        Contender {
            name: "photon threads, 2 vcpus",
            capi: false,
            env: vec![
                ("LD_PRELOAD", shim_s.clone()),
                ("PHOTON_PRELOAD_THREADS", "photon".into()),
                ("PHOTON_VCPUS", "2".into()),
            ],
        },
        Contender {
            name: "C-API port, 1 vcpu",
            capi: true,
            env: vec![("VCPUS", "1".into())],
        },
        Contender {
            name: "C-API port, 2 vcpus",
            capi: true,
            env: vec![("VCPUS", "2".into())],
        },
        Contender {
            name: "C-API port, serve_on 1 vcpu",
            capi: true,
            env: vec![("VCPUS", "1".into()), ("SERVE_ON", "1".into())],
        },
        Contender {
            name: "C-API port, serve_on 2 vcpus",
            capi: true,
            env: vec![("VCPUS", "2".into()), ("SERVE_ON", "1".into())],
        },
    ];
    println!("# issue 19: an unmodified pthread server as pthreads and as photon threads");
    println!();
    println!("machine: {}, nproc {}", cpu_model(), allowed_cpus().len());
    println!("kernel:  {}", kernel_release());
    println!("libphoton: git {} ({})", git_revision(), so.display());
    println!(
        "{} connections, {} s per run, {} reps interleaved, medians; engine: PHOTON_ENGINE or the default",
        o.conns, o.secs, o.reps
    );
    println!();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); contenders.len()];
    let mut failed = false;
    for rep in 0..o.reps {
        for (i, c) in contenders.iter().enumerate() {
            match one_run((&server, &capi), &client, c, &o) {
                Ok(s) => {
                    eprintln!(
                        "rep {rep} {}: {:.0} req/s, {:.1} us CPU/req, {:.1} MB RSS, {} threads",
                        c.name, s.rps, s.cpu_us_per_req, s.rss_mb, s.threads
                    );
                    samples[i].push(s);
                }
                Err(e) => {
                    eprintln!("rep {rep} {}: ERROR {e}", c.name);
                    failed = true;
                }
            }
        }
    }
    let base = median(samples[0].iter().map(|s| s.rps).collect());
    println!(
        "| server | requests/s | vs pthreads | server CPU us/request | RSS MB | OS threads | kernel stacks (est.) MB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (c, s) in contenders.iter().zip(&samples) {
        if s.is_empty() {
            println!("| {} | failed | | | | | |", c.name);
            continue;
        }
        let rps = median(s.iter().map(|x| x.rps).collect());
        let threads = median(s.iter().map(|x| x.threads).collect());
        println!(
            "| {} | {:.0} | {:.2}x | {:.1} | {:.1} | {:.0} | {:.1} |",
            c.name,
            rps,
            rps / base,
            median(s.iter().map(|x| x.cpu_us_per_req).collect()),
            median(s.iter().map(|x| x.rss_mb).collect()),
            threads,
            threads * 16.0 / 1024.0
        );
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
