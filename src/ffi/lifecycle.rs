//! Lifecycle: `photon_init`, `photon_fini`, engine name, version, clock.

use core::ffi::c_char;

use super::guard;
use crate::engine;
use crate::errno::Errno;
use crate::sched;

/// Use io_uring when this kernel and process allow it, else epoll (with one
/// logged warning saying why). `PHOTON_ENGINE=io_uring|epoll` overrides it.
pub const PHOTON_EVENT_DEFAULT: u64 = 0;
/// The epoll engine.
pub const PHOTON_EVENT_EPOLL: u64 = 1;
/// The io_uring engine.
pub const PHOTON_EVENT_IOURING: u64 = 2;
const _: () = assert!(
    PHOTON_EVENT_DEFAULT == engine::EVENT_DEFAULT
        && PHOTON_EVENT_EPOLL == engine::EVENT_EPOLL
        && PHOTON_EVENT_IOURING == engine::EVENT_IOURING
);

/// `photon_init` flag: the io_uring engine's submission queue is polled by
/// a kernel thread (`IORING_SETUP_SQPOLL`), so queuing an operation costs
/// no system call. The price is CPU: that kernel thread spins on a CPU
/// while operations keep coming and for 10 ms after the last one (then it
/// sleeps until the next submission wakes it, which costs one syscall), so
/// a busy vcpu uses up to one more CPU. Opt-in; measured in `bench echo`.
/// Ignored by the epoll engine. A kernel that refuses it (before 5.11 it
/// needs CAP_SYS_NICE) gets a ring without it and one logged line.
/// `PHOTON_IO_SQPOLL=1` in the environment sets it for every vcpu.
pub const PHOTON_INIT_IOURING_SQPOLL: u64 = 1;
const _: () = assert!(PHOTON_INIT_IOURING_SQPOLL == engine::INIT_SQPOLL);

/// A `timeout_us` meaning "no timeout".
pub const PHOTON_FOREVER: u64 = u64::MAX;

/// Makes the calling OS thread a vcpu, running photon threads on the event
/// engine `event_engine` (`PHOTON_EVENT_*`); the caller becomes its main
/// photon thread. `flags`: 0, or `PHOTON_INIT_IOURING_SQPOLL`.
///
/// Returns 0, or -1 with errno: `EINVAL` (unknown engine or unknown flags),
/// `EALREADY` (this OS thread is already a vcpu), `ENOSYS` (the engine
/// asked for explicitly is unavailable), or the engine's setup error.
#[unsafe(no_mangle)]
pub extern "C" fn photon_init(event_engine: u64, flags: u64) -> libc::c_int {
    guard(|| {
        if flags & !PHOTON_INIT_IOURING_SQPOLL != 0 {
            return Err(Errno::EINVAL);
        }
        sched::init(event_engine, flags).map(|()| 0)
    })
}

/// Ends the calling vcpu. Waits for its other photon threads to end;
/// threads blocked without a timeout are interrupted with `ECANCELED` (again
/// every 10 ms while they keep blocking), so it does not hang on them.
/// Afterwards `photon_init` may be called again on this OS thread.
///
/// Returns 0, or -1 with `EPERM` when the caller is not a vcpu's main photon
/// thread (the one that called `photon_init`).
#[unsafe(no_mangle)]
pub extern "C" fn photon_fini() -> libc::c_int {
    guard(|| sched::fini().map(|()| 0))
}

/// The calling vcpu's engine, `"io_uring"` or `"epoll"`; NULL (errno
/// `EPERM`) off a vcpu. The string is static.
#[unsafe(no_mangle)]
pub extern "C" fn photon_engine_name() -> *const c_char {
    guard(|| {
        let name = sched::engine_name().ok_or(Errno::EPERM)?;
        Ok(match name {
            "io_uring" => c"io_uring".as_ptr(),
            _ => c"epoll".as_ptr(),
        })
    })
}

/// The library version, e.g. `"0.1.0"`. Static; callable anywhere.
#[unsafe(no_mangle)]
pub extern "C" fn photon_version() -> *const c_char {
    const V: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    V.as_ptr().cast()
}

/// 1 when the caller runs in a photon thread on a vcpu (the main thread of
/// `photon_init` or one it created), 0 elsewhere: on an OS thread that is
/// not a vcpu, and inside the runtime's own scheduler and engine waits.
/// Where it is 1, a blocking call should be a photon wait; the preload
/// shim asks this before every hooked call. Never sets errno.
#[unsafe(no_mangle)]
pub extern "C" fn photon_in_thread() -> libc::c_int {
    crate::sched::in_thread() as libc::c_int
}

/// Monotonic time in microseconds (`CLOCK_MONOTONIC`). Callable anywhere.
#[unsafe(no_mangle)]
pub extern "C" fn photon_now_us() -> u64 {
    crate::time::now_us()
}

/// Gives memory the runtime keeps for reuse back to the kernel: the calling
/// vcpu's pooled thread stacks at once, every other vcpu's when it next runs
/// its scheduler (soon: it is woken), and with them the pages of receive
/// buffers no connection uses (io_uring's multishot receive rings). A vcpu
/// also does this by itself, keeping a few stacks, after
/// `PHOTON_STACK_TRIM_MS` (default 1000; 0: never) without creating or
/// ending threads while it has nothing to run. Callable from any OS thread.
///
/// Returns the bytes of stack address space this call unmapped (never
/// fails; 0 when nothing was pooled); the buffers' pages are not counted.
#[unsafe(no_mangle)]
pub extern "C" fn photon_trim() -> usize {
    std::panic::catch_unwind(sched::trim).unwrap_or(0)
}
