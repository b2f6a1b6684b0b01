//! The server loop: one photon thread per accepted connection.

use core::ffi::{CStr, c_char, c_int, c_void};
use std::sync::Arc;

use super::guard;
use crate::errno::Errno;
use crate::net::server::Server;

/// A listening TCP or Unix stream socket with its accept loop. Opaque.
pub struct photon_server {
    _private: [u8; 0],
}

/// Handles one connection in its own photon thread. The handler owns
/// `conn_fd` and must close it (`photon_close`); its return value is only logged.
pub type photon_conn_handler = Option<unsafe extern "C" fn(userdata: *mut c_void, conn_fd: c_int) -> c_int>;

/// A new reference to the server behind `s`.
fn server(s: *mut photon_server) -> Result<Arc<Server>, Errno> {
    if s.is_null() {
        return Err(Errno::EINVAL);
    }
    let p = s.cast_const().cast::<Server>();
    // SAFETY: a non-NULL photon_server* came from publish() (Arc::into_raw)
    // and is not yet freed; we take one more reference.
    unsafe {
        Arc::increment_strong_count(p);
        Ok(Arc::from_raw(p))
    }
}

fn publish(s: Server) -> *mut photon_server {
    Arc::into_raw(Arc::new(s)).cast_mut().cast()
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
        Server::new_tcp(ip, port, backlog, flags & PHOTON_SERVER_REUSEPORT != 0).map(publish)
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
        Server::new_unix(p, backlog).map(publish)
    })
}

/// The TCP port the server listens on (0 for a Unix server), or -1/`EINVAL`.
#[unsafe(no_mangle)]
pub extern "C" fn photon_server_port(s: *mut photon_server) -> c_int {
    guard(|| server(s)?.port().map(c_int::from))
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
        let srv = server(s)?; // keeps it alive even if freed meanwhile
        srv.serve(handler, userdata).map(|()| 0)
    })
}

/// Makes `photon_server_serve` return 0. Callable from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn photon_server_stop(s: *mut photon_server) -> c_int {
    guard(|| {
        server(s)?.stop();
        Ok(0)
    })
}

/// Stops the server and releases it; the listening socket closes once
/// `photon_server_serve` has returned. NULL is ignored. Call once.
#[unsafe(no_mangle)]
pub extern "C" fn photon_server_free(s: *mut photon_server) {
    guard(|| {
        if !s.is_null() {
            // SAFETY: a non-NULL photon_server* is an Arc made by publish(), released once here.
            let srv = unsafe { Arc::from_raw(s.cast_const().cast::<Server>()) };
            srv.stop();
        }
        Ok(())
    })
}

/// A server on `fd`, a stream socket (TCP, Unix...) the caller created and
/// bound; if it is not listening yet, it is put in the listening state
/// with `SOMAXCONN`. The server owns `fd` from then on
/// (`photon_server_free` closes it; a Unix socket's file is left alone).
/// Needs no vcpu. Returns NULL with errno: `EBADF` (not an fd),
/// `ENOTSOCK` (not a socket), `EINVAL` (not a stream socket), or the
/// listen error; on failure the caller keeps `fd`.
#[unsafe(no_mangle)]
pub extern "C" fn photon_server_new_fd(fd: c_int) -> *mut photon_server {
    guard(|| Server::from_fd(fd).map(publish))
}

/// The server's listening socket (owned by the server: do not close it),
/// or -1/`EINVAL`.
#[unsafe(no_mangle)]
pub extern "C" fn photon_server_fd(s: *mut photon_server) -> c_int {
    guard(|| Ok(server(s)?.fd()))
}

/// Connection threads started from now on get stacks of `stack_size`
/// bytes (0: the default, as `photon_thread_create`). Returns 0, or -1
/// with `EINVAL` (NULL, or a size above 1 TiB).
#[unsafe(no_mangle)]
pub extern "C" fn photon_server_set_stack_size(s: *mut photon_server, stack_size: usize) -> c_int {
    guard(|| server(s)?.set_stack_size(stack_size).map(|()| 0))
}

/// Every connection accepted from now on gets `setsockopt(conn_fd, level,
/// optname, optval, optlen)` before its handler runs, e.g. `IPPROTO_TCP`,
/// `TCP_NODELAY`, `&one`, `sizeof one`. Setting the same option again
/// replaces its value; at most 16 options of at most 256 bytes. The option
/// is tried at once on a scratch socket of the listener's family, so one
/// the kernel refuses fails here. Returns 0, or -1: `EINVAL` (NULL server,
/// NULL `optval` with `optlen` > 0, `optlen` > 256), `ENOSPC` (16 options
/// set), or setsockopt's error (`ENOPROTOOPT`, ...).
#[unsafe(no_mangle)]
pub extern "C" fn photon_server_set_sockopt(
    s: *mut photon_server,
    level: c_int,
    optname: c_int,
    optval: *const c_void,
    optlen: libc::socklen_t,
) -> c_int {
    guard(|| {
        let srv = server(s)?;
        // SAFETY: the caller's optval/optlen; NULL and the length are
        // checked first, and the kernel reads the bytes before we do.
        unsafe { srv.add_sockopt(level, optname, optval.cast(), optlen as usize) }.map(|()| 0)
    })
}

/// `photon_server_serve` from `vcpus` vcpus in one call: the calling vcpu
/// and `vcpus - 1` more that it starts for the call (a work pool on the
/// caller's engine), each running an accept loop on the listening socket
/// and its connections' threads, so one port is served from several
/// cores. `handler` runs on any of them at once: guard shared state with
/// `photon_mutex` (correct across vcpus). Returns 0 once
/// `photon_server_stop` (or the signal of `photon_server_stop_on_signal`)
/// stopped it, after the extra vcpus ended: their connection threads are
/// ended as `photon_fini` ends threads (a wait without a timeout fails
/// with `ECANCELED`); the caller's own connection threads carry on.
/// Returns -1: `EINVAL` (NULL, `vcpus` 0 or above 1024), `EPERM` (off a
/// vcpu), `EBUSY` (already serving), the work pool's error, or an
/// unexpected accept error on any vcpu (which stops all).
#[unsafe(no_mangle)]
pub extern "C" fn photon_server_serve_on(
    s: *mut photon_server,
    vcpus: u32,
    handler: photon_conn_handler,
    userdata: *mut c_void,
) -> c_int {
    guard(|| {
        let handler = handler.ok_or(Errno::EINVAL)?;
        let srv = server(s)?;
        srv.serve_on(vcpus, handler, userdata).map(|()| 0)
    })
}

/// Makes signal `signum` (e.g. `SIGTERM`) stop the server, for a clean
/// shutdown: `photon_server_serve`/`_serve_on` return 0 and the program
/// goes on to free what it owns. Installs a handler for `signum` that only
/// writes a byte to a pipe (async-signal-safe), read by a photon thread
/// that this call starts on the calling vcpu and that calls
/// `photon_server_stop`. The handler stays until the server stops (by the
/// signal or otherwise), then the signal's previous action is restored
/// (unless the program installed another meanwhile). Several servers may
/// stop on one signal. Returns 0, or -1: `EINVAL` (NULL; `signum` out of
/// range, `SIGKILL`, `SIGSTOP`, or a fault signal: `SIGSEGV`, `SIGBUS`,
/// `SIGILL`, `SIGFPE`), `EPERM` (off a vcpu), `ENOSPC` (64 registrations
/// alive), `EMFILE` (no fd for the pipe).
#[unsafe(no_mangle)]
pub extern "C" fn photon_server_stop_on_signal(s: *mut photon_server, signum: c_int) -> c_int {
    guard(|| server(s)?.stop_on_signal(signum).map(|()| 0))
}
