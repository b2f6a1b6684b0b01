//! The server loop: one photon thread per accepted connection.

use core::ffi::{CStr, c_char, c_int, c_void};

use super::guard;
use super::handle::{ArcOwned, Castable, Shared};
use crate::errno::Errno;
use crate::net::server::Server;

/// A listening TCP or Unix stream socket with its accept loop. Opaque.
pub struct photon_server {
    _private: [u8; 0],
}

/// Handles one connection in its own photon thread. The handler owns
/// `conn_fd` and must close it (`photon_close`); its return value is only logged.
pub type photon_conn_handler = Option<unsafe extern "C" fn(userdata: *mut c_void, conn_fd: c_int) -> c_int>;

/// Shared: `photon_server_serve` keeps its own reference, so a
/// `photon_server_free` from another thread cannot pull the server from
/// under a running accept loop.
impl Castable for photon_server {
    type Ownership = ArcOwned;
    type RustType = Server;
}

/// A TCP server listening on `ip` (NULL or "" = 0.0.0.0; IPv6 literals
/// such as "::1" too) and `port` (0 = any free port), with `SO_REUSEADDR`.
/// `backlog` <= 0 means `SOMAXCONN`. Needs no vcpu. Returns NULL with
/// errno: `EINVAL` (bad ip), or the bind/listen error (`EADDRINUSE`, ...).
#[unsafe(no_mangle)]
pub extern "C" fn photon_server_new_tcp(ip: *const c_char, port: u16, backlog: c_int) -> *mut photon_server {
    photon_server_new_tcp_flags(ip, port, backlog, 0)
}

/// `flags` bit for `photon_server_new_tcp_flags`: set SO_REUSEPORT, so
/// one server per vcpu can listen on the same port (the kernel spreads
/// connections over them).
pub const PHOTON_SERVER_REUSEPORT: u32 = 1;

/// `photon_server_new_tcp` with `flags` (`PHOTON_SERVER_*`; unknown bits
/// give `EINVAL`).
#[unsafe(no_mangle)]
pub extern "C" fn photon_server_new_tcp_flags(
    ip: *const c_char,
    port: u16,
    backlog: c_int,
    flags: u32,
) -> *mut photon_server {
    guard(|| {
        if flags & !PHOTON_SERVER_REUSEPORT != 0 {
            return Err(Errno::EINVAL);
        }
        let ip = if ip.is_null() {
            None
        } else {
            // SAFETY: non-NULL; the caller passes a NUL-terminated string.
            Some(unsafe { CStr::from_ptr(ip) }.to_str().map_err(|_| Errno::EINVAL)?)
        };
        Server::new_tcp(ip, port, backlog, flags & PHOTON_SERVER_REUSEPORT != 0).map(photon_server::publish)
    })
}

/// A Unix stream server on `path` (a leftover socket file there is
/// replaced; the file is removed by `photon_server_free`). Returns NULL
/// with `EINVAL` (NULL, empty or too long path) or the bind/listen error.
#[unsafe(no_mangle)]
pub extern "C" fn photon_server_new_unix(path: *const c_char, backlog: c_int) -> *mut photon_server {
    guard(|| {
        if path.is_null() {
            return Err(Errno::EINVAL);
        }
        // SAFETY: non-NULL; the caller passes a NUL-terminated string.
        let p = unsafe { CStr::from_ptr(path) }.to_bytes();
        Server::new_unix(p, backlog).map(photon_server::publish)
    })
}

/// The TCP port the server listens on (0 for a Unix server), or -1/`EINVAL`.
#[unsafe(no_mangle)]
pub extern "C" fn photon_server_port(s: *mut photon_server) -> c_int {
    guard(|| photon_server::clone_arc(s)?.port().map(c_int::from))
}

/// Accepts connections until `photon_server_stop`, running
/// `handler(userdata, conn_fd)` in a new photon thread per connection
/// (default stack). Survives fd exhaustion: backs off and resumes. Returns
/// 0 once stopped, or -1: `EINVAL` (NULL), `EPERM` (off a vcpu), `EBUSY`
/// (already serving), or an unexpected accept error.
#[unsafe(no_mangle)]
pub extern "C" fn photon_server_serve(
    s: *mut photon_server,
    handler: photon_conn_handler,
    userdata: *mut c_void,
) -> c_int {
    guard(|| {
        let handler = handler.ok_or(Errno::EINVAL)?;
        let srv = photon_server::clone_arc(s)?; // keeps it alive even if freed meanwhile
        srv.serve(handler, userdata).map(|()| 0)
    })
}

/// Makes `photon_server_serve` return 0. Callable from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn photon_server_stop(s: *mut photon_server) -> c_int {
    guard(|| {
        photon_server::clone_arc(s)?.stop();
        Ok(0)
    })
}

/// Stops the server and releases it; the listening socket closes once
/// `photon_server_serve` has returned. NULL is ignored. Call once.
#[unsafe(no_mangle)]
pub extern "C" fn photon_server_free(s: *mut photon_server) {
    guard(|| {
        if let Some(srv) = photon_server::release(s) {
            srv.stop();
        }
        Ok(())
    })
}
