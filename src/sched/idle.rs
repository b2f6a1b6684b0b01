//! The idle side of a vcpu: the idle thread, and the poll that turns
//! messages, expired timers and engine completions into runnable threads.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::handle;
use super::remote::{self, Msg};
use super::thread::{NO_OP, ThreadCtl};
use super::vcpu::{
    IO_BUDGET, TRIM_AFTER_US, TRIM_KEEP, Vcpu, adopt, after_switch, current, interrupt_local, spawn, switch_to,
    wake_io, wake_local,
};
use crate::engine::Completion;
use crate::time::now_us;

/// The idle thread: sleeps in the engine until something is runnable.
pub(super) unsafe extern "C" fn idle_main(deferred: usize, _data: *mut u8) -> ! {
    // SAFETY: `deferred` is a dead TCB or 0; the vcpu is re-fetched each round.
    unsafe {
        if crate::stack::sanitize::asan() {
            crate::stack::sanitize::finish_switch(core::ptr::null_mut()); // a fresh stack
        }
        if deferred != 0 {
            after_switch(deferred as *mut ThreadCtl);
        }
        loop {
            let v = current();
            (*v).idle_turns += 1;
            poll(v, true);
            if let Some(next) = (*v).run_queue.head() {
                switch_to(v, (*v).idle, next);
            }
        }
    }
}

/// The idle thread's loop, run on the stack of `cur`, a thread that has
/// just blocked with nothing else runnable: polls (and sleeps) until a
/// thread is runnable and returns it, `cur` itself when its own wait ended
/// (no switch at all then; with one busy connection that spares two
/// switches and the idle stack's cache lines per request). Only for the
/// thread that blocked alone last time too (see `block_inline`). While it polls
/// the vcpu runs "the idle thread" for everybody else (`current`, the
/// stall monitor, `photon_in_thread`), as if it had switched there.
///
/// # Safety
/// `v` is the calling OS thread's vcpu and `cur` its running thread, now
/// blocked (out of the run queue), whose stack has room for the poll.
#[inline(never)]
pub(super) unsafe fn poll_in_place(v: *mut Vcpu, cur: *mut ThreadCtl) -> *mut ThreadCtl {
    // SAFETY: per the contract.
    unsafe {
        let idle = (*v).idle;
        let running = &Arc::as_ref(&(*v).remote).running;
        (*v).current = idle;
        running.store(idle as u64, Relaxed);
        (*v).polled_in_place += 1;
        let next = loop {
            poll(v, true);
            if let Some(next) = (*v).run_queue.head() {
                break next;
            }
        };
        if next == cur {
            // No switch follows: undo what the idle thread stood for.
            super::tls::on_switch(v, cur);
            (*v).current = cur;
            running.store(cur as u64, Relaxed);
        }
        next
    }
}

/// Handles messages, expired timers and engine events. With `may_sleep`
/// and nothing runnable, sleeps in the engine until the next timer.
///
/// # Safety
/// `v` is the calling OS thread's vcpu.
pub(super) unsafe fn poll(v: *mut Vcpu, may_sleep: bool) {
    // SAFETY: per the contract; runs on the current thread's stack, no switch.
    unsafe {
        // The busy vcpu's next poll is counted from here (tick, io_budget).
        (*v).polled_at = Arc::as_ref(&(*v).remote).switches.load(Relaxed);
        (*v).io_budget = IO_BUDGET;
        drain_inbox(v);
        fire_timers(v);
        let idle = (*v).run_queue.is_empty();
        let timeout = if !(may_sleep && idle) {
            if !(*v).engine.has_pending() {
                return;
            }
            Some(Duration::ZERO)
        } else {
            let next = (*v).timers.next_deadline();
            let next = match (next, idle_trim(v)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            next.map(|d| Duration::from_micros(d.saturating_sub(now_us())))
        };
        let sleeping = timeout != Some(Duration::ZERO);
        if sleeping {
            super::tls::watch_loads(); // before sleeping: dlopen'ed modules
        }
        let mut timeout = timeout;
        if sleeping && spin_for_messages(v, &mut timeout) {
            drain_inbox(v); // a message came while spinning: no sleep
            fire_timers(v);
            return;
        }
        if sleeping && io_spin(v, &mut timeout) {
            return; // completions (or a message) came while spinning: no sleep
        }
        if sleeping && !(*v).remote.enter_sleep() {
            drain_inbox(v); // a message arrived: do not sleep
            return;
        }
        let mut done = core::mem::take(&mut (*v).completions);
        (*v).in_runtime = true;
        if sleeping {
            (*v).stats.idle_waits += 1;
        }
        let waited = (*v).engine.wait(timeout, &mut done);
        (*v).in_runtime = false;
        if let Err(e) = waited {
            log::error!("photon: engine wait failed: {e}");
        }
        if sleeping {
            (*v).remote.leave_sleep();
            (*v).io_last_batch = done.len();
            if (*v).io_spin_missed.0 != 0 {
                io_spin_after_miss(v);
            }
        }
        deliver(v, &mut done);
        (*v).completions = done;
        if sleeping {
            drain_inbox(v);
            fire_timers(v);
        }
    }
}

/// Default of `PHOTON_IO_SPIN_US`.
const IO_SPIN_US: u64 = 30;
/// The I/O spin runs only with at most this many waits in flight (a
/// server's listener, its signal fd and a connection or two)...
const IO_SPIN_MAX_WAITS: usize = 8;
/// ... and when the vcpu's last wake-up from the engine brought at most
/// this many completions.
const IO_SPIN_MAX_BATCH: usize = 2;
/// The most idle sleeps a spin that found nothing makes the next ones skip.
const IO_SPIN_MAX_BACKOFF: u32 = 64;
/// A sleep after a spin that found nothing is long (the connection is
/// quiet, or the device slow) when it lasts over this many times the spin.
const IO_SPIN_QUIET: u64 = 2;

/// `PHOTON_IO_SPIN_US`, else [`IO_SPIN_US`]; under Valgrind, which runs
/// one thread at a time, 0 unless set: a spinning vcpu there only holds
/// back the thread that would end its wait.
fn io_spin_us() -> u64 {
    static SPIN: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SPIN.get_or_init(|| {
        let default = if crate::stack::sanitize::on_valgrind() {
            0
        } else {
            IO_SPIN_US
        };
        env_micros("PHOTON_IO_SPIN_US", default)
    })
}

/// The environment variable `name` as a number of microseconds, else
/// `default` (with a warning when it is set but not a number).
fn env_micros(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| {
            log::warn!("photon: {name}={s:?} is not a number of microseconds; using {default}");
            default
        }),
        Err(_) => default,
    }
}

/// Before sleeping in the engine with a few waits in flight (at most
/// [`IO_SPIN_MAX_WAITS`]), when the last wake-up brought at most
/// [`IO_SPIN_MAX_BATCH`] completions (events come one at a time: a
/// request, then the reply to what was just sent): polls the engine
/// without blocking for up to `PHOTON_IO_SPIN_US` (30 us; 0: never),
/// bounded by the next timer, and delivers what it finds. True if
/// completions or a message came: the caller does not sleep; otherwise
/// `timeout` is what is left of it.
///
/// Why: on a virtual machine a sleep and its wake-up cost more CPU than a
/// short spin (the idle vCPU halts; the waker's IPI exits to the host), and
/// add tens of microseconds to each round trip. Spinning for about what a
/// sleep costs at most doubles the CPU of an idle period that ends later,
/// and when a spin found nothing and the sleep after it was long the next
/// idle sleeps skip it ([`io_spin_after_miss`]), so a quiet connection
/// costs little. With many waits in flight, or completions in bunches,
/// sleeping lets them batch up: with 64 and 256 connections in ping-pong
/// the spin (taking one or two completions at a time) measured 10-14%
/// more CPU per request on io_uring, streaming 5% less throughput.
///
/// # Safety
/// `v` is the calling OS thread's vcpu.
unsafe fn io_spin(v: *mut Vcpu, timeout: &mut Option<Duration>) -> bool {
    // SAFETY: per the contract; runs on the current thread's stack, no switch.
    unsafe {
        let spin = io_spin_us();
        if spin == 0 {
            return false;
        }
        let waits = (*v).engine.waits_in_flight();
        if waits == 0 || waits > IO_SPIN_MAX_WAITS || (*v).io_last_batch > IO_SPIN_MAX_BATCH {
            return false;
        }
        if (*v).io_spin_skip > 0 {
            (*v).io_spin_skip -= 1;
            return false;
        }
        let spin = timeout.map_or(spin, |t| spin.min(t.as_micros() as u64));
        if spin == 0 {
            return false;
        }
        let start = now_us();
        let until = start + spin;
        let mut done = core::mem::take(&mut (*v).completions);
        let found = loop {
            (*v).in_runtime = true;
            // io_uring: a look at the completion ring, entering the kernel
            // only for queued submissions or deferred task work; epoll: one
            // epoll_wait with no timeout.
            let polled = (*v).engine.wait(Some(Duration::ZERO), &mut done);
            (*v).in_runtime = false;
            if let Err(e) = polled {
                log::error!("photon: engine poll failed: {e}");
                break false;
            }
            if !done.is_empty() || (*v).remote.has_pending() {
                break true;
            }
            if now_us() >= until {
                break false;
            }
            for _ in 0..32 {
                core::hint::spin_loop();
            }
        };
        (*v).io_last_batch = done.len();
        deliver(v, &mut done);
        (*v).completions = done;
        if found {
            (*v).io_spin_backoff = 0;
            drain_inbox(v);
            fire_timers(v);
        } else {
            let now = now_us();
            (*v).io_spin_missed = (now, spin);
            spent_spinning(timeout, now - start);
        }
        found
    }
}

/// After a spin of `spent_us` that found nothing: the sleep that follows
/// ends at the same deadline, so a timer is not late by the spin; at least
/// 1 us on (a zero timeout would not sleep).
fn spent_spinning(timeout: &mut Option<Duration>, spent_us: u64) {
    if let Some(t) = timeout.as_mut() {
        *t = t
            .saturating_sub(Duration::from_micros(spent_us))
            .max(Duration::from_micros(1));
    }
}

/// After the sleep that followed a spin that found nothing: if the sleep
/// was long (over [`IO_SPIN_QUIET`] times the spin) the connection is
/// quiet, and the next idle sleeps skip the spin (1, 2, 4 ..
/// [`IO_SPIN_MAX_BACKOFF`] of them); if it was short, a spin would have
/// paid, and the next one runs.
///
/// # Safety
/// `v` is the calling OS thread's vcpu.
unsafe fn io_spin_after_miss(v: *mut Vcpu) {
    // SAFETY: per the contract.
    unsafe {
        let (missed_at, spin) = core::mem::take(&mut (*v).io_spin_missed);
        if now_us().saturating_sub(missed_at) > spin * IO_SPIN_QUIET {
            (*v).io_spin_backoff = ((*v).io_spin_backoff * 2).clamp(1, IO_SPIN_MAX_BACKOFF);
            (*v).io_spin_skip = (*v).io_spin_backoff;
        } else {
            (*v).io_spin_backoff = 0;
        }
    }
}

/// Default of `PHOTON_IDLE_SPIN_US`.
const IDLE_SPIN_US: u64 = 20;
/// A vcpu spins before sleeping only if a message from another OS thread
/// arrived this recently.
const SPIN_IF_REMOTE_WITHIN_US: u64 = 50_000;

fn idle_spin_us() -> u64 {
    static SPIN: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SPIN.get_or_init(|| env_micros("PHOTON_IDLE_SPIN_US", IDLE_SPIN_US))
}

/// Before sleeping in the engine: a vcpu that other OS threads woke
/// recently watches its inbox for up to `PHOTON_IDLE_SPIN_US` (20 us; 0:
/// never), so a wake-up from another vcpu that comes soon costs no system
/// call on either side. True if a message arrived; otherwise `timeout` is
/// what is left of it.
///
/// # Safety
/// `v` is the calling OS thread's vcpu.
unsafe fn spin_for_messages(v: *mut Vcpu, timeout: &mut Option<Duration>) -> bool {
    // SAFETY: per the contract; only atomics are read while spinning.
    unsafe {
        let spin = idle_spin_us();
        if spin == 0 || (*v).last_remote == 0 {
            return false;
        }
        let now = now_us();
        if now.saturating_sub((*v).last_remote) > SPIN_IF_REMOTE_WITHIN_US {
            return false;
        }
        let spin = timeout.map_or(spin, |t| spin.min(t.as_micros() as u64));
        let until = now + spin;
        let remote = &*(*v).remote;
        loop {
            for _ in 0..64 {
                if remote.has_pending() {
                    return true;
                }
                core::hint::spin_loop();
            }
            let at = now_us();
            if at >= until {
                spent_spinning(timeout, at - now);
                return false;
            }
        }
    }
}

/// How long an unused stack pool waits before an idle trim (`PHOTON_STACK_TRIM_MS`).
fn trim_after_us() -> u64 {
    static AFTER: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *AFTER.get_or_init(|| match std::env::var("PHOTON_STACK_TRIM_MS") {
        Ok(s) => match s.trim().parse::<u64>() {
            Ok(0) => u64::MAX,
            Ok(ms) => ms.saturating_mul(1000),
            Err(_) => {
                log::warn!("photon: PHOTON_STACK_TRIM_MS={s:?} is not a number of milliseconds; using 1000");
                TRIM_AFTER_US
            }
        },
        Err(_) => TRIM_AFTER_US,
    })
}

/// Before an idle sleep: trims the stack pool once it has gone unused for
/// [`trim_after_us`], giving stacks and their pages back. Returns when it
/// must look again (a deadline), if a trim is still to come.
///
/// # Safety
/// `v` is the calling OS thread's vcpu.
unsafe fn idle_trim(v: *mut Vcpu) -> Option<u64> {
    // SAFETY: per the contract.
    unsafe {
        let uses = (*v).pool.uses();
        if uses == (*v).trim_done || trim_after_us() == u64::MAX {
            // Nothing happened since the last trim, or PHOTON_STACK_TRIM_MS=0
            // (never): no deadline, so the sleep needs no timer.
            return None;
        }
        let now = now_us();
        if uses != (*v).trim_seen {
            (*v).trim_seen = uses;
            (*v).trim_quiet_since = now;
        }
        let due = (*v).trim_quiet_since.saturating_add(trim_after_us());
        if now < due {
            return Some(due);
        }
        let n = (*v).tcbs.clear() + (*v).pool.trim(TRIM_KEEP);
        let buffers = (*v).engine.trim();
        (*v).trim_done = uses;
        let (chunks, mapped, _) = crate::stack::chunk::usage();
        log::debug!(
            "photon: vcpu {} idle: gave {n} pooled stacks back ({chunks} stack chunks, {} MiB of address space, left) \
             and {} KiB of idle receive buffers",
            (*v).id,
            mapped >> 20,
            buffers >> 10
        );
        None
    }
}

/// `photon_trim` on this vcpu: every pooled stack goes back.
///
/// # Safety
/// `v` is the calling OS thread's vcpu.
pub(super) unsafe fn trim_now(v: *mut Vcpu) {
    // SAFETY: per the contract.
    unsafe {
        (*v).tcbs.clear();
        (*v).pool.trim(0);
        (*v).engine.trim();
        (*v).trim_done = (*v).pool.uses();
    }
}

/// Hands engine completions to the threads waiting for them, which go to
/// the front of the run queue, in order, within its budget
/// ([`super::run_queue`]).
///
/// # Safety
/// `v` is the calling OS thread's vcpu; each waiter is a live thread of it
/// (a thread with an operation in flight stays parked until its completion).
pub(super) unsafe fn deliver(v: *mut Vcpu, done: &mut Vec<Completion>) {
    // SAFETY: per the contract.
    unsafe { (*v).stats.io_completed += done.len() as u64 };
    let front = io_wake_front();
    for c in done.drain(..) {
        let th = c.waiter.cast::<ThreadCtl>();
        // SAFETY: per the contract.
        unsafe {
            if (*th).io_op == c.id {
                (*th).io_op = NO_OP;
                (*th).io_done = true;
                (*th).io_result = c.result;
                if front {
                    wake_io(v, th);
                } else {
                    wake_local(v, th, 0);
                }
            }
        }
    }
    // SAFETY: per the contract.
    unsafe { (*v).run_queue.end_batch() };
}

/// False with `PHOTON_IO_WAKE=fifo` (read once): threads whose I/O
/// completed go to the tail of the run queue like every other wake-up.
fn io_wake_front() -> bool {
    static FRONT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FRONT.get_or_init(|| match std::env::var("PHOTON_IO_WAKE") {
        Ok(s) if s.trim() == "fifo" => false,
        Ok(s) if s.trim() == "front" || s.trim().is_empty() => true,
        Ok(s) => {
            log::warn!("photon: PHOTON_IO_WAKE={s:?} is neither \"front\" nor \"fifo\"; using front");
            true
        }
        Err(_) => true,
    })
}

/// # Safety
/// `v` is the calling OS thread's vcpu.
unsafe fn fire_timers(v: *mut Vcpu) {
    // SAFETY: per the contract; heap entries are live blocked threads.
    unsafe {
        if (*v).timers.len() == 0 {
            return;
        }
        let now = now_us();
        while let Some(th) = (*v).timers.pop_expired(now) {
            wake_local(v, th, libc::ETIMEDOUT);
        }
    }
}

/// # Safety
/// `v` is the calling OS thread's vcpu.
unsafe fn drain_inbox(v: *mut Vcpu) {
    // SAFETY: per the contract; handles are re-validated on this vcpu.
    unsafe {
        if !(*v).remote.has_pending() {
            return;
        }
        let mut inbox = core::mem::take(&mut (*v).inbox);
        (*v).remote.drain(&mut inbox);
        (*v).last_remote = now_us();
        for m in inbox.drain(..) {
            let (h, seq, code, is_interrupt) = match m {
                Msg::Wake { h, seq, result } => {
                    (*v).stats.remote_wakeups += 1;
                    (h, seq, result, false)
                }
                Msg::Interrupt { h, errno } => {
                    (*v).stats.remote_wakeups += 1;
                    (h, 0, errno, true)
                }
                Msg::Dump => {
                    super::stats::dump_on_request(v);
                    continue;
                }
                Msg::Trim => {
                    trim_now(v);
                    continue;
                }
                Msg::CancelFd { fd, ack } => {
                    super::io::cancel_fd_here(v, fd, ack);
                    continue;
                }
                Msg::ReleaseHeld { fd } => {
                    let mut done = Vec::new();
                    (*v).engine.release_held(fd, &mut done);
                    deliver(v, &mut done);
                    continue;
                }
                Msg::Adopt { tcb } => {
                    adopt(v, tcb as *mut ThreadCtl);
                    continue;
                }
                Msg::Spawn { entry, arg } => {
                    if let Err(e) = spawn(entry, arg as *mut core::ffi::c_void, 0) {
                        log::error!("photon: a work pool could not start a thread: {e}");
                    }
                    continue;
                }
            };
            let Ok((vid, th)) = handle::resolve(h) else {
                continue;
            };
            if th.is_null() {
                continue;
            }
            if vid != (*v).id {
                let _ = remote::post(vid, m); // it migrated meanwhile: forward
            } else if is_interrupt {
                interrupt_local(v, th, code);
            } else if (*th).wait_seq == seq {
                wake_local(v, th, code);
            }
        }
        (*v).inbox = inbox;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::{
        photon_fini, photon_init, photon_read, photon_thread_create, photon_thread_interrupt, photon_thread_self,
    };
    use crate::sched::wait::sleep_us;
    use core::ffi::c_void;

    /// How many turns the idle thread has begun, and the vcpu's in-place
    /// poll count.
    fn idle_state() -> (u64, u64) {
        let v = current();
        // SAFETY: this OS thread's live vcpu; read between switches.
        unsafe { ((*v).idle_turns, (*v).polled_in_place) }
    }

    unsafe extern "C" fn small_sleeper(_: *mut c_void) -> *mut c_void {
        // Twice: the second lone block is a repeat, refused for lack of room.
        sleep_us(2_000).unwrap();
        sleep_us(2_000).unwrap();
        core::ptr::null_mut()
    }

    /// A thread that blocks with nothing else runnable sleeps on its own
    /// stack and goes on with no switch (the idle thread never runs), for
    /// each way a sleep ends: its timer, its I/O, a message from another OS
    /// thread (an interrupt). A thread's first lone block, and a thread
    /// with under 64 KiB of stack left, switch to the idle thread instead.
    #[test]
    fn blocked_thread_polls_in_place() {
        for engine in [crate::engine::EVENT_EPOLL, crate::engine::EVENT_IOURING] {
            std::thread::spawn(move || {
                if photon_init(engine, 0) != 0 {
                    println!("blocked_thread_polls_in_place: engine {engine} unavailable, skipped");
                    return;
                }
                // The first lone block goes through the idle thread: in
                // place is for the thread that blocked alone last time too.
                let (turns_before, _) = idle_state();
                sleep_us(1_000).unwrap();
                let (turns0, n0) = idle_state();
                assert!(
                    turns0 > turns_before,
                    "the first lone block did not go to the idle thread"
                );
                // A timer ends the sleep.
                sleep_us(2_000).unwrap();
                let (turns, n1) = idle_state();
                assert_eq!(turns, turns0, "the idle thread ran");
                assert!(n1 > n0, "no in-place poll");
                // I/O ends it: a pipe written by another OS thread.
                let mut p = [0; 2];
                // SAFETY: a valid out array.
                assert_eq!(
                    unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) },
                    0
                );
                let w = p[1];
                let writer = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    // SAFETY: one byte from a live buffer.
                    assert_eq!(unsafe { libc::write(w, b"x".as_ptr().cast(), 1) }, 1);
                });
                let mut b = [0u8; 4];
                assert_eq!(photon_read(p[0], b.as_mut_ptr().cast(), 4, u64::MAX), 1);
                writer.join().unwrap();
                // A message ends it: an interrupt from another OS thread.
                let me = photon_thread_self() as usize;
                let interrupter = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    assert_eq!(photon_thread_interrupt(me as *mut _, libc::EINTR), 0);
                });
                assert_eq!(photon_read(p[0], b.as_mut_ptr().cast(), 4, u64::MAX), -1);
                assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EINTR));
                interrupter.join().unwrap();
                let (turns, n2) = idle_state();
                assert_eq!(turns, turns0, "the idle thread ran");
                assert!(
                    n2 >= n1 + 2,
                    "the read's and the interrupt's waits were not polled in place"
                );
                // A 16 KiB thread has no room: its repeated lone block goes
                // through the idle thread too.
                let th = photon_thread_create(Some(small_sleeper), core::ptr::null_mut(), 16 << 10);
                assert!(!th.is_null());
                sleep_us(20_000).unwrap(); // runs the small thread, which sleeps 2 ms twice and ends
                let (turns, n3) = idle_state();
                assert!(
                    turns > turns0,
                    "the small thread's sleeps did not go to the idle thread"
                );
                assert_eq!(n3, n2, "a thread without room polled in place");
                // SAFETY: our pipe.
                unsafe {
                    libc::close(p[0]);
                    libc::close(p[1]);
                }
                assert_eq!(photon_fini(), 0);
            })
            .join()
            .unwrap();
        }
    }
}
