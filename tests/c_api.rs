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
//! (`scripts/test.sh` sets it for its two sanitizer passes):
//! - `asan`: built with clang `-fsanitize=address,undefined` (errors fatal,
//!   leak detection and stack-use-after-return detection on), io_uring only
//!   (Valgrind covers epoll; see [`engines`]),
//!   except the measurements in [`NOT_UNDER_ASAN`];
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
    "fault_fstat_fuse",
    "fault_interrupt_pread",
    "fault_interrupt_waits",
    "fault_iouring_fallback_log",
    "fault_memlock",
    "fault_stalled_peer",
    "fini",
    "fs_batched_read",
    "fs_big_transfer",
    "fs_concurrent",
    "fs_direct",
    "fs_errors",
    "fs_fstat",
    "fs_interrupt",
    "fs_liveness",
    "fs_ops",
    "fs_parity",
    "fs_read_budget",
    "interrupt",
    "join",
    "join_fastpath",
    "jump",
    "keys",
    "library_threads",
    "many_threads",
    "million_threads",
    "net_accept_burst",
    "net_budget",
    "net_close_wakes",
    "net_direct_recv",
    "net_echo_many",
    "net_emfile",
    "net_errors",
    "net_fairness",
    "net_interrupt",
    "net_io_spin",
    "net_iouring_fallback",
    "net_lone_send",
    "net_multishot_recv",
    "net_partial",
    "net_readiness_recv",
    "net_server_api",
    "net_timeouts",
    "net_udp",
    "net_unix",
    "net_vcpu_wake",
    "net_wait_fd",
    "off_vcpu",
    "sched_io_front",
    "self_yield",
    "signal_mask",
    "sleep_order",
    "stack_overflow",
    "stack_trim",
    "stall_default",
    "sync_fastpath",
    "sync_interrupt",
    "sync_interrupt_race",
    "sync_misuse",
    "sync_mutex_contention",
    "sync_mutex_fairness",
    "sync_pingpong",
    "sync_queries",
    "sync_random",
    "sync_rwlock_contention",
    "sync_rwlock_fairness",
    "sync_sem_lock",
    "sync_timed",
    "thread_reuse",
    "timer_accuracy",
    "vcpu_migrate",
    "vcpu_migrate_interrupt",
    "vcpu_workpool",
    "visibility",
];

/// Programs that cannot be run meaningfully under Valgrind, and why.
const NOT_UNDER_VALGRIND: &[(&str, &str)] = &[
    (
        "join_fastpath",
        "4,800 cross-vcpu joins under interrupts take 30 s under Valgrind (with its fair scheduler; without it main had not joined round 1 after 48 s), too long for the suite; c_join covers the join paths under Valgrind",
    ),
    (
        "fs_big_transfer",
        "measures scheduling gaps that Valgrind's serialised, much slower run cannot meet",
    ),
    (
        "fs_liveness",
        "measures scheduling gaps that Valgrind's serialised, much slower run cannot meet",
    ),
    (
        "net_multishot_recv",
        "its timeout phase needs receives that find nothing for 50-200 us while a writer pauses 500 us, which Valgrind's serialised, much slower run never gives (a clean-clone run: no receive timed out); what it tests is io_uring's multishot receive, and Valgrind runs epoll only",
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
        "stack_trim",
        "measures the process's resident memory, which Valgrind's own allocations swamp",
    ),
    (
        "timer_accuracy",
        "measures wake-up latencies that Valgrind's serialised, much slower run cannot meet",
    ),
    (
        "sync_mutex_fairness",
        "measures hand-off latencies that Valgrind's serialised, much slower run cannot meet",
    ),
    (
        "sync_pingpong",
        "bounds the worst round trip, which two Valgrind runs side by side overshoot",
    ),
    (
        "net_budget",
        "bounds a sleeper's wake-up beside a busy writer (100 ms), which two Valgrind runs side by side overshoot",
    ),
    (
        "fs_read_budget",
        "bounds a sleeper's wake-up beside a reader that never waits (100 ms), which two Valgrind runs side by side overshoot",
    ),
    (
        "net_close_wakes",
        "bounds how soon close wakes waiters on other vcpus (500 ms), which two Valgrind runs side by side overshoot",
    ),
    (
        "net_fairness",
        "bounds wake-ups beside a reader that never waits (100 ms), which two Valgrind runs side by side overshoot",
    ),
    (
        "sched_io_front",
        "counts yields between a byte's arrival and its reader's turn, and a yielder's gaps beside 400 busy threads, which Valgrind's serialised run distorts",
    ),
];

/// Measurements that mean nothing under AddressSanitizer either (its
/// shadow memory, quarantine and instrumented code change what they
/// measure), and why; they run in the plain release pass.
const NOT_UNDER_ASAN: &[(&str, &str)] = &[
    (
        "stack_trim",
        "measures the process's resident memory, which ASan's shadow memory and quarantine change",
    ),
    (
        "timer_accuracy",
        "asserts a 150 us median wake-up, which ASan's instrumented scheduler path overshoots",
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

/// Compiles `tests/c/<name>.c` into an executable linked to libphoton.so
/// (with clang's address and undefined-behaviour sanitizers under
/// `PHOTON_TEST_SANITIZE=asan`), once per test run: the feature and SQPOLL
/// passes run programs that their own tests also run, and wait here for
/// the one build instead of compiling the same file again.
fn compile_c_program(name: &str) -> PathBuf {
    type Built = std::sync::Arc<std::sync::OnceLock<PathBuf>>;
    static BUILT: std::sync::Mutex<std::collections::BTreeMap<String, Built>> =
        std::sync::Mutex::new(std::collections::BTreeMap::new());
    let once = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .entry(name.to_string())
        .or_default()
        .clone();
    // A failed build panics out of get_or_init and leaves the cell empty:
    // the next test that needs the program compiles it again (and fails
    // with the compiler's output too).
    once.get_or_init(|| build_c_program(name)).clone()
}

fn build_c_program(name: &str) -> PathBuf {
    let src = c_test_dir().join(format!("{name}.c"));
    assert!(src.is_file(), "missing {}", src.display());
    let compiler = if checker() == Checker::Asan {
        let mut cmd = Command::new("clang");
        cmd.args(["-g", "-O1", "-fno-omit-frame-pointer"])
            .args(["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]);
        Compiler::program(cmd)
    } else {
        Compiler::cc(false)
    };
    compiler
        .flags(C_FLAGS)
        .include(c_test_dir())
        .build(&src, &out_dir().join(name))
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
                // No --track-origins: it makes the pass about a third
                // slower, and a report says what was uninitialised without
                // it; rerun the one program by hand with it to see where
                // the value came from. --fair-sched=yes: Valgrind runs one
                // thread at a time, and by default the thread that ends its
                // turn can take the next one too. A photon thread that spins
                // with photon_thread_yield alone on its vcpu (a trylock loop)
                // then starved the holder on another vcpu for seconds on a
                // loaded host (sync_mutex_contention: 12% done in 30 s). The
                // fair scheduler hands turns round in order.
                // --leak-check=full with definite leaks as errors: the
                // leak check of the epoll engine, which AddressSanitizer's
                // pass (io_uring only) no longer runs. "Possibly lost"
                // blocks are the service threads' (live at exit), not
                // leaks.
                &[
                    "--quiet",
                    "--error-exitcode=99",
                    "--fair-sched=yes",
                    "--leak-check=full",
                    "--show-leak-kinds=definite",
                    "--errors-for-leak-kinds=definite",
                    exe,
                ],
                engine,
                extra,
                RUN_TIMEOUT * 5,
            )
        }
    }
}

/// The engines a program runs under with the current checker: both in the
/// plain pass; epoll under Valgrind (which cannot see what the kernel writes
/// through io_uring's rings); io_uring under AddressSanitizer, so that each
/// engine runs under one memory checker and the ASan pass costs half. What
/// ASan checks beyond Valgrind (the C program's stack, use after return) does
/// not depend on the engine.
fn engines() -> &'static [&'static str] {
    match checker() {
        Checker::None => &ENGINES[..],
        Checker::Valgrind => &ENGINES[..1],
        Checker::Asan => &ENGINES[1..],
    }
}

/// Whether `name` is one of the programs the current checker (Valgrind,
/// AddressSanitizer) does not run, saying why; every runner of C programs
/// asks this first.
fn skipped_under_checker(name: &str) -> bool {
    let (list, checker_name) = match checker() {
        Checker::Valgrind => (NOT_UNDER_VALGRIND, "Valgrind"),
        Checker::Asan => (NOT_UNDER_ASAN, "AddressSanitizer"),
        Checker::None => return false,
    };
    match list.iter().find(|(n, _)| *n == name) {
        Some((_, why)) => {
            println!("{name}: not run under {checker_name}: {why}");
            true
        }
        None => false,
    }
}

/// Compiles `tests/c/<name>.c` and runs it under each engine; it must exit 0
/// every time.
fn c_test(name: &str) {
    c_test_with(name, &[]);
}

/// [`c_test`] with `env` added to the program's environment (a feature
/// switched on or off).
fn c_test_with(name: &str, env: &[(&str, &str)]) {
    if skipped_under_checker(name) {
        return;
    }
    let exe = compile_c_program(name);
    for &engine in engines() {
        run_checked(name, &exe, engine, env);
    }
}

/// [`c_test_with`] under io_uring only, for a flag that only io_uring
/// reads (`PHOTON_IO_ON=multishot_recv`, `PHOTON_IO_ON=batched_read`,
/// `PHOTON_IO_SQPOLL=1`): under epoll the run would be the plain program
/// again, which its own test runs. Not under Valgrind, which runs epoll
/// only.
fn c_test_uring_with(name: &str, env: &[(&str, &str)]) {
    if checker() == Checker::Valgrind {
        println!("{name} {env:?}: not run under Valgrind: the flag is io_uring's, and Valgrind runs epoll only");
        return;
    }
    if skipped_under_checker(name) {
        return;
    }
    let exe = compile_c_program(name);
    run_checked(name, &exe, "io_uring", env);
}

/// One run of `exe` (program `name`) under `engine` with `env`: it must
/// pass, and under AddressSanitizer say nothing.
fn run_checked(name: &str, exe: &Path, engine: &str, env: &[(&str, &str)]) {
    let run = run_c_program_with(exe, engine, env);
    assert!(
        run.passed(),
        "C test {name} with PHOTON_ENGINE={engine} {env:?} failed: {}",
        run.describe()
    );
    if checker() == Checker::Asan {
        assert!(
            !run.stderr.contains("AddressSanitizer") && !run.stderr.contains("ASan is ignoring"),
            "C test {name} with PHOTON_ENGINE={engine} {env:?}: AddressSanitizer spoke: {}",
            run.describe()
        );
    }
    let with = if env.is_empty() {
        String::new()
    } else {
        format!(", {env:?}")
    };
    println!("{name} (PHOTON_ENGINE={engine}{with}): passed in {:.2?}", run.elapsed);
    print!("{}", run.stdout);
}

/// Every optional I/O feature, as `PHOTON_IO_OFF` names them.
const ALL_IO_FEATURES: &str = "readiness,poll_first,batched_send,cached_read,lazy_submit,multishot_accept,fixed_files,eager_direct,aio,batched_read,poll_in_place,multishot_recv,direct_recv,readiness_recv,direct_big_send,inline_fstat";

/// The socket and file programs again with every optional I/O feature
/// switched off (`PHOTON_IO_OFF`), as on a kernel that lacks them: the
/// fallbacks are exercised under both engines.
#[test]
fn c_io_features_off() {
    let programs = [
        "net_echo_many",
        "net_direct_recv",
        "net_lone_send",
        "net_readiness_recv",
        "net_multishot_recv",
        "net_accept_burst",
        "net_partial",
        "net_interrupt",
        "net_close_wakes",
        "net_wait_fd",
        "net_unix",
        "net_budget",
        "net_fairness",
        "fs_big_transfer",
        "fs_direct",
        "fs_batched_read",
        "fs_read_budget",
        "fs_fstat",
    ];
    // What these check is an io_uring feature; Valgrind runs epoll only,
    // where they are the plain programs again.
    let uring_subjects = [
        "net_direct_recv",
        "net_lone_send",
        "net_readiness_recv",
        "net_multishot_recv",
        "fs_batched_read",
    ];
    for name in programs {
        if skipped_under_checker(name) || (checker() == Checker::Valgrind && uring_subjects.contains(&name)) {
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
    if checker() == Checker::Valgrind {
        // Valgrind runs the epoll engine only, where this is the plain
        // programs again with an ignored flag (about a minute of the pass).
        println!("c_io_sqpoll: not run under Valgrind: the flag is io_uring's, and Valgrind runs epoll only");
        return;
    }
    // net_echo_many and the fault programs: their own *_sqpoll tests below.
    let programs = [
        "net_partial",
        "net_interrupt",
        "net_close_wakes",
        "net_timeouts",
        "fs_ops",
        "fs_interrupt",
    ];
    for name in programs {
        if skipped_under_checker(name) {
            continue;
        }
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

/// `PHOTON_IO_ON=multishot_recv`: io_uring's multishot receive, opt-in.
const MULTISHOT_RECV: &[(&str, &str)] = &[("PHOTON_IO_ON", "multishot_recv")];
/// `PHOTON_IO_ON=batched_read`: buffered file reads batched on the ring, opt-in.
const BATCHED_READ: &[(&str, &str)] = &[("PHOTON_IO_ON", "batched_read")];
/// `PHOTON_IO_SQPOLL=1`: what the `photon_init` flag
/// `PHOTON_INIT_IOURING_SQPOLL` asks for, for every vcpu.
const SQPOLL: &[(&str, &str)] = &[("PHOTON_IO_SQPOLL", "1")];

// The echo and fault programs with each opt-in I/O flag on (issue 14), each
// flag where it changes the program's path: multishot_recv where TCP
// sockets are received on io_uring, batched_read where buffered files are
// read on io_uring (no echo program reads a file: batched_read runs the
// fault program that does), SQPOLL wherever an io_uring is set up. All three are io_uring's alone (epoll never reads
// them; batched_read asks the engine whether it runs socket operations,
// which epoll does not), so these run under io_uring only
// ([`c_test_uring_with`]); c_io_sqpoll's epoll runs check the flag is
// ignored there. That each flag's path is taken: check.h's test_init
// (and fault_memlock) sees io_uring's SQPOLL thread exactly when
// PHOTON_IO_SQPOLL=1; net_multishot_recv counts engine operations with
// multishot on and off (c_net_multishot_recv), fs_batched_read with
// batched_read on and off (c_fs_batched_read). The soak's flagged runs:
// tests/soak.rs.

#[test]
fn c_net_echo_many_multishot_recv() {
    c_test_uring_with("net_echo_many", MULTISHOT_RECV);
}

#[test]
fn c_net_echo_many_sqpoll() {
    c_test_uring_with("net_echo_many", SQPOLL);
}

/// The echo server under fd exhaustion: its accepted sockets' receives.
#[test]
fn c_net_emfile_multishot_recv() {
    c_test_uring_with("net_emfile", MULTISHOT_RECV);
}

#[test]
fn c_net_emfile_sqpoll() {
    c_test_uring_with("net_emfile", SQPOLL);
}

/// The Unix-socket echo server (multishot receive is for TCP sockets only).
#[test]
fn c_net_unix_sqpoll() {
    c_test_uring_with("net_unix", SQPOLL);
}

#[test]
fn c_fault_interrupt_waits_multishot_recv() {
    c_test_uring_with("fault_interrupt_waits", MULTISHOT_RECV);
}

#[test]
fn c_fault_interrupt_waits_sqpoll() {
    c_test_uring_with("fault_interrupt_waits", SQPOLL);
}

/// Buffered reads of the FUSE files and the regular file, made beside a
/// ticker thread. (Not under Valgrind: see c_fault_interrupt_pread;
/// c_test_uring_with skips Valgrind anyway.)
#[test]
fn c_fault_interrupt_pread_batched_read() {
    c_test_uring_with("fault_interrupt_pread", BATCHED_READ);
}

#[test]
fn c_fault_interrupt_pread_sqpoll() {
    c_test_uring_with("fault_interrupt_pread", SQPOLL);
}

#[test]
fn c_fault_stalled_peer_multishot_recv() {
    c_test_uring_with("fault_stalled_peer", MULTISHOT_RECV);
}

#[test]
fn c_fault_stalled_peer_sqpoll() {
    c_test_uring_with("fault_stalled_peer", SQPOLL);
}

/// io_uring set up with SQPOLL under a 4 KiB locked-memory limit: the soft
/// limit raised, or the SQPOLL ring and then the plain one refused and one
/// fallback logged. (Not multishot_recv or batched_read: the program's
/// sockets and files run under the 4 KiB limit, where this kernel (6.18)
/// refuses io_uring and the engine is epoll, which ignores them.)
#[test]
fn c_fault_memlock_sqpoll() {
    c_test_uring_with("fault_memlock", SQPOLL);
}

/// io_uring forbidden with SQPOLL asked for: still one clear fallback
/// line, nothing else logged (it once logged "SQPOLL refused; using a ring
/// without it" at every init). The other two flags are moot there: the
/// engine is epoll.
#[test]
fn c_fault_iouring_fallback_log_sqpoll() {
    c_test_uring_with("fault_iouring_fallback_log", SQPOLL);
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
fn c_join_fastpath() {
    c_test("join_fastpath");
}

#[test]
fn c_thread_reuse() {
    c_test("thread_reuse");
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

/// I/O-completed threads go to the front of the run queue, and a budget
/// keeps them from starving the threads already runnable.
#[test]
fn c_sched_io_front() {
    c_test("sched_io_front");
}

#[test]
fn c_net_budget() {
    c_test("net_budget");
}

#[test]
fn c_net_fairness() {
    c_test("net_fairness");
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
fn c_net_accept_burst() {
    c_test("net_accept_burst");
}

#[test]
fn c_net_emfile() {
    c_test("net_emfile");
}

/// Multishot receive is opt-in (`PHOTON_IO_ON=multishot_recv`): the
/// program runs by default (plain receives), and with it on under both
/// engines (epoll ignores it), where it checks that held bytes are read
/// without an engine operation each. A direct receive (on by default)
/// reads queued bytes without one too, so the path is proved with
/// direct_recv off: under io_uring, multishot on must need fewer
/// operations than reads, multishot off at least one per read.
#[test]
fn c_net_multishot_recv() {
    c_test("net_multishot_recv");
    c_test_with("net_multishot_recv", MULTISHOT_RECV);
    c_test_uring_with(
        "net_multishot_recv",
        &[("PHOTON_IO_ON", "multishot_recv"), ("PHOTON_IO_OFF", "direct_recv")],
    );
    c_test_uring_with("net_multishot_recv", &[("PHOTON_IO_OFF", "direct_recv")]);
}

/// Receives of queued bytes go straight to the socket on io_uring
/// (direct_recv): the program runs by default, and with the feature off
/// under both engines, where its engine-operation count must show a ring
/// receive per read.
#[test]
fn c_net_direct_recv() {
    c_test("net_direct_recv");
    c_test_with("net_direct_recv", &[("PHOTON_IO_OFF", "direct_recv")]);
}

/// A send with nothing to batch with goes directly (io_uring), a send with
/// company goes on the ring unless it is big (direct_big_send); with
/// batched_send off every send goes directly, with direct_big_send off big
/// sends with company go on the ring too.
#[test]
fn c_net_lone_send() {
    c_test("net_lone_send");
    if checker() == Checker::Valgrind {
        // Both features are io_uring's, and Valgrind runs epoll only: the
        // same run again (about 20 s of the pass).
        println!("c_net_lone_send: the feature-off runs not under Valgrind: they are io_uring's");
        return;
    }
    c_test_with("net_lone_send", &[("PHOTON_IO_OFF", "batched_send")]);
    c_test_with("net_lone_send", &[("PHOTON_IO_OFF", "direct_big_send")]);
}

/// A stream socket whose receives drain bulk amounts waits for readiness
/// and receives on the vcpu (io_uring, readiness_recv), one of ping-pong
/// sizes gets ring receives: the program runs by default, and with the
/// feature off under both engines, where every wait it observes on
/// io_uring must be a ring receive.
#[test]
fn c_net_readiness_recv() {
    c_test("net_readiness_recv");
    c_test_with("net_readiness_recv", &[("PHOTON_IO_OFF", "readiness_recv")]);
}

#[test]
fn c_net_errors() {
    c_test("net_errors");
}

#[test]
fn c_net_interrupt() {
    c_test("net_interrupt");
}

/// The idle I/O spin (`PHOTON_IO_SPIN_US`): on, off, held back by bunched
/// completions and by many waits in flight, bounded by a timeout and by
/// the next timer.
#[test]
fn c_net_io_spin() {
    c_test("net_io_spin");
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
fn c_net_server_api() {
    c_test("net_server_api");
}

#[test]
fn c_signal_mask() {
    c_test("signal_mask");
}

#[test]
fn c_library_threads() {
    c_test("library_threads");
}

#[test]
fn c_stall_default() {
    c_test("stall_default");
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

/// photon_fstat on the vcpu for fds whose attributes are in memory
/// (inline_fstat), the engine's statx for the others; and with the feature
/// off, the engine's for all.
#[test]
fn c_fs_fstat() {
    c_test("fs_fstat");
    c_test_with("fs_fstat", &[("PHOTON_IO_OFF", "inline_fstat")]);
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

/// A thread whose cached reads never wait does not starve its vcpu's
/// other threads, and the errno contract holds on a known, cached fd
/// (the common-case read path's checks), also with
/// `PHOTON_IO_OFF=cached_read`.
#[test]
fn c_fs_read_budget() {
    c_test("fs_read_budget");
    c_test_with("fs_read_budget", &[("PHOTON_IO_OFF", "cached_read")]);
}

/// Page-cache reads made alone stay on the vcpu; made by threads ready
/// together they share the ring under io_uring with
/// `PHOTON_IO_ON=batched_read` (opt-in), stay on the vcpu by default or
/// with `PHOTON_IO_OFF=batched_read` (which wins over ON), and all go on
/// the ring with `PHOTON_IO_OFF=cached_read`; the program checks which
/// under both engines.
#[test]
fn c_fs_batched_read() {
    c_test("fs_batched_read");
    for env in [
        &[("PHOTON_IO_ON", "batched_read")][..],
        &[("PHOTON_IO_ON", "batched_read"), ("PHOTON_IO_OFF", "batched_read")],
        &[("PHOTON_IO_ON", "batched_read"), ("PHOTON_IO_OFF", "cached_read")],
        &[("PHOTON_IO_OFF", "cached_read")],
    ] {
        c_test_with("fs_batched_read", env);
    }
}

#[test]
fn c_sync_fastpath() {
    c_test("sync_fastpath");
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
fn c_sync_queries() {
    c_test("sync_queries");
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
fn c_stack_trim() {
    c_test("stack_trim");
}

#[test]
fn c_timer_accuracy() {
    c_test("timer_accuracy");
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
/// SIGABRT (not a bare SIGSEGV, not a normal exit) and says why on stderr;
/// with the guard pages the kernel makes without splitting mappings
/// (MADV_GUARD_INSTALL, where it has it), and with mprotect'ed ones.
#[test]
fn c_stack_overflow() {
    if checker() == Checker::Valgrind {
        println!("stack_overflow: not run under Valgrind (see NOT_UNDER_VALGRIND)");
        return;
    }
    let exe = compile_c_program("stack_overflow");
    for (engine, guard) in ENGINES.iter().flat_map(|e| [(*e, "auto"), (*e, "mprotect")]) {
        let run = if guard == "auto" {
            run_c_program(&exe, engine)
        } else {
            run_program(&exe, &[], engine, &[("PHOTON_STACK_GUARD", guard)], RUN_TIMEOUT)
        };
        let engine = format!("{engine} PHOTON_STACK_GUARD={guard}");
        let engine = engine.as_str();
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

/// A million sleeping threads on the machine's own vm.max_map_count (see
/// tests/c/million_threads.c), then a stack overflow in one of them: death
/// by SIGABRT with the message naming the overflow and the stack size.
/// Not under a checker (a million stacks); one engine (no I/O).
#[test]
fn c_million_threads() {
    if checker() != Checker::None {
        println!("million_threads: not run under a checker (a million stacks)");
        return;
    }
    let exe = compile_c_program("million_threads");
    let run = run_program(&exe, &[], ENGINES[0], &[], Duration::from_secs(300));
    println!("million_threads: {:.2?}\n{}", run.elapsed, run.stdout);
    if run.passed() && run.stdout.contains("NOTICE") {
        return; // not enough memory on this machine: said so
    }
    assert_eq!(
        run.status.and_then(|s| s.signal()),
        Some(libc::SIGABRT),
        "million_threads: want death by SIGABRT after the checks, got {}",
        run.describe()
    );
    assert!(
        run.stdout.contains("interrupted and joined"),
        "million_threads: the checks did not all pass: {}",
        run.describe()
    );
    let stderr = run.stderr.to_lowercase();
    assert!(
        stderr.contains("stack overflow") && stderr.contains("32768"),
        "million_threads: no stack overflow message naming the 32768-byte stack: {}",
        run.describe()
    );
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
    Compiler::cc(cpp)
        .flags([std_flag, "-Wall", "-Wextra", "-Werror", "-pedantic", "-x", lang])
        .syntax_only(&tu, &format!("include/photon.h as {std_flag}"))
        .unwrap_or_else(|e| panic!("{e}"));
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

/// Why a test with a FUSE daemon of its own cannot run under Valgrind.
const FUSE_UNDER_VALGRIND: &str = "its FUSE daemon is a thread of the same process, and Valgrind runs one thread \
     at a time, holding its lock through file system calls (a stat) that wait for that daemon";

/// photon_fstat of a file on a FUSE file system (the test's own) goes
/// through the engine, never on the vcpu; a local file's does not.
#[test]
fn c_fault_fstat_fuse() {
    c_fault_test("fault_fstat_fuse", Some(FUSE_UNDER_VALGRIND));
    if checker() != Checker::Valgrind {
        c_test_with("fault_fstat_fuse", &[("PHOTON_IO_OFF", "inline_fstat")]);
    }
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
    c_fault_test("fault_interrupt_pread", Some(FUSE_UNDER_VALGRIND));
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

/// A started `c-examples/kv_server` with its port.
struct KvServer {
    child: std::process::Child,
    port: u16,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
    start: std::time::Instant,
}

fn start_kv_server(exe: &Path, engine: &str, args: &[&str]) -> KvServer {
    use std::io::BufRead;
    use std::process::Stdio;
    let start = std::time::Instant::now();
    let mut child = Command::new(exe)
        .args(["--port", "0"])
        .args(args)
        .env("PHOTON_ENGINE", engine)
        .env_remove(CARGO_LIBRARY_PATH)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kv_server");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    out.read_line(&mut first).expect("read kv_server's first line");
    let port = first
        .strip_prefix("kv_server: listening on ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("kv_server printed {first:?}"));
    let stdout = drain(out);
    let stderr = drain(child.stderr.take().expect("stderr"));
    KvServer {
        child,
        port,
        stdout,
        stderr,
        start,
    }
}

/// Sends `lines` on one connection, returns the reply lines.
fn kv_talk(port: u16, lines: &[String]) -> Vec<String> {
    use std::io::{BufRead, BufReader, Write};
    let conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to kv_server");
    conn.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    let mut replies = Vec::new();
    for l in lines {
        w.write_all(format!("{l}\n").as_bytes()).expect("write to kv_server");
        let mut reply = String::new();
        r.read_line(&mut reply).expect("read from kv_server");
        replies.push(reply.trim_end().to_string());
    }
    replies
}

/// SIGTERM, then the exit status and the output.
fn stop_kv_server(s: KvServer) -> (Option<std::process::ExitStatus>, String, String) {
    let mut s = s;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    let status = wait_with_timeout(&mut s.child, s.start, RUN_TIMEOUT);
    (status, s.stdout.join().unwrap(), s.stderr.join().unwrap())
}

/// `c-examples/kv_server.c` (README's porting example), compiled as CMake
/// does (C99, -pedantic, warnings as errors) and run under each engine: a
/// primary on 2 vcpus replicating every SET to a replica on 2 vcpus; 200
/// clients at once set, read back and delete their keys through the
/// primary; the replica has every SET; a key with a 1 s TTL expires;
/// SIGTERM stops both cleanly (exit 0, their counters printed) with clients still
/// connected.
#[test]
fn c_example_kv_server() {
    let src = manifest_dir().join("c-examples").join("kv_server.c");
    let exe = compile_c(
        &src,
        &out_dir().join("kv_server"),
        &["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"],
        &[],
        &[],
    );
    for &engine in engines() {
        let replica = start_kv_server(&exe, engine, &["--vcpus", "2"]);
        let rport = replica.port.to_string();
        let primary = start_kv_server(&exe, engine, &["--vcpus", "2", "--replica", &rport]);
        let port = primary.port;
        let clients: Vec<_> = (0..200)
            .map(|i| {
                std::thread::spawn(move || {
                    let lines: Vec<String> = vec![
                        format!("SET k{i} v{i}"),
                        format!("GET k{i}"),
                        format!("SET d{i} x"),
                        format!("DEL d{i}"),
                        format!("GET d{i}"),
                    ];
                    let replies = kv_talk(port, &lines);
                    let want = [
                        "OK".to_string(),
                        format!("VALUE v{i}"),
                        "OK".into(),
                        "DELETED".into(),
                        "NOTFOUND".into(),
                    ];
                    assert_eq!(replies, want, "client {i} (PHOTON_ENGINE={engine})");
                })
            })
            .collect();
        for c in clients {
            c.join().expect("a kv client failed");
        }
        let r = kv_talk(replica.port, &["GET k7".into(), "GET k199".into(), "STATS".into()]);
        assert_eq!(&r[..2], ["VALUE v7", "VALUE v199"], "replica (PHOTON_ENGINE={engine})");
        // The replica gets every SET (400 keys: the DELs stay on the primary).
        assert!(r[2].starts_with("KEYS 400 SETS 400 "), "replica stats: {}", r[2]);
        let r = kv_talk(port, &["SET ttl 1 1".into(), "GET ttl".into(), "NOSUCH x".into()]);
        assert_eq!(r[..2], ["OK", "VALUE 1"]);
        assert!(r[2].starts_with("ERROR"), "unknown command: {}", r[2]);
        std::thread::sleep(Duration::from_millis(2300));
        let r = kv_talk(port, &["GET ttl".into(), "STATS".into()]);
        assert_eq!(r[0], "NOTFOUND", "the TTL key did not expire (PHOTON_ENGINE={engine})");
        assert!(r[1].contains("EXPIRED 1"), "primary stats: {}", r[1]);
        // An idle client still connected at shutdown.
        let idle = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        for (name, s) in [("primary", primary), ("replica", replica)] {
            let (status, out, err) = stop_kv_server(s);
            assert!(
                status.is_some_and(|s| s.success()) && out.contains("kv_server: stopped:"),
                "kv_server {name} (PHOTON_ENGINE={engine}) after SIGTERM: {status:?}\n--- stdout\n{out}--- stderr\n{err}"
            );
            print!("{name} (PHOTON_ENGINE={engine}): {out}");
        }
        drop(idle);
    }
}
