//! What a descriptor of a userspace stack holds: its kind, its smoltcp
//! socket(s), options, shutdown state and waiting photon threads; and
//! what it is ready for.

use std::collections::VecDeque;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{IpAddress, IpEndpoint};

use crate::engine::{READABLE, WRITABLE};
use crate::sched::Handle;

/// Default socket buffer sizes (SO_RCVBUF, SO_SNDBUF).
pub(crate) const DEFAULT_BUF: usize = 64 << 10;

/// The kind of descriptor.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Tcp,
    Udp,
}

/// What a descriptor holds now.
pub(crate) enum Sock {
    /// A TCP socket before connect or listen.
    Fresh,
    /// A TCP connection (connecting, established or closing).
    Stream(SocketHandle),
    /// A listening TCP socket.
    Listener(Listener),
    /// A UDP socket.
    Dgram(SocketHandle),
}

/// A listening TCP socket: smoltcp sockets in Listen state on its port,
/// and the connections they became, waiting for accept.
pub(crate) struct Listener {
    pub port: u16,
    /// The address it listens on (None: any of the stack's).
    pub addr: Option<IpAddress>,
    pub pool: Vec<SocketHandle>,
    pub queue: VecDeque<SocketHandle>,
    pub backlog: usize,
}

/// A photon thread waiting on a descriptor.
pub(crate) struct Waiter {
    pub h: Handle,
    pub seq: u64,
    pub events: u32,
}

/// Socket options kept per descriptor.
#[derive(Clone, Copy)]
pub(crate) struct Opts {
    pub rcvbuf: usize,
    pub sndbuf: usize,
    pub nodelay: bool,
    pub keepalive: bool,
    /// SO_LINGER with a zero timeout: close resets the connection.
    pub linger_reset: bool,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            rcvbuf: DEFAULT_BUF,
            sndbuf: DEFAULT_BUF,
            nodelay: false,
            keepalive: false,
            linger_reset: false,
        }
    }
}

/// One descriptor of the stack.
pub(crate) struct Entry {
    pub kind: Kind,
    pub sock: Sock,
    /// The local address given by bind (address, port).
    pub bound: Option<(Option<IpAddress>, u16)>,
    /// An `AF_INET6` socket (its addresses are `sockaddr_in6`, IPv4 peers
    /// as v4-mapped ones).
    pub v6: bool,
    /// UDP: the peer given by connect.
    pub peer: Option<IpEndpoint>,
    pub opts: Opts,
    pub shut_rd: bool,
    pub shut_wr: bool,
    /// A connect is under way (its result is reported once).
    pub connecting: bool,
    /// The error SO_ERROR reports next.
    pub error: i32,
    pub(crate) waiters: Vec<Waiter>,
    pub(crate) listed: bool,
}

impl Entry {
    pub(crate) fn new(kind: Kind, sock: Sock, opts: Opts) -> Entry {
        Entry {
            kind,
            sock,
            bound: None,
            v6: false,
            peer: None,
            opts,
            shut_rd: false,
            shut_wr: false,
            connecting: false,
            error: 0,
            waiters: Vec::new(),
            listed: false,
        }
    }
}

/// What `e` is ready for now (READABLE | WRITABLE); errors and hang-ups
/// count as both, as the engines report them.
pub(crate) fn readiness(e: &Entry, sockets: &SocketSet<'_>) -> u32 {
    match &e.sock {
        Sock::Fresh => READABLE | WRITABLE, // as an unconnected kernel socket: hung up
        Sock::Listener(l) => {
            if l.queue.is_empty() {
                0
            } else {
                READABLE
            }
        }
        Sock::Dgram(h) => {
            let s = sockets.get::<udp::Socket>(*h);
            let mut b = 0;
            if s.can_recv() || e.shut_rd {
                b |= READABLE;
            }
            if s.can_send() {
                b |= WRITABLE;
            }
            b
        }
        Sock::Stream(h) => {
            let s = sockets.get::<tcp::Socket>(*h);
            match s.state() {
                tcp::State::SynSent | tcp::State::SynReceived => 0,
                tcp::State::Closed => READABLE | WRITABLE,
                _ => {
                    let mut b = 0;
                    if s.can_recv() || !s.may_recv() || e.shut_rd {
                        b |= READABLE;
                    }
                    if s.can_send() || !s.may_send() || e.shut_wr {
                        b |= WRITABLE;
                    }
                    b
                }
            }
        }
    }
}
