//! Thread identity in the shim: the marker that tells libphoton the shim is
//! loaded (so thread-local isolation defaults to `*`), and C++
//! `thread_local` destructors that run at the end of the photon thread that
//! built the object.
//!
//! libstdc++ registers a `thread_local` object's destructor with
//! `__cxa_thread_atexit_impl`, which glibc keeps per OS thread. When the
//! object lives in a thread-local block that follows the photon thread
//! (libphoton's isolation), each photon thread builds its own copy at the
//! same address; glibc would run every registration at the OS thread's
//! exit, on whatever copy is live then. Here such a registration goes to
//! libphoton (`photon_tls_atexit`), which runs it when the photon thread
//! ends, on that thread's own copy.

use core::ffi::{c_char, c_int, c_void};

use crate::photon;
use crate::real;

/// Exported so libphoton can tell the shim is loaded
/// (`photon_preload_active`). Returns the shim's version.
#[unsafe(no_mangle)]
pub extern "C" fn photon_preload_version() -> *const c_char {
    c"0.1.0".as_ptr()
}

type Dtor = unsafe extern "C" fn(*mut c_void);

/// `__cxa_thread_atexit_impl` (glibc): in a photon thread other than a
/// vcpu's main one, for an object in a thread-local block that follows the
/// photon thread, the destructor runs when the photon thread ends
/// (`photon_tls_atexit`); everything else goes to glibc.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __cxa_thread_atexit_impl(dtor: Option<Dtor>, obj: *mut c_void, dso: *mut c_void) -> c_int {
    crate::boundary(-1, || {
        // SAFETY: libphoton's registration; ENOENT/EPERM when it does not apply.
        if dtor.is_some() && crate::active() && unsafe { photon::photon_tls_atexit(dtor, obj) } == 0 {
            return 0;
        }
        // SAFETY: glibc's function with the caller's arguments.
        unsafe { real::__cxa_thread_atexit_impl(dtor, obj, dso) }
    })
}
