//! The devices a stack can sit on, as one smoltcp [`Device`]: a TAP
//! interface (always), a DPDK port (when libphoton was built where
//! pkg-config found libdpdk) and an AF_XDP socket.
//!
//! Besides frames, a device tells the polling loop how to sleep: on an fd
//! the engine can wait for (TAP's, AF_XDP's, a DPDK queue's Rx interrupt
//! fd where the driver has one), or not at all (a polled DPDK port: the
//! loop then naps [`super::stack`]'s `POLL_NAP_US` at a time).

use smoltcp::phy::{self, Device, DeviceCapabilities};
use smoltcp::time::Instant;

#[cfg(photon_dpdk)]
use super::dpdk::Dpdk;
use super::tap::{DeviceCounters, Tap};
use super::xdp::Xdp;

/// One open device.
pub(crate) enum Dev {
    Tap(Tap),
    #[cfg(photon_dpdk)]
    Dpdk(Box<Dpdk>),
    Xdp(Box<Xdp>),
}

/// Calls `$body` with `$d` bound to the device inside `$dev`.
macro_rules! each {
    ($dev:expr, $d:ident => $body:expr) => {
        match $dev {
            Dev::Tap($d) => $body,
            #[cfg(photon_dpdk)]
            Dev::Dpdk($d) => $body,
            Dev::Xdp($d) => $body,
        }
    };
}

impl Dev {
    /// The fd the polling loop can sleep on, if any.
    pub(crate) fn sleep_fd(&self) -> Option<i32> {
        match self {
            Dev::Tap(t) => Some(t.fd()),
            #[cfg(photon_dpdk)]
            Dev::Dpdk(d) => d.sleep_fd(),
            Dev::Xdp(x) => Some(x.fd()),
        }
    }

    /// Called before the loop sleeps: false when frames arrived meanwhile
    /// (do not sleep). Arms what has to be armed.
    pub(crate) fn prepare_sleep(&mut self) -> bool {
        match self {
            Dev::Tap(_) => true,
            #[cfg(photon_dpdk)]
            Dev::Dpdk(d) => d.prepare_sleep(),
            Dev::Xdp(x) => x.prepare_sleep(),
        }
    }

    /// Called after the sleep; `fd_ready`: the fd was reported ready.
    #[cfg_attr(not(photon_dpdk), allow(unused_variables))]
    pub(crate) fn woke(&mut self, fd_ready: bool) {
        match self {
            Dev::Tap(_) | Dev::Xdp(_) => {}
            #[cfg(photon_dpdk)]
            Dev::Dpdk(d) => d.woke(fd_ready),
        }
    }

    /// Sends what the device batched (end of a round).
    pub(crate) fn flush(&mut self) {
        match self {
            Dev::Tap(_) => {}
            #[cfg(photon_dpdk)]
            Dev::Dpdk(d) => d.flush(),
            Dev::Xdp(x) => x.flush(),
        }
    }

    /// The hardware address the device has, if it dictates one.
    pub(crate) fn mac(&self) -> Option<[u8; 6]> {
        match self {
            Dev::Tap(_) => None,
            #[cfg(photon_dpdk)]
            Dev::Dpdk(d) => Some(d.mac()),
            Dev::Xdp(x) => Some(x.mac()),
        }
    }

    pub(crate) fn counters(&self) -> DeviceCounters {
        match self {
            Dev::Tap(t) => t.counters,
            #[cfg(photon_dpdk)]
            Dev::Dpdk(d) => d.counters(),
            Dev::Xdp(x) => x.counters(),
        }
    }
}

/// A received frame of one of the devices.
pub(crate) enum RxToken<'a> {
    Tap(<Tap as Device>::RxToken<'a>),
    #[cfg(photon_dpdk)]
    Dpdk(<Dpdk as Device>::RxToken<'a>),
    Xdp(<Xdp as Device>::RxToken<'a>),
}

/// Room for a frame on one of the devices.
pub(crate) enum TxToken<'a> {
    Tap(<Tap as Device>::TxToken<'a>),
    #[cfg(photon_dpdk)]
    Dpdk(<Dpdk as Device>::TxToken<'a>),
    Xdp(<Xdp as Device>::TxToken<'a>),
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        match self {
            RxToken::Tap(t) => t.consume(f),
            #[cfg(photon_dpdk)]
            RxToken::Dpdk(t) => t.consume(f),
            RxToken::Xdp(t) => t.consume(f),
        }
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        match self {
            TxToken::Tap(t) => t.consume(len, f),
            #[cfg(photon_dpdk)]
            TxToken::Dpdk(t) => t.consume(len, f),
            TxToken::Xdp(t) => t.consume(len, f),
        }
    }
}

impl Device for Dev {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        match self {
            Dev::Tap(d) => d.receive(now).map(|(r, t)| (RxToken::Tap(r), TxToken::Tap(t))),
            #[cfg(photon_dpdk)]
            Dev::Dpdk(d) => d.receive(now).map(|(r, t)| (RxToken::Dpdk(r), TxToken::Dpdk(t))),
            Dev::Xdp(d) => d.receive(now).map(|(r, t)| (RxToken::Xdp(r), TxToken::Xdp(t))),
        }
    }

    fn transmit(&mut self, now: Instant) -> Option<TxToken<'_>> {
        match self {
            Dev::Tap(d) => d.transmit(now).map(TxToken::Tap),
            #[cfg(photon_dpdk)]
            Dev::Dpdk(d) => d.transmit(now).map(TxToken::Dpdk),
            Dev::Xdp(d) => d.transmit(now).map(TxToken::Xdp),
        }
    }

    fn capabilities(&self) -> DeviceCapabilities {
        each!(self, d => d.capabilities())
    }
}
