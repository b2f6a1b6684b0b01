//! What a page-cache hit costs by each way that never blocks on the disk,
//! against a plain `pread(2)` (which would): `preadv2(RWF_NOWAIT)` (one
//! iovec; the call libphoton's cached-read fast path makes), and an io_uring
//! `READ` submitted and reaped at once, without parking (the ring serves a
//! cached page inline at submission), on a plain ring and on a
//! `SINGLE_ISSUER | DEFER_TASKRUN` ring (the set-up the library asks for).
//! No libphoton. The companion of `bench/c/pread_nowait.c`:
//!
//!   cargo build --release --bin ring_read
//!   taskset -c 1 target/release/ring_read FILE [READS] [ROUNDS]
//!
//! FILE (at least 4 KiB; read once first, into the page cache) is read at
//! random 4 KiB-aligned offsets, READS (default 1,000,000) times per call
//! and round, the calls interleaved within each of ROUNDS (default 5)
//! rounds. Prints one INFO line per call and round (ns per read) and a
//! RESULT line with each call's median. A short read or an error stops it;
//! a ring read that did not complete at submission (its page was not
//! cached) is waited for and counted in the RESULT line.

use std::os::fd::AsRawFd;
use std::time::Instant;

use io_uring::{IoUring, opcode, types};
use photon_bench::{Series, parse_or_exit, xorshift64};

const BLOCK: usize = 4096;
const NAMES: [&str; 4] = ["pread", "preadv2_nowait", "ring_read", "ring_read_defer_taskrun"];
const USAGE: &str = "usage: ring_read FILE [READS] [ROUNDS]   (defaults: 1000000 reads, 5 rounds)";

/// FILE, READS, ROUNDS from the command line.
fn parse(args: &mut photon_bench::Args) -> Result<(String, u64, usize), String> {
    let mut pos = Vec::new();
    while let Some(a) = args.next() {
        if a == "--help" || a == "-h" {
            return Err(args.help());
        }
        pos.push(a);
    }
    let [file, rest @ ..] = pos.as_slice() else {
        return Err("no FILE".into());
    };
    if rest.len() > 2 {
        return Err(format!("unexpected argument {}", rest[2]));
    }
    let num = |i: usize, name: &str, default: u64| -> Result<u64, String> {
        rest.get(i)
            .map_or(Ok(default), |s| s.parse().map_err(|_| format!("bad {name} {s}")))
    };
    let (reads, rounds) = (num(0, "READS", 1_000_000)?, num(1, "ROUNDS", 5)?);
    if reads == 0 || rounds == 0 {
        return Err("READS and ROUNDS must be at least 1".into());
    }
    Ok((file.clone(), reads, rounds as usize))
}

fn die(msg: String) -> ! {
    eprintln!("ring_read: {msg}");
    std::process::exit(1);
}

/// One ring READ of `buf` at `off`, reaped at once. Returns its result and
/// whether it had to be waited for (not served at submission).
fn ring_read(ring: &mut IoUring, fd: i32, buf: &mut [u8], off: u64) -> (i32, bool) {
    let sqe = opcode::Read::new(types::Fd(fd), buf.as_mut_ptr(), buf.len() as u32)
        .offset(off)
        .build()
        .user_data(1);
    // SAFETY: `buf` outlives the operation: it is reaped before returning.
    unsafe { ring.submission().push(&sqe) }.unwrap_or_else(|_| die("submission queue full".into()));
    ring.submit().unwrap_or_else(|e| die(format!("io_uring_enter: {e}")));
    if let Some(c) = ring.completion().next() {
        return (c.result(), false);
    }
    ring.submit_and_wait(1)
        .unwrap_or_else(|e| die(format!("io_uring_enter: {e}")));
    let c = ring
        .completion()
        .next()
        .unwrap_or_else(|| die("no completion after waiting".into()));
    (c.result(), true)
}

fn main() {
    let (path, reads, rounds) = parse_or_exit(USAGE, parse);
    let file = std::fs::File::open(&path).unwrap_or_else(|e| die(format!("open {path}: {e}")));
    let fd = file.as_raw_fd();
    let blocks = file.metadata().map(|m| m.len()).unwrap_or(0) / BLOCK as u64;
    if blocks == 0 {
        die(format!("{path} is smaller than 4 KiB"));
    }
    let mut buf = vec![0u8; BLOCK];
    for b in 0..blocks {
        // SAFETY: a live buffer of BLOCK bytes.
        let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), BLOCK, (b * BLOCK as u64) as i64) };
        if n != BLOCK as isize {
            die(format!("warm-up read of block {b} returned {n}"));
        }
    }
    let mut plain = IoUring::new(8).unwrap_or_else(|e| die(format!("io_uring_setup: {e}")));
    let mut deferred = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(8)
        .unwrap_or_else(|e| die(format!("io_uring_setup (SINGLE_ISSUER | DEFER_TASKRUN, 6.1+): {e}")));

    let mut ns: Vec<Series> = (0..NAMES.len()).map(|_| Series::default()).collect();
    let mut waited = 0u64;
    let mut x: u64 = 88172645463325252; // the seed of bench/c/pread_nowait.c
    for r in 0..rounds {
        for (c, name) in NAMES.iter().enumerate() {
            let t0 = Instant::now();
            for _ in 0..reads {
                let off = (xorshift64(&mut x) % blocks) * BLOCK as u64;
                let n = match c {
                    // SAFETY: a live buffer of BLOCK bytes.
                    0 => unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), BLOCK, off as i64) },
                    1 => {
                        let v = libc::iovec {
                            iov_base: buf.as_mut_ptr().cast(),
                            iov_len: BLOCK,
                        };
                        // SAFETY: one live iovec over a live buffer.
                        unsafe { libc::preadv2(fd, &v, 1, off as i64, libc::RWF_NOWAIT) }
                    }
                    _ => {
                        let ring = if c == 2 { &mut plain } else { &mut deferred };
                        let (res, w) = ring_read(ring, fd, &mut buf, off);
                        waited += w as u64;
                        res as isize
                    }
                };
                if n != BLOCK as isize {
                    // The system calls set errno; a ring read's result is -errno.
                    let e = match (n < 0, c < 2) {
                        (false, _) => String::new(),
                        (true, true) => std::io::Error::last_os_error().to_string(),
                        (true, false) => std::io::Error::from_raw_os_error(-n as i32).to_string(),
                    };
                    die(format!("{name} at {off} returned {n} {e}"));
                }
            }
            let v = t0.elapsed().as_nanos() as f64 / reads as f64;
            println!("INFO round {} {name} {v:.1} ns per read", r + 1);
            ns[c].values.push(v);
        }
    }
    print!("RESULT reads={reads} rounds={rounds} ring_reads_waited={waited}");
    for (name, series) in NAMES.iter().zip(&ns) {
        print!(" {name}_ns={:.1}", series.median());
    }
    println!();
}
