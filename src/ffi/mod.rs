//! The C API: the only `extern "C"` code in the crate.
//!
//! # Conventions
//!
//! This is the one statement of the C API's conventions: the header's
//! preamble (cbindgen.toml) and the README summarise it and point here.
//!
//! **Errors.** Functions returning `int` or `ssize_t` return 0 (or a count)
//! on success and -1 with `errno` set on failure; functions returning a
//! pointer return NULL with `errno` set. Functions returning nothing
//! (`photon_thread_yield`, `photon_workpool_free`, `photon_server_free`)
//! cannot fail; they leave `errno` at `ENOTRECOVERABLE` only if an internal
//! panic was caught. `errno` is written here, after the call's last context
//! switch, immediately before returning. The codes every function may use:
//! - `EINVAL`: a bad argument or NULL;
//! - `EPERM`: the call can block (or needs a vcpu) and the caller is not a
//!   photon thread on a vcpu;
//! - `ESRCH`: a stale thread handle (the thread ended and was reaped);
//! - `ETIMEDOUT`: the `timeout_us` ran out;
//! - `EINTR`, or the code the interrupter chose: the wait was interrupted
//!   by `photon_thread_interrupt`; `ECANCELED` when `photon_fini` or a
//!   pool's shutdown ended a wait without a timeout;
//! - `ENOSYS`: the event engine lacks the feature (`PHOTON_EVENT_IOURING`
//!   on a kernel or process without io_uring);
//! - `ENOTRECOVERABLE`: an internal panic was caught at this boundary (the
//!   library stays usable).
//!
//! Calls that wrap a system call also pass its own errno through (`EBADF`,
//! `ECONNRESET`, ...); each function's documentation names the rest.
//!
//! **Panics** never cross this boundary: each body runs under `guard`,
//! which catches a panic and reports `ENOTRECOVERABLE`.
//!
//! **Handles** are opaque. A `photon_thread*` encodes a slot and a
//! generation, never an address, so a stale one is detected, not followed.
//! Each handle type states its Rust type and ownership (box, shared, or an
//! encoded value) in one place, `ffi/handle.rs`, and is cast only there.
//! `_free` functions accept NULL and must be called once.
//!
//! **Threading**: everything that can block needs the caller to be a photon
//! thread on a vcpu; `photon_thread_interrupt`, the unlock, notify and
//! signal side of the locks, `photon_workpool_*`, `photon_now_us` and
//! `photon_version` work from any OS thread.
//!
//! **Time**: every blocking call takes `uint64_t timeout_us`;
//! `PHOTON_FOREVER` means none.
//!
//! **Documentation** in this module becomes the header's comments
//! (cbindgen): write names in plain backticks, never rustdoc links, which
//! would show in C as brackets.

#![allow(non_camel_case_types)]
// C names: photon_thread, photon_entry
// Exported functions take C pointers by design; each checks NULL and its
// doc states what the caller guarantees (they are `extern "C"`, not `unsafe fn`).
#![allow(clippy::not_unsafe_ptr_arg_deref)]

pub mod handle;
mod lifecycle;
mod thread;
mod keys;
mod sync;
mod vcpu;
mod net;
mod server;
mod fs;
mod stats;
mod identity;
mod futex;
mod unet;

pub use fs::*;
pub use futex::*;
pub use identity::*;
pub use keys::*;
pub use lifecycle::*;
pub use net::*;
pub use server::*;
pub use stats::*;
pub use sync::*;
pub use thread::*;
pub use unet::*;
pub use vcpu::*;

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::errno::Errno;

/// Sets the calling OS thread's C `errno`.
pub(crate) fn set_errno(e: Errno) {
    // SAFETY: __errno_location always returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e.0 };
}

/// What an exported function returns on failure.
pub(crate) trait Failure {
    /// -1 or NULL.
    fn failure() -> Self;
}

impl Failure for libc::c_int {
    fn failure() -> Self {
        -1
    }
}

impl Failure for libc::ssize_t {
    fn failure() -> Self {
        -1
    }
}

/// A function returning nothing: a caught panic shows only in `errno`.
impl Failure for () {
    fn failure() -> Self {}
}

impl<T> Failure for *mut T {
    fn failure() -> Self {
        core::ptr::null_mut()
    }
}

impl<T> Failure for *const T {
    fn failure() -> Self {
        core::ptr::null()
    }
}

/// Runs an exported function's body: a panic becomes `ENOTRECOVERABLE`, an
/// `Err` becomes `errno` plus the failure value.
pub(crate) fn guard<R: Failure>(body: impl FnOnce() -> Result<R, Errno>) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            set_errno(e);
            R::failure()
        }
        Err(payload) => {
            caught_panic(payload);
            R::failure()
        }
    }
}

/// A panic caught by [`guard`]: logged, and `errno` set to
/// `ENOTRECOVERABLE`. Out of line and cold, so that the log record's
/// formatting does not sit in every export's frame: a thread parked in
/// `photon_recv` keeps that frame on its stack, and at many connections
/// each of its cache lines misses when the thread resumes.
#[cold]
#[inline(never)]
fn caught_panic(payload: Box<dyn std::any::Any + Send>) {
    drop(payload);
    log::error!("photon: internal panic caught at the C API boundary");
    set_errno(Errno::ENOTRECOVERABLE);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errno() -> i32 {
        // SAFETY: this thread's errno slot.
        unsafe { *libc::__errno_location() }
    }

    /// A panic in a function returning nothing stops at the boundary and
    /// shows as `ENOTRECOVERABLE` (photon_thread_yield, photon_workpool_free,
    /// photon_server_free).
    #[test]
    fn guard_catches_a_panic_in_a_void_function() {
        set_errno(Errno(0));
        guard(|| -> Result<(), Errno> { panic!("expected by this test") });
        assert_eq!(errno(), libc::ENOTRECOVERABLE);
        set_errno(Errno(0));
        guard(|| Ok(()));
        assert_eq!(errno(), 0);
    }

    /// The void exports themselves return normally where they have nothing
    /// to do.
    #[test]
    fn void_exports_accept_null_and_off_vcpu() {
        photon_thread_yield();
        photon_workpool_free(core::ptr::null_mut());
        photon_server_free(core::ptr::null_mut());
    }
}
