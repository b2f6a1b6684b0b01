//! Event engines: what an idle vcpu sleeps on, behind one trait.
//!
//! Contract every engine keeps:
//! - [`Engine::wait`] sleeps until an event, a [`Notify::notify`] from any OS
//!   thread, or the timeout, whichever comes first (never later than the
//!   timeout by more than the clock's granularity, never earlier).
//! - A notify posted before `wait` is entered is not lost: the wait returns
//!   at once.
//! - The engine makes no scheduling decisions; the vcpu does.

mod epoll;

use std::sync::Arc;
use std::time::Duration;

use crate::errno::Errno;

pub(crate) use epoll::EpollEngine;

/// The `photon_init` engine codes.
pub const EVENT_DEFAULT: u64 = 0;
/// epoll, through mio.
pub const EVENT_EPOLL: u64 = 1;
/// io_uring.
pub const EVENT_IOURING: u64 = 2;

/// Wakes a sleeping engine from any OS thread.
pub(crate) trait Notify: Send + Sync {
    fn notify(&self);
}

/// An event engine owned by one vcpu.
pub(crate) trait Engine {
    /// "epoll" or "io_uring".
    fn name(&self) -> &'static str;
    /// Sleeps until an event, a notify, or `timeout` (None: no limit).
    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), Errno>;
    /// True if the engine has operations in flight that a non-blocking poll
    /// could complete (so the scheduler's periodic poll may skip the syscall
    /// otherwise).
    fn has_pending(&self) -> bool;
    /// A handle that wakes this engine's `wait` from any OS thread.
    fn notifier(&self) -> Arc<dyn Notify>;
}

/// Creates the engine `photon_init` asked for. `PHOTON_ENGINE=io_uring|epoll`
/// overrides [`EVENT_DEFAULT`] (only).
pub(crate) fn create(kind: u64) -> Result<Box<dyn Engine>, Errno> {
    let kind = match kind {
        EVENT_DEFAULT => match std::env::var("PHOTON_ENGINE").as_deref() {
            Ok("epoll") => EVENT_EPOLL,
            Ok("io_uring") => EVENT_IOURING,
            Ok(other) if !other.is_empty() => {
                log::warn!(
                    "photon: PHOTON_ENGINE={other:?} is not io_uring or epoll; using the default"
                );
                EVENT_DEFAULT
            }
            _ => EVENT_DEFAULT,
        },
        EVENT_EPOLL | EVENT_IOURING => kind,
        _ => return Err(Errno::EINVAL),
    };
    match kind {
        EVENT_EPOLL => Ok(Box::new(EpollEngine::new()?)),
        _ => {
            // io_uring arrives with the engines issue; until then epoll serves
            // every request for it, and says so once.
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                log::info!("photon: io_uring engine not built in this version; using epoll")
            });
            Ok(Box::new(EpollEngine::new()?))
        }
    }
}
