//! `pthread_create` as a photon thread (`PHOTON_PRELOAD_THREADS=photon`).
//!
//! With the variable set (read once, in the shim's constructor), the shim
//! starts a libphoton work pool of `PHOTON_VCPUS` vcpus (default: the CPUs
//! the process may run on) at the first `pthread_create` (lazily, so a
//! program may fork to daemonize first; a forked child forgets the pool),
//! and every later `pthread_create` makes a photon thread on one of its
//! vcpus (round robin) instead of an OS thread. These stay OS threads:
//! threads whose start routine lies in libphoton (its vcpus, offload
//! helpers, monitors) or in the shim, and in a module named by
//! `PHOTON_PRELOAD_THREADS_EXCEPT=libfoo.so,...` (prefixes of file names).
//! The threads that existed before (main included) stay OS threads too.
//!
//! Such a thread's `pthread_t` is a [`Rec`] of the shim's: start routine,
//! argument, result, and a state word that joiners wait on (a photon futex
//! wait in a photon thread, a real futex wait elsewhere). Its first word is
//! its address xor [`MAGIC`], which tells it from a glibc `pthread_t`
//! (whose first word is its own address). The thread ends, for joiners,
//! after its key and `thread_local` destructors (libphoton's
//! `photon_thread_on_end`). Records are recycled, never freed, so a stale
//! `pthread_t` of the shim's is never followed into freed memory.
//!
//! Without the variable every hook here is a plain call of glibc's.

use core::ffi::{CStr, c_char, c_int, c_void};
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicUsize, Ordering::*};
use std::collections::BTreeMap;
use std::sync::Mutex;

use libc::{clockid_t, cpu_set_t, pthread_attr_t, pthread_t, sched_param, size_t, timespec};

use crate::pthread::Abs;
use crate::{photon, real, say};

/// `PHOTON_PRELOAD_THREADS`: 0 not read, 1 off, 2 photon.
static MODE: AtomicU8 = AtomicU8::new(0);

/// True when `PHOTON_PRELOAD_THREADS=photon`.
#[inline]
pub(crate) fn enabled() -> bool {
    match MODE.load(Relaxed) {
        1 => false,
        2 => true,
        _ => read_mode(),
    }
}

#[cold]
fn read_mode() -> bool {
    // SAFETY: getenv with a NUL-terminated name; the result is read at once.
    let v = unsafe { libc::getenv(c"PHOTON_PRELOAD_THREADS".as_ptr()) };
    let value = if v.is_null() {
        &b""[..]
    } else {
        // SAFETY: getenv returned a NUL-terminated string.
        unsafe { CStr::from_ptr(v) }.to_bytes()
    };
    let on = value == b"photon";
    if MODE
        .compare_exchange(0, if on { 2 } else { 1 }, Relaxed, Relaxed)
        .is_ok()
        && !on
        && !value.is_empty()
    {
        say(b"[photon-preload] PHOTON_PRELOAD_THREADS is set but not to \"photon\": pthreads stay OS threads\n");
    }
    MODE.load(Relaxed) == 2
}

/// How many vcpus the pool gets: `PHOTON_VCPUS`, else the CPUs the process
/// may run on (1..=1024).
pub(crate) fn vcpu_count() -> u32 {
    // SAFETY: getenv with a NUL-terminated name; the result is read at once.
    let v = unsafe { libc::getenv(c"PHOTON_VCPUS".as_ptr()) };
    if !v.is_null() {
        // SAFETY: getenv returns a NUL-terminated string.
        let s = unsafe { CStr::from_ptr(v) }.to_bytes();
        if let Some(n) = core::str::from_utf8(s).ok().and_then(|s| s.trim().parse::<u32>().ok())
            && (1..=1024).contains(&n)
        {
            return n;
        }
    }
    // SAFETY: a zeroed cpu_set_t filled by the kernel.
    let n = unsafe {
        let mut set: cpu_set_t = core::mem::zeroed();
        if libc::sched_getaffinity(0, core::mem::size_of::<cpu_set_t>(), &mut set) == 0 {
            libc::CPU_COUNT(&set) as u32
        } else {
            libc::sysconf(libc::_SC_NPROCESSORS_ONLN).max(1) as u32
        }
    };
    n.clamp(1, 1024)
}

/// Hooks of this module that are not in `real::NAMES` (for the debug log).
pub(crate) const EXTRA_NAMES: &[&str] = &["pthread_exit", "pthread_equal"];

/// The debug log's sentence on this mode.
pub(crate) fn describe(out: &mut crate::Buf<'_>) {
    if enabled() {
        out.push(b"pthread_create makes photon threads on ");
        out.num(vcpu_count() as usize);
        out.push(
            b" vcpus (PHOTON_PRELOAD_THREADS=photon), which the shim starts at the first pthread_create; \
              no vcpu exists before that, and main, the threads that existed before and those of \
              PHOTON_PRELOAD_THREADS_EXCEPT stay OS threads whose every call passes through to libc",
        );
    } else {
        out.push(
            b"pthreads stay OS threads (PHOTON_PRELOAD_THREADS unset); no vcpu exists yet, so every call \
              passes through to libc until the program calls photon_init and runs photon threads \
              (an unmodified pthread program gets no coroutines in this mode: PHOTON_PRELOAD_THREADS=photon \
              makes its pthreads photon threads)",
        );
    }
}

/// Set once the debug log has said what the first `pthread_create` of the
/// program made when threads stay OS threads.
static ANNOUNCED: AtomicBool = AtomicBool::new(false);

/// In debug mode, the first `pthread_create` of the program's own (not
/// libphoton's) with threads left as OS threads says so.
#[cold]
fn announce_os_thread(start: Option<Start>) {
    if let Some(f) = start
        && !stays_os_thread(f as usize)
        && !ANNOUNCED.swap(true, Relaxed)
        && crate::debug_logging()
    {
        say(
            b"[photon-preload DEBUG] pthread_create made an OS thread (PHOTON_PRELOAD_THREADS is not \"photon\"): \
              its calls pass through to libc, as they would without the shim, unless it calls photon_init\n",
        );
    }
}

// ---- the pool

/// The work pool (a `photon_workpool*`), 0 before the first photon thread.
static POOL: AtomicUsize = AtomicUsize::new(0);
/// 0 no pool, 1 being started, 2 started, 3 failed to start.
static POOL_STATE: AtomicU8 = AtomicU8::new(0);
/// The photon key whose value is the running thread's record.
static SELF_KEY: AtomicU32 = AtomicU32::new(u32::MAX);

/// The pool, started now if it is not yet; None if it cannot be.
fn pool() -> Option<*mut c_void> {
    loop {
        match POOL_STATE.load(Acquire) {
            2 => return Some(POOL.load(Relaxed) as *mut c_void),
            3 => return None,
            0 if POOL_STATE.compare_exchange(0, 1, Acquire, Relaxed).is_ok() => {
                let ok = start_pool();
                POOL_STATE.store(if ok { 2 } else { 3 }, Release);
            }
            _ => {
                // SAFETY: glibc's sched_yield, no arguments.
                unsafe { real::sched_yield() };
            }
        }
    }
}

#[cold]
fn start_pool() -> bool {
    let mut key = u32::MAX;
    // SAFETY: libphoton writes one u32.
    if unsafe { photon::photon_key_create(&mut key, None) } != 0 {
        say(b"[photon-preload] PHOTON_PRELOAD_THREADS=photon: no photon key left; pthreads stay OS threads\n");
        return false;
    }
    SELF_KEY.store(key, Relaxed);
    let n = vcpu_count();
    // SAFETY: starts OS threads (whose start routines are libphoton's, so
    // their pthread_create passes through to glibc).
    let p = unsafe { photon::photon_workpool_new(n, 0) };
    if p.is_null() {
        say(b"[photon-preload] PHOTON_PRELOAD_THREADS=photon: the work pool did not start; pthreads stay OS threads\n");
        return false;
    }
    POOL.store(p as usize, Relaxed);
    if !crate::pthread::enabled() {
        say(b"[photon-preload] PHOTON_PRELOAD_THREADS=photon with PHOTON_PRELOAD_PTHREAD=0: a contended pthread lock blocks a whole vcpu\n");
    }
    if crate::debug_logging() {
        let mut line = [0u8; 128];
        let mut out = crate::Buf(&mut line, 0);
        out.push(b"[photon-preload DEBUG] started ");
        out.num(n as usize);
        out.push(b" vcpus for pthread_create\n");
        let len = out.1;
        say(&line[..len]);
    }
    true
}

/// The pool does not exist in a forked child: forget it (a later
/// `pthread_create` there starts a new one).
extern "C" fn forked_child() {
    POOL.store(0, Relaxed);
    POOL_STATE.store(0, Relaxed);
}

/// Reads the mode before the program runs and registers the fork handler.
extern "C" fn setup() {
    if enabled() {
        // SAFETY: registers a handler that only touches atomics.
        unsafe { libc::pthread_atfork(None, None, Some(forked_child)) };
    }
}

#[used]
#[unsafe(link_section = ".init_array")]
static SETUP: extern "C" fn() = setup;

// ---- which start routines stay OS threads

/// The load base of the module holding `addr`, with its file name.
fn module_of(addr: usize) -> Option<(usize, *const c_char)> {
    // SAFETY: dladdr fills a Dl_info for any address; zeroed is a valid start.
    unsafe {
        let mut info: libc::Dl_info = core::mem::zeroed();
        (libc::dladdr(addr as *const c_void, &mut info) != 0).then_some((info.dli_fbase as usize, info.dli_fname))
    }
}

/// Load bases of libphoton and of the shim (0 until found).
static LIBPHOTON_BASE: AtomicUsize = AtomicUsize::new(0);
static SHIM_BASE: AtomicUsize = AtomicUsize::new(0);

fn base_of(slot: &AtomicUsize, addr: usize) -> usize {
    let b = slot.load(Relaxed);
    if b != 0 {
        return b;
    }
    let b = module_of(addr).map_or(usize::MAX, |(b, _)| b);
    slot.store(b, Relaxed);
    b
}

/// True if `start` must run on an OS thread: it is libphoton's or the
/// shim's, or its module is named in `PHOTON_PRELOAD_THREADS_EXCEPT`.
fn stays_os_thread(start: usize) -> bool {
    let Some((base, name)) = module_of(start) else {
        return false;
    };
    if base == base_of(&LIBPHOTON_BASE, photon::photon_in_thread as *const () as usize)
        || base == base_of(&SHIM_BASE, stays_os_thread as *const () as usize)
    {
        return true;
    }
    if name.is_null() {
        return false;
    }
    // SAFETY: getenv with a NUL-terminated name; dli_fname is a NUL-terminated path.
    let (except, path) = unsafe {
        let v = libc::getenv(c"PHOTON_PRELOAD_THREADS_EXCEPT".as_ptr());
        if v.is_null() {
            return false;
        }
        (CStr::from_ptr(v).to_bytes(), CStr::from_ptr(name).to_bytes())
    };
    let file = path.rsplit(|&c| c == b'/').next().unwrap_or(path);
    except
        .split(|&c| c == b',')
        .map(|p| p.trim_ascii())
        .any(|p| !p.is_empty() && file.starts_with(p))
}

// ---- records

/// Tells a record from a glibc `pthread_t`: a record's first word is its
/// address xor this.
const MAGIC: usize = 0x5048_4f54_4f4e_5448; // "PHOTONTH"

/// State bits: the thread has ended (its destructors ran).
const ENDED: u32 = 1;
/// Detached: nobody will join; the record is recycled at the end.
const DETACHED: u32 = 2;
/// A join is waiting.
const JOINING: u32 = 4;
/// Joined (or recycled): joins and detaches fail with EINVAL.
const JOINED: u32 = 8;

/// A photon thread made by `pthread_create`; its address is the `pthread_t`.
#[repr(C)]
pub(crate) struct Rec {
    /// Address xor [`MAGIC`] while the record is in use.
    tag: AtomicUsize,
    state: AtomicU32,
    /// Holders: the thread (until it has ended and woken joiners) and the
    /// `pthread_t` (until joined or detached); recycled at 0.
    refs: AtomicU32,
    start: Option<unsafe extern "C" fn(*mut c_void) -> *mut c_void>,
    arg: *mut c_void,
    retval: AtomicPtr<c_void>,
    stack_size: usize,
    /// The photon thread (`photon_thread*`), set when it starts.
    handle: AtomicPtr<c_void>,
    /// `pthread_setname_np`'s name, NUL-terminated.
    name: Mutex<[u8; 16]>,
}

/// Recycled records.
static FREE: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// Running records by photon thread handle: how `pthread_self` finds its
/// record while libphoton runs the thread's key destructors (their values,
/// the self key's included, are taken out by then).
static BY_HANDLE: Mutex<BTreeMap<usize, usize>> = Mutex::new(BTreeMap::new());

fn new_rec(
    start: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
    arg: *mut c_void,
    stack_size: usize,
    detached: bool,
) -> *mut Rec {
    let reused = FREE.lock().ok().and_then(|mut f| f.pop());
    let r = match reused {
        Some(r) => r as *mut Rec,
        None => Box::into_raw(Box::new(Rec {
            tag: AtomicUsize::new(0),
            state: AtomicU32::new(0),
            refs: AtomicU32::new(0),
            start: None,
            arg: ptr::null_mut(),
            retval: AtomicPtr::new(ptr::null_mut()),
            stack_size: 0,
            handle: AtomicPtr::new(ptr::null_mut()),
            name: Mutex::new([0; 16]),
        })),
    };
    // SAFETY: `r` is a record nobody else holds (new, or recycled).
    unsafe {
        (*r).state.store(if detached { DETACHED } else { 0 }, Relaxed);
        (*r).refs.store(if detached { 1 } else { 2 }, Relaxed);
        (*r).start = Some(start);
        (*r).arg = arg;
        (*r).retval.store(ptr::null_mut(), Relaxed);
        (*r).stack_size = stack_size;
        (*r).handle.store(ptr::null_mut(), Relaxed);
        if let Ok(mut n) = (*r).name.lock() {
            *n = [0; 16];
        }
        (*r).tag.store(r as usize ^ MAGIC, Release);
    }
    r
}

/// Drops one holder of `r`; the last one recycles it.
fn release(r: &Rec) {
    if r.refs.fetch_sub(1, AcqRel) == 1 {
        r.state.store(JOINED | ENDED, Relaxed);
        if let Ok(mut f) = FREE.lock() {
            f.push(r as *const Rec as usize);
        }
    }
}

/// The record `th` is, if it is one of the shim's (in use or recycled).
fn rec_of<'a>(th: pthread_t) -> Option<&'a Rec> {
    if th == 0 || !enabled() {
        return None;
    }
    // SAFETY: a pthread_t is the address of a glibc struct pthread (first
    // word: its own address) or of one of our records; both are readable.
    let first = unsafe { (th as *const AtomicUsize).as_ref()?.load(Acquire) };
    // SAFETY: the tag says it is a record; records are never freed.
    (first == th as usize ^ MAGIC).then(|| unsafe { &*(th as *const Rec) })
}

/// The calling photon thread's record, if the shim made it.
#[inline]
fn current_rec<'a>() -> Option<&'a Rec> {
    if !enabled() || POOL_STATE.load(Relaxed) != 2 {
        return None;
    }
    // SAFETY: libphoton queries with no preconditions.
    unsafe {
        if photon::photon_thread_number(ptr::null_mut()) == 0 {
            return None;
        }
        let _keep = crate::pthread::KeepErrno::new();
        let r = photon::photon_getspecific(SELF_KEY.load(Relaxed)) as *const Rec;
        if !r.is_null() {
            return Some(&*r);
        }
        // Inside the thread's key destructors (or a photon thread not ours).
        let h = photon::photon_thread_self() as usize;
        let r = BY_HANDLE.lock().ok()?.get(&h).copied()?;
        Some(&*(r as *const Rec))
    }
}

/// Says once per kind that a call on a photon thread is refused.
fn refuse(what: &'static [u8], said: &AtomicU8) -> c_int {
    if said.swap(1, Relaxed) == 0 {
        let mut line = [0u8; 256];
        let mut out = crate::Buf(&mut line, 0);
        out.push(b"[photon-preload] ");
        out.push(what);
        out.push(b" on a thread that PHOTON_PRELOAD_THREADS=photon made a photon thread is not supported: ENOTSUP (said once)\n");
        let n = out.1;
        say(&line[..n]);
    }
    libc::ENOTSUP
}

// ---- the photon thread's life

/// Runs the program's start routine as a photon thread.
unsafe extern "C" fn run(arg: *mut c_void) -> *mut c_void {
    // SAFETY: `arg` is the record pthread_create made for this thread.
    let r = unsafe { &*(arg as *const Rec) };
    // SAFETY: libphoton calls on the calling photon thread.
    unsafe {
        let h = photon::photon_thread_self();
        r.handle.store(h, Release);
        if let Ok(mut m) = BY_HANDLE.lock() {
            m.insert(h as usize, arg as usize);
        }
        photon::photon_setspecific(SELF_KEY.load(Relaxed), arg);
        photon::photon_thread_on_end(Some(ended), arg);
    }
    let name = r.name.lock().map(|n| *n).unwrap_or([0; 16]);
    if name[0] != 0 {
        // SAFETY: a NUL-terminated copy; the caller is the thread named.
        unsafe { photon::photon_thread_set_name(photon::photon_thread_self(), name.as_ptr().cast()) };
    }
    let start = r.start.expect("a record has a start routine");
    // SAFETY: the program's start routine with its argument.
    let rv = unsafe { start(r.arg) };
    r.retval.store(rv, Release);
    rv
}

/// Starts `run` on this vcpu with the record's stack size.
unsafe extern "C" fn launch(arg: *mut c_void) -> *mut c_void {
    // SAFETY: `arg` is a record.
    let size = unsafe { (*(arg as *const Rec)).stack_size };
    // SAFETY: creates a photon thread on the calling vcpu.
    let th = unsafe { photon::photon_thread_create(Some(run), arg, size) };
    if th.is_null() {
        say(b"[photon-preload] a photon thread for pthread_create could not be made with its stack size; default size used\n");
        // SAFETY: as above, default size.
        unsafe { photon::photon_thread_create(Some(run), arg, 0) };
    }
    ptr::null_mut()
}

/// libphoton's end callback: after the thread's destructors, it has ended.
unsafe extern "C" fn ended(arg: *mut c_void) {
    // SAFETY: the record stays alive until this holder releases it.
    let r = unsafe { &*(arg as *const Rec) };
    if let Ok(mut m) = BY_HANDLE.lock() {
        m.remove(&(r.handle.load(Acquire) as usize));
    }
    let before = r.state.fetch_or(ENDED, SeqCst);
    if before & JOINING != 0 {
        // SAFETY: wakes waiters on the record's live state word.
        unsafe {
            photon::photon_futex_wake(r.state.as_ptr(), c_int::MAX);
            libc::syscall(
                libc::SYS_futex,
                r.state.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                c_int::MAX,
            );
        }
    }
    release(r);
}

// ---- hooks

unsafe extern "C" {
    /// glibc's (not hooked; the libc crate does not declare it).
    fn pthread_attr_getdetachstate(attr: *const pthread_attr_t, state: *mut c_int) -> c_int;
}

type Start = unsafe extern "C" fn(*mut c_void) -> *mut c_void;

/// `pthread_create`: with `PHOTON_PRELOAD_THREADS=photon`, a photon thread
/// on one of the shim's vcpus (round robin), with the attribute's stack
/// size and detach state; the start routines of libphoton, of the shim and
/// of modules in `PHOTON_PRELOAD_THREADS_EXCEPT` get OS threads. Otherwise
/// glibc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_create(
    thread: *mut pthread_t,
    attr: *const pthread_attr_t,
    start: Option<Start>,
    arg: *mut c_void,
) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        if !enabled() || thread.is_null() || start.is_none() {
            if !ANNOUNCED.load(Relaxed) && !enabled() {
                announce_os_thread(start);
            }
            // SAFETY: glibc's function with the caller's arguments.
            return unsafe { real::pthread_create(thread, attr, start, arg) };
        }
        let f = start.expect("checked");
        if stays_os_thread(f as usize) {
            // SAFETY: as above.
            return unsafe { real::pthread_create(thread, attr, start, arg) };
        }
        let Some(p) = pool() else {
            // SAFETY: as above.
            return unsafe { real::pthread_create(thread, attr, start, arg) };
        };
        let _keep = crate::pthread::KeepErrno::new();
        let (mut stack, mut detach) = (0usize, libc::PTHREAD_CREATE_JOINABLE);
        if !attr.is_null() {
            // SAFETY: the caller's initialised attribute object.
            unsafe {
                libc::pthread_attr_getstacksize(attr, &mut stack);
                pthread_attr_getdetachstate(attr, &mut detach);
            }
        }
        let r = new_rec(f, arg, stack, detach == libc::PTHREAD_CREATE_DETACHED);
        let rc = if stack != 0 {
            // SAFETY: a pool of ours; `launch` makes the thread with its size.
            unsafe { photon::photon_workpool_spawn(p, Some(launch), r.cast()) }
        } else {
            // SAFETY: a pool of ours; `run` takes the record.
            unsafe { photon::photon_workpool_spawn(p, Some(run), r.cast()) }
        };
        if rc != 0 {
            // SAFETY: the record was never handed out.
            let r = unsafe { &*r };
            r.refs.store(1, Relaxed);
            release(r);
            return libc::EAGAIN;
        }
        // SAFETY: the caller's pthread_t.
        unsafe { *thread = r as pthread_t };
        0
    })
}

/// Waits until `r` has ended, or `deadline` passes (ETIMEDOUT).
fn wait_ended(r: &Rec, deadline: Option<Abs>) -> c_int {
    let photon_thread = crate::active();
    loop {
        let s = r.state.load(SeqCst);
        if s & ENDED != 0 {
            return 0;
        }
        let left = match deadline {
            None => None,
            Some(d) => match d.remaining_us() {
                None => return libc::ETIMEDOUT,
                some => some,
            },
        };
        if photon_thread {
            // SAFETY: waits on the record's live state word.
            unsafe { photon::photon_futex_wait(r.state.as_ptr(), s, left.unwrap_or(photon::FOREVER)) };
        } else {
            let ts = left.map(|us| timespec {
                tv_sec: (us / 1_000_000) as libc::time_t,
                tv_nsec: ((us % 1_000_000) * 1000) as libc::c_long,
            });
            let tsp = ts.as_ref().map_or(ptr::null(), |t| t as *const timespec);
            // SAFETY: a futex wait on the record's live state word.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    r.state.as_ptr(),
                    libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                    s,
                    tsp,
                )
            };
        }
    }
}

/// Joins `r`: waits (unless `try_only`) and delivers the result.
fn join_rec(r: &Rec, retval: *mut *mut c_void, try_only: bool, deadline: Option<Abs>) -> c_int {
    if current_rec().is_some_and(|me| ptr::eq(me, r)) {
        return libc::EDEADLK;
    }
    let mut s = r.state.load(SeqCst);
    loop {
        if s & (DETACHED | JOINING | JOINED) != 0 {
            return libc::EINVAL;
        }
        if try_only && s & ENDED == 0 {
            return libc::EBUSY;
        }
        match r.state.compare_exchange(s, s | JOINING, SeqCst, SeqCst) {
            Ok(_) => break,
            Err(now) => s = now,
        }
    }
    let rc = wait_ended(r, deadline);
    if rc != 0 {
        r.state.fetch_and(!JOINING, SeqCst);
        return rc;
    }
    if !retval.is_null() {
        // SAFETY: the caller's result slot.
        unsafe { *retval = r.retval.load(Acquire) };
    }
    r.state.fetch_or(JOINED, SeqCst);
    release(r);
    0
}

/// `pthread_join`: for a photon thread of the shim's, waits for its end
/// (as a photon wait in a photon thread, a futex wait elsewhere) and
/// delivers its result; `EDEADLK` for oneself, `EINVAL` if detached or
/// already joined. Otherwise glibc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_join(th: pthread_t, retval: *mut *mut c_void) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        match rec_of(th) {
            Some(r) => join_rec(r, retval, false, None),
            // SAFETY: glibc's function with the caller's arguments.
            None => unsafe { real::pthread_join(th, retval) },
        }
    })
}

/// `pthread_tryjoin_np`: as `pthread_join`, `EBUSY` while the thread runs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_tryjoin_np(th: pthread_t, retval: *mut *mut c_void) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        match rec_of(th) {
            Some(r) => join_rec(r, retval, true, None),
            // SAFETY: glibc's function with the caller's arguments.
            None => unsafe { real::pthread_tryjoin_np(th, retval) },
        }
    })
}

/// `pthread_timedjoin_np`: as `pthread_join`, `ETIMEDOUT` at `abstime`
/// (`CLOCK_REALTIME`; NULL waits forever).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_timedjoin_np(
    th: pthread_t,
    retval: *mut *mut c_void,
    abstime: *const timespec,
) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        match rec_of(th) {
            Some(r) => {
                // SAFETY: the caller's timespec or NULL.
                let d = unsafe { Abs::new(libc::CLOCK_REALTIME, abstime) };
                if d.is_some_and(|d| !d.valid()) {
                    return libc::EINVAL;
                }
                join_rec(r, retval, false, d)
            }
            // SAFETY: glibc's function with the caller's arguments.
            None => unsafe { real::pthread_timedjoin_np(th, retval, abstime) },
        }
    })
}

/// `pthread_clockjoin_np`: as `pthread_timedjoin_np` on `clock`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_clockjoin_np(
    th: pthread_t,
    retval: *mut *mut c_void,
    clock: clockid_t,
    abstime: *const timespec,
) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        match rec_of(th) {
            Some(r) => {
                // SAFETY: the caller's timespec or NULL.
                let d = unsafe { Abs::new(clock, abstime) };
                if !crate::pthread::clock_ok(clock) || d.is_some_and(|d| !d.valid()) {
                    return libc::EINVAL;
                }
                join_rec(r, retval, false, d)
            }
            // SAFETY: glibc's function with the caller's arguments.
            None => unsafe { real::pthread_clockjoin_np(th, retval, clock, abstime) },
        }
    })
}

/// `pthread_detach`: a photon thread of the shim's gives its record back at
/// its end (or now, if it has ended); `EINVAL` if detached, joined or being
/// joined. Otherwise glibc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_detach(th: pthread_t) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        let Some(r) = rec_of(th) else {
            // SAFETY: glibc's function with the caller's argument.
            return unsafe { real::pthread_detach(th) };
        };
        let mut s = r.state.load(SeqCst);
        loop {
            if s & (DETACHED | JOINING | JOINED) != 0 {
                return libc::EINVAL;
            }
            match r.state.compare_exchange(s, s | DETACHED, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        release(r);
        0
    })
}

/// `pthread_self`: in a photon thread the shim made, its record (the same
/// value in every part of its life, whichever vcpu runs it); elsewhere
/// glibc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_self() -> pthread_t {
    crate::boundary(0, || {
        match current_rec() {
            Some(r) => r as *const Rec as pthread_t,
            // SAFETY: glibc's function.
            None => unsafe { real::pthread_self() },
        }
    })
}

/// `pthread_equal`: the two ids are equal.
#[unsafe(no_mangle)]
pub extern "C" fn pthread_equal(a: pthread_t, b: pthread_t) -> c_int {
    (a == b) as c_int
}

/// `pthread_exit`: in a photon thread the shim made, ends it with `retval`
/// (`photon_thread_exit`: key destructors run; the frames of its stack are
/// not unwound, so C++ destructors and cleanup handlers on it do not run).
/// Elsewhere glibc's (whose unwind of the thread's frames passes through
/// this one: hence `C-unwind`).
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pthread_exit(retval: *mut c_void) -> ! {
    if let Some(r) = current_rec() {
        r.retval.store(retval, Release);
        // SAFETY: ends the calling photon thread; returns only on failure.
        unsafe { photon::photon_thread_exit(retval) };
        say(b"[photon-preload] pthread_exit: photon_thread_exit failed; aborting\n");
        // SAFETY: no preconditions.
        unsafe { libc::abort() };
    }
    // SAFETY: glibc's function; it does not return.
    unsafe { real::pthread_exit(retval) };
    // SAFETY: not reached (glibc's pthread_exit does not return).
    unsafe { libc::abort() }
}

/// `pthread_kill`: on a photon thread of the shim's, signal 0 says whether
/// it still runs (`ESRCH` once ended); other signals are refused
/// (`ENOTSUP`, logged once). Otherwise glibc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_kill(th: pthread_t, sig: c_int) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        static SAID: AtomicU8 = AtomicU8::new(0);
        match rec_of(th) {
            Some(r) if sig == 0 => {
                if r.state.load(SeqCst) & ENDED != 0 {
                    libc::ESRCH
                } else {
                    0
                }
            }
            Some(_) => refuse(b"pthread_kill with a signal", &SAID),
            // SAFETY: glibc's function with the caller's arguments.
            None => unsafe { real::pthread_kill(th, sig) },
        }
    })
}

/// `pthread_cancel`: refused on a photon thread of the shim's (`ENOTSUP`,
/// logged once; the thread runs on). Otherwise glibc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_cancel(th: pthread_t) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        static SAID: AtomicU8 = AtomicU8::new(0);
        match rec_of(th) {
            Some(_) => refuse(b"pthread_cancel", &SAID),
            // SAFETY: glibc's function with the caller's argument.
            None => unsafe { real::pthread_cancel(th) },
        }
    })
}

/// `pthread_getattr_np`: refused on a photon thread of the shim's
/// (`ENOTSUP`, logged once). Otherwise glibc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_getattr_np(th: pthread_t, attr: *mut pthread_attr_t) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        static SAID: AtomicU8 = AtomicU8::new(0);
        match rec_of(th) {
            Some(_) => refuse(b"pthread_getattr_np", &SAID),
            // SAFETY: glibc's function with the caller's arguments.
            None => unsafe { real::pthread_getattr_np(th, attr) },
        }
    })
}

/// `pthread_setaffinity_np`: refused on a photon thread of the shim's
/// (`ENOTSUP`, logged once). Otherwise glibc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_setaffinity_np(th: pthread_t, size: size_t, set: *const cpu_set_t) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        static SAID: AtomicU8 = AtomicU8::new(0);
        match rec_of(th) {
            Some(_) => refuse(b"pthread_setaffinity_np", &SAID),
            // SAFETY: glibc's function with the caller's arguments.
            None => unsafe { real::pthread_setaffinity_np(th, size, set) },
        }
    })
}

/// `pthread_getaffinity_np`: refused on a photon thread of the shim's
/// (`ENOTSUP`, logged once). Otherwise glibc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_getaffinity_np(th: pthread_t, size: size_t, set: *mut cpu_set_t) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        static SAID: AtomicU8 = AtomicU8::new(0);
        match rec_of(th) {
            Some(_) => refuse(b"pthread_getaffinity_np", &SAID),
            // SAFETY: glibc's function with the caller's arguments.
            None => unsafe { real::pthread_getaffinity_np(th, size, set) },
        }
    })
}

/// `pthread_setschedparam`: refused on a photon thread of the shim's
/// (`ENOTSUP`, logged once). Otherwise glibc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_setschedparam(th: pthread_t, policy: c_int, param: *const sched_param) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        static SAID: AtomicU8 = AtomicU8::new(0);
        match rec_of(th) {
            Some(_) => refuse(b"pthread_setschedparam", &SAID),
            // SAFETY: glibc's function with the caller's arguments.
            None => unsafe { real::pthread_setschedparam(th, policy, param) },
        }
    })
}

/// `pthread_getschedparam`: refused on a photon thread of the shim's
/// (`ENOTSUP`, logged once). Otherwise glibc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_getschedparam(th: pthread_t, policy: *mut c_int, param: *mut sched_param) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        static SAID: AtomicU8 = AtomicU8::new(0);
        match rec_of(th) {
            Some(_) => refuse(b"pthread_getschedparam", &SAID),
            // SAFETY: glibc's function with the caller's arguments.
            None => unsafe { real::pthread_getschedparam(th, policy, param) },
        }
    })
}

/// `pthread_setschedprio`: refused on a photon thread of the shim's
/// (`ENOTSUP`, logged once). Otherwise glibc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_setschedprio(th: pthread_t, prio: c_int) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        static SAID: AtomicU8 = AtomicU8::new(0);
        match rec_of(th) {
            Some(_) => refuse(b"pthread_setschedprio", &SAID),
            // SAFETY: glibc's function with the caller's arguments.
            None => unsafe { real::pthread_setschedprio(th, prio) },
        }
    })
}

/// `pthread_getcpuclockid`: refused on a photon thread of the shim's
/// (`ENOTSUP`, logged once). Otherwise glibc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_getcpuclockid(th: pthread_t, clock: *mut clockid_t) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        static SAID: AtomicU8 = AtomicU8::new(0);
        match rec_of(th) {
            Some(_) => refuse(b"pthread_getcpuclockid", &SAID),
            // SAFETY: glibc's function with the caller's arguments.
            None => unsafe { real::pthread_getcpuclockid(th, clock) },
        }
    })
}

/// `pthread_setname_np`: on a photon thread of the shim's, keeps the name
/// (at most 15 bytes, else `ERANGE`) for `pthread_getname_np` and gives it
/// to `photon_thread_set_name` (thread dumps, stall warnings). Otherwise
/// glibc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_setname_np(th: pthread_t, name: *const c_char) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        let Some(r) = rec_of(th) else {
            // SAFETY: glibc's function with the caller's arguments.
            return unsafe { real::pthread_setname_np(th, name) };
        };
        if name.is_null() {
            return libc::EINVAL;
        }
        // SAFETY: the caller's NUL-terminated name.
        let bytes = unsafe { CStr::from_ptr(name) }.to_bytes();
        if bytes.len() > 15 {
            return libc::ERANGE;
        }
        if let Ok(mut n) = r.name.lock() {
            *n = [0; 16];
            n[..bytes.len()].copy_from_slice(bytes);
        }
        let _keep = crate::pthread::KeepErrno::new();
        let h = r.handle.load(Acquire);
        if !h.is_null() {
            // SAFETY: a photon thread handle (stale ones fail with ESRCH; one of
            // another vcpu fails with EINVAL and keeps only the shim's copy).
            unsafe { photon::photon_thread_set_name(h, name) };
        }
        0
    })
}

/// `pthread_getname_np`: on a photon thread of the shim's, the name given
/// by `pthread_setname_np` (`ERANGE` if `len` is too small). Otherwise
/// glibc's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_getname_np(th: pthread_t, buf: *mut c_char, len: size_t) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        let Some(r) = rec_of(th) else {
            // SAFETY: glibc's function with the caller's arguments.
            return unsafe { real::pthread_getname_np(th, buf, len) };
        };
        let name = r.name.lock().map(|n| *n).unwrap_or([0; 16]);
        let n = name.iter().position(|&c| c == 0).unwrap_or(15);
        if buf.is_null() || len < n + 1 {
            return libc::ERANGE;
        }
        // SAFETY: the caller's buffer of `len` >= n + 1 bytes.
        unsafe { ptr::copy_nonoverlapping(name.as_ptr(), buf.cast::<u8>(), n + 1) };
        0
    })
}
