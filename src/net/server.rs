//! A TCP or Unix stream server: one photon thread per accepted connection.
//!
//! The accept loop survives fd exhaustion (EMFILE/ENFILE and memory
//! shortages): it logs, backs off (10 ms doubling to 1 s) and keeps serving
//! once fds are free again. `stop` may come from any photon thread (or OS
//! thread): it interrupts the accept loops, and `serve` returns 0.
//!
//! `serve_on` runs one accept loop per vcpu on the same listening socket:
//! the caller's vcpu and the vcpus of a work pool started for the call.
//! `stop_on_signal` stops the server from a signal handler (see
//! [`super::stop_signal`]). Settings (stack size, socket options of
//! accepted connections) apply to connections accepted after they are set.

use core::ffi::c_void;
use std::ffi::CString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use super::stop_signal;
use crate::errno::{Errno, syscall};
use crate::sched::{self, Handle, WorkPool};
use crate::sync::Semaphore;

/// The per-connection handler: owns `conn_fd` and closes it.
pub type ConnHandler = unsafe extern "C" fn(userdata: *mut c_void, conn_fd: i32) -> i32;

/// At most this many socket options for accepted connections.
pub const MAX_SOCKOPTS: usize = 16;
/// At most this many bytes per socket option value.
pub const MAX_SOCKOPT_LEN: usize = 256;
/// The largest stack size a server accepts for its connection threads.
const MAX_STACK_SIZE: usize = 1 << 40;

/// A listening socket and its accept loops' state.
pub struct Server {
    fd: i32,
    unix_path: Option<CString>,
    state: Mutex<State>,
    settings: Mutex<Settings>,
}

#[derive(Default)]
struct State {
    stopped: bool,
    /// The photon threads running an accept loop (to interrupt).
    serving: Vec<Handle>,
    /// The signal watchers (to end at stop).
    watchers: Vec<Handle>,
}

#[derive(Default)]
struct Settings {
    /// Stack size of connection threads (0: the default).
    stack_size: usize,
    /// `setsockopt` calls made on every accepted connection.
    sockopts: Vec<(i32, i32, Vec<u8>)>,
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
        Ok(Server::with_fd(fd, None))
    }

    fn with_fd(fd: i32, unix_path: Option<CString>) -> Server {
        Server {
            fd,
            unix_path,
            state: Mutex::new(State::default()),
            settings: Mutex::new(Settings::default()),
        }
    }

    /// Adopts `fd`, a stream socket the caller bound (and perhaps already
    /// put in the listening state: if not, this listens with `SOMAXCONN`).
    /// The server owns the fd from then on. `ENOTSOCK`/`EBADF` for other
    /// fds, `EINVAL` for a socket that is not a stream socket. A
    /// userspace-stack descriptor is adopted as a kernel socket is.
    pub fn from_fd(fd: i32) -> Result<Server, Errno> {
        if fd < 0 {
            return Err(Errno(libc::EBADF));
        }
        let get = |opt: i32| -> Result<i32, Errno> {
            let mut v: libc::c_int = 0;
            let mut len = core::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: v and len are ours and len says v's size. The
            // control functions also take userspace-stack descriptors.
            unsafe { super::getsockopt(fd, libc::SOL_SOCKET, opt, (&raw mut v).cast(), &mut len) }?;
            Ok(v)
        };
        if get(libc::SO_TYPE)? != libc::SOCK_STREAM {
            return Err(Errno::EINVAL);
        }
        if get(libc::SO_ACCEPTCONN)? == 0 {
            super::listen(fd, libc::SOMAXCONN)?;
        }
        Ok(Server::with_fd(fd, None))
    }

    /// The listening socket.
    pub fn fd(&self) -> i32 {
        self.fd
    }

    /// Connection threads get stacks of `size` bytes (0: the default).
    pub fn set_stack_size(&self, size: usize) -> Result<(), Errno> {
        if size > MAX_STACK_SIZE {
            return Err(Errno::EINVAL);
        }
        lock(&self.settings).stack_size = size;
        Ok(())
    }

    /// Every connection accepted from now on gets `setsockopt(level, name,
    /// value)` before its handler runs (replacing an earlier value of the
    /// same option). Tried at once on a scratch socket of the listener's
    /// family, so an option the kernel refuses (or a bad pointer: EFAULT)
    /// fails here with its errno.
    ///
    /// # Safety
    /// `value` is NULL with `len` 0, or points to `len` bytes (it is read
    /// only after the kernel read it without a fault).
    pub unsafe fn add_sockopt(&self, level: i32, name: i32, value: *const u8, len: usize) -> Result<(), Errno> {
        if len > MAX_SOCKOPT_LEN || (value.is_null() && len > 0) {
            return Err(Errno::EINVAL);
        }
        if crate::unet::is_unet(self.fd) {
            // A userspace-stack listener: no kernel socket to try the
            // option on; refused options are logged per connection.
            let value = if len == 0 {
                Vec::new()
            } else {
                // SAFETY: per the contract, value points to len bytes.
                unsafe { core::slice::from_raw_parts(value, len) }.to_vec()
            };
            return self.record_sockopt(level, name, value);
        }
        // SAFETY: a zeroed sockaddr_storage is valid.
        let mut ss: libc::sockaddr_storage = unsafe { core::mem::zeroed() };
        let mut sslen = core::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        syscall!(getsockname(self.fd, (&raw mut ss).cast(), &mut sslen))?;
        let scratch = syscall!(socket(
            i32::from(ss.ss_family),
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0
        ))?;
        let tried = syscall!(setsockopt(scratch, level, name, value.cast(), len as libc::socklen_t));
        // SAFETY: our own scratch socket.
        unsafe { crate::sys::close(scratch) };
        tried?;
        let value = if len == 0 {
            Vec::new()
        } else {
            // SAFETY: per the contract; the kernel just read these bytes.
            unsafe { core::slice::from_raw_parts(value, len) }.to_vec()
        };
        self.record_sockopt(level, name, value)
    }

    fn record_sockopt(&self, level: i32, name: i32, value: Vec<u8>) -> Result<(), Errno> {
        let mut st = lock(&self.settings);
        if let Some(o) = st.sockopts.iter_mut().find(|o| o.0 == level && o.1 == name) {
            o.2 = value;
        } else if st.sockopts.len() >= MAX_SOCKOPTS {
            return Err(Errno(libc::ENOSPC));
        } else {
            st.sockopts.push((level, name, value));
        }
        Ok(())
    }

    /// Listens on `ip` (None: the stack's address and any) and `port` (0:
    /// any free port) of the userspace stack whose handle is `stack`.
    pub fn new_tcp_on(stack: usize, ip: Option<&str>, port: u16, backlog: i32) -> Result<Server, Errno> {
        // No address: the stack's IPv4 one if it has one (an AF_INET
        // listener), else "::" (AF_INET6); an IPv6 literal: AF_INET6.
        let ip: IpAddr = match ip {
            None | Some("") if crate::unet::has_ipv4(stack)? => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            None | Some("") => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            Some(s) => s.parse().map_err(|_| Errno::EINVAL)?,
        };
        let domain = if ip.is_ipv6() { libc::AF_INET6 } else { libc::AF_INET };
        let (storage, len) = sockaddr_of(SocketAddr::new(ip, port));
        let fd = crate::unet::socket(stack, domain, libc::SOCK_STREAM, 0)?;
        // SAFETY: storage holds len valid bytes.
        let setup =
            unsafe { super::bind(fd, (&raw const storage).cast(), len) }.and_then(|()| super::listen(fd, backlog));
        if let Err(e) = setup {
            let _ = super::close(fd);
            return Err(e);
        }
        Ok(Server::with_fd(fd, None))
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
        Ok(Server::with_fd(fd, Some(cpath)))
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
    /// photon thread per connection. `EBUSY` if the server serves already.
    pub fn serve(&self, handler: ConnHandler, userdata: *mut c_void) -> Result<(), Errno> {
        let me = sched::self_handle().ok_or(Errno::EPERM)?;
        if !self.enter(me, true)? {
            return Ok(());
        }
        let r = self.accept_loop(handler, userdata);
        self.leave(me);
        r
    }

    /// Registers `me` as an accept loop; false if the server is stopped.
    /// `EBUSY` when `exclusive` and another loop runs.
    fn enter(&self, me: Handle, exclusive: bool) -> Result<bool, Errno> {
        let mut st = lock(&self.state);
        if st.stopped {
            return Ok(false);
        }
        if exclusive && !st.serving.is_empty() {
            return Err(Errno(libc::EBUSY));
        }
        st.serving.push(me);
        Ok(true)
    }

    fn leave(&self, me: Handle) {
        lock(&self.state).serving.retain(|h| *h != me);
    }

    /// `serve` from `vcpus` vcpus at once: the caller's, and `vcpus - 1`
    /// more of a work pool (same engine) started for the call, each running
    /// an accept loop on the listening socket. Returns once stopped, after
    /// the pool's vcpus ended (their connection threads are ended as
    /// `photon_fini` ends threads: blocked ones see `ECANCELED`). An
    /// unexpected accept error on any vcpu stops all and is returned.
    pub fn serve_on(self: &Arc<Self>, vcpus: u32, handler: ConnHandler, userdata: *mut c_void) -> Result<(), Errno> {
        if vcpus == 0 || vcpus > 1024 {
            return Err(Errno::EINVAL);
        }
        let me = sched::self_handle().ok_or(Errno::EPERM)?;
        if !self.enter(me, true)? {
            return Ok(());
        }
        let extra = vcpus - 1;
        let mut pool = None;
        let shared = Arc::new(PoolLoops {
            server: self.clone(),
            handler,
            userdata: userdata as usize,
            done: Semaphore::new(0),
            error: Mutex::new(None),
        });
        if extra > 0 {
            let engine = match sched::engine_name() {
                Some("io_uring") => crate::engine::EVENT_IOURING,
                _ => crate::engine::EVENT_EPOLL,
            };
            // Starting OS threads blocks this vcpu briefly (each new vcpu
            // reports back when it runs); acceptable once per serve.
            let p = match WorkPool::new(extra, engine) {
                Ok(p) => p,
                Err(e) => {
                    self.leave(me);
                    return Err(e);
                }
            };
            // A fresh pool spreads spawns round robin: one loop per vcpu.
            for _ in 0..extra {
                let arg = Arc::into_raw(shared.clone()).cast_mut().cast();
                if let Err(e) = p.spawn(pool_loop_main, arg) {
                    // SAFETY: the reference was not handed over.
                    drop(unsafe { Arc::from_raw(arg.cast_const().cast::<PoolLoops>()) });
                    shared.done.signal(1).ok();
                    shared.fail(e);
                }
            }
            pool = Some(Box::new(p));
        }
        let r = if shared.error().is_some() {
            Ok(())
        } else {
            self.accept_loop(handler, userdata)
        };
        self.leave(me);
        if let Err(e) = r {
            shared.fail(e);
        }
        self.stop();
        if let Some(p) = pool {
            // An interrupt (a second stop, photon_fini) must not leave the
            // pool's loops behind: wait again until all have ended.
            while shared.done.wait(u64::from(extra), sched::FOREVER).is_err() {}
            // Ending the pool joins OS threads: done on a helper thread,
            // so this vcpu's other threads keep running meanwhile.
            sched::offload_call(drop_pool, Box::into_raw(p).cast());
        }
        match shared.error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Makes signal `sig` stop the server: a photon thread on the calling
    /// vcpu waits for a pipe that the signal's handler writes to (the
    /// handler does nothing else), and calls `stop`. The handler is in
    /// place until the server stops, then the signal's previous action is
    /// put back. `EINVAL` for a signal that cannot be caught, `EPERM` off
    /// a vcpu, `ENOSPC` with 64 registrations alive.
    pub fn stop_on_signal(self: &Arc<Self>, sig: i32) -> Result<(), Errno> {
        if !stop_signal::valid(sig) {
            return Err(Errno::EINVAL);
        }
        sched::self_handle().ok_or(Errno::EPERM)?;
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 into a live array, as a raw syscall (never the shim's hook).
        if unsafe { libc::syscall(libc::SYS_pipe2, fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(Errno::last_os_error());
        }
        let close_both = || {
            let _ = super::close(fds[0]);
            let _ = super::close(fds[1]);
        };
        let slot = match stop_signal::register(sig, fds[1]) {
            Ok(s) => s,
            Err(e) => {
                close_both();
                return Err(e);
            }
        };
        let job = Box::into_raw(Box::new(Watcher {
            server: self.clone(),
            read_fd: fds[0],
            write_fd: fds[1],
            slot,
            sig,
        }));
        match sched::spawn(watcher_main, job.cast(), 64 << 10) {
            Ok(h) => {
                lock(&self.state).watchers.push(h);
                Ok(())
            }
            Err(e) => {
                // SAFETY: the job was not handed to a thread.
                drop(unsafe { Box::from_raw(job) });
                stop_signal::unregister(slot, sig);
                close_both();
                Err(e)
            }
        }
    }

    fn stopped(&self) -> bool {
        lock(&self.state).stopped
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
                    let stack_size = self.prepare(conn);
                    let job = Box::into_raw(Box::new(Conn {
                        handler,
                        userdata,
                        fd: conn,
                    }));
                    if let Err(e) = sched::spawn(conn_main, job.cast(), stack_size) {
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

    /// Applies the socket options to a new connection; its stack size.
    fn prepare(&self, conn: i32) -> usize {
        let st = lock(&self.settings);
        for (level, name, value) in &st.sockopts {
            // SAFETY: value is ours, of value.len() bytes.
            if let Err(e) = unsafe {
                super::setsockopt(
                    conn,
                    *level,
                    *name,
                    value.as_ptr().cast(),
                    value.len() as libc::socklen_t,
                )
            } {
                log::debug!("photon: server: setsockopt({level}, {name}) on a connection: {e}");
            }
        }
        st.stack_size
    }

    /// Stops every accept loop (from any thread); `serve` returns 0. The
    /// signal watchers end too.
    pub fn stop(&self) {
        let (serving, watchers) = {
            let mut st = lock(&self.state);
            st.stopped = true;
            (st.serving.clone(), core::mem::take(&mut st.watchers))
        };
        for h in serving.into_iter().chain(watchers) {
            let _ = sched::interrupt(h, libc::ECANCELED);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the accept loops of `serve_on` on the pool's vcpus share.
struct PoolLoops {
    server: Arc<Server>,
    handler: ConnHandler,
    userdata: usize,
    /// Signalled once by each loop when it ended.
    done: Semaphore,
    /// The first unexpected error of any loop.
    error: Mutex<Option<Errno>>,
}

impl PoolLoops {
    fn fail(&self, e: Errno) {
        lock(&self.error).get_or_insert(e);
        self.server.stop();
    }

    fn error(&self) -> Option<Errno> {
        *lock(&self.error)
    }
}

unsafe extern "C" fn pool_loop_main(arg: *mut c_void) -> *mut c_void {
    // SAFETY: one reference made by serve_on with Arc::into_raw, handed over once.
    let shared = unsafe { Arc::from_raw(arg.cast_const().cast::<PoolLoops>()) };
    if let Some(me) = sched::self_handle()
        && let Ok(true) = shared.server.enter(me, false)
    {
        let r = shared
            .server
            .accept_loop(shared.handler, shared.userdata as *mut c_void);
        shared.server.leave(me);
        if let Err(e) = r {
            shared.fail(e);
        }
    }
    let _ = shared.done.signal(1);
    core::ptr::null_mut()
}

unsafe extern "C" fn drop_pool(arg: *mut c_void) -> *mut c_void {
    // SAFETY: the Box<WorkPool> made by serve_on, handed over once.
    drop(unsafe { Box::from_raw(arg.cast::<WorkPool>()) });
    core::ptr::null_mut()
}

/// A `stop_on_signal` registration, owned by its watcher thread.
struct Watcher {
    server: Arc<Server>,
    read_fd: i32,
    write_fd: i32,
    slot: usize,
    sig: i32,
}

unsafe extern "C" fn watcher_main(arg: *mut c_void) -> *mut c_void {
    // SAFETY: the Box<Watcher> made by stop_on_signal, handed over once.
    let w = unsafe { Box::from_raw(arg.cast::<Watcher>()) };
    let _ = sched::set_name(sched::self_handle().unwrap_or(Handle::NULL), b"photon-stop-on-signal");
    while !w.server.stopped() {
        match super::wait_fd(w.read_fd, super::READABLE, sched::FOREVER) {
            Ok(_) => {
                let mut buf = [0u8; 16];
                // SAFETY: drains into a live buffer; the pipe is non-blocking.
                let n = unsafe { crate::sys::read(w.read_fd, buf.as_mut_ptr().cast(), buf.len()) };
                if n > 0 {
                    log::info!("photon: signal {} stops a server", w.sig);
                    w.server.stop();
                }
            }
            // Interrupted by stop (or photon_fini): the registration ends.
            Err(_) => break,
        }
    }
    stop_signal::unregister(w.slot, w.sig);
    let _ = super::close(w.read_fd);
    let _ = super::close(w.write_fd);
    core::ptr::null_mut()
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
