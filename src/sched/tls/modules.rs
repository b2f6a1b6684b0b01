//! Finding the modules whose thread-locals can follow the photon thread:
//! the loaded objects with a TLS block (`dl_iterate_phdr`), the names never
//! isolated, the module holding libphoton itself, and the loader and C++
//! runtime entry points the swap needs (`__tls_get_addr`,
//! `__cxa_get_globals`).

use core::ffi::{CStr, c_char, c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering::*};

/// Names (file-name prefixes) never isolated, by `*` or by name: the C and C++
/// runtimes (glibc's family), memory allocators (their thread caches must
/// stay with the OS thread), sanitizer and Valgrind runtimes, and
/// libphoton itself (also when linked statically: see [`own_module`]).
pub(super) const NEVER: &[&str] = &[
    "libc.so",
    "libc-",
    "ld-linux",
    "ld64.so",
    "libm.so",
    "libmvec",
    "libpthread",
    "libdl.so",
    "librt.so",
    "libresolv",
    "libanl",
    "libnss_",
    "libutil.so",
    "libgcc_s",
    "libstdc++",
    "libjemalloc",
    "libtcmalloc",
    "libmimalloc",
    "libphoton",
    "libasan",
    "libubsan",
    "liblsan",
    "libtsan",
    "libclang_rt",
    "vgpreload",
    "linux-vdso",
];

/// `dl_phdr_info` with the TLS fields (glibc >= 2.12), which the libc crate
/// leaves out on Linux.
#[repr(C)]
pub(super) struct PhdrInfo {
    addr: usize,
    name: *const c_char,
    phdr: *const libc::Elf64_Phdr,
    phnum: u16,
    adds: u64,
    subs: u64,
    tls_modid: usize,
    tls_data: *mut c_void,
}

unsafe extern "C" {
    fn dl_iterate_phdr(
        cb: unsafe extern "C" fn(info: *mut PhdrInfo, size: usize, data: *mut c_void) -> c_int,
        data: *mut c_void,
    ) -> c_int;
}

/// A loaded module with a TLS block.
pub(super) struct Module {
    /// File name (the last path component; the program's own for the main
    /// executable, whose `dlpi_name` is empty).
    pub(super) file: String,
    pub(super) path: String,
    pub(super) base: usize,
    pub(super) modid: usize,
    pub(super) image: usize,
    pub(super) filesz: usize,
    pub(super) memsz: usize,
}

/// Every loaded module that has a TLS block.
pub(super) fn tls_modules() -> Vec<Module> {
    unsafe extern "C" fn each(info: *mut PhdrInfo, size: usize, data: *mut c_void) -> c_int {
        // SAFETY: dl_iterate_phdr passes a valid info of `size` bytes and our Vec.
        unsafe {
            if size < core::mem::size_of::<PhdrInfo>() {
                return 0;
            }
            let out = &mut *data.cast::<Vec<Module>>();
            let info = &*info;
            if info.tls_modid == 0 {
                return 0;
            }
            for i in 0..info.phnum as usize {
                let ph = &*info.phdr.add(i);
                if ph.p_type == libc::PT_TLS && ph.p_memsz > 0 {
                    let path = if info.name.is_null() || *info.name == 0 {
                        String::new()
                    } else {
                        CStr::from_ptr(info.name).to_string_lossy().into_owned()
                    };
                    out.push(Module {
                        file: String::new(),
                        path,
                        base: info.addr,
                        modid: info.tls_modid,
                        image: info.addr + ph.p_vaddr as usize,
                        filesz: ph.p_filesz as usize,
                        memsz: ph.p_memsz as usize,
                    });
                }
            }
            0
        }
    }
    let mut out: Vec<Module> = Vec::new();
    // SAFETY: the callback only reads what glibc passes and pushes to `out`.
    unsafe { dl_iterate_phdr(each, (&raw mut out).cast()) };
    let exe = std::fs::read_link("/proc/self/exe")
        .ok()
        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
        .unwrap_or_default();
    for m in &mut out {
        m.file = if m.path.is_empty() {
            exe.clone()
        } else {
            m.path.rsplit('/').next().unwrap_or("").to_string()
        };
    }
    out
}

/// The load base of the module holding libphoton's code (libphoton.so, or
/// the program or library that linked libphoton.a): never isolated, since
/// its TLS holds the vcpu pointer itself.
pub(super) fn own_module() -> usize {
    // SAFETY: Dl_info is plain data; all zeros is a valid value.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: dladdr on an address of our own code, into a zeroed Dl_info.
    let ok = unsafe { libc::dladdr(own_module as *const c_void, &mut info) };
    if ok == 0 { 0 } else { info.dli_fbase as usize }
}

pub(super) fn never_isolated(file: &str) -> bool {
    NEVER.iter().any(|p| file.starts_with(p))
}

/// Pins a module so its TLS block cannot be freed under a swap.
pub(super) fn pin(path: &str) {
    if path.is_empty() {
        return; // the main executable is never unloaded
    }
    let Ok(c) = std::ffi::CString::new(path) else {
        return;
    };
    // SAFETY: a NUL-terminated path of a loaded object; NOLOAD never loads.
    unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_NODELETE | libc::RTLD_LAZY) };
}

pub(super) type CxaGetGlobals = unsafe extern "C" fn() -> *mut c_void;

/// libstdc++'s `__cxa_get_globals`, if the process has libstdc++.
pub(super) fn cxa_get_globals() -> Option<CxaGetGlobals> {
    // SAFETY: a lookup by NUL-terminated name.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__cxa_get_globals".as_ptr()) };
    // SAFETY: libstdc++'s function of this name has this signature.
    (!p.is_null()).then(|| unsafe { core::mem::transmute::<*mut c_void, CxaGetGlobals>(p) })
}

/// glibc's running count of loaded objects (`dlpi_adds`).
pub(super) fn loads_so_far() -> u64 {
    unsafe extern "C" fn first(info: *mut PhdrInfo, size: usize, data: *mut c_void) -> c_int {
        // SAFETY: dl_iterate_phdr passes a valid info of `size` bytes and our u64.
        unsafe {
            if size >= core::mem::offset_of!(PhdrInfo, tls_modid) {
                *data.cast::<u64>() = (*info).adds;
            }
        }
        1 // the first object is enough
    }
    let mut adds = 0u64;
    // SAFETY: the callback writes only `adds`.
    unsafe { dl_iterate_phdr(first, (&raw mut adds).cast()) };
    adds
}

/// `struct tls_index` of the x86-64 / aarch64 ELF TLS ABI.
#[repr(C)]
pub(super) struct TlsIndex {
    pub(super) module: usize,
    pub(super) offset: usize,
}

pub(super) type TlsGetAddr = unsafe extern "C" fn(*const TlsIndex) -> *mut c_void;

pub(super) fn tls_get_addr() -> Option<TlsGetAddr> {
    static P: AtomicU64 = AtomicU64::new(0);
    let mut p = P.load(Relaxed) as usize;
    if p == 0 {
        // SAFETY: a lookup by NUL-terminated name.
        p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__tls_get_addr".as_ptr()) } as usize;
        P.store(p as u64, Relaxed);
    }
    // SAFETY: ld.so's __tls_get_addr has this signature.
    (p != 0).then(|| unsafe { core::mem::transmute::<usize, TlsGetAddr>(p) })
}
