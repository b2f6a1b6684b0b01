//! libc's own versions of the hooked functions, found with
//! `dlsym(RTLD_NEXT, name)`.
//!
//! Every one is resolved in the shim's constructor ([`resolve_all`]), before
//! the program runs; a call that arrives earlier (another library's
//! constructor) resolves lazily. `dlsym` may allocate and may, in principle,
//! call back into a hooked function: a thread-local flag catches that
//! re-entry, which then fails with `ENOSYS` instead of recursing. Nothing
//! here allocates.

use core::cell::Cell;
use core::ffi::{CStr, c_char, c_int, c_uint, c_void};
use core::sync::atomic::{AtomicUsize, Ordering::*};
use libc::{addrinfo, hostent, iovec, msghdr, nfds_t, pollfd, size_t, sockaddr, socklen_t, ssize_t, timespec};

thread_local! {
    static RESOLVING: Cell<bool> = const { Cell::new(false) };
}

/// The address of libc's `name`, cached in `slot`; 0 if it cannot be had
/// (re-entered during resolution, or missing).
#[inline]
fn resolve(slot: &AtomicUsize, name: &CStr) -> usize {
    let p = slot.load(Relaxed);
    if p != 0 {
        return p;
    }
    resolve_slow(slot, name)
}

#[cold]
fn resolve_slow(slot: &AtomicUsize, name: &CStr) -> usize {
    if RESOLVING.with(|r| r.replace(true)) {
        return 0; // dlsym called a hook: do not recurse
    }
    // SAFETY: a NUL-terminated name; RTLD_NEXT finds the definition after ours.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
    RESOLVING.with(|r| r.set(false));
    slot.store(p, Relaxed);
    p
}

/// What a function returns when its real version is missing.
pub trait Failure {
    const FAIL: Self;
}
impl Failure for c_int {
    const FAIL: Self = -1;
}
impl Failure for ssize_t {
    const FAIL: Self = -1;
}
impl Failure for c_uint {
    const FAIL: Self = 0;
}
impl Failure for libc::c_ulong {
    const FAIL: Self = 0;
}
impl<T> Failure for *mut T {
    const FAIL: Self = core::ptr::null_mut();
}

fn missing<T: Failure>() -> T {
    crate::set_errno(libc::ENOSYS);
    T::FAIL
}

macro_rules! real_fns {
    ($( fn $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> $ret:ty; )*) => {
        mod slots {
            use super::AtomicUsize;
            $( #[allow(non_upper_case_globals)] pub static $name: AtomicUsize = AtomicUsize::new(0); )*
        }
        $(
            #[allow(clippy::missing_safety_doc)]
            #[inline]
            pub unsafe fn $name($($arg: $ty),*) -> $ret {
                type F = unsafe extern "C" fn($($ty),*) -> $ret;
                match resolve(&slots::$name, &concat_cstr!($name)) {
                    0 => missing(),
                    // SAFETY: libc's symbol of this name has this signature.
                    p => unsafe { core::mem::transmute::<usize, F>(p)($($arg),*) },
                }
            }
        )*
        /// Resolves every function now (the shim's constructor).
        pub fn resolve_all() -> (usize, usize) {
            let mut found = 0;
            let mut total = 0;
            $(
                total += 1;
                found += (resolve(&slots::$name, &concat_cstr!($name)) != 0) as usize;
            )*
            (found, total)
        }
        /// The names of every hooked libc function.
        pub const NAMES: &[&str] = &[$(stringify!($name)),*];
    };
}

macro_rules! concat_cstr {
    ($name:ident) => {
        // SAFETY: the literal ends in NUL and has no other.
        unsafe { CStr::from_bytes_with_nul_unchecked(concat!(stringify!($name), "\0").as_bytes()) }
    };
}

real_fns! {
    fn read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t;
    fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t;
    fn readv(fd: c_int, iov: *const iovec, n: c_int) -> ssize_t;
    fn writev(fd: c_int, iov: *const iovec, n: c_int) -> ssize_t;
    fn recv(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int) -> ssize_t;
    fn send(fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t;
    fn recvfrom(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> ssize_t;
    fn sendto(fd: c_int, buf: *const c_void, n: size_t, flags: c_int, addr: *const sockaddr, len: socklen_t) -> ssize_t;
    fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t;
    fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t;
    fn accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int;
    fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
    fn poll(fds: *mut pollfd, n: nfds_t, timeout: c_int) -> c_int;
    fn ppoll(fds: *mut pollfd, n: nfds_t, timeout: *const timespec, mask: *const libc::sigset_t) -> c_int;
    fn select(n: c_int, r: *mut libc::fd_set, w: *mut libc::fd_set, e: *mut libc::fd_set, t: *mut libc::timeval) -> c_int;
    fn pselect(
        n: c_int,
        r: *mut libc::fd_set,
        w: *mut libc::fd_set,
        e: *mut libc::fd_set,
        t: *const timespec,
        mask: *const libc::sigset_t,
    ) -> c_int;
    fn epoll_wait(epfd: c_int, ev: *mut libc::epoll_event, max: c_int, timeout: c_int) -> c_int;
    fn epoll_pwait(epfd: c_int, ev: *mut libc::epoll_event, max: c_int, timeout: c_int, mask: *const libc::sigset_t) -> c_int;
    fn sleep(s: c_uint) -> c_uint;
    fn usleep(us: libc::useconds_t) -> c_int;
    fn nanosleep(req: *const timespec, rem: *mut timespec) -> c_int;
    fn clock_nanosleep(clock: libc::clockid_t, flags: c_int, req: *const timespec, rem: *mut timespec) -> c_int;
    fn pread(fd: c_int, buf: *mut c_void, n: size_t, off: libc::off_t) -> ssize_t;
    fn pwrite(fd: c_int, buf: *const c_void, n: size_t, off: libc::off_t) -> ssize_t;
    fn preadv(fd: c_int, iov: *const iovec, n: c_int, off: libc::off_t) -> ssize_t;
    fn pwritev(fd: c_int, iov: *const iovec, n: c_int, off: libc::off_t) -> ssize_t;
    fn fsync(fd: c_int) -> c_int;
    fn fdatasync(fd: c_int) -> c_int;
    fn dup(fd: c_int) -> c_int;
    fn dup2(fd: c_int, to: c_int) -> c_int;
    fn dup3(fd: c_int, to: c_int, flags: c_int) -> c_int;
    fn socket(domain: c_int, ty: c_int, proto: c_int) -> c_int;
    fn socketpair(domain: c_int, ty: c_int, proto: c_int, sv: *mut c_int) -> c_int;
    fn pipe2(fds: *mut c_int, flags: c_int) -> c_int;
    fn setsockopt(fd: c_int, level: c_int, name: c_int, val: *const c_void, len: socklen_t) -> c_int;
    fn getaddrinfo(node: *const c_char, service: *const c_char, hints: *const addrinfo, res: *mut *mut addrinfo) -> c_int;
    fn getnameinfo(
        addr: *const sockaddr,
        len: socklen_t,
        host: *mut c_char,
        hostlen: socklen_t,
        serv: *mut c_char,
        servlen: socklen_t,
        flags: c_int,
    ) -> c_int;
    fn gethostbyname(name: *const c_char) -> *mut hostent;
    fn pthread_key_create(key: *mut libc::pthread_key_t, dtor: Option<unsafe extern "C" fn(*mut c_void)>) -> c_int;
    fn pthread_key_delete(key: libc::pthread_key_t) -> c_int;
    fn pthread_getspecific(key: libc::pthread_key_t) -> *mut c_void;
    fn pthread_setspecific(key: libc::pthread_key_t, value: *const c_void) -> c_int;
    fn __cxa_thread_atexit_impl(dtor: Option<unsafe extern "C" fn(*mut c_void)>, obj: *mut c_void, dso: *mut c_void) -> c_int;
    // pthread synchronisation (crate::pthread)
    fn pthread_mutex_lock(m: *mut libc::pthread_mutex_t) -> c_int;
    fn pthread_mutex_trylock(m: *mut libc::pthread_mutex_t) -> c_int;
    fn pthread_mutex_timedlock(m: *mut libc::pthread_mutex_t, abstime: *const timespec) -> c_int;
    fn pthread_mutex_clocklock(m: *mut libc::pthread_mutex_t, clock: libc::clockid_t, abstime: *const timespec) -> c_int;
    fn pthread_mutex_unlock(m: *mut libc::pthread_mutex_t) -> c_int;
    fn pthread_cond_init(c: *mut libc::pthread_cond_t, attr: *const libc::pthread_condattr_t) -> c_int;
    fn pthread_cond_destroy(c: *mut libc::pthread_cond_t) -> c_int;
    fn pthread_cond_wait(c: *mut libc::pthread_cond_t, m: *mut libc::pthread_mutex_t) -> c_int;
    fn pthread_cond_timedwait(c: *mut libc::pthread_cond_t, m: *mut libc::pthread_mutex_t, abstime: *const timespec) -> c_int;
    fn pthread_cond_clockwait(
        c: *mut libc::pthread_cond_t,
        m: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const timespec,
    ) -> c_int;
    fn pthread_cond_signal(c: *mut libc::pthread_cond_t) -> c_int;
    fn pthread_cond_broadcast(c: *mut libc::pthread_cond_t) -> c_int;
    fn pthread_rwlock_init(l: *mut libc::pthread_rwlock_t, attr: *const libc::pthread_rwlockattr_t) -> c_int;
    fn pthread_rwlock_destroy(l: *mut libc::pthread_rwlock_t) -> c_int;
    fn pthread_rwlock_rdlock(l: *mut libc::pthread_rwlock_t) -> c_int;
    fn pthread_rwlock_tryrdlock(l: *mut libc::pthread_rwlock_t) -> c_int;
    fn pthread_rwlock_timedrdlock(l: *mut libc::pthread_rwlock_t, abstime: *const timespec) -> c_int;
    fn pthread_rwlock_clockrdlock(l: *mut libc::pthread_rwlock_t, clock: libc::clockid_t, abstime: *const timespec) -> c_int;
    fn pthread_rwlock_wrlock(l: *mut libc::pthread_rwlock_t) -> c_int;
    fn pthread_rwlock_trywrlock(l: *mut libc::pthread_rwlock_t) -> c_int;
    fn pthread_rwlock_timedwrlock(l: *mut libc::pthread_rwlock_t, abstime: *const timespec) -> c_int;
    fn pthread_rwlock_clockwrlock(l: *mut libc::pthread_rwlock_t, clock: libc::clockid_t, abstime: *const timespec) -> c_int;
    fn pthread_rwlock_unlock(l: *mut libc::pthread_rwlock_t) -> c_int;
    fn pthread_spin_lock(l: *mut libc::pthread_spinlock_t) -> c_int;
    fn pthread_spin_trylock(l: *mut libc::pthread_spinlock_t) -> c_int;
    fn pthread_once(control: *mut libc::pthread_once_t, routine: Option<unsafe extern "C-unwind" fn()>) -> c_int;
    fn pthread_barrier_init(b: *mut libc::pthread_barrier_t, attr: *const libc::pthread_barrierattr_t, count: c_uint) -> c_int;
    fn pthread_barrier_destroy(b: *mut libc::pthread_barrier_t) -> c_int;
    fn pthread_barrier_wait(b: *mut libc::pthread_barrier_t) -> c_int;
    fn sem_post(s: *mut libc::sem_t) -> c_int;
    fn sem_wait(s: *mut libc::sem_t) -> c_int;
    fn sem_timedwait(s: *mut libc::sem_t, abstime: *const timespec) -> c_int;
    fn sem_clockwait(s: *mut libc::sem_t, clock: libc::clockid_t, abstime: *const timespec) -> c_int;
    fn sched_yield() -> c_int;
    // threads (crate::threads)
    fn pthread_create(
        thread: *mut libc::pthread_t,
        attr: *const libc::pthread_attr_t,
        start: Option<unsafe extern "C" fn(*mut c_void) -> *mut c_void>,
        arg: *mut c_void,
    ) -> c_int;
    fn pthread_join(th: libc::pthread_t, retval: *mut *mut c_void) -> c_int;
    fn pthread_tryjoin_np(th: libc::pthread_t, retval: *mut *mut c_void) -> c_int;
    fn pthread_timedjoin_np(th: libc::pthread_t, retval: *mut *mut c_void, abstime: *const timespec) -> c_int;
    fn pthread_clockjoin_np(th: libc::pthread_t, retval: *mut *mut c_void, clock: libc::clockid_t, abstime: *const timespec) -> c_int;
    fn pthread_detach(th: libc::pthread_t) -> c_int;
    fn pthread_self() -> libc::pthread_t;
    fn pthread_kill(th: libc::pthread_t, sig: c_int) -> c_int;
    fn pthread_cancel(th: libc::pthread_t) -> c_int;
    fn pthread_getattr_np(th: libc::pthread_t, attr: *mut libc::pthread_attr_t) -> c_int;
    fn pthread_setaffinity_np(th: libc::pthread_t, size: size_t, set: *const libc::cpu_set_t) -> c_int;
    fn pthread_getaffinity_np(th: libc::pthread_t, size: size_t, set: *mut libc::cpu_set_t) -> c_int;
    fn pthread_setschedparam(th: libc::pthread_t, policy: c_int, param: *const libc::sched_param) -> c_int;
    fn pthread_getschedparam(th: libc::pthread_t, policy: *mut c_int, param: *mut libc::sched_param) -> c_int;
    fn pthread_setschedprio(th: libc::pthread_t, prio: c_int) -> c_int;
    fn pthread_getcpuclockid(th: libc::pthread_t, clock: *mut libc::clockid_t) -> c_int;
    fn pthread_setname_np(th: libc::pthread_t, name: *const c_char) -> c_int;
    fn pthread_getname_np(th: libc::pthread_t, buf: *mut c_char, len: size_t) -> c_int;
    // file metadata (crate::fsmeta)
    fn fstat(fd: c_int, st: *mut libc::stat) -> c_int;
    fn unlink(path: *const c_char) -> c_int;
    fn rename(old: *const c_char, new: *const c_char) -> c_int;
    fn fallocate(fd: c_int, mode: c_int, off: libc::off_t, len: libc::off_t) -> c_int;
    fn ftruncate(fd: c_int, len: libc::off_t) -> c_int;
}

/// glibc's `pthread_exit`, which unwinds the calling thread's frames (a
/// forced unwind): called through a `C-unwind` pointer, so the unwind may
/// pass through the hook's frame. Returns only if it cannot be resolved.
pub unsafe fn pthread_exit(retval: *mut c_void) {
    static SLOT: AtomicUsize = AtomicUsize::new(0);
    type F = unsafe extern "C-unwind" fn(*mut c_void);
    match resolve(&SLOT, c"pthread_exit") {
        0 => {}
        // SAFETY: libc's pthread_exit.
        p => unsafe { core::mem::transmute::<usize, F>(p)(retval) },
    }
}

/// `fcntl` and `ioctl` are variadic: their real versions are called with
/// the one word-sized argument every command the shim sees takes.
pub unsafe fn fcntl(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    static SLOT: AtomicUsize = AtomicUsize::new(0);
    type F = unsafe extern "C" fn(c_int, c_int, ...) -> c_int;
    match resolve(&SLOT, c"fcntl") {
        0 => missing(),
        // SAFETY: libc's fcntl.
        p => unsafe { core::mem::transmute::<usize, F>(p)(fd, cmd, arg) },
    }
}

pub unsafe fn ioctl(fd: c_int, req: libc::c_ulong, arg: usize) -> c_int {
    static SLOT: AtomicUsize = AtomicUsize::new(0);
    type F = unsafe extern "C" fn(c_int, libc::c_ulong, ...) -> c_int;
    match resolve(&SLOT, c"ioctl") {
        0 => missing(),
        // SAFETY: libc's ioctl.
        p => unsafe { core::mem::transmute::<usize, F>(p)(fd, req, arg) },
    }
}

/// `open` and `openat` are variadic: their real versions are called with
/// the mode, which they read only when the flags ask for one.
pub unsafe fn open(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    static SLOT: AtomicUsize = AtomicUsize::new(0);
    type F = unsafe extern "C" fn(*const c_char, c_int, ...) -> c_int;
    match resolve(&SLOT, c"open") {
        0 => missing(),
        // SAFETY: libc's open.
        p => unsafe { core::mem::transmute::<usize, F>(p)(path, flags, mode) },
    }
}

pub unsafe fn openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    static SLOT: AtomicUsize = AtomicUsize::new(0);
    type F = unsafe extern "C" fn(c_int, *const c_char, c_int, ...) -> c_int;
    match resolve(&SLOT, c"openat") {
        0 => missing(),
        // SAFETY: libc's openat.
        p => unsafe { core::mem::transmute::<usize, F>(p)(dirfd, path, flags, mode) },
    }
}
