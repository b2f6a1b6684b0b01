//! `libphoton_preload.so`: an `LD_PRELOAD` shim that makes blocking libc
//! calls inside photon threads wait as photon threads.
//!
//! Every hooked function first asks libphoton `photon_in_thread()`. Where
//! that is 0 (an OS thread that is not a vcpu, a program that never called
//! `photon_init`, the runtime's own scheduler) the call goes straight to
//! libc, except that an fd the shim made non-blocking underneath while the
//! program sees it blocking gets libc's blocking behaviour emulated (see
//! [`fdtab`]). In a photon thread, calls on fds the program sees as
//! blocking become libphoton calls (`photon_read`, `photon_wait_fd`, ...)
//! with the fd's SO_RCVTIMEO/SO_SNDTIMEO as timeouts, and their results and
//! errno are made those libc would give (EAGAIN after a socket timeout,
//! EINPROGRESS for a timed-out connect, whole writes on blocking fds).
//!
//! With `PHOTON_PRELOAD_THREADS=photon` the shim also makes the program's
//! `pthread_create` calls photon threads on a work pool of its own, and
//! takes over the pthread functions that receive such a thread's id
//! ([`threads`]); without it those hooks are plain calls of glibc's.
//!
//! The shim calls only libphoton's public C API (`libphoton.so.0`, found
//! beside the shim or already loaded by the program: one runtime per
//! process), and libphoton makes its own syscalls without libc's wrappers,
//! so nothing recurses. Signal handlers that call hooked functions in a
//! photon thread are not supported (the wait would switch stacks inside the
//! handler); glibc's internal calls (stdio, getaddrinfo's own sockets) do
//! not reach the hooks, which is why name lookups are offloaded whole.

#![allow(clippy::missing_safety_doc)] // every export's contract is its libc namesake's

mod dns;
mod fdtab;
mod file;
mod fsmeta;
mod identity;
mod io;
mod keys;
mod photon;
mod pthread;
mod real;
mod sock;
mod threads;
mod wait;

use core::ffi::c_int;

/// The calling thread's errno.
pub(crate) fn errno() -> c_int {
    // SAFETY: libc's thread-local errno.
    unsafe { *libc::__errno_location() }
}

pub(crate) fn set_errno(e: c_int) {
    // SAFETY: libc's thread-local errno.
    unsafe { *libc::__errno_location() = e };
}

/// True in a photon thread, where blocking calls become photon waits.
#[inline]
pub(crate) fn active() -> bool {
    // SAFETY: a libphoton query with no preconditions.
    unsafe { photon::photon_in_thread() != 0 }
}

/// Writes `msg` to stderr with a raw syscall (never through a hook).
pub(crate) fn say(msg: &[u8]) {
    // SAFETY: writes from a live slice.
    unsafe { libc::syscall(libc::SYS_write, 2 as libc::c_long, msg.as_ptr(), msg.len()) };
}

/// True if `PHOTON_PRELOAD_LOG` or `PHOTON_LOG` asks for debug output.
pub(crate) fn debug_logging() -> bool {
    [c"PHOTON_PRELOAD_LOG", c"PHOTON_LOG"].iter().any(|name| {
        // SAFETY: getenv with a NUL-terminated name; the result is read at once.
        let v = unsafe { libc::getenv(name.as_ptr()) };
        if v.is_null() {
            return false;
        }
        // SAFETY: getenv returns a NUL-terminated string.
        let v = unsafe { core::ffi::CStr::from_ptr(v) }.to_bytes();
        v.eq_ignore_ascii_case(b"debug") || v.eq_ignore_ascii_case(b"trace")
    })
}

/// The shim's constructor: resolves libc's functions before the program
/// runs and reports what is hooked at debug level.
extern "C" fn start() {
    let (found, total) = real::resolve_all();
    keys::init();
    if debug_logging() {
        let mut line = [0u8; 8192];
        let mut out = Buf(&mut line, 0);
        out.push(b"[photon-preload DEBUG] libphoton_preload.so loaded (");
        out.num(found);
        out.push(b" of ");
        out.num(total);
        out.push(b" libc functions resolved); hooked:");
        for name in real::NAMES
            .iter()
            .chain(io::EXTRA_NAMES)
            .chain(fsmeta::EXTRA_NAMES)
            .chain(threads::EXTRA_NAMES)
        {
            out.push(b" ");
            out.push(name.as_bytes());
        }
        out.push(b"\n");
        out.push(b"[photon-preload DEBUG] threads: ");
        threads::describe(&mut out);
        out.push(b"\n");
        let n = out.1;
        say(&line[..n]);
    }
}

/// The shim's destructor: stdio fds made non-blocking underneath are put
/// back (the shell that started the program may share them).
extern "C" fn stop() {
    fdtab::restore_stdio();
}

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = start;

#[used]
#[unsafe(link_section = ".fini_array")]
static FINI: extern "C" fn() = stop;

/// A fixed buffer being filled without allocating.
pub(crate) struct Buf<'a>(pub(crate) &'a mut [u8], pub(crate) usize);

impl Buf<'_> {
    pub(crate) fn push(&mut self, s: &[u8]) {
        let n = s.len().min(self.0.len() - self.1);
        self.0[self.1..self.1 + n].copy_from_slice(&s[..n]);
        self.1 += n;
    }

    pub(crate) fn num(&mut self, mut v: usize) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}
