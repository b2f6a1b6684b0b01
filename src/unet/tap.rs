//! The TAP device: Ethernet frames to and from the kernel through
//! `/dev/net/tun` (`IFF_TAP | IFF_NO_PI`), one `read(2)` or `write(2)` per
//! frame, the fd non-blocking so the polling loop never stalls its vcpu.
//!
//! The interface named in `tap:NAME` is attached if it exists (created
//! beforehand with `ip tuntap add dev NAME mode tap`, which is how its
//! kernel side gets an address and is brought up) and created otherwise
//! (a transient interface, gone when libphoton closes it).

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::errno::{Errno, syscall};

/// Largest Ethernet frame without the FCS (MTU 1500 + 14-byte header).
const FRAME: usize = 1514;

/// Frames and syscalls, for the benchmark's per-request split.
#[derive(Default, Clone, Copy)]
pub(crate) struct DeviceCounters {
    /// Frames received from the kernel.
    pub rx_frames: u64,
    /// Frames sent to the kernel.
    pub tx_frames: u64,
    /// `read(2)` calls that found no frame (EAGAIN).
    pub rx_empty: u64,
    /// Frames the kernel refused (the write failed).
    pub tx_dropped: u64,
}

/// An open TAP interface.
pub(crate) struct Tap {
    fd: i32,
    mtu: usize,
    rx: Box<[u8; FRAME]>,
    tx: Box<[u8; FRAME]>,
    pub(crate) counters: DeviceCounters,
}

/// `struct ifreq` as TUNSETIFF and SIOCGIFMTU read it: the name, then a
/// union whose first member we use (flags, or the MTU).
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    value: libc::c_int,
    _rest: [u8; 20],
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

impl Tap {
    /// Opens (or creates) the TAP interface `name`. ENODEV when
    /// `/dev/net/tun` is missing, EPERM without CAP_NET_ADMIN, EINVAL for a
    /// bad name.
    pub(crate) fn open(name: &str) -> Result<Tap, Errno> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.bytes().any(|b| b == 0 || b == b'/') {
            return Err(Errno::EINVAL);
        }
        // SAFETY: a constant C string.
        let fd = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(match Errno::last_os_error() {
                Errno(libc::ENOENT | libc::ENXIO | libc::ENODEV) => Errno(libc::ENODEV),
                Errno(libc::EACCES) => Errno::EPERM,
                e => e,
            });
        }
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            value: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_int,
            _rest: [0; 20],
        };
        for (d, s) in req.name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        // SAFETY: TUNSETIFF reads and writes an ifreq we own.
        if unsafe { libc::ioctl(fd, TUNSETIFF, &raw mut req) } < 0 {
            let e = Errno::last_os_error();
            // SAFETY: our own fd.
            unsafe { crate::sys::close(fd) };
            return Err(if e.0 == libc::EACCES { Errno::EPERM } else { e });
        }
        let mtu = interface_mtu(name).unwrap_or(1500).clamp(576, 1500);
        Ok(Tap {
            fd,
            mtu,
            rx: Box::new([0; FRAME]),
            tx: Box::new([0; FRAME]),
            counters: DeviceCounters::default(),
        })
    }

    /// The fd the polling loop sleeps on.
    pub(crate) fn fd(&self) -> i32 {
        self.fd
    }
}

/// The MTU the kernel side of `name` has (SIOCGIFMTU), so both ends agree.
fn interface_mtu(name: &str) -> Option<usize> {
    let s = syscall!(socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)).ok()?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        value: 0,
        _rest: [0; 20],
    };
    for (d, s) in req.name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU fills an ifreq we own.
    let r = unsafe { libc::ioctl(s, libc::SIOCGIFMTU, &raw mut req) };
    // SAFETY: our own fd.
    unsafe { crate::sys::close(s) };
    (r == 0 && req.value > 0).then_some(req.value as usize)
}

impl Drop for Tap {
    fn drop(&mut self) {
        // SAFETY: our own fd, closed once.
        unsafe { crate::sys::close(self.fd) };
    }
}

/// One received frame, lent to the stack.
pub(crate) struct RxToken<'a> {
    frame: &'a [u8],
}

/// Room for one frame to send.
pub(crate) struct TxToken<'a> {
    fd: i32,
    buf: &'a mut [u8; FRAME],
    counters: &'a mut DeviceCounters,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(FRAME);
        let r = f(&mut self.buf[..len]);
        // SAFETY: our fd and a buffer of len bytes.
        let n = unsafe { crate::sys::write(self.fd, self.buf.as_ptr().cast(), len) };
        if n == len as isize {
            self.counters.tx_frames += 1;
        } else {
            // A full or downed interface drops the frame, as a NIC would;
            // TCP retransmits.
            self.counters.tx_dropped += 1;
        }
        r
    }
}

impl Device for Tap {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        // SAFETY: our fd and a buffer of FRAME bytes.
        let n = unsafe { crate::sys::read(self.fd, self.rx.as_mut_ptr().cast(), FRAME) };
        if n <= 0 {
            self.counters.rx_empty += 1;
            return None;
        }
        self.counters.rx_frames += 1;
        Some((
            RxToken {
                frame: &self.rx[..n as usize],
            },
            TxToken {
                fd: self.fd,
                buf: &mut self.tx,
                counters: &mut self.counters,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            fd: self.fd,
            buf: &mut self.tx,
            counters: &mut self.counters,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + 14;
        caps.max_burst_size = None;
        caps
    }
}
