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

/// The panic boundary of every hook: runs `body` and returns what it
/// returns. A panic in it (a bug of the shim) must not unwind into the
/// program's C frames, which would abort the process: it is caught here,
/// said on stderr, and the hook returns `fail` (-1, NULL, or for the
/// functions that return an error number, that number) with errno
/// `ENOTRECOVERABLE`, as libphoton's own C API does. Costs nothing where
/// `body` cannot panic (the catch is then compiled away); allocates
/// nothing unless a panic happened.
#[inline(always)]
pub(crate) fn boundary<R>(fail: R, body: impl FnOnce() -> R) -> R {
    match std::panic::catch_unwind(core::panic::AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(payload) => {
            caught(payload);
            fail
        }
    }
}

#[cold]
#[inline(never)]
fn caught(payload: Box<dyn core::any::Any + Send>) {
    drop(payload);
    say(b"[photon-preload ERROR] internal panic caught in a hooked call: it fails with ENOTRECOVERABLE\n");
    set_errno(libc::ENOTRECOVERABLE);
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
    crate::boundary((), || {
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
    })
}

/// The shim's destructor: stdio fds made non-blocking underneath are put
/// back (the shell that started the program may share them).
extern "C" fn stop() {
    crate::boundary((), || {
        fdtab::restore_stdio();
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic in a hook's body stops at the boundary: the hook returns its
    /// failure value with errno ENOTRECOVERABLE instead of unwinding into C
    /// (an abort of the whole program).
    #[test]
    fn a_panic_stops_at_the_boundary() {
        set_errno(0);
        let r = boundary(-1, || -> c_int { panic!("expected by this test") });
        assert_eq!(r, -1);
        assert_eq!(errno(), libc::ENOTRECOVERABLE);
        set_errno(0);
        assert_eq!(boundary(-1, || 7), 7);
        assert_eq!(errno(), 0);
    }

    /// Every hook the shim exports has the boundary, around its body or,
    /// for the uncontended mutex paths kept frameless, around their slow
    /// paths.
    #[test]
    fn every_hook_has_the_boundary() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        for d in [dir.clone(), dir.join("pthread")] {
            for e in std::fs::read_dir(&d).expect("read src") {
                let p = e.expect("entry").path();
                if p.extension().is_some_and(|x| x == "rs") {
                    files.push(p);
                }
            }
        }
        // Whose boundary is elsewhere: the version string (nothing in it
        // can panic), the mutex hooks (in lock_slow, unlock_slow,
        // wake_one). And none by design: pthread_once is "C-unwind", the
        // program's init routine may throw a C++ exception through it, and
        // catch_unwind aborts on a foreign exception; pthread_exit is
        // "C-unwind" too (it unwinds the calling thread); pthread_equal
        // compares two integers.
        let elsewhere = [
            "photon_preload_version",
            "pthread_mutex_lock",
            "pthread_mutex_unlock",
            "pthread_once",
            "pthread_exit",
            "pthread_equal",
        ];
        let mut missing = Vec::new();
        let mut seen = 0;
        for f in &files {
            let text = std::fs::read_to_string(f).expect("read a source file");
            for (at, _) in text.match_indices("#[unsafe(no_mangle)]") {
                let rest = &text[at..];
                let sig = rest.find("fn ").expect("a function follows no_mangle");
                let name: String = rest[sig + 3..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '$')
                    .collect();
                let body_end = rest.find("\n}").unwrap_or(rest.len());
                let body = &rest[..body_end];
                seen += 1;
                if !body.contains("crate::boundary(") && !elsewhere.contains(&name.as_str()) {
                    missing.push(format!("{}: {name}", f.display()));
                }
            }
        }
        assert!(seen > 80, "found only {seen} hooks: the scan is broken");
        assert!(
            missing.is_empty(),
            "hooks without a panic boundary:\n{}",
            missing.join("\n")
        );
        let mutex = std::fs::read_to_string(dir.join("pthread").join("mutex.rs")).expect("mutex.rs");
        for f in ["unsafe fn lock_slow", "fn unlock_slow", "fn wake_one"] {
            let at = mutex.find(f).unwrap_or_else(|| panic!("mutex.rs has no {f}"));
            let body = &mutex[at..at + mutex[at..].find("\n}").expect("end")];
            assert!(body.contains("crate::boundary("), "{f} lacks the boundary");
        }
    }
}
