//! Several vcpus: identities, work pools, migration.

use core::ffi::c_void;

use super::guard;
use super::handle::{BoxOwned, Boxed, Castable, Encoded, ValueEncoded};
use super::thread::{photon_entry, photon_thread};
use crate::errno::Errno;
use crate::sched::{self, WorkPool};

/// A vcpu's identity (an OS thread running a photon scheduler). Opaque: an
/// encoded id, stable for the vcpu's life, never dereferenced.
pub struct photon_vcpu {
    _private: [u8; 0],
}

/// A pool of vcpus on their own OS threads. Opaque.
pub struct photon_workpool {
    _private: [u8; 0],
}

/// The pointer's bits are the vcpu's id (non-zero, 32 bits).
impl Castable for photon_vcpu {
    type Ownership = ValueEncoded;
    type RustType = u32;
}

impl Encoded for photon_vcpu {
    fn to_bits(id: u32) -> usize {
        id as usize
    }
    fn from_bits(b: usize) -> Option<u32> {
        u32::try_from(b).ok()
    }
}

impl Castable for photon_workpool {
    type Ownership = BoxOwned;
    type RustType = WorkPool;
}

/// The calling vcpu (the same value `photon_workpool_vcpu` gives for it),
/// or NULL with `EPERM` off a vcpu.
#[unsafe(no_mangle)]
pub extern "C" fn photon_vcpu_current() -> *mut photon_vcpu {
    guard(|| match sched::current_id() {
        0 => Err(Errno::EPERM),
        id => Ok(photon_vcpu::encode(id)),
    })
}

/// Starts a pool of `vcpus` (1..=1024) OS threads, each a vcpu on
/// `event_engine`. Callable from any OS thread. NULL with `EINVAL` or the
/// engine's setup error.
#[unsafe(no_mangle)]
pub extern "C" fn photon_workpool_new(vcpus: u32, event_engine: u64) -> *mut photon_workpool {
    guard(|| WorkPool::new(vcpus, event_engine).map(photon_workpool::publish))
}

/// Ends the pool's vcpus as `photon_fini` does (waiting for their threads;
/// those blocked without a timeout get `ECANCELED`) and joins their OS
/// threads. NULL is ignored. Call it once, from outside the pool.
#[unsafe(no_mangle)]
pub extern "C" fn photon_workpool_free(p: *mut photon_workpool) {
    // Under the boundary: the pool's Drop stops its vcpus and joins threads.
    guard(|| {
        drop(photon_workpool::take(p));
        Ok(())
    })
}

/// The pool's vcpu number `index`, or NULL with `EINVAL`.
#[unsafe(no_mangle)]
pub extern "C" fn photon_workpool_vcpu(p: *mut photon_workpool, index: u32) -> *mut photon_vcpu {
    guard(|| {
        photon_workpool::borrow(p)?
            .vcpu(index as usize)
            .map(photon_vcpu::encode)
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
        let r = photon_workpool::borrow(p)?.call(fn_.ok_or(Errno::EINVAL)?, arg)?;
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
    guard(|| {
        photon_workpool::borrow(p)?
            .spawn(fn_.ok_or(Errno::EINVAL)?, arg)
            .map(|()| 0)
    })
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
        let (th, to) = (photon_thread::decode(th)?, photon_vcpu::decode(to)?);
        sched::migrate(th, to).map(|()| 0)
    })
}
