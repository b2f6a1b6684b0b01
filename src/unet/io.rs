//! Data transfer on userspace-stack descriptors (`recv`/`send` and the
//! fd API's shapes of them), readiness waits and close.

use core::ptr;

use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{IpAddress, IpEndpoint};

use super::StackRef;
use super::lookup;
use super::socket::{bind_udp, entry, err, pair, read_addr, write_addr};
use super::stack::{Sock, readiness};
use crate::engine::{READABLE, WRITABLE};
use crate::errno::Errno;
use crate::sched;

/// Largest UDP payload sent (no IP fragmentation).
/// Largest UDP payload in one 1500-byte IPv4 frame (IPv6: 20 bytes less).
const UDP_MAX: usize = 1500 - 28;

/// `read(2)`.
///
/// # Safety
/// `buf` is valid for `len` bytes of writes.
pub(crate) unsafe fn read(fd: i32, buf: *mut u8, len: usize, flags: i32, deadline: u64) -> Result<usize, Errno> {
    let seg = [libc::iovec {
        iov_base: buf.cast(),
        iov_len: len,
    }];
    // SAFETY: per the contract.
    unsafe { recv(fd, &seg, flags, (ptr::null_mut(), ptr::null_mut()), deadline) }
}

/// `write(2)`.
///
/// # Safety
/// `buf` is valid for `len` bytes of reads.
pub(crate) unsafe fn write(fd: i32, buf: *const u8, len: usize, flags: i32, deadline: u64) -> Result<usize, Errno> {
    let seg = [libc::iovec {
        iov_base: buf.cast_mut().cast(),
        iov_len: len,
    }];
    // SAFETY: per the contract.
    unsafe { send(fd, &seg, flags, (ptr::null(), 0), deadline) }
}

/// The iovecs `iov[..n]` as a slice (empty for n == 0).
///
/// # Safety
/// `iov` holds `n` valid iovecs.
pub(crate) unsafe fn segs<'a>(iov: *const libc::iovec, n: usize) -> Segs<'a> {
    if n == 0 || iov.is_null() {
        &[]
    } else {
        // SAFETY: per the contract.
        unsafe { core::slice::from_raw_parts(iov, n) }
    }
}

/// `recvmsg(2)`: no ancillary data (`msg_controllen` comes back 0).
///
/// # Safety
/// `msg` and what it points to are valid.
pub(crate) unsafe fn recvmsg(fd: i32, msg: *mut libc::msghdr, flags: i32, deadline: u64) -> Result<usize, Errno> {
    // SAFETY: per the contract.
    unsafe {
        let m = &mut *msg;
        crate::sys::iovecs_ok(m.msg_iov, m.msg_iovlen)?;
        let from = if m.msg_name.is_null() {
            (ptr::null_mut(), ptr::null_mut())
        } else {
            (m.msg_name.cast(), &raw mut m.msg_namelen)
        };
        let n = recv(fd, segs(m.msg_iov, m.msg_iovlen), flags, from, deadline)?;
        m.msg_controllen = 0;
        m.msg_flags = 0;
        Ok(n)
    }
}

/// `sendmsg(2)`: ancillary data is ignored.
///
/// # Safety
/// `msg` and what it points to are valid.
pub(crate) unsafe fn sendmsg(fd: i32, msg: *const libc::msghdr, flags: i32, deadline: u64) -> Result<usize, Errno> {
    // SAFETY: per the contract.
    unsafe {
        let m = &*msg;
        crate::sys::iovecs_ok(m.msg_iov, m.msg_iovlen)?;
        let to = if m.msg_name.is_null() || m.msg_namelen == 0 {
            (ptr::null(), 0)
        } else {
            (m.msg_name.cast_const().cast(), m.msg_namelen)
        };
        send(fd, segs(m.msg_iov, m.msg_iovlen), flags, to, deadline)
    }
}

/// The caller's buffers: (pointer, length) pairs.
pub(crate) type Segs<'a> = &'a [libc::iovec];

/// Receives into `segs` (`recv`, `read`, `readv`, `recvfrom`, `recvmsg`).
/// MSG_PEEK, MSG_DONTWAIT and MSG_WAITALL are understood; MSG_OOB and
/// MSG_ERRQUEUE give EOPNOTSUPP. `from` receives the sender's address.
///
/// # Safety
/// Each iovec is valid for writes; `from`'s pointers are NULL or valid.
pub(crate) unsafe fn recv(
    fd: i32,
    segs: Segs<'_>,
    flags: i32,
    from: (*mut libc::sockaddr, *mut libc::socklen_t),
    deadline: u64,
) -> Result<usize, Errno> {
    if flags & (libc::MSG_OOB | libc::MSG_ERRQUEUE) != 0 {
        return Err(err(libc::EOPNOTSUPP));
    }
    let (st, idx) = lookup(fd)?;
    sched::check_interrupt()?;
    let total: usize = segs.iter().map(|s| s.iov_len).sum();
    let mut done = 0usize;
    loop {
        // SAFETY: per the contract.
        match unsafe { try_recv(&st, idx, segs, done, flags, from) } {
            Ok(n) => {
                if n > 0 && flags & libc::MSG_PEEK == 0 {
                    st.kick(); // room in the receive window: a sleeping loop may owe an update
                }
                done += n;
                let waitall = flags & libc::MSG_WAITALL != 0 && flags & libc::MSG_PEEK == 0;
                if !(waitall && n > 0 && done < total) {
                    return Ok(done);
                }
            }
            Err(Errno::EAGAIN) if flags & libc::MSG_DONTWAIT == 0 => {}
            Err(_) if done > 0 => return Ok(done), // the error shows at the next call
            Err(e) => return Err(e),
        }
        if let Err(e) = st.wait(idx, fd, READABLE, "recv", deadline) {
            return if done > 0 { Ok(done) } else { Err(e) };
        }
    }
}

/// Copies `data` into `segs` from byte `skip` on; returns the bytes copied.
///
/// # Safety
/// Each iovec is valid for writes.
unsafe fn scatter(segs: Segs<'_>, mut skip: usize, data: &[u8]) -> usize {
    let mut off = 0;
    for s in segs {
        if off >= data.len() {
            break;
        }
        if skip >= s.iov_len {
            skip -= s.iov_len;
            continue;
        }
        let n = (s.iov_len - skip).min(data.len() - off);
        // SAFETY: per the contract; n fits both.
        unsafe { ptr::copy_nonoverlapping(data.as_ptr().add(off), s.iov_base.cast::<u8>().add(skip), n) };
        off += n;
        skip = 0;
    }
    off
}

/// One receive attempt; EAGAIN: nothing yet.
///
/// # Safety
/// As [`recv`].
unsafe fn try_recv(
    st: &StackRef,
    idx: u32,
    segs: Segs<'_>,
    skip: usize,
    flags: i32,
    from: (*mut libc::sockaddr, *mut libc::socklen_t),
) -> Result<usize, Errno> {
    let mut guard = st.inner.borrow_mut();
    let inner = &mut *guard;
    let e = entry!(inner, idx);
    let v6 = e.v6;
    let peek = flags & libc::MSG_PEEK != 0;
    let total: usize = segs.iter().map(|s| s.iov_len).sum::<usize>() - skip;
    match e.sock {
        Sock::Fresh | Sock::Listener(_) => Err(err(libc::ENOTCONN)),
        Sock::Stream(h) => {
            if e.shut_rd {
                return Ok(0);
            }
            if total == 0 {
                return Ok(0);
            }
            let s = inner.sockets.get_mut::<tcp::Socket>(h);
            if matches!(s.state(), tcp::State::SynSent | tcp::State::SynReceived) {
                return Err(Errno::EAGAIN);
            }
            let r = if peek {
                let mut tmp = vec![0u8; total.min(s.recv_queue())];
                s.peek_slice(&mut tmp).map(|n| {
                    // SAFETY: per the contract.
                    unsafe { scatter(segs, skip, &tmp[..n]) }
                })
            } else {
                let mut got = 0;
                let mut res = Ok(0);
                let mut skip = skip;
                for seg in segs {
                    if skip >= seg.iov_len {
                        skip -= seg.iov_len;
                        continue;
                    }
                    // SAFETY: per the contract: the caller's buffer.
                    let buf = unsafe {
                        core::slice::from_raw_parts_mut(seg.iov_base.cast::<u8>().add(skip), seg.iov_len - skip)
                    };
                    skip = 0;
                    match s.recv_slice(buf) {
                        Ok(n) => {
                            got += n;
                            if n < buf.len() {
                                break;
                            }
                        }
                        Err(e) => {
                            if got == 0 {
                                res = Err(e);
                            }
                            break;
                        }
                    }
                }
                res.map(|_: usize| got)
            };
            match r {
                Ok(0) => Err(Errno::EAGAIN),
                Ok(n) => {
                    // SAFETY: per the contract.
                    unsafe { write_addr(s.remote_endpoint().map(pair), v6, from.0, from.1) };
                    inner.dirty |= !peek; // a window update may be due
                    Ok(n)
                }
                Err(tcp::RecvError::Finished) => Ok(0),
                Err(tcp::RecvError::InvalidState) => Err(err(libc::ECONNRESET)),
            }
        }
        Sock::Dgram(h) => {
            let peer = e.peer;
            let shut = e.shut_rd;
            if shut {
                return Ok(0);
            }
            let s = inner.sockets.get_mut::<udp::Socket>(h);
            loop {
                let (data, meta) = if peek {
                    match s.peek() {
                        Ok((d, m)) => (d, *m),
                        Err(_) => return Err(Errno::EAGAIN),
                    }
                } else {
                    match s.recv() {
                        Ok((d, m)) => (d, m),
                        Err(_) => return Err(Errno::EAGAIN),
                    }
                };
                if peer.is_some_and(|p| p != meta.endpoint) {
                    if peek {
                        let _ = s.recv(); // not from the connected peer: drop it
                    }
                    continue;
                }
                // SAFETY: per the contract.
                let n = unsafe { scatter(segs, skip, data) };
                // SAFETY: per the contract.
                unsafe { write_addr(Some(pair(meta.endpoint)), v6, from.0, from.1) };
                return Ok(n);
            }
        }
    }
}

/// Sends from `segs` (`send`, `write`, `writev`, `sendto`, `sendmsg`);
/// `to` is the destination for UDP (None: the connected peer). Returns
/// once some bytes were queued (TCP) or the datagram was (UDP).
///
/// # Safety
/// Each iovec is valid for reads; `to` is valid for its length.
pub(crate) unsafe fn send(
    fd: i32,
    segs: Segs<'_>,
    flags: i32,
    to: (*const libc::sockaddr, libc::socklen_t),
    deadline: u64,
) -> Result<usize, Errno> {
    if flags & libc::MSG_OOB != 0 {
        return Err(err(libc::EOPNOTSUPP));
    }
    let (st, idx) = lookup(fd)?;
    sched::check_interrupt()?;
    let dest = if to.0.is_null() {
        None
    } else {
        let v6 = entry!(st.inner.borrow_mut(), idx).v6;
        // SAFETY: per the contract.
        Some(unsafe { read_addr(to.0, to.1, v6)? })
    };
    loop {
        // SAFETY: per the contract.
        match unsafe { try_send(&st, idx, segs, dest) } {
            Ok(n) => {
                st.kick();
                return Ok(n);
            }
            Err(Errno::EAGAIN) if flags & libc::MSG_DONTWAIT == 0 => {}
            Err(e) => return Err(e),
        }
        st.wait(idx, fd, WRITABLE, "send", deadline)?;
    }
}

/// One send attempt; EAGAIN: no room yet.
///
/// # Safety
/// As [`send`].
unsafe fn try_send(st: &StackRef, idx: u32, segs: Segs<'_>, dest: Option<(IpAddress, u16)>) -> Result<usize, Errno> {
    let mut guard = st.inner.borrow_mut();
    let inner = &mut *guard;
    let e = entry!(inner, idx);
    let total: usize = segs.iter().map(|s| s.iov_len).sum();
    match e.sock {
        Sock::Fresh | Sock::Listener(_) => Err(err(libc::ENOTCONN)),
        Sock::Stream(h) => {
            if e.shut_wr {
                return Err(err(libc::EPIPE));
            }
            let s = inner.sockets.get_mut::<tcp::Socket>(h);
            match s.state() {
                tcp::State::SynSent | tcp::State::SynReceived => return Err(Errno::EAGAIN),
                _ if !s.may_send() => return Err(err(libc::EPIPE)),
                _ => {}
            }
            if total == 0 {
                return Ok(0);
            }
            let mut sent = 0;
            for seg in segs {
                if seg.iov_len == 0 {
                    continue;
                }
                // SAFETY: per the contract: the caller's buffer.
                let buf = unsafe { core::slice::from_raw_parts(seg.iov_base.cast::<u8>(), seg.iov_len) };
                match s.send_slice(buf) {
                    Ok(n) => {
                        sent += n;
                        if n < buf.len() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            if sent == 0 {
                return Err(Errno::EAGAIN);
            }
            inner.dirty = true;
            Ok(sent)
        }
        Sock::Dgram(h) => {
            if e.shut_wr {
                return Err(err(libc::EPIPE));
            }
            let to = match (dest, e.peer) {
                (Some((ip, port)), _) => IpEndpoint::new(ip, port),
                (None, Some(p)) => p,
                (None, None) => return Err(err(libc::EDESTADDRREQ)),
            };
            let max = if matches!(to.addr, IpAddress::Ipv6(_)) {
                UDP_MAX - 20
            } else {
                UDP_MAX
            };
            if total > max || total > e.opts.sndbuf {
                return Err(err(libc::EMSGSIZE));
            }
            if to.port == 0 {
                return Err(Errno::EINVAL);
            }
            if e.bound.is_none() {
                bind_udp(inner, idx, None, 0)?;
            }
            let mut data = Vec::with_capacity(total);
            for seg in segs {
                // SAFETY: per the contract: the caller's buffer.
                data.extend_from_slice(unsafe { core::slice::from_raw_parts(seg.iov_base.cast::<u8>(), seg.iov_len) });
            }
            match inner.sockets.get_mut::<udp::Socket>(h).send_slice(&data, to) {
                Ok(()) => {
                    inner.dirty = true;
                    Ok(total)
                }
                Err(udp::SendError::BufferFull) => Err(Errno::EAGAIN),
                Err(udp::SendError::Unaddressable) => Err(err(libc::ENETUNREACH)),
            }
        }
    }
}

/// `photon_wait_fd` on a userspace descriptor.
pub(crate) fn wait_fd(fd: i32, events: u32, deadline: u64) -> Result<u32, Errno> {
    let (st, idx) = lookup(fd)?;
    sched::check_interrupt()?;
    loop {
        {
            let mut guard = st.inner.borrow_mut();
            let inner = &mut *guard;
            let e = inner
                .table
                .get(idx as usize)
                .and_then(Option::as_ref)
                .ok_or(err(libc::EBADF))?;
            let ready = readiness(e, &inner.sockets) & events;
            if ready != 0 {
                return Ok(ready);
            }
        }
        st.wait(idx, fd, events, "poll", deadline)?;
    }
}

/// `photon_close`: wakes the photon threads waiting on `fd` (ECANCELED);
/// a connection then delivers what it queued, with its FIN (or resets,
/// when unread data was left or SO_LINGER 0 asked for it).
pub(crate) fn close(fd: i32) -> Result<(), Errno> {
    let (st, idx) = super::lookup_for_close(fd)?;
    st.inner.borrow_mut().remove(idx)?;
    st.kick();
    Ok(())
}
