//! `tls_echo`: TLS echo, libphoton + OpenSSL (include/photon_ssl.h) against
//! a tokio-rustls server, same client, same run (issue 17; method in the
//! team's benchmarking guide BENCH.md).
//!
//! Each server runs pinned to CPU 0 with one thread (one vcpu, or tokio's
//! `current_thread`); the client (c/tls_echo_client.c: libphoton epoll +
//! OpenSSL, TLS 1.3, TLS_AES_128_GCM_SHA256 only) runs pinned to CPU 1 with
//! 64 connections, each writing 4 KiB, reading it back and checking it.
//! Interleaved: `for rep { for server { one run } }`, each run a fresh
//! server and client. Per run: MB/s of payload echoed in the client's
//! measured window, and the server process's CPU time (user + system, from
//! /proc/PID/stat) over that window per MB echoed.
//!
//! `openssl s_server` is no row: it serves one connection at a time and
//! echoes only line by line (`-rev`, reversed), so it cannot carry 64
//! concurrent connections. kTLS rows run where the kernel offers the TLS
//! ULP (/proc/sys/net/ipv4/tcp_available_ulp); elsewhere a note says so.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use photon_bench::*;

const USAGE: &str = "\
usage: tls_echo [options]
  --reps N          repetitions of each server (default 5)
  --secs S          measured seconds of each run (default 3)
  --warmup S        client warm-up before the window (default 0.5)
  --conns N         connections (default 64)
  --size B          message size in bytes (default 4096)
  --quick           smoke test: 1 rep of 1 s
  --quiet-wait S    before each run wait up to S s for a quiet machine (default 5; 0: no wait)
  --verbose         every run's details on stderr
";

struct Opts {
    c: Common,
    warmup: f64,
    conns: usize,
    size: usize,
}

fn parse(args: &mut Args) -> Result<Opts, String> {
    let mut o = Opts {
        c: Common::new(5, 3.0, &["echo"]).quiet_wait(5.0),
        warmup: 0.5,
        conns: 64,
        size: 4096,
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--warmup" => o.warmup = args.value(&a)?,
            "--conns" => o.conns = args.value(&a)?,
            "--size" => o.size = args.value(&a)?,
            "--quick" => {
                o.c.reps = 1;
                o.c.secs = 1.0;
            }
            _ => o.c.take(&a, args)?,
        }
    }
    o.c.check()?;
    if o.c.secs <= 0.3 {
        return Err("--secs must exceed 0.3".into());
    }
    Ok(o)
}

/// A CA and a server certificate for localhost, made with the openssl CLI.
fn make_certs(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let run = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|e| format!("cannot run openssl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=bench CA",
    ]);
    run(&ca)?;
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
    run(&csr)?;
    std::fs::write(dir.join("leaf.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        .map_err(|e| format!("leaf.ext: {e}"))?;
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ])
}

/// A server row: how to start it (it prints `listening on PORT`).
struct Server {
    label: String,
    cmd: Contender,
}

struct Run {
    mbps: f64,
    cpu_ms_per_mb: f64,
    server_cpu: f64,
}

struct Started {
    child: Child,
    port: u16,
}

fn start_server(s: &Server) -> Result<Started, String> {
    let mut cmd = s.cmd.command();
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", s.label))?;
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    let got = out.read_line(&mut line);
    let port = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|p| p.parse::<u16>().ok());
    match (got, port) {
        (Ok(_), Some(port)) => {
            drop(drain(out));
            Ok(Started { child, port })
        }
        _ => {
            let _ = child.kill();
            let err = drain(child.stderr.take().expect("piped")).join().unwrap_or_default();
            let _ = child.wait();
            Err(format!(
                "{} did not say its port ({line:?}): {}",
                s.label,
                tail(&err, 10)
            ))
        }
    }
}

fn cpu_of(pid: u32) -> Result<f64, String> {
    proc_cpu(pid).map(|(u, s)| u + s)
}

fn one_run(o: &Opts, s: &Server, client: &Path, ca: &Path) -> Result<Run, String> {
    let mut srv = start_server(s)?;
    let pid = srv.child.id();
    let result = (|| -> Result<Run, String> {
        let mut c = Command::new(client);
        c.arg(srv.port.to_string())
            .arg(ca)
            .args([
                o.conns.to_string(),
                o.size.to_string(),
                o.warmup.to_string(),
                o.c.secs.to_string(),
            ])
            .env("PHOTON_ENGINE", "epoll")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        pin_command(&mut c, 1);
        let mut cl = c.spawn().map_err(|e| format!("cannot start the client: {e}"))?;
        let cerr = drain(cl.stderr.take().expect("piped"));
        let mut out = BufReader::new(cl.stdout.take().expect("piped"));
        let (mut c0, mut c1, mut result) = (None, None, None);
        let deadline = Instant::now() + Duration::from_secs_f64(o.c.secs + o.warmup + 60.0);
        let mut line = String::new();
        while Instant::now() < deadline {
            line.clear();
            if out.read_line(&mut line).map_err(|e| format!("client stdout: {e}"))? == 0 {
                break;
            }
            let l = line.trim();
            if l == "MEASURE begin" {
                c0 = Some(cpu_of(pid)?);
            } else if l == "MEASURE end" {
                c1 = Some(cpu_of(pid)?);
            } else if let Some(r) = l.strip_prefix("RESULT ") {
                result = Some(r.to_string());
            }
        }
        let status = wait_timeout(&mut cl, Duration::from_secs(30));
        let err = cerr.join().unwrap_or_default();
        match status {
            Some(st) if st.success() => {}
            Some(st) => return Err(format!("client failed ({}): {}", describe_status(st), tail(&err, 10))),
            None => return Err(format!("client hung: {}", tail(&err, 10))),
        }
        let (Some(c0), Some(c1), Some(r)) = (c0, c1, result) else {
            return Err(format!("client output incomplete: {}", tail(&err, 10)));
        };
        let field = |k: &str| -> Result<f64, String> {
            r.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("no {k} in RESULT {r}"))
        };
        let (mbps, secs) = (field("mbps")?, field("secs")?);
        let mb = mbps * secs;
        if mb <= 0.0 {
            return Err("nothing echoed".into());
        }
        Ok(Run {
            mbps,
            cpu_ms_per_mb: (c1 - c0) * 1000.0 / mb,
            server_cpu: (c1 - c0) / secs,
        })
    })();
    if let Ok(Some(st)) = srv.child.try_wait() {
        return Err(format!("the server exited during the run ({})", describe_status(st)));
    }
    let _ = srv.child.kill();
    let _ = srv.child.wait();
    result
}

fn main() -> ExitCode {
    let o = parse_or_exit(USAGE, parse);
    remember_affinity();
    let cpus = allowed_cpus();
    if !cpus.contains(&0) || !cpus.contains(&1) {
        return fatal("needs CPUs 0 and 1 (server on 0, client on 1)");
    }
    let lib = match build_libphoton() {
        Ok(l) => l,
        Err(e) => return fatal(e),
    };
    let ssl = ["-lssl", "-lcrypto"];
    let (server_bin, client_bin) = match (
        compile("tls_echo_photon.c", "tls_echo_photon", Some(&lib), &ssl),
        compile("tls_echo_client.c", "tls_echo_client", Some(&lib), &ssl),
    ) {
        (Ok(s), Ok(c)) => (s, c),
        (Err(e), _) | (_, Err(e)) => return fatal(e),
    };
    let rustls_bin: PathBuf = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("echo_tokio_rustls")))
        .unwrap_or_default();
    if !rustls_bin.is_file() {
        return fatal(format!(
            "{} is missing: cargo build --release --bin echo_tokio_rustls",
            rustls_bin.display()
        ));
    }
    let certs = cbin_dir().join("tls-certs");
    if let Err(e) = make_certs(&certs) {
        return fatal(e);
    }
    let (cert, key, ca) = (certs.join("server.pem"), certs.join("server.key"), certs.join("ca.pem"));
    let cert_s = cert.to_string_lossy().into_owned();
    let key_s = key.to_string_lossy().into_owned();

    let ktls = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp")
        .map(|s| s.split_whitespace().any(|u| u == "tls"))
        .unwrap_or(false);
    let mut servers = Vec::new();
    for engine in ["epoll", "io_uring"] {
        servers.push(Server {
            label: format!("libphoton+OpenSSL {engine}"),
            cmd: Contender::new("", &server_bin)
                .args(["0", &cert_s, &key_s])
                .env("PHOTON_ENGINE", engine)
                .pin(0),
        });
    }
    if ktls {
        servers.push(Server {
            label: "libphoton+OpenSSL kTLS epoll".into(),
            cmd: Contender::new("", &server_bin)
                .args(["0", &cert_s, &key_s, "ktls"])
                .env("PHOTON_ENGINE", "epoll")
                .pin(0),
        });
    }
    servers.push(Server {
        label: "tokio-rustls current_thread".into(),
        cmd: Contender::new("", &rustls_bin)
            .args(["--port", "0", "--cert", &cert_s, "--key", &key_s])
            .pin(0),
    });

    print_header(
        &format!("TLS echo, {} connections x {} B", o.conns, o.size),
        "server on CPU 0 (one thread), client on CPU 1 (libphoton epoll + OpenSSL)",
    );
    let openssl_version = Command::new("openssl")
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!("openssl: {openssl_version}");
    println!("tokio-rustls: {}", locked_versions("tokio-rustls"));
    println!("rustls: {}", locked_versions("rustls"));
    println!("TLS 1.3, TLS_AES_128_GCM_SHA256 (the client offers nothing else)");
    println!(
        "{} reps x {} s (+{} s warm-up), interleaved",
        o.c.reps, o.c.secs, o.warmup
    );
    println!();
    println!("note: openssl s_server is no row: it serves one connection at a time, line by line (-rev)");
    if !ktls {
        println!(
            "note: no kTLS rows: the kernel has no TLS ULP (/proc/sys/net/ipv4/tcp_available_ulp lacks tls; `modprobe tls`)"
        );
    }
    println!();

    let labels: Vec<String> = servers.iter().map(|s| s.label.clone()).collect();
    let mut runner = Runner::new(&o.c);
    let rows = runner.interleave(
        "tls-echo",
        &labels,
        o.c.reps,
        |ci, _| one_run(&o, &servers[ci], &client_bin, &ca),
        |r| {
            format!(
                "{:.1} MB/s, server {:.2} CPU-ms/MB ({:.0}% of a CPU)",
                r.mbps,
                r.cpu_ms_per_mb,
                r.server_cpu * 100.0
            )
        },
    );
    let mbps: Vec<Series> = rows.iter().map(|r| r.series(|x| x.mbps)).collect();
    let cpu: Vec<Series> = rows.iter().map(|r| r.series(|x| x.cpu_ms_per_mb)).collect();
    let util: Vec<Series> = rows.iter().map(|r| r.series(|x| x.server_cpu * 100.0)).collect();
    let base = 0; // libphoton epoll
    let table: Vec<Vec<String>> = (0..servers.len())
        .map(|i| {
            vec![
                labels[i].clone(),
                cell_fixed(&mbps[i], 1, ""),
                cell_range(&mbps[i]),
                cell_ratio(&mbps[base], &mbps[i]),
                cell_fixed(&cpu[i], 2, ""),
                cell_range(&cpu[i]),
                cell_ratio(&cpu[base], &cpu[i]),
                cell_fixed(&util[i], 0, "%"),
            ]
        })
        .collect();
    print_table(
        &[
            "server",
            "MB/s median",
            "range",
            "libphoton epoll / this",
            "server CPU-ms per MB",
            "range",
            "libphoton epoll / this",
            "server CPU",
        ],
        &table,
    );
    println!();
    println!("load during the table: {}", runner.last_load);
    println!();
    let rustls = servers.len() - 1;
    let mut targets = Vec::new();
    if let (Some(t), Some(c)) = (ratio(&mbps[base], &mbps[rustls]), ratio(&cpu[base], &cpu[rustls])) {
        targets.push(format!(
            "libphoton+OpenSSL epoll vs tokio-rustls: {t:.2}x the MB/s, {c:.2}x the server CPU per MB (lower is better)"
        ));
    }
    runner.finish(&targets)
}
