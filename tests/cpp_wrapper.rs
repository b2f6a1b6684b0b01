//! The header-only C++ wrapper (`cpp-wrapper/`), tested through real C++
//! programs, as `tests/c_api.rs` tests the C API:
//!
//! - every header of `cpp-wrapper/photon/` compiles on its own and included
//!   twice in one translation unit, with `-Wall -Wextra -Werror -pedantic`,
//!   under C++14 and C++17, with g++ and with clang++;
//! - behaviour programs (`tests/cpp/*.cpp`, one per area of the wrapper),
//!   compiled against `include/photon.h` + `cpp-wrapper/` and linked to the
//!   `libphoton.so` this `cargo test` built (as C++14; the template-heavy
//!   ones also by clang++ as C++17), run under each event engine
//!   (`PHOTON_ENGINE=epoll`, then `io_uring`); each exits 0 or names the
//!   failed check (`tests/cpp/check.h`);
//! - `tests/cpp/escape.cpp`: exceptions escaping threads nobody joins end
//!   the process with a message (SIGABRT), cancellations end quietly;
//! - the port test: `tests/cpp/port_bank.cpp`, a std::thread program, and
//!   the example `cpp-wrapper/examples/producer_consumer.cpp`, built as they
//!   are and after `cpp-wrapper/port-to-photon.sed`, print the same output as
//!   OS threads, as photon threads on one vcpu and on a work pool;
//! - the example echo server serves real TCP clients.
//!
//! The library is found as in `tests/c_api.rs` (`target/<profile>/deps/`,
//! else `target/<profile>/`, else built by `cargo build`), and copied to
//! `target/<profile>/cpp-tests/lib/`, which the programs link to (rpath).

mod common;

use common::*;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Each run of a program is killed, and its test failed, after this long.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// The behaviour programs of `tests/cpp/`, each with its `#[test]` below
/// (`escape` and `port_bank` have tests of their own kind).
const PROGRAMS: &[&str] = &[
    "alog",
    "escape",
    "fifth_pass",
    "fourth_pass",
    "io_extras",
    "localfs",
    "locks",
    "port_bank",
    "socket",
    "std_compat",
    "third_pass",
    "thread",
    "thread11",
    "thread_extras",
    "workpool",
];

/// Warnings as errors, for the headers and for every test program.
const WARNINGS: [&str; 4] = ["-Wall", "-Wextra", "-Werror", "-pedantic"];

fn wrapper_dir() -> PathBuf {
    manifest_dir().join("cpp-wrapper")
}

fn test_dir() -> PathBuf {
    manifest_dir().join("tests").join("cpp")
}

/// Where compiled programs go: `target/<profile>/cpp-tests/`.
fn out_dir() -> PathBuf {
    let dir = profile_dir().join("cpp-tests");
    fs::create_dir_all(&dir).expect("create target/<profile>/cpp-tests");
    dir
}

/// The C++ compiler the `cc` crate picks (honouring `CXX`), -O1.
fn cc_cxx() -> Compiler {
    Compiler::cc_opt(true, 1, false)
}

/// Compiles C++ `src` into `exe` as `std_flag` against the C header and the
/// wrapper, warnings as errors, linked to libphoton.so (and pthreads).
fn compile_cpp(compiler: Compiler, std_flag: &str, src: &Path, exe: &Path) {
    compiler
        .flags([std_flag])
        .flags(WARNINGS)
        .include(wrapper_dir())
        .include(test_dir())
        .build(src, exe);
}

/// Compiles `tests/cpp/<name>.cpp` with the `cc` crate's compiler, as C++14.
fn compile_test_program(name: &str) -> PathBuf {
    let src = test_dir().join(format!("{name}.cpp"));
    assert!(src.is_file(), "missing {}", src.display());
    let exe = out_dir().join(name);
    compile_cpp(cc_cxx(), "-std=c++14", &src, &exe);
    exe
}

/// Runs `exe args` under `engine` with `envs`, killing it at the timeout.
fn run_program(exe: &Path, args: &[&str], engine: &str, envs: &[(&str, &str)]) -> Run {
    common::run_program(exe, args, engine, envs, RUN_TIMEOUT)
}

/// Compiles `tests/cpp/<name>.cpp` and runs it under each engine; it must
/// exit 0 every time.
fn behaviour_test(name: &str) {
    let exe = compile_test_program(name);
    for engine in ENGINES {
        let run = run_program(&exe, &[], engine, &[]);
        assert!(
            run.passed(),
            "C++ test {name} with PHOTON_ENGINE={engine} failed: {}",
            run.describe()
        );
        println!("{name} (PHOTON_ENGINE={engine}): passed in {:.2?}", run.elapsed);
        print!("{}", run.stdout);
    }
}

#[test]
fn cpp_thread() {
    behaviour_test("thread");
}

#[test]
fn cpp_locks() {
    behaviour_test("locks");
}

#[test]
fn cpp_thread11() {
    behaviour_test("thread11");
}

#[test]
fn cpp_std_compat() {
    behaviour_test("std_compat");
}

/// The most template-heavy programs again, built by clang++ as C++17
/// (the others are built as C++14 by the `cc` crate's compiler).
#[test]
fn cpp_clang_cxx17() {
    for name in [
        "std_compat",
        "thread11",
        "alog",
        "thread_extras",
        "io_extras",
        "third_pass",
        "fourth_pass",
        "fifth_pass",
    ] {
        let src = test_dir().join(format!("{name}.cpp"));
        let exe = out_dir().join(format!("{name}_clang17"));
        compile_cpp(Compiler::program(Command::new("clang++")), "-std=c++17", &src, &exe);
        for engine in ENGINES {
            let run = run_program(&exe, &[], engine, &[]);
            assert!(
                run.passed(),
                "{name} (clang++ -std=c++17, PHOTON_ENGINE={engine}) failed: {}",
                run.describe()
            );
            println!(
                "{name} (clang++ -std=c++17, PHOTON_ENGINE={engine}): passed in {:.2?}",
                run.elapsed
            );
        }
    }
}

#[test]
fn cpp_workpool() {
    behaviour_test("workpool");
}

#[test]
fn cpp_socket() {
    behaviour_test("socket");
}

#[test]
fn cpp_localfs() {
    behaviour_test("localfs");
}

/// Logging (alog.h, alog-stdstring.h) and utility.h; then the starting
/// level PHOTON_LOG gives, as libphoton's own logger reads it.
#[test]
fn cpp_alog() {
    behaviour_test("alog");
    let exe = out_dir().join("alog");
    for (value, level) in [
        ("warn", "2"),
        ("error", "3"),
        ("info", "1"),
        ("debug", "0"),
        ("photon=info", "1"),
    ] {
        let run = run_program(&exe, &["env", level], "epoll", &[("PHOTON_LOG", value)]);
        assert!(
            run.passed(),
            "PHOTON_LOG={value} should give level {level}: {}",
            run.describe()
        );
    }
}

/// vcpu_init/fini, CURRENT/now values, usleep_defer, thread keys,
/// thread_local_ptr, thread pools, futures, stack allocator, WorkPool extras.
#[test]
fn cpp_thread_extras() {
    behaviour_test("thread_extras");
}

/// fd-events.h, lockfree_queue.h, net/utils.h, fs::new_localfs_adaptor.
#[test]
fn cpp_io_extras() {
    behaviour_test("io_extras");
}

/// metric-meter/metrics.h, rcuptr.h (on one vcpu and across vcpus),
/// throttle.h, ALogStringL, threads_create_join, thread_usleep_defer with a
/// lambda.
/// The fourth pass: sys/socket.h's photon::net calls, common/delegates.h,
/// ISocketStream::shutdown; socket pools in the C++17 build (cpp_clang_cxx17).
#[test]
fn cpp_fourth_pass() {
    behaviour_test("fourth_pass");
}

/// expirecontainer.h (ExpireContainer, ExpireList, ObjectCache) and
/// objectcachev2.h (ObjectCacheV2), across two vcpus.
#[test]
fn cpp_fifth_pass() {
    behaviour_test("fifth_pass");
}

#[test]
fn cpp_third_pass() {
    behaviour_test("third_pass");
}

/// Exceptions that escape threads nobody will join: each case of
/// `tests/cpp/escape.cpp` must end by SIGABRT with a message naming what
/// escaped (or, for cancellations, exit 0 quietly).
#[test]
fn cpp_escape() {
    let exe = compile_test_program("escape");
    // (case, what stderr must say; None: the case must exit 0)
    let cases: &[(&str, Option<&str>)] = &[
        ("thread11-detached", Some("thread11 boom")),
        ("thread-create-detached", Some("c-style boom")),
        ("detach-after-throw", Some("late detach boom")),
        ("std-detached", Some("std boom")),
        ("std-detach-after-end", Some("not a std::exception")),
        ("std-destroy-joinable", Some("terminate called")),
        ("async-call", Some("async boom")),
        ("socket-handler", Some("handler boom")),
        ("cancelled-detached", None),
        ("cancelled-by-fini", None),
    ];
    for engine in ENGINES {
        for &(case, message) in cases {
            let run = run_program(&exe, &[case], engine, &[]);
            match message {
                None => assert!(
                    run.passed(),
                    "escape {case} (PHOTON_ENGINE={engine}): {}",
                    run.describe()
                ),
                Some(message) => {
                    let signal = run.status.and_then(|s| s.signal());
                    assert_eq!(
                        signal,
                        Some(libc::SIGABRT),
                        "escape {case} (PHOTON_ENGINE={engine}): want SIGABRT, got {}",
                        run.describe()
                    );
                    assert!(
                        run.stderr.contains(message),
                        "escape {case} (PHOTON_ENGINE={engine}): stderr does not say {message:?}: {}",
                        run.describe()
                    );
                    if case != "std-destroy-joinable" {
                        assert!(
                            run.stderr.contains("photon: an exception") && run.stderr.contains("nobody will join"),
                            "escape {case} (PHOTON_ENGINE={engine}): no photon message: {}",
                            run.describe()
                        );
                    }
                }
            }
        }
        println!("escape (PHOTON_ENGINE={engine}): {} cases as expected", cases.len());
    }
}

/// `sed -f cpp-wrapper/port-to-photon.sed src > dst`; the result must use
/// no std:: threading name any more.
fn port_to_photon(src: &Path, dst: &Path) {
    let script = wrapper_dir().join("port-to-photon.sed");
    let out = Command::new("sed")
        .arg("-f")
        .arg(&script)
        .arg(src)
        .output()
        .unwrap_or_else(|e| panic!("cannot run sed: {e}"));
    assert!(
        out.status.success(),
        "sed failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ported = String::from_utf8(out.stdout).expect("sed output is UTF-8");
    for name in [
        "std::thread",
        "std::mutex",
        "std::condition_variable",
        "std::unique_lock",
        "std::lock_guard",
        "std::this_thread",
        "#include <thread>",
        "#include <mutex>",
        "#include <condition_variable>",
    ] {
        for (i, line) in ported.lines().enumerate() {
            let stripped = line.replace("photon_std::", "");
            assert!(
                !stripped.contains(name) || line.trim_start().starts_with("//"),
                "{}:{}: the ported program still uses {name}: {line}",
                dst.display(),
                i + 1
            );
        }
    }
    assert!(
        ported.contains("photon_std::run_as_main"),
        "the ported main does not run on a vcpu"
    );
    fs::write(dst, ported).expect("write the ported program");
}

/// A std:: thread program and its port must print the same: as OS threads,
/// as photon threads on one vcpu and on a work pool of 3, under each engine.
fn port_test(src: &Path, name: &str) {
    let original = out_dir().join(format!("{name}_std"));
    cc_cxx()
        .flags(["-std=c++14"])
        .flags(WARNINGS)
        .without_photon()
        .build(src, &original);
    let ported_src = out_dir().join(format!("{name}_photon.cpp"));
    let ported_tmp = private_name(&ported_src).with_extension("cpp");
    port_to_photon(src, &ported_tmp);
    fs::rename(&ported_tmp, &ported_src).expect("rename the ported source into place");
    let ported = out_dir().join(format!("{name}_photon"));
    compile_cpp(cc_cxx(), "-std=c++14", &ported_src, &ported);

    let reference = run_program(&original, &[], "epoll", &[]);
    assert!(reference.passed(), "{name} as OS threads: {}", reference.describe());
    assert!(!reference.stdout.is_empty(), "{name} printed nothing");
    for engine in ENGINES {
        for pool in ["0", "3"] {
            let run = run_program(&ported, &[], engine, &[("PHOTON_STD_WORK_POOL", pool)]);
            assert!(
                run.passed(),
                "{name} ported (PHOTON_ENGINE={engine}, pool {pool}): {}",
                run.describe()
            );
            assert_eq!(
                run.stdout, reference.stdout,
                "{name}: the port (PHOTON_ENGINE={engine}, PHOTON_STD_WORK_POOL={pool}) prints differently"
            );
            println!(
                "{name} ported (PHOTON_ENGINE={engine}, work pool {pool}): same output, {:.2?}",
                run.elapsed
            );
        }
    }
    print!("{}", reference.stdout);
}

#[test]
fn cpp_port_bank() {
    port_test(&test_dir().join("port_bank.cpp"), "port_bank");
}

#[test]
fn cpp_port_example_producer_consumer() {
    port_test(
        &wrapper_dir().join("examples").join("producer_consumer.cpp"),
        "producer_consumer",
    );
}

/// The example echo server serves two TCP clients, then exits 0.
#[test]
fn cpp_example_echo_server() {
    let src = wrapper_dir().join("examples").join("echo_server.cpp");
    let exe = out_dir().join("echo_server");
    compile_cpp(cc_cxx(), "-std=c++14", &src, &exe);
    for engine in ENGINES {
        let start = Instant::now();
        let mut child = Command::new(&exe)
            .env_remove(CARGO_LIBRARY_PATH)
            .args(["0", "--connections", "2"])
            .env("PHOTON_ENGINE", engine)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start echo_server");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the port line");
        let port: u16 = line
            .trim()
            .strip_prefix("listening on port ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("echo_server printed {line:?}"));
        for i in 0..2 {
            let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect to echo_server");
            conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let msg = vec![b'a' + i as u8; 100_000];
            let mut writer = conn.try_clone().unwrap();
            let sent = msg.clone();
            let w = thread::spawn(move || {
                writer
                    .write_all(&sent)
                    .and_then(|()| writer.shutdown(std::net::Shutdown::Write))
            });
            let mut echoed = Vec::new();
            conn.read_to_end(&mut echoed).expect("read the echo");
            w.join().unwrap().expect("write to echo_server");
            assert!(
                echoed == msg,
                "echo_server (PHOTON_ENGINE={engine}) echoed {} bytes wrong",
                echoed.len()
            );
        }
        let status =
            wait_with_timeout(&mut child, start, RUN_TIMEOUT).expect("echo_server did not exit after 2 connections");
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        assert!(
            status.success() && rest.contains("served 2 connections"),
            "echo_server: {status}, {rest:?}"
        );
        println!("echo_server (PHOTON_ENGINE={engine}): echoed 2 x 100000 bytes, exited cleanly");
    }
}

/// Every header of the wrapper, for one compiler and standard: a
/// translation unit that includes it first (self-contained) and twice
/// (include guard), syntax only, warnings as errors. Returns the failures.
fn headers_compile(compiler: &str, std_flag: &str) -> Vec<String> {
    let dir = out_dir().join(format!("headers-{compiler}-{}", std_flag.trim_start_matches("-std=")));
    fs::create_dir_all(&dir).expect("create the header test directory");
    let mut failures = Vec::new();
    for (i, header) in wrapper_headers().iter().enumerate() {
        let tu = dir.join(format!("h{i}.{}.cpp", std::process::id()));
        fs::write(&tu, format!("#include <{header}>\n#include <{header}>\n")).expect("write a header test");
        if let Err(e) = Compiler::program(Command::new(compiler))
            .flags([std_flag])
            .flags(WARNINGS)
            .include(wrapper_dir())
            .syntax_only(&tu, &format!("<{header}> with {compiler} {std_flag}"))
        {
            failures.push(e);
        }
        let _ = fs::remove_file(&tu);
    }
    failures
}

/// The headers under `cpp-wrapper/photon/` and `cpp-wrapper/sys/`, as
/// `photon/...` / `sys/...` include paths.
fn wrapper_headers() -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).expect("read cpp-wrapper/photon") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "h") {
                out.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let root = wrapper_dir();
    let mut headers = Vec::new();
    walk(&root.join("photon"), &root, &mut headers);
    walk(&root.join("sys"), &root, &mut headers);
    headers.sort();
    assert!(headers.len() >= 10, "found only {headers:?}");
    headers
}

/// The header check for one compiler, both standards at once.
fn headers_test(compiler: &str) {
    if Command::new(compiler)
        .arg("--version")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        panic!("{compiler} not found: the wrapper's headers are checked with g++ and clang++");
    }
    let (c14, c17) = thread::scope(|s| {
        let c14 = s.spawn(|| headers_compile(compiler, "-std=c++14"));
        let c17 = s.spawn(|| headers_compile(compiler, "-std=c++17"));
        (c14.join().unwrap(), c17.join().unwrap())
    });
    let failures: Vec<String> = c14.into_iter().chain(c17).collect();
    assert!(
        failures.is_empty(),
        "{} header checks failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    println!(
        "{} headers compile alone and twice with {compiler}, C++14 and C++17",
        wrapper_headers().len()
    );
}

#[test]
fn headers_compile_with_gxx() {
    headers_test("g++");
}

#[test]
fn headers_compile_with_clangxx() {
    headers_test("clang++");
}

/// Every program in tests/cpp/ has its test, and every test its program.
#[test]
fn every_cpp_program_has_a_test() {
    let mut found: Vec<String> = fs::read_dir(test_dir())
        .expect("read tests/cpp")
        .map(|entry| entry.expect("tests/cpp entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "cpp"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        // unet_socket runs in tests/unet.rs, on the userspace-stack setup.
        .filter(|name| name != "unet_socket")
        .collect();
    found.sort();
    assert_eq!(
        found, PROGRAMS,
        "tests/cpp/*.cpp and PROGRAMS in tests/cpp_wrapper.rs differ"
    );
}
