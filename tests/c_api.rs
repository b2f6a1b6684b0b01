//! Behaviour through the C ABI: real C programs (`tests/c/*.c`) compiled
//! against `include/photon.h`, linked to the `libphoton.so` that this
//! `cargo test` built, and run once per event engine (`PHOTON_ENGINE=epoll`,
//! then `PHOTON_ENGINE=io_uring`). Each program prints what it checks and
//! exits 0, or exits non-zero naming the failed check (`tests/c/check.h`).
//!
//! Also here: the header compiles alone as C99 and as C++11 with warnings as
//! errors, and the checked-in header is the one build.rs generates.
//!
//! `PHOTON_TEST_SANITIZE` runs the same programs under a checker
//! (`scripts/test.sh --sanitize` sets it):
//! - `asan`: built with clang `-fsanitize=address,undefined` (errors fatal,
//!   leak detection and stack-use-after-return detection on), both engines;
//! - `valgrind`: built as usual and run under `valgrind --error-exitcode`
//!   (memcheck), epoll only (Valgrind cannot see what the kernel writes
//!   through io_uring's rings), except the programs in [`NOT_UNDER_VALGRIND`].
//!
//! Any report fails the program's test.
//!
//! Where the library is found: `cargo test` compiles the library unit with
//! all its crate types, so `libphoton.so` sits in `target/<profile>/deps/`,
//! next to this test's executable, built from the same sources, profile and
//! features; cargo copies it up to `target/<profile>/` only on `cargo build`.
//! The harness links to the one in `deps/`, and only if that is missing
//! falls back to `target/<profile>/`, running `cargo build` once if needed.
//! The programs reach it through symlinks in `target/<profile>/c-tests/lib/`
//! (with an rpath there), one of them named by the library's soname.

mod common;

use common::*;
use std::env;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Each run of a C program is killed, and its test failed, after this long.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The C programs in `tests/c/`, each with its `#[test]` below.
const PROGRAMS: &[&str] = &[
    "bad_input",
    "cross_vcpu",
    "fault_interrupt_pread",
    "fault_interrupt_waits",
    "fault_iouring_fallback_log",
    "fault_memlock",
    "fault_stalled_peer",
    "fini",
    "fs_big_transfer",
    "fs_concurrent",
    "fs_direct",
    "fs_errors",
    "fs_interrupt",
    "fs_liveness",
    "fs_ops",
    "fs_parity",
    "interrupt",
    "join",
    "jump",
    "keys",
    "many_threads",
    "net_budget",
    "net_close_wakes",
    "net_echo_many",
    "net_emfile",
    "net_errors",
    "net_interrupt",
    "net_iouring_fallback",
    "net_partial",
    "net_timeouts",
    "net_udp",
    "net_unix",
    "net_vcpu_wake",
    "net_wait_fd",
    "off_vcpu",
    "self_yield",
    "sleep_order",
    "stack_overflow",
    "sync_interrupt",
    "sync_interrupt_race",
    "sync_misuse",
    "sync_mutex_contention",
    "sync_mutex_fairness",
    "sync_pingpong",
    "sync_random",
    "sync_rwlock_contention",
    "sync_rwlock_fairness",
    "sync_sem_lock",
    "sync_timed",
    "vcpu_migrate",
    "vcpu_migrate_interrupt",
    "vcpu_workpool",
    "visibility",
];

/// Programs that cannot be run meaningfully under Valgrind, and why.
const NOT_UNDER_VALGRIND: &[(&str, &str)] = &[
    (
        "fs_big_transfer",
        "measures scheduling gaps that Valgrind's serialised, much slower run cannot meet",
    ),
    (
        "fs_liveness",
        "measures scheduling gaps that Valgrind's serialised, much slower run cannot meet",
    ),
    (
        "many_threads",
        "100,000 live stacks: each stack switch is a lookup in Valgrind's stack list",
    ),
    (
        "net_emfile",
        "Valgrind keeps fds of its own at the top of RLIMIT_NOFILE, which this test lowers",
    ),
    (
        "sync_timed",
        "hundreds of timed waiters with tight slack: Valgrind's serialised run overshoots the bounds",
    ),
    (
        "net_iouring_fallback",
        "checks the io_uring engine, which runs with epoll under Valgrind",
    ),
    (
        "stack_overflow",
        "Valgrind reports the deliberate guard-page fault itself",
    ),
    (
        "sync_mutex_fairness",
        "measures hand-off latencies that Valgrind's serialised, much slower run cannot meet",
    ),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Checker {
    None,
    Asan,
    Valgrind,
}

fn checker() -> Checker {
    match env::var("PHOTON_TEST_SANITIZE").as_deref() {
        Err(_) | Ok("") => Checker::None,
        Ok("asan") => Checker::Asan,
        Ok("valgrind") => Checker::Valgrind,
        Ok(other) => panic!("PHOTON_TEST_SANITIZE={other}: want asan or valgrind"),
    }
}

/// The flags of every C test program.
const C_FLAGS: [&str; 6] = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-D_GNU_SOURCE"];

fn c_test_dir() -> PathBuf {
    manifest_dir().join("tests").join("c")
}

/// Where compiled C programs go: `target/<profile>/c-tests/`.
fn out_dir() -> PathBuf {
    let dir = profile_dir().join(if checker() == Checker::Asan {
        "c-tests-asan"
    } else {
        "c-tests"
    });
    fs::create_dir_all(&dir).expect("create target/<profile>/c-tests");
    dir
}

/// The C (or C++) compiler the `cc` crate picks for this target, honouring
/// `CC`, `CXX`, `CFLAGS` and friends.
fn compiler(cpp: bool) -> cc::Tool {
    cc::Build::new()
        .cpp(cpp)
        .target(TARGET)
        .host(TARGET)
        .opt_level(2)
        .debug(true)
        .out_dir(out_dir())
        .cargo_metadata(false)
        .get_compiler()
}

/// Runs a command to completion and fails the test, showing its output, if
/// it does not succeed.
fn run_to_success(mut cmd: Command, what: &str) {
    // the command line alone: Command's Debug also lists the environment
    let line = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|arg| arg.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {line}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{line}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Compiles `tests/c/<name>.c` into an executable linked to libphoton.so.
fn compile_c_program(name: &str) -> PathBuf {
    let src = c_test_dir().join(format!("{name}.c"));
    assert!(src.is_file(), "missing {}", src.display());
    let header = include_dir().join("photon.h");
    assert!(header.is_file(), "missing {}", header.display());
    let lib_dir = lib_dir();
    let exe = out_dir().join(name);
    let mut cmd = if checker() == Checker::Asan {
        let mut cmd = Command::new("clang");
        cmd.args(["-g", "-O1", "-fno-omit-frame-pointer"])
            .args(["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]);
        cmd
    } else {
        compiler(false).to_command()
    };
    cmd.args(C_FLAGS)
        .arg("-I")
        .arg(include_dir())
        .arg("-I")
        .arg(c_test_dir())
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(lib_dir)
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .args(["-lphoton", "-lpthread"]);
    run_to_success(cmd, &format!("compiling {}", src.display()));
    exe
}

/// Runs a C test program under `engine`, killing it at the timeout.
fn run_c_program(exe: &Path, engine: &str) -> Run {
    run_c_program_with(exe, engine, &[])
}

/// As [`run_c_program`], with `extra` in the program's environment.
fn run_c_program_with(exe: &Path, engine: &str, extra: &[(&str, &str)]) -> Run {
    match checker() {
        Checker::None => run_program(exe, &[], engine, extra, RUN_TIMEOUT),
        Checker::Asan => run_program(
            exe,
            &[],
            engine,
            &[
                &[
                    (
                        "ASAN_OPTIONS",
                        "detect_leaks=1:detect_stack_use_after_return=1:abort_on_error=0",
                    ),
                    ("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1"),
                ],
                extra,
            ]
            .concat(),
            RUN_TIMEOUT,
        ),
        Checker::Valgrind => {
            let exe = exe.to_str().expect("a UTF-8 path");
            run_program(
                Path::new("valgrind"),
                &["--quiet", "--error-exitcode=99", "--track-origins=yes", exe],
                engine,
                extra,
                RUN_TIMEOUT * 5,
            )
        }
    }
}

/// The engines a program runs under with the current checker.
fn engines() -> &'static [&'static str] {
    if checker() == Checker::Valgrind {
        &ENGINES[..1]
    } else {
        &ENGINES[..]
    }
}

/// Compiles `tests/c/<name>.c` and runs it under each engine; it must exit 0
/// every time.
fn c_test(name: &str) {
    if checker() == Checker::Valgrind
        && let Some((_, why)) = NOT_UNDER_VALGRIND.iter().find(|(n, _)| *n == name)
    {
        println!("{name}: not run under Valgrind: {why}");
        return;
    }
    let exe = compile_c_program(name);
    for &engine in engines() {
        let run = run_c_program(&exe, engine);
        assert!(
            run.passed(),
            "C test {name} with PHOTON_ENGINE={engine} failed: {}",
            run.describe()
        );
        if checker() == Checker::Asan {
            assert!(
                !run.stderr.contains("AddressSanitizer") && !run.stderr.contains("ASan is ignoring"),
                "C test {name} with PHOTON_ENGINE={engine}: AddressSanitizer spoke: {}",
                run.describe()
            );
        }
        println!("{name} (PHOTON_ENGINE={engine}): passed in {:.2?}", run.elapsed);
        print!("{}", run.stdout);
    }
}

/// Every optional I/O feature, as `PHOTON_IO_OFF` names them.
const ALL_IO_FEATURES: &str = "readiness,poll_first,send_first,cached_read";

/// The socket and file programs again with every optional I/O feature
/// switched off (`PHOTON_IO_OFF`), as on a kernel that lacks them: the
/// fallbacks are exercised under both engines.
#[test]
fn c_io_features_off() {
    let programs = [
        "net_echo_many",
        "net_partial",
        "net_interrupt",
        "net_close_wakes",
        "net_wait_fd",
        "net_unix",
        "net_budget",
        "fs_big_transfer",
    ];
    for name in programs {
        if checker() == Checker::Valgrind && NOT_UNDER_VALGRIND.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let exe = compile_c_program(name);
        for &engine in engines() {
            let run = run_c_program_with(&exe, engine, &[("PHOTON_IO_OFF", ALL_IO_FEATURES)]);
            assert!(
                run.passed(),
                "C test {name} with PHOTON_ENGINE={engine} PHOTON_IO_OFF={ALL_IO_FEATURES} failed: {}",
                run.describe()
            );
            println!("{name} (PHOTON_ENGINE={engine}, PHOTON_IO_OFF={ALL_IO_FEATURES}): passed");
        }
    }
}

/// The socket, file and fault programs again with the io_uring submission
/// queue polled by a kernel thread (`PHOTON_IO_SQPOLL=1`, what the
/// `photon_init` flag `PHOTON_INIT_IOURING_SQPOLL` asks for); the epoll
/// runs check that the flag is ignored there.
#[test]
fn c_io_sqpoll() {
    let programs = [
        "net_echo_many",
        "net_partial",
        "net_interrupt",
        "net_close_wakes",
        "net_timeouts",
        "fs_ops",
        "fs_interrupt",
        "fault_interrupt_waits",
    ];
    for name in programs {
        let exe = compile_c_program(name);
        for &engine in engines() {
            let run = run_c_program_with(&exe, engine, &[("PHOTON_IO_SQPOLL", "1")]);
            assert!(
                run.passed(),
                "C test {name} with PHOTON_ENGINE={engine} PHOTON_IO_SQPOLL=1 failed: {}",
                run.describe()
            );
            println!("{name} (PHOTON_ENGINE={engine}, PHOTON_IO_SQPOLL=1): passed");
        }
    }
}

#[test]
fn c_sleep_order() {
    c_test("sleep_order");
}

#[test]
fn c_join() {
    c_test("join");
}

#[test]
fn c_self_yield() {
    c_test("self_yield");
}

#[test]
fn c_interrupt() {
    c_test("interrupt");
}

#[test]
fn c_many_threads() {
    c_test("many_threads");
}

#[test]
fn c_keys() {
    c_test("keys");
}

#[test]
fn c_bad_input() {
    c_test("bad_input");
}

#[test]
fn c_off_vcpu() {
    c_test("off_vcpu");
}

#[test]
fn c_cross_vcpu() {
    c_test("cross_vcpu");
}

#[test]
fn c_fini() {
    c_test("fini");
}

#[test]
fn c_net_budget() {
    c_test("net_budget");
}

#[test]
fn c_net_close_wakes() {
    c_test("net_close_wakes");
}

#[test]
fn c_net_echo_many() {
    c_test("net_echo_many");
}

#[test]
fn c_net_emfile() {
    c_test("net_emfile");
}

#[test]
fn c_net_errors() {
    c_test("net_errors");
}

#[test]
fn c_net_interrupt() {
    c_test("net_interrupt");
}

#[test]
fn c_net_iouring_fallback() {
    c_test("net_iouring_fallback");
}

#[test]
fn c_net_partial() {
    c_test("net_partial");
}

#[test]
fn c_net_timeouts() {
    c_test("net_timeouts");
}

#[test]
fn c_net_udp() {
    c_test("net_udp");
}

#[test]
fn c_net_unix() {
    c_test("net_unix");
}

#[test]
fn c_net_vcpu_wake() {
    c_test("net_vcpu_wake");
}

#[test]
fn c_net_wait_fd() {
    c_test("net_wait_fd");
}

#[test]
fn c_fs_big_transfer() {
    c_test("fs_big_transfer");
}

#[test]
fn c_fs_concurrent() {
    c_test("fs_concurrent");
}

#[test]
fn c_fs_direct() {
    c_test("fs_direct");
}

#[test]
fn c_fs_errors() {
    c_test("fs_errors");
}

#[test]
fn c_fs_interrupt() {
    c_test("fs_interrupt");
}

#[test]
fn c_fs_liveness() {
    c_test("fs_liveness");
}

#[test]
fn c_fs_ops() {
    c_test("fs_ops");
}

#[test]
fn c_fs_parity() {
    c_test("fs_parity");
}

#[test]
fn c_sync_interrupt() {
    c_test("sync_interrupt");
}

#[test]
fn c_sync_interrupt_race() {
    c_test("sync_interrupt_race");
}

#[test]
fn c_sync_misuse() {
    c_test("sync_misuse");
}

#[test]
fn c_sync_mutex_contention() {
    c_test("sync_mutex_contention");
}

#[test]
fn c_sync_mutex_fairness() {
    c_test("sync_mutex_fairness");
}

#[test]
fn c_sync_pingpong() {
    c_test("sync_pingpong");
}

#[test]
fn c_sync_random() {
    c_test("sync_random");
}

#[test]
fn c_sync_rwlock_contention() {
    c_test("sync_rwlock_contention");
}

#[test]
fn c_sync_rwlock_fairness() {
    c_test("sync_rwlock_fairness");
}

#[test]
fn c_sync_sem_lock() {
    c_test("sync_sem_lock");
}

#[test]
fn c_sync_timed() {
    c_test("sync_timed");
}

#[test]
fn c_vcpu_migrate() {
    c_test("vcpu_migrate");
}

#[test]
fn c_vcpu_migrate_interrupt() {
    c_test("vcpu_migrate_interrupt");
}

#[test]
fn c_vcpu_workpool() {
    c_test("vcpu_workpool");
}

#[test]
fn c_jump() {
    c_test("jump");
}

#[test]
fn c_visibility() {
    c_test("visibility");
}

/// A photon thread overflowing its 64 KiB stack: the process dies by
/// SIGABRT (not a bare SIGSEGV, not a normal exit) and says why on stderr.
#[test]
fn c_stack_overflow() {
    if checker() == Checker::Valgrind {
        println!("stack_overflow: not run under Valgrind (see NOT_UNDER_VALGRIND)");
        return;
    }
    let exe = compile_c_program("stack_overflow");
    for engine in ENGINES {
        let run = run_c_program(&exe, engine);
        let signal = run.status.and_then(|s| s.signal());
        assert_eq!(
            signal,
            Some(libc::SIGABRT),
            "stack_overflow with PHOTON_ENGINE={engine}: want death by SIGABRT ({}), got {}",
            libc::SIGABRT,
            run.describe()
        );
        let stderr = run.stderr.to_lowercase();
        assert!(
            stderr.contains("stack overflow"),
            "stack_overflow with PHOTON_ENGINE={engine}: stderr does not say \"stack overflow\": {}",
            run.describe()
        );
        assert!(
            stderr.contains("65536"),
            "stack_overflow with PHOTON_ENGINE={engine}: stderr does not name the stack size 65536: {}",
            run.describe()
        );
        println!(
            "stack_overflow (PHOTON_ENGINE={engine}): SIGABRT, stderr:\n{}",
            run.stderr
        );
    }
}

/// Every program in tests/c/ has its test above, and every test its program.
#[test]
fn every_c_program_has_a_test() {
    let mut found: Vec<String> = fs::read_dir(c_test_dir())
        .expect("read tests/c")
        .map(|entry| entry.expect("tests/c entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "c"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(found, PROGRAMS, "tests/c/*.c and PROGRAMS in tests/c_api.rs differ");
}

/// Compiles a translation unit that includes photon.h twice (include guard)
/// and nothing else before it (self-contained), syntax only.
fn header_compiles(cpp: bool, std_flag: &str) {
    let lang = if cpp { "c++" } else { "c" };
    let tu = out_dir().join(format!("header_alone.{}", if cpp { "cpp" } else { "c" }));
    fs::write(
        &tu,
        "#include \"photon.h\"\n#include \"photon.h\"\n\
         int photon_header_test(void);\n\
         int photon_header_test(void) { return PHOTON_EVENT_DEFAULT; }\n",
    )
    .expect("write header test translation unit");
    let mut cmd = compiler(cpp).to_command();
    cmd.args([std_flag, "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only"])
        .arg("-I")
        .arg(include_dir())
        .args(["-x", lang])
        .arg(&tu);
    run_to_success(cmd, &format!("include/photon.h as {std_flag}"));
}

#[test]
fn header_compiles_as_c99() {
    header_compiles(false, "-std=c99");
}

#[test]
fn header_compiles_as_cpp11() {
    header_compiles(true, "-std=c++11");
}

/// include/photon.h is checked in; it must be what build.rs generates now.
/// Compared in every run: build.rs writes the checked-in header only when
/// asked (`PHOTON_UPDATE_HEADER=1`), so a header not regenerated fails here.
#[test]
fn header_is_fresh() {
    // Set by build.rs (cargo:rustc-env) to the header it just generated.
    let generated = env!("PHOTON_GENERATED_HEADER");
    let generated = fs::read(generated).unwrap_or_else(|e| panic!("cannot read the generated header {generated}: {e}"));
    let checked_in = fs::read(include_dir().join("photon.h")).expect("read include/photon.h");
    assert!(
        generated == checked_in,
        "include/photon.h differs from what src/ffi generates: run `PHOTON_UPDATE_HEADER=1 cargo build` \
         and commit include/photon.h"
    );
    // Doc comments become the header's comments: rustdoc links would show
    // their brackets to C readers.
    let text = String::from_utf8_lossy(&checked_in);
    let links: Vec<&str> = text.lines().filter(|l| l.contains("[`")).collect();
    assert!(
        links.is_empty(),
        "rustdoc link syntax in include/photon.h (write plain `name` in src/ffi docs):\n{}",
        links.join("\n")
    );
}

/// A fault program (`tests/c/fault_*.c`), under each engine like the
/// others; `not_under_valgrind` says why one cannot run under Valgrind.
fn c_fault_test(name: &str, not_under_valgrind: Option<&str>) {
    if checker() == Checker::Valgrind
        && let Some(why) = not_under_valgrind
    {
        println!("{name}: not run under Valgrind: {why}");
        return;
    }
    c_test(name);
}

/// Every kind of wait interrupted (same vcpu, plain pthread, pending):
/// -1 with the chosen errno promptly, or for photon_offload completion
/// with the interrupt left pending.
#[test]
fn c_fault_interrupt_waits() {
    c_fault_test("fault_interrupt_waits", None);
}

/// photon_pread blocked in the kernel (a FUSE file of the test's own)
/// interrupted: prompt errno or completion with the interrupt pending, and
/// the vcpu never stalls.
#[test]
fn c_fault_interrupt_pread() {
    c_fault_test(
        "fault_interrupt_pread",
        Some(
            "its FUSE daemon is a thread of the same process, and Valgrind runs one thread at a time, \
             holding its lock through file system calls (a stat) that wait for that daemon",
        ),
    );
}

/// io_uring_setup forbidden (seccomp): epoll, and the fallback is logged.
#[test]
fn c_fault_iouring_fallback_log() {
    c_fault_test(
        "fault_iouring_fallback_log",
        Some("Valgrind makes epoll the default engine: no io_uring fallback to log"),
    );
}

/// RLIMIT_MEMLOCK of 4 KiB: photon_init works (io_uring, or epoll logged).
#[test]
fn c_fault_memlock() {
    c_fault_test("fault_memlock", None);
}

/// Peers that stop reading: writes time out, the vcpu and other
/// connections go on.
#[test]
fn c_fault_stalled_peer() {
    c_fault_test(
        "fault_stalled_peer",
        Some("measures scheduling gaps and round-trip latencies"),
    );
}
