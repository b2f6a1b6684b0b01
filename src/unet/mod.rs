//! Sockets on a userspace TCP/IP stack (smoltcp) driven by a vcpu: kernel
//! bypass for servers written as plain blocking photon code.
//!
//! A stack (`photon_netstack_new`) owns a device (a TAP interface here;
//! see [`tap`]), one IPv4 address and an optional gateway, and belongs to
//! the vcpu that created it: its polling loop is a photon thread there
//! ([`stack`]), and its sockets are used from photon threads of that vcpu
//! (elsewhere: `EXDEV`).
//!
//! Its descriptors are plain `int`s in a range the kernel never hands out
//! ([`FD_BASE`] and up: above any RLIMIT_NOFILE a process can be given,
//! whose ceiling, fs.nr_open, defaults to 2^20), so the fd layer
//! (`crate::net`) tells them apart with one comparison and sends them here
//! instead of to the kernel. The encoding: `FD_BASE + (stack slot << 20) +
//! index`, the index the lowest free one, as the kernel numbers fds.

mod device;
#[cfg(photon_dpdk)]
mod dpdk;
mod entry;
mod io;
mod socket;
mod stack;
mod tap;
mod xdp;

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering::*};
use std::sync::Mutex;

use smoltcp::wire::{IpAddress, Ipv4Address, Ipv6Address};

pub(crate) use io::*;
pub(crate) use socket::*;
use stack::Netstack;

use crate::errno::Errno;
use crate::sched;

/// The first descriptor of the userspace stacks.
pub const FD_BASE: i32 = 1 << 30;
const INDEX_BITS: u32 = 20;
/// Descriptors per stack.
pub(crate) const MAX_SOCKETS: usize = 1 << INDEX_BITS;
/// Stacks alive at once.
const MAX_STACKS: usize = 512;

static STACKS: [AtomicPtr<Netstack>; MAX_STACKS] = [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_STACKS];
/// The owner vcpu's id per slot (0: free). Read before the stack itself,
/// so another vcpu never dereferences a stack its owner may free.
static OWNERS: [AtomicU32; MAX_STACKS] = [const { AtomicU32::new(0) }; MAX_STACKS];
/// Bumped at every free, so a stale `photon_netstack*` is detected.
static GENS: [AtomicU32; MAX_STACKS] = [const { AtomicU32::new(0) }; MAX_STACKS];
/// Set when the stack's polling loop ended (its vcpu finished).
static STOPPED: [AtomicBool; MAX_STACKS] = [const { AtomicBool::new(false) }; MAX_STACKS];
static ALLOC: Mutex<()> = Mutex::new(());

/// True if `fd` is a userspace-stack descriptor.
#[inline(always)]
pub fn is_unet(fd: i32) -> bool {
    fd >= FD_BASE
}

fn encode(slot: u32, idx: u32) -> i32 {
    FD_BASE + ((slot << INDEX_BITS) | idx) as i32
}

fn mark_stopped(slot: u32) {
    STOPPED[slot as usize].store(true, Release);
}

/// A stack in use by a call: counted, so `photon_netstack_free` refuses
/// (`EBUSY`) while a photon thread is still inside one of its calls.
pub(crate) struct StackRef {
    st: *const Netstack,
}

impl core::ops::Deref for StackRef {
    type Target = Netstack;
    fn deref(&self) -> &Netstack {
        // SAFETY: a counted use keeps the stack alive (free refuses).
        unsafe { &*self.st }
    }
}

impl Drop for StackRef {
    fn drop(&mut self) {
        let n = &self.in_calls;
        n.set(n.get() - 1);
    }
}

fn owned_stack(slot: usize) -> Result<StackRef, Errno> {
    owned_stack_in(slot, false)
}

/// As [`owned_stack`]; with `ended_too`, also a stack whose loop has ended
/// (so descriptors can still be closed during and after `photon_fini`).
fn owned_stack_in(slot: usize, ended_too: bool) -> Result<StackRef, Errno> {
    let owner = OWNERS.get(slot).ok_or(Errno(libc::EBADF))?.load(Acquire);
    if owner == 0 {
        return Err(Errno(libc::EBADF));
    }
    let me = sched::current_id();
    if me == 0 {
        return Err(Errno::EPERM);
    }
    if me != owner {
        return Err(Errno(libc::EXDEV));
    }
    let p = STACKS[slot].load(Acquire);
    if p.is_null() {
        return Err(Errno(libc::EBADF));
    }
    // SAFETY: published and owned by this vcpu, which alone frees it.
    let st = unsafe { &*p };
    if st.done.get() && !ended_too {
        return Err(Errno(libc::ENETDOWN));
    }
    st.in_calls.set(st.in_calls.get() + 1);
    Ok(StackRef { st: p })
}

/// The stack and index behind a userspace descriptor: EBADF (not one),
/// EPERM (off a vcpu), EXDEV (another vcpu's stack), ENETDOWN (its loop
/// ended with its vcpu).
pub(crate) fn lookup(fd: i32) -> Result<(StackRef, u32), Errno> {
    if !is_unet(fd) {
        return Err(Errno(libc::EBADF));
    }
    let v = (fd - FD_BASE) as u32;
    let st = owned_stack((v >> INDEX_BITS) as usize)?;
    Ok((st, v & (MAX_SOCKETS as u32 - 1)))
}

/// For calls without a userspace meaning: `meaning` (the errno the kernel
/// gives for a socket) if `fd` is an open userspace descriptor of the
/// calling vcpu's stack, EBADF otherwise (a number nobody handed out).
pub(crate) fn refuse(fd: i32, meaning: i32) -> Errno {
    match lookup(fd) {
        Ok((st, idx)) if st.inner.borrow().table.get(idx as usize).is_some_and(Option::is_some) => Errno(meaning),
        _ => Errno(libc::EBADF),
    }
}

/// True if `fd` is an open userspace descriptor of the calling vcpu.
pub(crate) fn is_open(fd: i32) -> bool {
    is_unet(fd) && refuse(fd, 0) == Errno(0)
}

/// [`lookup`] for `close`: a stack whose loop ended still frees the
/// descriptor.
pub(crate) fn lookup_for_close(fd: i32) -> Result<(StackRef, u32), Errno> {
    if !is_unet(fd) {
        return Err(Errno(libc::EBADF));
    }
    let v = (fd - FD_BASE) as u32;
    let st = owned_stack_in((v >> INDEX_BITS) as usize, true)?;
    Ok((st, v & (MAX_SOCKETS as u32 - 1)))
}

/// The slot and generation a `photon_netstack*` encodes.
fn decode_handle(h: usize) -> Option<(usize, u32)> {
    let slot = (h & 0xffff).checked_sub(1)?;
    (slot < MAX_STACKS).then_some((slot, (h >> 16) as u32))
}

/// The stack behind a `photon_netstack*` (EINVAL: not a live one).
pub(crate) fn stack_of(h: usize) -> Result<StackRef, Errno> {
    let (slot, generation) = decode_handle(h).ok_or(Errno::EINVAL)?;
    if GENS[slot].load(Acquire) != generation || STACKS[slot].load(Acquire).is_null() {
        return Err(Errno::EINVAL);
    }
    owned_stack(slot)
}

/// `ip/prefix` as an IPv4 address and prefix length.
fn parse_cidr(s: &str) -> Result<(Ipv4Address, u8), Errno> {
    let (ip, prefix) = s.split_once('/').ok_or(Errno::EINVAL)?;
    let ip: Ipv4Address = ip.parse().map_err(|_| Errno::EINVAL)?;
    let prefix: u8 = prefix.parse().map_err(|_| Errno::EINVAL)?;
    if prefix == 0 || prefix > 32 || ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        return Err(Errno::EINVAL);
    }
    Ok((ip, prefix))
}

/// `ip/prefix` as an IPv6 address and prefix length.
fn parse_cidr6(s: &str) -> Result<(Ipv6Address, u8), Errno> {
    let (ip, prefix) = s.split_once('/').ok_or(Errno::EINVAL)?;
    let ip: Ipv6Address = ip.parse().map_err(|_| Errno::EINVAL)?;
    let prefix: u8 = prefix.parse().map_err(|_| Errno::EINVAL)?;
    if prefix == 0
        || prefix > 128
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_loopback()
        || ip.to_ipv4_mapped().is_some()
    {
        return Err(Errno::EINVAL);
    }
    Ok((ip, prefix))
}

/// The stack's addresses: one CIDR, or an IPv4 and an IPv6 one separated
/// by a comma ("10.7.0.2/24,fd00:7::2/64").
fn parse_addrs(s: &str) -> Result<Vec<(IpAddress, u8)>, Errno> {
    let mut v: Vec<(IpAddress, u8)> = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let a = if part.contains(':') {
            parse_cidr6(part).map(|(a, p)| (IpAddress::Ipv6(a), p))?
        } else {
            parse_cidr(part).map(|(a, p)| (IpAddress::Ipv4(a), p))?
        };
        if v.iter()
            .any(|(b, _)| core::mem::discriminant(b) == core::mem::discriminant(&a.0))
        {
            return Err(Errno::EINVAL); // one address per family
        }
        v.push(a);
    }
    Ok(v)
}

/// The gateways: none, or one address per family, comma-separated.
fn parse_gateways(s: Option<&str>) -> Result<Vec<IpAddress>, Errno> {
    let mut v: Vec<IpAddress> = Vec::new();
    for g in s.unwrap_or("").split(',').map(str::trim).filter(|g| !g.is_empty()) {
        let a: IpAddress = if g.contains(':') {
            IpAddress::Ipv6(g.parse().map_err(|_| Errno::EINVAL)?)
        } else {
            IpAddress::Ipv4(g.parse().map_err(|_| Errno::EINVAL)?)
        };
        if v.iter()
            .any(|b| core::mem::discriminant(b) == core::mem::discriminant(&a))
        {
            return Err(Errno::EINVAL);
        }
        v.push(a);
    }
    Ok(v)
}

/// `photon_netstack_new`: returns the handle's value.
pub(crate) fn new_stack(device: &str, cidr: &str, gateway: Option<&str>) -> Result<usize, Errno> {
    if sched::current_id() == 0 || !sched::in_thread() {
        return Err(Errno::EPERM);
    }
    let addrs = parse_addrs(cidr)?;
    let gateways = parse_gateways(gateway)?;
    let (kind, arg) = device.split_once(':').ok_or(Errno(libc::ENODEV))?;
    let dev = match kind {
        "tap" => device::Dev::Tap(tap::Tap::open(arg)?),
        #[cfg(photon_dpdk)]
        "dpdk" => device::Dev::Dpdk(Box::new(dpdk::Dpdk::open(arg)?)),
        #[cfg(not(photon_dpdk))]
        "dpdk" => {
            log::warn!(
                "photon: netstack dpdk: not built into this libphoton (pkg-config found no libdpdk when it was built)"
            );
            return Err(Errno(libc::ENODEV));
        }
        "xdp" => device::Dev::Xdp(Box::new(xdp::Xdp::open(arg)?)),
        _ => return Err(Errno(libc::ENODEV)),
    };
    let mut hard: libc::rlimit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit into a struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard) } == 0 && hard.rlim_max >= FD_BASE as u64 {
        log::warn!(
            "photon: RLIMIT_NOFILE allows fds up to {}: kernel fds could collide with userspace-stack descriptors (from {FD_BASE})",
            hard.rlim_max
        );
    }
    let _g = ALLOC.lock().unwrap_or_else(|e| e.into_inner());
    let slot = (0..MAX_STACKS)
        .find(|&s| OWNERS[s].load(Acquire) == 0 && STACKS[s].load(Acquire).is_null())
        .ok_or(Errno(libc::ENFILE))?;
    OWNERS[slot].store(sched::current_id(), Release);
    STOPPED[slot].store(false, Release);
    let st = match Netstack::new(slot as u32, dev, &addrs, &gateways) {
        Ok(st) => st,
        Err(e) => {
            OWNERS[slot].store(0, Release);
            return Err(e);
        }
    };
    STACKS[slot].store(Box::into_raw(st), Release);
    let generation = GENS[slot].load(Acquire) as usize;
    Ok((generation << 16) | (slot + 1))
}

/// `photon_netstack_free`: EBUSY while descriptors are open or calls are
/// under way; EXDEV from another vcpu while the stack's loop runs. After
/// the owner vcpu's `photon_fini`, from any thread, whatever is open.
pub(crate) fn free_stack(h: usize) -> Result<(), Errno> {
    let (slot, generation) = decode_handle(h).ok_or(Errno::EINVAL)?;
    let _g = ALLOC.lock().unwrap_or_else(|e| e.into_inner());
    let p = STACKS[slot].load(Acquire);
    if GENS[slot].load(Acquire) != generation || p.is_null() {
        return Err(Errno::EINVAL);
    }
    let stopped = STOPPED[slot].load(Acquire);
    if !stopped {
        let me = sched::current_id();
        if me == 0 {
            return Err(Errno::EPERM);
        }
        if me != OWNERS[slot].load(Acquire) {
            return Err(Errno(libc::EXDEV));
        }
    }
    {
        // SAFETY: the owner vcpu's own stack (or one whose vcpu ended).
        let st = unsafe { &*p };
        // A stack whose loop ended with its vcpu is freed whatever is
        // open: its descriptors then fail with EBADF.
        if (!stopped && st.inner.borrow().open > 0) || st.in_calls.get() > 0 {
            return Err(Errno(libc::EBUSY));
        }
        if !st.done.get() {
            st.stop()?;
        }
    }
    STACKS[slot].store(core::ptr::null_mut(), Release);
    GENS[slot].fetch_add(1, AcqRel);
    OWNERS[slot].store(0, Release);
    // SAFETY: unpublished above; the loop has ended; no call is inside.
    drop(unsafe { Box::from_raw(p) });
    Ok(())
}

/// True if the stack behind handle `h` has an IPv4 address.
pub(crate) fn has_ipv4(h: usize) -> Result<bool, Errno> {
    Ok(stack_of(h)?.inner.borrow().addr4.is_some())
}

/// Per-stack counters (`photon_netstack_stats`).
pub(crate) struct NetstackStats {
    pub rx_frames: u64,
    pub tx_frames: u64,
    pub rx_empty_polls: u64,
    pub tx_dropped: u64,
    pub rounds: u64,
    pub sleeps: u64,
    pub kicks: u64,
    pub sockets_open: u64,
    pub sockets_total: u64,
}

/// The counters of the stack behind handle `h`.
pub(crate) fn stack_stats(h: usize) -> Result<NetstackStats, Errno> {
    let st = stack_of(h)?;
    let inner = st.inner.borrow();
    let d = inner.device_counters();
    Ok(NetstackStats {
        rx_frames: d.rx_frames,
        tx_frames: d.tx_frames,
        rx_empty_polls: d.rx_empty,
        tx_dropped: d.tx_dropped,
        rounds: inner.counters.rounds,
        sleeps: inner.counters.sleeps,
        kicks: inner.counters.kicks,
        sockets_open: inner.open as u64,
        sockets_total: inner.sockets.iter().count() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing() {
        assert_eq!(parse_cidr("10.7.0.2/24"), Ok((Ipv4Address::new(10, 7, 0, 2), 24)));
        for bad in [
            "10.7.0.2",
            "10.7.0.2/0",
            "10.7.0.2/33",
            "x/24",
            "0.0.0.0/8",
            "224.0.0.1/4",
            "",
        ] {
            assert_eq!(parse_cidr(bad), Err(Errno::EINVAL), "{bad}");
        }
    }

    #[test]
    fn address_lists() {
        let v = parse_addrs("10.7.0.2/24, fd00:7::2/64").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0], (IpAddress::Ipv4(Ipv4Address::new(10, 7, 0, 2)), 24));
        assert_eq!(v[1], (IpAddress::Ipv6("fd00:7::2".parse().unwrap()), 64));
        assert_eq!(parse_addrs("fd00:7::2/64").unwrap().len(), 1);
        for bad in [
            "10.7.0.2/24,10.7.0.3/24",
            "fd00::2/64,fd00::3/64",
            "fd00::2/0",
            "fd00::2/129",
            "::/64",
            "ff02::1/64",
            "::1/128",
            "::ffff:10.0.0.2/96",
            "10.7.0.2/24,",
        ] {
            assert_eq!(parse_addrs(bad), Err(Errno::EINVAL), "{bad}");
        }
        assert_eq!(parse_gateways(None).unwrap(), vec![]);
        assert_eq!(parse_gateways(Some("10.7.0.1,fd00:7::1")).unwrap().len(), 2);
        assert_eq!(parse_gateways(Some("10.7.0.1,10.7.0.9")), Err(Errno::EINVAL));
        assert_eq!(parse_gateways(Some("nope")), Err(Errno::EINVAL));
    }

    #[test]
    fn handles_and_descriptors() {
        assert_eq!(decode_handle(0), None);
        assert_eq!(decode_handle((7 << 16) | 1), Some((0, 7)));
        assert_eq!(decode_handle(MAX_STACKS + 1), None);
        let fd = encode(3, 5);
        assert!(is_unet(fd) && !is_unet(FD_BASE - 1));
        assert_eq!(
            ((fd - FD_BASE) as u32 >> INDEX_BITS, (fd - FD_BASE) as u32 & 0xfffff),
            (3, 5)
        );
        assert!(encode(MAX_STACKS as u32 - 1, MAX_SOCKETS as u32 - 1) > FD_BASE); // no overflow
        // Off a vcpu no descriptor resolves; an unowned slot is EBADF first.
        assert_eq!(lookup(fd).err(), Some(Errno(libc::EBADF)));
        assert_eq!(lookup(5).err(), Some(Errno(libc::EBADF)));
    }
}
