//! The `xdp:IFNAME:QUEUE` device: an AF_XDP socket on one queue of a
//! network interface, fed by a small XDP program that redirects every
//! frame of that queue to it.
//!
//! Everything goes through plain system calls, no libbpf: the program is
//! five hand-assembled BPF instructions (read the frame's Rx queue, look it
//! up in an XSKMAP, `bpf_redirect_map`, passing the frame to the kernel
//! when no socket is there), loaded with `bpf(BPF_PROG_LOAD)` and attached
//! with a BPF link (`BPF_LINK_CREATE`, kernel 5.9+), so it is detached when
//! the stack closes the link, even if the process dies. It is attached in
//! driver mode where the driver has XDP, in generic (SKB) mode otherwise
//! (veth, most virtual devices: a copy per frame, no gain over TAP, but the
//! same code a NIC with XDP runs).
//!
//! The interface belongs to the stack: all of its frames on that queue go
//! to the userspace stack (give the kernel side of it no address). The
//! stack takes the interface's MAC address and MTU (at most 1500).
//!
//! UMEM: 4096 frames of 2048 bytes, the first half lent to the kernel for
//! receiving (fill ring), the second half for sending; fill, completion,
//! Rx and Tx rings of 2048 entries. The polling loop sleeps in the engine
//! on the socket's fd (readable: the Rx ring has frames). Sent frames are
//! pushed with `sendto` at the end of every round (copy mode sends at most
//! 32 per call; it is called until the ring is drained or refuses).

use core::sync::atomic::{AtomicU32, Ordering::*};

use smoltcp::phy::{self, Checksum, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use super::tap::DeviceCounters;
use crate::errno::Errno;

const FRAME_SIZE: u32 = 2048;
const FRAMES: u32 = 4096;
const RING: u32 = 2048;
/// Rx frames: addresses [0, RX_FRAMES * FRAME_SIZE); Tx frames above.
const RX_FRAMES: u32 = FRAMES / 2;

const SOL_XDP: i32 = 283;
const XDP_MMAP_OFFSETS: i32 = 1;
const XDP_RX_RING: i32 = 2;
const XDP_TX_RING: i32 = 3;
const XDP_UMEM_REG: i32 = 4;
const XDP_UMEM_FILL_RING: i32 = 5;
const XDP_UMEM_COMPLETION_RING: i32 = 6;
const XDP_PGOFF_RX_RING: i64 = 0;
const XDP_PGOFF_TX_RING: i64 = 0x8000_0000;
const XDP_UMEM_PGOFF_FILL_RING: i64 = 0x1_0000_0000;
const XDP_UMEM_PGOFF_COMPLETION_RING: i64 = 0x1_8000_0000;

const BPF_MAP_CREATE: i32 = 0;
const BPF_MAP_UPDATE_ELEM: i32 = 2;
const BPF_PROG_LOAD: i32 = 5;
const BPF_LINK_CREATE: i32 = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct RingOffset {
    producer: u64,
    consumer: u64,
    desc: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct MmapOffsets {
    rx: RingOffset,
    tx: RingOffset,
    fr: RingOffset,
    cr: RingOffset,
}

#[repr(C)]
struct UmemReg {
    addr: u64,
    len: u64,
    chunk_size: u32,
    headroom: u32,
    flags: u32,
    tx_metadata_len: u32,
}

#[repr(C)]
struct SockaddrXdp {
    family: u16,
    flags: u16,
    ifindex: u32,
    queue_id: u32,
    shared_umem_fd: u32,
}

/// An Rx or Tx descriptor.
#[repr(C)]
#[derive(Clone, Copy)]
struct Desc {
    addr: u64,
    len: u32,
    options: u32,
}

/// One mapped ring: its shared producer and consumer, its entries.
struct Ring<T> {
    map: *mut u8,
    map_len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    desc: *mut T,
    /// Our copy of the index we advance (producer for fill/Tx, consumer
    /// for Rx/completion).
    local: u32,
}

impl<T> Ring<T> {
    /// Maps ring `pgoff` of `fd` with `off`'s layout.
    fn map(fd: i32, off: &RingOffset, pgoff: i64) -> Result<Ring<T>, Errno> {
        let map_len = off.desc as usize + RING as usize * core::mem::size_of::<T>();
        // SAFETY: a shared mapping of the socket's ring.
        let map = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(Errno::last_os_error());
        }
        let map = map.cast::<u8>();
        // SAFETY: offsets inside the mapping, as the kernel gave them.
        unsafe {
            Ok(Ring {
                map,
                map_len,
                producer: map.add(off.producer as usize).cast(),
                consumer: map.add(off.consumer as usize).cast(),
                desc: map.add(off.desc as usize).cast(),
                local: 0,
            })
        }
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: inside the live mapping, 4-byte aligned.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { &*self.consumer }
    }

    fn slot(&self, i: u32) -> *mut T {
        // SAFETY: masked into the ring.
        unsafe { self.desc.add((i & (RING - 1)) as usize) }
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // SAFETY: our mapping, unmapped once.
        unsafe { libc::munmap(self.map.cast(), self.map_len) };
    }
}

fn bpf<A>(cmd: i32, attr: &mut A) -> Result<i32, Errno> {
    // SAFETY: attr is a bpf_attr prefix of its own size.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut A, core::mem::size_of::<A>()) };
    if r < 0 {
        Err(Errno::last_os_error())
    } else {
        Ok(r as i32)
    }
}

/// An fd closed on drop.
struct Fd(i32);

impl Drop for Fd {
    fn drop(&mut self) {
        if self.0 >= 0 {
            // SAFETY: our fd, closed once.
            unsafe { crate::sys::close(self.0) };
        }
    }
}

/// The sending half (its own borrow, beside a received frame's).
struct TxSide {
    fd: i32,
    umem: *mut u8,
    tx: Ring<Desc>,
    cr: Ring<u64>,
    /// Tx frames not in flight.
    free: Vec<u64>,
    /// Descriptors queued since the last flush.
    queued: u32,
    counters: DeviceCounters,
}

/// An AF_XDP socket on one queue of an interface.
/// Fields drop in order: the XDP link first (the program detaches), then
/// the socket, the rings, and last the UMEM.
pub(crate) struct Xdp {
    _link: Fd,
    sock: Fd,
    rx: Ring<Desc>,
    fr: Ring<u64>,
    tx: TxSide,
    mtu: usize,
    mac: [u8; 6],
    rx_counters: DeviceCounters,
    umem: Umem,
}

/// The packet buffer shared with the kernel.
struct Umem {
    ptr: *mut u8,
    len: usize,
}

impl Drop for Umem {
    fn drop(&mut self) {
        // SAFETY: our mapping, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// The five instructions of the redirect program.
fn program(map_fd: i32) -> [u64; 6] {
    // One BPF instruction: opcode, dst and src registers, offset, imm.
    let insn = |op: u8, dst: u8, src: u8, off: i16, imm: i32| -> u64 {
        u64::from(op) | u64::from(dst | (src << 4)) << 8 | u64::from(off as u16) << 16 | u64::from(imm as u32) << 32
    };
    [
        insn(0x61, 2, 1, 16, 0),     // r2 = *(u32 *)(r1 + 16): xdp_md.rx_queue_index
        insn(0x18, 1, 1, 0, map_fd), // r1 = the XSKMAP (ld_imm64, BPF_PSEUDO_MAP_FD)
        insn(0, 0, 0, 0, 0),         //      (its upper half)
        insn(0xb7, 3, 0, 0, 2),      // r3 = XDP_PASS: the action when no socket is in the map
        insn(0x85, 0, 0, 0, 51),     // call bpf_redirect_map(r1, r2, r3)
        insn(0x95, 0, 0, 0, 0),      // exit (r0: the helper's result)
    ]
}

/// `struct ifreq` for SIOCGIFMTU / SIOCGIFHWADDR.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: [u8; 24],
}

fn if_query(name: &str, req: libc::c_ulong) -> Option<[u8; 24]> {
    let s = Fd(crate::errno::syscall!(socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)).ok()?);
    let mut r = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: [0; 24],
    };
    for (d, c) in r.name.iter_mut().zip(name.bytes()) {
        *d = c as libc::c_char;
    }
    // SAFETY: the ioctl fills an ifreq we own.
    (unsafe { libc::ioctl(s.0, req, &raw mut r) } == 0).then_some(r.data)
}

impl Xdp {
    /// Opens `IFNAME:QUEUE`: ENODEV (no such interface or queue, or the
    /// kernel refuses AF_XDP or the program; with a log line), EPERM
    /// (no CAP_NET_ADMIN / CAP_BPF), EINVAL (malformed).
    pub(crate) fn open(arg: &str) -> Result<Xdp, Errno> {
        // IFNAME:QUEUE, optionally :skb (generic mode) or :drv (driver mode).
        let (rest, mode) = match arg.rsplit_once(':') {
            Some((r, "skb")) => (r, Some(XDP_FLAGS_SKB_MODE)),
            Some((r, "drv")) => (r, Some(XDP_FLAGS_DRV_MODE)),
            _ => (arg, None),
        };
        let (name, queue) = rest.rsplit_once(':').ok_or(Errno::EINVAL)?;
        let queue: u32 = queue.parse().map_err(|_| Errno::EINVAL)?;
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.bytes().any(|b| b == 0 || b == b'/') {
            return Err(Errno::EINVAL);
        }
        let cname = std::ffi::CString::new(name).map_err(|_| Errno::EINVAL)?;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(Errno(libc::ENODEV));
        }
        let refuse = |what: &str, e: Errno| {
            log::warn!("photon: netstack xdp:{arg}: {what}: {e}");
            if e == Errno::EPERM || e == Errno(libc::EACCES) {
                Errno::EPERM
            } else {
                Errno(libc::ENODEV)
            }
        };
        let sock = Fd(
            crate::errno::syscall!(socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0))
                .map_err(|e| refuse("AF_XDP socket", e))?,
        );
        let umem_len = (FRAMES * FRAME_SIZE) as usize;
        // SAFETY: a fresh anonymous mapping.
        let umem = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                umem_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if umem == libc::MAP_FAILED {
            return Err(Errno::ENOMEM);
        }
        let umem = umem.cast::<u8>();
        // Unmapped if open fails from here on, or with the device.
        let region = Umem {
            ptr: umem,
            len: umem_len,
        };
        let setopt = |name: i32, val: *const libc::c_void, len: usize, what: &str| -> Result<(), Errno> {
            // SAFETY: val points to len bytes.
            let r = unsafe { libc::setsockopt(sock.0, SOL_XDP, name, val, len as libc::socklen_t) };
            if r < 0 {
                Err(refuse(what, Errno::last_os_error()))
            } else {
                Ok(())
            }
        };
        let reg = UmemReg {
            addr: umem as u64,
            len: umem_len as u64,
            chunk_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setopt(
            XDP_UMEM_REG,
            (&raw const reg).cast(),
            core::mem::size_of::<UmemReg>(),
            "XDP_UMEM_REG",
        )?;
        let n = RING;
        for (opt, what) in [
            (XDP_UMEM_FILL_RING, "fill ring"),
            (XDP_UMEM_COMPLETION_RING, "completion ring"),
            (XDP_RX_RING, "Rx ring"),
            (XDP_TX_RING, "Tx ring"),
        ] {
            setopt(opt, (&raw const n).cast(), 4, what)?;
        }
        let mut off = MmapOffsets::default();
        let mut len = core::mem::size_of::<MmapOffsets>() as libc::socklen_t;
        // SAFETY: the kernel fills our offsets.
        if unsafe { libc::getsockopt(sock.0, SOL_XDP, XDP_MMAP_OFFSETS, (&raw mut off).cast(), &mut len) } < 0 {
            return Err(refuse("XDP_MMAP_OFFSETS", Errno::last_os_error()));
        }
        let rx = Ring::<Desc>::map(sock.0, &off.rx, XDP_PGOFF_RX_RING).map_err(|e| refuse("Rx ring", e))?;
        let tx = Ring::<Desc>::map(sock.0, &off.tx, XDP_PGOFF_TX_RING).map_err(|e| refuse("Tx ring", e))?;
        let mut fr = Ring::<u64>::map(sock.0, &off.fr, XDP_UMEM_PGOFF_FILL_RING).map_err(|e| refuse("fill ring", e))?;
        let cr = Ring::<u64>::map(sock.0, &off.cr, XDP_UMEM_PGOFF_COMPLETION_RING)
            .map_err(|e| refuse("completion ring", e))?;
        // Lend the Rx half to the kernel.
        for i in 0..RX_FRAMES {
            // SAFETY: a slot of the fill ring, ours until published.
            unsafe { *fr.slot(i) = u64::from(i * FRAME_SIZE) };
        }
        fr.local = RX_FRAMES;
        fr.producer().store(RX_FRAMES, Release);
        let sxdp = SockaddrXdp {
            family: libc::AF_XDP as u16,
            flags: 0,
            ifindex,
            queue_id: queue,
            shared_umem_fd: 0,
        };
        // EBUSY: the queue still has the socket of a stack that just closed
        // (the kernel releases it in deferred work); retried for a second.
        let mut tries = 0;
        loop {
            let len = core::mem::size_of::<SockaddrXdp>() as u32;
            // SAFETY: a sockaddr_xdp of its size.
            if unsafe { libc::bind(sock.0, (&raw const sxdp).cast(), len) } == 0 {
                break;
            }
            let e = Errno::last_os_error();
            tries += 1;
            if e != Errno(libc::EBUSY) || tries > 100 {
                return Err(refuse("bind (interface queue)", e));
            }
            let _ = crate::sched::sleep_us(10_000);
        }
        // The XSKMAP: queue -> this socket.
        #[repr(C)]
        struct MapCreate {
            map_type: u32,
            key_size: u32,
            value_size: u32,
            max_entries: u32,
            map_flags: u32,
            _rest: [u32; 27],
        }
        let mut mc = MapCreate {
            map_type: BPF_MAP_TYPE_XSKMAP,
            key_size: 4,
            value_size: 4,
            max_entries: queue + 1,
            map_flags: 0,
            _rest: [0; 27],
        };
        let map = Fd(bpf(BPF_MAP_CREATE, &mut mc).map_err(|e| refuse("bpf(BPF_MAP_CREATE XSKMAP)", e))?);
        #[repr(C)]
        struct MapUpdate {
            map_fd: u32,
            _pad: u32,
            key: u64,
            value: u64,
            flags: u64,
        }
        let (key, value) = (queue, sock.0 as u32);
        let mut mu = MapUpdate {
            map_fd: map.0 as u32,
            _pad: 0,
            key: (&raw const key) as u64,
            value: (&raw const value) as u64,
            flags: 0,
        };
        bpf(BPF_MAP_UPDATE_ELEM, &mut mu).map_err(|e| refuse("bpf(BPF_MAP_UPDATE_ELEM)", e))?;
        let insns = program(map.0);
        #[repr(C)]
        struct ProgLoad {
            prog_type: u32,
            insn_cnt: u32,
            insns: u64,
            license: u64,
            log_level: u32,
            log_size: u32,
            log_buf: u64,
            kern_version: u32,
            prog_flags: u32,
            prog_name: [u8; 16],
            prog_ifindex: u32,
            expected_attach_type: u32,
        }
        let mut pname = [0u8; 16];
        pname[..11].copy_from_slice(b"photon_unet");
        let mut pl = ProgLoad {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: c"Apache-2.0".as_ptr() as u64,
            log_level: 0,
            log_size: 0,
            log_buf: 0,
            kern_version: 0,
            prog_flags: 0,
            prog_name: pname,
            prog_ifindex: 0,
            expected_attach_type: BPF_XDP,
        };
        let prog = Fd(bpf(BPF_PROG_LOAD, &mut pl).map_err(|e| refuse("bpf(BPF_PROG_LOAD XDP)", e))?);
        #[repr(C)]
        struct LinkCreate {
            prog_fd: u32,
            target_ifindex: u32,
            attach_type: u32,
            flags: u32,
            _rest: [u64; 4],
        }
        let link_create = |flags: u32| {
            bpf(
                BPF_LINK_CREATE,
                &mut LinkCreate {
                    prog_fd: prog.0 as u32,
                    target_ifindex: ifindex,
                    attach_type: BPF_XDP,
                    flags,
                    _rest: [0; 4],
                },
            )
        };
        // Driver mode where the driver has it, else generic; or as asked.
        let (link, native) = match mode {
            Some(m) => (
                link_create(m).map_err(|e| refuse("bpf(BPF_LINK_CREATE XDP)", e))?,
                m == XDP_FLAGS_DRV_MODE,
            ),
            None => match link_create(XDP_FLAGS_DRV_MODE) {
                Ok(l) => (l, true),
                Err(_) => (
                    link_create(XDP_FLAGS_SKB_MODE)
                        .map_err(|e| refuse("bpf(BPF_LINK_CREATE XDP, driver and generic mode)", e))?,
                    false,
                ),
            },
        };
        log::info!(
            "photon: netstack xdp:{arg}: XDP program attached in {} mode",
            if native { "driver" } else { "generic (SKB)" }
        );
        let mtu = if_query(name, libc::SIOCGIFMTU)
            .map(|d| i32::from_ne_bytes([d[0], d[1], d[2], d[3]]) as usize)
            .unwrap_or(1500)
            .clamp(576, 1500);
        let mac = if_query(name, libc::SIOCGIFHWADDR)
            .map(|d| [d[2], d[3], d[4], d[5], d[6], d[7]])
            .unwrap_or([0x02, 0, 0, 0, 0, 1]);
        Ok(Xdp {
            tx: TxSide {
                fd: sock.0,
                umem,
                tx,
                cr,
                free: (RX_FRAMES..FRAMES).map(|i| u64::from(i * FRAME_SIZE)).collect(),
                queued: 0,
                counters: DeviceCounters::default(),
            },
            sock,
            _link: Fd(link),
            rx,
            fr,
            mtu,
            mac,
            rx_counters: DeviceCounters::default(),
            umem: region,
        })
    }

    pub(crate) fn fd(&self) -> i32 {
        self.sock.0
    }

    pub(crate) fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// False when the Rx ring has frames (do not sleep).
    pub(crate) fn prepare_sleep(&mut self) -> bool {
        self.rx.producer().load(Acquire) == self.rx.local
    }

    /// Publishes queued frames and has the kernel send them.
    pub(crate) fn flush(&mut self) {
        self.tx.flush();
    }

    pub(crate) fn counters(&self) -> DeviceCounters {
        DeviceCounters {
            tx_frames: self.tx.counters.tx_frames,
            tx_dropped: self.tx.counters.tx_dropped,
            ..self.rx_counters
        }
    }
}

impl TxSide {
    /// Takes back the frames the kernel finished sending.
    fn reclaim(&mut self) {
        let prod = self.cr.producer().load(Acquire);
        while self.cr.local != prod {
            // SAFETY: a published completion entry.
            self.free.push(unsafe { *self.cr.slot(self.cr.local) });
            self.cr.local = self.cr.local.wrapping_add(1);
        }
        self.cr.consumer().store(self.cr.local, Release);
    }

    fn flush(&mut self) {
        if self.queued == 0 {
            return;
        }
        self.tx.producer().store(self.tx.local, Release);
        self.counters.tx_frames += u64::from(self.queued);
        self.queued = 0;
        // Copy mode sends at most 32 frames per call.
        for _ in 0..(RING / 32) {
            if self.tx.consumer().load(Acquire) == self.tx.local {
                break;
            }
            // SAFETY: sendto with no data kicks the socket's Tx ring.
            let r = unsafe { libc::sendto(self.fd, core::ptr::null(), 0, libc::MSG_DONTWAIT, core::ptr::null(), 0) };
            if r < 0 {
                let e = Errno::last_os_error();
                if e != Errno::EAGAIN && e != Errno(libc::EBUSY) && e != Errno(libc::ENOBUFS) {
                    break;
                }
            }
        }
        self.reclaim();
    }
}

/// One received frame: returned to the fill ring after use.
pub(crate) struct RxToken<'a> {
    frame: &'a [u8],
    addr: u64,
    fr: &'a mut Ring<u64>,
}

/// Room for one frame in the Tx ring.
pub(crate) struct TxToken<'a> {
    tx: &'a mut TxSide,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let r = f(self.frame);
        // SAFETY: a fill-ring slot: the ring has room for all Rx frames.
        unsafe { *self.fr.slot(self.fr.local) = self.addr };
        self.fr.local = self.fr.local.wrapping_add(1);
        self.fr.producer().store(self.fr.local, Release);
        r
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let tx = self.tx;
        let len = len.min(FRAME_SIZE as usize);
        if tx.free.is_empty() {
            tx.reclaim();
        }
        let room = tx.tx.local.wrapping_sub(tx.tx.consumer().load(Acquire)) < RING;
        let Some(addr) = tx.free.pop().filter(|_| room) else {
            // Ring full or no frame free: dropped, as a NIC would.
            tx.counters.tx_dropped += 1;
            let mut spare = [0u8; FRAME_SIZE as usize];
            return f(&mut spare[..len]);
        };
        // SAFETY: a Tx frame of the UMEM, ours until its completion.
        let buf = unsafe { core::slice::from_raw_parts_mut(tx.umem.add(addr as usize), len) };
        let r = f(buf);
        // SAFETY: a Tx-ring slot we own (checked room above).
        unsafe {
            *tx.tx.slot(tx.tx.local) = Desc {
                addr,
                len: len as u32,
                options: 0,
            }
        };
        tx.tx.local = tx.tx.local.wrapping_add(1);
        tx.queued += 1;
        if tx.queued >= 64 {
            tx.flush();
        }
        r
    }
}

impl Device for Xdp {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let prod = self.rx.producer().load(Acquire);
        if prod == self.rx.local {
            self.rx_counters.rx_empty += 1;
            return None;
        }
        // SAFETY: a published Rx descriptor.
        let d = unsafe { *self.rx.slot(self.rx.local) };
        self.rx.local = self.rx.local.wrapping_add(1);
        self.rx.consumer().store(self.rx.local, Release);
        self.rx_counters.rx_frames += 1;
        let len = (d.len as usize).min(FRAME_SIZE as usize);
        // The frame's chunk (aligned mode: the chunk's base is the address
        // rounded down; the data starts at the address itself).
        let base = d.addr & !u64::from(FRAME_SIZE - 1);
        // SAFETY: the kernel wrote len bytes at addr inside our UMEM; the
        // chunk is ours until it goes back to the fill ring.
        let frame = unsafe { core::slice::from_raw_parts(self.umem.ptr.add(d.addr as usize), len) };
        Some((
            RxToken {
                frame,
                addr: base,
                fr: &mut self.fr,
            },
            TxToken { tx: &mut self.tx },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        Some(TxToken { tx: &mut self.tx })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + 14;
        caps.max_burst_size = None;
        // TCP and UDP checksums are not verified on receipt: a frame sent
        // by the local kernel (veth) carries a partial checksum (offloaded,
        // never filled in), and a NIC has verified a wire frame's already
        // (XDP does not say which). They are computed on sending.
        caps.checksum.tcp = Checksum::Tx;
        caps.checksum.udp = Checksum::Tx;
        caps
    }
}
