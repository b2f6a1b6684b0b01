//! One userspace stack: a smoltcp interface over a device, its sockets,
//! the descriptor table, and the polling loop that drives them.
//!
//! The stack belongs to the vcpu that created it and is touched only from
//! that vcpu's OS thread, so its state sits in a `RefCell` borrowed for
//! short stretches that never span a context switch.
//!
//! The polling loop is a photon thread of that vcpu (named "unet poller"),
//! as F-Stack's engine is a coroutine driving `ff_run`: each round reads
//! every frame the device holds, lets smoltcp process them and send what
//! the sockets queued, and wakes the photon threads whose sockets became
//! ready. While other photon threads are runnable, or work was done in the
//! last [`SPIN_US`], it yields and polls again (busy-polling, which keeps
//! latency at one scheduler turn); then it sleeps in the vcpu's engine on
//! the device's fd until a frame arrives, smoltcp's next timer
//! (retransmission, delayed ACK) is due, or a photon thread queued work
//! (a "kick").

use core::cell::{Cell, RefCell};
use core::ffi::c_void;
use std::collections::BTreeSet;

use smoltcp::iface::{Config, Interface, PollIngressSingleResult, SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration as SmolDuration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address, Ipv6Address};

use super::device::Dev;
pub(crate) use super::entry::*;
use super::tap::DeviceCounters;
use crate::engine::{Op, READABLE};
use crate::errno::Errno;
use crate::sched::{self, FOREVER, Handle, Wait};
use crate::time::now_us;

/// Busy-polling goes on this long after the last frame or socket event.
const SPIN_US: u64 = 50;
/// Longest sleep of an idle loop.
const MAX_SLEEP_US: u64 = 200_000;
/// A device without an fd to sleep on (a polled DPDK port) is looked at
/// again after this long when idle.
const POLL_NAP_US: u64 = 200;
/// Frames taken from the device per round before egress runs.
const INGRESS_BUDGET: u32 = 64;
/// Listening sockets kept ready per listener (smoltcp has no backlog: a
/// listening socket becomes the connection; the pool is refilled after
/// every packet that changed a socket).
const LISTEN_POOL: usize = 4;
/// A closed connection still delivering its data and FIN gives up after
/// this long without an acknowledgement (a vanished peer).
const LINGER_TIMEOUT_MS: u64 = 30_000;
/// UDP: datagrams queued per direction.
const UDP_SLOTS: usize = 64;

/// Counters for the benchmark's split of the work.
#[derive(Default, Clone, Copy)]
pub(crate) struct StackCounters {
    /// Rounds of the polling loop.
    pub rounds: u64,
    /// Times the loop slept in the engine.
    pub sleeps: u64,
    /// Kicks that woke a sleeping loop.
    pub kicks: u64,
}

/// The state behind the `RefCell`.
pub(crate) struct Inner {
    pub iface: Interface,
    pub dev: Dev,
    pub sockets: SocketSet<'static>,
    pub table: Vec<Option<Entry>>,
    free: BTreeSet<u32>,
    /// Descriptors open (not closed by the user).
    pub open: usize,
    listeners: Vec<u32>,
    waiting: Vec<u32>,
    /// Closed connections finishing their FIN exchange.
    lingering: Vec<SocketHandle>,
    /// The stack's IPv4 and IPv6 addresses (at least one).
    pub addr4: Option<Ipv4Address>,
    pub addr6: Option<Ipv6Address>,
    next_port: u16,
    /// A user call queued work since the last round.
    pub dirty: bool,
    next_poll: u64,
    pub counters: StackCounters,
}

/// Largest number of descriptors per stack (see `super::MAX_SOCKETS`).
pub(crate) use super::MAX_SOCKETS;

/// A stack and the bookkeeping of its polling loop.
pub(crate) struct Netstack {
    pub slot: u32,
    pub inner: RefCell<Inner>,
    poller: Cell<Option<Handle>>,
    sleeping: Cell<bool>,
    pub(crate) done: Cell<bool>,
    closing: Cell<bool>,
    free_waiter: Cell<Option<(Handle, u64)>>,
    /// Calls under way (see `super::StackRef`).
    pub(crate) in_calls: Cell<u32>,
}

fn smol_now() -> Instant {
    Instant::from_micros(now_us() as i64)
}

/// A locally administered MAC that differs between processes and stacks.
fn make_mac(slot: u32) -> EthernetAddress {
    let pid = std::process::id();
    let t = now_us();
    EthernetAddress([
        0x02,
        (pid >> 8) as u8,
        pid as u8,
        (t >> 8) as u8 ^ (slot as u8),
        t as u8,
        slot as u8,
    ])
}

impl Netstack {
    /// A stack over `dev` with `addr/prefix` and an optional gateway,
    /// owned by the calling vcpu; its polling loop starts at once.
    pub(crate) fn new(
        slot: u32,
        mut dev: Dev,
        cidrs: &[(IpAddress, u8)],
        gateways: &[IpAddress],
    ) -> Result<Box<Netstack>, Errno> {
        let mac = dev.mac().map_or_else(|| make_mac(slot), EthernetAddress);
        let mut config = Config::new(HardwareAddress::Ethernet(mac));
        config.random_seed = now_us() ^ (u64::from(std::process::id()) << 32);
        let mut iface = Interface::new(config, &mut dev, smol_now());
        iface.update_ip_addrs(|a| {
            for &(addr, prefix) in cidrs {
                let _ = a.push(IpCidr::new(addr, prefix));
            }
        });
        for gw in gateways {
            let r = match *gw {
                IpAddress::Ipv4(g) => iface.routes_mut().add_default_ipv4_route(g).map(|_| ()),
                IpAddress::Ipv6(g) => iface.routes_mut().add_default_ipv6_route(g).map(|_| ()),
            };
            r.map_err(|_| Errno::ENOMEM)?;
        }
        let addr4 = cidrs.iter().find_map(|&(a, _)| match a {
            IpAddress::Ipv4(a) => Some(a),
            IpAddress::Ipv6(_) => None,
        });
        let addr6 = cidrs.iter().find_map(|&(a, _)| match a {
            IpAddress::Ipv6(a) => Some(a),
            IpAddress::Ipv4(_) => None,
        });
        let st = Box::new(Netstack {
            slot,
            inner: RefCell::new(Inner {
                iface,
                dev,
                sockets: SocketSet::new(Vec::new()),
                table: Vec::new(),
                free: BTreeSet::new(),
                open: 0,
                listeners: Vec::new(),
                waiting: Vec::new(),
                lingering: Vec::new(),
                addr4,
                addr6,
                next_port: 49152 + (now_us() % 16000) as u16,
                dirty: false,
                next_poll: FOREVER,
                counters: StackCounters::default(),
            }),
            poller: Cell::new(None),
            sleeping: Cell::new(false),
            done: Cell::new(false),
            closing: Cell::new(false),
            free_waiter: Cell::new(None),
            in_calls: Cell::new(0),
        });
        let arg = (&raw const *st).cast_mut().cast::<c_void>();
        let h = sched::spawn(poller_main, arg, 0)?;
        let _ = sched::set_name(h, b"unet poller");
        st.poller.set(Some(h));
        Ok(st)
    }

    /// Wakes the polling loop if it sleeps: a photon thread queued work.
    pub(crate) fn kick(&self) {
        if self.sleeping.replace(false)
            && let Some(h) = self.poller.get()
        {
            self.inner.borrow_mut().counters.kicks += 1;
            let _ = sched::interrupt(h, libc::EAGAIN);
        }
    }

    /// Parks the calling photon thread until descriptor `idx` may be ready
    /// for `events`, `deadline`, an interrupt, or its close (ECANCELED).
    pub(crate) fn wait(&self, idx: u32, fd: i32, events: u32, what: &'static str, deadline: u64) -> Result<(), Errno> {
        let (h, seq) = sched::next_wait_seq()?;
        {
            let mut inner = self.inner.borrow_mut();
            let inner = &mut *inner;
            let e = inner.entry_mut(idx)?;
            e.waiters.push(Waiter { h, seq, events });
            if !e.listed {
                e.listed = true;
                inner.waiting.push(idx);
            }
            inner.dirty = true;
        }
        self.kick();
        let r = sched::block_on(deadline, Wait::Unet { what, fd });
        if r.is_err() {
            // Timed out or interrupted: withdraw (a close already did).
            let mut inner = self.inner.borrow_mut();
            if let Ok(e) = inner.entry_mut(idx) {
                e.waiters.retain(|w| !(w.h == h && w.seq == seq));
            }
        }
        r
    }

    /// Begins `photon_netstack_free`: stops the polling loop and waits
    /// until it has ended. Called on the owner vcpu.
    pub(crate) fn stop(&self) -> Result<(), Errno> {
        self.closing.set(true);
        while !self.done.get() {
            let (h, seq) = sched::next_wait_seq()?;
            self.free_waiter.set(Some((h, seq)));
            if let Some(p) = self.poller.get() {
                let _ = sched::interrupt(p, libc::ECANCELED);
            }
            // Uninterrupted by design: the loop ends within one round.
            let _ = sched::block_on(now_us().saturating_add(10_000), Wait::Other);
        }
        Ok(())
    }

    fn poll_loop(&self) {
        let mut last_work = now_us();
        loop {
            if self.closing.get() || sched::fini_waiting() {
                break;
            }
            let worked = self.drive();
            let now = now_us();
            if worked {
                last_work = now;
            }
            let others = sched::vcpu_stats().map(|s| s.threads_runnable > 1).unwrap_or(false);
            if others || now.saturating_sub(last_work) < SPIN_US {
                sched::yield_now();
                continue;
            }
            let (fd, deadline) = {
                let mut inner = self.inner.borrow_mut();
                if !inner.dev.prepare_sleep() {
                    // Frames came in meanwhile.
                    drop(inner);
                    last_work = now_us();
                    continue;
                }
                inner.counters.sleeps += 1;
                // Capped, so photon_fini (which interrupts only untimed
                // waits) finds the loop within MAX_SLEEP_US.
                let fd = inner.dev.sleep_fd();
                let cap = if fd.is_some() { MAX_SLEEP_US } else { POLL_NAP_US };
                (fd, inner.next_poll.min(now.saturating_add(cap)))
            };
            self.sleeping.set(true);
            let r = match fd {
                // SAFETY: a Poll op points to no memory.
                Some(fd) => unsafe { sched::io_wait(Op::Poll { fd, events: READABLE }, deadline) },
                None => sched::sleep_us(deadline.saturating_sub(now_us()).max(1)).map(|()| 0),
            };
            self.sleeping.set(false);
            self.inner.borrow_mut().dev.woke(fd.is_some() && r.is_ok());
            match r {
                Ok(_) | Err(Errno::ETIMEDOUT) | Err(Errno::EAGAIN) | Err(Errno::ECANCELED) => {}
                Err(e) => {
                    log::warn!("photon: unet poller: waiting on the device failed: {e}");
                    let _ = sched::sleep_us(1000);
                }
            }
            last_work = now_us();
        }
        // Ended (free or photon_fini): every waiter fails with ENETDOWN.
        {
            let mut inner = self.inner.borrow_mut();
            let inner = &mut *inner;
            for idx in inner.waiting.drain(..) {
                if let Some(Some(e)) = inner.table.get_mut(idx as usize) {
                    e.listed = false;
                    for w in e.waiters.drain(..) {
                        sched::wake(w.h, w.seq, libc::ENETDOWN);
                    }
                }
            }
        }
        self.done.set(true);
        super::mark_stopped(self.slot);
        if let Some((h, seq)) = self.free_waiter.take() {
            sched::wake(h, seq, 0);
        }
    }

    /// One round: ingress, egress, listener upkeep, wake-ups. True if
    /// anything happened.
    pub(crate) fn drive(&self) -> bool {
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        inner.counters.rounds += 1;
        let now_u = now_us();
        let now = Instant::from_micros(now_u as i64);
        let mut frames = 0;
        let mut changed = false;
        while frames < INGRESS_BUDGET {
            match inner.iface.poll_ingress_single(now, &mut inner.dev, &mut inner.sockets) {
                PollIngressSingleResult::None => break,
                PollIngressSingleResult::PacketProcessed => frames += 1,
                PollIngressSingleResult::SocketStateChanged => {
                    frames += 1;
                    changed = true;
                    inner.upkeep_listeners();
                }
            }
        }
        if frames > 0 || inner.dirty || now_u >= inner.next_poll {
            inner.dirty = false;
            // Timers may have moved sockets (retransmission limits): the
            // waiters are checked after every egress.
            let _ = inner.iface.poll_egress(now, &mut inner.dev, &mut inner.sockets);
            inner.dev.flush();
            changed = true;
            inner.next_poll = match inner.iface.poll_delay(now, &inner.sockets) {
                Some(d) => now_u.saturating_add(d.total_micros()),
                None => FOREVER,
            };
        }
        if changed {
            inner.upkeep_listeners();
            inner.reap_lingering();
            inner.wake_ready();
        }
        frames > 0
    }
}

unsafe extern "C" fn poller_main(arg: *mut c_void) -> *mut c_void {
    // SAFETY: the stack outlives its loop (free waits for `done`).
    let st = unsafe { &*arg.cast::<Netstack>() };
    st.poll_loop();
    core::ptr::null_mut()
}

impl Inner {
    /// The descriptor at `idx`, or EBADF.
    pub(crate) fn entry_mut(&mut self, idx: u32) -> Result<&mut Entry, Errno> {
        self.table
            .get_mut(idx as usize)
            .and_then(Option::as_mut)
            .ok_or(Errno(libc::EBADF))
    }

    /// Stores `e` at the lowest free index (as the kernel numbers fds).
    pub(crate) fn insert(&mut self, e: Entry) -> Result<u32, Errno> {
        let idx = match self.free.pop_first() {
            Some(i) => i,
            None => {
                if self.table.len() >= MAX_SOCKETS {
                    return Err(Errno(libc::EMFILE));
                }
                self.table.push(None);
                (self.table.len() - 1) as u32
            }
        };
        if matches!(e.sock, Sock::Listener(_)) {
            self.listeners.push(idx);
        }
        self.table[idx as usize] = Some(e);
        self.open += 1;
        Ok(idx)
    }

    /// Registers `idx` as a listener (after listen turned it into one).
    pub(crate) fn add_listener(&mut self, idx: u32) {
        self.listeners.push(idx);
        self.upkeep_listeners();
    }

    /// Removes descriptor `idx`: its waiters fail with ECANCELED, its
    /// sockets close (a connection lingers to deliver its data and FIN).
    pub(crate) fn remove(&mut self, idx: u32) -> Result<(), Errno> {
        let e = self
            .table
            .get_mut(idx as usize)
            .and_then(Option::take)
            .ok_or(Errno(libc::EBADF))?;
        self.free.insert(idx);
        self.open -= 1;
        for w in e.waiters {
            sched::wake(w.h, w.seq, libc::ECANCELED);
        }
        if e.listed {
            self.waiting.retain(|&i| i != idx);
        }
        match e.sock {
            Sock::Fresh => {}
            Sock::Dgram(h) => {
                self.sockets.remove(h);
            }
            Sock::Stream(h) => {
                let s = self.sockets.get_mut::<tcp::Socket>(h);
                if e.opts.linger_reset || s.recv_queue() > 0 {
                    // Unread data or SO_LINGER 0: reset, as the kernel does.
                    s.abort();
                } else {
                    s.close();
                }
                s.set_timeout(Some(SmolDuration::from_millis(LINGER_TIMEOUT_MS)));
                self.lingering.push(h);
            }
            Sock::Listener(l) => {
                self.listeners.retain(|&i| i != idx);
                for h in l.pool.into_iter().chain(l.queue) {
                    self.sockets.get_mut::<tcp::Socket>(h).abort();
                    self.lingering.push(h);
                }
            }
        }
        self.dirty = true;
        Ok(())
    }

    /// A new smoltcp TCP socket with `opts`' buffers and flags.
    pub(crate) fn new_tcp(&mut self, opts: &Opts) -> SocketHandle {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; opts.rcvbuf]),
            tcp::SocketBuffer::new(vec![0; opts.sndbuf]),
        );
        s.set_nagle_enabled(!opts.nodelay);
        if opts.keepalive {
            s.set_keep_alive(Some(SmolDuration::from_secs(75)));
        }
        self.sockets.add(s)
    }

    /// A new smoltcp UDP socket.
    pub(crate) fn new_udp(&mut self, opts: &Opts) -> SocketHandle {
        let s = udp::Socket::new(
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; UDP_SLOTS], vec![0; opts.rcvbuf]),
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; UDP_SLOTS], vec![0; opts.sndbuf]),
        );
        self.sockets.add(s)
    }

    /// True if a socket of this stack already uses local port `port`.
    pub(crate) fn port_in_use(&self, kind: Kind, port: u16) -> bool {
        let bound = self.table.iter().flatten().any(|e| {
            e.kind == kind
                && (e.bound.is_some_and(|(_, p)| p == port) || matches!(&e.sock, Sock::Listener(l) if l.port == port))
        });
        bound
            || (kind == Kind::Tcp
                && self.sockets.iter().any(|(_, s)| match s {
                    smoltcp::socket::Socket::Tcp(t) => t.local_endpoint().is_some_and(|ep| ep.port == port),
                    _ => false,
                }))
    }

    /// A free ephemeral port (49152-65535), or EADDRNOTAVAIL.
    pub(crate) fn ephemeral_port(&mut self, kind: Kind) -> Result<u16, Errno> {
        for _ in 0..16384 {
            let p = self.next_port;
            self.next_port = if p == u16::MAX { 49152 } else { p + 1 };
            if !self.port_in_use(kind, p) {
                return Ok(p);
            }
        }
        Err(Errno(libc::EADDRNOTAVAIL))
    }

    /// Keeps each listener's pool of Listen sockets full and moves the
    /// connections they became to its accept queue.
    pub(crate) fn upkeep_listeners(&mut self) {
        for li in 0..self.listeners.len() {
            let idx = self.listeners[li] as usize;
            let Some(Some(e)) = self.table.get_mut(idx) else {
                continue;
            };
            let opts = e.opts;
            let Sock::Listener(l) = &mut e.sock else { continue };
            let mut fresh = 0;
            let mut i = 0;
            while i < l.pool.len() {
                let h = l.pool[i];
                let s = self.sockets.get_mut::<tcp::Socket>(h);
                match s.state() {
                    tcp::State::Listen => {
                        fresh += 1;
                        i += 1;
                    }
                    tcp::State::SynReceived => i += 1,
                    tcp::State::Closed | tcp::State::TimeWait => {
                        l.pool.swap_remove(i);
                        self.sockets.remove(h);
                    }
                    _ if l.queue.len() < l.backlog => {
                        l.pool.swap_remove(i);
                        l.queue.push_back(h);
                    }
                    _ => i += 1, // queue full: it waits in the pool
                }
            }
            let (port, addr) = (l.port, l.addr);
            let room = l.backlog.saturating_sub(l.queue.len());
            let want = LISTEN_POOL.min(room).saturating_sub(fresh);
            for _ in 0..want {
                let mut s = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; opts.rcvbuf]),
                    tcp::SocketBuffer::new(vec![0; opts.sndbuf]),
                );
                s.set_nagle_enabled(!opts.nodelay);
                let ep = smoltcp::wire::IpListenEndpoint { addr, port };
                if s.listen(ep).is_err() {
                    break;
                }
                let h = self.sockets.add(s);
                if let Some(Some(Entry {
                    sock: Sock::Listener(l),
                    ..
                })) = self.table.get_mut(idx)
                {
                    l.pool.push(h);
                }
            }
        }
    }

    /// Frees closed connections that have finished (or given up).
    fn reap_lingering(&mut self) {
        let mut i = 0;
        while i < self.lingering.len() {
            let h = self.lingering[i];
            let st = self.sockets.get::<tcp::Socket>(h).state();
            // TIME-WAIT is not kept: the port is what it would protect, and
            // a late segment for it gets a reset.
            if matches!(st, tcp::State::Closed | tcp::State::TimeWait) {
                self.lingering.swap_remove(i);
                self.sockets.remove(h);
            } else {
                i += 1;
            }
        }
    }

    /// Wakes the waiters whose descriptor is ready for what they wait for.
    fn wake_ready(&mut self) {
        let mut i = 0;
        while i < self.waiting.len() {
            let idx = self.waiting[i];
            let ready = match self.table.get(idx as usize).and_then(Option::as_ref) {
                Some(e) => readiness(e, &self.sockets),
                None => {
                    self.waiting.swap_remove(i);
                    continue;
                }
            };
            let Some(Some(e)) = self.table.get_mut(idx as usize) else {
                continue;
            };
            if ready != 0 {
                e.waiters.retain(|w| {
                    if w.events & ready != 0 {
                        sched::wake(w.h, w.seq, 0);
                        false
                    } else {
                        true
                    }
                });
            }
            if e.waiters.is_empty() {
                e.listed = false;
                self.waiting.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// The device's counters.
    pub(crate) fn device_counters(&self) -> DeviceCounters {
        self.dev.counters()
    }
}
