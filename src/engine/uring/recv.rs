//! Multishot receive on provided-buffer rings (6.0+), opt-in:
//! `PHOTON_IO_ON=multishot_recv` (`PHOTON_IO_OFF` wins).
//!
//! A TCP socket photon made (`photon_socket`, `photon_accept`), received
//! on by threads of one vcpu only, gets one multishot receive drawing from
//! a provided-buffer ring of its own: [`NBUF`] buffers of 16 KiB. What
//! arrives stays in those buffers, held by the connection ("held bytes"):
//! a receive copies out of them into its caller's buffer and gives the
//! emptied buffers back, without a ring operation or a park when bytes are
//! held.
//!
//! Bounds: a connection holds at most its ring's [`NBUF`] buffers (64 KiB;
//! the kernel cannot overshoot into other connections' memory, as with one
//! ring shared by all, where streaming peers filled 1024 buffers and
//! `ENOBUFS` ended most multishots). With its ring full the kernel ends
//! the multishot (`ENOBUFS`) and TCP's window pushes back on the peer; a
//! receive that finds nothing held arms it again. An io_uring has at most
//! [`MAX_RINGS`] rings (16 MiB of buffers, touched only as used); rings of
//! closed connections are reused, and connections beyond get plain ring
//! receives.
//!
//! Why opt-in: on bench echo (streaming 64 x 4 KiB, same-run A/B) it cost
//! 12-29% more server CPU per 4 KiB than a ring receive per call, for no
//! gain in MiB/s: the copy out of the buffers (user CPU per 4 KiB 0.26-0.41
//! against 0.09-0.19 us) is not paid back, the ring already batching the
//! turn's receives into one `io_uring_enter` (0.35 syscalls per 4 KiB).
//! The hand-written loop's gain (bench/README.md, "Multishot receive: does
//! it pay here?") was against a loop with one syscall per 4 KiB.
//!
//! Order: everything that reads the stream sees the held bytes first.
//! Receives, `read`/`readv` on the socket and `recvmsg` copy from them
//! (`MSG_PEEK` copies without taking); a readable-wait reports readable
//! while bytes are held; the end of the stream or an error that ended the
//! multishot comes after the held bytes, once. An operation the held bytes
//! cannot serve in full (a wait for both directions, `MSG_WAITALL`, a
//! `recvmsg` asking for control messages) first gets the multishot
//! stopped (its last completion reaped), then the held bytes if any (a
//! short count), else goes to the kernel; no multishot is armed again
//! while such an operation is in the kernel. A receive that gives up
//! (timeout, interrupt) leaves at once: bytes arriving stay held.
//!
//! Vcpus: the held bytes are this vcpu's (fdinfo's `HELD` word names the
//! owner). A thread of another vcpu (or one that migrated) that reads the
//! socket asks the owner to let go (`sched::io::held_first`): the owner
//! stops the multishot, serves its own waiting receives, and hands what is
//! still held to the fdinfo spill, which every vcpu's reads take first. A
//! socket another vcpu has waited on is never armed again (plain receives).
//! `photon_close` cancels the multishot and gives the held buffers back.

use std::collections::VecDeque;

use io_uring::{cqueue, opcode, types};

use super::{Role, UD_CANCEL, UOp, UringEngine};
use crate::engine::{Completion, Op, OpId, READABLE, Submitted, WRITABLE, Waiter, copy_iov};
use crate::errno::Errno;
use crate::fdinfo;

/// The buffer group id of a ring's first provided-buffer ring.
const BGID_BASE: u16 = 0x5000;
/// Buffers in a connection's ring (a power of two): the most it holds.
pub(super) const NBUF: u16 = 4;
/// Bytes per buffer (the most one completion carries).
const BSZ: usize = 16384;
/// Buffer rings per io_uring (connections beyond get plain receives).
const MAX_RINGS: usize = 256;
/// Bytes of a ring's entries mapping (one page at least).
const ENTRIES_MAP: usize = 4096;

/// A connection's provided-buffer ring: its entries (shared with the
/// kernel), the buffers' memory, and its group id.
pub(super) struct BufRing {
    entries: *mut types::BufRingEntry,
    mem: *mut u8,
    tail: u16,
    bgid: u16,
}

/// The buffer rings of one io_uring.
#[derive(Default)]
pub(super) struct Rings {
    /// Registered, all buffers in the ring, no connection.
    free: Vec<BufRing>,
    /// `free[..clean]` have been given back since they were freed (a trim
    /// skips them): `free` is a stack, so the rings freed since the last
    /// trim are those above this mark.
    clean: usize,
    /// Registered so far.
    made: usize,
    /// Rings of dropped connections whose multishot (the op id) has not
    /// ended yet: the kernel may still fill their buffers.
    orphans: Vec<(OpId, BufRing)>,
}

impl BufRing {
    fn give(&mut self, bid: u16) {
        let i = (self.tail & (NBUF - 1)) as usize;
        // SAFETY: i < NBUF entries of our mapping.
        let e = unsafe { &mut *self.entries.add(i) };
        e.set_addr(self.mem as u64 + (bid as usize * BSZ) as u64);
        e.set_len(BSZ as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the ring's tail field (in the first entry), shared with
        // the kernel, which reads it with acquire ordering.
        let t = unsafe { &*(types::BufRingEntry::tail(self.entries).cast::<core::sync::atomic::AtomicU16>()) };
        t.store(self.tail, core::sync::atomic::Ordering::Release);
    }

    fn bytes(&self, bid: u16, off: usize, len: usize) -> &[u8] {
        // SAFETY: bid < NBUF and off + len <= BSZ (the kernel's count).
        unsafe { core::slice::from_raw_parts(self.mem.add(bid as usize * BSZ + off), len) }
    }
}

/// Where a waiting read-side operation wants its answer.
#[derive(Clone, Copy)]
enum Dest {
    Buf {
        ptr: *mut u8,
        len: usize,
    },
    Iov {
        iov: *const libc::iovec,
        n: u32,
    },
    Msg {
        msg: *mut libc::msghdr,
    },
    /// A readiness wait (`events`).
    Poll {
        events: u32,
    },
}

#[derive(Clone, Copy)]
struct Want {
    dest: Dest,
    peek: bool,
    /// MSG_TRUNC: take the bytes without copying them.
    trunc: bool,
    /// Held bytes cannot serve it in full: stop the multishot, then held
    /// bytes or the kernel.
    plain: bool,
    /// MSG_DONTWAIT: never waits.
    dontwait: bool,
    /// The operation as the kernel would run it.
    op: Op,
}

/// One socket's receive state on this ring.
#[derive(Default)]
pub(super) struct Conn {
    /// Held buffers: (buffer id, offset of the first unread byte, bytes left).
    held: VecDeque<(u16, usize, usize)>,
    /// The multishot receive in flight (armed, or cancelled and not yet ended).
    arm: Option<OpId>,
    cancelling: bool,
    /// The end of the stream (0) or the error that ended the multishot,
    /// after the held bytes.
    end: Option<i32>,
    /// Ended or errored: never armed again.
    finished: bool,
    /// Waiting operations, in order.
    waiters: VecDeque<(OpId, WantBox)>,
    /// Read-side operations of this socket in the kernel (no multishot
    /// while any is).
    plain: u32,
    /// Another vcpu asked for the held bytes: hand them over once the
    /// multishot ended.
    releasing: bool,
    /// The connection's buffers.
    ring: Option<BufRing>,
}

/// [`Want`] in the waiters' queue.
pub(super) struct WantBox(Want);

/// Per-fd eligibility cache.
const UNSEEN: u8 = 0;
const _: () = assert!(UNSEEN == 0, "what fd_cell fills a grown table with");
const NO: u8 = 1;
const YES: u8 = 2;

/// True for a TCP (IPv4 or IPv6) socket.
fn is_tcp(fd: i32) -> bool {
    let mut d: libc::c_int = 0;
    let mut len = core::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: valid out pointers of the sizes given.
    let r = unsafe { crate::sys::getsockopt(fd, libc::SOL_SOCKET, libc::SO_DOMAIN, (&raw mut d).cast(), &mut len) };
    r == 0 && (d == libc::AF_INET || d == libc::AF_INET6) && fdinfo::is_stream(fd)
}

/// What a read-side operation wants, or None for operations this module
/// leaves alone (sends, out-of-band data, the error queue, writable-waits).
fn want_of(op: Op) -> Option<(i32, Want)> {
    let base = |dest, flags: i32, fd| {
        let known = libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_TRUNC | libc::MSG_NOSIGNAL | libc::MSG_CMSG_CLOEXEC;
        if flags & (libc::MSG_OOB | libc::MSG_ERRQUEUE) != 0 {
            return None;
        }
        Some((
            fd,
            Want {
                dest,
                peek: flags & libc::MSG_PEEK != 0,
                trunc: flags & libc::MSG_TRUNC != 0,
                plain: flags & !known != 0, // MSG_WAITALL and the like
                dontwait: flags & libc::MSG_DONTWAIT != 0,
                op,
            },
        ))
    };
    match op {
        Op::Recv { fd, buf, len, flags } => base(
            Dest::Buf {
                ptr: buf,
                len: len as usize,
            },
            flags,
            fd,
        ),
        Op::Read { fd, buf, len } => base(
            Dest::Buf {
                ptr: buf,
                len: len as usize,
            },
            0,
            fd,
        ),
        Op::Readv { fd, iov, n } => base(Dest::Iov { iov, n }, 0, fd),
        Op::RecvMsg { fd, msg, flags } => {
            // SAFETY: the caller's msghdr, valid per the engine contract.
            let control = unsafe { (*msg).msg_controllen } > 0;
            let w = base(Dest::Msg { msg }, flags as i32, fd);
            w.map(|(fd, mut w)| {
                w.plain |= control;
                (fd, w)
            })
        }
        Op::Poll { fd, events } if events & READABLE != 0 => Some((
            fd,
            Want {
                dest: Dest::Poll { events },
                peek: true,
                trunc: false,
                plain: events & WRITABLE != 0,
                dontwait: false,
                op,
            },
        )),
        _ => None,
    }
}

/// Copies `src` into `d` (for a Poll: nothing); returns the bytes taken.
///
/// # Safety
/// `d`'s pointers are valid (the engine contract).
unsafe fn copy_into(d: Dest, src: &[u8], trunc: bool) -> usize {
    match d {
        Dest::Buf { ptr, len } => {
            let n = src.len().min(len);
            if !trunc {
                // SAFETY: per the contract; n <= len.
                unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), ptr, n) };
            }
            n
        }
        Dest::Iov { iov, n } => {
            // SAFETY: per the contract.
            unsafe { copy_iov(iov, n as usize, src, trunc) }
        }
        Dest::Msg { msg } => {
            // SAFETY: per the contract.
            unsafe {
                (*msg).msg_controllen = 0;
                (*msg).msg_flags = 0;
                (*msg).msg_namelen = 0;
                copy_iov((*msg).msg_iov, (*msg).msg_iovlen, src, trunc)
            }
        }
        Dest::Poll { .. } => 0,
    }
}

/// The room of `d` in bytes.
///
/// # Safety
/// As [`copy_into`].
unsafe fn room(d: Dest) -> usize {
    // SAFETY: per the contract.
    unsafe {
        match d {
            Dest::Buf { len, .. } => len,
            Dest::Iov { iov, n } => (0..n as usize).map(|i| (*iov.add(i)).iov_len).sum(),
            Dest::Msg { msg } => (0..(*msg).msg_iovlen).map(|i| (*(*msg).msg_iov.add(i)).iov_len).sum(),
            Dest::Poll { .. } => 0,
        }
    }
}

fn c_fd(i: usize) -> i32 {
    i as i32
}

/// WRITABLE if socket `fd` is writable now (a zero-timeout poll), else 0.
fn writable_now(fd: i32) -> u32 {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one live pollfd.
    if unsafe { libc::poll(&mut p, 1, 0) } == 1 && p.revents & libc::POLLOUT != 0 {
        WRITABLE
    } else {
        0
    }
}

/// Sets up a buffer ring of group `bgid` on `ring`: Err (the reason) if
/// the kernel refuses it.
fn new_buf_ring(ring: &io_uring::IoUring, bgid: u16) -> Result<BufRing, String> {
    let esz = ENTRIES_MAP;
    // SAFETY: fresh anonymous mappings; nothing of ours is touched.
    let (entries, mem) = unsafe {
        let e = libc::mmap(
            core::ptr::null_mut(),
            esz,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if e == libc::MAP_FAILED {
            return Err("mmap of the buffer ring failed".into());
        }
        let m = libc::mmap(
            core::ptr::null_mut(),
            NBUF as usize * BSZ,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if m == libc::MAP_FAILED {
            libc::munmap(e, esz);
            return Err("mmap of the receive buffers failed".into());
        }
        (e.cast::<types::BufRingEntry>(), m.cast::<u8>())
    };
    let mut b = BufRing {
        entries,
        mem,
        tail: 0,
        bgid,
    };
    for bid in 0..NBUF {
        b.give(bid);
    }
    b.publish();
    // SAFETY: the mappings live until the ring is unregistered (drop).
    if let Err(e) = unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(entries as u64, NBUF, bgid, 0)
    } {
        // SAFETY: our unregistered mappings.
        unsafe {
            libc::munmap(entries.cast(), esz);
            libc::munmap(mem.cast(), NBUF as usize * BSZ);
        }
        return Err(format!("IORING_REGISTER_PBUF_RING refused: {e}"));
    }
    Ok(b)
}

fn log_absent(why: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| log::info!("photon: io_uring multishot receive unavailable ({why}); plain ring receives"));
}

impl UringEngine {
    /// The read-side operation `op`, if it is one on a socket with (or
    /// about to get) receive state here: served from held bytes, waiting
    /// for the multishot, or sent to the kernel as a plain operation of
    /// that socket. None: the ordinary path. Out of line: only the opt-in
    /// multishot receive calls it, and inlined it made the fast path's
    /// frame in [`Engine::submit`](crate::engine::Engine::submit) several hundred bytes.
    #[inline(never)]
    pub(super) fn recv_held(&mut self, op: Op, waiter: Waiter) -> Result<Option<Submitted>, Errno> {
        let Some((fd, w)) = want_of(op) else { return Ok(None) };
        let Ok(i) = usize::try_from(fd) else { return Ok(None) };
        if self.conns.get(i).is_none_or(|c| c.is_none()) {
            // Only a plain receive starts a multishot.
            let starts = matches!(op, Op::Recv { .. } | Op::Read { .. }) && !w.plain && !w.peek && !w.dontwait;
            if !starts || !self.eligible(fd) {
                return Ok(None);
            }
            let Some(ring) = self.take_ring() else { return Ok(None) };
            if !fdinfo::claim_held(fd, crate::sched::current_id()) {
                self.mshot_kind[i] = NO; // received on by other vcpus: plain from now on
                self.bufs.free.push(ring);
                return Ok(None);
            }
            fdinfo::note_vcpu(fd, crate::sched::current_id()); // photon_close reaches us
            if self.conns.len() <= i {
                self.conns.resize_with(i + 1, || None);
            }
            self.conns[i] = Some(Conn {
                ring: Some(ring),
                ..Conn::default()
            });
        }
        // SAFETY: the caller keeps op's memory valid (engine contract).
        if let Some(r) = unsafe { self.serve_now(i, &w) } {
            return Ok(Some(Submitted::Done(r)));
        }
        if w.dontwait {
            let c = self.conns[i].as_ref().expect("checked");
            if c.arm.is_some() {
                return Ok(Some(Submitted::Done(-(libc::EAGAIN as i64))));
            }
            return self.plain_op(i, w.op, waiter).map(Some);
        }
        let c = self.conns[i].as_mut().expect("checked");
        if c.arm.is_some() {
            // Bytes come with the multishot's completions.
            let id = self.ops.insert(UOp {
                waiter,
                fd,
                role: Role::RecvWait,
                cancel_sent: false,
            });
            let c = self.conns[i].as_mut().expect("checked");
            c.waiters.push_back((id, WantBox(w)));
            if w.plain {
                self.disarm_recv(i);
            }
            return Ok(Some(Submitted::Pending(id)));
        }
        if w.plain || c.plain > 0 || c.finished || c.releasing {
            return self.plain_op(i, w.op, waiter).map(Some);
        }
        let id = self.ops.insert(UOp {
            waiter,
            fd,
            role: Role::RecvWait,
            cancel_sent: false,
        });
        self.conns[i]
            .as_mut()
            .expect("checked")
            .waiters
            .push_back((id, WantBox(w)));
        if let Err(e) = self.arm_recv(i) {
            self.conns[i].as_mut().expect("checked").waiters.pop_back();
            self.ops.remove(id);
            return Err(e);
        }
        Ok(Some(Submitted::Pending(id)))
    }

    /// True if `fd` may get a multishot receive (cached per fd).
    fn eligible(&mut self, fd: i32) -> bool {
        if !self.multishot_recv {
            return false;
        }
        let Some(kind) = super::fd_cell(&mut self.mshot_kind, fd) else {
            return false;
        };
        if *kind == UNSEEN {
            *kind = if fdinfo::is_created_socket(fd) && is_tcp(fd) {
                YES
            } else {
                NO
            };
        }
        *kind == YES
    }

    /// Gives back the pages of the free buffer rings' buffers (`MADV_DONTNEED`:
    /// they read as zeros until the kernel fills them again). A free ring
    /// belongs to no connection and no multishot receive is armed on its
    /// group, so the kernel writes none of its buffers meanwhile; a ring
    /// whose multishot has not ended yet is an orphan, not free, and keeps
    /// its pages. The entries page stays (the kernel reads the ring's
    /// tail there). Rings given back at an earlier trim and not used since
    /// are skipped. Returns the bytes given back.
    pub(super) fn recv_trim(&mut self) -> usize {
        let len = NBUF as usize * BSZ;
        let mut given = 0;
        for r in &self.bufs.free[self.bufs.clean..] {
            // SAFETY: our own mapping of `len` bytes, used by no one now.
            if unsafe { libc::madvise(r.mem.cast(), len, libc::MADV_DONTNEED) } == 0 {
                given += len;
            }
        }
        self.bufs.clean = self.bufs.free.len();
        given
    }

    /// A buffer ring for a new connection: a free one, or a new one while
    /// fewer than [`MAX_RINGS`] exist (the first refusal turns multishot
    /// receive off for this ring, with one log line).
    fn take_ring(&mut self) -> Option<BufRing> {
        if let Some(r) = self.bufs.free.pop() {
            self.bufs.clean = self.bufs.clean.min(self.bufs.free.len());
            return Some(r);
        }
        if self.bufs.made >= MAX_RINGS {
            return None;
        }
        match new_buf_ring(&self.ring, BGID_BASE + self.bufs.made as u16) {
            Ok(r) => {
                self.bufs.made += 1;
                Some(r)
            }
            Err(why) => {
                log_absent(&why);
                self.multishot_recv = false;
                None
            }
        }
    }

    /// Conn `c`'s ring, its held buffers given back, to the free rings (or
    /// to the orphans while its multishot `arm` has not ended).
    fn put_ring(&mut self, c: &mut Conn) {
        let Some(mut r) = c.ring.take() else { return };
        for &(bid, _, _) in &c.held {
            r.give(bid);
        }
        r.publish();
        c.held.clear();
        match c.arm {
            Some(arm) => self.bufs.orphans.push((arm, r)),
            None => self.bufs.free.push(r),
        }
    }

    /// `w` served at once from what conn `i` holds (or its end), if it can be.
    ///
    /// # Safety
    /// `w`'s pointers are valid.
    unsafe fn serve_now(&mut self, i: usize, w: &Want) -> Option<i64> {
        let c = self.conns[i].as_ref()?;
        if c.held.is_empty() && c.end.is_none() {
            return None;
        }
        // SAFETY: per the contract.
        Some(unsafe { self.take_held(i, w) })
    }

    /// Takes what conn `i` holds into `w` (held bytes, else its end).
    ///
    /// # Safety
    /// `w`'s pointers are valid; conn `i` holds bytes or has its end.
    unsafe fn take_held(&mut self, i: usize, w: &Want) -> i64 {
        let c = self.conns[i].as_mut().expect("a conn");
        if let Dest::Poll { events } = w.dest {
            return match (c.held.is_empty(), c.end) {
                (true, Some(e)) if e < 0 => (READABLE | WRITABLE) as i64,
                _ if events & WRITABLE != 0 => (READABLE | writable_now(c_fd(i))) as i64,
                _ => READABLE as i64,
            };
        }
        if c.held.is_empty() {
            let e = c.end.expect("held bytes or an end");
            c.finished = true;
            if e < 0 {
                c.end = None; // an error is reported once
            }
            return e as i64;
        }
        // SAFETY: per the contract.
        let mut left = unsafe { room(w.dest) };
        let mut done = 0usize;
        let mut gave = false;
        let mut k = 0;
        let Conn { held, ring, .. } = c;
        let bufs = ring.as_mut().expect("held bytes come from the ring");
        while left > 0 && k < held.len() {
            let (bid, off, len) = held[k];
            let n = len.min(left);
            let src = bufs.bytes(bid, off, n);
            // Copy into the rest of the destination: advance it by `done`.
            // SAFETY: per the contract.
            let got = unsafe { copy_at(w.dest, done, src, w.trunc) };
            debug_assert_eq!(got, n);
            done += n;
            left -= n;
            if w.peek {
                k += 1;
                continue;
            }
            if n == len {
                held.pop_front();
                bufs.give(bid);
                gave = true;
            } else {
                held[0] = (bid, off + n, len - n);
                k += 1;
            }
        }
        if gave {
            bufs.publish();
        }
        done as i64
    }

    /// Arms conn `i`'s multishot receive.
    fn arm_recv(&mut self, i: usize) -> Result<(), Errno> {
        let fd = i as i32;
        let id = self.ops.insert(UOp {
            waiter: core::ptr::null_mut(),
            fd,
            role: Role::RecvArm,
            cancel_sent: false,
        });
        let Some(bgid) = self.conns[i].as_ref().and_then(|c| c.ring.as_ref()).map(|r| r.bgid) else {
            self.ops.remove(id);
            return Err(Errno(libc::ENOBUFS));
        };
        let sqe = match self.fixed_slot(fd) {
            Some(s) => opcode::RecvMulti::new(types::Fixed(s), bgid).build(),
            None => opcode::RecvMulti::new(types::Fd(fd), bgid).build(),
        };
        if let Err(e) = self.push(sqe.user_data(id as u64)) {
            self.ops.remove(id);
            return Err(e);
        }
        let c = self.conns[i].as_mut().expect("a conn");
        c.arm = Some(id);
        c.cancelling = false;
        Ok(())
    }

    /// Queues the cancellation of conn `i`'s multishot.
    fn disarm_recv(&mut self, i: usize) {
        let Some(c) = self.conns.get_mut(i).and_then(|c| c.as_mut()) else {
            return;
        };
        let Some(arm) = c.arm else { return };
        if c.cancelling {
            return;
        }
        c.cancelling = true;
        self.send_cancel(arm, "a multishot receive");
    }

    /// `op` of conn `i` as a ring operation of its own (role RecvPlain).
    fn plain_op(&mut self, i: usize, op: Op, waiter: Waiter) -> Result<Submitted, Errno> {
        let slot = self.fixed_slot(i as i32);
        let sqe = match slot.and_then(|s| super::sqe_fixed(op, s)) {
            Some(sqe) => sqe,
            None => super::sqe_for(op).0,
        };
        let is_poll = matches!(op, Op::Poll { .. });
        let id = self.ops.insert(UOp {
            waiter,
            fd: i as i32,
            role: if is_poll { Role::RecvPlainPoll } else { Role::RecvPlain },
            cancel_sent: false,
        });
        if let Err(e) = self.push(sqe.user_data(id as u64)) {
            self.ops.remove(id);
            return Err(e);
        }
        if let Some(c) = self.conns[i].as_mut() {
            c.plain += 1;
        }
        Ok(Submitted::Pending(id))
    }

    /// A plain operation of `fd`'s conn completed.
    pub(super) fn recv_plain_done(&mut self, fd: i32) {
        if let Some(Some(c)) = self.conns.get_mut(fd as usize) {
            c.plain = c.plain.saturating_sub(1);
        }
    }

    /// A completion of multishot receive `id` on `fd`.
    pub(super) fn recv_completion(&mut self, id: OpId, fd: i32, res: i32, flags: u32, out: &mut Vec<Completion>) {
        let more = cqueue::more(flags);
        if !more {
            self.ops.remove(id);
        }
        let bid = cqueue::buffer_select(flags);
        let i = fd as usize;
        let mine = self
            .conns
            .get(i)
            .and_then(|c| c.as_ref())
            .is_some_and(|c| c.arm == Some(id));
        if !mine {
            // The socket was closed or forgotten: the buffer goes back, and
            // the ring to the free ones once the multishot ended.
            if let Some(k) = self.bufs.orphans.iter().position(|(a, _)| *a == id) {
                if let Some(bid) = bid {
                    let r = &mut self.bufs.orphans[k].1;
                    r.give(bid);
                    r.publish();
                }
                if !more {
                    let (_, r) = self.bufs.orphans.swap_remove(k);
                    self.bufs.free.push(r);
                }
            }
            return;
        }
        let c = self.conns[i].as_mut().expect("mine");
        match bid {
            Some(bid) if res > 0 => c.held.push_back((bid, 0, res as usize)),
            Some(bid) => {
                let r = c.ring.as_mut().expect("a buffer came from it");
                r.give(bid);
                r.publish();
            }
            None => {}
        }
        if !more {
            c.arm = None;
            c.cancelling = false;
            if res == 0 || (res < 0 && res != -libc::ECANCELED && res != -libc::ENOBUFS) {
                c.end = Some(res);
            }
        }
        self.serve_waiters(i, out);
        let Some(c) = self.conns[i].as_mut() else { return };
        if more {
            return;
        }
        if c.releasing {
            self.finish_release(i, out);
            return;
        }
        if !c.waiters.is_empty() {
            self.after_end(i, out);
        }
    }

    /// Conn `i`'s multishot ended with waiters left and nothing held: arm
    /// it again, or send them to the kernel one by one.
    fn after_end(&mut self, i: usize, out: &mut Vec<Completion>) {
        let c = self.conns[i].as_mut().expect("a conn");
        let any_plain = c.waiters.iter().any(|(_, w)| w.0.plain);
        if !any_plain && c.plain == 0 && !c.finished && !c.releasing && c.held.len() < NBUF as usize {
            if let Err(e) = self.arm_recv(i) {
                let c = self.conns[i].as_mut().expect("a conn");
                let ws: Vec<_> = c.waiters.drain(..).collect();
                for (w, _) in ws {
                    self.finish_recv_waiter(w, -(e.0 as i64), out);
                }
            }
            return;
        }
        let ws: Vec<_> = self.conns[i].as_mut().expect("a conn").waiters.drain(..).collect();
        for (w, want) in ws {
            self.waiter_to_plain(i, w, want.0.op, out);
        }
    }

    /// Waiting operation `w` (of conn `i`, or of no conn: `i` None) as a
    /// ring operation of its own.
    fn waiter_to_plain(&mut self, i: usize, w: OpId, op: Op, out: &mut Vec<Completion>) {
        let Some(u) = self.ops.get_mut(w) else { return };
        let is_poll = matches!(op, Op::Poll { .. });
        u.role = if is_poll { Role::RecvPlainPoll } else { Role::RecvPlain };
        let slot = self.fixed_slot(i as i32);
        let sqe = match slot.and_then(|s| super::sqe_fixed(op, s)) {
            Some(sqe) => sqe,
            None => super::sqe_for(op).0,
        };
        match self.push(sqe.user_data(w as u64)) {
            Ok(()) => {
                if let Some(Some(c)) = self.conns.get_mut(i) {
                    c.plain += 1;
                } else if let Some(u) = self.ops.get_mut(w) {
                    u.role = if is_poll { Role::Poll } else { Role::Plain };
                }
            }
            Err(e) => self.finish_recv_waiter(w, -(e.0 as i64), out),
        }
    }

    /// Serves conn `i`'s waiters, in order, from what it holds.
    fn serve_waiters(&mut self, i: usize, out: &mut Vec<Completion>) {
        loop {
            let Some(c) = self.conns[i].as_ref() else { return };
            let Some(&(w, WantBox(want))) = c.waiters.front() else {
                return;
            };
            if c.held.is_empty() && c.end.is_none() {
                return;
            }
            // SAFETY: the waiter's memory is valid until its completion.
            let r = unsafe { self.take_held(i, &want) };
            self.conns[i].as_mut().expect("a conn").waiters.pop_front();
            self.finish_recv_waiter(w, r, out);
        }
    }

    fn finish_recv_waiter(&mut self, id: OpId, result: i64, out: &mut Vec<Completion>) {
        if let Some(op) = self.ops.remove(id) {
            out.push(Completion {
                waiter: op.waiter,
                id,
                result,
            });
        }
    }

    /// A waiting receive gives up: it leaves at once (what arrives stays held).
    pub(super) fn recv_cancel(&mut self, id: OpId) {
        let Some(op) = self.ops.remove(id) else { return };
        if let Some(Some(c)) = self.conns.get_mut(op.fd as usize) {
            c.waiters.retain(|&(w, _)| w != id);
        }
    }

    /// Another vcpu reads `fd`: stop the multishot and hand the held bytes
    /// over (now, or when the multishot's last completion comes).
    pub(super) fn recv_release(&mut self, fd: i32, out: &mut Vec<Completion>) {
        let i = fd as usize;
        if let Some(k) = self.mshot_kind.get_mut(i) {
            *k = NO; // shared from now on
        }
        let Some(Some(c)) = self.conns.get_mut(i) else {
            fdinfo::release_held(fd, crate::sched::current_id());
            return;
        };
        c.releasing = true;
        if c.arm.is_some() {
            self.disarm_recv(i);
            self.submit_now();
            return;
        }
        self.finish_release(i, out);
    }

    /// Conn `i`'s multishot has ended and another vcpu wants its bytes:
    /// its own waiters are served first, the rest goes to the spill, the
    /// waiters left become ring operations, and the conn is dropped.
    fn finish_release(&mut self, i: usize, out: &mut Vec<Completion>) {
        self.serve_waiters(i, out);
        let Some(mut c) = self.conns[i].take() else { return };
        let mut bytes = Vec::new();
        if let Some(b) = c.ring.as_ref() {
            for &(bid, off, len) in &c.held {
                bytes.extend_from_slice(b.bytes(bid, off, len));
            }
        }
        self.put_ring(&mut c);
        fdinfo::spill_put(i as i32, bytes, c.end);
        for (w, want) in c.waiters {
            self.waiter_to_plain(i, w, want.0.op, out);
        }
        fdinfo::release_held(i as i32, crate::sched::current_id());
    }

    /// `fd` is closed (`out`: its waiters end with ECANCELED) or its number
    /// reused: the multishot is cancelled, the held buffers go back.
    pub(super) fn recv_forget(&mut self, fd: i32, out: Option<&mut Vec<Completion>>) {
        let i = fd as usize;
        if let Some(k) = self.mshot_kind.get_mut(i) {
            *k = UNSEEN;
        }
        let Some(Some(_)) = self.conns.get(i) else { return };
        self.disarm_recv(i);
        let mut c = self.conns[i].take().expect("checked");
        self.put_ring(&mut c);
        match out {
            Some(out) => {
                for (w, _) in c.waiters {
                    self.finish_recv_waiter(w, -(libc::ECANCELED as i64), out);
                }
            }
            None => {
                for (w, _) in c.waiters {
                    self.ops.remove(w);
                }
            }
        }
        fdinfo::release_held(fd, crate::sched::current_id());
    }

    /// At the ring's end (its vcpu ends): what connections hold goes to
    /// the fdinfo spill, for threads of other vcpus that read those sockets
    /// on (their multishots are cancelled and reaped first, within a
    /// bounded wait); then the buffer rings are unregistered and unmapped
    /// (left mapped if the kernel may still write into them).
    pub(super) fn recv_drop(&mut self) {
        let mut out = Vec::new();
        for i in 0..self.conns.len() {
            let Some(c) = self.conns[i].as_mut() else { continue };
            c.releasing = true;
            if c.arm.is_some() {
                self.disarm_recv(i);
            } else {
                self.finish_release(i, &mut out);
            }
        }
        let start = std::time::Instant::now();
        while !self.ops.ids_where(|o| o.role == Role::RecvArm).is_empty() {
            if start.elapsed() > std::time::Duration::from_millis(200) {
                log::warn!("photon: io_uring multishot receives did not end; their buffers stay mapped");
                return;
            }
            let _ = self.ring.submit_and_wait(1);
            let mut cq = self.ring.completion();
            cq.sync();
            let done: Vec<_> = (&mut cq).map(|c| (c.user_data(), c.result(), c.flags())).collect();
            drop(cq);
            for (ud, res, flags) in done {
                let id = ud as OpId;
                if ud < UD_CANCEL - 1
                    && let Some(fd) = self.ops.get(id).filter(|o| o.role == Role::RecvArm).map(|o| o.fd)
                {
                    self.recv_completion(id, fd, res, flags, &mut out);
                }
            }
        }
        let mut rings: Vec<BufRing> = core::mem::take(&mut self.bufs.free);
        self.bufs.clean = 0;
        rings.extend(self.bufs.orphans.drain(..).map(|(_, r)| r));
        rings.extend(
            self.conns
                .iter_mut()
                .filter_map(|c| c.as_mut().and_then(|c| c.ring.take())),
        );
        self.conns.clear();
        for b in rings {
            let _ = self.ring.submitter().unregister_buf_ring(b.bgid);
            // SAFETY: unregistered, no multishot left: nothing uses them.
            unsafe {
                libc::munmap(b.entries.cast(), ENTRIES_MAP);
                libc::munmap(b.mem.cast(), NBUF as usize * BSZ);
            }
        }
    }
}

/// [`copy_into`] starting `at` bytes into the destination.
///
/// # Safety
/// As [`copy_into`].
unsafe fn copy_at(d: Dest, at: usize, src: &[u8], trunc: bool) -> usize {
    if at == 0 {
        // SAFETY: per the contract.
        return unsafe { copy_into(d, src, trunc) };
    }
    match d {
        // SAFETY: per the contract; at < len.
        Dest::Buf { ptr, len } => unsafe {
            copy_into(
                Dest::Buf {
                    ptr: ptr.add(at),
                    len: len - at,
                },
                src,
                trunc,
            )
        },
        Dest::Iov { iov, n } => {
            // SAFETY: per the contract.
            let all = unsafe { core::slice::from_raw_parts(iov, n as usize) };
            let w = crate::sys::iov_window(all, at, src.len());
            // SAFETY: w covers part of the caller's iovecs.
            unsafe { copy_iov(w.as_ptr(), w.len(), src, trunc) }
        }
        Dest::Msg { msg } => {
            // SAFETY: per the contract.
            let all = unsafe { core::slice::from_raw_parts((*msg).msg_iov, (*msg).msg_iovlen) };
            let w = crate::sys::iov_window(all, at, src.len());
            // SAFETY: as above.
            unsafe { copy_iov(w.as_ptr(), w.len(), src, trunc) }
        }
        Dest::Poll { .. } => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::complete;
    use super::*;
    use crate::engine::Engine;
    use std::time::Duration;

    /// A connected TCP pair on 127.0.0.1: (client, accepted), the accepted
    /// end non-blocking and known as a socket photon made.
    fn tcp_pair() -> (i32, i32) {
        // SAFETY: plain socket calls on owned fds and local structs.
        unsafe {
            let l = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            let mut sa: libc::sockaddr_in = core::mem::zeroed();
            sa.sin_family = libc::AF_INET as u16;
            sa.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            let len = core::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            assert_eq!(libc::bind(l, (&raw const sa).cast(), len), 0);
            assert_eq!(libc::listen(l, 4), 0);
            let mut got = len;
            assert_eq!(libc::getsockname(l, (&raw mut sa).cast(), &mut got), 0);
            let c = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert_eq!(libc::connect(c, (&raw const sa).cast(), len), 0);
            let s = libc::accept4(l, core::ptr::null_mut(), core::ptr::null_mut(), libc::SOCK_NONBLOCK);
            assert!(s >= 0);
            libc::close(l);
            fdinfo::forget(s);
            fdinfo::new_socket(s, true);
            (c, s)
        }
    }

    fn send(fd: i32, b: &[u8]) {
        // SAFETY: a live buffer.
        assert_eq!(unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) }, b.len() as isize);
    }

    fn recv_op(fd: i32, buf: &mut [u8], flags: i32) -> Op {
        Op::Recv {
            fd,
            buf: buf.as_mut_ptr(),
            len: buf.len() as u32,
            flags,
        }
    }

    /// How many of the pages of `len` bytes at `p` are resident (mincore).
    fn resident_pages(p: *mut u8, len: usize) -> usize {
        let page = 4096;
        let mut v = vec![0u8; len.div_ceil(page)];
        // SAFETY: a page-aligned mapping of ours, a vector of one byte a page.
        assert_eq!(unsafe { libc::mincore(p.cast(), len, v.as_mut_ptr()) }, 0);
        v.iter().filter(|b| **b & 1 != 0).count()
    }

    /// Polls the engine until `done` holds (2 s at most).
    fn until(e: &mut UringEngine, mut done: impl FnMut(&UringEngine) -> bool) {
        let mut out = Vec::new();
        for _ in 0..200 {
            if done(e) {
                return;
            }
            e.wait(Some(Duration::from_millis(10)), &mut out).unwrap();
        }
        panic!("condition not reached");
    }

    /// A receive arms the multishot; what comes next is held and served
    /// at once, MSG_PEEK takes nothing, a connection holds at most its
    /// ring's buffers, a closed connection's ring gives its buffers' pages
    /// back at a trim, and is reused.
    #[test]
    fn holds_serves_and_reuses() {
        let Ok(mut e) = UringEngine::new(false) else {
            println!("holds_serves_and_reuses: no io_uring here, skipped");
            return;
        };
        e.multishot_recv = e.probe.is_supported(opcode::SendZc::CODE); // as PHOTON_IO_ON would
        if !e.multishot_recv {
            println!("holds_serves_and_reuses: this kernel lacks multishot receive, skipped");
            return;
        }
        let (c, s) = tcp_pair();
        let mut buf = [0u8; 8];
        send(c, b"a");
        // SAFETY: buf outlives the operation (waited for below).
        let Submitted::Pending(id) = (unsafe { e.submit(recv_op(s, &mut buf[..1], 0), 1 as Waiter) }).unwrap() else {
            panic!("nothing held yet: the receive waits for the multishot");
        };
        assert_eq!(complete(&mut e, id), 1);
        assert_eq!(buf[0], b'a');
        send(c, b"bcd");
        until(&mut e, |e| {
            e.conns[s as usize].as_ref().is_some_and(|c| !c.held.is_empty())
        });
        // SAFETY: as above (Done: nothing in flight).
        let r = unsafe { e.submit(recv_op(s, &mut buf[..2], 0), 1 as Waiter) }.unwrap();
        assert!(
            matches!(r, Submitted::Done(2)) && &buf[..2] == b"bc",
            "held bytes served at once"
        );
        // SAFETY: as above.
        let r = unsafe { e.submit(recv_op(s, &mut buf, libc::MSG_PEEK), 1 as Waiter) }.unwrap();
        assert!(matches!(r, Submitted::Done(1)) && buf[0] == b'd', "peek");
        // SAFETY: as above.
        let r = unsafe { e.submit(recv_op(s, &mut buf, 0), 1 as Waiter) }.unwrap();
        assert!(
            matches!(r, Submitted::Done(1)) && buf[0] == b'd',
            "the peeked byte is still there"
        );
        // A streaming peer: the connection holds NBUF buffers at most.
        let big = vec![7u8; 1 << 20];
        // SAFETY: a live buffer; the client socket blocks, so send in pieces
        // the kernel takes (socket buffers).
        let sent = unsafe { libc::send(c, big.as_ptr().cast(), big.len(), libc::MSG_DONTWAIT) };
        assert!(sent > (NBUF as isize) * BSZ as isize, "sent {sent}");
        let mut tmp = [0u8; 4];
        // SAFETY: as above.
        let r = unsafe { e.submit(recv_op(s, &mut tmp, 0), 1 as Waiter) }.unwrap();
        if let Submitted::Pending(id) = r {
            complete(&mut e, id);
        }
        until(&mut e, |e| {
            e.conns[s as usize].as_ref().is_some_and(|c| c.arm.is_none())
        });
        let held = e.conns[s as usize].as_ref().unwrap().held.len();
        assert!(held <= NBUF as usize && held > 0, "held {held}");
        assert_eq!(e.bufs.made, 1);
        let mut out = Vec::new();
        e.cancel_fd(s, &mut out);
        // SAFETY: our fds.
        unsafe {
            libc::close(s);
            libc::close(c);
        }
        fdinfo::forget(s);
        until(&mut e, |e| e.bufs.orphans.is_empty() && e.bufs.free.len() == 1);
        // The free ring's buffers, filled by the streaming peer above, go
        // back to the kernel at a trim, and the ring still serves after.
        let mem = e.bufs.free[0].mem;
        assert!(
            resident_pages(mem, NBUF as usize * BSZ) > 0,
            "the streamed buffers are resident"
        );
        assert_eq!(e.trim(), NBUF as usize * BSZ);
        assert_eq!(
            resident_pages(mem, NBUF as usize * BSZ),
            0,
            "trimmed buffers still resident"
        );
        assert_eq!(e.trim(), 0, "a ring trimmed and not used since is given back once");
        let (c2, s2) = tcp_pair();
        send(c2, b"z");
        // SAFETY: as above.
        let r = unsafe { e.submit(recv_op(s2, &mut buf, 0), 1 as Waiter) }.unwrap();
        let n = match r {
            Submitted::Done(n) => n,
            Submitted::Pending(id) => complete(&mut e, id),
        };
        assert!(n == 1 && buf[0] == b'z');
        assert_eq!(e.bufs.made, 1, "the closed connection's ring was reused");
        e.cancel_fd(s2, &mut out);
        // SAFETY: our fds.
        unsafe {
            libc::close(s2);
            libc::close(c2);
        }
        fdinfo::forget(s2);
        // Used again, so given back again at the next trim.
        until(&mut e, |e| e.bufs.orphans.is_empty() && e.bufs.free.len() == 1);
        assert_eq!(e.trim(), NBUF as usize * BSZ, "a reused ring is trimmed again");
    }
}
