//! Per-thread keys, as pthread keys but per photon thread.

use core::ffi::c_void;

use super::guard;
use crate::errno::Errno;
use crate::sched::{self, keys};

/// Creates a key and stores it in `*key`. `destructor` (may be NULL) runs
/// with a thread's non-NULL value when that thread ends, before its joiner's
/// `photon_thread_join` returns (pthread order: up to 4 rounds while
/// destructors set new values). Up to 1024 keys exist at once.
///
/// Returns 0, or -1 with `EINVAL` (`key` NULL) or `EAGAIN` (no free key).
#[unsafe(no_mangle)]
pub extern "C" fn photon_key_create(
    key: *mut u32,
    destructor: Option<unsafe extern "C" fn(*mut c_void)>,
) -> libc::c_int {
    guard(|| {
        if key.is_null() {
            return Err(Errno::EINVAL);
        }
        let k = keys::create(destructor)?;
        // SAFETY: checked non-NULL; the caller passes a writable pointer.
        unsafe { key.write(k) };
        Ok(0)
    })
}

/// Deletes `key`. Values stay unreachable; no destructor runs for them.
/// Returns 0, or -1 with `EINVAL` (not a live key).
#[unsafe(no_mangle)]
pub extern "C" fn photon_key_delete(key: u32) -> libc::c_int {
    guard(|| keys::delete(key).map(|()| 0))
}

/// The calling photon thread's value for `key` (NULL if never set). NULL
/// with errno `EINVAL` for a dead key, `EPERM` off a vcpu; a NULL value
/// leaves errno unchanged.
#[unsafe(no_mangle)]
pub extern "C" fn photon_getspecific(key: u32) -> *mut c_void {
    guard(|| sched::key_get(key))
}

/// Sets the calling photon thread's value for `key`. Returns 0, or -1 with
/// `EINVAL` (dead key) or `EPERM` (off a vcpu).
#[unsafe(no_mangle)]
pub extern "C" fn photon_setspecific(key: u32, value: *const c_void) -> libc::c_int {
    guard(|| sched::key_set(key, value).map(|()| 0))
}
