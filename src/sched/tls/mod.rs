//! Thread-local isolation: the thread-locals of chosen modules (`__thread`,
//! C++ `thread_local`) follow the photon thread instead of the OS thread.
//!
//! Mechanism (chosen by measurement, see `notes/thread-identity.md` and the
//! issue's closing note): every isolated module's TLS block stays where
//! glibc put it for the vcpu's OS thread (so `%fs`, glibc's own per-thread
//! state and every address the compiler computed stay valid), and its
//! *contents* are swapped: each photon thread keeps a private save area
//! holding its copy of every isolated block, and the vcpu copies the blocks
//! out of and into the live ones when it switches between photon threads.
//!
//! The swap is lazy: the vcpu remembers whose copy is live (`owner`), so a
//! switch to the idle thread (which runs only runtime code) costs nothing,
//! and a thread that blocks and resumes with nobody else in between pays
//! nothing either. Invariant: a thread that is not the owner has its
//! values in its save area, or has no save area yet and still has the
//! module's initial image (`p_filesz` bytes of the image, then zeros), which
//! is what a new OS thread would start with.
//!
//! Regions are global and append-only (a thread's save area has the same
//! layout on every vcpu, so a migrated thread carries its values); each
//! vcpu resolves the live address of every region on its own OS thread
//! (`__tls_get_addr`, which also allocates a dlopen'ed module's block).
//! Isolated modules are pinned (`RTLD_NODELETE`): their blocks never go
//! away under a swap.
//!
//! The C++ exception state (`__cxa_get_globals()`: the caught-exception
//! stack and the uncaught count, in libstdc++'s TLS) is a region of its own,
//! always swapped when libstdc++ is loaded: a photon thread suspended inside
//! a `catch` block must find its own exception when it resumes.
//!
//! Addresses of thread-locals are per OS thread: a photon thread that
//! migrates to another vcpu must not keep one across the migration.

use core::ffi::c_void;
use core::ptr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};

mod modules;

use super::thread::ThreadCtl;
use super::vcpu::Vcpu;
use crate::errno::Errno;
use modules::*;

/// Set once any region exists: the switch path's only cost before that.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Bumped whenever a region is added; each vcpu compares its own copy.
static GEN: AtomicU64 = AtomicU64::new(0);
/// The regions and what was asked for.
static GLOBAL: Mutex<Global> = Mutex::new(Global {
    star: false,
    names: Vec::new(),
    regions: Vec::new(),
    total: 0,
    eh_checked: false,
});

struct Global {
    /// `*` was asked for: every module but [`NEVER`]'s, also later ones.
    star: bool,
    /// Module name prefixes asked for by name (kept for later dlopens).
    names: Vec<String>,
    regions: Vec<Region>,
    /// Size of a thread's save area covering every region.
    total: usize,
    /// The C++ exception region was looked for.
    eh_checked: bool,
}

/// What a region is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A module's PT_TLS block: `modid` for `__tls_get_addr`, its image.
    Module { modid: usize, image: usize, filesz: usize },
    /// libstdc++'s `__cxa_eh_globals` (found through `__cxa_get_globals`).
    EhGlobals,
}

#[derive(Clone, Copy)]
struct Region {
    kind: Kind,
    /// Offset in a thread's save area.
    offset: usize,
    size: usize,
}

/// A region as one vcpu sees it: its live block on that OS thread.
#[derive(Clone, Copy)]
pub(super) struct Live {
    addr: *mut u8,
    region: Region,
    /// The region's index in the global list.
    index: usize,
}

/// A vcpu's view of the isolated regions (owned by the vcpu's OS thread).
pub(super) struct VcpuTls {
    /// The [`GEN`] these regions were resolved at (0: never).
    generation: u64,
    live: Vec<Live>,
    /// Global regions looked at so far (`live` has those this OS thread
    /// can reach).
    seen: usize,
    /// Bytes of a save area covering every region in `live`.
    need: usize,
    /// Whose copy is in the live blocks (null: nobody's, e.g. after the
    /// owner ended or migrated away).
    pub(super) owner: *mut ThreadCtl,
}

impl VcpuTls {
    pub(super) const fn new() -> VcpuTls {
        VcpuTls {
            generation: 0,
            live: Vec::new(),
            seen: 0,
            need: 0,
            owner: ptr::null_mut(),
        }
    }
}

/// A photon thread's copies of the isolated blocks.
pub(crate) struct ThreadTls {
    save: *mut u8,
    /// Bytes of `save` that hold this thread's values (regions are appended,
    /// so it covers a prefix of the regions; the rest still has the image).
    len: usize,
    /// Destructors of objects in isolated blocks (C++ `thread_local`), run
    /// at the thread's end: (function, region index, offset in the region).
    dtors: Vec<(Dtor, usize, usize)>,
}

impl ThreadTls {
    /// True if objects of this thread's isolated blocks await destruction.
    #[inline]
    pub(crate) fn has_dtors(&self) -> bool {
        !self.dtors.is_empty()
    }

    /// True if this thread never got copies of isolated thread-locals
    /// (what [`ThreadTls::new`] makes; nothing allocated).
    #[inline(always)]
    pub(crate) fn is_pristine(&self) -> bool {
        self.save.is_null() && self.len == 0 && self.dtors.capacity() == 0
    }
}

/// A `thread_local` object's destructor.
pub type Dtor = unsafe extern "C" fn(obj: *mut c_void);

impl ThreadTls {
    pub(crate) const fn new() -> ThreadTls {
        ThreadTls {
            save: ptr::null_mut(),
            len: 0,
            dtors: Vec::new(),
        }
    }
}

impl Drop for ThreadTls {
    fn drop(&mut self) {
        if !self.save.is_null() {
            // SAFETY: allocated with libc::realloc by `ensure`, freed once.
            unsafe { libc::free(self.save.cast()) };
        }
    }
}

/// Adds the regions of every loaded module that the request (`star`, or a
/// name prefix in `names`) covers and that is not isolated yet; returns how
/// many modules matched (isolated now or before).
fn scan(g: &mut Global, extra_name: Option<&str>) -> Result<usize, Errno> {
    let own = own_module();
    let mut matched = 0;
    let mut refused = 0;
    for m in tls_modules() {
        let by_name = |n: &str| m.file.starts_with(n);
        if m.base == own || never_isolated(&m.file) {
            refused += extra_name.is_some_and(by_name) as usize;
            continue;
        }
        let wanted = extra_name.is_some_and(by_name) || g.names.iter().any(|n| by_name(n)) || g.star;
        if !wanted {
            continue;
        }
        matched += 1;
        let known = g
            .regions
            .iter()
            .any(|r| matches!(r.kind, Kind::Module { modid, .. } if modid == m.modid));
        if known {
            continue;
        }
        pin(&m.path);
        log::debug!(
            "photon: thread-locals of {} ({} bytes) follow the photon thread",
            m.file,
            m.memsz
        );
        push(
            g,
            Kind::Module {
                modid: m.modid,
                image: m.image,
                filesz: m.filesz,
            },
            m.memsz,
        );
    }
    if matched == 0 && refused > 0 {
        return Err(Errno::EPERM); // only runtime modules have that name
    }
    Ok(matched)
}

fn push(g: &mut Global, kind: Kind, size: usize) {
    let offset = g.total;
    g.regions.push(Region { kind, offset, size });
    g.total = (offset + size + 15) & !15;
    GEN.fetch_add(1, Release);
    ACTIVE.store(true, Release);
}

/// Size of `__cxa_eh_globals` (a pointer and an unsigned int) on the
/// Itanium C++ ABI (not ARM EHABI, which adds a field).
const EH_GLOBALS_SIZE: usize = 16;

fn check_eh(g: &mut Global) {
    if g.eh_checked {
        return;
    }
    if cxa_get_globals().is_some() {
        g.eh_checked = true;
        push(g, Kind::EhGlobals, EH_GLOBALS_SIZE);
    }
}

fn lock() -> std::sync::MutexGuard<'static, Global> {
    GLOBAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `photon_tls_isolate(module)`: `*` or a file-name prefix.
pub(crate) fn isolate(module: &str) -> Result<(), Errno> {
    if module.is_empty() {
        return Err(Errno::EINVAL);
    }
    let mut g = lock();
    check_eh(&mut g);
    LAST_ADDS.store(loads_so_far(), Relaxed);
    WATCH_LOADS.store(true, Relaxed);
    if module == "*" {
        g.star = true;
        let _ = scan(&mut g, None);
        return Ok(());
    }
    if scan(&mut g, Some(module))? == 0 {
        return Err(Errno(libc::ENOENT));
    }
    if !g.names.iter().any(|n| n == module) {
        g.names.push(module.to_string());
    }
    Ok(())
}

/// `photon_tls_rescan`: applies what was asked for to modules loaded since
/// (after a `dlopen`); the number of regions added.
pub(crate) fn rescan() -> usize {
    let mut g = lock();
    let before = g.regions.len();
    check_eh(&mut g);
    if g.star || !g.names.is_empty() {
        let _ = scan(&mut g, None);
    }
    g.regions.len() - before
}

/// Applies `PHOTON_TLS_ISOLATE` once per process (`name,name`, `*`, or
/// `none`; default `*` when the preload shim is loaded, else `none`), and
/// looks for libstdc++'s exception state. Called by every `photon_init`.
pub(crate) fn on_init() {
    static ENV: std::sync::Once = std::sync::Once::new();
    ENV.call_once(|| {
        let spec = std::env::var("PHOTON_TLS_ISOLATE").ok();
        let spec = spec.unwrap_or_else(|| if preload_active() { "*".into() } else { "none".into() });
        for name in spec.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "none" {
                continue;
            }
            match isolate(name) {
                Ok(()) => {}
                Err(_) => {
                    // Not loaded yet: remembered, applied when a rescan finds it.
                    log::warn!("photon: PHOTON_TLS_ISOLATE names {name}, which is not loaded (yet)");
                    let mut g = lock();
                    if !g.names.iter().any(|n| n == name) {
                        g.names.push(name.to_string());
                    }
                    WATCH_LOADS.store(true, Relaxed);
                }
            }
        }
    });
    let mut g = lock();
    check_eh(&mut g);
}

/// True when `libphoton_preload.so` is in the process (its marker symbol
/// resolves).
pub(crate) fn preload_active() -> bool {
    // SAFETY: a lookup by NUL-terminated name.
    !unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"photon_preload_version".as_ptr()) }.is_null()
}

/// Set once a request (`*` or a name) can cover modules loaded later.
static WATCH_LOADS: AtomicBool = AtomicBool::new(false);
/// glibc's count of objects loaded so far, when last looked at.
static LAST_ADDS: AtomicU64 = AtomicU64::new(0);

/// Called by a vcpu's event poll now and then (before it sleeps, and every
/// so many polls): isolates modules `dlopen`ed since, when `*` or their
/// name asked for it. `photon_tls_rescan` does the same at once.
#[cold]
pub(super) fn watch_loads() {
    if !WATCH_LOADS.load(Relaxed) {
        return;
    }
    let adds = loads_so_far();
    if LAST_ADDS.swap(adds, Relaxed) != adds {
        rescan();
    }
}

/// Whether the switch path has anything to do.
#[inline(always)]
pub(super) fn active() -> bool {
    ACTIVE.load(Relaxed)
}

/// Brings vcpu `v`'s view up to date with the global regions, resolving
/// each new one's live block on this OS thread. On the first activation
/// the live blocks hold the OS thread's values: they stay the vcpu's main
/// thread's (its context is the OS thread's, untouched), and every photon
/// thread, the one running now included, starts from the modules' images.
///
/// # Safety
/// `v` is the calling OS thread's vcpu.
#[cold]
#[inline(never)]
unsafe fn refresh(v: *mut Vcpu) {
    let g = lock();
    // SAFETY: per the contract; no switch while the lock is held.
    unsafe {
        let t = &mut (*v).tls;
        for (index, r) in g.regions.iter().enumerate().skip(t.seen) {
            let addr = match r.kind {
                Kind::Module { modid, .. } => match tls_get_addr() {
                    Some(f) => f(&TlsIndex {
                        module: modid,
                        offset: 0,
                    })
                    .cast::<u8>(),
                    None => ptr::null_mut(),
                },
                Kind::EhGlobals => cxa_get_globals().map_or(ptr::null_mut(), |f| f().cast::<u8>()),
            };
            if !addr.is_null() {
                t.live.push(Live {
                    addr,
                    region: *r,
                    index,
                });
            }
        }
        t.seen = g.regions.len();
        t.need = t.live.last().map_or(0, |l| l.region.offset + l.region.size);
        if t.generation == 0 {
            t.owner = (*v).main;
        }
        t.generation = GEN.load(Acquire);
    }
}

/// Makes sure `th`'s save area covers every region `t` knows, filling new
/// parts with their modules' initial images.
///
/// # Safety
/// `th` is a live TCB of the calling vcpu, not running on another CPU.
#[cold]
#[inline(never)]
unsafe fn ensure(t: &VcpuTls, th: *mut ThreadCtl) {
    let need = t.need;
    // SAFETY: per the contract; `save` is ours, `len` bytes of it initialised.
    unsafe {
        let s = &mut (*th).tls;
        if s.len >= need {
            return;
        }
        let p = libc::realloc(s.save.cast(), need).cast::<u8>();
        if p.is_null() {
            let msg = b"photon: out of memory for a photon thread's thread-locals\n";
            crate::sys::write(2, msg.as_ptr().cast(), msg.len());
            libc::abort();
        }
        s.save = p;
        for l in &t.live {
            let r = l.region;
            if r.offset < s.len {
                continue;
            }
            let dst = p.add(r.offset);
            match r.kind {
                Kind::Module { image, filesz, .. } => {
                    let filesz = filesz.min(r.size);
                    ptr::copy_nonoverlapping(image as *const u8, dst, filesz);
                    ptr::write_bytes(dst.add(filesz), 0, r.size - filesz);
                }
                Kind::EhGlobals => ptr::write_bytes(dst, 0, r.size),
            }
        }
        s.len = need;
    }
}

/// Copies `size` bytes: the 16-byte exception state inline, anything
/// else through memcpy.
#[inline(always)]
unsafe fn copy(src: *const u8, dst: *mut u8, size: usize) {
    // SAFETY: the caller passes valid, non-overlapping ranges of `size` bytes.
    unsafe {
        if size == EH_GLOBALS_SIZE {
            let a = src.cast::<[u64; 2]>().read_unaligned();
            dst.cast::<[u64; 2]>().write_unaligned(a);
        } else {
            ptr::copy_nonoverlapping(src, dst, size);
        }
    }
}

/// Copies the live blocks into `th`'s save area.
///
/// # Safety
/// `v` is the calling OS thread's vcpu and `th` its owner.
unsafe fn save(v: *mut Vcpu, th: *mut ThreadCtl) {
    // SAFETY: per the contract; live blocks and the save area do not overlap.
    unsafe {
        let t = &(*v).tls;
        if (*th).tls.len < t.need {
            ensure(t, th);
        }
        let base = (*th).tls.save;
        for l in &t.live {
            copy(l.addr, base.add(l.region.offset), l.region.size);
        }
    }
}

/// Switch hook: before the vcpu switches to `next`, make the live blocks
/// `next`'s (unless `next` is the idle thread, which runs no user code).
///
/// # Safety
/// `v` is the calling OS thread's vcpu, `next` one of its threads; the
/// running thread (or one that ended) calls it just before the switch.
#[inline(always)]
pub(super) unsafe fn on_switch(v: *mut Vcpu, next: *mut ThreadCtl) {
    // SAFETY: per the contract.
    unsafe {
        if active() && next != (*v).idle && ((*v).tls.owner != next || (*v).tls.generation != GEN.load(Relaxed)) {
            swap(v, next);
        }
    }
}

#[inline(never)]
unsafe fn swap(v: *mut Vcpu, next: *mut ThreadCtl) {
    // SAFETY: per `on_switch`'s contract.
    unsafe {
        if (*v).tls.generation != GEN.load(Acquire) {
            refresh(v);
        }
        let owner = (*v).tls.owner;
        if owner == next {
            return;
        }
        if !owner.is_null() {
            save(v, owner);
        }
        let t = &(*v).tls;
        if (*next).tls.len < t.need {
            ensure(t, next);
        }
        let base = (*next).tls.save;
        for l in &t.live {
            copy(base.add(l.region.offset), l.addr, l.region.size);
        }
        (*v).tls.owner = next;
    }
}

/// `th` leaves this vcpu (migration): its values go to its save area, so
/// the vcpu it lands on can load them.
///
/// # Safety
/// `v` is the calling OS thread's vcpu, `th` one of its threads.
pub(super) unsafe fn on_leave(v: *mut Vcpu, th: *mut ThreadCtl) {
    // SAFETY: per the contract.
    unsafe {
        if (*v).tls.owner == th {
            save(v, th);
            (*v).tls.owner = ptr::null_mut();
        }
    }
}

/// `th` ended: its values are garbage now, nobody's to keep.
///
/// # Safety
/// `v` is the calling OS thread's vcpu.
pub(super) unsafe fn on_end(v: *mut Vcpu, th: *mut ThreadCtl) {
    // SAFETY: per the contract.
    unsafe {
        if (*v).tls.owner == th {
            (*v).tls.owner = ptr::null_mut();
        }
    }
}

/// `photon_fini`: the live blocks get the main thread's values back (the
/// OS thread goes on without photon threads).
///
/// # Safety
/// `v` is the calling OS thread's vcpu; its main thread is running.
pub(super) unsafe fn on_fini(v: *mut Vcpu) {
    // SAFETY: per the contract.
    unsafe {
        let main = (*v).main;
        if active() && (*v).tls.generation != 0 && (*v).tls.owner != main {
            swap(v, main);
        }
    }
}

/// Where `addr` lies in the calling vcpu's live isolated module blocks:
/// (region index, offset).
fn locate(v: *mut Vcpu, addr: usize) -> Option<(usize, usize)> {
    // SAFETY: this OS thread's live vcpu; no switch here.
    let t = unsafe {
        if (*v).tls.generation != GEN.load(Acquire) {
            refresh(v);
        }
        &(*v).tls
    };
    t.live.iter().find_map(|l| {
        let a = l.addr as usize;
        let inside = matches!(l.region.kind, Kind::Module { .. }) && addr >= a && addr < a + l.region.size;
        inside.then(|| (l.index, addr - a))
    })
}

/// `photon_tls_atexit(dtor, obj)`: in a photon thread other than a vcpu's
/// main one, for `obj` inside an isolated block, `dtor(obj)` runs when the
/// thread ends (at `obj`'s address on the vcpu it ends on). ENOENT when
/// `obj` is not isolated or the caller is a vcpu's main thread or the idle
/// thread (the OS thread's own registration applies); EPERM off a vcpu.
pub(crate) fn atexit(dtor: Dtor, obj: usize) -> Result<(), Errno> {
    let v = super::vcpu::current();
    if v.is_null() {
        return Err(Errno::EPERM);
    }
    if !active() {
        return Err(Errno(libc::ENOENT));
    }
    // SAFETY: this OS thread's live vcpu and its current TCB; no switch here.
    unsafe {
        let cur = (*v).current;
        if cur == (*v).main || cur == (*v).idle {
            return Err(Errno(libc::ENOENT));
        }
        let (region, offset) = locate(v, obj).ok_or(Errno(libc::ENOENT))?;
        (*cur).tls.dtors.push((dtor, region, offset));
    }
    Ok(())
}

/// Runs the calling thread's `thread_local` destructors, last registered
/// first (also those registered while they run), before its key
/// destructors, as glibc orders them at a thread's exit.
///
/// # Safety
/// `th` is the calling photon thread, ending.
pub(super) unsafe fn run_dtors(th: *mut ThreadCtl) {
    loop {
        // SAFETY: `th` is the live calling thread; the vcpu is re-read after
        // each destructor (user code may switch, even migrate).
        let (dtor, addr) = unsafe {
            let Some((dtor, region, offset)) = (*th).tls.dtors.pop() else {
                return;
            };
            let v = super::vcpu::current();
            if (*v).tls.generation != GEN.load(Acquire) {
                refresh(v);
            }
            let live = &(*v).tls.live;
            match live.iter().find(|l| l.index == region) {
                Some(l) => (dtor, l.addr.add(offset)),
                None => continue,
            }
        };
        // SAFETY: the destructor the C++ runtime registered, on the object's
        // storage in this photon thread's live copy.
        unsafe { dtor(addr.cast()) };
    }
}
