//! Echo server as a hand-written io_uring loop (the `io-uring` crate, no
//! runtime, one thread): a peer of libphoton's `c-examples/echo_server.c`
//! for the `echo` benchmark, and the floor for what a plain io_uring server
//! costs (the io_uring twin of `echo_mio`).
//!
//! `echo_uring [--port N]`: listens on 0.0.0.0:N (0 = any free port), prints
//! `listening on PORT` and flushes, then serves until killed. The ring asks
//! for SINGLE_ISSUER + DEFER_TASKRUN (6.1+) and falls back to a plain ring.
//! One accept is kept armed; each connection has a 64 KiB buffer and one
//! operation in flight: a receive of up to 64 KiB, then sends until all of
//! it went back, then the next receive, until EOF. TCP_NODELAY. Every turn
//! is one `io_uring_enter` that submits what the last completions queued and
//! waits for at least one more.

use std::io::Write;
use std::net::TcpListener;
use std::os::fd::AsRawFd;

use io_uring::{IoUring, opcode, types};

const BUF: usize = 64 * 1024;
const ACCEPT: u64 = u64::MAX;

fn port_arg() -> u16 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => 9527,
        [flag, n] if flag == "--port" => n.parse().unwrap_or_else(|_| usage()),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: echo_uring [--port N]");
    std::process::exit(2)
}

struct Conn {
    fd: i32,
    buf: Box<[u8]>,
    /// Bytes of `buf[start..end]` are received but not yet sent back.
    start: usize,
    end: usize,
}

fn ring() -> IoUring {
    let mut b = IoUring::builder();
    b.setup_single_issuer().setup_defer_taskrun();
    b.build(1024).or_else(|_| IoUring::new(1024)).unwrap_or_else(|e| {
        eprintln!("echo_uring: io_uring_setup: {e}");
        std::process::exit(1)
    })
}

fn main() {
    let listener = TcpListener::bind(("0.0.0.0", port_arg())).unwrap_or_else(|e| {
        eprintln!("echo_uring: bind: {e}");
        std::process::exit(1)
    });
    let port = listener.local_addr().expect("bound").port();
    println!("listening on {port}");
    std::io::stdout().flush().expect("stdout");
    let lfd = listener.as_raw_fd();
    let mut ring = ring();
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();

    let accept = opcode::Accept::new(types::Fd(lfd), std::ptr::null_mut(), std::ptr::null_mut())
        .build()
        .user_data(ACCEPT);
    // SAFETY: the accept points to no memory.
    unsafe { ring.submission().push(&accept).expect("room") };
    let mut pending: Vec<io_uring::squeue::Entry> = Vec::new();
    loop {
        if let Err(e) = ring.submit_and_wait(1) {
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            eprintln!("echo_uring: io_uring_enter: {e}");
            std::process::exit(1);
        }
        for cqe in ring.completion() {
            let ud = cqe.user_data();
            let res = cqe.result();
            if ud == ACCEPT {
                pending.push(accept.clone());
                if res < 0 {
                    continue;
                }
                let one: libc::c_int = 1;
                // SAFETY: a live int for TCP_NODELAY.
                unsafe {
                    libc::setsockopt(
                        res,
                        libc::IPPROTO_TCP,
                        libc::TCP_NODELAY,
                        (&raw const one).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
                let c = Conn {
                    fd: res,
                    buf: vec![0; BUF].into_boxed_slice(),
                    start: 0,
                    end: 0,
                };
                let i = free.pop().unwrap_or_else(|| {
                    conns.push(None);
                    conns.len() - 1
                });
                conns[i] = Some(c);
                let c = conns[i].as_mut().expect("just set");
                pending.push(
                    opcode::Recv::new(types::Fd(c.fd), c.buf.as_mut_ptr(), BUF as u32)
                        .build()
                        .user_data(i as u64),
                );
                continue;
            }
            let i = ud as usize;
            let Some(c) = conns[i].as_mut() else { continue };
            let sending = c.start < c.end;
            if res <= 0 && !(res == -libc::EAGAIN || res == -libc::EINTR) {
                // EOF or an error: drop the connection.
                // SAFETY: our fd, with nothing in flight on it.
                unsafe { libc::close(c.fd) };
                conns[i] = None;
                free.push(i);
                continue;
            }
            if res > 0 {
                if sending {
                    c.start += res as usize;
                } else {
                    c.start = 0;
                    c.end = res as usize;
                }
            }
            let sqe = if c.start < c.end {
                let rest = &c.buf[c.start..c.end];
                opcode::Send::new(types::Fd(c.fd), rest.as_ptr(), rest.len() as u32).build()
            } else {
                opcode::Recv::new(types::Fd(c.fd), c.buf.as_mut_ptr(), BUF as u32).build()
            };
            pending.push(sqe.user_data(i as u64));
        }
        for sqe in pending.drain(..) {
            // SAFETY: each points into a connection's buffer, which lives
            // until that connection's completion came back (one op at a time).
            while unsafe { ring.submission().push(&sqe) }.is_err() {
                ring.submit().expect("io_uring_enter");
            }
        }
    }
}
