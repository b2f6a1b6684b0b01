//! Reader-writer locks, reimplemented for every thread on the
//! `pthread_rwlock_t`'s 56 bytes (glibc compares the writer with the OS
//! tid and waits in the kernel).
//!
//! Words: 0 state (readers, plus [`WRITER`]), 1 waiters inside, 2 plain
//! waiters inside (a release makes a futex syscall only when there are
//! some), 3 the sequence number waiters sleep on, 4 writers waiting, 6 the
//! writer's owner id (glibc's `__cur_writer`), 7 process-shared (glibc's
//! `__shared`), 12 the kind (glibc's `__flags`: so
//! `PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP` works). Zeros is
//! `PTHREAD_RWLOCK_INITIALIZER`. Reader-preferring, except
//! `PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP`, where readers wait while
//! a writer waits (as glibc).
//!
//! A waiter counts itself in, reads the sequence number, tries again, and
//! sleeps while the number is unchanged; a release that frees the lock
//! increments it and wakes everyone (they compete again).

use core::ffi::c_int;
use core::sync::atomic::{AtomicI32, AtomicU32, Ordering::*};
use libc::{clockid_t, pthread_rwlock_t, pthread_rwlockattr_t, timespec};

use super::{Abs, KeepErrno, Woke, clock_ok, enabled, iword, me, repend, tid, wait, wake, word};
use crate::real;

const WRITER: u32 = 1 << 31;
const MAX_READERS: u32 = (1 << 30) - 1;
const PREFER_WRITER_NONRECURSIVE: u32 = 2;
const WORDS: usize = 14; // 56 bytes

struct L(*mut pthread_rwlock_t);

impl L {
    fn w(&self, i: usize) -> &AtomicU32 {
        // SAFETY: a pthread_rwlock_t has 14 aligned words.
        unsafe { word(self.0, i) }
    }
    fn state(&self) -> &AtomicU32 {
        self.w(0)
    }
    fn waiters(&self) -> &AtomicU32 {
        self.w(1)
    }
    fn plain(&self) -> &AtomicU32 {
        self.w(2)
    }
    fn seq(&self) -> &AtomicU32 {
        self.w(3)
    }
    fn writers_waiting(&self) -> &AtomicU32 {
        self.w(4)
    }
    fn writer(&self) -> &AtomicI32 {
        // SAFETY: as above, word 6.
        unsafe { iword(self.0, 6) }
    }
    fn shared(&self) -> bool {
        self.w(7).load(Relaxed) != 0
    }
    fn prefer_writer(&self) -> bool {
        self.w(12).load(Relaxed) == PREFER_WRITER_NONRECURSIVE
    }

    /// One attempt; Err(EBUSY) to wait, Err(EAGAIN) for too many readers.
    fn try_take(&self, write: bool) -> Result<(), c_int> {
        let s = self.state();
        let mut v = s.load(Relaxed);
        loop {
            let new = if write {
                if v != 0 {
                    return Err(libc::EBUSY);
                }
                WRITER
            } else {
                if v & WRITER != 0 || (self.prefer_writer() && self.writers_waiting().load(SeqCst) != 0) {
                    return Err(libc::EBUSY);
                }
                if v == MAX_READERS {
                    return Err(libc::EAGAIN);
                }
                v + 1
            };
            match s.compare_exchange_weak(v, new, SeqCst, Relaxed) {
                Ok(_) => return Ok(()),
                Err(now) => v = now,
            }
        }
    }

    /// Wakes every waiter if any is inside (after the state changed).
    fn wake_all(&self) {
        if self.waiters().load(SeqCst) != 0 {
            self.seq().fetch_add(1, SeqCst);
            let plain = self.plain().load(SeqCst) != 0;
            wake(self.seq(), c_int::MAX, self.shared(), plain);
        }
    }
}

/// The calling thread's owner id: photon (Some) or plain tid.
fn who() -> (i32, bool) {
    match me() {
        Some(id) => (id, true),
        None => (tid(), false),
    }
}

fn take(rw: *mut pthread_rwlock_t, write: bool, abs: Option<Abs>) -> c_int {
    let _e = KeepErrno::new();
    let l = L(rw);
    let (id, photon) = who();
    if l.writer().load(Relaxed) == id && l.state().load(Relaxed) & WRITER != 0 {
        return libc::EDEADLK;
    }
    if abs.is_some_and(|a| !a.valid() || !clock_ok(a.clock)) {
        return libc::EINVAL;
    }
    let r = match l.try_take(write) {
        Err(libc::EBUSY) => wait_take(&l, write, photon, abs.as_ref()),
        r => r,
    };
    match r {
        Ok(()) => {
            if write {
                l.writer().store(id, Relaxed);
            }
            0
        }
        Err(e) => e,
    }
}

fn wait_take(l: &L, write: bool, photon: bool, abs: Option<&Abs>) -> Result<(), c_int> {
    l.waiters().fetch_add(1, SeqCst);
    if !photon {
        l.plain().fetch_add(1, SeqCst);
    }
    if write {
        l.writers_waiting().fetch_add(1, SeqCst);
    }
    let mut interrupted = 0;
    let r = loop {
        let seq = l.seq().load(SeqCst);
        match l.try_take(write) {
            Err(libc::EBUSY) => {}
            r => break r,
        }
        match wait(l.seq(), seq, photon, l.shared(), abs) {
            Woke::Again => {}
            Woke::Interrupted(e) => {
                if photon {
                    interrupted = e;
                }
            }
            Woke::TimedOut => {
                break match l.try_take(write) {
                    Err(libc::EBUSY) => Err(libc::ETIMEDOUT),
                    r => r,
                };
            }
        }
    };
    if write {
        l.writers_waiting().fetch_sub(1, SeqCst);
    }
    if !photon {
        l.plain().fetch_sub(1, SeqCst);
    }
    l.waiters().fetch_sub(1, SeqCst);
    if write && r.is_err() && l.prefer_writer() {
        l.wake_all(); // readers held back by this writer may go
    }
    if interrupted != 0 {
        repend(interrupted);
    }
    r
}

fn try_take(rw: *mut pthread_rwlock_t, write: bool) -> c_int {
    let l = L(rw);
    let (id, _) = who();
    if !write && l.writer().load(Relaxed) == id && l.state().load(Relaxed) & WRITER != 0 {
        return libc::EDEADLK;
    }
    match l.try_take(write) {
        Ok(()) => {
            if write {
                l.writer().store(id, Relaxed);
            }
            0
        }
        Err(e) => e,
    }
}

macro_rules! hook {
    ($(#[$doc:meta])* $name:ident ($rw:ident $(, $arg:ident : $ty:ty)*) => $body:expr) => {
        $(#[$doc])*
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($rw: *mut pthread_rwlock_t $(, $arg: $ty)*) -> c_int {
            crate::boundary(libc::ENOTRECOVERABLE, || {
                if !enabled() {
                    // SAFETY: the caller's arguments, for glibc.
                    return unsafe { real::$name($rw $(, $arg)*) };
                }
                $body
            })
        }
    };
}

hook!(
    /// `pthread_rwlock_init`: kind and process-shared from the attribute.
    pthread_rwlock_init(rw, attr: *const pthread_rwlockattr_t) => {
        let (mut kind, mut pshared) = (0, libc::PTHREAD_PROCESS_PRIVATE);
        if !attr.is_null() {
            // SAFETY: the caller's attribute object.
            unsafe {
                libc::pthread_rwlockattr_getkind_np(attr, &mut kind);
                libc::pthread_rwlockattr_getpshared(attr, &mut pshared);
            }
        }
        let l = L(rw);
        for i in 0..WORDS {
            l.w(i).store(0, Relaxed);
        }
        l.w(7).store((pshared != libc::PTHREAD_PROCESS_PRIVATE) as u32, Relaxed);
        l.w(12).store(kind as u32, Relaxed);
        0
    }
);

hook!(
    /// `pthread_rwlock_destroy`: nothing to free.
    pthread_rwlock_destroy(rw) => 0
);

hook!(
    /// `pthread_rwlock_rdlock`: a photon wait in a photon thread.
    pthread_rwlock_rdlock(rw) => take(rw, false, None)
);

hook!(
    /// `pthread_rwlock_wrlock`: a photon wait in a photon thread; EDEADLK
    /// when the caller (this photon thread) holds it for writing.
    pthread_rwlock_wrlock(rw) => take(rw, true, None)
);

hook!(
    /// `pthread_rwlock_tryrdlock`: EBUSY while a writer holds it.
    pthread_rwlock_tryrdlock(rw) => try_take(rw, false)
);

hook!(
    /// `pthread_rwlock_trywrlock`: EBUSY while anyone holds it.
    pthread_rwlock_trywrlock(rw) => try_take(rw, true)
);

hook!(
    /// `pthread_rwlock_timedrdlock` (CLOCK_REALTIME deadline).
    pthread_rwlock_timedrdlock(rw, abstime: *const timespec) => {
        // SAFETY: the caller's timespec.
        take(rw, false, unsafe { Abs::new(libc::CLOCK_REALTIME, abstime) })
    }
);

hook!(
    /// `pthread_rwlock_timedwrlock` (CLOCK_REALTIME deadline).
    pthread_rwlock_timedwrlock(rw, abstime: *const timespec) => {
        // SAFETY: the caller's timespec.
        take(rw, true, unsafe { Abs::new(libc::CLOCK_REALTIME, abstime) })
    }
);

hook!(
    /// `pthread_rwlock_clockrdlock`.
    pthread_rwlock_clockrdlock(rw, clock: clockid_t, abstime: *const timespec) => {
        if !clock_ok(clock) {
            return libc::EINVAL;
        }
        // SAFETY: the caller's timespec.
        take(rw, false, unsafe { Abs::new(clock, abstime) })
    }
);

hook!(
    /// `pthread_rwlock_clockwrlock`.
    pthread_rwlock_clockwrlock(rw, clock: clockid_t, abstime: *const timespec) => {
        if !clock_ok(clock) {
            return libc::EINVAL;
        }
        // SAFETY: the caller's timespec.
        take(rw, true, unsafe { Abs::new(clock, abstime) })
    }
);

hook!(
    /// `pthread_rwlock_unlock`: releases a read or the write hold; EPERM if
    /// it is not held at all.
    pthread_rwlock_unlock(rw) => {
        let _e = KeepErrno::new();
        let l = L(rw);
        let s = l.state();
        let v = s.load(Relaxed);
        if v & WRITER != 0 {
            l.writer().store(0, Relaxed);
            s.store(0, SeqCst);
            l.wake_all();
        } else if v != 0 {
            if s.fetch_sub(1, SeqCst) == 1 {
                l.wake_all();
            }
        } else {
            return libc::EPERM;
        }
        0
    }
);
