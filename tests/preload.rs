//! Tests of `libphoton_preload.so`, the LD_PRELOAD shim, under both engines.
//!
//! - `preload_semantics`: tests/preload/semantics.c checks every hooked
//!   function against libc's results (O_NONBLOCK and EAGAIN, SO_RCVTIMEO,
//!   poll/select/epoll with mixed fds, zero timeouts, closed fds, sleeps,
//!   fork) in photon threads and on a plain pthread.
//! - `preload_hiredis`: unmodified hiredis (Debian's libhiredis) against a
//!   real redis-server started here: 100 photon threads on one vcpu each
//!   block in BLPOP for 0.3 s and the batch ends well under 1.5 s; SET/GET
//!   from 100 photon threads; the same program on a plain pthread.
//! - `preload_pthread_sync`: tests/preload/pthread_sync.c: pthread mutexes
//!   (every type), condition variables, rwlocks, spinlocks, once, barriers,
//!   semaphores and sched_yield in photon threads wait as photon waits,
//!   with ownership per photon thread, against holders that are photon
//!   threads of the same vcpu, of another vcpu, or plain pthreads; with
//!   `LD_PRELOAD` and with the shim linked first, under both engines; and
//!   with `PHOTON_PRELOAD_PTHREAD=0` the same program hangs or fails (the
//!   test proves it can fail).
//! - `preload_pthread_threads`: tests/preload/pthread_threads.c (join
//!   results and errors, detach, pthread_self across switches, a stack size
//!   attribute a deep recursion needs, cancellation refused) with
//!   `PHOTON_PRELOAD_THREADS=photon` under both engines (and a forked
//!   child's own pool), as plain pthreads under the shim, and as OS threads
//!   when `PHOTON_PRELOAD_THREADS_EXCEPT` names the program's module.
//! - `preload_pthread_threads_cpp`: tests/preload/pthread_threads_cpp.cc,
//!   100 std::threads as photon threads (thread_local objects, exceptions
//!   across waits, std::mutex/condition_variable, join) under both engines.
//! - `preload_pthread_server`: the unmodified thread-per-connection server
//!   tests/preload/pthread_server.c (a pthread per connection, a pthread
//!   mutex, a sleeping background pthread, an upstream call per request)
//!   with `PHOTON_PRELOAD_THREADS=photon` on 2 vcpus under both engines:
//!   1,000 concurrent connections from tests/preload/pthread_client.c, every
//!   reply verified, the background thread on time, at most vcpus + 4 OS
//!   threads while all are open; the same binary under the shim without the
//!   variable runs 1,000+ OS threads and passes too.
//! - `preload_pthread_sync_cpp`: tests/preload/pthread_sync_cpp.cpp:
//!   std::mutex, std::timed_mutex, std::condition_variable,
//!   std::shared_mutex and std::call_once reach the same hooks (and hang
//!   with `PHOTON_PRELOAD_PTHREAD=0`).
//! - `preload_passthrough`: unmodified programs (python3, redis-benchmark)
//!   under the shim without photon_init give what they give without it.
//! - `preload_keys`: tests/preload/keys.c, pthread keys per photon thread
//!   (100 photon threads on one vcpu across hooked sleeps, destructor
//!   rounds counted against glibc's, a plain pthread's and the vcpu main
//!   thread's values untouched, delete from a photon thread, migration).
//! - `preload_openssl_errq`: tests/preload/openssl_errq.c, OpenSSL's error
//!   queue (a pthread-key user) per photon thread.
//! - `preload_fsmeta`: tests/preload/fsmeta.c, open/openat/fstat/unlink/
//!   rename/fallocate/ftruncate in photon threads: a FIFO open that waits
//!   for its peer is a photon wait (without the hooks the vcpu blocks and a
//!   watchdog fails the run), and every answer is libc's.
//! - `preload_rocksdb`: tests/preload/rocksdb_test.cc, unmodified RocksDB
//!   (Debian's librocksdb-dev): 128 photon threads doing random Gets with
//!   direct reads and no block cache, Puts while RocksDB's flush and
//!   compaction pthreads run, an iterator scan; on one vcpu, then on a
//!   2-vcpu pool with migration. Under `LD_PRELOAD` and with the shim
//!   linked first (no `LD_PRELOAD`); and the whole program (open, build,
//!   close) in a photon thread.
//!
//! Both key tests also run with `PHOTON_PRELOAD_PTHREAD=0` and must fail
//! there: that proves they test the feature.
//!
//! redis-server and libhiredis-dev come from `scripts/setup.sh` (the test
//! command installs them); a missing one fails the test, with that hint.

mod common;

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const C_FLAGS: &[&str] = &["-std=gnu11", "-Wall", "-Wextra", "-Werror"];
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn src_dir() -> PathBuf {
    manifest_dir().join("tests").join("preload")
}

fn out_dir() -> PathBuf {
    let dir = profile_dir().join("preload-tests");
    fs::create_dir_all(&dir).expect("create target/<profile>/preload-tests");
    dir
}

/// Compiles `tests/preload/<name>.c` against libphoton (and `extra` libs).
fn compile(name: &str, extra: &[&str]) -> PathBuf {
    let src = src_dir().join(format!("{name}.c"));
    compile_c(&src, &out_dir().join(name), C_FLAGS, &[], extra)
}

fn preload_env() -> (&'static str, String) {
    ("LD_PRELOAD", preload_lib().display().to_string())
}

fn check(run: &Run, what: &str) {
    assert!(run.passed(), "{what} failed: {}", run.describe());
    println!("{what}: passed in {:.2?}", run.elapsed);
    print!("{}", run.stdout);
}

/// Threads mode on io_uring: a socket read a byte at a time, whose data is
/// there, costs a plain syscall per read rather than a ring operation (the
/// shim reads directly first while the last read returned all it asked
/// for); `PHOTON_PRELOAD_DIRECT_READ=0` with `PHOTON_IO_OFF=direct_recv`
/// (the engine's own direct receive of bytes a ring receive saw queued,
/// which serves such reads too) restores one ring operation per read.
/// Every byte checked, also for reads that have to wait.
#[test]
fn preload_direct_read() {
    let exe = compile("direct_read", &["-ldl"]);
    let (k, v) = preload_env();
    for engine in ENGINES {
        for (direct, off) in [("1", None), ("0", Some("0"))] {
            let mut envs = vec![
                (k, v.as_str()),
                ("PHOTON_PRELOAD_THREADS", "photon"),
                ("PHOTON_VCPUS", "1"),
                ("DIRECT", direct),
            ];
            if let Some(o) = off {
                envs.push(("PHOTON_PRELOAD_DIRECT_READ", o));
                envs.push(("PHOTON_IO_OFF", "direct_recv"));
            }
            let run = run_program(&exe, &[], engine, &envs, RUN_TIMEOUT);
            check(&run, &format!("direct_read DIRECT={direct} (PHOTON_ENGINE={engine})"));
        }
    }
}

#[test]
fn preload_semantics() {
    let exe = compile("semantics", &[]);
    let (k, v) = preload_env();
    for engine in ENGINES {
        let run = run_program(&exe, &[], engine, &[(k, &v)], RUN_TIMEOUT);
        check(&run, &format!("semantics (PHOTON_ENGINE={engine})"));
    }
}

/// Runs `exe` under the shim with both engines (must pass), then with
/// `PHOTON_PRELOAD_PTHREAD=0` (keys and locks off: must fail).
fn passes_only_with_pthread_hooks(exe: &Path, what: &str) {
    let (k, v) = preload_env();
    for engine in ENGINES {
        let run = run_program(exe, &[], engine, &[(k, &v)], RUN_TIMEOUT);
        check(&run, &format!("{what} (PHOTON_ENGINE={engine})"));
    }
    let off = run_program(
        exe,
        &[],
        "epoll",
        &[(k, &v), ("PHOTON_PRELOAD_PTHREAD", "0")],
        RUN_TIMEOUT,
    );
    assert!(
        off.status.is_some_and(|s| s.code() == Some(1)),
        "{what} with PHOTON_PRELOAD_PTHREAD=0 should fail its checks: {}",
        off.describe()
    );
    println!("{what} with PHOTON_PRELOAD_PTHREAD=0: fails, as it must");
}

/// tests/preload/no_alloc.c: select, pselect and poll in a photon thread
/// allocate nothing in the shim (a hook may run inside malloc or a signal
/// handler), and still answer as libc does, under each engine.
#[test]
fn preload_no_alloc() {
    let exe = compile("no_alloc", &[]);
    let (k, v) = preload_env();
    for engine in ENGINES {
        let run = run_program(&exe, &[], engine, &[(k, &v)], RUN_TIMEOUT);
        check(&run, &format!("no_alloc (PHOTON_ENGINE={engine})"));
    }
}

#[test]
fn preload_keys() {
    let exe = compile("keys", &[]);
    passes_only_with_pthread_hooks(&exe, "pthread keys per photon thread");
}

#[test]
fn preload_openssl_errq() {
    let exe = compile("openssl_errq", &["-lcrypto"]);
    passes_only_with_pthread_hooks(&exe, "OpenSSL error queue per photon thread");
}

#[test]
fn preload_pthread_sync() {
    let exe = compile("pthread_sync", &[]);
    let (k, v) = preload_env();
    for engine in ENGINES {
        let run = run_program(&exe, &[], engine, &[(k, &v)], RUN_TIMEOUT);
        check(&run, &format!("pthread_sync (PHOTON_ENGINE={engine})"));
    }
    // The shim linked first instead of preloaded.
    let lib = lib_dir().display().to_string();
    let _ = preload_lib(); // copied into lib_dir
    let first = [&["-Wl,--no-as-needed", "-L", &lib, "-lphoton_preload"][..], C_FLAGS].concat();
    let src = src_dir().join("pthread_sync.c");
    let linked = compile_c(&src, &out_dir().join("pthread_sync_linked"), &first, &[], &[]);
    for engine in ENGINES {
        let run = run_program(&linked, &[], engine, &[], RUN_TIMEOUT);
        check(
            &run,
            &format!("pthread_sync, shim linked first (PHOTON_ENGINE={engine})"),
        );
    }
    // Without the feature the same checks deadlock the vcpu or fail.
    let off = [
        (k, v.as_str()),
        ("PHOTON_PRELOAD_PTHREAD", "0"),
        ("SYNC_WATCHDOG_S", "3"),
    ];
    for (group, want) in [("mutex", 3), ("recursive", 1), ("once", 3), ("cond", 3)] {
        let run = run_program(&exe, &[group], "epoll", &off, RUN_TIMEOUT);
        assert_eq!(
            run.status.and_then(|s| s.code()),
            Some(want),
            "pthread_sync {group} with PHOTON_PRELOAD_PTHREAD=0 should fail: {}",
            run.describe()
        );
        println!("pthread_sync {group} with PHOTON_PRELOAD_PTHREAD=0: fails as it should (exit {want})");
    }
}

#[test]
fn preload_pthread_threads() {
    let exe = compile("pthread_threads", &[]);
    let (k, v) = preload_env();
    for engine in ENGINES {
        let envs = [
            (k, v.as_str()),
            ("PHOTON_PRELOAD_THREADS", "photon"),
            ("PHOTON_VCPUS", "2"),
            ("MAX_OS_THREADS", "6"),
        ];
        let run = run_program(&exe, &[], engine, &envs, RUN_TIMEOUT);
        check(
            &run,
            &format!("pthread_threads as photon threads (PHOTON_ENGINE={engine})"),
        );
    }
    let run = run_program(&exe, &[], "epoll", &[(k, &v)], RUN_TIMEOUT);
    check(&run, "pthread_threads as plain pthreads under the shim");
    // Start routines in a module named by PHOTON_PRELOAD_THREADS_EXCEPT
    // (here the program itself) get OS threads.
    let envs = [
        (k, v.as_str()),
        ("PHOTON_PRELOAD_THREADS", "photon"),
        ("PHOTON_PRELOAD_THREADS_EXCEPT", "libnothing.so, pthread_thr"),
        ("EXPECT_EXCEPTED", "1"),
    ];
    let run = run_program(&exe, &[], "epoll", &envs, RUN_TIMEOUT);
    check(
        &run,
        "pthread_threads with its own module in PHOTON_PRELOAD_THREADS_EXCEPT",
    );
}

/// std::thread under `PHOTON_PRELOAD_THREADS=photon` (photon threads with
/// their own thread_local objects, exceptions, std::mutex and
/// std::condition_variable, join), and as OS threads under the shim.
#[test]
fn preload_pthread_threads_cpp() {
    let exe = compile_cpp("pthread_threads_cpp", "pthread_threads_cpp", false, &[]);
    let (k, v) = preload_env();
    for engine in ENGINES {
        let envs = [
            (k, v.as_str()),
            ("PHOTON_PRELOAD_THREADS", "photon"),
            ("PHOTON_VCPUS", "2"),
        ];
        let run = run_program(&exe, &[], engine, &envs, RUN_TIMEOUT);
        check(&run, &format!("std::thread as photon threads (PHOTON_ENGINE={engine})"));
    }
    let run = run_program(&exe, &[], "epoll", &[(k, &v)], RUN_TIMEOUT);
    check(&run, "std::thread as OS threads under the shim");
}

/// Runs tests/preload/pthread_server with `envs`, and the client's check
/// of `conns` connections against it expecting `min..=max` OS threads in
/// the server; both must succeed.
fn serve_and_check(server: &Path, client: &Path, engine: &str, envs: &[(&str, &str)], conns: u32, threads: (u32, u32)) {
    use std::io::BufRead;
    let start = Instant::now();
    let mut cmd = Command::new(server);
    cmd.env("PHOTON_ENGINE", engine)
        .env_remove(CARGO_LIBRARY_PATH)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start pthread_server");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    out.read_line(&mut first).expect("read the server's port line");
    let port = first
        .strip_prefix("port ")
        .map(|p| p.trim().to_string())
        .unwrap_or_else(|| panic!("pthread_server printed {first:?} instead of its port"));
    let stdout = drain(out);
    let stderr = drain(child.stderr.take().expect("stderr"));
    let (min, max) = (threads.0.to_string(), threads.1.to_string());
    let run = run_program(
        client,
        &["check", &port, &conns.to_string(), &max, &min],
        engine,
        &[],
        RUN_TIMEOUT,
    );
    let status = wait_with_timeout(&mut child, start, RUN_TIMEOUT);
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(
        run.passed(),
        "pthread_client against pthread_server {envs:?} failed: {}\n--- server stdout\n{stdout}--- server stderr\n{stderr}",
        run.describe()
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "pthread_server {envs:?} ended with {status:?}\n--- stdout\n{stdout}--- stderr\n{stderr}"
    );
    print!("{}{}", run.stdout, stdout);
}

#[test]
fn preload_pthread_server() {
    let server = compile("pthread_server", &[]);
    let client = compile("pthread_client", &[]);
    let (k, v) = preload_env();
    for engine in ENGINES {
        let envs = [
            (k, v.as_str()),
            ("PHOTON_PRELOAD_THREADS", "photon"),
            ("PHOTON_VCPUS", "2"),
        ];
        serve_and_check(&server, &client, engine, &envs, 1000, (1, 2 + 4));
        println!("pthread_server as photon threads on 2 vcpus (PHOTON_ENGINE={engine}): passed");
    }
    serve_and_check(&server, &client, "epoll", &[(k, &v)], 1000, (1001, 100_000));
    println!("pthread_server as plain pthreads under the shim: passed");
}

#[test]
fn preload_pthread_sync_cpp() {
    let src = src_dir().join("pthread_sync_cpp.cpp");
    let exe = Compiler::cc_opt(true, 2, false)
        .flags(["-std=c++17", "-Wall", "-Wextra", "-Werror"])
        .build(&src, &out_dir().join("pthread_sync_cpp"));
    let (k, v) = preload_env();
    for engine in ENGINES {
        let run = run_program(&exe, &[], engine, &[(k, &v)], RUN_TIMEOUT);
        check(&run, &format!("pthread_sync_cpp (PHOTON_ENGINE={engine})"));
    }
    let run = run_program(
        &exe,
        &[],
        "epoll",
        &[(k, &v), ("PHOTON_PRELOAD_PTHREAD", "0"), ("SYNC_WATCHDOG_S", "3")],
        RUN_TIMEOUT,
    );
    assert!(
        !run.passed(),
        "pthread_sync_cpp passed with PHOTON_PRELOAD_PTHREAD=0: {}",
        run.describe()
    );
    println!("pthread_sync_cpp with PHOTON_PRELOAD_PTHREAD=0: fails as it should");
}

/// A redis-server on a free loopback port, stopped on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        let bin = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .expect("redis-server is not installed: run scripts/setup.sh (apt-get install redis-server)");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(bin)
            .env_remove(CARGO_LIBRARY_PATH)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--daemonize", "no", "--protected-mode", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { child, port }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn preload_hiredis() {
    let exe = compile("hiredis", &["-lhiredis"]);
    let redis = Redis::start();
    let port = redis.port.to_string();
    let (k, v) = preload_env();
    for engine in ENGINES {
        let run = run_program(&exe, &["photon", &port], engine, &[(k, &v)], RUN_TIMEOUT);
        check(&run, &format!("hiredis, 100 photon threads (PHOTON_ENGINE={engine})"));
    }
    let run = run_program(&exe, &["pthread", &port], "epoll", &[(k, &v)], RUN_TIMEOUT);
    check(&run, "hiredis on a plain pthread under the shim");
    let run = run_program(&exe, &["pthread", &port], "epoll", &[], RUN_TIMEOUT);
    check(&run, "hiredis on a plain pthread without the shim");
}

/// Runs `cmd` with and without the shim; both must succeed with the same
/// standard output (after `normalize`).
fn same_with_and_without(cmd: &[&str], normalize: impl Fn(&str) -> String) {
    let exe = Path::new(cmd[0]);
    let (k, v) = preload_env();
    let plain = run_program(exe, &cmd[1..], "epoll", &[], RUN_TIMEOUT);
    assert!(plain.passed(), "{cmd:?} without the shim: {}", plain.describe());
    let shim = run_program(exe, &cmd[1..], "epoll", &[(k, &v)], RUN_TIMEOUT);
    assert!(shim.passed(), "{cmd:?} under the shim: {}", shim.describe());
    assert_eq!(
        normalize(&plain.stdout),
        normalize(&shim.stdout),
        "{cmd:?} prints something else under the shim"
    );
    println!(
        "{cmd:?}: same output with and without the shim ({:.2?} / {:.2?})",
        plain.elapsed, shim.elapsed
    );
}

#[test]
fn preload_passthrough() {
    let script = src_dir().join("passthrough.py");
    let python = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("python3");
    same_with_and_without(&[python, script.to_str().unwrap()], |s| s.to_string());

    let redis = Redis::start();
    let port = redis.port.to_string();
    // Request counts and the commands run are fixed; rates are not.
    same_with_and_without(
        &[
            "/usr/bin/redis-benchmark",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-n",
            "2000",
            "-c",
            "10",
            "-t",
            "set,get,lpush",
            "--csv",
        ],
        |s| {
            s.lines()
                .map(|l| l.split(',').next().unwrap_or("").to_string())
                .collect::<Vec<_>>()
                .join("\n")
        },
    );
}

/// `tests/preload/tls_lib.cc` as `libtlsprobe.so` beside the test programs.
fn tls_probe_lib() -> PathBuf {
    Compiler::cc_opt(true, 2, false)
        .flags(["-std=c++17", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC"])
        .without_photon()
        .build(&src_dir().join("tls_lib.cc"), &out_dir().join("libtlsprobe.so"))
}

/// Thread-locals that follow the photon thread: a library's `__thread` int
/// and C++ `thread_local` object, from 100 photon threads on one vcpu
/// across hooked sleeps and reads, a plain pthread and main untouched, an
/// exception rethrown after a wait inside its catch block, values carried
/// by migration between two vcpus; under the shim (default `*`) and through
/// `photon_tls_isolate` without it. With `PHOTON_TLS_ISOLATE=none` the
/// program shows the mix-up (the test can fail).
#[test]
fn preload_tls_isolation() {
    let lib = tls_probe_lib();
    let dir = out_dir();
    let rpath = format!("-Wl,-rpath,{}", dir.display());
    let libdir = format!("-L{}", dir.display());
    let exe = compile_c(
        &src_dir().join("tls_isolation.cc"),
        &dir.join("tls_isolation"),
        &["-std=c++17", "-Wall", "-Wextra", "-Werror"],
        &[],
        &[&libdir, &rpath, "-ltlsprobe", "-lstdc++"],
    );
    assert!(lib.is_file());
    let (k, v) = preload_env();
    for engine in ENGINES {
        let run = run_program(&exe, &["isolated", "shim"], engine, &[(k, &v)], RUN_TIMEOUT);
        check(&run, &format!("tls isolation under the shim (PHOTON_ENGINE={engine})"));
        let run = run_program(&exe, &["isolated", "api"], engine, &[], RUN_TIMEOUT);
        check(
            &run,
            &format!("tls isolation by photon_tls_isolate (PHOTON_ENGINE={engine})"),
        );
        let run = run_program(
            &exe,
            &["mixed", "shim"],
            engine,
            &[(k, &v), ("PHOTON_TLS_ISOLATE", "none")],
            RUN_TIMEOUT,
        );
        check(&run, &format!("no isolation shows the mix-up (PHOTON_ENGINE={engine})"));
    }
}

#[test]
fn preload_fsmeta() {
    let exe = compile("fsmeta", &[]);
    let (k, v) = preload_env();
    for engine in ENGINES {
        let dir = out_dir().join(format!("fsmeta.{}.{engine}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the scratch directory");
        let run = run_program(&exe, &[&dir.display().to_string()], engine, &[(k, &v)], RUN_TIMEOUT);
        check(&run, &format!("file open and metadata calls (PHOTON_ENGINE={engine})"));
        let _ = fs::remove_dir_all(&dir);
    }
}

/// Compiles `tests/preload/<name>.cc` (C++17, warnings as errors) with `libs`
/// after libphoton; `shim_first` links `libphoton_preload.so` before
/// everything else (the shim then needs no `LD_PRELOAD`).
fn compile_cpp(name: &str, exe_name: &str, shim_first: bool, libs: &[&str]) -> PathBuf {
    let src = src_dir().join(format!("{name}.cc"));
    let mut first = Vec::new();
    if shim_first {
        preload_lib(); // copied into lib_dir()
        first.extend(["-Wl,--no-as-needed", "-lphoton_preload", "-Wl,--as-needed"]);
    }
    first.extend(libs);
    Compiler::cc(true)
        .flags(["-std=c++17", "-Wall", "-Wextra", "-Werror"])
        .first(first)
        .build(&src, &out_dir().join(exe_name))
}

#[test]
fn preload_rocksdb() {
    assert!(
        Path::new("/usr/include/rocksdb/db.h").is_file(),
        "librocksdb-dev is not installed: run scripts/setup.sh (apt-get install librocksdb-dev)"
    );
    let preloaded = compile_cpp("rocksdb_test", "rocksdb_test", false, &["-lrocksdb"]);
    let linked = compile_cpp("rocksdb_test", "rocksdb_test_shim_linked", true, &["-lrocksdb"]);
    let db = out_dir().join(format!("rocksdb-db.{}", std::process::id()));
    let db_arg = db.display().to_string();
    let (k, v) = preload_env();
    for engine in ENGINES {
        let run = run_program(&preloaded, &[&db_arg], engine, &[(k, &v)], RUN_TIMEOUT);
        check(&run, &format!("RocksDB under LD_PRELOAD (PHOTON_ENGINE={engine})"));
        let run = run_program(&linked, &[&db_arg], engine, &[], RUN_TIMEOUT);
        check(
            &run,
            &format!("RocksDB with the shim linked first (PHOTON_ENGINE={engine})"),
        );
        // Opened, built and closed in a photon thread: RocksDB's own pthreads
        // are created from a photon thread, and closing waits for its
        // background work there.
        let run = run_program(&preloaded, &[&db_arg, "in-photon"], engine, &[(k, &v)], RUN_TIMEOUT);
        check(
            &run,
            &format!("RocksDB opened in a photon thread (PHOTON_ENGINE={engine})"),
        );
    }
    let _ = fs::remove_dir_all(&db);
}
