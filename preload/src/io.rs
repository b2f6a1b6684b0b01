//! Reads and writes: read, write, readv, writev, recv*, send*, and the
//! `_FORTIFY_SOURCE` variants; plus the helpers every fd hook shares.

use core::ffi::{c_int, c_void};
use libc::{iovec, msghdr, size_t, sockaddr, socklen_t, ssize_t};

use crate::fdtab::{self, KNOWN, MORE, Probe, REGULAR, SOCKET, UNDER_NB, USER_NB};
use crate::photon::{self, FOREVER};
use crate::{active, errno, real, set_errno};

/// Hooks that have no entry of their own in [`real`].
pub const EXTRA_NAMES: &[&str] = &[
    "__read_chk",
    "__recv_chk",
    "__recvfrom_chk",
    "__poll_chk",
    "__ppoll_chk",
    "pread64",
    "pwrite64",
    "preadv64",
    "pwritev64",
    "fcntl",
    "fcntl64",
    "ioctl",
    "accept",
    "close",
    "pipe",
];

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    In,
    Out,
}

impl Dir {
    fn poll_events(self) -> i16 {
        match self {
            Dir::In => libc::POLLIN,
            Dir::Out => libc::POLLOUT,
        }
    }
}

/// The fd's SO_RCVTIMEO / SO_SNDTIMEO in microseconds, 0 for none.
pub fn sock_timeout_us(fd: c_int, dir: Dir) -> u64 {
    fdtab::entry(fd).map_or(0, |e| match dir {
        Dir::In => e.rcv_us.load(core::sync::atomic::Ordering::Relaxed),
        Dir::Out => e.snd_us.load(core::sync::atomic::Ordering::Relaxed),
    })
}

/// The timeout of a photon call standing in for a blocking call.
fn photon_timeout(fd: c_int, dir: Dir) -> u64 {
    match sock_timeout_us(fd, dir) {
        0 => FOREVER,
        t => t,
    }
}

/// How a call on `fd` is to be made.
pub enum Route {
    /// In a photon thread, on an fd the program sees as blocking: a photon
    /// call with this timeout.
    Photon(u64),
    /// libc as it is.
    Real,
    /// Off a photon thread, on an fd the program sees as blocking but that
    /// is non-blocking underneath: libc plus a poll wait, until this
    /// deadline (`photon_now_us`; FOREVER for none).
    Emulate(u64),
    /// Fails at once with this errno (a closed fd).
    Fail(c_int),
}

/// Chooses the route of a call on `fd` in direction `dir`; `nonblocking`
/// is a per-call MSG_DONTWAIT.
pub fn route(fd: c_int, dir: Dir, nonblocking: bool) -> Route {
    if nonblocking {
        return Route::Real;
    }
    if active() {
        return match fdtab::probe(fd) {
            Probe::Known(f) if f & REGULAR != 0 => Route::Photon(FOREVER),
            Probe::Known(f) if f & USER_NB == 0 => Route::Photon(photon_timeout(fd, dir)),
            Probe::Bad(e) => Route::Fail(e),
            _ => Route::Real,
        };
    }
    if fdtab::known(fd) & (KNOWN | USER_NB | UNDER_NB) == KNOWN | UNDER_NB {
        let t = sock_timeout_us(fd, dir);
        let deadline = if t == 0 {
            FOREVER
        } else {
            // SAFETY: a clock read.
            (unsafe { photon::photon_now_us() }) + t
        };
        Route::Emulate(deadline)
    } else {
        Route::Real
    }
}

/// Waits with libc's poll until `fd` is ready for `dir` or `deadline`
/// passes: Ok(true) ready, Ok(false) timed out, Err on EINTR and the like.
pub fn poll_until(fd: c_int, dir: Dir, deadline: u64) -> Result<bool, ()> {
    let mut p = libc::pollfd {
        fd,
        events: dir.poll_events(),
        revents: 0,
    };
    let ms = if deadline == FOREVER {
        -1
    } else {
        // SAFETY: a clock read.
        let now = unsafe { photon::photon_now_us() };
        deadline.saturating_sub(now).div_ceil(1000).min(i32::MAX as u64) as c_int
    };
    // SAFETY: one live pollfd.
    match unsafe { real::poll(&mut p, 1, ms) } {
        0 => Ok(false),
        n if n > 0 => Ok(true),
        _ => Err(()),
    }
}

/// A photon call's result as libc gives it: a timeout (SO_RCVTIMEO or
/// SO_SNDTIMEO) is `code` (EAGAIN; EINPROGRESS for connect), and an fd
/// closed under the waiting thread (libphoton's ECANCELED) is EBADF.
pub fn libc_result(r: ssize_t, code: c_int) -> ssize_t {
    if r < 0 {
        match errno() {
            libc::ETIMEDOUT => set_errno(code),
            libc::ECANCELED => set_errno(libc::EBADF),
            _ => {}
        }
    }
    r
}

/// Direct reads in a row (per thread) before one goes the photon way, so
/// a thread that always finds data still lets the vcpu's others run.
const DIRECT_STREAK: u32 = 32;

thread_local! {
    static STREAK: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
}

/// False with `PHOTON_PRELOAD_DIRECT_READ=0` (read once): reads always go
/// the photon way.
fn direct_read_wanted() -> bool {
    use core::sync::atomic::{AtomicU8, Ordering::Relaxed};
    static WANTED: AtomicU8 = AtomicU8::new(0); // 0 not read, 1 no, 2 yes
    match WANTED.load(Relaxed) {
        1 => false,
        2 => true,
        _ => {
            // SAFETY: getenv with a NUL-terminated name; the result is read at once.
            let v = unsafe { libc::getenv(c"PHOTON_PRELOAD_DIRECT_READ".as_ptr()) };
            // SAFETY: getenv returned a NUL-terminated string.
            let off = !v.is_null() && unsafe { core::ffi::CStr::from_ptr(v) }.to_bytes() == b"0";
            WANTED.store(if off { 1 } else { 2 }, Relaxed);
            !off
        }
    }
}

/// True if the calling vcpu's engine is io_uring.
fn on_uring() -> bool {
    // SAFETY: a libphoton query; a static NUL-terminated string or NULL.
    let p = unsafe { photon::photon_engine_name() };
    // SAFETY: non-NULL: a static string of at least one byte.
    !p.is_null() && unsafe { *p } == b'i' as core::ffi::c_char
}

/// With `PHOTON_PRELOAD_THREADS=photon` on io_uring: a read on a stream
/// socket whose last read returned all it asked for (`MORE`) is made as
/// the plain non-blocking syscall `real()` first. A program that reads a
/// line a byte at a time then pays one syscall per byte, as the epoll
/// engine does, instead of a ring operation, a park and a wake-up each
/// (the ring runs every read it is given, data there or not). None: go the
/// photon way (no hint, the socket was drained: EAGAIN, or the streak is
/// over). Threads mode only: there, no photon interrupt can be pending for
/// the direct call to miss (pthread cancellation is refused).
fn direct_first(fd: c_int, want: usize, real: &mut impl FnMut() -> ssize_t) -> Option<ssize_t> {
    if want == 0
        || fdtab::known(fd) & (SOCKET | MORE) != SOCKET | MORE
        || !crate::threads::enabled()
        || !direct_read_wanted()
        || !on_uring()
    {
        return None;
    }
    let streak = STREAK.with(|s| {
        let n = s.get() + 1;
        s.set(if n >= DIRECT_STREAK { 0 } else { n });
        n
    });
    if streak >= DIRECT_STREAK {
        return None;
    }
    let r = real();
    if r < 0 && errno() == libc::EAGAIN {
        fdtab::set_more(fd, false);
        return None;
    }
    note_read(fd, want, r);
    Some(r)
}

/// Records whether a read of `want` bytes on a socket that returned `r`
/// left the socket probably holding more.
fn note_read(fd: c_int, want: usize, r: ssize_t) {
    if want > 0 && fdtab::known(fd) & SOCKET != 0 {
        fdtab::set_more(fd, r > 0 && r as usize == want);
    }
}

/// One blocking-style input call of `want` bytes (0: not said): the photon
/// call `ph(timeout)`, or libc's `real()` (repeated after poll waits when
/// emulating a blocking fd).
pub fn input(
    fd: c_int,
    nonblocking: bool,
    want: usize,
    ph: impl FnOnce(u64) -> ssize_t,
    mut real: impl FnMut() -> ssize_t,
) -> ssize_t {
    match route(fd, Dir::In, nonblocking) {
        Route::Photon(t) => {
            if let Some(r) = direct_first(fd, want, &mut real) {
                return r;
            }
            let r = libc_result(ph(t), libc::EAGAIN);
            note_read(fd, want, r);
            r
        }
        Route::Real => real(),
        Route::Fail(e) => {
            set_errno(e);
            -1
        }
        Route::Emulate(deadline) => emulate(fd, Dir::In, deadline, &mut real),
    }
}

fn emulate(fd: c_int, dir: Dir, deadline: u64, real: &mut impl FnMut() -> ssize_t) -> ssize_t {
    loop {
        let r = real();
        if r >= 0 || errno() != libc::EAGAIN {
            return r;
        }
        match poll_until(fd, dir, deadline) {
            Ok(true) => {}
            Ok(false) => {
                set_errno(libc::EAGAIN);
                return -1;
            }
            Err(()) => return -1,
        }
    }
}

/// Flags of a call that writes: per-call MSG_DONTWAIT, MSG_NOSIGNAL.
#[derive(Clone, Copy)]
pub struct OutFlags {
    pub nonblocking: bool,
    pub nosignal: bool,
}

impl OutFlags {
    /// write/writev: neither.
    pub const PLAIN: OutFlags = OutFlags {
        nonblocking: false,
        nosignal: false,
    };

    /// send/sendto/sendmsg `flags`.
    pub fn of(flags: c_int) -> OutFlags {
        OutFlags {
            nonblocking: flags & libc::MSG_DONTWAIT != 0,
            nosignal: flags & libc::MSG_NOSIGNAL != 0,
        }
    }
}

/// libphoton never lets a socket raise SIGPIPE; libc's write and send do
/// (unless MSG_NOSIGNAL): raise it as the kernel would, on this thread.
fn sigpipe_as_libc(fd: c_int, flags: OutFlags) {
    if !flags.nosignal && errno() == libc::EPIPE && fdtab::known(fd) & fdtab::SOCKET != 0 {
        // SAFETY: signals the calling thread; errno is kept.
        unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGPIPE) };
        set_errno(libc::EPIPE);
    }
}

/// One blocking-style output call of `total` bytes. On a blocking fd it
/// goes on until every byte is written (as a blocking write does), calling
/// `ph(done, timeout)` or `real(done)` for the rest after `done` bytes; a
/// failure after some bytes returns their count.
pub fn output(
    fd: c_int,
    total: usize,
    flags: OutFlags,
    mut ph: impl FnMut(usize, u64) -> ssize_t,
    mut real: impl FnMut(usize) -> ssize_t,
) -> ssize_t {
    let route = route(fd, Dir::Out, flags.nonblocking);
    let mut done = 0usize;
    loop {
        let r = match route {
            Route::Real => return real(0),
            Route::Fail(e) => {
                set_errno(e);
                return -1;
            }
            Route::Photon(t) => {
                let r = libc_result(ph(done, t), libc::EAGAIN);
                if r < 0 {
                    sigpipe_as_libc(fd, flags);
                }
                r
            }
            Route::Emulate(deadline) => emulate(fd, Dir::Out, deadline, &mut || real(done)),
        };
        if r < 0 {
            return if done > 0 { done as ssize_t } else { r };
        }
        done += r as usize;
        if done >= total || r == 0 {
            return done as ssize_t;
        }
    }
}

/// What is left of `iov` after its first `skip` bytes, for the rest of a
/// partial vectored write, without allocating (a hook must not: the
/// program may be inside malloc or a signal handler): the iovecs after the
/// one `skip` ends in, used in place; or, when `skip` ends inside an iovec,
/// just that iovec's remainder (the write loop comes back for the rest).
pub struct IovRest {
    head: iovec,
    partial: bool,
    tail: *const iovec,
    tail_n: c_int,
}

impl IovRest {
    /// # Safety
    /// `iov` holds `n` valid iovecs.
    pub unsafe fn new(iov: *const iovec, n: c_int, mut skip: usize) -> IovRest {
        let all = if iov.is_null() || n <= 0 {
            &[][..]
        } else {
            // SAFETY: per the contract.
            unsafe { core::slice::from_raw_parts(iov, n as usize) }
        };
        for (i, io) in all.iter().enumerate() {
            if skip >= io.iov_len {
                skip -= io.iov_len;
                continue;
            }
            if skip == 0 {
                return IovRest {
                    head: *io,
                    partial: false,
                    tail: io,
                    tail_n: (all.len() - i) as c_int,
                };
            }
            return IovRest {
                head: iovec {
                    // SAFETY: within the caller's buffer.
                    iov_base: unsafe { io.iov_base.cast::<u8>().add(skip) }.cast(),
                    iov_len: io.iov_len - skip,
                },
                partial: true,
                tail: core::ptr::null(),
                tail_n: 0,
            };
        }
        IovRest {
            head: iovec {
                iov_base: core::ptr::null_mut(),
                iov_len: 0,
            },
            partial: false,
            tail: all.as_ptr_range().end,
            tail_n: 0,
        }
    }

    pub fn ptr(&self) -> *const iovec {
        if self.partial { &self.head } else { self.tail }
    }

    pub fn len(&self) -> c_int {
        if self.partial { 1 } else { self.tail_n }
    }
}

/// Bytes in `n` iovecs (saturating; the kernel rejects too many anyway).
///
/// # Safety
/// `iov` holds `n` valid iovecs, or is NULL.
pub unsafe fn iov_total(iov: *const iovec, n: c_int) -> usize {
    if iov.is_null() || n <= 0 {
        return 0;
    }
    // SAFETY: per the contract.
    unsafe { core::slice::from_raw_parts(iov, n as usize) }
        .iter()
        .fold(0usize, |a, io| a.saturating_add(io.iov_len))
}

/// A vectored write of `iov` that resumes after partial progress.
///
/// # Safety
/// `iov` holds `n` valid iovecs.
unsafe fn output_v(
    fd: c_int,
    iov: *const iovec,
    n: c_int,
    flags: OutFlags,
    ph: impl Fn(*const iovec, c_int, u64) -> ssize_t,
    real: impl Fn(*const iovec, c_int) -> ssize_t,
) -> ssize_t {
    // SAFETY: per the contract.
    let total = unsafe { iov_total(iov, n) };
    // SAFETY: per the contract (the rest is rebuilt only after progress).
    let rest = |done: usize| (done > 0).then(|| unsafe { IovRest::new(iov, n, done) });
    output(
        fd,
        total,
        flags,
        |done, t| match rest(done) {
            None => ph(iov, n, t),
            Some(r) => ph(r.ptr(), r.len(), t),
        },
        |done| match rest(done) {
            None => real(iov, n),
            Some(r) => real(r.ptr(), r.len()),
        },
    )
}

fn dontwait(flags: c_int) -> bool {
    flags & libc::MSG_DONTWAIT != 0
}

/// The hooked `read` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t {
    crate::boundary(-1, || {
        // SAFETY: the caller's buffer, as libc's read takes it.
        unsafe {
            input(
                fd,
                false,
                n,
                |t| photon::photon_read(fd, buf, n, t),
                || real::read(fd, buf, n),
            )
        }
    })
}

/// The hooked `write` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t {
    crate::boundary(-1, || {
        let at = |done: usize| buf.cast::<u8>().wrapping_add(done).cast::<c_void>();
        // SAFETY: the caller's buffer, as libc's write takes it.
        unsafe {
            output(
                fd,
                n,
                OutFlags::PLAIN,
                |done, t| photon::photon_write(fd, at(done), n - done, t),
                |done| real::write(fd, at(done), n - done),
            )
        }
    })
}

/// The hooked `readv` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const iovec, n: c_int) -> ssize_t {
    crate::boundary(-1, || {
        // SAFETY: the caller's iovecs.
        unsafe {
            input(
                fd,
                false,
                iov_total(iov, n),
                |t| photon::photon_readv(fd, iov, n, t),
                || real::readv(fd, iov, n),
            )
        }
    })
}

/// The hooked `writev` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, n: c_int) -> ssize_t {
    crate::boundary(-1, || {
        // SAFETY: the caller's iovecs.
        unsafe {
            output_v(
                fd,
                iov,
                n,
                OutFlags::PLAIN,
                |v, k, t| photon::photon_writev(fd, v, k, t),
                |v, k| real::writev(fd, v, k),
            )
        }
    })
}

/// recv and recvfrom with MSG_WAITALL: on a blocking stream socket, go on
/// until `n` bytes, the end of the stream, or an error.
fn wait_all(n: size_t, flags: c_int, mut once: impl FnMut(usize) -> ssize_t) -> ssize_t {
    let mut done = 0usize;
    loop {
        let r = once(done);
        if r < 0 {
            return if done > 0 { done as ssize_t } else { r };
        }
        done += r as usize;
        if flags & libc::MSG_WAITALL == 0 || r == 0 || done >= n {
            return done as ssize_t;
        }
    }
}

/// The hooked `recv` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int) -> ssize_t {
    crate::boundary(-1, || {
        let at = |done: usize| buf.cast::<u8>().wrapping_add(done).cast::<c_void>();
        wait_all(n, flags, |done| {
            // SAFETY: the caller's buffer, as libc's recv takes it.
            unsafe {
                input(
                    fd,
                    dontwait(flags),
                    n - done,
                    |t| photon::photon_recv(fd, at(done), n - done, flags, t),
                    || real::recv(fd, at(done), n - done, flags),
                )
            }
        })
    })
}

/// The hooked `recvfrom` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> ssize_t {
    crate::boundary(-1, || {
        let at = |done: usize| buf.cast::<u8>().wrapping_add(done).cast::<c_void>();
        wait_all(n, flags, |done| {
            // SAFETY: the caller's buffer and address, as libc's recvfrom takes them.
            unsafe {
                input(
                    fd,
                    dontwait(flags),
                    n - done,
                    |t| photon::photon_recvfrom(fd, at(done), n - done, flags, addr, len, t),
                    || real::recvfrom(fd, at(done), n - done, flags, addr, len),
                )
            }
        })
    })
}

/// The hooked `recvmsg` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    crate::boundary(-1, || {
        // SAFETY: the caller's message, as libc's recvmsg takes it.
        unsafe {
            input(
                fd,
                dontwait(flags),
                0,
                |t| photon::photon_recvmsg(fd, msg, flags, t),
                || real::recvmsg(fd, msg, flags),
            )
        }
    })
}

/// The hooked `send` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t {
    crate::boundary(-1, || {
        let at = |done: usize| buf.cast::<u8>().wrapping_add(done).cast::<c_void>();
        // SAFETY: the caller's buffer, as libc's send takes it.
        unsafe {
            output(
                fd,
                n,
                OutFlags::of(flags),
                |done, t| photon::photon_send(fd, at(done), n - done, flags, t),
                |done| real::send(fd, at(done), n - done, flags),
            )
        }
    })
}

/// The hooked `sendto` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    flags: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> ssize_t {
    crate::boundary(-1, || {
        let at = |done: usize| buf.cast::<u8>().wrapping_add(done).cast::<c_void>();
        // SAFETY: the caller's buffer and address, as libc's sendto takes them.
        unsafe {
            output(
                fd,
                n,
                OutFlags::of(flags),
                |done, t| photon::photon_sendto(fd, at(done), n - done, flags, addr, len, t),
                |done| real::sendto(fd, at(done), n - done, flags, addr, len),
            )
        }
    })
}

/// `m` sending the iovecs `v[..k]` instead of its own: the rest of a
/// partial send, without the ancillary data that went with the first part.
fn rest_of(m: &msghdr, v: *const iovec, k: c_int) -> msghdr {
    let mut part = *m;
    if v != m.msg_iov.cast_const() {
        part.msg_control = core::ptr::null_mut();
        part.msg_controllen = 0;
    }
    part.msg_iov = v.cast_mut();
    part.msg_iovlen = k as _;
    part
}

/// The hooked `sendmsg` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    crate::boundary(-1, || {
        if msg.is_null() {
            // SAFETY: libc reports EFAULT.
            return unsafe { real::sendmsg(fd, msg, flags) };
        }
        // SAFETY: the caller's message; a partial send resumes with a copy
        // whose iovecs skip what was sent (ancillary data went with the first).
        unsafe {
            let m = &*msg;
            output_v(
                fd,
                m.msg_iov,
                m.msg_iovlen as c_int,
                OutFlags::of(flags),
                |v, k, t| photon::photon_sendmsg(fd, &rest_of(m, v, k), flags, t),
                |v, k| real::sendmsg(fd, &rest_of(m, v, k), flags),
            )
        }
    })
}

unsafe extern "C" {
    fn __chk_fail() -> !;
}

/// The hooked `__read_chk` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __read_chk(fd: c_int, buf: *mut c_void, n: size_t, buflen: size_t) -> ssize_t {
    crate::boundary(-1, || {
        if n > buflen {
            // SAFETY: glibc's fortify failure report; does not return.
            unsafe { __chk_fail() }
        }
        // SAFETY: checked against the buffer's size.
        unsafe { read(fd, buf, n) }
    })
}

/// The hooked `__recv_chk` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __recv_chk(fd: c_int, buf: *mut c_void, n: size_t, buflen: size_t, flags: c_int) -> ssize_t {
    crate::boundary(-1, || {
        if n > buflen {
            // SAFETY: as in __read_chk.
            unsafe { __chk_fail() }
        }
        // SAFETY: checked against the buffer's size.
        unsafe { recv(fd, buf, n, flags) }
    })
}

/// The hooked `__recvfrom_chk` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __recvfrom_chk(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    buflen: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> ssize_t {
    crate::boundary(-1, || {
        if n > buflen {
            // SAFETY: as in __read_chk.
            unsafe { __chk_fail() }
        }
        // SAFETY: checked against the buffer's size.
        unsafe { recvfrom(fd, buf, n, flags, addr, len) }
    })
}
