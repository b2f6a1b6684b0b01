//! pthread keys per photon thread: `pthread_key_create`, `pthread_key_delete`,
//! `pthread_getspecific`, `pthread_setspecific`.
//!
//! Keys are glibc's (created and deleted by its own functions, so one key
//! serves plain pthreads and photon threads at once). The shim records each
//! key's destructor and a generation in [`KEYS`]. Where the caller is a
//! photon thread other than a vcpu's main thread (the main thread is the OS
//! thread itself and keeps its identity), values live in a table of that
//! photon thread's own ([`Table`], allocated on its first set), reached
//! through one libphoton key ([`PKEY`]) so that it follows the thread across
//! migrations; each value is tagged with the generation its key had when
//! it was set, so a deleted (or deleted and re-created) key reads NULL.
//! When the photon thread ends, libphoton runs the table's destructor
//! ([`table_dtor`]), which runs the keys' destructors in POSIX's rounds and
//! frees the table. Everywhere else the calls go to glibc unchanged.
//!
//! `PHOTON_PRELOAD_PTHREAD=0` (read once, at the shim's start) turns this
//! off: every call goes to glibc. Keys not created through the hook (glibc's
//! internal ones) are unknown here: in a photon thread they read NULL and
//! `pthread_setspecific` on them fails with `EINVAL`.

use core::ffi::{c_int, c_void};
use core::ptr;
use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Mutex;

use crate::{photon, real};

/// glibc's `PTHREAD_KEYS_MAX`.
const KEYS_MAX: usize = 1024;
/// POSIX's `PTHREAD_DESTRUCTOR_ITERATIONS` (glibc's value).
const DESTRUCTOR_ROUNDS: usize = 4;
/// Keys per page of a photon thread's table.
const PAGE: usize = 32;
const PAGES: usize = KEYS_MAX / PAGE;

type Destructor = unsafe extern "C" fn(*mut c_void);

/// What the shim knows of one glibc key.
struct Key {
    /// `generation << 1 | live`; a value counts when its tag equals this.
    generation: AtomicU64,
    /// The destructor given to `pthread_key_create` (0: none).
    dtor: AtomicUsize,
}

static KEYS: [Key; KEYS_MAX] = [const {
    Key {
        generation: AtomicU64::new(0),
        dtor: AtomicUsize::new(0),
    }
}; KEYS_MAX];

/// Orders the real create/delete with the generation change, so that a key
/// number glibc hands out again is never marked dead by a late delete.
static KEY_LOCK: Mutex<()> = Mutex::new(());

/// The libphoton key holding each photon thread's [`Table`]; `NO_KEY` until
/// the first photon-thread set.
static PKEY: AtomicU32 = AtomicU32::new(NO_KEY);
const NO_KEY: u32 = u32::MAX;

/// 0: not read yet, 1: on, 2: off (`PHOTON_PRELOAD_PTHREAD=0`).
static ENABLED: AtomicU8 = AtomicU8::new(0);

/// Reads `PHOTON_PRELOAD_PTHREAD` (the shim's constructor calls it; a hook
/// reached before that reads it then).
pub(crate) fn init() -> bool {
    match ENABLED.load(Relaxed) {
        1 => true,
        2 => false,
        _ => {
            // SAFETY: getenv with a NUL-terminated name; the result is read at once.
            let v = unsafe { libc::getenv(c"PHOTON_PRELOAD_PTHREAD".as_ptr()) };
            // SAFETY: getenv returns NULL or a NUL-terminated string.
            let off = !v.is_null() && unsafe { core::ffi::CStr::from_ptr(v) }.to_bytes() == b"0";
            ENABLED.store(if off { 2 } else { 1 }, Relaxed);
            !off
        }
    }
}

/// One photon thread's value for a key: the key's generation when set.
#[derive(Clone, Copy)]
#[repr(C)]
struct Slot {
    tag: u64,
    value: *mut c_void,
}

/// A photon thread's values: pages of [`PAGE`] slots, allocated on demand.
#[repr(C)]
struct Table {
    pages: [*mut [Slot; PAGE]; PAGES],
}

/// The calling photon thread's table: None where the OS thread's own
/// identity applies (off photon threads, a vcpu's main thread, keys off);
/// Some(NULL) for a photon thread that has set nothing yet.
#[inline]
fn photon_table() -> Option<*mut Table> {
    if ENABLED.load(Relaxed) != 1 && !init() {
        return None;
    }
    let mut is_main: c_int = 0;
    // SAFETY: a libphoton query writing one int.
    let n = unsafe { photon::photon_thread_number(&mut is_main) };
    if n == 0 || is_main != 0 {
        return None;
    }
    let pkey = PKEY.load(Acquire);
    if pkey == NO_KEY {
        return Some(ptr::null_mut());
    }
    // SAFETY: a libphoton call on a live key, in a photon thread.
    Some(unsafe { photon::photon_getspecific(pkey) }.cast())
}

/// The slot of `key` in `table`, if its page exists.
///
/// # Safety
/// `table` is a live table; `key < KEYS_MAX`.
#[inline]
unsafe fn slot(table: *mut Table, key: usize) -> *mut Slot {
    // SAFETY: per the contract.
    let page = unsafe { (*table).pages[key / PAGE] };
    if page.is_null() {
        ptr::null_mut()
    } else {
        // SAFETY: a page of PAGE slots.
        unsafe { (*page).as_mut_ptr().add(key % PAGE) }
    }
}

/// The libphoton key for the tables, created on first need.
fn pkey() -> Option<u32> {
    let k = PKEY.load(Acquire);
    if k != NO_KEY {
        return Some(k);
    }
    let _g = KEY_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let k = PKEY.load(Acquire);
    if k != NO_KEY {
        return Some(k);
    }
    let mut k = 0u32;
    // SAFETY: a libphoton call writing one u32.
    if unsafe { photon::photon_key_create(&mut k, Some(table_dtor)) } != 0 {
        return None;
    }
    PKEY.store(k, Release);
    Some(k)
}

/// The calling photon thread's table, made now if it has none.
fn table_for_set(table: *mut Table) -> Option<*mut Table> {
    if !table.is_null() {
        return Some(table);
    }
    let k = pkey()?;
    // SAFETY: calloc of a plain-data table (NULL pages).
    let t = unsafe { libc::calloc(1, size_of::<Table>()) }.cast::<Table>();
    if t.is_null() {
        return None;
    }
    // SAFETY: a photon thread setting its own value of a live key.
    if unsafe { photon::photon_setspecific(k, t.cast()) } != 0 {
        // SAFETY: ours, unused.
        unsafe { libc::free(t.cast()) };
        return None;
    }
    Some(t)
}

/// Runs the destructors of a photon thread's values (POSIX's rounds: each
/// non-NULL value of a live key is cleared, then its destructor runs; again
/// while destructors set values, at most [`DESTRUCTOR_ROUNDS`] times), then
/// frees the table. The table stays the thread's while destructors run, so
/// they may get and set values.
#[allow(clippy::needless_range_loop)] // the key number indexes the table and KEYS
unsafe extern "C" fn table_dtor(t: *mut c_void) {
    crate::boundary((), || {
        let table = t.cast::<Table>();
        let k = PKEY.load(Acquire);
        // SAFETY: back in place for the destructors' gets and sets; this thread's own key.
        unsafe { photon::photon_setspecific(k, t) };
        for _ in 0..DESTRUCTOR_ROUNDS {
            let mut ran = false;
            for key in 0..KEYS_MAX {
                // SAFETY: the live table.
                let s = unsafe { slot(table, key) };
                // SAFETY: a slot of the live table (checked non-NULL).
                if s.is_null() || unsafe { (*s).value.is_null() } {
                    continue;
                }
                // SAFETY: as above.
                let Slot { tag, value } = unsafe { *s };
                // SAFETY: as above.
                unsafe { (*s).value = ptr::null_mut() };
                if tag != KEYS[key].generation.load(Acquire) {
                    continue; // the key was deleted since
                }
                let d = KEYS[key].dtor.load(Acquire);
                if d != 0 {
                    // SAFETY: only destructors given to pthread_key_create are stored.
                    let d = unsafe { core::mem::transmute::<usize, Destructor>(d) };
                    // SAFETY: the program's destructor with the value it set.
                    unsafe { d(value) };
                    ran = true;
                }
            }
            if !ran {
                break;
            }
        }
        // SAFETY: the thread's key no longer points at the table, which is freed.
        unsafe {
            photon::photon_setspecific(k, ptr::null());
            for page in (*table).pages {
                libc::free(page.cast());
            }
            libc::free(t);
        }
    })
}

/// `pthread_key_create`: glibc's, with the destructor and a new generation
/// recorded for photon threads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_key_create(key: *mut libc::pthread_key_t, dtor: Option<Destructor>) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        let _g = KEY_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the caller's arguments, as glibc takes them.
        let r = unsafe { real::pthread_key_create(key, dtor) };
        if r == 0
            // SAFETY: glibc wrote the new key when it returned 0.
            && let Some(e) = KEYS.get(unsafe { *key } as usize)
        {
            e.dtor.store(dtor.map_or(0, |d| d as usize), Release);
            let g = e.generation.load(Relaxed);
            e.generation.store((g | 1) + 2, Release); // new generation, live
        }
        r
    })
}

/// `pthread_key_delete`: glibc's; photon threads' values of the key become
/// unreachable (read NULL), as glibc makes plain threads'.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_key_delete(key: libc::pthread_key_t) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        let _g = KEY_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: glibc checks the key.
        let r = unsafe { real::pthread_key_delete(key) };
        if r == 0
            && let Some(e) = KEYS.get(key as usize)
        {
            let g = e.generation.load(Relaxed);
            e.generation.store((g | 1) + 1, Release); // next generation, dead
        }
        r
    })
}

/// `pthread_getspecific`: in a photon thread (not a vcpu's main), that
/// thread's value; elsewhere glibc's. Never allocates.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_getspecific(key: libc::pthread_key_t) -> *mut c_void {
    crate::boundary(core::ptr::null_mut(), || {
        let Some(table) = photon_table() else {
            // SAFETY: glibc checks the key.
            return unsafe { real::pthread_getspecific(key) };
        };
        let k = key as usize;
        if table.is_null() || k >= KEYS_MAX {
            return ptr::null_mut();
        }
        // SAFETY: this thread's live table; k in range.
        let s = unsafe { slot(table, k) };
        if s.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: a slot of the live table.
        let Slot { tag, value } = unsafe { *s };
        if tag == KEYS[k].generation.load(Acquire) {
            value
        } else {
            ptr::null_mut()
        }
    })
}

/// `pthread_setspecific`: in a photon thread (not a vcpu's main), sets that
/// thread's value (`EINVAL` for a key that is not live, `ENOMEM` when its
/// table cannot be made); elsewhere glibc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_setspecific(key: libc::pthread_key_t, value: *const c_void) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        let Some(table) = photon_table() else {
            // SAFETY: glibc checks the key.
            return unsafe { real::pthread_setspecific(key, value) };
        };
        let k = key as usize;
        let Some(e) = KEYS.get(k) else {
            return libc::EINVAL;
        };
        let tag = e.generation.load(Acquire);
        if tag & 1 == 0 {
            return libc::EINVAL;
        }
        let mut s = if table.is_null() {
            ptr::null_mut()
        } else {
            // SAFETY: this thread's live table.
            unsafe { slot(table, k) }
        };
        if s.is_null() {
            if value.is_null() {
                return 0; // NULL is what an absent slot reads
            }
            let Some(table) = table_for_set(table) else {
                return libc::ENOMEM;
            };
            // SAFETY: calloc of a page of plain-data slots.
            let page = unsafe { libc::calloc(1, size_of::<[Slot; PAGE]>()) }.cast::<[Slot; PAGE]>();
            if page.is_null() {
                return libc::ENOMEM;
            }
            // SAFETY: the live table; its page k / PAGE was NULL.
            unsafe {
                (*table).pages[k / PAGE] = page;
                s = slot(table, k);
            }
        }
        // SAFETY: a slot of the live table.
        unsafe {
            *s = Slot {
                tag,
                value: value.cast_mut(),
            }
        };
        0
    })
}
