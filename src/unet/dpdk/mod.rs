//! The `dpdk:EAL-ARGS` device: a DPDK port, through `libphoton_dpdk.so`
//! (`shim.c` beside this file), which build.rs compiles when pkg-config
//! finds libdpdk and which is loaded (`dlopen`) at the first `dpdk:` stack.
//!
//! The EAL starts once per process, with the first `dpdk:` stack's
//! arguments (split at spaces; DPDK cannot start it twice, later stacks'
//! arguments are not used); each stack takes the next port no other stack
//! holds, with one Rx and one Tx queue. Frames are received in bursts of
//! [`BURST`] and sent in batches flushed at the end of every round.
//!
//! Sleeping: DPDK ports are polled. Where the driver gives the queue an Rx
//! interrupt fd (the TAP PMD does: the queue's own tap fd), the loop sleeps
//! on it in the engine like on a TAP device, arming the interrupt first
//! (`rte_eth_dev_rx_intr_enable`; the TAP PMD needs none). An interrupt
//! eventfd (VFIO, UIO drivers) is read after each wake-up to clear it; a
//! character device (the TAP PMD's queue) is left to the driver's reads.
//! An fd that keeps waking the loop without any frame arriving before the
//! next sleep is given up after [`SPURIOUS_LIMIT`] such wake-ups, with a
//! log line; without an fd the loop naps in short timed sleeps.

use core::ffi::{c_char, c_int, c_void};
use std::ffi::CString;
use std::sync::OnceLock;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use super::tap::DeviceCounters;
use crate::errno::Errno;

/// Frames per receive burst and per transmit batch.
const BURST: usize = 32;
/// Largest frame copied out of a chained (multi-segment) mbuf.
const SCRATCH: usize = 9216;
/// Wake-ups on the interrupt fd without a frame before it is given up.
const SPURIOUS_LIMIT: u32 = 16;

/// `struct unet_dpdk_port` of shim.c.
#[repr(C)]
struct Port {
    port: u16,
    mtu: u16,
    mac: [u8; 6],
    intr_fd: c_int,
    pool: *mut c_void,
}

type Mbuf = *mut c_void;

type EalInit = unsafe extern "C" fn(c_int, *mut *mut c_char, *mut c_char, usize) -> c_int;
type Open = unsafe extern "C" fn(*mut Port, *mut c_char, usize) -> c_int;
type Close = unsafe extern "C" fn(*mut Port);
type Burst = unsafe extern "C" fn(u16, *mut Mbuf, u16) -> u16;
type Frame = unsafe extern "C" fn(Mbuf, *mut c_void, u32, *mut u32) -> *const u8;
type Alloc = unsafe extern "C" fn(*mut c_void, u16, *mut *mut u8) -> Mbuf;
type Free = unsafe extern "C" fn(*mut Mbuf, u16);
type Intr = unsafe extern "C" fn(u16, c_int) -> c_int;

/// The shim's functions.
struct Lib {
    eal_init: EalInit,
    open: Open,
    close: Close,
    rx: Burst,
    tx: Burst,
    frame: Frame,
    alloc: Alloc,
    free: Free,
    intr: Intr,
}

/// Where build.rs put the shim (the last place looked in).
const BUILT_AT: &str = env!("PHOTON_DPDK_SHIM");
const SHIM: &str = "libphoton_dpdk.so";

static LIB: OnceLock<Result<Lib, String>> = OnceLock::new();

/// Loads the shim: beside the object holding libphoton (libphoton.so, or
/// a program linking it) or one directory up, then by name (the loader's
/// search path), then where this build put it.
fn load() -> Result<Lib, String> {
    let mut places = Vec::new();
    // SAFETY: an all-zero Dl_info is a valid value.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: dladdr on an address inside this object fills `info`.
    if unsafe { libc::dladdr(load as *const c_void, &mut info) } != 0 && !info.dli_fname.is_null() {
        // SAFETY: dladdr gives a NUL-terminated path.
        let me = unsafe { core::ffi::CStr::from_ptr(info.dli_fname) }
            .to_string_lossy()
            .into_owned();
        if let Some(dir) = std::path::Path::new(&me).parent() {
            places.push(dir.join(SHIM));
            if let Some(up) = dir.parent() {
                places.push(up.join(SHIM));
            }
        }
    }
    places.push(SHIM.into());
    places.push(BUILT_AT.into());
    let mut why = String::new();
    for p in places {
        let Ok(c) = CString::new(p.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        // A bare name goes through the loader's search; a path with a
        // slash that does not exist is skipped quietly.
        if c.as_bytes().contains(&b'/') && !p.exists() {
            continue;
        }
        // SAFETY: a NUL-terminated path.
        let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if h.is_null() {
            // SAFETY: dlerror takes no argument.
            let e = unsafe { libc::dlerror() };
            if !e.is_null() {
                // SAFETY: dlerror's message is NUL-terminated.
                why = unsafe { core::ffi::CStr::from_ptr(e) }.to_string_lossy().into_owned();
            }
            continue;
        }
        let sym = |name: &core::ffi::CStr| -> Result<*mut c_void, String> {
            // SAFETY: a live handle and a NUL-terminated name.
            let f = unsafe { libc::dlsym(h, name.as_ptr()) };
            if f.is_null() {
                Err(format!("{}: no {}", p.display(), name.to_string_lossy()))
            } else {
                Ok(f)
            }
        };
        // SAFETY: each symbol is the shim's function of this signature.
        unsafe {
            return Ok(Lib {
                eal_init: core::mem::transmute::<*mut c_void, EalInit>(sym(c"unet_dpdk_eal_init")?),
                open: core::mem::transmute::<*mut c_void, Open>(sym(c"unet_dpdk_open")?),
                close: core::mem::transmute::<*mut c_void, Close>(sym(c"unet_dpdk_close")?),
                rx: core::mem::transmute::<*mut c_void, Burst>(sym(c"unet_dpdk_rx")?),
                tx: core::mem::transmute::<*mut c_void, Burst>(sym(c"unet_dpdk_tx")?),
                frame: core::mem::transmute::<*mut c_void, Frame>(sym(c"unet_dpdk_frame")?),
                alloc: core::mem::transmute::<*mut c_void, Alloc>(sym(c"unet_dpdk_alloc")?),
                free: core::mem::transmute::<*mut c_void, Free>(sym(c"unet_dpdk_free")?),
                intr: core::mem::transmute::<*mut c_void, Intr>(sym(c"unet_dpdk_intr")?),
            });
        }
    }
    Err(if why.is_empty() {
        format!("{SHIM} not found")
    } else {
        why
    })
}

fn message(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The receiving half: the current burst.
struct RxSide {
    bufs: [Mbuf; BURST],
    next: usize,
    len: usize,
    scratch: Box<[u8; SCRATCH]>,
}

/// The sending half: the batch not yet handed to the port.
struct TxSide {
    lib: &'static Lib,
    port: u16,
    pool: *mut c_void,
    bufs: [Mbuf; BURST],
    len: usize,
    /// Where a frame goes when no mbuf is left (it is then dropped).
    spare: Box<[u8; SCRATCH]>,
    counters: DeviceCounters,
}

/// An open DPDK port.
pub(crate) struct Dpdk {
    lib: &'static Lib,
    port: Port,
    rx: RxSide,
    tx: TxSide,
    intr_fd: Option<i32>,
    /// The fd is an eventfd to read after each wake-up.
    intr_read: bool,
    armed: bool,
    check_spurious: bool,
    spurious: u32,
    /// Frames received and empty polls (the sending half counts the rest).
    rx_counters: DeviceCounters,
}

impl Dpdk {
    /// Starts the EAL (first time) with `args` and takes a free port.
    /// ENODEV with a log line when the shim is missing, the EAL does not
    /// start or no port is free.
    pub(crate) fn open(args: &str) -> Result<Dpdk, Errno> {
        let lib = match LIB.get_or_init(load) {
            Ok(l) => l,
            Err(e) => {
                log::warn!("photon: netstack dpdk: cannot load {SHIM}: {e}");
                return Err(Errno(libc::ENODEV));
            }
        };
        let mut argv_owned = vec![CString::new("photon").unwrap()];
        for a in args.split_ascii_whitespace() {
            argv_owned.push(CString::new(a).map_err(|_| Errno::EINVAL)?);
        }
        let mut argv: Vec<*mut c_char> = argv_owned.iter().map(|a| a.as_ptr().cast_mut()).collect();
        argv.push(core::ptr::null_mut());
        let mut err = [0u8; 256];
        // SAFETY: argc/argv describe live strings (the EAL may reorder the
        // pointers, not the bytes); err is ours.
        let rc = unsafe {
            (lib.eal_init)(
                (argv.len() - 1) as c_int,
                argv.as_mut_ptr(),
                err.as_mut_ptr().cast(),
                err.len(),
            )
        };
        if rc < 0 {
            log::warn!("photon: netstack dpdk: the EAL did not start ({})", message(&err));
            return Err(Errno(libc::ENODEV));
        }
        let mut port = Port {
            port: 0,
            mtu: 0,
            mac: [0; 6],
            intr_fd: -1,
            pool: core::ptr::null_mut(),
        };
        // SAFETY: the shim fills our Port and err.
        let rc = unsafe { (lib.open)(&mut port, err.as_mut_ptr().cast(), err.len()) };
        if rc < 0 {
            log::warn!("photon: netstack dpdk: cannot open a port ({})", message(&err));
            return Err(Errno(libc::ENODEV));
        }
        let intr_fd = (port.intr_fd >= 0).then_some(port.intr_fd);
        // SAFETY: an all-zero stat is a valid value.
        let mut sb: libc::stat = unsafe { core::mem::zeroed() };
        let intr_read = intr_fd.is_some_and(|fd| {
            // SAFETY: fstat into a struct we own.
            (unsafe { libc::fstat(fd, &mut sb) }) == 0 && sb.st_mode & libc::S_IFMT != libc::S_IFCHR
        });
        Ok(Dpdk {
            lib,
            rx: RxSide {
                bufs: [core::ptr::null_mut(); BURST],
                next: 0,
                len: 0,
                scratch: Box::new([0; SCRATCH]),
            },
            tx: TxSide {
                lib,
                port: port.port,
                pool: port.pool,
                bufs: [core::ptr::null_mut(); BURST],
                len: 0,
                spare: Box::new([0; SCRATCH]),
                counters: DeviceCounters::default(),
            },
            port,
            intr_fd,
            intr_read,
            armed: false,
            check_spurious: false,
            spurious: 0,
            rx_counters: DeviceCounters::default(),
        })
    }

    pub(crate) fn mac(&self) -> [u8; 6] {
        self.port.mac
    }

    pub(crate) fn sleep_fd(&self) -> Option<i32> {
        self.intr_fd
    }

    /// Arms the Rx interrupt, then looks once more: frames that came in
    /// before it was armed would raise nothing.
    pub(crate) fn prepare_sleep(&mut self) -> bool {
        if core::mem::take(&mut self.check_spurious) {
            // Woken by the fd, and no frame since.
            self.spurious += 1;
            if self.spurious == SPURIOUS_LIMIT {
                log::warn!(
                    "photon: netstack dpdk: port {}'s Rx interrupt fd keeps waking without frames; polling instead",
                    self.port.port
                );
                self.intr_fd = None;
            }
        }
        if self.intr_fd.is_some() && !self.armed {
            // SAFETY: our port.
            unsafe { (self.lib.intr)(self.port.port, 1) };
            self.armed = true;
        }
        self.fill() == 0
    }

    pub(crate) fn woke(&mut self, fd_ready: bool) {
        if self.armed {
            // SAFETY: our port.
            unsafe { (self.lib.intr)(self.port.port, 0) };
            self.armed = false;
        }
        if fd_ready
            && self.intr_read
            && let Some(fd) = self.intr_fd
        {
            let mut v = 0u64;
            // SAFETY: an 8-byte read into our u64; the fd was reported
            // readable, so the eventfd's count is not zero (no blocking).
            unsafe { libc::read(fd, (&raw mut v).cast(), 8) };
        }
        self.check_spurious = fd_ready;
    }

    /// Takes a burst when the current one is used up; frames now held.
    fn fill(&mut self) -> usize {
        if self.rx.next == self.rx.len {
            // SAFETY: room for BURST mbufs.
            let n = unsafe { (self.lib.rx)(self.port.port, self.rx.bufs.as_mut_ptr(), BURST as u16) };
            self.rx.next = 0;
            self.rx.len = n as usize;
        }
        self.rx.len - self.rx.next
    }

    /// Hands the batch to the port.
    pub(crate) fn flush(&mut self) {
        self.tx.flush();
    }

    /// Frames and polls, as the TAP device counts them.
    pub(crate) fn counters(&self) -> DeviceCounters {
        DeviceCounters {
            tx_frames: self.tx.counters.tx_frames,
            tx_dropped: self.tx.counters.tx_dropped,
            ..self.rx_counters
        }
    }
}

impl TxSide {
    fn flush(&mut self) {
        let mut sent = 0;
        // A full queue gets a few more tries, then the rest is dropped
        // (TCP retransmits), as a NIC's full ring would.
        for _ in 0..4 {
            if sent == self.len {
                break;
            }
            // SAFETY: bufs[sent..len] are ours; the port takes what it sends.
            sent +=
                unsafe { (self.lib.tx)(self.port, self.bufs[sent..].as_mut_ptr(), (self.len - sent) as u16) } as usize;
        }
        self.counters.tx_frames += sent as u64;
        if sent < self.len {
            self.counters.tx_dropped += (self.len - sent) as u64;
            // SAFETY: unsent mbufs are still ours.
            unsafe { (self.lib.free)(self.bufs[sent..].as_mut_ptr(), (self.len - sent) as u16) };
        }
        self.len = 0;
    }
}

impl Drop for Dpdk {
    fn drop(&mut self) {
        self.tx.flush();
        if self.rx.next < self.rx.len {
            let n = (self.rx.len - self.rx.next) as u16;
            // SAFETY: the unread rest of the burst is ours.
            unsafe { (self.lib.free)(self.rx.bufs[self.rx.next..].as_mut_ptr(), n) };
        }
        // SAFETY: our port, closed once.
        unsafe { (self.lib.close)(&mut self.port) };
    }
}

/// One received frame (its mbuf, freed after use).
pub(crate) struct RxToken<'a> {
    lib: &'static Lib,
    m: Mbuf,
    scratch: &'a mut [u8; SCRATCH],
}

/// Room for one frame in the batch.
pub(crate) struct TxToken<'a> {
    tx: &'a mut TxSide,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let mut len = 0u32;
        // SAFETY: our mbuf; the scratch buffer holds SCRATCH bytes.
        let p = unsafe { (self.lib.frame)(self.m, self.scratch.as_mut_ptr().cast(), SCRATCH as u32, &mut len) };
        let frame: &[u8] = if p.is_null() {
            &[] // chained and larger than SCRATCH: dropped as malformed
        } else {
            // SAFETY: the shim gives len bytes at p, alive until the free.
            unsafe { core::slice::from_raw_parts(p, len as usize) }
        };
        let r = f(frame);
        let mut m = self.m;
        // SAFETY: our mbuf, freed once (the token is consumed).
        unsafe { (self.lib.free)(&mut m, 1) };
        core::mem::forget(self);
        r
    }
}

impl Drop for RxToken<'_> {
    fn drop(&mut self) {
        // Dropped unconsumed: the mbuf is still ours.
        // SAFETY: freed once.
        unsafe { (self.lib.free)(&mut self.m, 1) };
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let tx = self.tx;
        let len = len.min(SCRATCH);
        let mut data: *mut u8 = core::ptr::null_mut();
        // SAFETY: our pool; the shim gives len bytes at data.
        let m = unsafe { (tx.lib.alloc)(tx.pool, len as u16, &mut data) };
        if m.is_null() {
            tx.counters.tx_dropped += 1;
            return f(&mut tx.spare[..len]);
        }
        // SAFETY: len bytes of the new mbuf's data room.
        let r = f(unsafe { core::slice::from_raw_parts_mut(data, len) });
        tx.bufs[tx.len] = m;
        tx.len += 1;
        if tx.len == BURST {
            tx.flush();
        }
        r
    }
}

impl Device for Dpdk {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let have = self.fill();
        if have > 0 {
            self.check_spurious = false;
            self.spurious = 0;
        }
        if have == 0 {
            self.rx_counters.rx_empty += 1;
            return None;
        }
        self.rx_counters.rx_frames += 1;
        let m = self.rx.bufs[self.rx.next];
        self.rx.next += 1;
        Some((
            RxToken {
                lib: self.lib,
                m,
                scratch: &mut self.rx.scratch,
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
        caps.max_transmission_unit = usize::from(self.port.mtu) + 14;
        caps.max_burst_size = None;
        caps
    }
}
