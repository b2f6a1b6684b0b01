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
//!   cargo run --release --bin pthread_server -- [--reps 3] [--secs 3] [--conns 1000] [--pin]
//!
//! Each run is its own server process; runs are interleaved rep-major. The
//! client (tests/preload/pthread_client.c, one OS thread with poll) keeps
//! `conns` connections busy, each sending its next request when the reply
//! to the last arrived, for `secs`. Measured on the server, over the
//! client's window: requests/s; CPU per request (the sum of
//! /proc/<pid>/task/*/schedstat run times, every connection's thread alive
//! throughout); RSS (VmRSS) and OS threads (Threads) at the window's end;
//! kernel stacks estimated at 16 KiB per OS thread. The upstream service is
//! a child process of the server, not counted in the server's CPU; its CPU
//! per request and the client's are columns of their own: on a machine of
//! 2 cores all three compete for the same CPUs, so the rate follows their
//! sum once the cores are busy.
//!
//! By default nothing is pinned. `--pin`: every server on CPU 0, and the
//! client and the upstream (re-pinned after the server forked it) on CPU 1,
//! the same for every contender; the 2-vcpu rows are left out (one core).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};
use std::time::Duration;

use photon_bench::*;

struct Opts {
    c: Common,
    conns: u32,
    pin: bool,
}

const USAGE: &str = "usage: pthread_server [--reps N] [--secs S] [--conns N] [--pin] [--quiet-wait S] [--verbose]";

fn parse_opts(args: &mut Args) -> Result<Opts, String> {
    let mut o = Opts {
        c: Common::new(3, 3.0, &[]),
        conns: 1000,
        pin: false,
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--conns" => o.conns = args.value(&a)?,
            "--pin" => o.pin = true,
            _ => o.c.take(&a, args)?,
        }
    }
    o.c.check()?;
    if o.c.secs.fract() != 0.0 {
        return Err("--secs: whole seconds (the client counts in seconds)".into());
    }
    if o.conns == 0 {
        return Err("--conns must be > 0".into());
    }
    Ok(o)
}

/// One contender: a name and the server's environment.
struct Case {
    name: String,
    /// The C-API port instead of the unmodified server.
    capi: bool,
    /// Runs on more than one core (left out with --pin).
    multi: bool,
    env: Vec<(&'static str, String)>,
}

/// What one run measured.
#[derive(Clone, Copy, Default)]
struct Sample {
    rps: f64,
    cpu_us_per_req: f64,
    upstream_us_per_req: f64,
    client_us_per_req: f64,
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

fn one_run(servers: (&Path, &Path), client: &Path, c: &Case, o: &Opts) -> Result<Sample, String> {
    let mut cmd = Command::new(if c.capi { servers.1 } else { servers.0 });
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    for (k, v) in &c.env {
        cmd.env(k, v);
    }
    if o.pin {
        pin_command(&mut cmd, 0);
    }
    let mut srv = Killer(cmd.spawn().map_err(|e| format!("start server: {e}"))?);
    let pid = srv.0.id();
    let mut sout = BufReader::new(srv.0.stdout.take().ok_or("no server stdout")?);
    let port_line = read_line(&mut sout)?;
    let port = port_line
        .strip_prefix("port ")
        .ok_or_else(|| format!("server printed {port_line:?}"))?
        .to_string();
    // The upstream: the server's child, forked before it printed the port.
    let upstream: u32 = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .ok_or("the server has no upstream child")?;
    if o.pin {
        // SAFETY: plain syscall on a local cpu_set_t.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(1, &mut set);
            if libc::sched_setaffinity(upstream as i32, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(format!("pin the upstream: {}", std::io::Error::last_os_error()));
            }
        }
    }
    let mut ccmd = Command::new(client);
    ccmd.args(["bench", &port, &o.conns.to_string(), &(o.c.secs as u64).to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if o.pin {
        pin_command(&mut ccmd, 1);
    }
    let mut cl = Killer(ccmd.spawn().map_err(|e| format!("start client: {e}"))?);
    let cpid = cl.0.id();
    let mut cout = BufReader::new(cl.0.stdout.take().ok_or("no client stdout")?);
    if read_line(&mut cout)? != "start" {
        return Err("client did not start".into());
    }
    let cpu0 = (task_cpu_ns(pid), task_cpu_ns(upstream), task_cpu_ns(cpid));
    let req_line = read_line(&mut cout)?;
    let cpu1 = (task_cpu_ns(pid), task_cpu_ns(upstream), task_cpu_ns(cpid));
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
        rps: requests / o.c.secs,
        cpu_us_per_req: (cpu1.0 - cpu0.0) as f64 / 1000.0 / requests,
        upstream_us_per_req: (cpu1.1 - cpu0.1) as f64 / 1000.0 / requests,
        client_us_per_req: (cpu1.2 - cpu0.2) as f64 / 1000.0 / requests,
        rss_mb: rss_kb / 1024.0,
        threads,
    })
}

fn main() -> ExitCode {
    let o = parse_or_exit(USAGE, parse_opts);
    remember_affinity();
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
        Err(e) => return fatal(e),
    };
    let shim_s = shim.display().to_string();
    // The unmodified server under the shim with pthreads as photon threads
    // on `vcpus` vcpus, plus one A/B variable when `ab` is given.
    let photon = |vcpus: u32, ab: Option<(&'static str, &'static str)>| {
        let mut env = vec![
            ("LD_PRELOAD", shim_s.clone()),
            ("PHOTON_PRELOAD_THREADS", "photon".into()),
            ("PHOTON_VCPUS", vcpus.to_string()),
        ];
        let mut name = format!("photon threads, {vcpus} vcpu{}", if vcpus == 1 { "" } else { "s" });
        if let Some((var, value)) = ab {
            env.push((var, value.into()));
            name += &format!(", {var}={value}");
        }
        Case {
            name,
            capi: false,
            multi: vcpus > 1,
            env,
        }
    };
    let all = [
        Case {
            name: "pthreads (no shim)".into(),
            capi: false,
            multi: false,
            env: vec![],
        },
        photon(1, None),
        photon(2, None),
        photon(1, Some(("PHOTON_IO_WAKE", "fifo"))),
        photon(2, Some(("PHOTON_IO_WAKE", "fifo"))),
        photon(2, Some(("PHOTON_PRELOAD_DIRECT_READ", "0"))),
        photon(1, Some(("PHOTON_PRELOAD_DIRECT_READ", "0"))),
        Case {
            name: "C-API port, 1 vcpu".into(),
            capi: true,
            multi: false,
            env: vec![("VCPUS", "1".into())],
        },
        Case {
            name: "C-API port, 2 vcpus".into(),
            capi: true,
            multi: true,
            env: vec![("VCPUS", "2".into())],
        },
        Case {
            name: "C-API port, serve_on 1 vcpu".into(),
            capi: true,
            multi: false,
            env: vec![("VCPUS", "1".into()), ("SERVE_ON", "1".into())],
        },
        Case {
            name: "C-API port, serve_on 2 vcpus".into(),
            capi: true,
            multi: true,
            env: vec![("VCPUS", "2".into()), ("SERVE_ON", "1".into())],
        },
    ];
    let contenders: Vec<Case> = all.into_iter().filter(|c| !(o.pin && c.multi)).collect();
    print_header(
        "issue 19: an unmodified pthread server as pthreads and as photon threads",
        if o.pin {
            "every server on CPU 0; the client and the upstream on CPU 1"
        } else {
            "nothing (the machine's cores are shared by server, upstream and client)"
        },
    );
    println!("library: {}", so.display());
    println!(
        "{} connections, {} s per run, {} reps interleaved, medians; engine: PHOTON_ENGINE or the default",
        o.conns, o.c.secs, o.c.reps
    );
    println!();
    let labels: Vec<String> = contenders.iter().map(|c| c.name.clone()).collect();
    let mut runner = Runner::new(&o.c);
    let rows = runner.interleave(
        "pthread_server",
        &labels,
        o.c.reps,
        |i, _| one_run((&server, &capi), &client, &contenders[i], &o),
        |s| {
            format!(
                "{:.0} req/s, {:.1} us CPU/req (upstream {:.1}, client {:.1}), {:.1} MB RSS, {} threads",
                s.rps, s.cpu_us_per_req, s.upstream_us_per_req, s.client_us_per_req, s.rss_mb, s.threads
            )
        },
    );
    let base = rows[0].series(|x| x.rps);
    let table: Vec<Vec<String>> = rows
        .iter()
        .zip(&labels)
        .map(|(r, label)| {
            let rps = r.series(|x| x.rps);
            let threads = r.series(|x| x.threads);
            vec![
                label.clone(),
                cell_fixed(&rps, 0, ""),
                cell_ratio(&rps, &base),
                cell_fixed(&r.series(|x| x.cpu_us_per_req), 1, ""),
                cell_fixed(&r.series(|x| x.upstream_us_per_req), 1, ""),
                cell_fixed(&r.series(|x| x.client_us_per_req), 1, ""),
                cell_fixed(&r.series(|x| x.rss_mb), 1, ""),
                cell_fixed(&threads, 0, ""),
                cell_fixed(&r.series(|x| x.threads * 16.0 / 1024.0), 1, ""),
            ]
        })
        .collect();
    print_table(
        &[
            "server",
            "requests/s",
            "vs pthreads",
            "server CPU us/request",
            "upstream CPU us/request",
            "client CPU us/request",
            "RSS MB",
            "OS threads",
            "kernel stacks (est.) MB",
        ],
        &table,
    );
    println!();
    runner.finish(&[])
}
