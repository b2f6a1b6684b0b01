//! The parts of libphoton's C API (`include/photon.h`) the shim calls.
//! build.rs links against a stub made from the names declared here.

use core::ffi::{c_int, c_void};
use libc::{iovec, msghdr, size_t, sockaddr, socklen_t, ssize_t};

pub const FOREVER: u64 = u64::MAX;
pub const READABLE: u32 = 1;
pub const WRITABLE: u32 = 2;

pub type Entry = unsafe extern "C" fn(*mut c_void) -> *mut c_void;

unsafe extern "C" {
    pub fn photon_in_thread() -> c_int;
    pub fn photon_now_us() -> u64;
    pub fn photon_engine_name() -> *const core::ffi::c_char;
    pub fn photon_thread_usleep(us: u64) -> c_int;
    pub fn photon_offload(f: Option<Entry>, arg: *mut c_void, retval: *mut *mut c_void) -> c_int;
    pub fn photon_wait_fd(fd: c_int, events: u32, timeout_us: u64) -> c_int;
    pub fn photon_socket(domain: c_int, ty: c_int, proto: c_int) -> c_int;
    pub fn photon_connect(fd: c_int, addr: *const sockaddr, len: socklen_t, timeout_us: u64) -> c_int;
    pub fn photon_accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, timeout_us: u64) -> c_int;
    pub fn photon_read(fd: c_int, buf: *mut c_void, n: size_t, timeout_us: u64) -> ssize_t;
    pub fn photon_write(fd: c_int, buf: *const c_void, n: size_t, timeout_us: u64) -> ssize_t;
    pub fn photon_readv(fd: c_int, iov: *const iovec, n: c_int, timeout_us: u64) -> ssize_t;
    pub fn photon_writev(fd: c_int, iov: *const iovec, n: c_int, timeout_us: u64) -> ssize_t;
    pub fn photon_recv(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int, timeout_us: u64) -> ssize_t;
    pub fn photon_send(fd: c_int, buf: *const c_void, n: size_t, flags: c_int, timeout_us: u64) -> ssize_t;
    pub fn photon_recvfrom(
        fd: c_int,
        buf: *mut c_void,
        n: size_t,
        flags: c_int,
        addr: *mut sockaddr,
        len: *mut socklen_t,
        timeout_us: u64,
    ) -> ssize_t;
    pub fn photon_sendto(
        fd: c_int,
        buf: *const c_void,
        n: size_t,
        flags: c_int,
        addr: *const sockaddr,
        len: socklen_t,
        timeout_us: u64,
    ) -> ssize_t;
    pub fn photon_recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int, timeout_us: u64) -> ssize_t;
    pub fn photon_sendmsg(fd: c_int, msg: *const msghdr, flags: c_int, timeout_us: u64) -> ssize_t;
    pub fn photon_close(fd: c_int) -> c_int;
    pub fn photon_fd_forget(fd: c_int) -> c_int;
    pub fn photon_pread(fd: c_int, buf: *mut c_void, n: size_t, off: i64) -> ssize_t;
    pub fn photon_pwrite(fd: c_int, buf: *const c_void, n: size_t, off: i64) -> ssize_t;
    pub fn photon_preadv(fd: c_int, iov: *const iovec, n: c_int, off: i64) -> ssize_t;
    pub fn photon_pwritev(fd: c_int, iov: *const iovec, n: c_int, off: i64) -> ssize_t;
    pub fn photon_fsync(fd: c_int) -> c_int;
    pub fn photon_fdatasync(fd: c_int) -> c_int;
    pub fn photon_thread_number(is_main: *mut c_int) -> u32;
    pub fn photon_fstat(fd: c_int, st: *mut libc::stat) -> c_int;
    pub fn photon_unlink(path: *const core::ffi::c_char) -> c_int;
    pub fn photon_rename(old: *const core::ffi::c_char, new: *const core::ffi::c_char) -> c_int;
    pub fn photon_fallocate(fd: c_int, mode: c_int, off: libc::off_t, len: libc::off_t) -> c_int;
    pub fn photon_ftruncate(fd: c_int, len: libc::off_t) -> c_int;
    pub fn photon_key_create(key: *mut u32, dtor: Option<unsafe extern "C" fn(*mut c_void)>) -> c_int;
    pub fn photon_getspecific(key: u32) -> *mut c_void;
    pub fn photon_setspecific(key: u32, value: *const c_void) -> c_int;
    pub fn photon_tls_atexit(dtor: Option<unsafe extern "C" fn(*mut c_void)>, obj: *mut c_void) -> c_int;
}

// Thread identity and the photon futex (the pthread hooks, crate::pthread).
unsafe extern "C" {
    pub fn photon_thread_self() -> *mut c_void;
    pub fn photon_thread_interrupt(th: *mut c_void, error_number: c_int) -> c_int;
    pub fn photon_thread_yield();
    pub fn photon_futex_wait(addr: *const u32, expected: u32, timeout_us: u64) -> c_int;
    pub fn photon_futex_wake(addr: *const u32, n: c_int) -> c_int;
}

// pthread_create as a photon thread (crate::threads).
unsafe extern "C" {
    pub fn photon_workpool_new(vcpus: u32, event_engine: u64) -> *mut c_void;
    pub fn photon_workpool_spawn(pool: *mut c_void, f: Option<Entry>, arg: *mut c_void) -> c_int;
    pub fn photon_thread_create(f: Option<Entry>, arg: *mut c_void, stack_size: size_t) -> *mut c_void;
    pub fn photon_thread_exit(retval: *mut c_void) -> c_int;
    pub fn photon_thread_on_end(f: Option<unsafe extern "C" fn(*mut c_void)>, arg: *mut c_void) -> c_int;
    pub fn photon_thread_set_name(th: *mut c_void, name: *const core::ffi::c_char) -> c_int;
}
