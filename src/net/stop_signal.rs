//! Signals that stop servers (`photon_server_stop_on_signal`): the
//! async-signal-safe half.
//!
//! Each registration is a pipe whose write end sits in a slot of a fixed
//! table, tagged with its signal number. The handler, installed once per
//! signal while registrations for it exist, writes one byte to every
//! matching slot's pipe: it only loads atomics and calls write(2), both
//! async-signal-safe, and keeps errno. A photon thread per registration
//! (see `server.rs`) waits for its pipe's read end and stops its server.
//!
//! A slot also holds the pid of the process that registered it: a child
//! forked afterwards (without exec) inherits the handler and the table,
//! and a signal sent to it must neither stop the parent's servers (the
//! pipes are shared) nor be swallowed, so there the handler puts back the
//! default action and raises the signal again.
//!
//! Unregistering empties the slot, then waits until no handler is running
//! before the caller closes the pipe: a handler that loaded the slot before
//! it was emptied is counted in [`IN_HANDLER`] (both sides use SeqCst, so
//! either the handler sees the empty slot or the remover sees the count),
//! so a byte never goes to an fd number that was closed and reused.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;

use crate::errno::Errno;

/// Registrations at once, over all signals.
const SLOTS: usize = 64;

/// `signal << 56 | pid << 32 | write fd`, or 0 when free (signal is never 0).
static TABLE: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

/// Handlers running now, on any OS thread.
static IN_HANDLER: AtomicU32 = AtomicU32::new(0);

/// Per signal number: registrations alive and the action found before ours.
struct Installed {
    count: u32,
    previous: libc::sigaction,
}

// SAFETY: `libc::sigaction` holds a handler address and flags; it is only
// data here, moved between OS threads under the mutex.
unsafe impl Send for Installed {}

static INSTALLED: Mutex<Vec<(i32, Installed)>> = Mutex::new(Vec::new());

fn pack(sig: i32, pid: i32, fd: i32) -> u64 {
    (sig as u64) << 56 | ((pid as u64) & 0xff_ffff) << 32 | fd as u32 as u64
}

/// This process's id, as a raw syscall (async-signal-safe, never cached).
fn my_pid() -> i32 {
    // SAFETY: getpid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_getpid) as i32 }
}

extern "C" fn on_signal(sig: libc::c_int) {
    // SAFETY: errno is this OS thread's; saved and restored around write(2).
    let saved = unsafe { *libc::__errno_location() };
    IN_HANDLER.fetch_add(1, SeqCst);
    let pid = my_pid() as u64 & 0xff_ffff;
    let mut mine = false;
    for slot in &TABLE {
        let v = slot.load(SeqCst);
        if v != 0 && (v >> 56) as i32 == sig && (v >> 32) & 0xff_ffff == pid {
            mine = true;
            let fd = (v & 0xffff_ffff) as i32;
            let b = 1u8;
            // SAFETY: write(2) from a live byte; async-signal-safe.
            unsafe { crate::sys::write(fd, (&raw const b).cast(), 1) };
        }
    }
    IN_HANDLER.fetch_sub(1, SeqCst);
    if !mine {
        // A forked child's inherited handler: behave as without it.
        // SAFETY: signal(2) and raise(3) are async-signal-safe.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

/// True for a signal a handler can be installed for (not SIGKILL, SIGSTOP,
/// or the ones that report a fault in the running code).
pub(crate) fn valid(sig: i32) -> bool {
    (1..=libc::SIGRTMAX()).contains(&sig)
        && !matches!(
            sig,
            libc::SIGKILL | libc::SIGSTOP | libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE
        )
}

/// Makes `sig` write a byte to `write_fd`; returns the slot to unregister.
/// `EINVAL` for a signal that cannot be caught, `ENOSPC` when [`SLOTS`]
/// registrations exist, or sigaction's error.
pub(crate) fn register(sig: i32, write_fd: i32) -> Result<usize, Errno> {
    if !valid(sig) || write_fd < 0 {
        return Err(Errno::EINVAL);
    }
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    // The slot first: the handler must find it once it is installed.
    let tag = pack(sig, my_pid(), write_fd);
    let slot = TABLE
        .iter()
        .position(|slot| slot.compare_exchange(0, tag, SeqCst, SeqCst).is_ok())
        .ok_or(Errno(libc::ENOSPC))?;
    if let Some((_, i)) = installed.iter_mut().find(|(s, _)| *s == sig) {
        i.count += 1;
        return Ok(slot);
    }
    // SAFETY: installs a handler that only touches atomics, write(2) and,
    // in a forked child, signal(2) and raise(3).
    let previous = unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        let mut previous: libc::sigaction = core::mem::zeroed();
        if libc::sigaction(sig, &sa, &mut previous) != 0 {
            let e = Errno::last_os_error();
            TABLE[slot].store(0, SeqCst);
            return Err(e);
        }
        previous
    };
    installed.push((sig, Installed { count: 1, previous }));
    Ok(slot)
}

/// Drops one registration of `sig`; the last one puts back the action
/// found before ours (if ours is still the one installed).
fn release(installed: &mut Vec<(i32, Installed)>, sig: i32) {
    let Some(pos) = installed.iter().position(|(s, _)| *s == sig) else {
        return;
    };
    installed[pos].1.count -= 1;
    if installed[pos].1.count > 0 {
        return;
    }
    let (_, i) = installed.swap_remove(pos);
    // SAFETY: queries, then restores, the signal's action.
    unsafe {
        let mut now: libc::sigaction = core::mem::zeroed();
        if libc::sigaction(sig, core::ptr::null(), &mut now) == 0 && now.sa_sigaction == on_signal as *const () as usize
        {
            libc::sigaction(sig, &i.previous, core::ptr::null_mut());
        }
    }
}

/// Ends registration `slot` of `sig`. Once this returns no handler writes
/// to its pipe any more: the caller may close it.
pub(crate) fn unregister(slot: usize, sig: i32) {
    TABLE[slot].store(0, SeqCst);
    while IN_HANDLER.load(SeqCst) != 0 {
        std::hint::spin_loop();
    }
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    release(&mut installed, sig);
}
