//! Benchmark of issue "coroutine core": libphoton's context switch, thread
//! creation and memory per thread, side by side with its peers, in one run.
//! See bench/README.md for what each row means.
//!
//!   cargo run --release --bin core -- [--reps 7] [--secs 1.0] [--rss-reps 3]
//!       [--rss-threads 1000000] [--only switch,tls,create,rss] [--verbose]
//!
//! Every measurement is a child process (a C/C++ program of bench/c, or this
//! binary re-executed with `--child NAME SECS`), all pinned to one CPU,
//! interleaved rep-major (for rep { for contender { run ~SECS } }).
//! Exits non-zero if any contender failed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use photon_bench::*;

// ------------------------------------------------------------ Rust children

/// 1a: libphoton's raw switch (photon::arch), inlined into this binary: main
/// and one context on a photon::stack::Stack switch back and forth.
mod raw_switch {
    use photon::arch::{self, StackPointer};

    /// The saved-sp slots, at a stable address (boxed) for the whole run.
    struct Slots {
        main_sp: StackPointer,
        child_sp: StackPointer,
    }

    unsafe extern "C" fn entry(_arg: usize, data: *mut u8) -> ! {
        let s = data.cast::<Slots>();
        loop {
            // SAFETY: `s` is the boxed Slots that outlives this context, and
            // main_sp was stored by the switch that brought us here.
            unsafe {
                arch::switch(&raw mut (*s).child_sp, (*s).main_sp, 0);
            }
        }
    }

    /// `flags_differ`: the child context is made while MXCSR's sticky
    /// status flags are clear, then main sets the inexact flag, so the two
    /// contexts' MXCSR values differ only in status bits (which the x86-64
    /// ABI makes caller-saved: a switch need not restore them).
    pub fn run(secs: f64, flags_differ: bool) -> Result<(u64, f64), String> {
        let main_mxcsr = photon_bench::mxcsr();
        if flags_differ {
            photon_bench::set_mxcsr(main_mxcsr & !0x3f);
        }
        let child_mxcsr = photon_bench::mxcsr(); // what the child inherits and saves
        let stack = photon::stack::Stack::new(64 * 1024).map_err(|e| format!("Stack::new: {e:?}"))?;
        let s = Box::into_raw(Box::new(Slots {
            main_sp: std::ptr::null_mut(),
            child_sp: std::ptr::null_mut(),
        }));
        // SAFETY: a fresh stack we own; entry never returns; Slots is live
        // until after the last switch.
        unsafe {
            (*s).child_sp = arch::init_stack(stack.top(), entry, s.cast());
        }
        // SAFETY: first switch: enters `entry`, which switches straight back.
        unsafe {
            arch::switch(&raw mut (*s).main_sp, (*s).child_sp, 0);
        }
        if flags_differ {
            photon_bench::set_mxcsr(main_mxcsr | 0x20); // inexact, as after any inexact FP operation
        }
        println!(
            "INFO mxcsr: child made with {child_mxcsr:#06x}, main runs with {:#06x}",
            photon_bench::mxcsr()
        );
        let (n, dt) = photon_bench::timed(secs, |n| {
            for _ in 0..n {
                // SAFETY: child_sp is the child's saved context (suspended in
                // its loop); it switches straight back.
                unsafe {
                    arch::switch(&raw mut (*s).main_sp, (*s).child_sp, 0);
                }
            }
        });
        // The child stays suspended in its loop forever: nothing on its stack
        // needs dropping, so freeing the stack is fine.
        drop(stack);
        // SAFETY: from Box::into_raw above, no longer used.
        drop(unsafe { Box::from_raw(s) });
        Ok((n, dt))
    }
}

/// 1c: corosensei: a Coroutine that suspends in a loop; each resume and each
/// suspend is one switch.
fn corosensei_switch(secs: f64) -> Result<(u64, f64), String> {
    use corosensei::{Coroutine, CoroutineResult};
    let mut co: Coroutine<(), (), ()> = Coroutine::new(|y, ()| {
        loop {
            y.suspend(());
        }
    });
    let mut bad = false;
    let r = photon_bench::timed(secs, |n| {
        for _ in 0..n {
            if !matches!(co.resume(()), CoroutineResult::Yield(())) {
                bad = true;
            }
        }
    });
    if bad {
        return Err("corosensei coroutine returned instead of yielding".into());
    }
    Ok(r)
}

fn may_setup() {
    may::config().set_workers(1);
    // may pins its workers to cores 0..n by default; keep ours (inherited).
    may::config().set_worker_pin(false);
}

/// 2: may go!+join one at a time, the loop itself inside a may coroutine
/// (join is then a coroutine switch, may's best case).
fn may_create_join_in_coroutine(secs: f64) -> Result<(u64, f64), String> {
    may_setup();
    let h = may::go!(move || -> Result<(u64, f64), String> {
        let mut err = None;
        let r = photon_bench::timed(secs, |n| {
            for i in 0..n {
                match may::go!(move || i).join() {
                    Ok(v) if v == i => {}
                    _ => err = Some("may join returned an error or a wrong value".to_string()),
                }
            }
        });
        err.map_or(Ok(r), Err)
    });
    h.join().map_err(|_| "may coroutine panicked".to_string())?
}

/// 2: may go!+join one at a time from the main OS thread (join parks it).
fn may_create_join_from_main(secs: f64) -> Result<(u64, f64), String> {
    may_setup();
    let mut err = None;
    let r = photon_bench::timed(secs, |n| {
        for i in 0..n {
            match may::go!(move || i).join() {
                Ok(v) if v == i => {}
                _ => err = Some("may join returned an error or a wrong value".to_string()),
            }
        }
    });
    err.map_or(Ok(r), Err)
}

/// 2: std::thread::spawn + join one at a time.
fn std_create_join(secs: f64) -> Result<(u64, f64), String> {
    let mut err = None;
    let r = photon_bench::timed(secs, |n| {
        for i in 0..n {
            match std::thread::spawn(move || i).join() {
                Ok(v) if v == i => {}
                _ => err = Some("std join returned an error or a wrong value".to_string()),
            }
        }
    });
    err.map_or(Ok(r), Err)
}

fn child_main(name: &str, secs: f64) -> ExitCode {
    let switch = |r: Result<(u64, f64), String>, what: &str| {
        r.map(|(n, dt)| {
            println!("INFO {what}: {n} round trips in {dt:.3} s");
            format!(
                "value={:.4} unit=ns/switch switches={} secs={dt:.4}",
                dt * 1e9 / (2.0 * n as f64),
                2 * n
            )
        })
    };
    let rate = |r: Result<(u64, f64), String>, what: &str| {
        r.map(|(n, dt)| {
            println!("INFO {what}: {n} in {dt:.3} s");
            format!("value={:.1} unit=/s count={n} secs={dt:.4}", n as f64 / dt)
        })
    };
    fp_settle();
    let r = match name {
        "photon-raw" => switch(raw_switch::run(secs, false), "photon::arch::switch"),
        "photon-raw-mxcsr" => switch(
            raw_switch::run(secs, true),
            "photon::arch::switch, MXCSR status flags differ",
        ),
        "corosensei" => switch(corosensei_switch(secs), "corosensei"),
        "may-coroutine" => rate(may_create_join_in_coroutine(secs), "may go!+join in a coroutine"),
        "may-main" => rate(may_create_join_from_main(secs), "may go!+join from main"),
        "std-thread" => rate(std_create_join(secs), "std::thread spawn+join"),
        _ => Err(format!("unknown child {name}")),
    };
    match r {
        Ok(line) => {
            println!("RESULT {line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ERROR: {e}");
            ExitCode::FAILURE
        }
    }
}

// ------------------------------------------------------------------ driver

struct Opts {
    c: Common,
    rss_reps: usize,
    rss_threads: u64,
}

const USAGE: &str = "usage: core [--reps N] [--secs S] [--rss-reps N] [--rss-threads N] \
                     [--only switch,tls,create,rss] [--quiet-wait S] [--verbose]";

fn parse_opts(args: &mut Args) -> Result<Opts, String> {
    let mut o = Opts {
        c: Common::new(7, 1.0, &["switch", "tls", "create", "rss"]),
        rss_reps: 3,
        rss_threads: 1_000_000,
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rss-reps" => o.rss_reps = args.value(&a)?,
            "--rss-threads" => o.rss_threads = args.value(&a)?,
            _ => o.c.take(&a, args)?,
        }
    }
    o.c.check()?;
    if o.rss_reps == 0 || o.rss_threads == 0 {
        return Err("--rss-reps and --rss-threads must be > 0".into());
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let (Some(name), Some(secs)) = (args.get(2), args.get(3).and_then(|s| s.parse::<f64>().ok())) else {
            eprintln!("ERROR: usage: core --child NAME SECS");
            return ExitCode::FAILURE;
        };
        return child_main(name, secs);
    }
    let o = parse_or_exit(USAGE, parse_opts);
    // Pin before any thread or child exists: everything inherits it.
    remember_affinity();
    let cpu = match pin_to_one_cpu() {
        Ok(c) => c,
        Err(e) => return fatal(e),
    };

    // Build the library and the helper programs first; any failure is fatal.
    let built = (|| -> Result<(PathBuf, PathBuf, PathBuf, PathBuf, PathBuf, PathBuf), String> {
        let so = build_libphoton()?;
        let so = so.as_path();
        Ok((
            so.to_path_buf(),
            compile("photon_yield.c", "photon_yield", Some(so), &[])?,
            compile("photon_create_join.c", "photon_create_join", Some(so), &[])?,
            compile("photon_sleepers.c", "photon_sleepers", Some(so), &[])?,
            compile("boost_fcontext.cpp", "boost_fcontext", None, &["-lboost_context"])?,
            compile(
                "photon_yield_tls.cpp",
                "photon_yield_tls",
                Some(so),
                &["-std=c++17", "-Wl,--no-as-needed", "-lrocksdb"],
            )?,
        ))
    })();
    let (so, p_yield, p_create, p_sleepers, p_boost, p_yield_tls) = match built {
        Ok(b) => b,
        Err(e) => return fatal(e),
    };

    print_header("libphoton benchmark: coroutine core", &pinned_to(cpu));
    println!("library: {}", so.display());
    println!(
        "method:  {} reps, rep-major interleaved (for rep {{ for contender {{ one run }} }}), each timed run ~{} s \
         after a calibration/warm-up run; median, min - max, ratio of medians",
        o.c.reps, o.c.secs
    );
    println!();

    let secs = o.c.secs;
    let secs_s = secs.to_string();
    let reps = o.c.reps;
    let timed_timeout = Duration::from_secs_f64(120.0 + secs * 20.0);
    let mut runner = Runner::new(&o.c);
    let mut targets: Vec<String> = Vec::new();
    let want = |w: &str| o.c.want(w);

    if want("switch") {
        let cs = vec![
            Contender::self_child(
                "libphoton raw switch (photon::arch::switch, Rust, inlined)",
                "photon-raw",
                secs,
            ),
            Contender::new("libphoton photon_thread_yield, 2 threads (C API via PLT)", &p_yield)
                .args([secs_s.as_str()]),
            Contender::self_child(
                format!("corosensei {} resume/suspend", env!("BENCH_VERSION_COROSENSEI")),
                "corosensei",
                secs,
            ),
            Contender::new("Boost.Context fcontext jump_fcontext (C++)", &p_boost).args([secs_s.as_str()]),
            Contender::self_child(
                "libphoton raw switch, contexts' MXCSR status flags differ",
                "photon-raw-mxcsr",
                secs,
            ),
        ];
        let r = runner.run("switch", &cs, reps, &["value"], timed_timeout);
        println!("## 1. Context switch: ns per switch, one direction (lower is better)");
        println!();
        let (raw, yld) = (&r[0][0], &r[1][0]);
        let rows: Vec<Vec<String>> = cs
            .iter()
            .zip(&r)
            .map(|(c, s)| {
                let s = &s[0];
                vec![
                    c.label.clone(),
                    cell_median(s),
                    cell_range(s),
                    cell_ratio(raw, s),
                    cell_ratio(yld, s),
                ]
            })
            .collect();
        print_table(
            &["contender", "median ns", "range ns", "raw / row", "C-API yield / row"],
            &rows,
        );
        println!();
        println!(
            "Last row: the same raw switch, but the two contexts' MXCSR differ in sticky status flags only \
             (one did an inexact FP operation, the other not); the x86-64 ABI makes those flags caller-saved. \
             A switch that reloads MXCSR when it differs pays a 60-90 ns ldmxcsr+stmxcsr stall here. \
             All other rows run with identical MXCSR in both contexts."
        );
        println!("CPU time while this table ran: {}", runner.last_load);
        println!();
        if raw.ok() && r[2][0].ok() {
            let x = raw.median() / r[2][0].median();
            targets.push(format!(
                "raw switch / corosensei: {x:.2}x (target <= 1.2x): {}",
                verdict(x <= 1.2)
            ));
        }
        if yld.ok() && r[3][0].ok() {
            let x = yld.median() / r[3][0].median();
            targets.push(format!(
                "C-API yield / Boost fcontext: {x:.2}x (target <= 1.8x): {}",
                verdict(x <= 1.8)
            ));
        }
    }

    if want("tls") {
        let cs = vec![
            Contender::new(
                "photon_thread_yield, C++ program linking librocksdb, PHOTON_TLS_ISOLATE=none",
                &p_yield_tls,
            )
            .args([secs_s.as_str()])
            .env("PHOTON_TLS_ISOLATE", "none"),
            Contender::new(
                "the same, PHOTON_TLS_ISOLATE=* (every switch swaps the blocks)",
                &p_yield_tls,
            )
            .args([secs_s.as_str()])
            .env("PHOTON_TLS_ISOLATE", "*"),
        ];
        let r = runner.run("tls", &cs, reps, &["value"], timed_timeout);
        println!("## Thread-local isolation: ns per switch, one direction (lower is better)");
        println!();
        let base = &r[0][0];
        let rows: Vec<Vec<String>> = cs
            .iter()
            .zip(&r)
            .map(|(c, s)| {
                vec![
                    c.label.clone(),
                    cell_median(&s[0]),
                    cell_range(&s[0]),
                    cell_ratio(&s[0], base),
                ]
            })
            .collect();
        print_table(&["contender", "median ns", "range ns", "row / none"], &rows);
        println!();
        println!(
            "Both rows swap libstdc++'s exception state (16 B), which always follows the photon thread in a C++ \
             program; `*` adds every loaded module's thread-local block but the runtimes' (librocksdb and its \
             compression libraries here; PHOTON_LOG=debug lists them)."
        );
        println!("CPU time while this table ran: {}", runner.last_load);
        println!();
    }

    if want("create") {
        let cs = vec![
            Contender::new("libphoton create+enable_join+join, default stack (C API)", &p_create)
                .args([secs_s.as_str()]),
            Contender::self_child(
                format!(
                    "may {} go!+join, 1 worker, loop in a coroutine",
                    env!("BENCH_VERSION_MAY")
                ),
                "may-coroutine",
                secs,
            ),
            Contender::self_child(
                format!(
                    "may {} go!+join, 1 worker, loop on main thread",
                    env!("BENCH_VERSION_MAY")
                ),
                "may-main",
                secs,
            ),
            Contender::self_child("std::thread::spawn+join", "std-thread", secs),
        ];
        let r = runner.run("create", &cs, reps, &["value"], timed_timeout);
        println!("## 2. Create + join, one at a time: threads per second (higher is better)");
        println!();
        let ph = &r[0][0];
        let rows: Vec<Vec<String>> = cs
            .iter()
            .zip(&r)
            .map(|(c, s)| {
                vec![
                    c.label.clone(),
                    cell_median(&s[0]),
                    cell_range(&s[0]),
                    cell_ratio(ph, &s[0]),
                ]
            })
            .collect();
        print_table(&["contender", "median /s", "range /s", "libphoton / row"], &rows);
        println!();
        println!("CPU time while this table ran: {}", runner.last_load);
        println!();
        if ph.ok() {
            let m = ph.median();
            targets.push(format!(
                "create+join: {}/s (target >= 6,000,000/s): {}",
                fmt_num(m),
                verdict(m >= 6e6)
            ));
            let best_may = [&r[1][0], &r[2][0]]
                .into_iter()
                .filter(|s| s.ok())
                .map(|s| s.median())
                .fold(f64::NAN, f64::max);
            if best_may.is_finite() {
                let x = m / best_may;
                targets.push(format!(
                    "create+join / may (its faster row): {x:.1}x (target >= 15x): {}",
                    verdict(x >= 15.0)
                ));
            }
        }
    }

    if want("rss") {
        let n = o.rss_threads.to_string();
        let cs = vec![
            Contender::new("libphoton, default stack (0 = 8 MiB reserved)", &p_sleepers).args([n.as_str(), "0"]),
            Contender::new("libphoton, 64 KiB stack", &p_sleepers).args([n.as_str(), "65536"]),
        ];
        let r = runner.run(
            "rss",
            &cs,
            o.rss_reps,
            &["rss", "pte", "create_per_s"],
            Duration::from_secs(1800),
        );
        println!(
            "## 3. Memory per sleeping thread: {} threads alive on one vcpu, each in photon_thread_usleep(PHOTON_FOREVER) \
             ({} reps)",
            fmt_num(o.rss_threads as f64),
            o.rss_reps
        );
        println!();
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
                ]
            })
            .collect();
        print_table(
            &[
                "stack size",
                "RSS B/thread",
                "RSS range",
                "page tables B/thread",
                "PT range",
                &format!("creates/s up to {} alive", fmt_num(o.rss_threads as f64)),
            ],
            &rows,
        );
        println!();
        println!(
            "RSS: (VmRSS after - VmRSS before) / threads; page tables: (VmPTE after - before) / threads, not in RSS."
        );
        println!("CPU time while this table ran: {}", runner.last_load);
        println!();
        if r[0][0].ok() {
            let m = r[0][0].median();
            targets.push(format!(
                "RSS per sleeping thread, {} alive, default stack: {} B (target <= 8,192 B): {}",
                fmt_num(o.rss_threads as f64),
                fmt_num(m),
                verdict(m <= 8192.0)
            ));
        }
    }

    runner.finish(&targets)
}
