//! A TCP or Unix stream server: one photon thread per accepted connection.
//!
//! The accept loop survives fd exhaustion (EMFILE/ENFILE and memory
//! shortages): it logs, backs off (10 ms doubling to 1 s) and keeps serving
//! once fds are free again. `stop` may come from any photon thread (or OS
//! thread): it interrupts the accept loop, and `serve` returns 0.

use core::ffi::c_void;
use std::ffi::CString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;

use crate::errno::{Errno, syscall};
use crate::sched::{self, Handle};

/// The per-connection handler: owns `conn_fd` and closes it.
pub type ConnHandler = unsafe extern "C" fn(userdata: *mut c_void, conn_fd: i32) -> i32;

/// A listening socket and its accept loop's state.
pub struct Server {
    fd: i32,
    unix_path: Option<CString>,
    /// `stopped`, and the thread running `serve` (to interrupt).
    state: Mutex<(bool, Option<Handle>)>,
}

fn listen_on(
    domain: i32,
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
    backlog: i32,
    reuseport: bool,
) -> Result<i32, Errno> {
    let fd = super::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0)?;
    let setup = || -> Result<(), Errno> {
        if domain != libc::AF_UNIX {
            let one: libc::c_int = 1;
            let sz = core::mem::size_of::<libc::c_int>() as libc::socklen_t;
            syscall!(setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                (&raw const one).cast(),
                sz
            ))?;
            if reuseport {
                syscall!(setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_REUSEPORT,
                    (&raw const one).cast(),
                    sz
                ))?;
            }
        }
        syscall!(bind(fd, addr, len))?;
        syscall!(listen(fd, if backlog <= 0 { libc::SOMAXCONN } else { backlog }))?;
        Ok(())
    };
    match setup() {
        Ok(()) => Ok(fd),
        Err(e) => {
            let _ = super::close(fd);
            Err(e)
        }
    }
}

impl Server {
    /// Listens on `ip` (None: all IPv4 addresses) and `port` (0: any free
    /// port); with `reuseport`, several servers may share the port
    /// (SO_REUSEPORT: the kernel spreads connections over them).
    pub fn new_tcp(ip: Option<&str>, port: u16, backlog: i32, reuseport: bool) -> Result<Server, Errno> {
        let ip: IpAddr = match ip {
            None | Some("") => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(s) => s.parse().map_err(|_| Errno::EINVAL)?,
        };
        let (storage, len) = sockaddr_of(SocketAddr::new(ip, port));
        let domain = if ip.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
        let fd = listen_on(domain, (&raw const storage).cast(), len, backlog, reuseport)?;
        Ok(Server {
            fd,
            unix_path: None,
            state: Mutex::new((false, None)),
        })
    }

    /// Listens on `ip` (None: the stack's address and any) and `port` (0:
    /// any free port) of the userspace stack whose handle is `stack`.
    pub fn new_tcp_on(stack: usize, ip: Option<&str>, port: u16, backlog: i32) -> Result<Server, Errno> {
        let ip: Ipv4Addr = match ip {
            None | Some("") => Ipv4Addr::UNSPECIFIED,
            Some(s) => s.parse().map_err(|_| Errno::EINVAL)?,
        };
        let (storage, len) = sockaddr_of(SocketAddr::new(IpAddr::V4(ip), port));
        let fd = crate::unet::socket(stack, libc::AF_INET, libc::SOCK_STREAM, 0)?;
        // SAFETY: storage holds len valid bytes.
        let setup =
            unsafe { super::bind(fd, (&raw const storage).cast(), len) }.and_then(|()| super::listen(fd, backlog));
        if let Err(e) = setup {
            let _ = super::close(fd);
            return Err(e);
        }
        Ok(Server {
            fd,
            unix_path: None,
            state: Mutex::new((false, None)),
        })
    }

    /// Listens on the Unix socket `path`, replacing a stale socket file there.
    pub fn new_unix(path: &[u8], backlog: i32) -> Result<Server, Errno> {
        // SAFETY: a zeroed sockaddr_un is valid.
        let mut sun: libc::sockaddr_un = unsafe { core::mem::zeroed() };
        if path.is_empty() || path.len() >= sun.sun_path.len() {
            return Err(Errno::EINVAL);
        }
        sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, s) in sun.sun_path.iter_mut().zip(path) {
            *d = *s as libc::c_char;
        }
        let cpath = CString::new(path).map_err(|_| Errno::EINVAL)?;
        // Remove a leftover socket file (only a socket: never a regular file).
        // SAFETY: stat into a zeroed struct with a valid C string.
        let mut st: libc::stat = unsafe { core::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::stat(cpath.as_ptr(), &mut st) } == 0 && st.st_mode & libc::S_IFMT == libc::S_IFSOCK {
            // SAFETY: a valid C string.
            unsafe { libc::unlink(cpath.as_ptr()) };
        }
        let len = core::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        let fd = listen_on(libc::AF_UNIX, (&raw const sun).cast(), len, backlog, false)?;
        Ok(Server {
            fd,
            unix_path: Some(cpath),
            state: Mutex::new((false, None)),
        })
    }

    /// The bound TCP port (0 for a Unix server).
    pub fn port(&self) -> Result<u16, Errno> {
        // SAFETY: a zeroed sockaddr_storage is valid.
        let mut ss: libc::sockaddr_storage = unsafe { core::mem::zeroed() };
        let mut len = core::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: storage of len bytes.
        unsafe { super::sockname(self.fd, (&raw mut ss).cast(), &mut len, false)? };
        Ok(match ss.ss_family as i32 {
            // SAFETY: the family says which struct the storage holds.
            libc::AF_INET => u16::from_be(unsafe { (*(&raw const ss).cast::<libc::sockaddr_in>()).sin_port }),
            // SAFETY: as above.
            libc::AF_INET6 => u16::from_be(unsafe { (*(&raw const ss).cast::<libc::sockaddr_in6>()).sin6_port }),
            _ => 0,
        })
    }

    /// Accepts until stopped, running `handler(userdata, fd)` in a new
    /// photon thread per connection.
    pub fn serve(&self, handler: ConnHandler, userdata: *mut c_void) -> Result<(), Errno> {
        let me = sched::self_handle().ok_or(Errno::EPERM)?;
        {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.0 {
                return Ok(());
            }
            if st.1.is_some() {
                return Err(Errno(libc::EBUSY)); // already serving
            }
            st.1 = Some(me);
        }
        let r = self.accept_loop(handler, userdata);
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1 = None;
        r
    }

    fn stopped(&self) -> bool {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    fn accept_loop(&self, handler: ConnHandler, userdata: *mut c_void) -> Result<(), Errno> {
        let mut backoff_ms = 10;
        loop {
            if self.stopped() {
                return Ok(());
            }
            // SAFETY: NULL address pointers are allowed.
            match unsafe { super::accept(self.fd, core::ptr::null_mut(), core::ptr::null_mut(), sched::FOREVER) } {
                Ok(conn) => {
                    backoff_ms = 10;
                    let job = Box::into_raw(Box::new(Conn {
                        handler,
                        userdata,
                        fd: conn,
                    }));
                    if let Err(e) = sched::spawn(conn_main, job.cast(), 0) {
                        log::warn!("photon: server could not start a connection thread: {e}");
                        // SAFETY: the job was not handed to a thread.
                        drop(unsafe { Box::from_raw(job) });
                        let _ = super::close(conn);
                    }
                }
                Err(e) if matches!(e.0, libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                    log::warn!("photon: accept failed ({e}); retrying in {backoff_ms} ms");
                    match sched::sleep_us(backoff_ms * 1000) {
                        Err(_) if self.stopped() => return Ok(()),
                        _ => {}
                    }
                    backoff_ms = (backoff_ms * 2).min(1000);
                }
                Err(_) if self.stopped() => return Ok(()),
                // The peer gave up before we accepted, or a transient error.
                Err(Errno(libc::ECONNABORTED | libc::EINTR | libc::EPROTO | libc::EPERM | libc::ETIMEDOUT)) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Stops `serve` (from any thread); it returns 0.
    pub fn stop(&self) {
        let serving = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.0 = true;
            st.1
        };
        if let Some(h) = serving {
            let _ = sched::interrupt(h, libc::ECANCELED);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = super::close(self.fd);
        if let Some(p) = &self.unix_path {
            // SAFETY: a valid C string.
            unsafe { libc::unlink(p.as_ptr()) };
        }
    }
}

struct Conn {
    handler: ConnHandler,
    userdata: *mut c_void,
    fd: i32,
}

unsafe extern "C" fn conn_main(arg: *mut c_void) -> *mut c_void {
    // SAFETY: `arg` is the Box<Conn> made by the accept loop, handed over once.
    let job = unsafe { Box::from_raw(arg.cast::<Conn>()) };
    // SAFETY: calling the user's handler with its own userdata and a fresh fd.
    let rc = unsafe { (job.handler)(job.userdata, job.fd) };
    if rc != 0 {
        log::debug!("photon: connection handler returned {rc}");
    }
    core::ptr::null_mut()
}

/// A `sockaddr_in`/`sockaddr_in6` for `a`, in storage, with its length.
pub(crate) fn sockaddr_of(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: a zeroed sockaddr_storage is valid.
    let mut ss: libc::sockaddr_storage = unsafe { core::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(v4) => {
            // SAFETY: storage is large and aligned enough for sockaddr_in.
            let sin = unsafe { &mut *(&raw mut ss).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            core::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: storage is large and aligned enough for sockaddr_in6.
            let sin6 = unsafe { &mut *(&raw mut ss).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            sin6.sin6_scope_id = v6.scope_id();
            core::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}
