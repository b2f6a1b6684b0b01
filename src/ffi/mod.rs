//! The C API: the only `extern "C"` code in the crate.
//!
//! Conventions, followed by every function here (and stated once in the
//! generated header):
//! - **Errors**: `int`/`ssize_t` functions return 0 (or a count) on success
//!   and -1 with `errno` set on failure; pointer functions return NULL with
//!   `errno` set. `errno` is written here, after the call's last context
//!   switch, immediately before returning. `EINVAL`: a bad argument or NULL;
//!   `EPERM`: the call can block (or needs a vcpu) and the caller is not a
//!   photon thread on a vcpu; `ESRCH`: a stale thread handle; `ETIMEDOUT`;
//!   `ENOTRECOVERABLE`: an internal panic was caught.
//! - **Panics** never cross this boundary: each body runs under
//!   [`guard`], which catches a panic and reports `ENOTRECOVERABLE`.
//! - **Handles** are opaque. A `photon_thread*` encodes a slot and a
//!   generation, never an address, so a stale one is detected, not followed.
//! - **Threading**: everything that can block needs the caller to be a
//!   photon thread on a vcpu; `photon_thread_interrupt`, `photon_now_us` and
//!   `photon_version` work from any OS thread.
//! - **Time**: every blocking call takes `timeout_us`; `PHOTON_FOREVER`
//!   means none.

#![allow(non_camel_case_types)]
// C names: photon_thread, photon_entry
// Exported functions take C pointers by design; each checks NULL and its
// doc states what the caller guarantees (they are `extern "C"`, not `unsafe fn`).
#![allow(clippy::not_unsafe_ptr_arg_deref)]

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
        Err(_) => {
            log::error!("photon: internal panic caught at the C API boundary");
            set_errno(Errno::ENOTRECOVERABLE);
            R::failure()
        }
    }
}
