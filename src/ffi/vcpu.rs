//! Several vcpus: identities, work pools, migration.

use core::ffi::c_void;

use super::guard;
use super::thread::{photon_entry, photon_thread};
use crate::errno::Errno;
use crate::sched::{self, Handle, WorkPool};

/// A vcpu's identity (an OS thread running a photon scheduler). Opaque: an
/// encoded id, stable for the vcpu's life, never dereferenced.
pub struct photon_vcpu {
    _private: [u8; 0],
}

/// A pool of vcpus on their own OS threads. Opaque.
pub struct photon_workpool {
    _private: [u8; 0],
}

fn pool<'a>(p: *mut photon_workpool) -> Result<&'a WorkPool, Errno> {
    // SAFETY: a non-NULL pool came from photon_workpool_new and is not yet freed.
    (!p.is_null())
        .then(|| unsafe { &*p.cast::<WorkPool>() })
        .ok_or(Errno::EINVAL)
}

/// The calling vcpu (the same value `photon_workpool_vcpu` gives for it),
/// or NULL with `EPERM` off a vcpu.
#[unsafe(no_mangle)]
pub extern "C" fn photon_vcpu_current() -> *mut photon_vcpu {
    guard(|| match sched::current_id() {
        0 => Err(Errno::EPERM),
        id => Ok(id as usize as *mut photon_vcpu),
    })
}

/// Starts a pool of `vcpus` (1..=1024) OS threads, each a vcpu on
/// `event_engine`. Callable from any OS thread. NULL with `EINVAL` or the
/// engine's setup error.
#[unsafe(no_mangle)]
pub extern "C" fn photon_workpool_new(vcpus: u32, event_engine: u64) -> *mut photon_workpool {
    guard(|| WorkPool::new(vcpus, event_engine).map(|p| Box::into_raw(Box::new(p)).cast()))
}

/// Ends the pool's vcpus as `photon_fini` does (waiting for their threads;
/// those blocked without a timeout get `ECANCELED`) and joins their OS
/// threads. NULL is ignored. Call it once, from outside the pool.
#[unsafe(no_mangle)]
pub extern "C" fn photon_workpool_free(p: *mut photon_workpool) {
    // Under the boundary: the pool's Drop stops its vcpus and joins threads.
    guard(|| {
        if !p.is_null() {
            // SAFETY: made by photon_workpool_new as Box<WorkPool>; freed once.
            drop(unsafe { Box::from_raw(p.cast::<WorkPool>()) });
        }
        Ok(())
    })
}

/// The pool's vcpu number `index`, or NULL with `EINVAL`.
#[unsafe(no_mangle)]
pub extern "C" fn photon_workpool_vcpu(p: *mut photon_workpool, index: u32) -> *mut photon_vcpu {
    guard(|| {
        pool(p)?
            .vcpu(index as usize)
            .map(|id| id as usize as *mut photon_vcpu)
            .ok_or(Errno::EINVAL)
    })
}

/// Runs `fn_(arg)` in a new photon thread on one of the pool's vcpus (round
/// robin) and waits for it; its return value goes to `*retval` (if not
/// NULL). Callable from any OS thread: a photon thread waits as one
/// (interruptible; the work still runs to its end), others block.
#[unsafe(no_mangle)]
pub extern "C" fn photon_workpool_call(
    p: *mut photon_workpool,
    fn_: photon_entry,
    arg: *mut c_void,
    retval: *mut *mut c_void,
) -> libc::c_int {
    guard(|| {
        let r = pool(p)?.call(fn_.ok_or(Errno::EINVAL)?, arg)?;
        if !retval.is_null() {
            // SAFETY: the caller passes a writable pointer or NULL.
            unsafe { retval.write(r) };
        }
        Ok(0)
    })
}

/// Runs `fn_(arg)` in a new detached photon thread on one of the pool's
/// vcpus and returns at once. Callable from any OS thread.
#[unsafe(no_mangle)]
pub extern "C" fn photon_workpool_spawn(p: *mut photon_workpool, fn_: photon_entry, arg: *mut c_void) -> libc::c_int {
    guard(|| pool(p)?.spawn(fn_.ok_or(Errno::EINVAL)?, arg).map(|()| 0))
}

/// Runs `fn_(arg)` on a helper OS thread of the runtime's offload pool (a
/// plain thread, not a vcpu) and waits for it; its return value goes to
/// `*retval` (if not NULL). For calls that block in ways no engine can
/// wait on (DNS resolution, a library's internal locks): a photon caller
/// parks without blocking its vcpu, any other OS thread blocks. The wait
/// cannot be interrupted, since `fn_` may use the caller's memory: an
/// interrupt arriving meanwhile stays pending for the caller's next
/// blocking call. Returns 0, or -1 with `EINVAL` (NULL `fn_`).
#[unsafe(no_mangle)]
pub extern "C" fn photon_offload(fn_: photon_entry, arg: *mut c_void, retval: *mut *mut c_void) -> libc::c_int {
    guard(|| {
        let r = sched::offload_call(fn_.ok_or(Errno::EINVAL)?, arg);
        if !retval.is_null() {
            // SAFETY: the caller passes a writable pointer or NULL.
            unsafe { retval.write(r) };
        }
        Ok(0)
    })
}

/// Moves `th` to vcpu `to`. `th` is the caller (it returns running on
/// `to`) or a runnable thread of the caller's vcpu. -1 with `EINVAL` (NULL,
/// unknown `to`, a thread of another vcpu, or a vcpu's main thread),
/// `EBUSY` (`th` is blocked), `ESRCH` (stale handle), `EPERM` (off a vcpu).
/// After migrating itself the caller runs on another OS thread: compilers
/// may keep `errno`'s address (glibc declares `__errno_location` const) and
/// other thread-local addresses from before the call, so read `errno` and
/// `__thread` variables in a separate, non-inlined function after it.
#[unsafe(no_mangle)]
pub extern "C" fn photon_thread_migrate(th: *mut photon_thread, to: *mut photon_vcpu) -> libc::c_int {
    guard(|| {
        if th.is_null() || to.is_null() {
            return Err(Errno::EINVAL);
        }
        let to = u32::try_from(to as usize).map_err(|_| Errno::EINVAL)?;
        sched::migrate(Handle(th as u64), to).map(|()| 0)
    })
}
