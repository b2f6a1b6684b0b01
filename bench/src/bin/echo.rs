//! `echo`: libphoton's C echo server against its peers, side by side
//! (issue "event engines and coroutine sockets"; method in
//! the team's benchmarking guide BENCH.md; usage in bench/README.md).
//!
//! Builds nothing. It runs, for each scenario, every server pinned to CPU 0
//! (`taskset -c 0`) against the same C client (`c-examples/echo_client.c`,
//! on libphoton's epoll engine unless `--client-engine` says otherwise)
//! pinned to CPU 1, interleaved: `for rep { for server { one run } }`. A run
//! is a fresh server process and a fresh client process. While the client's
//! measured window is under way, the server process is measured with
//! `perf stat -e instructions,cycles,task-clock -p PID -- sleep D` and with
//! its utime + stime from /proc/PID/stat before and after.
//!
//! Any failed run (client exit status non-zero or no result line, server
//! gone before it was stopped, server not listening in time, perf failing)
//! marks that server's row ERROR in that scenario's table, is described on
//! stderr, and makes the program exit 1 at the end.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use photon_bench::*;

// ------------------------------------------------------------------ options

struct Opts {
    c: Common,
    server_bin: PathBuf,
    client_bin: PathBuf,
    bin_dir: PathBuf,
    client_engine: String,
    warmup: f64,
    servers: Option<Vec<String>>,
    perf: bool,
}

const USAGE: &str = "\
usage: echo [options]
  --server-bin PATH    libphoton's C echo server (default <repository>/build/echo_server)
  --client-bin PATH    the C echo client (default <repository>/build/echo_client)
  --bin-dir DIR        where echo_tokio, echo_monoio, echo_glommio, echo_mio are
                       (default: this program's own directory)
  --client-engine E    the client's libphoton engine, epoll | io_uring (default epoll)
  --reps N             repetitions of each (scenario, server) (default 5)
  --secs S             measured seconds of each run (default 3)
  --warmup S           client warm-up before the measured window (default 0.5)
  --quick              smoke test: 1 rep, 1 s, warm-up 0.3 s, scenarios pp-64x512
                       and stream-64x4k (later flags override)
  --only A,B           scenarios to run, by name (pp-1x512, pp-64x512, pp-256x512,
                       pp-64x64, stream-64x4k)
  --servers A,B        servers to run: rows with one of these words in their name
                       (libphoton, tokio, monoio, glommio, mio, io_uring, epoll) or
                       named exactly so (libphoton epoll)
  --no-perf            do not run perf stat (instr/req and cycles/req show n/a)
  --quiet-wait S       before each run, wait up to S s for other processes to leave
                       the CPUs idle (< 10% of a CPU) (default 10; 0 = do not wait)
  --verbose            every run's details on stderr
";

const SCENARIO_NAMES: &[&str] = &["pp-1x512", "pp-64x512", "pp-256x512", "pp-64x64", "stream-64x4k"];

fn parse_opts(args: &mut Args) -> Result<Opts, String> {
    let own_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let mut o = Opts {
        c: Common::new(5, 3.0, SCENARIO_NAMES).quiet_wait(10.0),
        server_bin: root_dir().join("build").join("echo_server"),
        client_bin: root_dir().join("build").join("echo_client"),
        bin_dir: own_dir,
        client_engine: "epoll".into(),
        warmup: 0.5,
        servers: None,
        perf: true,
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--server-bin" => o.server_bin = args.string(&a)?.into(),
            "--client-bin" => o.client_bin = args.string(&a)?.into(),
            "--bin-dir" => o.bin_dir = args.string(&a)?.into(),
            "--client-engine" => {
                o.client_engine = args.string(&a)?;
                if o.client_engine != "epoll" && o.client_engine != "io_uring" {
                    return Err("--client-engine is epoll or io_uring".into());
                }
            }
            "--warmup" => o.warmup = args.value(&a)?,
            "--quick" => {
                o.c.reps = 1;
                o.c.secs = 1.0;
                o.warmup = 0.3;
                o.c.only = vec!["pp-64x512".into(), "stream-64x4k".into()];
            }
            "--servers" => o.servers = Some(args.list(&a)?),
            "--no-perf" => o.perf = false,
            _ => o.c.take(&a, args)?,
        }
    }
    o.c.check()?;
    if o.c.secs < 0.5 {
        return Err("bad --secs (>= 0.5)".into());
    }
    if !(o.warmup.is_finite() && o.warmup >= 0.0) {
        return Err("bad --warmup".into());
    }
    Ok(o)
}

// ------------------------------------------------------- scenarios, servers

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    PingPong,
    Stream,
}

struct Scenario {
    name: &'static str,
    mode: Mode,
    conns: u32,
    size: u32,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "pp-1x512",
        mode: Mode::PingPong,
        conns: 1,
        size: 512,
    },
    Scenario {
        name: "pp-64x512",
        mode: Mode::PingPong,
        conns: 64,
        size: 512,
    },
    Scenario {
        name: "pp-256x512",
        mode: Mode::PingPong,
        conns: 256,
        size: 512,
    },
    Scenario {
        name: "pp-64x64",
        mode: Mode::PingPong,
        conns: 64,
        size: 64,
    },
    Scenario {
        name: "stream-64x4k",
        mode: Mode::Stream,
        conns: 64,
        size: 4096,
    },
];

impl Scenario {
    fn title(&self) -> String {
        match self.mode {
            Mode::PingPong => format!(
                "ping-pong, {} connection{} x {} B",
                self.conns,
                if self.conns == 1 { "" } else { "s" },
                self.size
            ),
            Mode::Stream => format!(
                "streaming, {} connections x {} KiB writes",
                self.conns,
                self.size / 1024
            ),
        }
    }
}

struct Server {
    name: &'static str,
    program: PathBuf,
    args: Vec<&'static str>,
    /// The engine the C server must report in its `listening on` line.
    expect_engine: Option<&'static str>,
    /// Environment of the server (A/B rows: `PHOTON_IO_OFF=feature`).
    env: Vec<(&'static str, &'static str)>,
}

const PHOTON_URING: &str = "libphoton io_uring";
const PHOTON_EPOLL: &str = "libphoton epoll";
const PHOTON_URING_NO_POLL_FIRST: &str = "libphoton io_uring -poll_first";
const PHOTON_EPOLL_NO_READINESS: &str = "libphoton epoll -readiness";
const PHOTON_URING_SQPOLL: &str = "libphoton io_uring +sqpoll";
const PHOTON_URING_NO_BATCHED_SEND: &str = "libphoton io_uring -batched_send";
const PHOTON_URING_NO_LAZY_SUBMIT: &str = "libphoton io_uring -lazy_submit";
const PHOTON_URING_NO_MULTISHOT_ACCEPT: &str = "libphoton io_uring -multishot_accept";
const PHOTON_URING_NO_FIXED_FILES: &str = "libphoton io_uring -fixed_files";
const PHOTON_URING_NO_POLL_IN_PLACE: &str = "libphoton io_uring -poll_in_place";
const PHOTON_URING_MULTISHOT_RECV: &str = "libphoton io_uring +multishot_recv";
const PHOTON_URING_NO_DIRECT_RECV: &str = "libphoton io_uring -direct_recv";
const PHOTON_URING_NO_READINESS_RECV: &str = "libphoton io_uring -readiness_recv";
const PHOTON_URING_NO_DIRECT_BIG_SEND: &str = "libphoton io_uring -direct_big_send";
const PHOTON_URING_NO_BULK_STREAMING: &str = "libphoton io_uring -readiness_recv -direct_big_send";
const PHOTON_EPOLL_NO_POLL_IN_PLACE: &str = "libphoton epoll -poll_in_place";
const PHOTON_URING_NO_IO_SPIN: &str = "libphoton io_uring -io_spin";
const PHOTON_EPOLL_NO_IO_SPIN: &str = "libphoton epoll -io_spin";

fn servers(o: &Opts) -> Vec<Server> {
    let peer = |n: &str| o.bin_dir.join(n);
    let all = vec![
        Server {
            name: PHOTON_URING,
            program: o.server_bin.clone(),
            args: vec!["--engine", "io_uring", "--quiet"],
            expect_engine: Some("io_uring"),
            env: vec![],
        },
        Server {
            name: PHOTON_EPOLL,
            program: o.server_bin.clone(),
            args: vec!["--engine", "epoll", "--quiet"],
            expect_engine: Some("epoll"),
            env: vec![],
        },
        Server {
            name: "tokio current_thread",
            program: peer("echo_tokio"),
            args: vec![],
            expect_engine: None,
            env: vec![],
        },
        Server {
            name: "monoio io_uring",
            program: peer("echo_monoio"),
            args: vec![],
            expect_engine: None,
            env: vec![],
        },
        Server {
            name: "monoio epoll",
            program: peer("echo_monoio"),
            args: vec!["--epoll"],
            expect_engine: None,
            env: vec![],
        },
        Server {
            name: "glommio",
            program: peer("echo_glommio"),
            args: vec![],
            expect_engine: None,
            env: vec![],
        },
        Server {
            name: "mio loop",
            program: peer("echo_mio"),
            args: vec![],
            expect_engine: None,
            env: vec![],
        },
        Server {
            name: "io_uring loop",
            program: peer("echo_uring"),
            args: vec![],
            expect_engine: None,
            env: vec![],
        },
        Server {
            name: "io_uring loop +multishot_recv",
            program: peer("echo_uring"),
            args: vec!["--multishot"],
            expect_engine: None,
            env: vec![],
        },
        Server {
            name: "io_uring loop +multishot_recv 16k",
            program: peer("echo_uring"),
            args: vec!["--multishot", "--bsz", "16384"],
            expect_engine: None,
            env: vec![],
        },
        Server {
            name: "io_uring loop +multishot_recv held",
            program: peer("echo_uring"),
            args: vec!["--multishot", "--bsz", "16384", "--hold", "4"],
            expect_engine: None,
            env: vec![],
        },
        Server {
            name: "io_uring loop +multishot_recv lent",
            program: peer("echo_uring"),
            args: vec!["--multishot", "--bsz", "16384", "--hold", "4", "--lend"],
            expect_engine: None,
            env: vec![],
        },
    ];
    // A/B rows: libphoton with one I/O feature switched off (as on a
    // kernel without it), each beside its default row.
    let ab = [
        (PHOTON_URING_NO_POLL_FIRST, "io_uring", ("PHOTON_IO_OFF", "poll_first")),
        (PHOTON_URING_SQPOLL, "io_uring", ("PHOTON_IO_SQPOLL", "1")),
        (
            PHOTON_URING_NO_BATCHED_SEND,
            "io_uring",
            ("PHOTON_IO_OFF", "batched_send"),
        ),
        (
            PHOTON_URING_NO_LAZY_SUBMIT,
            "io_uring",
            ("PHOTON_IO_OFF", "lazy_submit"),
        ),
        (
            PHOTON_URING_NO_MULTISHOT_ACCEPT,
            "io_uring",
            ("PHOTON_IO_OFF", "multishot_accept"),
        ),
        (
            PHOTON_URING_NO_FIXED_FILES,
            "io_uring",
            ("PHOTON_IO_OFF", "fixed_files"),
        ),
        (PHOTON_EPOLL_NO_READINESS, "epoll", ("PHOTON_IO_OFF", "readiness")),
        (
            PHOTON_URING_NO_POLL_IN_PLACE,
            "io_uring",
            ("PHOTON_IO_OFF", "poll_in_place"),
        ),
        (
            PHOTON_EPOLL_NO_POLL_IN_PLACE,
            "epoll",
            ("PHOTON_IO_OFF", "poll_in_place"),
        ),
        (
            PHOTON_URING_MULTISHOT_RECV,
            "io_uring",
            ("PHOTON_IO_ON", "multishot_recv"),
        ),
        (
            PHOTON_URING_NO_DIRECT_RECV,
            "io_uring",
            ("PHOTON_IO_OFF", "direct_recv"),
        ),
        (
            PHOTON_URING_NO_READINESS_RECV,
            "io_uring",
            ("PHOTON_IO_OFF", "readiness_recv"),
        ),
        (
            PHOTON_URING_NO_DIRECT_BIG_SEND,
            "io_uring",
            ("PHOTON_IO_OFF", "direct_big_send"),
        ),
        (
            PHOTON_URING_NO_BULK_STREAMING,
            "io_uring",
            ("PHOTON_IO_OFF", "readiness_recv,direct_big_send"),
        ),
        (PHOTON_URING_NO_IO_SPIN, "io_uring", ("PHOTON_IO_SPIN_US", "0")),
        (PHOTON_EPOLL_NO_IO_SPIN, "epoll", ("PHOTON_IO_SPIN_US", "0")),
    ];
    let mut all = all;
    for (name, engine, env) in ab {
        all.push(Server {
            name,
            program: o.server_bin.clone(),
            args: vec!["--engine", engine, "--quiet"],
            expect_engine: Some(engine),
            env: vec![env],
        });
    }
    match &o.servers {
        None => all,
        Some(words) => all
            .into_iter()
            .filter(|s| {
                words
                    .iter()
                    .any(|w| s.name == w || s.name.split_whitespace().any(|x| x == w))
            })
            .collect(),
    }
}

// ------------------------------------------------------------------ machine

/// Whether perf can count hardware events here (a VM may have no PMU).
/// io_uring's tracepoints counted beside the syscalls, when the kernel has
/// them ([`RING_EVENTS`]): exact counts of what a ring did, as the
/// syscall count is (a perf profile's self time can mislead: a receive
/// that arms its poll first showed `sock_poll` at 3% of the server, the
/// first touch of the socket's cache lines, which the receive takes
/// instead when it goes first).
const RING_SUBMIT: &str = "io_uring:io_uring_submit_req";
const RING_POLL_ARM: &str = "io_uring:io_uring_poll_arm";

/// Whether perf can count [`RING_SUBMIT`] and [`RING_POLL_ARM`] here
/// (probed once in main).
static RING_EVENTS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// True if `perf stat` accepts the io_uring tracepoints.
fn ring_events_status() -> bool {
    Command::new("perf")
        .args([
            "stat",
            "-x,",
            "-e",
            &format!("{RING_SUBMIT},{RING_POLL_ARM}"),
            "--",
            "true",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The events `perf stat` counts for each run.
fn perf_events() -> String {
    let mut e = "instructions,cycles,task-clock,context-switches,raw_syscalls:sys_enter".to_string();
    if RING_EVENTS.get().copied().unwrap_or(false) {
        e += &format!(",{RING_SUBMIT},{RING_POLL_ARM}");
    }
    e
}

fn perf_hw_status() -> Result<bool, String> {
    let out = Command::new("perf")
        .args(["stat", "-x,", "-e", "instructions,cycles", "--", "true"])
        .output()
        .map_err(|e| format!("cannot run perf: {e} (install linux-perf, or pass --no-perf)"))?;
    if !out.status.success() {
        return Err(format!(
            "perf stat failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stderr);
    Ok(text
        .lines()
        .any(|l| l.contains(",instructions") && l.chars().next().is_some_and(|c| c.is_ascii_digit())))
}

// --------------------------------------------------------------- processes

/// Established TCP connections whose local port is `port` (the server's
/// side of each connection, accepted or still in the accept queue), from
/// /proc/net/tcp and tcp6.
fn established(port: u16) -> usize {
    let want = format!(":{port:04X}");
    let mut n = 0;
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for l in text.lines().skip(1) {
            let mut it = l.split_whitespace();
            let (Some(_sl), Some(local), Some(_remote), Some(st)) = (it.next(), it.next(), it.next(), it.next()) else {
                continue;
            };
            if st == "01" && local.ends_with(&want) {
                n += 1;
            }
        }
    }
    n
}

/// The server and client end with the driver (SIGKILL when it dies): left
/// running, they would also keep holding the fd of a `flock` the driver was
/// started under, and block every other benchmark waiting for that lock.
fn die_with_driver(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A running server: the process, its port, and what it wrote.
struct RunningServer {
    child: Child,
    port: u16,
    stdout_rest: Option<std::thread::JoinHandle<String>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl RunningServer {
    fn start(s: &Server) -> Result<RunningServer, String> {
        let mut cmd = Command::new("taskset");
        cmd.arg("-c")
            .arg("0")
            .arg(&s.program)
            .args(&s.args)
            .args(["--port", "0"])
            .env_remove("PHOTON_IO_OFF")
            .env_remove("PHOTON_IO_SQPOLL")
            .env_remove("PHOTON_IO_SPIN_US")
            .envs(s.env.iter().copied());
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        die_with_driver(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start taskset {}: {e}", s.program.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = drain(child.stderr.take().expect("piped stderr"));
        // The first line is "listening on PORT[ (engine E)]"; the rest is drained.
        let (tx, rx) = mpsc::channel();
        let rest = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut first = String::new();
            let _ = r.read_line(&mut first);
            let _ = tx.send(first);
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        });
        let mut rs = RunningServer {
            child,
            port: 0,
            stdout_rest: Some(rest),
            stderr: Some(stderr),
        };
        let first = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(l) => l,
            Err(_) => {
                let msg = format!("{}: no 'listening on' line within 10 s", s.name);
                return Err(rs.abort(&msg));
            }
        };
        let Some(port) = first
            .trim()
            .strip_prefix("listening on ")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse::<u16>().ok())
        else {
            let msg = format!("{}: expected 'listening on PORT', got {:?}", s.name, first.trim());
            return Err(rs.abort(&msg));
        };
        if let Some(engine) = s.expect_engine
            && !first.contains(&format!("(engine {engine})"))
            && !first.contains(&format!("(engine {engine},"))
        {
            let msg = format!(
                "{}: the server does not run the {engine} engine: {:?}",
                s.name,
                first.trim()
            );
            return Err(rs.abort(&msg));
        }
        rs.port = port;
        Ok(rs)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(st)) => Err(format!("the server died during the run ({})", describe_status(st))),
            Err(e) => Err(format!("waitpid: {e}")),
        }
    }

    /// Kills it and returns `msg` with what the server wrote on stderr.
    fn abort(&mut self, msg: &str) -> String {
        signal(&self.child, libc::SIGKILL);
        let _ = self.child.wait();
        let err = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        if err.trim().is_empty() {
            msg.to_string()
        } else {
            format!("{msg}\n  server stderr: {}", tail(&err, 12))
        }
    }

    /// SIGTERM, then checks it ended as a server should: exit 0 (the C server
    /// stops cleanly) or killed by that SIGTERM (the Rust peers).
    fn stop(mut self) -> Result<String, String> {
        signal(&self.child, libc::SIGTERM);
        let st = match wait_timeout(&mut self.child, Duration::from_secs(5)) {
            Some(st) => st,
            None => return Err(self.abort("the server did not stop within 5 s of SIGTERM")),
        };
        use std::os::unix::process::ExitStatusExt;
        let out = self
            .stdout_rest
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let err = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        if st.code() == Some(0) || st.signal() == Some(libc::SIGTERM) {
            Ok(format!("{}{}", out, err))
        } else {
            Err(format!(
                "the server ended with {} when stopped\n  server stderr: {}",
                describe_status(st),
                tail(&err, 12)
            ))
        }
    }
}

// --------------------------------------------------------------------- runs

#[derive(Clone, Debug)]
struct Run {
    /// requests/s (ping-pong) as the client counted them.
    req_s: f64,
    mib_s: f64,
    instr_per_req: Option<f64>,
    cycles_per_req: Option<f64>,
    /// System calls the server made (perf's `raw_syscalls:sys_enter`
    /// tracepoint, which needs no hardware counter) per request.
    syscalls_per_req: Option<f64>,
    /// The server's context switches per request.
    switches_per_req: Option<f64>,
    /// io_uring submissions the server's rings took (the
    /// `io_uring:io_uring_submit_req` tracepoint) per request: 0 for a
    /// server without io_uring; None where the kernel has no such tracepoint.
    sqes_per_req: Option<f64>,
    /// Polls io_uring armed for the server's operations (a receive that
    /// found no data, or one with `IORING_RECVSEND_POLL_FIRST`, waits on
    /// one: `io_uring:io_uring_poll_arm`) per request.
    arms_per_req: Option<f64>,
    cpu_us_per_req: f64,
    user_us_per_req: f64,
    /// Server CPU time / wall time in the measured window.
    util: f64,
    /// CPU time of everything but the server and the client (other
    /// processes on this machine) / wall time in the measured window.
    other: f64,
    /// The server's on-CPU nanoseconds (schedstat) per request.
    oncpu_ns_per_req: f64,
}

/// What was measured of the server in its window: user and system CPU
/// seconds, wall seconds, other processes' CPU / wall, perf's counts, and
/// its on-CPU nanoseconds from schedstat.
type Window = (f64, f64, f64, f64, BTreeMap<String, Option<f64>>, f64);

/// On-CPU nanoseconds of every thread of `pid` so far (the first field of
/// `/proc/PID/task/*/schedstat`): exact, where utime/stime count 10 ms ticks.
fn oncpu_ns(pid: u32) -> Result<f64, String> {
    let dir = format!("/proc/{pid}/task");
    let mut sum = 0.0;
    for e in std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))? {
        let path = e.map_err(|e| format!("{dir}: {e}"))?.path().join("schedstat");
        // A thread may end meanwhile: skip it.
        if let Ok(t) = std::fs::read_to_string(&path) {
            sum += t
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
        }
    }
    Ok(sum)
}

/// Parses `perf stat -x,` output: event name -> count (None: not supported).
fn parse_perf(text: &str) -> BTreeMap<String, Option<f64>> {
    let mut m = BTreeMap::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split(',').collect();
        if f.len() < 3 {
            continue;
        }
        let event = f[2].split(':').next().unwrap_or("").to_string();
        if event.is_empty() {
            continue;
        }
        let value = f[0].trim().parse::<f64>().ok();
        // Tracepoints also under their whole name (two share "io_uring").
        if f[2].contains(':') {
            m.insert(f[2].trim().to_string(), value);
        }
        m.insert(event, value);
    }
    m
}

fn client_field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .and_then(|v| v.trim_end_matches('s').parse().ok())
}

fn one_run(o: &Opts, sc: &Scenario, s: &Server) -> Result<Run, String> {
    let mut srv = RunningServer::start(s)?;
    let pid = srv.pid();

    let mut ccmd = Command::new("taskset");
    ccmd.arg("-c").arg("1").arg(&o.client_bin);
    ccmd.args(["--host", "127.0.0.1", "--port", &srv.port.to_string()]);
    ccmd.args(["--conns", &sc.conns.to_string(), "--size", &sc.size.to_string()]);
    ccmd.args([
        "--duration",
        &format!("{}", o.c.secs),
        "--warmup",
        &format!("{}", o.warmup),
    ]);
    ccmd.args([
        "--mode",
        if sc.mode == Mode::PingPong {
            "pingpong"
        } else {
            "stream"
        },
    ]);
    ccmd.args(["--engine", &o.client_engine]);
    ccmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    die_with_driver(&mut ccmd);
    let mut client = match ccmd.spawn() {
        Ok(c) => c,
        Err(e) => return Err(srv.abort(&format!("cannot start the client {}: {e}", o.client_bin.display()))),
    };
    let cout = drain(client.stdout.take().expect("piped"));
    let cerr = drain(client.stderr.take().expect("piped"));
    let started = Instant::now();

    // The client connects all its sockets, warms up for --warmup s, then
    // counts for --secs s. Connecting can take a second or more (here, some
    // of 256 simultaneous SYNs are retransmitted after 1 s), so wait until
    // the server's side of every connection is established, then measure
    // the server inside the client's window: from warm-up + 0.15 s, for
    // --secs - 0.3 s.
    let margin = 0.15;
    let measure = o.c.secs - 2.0 * margin;

    let measured = (|| -> Result<Window, String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let n = established(srv.port);
            if n >= sc.conns as usize {
                break;
            }
            if let Ok(Some(st)) = client.try_wait() {
                return Err(format!("the client ended ({}) before connecting", describe_status(st)));
            }
            srv.alive()?;
            if Instant::now() >= deadline {
                return Err(format!("only {n} of {} connections established after 15 s", sc.conns));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_secs_f64(o.warmup + margin));
        srv.alive()?;
        let client_pid = client.id();
        let m0 = machine_busy();
        let k0 = proc_cpu(client_pid)?;
        let c0 = proc_cpu(pid)?;
        let s0 = oncpu_ns(pid)?;
        let t0 = Instant::now();
        let perf = if o.perf {
            let out = Command::new("perf")
                .args(["stat", "-x,", "-e", &perf_events(), "-p", &pid.to_string(), "--"])
                .args(["sleep", &format!("{measure:.3}")])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run perf: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "perf stat -p {pid} failed ({}): {}",
                    describe_status(out.status),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            parse_perf(&String::from_utf8_lossy(&out.stderr))
        } else {
            std::thread::sleep(Duration::from_secs_f64(measure));
            BTreeMap::new()
        };
        let s1 = oncpu_ns(pid)?;
        let c1 = proc_cpu(pid)?;
        let k1 = proc_cpu(client_pid)?;
        let m1 = machine_busy();
        let wall = t0.elapsed().as_secs_f64();
        srv.alive()?;
        let (user, sys) = (c1.0 - c0.0, c1.1 - c0.1);
        let other = ((m1 - m0) - (user + sys) - (k1.0 + k1.1 - k0.0 - k0.1)).max(0.0) / wall;
        Ok((user, sys, wall, other, perf, s1 - s0))
    })();

    // The client ends by itself about --secs after the window opened.
    let budget = Duration::from_secs_f64(o.warmup + o.c.secs + 20.0).saturating_sub(started.elapsed());
    let cst = wait_timeout(&mut client, budget);
    if cst.is_none() {
        signal(&client, libc::SIGKILL);
        let _ = client.wait();
    }
    let cout = cout.join().unwrap_or_default();
    let cerr = cerr.join().unwrap_or_default();
    let client_failed = |why: String| -> String {
        let mut m = format!("the client {why}");
        if !cerr.trim().is_empty() {
            m += &format!("\n  client stderr: {}", tail(&cerr, 12));
        }
        if !cout.trim().is_empty() {
            m += &format!("\n  client stdout: {}", tail(&cout, 4));
        }
        m
    };
    let (user, sys, wall, other, perf, oncpu) = match measured {
        Ok(m) => m,
        Err(e) => {
            let extra = match cst {
                Some(st) if !st.success() => format!("\n  {}", client_failed(describe_status(st))),
                _ => String::new(),
            };
            return Err(srv.abort(&format!("{e}{extra}")));
        }
    };
    let Some(cst) = cst else {
        return Err(srv.abort(&client_failed(format!(
            "did not end within {:.0} s",
            budget.as_secs_f64()
        ))));
    };
    if !cst.success() {
        return Err(srv.abort(&client_failed(format!("failed ({})", describe_status(cst)))));
    }
    let line = cout.lines().find(|l| l.starts_with("mode=")).unwrap_or("");
    let (Some(req_s), Some(mib_s), Some(errors)) = (
        client_field(line, "req/s"),
        client_field(line, "MiB/s"),
        client_field(line, "errors"),
    ) else {
        return Err(srv.abort(&client_failed("printed no result line".into())));
    };
    if errors != 0.0 || req_s.is_nan() || req_s <= 0.0 {
        return Err(srv.abort(&client_failed(format!("reported errors={errors} req/s={req_s}"))));
    }
    // Did the server survive the whole run, and stop as it should?
    if let Err(e) = srv.alive() {
        return Err(srv.abort(&e));
    }
    let srv_out = srv.stop()?;
    if o.c.verbose && !srv_out.trim().is_empty() {
        eprintln!("    server said: {}", tail(&srv_out, 3));
    }

    // Rates over the measured window, divided by the client's request rate.
    let per_req = |count_per_s: f64| count_per_s / req_s;
    let instr = perf
        .get("instructions")
        .copied()
        .flatten()
        .map(|v| per_req(v / measure));
    let cycles = perf.get("cycles").copied().flatten().map(|v| per_req(v / measure));
    let syscalls = perf
        .get("raw_syscalls") // parse_perf keeps the name before the first ':'
        .copied()
        .flatten()
        .map(|v| per_req(v / measure));
    let switches = perf
        .get("context-switches")
        .copied()
        .flatten()
        .map(|v| per_req(v / measure));
    let sqes = perf.get(RING_SUBMIT).copied().flatten().map(|v| per_req(v / measure));
    let arms = perf.get(RING_POLL_ARM).copied().flatten().map(|v| per_req(v / measure));
    Ok(Run {
        req_s,
        mib_s,
        instr_per_req: instr,
        cycles_per_req: cycles,
        syscalls_per_req: syscalls,
        switches_per_req: switches,
        sqes_per_req: sqes,
        arms_per_req: arms,
        cpu_us_per_req: per_req((user + sys) / wall) * 1e6,
        user_us_per_req: per_req(user / wall) * 1e6,
        util: (user + sys) / wall,
        other,
        oncpu_ns_per_req: per_req(oncpu / wall),
    })
}

// ------------------------------------------------------------------- tables

fn fmt_rate(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.0}k", x / 1e3)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// The median of a list.
fn median(v: &[f64]) -> f64 {
    Series {
        values: v.to_vec(),
        error: None,
    }
    .median()
}

fn fmt_opt(v: &[Option<f64>]) -> String {
    let got: Vec<f64> = v.iter().filter_map(|x| *x).collect();
    if got.is_empty() || got.len() < v.len() {
        "n/a".into()
    } else {
        format!("{:.0}", median(&got))
    }
}

/// As [`fmt_opt`], with two decimals (counts per request below 10).
fn fmt_opt2(v: &[Option<f64>]) -> String {
    let got: Vec<f64> = v.iter().filter_map(|x| *x).collect();
    if got.is_empty() || got.len() < v.len() {
        "n/a".into()
    } else {
        format!("{:.2}", median(&got))
    }
}

fn print_scenario(o: &Opts, sc: &Scenario, servers: &[Server], rows: &BTreeMap<&str, &Row<Run>>) {
    let stream = sc.mode == Mode::Stream;
    let metric = |r: &Run| if stream { r.mib_s } else { r.req_s };
    let unit = if stream { "MiB/s" } else { "req/s" };
    let per = if stream { "4KiB" } else { "req" };
    println!();
    println!(
        "== {} ({} reps x {} s, median; server on CPU 0, client on CPU 1) ==",
        sc.title(),
        o.c.reps,
        o.c.secs
    );
    let med_of = |name: &str| -> Option<f64> {
        rows.get(name)
            .filter(|r| r.error.is_none() && !r.runs.is_empty())
            .map(|r| median(&r.runs.iter().map(metric).collect::<Vec<_>>()))
    };
    let uring = med_of(PHOTON_URING);
    let epoll = med_of(PHOTON_EPOLL);
    let ns_of = |name: &str| -> Option<f64> {
        rows.get(name)
            .filter(|r| r.error.is_none() && !r.runs.is_empty())
            .map(|r| median(&r.runs.iter().map(|x| x.oncpu_ns_per_req).collect::<Vec<_>>()))
    };
    let uring_ns = ns_of(PHOTON_URING);
    let epoll_ns = ns_of(PHOTON_EPOLL);
    println!(
        "{:<31} {:>9} {:>17} {:>10} {:>10} {:>9} {:>10} {:>10} {:>9} {:>9} {:>8} {:>8} {:>11} {:>11} {:>11} {:>11} {:>7} {:>6}",
        "server",
        unit,
        "range (min-max)",
        "uring/peer",
        "epoll/peer",
        format!("ns/{per}"),
        "uring/peer",
        "epoll/peer",
        format!("sysc/{per}"),
        format!("cs/{per}"),
        format!("sqe/{per}"),
        format!("arm/{per}"),
        format!("instr/{per}"),
        format!("cycles/{per}"),
        format!("CPU us/{per}"),
        format!("user us/{per}"),
        "srv CPU",
        "other"
    );
    for s in servers {
        let Some(row) = rows.get(s.name) else { continue };
        if let Some(e) = &row.error {
            println!("{:<31} ERROR: {}", s.name, e.lines().next().unwrap_or(""));
            continue;
        }
        let vals: Vec<f64> = row.runs.iter().map(metric).collect();
        let m = median(&vals);
        let lo = vals.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let fmt = |x: f64| if stream { format!("{x:.0}") } else { fmt_rate(x) };
        let ratio = |a: Option<f64>| a.map(|a| format!("{:.2}", a / m)).unwrap_or_else(|| "-".into());
        let ns = median(&row.runs.iter().map(|r| r.oncpu_ns_per_req).collect::<Vec<_>>());
        let ns_ratio = |a: Option<f64>| a.map(|a| format!("{:.2}", a / ns)).unwrap_or_else(|| "-".into());
        println!(
            "{:<31} {:>9} {:>17} {:>10} {:>10} {:>9.0} {:>10} {:>10} {:>9} {:>9} {:>8} {:>8} {:>11} {:>11} {:>11.2} {:>11.2} {:>6.0}% {:>5.0}%",
            s.name,
            fmt(m),
            format!("{} - {}", fmt(lo), fmt(hi)),
            ratio(uring),
            ratio(epoll),
            ns,
            ns_ratio(uring_ns),
            ns_ratio(epoll_ns),
            fmt_opt2(&row.runs.iter().map(|r| r.syscalls_per_req).collect::<Vec<_>>()),
            fmt_opt2(&row.runs.iter().map(|r| r.switches_per_req).collect::<Vec<_>>()),
            fmt_opt2(&row.runs.iter().map(|r| r.sqes_per_req).collect::<Vec<_>>()),
            fmt_opt2(&row.runs.iter().map(|r| r.arms_per_req).collect::<Vec<_>>()),
            fmt_opt(&row.runs.iter().map(|r| r.instr_per_req).collect::<Vec<_>>()),
            fmt_opt(&row.runs.iter().map(|r| r.cycles_per_req).collect::<Vec<_>>()),
            median(&row.runs.iter().map(|r| r.cpu_us_per_req).collect::<Vec<_>>()),
            median(&row.runs.iter().map(|r| r.user_us_per_req).collect::<Vec<_>>()),
            100.0 * median(&row.runs.iter().map(|r| r.util).collect::<Vec<_>>()),
            100.0 * row.runs.iter().map(|r| r.other).fold(0.0, f64::max),
        );
    }
}

// --------------------------------------------------------------------- main

fn main() -> ExitCode {
    let o = parse_or_exit(USAGE, parse_opts);
    let scenarios: Vec<&Scenario> = SCENARIOS.iter().filter(|s| o.c.want(s.name)).collect();
    let servers = servers(&o);
    if servers.is_empty() {
        eprintln!("--servers matched no server\n{USAGE}");
        return ExitCode::from(2);
    }

    // Everything must be there before anything runs.
    let mut missing = Vec::new();
    for p in std::iter::once(&o.client_bin).chain(servers.iter().map(|s| &s.program)) {
        if !p.is_file() {
            missing.push(p.display().to_string());
        }
    }
    if !missing.is_empty() {
        missing.dedup();
        eprintln!("echo: missing programs (this benchmark builds nothing):");
        for m in &missing {
            eprintln!("  {m}");
        }
        eprintln!(
            "build them with:\n  cd <repository> && cargo build --release && cmake --build build\n  \
             cd <repository>/bench && cargo build --release --bin echo --bin echo_tokio --bin echo_monoio \
             --bin echo_glommio --bin echo_mio --bin echo_uring"
        );
        return ExitCode::FAILURE;
    }
    if online_cpus() < 2 {
        return fatal(format!(
            "needs 2 CPUs (server on CPU 0, client on CPU 1); this machine has {}",
            online_cpus()
        ));
    }
    remember_affinity();
    if let Err(e) = pin_self(1) {
        return fatal(e);
    }
    let hw = if o.perf {
        match perf_hw_status() {
            Ok(hw) => hw,
            Err(e) => return fatal(e),
        }
    } else {
        false
    };
    let _ = RING_EVENTS.set(o.perf && ring_events_status());

    print_header(
        "echo benchmark: libphoton's C echo server against its peers (issue \"event engines and coroutine sockets\")",
        "servers on CPU 0 (taskset -c 0); the client, this driver, perf and sleep on CPU 1",
    );
    println!(
        "client: {} on libphoton's {} engine",
        o.client_bin.display(),
        o.client_engine
    );
    println!("libphoton server: {}", o.server_bin.display());
    println!(
        "peers: tokio {}, monoio {}, glommio {}, mio {} (from Cargo.lock), in {}",
        locked_versions("tokio"),
        locked_versions("monoio"),
        locked_versions("glommio"),
        locked_versions("mio"),
        o.bin_dir.display()
    );
    println!(
        "runs: {} reps x {} s measured after {} s warm-up, interleaved (for rep {{ for server {{ fresh server + fresh client }} }})",
        o.c.reps, o.c.secs, o.warmup
    );
    if !o.perf {
        println!("perf: not run (--no-perf): instr/req and cycles/req are n/a");
    } else if !hw {
        println!(
            "perf: this machine has no hardware performance counters (perf says <not supported>; \
             a VM without a PMU): instr/req and cycles/req are n/a, CPU us/req is the per-request figure"
        );
    }

    let mut runner = Runner::new(&o.c);
    let labels: Vec<String> = servers.iter().map(|s| s.name.to_string()).collect();
    let mut targets = Vec::new();
    for sc in &scenarios {
        eprintln!("--- {} ({})", sc.name, sc.title());
        let rows = runner.interleave(
            sc.name,
            &labels,
            o.c.reps,
            |i, _| one_run(&o, sc, &servers[i]),
            |r| {
                format!(
                    "{:>9} req/s {:>8.1} MiB/s  CPU {:>5.2} us/req ({:>3.0}%)  other {:>3.0}%{}",
                    fmt_rate(r.req_s),
                    r.mib_s,
                    r.cpu_us_per_req,
                    100.0 * r.util,
                    100.0 * r.other,
                    r.instr_per_req
                        .map(|i| format!("  {i:.0} instr/req"))
                        .unwrap_or_default()
                )
            },
        );
        let by_name: BTreeMap<&str, &Row<Run>> = servers.iter().map(|s| s.name).zip(&rows).collect();
        print_scenario(&o, sc, &servers, &by_name);
        targets.extend(target_lines(sc, &by_name));
    }
    println!();
    println!(
        "columns: req/s (MiB/s when streaming): median over reps of what the client counted; range: min - max; \
         uring/peer, epoll/peer: libphoton io_uring's (epoll's) median over the row's (above 1 = libphoton faster); \
         ns/req: the server's on-CPU nanoseconds per request (all its threads, /proc/PID/task/*/schedstat), then \
         libphoton io_uring's (epoll's) figure over the row's (below 1 = libphoton cheaper); \
         sysc/req, cs/req: the server's system calls (perf's raw_syscalls:sys_enter tracepoint) and context \
         switches per request, counted exactly whatever the machine's load; sqe/req, arm/req: io_uring \
         submissions and armed polls per request (tracepoints io_uring:io_uring_submit_req and \
         io_uring:io_uring_poll_arm; 0 without io_uring, n/a where perf cannot count them), exact too; instr/req, cycles/req: the server process's instructions and cycles (user + kernel, perf stat -p) per request; \
         CPU us/req, user us/req: the server's utime+stime (utime only) from /proc/PID/stat per request; \
         srv CPU: server CPU time / wall time (100% = CPU 0 saturated); other: the most CPU (% of one CPU) that \
         processes other than the server and the client used during a measured window of the row (0 on a quiet \
         machine). Per 4 KiB echoed when streaming."
    );
    println!();
    if !targets.is_empty() {
        println!("## Targets (information; the exit status reflects errors only)");
        println!();
        for t in &targets {
            println!("- {t}");
        }
        println!();
    }
    runner.finish(&[])
}

/// The peer whose CPU per request is the bar of the ping-pong target.
const CPU_BAR: &str = "mio loop";

/// One scenario's lines against the performance targets (issue "I/O
/// performance, second pass"): ping-pong CPU per request of each default
/// engine against [`CPU_BAR`] and the best median req/s against the best
/// peer's; streaming MiB/s of each engine against the best peer's. Each
/// ratio of medians comes with the median of the per-rep ratios and how
/// many reps were on the target's side: the servers of one rep run one
/// after another, so a rep's own ratio is free of the drift between reps
/// (this VM's speed swings by several percent over minutes), which the
/// medians taken apart are not. Rows missing or failed give no line.
fn target_lines(sc: &Scenario, rows: &BTreeMap<&str, &Row<Run>>) -> Vec<String> {
    let ok = |name: &str| {
        rows.get(name)
            .copied()
            .filter(|r| r.error.is_none() && !r.runs.is_empty())
    };
    let peers: Vec<&str> = rows
        .keys()
        .copied()
        .filter(|n| !n.starts_with("libphoton") && ok(n).is_some())
        .collect();
    let engines = [PHOTON_URING, PHOTON_EPOLL];
    let mut out = Vec::new();
    // `a`'s over `b`'s: the ratio of the medians, the median of the paired
    // per-rep ratios, and in how many reps the ratio was on the target's
    // side (`good`).
    let compare = |a: &Row<Run>, b: &Row<Run>, f: &dyn Fn(&Run) -> f64, good: &dyn Fn(f64) -> bool| {
        let fa: Vec<f64> = a.runs.iter().map(f).collect();
        let fb: Vec<f64> = b.runs.iter().map(f).collect();
        let ratio = median(&fa) / median(&fb);
        let paired: Vec<f64> = fa.iter().zip(&fb).map(|(x, y)| x / y).collect();
        let detail = if fa.len() == fb.len() && fa.len() > 1 {
            format!(
                " (median of the per-rep ratios {:.2}x; on the target's side in {} of {} reps)",
                median(&paired),
                paired.iter().filter(|r| good(**r)).count(),
                paired.len()
            )
        } else {
            String::new()
        };
        (ratio, detail)
    };
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    let best_peer = |f: &dyn Fn(&Run) -> f64| {
        peers
            .iter()
            .map(|p| (*p, median(&ok(p).unwrap().runs.iter().map(f).collect::<Vec<_>>())))
            .max_by(|x, y| x.1.total_cmp(&y.1))
    };
    match sc.mode {
        Mode::PingPong => {
            if let Some(bar) = ok(CPU_BAR) {
                for e in engines {
                    let Some(row) = ok(e) else { continue };
                    let (r, detail) = compare(row, bar, &|x: &Run| x.oncpu_ns_per_req, &|r| r <= 1.0);
                    out.push(format!(
                        "{}: CPU per request, {e} / {CPU_BAR} = {r:.2}x (target <= 1.00x): {}{detail}",
                        sc.name,
                        verdict(r <= 1.0)
                    ));
                }
            }
            let best_own = engines
                .iter()
                .filter_map(|e| ok(e).map(|r| (*e, r)))
                .map(|(e, r)| (e, r, median(&r.runs.iter().map(|x| x.req_s).collect::<Vec<_>>())))
                .max_by(|x, y| x.2.total_cmp(&y.2));
            if let (Some((e, row, own)), Some((p, theirs))) = (best_own, best_peer(&|x: &Run| x.req_s)) {
                let (_, detail) = compare(row, ok(p).unwrap(), &|x: &Run| x.req_s, &|r| r >= 1.0);
                let r = own / theirs;
                out.push(format!(
                    "{}: best req/s, {e} {} / {p} {} = {r:.2}x (target >= 1.00x): {}{detail}",
                    sc.name,
                    fmt_rate(own),
                    fmt_rate(theirs),
                    verdict(r >= 1.0)
                ));
            }
        }
        Mode::Stream => {
            if let Some((p, _)) = best_peer(&|x: &Run| x.mib_s) {
                for e in engines {
                    let Some(row) = ok(e) else { continue };
                    let (r, detail) = compare(row, ok(p).unwrap(), &|x: &Run| x.mib_s, &|r| r >= 1.0);
                    out.push(format!(
                        "{}: MiB/s, {e} / the best peer ({p}) = {r:.2}x (target >= 1.00x): {}{detail}",
                        sc.name,
                        verdict(r >= 1.0)
                    ));
                }
            }
        }
    }
    out
}
