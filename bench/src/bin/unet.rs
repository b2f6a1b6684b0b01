//! `unet`: libphoton's echo server on its userspace TCP/IP stack (smoltcp
//! over a TAP device) against the same server on kernel sockets, side by
//! side (issue "kernel-bypass networking"; method in the team's
//! benchmarking guide BENCH.md; usage in bench/README.md).
//!
//! Runs as root. It re-executes itself in a private network namespace
//! (`unshare -n`) holding one TAP interface, `ubench0`: the kernel's side
//! has 10.78.0.1/24, the userspace stack 10.78.0.2/24. Contenders, each a
//! fresh `c-examples/echo_server` pinned to CPU 0, against the same
//! `c-examples/echo_client` (kernel sockets, libphoton epoll) pinned to CPU 1:
//! - `unet io_uring` / `unet epoll`: `--netstack tap:ubench0,10.78.0.2/24`;
//!   every frame crosses the TAP device (one read(2) or write(2) each);
//! - `kernel io_uring` / `kernel epoll`: kernel sockets on the TAP
//!   interface's address 10.78.0.1. The client is on the same host, so the
//!   kernel delivers locally (the loopback path) and never touches the TAP
//!   device: the kernel stack's best case. A kernel stack cannot be put on
//!   the fd side of a TAP device.
//! - `dpdk io_uring` / `dpdk epoll`: `--netstack dpdk:...` on DPDK's TAP
//!   PMD (`--no-huge --no-pci --vdev=net_tap0,iface=dbench0`), the kernel's
//!   side `dbench0` at 10.79.0.1/24, the stack at 10.79.0.2; frames still
//!   cross a TAP device, now through DPDK's driver (rx/tx bursts) instead
//!   of libphoton's. Only where libphoton was built with libdpdk.
//! - `xdp io_uring` / `xdp epoll`: `--netstack xdp:xb1:0` on an AF_XDP
//!   socket over a veth pair (`xb0` 10.80.0.1 in the kernel, the stack
//!   10.80.0.2 on `xb1`, XDP in veth's driver mode, copy mode). Only where
//!   the kernel allows AF_XDP. No NIC is here: both are the same code a NIC
//!   would run, measured on virtual devices.
//!
//! Per run: the client's requests/s over `--secs`, the server process's
//! on-CPU time per request over the same window (/proc/PID/task/*/schedstat),
//! divided into user and kernel mode as its utime and stime divide
//! (/proc/PID/stat), and the frames the TAP interface carried per request
//! (/proc/net/dev). The part `split` runs the
//! userspace-stack server under callgrind (epoll: Valgrind cannot follow
//! io_uring) and divides its user-space instructions per request between
//! smoltcp (the stack), libphoton's scheduler and engine, the unet glue
//! and device, libc, and the echo program; the kernel's share (the TAP
//! syscalls) is the system time of the timed runs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use photon_bench::*;

const TAP: &str = "ubench0";
const KERNEL_IP: &str = "10.78.0.1";
const STACK_IP: &str = "10.78.0.2";
/// The DPDK TAP PMD's kernel interface, and the addresses on it.
const DPDK_IF: &str = "dbench0";
const DPDK_KERNEL: &str = "10.79.0.1/24";
const DPDK_STACK: &str = "10.79.0.2";
const DPDK_EAL: &str = "dpdk:--no-huge -m 256 --no-pci --no-shconf --no-telemetry -l 0 --log-level=lib.eal:warning --vdev=net_tap0,iface=dbench0";
/// The veth pair of the AF_XDP rows: kernel side, stack side.
const XDP_KERNEL_IF: &str = "xb0";
const XDP_KERNEL_IP: &str = "10.80.0.1";
const XDP_STACK_IP: &str = "10.80.0.2";
const PARTS: &[&str] = &["pingpong", "stream", "split"];
const USAGE: &str = "\
usage: unet [options]   (as root: it creates a network namespace and a TAP device)
  --reps N          repetitions of each (scenario, server) (default 5)
  --secs S          measured seconds of each run (default 3)
  --only A,B        parts: pingpong (64 x 512 B), stream (64 x 4 KiB), split (callgrind)
  --quiet-wait S    before each run, wait up to S s for a quiet machine (default 10; 0: no)
  --verbose         every run's details on stderr
";

struct Opts {
    c: Common,
}

fn parse(args: &mut Args) -> Result<Opts, String> {
    let mut o = Opts {
        c: Common::new(5, 3.0, PARTS).quiet_wait(10.0),
    };
    while let Some(a) = args.next() {
        o.c.take(&a, args)?;
    }
    o.c.check()?;
    Ok(o)
}

/// Compiles a program of c-examples/ against libphoton.so.
fn compile_example(name: &str, lib: &Path) -> Result<PathBuf, String> {
    let out = cbin_dir().join(format!("unet_{name}"));
    std::fs::create_dir_all(cbin_dir()).map_err(|e| e.to_string())?;
    let dir = lib.parent().ok_or("libphoton.so has no directory")?;
    let mut cmd = Command::new(env!("BENCH_CC"));
    cmd.args(env!("BENCH_CC_ARGS").split('\x1f').filter(|a| !a.is_empty()));
    cmd.args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread", "-I"])
        .arg(root_dir().join("include"))
        .arg(root_dir().join("c-examples").join(format!("{name}.c")))
        .arg("-o")
        .arg(&out)
        .arg(format!("-L{}", dir.display()))
        .arg(format!("-Wl,-rpath,{}", dir.display()))
        .arg("-lphoton");
    let o = cmd.output().map_err(|e| format!("cannot run the C compiler: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "compiling {name}.c failed:\n{}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(out)
}

fn ip(args: &[&str]) -> Result<(), String> {
    let st = Command::new("ip").args(args).status().map_err(|e| format!("ip: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("ip {args:?} failed"))
    }
}

/// On-CPU nanoseconds of process `pid` so far, all its threads
/// (/proc/PID/task/*/schedstat, first field).
fn on_cpu_ns(pid: u32) -> Result<f64, String> {
    let dir = format!("/proc/{pid}/task");
    let mut total = 0f64;
    for t in std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))?.flatten() {
        let s = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        total += s
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    }
    Ok(total)
}

/// (rx_packets, tx_packets) of interface `iface`, kernel side.
fn if_packets(iface: &str) -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
    for l in s.lines() {
        if let Some(rest) = l.trim().strip_prefix(&format!("{iface}:")) {
            let f: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            if f.len() >= 10 {
                return (f[1], f[9]);
            }
        }
    }
    (0, 0)
}

struct Server {
    label: String,
    args: Vec<String>,
    host: &'static str,
    valgrind: bool,
    /// The kernel-side interface whose frames are counted.
    iface: &'static str,
    /// An address to give `iface` once the server started (the DPDK TAP
    /// PMD creates its interface then).
    configure: Option<&'static str>,
    /// A userspace-stack row (the ratios compare it with the kernel's).
    unet: bool,
}

fn servers() -> Vec<Server> {
    let mut v = Vec::new();
    for eng in ["io_uring", "epoll"] {
        v.push(Server {
            label: format!("unet {eng}"),
            args: vec![
                "--engine".into(),
                eng.into(),
                "--netstack".into(),
                format!("tap:{TAP},{STACK_IP}/24"),
            ],
            host: STACK_IP,
            valgrind: false,
            iface: TAP,
            configure: None,
            unet: true,
        });
    }
    for eng in ["io_uring", "epoll"] {
        v.push(Server {
            label: format!("kernel {eng}"),
            args: vec!["--engine".into(), eng.into(), "--ip".into(), KERNEL_IP.into()],
            host: KERNEL_IP,
            valgrind: false,
            iface: TAP,
            configure: None,
            unet: false,
        });
    }
    for eng in ["io_uring", "epoll"] {
        v.push(Server {
            label: format!("dpdk {eng}"),
            args: vec![
                "--engine".into(),
                eng.into(),
                "--netstack".into(),
                format!("{DPDK_EAL},{DPDK_STACK}/24"),
            ],
            host: DPDK_STACK,
            valgrind: false,
            iface: DPDK_IF,
            configure: Some(DPDK_KERNEL),
            unet: true,
        });
    }
    for eng in ["io_uring", "epoll"] {
        v.push(Server {
            label: format!("xdp {eng}"),
            args: vec![
                "--engine".into(),
                eng.into(),
                "--netstack".into(),
                format!("xdp:xb1:0,{XDP_STACK_IP}/24"),
            ],
            host: XDP_STACK_IP,
            valgrind: false,
            iface: XDP_KERNEL_IF,
            configure: None,
            unet: true,
        });
    }
    v
}

/// The servers whose device opens here: a DPDK or AF_XDP row is left out,
/// with the server's reason, when libphoton lacks libdpdk or the kernel
/// refuses AF_XDP.
fn available(bin: &Path, all: Vec<Server>) -> Vec<Server> {
    let mut v = Vec::new();
    for s in all {
        if s.label.starts_with("dpdk") || s.label.starts_with("xdp") {
            match start(bin, &s, &[]).and_then(|(r, _)| stop(r)) {
                Ok(_) => {}
                Err(e) => {
                    println!("{}: left out ({})", s.label, e.trim());
                    continue;
                }
            }
        }
        v.push(s);
    }
    v
}

/// A running server: the process, and everything it printed after its
/// first line (read until it exits).
struct Running {
    child: Child,
    rest: std::thread::JoinHandle<String>,
}

/// Starts the server pinned to CPU 0; returns it and its port.
fn start(bin: &Path, s: &Server, extra: &[&str]) -> Result<(Running, u16), String> {
    let mut cmd = if s.valgrind {
        let mut c = Command::new("valgrind");
        c.args(extra).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    cmd.args(&s.args).args(["--port", "0", "--quiet"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    pin_command(&mut cmd, 0);
    let mut child = cmd.spawn().map_err(|e| format!("start server: {e}"))?;
    let out = child.stdout.take().ok_or("no stdout")?;
    // The first line says the port; the rest is read to the end, so the
    // server's closing summary never meets a closed pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    let rest = std::thread::spawn(move || {
        let mut first = true;
        let mut rest = String::new();
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if first {
                let _ = tx.send(line);
                first = false;
            } else {
                rest.push_str(&line);
                rest.push('\n');
            }
        }
        rest
    });
    let stderr = child.stderr.take().map(drain);
    let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
    let port = line
        .strip_prefix("listening on ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok());
    if let (Some(cidr), Some(_)) = (s.configure, port) {
        let up = ip(&["addr", "add", cidr, "dev", s.iface]).and_then(|()| ip(&["link", "set", s.iface, "up"]));
        if let Err(e) = up {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    }
    let Some(port) = port else {
        let _ = child.kill();
        let _ = child.wait();
        let err = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
        return Err(format!("server did not listen: '{line}' {err}"));
    };
    Ok((Running { child, rest }, port))
}

/// Stops the server (SIGINT); returns what it printed after its first line.
fn stop(r: Running) -> Result<String, String> {
    let mut child = r.child;
    signal(&child, libc::SIGINT);
    match wait_timeout(&mut child, Duration::from_secs(20)) {
        Some(st) if st.success() => Ok(r.rest.join().unwrap_or_default()),
        Some(st) => Err(format!("server exited with {}", describe_status(st))),
        None => {
            let _ = child.kill();
            Err("server did not stop".into())
        }
    }
}

struct Scenario {
    name: &'static str,
    mode: &'static str,
    size: usize,
}

/// One measured run: requests/s, user and system ns/request, frames/request.
#[derive(Clone, Copy)]
struct Run {
    rps: f64,
    user_ns: f64,
    sys_ns: f64,
    frames: f64,
    /// Userspace stack only (NaN for kernel rows), per request over the
    /// server's life: device reads that found no frame, polling rounds,
    /// sleeps of the polling loop in the engine.
    empty_reads: f64,
    rounds: f64,
    sleeps: f64,
}

fn one_run(server_bin: &Path, client_bin: &Path, sc: &Scenario, s: &Server, secs: f64) -> Result<Run, String> {
    let (srv, port) = start(server_bin, s, &[])?;
    let pid = srv.child.id();
    let warm = 0.5;
    let mut cmd = Command::new(client_bin);
    cmd.args(["--host", s.host, "--port", &port.to_string(), "--conns", "64"])
        .args(["--size", &sc.size.to_string(), "--mode", sc.mode])
        .args(["--duration", &secs.to_string(), "--warmup", &warm.to_string()])
        .args(["--engine", "epoll"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    pin_command(&mut cmd, 1);
    let client = cmd.spawn().map_err(|e| format!("client: {e}"))?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(warm + 0.05));
    let (u0, s0) = proc_cpu(pid)?;
    let c0 = on_cpu_ns(pid)?;
    let p0 = if_packets(s.iface);
    let w0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs - 0.1));
    let (u1, s1) = proc_cpu(pid)?;
    let c1 = on_cpu_ns(pid)?;
    let p1 = if_packets(s.iface);
    let window = w0.elapsed().as_secs_f64();
    let out = client.wait_with_output().map_err(|e| format!("client: {e}"))?;
    let stopped = stop(srv);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "client failed ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let summary = stopped?;
    let field = |key: &str| -> Option<f64> {
        summary
            .split_whitespace()
            .find_map(|f| f.strip_prefix(key))
            .and_then(|v| v.parse::<f64>().ok())
    };
    // The server's lifetime requests, from the bytes it echoed.
    let echoed = summary
        .split("echoed ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    let life_reqs = echoed / sc.size as f64;
    let per_life = |key: &str| field(key).map(|v| v / life_reqs).unwrap_or(f64::NAN);
    let rps = text
        .split_whitespace()
        .find_map(|f| f.strip_prefix("req/s="))
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| format!("client printed no req/s: {text}"))?;
    if t0.elapsed().as_secs_f64() < secs {
        return Err("client ended early".into());
    }
    let reqs = rps * window;
    let frames = ((p1.0 - p0.0) + (p1.1 - p0.1)) as f64;
    // On-CPU time is exact (schedstat); utime/stime (clock ticks) only
    // say how it divides between user and kernel mode.
    let cpu_ns = (c1 - c0) / reqs;
    let (du, ds) = (u1 - u0, s1 - s0);
    let user_share = if du + ds > 0.0 { du / (du + ds) } else { 0.5 };
    Ok(Run {
        rps,
        user_ns: cpu_ns * user_share,
        sys_ns: cpu_ns * (1.0 - user_share),
        frames: frames / reqs,
        empty_reads: per_life("rx_empty_polls="),
        rounds: per_life("poll_rounds="),
        sleeps: per_life("poll_sleeps="),
    })
}

/// The callgrind split: (group, instructions per request), and requests.
fn split(server_bin: &Path, client_bin: &Path) -> Result<(Vec<(String, f64)>, f64), String> {
    let out = std::env::temp_dir().join(format!("unet-callgrind-{}.out", std::process::id()));
    let s = Server {
        label: "unet epoll under callgrind".into(),
        args: vec![
            "--engine".into(),
            "epoll".into(),
            "--netstack".into(),
            format!("tap:{TAP},{STACK_IP}/24"),
        ],
        host: STACK_IP,
        valgrind: true,
        iface: TAP,
        configure: None,
        unet: true,
    };
    let outarg = format!("--callgrind-out-file={}", out.display());
    let (srv, port) = start(server_bin, &s, &["--tool=callgrind", &outarg])?;
    let mut cmd = Command::new(client_bin);
    cmd.args(["--host", STACK_IP, "--port", &port.to_string(), "--conns", "64"])
        .args([
            "--size",
            "512",
            "--mode",
            "pingpong",
            "--duration",
            "5",
            "--warmup",
            "0",
        ])
        .args(["--engine", "epoll"]);
    pin_command(&mut cmd, 1);
    let o = cmd.output().map_err(|e| format!("client: {e}"))?;
    stop(srv)?;
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    if !o.status.success() {
        return Err(format!("client failed: {text}"));
    }
    let reqs: f64 = text
        .split_whitespace()
        .find_map(|f| f.strip_prefix("requests="))
        .and_then(|v| v.parse().ok())
        .ok_or("client printed no requests")?;
    let ann = Command::new("callgrind_annotate")
        .args(["--threshold=100", "--auto=no"])
        .arg(&out)
        .output()
        .map_err(|e| format!("callgrind_annotate: {e}"))?;
    let _ = std::fs::remove_file(&out);
    let ann = String::from_utf8_lossy(&ann.stdout);
    let groups: [(&str, &[&str]); 6] = [
        ("smoltcp (TCP/IP stack)", &["smoltcp::"]),
        ("unet glue + TAP device (user side)", &["photon::unet::"]),
        (
            "scheduler, switch, engine",
            &["photon::sched", "photon::arch", "photon::engine", "mio::", "io_uring::"],
        ),
        (
            "echo program + photon fd API",
            &["echo_server", "photon::net", "photon::ffi", "echo_connection"],
        ),
        (
            "allocator, memcpy, libc",
            &["libc", "malloc", "free", "memcpy", "memmove", "memset", "alloc::"],
        ),
        ("other", &[""]),
    ];
    let mut sums = vec![0f64; groups.len()];
    for l in ann.lines() {
        let t = l.trim_start();
        let Some((num, rest)) = t.split_once(' ') else { continue };
        let Ok(n) = num.replace(',', "").parse::<f64>() else {
            continue;
        };
        let sym = rest.trim_start();
        let sym = sym.split_once(")  ").map_or(sym, |(_, s)| s).trim();
        if sym.contains("PROGRAM TOTALS") || sym.is_empty() || sym.starts_with("file:function") {
            continue;
        }
        let gi = groups
            .iter()
            .position(|(_, pats)| pats.iter().any(|p| sym.contains(p)))
            .unwrap_or(groups.len() - 1);
        sums[gi] += n;
    }
    Ok((
        groups
            .iter()
            .zip(sums)
            .map(|((g, _), n)| (g.to_string(), n / reqs))
            .collect(),
        reqs,
    ))
}

fn setup_namespace() -> Result<(), String> {
    ip(&["link", "set", "lo", "up"])?;
    ip(&["tuntap", "add", "dev", TAP, "mode", "tap"])?;
    ip(&["addr", "add", &format!("{KERNEL_IP}/24"), "dev", TAP])?;
    ip(&["link", "set", TAP, "up"])?;
    // The AF_XDP rows' veth pair (left without it if veth is missing).
    if ip(&["link", "add", XDP_KERNEL_IF, "type", "veth", "peer", "name", "xb1"]).is_ok() {
        ip(&["addr", "add", &format!("{XDP_KERNEL_IP}/24"), "dev", XDP_KERNEL_IF])?;
        ip(&["link", "set", XDP_KERNEL_IF, "up"])?;
        ip(&["link", "set", "xb1", "up"])?;
    }
    Ok(())
}

fn main() -> ExitCode {
    // Outside the namespace: make one and run again inside it.
    if std::env::var_os("UNET_BENCH_IN_NS").is_none() {
        if !Path::new("/dev/net/tun").exists() {
            return fatal("/dev/net/tun is missing: this benchmark needs a TAP device");
        }
        let exe = std::env::current_exe().expect("current_exe");
        let st = Command::new("unshare")
            .arg("-n")
            .arg(exe)
            .args(std::env::args().skip(1))
            .env("UNET_BENCH_IN_NS", "1")
            .status();
        return match st {
            Ok(s) if s.success() => ExitCode::SUCCESS,
            Ok(s) => fatal(format!(
                "the benchmark in its network namespace: {s} (root and unshare -n needed)"
            )),
            Err(e) => fatal(format!("unshare: {e}")),
        };
    }
    let o = parse_or_exit(USAGE, parse);
    if let Err(e) = setup_namespace() {
        return fatal(e);
    }
    let lib = match build_libphoton() {
        Ok(l) => l,
        Err(e) => return fatal(e),
    };
    let (server_bin, client_bin) = match (
        compile_example("echo_server", &lib),
        compile_example("echo_client", &lib),
    ) {
        (Ok(s), Ok(c)) => (s, c),
        (Err(e), _) | (_, Err(e)) => return fatal(e),
    };
    remember_affinity();
    print_header(
        "unet: echo on the userspace stack (smoltcp over TAP, DPDK's TAP PMD, AF_XDP on veth) vs kernel sockets",
        "server on CPU 0, client (c-examples/echo_client, kernel sockets) on CPU 1",
    );
    let mut r = Runner::new(&o.c);
    let srv = available(&server_bin, servers());
    let labels: Vec<String> = srv.iter().map(|s| s.label.clone()).collect();
    let scenarios = [
        Scenario {
            name: "pingpong",
            mode: "pingpong",
            size: 512,
        },
        Scenario {
            name: "stream",
            mode: "stream",
            size: 4096,
        },
    ];
    let mut targets = Vec::new();
    for sc in scenarios.iter().filter(|s| o.c.want(s.name)) {
        let title = format!("{} 64 x {} B", sc.name, sc.size);
        let rows = r.interleave(
            &title,
            &labels,
            o.c.reps,
            |ci, _| one_run(&server_bin, &client_bin, sc, &srv[ci], o.c.secs),
            |v| {
                format!(
                    "req/s={} user={:.0}ns sys={:.0}ns frames/req={:.2}",
                    fmt_num(v.rps),
                    v.user_ns,
                    v.sys_ns,
                    v.frames
                )
            },
        );
        println!("## {title} ({} reps x {} s, medians [range])", o.c.reps, o.c.secs);
        println!();
        let rps: Vec<Series> = rows.iter().map(|row| row.series(|v| v.rps)).collect();
        let cpu: Vec<Series> = rows.iter().map(|row| row.series(|v| v.user_ns + v.sys_ns)).collect();
        let mut table = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            // Rows come in engine pairs (io_uring, epoll); the kernel's are
            // 2 and 3: each userspace row against the kernel's same engine.
            let kernel_same_engine = i % 2 + 2;
            let unet = srv[i].unet;
            table.push(vec![
                labels[i].clone(),
                cell_median(&rps[i]),
                cell_range(&rps[i]),
                cell_median(&cpu[i]),
                cell_median(&row.series(|v| v.user_ns)),
                cell_median(&row.series(|v| v.sys_ns)),
                cell_fixed(&row.series(|v| v.frames), 2, ""),
                if unet {
                    format!(
                        "{:.2} / {:.2} / {:.3}",
                        row.series(|v| v.empty_reads).median(),
                        row.series(|v| v.rounds).median(),
                        row.series(|v| v.sleeps).median()
                    )
                } else {
                    "-".into()
                },
                if unet {
                    cell_ratio(&cpu[i], &cpu[kernel_same_engine])
                } else {
                    "-".into()
                },
                if unet {
                    cell_ratio(&rps[i], &rps[kernel_same_engine])
                } else {
                    "-".into()
                },
            ]);
        }
        print_table(
            &[
                "server",
                "req/s",
                "range",
                "server ns/req",
                "user ns/req",
                "sys ns/req",
                "device frames/req",
                "empty reads / rounds / sleeps per req",
                "ns/req vs kernel",
                "req/s vs kernel",
            ],
            &table,
        );
        println!("load during the table: {}", r.last_load);
        println!();
        if let (Some(c), Some(q)) = (ratio(&cpu[0], &cpu[2]), ratio(&rps[0], &rps[2])) {
            targets.push(format!(
                "{}: userspace stack (io_uring) uses {c:.2}x the kernel's server CPU per request at {q:.2}x its requests/s (the issue expects no gain over TAP: the bypass gain needs AF_XDP or DPDK on a NIC)",
                sc.name
            ));
        }
        for i in (4..rows.len()).step_by(2) {
            if let (Some(c), Some(q)) = (ratio(&cpu[i], &cpu[2]), ratio(&rps[i], &rps[2])) {
                targets.push(format!(
                    "{}: {} uses {c:.2}x the kernel's server CPU per request at {q:.2}x its requests/s (a virtual device: no NIC here)",
                    sc.name, labels[i]
                ));
            }
        }
    }
    if o.c.want("split") {
        match split(&server_bin, &client_bin) {
            Ok((groups, reqs)) => {
                println!(
                    "## Per-request user-space instructions of the userspace-stack server (callgrind, epoll, pingpong 64 x 512 B, {reqs:.0} requests)"
                );
                println!();
                let total: f64 = groups.iter().map(|(_, n)| n).sum();
                let rows: Vec<Vec<String>> = groups
                    .iter()
                    .map(|(g, n)| vec![g.clone(), format!("{n:.0}"), format!("{:.0}%", 100.0 * n / total)])
                    .chain(std::iter::once(vec![
                        "total".into(),
                        format!("{total:.0}"),
                        "100%".into(),
                    ]))
                    .collect();
                print_table(&["part", "instructions/request", "share"], &rows);
                println!();
                println!("the kernel's part (TAP read/write, engine waits) is the sys ns/req column above");
                println!();
            }
            Err(e) => {
                eprintln!("split: ERROR {e}");
                r.errors.push(format!("split: {e}"));
            }
        }
    }
    r.finish(&targets)
}
