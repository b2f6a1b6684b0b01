//! `Errno`: the error type of every fallible internal operation.
//!
//! Rust internals return `Result<T, Errno>`; only `src/ffi/` writes the C
//! `errno` (see [`crate::ffi`]).

use core::fmt;

/// A POSIX error number (`EINVAL`, `ETIMEDOUT`, ...), always positive.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// Bad argument or NULL.
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    /// Called off a vcpu, or not from the required photon thread.
    pub const EPERM: Errno = Errno(libc::EPERM);
    /// A stale or unknown thread handle.
    pub const ESRCH: Errno = Errno(libc::ESRCH);
    /// A timeout expired.
    pub const ETIMEDOUT: Errno = Errno(libc::ETIMEDOUT);
    /// Cancelled (photon_fini interrupts untimed waits with this).
    pub const ECANCELED: Errno = Errno(libc::ECANCELED);
    /// Out of memory (stack or bookkeeping allocation failed).
    pub const ENOMEM: Errno = Errno(libc::ENOMEM);
    /// Resource exhausted (e.g. no free key or thread slot).
    pub const EAGAIN: Errno = Errno(libc::EAGAIN);
    /// Already initialised.
    pub const EALREADY: Errno = Errno(libc::EALREADY);
    /// The requested engine or feature is not available.
    pub const ENOSYS: Errno = Errno(libc::ENOSYS);
    /// An internal panic was caught at an exported function.
    pub const ENOTRECOVERABLE: Errno = Errno(libc::ENOTRECOVERABLE);

    /// The calling OS thread's current `errno`.
    pub fn last_os_error() -> Errno {
        Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Errno({}: {})", self.0, std::io::Error::from_raw_os_error(self.0))
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&std::io::Error::from_raw_os_error(self.0), f)
    }
}

impl std::error::Error for Errno {}

impl From<std::io::Error> for Errno {
    fn from(e: std::io::Error) -> Errno {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

/// Runs a system call that returns -1 on failure, turning that into the
/// calling thread's `errno`. The one place where -1 becomes an `Errno`.
/// Names resolve in [`crate::sys`]: raw syscalls for what the preload shim
/// hooks, libc for the rest.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        #[allow(unused_unsafe)]
        // SAFETY: the caller upholds the contract of the named function.
        let res = unsafe { $crate::sys::$fn($($arg),*) };
        if res == -1 {
            Err($crate::errno::Errno::last_os_error())
        } else {
            Ok(res)
        }
    }};
}
pub(crate) use syscall;
