//! Name lookups: glibc resolves names with its own internal socket calls,
//! which no hook sees, so in a photon thread the whole lookup runs on a
//! helper OS thread (`photon_offload`) while the photon thread waits.

use core::ffi::{c_char, c_int, c_void};
use libc::{addrinfo, hostent, sockaddr, socklen_t};

use crate::{active, errno, photon, real, set_errno};

/// Runs `f` on an offload thread, carrying errno back.
pub(crate) fn offloaded<R: Copy>(init: R, f: &mut dyn FnMut() -> R) -> R {
    struct Call<'a, R> {
        f: &'a mut dyn FnMut() -> R,
        out: R,
        errno: c_int,
    }
    unsafe extern "C" fn tramp<R>(arg: *mut c_void) -> *mut c_void {
        // SAFETY: `arg` is the Call below; its owner waits for this to end.
        let call = unsafe { &mut *arg.cast::<Call<'_, R>>() };
        // Runs on libphoton's offload thread: a panic must not unwind into it.
        let ran = crate::boundary(false, || {
            call.out = (call.f)();
            call.errno = errno();
            true
        });
        if !ran {
            call.errno = libc::ENOTRECOVERABLE;
        }
        core::ptr::null_mut()
    }
    let mut call = Call { f, out: init, errno: 0 };
    // SAFETY: photon_offload waits (uninterruptibly) until tramp returns.
    let r = unsafe { photon::photon_offload(Some(tramp::<R>), (&raw mut call).cast(), core::ptr::null_mut()) };
    if r != 0 {
        // Could not offload: look it up here.
        return (call.f)();
    }
    set_errno(call.errno);
    call.out
}

/// The hooked `getaddrinfo` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getaddrinfo(
    node: *const c_char,
    service: *const c_char,
    hints: *const addrinfo,
    res: *mut *mut addrinfo,
) -> c_int {
    crate::boundary(libc::EAI_SYSTEM, || {
        // SAFETY: the caller's arguments, used before this returns.
        let mut f = || unsafe { real::getaddrinfo(node, service, hints, res) };
        if active() {
            offloaded(libc::EAI_SYSTEM, &mut f)
        } else {
            f()
        }
    })
}

/// The hooked `getnameinfo` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getnameinfo(
    addr: *const sockaddr,
    len: socklen_t,
    host: *mut c_char,
    hostlen: socklen_t,
    serv: *mut c_char,
    servlen: socklen_t,
    flags: c_int,
) -> c_int {
    crate::boundary(libc::EAI_SYSTEM, || {
        // SAFETY: the caller's arguments, used before this returns.
        let mut f = || unsafe { real::getnameinfo(addr, len, host, hostlen, serv, servlen, flags) };
        if active() {
            offloaded(libc::EAI_SYSTEM, &mut f)
        } else {
            f()
        }
    })
}

/// Its result is glibc's static buffer, valid until the next call on any
/// thread, as without the shim.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gethostbyname(name: *const c_char) -> *mut hostent {
    crate::boundary(core::ptr::null_mut(), || {
        // SAFETY: the caller's name, used before this returns.
        let mut f = || unsafe { real::gethostbyname(name) };
        if active() {
            offloaded(core::ptr::null_mut(), &mut f)
        } else {
            f()
        }
    })
}
