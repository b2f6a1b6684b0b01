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
//!
//! `--multishot`: each connection has one multishot receive (6.0+) drawing
//! 4 KiB buffers from a provided-buffer ring (1024 of them, 5.19+); each
//! completion's bytes are copied into the connection's output (as a
//! runtime copies them into its caller's buffer) and the buffer goes back
//! to the ring. The A/B row that says what multishot receive buys a loop.
//! `--bufs N` (a power of two) and `--bsz N` set the ring's buffers and
//! their size. `--hold N`: a connection keeps received bytes in the ring's
//! buffers until its previous bytes went back (up to 64 KiB are then
//! copied out, as a runtime's receive into its caller's 64 KiB buffer
//! would), and cancels its multishot receive once it holds N buffers
//! (re-armed when it holds none): the model of a multishot receive inside
//! libphoton, with per-connection memory bounded. `--stats`: completions,
//! bytes, ENOBUFS, re-arms, cancels and the most buffers one connection
//! held, on stderr at SIGTERM / SIGINT. `--lend` (with `--hold`): no copy,
//! the held buffer itself is sent back and returned to the ring after its
//! send (what a receive API lending the ring's buffer would cost).

use std::io::Write;
use std::net::TcpListener;
use std::os::fd::AsRawFd;

use io_uring::{IoUring, opcode, types};

const BUF: usize = 64 * 1024;
const ACCEPT: u64 = u64::MAX;

/// Options of `--multishot` (None: plain receives).
#[derive(Clone, Copy)]
struct Multi {
    /// Provided buffers in the ring (a power of two).
    nbuf: u16,
    /// `--hold N`: a connection keeps its received bytes in the ring's
    /// buffers until it has sent the previous ones back (as a runtime keeps
    /// them until its thread's next receive) and stops its multishot
    /// receive when it holds N of them; 0 = copy each completion out at
    /// once and return its buffer (no bound on what a connection holds).
    hold: usize,
    /// `--bsz N`: bytes per provided buffer (the most one completion carries).
    bsz: usize,
    /// `--lend` (with `--hold`): no copy: the held buffer itself is sent
    /// back and returned to the ring when its send completed (what a
    /// receive API that lends the ring's buffer would cost).
    lend: bool,
    /// `--stats`: count completions, ENOBUFS, re-arms and cancels; print
    /// them on stderr at SIGTERM / SIGINT.
    stats: bool,
}

/// The port, and the multishot options if `--multishot` was given.
fn parse_args() -> (u16, Option<Multi>) {
    let mut args = std::env::args().skip(1);
    let mut port = 9527;
    let mut multi: Option<Multi> = None;
    let mut m = Multi {
        nbuf: 1024,
        hold: 0,
        bsz: 4096,
        lend: false,
        stats: false,
    };
    while let Some(a) = args.next() {
        let mut num = || -> usize { args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage()) };
        match a.as_str() {
            "--port" => port = u16::try_from(num()).unwrap_or_else(|_| usage()),
            "--multishot" => multi = Some(m),
            "--bufs" => {
                m.nbuf = u16::try_from(num())
                    .ok()
                    .filter(|n| n.is_power_of_two())
                    .unwrap_or_else(|| usage())
            }
            "--hold" => m.hold = num(),
            "--bsz" => m.bsz = num().clamp(64, 1 << 20),
            "--stats" => m.stats = true,
            "--lend" => m.lend = true,
            _ => usage(),
        }
    }
    (port, multi.map(|_| m))
}

fn usage() -> ! {
    eprintln!("usage: echo_uring [--port N] [--multishot [--bufs N] [--bsz N] [--hold N [--lend]] [--stats]]");
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
    let (port, multishot) = parse_args();
    let listener = TcpListener::bind(("0.0.0.0", port)).unwrap_or_else(|e| {
        eprintln!("echo_uring: bind: {e}");
        std::process::exit(1)
    });
    let port = listener.local_addr().expect("bound").port();
    println!("listening on {port}");
    std::io::stdout().flush().expect("stdout");
    let lfd = listener.as_raw_fd();
    let mut ring = ring();
    if let Some(m) = multishot {
        multishot::serve(ring, lfd, m);
    }
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
                nodelay(res);
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

mod multishot {
    use super::{BUF, Multi, nodelay};
    use io_uring::{IoUring, cqueue, opcode, types};
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};

    const BGID: u16 = 7;
    const ACCEPT: u64 = u64::MAX;
    const SEND: u64 = 1 << 63;
    const CANCEL: u64 = 1 << 62;

    static STOP: AtomicBool = AtomicBool::new(false);

    extern "C" fn on_stop(_: libc::c_int) {
        STOP.store(true, Ordering::Relaxed);
    }

    #[derive(Default, Debug)]
    struct Stats {
        cqes: u64,
        bytes: u64,
        enobufs: u64,
        rearms: u64,
        cancels: u64,
        max_held: usize,
    }

    struct Conn {
        fd: i32,
        /// Bytes being sent (not touched while a send is in flight).
        out: Vec<u8>,
        /// Bytes received meanwhile (copy-out mode).
        next: Vec<u8>,
        /// Buffers received meanwhile and their lengths (hold mode).
        held: VecDeque<(u16, usize)>,
        /// The held buffer being sent back as it is (`--lend`).
        lent: Option<(u16, usize)>,
        sent: usize,
        sending: bool,
        armed: bool,
        cancelling: bool,
        eof: bool,
    }

    struct Bufs {
        ring: *mut types::BufRingEntry,
        mem: Vec<u8>,
        tail: u16,
        mask: u16,
        bsz: usize,
    }

    impl Bufs {
        fn give(&mut self, bid: u16) {
            let i = (self.tail & self.mask) as usize;
            // SAFETY: i < the ring's entries.
            let e = unsafe { &mut *self.ring.add(i) };
            e.set_addr(self.mem.as_ptr() as u64 + (bid as usize * self.bsz) as u64);
            e.set_len(self.bsz as u32);
            e.set_bid(bid);
            self.tail = self.tail.wrapping_add(1);
        }
        fn publish(&self) {
            // SAFETY: the tail field of the first entry, shared with the kernel.
            let t = unsafe { &*(types::BufRingEntry::tail(self.ring).cast::<AtomicU16>()) };
            t.store(self.tail, Ordering::Release);
        }
    }

    fn recv(fd: i32, i: usize) -> io_uring::squeue::Entry {
        opcode::RecvMulti::new(types::Fd(fd), BGID).build().user_data(i as u64)
    }

    pub(super) fn serve(mut ring: IoUring, lfd: i32, m: Multi) -> ! {
        let nbuf = m.nbuf;
        // SAFETY: an anonymous mapping for the buffer ring's entries.
        let ring_mem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                nbuf as usize * 16,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ring_mem, libc::MAP_FAILED);
        let mut bufs = Bufs {
            ring: ring_mem.cast(),
            mem: vec![0; nbuf as usize * m.bsz],
            tail: 0,
            mask: nbuf - 1,
            bsz: m.bsz,
        };
        for bid in 0..nbuf {
            bufs.give(bid);
        }
        bufs.publish();
        // SAFETY: the mapping lives as long as the process.
        if let Err(e) = unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(ring_mem as u64, nbuf, BGID, 0)
        } {
            eprintln!("echo_uring: no provided-buffer ring ({e})");
            std::process::exit(1);
        }
        if m.stats {
            // SAFETY: the handler only stores to an atomic; no SA_RESTART,
            // so a waiting io_uring_enter returns EINTR.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_stop as extern "C" fn(libc::c_int) as libc::sighandler_t;
                libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
                libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
            }
        }
        let mut st = Stats::default();
        let accept = opcode::Accept::new(types::Fd(lfd), std::ptr::null_mut(), std::ptr::null_mut())
            .build()
            .user_data(ACCEPT);
        let mut pending = vec![accept.clone()];
        let mut conns: Vec<Option<Conn>> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        loop {
            if STOP.load(Ordering::Relaxed) {
                eprintln!("echo_uring stats: {st:?}");
                std::process::exit(0);
            }
            for sqe in pending.drain(..) {
                // SAFETY: sends point into a connection's output, kept until completion.
                while unsafe { ring.submission().push(&sqe) }.is_err() {
                    ring.submit().expect("io_uring_enter");
                }
            }
            if let Err(e) = ring.submit_and_wait(1) {
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                eprintln!("echo_uring: io_uring_enter: {e}");
                std::process::exit(1);
            }
            let cqes: Vec<_> = ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags()))
                .collect();
            let mut gave = false;
            for (ud, res, flags) in cqes {
                if ud == ACCEPT {
                    pending.push(accept.clone());
                    if res < 0 {
                        continue;
                    }
                    nodelay(res);
                    let i = free.pop().unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    conns[i] = Some(Conn {
                        fd: res,
                        out: Vec::with_capacity(m.bsz),
                        next: Vec::with_capacity(m.bsz),
                        held: VecDeque::new(),
                        lent: None,
                        sent: 0,
                        sending: false,
                        armed: true,
                        cancelling: false,
                        eof: false,
                    });
                    pending.push(recv(res, i));
                    continue;
                }
                if ud & CANCEL != 0 {
                    continue;
                }
                let i = (ud & !SEND) as usize;
                let Some(c) = conns[i].as_mut() else { continue };
                if ud & SEND != 0 {
                    c.sending = false;
                    if res < 0 {
                        // The peer is gone: drop what is left.
                        c.eof = true;
                        c.out.clear();
                        c.next.clear();
                        c.sent = 0;
                        if let Some((bid, _)) = c.lent.take() {
                            bufs.give(bid);
                            gave = true;
                        }
                    } else {
                        c.sent += res as usize;
                        if let Some((bid, len)) = c.lent {
                            if c.sent == len {
                                c.lent = None;
                                c.sent = 0;
                                bufs.give(bid);
                                gave = true;
                            }
                        } else if c.sent == c.out.len() {
                            c.out.clear();
                            c.sent = 0;
                        }
                    }
                } else {
                    st.cqes += 1;
                    if let Some(bid) = cqueue::buffer_select(flags) {
                        if res > 0 {
                            st.bytes += res as u64;
                        }
                        if res > 0 && m.hold > 0 {
                            c.held.push_back((bid, res as usize));
                            st.max_held = st.max_held.max(c.held.len());
                        } else {
                            if res > 0 {
                                let at = bid as usize * m.bsz;
                                c.next.extend_from_slice(&bufs.mem[at..at + res as usize]);
                            }
                            bufs.give(bid);
                            gave = true;
                        }
                    }
                    if res == -libc::ENOBUFS {
                        st.enobufs += 1;
                    }
                    if !cqueue::more(flags) {
                        c.armed = false;
                        c.cancelling = false;
                        if res == 0 || (res < 0 && res != -libc::ENOBUFS && res != -libc::ECANCELED) {
                            c.eof = true;
                        }
                    }
                }
                if !c.sending && c.out.is_empty() && c.lent.is_none() {
                    if m.lend && m.hold > 0 {
                        c.lent = c.held.pop_front();
                    } else if m.hold > 0 {
                        // The thread's next receive: copy what is held
                        // into its buffer, give the buffers back.
                        while let Some(&(bid, len)) = c.held.front() {
                            if c.out.len() + len > BUF {
                                break;
                            }
                            let at = bid as usize * m.bsz;
                            c.out.extend_from_slice(&bufs.mem[at..at + len]);
                            bufs.give(bid);
                            gave = true;
                            c.held.pop_front();
                        }
                    } else {
                        std::mem::swap(&mut c.out, &mut c.next);
                    }
                }
                if !c.sending
                    && let Some((bid, len)) = c.lent
                {
                    let at = bid as usize * m.bsz;
                    let rest = &bufs.mem[at + c.sent..at + len];
                    pending.push(
                        opcode::Send::new(types::Fd(c.fd), rest.as_ptr(), rest.len() as u32)
                            .build()
                            .user_data(i as u64 | SEND),
                    );
                    c.sending = true;
                }
                if !c.sending && c.sent < c.out.len() {
                    let rest = &c.out[c.sent..];
                    pending.push(
                        opcode::Send::new(types::Fd(c.fd), rest.as_ptr(), rest.len() as u32)
                            .build()
                            .user_data(i as u64 | SEND),
                    );
                    c.sending = true;
                }
                if m.hold > 0 && c.armed && !c.cancelling && c.held.len() >= m.hold {
                    // Holding enough: stop receiving until the thread
                    // has taken them (TCP's window pushes back on the peer).
                    c.cancelling = true;
                    st.cancels += 1;
                    pending.push(opcode::AsyncCancel::new(i as u64).build().user_data(i as u64 | CANCEL));
                }
                if !c.armed && !c.eof && c.held.is_empty() {
                    c.armed = true;
                    st.rearms += 1;
                    pending.push(recv(c.fd, i));
                }
                if c.eof && !c.armed && !c.sending && c.out.is_empty() && c.held.is_empty() && c.lent.is_none() {
                    // SAFETY: our fd, nothing in flight on it.
                    unsafe { libc::close(c.fd) };
                    conns[i] = None;
                    free.push(i);
                }
            }
            if gave {
                bufs.publish();
            }
        }
    }
}

/// TCP_NODELAY on an accepted connection (replies go out at once).
fn nodelay(fd: i32) {
    let one: libc::c_int = 1;
    // SAFETY: a live int for TCP_NODELAY; a bad fd only fails the call.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&raw const one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}
