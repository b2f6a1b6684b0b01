//! Waiting calls: poll, ppoll, select, pselect, epoll_wait, epoll_pwait
//! and the sleeps.
//!
//! In a photon thread the answer always comes from libc's own call made
//! with a zero timeout (so revents, fd_set contents, POLLNVAL and EINVAL
//! are exactly libc's); only the waiting between such checks is a photon
//! wait: `photon_wait_fd` on the one fd, or on a temporary epoll instance
//! holding all of them.

use core::ffi::{c_int, c_uint};
use libc::{nfds_t, pollfd, sigset_t, timespec, timeval};

use crate::photon::{self, FOREVER, READABLE, WRITABLE};
use crate::{active, errno, real, set_errno};

const ZERO: timespec = timespec { tv_sec: 0, tv_nsec: 0 };

fn now_us() -> u64 {
    // SAFETY: a clock read.
    unsafe { photon::photon_now_us() }
}

fn remaining(deadline: u64) -> u64 {
    if deadline == FOREVER {
        FOREVER
    } else {
        deadline.saturating_sub(now_us())
    }
}

/// An absolute deadline from a relative timeout in microseconds.
fn deadline_in(us: u64) -> u64 {
    now_us().saturating_add(us).min(FOREVER - 1)
}

/// A timespec as a deadline; None if it is invalid (EINVAL).
fn ts_deadline(ts: *const timespec) -> Option<u64> {
    if ts.is_null() {
        return Some(FOREVER);
    }
    // SAFETY: the caller's timespec.
    let ts = unsafe { *ts };
    if ts.tv_sec < 0 || !(0..1_000_000_000).contains(&ts.tv_nsec) {
        return None;
    }
    let us = (ts.tv_sec as u64)
        .saturating_mul(1_000_000)
        .saturating_add((ts.tv_nsec as u64).div_ceil(1000));
    Some(deadline_in(us))
}

enum Waited {
    /// Something may be ready: check again.
    Maybe,
    TimedOut,
    /// Interrupted (errno is set).
    Failed,
}

/// What `photon_wait_fd` said, as a [`Waited`].
fn waited(r: c_int) -> Waited {
    if r >= 0 {
        return Waited::Maybe;
    }
    match errno() {
        libc::ETIMEDOUT => Waited::TimedOut,
        // The fd was closed or is bad: the next check reports it.
        libc::ECANCELED | libc::EBADF => Waited::Maybe,
        _ => Waited::Failed,
    }
}

fn wait_events(events: i16) -> u32 {
    let mut w = 0;
    if events & (libc::POLLIN | libc::POLLPRI | libc::POLLRDNORM | libc::POLLRDBAND) != 0 {
        w |= READABLE;
    }
    if events & (libc::POLLOUT | libc::POLLWRNORM | libc::POLLWRBAND) != 0 {
        w |= WRITABLE;
    }
    w
}

fn epoll_events(events: i16) -> u32 {
    let mut e = (libc::EPOLLERR | libc::EPOLLHUP) as u32;
    if events & (libc::POLLIN | libc::POLLRDNORM | libc::POLLRDBAND) != 0 {
        e |= libc::EPOLLIN as u32;
    }
    if events & libc::POLLPRI != 0 {
        e |= libc::EPOLLPRI as u32;
    }
    if events & (libc::POLLOUT | libc::POLLWRNORM | libc::POLLWRBAND) != 0 {
        e |= libc::EPOLLOUT as u32;
    }
    if events & libc::POLLRDHUP != 0 {
        e |= libc::EPOLLRDHUP as u32;
    }
    e
}

/// The fds a wait is for, read in place: a poll array, or the three
/// fd_sets of a select (no copy into memory of the shim's own: a hook must
/// not allocate, the program may be inside malloc or a signal handler).
trait Fds {
    /// Calls `f` with each entry, in order.
    fn each(&self, f: impl FnMut(pollfd));
}

impl Fds for [pollfd] {
    fn each(&self, mut f: impl FnMut(pollfd)) {
        for p in self {
            f(*p);
        }
    }
}

/// The poll set equivalent to three fd_sets, for waiting only: an entry
/// for each fd below `n` set in any of them (POLLIN for `r`, POLLOUT for
/// `w`, POLLPRI for `e`), generated on the fly.
struct SelectSets<'a> {
    n: c_int,
    r: Option<&'a libc::fd_set>,
    w: Option<&'a libc::fd_set>,
    e: Option<&'a libc::fd_set>,
}

impl Fds for SelectSets<'_> {
    fn each(&self, mut f: impl FnMut(pollfd)) {
        let isset = |s: Option<&libc::fd_set>, fd: c_int| {
            // SAFETY: a whole fd_set; fd is below FD_SETSIZE.
            s.is_some_and(|s| unsafe { libc::FD_ISSET(fd, s) })
        };
        for fd in 0..self.n.clamp(0, libc::FD_SETSIZE as c_int) {
            let mut events = 0;
            if isset(self.r, fd) {
                events |= libc::POLLIN;
            }
            if isset(self.w, fd) {
                events |= libc::POLLOUT;
            }
            if isset(self.e, fd) {
                events |= libc::POLLPRI;
            }
            if events != 0 {
                f(pollfd { fd, events, revents: 0 });
            }
        }
    }
}

/// A temporary epoll instance watching every fd of a poll set.
struct Watch(c_int);

impl Watch {
    fn new<S: Fds + ?Sized>(fds: &S) -> Result<Watch, ()> {
        // SAFETY: epoll_create1 (not hooked) has no memory arguments.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(());
        }
        let w = Watch(ep);
        fds.each(|p| {
            if p.fd < 0 {
                return;
            }
            let mut ev = libc::epoll_event {
                events: epoll_events(p.events),
                u64: p.fd as u64,
            };
            // SAFETY: a live event struct.
            if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, p.fd, &mut ev) } < 0 && errno() == libc::EEXIST {
                // The same fd twice: widen its events.
                let mut all = 0;
                fds.each(|q| {
                    if q.fd == p.fd {
                        all |= epoll_events(q.events);
                    }
                });
                ev.events = all;
                // SAFETY: as above.
                unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_MOD, p.fd, &mut ev) };
            }
            // Other failures (EPERM for regular files: always ready) show
            // in the zero-timeout checks.
        });
        Ok(w)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let e = errno();
        // photon_close, so libphoton forgets the number it waited on.
        // SAFETY: our own epoll fd.
        unsafe { photon::photon_close(self.0) };
        set_errno(e);
    }
}

/// Waits in a photon thread until one of `fds` may be ready, or `deadline`.
fn wait_any<S: Fds + ?Sized>(fds: &S, deadline: u64, watch: &mut Option<Watch>) -> Waited {
    let t = remaining(deadline);
    let (mut entries, mut first, mut any_fd) = (0usize, None, false);
    fds.each(|p| {
        entries += 1;
        first.get_or_insert(p);
        any_fd |= p.fd >= 0;
    });
    if let (1, Some(p)) = (entries, first)
        && p.fd >= 0
        && wait_events(p.events) != 0
    {
        // SAFETY: no memory arguments.
        return waited(unsafe { photon::photon_wait_fd(p.fd, wait_events(p.events), t) });
    }
    if !any_fd {
        // Nothing to wait for: sleep out the timeout.
        // SAFETY: no memory arguments.
        return match unsafe { photon::photon_thread_usleep(t) } {
            0 => Waited::TimedOut,
            _ => Waited::Failed,
        };
    }
    if watch.is_none() {
        match Watch::new(fds) {
            Ok(w) => *watch = Some(w),
            Err(()) => return Waited::Failed,
        }
    }
    let ep = watch.as_ref().map_or(-1, |w| w.0);
    // SAFETY: no memory arguments.
    waited(unsafe { photon::photon_wait_fd(ep, READABLE, t) })
}

/// poll/ppoll in a photon thread: zero-timeout checks with libc's ppoll,
/// photon waits between them.
///
/// # Safety
/// `fds` holds `n` pollfds.
unsafe fn photon_poll(fds: *mut pollfd, n: nfds_t, deadline: u64, mask: *const sigset_t) -> c_int {
    let mut watch = None;
    loop {
        // SAFETY: per the contract.
        let r = unsafe { real::ppoll(fds, n, &ZERO, mask) };
        if r != 0 {
            return r;
        }
        let set = if fds.is_null() || n == 0 {
            &[][..]
        } else {
            // SAFETY: per the contract; a copy of the set is not needed since
            // nothing else writes it during the wait.
            unsafe { core::slice::from_raw_parts(fds, n as usize) }
        };
        match wait_any(set, deadline, &mut watch) {
            Waited::Maybe => {}
            Waited::TimedOut => {
                // SAFETY: per the contract.
                return unsafe { real::ppoll(fds, n, &ZERO, mask) };
            }
            Waited::Failed => return -1,
        }
    }
}

/// The hooked `poll` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn poll(fds: *mut pollfd, n: nfds_t, timeout: c_int) -> c_int {
    crate::boundary(-1, || {
        if timeout == 0 || !active() {
            // SAFETY: the caller's set.
            return unsafe { real::poll(fds, n, timeout) };
        }
        let deadline = if timeout < 0 {
            FOREVER
        } else {
            deadline_in(timeout as u64 * 1000)
        };
        // SAFETY: the caller's set.
        unsafe { photon_poll(fds, n, deadline, core::ptr::null()) }
    })
}

/// The hooked `ppoll` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ppoll(fds: *mut pollfd, n: nfds_t, tmo: *const timespec, mask: *const sigset_t) -> c_int {
    crate::boundary(-1, || {
        let zero = !tmo.is_null() && {
            // SAFETY: the caller's timespec.
            let t = unsafe { *tmo };
            t.tv_sec == 0 && t.tv_nsec == 0
        };
        if zero || !active() {
            // SAFETY: the caller's arguments.
            return unsafe { real::ppoll(fds, n, tmo, mask) };
        }
        let Some(deadline) = ts_deadline(tmo) else {
            set_errno(libc::EINVAL);
            return -1;
        };
        // SAFETY: the caller's set.
        unsafe { photon_poll(fds, n, deadline, mask) }
    })
}

unsafe extern "C" {
    fn __chk_fail() -> !;
}

/// The hooked `__poll_chk` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __poll_chk(fds: *mut pollfd, n: nfds_t, timeout: c_int, fdslen: usize) -> c_int {
    crate::boundary(-1, || {
        if fdslen / core::mem::size_of::<pollfd>() < n as usize {
            // SAFETY: glibc's fortify failure report; does not return.
            unsafe { __chk_fail() }
        }
        // SAFETY: checked against the array's size.
        unsafe { poll(fds, n, timeout) }
    })
}

/// The hooked `__ppoll_chk` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __ppoll_chk(
    fds: *mut pollfd,
    n: nfds_t,
    tmo: *const timespec,
    mask: *const sigset_t,
    fdslen: usize,
) -> c_int {
    crate::boundary(-1, || {
        if fdslen / core::mem::size_of::<pollfd>() < n as usize {
            // SAFETY: as in __poll_chk.
            unsafe { __chk_fail() }
        }
        // SAFETY: checked against the array's size.
        unsafe { ppoll(fds, n, tmo, mask) }
    })
}

/// select/pselect in a photon thread: libc's pselect with a zero timeout on
/// copies of the sets decides; photon waits in between.
///
/// # Safety
/// As pselect's arguments.
unsafe fn photon_select(
    n: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    deadline: u64,
    mask: *const sigset_t,
) -> c_int {
    let mut watch = None;
    let copy = |s: *mut libc::fd_set| {
        // SAFETY: a NULL or valid set, copied whole (on the stack).
        (!s.is_null()).then(|| unsafe { *s })
    };
    let (r0, w0, e0) = (copy(r), copy(w), copy(e));
    let set = SelectSets {
        n,
        r: r0.as_ref(),
        w: w0.as_ref(),
        e: e0.as_ref(),
    };
    loop {
        let (mut r1, mut w1, mut e1) = (r0, w0, e0);
        let p = |s: &mut Option<libc::fd_set>| s.as_mut().map_or(core::ptr::null_mut(), |s| s as *mut _);
        // SAFETY: copies of the caller's sets.
        let k = unsafe { real::pselect(n, p(&mut r1), p(&mut w1), p(&mut e1), &ZERO, mask) };
        let timed_out = k == 0
            && match wait_any(&set, deadline, &mut watch) {
                Waited::Maybe => false,
                Waited::TimedOut => true,
                Waited::Failed => return -1,
            };
        if k != 0 || timed_out {
            if k >= 0 {
                for (dst, src) in [(r, r1), (w, w1), (e, e1)] {
                    if let Some(s) = src {
                        // SAFETY: the caller's set (non-NULL since copied).
                        unsafe { *dst = s };
                    }
                }
            }
            return k;
        }
    }
}

/// The hooked `select` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn select(
    n: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    tv: *mut timeval,
) -> c_int {
    crate::boundary(-1, || {
        let zero = !tv.is_null() && {
            // SAFETY: the caller's timeval.
            let t = unsafe { *tv };
            t.tv_sec == 0 && t.tv_usec == 0
        };
        if zero || !active() {
            // SAFETY: the caller's arguments.
            return unsafe { real::select(n, r, w, e, tv) };
        }
        let deadline = if tv.is_null() {
            FOREVER
        } else {
            // SAFETY: the caller's timeval.
            let t = unsafe { *tv };
            if t.tv_sec < 0 || !(0..1_000_000).contains(&t.tv_usec) {
                set_errno(libc::EINVAL);
                return -1;
            }
            deadline_in((t.tv_sec as u64).saturating_mul(1_000_000) + t.tv_usec as u64)
        };
        // SAFETY: the caller's sets.
        let k = unsafe { photon_select(n, r, w, e, deadline, core::ptr::null()) };
        if !tv.is_null() {
            // Linux's select leaves the time not slept in *tv.
            let left = remaining(deadline);
            // SAFETY: the caller's timeval.
            unsafe {
                (*tv).tv_sec = (left / 1_000_000) as libc::time_t;
                (*tv).tv_usec = (left % 1_000_000) as libc::suseconds_t;
            }
        }
        k
    })
}

/// The hooked `pselect` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pselect(
    n: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    tmo: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    crate::boundary(-1, || {
        let zero = !tmo.is_null() && {
            // SAFETY: the caller's timespec.
            let t = unsafe { *tmo };
            t.tv_sec == 0 && t.tv_nsec == 0
        };
        if zero || !active() {
            // SAFETY: the caller's arguments.
            return unsafe { real::pselect(n, r, w, e, tmo, mask) };
        }
        let Some(deadline) = ts_deadline(tmo) else {
            set_errno(libc::EINVAL);
            return -1;
        };
        // SAFETY: the caller's sets.
        unsafe { photon_select(n, r, w, e, deadline, mask) }
    })
}

/// epoll_wait/epoll_pwait in a photon thread: zero-timeout checks of the
/// program's epoll instance, photon waits on its fd in between.
///
/// # Safety
/// As epoll_pwait's arguments.
unsafe fn photon_epoll(
    ep: c_int,
    ev: *mut libc::epoll_event,
    max: c_int,
    deadline: u64,
    mask: *const sigset_t,
) -> c_int {
    loop {
        // SAFETY: per the contract.
        let r = unsafe { real::epoll_pwait(ep, ev, max, 0, mask) };
        if r != 0 {
            return r;
        }
        // SAFETY: no memory arguments.
        match waited(unsafe { photon::photon_wait_fd(ep, READABLE, remaining(deadline)) }) {
            Waited::Maybe => {}
            // SAFETY: per the contract.
            Waited::TimedOut => return unsafe { real::epoll_pwait(ep, ev, max, 0, mask) },
            Waited::Failed => return -1,
        }
    }
}

fn ms_deadline(timeout: c_int) -> u64 {
    if timeout < 0 {
        FOREVER
    } else {
        deadline_in(timeout as u64 * 1000)
    }
}

/// The hooked `epoll_wait` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_wait(ep: c_int, ev: *mut libc::epoll_event, max: c_int, timeout: c_int) -> c_int {
    crate::boundary(-1, || {
        if timeout == 0 || !active() {
            // SAFETY: the caller's arguments.
            return unsafe { real::epoll_wait(ep, ev, max, timeout) };
        }
        // SAFETY: the caller's arguments.
        unsafe { photon_epoll(ep, ev, max, ms_deadline(timeout), core::ptr::null()) }
    })
}

/// The hooked `epoll_pwait` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_pwait(
    ep: c_int,
    ev: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
    mask: *const sigset_t,
) -> c_int {
    crate::boundary(-1, || {
        if timeout == 0 || !active() {
            // SAFETY: the caller's arguments.
            return unsafe { real::epoll_pwait(ep, ev, max, timeout, mask) };
        }
        // SAFETY: the caller's arguments.
        unsafe { photon_epoll(ep, ev, max, ms_deadline(timeout), mask) }
    })
}

/// Sleeps a photon thread until `deadline`: Ok, or Err with errno set.
fn photon_sleep_until(deadline: u64) -> Result<(), ()> {
    // SAFETY: no memory arguments.
    match unsafe { photon::photon_thread_usleep(remaining(deadline)) } {
        0 => Ok(()),
        _ => Err(()),
    }
}

/// The hooked `sleep` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sleep(s: c_uint) -> c_uint {
    crate::boundary(s, || {
        if !active() {
            // SAFETY: no memory arguments.
            return unsafe { real::sleep(s) };
        }
        let deadline = deadline_in(s as u64 * 1_000_000);
        match photon_sleep_until(deadline) {
            Ok(()) => 0,
            Err(()) => remaining(deadline).div_ceil(1_000_000) as c_uint,
        }
    })
}

/// The hooked `usleep` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usleep(us: libc::useconds_t) -> c_int {
    crate::boundary(-1, || {
        if !active() {
            // SAFETY: no memory arguments.
            return unsafe { real::usleep(us) };
        }
        match photon_sleep_until(deadline_in(us as u64)) {
            Ok(()) => 0,
            Err(()) => -1,
        }
    })
}

/// Writes the time left until `deadline` into `rem` (if not NULL).
fn write_rem(rem: *mut timespec, deadline: u64) {
    if !rem.is_null() {
        let left = remaining(deadline);
        // SAFETY: the caller's timespec.
        unsafe {
            *rem = timespec {
                tv_sec: (left / 1_000_000) as libc::time_t,
                tv_nsec: ((left % 1_000_000) * 1000) as libc::c_long,
            }
        };
    }
}

/// The hooked `nanosleep` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nanosleep(req: *const timespec, rem: *mut timespec) -> c_int {
    crate::boundary(-1, || {
        if req.is_null() || !active() {
            // SAFETY: the caller's arguments (libc reports EFAULT for NULL).
            return unsafe { real::nanosleep(req, rem) };
        }
        let Some(deadline) = ts_deadline(req) else {
            set_errno(libc::EINVAL);
            return -1;
        };
        match photon_sleep_until(deadline) {
            Ok(()) => 0,
            Err(()) => {
                write_rem(rem, deadline);
                -1
            }
        }
    })
}

/// The hooked `clock_nanosleep` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clock_nanosleep(
    clock: libc::clockid_t,
    flags: c_int,
    req: *const timespec,
    rem: *mut timespec,
) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        let photon_clock = matches!(
            clock,
            libc::CLOCK_REALTIME | libc::CLOCK_MONOTONIC | libc::CLOCK_BOOTTIME | libc::CLOCK_TAI
        );
        if req.is_null() || !photon_clock || !active() {
            // SAFETY: the caller's arguments.
            return unsafe { real::clock_nanosleep(clock, flags, req, rem) };
        }
        // clock_nanosleep returns its error and leaves errno alone.
        let saved = errno();
        // SAFETY: the caller's timespec.
        let mut t = unsafe { *req };
        if t.tv_sec < 0 || !(0..1_000_000_000).contains(&t.tv_nsec) {
            return libc::EINVAL;
        }
        if flags & libc::TIMER_ABSTIME != 0 {
            let mut now = ZERO;
            // SAFETY: a live timespec.
            unsafe { libc::clock_gettime(clock, &mut now) };
            let ns = |x: timespec| x.tv_sec as i128 * 1_000_000_000 + x.tv_nsec as i128;
            let left = (ns(t) - ns(now)).max(0);
            t = timespec {
                tv_sec: (left / 1_000_000_000) as libc::time_t,
                tv_nsec: (left % 1_000_000_000) as libc::c_long,
            };
        }
        let deadline = ts_deadline(&t).unwrap_or(FOREVER);
        let r = match photon_sleep_until(deadline) {
            Ok(()) => 0,
            Err(()) => {
                if flags & libc::TIMER_ABSTIME == 0 {
                    write_rem(rem, deadline);
                }
                errno()
            }
        };
        set_errno(saved);
        r
    })
}
