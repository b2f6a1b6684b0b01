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
//! exit, on whatever copy is live then. Here such a registration goes to a
//! list of the photon thread's own, run (last registered first) when it
//! ends, while its copy is still the live one.

use core::ffi::{c_char, c_int, c_void};
use core::sync::atomic::{AtomicU32, Ordering::*};

use crate::photon;
use crate::real;

/// Exported so libphoton can tell the shim is loaded
/// (`photon_preload_active`). Returns the shim's version.
#[unsafe(no_mangle)]
pub extern "C" fn photon_preload_version() -> *const c_char {
    c"0.1.0".as_ptr()
}

type Dtor = unsafe extern "C" fn(*mut c_void);

/// One registered destructor.
struct Registered {
    dtor: Dtor,
    obj: *mut c_void,
}

/// The photon key holding each photon thread's list, or `u32::MAX`.
static KEY: AtomicU32 = AtomicU32::new(u32::MAX);

/// Creates the key (the shim's constructor, before the program runs, so its
/// destructor runs before those of keys the program creates: C++
/// `thread_local` destructors first, then pthread keys, as glibc orders them).
pub(crate) fn init() {
    let mut key = 0u32;
    // SAFETY: creates a key with our destructor.
    if unsafe { photon::photon_key_create(&mut key, Some(run_list)) } == 0 {
        KEY.store(key, Release);
    }
}

/// Runs a photon thread's `thread_local` destructors (a photon key destructor).
unsafe extern "C" fn run_list(list: *mut c_void) {
    // SAFETY: the value was made by Box::into_raw in the hook below.
    let list = unsafe { Box::from_raw(list.cast::<Vec<Registered>>()) };
    for r in list.iter().rev() {
        // SAFETY: the destructor and object the C++ runtime registered.
        unsafe { (r.dtor)(r.obj) };
    }
    // A destructor that touches another thread_local registers it anew: the
    // key then holds a new list, which the next destructor round runs.
}

/// `__cxa_thread_atexit_impl` (glibc): in a photon thread other than a
/// vcpu's main one, for an object in a thread-local block that follows the
/// photon thread, the destructor runs when the photon thread ends;
/// everything else goes to glibc.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __cxa_thread_atexit_impl(dtor: Option<Dtor>, obj: *mut c_void, dso: *mut c_void) -> c_int {
    let key = KEY.load(Acquire);
    if let Some(d) = dtor
        && key != u32::MAX
    {
        let mut main: c_int = 0;
        // SAFETY: libphoton queries with no preconditions.
        let mine = unsafe {
            photon::photon_thread_number(&mut main) != 0 && main == 0 && photon::photon_tls_is_isolated(obj) == 1
        };
        if mine {
            // SAFETY: the key is ours; its value is a list we made.
            unsafe {
                let mut list = photon::photon_getspecific(key).cast::<Vec<Registered>>();
                if list.is_null() {
                    list = Box::into_raw(Box::new(Vec::new()));
                    if photon::photon_setspecific(key, list.cast()) != 0 {
                        drop(Box::from_raw(list));
                        return real::__cxa_thread_atexit_impl(dtor, obj, dso);
                    }
                }
                (*list).push(Registered { dtor: d, obj });
            }
            return 0;
        }
    }
    // SAFETY: glibc's function with the caller's arguments.
    unsafe { real::__cxa_thread_atexit_impl(dtor, obj, dso) }
}
