//! Thread identity: what code written for OS threads needs to know about
//! "the current thread" when photon threads share an OS thread (the
//! preload shim's pthread keys and locks, thread-local isolation).

use core::ffi::{CStr, c_char, c_int, c_void};

use super::guard;
use crate::errno::Errno;
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
pub extern "C" fn photon_thread_number(is_main: *mut c_int) -> u32 {
    let (number, main) = sched::thread_number();
    if !is_main.is_null() {
        // SAFETY: the caller passes a writable int or NULL (checked).
        unsafe { *is_main = main as c_int };
    }
    number
}

/// Makes the thread-locals (`__thread`, C++ `thread_local`) of the loaded
/// modules whose file name starts with `module` follow the photon thread:
/// from now on every photon thread has its own copy, initialised from the
/// module's TLS image as a new OS thread's would be, kept across every
/// switch and carried along by `photon_thread_migrate`, and freed when the
/// photon thread ends. A vcpu's main thread keeps the OS thread's copy, and
/// plain OS threads are untouched. `"*"` names every loaded module except
/// the C and C++ runtimes (glibc's libraries, libgcc_s, libstdc++), memory
/// allocators (jemalloc, tcmalloc, mimalloc), sanitizer runtimes and
/// libphoton, and also covers modules loaded later (call
/// `photon_tls_rescan` after `dlopen`; the preload shim does).
///
/// Isolated modules are never unloaded (`RTLD_NODELETE`). A thread-local's
/// address is valid while its photon thread stays on one vcpu. The cost is
/// a copy of the isolated blocks at each switch between two photon threads
/// (none to or from the idle thread). `PHOTON_TLS_ISOLATE` (`name,name`,
/// `*` or `none`; default `*` under the preload shim, else `none`) is
/// applied at the first `photon_init`. Callable from any OS thread.
///
/// Returns 0, or -1 with `EINVAL` (NULL or empty), `ENOENT` (no loaded
/// module's file name starts with `module`) or `EPERM` (only modules that
/// are never isolated have that name: the runtimes, allocators, libphoton).
#[unsafe(no_mangle)]
pub extern "C" fn photon_tls_isolate(module: *const c_char) -> c_int {
    guard(|| {
        if module.is_null() {
            return Err(Errno::EINVAL);
        }
        // SAFETY: a non-NULL, NUL-terminated string from the caller.
        let name = unsafe { CStr::from_ptr(module) }.to_str().map_err(|_| Errno::EINVAL)?;
        sched::tls::isolate(name).map(|()| 0)
    })
}

/// Applies the thread-local isolation asked for so far (names, or `"*"`) to
/// modules loaded since (call it after `dlopen`). Returns the number of
/// blocks that now follow the photon thread in addition. Callable from any
/// OS thread.
#[unsafe(no_mangle)]
pub extern "C" fn photon_tls_rescan() -> c_int {
    guard(|| Ok(sched::tls::rescan().min(c_int::MAX as usize) as c_int))
}

/// Registers `dtor(obj)` to run when the calling photon thread ends, if
/// `obj` lies in a thread-local block that follows the photon thread (an
/// isolated module's): the preload shim routes C++ `thread_local`
/// destructors (`__cxa_thread_atexit_impl`) here, so each photon thread's
/// objects are destroyed at its own end, last registered first, before its
/// key destructors, at the object's address on the vcpu it ends on.
///
/// Returns 0, or -1 with `EINVAL` (`dtor` NULL), `ENOENT` (`obj` is not in
/// an isolated block, or the caller is a vcpu's main thread, which keeps
/// the OS thread's registration) or `EPERM` (off a vcpu).
#[unsafe(no_mangle)]
pub extern "C" fn photon_tls_atexit(dtor: Option<unsafe extern "C" fn(*mut c_void)>, obj: *mut c_void) -> c_int {
    guard(|| {
        let dtor = dtor.ok_or(Errno::EINVAL)?;
        sched::tls::atexit(dtor, obj as usize).map(|()| 0)
    })
}

/// 1 when `libphoton_preload.so` is loaded in the process (by `LD_PRELOAD`
/// or linked before libphoton), else 0. Never sets errno.
#[unsafe(no_mangle)]
pub extern "C" fn photon_preload_active() -> c_int {
    sched::tls::preload_active() as c_int
}
