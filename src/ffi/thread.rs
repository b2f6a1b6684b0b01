//! Photon threads: create, join, detach, yield, sleep, interrupt.

use core::ffi::c_void;

use super::guard;
use super::handle::{Castable, Encoded, ValueEncoded};
use crate::errno::Errno;
use crate::sched::{self, Handle};

/// A photon thread (a stackful coroutine). Opaque: the pointer value is an
/// encoded handle, never dereferenced; a stale one fails with `ESRCH`.
pub struct photon_thread {
    _private: [u8; 0],
}

/// A photon thread's entry function; its return value is what
/// `photon_thread_join` hands back.
pub type photon_entry = Option<unsafe extern "C" fn(arg: *mut c_void) -> *mut c_void>;

/// The pointer's bits are the thread's `Handle` (slot and generation).
impl Castable for photon_thread {
    type Ownership = ValueEncoded;
    type RustType = Handle;
}

impl Encoded for photon_thread {
    fn to_bits(h: Handle) -> usize {
        h.0 as usize
    }
    fn from_bits(b: usize) -> Option<Handle> {
        Some(Handle(b as u64))
    }
}

/// Creates a photon thread on the calling vcpu running `entry(arg)` on a
/// stack of `stack_size` bytes (0: the default, 8 MiB of address space
/// committed lazily; other sizes are rounded up to whole pages, at least
/// 16 KiB). The new thread is runnable and first runs when its creator
/// yields or blocks. It starts detached: call `photon_thread_enable_join`
/// before it ends to join it.
///
/// Returns the thread, or NULL with errno: `EINVAL` (`entry` NULL or
/// `stack_size` absurd), `EPERM` (not on a vcpu), `ENOMEM` (no memory or
/// address space for the stack), `EAGAIN` (16M threads alive). Stacks are
/// carved from large shared mappings (a million threads fit in the kernel's
/// default `vm.max_map_count`), each with a guard page below it.
#[unsafe(no_mangle)]
pub extern "C" fn photon_thread_create(entry: photon_entry, arg: *mut c_void, stack_size: usize) -> *mut photon_thread {
    guard(|| {
        let entry = entry.ok_or(Errno::EINVAL)?;
        sched::spawn(entry, arg, stack_size).map(photon_thread::encode)
    })
}

/// Makes `th` joinable; call it before `th` ends, then join it exactly once.
/// Returns 0, or -1 with `EINVAL` (NULL) or `ESRCH` (stale handle: the
/// thread ended detached, or was joined).
#[unsafe(no_mangle)]
pub extern "C" fn photon_thread_enable_join(th: *mut photon_thread) -> libc::c_int {
    guard(|| sched::enable_join(photon_thread::decode(th)?).map(|()| 0))
}

/// Waits for the joinable thread `th` to end and stores its entry's return
/// value in `*retval` (if `retval` is not NULL). The thread may live on any
/// vcpu. Interruptible: `photon_thread_interrupt` on the joiner makes it
/// return -1 with the interrupter's errno, and `th` stays joinable.
///
/// Returns 0, or -1 with errno: `EINVAL` (NULL; `th` not joinable; a join
/// of `th` already under way or done: a second join of a joined thread gives
/// `EINVAL` until its slot is reused, `ESRCH` after; joining oneself),
/// `ESRCH` (stale handle), `EPERM` (not on a vcpu).
#[unsafe(no_mangle)]
pub extern "C" fn photon_thread_join(th: *mut photon_thread, retval: *mut *mut c_void) -> libc::c_int {
    guard(|| {
        let h = photon_thread::decode(th)?;
        let rv = sched::join(h)?;
        if !retval.is_null() {
            // SAFETY: the caller passes a writable pointer or NULL.
            unsafe { retval.write(rv) };
        }
        Ok(0)
    })
}

/// Whether `th` is joinable: 1 if `photon_thread_enable_join` was called
/// and it has been neither detached nor joined since (it may have ended:
/// joining it then returns at once; a join under way counts until it
/// returns), 0 if not (it runs detached). Returns -1 with `EINVAL` (NULL)
/// or `ESRCH` (stale handle: the thread ended detached, or was joined).
/// Callable from any OS thread.
#[unsafe(no_mangle)]
pub extern "C" fn photon_thread_joinable(th: *mut photon_thread) -> libc::c_int {
    guard(|| sched::joinable(photon_thread::decode(th)?).map(libc::c_int::from))
}

/// Undoes `photon_thread_enable_join`: the thread's resources go away when
/// it ends (or now, if it has ended). Returns 0, or -1 with `EINVAL` (NULL,
/// not joinable, or a join is under way) or `ESRCH` (stale handle).
#[unsafe(no_mangle)]
pub extern "C" fn photon_thread_detach(th: *mut photon_thread) -> libc::c_int {
    guard(|| sched::detach(photon_thread::decode(th)?).map(|()| 0))
}

/// The calling photon thread (the main thread of a vcpu included), or NULL
/// (errno `EPERM`) off a vcpu.
#[unsafe(no_mangle)]
pub extern "C" fn photon_thread_self() -> *mut photon_thread {
    guard(|| sched::self_handle().map(photon_thread::encode).ok_or(Errno::EPERM))
}

/// Lets every other runnable photon thread of this vcpu run once, then
/// continues. Off a vcpu it returns at once.
#[unsafe(no_mangle)]
pub extern "C" fn photon_thread_yield() {
    // Under the boundary too: a yield runs the vcpu's engine polls.
    guard(|| {
        sched::yield_now();
        Ok(())
    })
}

/// Sleeps the calling photon thread for `us` microseconds (at least that
/// long; `PHOTON_FOREVER` until interrupted; 0 just yields) while others run.
/// Returns 0 when it slept fully, or -1 with the interrupter's errno, or
/// `EPERM` off a vcpu.
#[unsafe(no_mangle)]
pub extern "C" fn photon_thread_usleep(us: u64) -> libc::c_int {
    guard(|| sched::sleep_us(us).map(|()| 0))
}

/// `photon_thread_usleep(seconds * 1000000)`.
#[unsafe(no_mangle)]
pub extern "C" fn photon_thread_sleep(seconds: u64) -> libc::c_int {
    guard(|| sched::sleep_us(seconds.saturating_mul(1_000_000)).map(|()| 0))
}

/// Interrupts `th`: if it is blocked (sleeping, joining, waiting on I/O or a
/// lock), it wakes and its call fails with `error_number` as errno. If it is
/// not blocked, the interrupt stays pending and its next blocking call fails
/// with it at once (so an interrupt is never lost to a race). Callable from
/// any OS thread; on another vcpu the effect is asynchronous.
///
/// Returns 0, or -1 with `EINVAL` (NULL, or `error_number` <= 0) or `ESRCH`
/// (stale handle, or a thread that has ended).
#[unsafe(no_mangle)]
pub extern "C" fn photon_thread_interrupt(th: *mut photon_thread, error_number: libc::c_int) -> libc::c_int {
    guard(|| {
        if error_number <= 0 {
            return Err(Errno::EINVAL);
        }
        sched::interrupt(photon_thread::decode(th)?, error_number).map(|()| 0)
    })
}

/// Ends the calling photon thread as if its entry returned `retval`: its
/// C++ `thread_local` and key destructors run, then its end callback
/// (`photon_thread_on_end`), then a joiner gets `retval`. The thread's
/// frames are not unwound (no C++ destructors or cleanup handlers of the
/// functions on its stack run), so call it where nothing on the stack
/// needs cleaning up. Does not return on success.
///
/// Returns -1 with `EPERM` when the caller is not a photon thread, or is a
/// vcpu's main thread (which is the OS thread itself: end it by returning
/// from the program's thread function, or with `pthread_exit`).
#[unsafe(no_mangle)]
pub extern "C" fn photon_thread_exit(retval: *mut c_void) -> libc::c_int {
    guard(|| sched::exit_current(retval).map(|never| match never {}))
}

/// Registers `f(arg)` to run once when the calling photon thread ends
/// (returns from its entry or calls `photon_thread_exit`), after its C++
/// `thread_local` and key destructors and before its joiner is woken: the
/// point at which, in POSIX terms, the thread has terminated. One per
/// thread: a second call replaces the first. `f` runs on the ending thread
/// and must not block.
///
/// Returns 0, or -1 with `EINVAL` (`f` NULL) or `EPERM` (not a photon
/// thread, or a vcpu's main thread, which never ends as a photon thread).
#[unsafe(no_mangle)]
pub extern "C" fn photon_thread_on_end(
    f: Option<unsafe extern "C" fn(arg: *mut c_void)>,
    arg: *mut c_void,
) -> libc::c_int {
    guard(|| sched::on_end(f.ok_or(Errno::EINVAL)?, arg).map(|()| 0))
}
