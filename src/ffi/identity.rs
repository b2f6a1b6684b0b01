//! Thread identity: what code written for OS threads needs to know about
//! "the current thread" when photon threads share an OS thread (the
//! preload shim's pthread keys and locks, thread-local isolation).

use crate::sched;

/// Who the caller is, for code that keeps per-thread identity (the preload
/// shim's pthread keys and locks).
///
/// Returns 0 where `photon_in_thread` returns 0 (an OS thread that is not a
/// vcpu, or the runtime's own scheduler and engine wait). Otherwise returns
/// the calling photon thread's number: unique among the live photon threads
/// of the process, at most 2^24, reused after the thread ends. When
/// `is_main` is not NULL it is set to 1 if the caller is a vcpu's main
/// thread (the OS thread's own context, which keeps the OS thread's
/// identity), else 0. Never sets errno; callable anywhere.
#[unsafe(no_mangle)]
pub extern "C" fn photon_thread_number(is_main: *mut libc::c_int) -> u32 {
    let (number, main) = sched::thread_number();
    if !is_main.is_null() {
        // SAFETY: the caller passes a writable int or NULL (checked).
        unsafe { *is_main = main as libc::c_int };
    }
    number
}
