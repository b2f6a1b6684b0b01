//! A futex for photon threads: the building block of the preload shim's
//! pthread locks (a photon thread waits on a lock word as a photon wait;
//! any OS thread that changes the word wakes it).

use std::sync::atomic::AtomicU32;

use super::guard;
use crate::errno::Errno;
use crate::sync::futex;
use crate::time::deadline;

/// The word at `addr`, if `addr` is non-NULL and 4-byte aligned.
fn word<'a>(addr: *const u32) -> Result<&'a AtomicU32, Errno> {
    if addr.is_null() || !(addr as usize).is_multiple_of(4) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: a non-NULL, aligned pointer to a 32-bit word the caller keeps
    // alive for the call; only accessed atomically.
    Ok(unsafe { &*addr.cast::<AtomicU32>() })
}

/// Blocks the calling photon thread while `*addr == expected`, until
/// `photon_futex_wake` on `addr` (from any OS thread), `timeout_us`, or an
/// interrupt; other photon threads of the vcpu keep running.
///
/// Returns 0 when woken (possibly spuriously: re-check the condition), or -1
/// with `EAGAIN` (`*addr` differed from `expected` at the check),
/// `ETIMEDOUT`, the interrupter's errno, `EPERM` off a photon thread, or
/// `EINVAL` (`addr` NULL or not 4-byte aligned).
///
/// A thread changing the word must do so with a sequentially consistent
/// atomic store or read-modify-write before calling `photon_futex_wake`;
/// then no wake-up is lost.
#[unsafe(no_mangle)]
pub extern "C" fn photon_futex_wait(addr: *const u32, expected: u32, timeout_us: u64) -> libc::c_int {
    guard(|| futex::wait(word(addr)?, expected, deadline(timeout_us)).map(|()| 0))
}

/// Wakes up to `n` photon threads (of any vcpu) waiting in
/// `photon_futex_wait` on `addr`, longest waiter first. Callable from any
/// OS thread. Returns the number woken (0 when none waits, found with one
/// atomic load in the common case; also 0 for `n` <= 0), or -1 with
/// `EINVAL` (`addr` NULL or not 4-byte aligned).
#[unsafe(no_mangle)]
pub extern "C" fn photon_futex_wake(addr: *const u32, n: libc::c_int) -> libc::c_int {
    guard(|| {
        word(addr)?;
        Ok(futex::wake(addr as usize, n.max(0) as usize) as libc::c_int)
    })
}
