//! The scheduler: vcpus, photon threads, timers, keys, handles and the
//! messages that let other OS threads reach a vcpu's threads.

mod cached;
pub mod handle;
mod idle;
mod io;
pub mod keys;
mod remote;
mod run_queue;
mod private_fds;
mod stats;
mod thread;
mod timer;
pub(crate) mod tls;
mod vcpu;
mod switch;
mod wait;
mod migrate;
mod workpool;

pub(crate) use cached::{Cached, read_cached, read_cached_buf, read_cached_fast};
pub use handle::Handle;
pub(crate) use io::{
    cancel_fd, chunked, engine_runs, fd_drained, fd_nonempty, fd_readiness, fd_recv_hint, forget_fd, held_first,
    io_wait, read_joins_batch, turn_has_batch,
};
pub use stats::{dump as dump_threads, set_name, stats as vcpu_stats};
pub(crate) use thread::Wait;
pub(crate) use tls::preload_active;
pub(crate) use vcpu::{FOREVER, block_on, next_wait_seq, wake};
pub(crate) use vcpu::{
    check_interrupt, current_id, engine_name, exit_current, fini, fini_waiting, in_thread, init, interrupt, io_budget,
    join, keep_interrupt, key_get, key_set, migrate, on_end, running, self_handle, sleep_us, spawn, thread_number,
    yield_now,
};
pub use workpool::{WorkPool, offload_call};

/// `photon_trim`: the calling vcpu (if any) gives every pooled stack back
/// (and their pages), and its engine's idle buffers' pages, now; every
/// other vcpu does so when it next runs its scheduler. Returns the bytes of
/// stack address space unmapped here.
pub(crate) fn trim() -> usize {
    let v = vcpu::current();
    let me = vcpu::current_id();
    let (_, mapped_before, _) = crate::stack::chunk::usage();
    if !v.is_null() {
        // SAFETY: this OS thread's live vcpu; no switch here.
        unsafe { idle::trim_now(v) };
    }
    for (id, _) in remote::all() {
        if id != me {
            let _ = remote::post(id, remote::Msg::Trim);
        }
    }
    let (_, mapped_after, _) = crate::stack::chunk::usage();
    mapped_before.saturating_sub(mapped_after)
}

/// `photon_thread_enable_join`.
pub(crate) fn enable_join(h: Handle) -> Result<(), crate::errno::Errno> {
    handle::enable_join(h)
}

/// `photon_thread_joinable`.
pub(crate) fn joinable(h: Handle) -> Result<bool, crate::errno::Errno> {
    handle::joinable(h)
}

/// `photon_thread_detach`.
pub(crate) fn detach(h: Handle) -> Result<(), crate::errno::Errno> {
    let v = vcpu::current();
    // SAFETY: a non-null vcpu is this OS thread's, live; no switch here.
    let cache = (!v.is_null()).then(|| unsafe { &mut (*v).slots });
    handle::detach(h, cache)
}
