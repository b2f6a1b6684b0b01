//! The socket calls on userspace-stack descriptors, shaped as the kernel's
//! (`crate::net` sends every descriptor at or above `FD_BASE` here).
//!
//! Each call tries the smoltcp socket, and while it would block
//! (`EAGAIN` inside) parks the photon thread until the polling loop finds
//! the socket ready, the deadline, an interrupt, or `photon_close`
//! (`ECANCELED`). Calls without a userspace meaning fail with the errno
//! the kernel gives for a socket (`ESPIPE`, `EINVAL`) or `EOPNOTSUPP`.

use core::ptr;

use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{IpAddress, IpEndpoint, IpListenEndpoint, Ipv4Address, Ipv6Address};

use super::stack::{Entry, Inner, Kind, Listener, Opts, Sock};
use super::{encode, lookup};
use crate::engine::{READABLE, WRITABLE};
use crate::errno::Errno;
use crate::sched;

/// Descriptor `idx` of `inner` (borrowing only its table), or EBADF.
macro_rules! entry_ {
    ($inner:expr, $idx:expr) => {
        $inner
            .table
            .get_mut($idx as usize)
            .and_then(Option::as_mut)
            .ok_or(Errno(libc::EBADF))?
    };
}

pub(crate) use entry_ as entry;

pub(crate) fn err(e: i32) -> Errno {
    Errno(e)
}

/// `photon_netstack_socket`.
pub(crate) fn socket(stack: usize, domain: i32, ty: i32, protocol: i32) -> Result<i32, Errno> {
    let st = super::stack_of(stack)?;
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        return Err(err(libc::EAFNOSUPPORT));
    }
    let kind = match ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) {
        libc::SOCK_STREAM if protocol == 0 || protocol == libc::IPPROTO_TCP => Kind::Tcp,
        libc::SOCK_DGRAM if protocol == 0 || protocol == libc::IPPROTO_UDP => Kind::Udp,
        libc::SOCK_STREAM | libc::SOCK_DGRAM => return Err(err(libc::EPROTONOSUPPORT)),
        _ => return Err(err(libc::ESOCKTNOSUPPORT)),
    };
    let mut inner = st.inner.borrow_mut();
    let opts = Opts::default();
    let udp = (kind == Kind::Udp).then(|| inner.new_udp(&opts));
    let sock = udp.map_or(Sock::Fresh, Sock::Dgram);
    let mut e = Entry::new(kind, sock, opts);
    e.v6 = domain == libc::AF_INET6;
    match inner.insert(e) {
        Ok(idx) => Ok(encode(st.slot, idx)),
        Err(e) => {
            if let Some(h) = udp {
                inner.sockets.remove(h);
            }
            Err(e)
        }
    }
}

/// A socket address from the caller's bytes, for an `AF_INET` (`v6`
/// false) or `AF_INET6` socket: `sockaddr_in`, or `sockaddr_in6` (a
/// v4-mapped address is the IPv4 one). EINVAL (short), EAFNOSUPPORT
/// (another family).
///
/// # Safety
/// `addr` is valid for `len` bytes.
pub(crate) unsafe fn read_addr(
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
    v6: bool,
) -> Result<(IpAddress, u16), Errno> {
    if addr.is_null() || (len as usize) < core::mem::size_of::<libc::sa_family_t>() {
        return Err(Errno::EINVAL);
    }
    // SAFETY: per the contract; read unaligned.
    let family = i32::from(unsafe { ptr::read_unaligned(addr.cast::<libc::sa_family_t>()) });
    match (family, v6) {
        (libc::AF_INET, false) => {
            if (len as usize) < core::mem::size_of::<libc::sockaddr_in>() {
                return Err(Errno::EINVAL);
            }
            // SAFETY: per the contract; read unaligned.
            let sin: libc::sockaddr_in = unsafe { ptr::read_unaligned(addr.cast()) };
            Ok((
                IpAddress::Ipv4(Ipv4Address::from(u32::from_be(sin.sin_addr.s_addr))),
                u16::from_be(sin.sin_port),
            ))
        }
        (libc::AF_INET6, true) => {
            if (len as usize) < core::mem::size_of::<libc::sockaddr_in6>() {
                return Err(Errno::EINVAL);
            }
            // SAFETY: per the contract; read unaligned.
            let sin6: libc::sockaddr_in6 = unsafe { ptr::read_unaligned(addr.cast()) };
            let ip = Ipv6Address::from(sin6.sin6_addr.s6_addr);
            let ip = match ip.to_ipv4_mapped() {
                Some(v4) => IpAddress::Ipv4(v4),
                None => IpAddress::Ipv6(ip),
            };
            Ok((ip, u16::from_be(sin6.sin6_port)))
        }
        _ => Err(err(libc::EAFNOSUPPORT)),
    }
}

/// Writes `ep` as the socket's family gives (`sockaddr_in`, or
/// `sockaddr_in6` with IPv4 as v4-mapped), truncated to `*len` as the
/// kernel does.
///
/// # Safety
/// `addr`/`len` are NULL or valid.
pub(crate) unsafe fn write_addr(
    ep: Option<(IpAddress, u16)>,
    v6: bool,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
) {
    if addr.is_null() || len.is_null() {
        return;
    }
    let (ip, port) = ep.unwrap_or((
        if v6 {
            IpAddress::Ipv6(Ipv6Address::UNSPECIFIED)
        } else {
            IpAddress::Ipv4(Ipv4Address::UNSPECIFIED)
        },
        0,
    ));
    let (bytes, full): ([u8; 28], usize) = if v6 {
        // SAFETY: a zeroed sockaddr_in6 is valid.
        let mut sin6: libc::sockaddr_in6 = unsafe { core::mem::zeroed() };
        sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sin6.sin6_port = port.to_be();
        sin6.sin6_addr.s6_addr = match ip {
            IpAddress::Ipv6(a) => a.octets(),
            IpAddress::Ipv4(a) => a.to_ipv6_mapped().octets(),
        };
        // SAFETY: plain bytes of a repr(C) struct of 28 bytes.
        (
            unsafe { core::mem::transmute::<libc::sockaddr_in6, [u8; 28]>(sin6) },
            28,
        )
    } else {
        // SAFETY: a zeroed sockaddr_in is valid.
        let mut sin: libc::sockaddr_in = unsafe { core::mem::zeroed() };
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_port = port.to_be();
        sin.sin_addr.s_addr = match ip {
            IpAddress::Ipv4(a) => u32::from(a).to_be(),
            IpAddress::Ipv6(_) => 0,
        };
        let mut b = [0u8; 28];
        // SAFETY: plain bytes of a repr(C) struct of 16 bytes.
        b[..16].copy_from_slice(&unsafe { core::mem::transmute::<libc::sockaddr_in, [u8; 16]>(sin) });
        (b, 16)
    };
    // SAFETY: per the contract.
    unsafe {
        let n = (*len as usize).min(full);
        ptr::copy_nonoverlapping(bytes.as_ptr(), addr.cast::<u8>(), n);
        *len = full as libc::socklen_t;
    }
}

/// An endpoint as (address, port).
pub(crate) fn pair(ep: IpEndpoint) -> (IpAddress, u16) {
    (ep.addr, ep.port)
}

/// True for an address a connection or datagram cannot go to.
pub(crate) fn unusable_peer(ip: IpAddress) -> bool {
    ip.is_unspecified()
        || ip.is_multicast()
        || match ip {
            IpAddress::Ipv4(a) => a.is_broadcast(),
            IpAddress::Ipv6(_) => false,
        }
}

/// The address an unspecified bind of descriptor family `v6` listens on:
/// an `AF_INET` socket only hears the stack's IPv4 address; an `AF_INET6`
/// one hears both families (as Linux's default, IPV6_V6ONLY off).
pub(crate) fn listen_addr(inner: &Inner, ip: Option<IpAddress>, v6: bool) -> Option<IpAddress> {
    match ip {
        Some(ip) => Some(ip),
        None if !v6 => inner.addr4.map(IpAddress::Ipv4),
        None => None,
    }
}

/// `connect(2)`.
///
/// # Safety
/// `addr` is valid for `len` bytes.
pub(crate) unsafe fn connect(
    fd: i32,
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
    deadline: u64,
) -> Result<(), Errno> {
    let (st, idx) = lookup(fd)?;
    sched::check_interrupt()?;
    let v6 = entry_!(st.inner.borrow_mut(), idx).v6;
    // SAFETY: per the contract.
    let (ip, port) = unsafe { read_addr(addr, len, v6)? };
    {
        let mut guard = st.inner.borrow_mut();
        let inner = &mut *guard;
        let e = entry_!(inner, idx);
        match (&e.sock, e.kind) {
            (Sock::Dgram(_), _) => {
                e.peer = (!ip.is_unspecified()).then(|| IpEndpoint::new(ip, port));
                if e.bound.is_none() {
                    bind_udp(inner, idx, None, 0)?;
                }
                return Ok(());
            }
            (Sock::Listener(_), _) => return Err(Errno::EINVAL),
            (Sock::Stream(h), _) => {
                let s = inner.sockets.get::<tcp::Socket>(*h);
                return match s.state() {
                    tcp::State::SynSent | tcp::State::SynReceived => Err(err(libc::EALREADY)),
                    tcp::State::Closed if e.connecting => {
                        e.connecting = false;
                        Err(err(libc::ECONNREFUSED))
                    }
                    _ => Err(err(libc::EISCONN)),
                };
            }
            (Sock::Fresh, _) => {}
        }
        if port == 0 || unusable_peer(ip) {
            return Err(err(libc::ECONNREFUSED));
        }
        let e = entry_!(inner, idx);
        let (local_ip, mut local_port) = e.bound.unwrap_or((None, 0));
        let opts = e.opts;
        if local_port == 0 {
            local_port = inner.ephemeral_port(Kind::Tcp)?;
        }
        let h = inner.new_tcp(&opts);
        let local = IpListenEndpoint {
            addr: local_ip,
            port: local_port,
        };
        let r = {
            let Inner { iface, sockets, .. } = inner;
            sockets
                .get_mut::<tcp::Socket>(h)
                .connect(iface.context(), IpEndpoint::new(ip, port), local)
        };
        if r.is_err() {
            inner.sockets.remove(h);
            return Err(err(libc::ENETUNREACH));
        }
        let e = entry_!(inner, idx);
        e.sock = Sock::Stream(h);
        e.bound = Some((local_ip, local_port));
        e.connecting = true;
        inner.dirty = true;
    }
    st.kick();
    loop {
        {
            let mut inner = st.inner.borrow_mut();
            let inner = &mut *inner;
            let e = entry_!(inner, idx);
            let Sock::Stream(h) = e.sock else {
                return Err(Errno::EINVAL);
            };
            match inner.sockets.get::<tcp::Socket>(h).state() {
                tcp::State::SynSent | tcp::State::SynReceived => {}
                tcp::State::Closed => {
                    let e = entry_!(inner, idx);
                    e.connecting = false;
                    return Err(err(libc::ECONNREFUSED));
                }
                _ => {
                    entry_!(inner, idx).connecting = false;
                    return Ok(());
                }
            }
        }
        st.wait(idx, fd, WRITABLE, "connect", deadline)?;
    }
}

/// Binds UDP descriptor `idx` to `ip`:`port` (0: an ephemeral port).
pub(crate) fn bind_udp(inner: &mut Inner, idx: u32, ip: Option<IpAddress>, port: u16) -> Result<(), Errno> {
    let port = if port == 0 {
        inner.ephemeral_port(Kind::Udp)?
    } else {
        port
    };
    let e = entry_!(inner, idx);
    let Sock::Dgram(h) = e.sock else {
        return Err(Errno::EINVAL);
    };
    e.bound = Some((ip, port));
    let v6 = e.v6;
    let ep = IpListenEndpoint {
        addr: listen_addr(inner, ip, v6),
        port,
    };
    inner
        .sockets
        .get_mut::<udp::Socket>(h)
        .bind(ep)
        .map_err(|_| Errno::EINVAL)
}

/// `bind(2)`: the stack's own address or INADDR_ANY; port 0 picks one.
///
/// # Safety
/// `addr` is valid for `len` bytes.
pub(crate) unsafe fn bind(fd: i32, addr: *const libc::sockaddr, len: libc::socklen_t) -> Result<(), Errno> {
    let (st, idx) = lookup(fd)?;
    let v6 = entry_!(st.inner.borrow_mut(), idx).v6;
    // SAFETY: per the contract.
    let (ip, port) = unsafe { read_addr(addr, len, v6)? };
    let mut guard = st.inner.borrow_mut();
    let inner = &mut *guard;
    let own = match ip {
        IpAddress::Ipv4(a) => inner.addr4 == Some(a),
        IpAddress::Ipv6(a) => inner.addr6 == Some(a),
    };
    let ip = if ip.is_unspecified() {
        None
    } else if own {
        Some(ip)
    } else {
        return Err(err(libc::EADDRNOTAVAIL));
    };
    let e = entry_!(inner, idx);
    if e.bound.is_some() || !matches!(e.sock, Sock::Fresh | Sock::Dgram(_)) {
        return Err(Errno::EINVAL);
    }
    let kind = e.kind;
    if port != 0 && inner.port_in_use(kind, port) {
        return Err(err(libc::EADDRINUSE));
    }
    match kind {
        Kind::Udp => bind_udp(inner, idx, ip, port),
        Kind::Tcp => {
            let port = if port == 0 {
                inner.ephemeral_port(Kind::Tcp)?
            } else {
                port
            };
            entry_!(inner, idx).bound = Some((ip, port));
            Ok(())
        }
    }
}

/// `listen(2)`; backlog <= 0 means 128, at most 4096.
pub(crate) fn listen(fd: i32, backlog: i32) -> Result<(), Errno> {
    let (st, idx) = lookup(fd)?;
    let mut guard = st.inner.borrow_mut();
    let inner = &mut *guard;
    let e = entry_!(inner, idx);
    let backlog = if backlog <= 0 {
        128
    } else {
        (backlog as usize).min(4096)
    };
    match (&mut e.sock, e.kind) {
        (_, Kind::Udp) => return Err(err(libc::EOPNOTSUPP)),
        (Sock::Listener(l), _) => {
            l.backlog = backlog;
            return Ok(());
        }
        (Sock::Fresh, _) => {}
        _ => return Err(Errno::EINVAL),
    }
    let (addr, port) = match e.bound {
        Some(b) => b,
        None => {
            let p = inner.ephemeral_port(Kind::Tcp)?;
            (None, p)
        }
    };
    let v6 = entry_!(inner, idx).v6;
    let heard = listen_addr(inner, addr, v6);
    let e = entry_!(inner, idx);
    e.bound = Some((addr, port));
    e.sock = Sock::Listener(Listener {
        port,
        addr: heard,
        pool: Vec::new(),
        queue: Default::default(),
        backlog,
    });
    inner.add_listener(idx);
    Ok(())
}

/// `accept4(2)`: a new descriptor for the next established connection.
///
/// # Safety
/// `addr`/`addrlen` are NULL or valid.
pub(crate) unsafe fn accept(
    fd: i32,
    addr: *mut libc::sockaddr,
    addrlen: *mut libc::socklen_t,
    deadline: u64,
) -> Result<i32, Errno> {
    let (st, idx) = lookup(fd)?;
    sched::check_interrupt()?;
    loop {
        {
            let mut guard = st.inner.borrow_mut();
            let inner = &mut *guard;
            let e = entry_!(inner, idx);
            let (opts, v6) = (e.opts, e.v6);
            let Sock::Listener(l) = &mut e.sock else {
                return Err(Errno::EINVAL);
            };
            if let Some(h) = l.queue.pop_front() {
                let peer = inner.sockets.get::<tcp::Socket>(h).remote_endpoint();
                let local = inner.sockets.get::<tcp::Socket>(h).local_endpoint();
                let mut conn = Entry::new(Kind::Tcp, Sock::Stream(h), opts);
                conn.v6 = v6;
                conn.bound = local.map(|ep| (Some(ep.addr), ep.port));
                let nidx = match inner.insert(conn) {
                    Ok(i) => i,
                    Err(e) => {
                        inner.sockets.get_mut::<tcp::Socket>(h).abort();
                        return Err(e);
                    }
                };
                // Room in the queue again: refill the pool of listening
                // sockets now, or a SYN arriving first would be reset.
                inner.upkeep_listeners();
                inner.dirty = true;
                // SAFETY: per the contract.
                unsafe { write_addr(peer.map(pair), v6, addr, addrlen) };
                return Ok(encode(st.slot, nidx));
            }
        }
        st.wait(idx, fd, READABLE, "accept", deadline)?;
    }
}

/// `shutdown(2)`.
pub(crate) fn shutdown(fd: i32, how: i32) -> Result<(), Errno> {
    let (st, idx) = lookup(fd)?;
    {
        let mut guard = st.inner.borrow_mut();
        let inner = &mut *guard;
        let e = entry_!(inner, idx);
        let (rd, wr) = match how {
            libc::SHUT_RD => (true, false),
            libc::SHUT_WR => (false, true),
            libc::SHUT_RDWR => (true, true),
            _ => return Err(Errno::EINVAL),
        };
        match e.sock {
            Sock::Stream(h) => {
                e.shut_rd |= rd;
                if wr && !e.shut_wr {
                    e.shut_wr = true;
                    inner.sockets.get_mut::<tcp::Socket>(h).close();
                }
            }
            Sock::Dgram(_) if e.peer.is_some() => {
                e.shut_rd |= rd;
                e.shut_wr |= wr;
            }
            _ => return Err(err(libc::ENOTCONN)),
        }
        inner.dirty = true;
    }
    st.kick();
    Ok(())
}

/// `getsockname(2)` (`peer`: `getpeername(2)`).
///
/// # Safety
/// `addr`/`len` are valid.
pub(crate) unsafe fn sockname(
    fd: i32,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
    peer: bool,
) -> Result<(), Errno> {
    let (st, idx) = lookup(fd)?;
    let mut inner = st.inner.borrow_mut();
    let (own4, own6) = (inner.addr4, inner.addr6);
    let e = entry_!(inner, idx);
    let v6 = e.v6;
    let (sock, bound, upeer) = (
        match &e.sock {
            Sock::Stream(h) => Some(*h),
            _ => None,
        },
        e.bound,
        e.peer,
    );
    let ep = if peer {
        let p = match sock {
            Some(h) => inner.sockets.get::<tcp::Socket>(h).remote_endpoint().map(pair),
            None => upeer.map(pair),
        };
        Some(p.ok_or(err(libc::ENOTCONN))?)
    } else {
        match sock.and_then(|h| inner.sockets.get::<tcp::Socket>(h).local_endpoint()) {
            Some(ep) => Some(pair(ep)),
            None => bound.map(|(ip, port)| {
                // A connected UDP socket bound to "any" names the stack's
                // address of its peer's family.
                let own = upeer.and_then(|p| match p.addr {
                    IpAddress::Ipv4(_) => own4.map(IpAddress::Ipv4),
                    IpAddress::Ipv6(_) => own6.map(IpAddress::Ipv6),
                });
                let any = if v6 {
                    IpAddress::Ipv6(Ipv6Address::UNSPECIFIED)
                } else {
                    IpAddress::Ipv4(Ipv4Address::UNSPECIFIED)
                };
                (ip.or(own).unwrap_or(any), port)
            }),
        }
    };
    // SAFETY: per the contract.
    unsafe { write_addr(ep, v6, addr, len) };
    Ok(())
}

/// Reads an int option value.
///
/// # Safety
/// `val` is valid for `len` bytes.
unsafe fn opt_int(val: *const libc::c_void, len: libc::socklen_t) -> Result<i32, Errno> {
    if val.is_null() || (len as usize) < core::mem::size_of::<i32>() {
        return Err(Errno::EINVAL);
    }
    // SAFETY: per the contract.
    Ok(unsafe { ptr::read_unaligned(val.cast::<i32>()) })
}

/// `setsockopt(2)`: SO_REUSEADDR (accepted, nothing to do), SO_RCVBUF and
/// SO_SNDBUF (before connect or listen), SO_KEEPALIVE, SO_LINGER,
/// TCP_NODELAY; others: ENOPROTOOPT.
///
/// # Safety
/// `val` is valid for `len` bytes.
pub(crate) unsafe fn setsockopt(
    fd: i32,
    level: i32,
    name: i32,
    val: *const libc::c_void,
    len: libc::socklen_t,
) -> Result<(), Errno> {
    let (st, idx) = lookup(fd)?;
    let mut guard = st.inner.borrow_mut();
    let inner = &mut *guard;
    let e = entry_!(inner, idx);
    let stream = match e.sock {
        Sock::Stream(h) => Some(h),
        _ => None,
    };
    match (level, name) {
        (libc::SOL_SOCKET, libc::SO_REUSEADDR) => {
            // SAFETY: per the contract.
            unsafe { opt_int(val, len)? };
        }
        (libc::SOL_SOCKET, libc::SO_RCVBUF | libc::SO_SNDBUF) => {
            // SAFETY: per the contract.
            let v = unsafe { opt_int(val, len)? };
            let size = (v.max(0) as usize).clamp(2048, 16 << 20);
            if !matches!(e.sock, Sock::Fresh) {
                return Err(Errno::EINVAL); // buffers are sized at connect/listen
            }
            if name == libc::SO_RCVBUF {
                e.opts.rcvbuf = size;
            } else {
                e.opts.sndbuf = size;
            }
        }
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE) => {
            // SAFETY: per the contract.
            e.opts.keepalive = unsafe { opt_int(val, len)? } != 0;
            if let Some(h) = stream {
                let ka = e.opts.keepalive.then(|| smoltcp::time::Duration::from_secs(75));
                inner.sockets.get_mut::<tcp::Socket>(h).set_keep_alive(ka);
            }
        }
        (libc::SOL_SOCKET, libc::SO_LINGER) => {
            if val.is_null() || (len as usize) < core::mem::size_of::<libc::linger>() {
                return Err(Errno::EINVAL);
            }
            // SAFETY: per the contract.
            let l: libc::linger = unsafe { ptr::read_unaligned(val.cast()) };
            e.opts.linger_reset = l.l_onoff != 0 && l.l_linger == 0;
        }
        (libc::IPPROTO_TCP, libc::TCP_NODELAY) if e.kind == Kind::Tcp => {
            // SAFETY: per the contract.
            e.opts.nodelay = unsafe { opt_int(val, len)? } != 0;
            if let Some(h) = stream {
                let nagle = !e.opts.nodelay;
                inner.sockets.get_mut::<tcp::Socket>(h).set_nagle_enabled(nagle);
            }
        }
        _ => return Err(err(libc::ENOPROTOOPT)),
    }
    Ok(())
}

/// `getsockopt(2)`: SO_ERROR, SO_TYPE, SO_DOMAIN, SO_PROTOCOL,
/// SO_ACCEPTCONN, SO_RCVBUF, SO_SNDBUF, SO_KEEPALIVE, SO_REUSEADDR,
/// TCP_NODELAY; others: ENOPROTOOPT.
///
/// # Safety
/// `val`/`len` are valid.
pub(crate) unsafe fn getsockopt(
    fd: i32,
    level: i32,
    name: i32,
    val: *mut libc::c_void,
    len: *mut libc::socklen_t,
) -> Result<(), Errno> {
    let (st, idx) = lookup(fd)?;
    if val.is_null() || len.is_null() {
        return Err(Errno::EINVAL);
    }
    let mut inner = st.inner.borrow_mut();
    let e = entry_!(inner, idx);
    let v: i32 = match (level, name) {
        (libc::SOL_SOCKET, libc::SO_ERROR) => core::mem::take(&mut e.error),
        (libc::SOL_SOCKET, libc::SO_TYPE) => match e.kind {
            Kind::Tcp => libc::SOCK_STREAM,
            Kind::Udp => libc::SOCK_DGRAM,
        },
        (libc::SOL_SOCKET, libc::SO_DOMAIN) => {
            if e.v6 {
                libc::AF_INET6
            } else {
                libc::AF_INET
            }
        }
        (libc::SOL_SOCKET, libc::SO_PROTOCOL) => match e.kind {
            Kind::Tcp => libc::IPPROTO_TCP,
            Kind::Udp => libc::IPPROTO_UDP,
        },
        (libc::SOL_SOCKET, libc::SO_ACCEPTCONN) => i32::from(matches!(e.sock, Sock::Listener(_))),
        (libc::SOL_SOCKET, libc::SO_RCVBUF) => e.opts.rcvbuf as i32,
        (libc::SOL_SOCKET, libc::SO_SNDBUF) => e.opts.sndbuf as i32,
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE) => i32::from(e.opts.keepalive),
        (libc::SOL_SOCKET, libc::SO_REUSEADDR) => 1,
        (libc::IPPROTO_TCP, libc::TCP_NODELAY) if e.kind == Kind::Tcp => i32::from(e.opts.nodelay),
        _ => return Err(err(libc::ENOPROTOOPT)),
    };
    // SAFETY: per the contract.
    unsafe {
        let n = (*len as usize).min(core::mem::size_of::<i32>());
        ptr::copy_nonoverlapping((&raw const v).cast::<u8>(), val.cast::<u8>(), n);
        *len = n as libc::socklen_t;
    }
    Ok(())
}
