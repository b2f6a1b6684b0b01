//! Messages to a vcpu from other OS threads (interrupts and wake-ups of its
//! threads), and the registry that finds a vcpu by id.
//!
//! No lost wake-ups: a vcpu about to sleep publishes `sleeping` and then
//! re-checks `pending`; a poster sets `pending` and then checks `sleeping`.
//! Both sides use SeqCst, so at least one of them sees the other's store:
//! either the vcpu skips its sleep, or the poster notifies the engine.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex};

use super::handle::Handle;
use crate::engine::Notify;
use crate::errno::Errno;

/// Something another OS thread asks a vcpu to do to one of its threads.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Msg {
    /// Wake `h` from wait number `seq` with `result` (0 or an errno).
    Wake { h: Handle, seq: u64, result: i32 },
    /// `photon_thread_interrupt(h, errno)`.
    Interrupt { h: Handle, errno: i32 },
    /// Take over a migrating thread (its TCB, off every CPU).
    Adopt { tcb: usize },
    /// Start a photon thread running `entry(arg)` (work pools).
    Spawn { entry: super::thread::Entry, arg: usize },
    /// Write the vcpu's threads to stderr (`PHOTON_DUMP_SIGNAL`).
    Dump,
    /// `photon_close(fd)` on another vcpu: wake this vcpu's threads waiting
    /// on `fd` (ECANCELED), then acknowledge through `ack`, a raw
    /// `Arc<CloseAck>` this message owns one count of.
    CancelFd { fd: i32, ack: usize },
}

/// A vcpu's inbox.
pub(crate) struct Remote {
    queue: Mutex<Vec<Msg>>,
    pending: AtomicBool,
    sleeping: AtomicBool,
    notify: Arc<dyn Notify>,
    /// Scheduling decisions of the vcpu, written only by it (see `tick`);
    /// here so the stall monitor can read it from its own thread.
    pub(crate) switches: AtomicU64,
    /// The TCB the vcpu last switched to (for stall reports; 0 after fini).
    pub(crate) running: AtomicU64,
}

impl Remote {
    pub(crate) fn new(notify: Arc<dyn Notify>) -> Remote {
        Remote {
            queue: Mutex::new(Vec::new()),
            pending: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            notify,
            switches: AtomicU64::new(0),
            running: AtomicU64::new(0),
        }
    }

    /// Posts a message and wakes the vcpu if it sleeps.
    pub(crate) fn post(&self, m: Msg) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).push(m);
        self.pending.store(true, SeqCst);
        if self.sleeping.load(SeqCst) {
            self.notify.notify();
        }
    }

    /// True if messages wait (cheap; checked by the owning vcpu).
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(Acquire)
    }

    /// Takes every posted message.
    pub(crate) fn drain(&self, out: &mut Vec<Msg>) {
        self.pending.store(false, SeqCst);
        out.append(&mut self.queue.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Marks the vcpu as going to sleep; false if a message arrived meanwhile
    /// (then the vcpu must not sleep).
    pub(crate) fn enter_sleep(&self) -> bool {
        self.sleeping.store(true, SeqCst);
        if self.pending.load(SeqCst) {
            self.sleeping.store(false, SeqCst);
            return false;
        }
        true
    }

    /// True while the vcpu sleeps in its engine.
    pub(crate) fn is_sleeping(&self) -> bool {
        self.sleeping.load(Relaxed)
    }

    pub(crate) fn leave_sleep(&self) {
        self.sleeping.store(false, SeqCst);
    }
}

static REGISTRY: Mutex<Vec<(u32, Arc<Remote>)>> = Mutex::new(Vec::new());

pub(crate) fn register(id: u32, r: Arc<Remote>) {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner()).push((id, r));
}

pub(crate) fn unregister(id: u32) {
    REGISTRY
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(i, _)| *i != id);
}

/// True if vcpu `id` is alive.
pub(crate) fn exists(id: u32) -> bool {
    REGISTRY
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|(i, _)| *i == id)
}

/// Every live vcpu's id and inbox.
pub(crate) fn all() -> Vec<(u32, Arc<Remote>)> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Posts `m` to vcpu `id`; ESRCH if that vcpu has ended.
pub(crate) fn post(id: u32, m: Msg) -> Result<(), Errno> {
    let r = REGISTRY
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|(i, _)| *i == id)
        .map(|(_, r)| r.clone());
    r.ok_or(Errno::ESRCH)?.post(m);
    Ok(())
}
