//! Userspace network stacks (kernel bypass): sockets on smoltcp, driven
//! by the vcpu that created the stack.
//!
//! The contract: `photon_netstack_new` opens a device and gives the stack
//! an IPv4 address, an IPv6 one, or one of each; `photon_netstack_socket` returns a descriptor that
//! the fd API (`photon_connect`, `photon_accept`, `photon_read`/`write`,
//! `photon_recv`/`send`, `photon_readv`/`writev`, `photon_recvfrom`/
//! `sendto`, `photon_recvmsg`/`sendmsg`, `photon_read_full`/`write_full`,
//! `photon_wait_fd`, `photon_close`, `photon_bind`, `photon_listen`,
//! `photon_shutdown`, `photon_getsockname`/`getpeername`,
//! `photon_setsockopt`/`getsockopt`) and the server loop accept as they
//! accept kernel sockets, with the same timeouts, interrupts, close
//! waking waiters (`ECANCELED`) and thread dump ("recv on unet fd N").
//! Descriptors start at 2^30 (`PHOTON_NETSTACK_FD_BASE`), a range the
//! kernel never hands out; passed to the kernel (`read(2)`, `close(2)`)
//! they fail with `EBADF`, and photon calls that have no meaning for them
//! fail at once (`photon_pread`: `ESPIPE`, `photon_fsync`: `EINVAL`,
//! `photon_fd_forget`: `EINVAL`).
//!
//! A stack and its descriptors belong to the vcpu that created it: calls
//! from photon threads of other vcpus fail with `EXDEV`, calls off a vcpu
//! with `EPERM`. `AF_INET` and `AF_INET6` sockets (an `AF_INET6` one bound
//! to `::` also hears IPv4, its peers then v4-mapped, as Linux's default;
//! an `AF_INET` one hears IPv4 only), TCP and UDP, no IP fragmentation (a
//! UDP payload over 1472 bytes, 1452 over IPv6: `EMSGSIZE`), no
//! ancillary data, no `MSG_OOB`. A connection closed with unread data, or
//! with `SO_LINGER` 0, is reset; a closed connection finishes its FIN
//! exchange in the background (giving up after 30 s without
//! acknowledgement) and is not kept in TIME-WAIT. Devices: `tap:NAME`,
//! `xdp:IFNAME:QUEUE` (AF_XDP), and `dpdk:EAL-ARGS` where libphoton was
//! built with libdpdk (see `photon_netstack_new`).

use core::ffi::{CStr, c_char, c_int};

use super::guard;
use super::handle::{Castable, Encoded, Shared, ValueEncoded};
use super::server::photon_server;
use crate::errno::Errno;
use crate::net::server::Server;
use crate::unet;

/// A userspace TCP/IP stack over one device. Opaque.
pub struct photon_netstack {
    _private: [u8; 0],
}

/// A number, never an address: the stack's id in the stack table, checked
/// by every lookup (a forged or freed handle gives `EINVAL`).
impl Castable for photon_netstack {
    type Ownership = ValueEncoded;
    type RustType = usize;
}

impl Encoded for photon_netstack {
    fn to_bits(v: usize) -> usize {
        v
    }
    fn from_bits(b: usize) -> Option<usize> {
        Some(b)
    }
}

/// The lowest descriptor a userspace stack hands out (2^30).
pub const PHOTON_NETSTACK_FD_BASE: c_int = 1 << 30;
const _: () = assert!(PHOTON_NETSTACK_FD_BASE == unet::FD_BASE);

fn text<'a>(p: *const c_char) -> Result<Option<&'a str>, Errno> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL; the caller passes a NUL-terminated string.
    Ok(Some(unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| Errno::EINVAL)?))
}

/// A userspace TCP/IP stack on `device` with the address(es) `ipv4_cidr`:
/// "10.7.0.2/24", an IPv6 one ("fd00:7::2/64"), or one of each separated
/// by a comma ("10.7.0.2/24,fd00:7::2/64"); and, if `gateway` is neither
/// NULL nor "", default routes through it (one address per family,
/// comma-separated). The stack belongs to the calling vcpu: its polling
/// loop is a photon thread there ("unet poller"), which busy-polls while
/// other photon threads are runnable and sleeps in the event engine
/// otherwise. Call from a photon thread.
///
/// `device`:
/// - "tap:NAME" attaches the TAP interface NAME (created first, if it does
///   not exist, as a transient one that vanishes with the stack; set one up
///   with `ip tuntap add dev NAME mode tap`, an address on the kernel side
///   and `ip link set NAME up`).
/// - "xdp:IFNAME:QUEUE" (optionally ending in ":skb" or ":drv"): an AF_XDP
///   socket on queue QUEUE of IFNAME, fed by an XDP program libphoton
///   attaches (driver mode where the driver has XDP, else generic mode;
///   detached at `photon_netstack_free`). All frames of that queue go to
///   the stack, which takes the interface's MAC address and MTU. Needs
///   CAP_NET_ADMIN and CAP_BPF.
/// - "dpdk:EAL-ARGS": a DPDK port, where libphoton was built with libdpdk
///   (its `libphoton_dpdk.so` beside `libphoton.so`). The first `dpdk:`
///   stack starts DPDK's EAL with EAL-ARGS (split at spaces; once per
///   process: later stacks' arguments are ignored); each stack takes the
///   next free port. Without a NIC or hugepages: "dpdk:--no-huge -m 256
///   --no-pci --no-shconf -l 0 --vdev=net_tap0,iface=NAME".
///
/// NULL with errno: `EPERM` (not on a vcpu, or not allowed to open the
/// device), `EINVAL` (NULL device or address, a bad address, two of one
/// family, a malformed device string), `ENODEV` (unknown device kind,
/// `/dev/net/tun` missing, no such interface, the kernel refusing AF_XDP
/// or the XDP program, DPDK not built in, the EAL not starting or no free
/// port: a log line says which), `ENFILE` (512 stacks alive).
#[unsafe(no_mangle)]
pub extern "C" fn photon_netstack_new(
    device: *const c_char,
    ipv4_cidr: *const c_char,
    gateway: *const c_char,
) -> *mut photon_netstack {
    guard(|| {
        let device = text(device)?.ok_or(Errno::EINVAL)?;
        let cidr = text(ipv4_cidr)?.ok_or(Errno::EINVAL)?;
        let gateway = text(gateway)?;
        unet::new_stack(device, cidr, gateway).map(photon_netstack::encode)
    })
}

/// Ends the stack's polling loop and closes its device. NULL is accepted.
/// -1 with `EBUSY` while descriptors of the stack are open (close them
/// first; a listening server is closed by `photon_server_free`) or a call
/// on one is under way; `EXDEV` from another vcpu; `EINVAL` for a stale
/// handle. After the owner vcpu's `photon_fini` it may be called from any
/// thread, and frees the stack whatever is still open (those descriptors
/// then fail with `EBADF`).
#[unsafe(no_mangle)]
pub extern "C" fn photon_netstack_free(stack: *mut photon_netstack) -> c_int {
    guard(|| {
        if stack.is_null() {
            return Ok(0);
        }
        unet::free_stack(photon_netstack::decode(stack)?).map(|()| 0)
    })
}

/// `socket(2)` on the stack: `domain` `AF_INET` or `AF_INET6`, `type` `SOCK_STREAM` or
/// `SOCK_DGRAM` (`SOCK_NONBLOCK` and `SOCK_CLOEXEC` are accepted and mean
/// nothing here: photon calls wait as photon threads), `protocol` 0 or the
/// matching `IPPROTO_*`. Returns a descriptor (>= `PHOTON_NETSTACK_FD_BASE`)
/// or -1: `EINVAL` (bad stack), `EAFNOSUPPORT`, `ESOCKTNOSUPPORT`,
/// `EPROTONOSUPPORT`, `EXDEV` (another vcpu's stack), `EMFILE`.
#[unsafe(no_mangle)]
pub extern "C" fn photon_netstack_socket(
    stack: *mut photon_netstack,
    domain: c_int,
    type_: c_int,
    protocol: c_int,
) -> c_int {
    guard(|| unet::socket(photon_netstack::decode(stack)?, domain, type_, protocol))
}

/// Counters of one stack (`photon_netstack_stats`). Set `size` to
/// `sizeof(photon_netstack_stats)` before the call.
#[repr(C)]
pub struct photon_netstack_stats {
    /// The caller's `sizeof(photon_netstack_stats)`.
    pub size: u32,
    /// Frames read from the device.
    pub rx_frames: u64,
    /// Frames written to the device.
    pub tx_frames: u64,
    /// Device reads that found no frame.
    pub rx_empty_polls: u64,
    /// Frames the device refused.
    pub tx_dropped: u64,
    /// Rounds of the polling loop.
    pub poll_rounds: u64,
    /// Times the polling loop slept in the event engine.
    pub poll_sleeps: u64,
    /// Times a photon thread woke the sleeping loop to send.
    pub poll_kicks: u64,
    /// Descriptors open.
    pub sockets_open: u64,
    /// smoltcp sockets alive (open descriptors, listening pools, and
    /// closed connections still finishing).
    pub sockets_alive: u64,
}

/// Fills `out` with the counters of `stack`. -1 with `EINVAL` (NULL, a
/// stale stack, `out->size` not `sizeof(photon_netstack_stats)`),
/// `EXDEV` (another vcpu's stack).
#[unsafe(no_mangle)]
pub extern "C" fn photon_netstack_stats_get(stack: *mut photon_netstack, out: *mut photon_netstack_stats) -> c_int {
    guard(|| {
        let stack = photon_netstack::decode(stack)?;
        if out.is_null() {
            return Err(Errno::EINVAL);
        }
        // SAFETY: non-NULL; the caller passes a struct whose size it states.
        let out = unsafe { &mut *out };
        if out.size as usize != core::mem::size_of::<photon_netstack_stats>() {
            return Err(Errno::EINVAL);
        }
        let s = unet::stack_stats(stack)?;
        *out = photon_netstack_stats {
            size: out.size,
            rx_frames: s.rx_frames,
            tx_frames: s.tx_frames,
            rx_empty_polls: s.rx_empty_polls,
            tx_dropped: s.tx_dropped,
            poll_rounds: s.rounds,
            poll_sleeps: s.sleeps,
            poll_kicks: s.kicks,
            sockets_open: s.sockets_open,
            sockets_alive: s.sockets_total,
        };
        Ok(0)
    })
}

/// `photon_server_new_tcp` on a userspace stack: listens on `ip` (NULL or
/// "": the stack's IPv4 address, or, on an IPv6-only stack, "::"; an IPv6
/// literal listens with an `AF_INET6` socket, "::" hearing both families)
/// and `port` (0: a free one;
/// `photon_server_port` tells which), with `backlog` as `photon_listen`.
/// Serve, stop and free it as any server, from photon threads of the
/// stack's vcpu. NULL with errno: `EINVAL` (bad stack or ip),
/// `EADDRNOTAVAIL`, `EADDRINUSE`, `EXDEV`.
#[unsafe(no_mangle)]
pub extern "C" fn photon_server_new_tcp_on(
    stack: *mut photon_netstack,
    ip: *const c_char,
    port: u16,
    backlog: c_int,
) -> *mut photon_server {
    guard(|| {
        let stack = photon_netstack::decode(stack)?;
        let ip = text(ip)?;
        Server::new_tcp_on(stack, ip, port, backlog).map(photon_server::publish)
    })
}
