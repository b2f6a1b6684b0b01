//! The io_uring engine (the `io-uring` crate).
//!
//! Data operations (read/write/recv/send/…/accept) run as ring operations
//! on the caller's own buffers; readiness waits are one-shot `POLL_ADD`s.
//! Submissions queue up and go to the kernel in one `io_uring_enter` when
//! the vcpu polls or goes idle, so many threads' operations share a syscall.
//!
//! Set-up probes instead of assuming: it asks for SINGLE_ISSUER +
//! DEFER_TASKRUN (6.1+), then COOP_TASKRUN (5.19+), then nothing, and checks
//! every opcode it uses; data ops or accept missing from the kernel fall
//! back to syscalls plus poll waits. `RLIMIT_MEMLOCK` is raised to its hard
//! limit first (kernels before 5.12 charge the rings to it).

use std::sync::Arc;
use std::time::Duration;

use io_uring::{IoUring, Probe, cqueue, opcode, squeue, types};

use super::offload::Offload;
use super::slab::OpSlab;
use super::{
    Cancel, Completion, Engine, EventFd, Notify, Op, OpId, OpKind, READABLE, RecvHint, Submitted, Waiter, poll_mask,
    ready_bits,
};
use crate::errno::Errno;

const SQ_ENTRIES: u32 = 1024;
const CQ_ENTRIES: u32 = 8192;
/// user_data of the eventfd read that carries cross-thread notifies.
const UD_NOTIFY: u64 = u64::MAX - 1;
/// user_data of cancel requests (their own completions are ignored).
const UD_CANCEL: u64 = u64::MAX;

/// Why io_uring could not be set up.
#[derive(Debug)]
pub(crate) struct SetupError {
    pub errno: Errno,
    what: String,
}

/// A one-line reason with the fix, for the fallback warning.
pub(crate) fn explain(e: &SetupError) -> String {
    let fix = match e.errno.0 {
        libc::ENOMEM => {
            " (locked-memory limit too low: raise it with `ulimit -l unlimited`, LimitMEMLOCK= in systemd, or --ulimit memlock=-1 in containers)"
        }
        libc::EPERM => " (io_uring is forbidden here: kernel.io_uring_disabled sysctl, seccomp or a container policy)",
        libc::ENOSYS => " (this kernel has no io_uring)",
        _ => "",
    };
    format!("{}: {}{}", e.what, e.errno, fix)
}

mod accept;
mod fixed;
mod recv;

/// What a ring operation is to the engine.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    /// A data operation: its result is the syscall's.
    Plain,
    /// A `POLL_ADD`: its result becomes readiness bits.
    Poll,
    /// A multishot accept (no thread waits on it; see `accept`).
    AcceptArm,
    /// An accept call waiting for a multishot accept's next connection
    /// (never submitted itself).
    AcceptWait,
    /// A multishot receive (no thread waits on it; see `recv`).
    RecvArm,
    /// A read-side operation waiting for a multishot receive's bytes
    /// (never submitted itself).
    RecvWait,
    /// A read-side operation of a socket with receive state, in the kernel.
    RecvPlain,
    /// The same, a readiness wait.
    RecvPlainPoll,
}

struct UOp {
    waiter: Waiter,
    fd: i32,
    role: Role,
    cancel_sent: bool,
}

/// Where every ring's eventfd reads land. The value is never looked at,
/// and the kernel may still write it after a ring was dropped (teardown of
/// in-flight operations is asynchronous), so it is one static shared by all
/// rings: no allocation to leak or to free too early.
static NOTIFY_SINK: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

pub(crate) struct UringEngine {
    ring: IoUring,
    ops: OpSlab<UOp>,
    queued: usize,
    /// O_DIRECT transfers queued since the last `io_uring_enter`
    /// (see [`EAGER_DIRECT_BATCH`]).
    direct_queued: usize,
    /// `PHOTON_IO_OFF=eager_direct` not given and no SQPOLL.
    eager_direct: bool,
    notify: Arc<EventFd>,
    notify_armed: bool,
    data_ops: bool,
    accept_op: bool,
    /// Opcodes this kernel supports (file operations not here are offloaded).
    probe: Probe,
    offload: Offload,
    /// `IORING_RECVSEND_POLL_FIRST` is known to the kernel (5.19+) and wanted.
    poll_first: bool,
    /// `PHOTON_IO_OFF=direct_recv` not given: see [`Engine::recv_hint`].
    direct_recv: bool,
    /// `PHOTON_IO_OFF=readiness_recv` not given: see [`Engine::recv_hint`].
    readiness_recv: bool,
    /// Per fd, what its last receives said: [`FD_DRAINED`], [`FD_NONEMPTY`],
    /// [`FD_BULK`].
    recv_state: Vec<u8>,
    /// `PHOTON_IO_OFF=lazy_submit` not given: see [`UringEngine::wait`].
    lazy_submit: bool,
    /// An `io_uring_enter` ran since the last poll that must not sleep.
    entered: bool,
    /// Multishot accept is known to the kernel (5.19+) and wanted.
    multishot_accept: bool,
    /// Listening sockets with a multishot accept (see `accept`).
    listeners: Vec<accept::Listener>,
    /// Completions taken from the ring, before they are handled.
    cqes: Vec<(u64, i32, u32)>,
    /// A waiting multishot accept was cancelled: the next wait does not
    /// sleep, and ends it (see `accept::accept_cancel`).
    accept_cancels: bool,
    /// Registered files for sockets (see `fixed`).
    fixed: fixed::FixedFiles,
    /// Multishot receive is known to the kernel (6.0+) and wanted.
    multishot_recv: bool,
    /// The connections' provided-buffer rings (see `recv`).
    bufs: recv::Rings,
    /// Per fd: its receive state (see `recv`).
    conns: Vec<Option<recv::Conn>>,
    /// Per fd: may it get a multishot receive (see `recv`).
    mshot_kind: Vec<u8>,
}

/// True if `op` moves file data (what may block inside the kernel).
fn is_data_op(op: &Op) -> Option<i32> {
    match *op {
        Op::Read { fd, .. }
        | Op::Write { fd, .. }
        | Op::Readv { fd, .. }
        | Op::Writev { fd, .. }
        | Op::Pread { fd, .. }
        | Op::Pwrite { fd, .. }
        | Op::Preadv { fd, .. }
        | Op::Pwritev { fd, .. }
        | Op::Fsync { fd, .. } => Some(fd),
        _ => None,
    }
}

fn raise_memlock() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: plain rlimit calls on valid structs.
        unsafe {
            let mut r: libc::rlimit = core::mem::zeroed();
            if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) == 0 && r.rlim_cur < r.rlim_max {
                r.rlim_cur = r.rlim_max;
                libc::setrlimit(libc::RLIMIT_MEMLOCK, &r);
            }
        }
    });
}

/// An O_DIRECT read or write is handed to the kernel as soon as this many
/// are queued, instead of at the scheduler turn's end: the device starts
/// on them while the vcpu still runs the turn's other woken threads.
/// Measured (bench files, 4 KiB O_DIRECT random reads, one vcpu): at 16 in
/// flight 40-47k IOPS turn-batched against 50-58k flushing every 4 (fio
/// io_uring 55-59k), at 64 in flight 54k against 59-66k (fio 59-64k);
/// flushing every single one was no better than every 4 and cost more CPU
/// per read (one `io_uring_enter` each). `PHOTON_IO_OFF=eager_direct`
/// leaves them to the turn's end.
const EAGER_DIRECT_BATCH: usize = 4;

/// How long the SQPOLL kernel thread keeps polling after the last
/// submission before it sleeps (ms).
const SQPOLL_IDLE_MS: u32 = 10;

fn build_ring(sqpoll: bool) -> Result<IoUring, SetupError> {
    if sqpoll {
        // DEFER_TASKRUN needs the submitter to run the task work, which an
        // SQ thread cannot: SQPOLL goes alone (plus a large CQ).
        let mut b = IoUring::builder();
        b.setup_cqsize(CQ_ENTRIES).setup_sqpoll(SQPOLL_IDLE_MS);
        let refused = match b.build(SQ_ENTRIES) {
            Ok(r) => return Ok(r),
            Err(e) => e,
        };
        // Said only once a ring without SQPOLL is made, and once per
        // process: where io_uring is refused altogether (seccomp, the
        // sysctl) the caller's one fallback line says why, and a line
        // saying "using a ring without it" before it, at every vcpu,
        // would be wrong.
        let ring = build_plain_ring()?;
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            log::warn!(
                "photon: io_uring with SQPOLL refused ({refused}); using rings without it (before 5.11 SQPOLL needs CAP_SYS_NICE)"
            )
        });
        return Ok(ring);
    }
    build_plain_ring()
}

/// A ring without SQPOLL, with the task-run flags this kernel has.
fn build_plain_ring() -> Result<IoUring, SetupError> {
    let err = |e: std::io::Error, what: &str| SetupError {
        errno: e.into(),
        what: what.to_string(),
    };
    let mut last = None;
    for attempt in 0..3 {
        let mut b = IoUring::builder();
        b.setup_cqsize(CQ_ENTRIES);
        match attempt {
            0 => {
                b.setup_single_issuer().setup_defer_taskrun().setup_taskrun_flag();
            }
            1 => {
                b.setup_coop_taskrun().setup_taskrun_flag();
            }
            _ => {}
        }
        match b.build(SQ_ENTRIES) {
            Ok(r) => return Ok(r),
            // Unknown flags on an older kernel: try fewer.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(err(e, "io_uring_setup")),
            Err(e) => return Err(err(e, "io_uring_setup")),
        }
    }
    Err(last.expect("at least one attempt"))
}

/// `ioprio` flag of a receive: arm the poll before trying (5.19+).
const IORING_RECVSEND_POLL_FIRST: u16 = 1;

/// `recv_state`: the fd's last receive came back short (the socket was
/// drained), so the next ring receive arms its poll first.
const FD_DRAINED: u8 = 1;
/// `recv_state`: its last ring receive came back with bytes still queued
/// (`IORING_CQE_F_SOCK_NONEMPTY`), or a receive on the vcpu filled its
/// buffer: the next receive goes straight to the socket.
const FD_NONEMPTY: u8 = 2;
/// `recv_state`: its last receive that drained the socket returned at
/// least [`BULK_RECV`] bytes: the next one waits for readiness and then
/// receives on the vcpu ([`RecvHint::Ready`]).
const FD_BULK: u8 = 4;

/// A receive that drains at least this many bytes says the socket streams
/// (several of the peer's writes had piled up since the last one): see
/// `readiness_recv` in engine/features.rs.
const BULK_RECV: usize = 8 << 10;

/// `fd`'s byte in a per-fd table of the engine (indexed by fd number, 0
/// for an fd not looked at yet), the table grown to hold it; None for a
/// negative fd.
pub(super) fn fd_cell(cells: &mut Vec<u8>, fd: i32) -> Option<&mut u8> {
    let i = usize::try_from(fd).ok()?;
    if cells.len() <= i {
        cells.resize(i + 1, 0);
    }
    Some(&mut cells[i])
}

impl UringEngine {
    /// The socket operations' fast path in `submit` (a ping-pong server's
    /// every request): a receive, send or poll, matched once, its file
    /// slot looked up once, none of the file-only checks (offload, blocking
    /// file systems, O_DIRECT batches). None: any other operation.
    #[inline(always)]
    fn socket_sqe(&mut self, op: Op) -> Option<(squeue::Entry, i32, bool)> {
        let (fd, is_poll) = match op {
            Op::Recv { fd, .. } | Op::Send { fd, .. } => (fd, false),
            Op::Poll { fd, .. } => (fd, true),
            _ => return None,
        };
        let slot = self.fixed_slot(fd);
        // Built here for these three opcodes only, not through sqe_for or
        // sqe_fixed: their matches over every operation, inlined, gave this
        // frame (on every photon thread's stack at each receive and send)
        // hundreds of bytes of SQE temporaries.
        let sqe = match op {
            Op::Recv { buf, len, flags, .. } => {
                let b = match slot {
                    Some(s) => opcode::Recv::new(types::Fixed(s), buf, len),
                    None => opcode::Recv::new(types::Fd(fd), buf, len),
                }
                .flags(flags);
                let b = if self.poll_first && self.take_drained(fd) {
                    b.ioprio(IORING_RECVSEND_POLL_FIRST)
                } else {
                    b
                };
                b.build()
            }
            Op::Send { buf, len, flags, .. } => match slot {
                Some(s) => opcode::Send::new(types::Fixed(s), buf, len),
                None => opcode::Send::new(types::Fd(fd), buf, len),
            }
            .flags(flags)
            .build(),
            Op::Poll { events, .. } => {
                let mask = poll_mask(events) as u16 as u32;
                match slot {
                    Some(s) => opcode::PollAdd::new(types::Fixed(s), mask).build(),
                    None => opcode::PollAdd::new(types::Fd(fd), mask).build(),
                }
            }
            _ => return None,
        };
        Some((sqe, fd, is_poll))
    }

    /// Records `sqe`'s operation for `waiter` and queues it.
    #[inline(always)]
    fn queue(&mut self, sqe: squeue::Entry, fd: i32, is_poll: bool, waiter: Waiter) -> Result<Submitted, Errno> {
        let id = self.ops.insert(UOp {
            waiter,
            fd,
            role: if is_poll { Role::Poll } else { Role::Plain },
            cancel_sent: false,
        });
        let sqe = sqe.user_data(id as u64);
        // The common case in this frame: `push` out of line is one more
        // frame below the parking thread's (see `socket_sqe`).
        // SAFETY: the engine contract keeps every pointer in `sqe` valid
        // until its completion is reaped.
        if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
            self.queued += 1;
        } else if let Err(e) = self.push(sqe) {
            self.ops.remove(id);
            return Err(e);
        }
        Ok(Submitted::Pending(id))
    }

    /// Queues an `IORING_OP_ASYNC_CANCEL` of ring operation `id` (`what`
    /// names it in the log line if the queue refuses), once per operation.
    fn send_cancel(&mut self, id: OpId, what: &str) {
        let Some(op) = self.ops.get_mut(id) else { return };
        if op.cancel_sent {
            return;
        }
        op.cancel_sent = true;
        let sqe = opcode::AsyncCancel::new(id as u64).build().user_data(UD_CANCEL);
        if let Err(e) = self.push(sqe) {
            log::error!("photon: io_uring cancel of {what} could not be queued: {e}");
        }
    }

    /// True (once) if `fd` was seen drained since its last receive.
    fn take_drained(&mut self, fd: i32) -> bool {
        match self.recv_state.get_mut(fd as usize) {
            Some(d) if *d & FD_DRAINED != 0 => {
                *d &= !FD_DRAINED;
                true
            }
            _ => false,
        }
    }

    /// True if `fd` lives on a file system that may block io_uring_enter
    /// (FUSE, network file systems): the fd's fact in `fdinfo` (see
    /// `fstype`), looked up once per fd and per mount, forgotten when the
    /// fd is closed or reused.
    fn on_blocking_fs(&self, fd: i32) -> bool {
        crate::fdinfo::on_blocking_fs(fd)
    }

    pub(crate) fn new(sqpoll: bool) -> Result<UringEngine, SetupError> {
        raise_memlock();
        let ring = build_ring(sqpoll)?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe).map_err(|e| SetupError {
            errno: e.into(),
            what: "io_uring probe".into(),
        })?;
        for (code, name) in [
            (opcode::PollAdd::CODE, "POLL_ADD"),
            (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
            (opcode::Read::CODE, "READ"),
        ] {
            if !probe.is_supported(code) {
                return Err(SetupError {
                    errno: Errno::ENOSYS,
                    what: format!("kernel lacks io_uring opcode {name}"),
                });
            }
        }
        let data_ops = [
            opcode::Write::CODE,
            opcode::Readv::CODE,
            opcode::Writev::CODE,
            opcode::Recv::CODE,
            opcode::Send::CODE,
            opcode::RecvMsg::CODE,
            opcode::SendMsg::CODE,
        ]
        .iter()
        .all(|&c| probe.is_supported(c));
        if !data_ops {
            log::info!("photon: io_uring lacks some data opcodes; using syscalls plus poll waits");
        }
        // POLL_FIRST came with 5.19, as IORING_OP_SOCKET did: an unknown
        // ioprio bit would fail every receive with EINVAL.
        let poll_first =
            probe.is_supported(opcode::Socket::CODE) && super::features::wanted(super::features::Feature::PollFirst);
        // Multishot accept came with 5.19, as IORING_OP_SOCKET did.
        let multishot_accept = probe.is_supported(opcode::Socket::CODE)
            && probe.is_supported(opcode::Accept::CODE)
            && super::features::wanted(super::features::Feature::MultishotAccept);
        if !multishot_accept && super::features::wanted(super::features::Feature::MultishotAccept) {
            log::info!("photon: io_uring lacks multishot accept (5.19+); one ring accept per connection");
        }
        // Multishot receive with provided-buffer rings came with 6.0, as
        // IORING_OP_SEND_ZC did; the buffer ring itself is made (and its
        // refusal logged) at the first use.
        let want_mshot = super::features::wanted(super::features::Feature::MultishotRecv);
        let multishot_recv = want_mshot && probe.is_supported(opcode::SendZc::CODE) && !crate::sched::preload_active();
        if !multishot_recv && want_mshot {
            if crate::sched::preload_active() {
                log::info!(
                    "photon: multishot receive is off under the preload shim (libc's poll and non-blocking reads would not see held bytes)"
                );
            } else {
                log::info!("photon: io_uring lacks multishot receive (6.0+); plain ring receives");
            }
        }
        let notify = Arc::new(EventFd::new().map_err(|errno| SetupError {
            errno,
            what: "eventfd".into(),
        })?);
        let eager_direct =
            !ring.params().is_setup_sqpoll() && super::features::wanted(super::features::Feature::EagerDirect);
        let fixed = fixed::FixedFiles::new(&ring, super::features::wanted(super::features::Feature::FixedFiles));
        Ok(UringEngine {
            fixed,
            offload: Offload::new(notify.clone()),
            ring,
            ops: OpSlab::new(),
            queued: 0,
            direct_queued: 0,
            eager_direct,
            notify,
            notify_armed: false,
            data_ops,
            accept_op: probe.is_supported(opcode::Accept::CODE),
            probe,
            poll_first,
            direct_recv: super::features::wanted(super::features::Feature::DirectRecv),
            // Not beside multishot receives: their bytes are the engine's,
            // not the socket's, until handed out.
            readiness_recv: data_ops
                && !multishot_recv
                && super::features::wanted(super::features::Feature::ReadinessRecv),
            recv_state: Vec::new(),
            lazy_submit: super::features::wanted(super::features::Feature::LazySubmit),
            entered: false,
            multishot_accept,
            listeners: Vec::new(),
            cqes: Vec::new(),
            accept_cancels: false,
            multishot_recv,
            bufs: recv::Rings::default(),
            conns: Vec::new(),
            mshot_kind: Vec::new(),
        })
    }

    /// With SQPOLL the kernel thread takes queued SQEs when it gets to
    /// them: waits until it has taken them all. `fd` is about to be closed,
    /// and an operation on it still queued then would meet EBADF, or a new
    /// file given the same number.
    fn drain_sq(&mut self) {
        let start = std::time::Instant::now();
        loop {
            if let Err(e) = self.ring.submit() {
                log::error!("photon: io_uring submit failed while closing an fd: {e}");
                return;
            }
            if self.ring.submission().is_empty() {
                self.queued = 0;
                return;
            }
            if start.elapsed() > Duration::from_millis(100) {
                log::error!("photon: the io_uring SQPOLL thread took no submissions for 100 ms");
                return;
            }
            std::thread::yield_now();
        }
    }

    /// Runs the ring's deferred task work now (an `io_uring_enter` with
    /// GETEVENTS that waits for nothing): with DEFER_TASKRUN a cancelled
    /// operation is finished, and lets go of its file, only there. After
    /// `photon_close` the file must be gone, as close(2) leaves it: a
    /// listener whose cancelled accept still held it kept taking
    /// connections (a connect right after the close succeeded).
    fn run_task_work(&mut self) {
        if self.ring.params().is_setup_sqpoll() {
            return; // no DEFER_TASKRUN with SQPOLL: the work runs at once
        }
        const IORING_ENTER_GETEVENTS: u32 = 1;
        // SAFETY: no submission, no argument; the kernel only runs task work
        // and posts completions into the ring, which reap() reads later.
        if let Err(e) = unsafe {
            self.ring
                .submitter()
                .enter::<libc::sigset_t>(0, 0, IORING_ENTER_GETEVENTS, None)
        } {
            log::debug!("photon: io_uring task work run failed: {e}");
        }
    }

    /// Hands the queued submissions to the kernel now (not at the turn's end).
    fn submit_now(&mut self) {
        match self.ring.submit() {
            Ok(_) => {
                self.queued = 0;
                self.direct_queued = 0;
                self.entered = true;
            }
            Err(e) => log::error!("photon: io_uring submit failed: {e}"),
        }
    }

    /// Queues one SQE, flushing the queue to the kernel when it is full.
    fn push(&mut self, sqe: squeue::Entry) -> Result<(), Errno> {
        loop {
            // SAFETY: the engine contract keeps every pointer in `sqe` valid
            // until its completion is reaped.
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                self.queued += 1;
                return Ok(());
            }
            if self.ring.params().is_setup_sqpoll() {
                // The kernel thread empties the queue: wait for room.
                self.ring.submit()?;
                self.ring.submitter().squeue_wait()?;
            } else {
                self.ring.submit()?;
            }
            self.queued = 0;
        }
    }

    fn arm_notify(&mut self) -> Result<(), Errno> {
        if !self.notify_armed {
            let sqe = opcode::Read::new(types::Fd(self.notify.0), (&raw const NOTIFY_SINK).cast_mut().cast(), 8)
                .build()
                .user_data(UD_NOTIFY);
            self.push(sqe)?;
            self.notify_armed = true;
        }
        Ok(())
    }

    fn reap(&mut self, out: &mut Vec<Completion>) {
        let mut cqes = core::mem::take(&mut self.cqes);
        let mut cq = self.ring.completion();
        cq.sync();
        cqes.extend((&mut cq).map(|c| (c.user_data(), c.result(), c.flags())));
        drop(cq);
        for &(ud, res, flags) in &cqes {
            match ud {
                UD_CANCEL => {}
                UD_NOTIFY => self.notify_armed = false,
                ud => {
                    let id = ud as OpId;
                    let Some(role) = self.ops.get(id).map(|o| o.role) else {
                        continue;
                    };
                    if role == Role::AcceptArm {
                        self.accept_completion(id, res, flags, out);
                        continue;
                    }
                    if role == Role::RecvArm {
                        let fd = self.ops.get(id).map_or(-1, |o| o.fd);
                        self.recv_completion(id, fd, res, flags, out);
                        continue;
                    }
                    let Some(op) = self.ops.remove(id) else {
                        continue;
                    };
                    if matches!(role, Role::RecvPlain | Role::RecvPlainPoll) {
                        self.recv_plain_done(op.fd);
                    } else if res > 0 && cqueue::sock_nonempty(flags) && role == Role::Plain {
                        self.set_nonempty(op.fd);
                    }
                    let mut result = res as i64;
                    if matches!(role, Role::Poll | Role::RecvPlainPoll) && result >= 0 {
                        result = ready_bits(result as i16) as i64;
                    }
                    out.push(Completion {
                        waiter: op.waiter,
                        id,
                        result,
                    });
                }
            }
        }
        cqes.clear();
        self.cqes = cqes;
        self.offload.reap(out);
    }

    /// [`Engine::submit`] of everything but the socket fast path (file
    /// operations, accepts, opens, operations on other fds): out of line, so
    /// the fast path's frame, on every photon thread's stack at each receive
    /// and send, stays small (the general path's SQE builders take hundreds
    /// of bytes of stack).
    ///
    /// # Safety
    /// As [`Engine::submit`].
    #[inline(never)]
    unsafe fn submit_other(&mut self, op: Op, waiter: Waiter) -> Result<Submitted, Errno> {
        let blocking_open = matches!(op, Op::Open { blocking: true, .. });
        if blocking_open || file_opcode(&op).is_some_and(|code| !self.probe.is_supported(code)) {
            // SAFETY: the caller keeps op's memory valid per the engine contract.
            return unsafe { self.offload.submit(op, waiter) }.map(Submitted::Pending);
        }
        if let Op::Accept { fd, addr, len, flags } = op
            && self.multishot_accept
            && addr.is_null()
            && len.is_null()
            && let Some(done) = self.accept_multi(fd, flags, waiter)?
        {
            return Ok(done);
        }
        let data_fd = is_data_op(&op);
        let async_fs = data_fd.is_some_and(|fd| self.on_blocking_fs(fd));
        let sock = socket_fd(&op);
        let slot = sock.and_then(|fd| self.fixed_slot(fd));
        // (Receives, sends and polls took socket_sqe's fast path.)
        let (sqe, fd, is_poll) = match slot.and_then(|s| sqe_fixed(op, s)) {
            Some(sqe) => (sqe, sock.unwrap_or(-1), false),
            None => sqe_for(op),
        };
        let sqe = if async_fs { sqe.flags(squeue::Flags::ASYNC) } else { sqe };
        let queued = self.queue(sqe, fd, is_poll, waiter)?;
        if self.eager_direct && data_fd.is_some_and(crate::fdinfo::is_direct) {
            self.direct_queued += 1;
            if self.direct_queued >= EAGER_DIRECT_BATCH {
                self.submit_now();
            }
        }
        Ok(queued)
    }
}

impl Drop for UringEngine {
    fn drop(&mut self) {
        self.accept_drop();
        self.recv_drop();
        let waited_for = self
            .ops
            .ids_where(|o| o.role != Role::AcceptArm && o.role != Role::RecvArm)
            .len();
        if waited_for > 0 {
            log::error!("photon: io_uring engine dropped with {waited_for} operations in flight");
        }
    }
}

/// The SQE for `op`, with its fd and whether it is a poll.
fn sqe_for(op: Op) -> (squeue::Entry, i32, bool) {
    use types::Fd;
    match op {
        Op::Poll { fd, events } => (
            opcode::PollAdd::new(Fd(fd), poll_mask(events) as u16 as u32).build(),
            fd,
            true,
        ),
        Op::Read { fd, buf, len } => (opcode::Read::new(Fd(fd), buf, len).offset(u64::MAX).build(), fd, false),
        Op::Write { fd, buf, len } => (opcode::Write::new(Fd(fd), buf, len).offset(u64::MAX).build(), fd, false),
        Op::Readv { fd, iov, n } => (opcode::Readv::new(Fd(fd), iov, n).offset(u64::MAX).build(), fd, false),
        Op::Writev { fd, iov, n } => (opcode::Writev::new(Fd(fd), iov, n).offset(u64::MAX).build(), fd, false),
        Op::Recv { fd, buf, len, flags } => (opcode::Recv::new(Fd(fd), buf, len).flags(flags).build(), fd, false),
        Op::Send { fd, buf, len, flags } => (opcode::Send::new(Fd(fd), buf, len).flags(flags).build(), fd, false),
        Op::RecvMsg { fd, msg, flags } => (opcode::RecvMsg::new(Fd(fd), msg).flags(flags).build(), fd, false),
        Op::SendMsg { fd, msg, flags } => (opcode::SendMsg::new(Fd(fd), msg).flags(flags).build(), fd, false),
        Op::Accept { fd, addr, len, flags } => (opcode::Accept::new(Fd(fd), addr, len).flags(flags).build(), fd, false),
        Op::Pread { fd, buf, len, off } => (opcode::Read::new(Fd(fd), buf, len).offset(off).build(), fd, false),
        Op::Pwrite { fd, buf, len, off } => (opcode::Write::new(Fd(fd), buf, len).offset(off).build(), fd, false),
        Op::Preadv { fd, iov, n, off } => (opcode::Readv::new(Fd(fd), iov, n).offset(off).build(), fd, false),
        Op::Pwritev { fd, iov, n, off } => (opcode::Writev::new(Fd(fd), iov, n).offset(off).build(), fd, false),
        Op::Fsync { fd, datasync } => {
            let flags = if datasync {
                types::FsyncFlags::DATASYNC
            } else {
                types::FsyncFlags::empty()
            };
            (opcode::Fsync::new(Fd(fd)).flags(flags).build(), fd, false)
        }
        Op::Fallocate { fd, mode, off, len } => (
            opcode::Fallocate::new(Fd(fd), len as u64)
                .offset(off as u64)
                .mode(mode)
                .build(),
            fd,
            false,
        ),
        Op::Ftruncate { fd, len } => (opcode::Ftruncate::new(Fd(fd), len as u64).build(), fd, false),
        Op::Open {
            dirfd,
            path,
            flags,
            mode,
            ..
        } => (
            opcode::OpenAt::new(Fd(dirfd), path).flags(flags).mode(mode).build(),
            -1,
            false,
        ),
        Op::Statx {
            dirfd,
            path,
            flags,
            mask,
            buf,
        } => (
            opcode::Statx::new(Fd(dirfd), path, buf.cast())
                .flags(flags)
                .mask(mask)
                .build(),
            dirfd,
            false,
        ),
        Op::Unlink { dirfd, path, flags } => (opcode::UnlinkAt::new(Fd(dirfd), path).flags(flags).build(), -1, false),
        Op::Rename {
            olddir,
            old,
            newdir,
            new,
        } => (
            opcode::RenameAt::new(Fd(olddir), old, Fd(newdir), new).build(),
            -1,
            false,
        ),
        Op::Mkdir { dirfd, path, mode } => (opcode::MkDirAt::new(Fd(dirfd), path).mode(mode).build(), -1, false),
    }
}

/// The socket of an operation that may name it by its registered file
/// slot (see `fixed`).
fn socket_fd(op: &Op) -> Option<i32> {
    match *op {
        Op::Poll { fd, .. }
        | Op::Recv { fd, .. }
        | Op::Send { fd, .. }
        | Op::RecvMsg { fd, .. }
        | Op::SendMsg { fd, .. }
        | Op::Accept { fd, .. } => Some(fd),
        _ => None,
    }
}

/// [`sqe_for`] naming the socket by its registered file `slot`.
fn sqe_fixed(op: Op, slot: u32) -> Option<squeue::Entry> {
    let f = types::Fixed(slot);
    Some(match op {
        Op::Poll { events, .. } => opcode::PollAdd::new(f, poll_mask(events) as u16 as u32).build(),
        Op::Recv { buf, len, flags, .. } => opcode::Recv::new(f, buf, len).flags(flags).build(),
        Op::Send { buf, len, flags, .. } => opcode::Send::new(f, buf, len).flags(flags).build(),
        Op::RecvMsg { msg, flags, .. } => opcode::RecvMsg::new(f, msg).flags(flags).build(),
        Op::SendMsg { msg, flags, .. } => opcode::SendMsg::new(f, msg).flags(flags).build(),
        Op::Accept { addr, len, flags, .. } => opcode::Accept::new(f, addr, len).flags(flags).build(),
        _ => return None,
    })
}

/// The io_uring opcode a file operation needs (None: not a file-only op).
fn file_opcode(op: &Op) -> Option<u8> {
    Some(match op {
        Op::Pread { .. } => opcode::Read::CODE,
        Op::Pwrite { .. } => opcode::Write::CODE,
        Op::Preadv { .. } => opcode::Readv::CODE,
        Op::Pwritev { .. } => opcode::Writev::CODE,
        Op::Fsync { .. } => opcode::Fsync::CODE,
        Op::Fallocate { .. } => opcode::Fallocate::CODE,
        Op::Ftruncate { .. } => opcode::Ftruncate::CODE,
        Op::Open { .. } => opcode::OpenAt::CODE,
        Op::Statx { .. } => opcode::Statx::CODE,
        Op::Unlink { .. } => opcode::UnlinkAt::CODE,
        Op::Rename { .. } => opcode::RenameAt::CODE,
        Op::Mkdir { .. } => opcode::MkDirAt::CODE,
        _ => return None,
    })
}

impl Engine for UringEngine {
    fn name(&self) -> &'static str {
        "io_uring"
    }

    fn has_queued(&self) -> bool {
        self.queued > 0
    }

    fn runs(&self, kind: OpKind) -> bool {
        match kind {
            OpKind::Poll => true,
            OpKind::Socket => self.data_ops,
            OpKind::Accept => self.accept_op,
            OpKind::File => true,
        }
    }

    unsafe fn submit(&mut self, op: Op, waiter: Waiter) -> Result<Submitted, Errno> {
        if self.multishot_recv
            && let Some(done) = self.recv_held(op, waiter)?
        {
            return Ok(done);
        }
        if let Some((sqe, fd, is_poll)) = self.socket_sqe(op) {
            return self.queue(sqe, fd, is_poll, waiter);
        }
        // SAFETY: per the engine contract.
        unsafe { self.submit_other(op, waiter) }
    }

    fn cancel(&mut self, id: OpId) -> Cancel {
        if Offload::owns(id) {
            return self.offload.cancel(id);
        }
        let Some(op) = self.ops.get_mut(id) else {
            return Cancel::Requested;
        };
        if op.role == Role::AcceptWait {
            self.accept_cancel(id);
            return Cancel::Requested;
        }
        if op.role == Role::RecvWait {
            self.recv_cancel(id);
            return Cancel::Gone;
        }
        self.send_cancel(id, "an operation");
        Cancel::Requested
    }

    fn cancel_fd(&mut self, fd: i32, out: &mut Vec<Completion>) {
        self.accept_forget(fd, Some(out));
        self.recv_forget(fd, Some(out));
        let ids = self.ops.ids_where(|o| o.fd == fd);
        for &id in &ids {
            self.cancel(id);
        }
        if !ids.is_empty() {
            if self.ring.params().is_setup_sqpoll() {
                self.drain_sq();
            } else if self.queued > 0 {
                // An operation on `fd` may still wait in the submission
                // queue (submissions wait for the turn's end): the kernel
                // takes it now, with its cancel, while `fd` is still this
                // file; after close(2) the number may name another.
                self.submit_now();
            }
        }
        // After the queued operations went in: one still queued would
        // find its file slot empty (EBADF instead of ECANCELED).
        self.forget_fd(fd);
        if !ids.is_empty() {
            self.run_task_work();
        }
    }

    fn forget_fd(&mut self, fd: i32) {
        if !self.listeners.is_empty() {
            self.accept_forget(fd, None);
        }
        self.recv_forget(fd, None);
        if let Some(d) = self.recv_state.get_mut(fd as usize) {
            *d = 0;
        }
        self.fixed_release(fd);
    }

    fn release_held(&mut self, fd: i32, out: &mut Vec<Completion>) {
        self.recv_release(fd, out);
    }

    fn drained(&mut self, fd: i32, bits: u32, n: usize) {
        if bits & READABLE == 0 || !(self.poll_first || self.readiness_recv) {
            return;
        }
        let (poll_first, readiness_recv) = (self.poll_first, self.readiness_recv);
        let Some(st) = fd_cell(&mut self.recv_state, fd) else {
            return;
        };
        if poll_first {
            *st |= FD_DRAINED;
        }
        if readiness_recv {
            if n >= BULK_RECV {
                *st |= FD_BULK;
            } else {
                *st &= !FD_BULK;
            }
        }
    }

    fn gives_recv_hints(&self) -> bool {
        self.direct_recv || self.readiness_recv
    }

    #[inline]
    fn recv_hint(&mut self, fd: i32) -> RecvHint {
        match self.recv_state.get_mut(fd as usize) {
            Some(d) if *d & FD_NONEMPTY != 0 => {
                *d &= !FD_NONEMPTY;
                RecvHint::Queued
            }
            Some(d) if *d & FD_BULK != 0 => RecvHint::Ready,
            _ => RecvHint::Usual,
        }
    }

    fn set_nonempty(&mut self, fd: i32) {
        if self.direct_recv
            && let Some(st) = fd_cell(&mut self.recv_state, fd)
        {
            *st |= FD_NONEMPTY;
        }
    }

    /// A wait with a zero timeout is a poll of a vcpu that has threads to
    /// run (every 64th scheduling decision, the end of an I/O budget), or
    /// whose next timer is due. Its queued submissions would go to the
    /// kernel anyway at the turn's end, in the sleeping wait's
    /// `io_uring_enter`, with the rest of the turn's: so such a poll enters
    /// the kernel only when no `io_uring_enter` ran since the poll before it
    /// (a vcpu kept busy still submits and reaps every second poll, 128
    /// decisions at most); otherwise it takes only the completions already
    /// in the completion ring (`PHOTON_IO_OFF=lazy_submit`: it always
    /// enters when work is queued).
    fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Completion>) -> Result<(), Errno> {
        let timeout = if self.accept_cancels {
            self.entered = false; // no lazy skip: this poll must reap
            Some(Duration::ZERO)
        } else {
            timeout
        };
        let r = match timeout {
            Some(t) if t.is_zero() => {
                if self.lazy_submit && core::mem::take(&mut self.entered) {
                    self.reap(out);
                    return Ok(());
                }
                let taskrun = self.ring.submission().taskrun();
                if self.queued > 0 || taskrun {
                    self.entered = true;
                    self.ring.submit()
                } else {
                    Ok(0)
                }
            }
            _ => {
                self.arm_notify()?;
                if !self.listeners.is_empty() {
                    self.disarm_unwaited();
                }
                self.entered = true;
                match timeout {
                    None => self.ring.submit_and_wait(1),
                    Some(t) => {
                        let ts = types::Timespec::from(t);
                        let args = types::SubmitArgs::new().timespec(&ts);
                        self.ring.submitter().submit_with_args(1, &args)
                    }
                }
            }
        };
        self.queued = 0;
        self.direct_queued = 0;
        match r {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => {}
            Err(e) => return Err(e.into()),
        }
        self.reap(out);
        if self.accept_cancels {
            self.accept_cancels_done(out);
        }
        Ok(())
    }

    fn waits_in_flight(&self) -> usize {
        self.ops.len() + self.queued + self.offload.in_flight()
    }

    fn notifier(&self) -> Arc<dyn Notify> {
        self.notify.clone()
    }

    fn trim(&mut self) -> usize {
        self.recv_trim()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn socketpair() -> (i32, i32) {
        let mut fds = [0; 2];
        // SAFETY: a valid out array of two ints.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0);
        (fds[0], fds[1])
    }

    /// Waits for the completion of `id`.
    pub(super) fn complete(e: &mut UringEngine, id: OpId) -> i64 {
        let mut out = Vec::new();
        for _ in 0..100 {
            e.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
            if let Some(c) = out.iter().find(|c| c.id == id) {
                return c.result;
            }
        }
        panic!("operation {id} did not complete");
    }

    /// The per-fd receive hints follow what the receives returned: a
    /// drained bulk amount makes the next receive a readiness receive, a
    /// small one takes it back to ring receives, queued bytes come first
    /// (once), and a new file with the number starts afresh.
    #[test]
    fn recv_hints_follow_sizes() {
        let Ok(mut e) = UringEngine::new(false) else {
            println!("recv_hints_follow_sizes: no io_uring here, skipped");
            return;
        };
        e.readiness_recv = true;
        e.direct_recv = true;
        let fd = 5;
        assert_eq!(e.recv_hint(fd), RecvHint::Usual);
        e.drained(fd, READABLE, BULK_RECV);
        assert_eq!(e.recv_hint(fd), RecvHint::Ready);
        assert_eq!(e.recv_hint(fd), RecvHint::Ready, "a mode, not a one-shot hint");
        e.set_nonempty(fd);
        assert_eq!(e.recv_hint(fd), RecvHint::Queued);
        assert_eq!(e.recv_hint(fd), RecvHint::Ready, "queued bytes are said once");
        e.drained(fd, crate::engine::WRITABLE, 0);
        assert_eq!(
            e.recv_hint(fd),
            RecvHint::Ready,
            "a write side drain says nothing of receives"
        );
        e.drained(fd, READABLE, BULK_RECV - 1);
        assert_eq!(e.recv_hint(fd), RecvHint::Usual);
        e.drained(fd, READABLE, 64 << 10);
        e.forget_fd(fd);
        assert_eq!(e.recv_hint(fd), RecvHint::Usual);
        e.readiness_recv = false;
        e.drained(fd, READABLE, 64 << 10);
        assert_eq!(e.recv_hint(fd), RecvHint::Usual, "the feature off");
    }

    /// A receive after a drain arms its poll first: it still gets data that
    /// is already there, and data that comes later; with the feature off
    /// (`poll_first` false, as on a kernel before 5.19) the same holds.
    #[test]
    fn receive_after_drain() {
        let Ok(mut e) = UringEngine::new(false) else {
            println!("receive_after_drain: no io_uring here, skipped");
            return;
        };
        if !e.poll_first {
            println!("receive_after_drain: this kernel lacks IORING_RECVSEND_POLL_FIRST; the fallback is tested");
        }
        for poll_first in [e.poll_first, false] {
            e.poll_first = poll_first;
            let (a, b) = socketpair();
            let mut buf = [0u8; 16];
            for early in [true, false] {
                e.drained(a, READABLE, 0);
                assert_eq!(
                    e.recv_state.get(a as usize).is_some_and(|&s| s & FD_DRAINED != 0),
                    poll_first
                );
                if early {
                    // SAFETY: 3 bytes from a live buffer.
                    assert_eq!(unsafe { libc::write(b, b"abc".as_ptr().cast(), 3) }, 3);
                }
                let op = Op::Recv {
                    fd: a,
                    buf: buf.as_mut_ptr(),
                    len: 16,
                    flags: 0,
                };
                // SAFETY: buf outlives the operation (we wait for it below).
                let Submitted::Pending(id) = (unsafe { e.submit(op, 1 as Waiter) }).unwrap() else {
                    panic!("a ring receive is pending");
                };
                assert!(!e.take_drained(a), "the flag is used once");
                if !early {
                    // SAFETY: as above.
                    assert_eq!(unsafe { libc::write(b, b"abc".as_ptr().cast(), 3) }, 3);
                }
                assert_eq!(complete(&mut e, id), 3, "poll_first {poll_first}, data early {early}");
                assert_eq!(&buf[..3], b"abc");
            }
            // SAFETY: our fds.
            unsafe {
                libc::close(a);
                libc::close(b);
            }
        }
    }
}

/// Submissions wait for the turn's end, and a poll that must not sleep
/// leaves them queued (lazy submit): closing an fd must still hand the
/// kernel its queued operations while the number names the old file.
#[cfg(test)]
mod queued_tests {
    use super::tests::socketpair;
    use super::*;

    /// A receive still queued when its fd is cancelled and closed must not
    /// run on the file that gets the number next (its data would be taken).
    #[test]
    fn queued_receive_then_close() {
        let Ok(mut e) = UringEngine::new(false) else {
            println!("queued_receive_then_close: no io_uring here, skipped");
            return;
        };
        let (a, b) = socketpair();
        crate::fdinfo::new_socket(a, true); // as photon_socket would: a registered file
        let mut buf = [0u8; 16];
        let op = Op::Recv {
            fd: a,
            buf: buf.as_mut_ptr(),
            len: 16,
            flags: 0,
        };
        // SAFETY: buf outlives the operation (waited for below).
        let Submitted::Pending(id) = (unsafe { e.submit(op, 1 as Waiter) }).unwrap() else {
            panic!("a ring receive is pending");
        };
        assert!(e.queued > 0, "the receive waits in the submission queue");
        assert_eq!(e.fixed.is_registered(a), e.fixed.slots() > 0);
        let mut out = Vec::new();
        e.cancel_fd(a, &mut out);
        // SAFETY: our fds.
        unsafe {
            libc::close(a);
            libc::close(b);
        }
        crate::fdinfo::forget(a);
        let (c, d) = socketpair();
        // A unit test running beside this one may take the number first;
        // the cancel is checked all the same.
        let reused = c == a || d == a;
        if !reused {
            println!(
                "queued_receive_then_close: {a} was taken by another test ({c}, {d}); the new file's data is not checked"
            );
        }
        for fd in [c, d] {
            // SAFETY: 3 bytes from a live buffer.
            assert_eq!(unsafe { libc::write(fd, b"new".as_ptr().cast(), 3) }, 3);
        }
        let mut got = out.iter().find(|x| x.id == id).map(|x| x.result);
        for _ in 0..100 {
            if got.is_some() {
                break;
            }
            e.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
            got = out.iter().find(|x| x.id == id).map(|x| x.result);
        }
        assert_eq!(
            got,
            Some(-(libc::ECANCELED as i64)),
            "the receive was cancelled, not run on the new file"
        );
        let mut rest = [0u8; 8];
        if reused {
            // SAFETY: valid buffer.
            assert_eq!(
                unsafe { libc::read(a, rest.as_mut_ptr().cast(), 8) },
                3,
                "the new file's data is still there"
            );
        }
        // SAFETY: our fds.
        unsafe {
            libc::close(c);
            libc::close(d);
        }
    }

    /// A poll that must not sleep skips the kernel right after an
    /// `io_uring_enter` and enters on the next one; with lazy submit off it
    /// always enters. Either way queued work completes.
    #[test]
    fn lazy_nowait_poll() {
        let Ok(mut e) = UringEngine::new(false) else {
            println!("lazy_nowait_poll: no io_uring here, skipped");
            return;
        };
        for lazy in [true, false] {
            e.lazy_submit = lazy;
            let (a, b) = socketpair();
            // SAFETY: 2 bytes from a live buffer.
            assert_eq!(unsafe { libc::write(b, b"hi".as_ptr().cast(), 2) }, 2);
            let mut out = Vec::new();
            e.wait(Some(Duration::from_millis(1)), &mut out).unwrap(); // an enter
            let mut buf = [0u8; 8];
            let op = Op::Recv {
                fd: a,
                buf: buf.as_mut_ptr(),
                len: 8,
                flags: 0,
            };
            // SAFETY: buf outlives the operation (waited for below).
            let Submitted::Pending(id) = (unsafe { e.submit(op, 1 as Waiter) }).unwrap() else {
                panic!("a ring receive is pending");
            };
            e.wait(Some(Duration::ZERO), &mut out).unwrap();
            assert_eq!(
                e.queued > 0,
                lazy,
                "lazy {lazy}: the first poll after an enter leaves the queue"
            );
            e.wait(Some(Duration::ZERO), &mut out).unwrap();
            assert_eq!(e.queued, 0, "lazy {lazy}: the next poll submits");
            let mut got = out.iter().find(|x| x.id == id).map(|x| x.result);
            for _ in 0..100 {
                if got.is_some() {
                    break;
                }
                e.wait(Some(Duration::ZERO), &mut out).unwrap();
                got = out.iter().find(|x| x.id == id).map(|x| x.result);
            }
            assert_eq!(got, Some(2), "lazy {lazy}");
            // SAFETY: our fds.
            unsafe {
                libc::close(a);
                libc::close(b);
            }
        }
    }
}

#[cfg(test)]
mod sqpoll_tests {
    use super::*;

    /// With SQPOLL (the opt-in `photon_init` flag) the ring is polled by a
    /// kernel thread, and operations still complete, including one queued
    /// after that thread went idle (which has to be woken).
    #[test]
    fn sqpoll_ring_runs_operations() {
        let Ok(mut e) = UringEngine::new(true) else {
            println!("sqpoll_ring_runs_operations: no io_uring here, skipped");
            return;
        };
        if !e.ring.params().is_setup_sqpoll() {
            println!("sqpoll_ring_runs_operations: this kernel refused SQPOLL; the fallback ring is tested");
        }
        let mut fds = [0; 2];
        // SAFETY: a valid out array of two ints.
        assert_eq!(
            unsafe {
                libc::socketpair(
                    libc::AF_UNIX,
                    libc::SOCK_STREAM | libc::SOCK_NONBLOCK,
                    0,
                    fds.as_mut_ptr(),
                )
            },
            0
        );
        let mut buf = [0u8; 8];
        for pause_ms in [0, 3 * SQPOLL_IDLE_MS as u64] {
            std::thread::sleep(Duration::from_millis(pause_ms));
            let op = Op::Recv {
                fd: fds[0],
                buf: buf.as_mut_ptr(),
                len: 8,
                flags: 0,
            };
            // SAFETY: buf outlives the operation (waited for below).
            let Submitted::Pending(id) = (unsafe { e.submit(op, 1 as Waiter) }).unwrap() else {
                panic!("a ring receive is pending");
            };
            // SAFETY: 2 bytes from a live buffer.
            assert_eq!(unsafe { libc::write(fds[1], b"hi".as_ptr().cast(), 2) }, 2);
            let mut out = Vec::new();
            let mut got = None;
            for _ in 0..200 {
                e.wait(Some(Duration::from_millis(10)), &mut out).unwrap();
                if let Some(c) = out.iter().find(|c| c.id == id) {
                    got = Some(c.result);
                    break;
                }
            }
            assert_eq!(got, Some(2), "after a pause of {pause_ms} ms");
            assert_eq!(&buf[..2], b"hi");
        }
        // SAFETY: our fds.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }
}

/// O_DIRECT transfers go to the kernel [`EAGER_DIRECT_BATCH`] at a time as
/// they are queued; with the feature off they wait for the turn's end.
#[cfg(test)]
mod eager_direct_tests {
    use super::*;

    #[test]
    fn eager_direct_batches() {
        let Ok(mut e) = UringEngine::new(false) else {
            println!("eager_direct_batches: no io_uring here, skipped");
            return;
        };
        let Some((fd, path)) = crate::engine::direct_test_file("eager-direct") else {
            println!("eager_direct_batches: no file system with O_DIRECT here, skipped");
            return;
        };
        crate::fdinfo::forget(fd);
        assert!(crate::fdinfo::is_direct(fd));
        #[repr(align(4096))]
        struct Block([u8; 4096]);
        let mut bufs: Vec<Block> = (0..EAGER_DIRECT_BATCH).map(|_| Block([0xEE; 4096])).collect();
        for eager in [true, false] {
            e.eager_direct = eager;
            let mut ids = Vec::new();
            for (i, b) in bufs.iter_mut().enumerate() {
                b.0.fill(0xEE);
                let op = Op::Pread {
                    fd,
                    buf: b.0.as_mut_ptr(),
                    len: 4096,
                    off: (i as u64 + 3) * 4096,
                };
                // SAFETY: the buffer outlives the operation (waited for below).
                let Submitted::Pending(id) = (unsafe { e.submit(op, 1 as Waiter) }).unwrap() else {
                    panic!("an O_DIRECT ring read is pending");
                };
                ids.push(id);
                if i + 1 < EAGER_DIRECT_BATCH {
                    assert_eq!(e.queued, i + 1, "eager {eager}: read {i} waits in the queue");
                }
            }
            let want_queued = if eager { 0 } else { EAGER_DIRECT_BATCH };
            assert_eq!(
                e.queued, want_queued,
                "eager {eager}: the batch went to the kernel at once"
            );
            let mut out = Vec::new();
            for _ in 0..200 {
                if ids.iter().all(|id| out.iter().any(|c: &Completion| c.id == *id)) {
                    break;
                }
                e.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
            }
            for (i, id) in ids.iter().enumerate() {
                let c = out.iter().find(|c| c.id == *id).expect("every read completes");
                assert_eq!(c.result, 4096, "eager {eager}: read {i}");
                assert!(
                    bufs[i].0.iter().all(|&x| x == i as u8 + 3),
                    "eager {eager}: read {i}'s data"
                );
            }
        }
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
        let _ = std::fs::remove_file(&path);
    }
}
