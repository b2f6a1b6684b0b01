//! Visibility: per-vcpu counters, thread names, the thread dump.

use core::ffi::{CStr, c_char};

use super::guard;
use super::handle::Encoded;
use super::thread::photon_thread;
use crate::errno::Errno;
use crate::sched;

/// Counters of one vcpu, filled by `photon_stats_get`. Versioned by its
/// leading `size`: set it to `sizeof(photon_stats)` before the call; the
/// library fills the fields it knows that fit in `size` bytes and sets
/// `size` to the number of bytes it filled. New fields are only ever added
/// at the end, so a program built against an older or newer header works.
#[repr(C)]
pub struct photon_stats {
    /// In: the caller's `sizeof(photon_stats)`. Out: bytes filled.
    pub size: u32,
    /// The vcpu these counters belong to (the calling one).
    pub vcpu_id: u32,
    /// Photon threads alive on the vcpu, its main thread included.
    pub threads_alive: u64,
    /// Of those, runnable ones (the caller included).
    pub threads_runnable: u64,
    /// Scheduling decisions (yields, blocks, thread ends): about one
    /// context switch each.
    pub switches: u64,
    /// Sleeps started (`photon_thread_usleep`, `photon_thread_sleep`).
    pub sleeps: u64,
    /// Times the vcpu slept in its event engine with nothing to run.
    pub idle_waits: u64,
    /// Operations submitted to the event engine that had to be waited for.
    pub io_submitted: u64,
    /// Completions of such operations delivered.
    pub io_completed: u64,
    /// Of the submitted operations, those run by the offload thread pool
    /// (file I/O under epoll, opcodes the kernel's io_uring lacks).
    pub offloaded: u64,
    /// Wake-ups and interrupts of this vcpu's threads that came from other
    /// OS threads (cross-vcpu unlocks, notifies, interrupts).
    pub remote_wakeups: u64,
}

/// Fills `*out` with the calling vcpu's counters (see `photon_stats`; set
/// `out->size` first). Returns 0, or -1 with errno: `EINVAL` (`out` NULL,
/// or `out->size` smaller than the two leading fields), `EPERM` (not on a
/// vcpu).
#[unsafe(no_mangle)]
pub extern "C" fn photon_stats_get(out: *mut photon_stats) -> libc::c_int {
    guard(|| {
        if out.is_null() {
            return Err(Errno::EINVAL);
        }
        // SAFETY: non-NULL; the caller promises `size` writable bytes.
        let want = unsafe { (*out).size } as usize;
        if want < 8 {
            return Err(Errno::EINVAL);
        }
        let s = sched::vcpu_stats()?;
        let c = s.counters;
        let full = photon_stats {
            size: 0,
            vcpu_id: s.vcpu_id,
            threads_alive: s.threads_alive,
            threads_runnable: s.threads_runnable,
            switches: s.switches,
            sleeps: c.sleeps,
            idle_waits: c.idle_waits,
            io_submitted: c.io_submitted,
            io_completed: c.io_completed,
            offloaded: c.offloaded,
            remote_wakeups: c.remote_wakeups,
        };
        let n = want.min(core::mem::size_of::<photon_stats>());
        // SAFETY: copies n bytes, within both the caller's struct and ours.
        unsafe {
            core::ptr::copy_nonoverlapping((&raw const full).cast::<u8>(), out.cast::<u8>(), n);
            (*out).size = n as u32;
        }
        Ok(0)
    })
}

/// Names photon thread `th` (of the calling vcpu) for thread dumps and
/// stall warnings: `name` is copied, at most 31 bytes kept; NULL or "" clears
/// it. Returns 0, or -1 with errno: `EINVAL` (`th` NULL or of another vcpu),
/// `ESRCH` (stale handle), `EPERM` (not on a vcpu).
#[unsafe(no_mangle)]
pub extern "C" fn photon_thread_set_name(th: *mut photon_thread, name: *const c_char) -> libc::c_int {
    guard(|| {
        let th = photon_thread::decode(th)?;
        let bytes = if name.is_null() {
            &[][..]
        } else {
            // SAFETY: a NUL-terminated string, as the caller promises.
            unsafe { CStr::from_ptr(name) }.to_bytes()
        };
        sched::set_name(th, bytes).map(|()| 0)
    })
}

/// Writes every photon thread of the calling vcpu to `fd`, one line each:
/// its handle (the `photon_thread*` value), name, and state: running,
/// runnable, or blocked with what it waits for (sleep, read on fd 7, mutex,
/// join...), for how long and the time left to its timeout. The write
/// does not wait as a photon thread (it is a diagnostic). Returns 0, or -1
/// with errno: `EBADF` (negative fd), `EPERM` (not on a vcpu), or the
/// write's error.
///
/// With `PHOTON_DUMP_SIGNAL=SIGUSR2` (or another signal name or number) in
/// the environment at the first `photon_init`, that signal makes every
/// vcpu dump its threads to stderr.
#[unsafe(no_mangle)]
pub extern "C" fn photon_dump_threads(fd: libc::c_int) -> libc::c_int {
    guard(|| sched::dump_threads(fd).map(|()| 0))
}
