//! What a socket needs besides transfers, for kernel sockets and
//! userspace-stack descriptors alike: bind, listen, shutdown, the
//! addresses, the options. On a kernel fd each is the system call itself
//! (no vcpu needed); on a userspace descriptor it goes to `crate::unet`.

use crate::errno::{Errno, syscall};
use crate::unet;

fn check(r: libc::c_int) -> Result<(), Errno> {
    if r == -1 { Err(Errno::last_os_error()) } else { Ok(()) }
}

/// `bind(2)`.
///
/// # Safety
/// `addr` is valid for `len` bytes.
pub unsafe fn bind(fd: i32, addr: *const libc::sockaddr, len: libc::socklen_t) -> Result<(), Errno> {
    if unet::is_unet(fd) {
        // SAFETY: per the contract.
        return unsafe { unet::bind(fd, addr, len) };
    }
    syscall!(bind(fd, addr, len)).map(|_| ())
}

/// `listen(2)`.
pub fn listen(fd: i32, backlog: i32) -> Result<(), Errno> {
    if unet::is_unet(fd) {
        return unet::listen(fd, backlog);
    }
    syscall!(listen(fd, backlog)).map(|_| ())
}

/// `shutdown(2)`.
pub fn shutdown(fd: i32, how: i32) -> Result<(), Errno> {
    if unet::is_unet(fd) {
        return unet::shutdown(fd, how);
    }
    // SAFETY: no memory is passed.
    check(unsafe { libc::shutdown(fd, how) })
}

/// `getsockname(2)`, or `getpeername(2)` with `peer`.
///
/// # Safety
/// `addr`/`len` are valid (`*len` bytes at `addr`).
pub unsafe fn sockname(fd: i32, addr: *mut libc::sockaddr, len: *mut libc::socklen_t, peer: bool) -> Result<(), Errno> {
    if unet::is_unet(fd) {
        // SAFETY: per the contract.
        return unsafe { unet::sockname(fd, addr, len, peer) };
    }
    if peer {
        // SAFETY: per the contract.
        check(unsafe { libc::getpeername(fd, addr, len) })
    } else {
        syscall!(getsockname(fd, addr, len)).map(|_| ())
    }
}

/// `setsockopt(2)`.
///
/// # Safety
/// `val` is valid for `len` bytes.
pub unsafe fn setsockopt(
    fd: i32,
    level: i32,
    name: i32,
    val: *const libc::c_void,
    len: libc::socklen_t,
) -> Result<(), Errno> {
    if unet::is_unet(fd) {
        // SAFETY: per the contract.
        return unsafe { unet::setsockopt(fd, level, name, val, len) };
    }
    syscall!(setsockopt(fd, level, name, val, len)).map(|_| ())
}

/// `getsockopt(2)`.
///
/// # Safety
/// `val`/`len` are valid (`*len` bytes at `val`).
pub unsafe fn getsockopt(
    fd: i32,
    level: i32,
    name: i32,
    val: *mut libc::c_void,
    len: *mut libc::socklen_t,
) -> Result<(), Errno> {
    if unet::is_unet(fd) {
        // SAFETY: per the contract.
        return unsafe { unet::getsockopt(fd, level, name, val, len) };
    }
    syscall!(getsockopt(fd, level, name, val, len)).map(|_| ())
}
