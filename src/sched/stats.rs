//! Visibility: per-vcpu counters (`photon_stats_get`), thread names and the
//! thread dump (`photon_dump_threads`), and the monitor thread behind
//! `PHOTON_DUMP_SIGNAL` (dump every vcpu on a signal) and `PHOTON_STALL_MS`
//! (warn when a photon thread runs that long without yielding: 1,000 ms
//! unless the variable says otherwise, `0` turns the warning off).
//!
//! Counters are plain fields of the vcpu, written only by its own OS
//! thread; the switch count lives in the vcpu's shared inbox ([`Remote`])
//! so the monitor can watch it from outside.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI32, Ordering::*};
use std::sync::{Arc, Once};
use std::time::Duration;

use super::handle::Handle;
use super::private_fds::{self, PrivateFds};
use super::remote::{self, Msg, Remote};
use super::thread::{NAME_MAX, State, ThreadCtl, Wait};
use super::vcpu::{Vcpu, on_vcpu};
use crate::errno::Errno;
use crate::time::now_us;

/// What a vcpu counts about itself.
#[derive(Default, Clone, Copy)]
pub struct Counters {
    /// Sleeps started by photon threads (`photon_thread_usleep` and friends).
    pub sleeps: u64,
    /// Times the vcpu slept in its engine (nothing runnable).
    pub idle_waits: u64,
    /// Operations submitted to the engine that did not complete at once.
    pub io_submitted: u64,
    /// Their completions delivered to waiting threads.
    pub io_completed: u64,
    /// Of the submitted operations, those run by the offload pool.
    pub offloaded: u64,
    /// Wake-ups and interrupts that arrived from other OS threads.
    pub remote_wakeups: u64,
}

/// A snapshot of one vcpu (`photon_stats_get`).
pub struct Stats {
    /// The vcpu's id.
    pub vcpu_id: u32,
    /// Threads alive, main included.
    pub threads_alive: u64,
    /// Threads in the run queue, the running one included.
    pub threads_runnable: u64,
    /// Scheduling decisions.
    pub switches: u64,
    /// The vcpu's own counters.
    pub counters: Counters,
}

/// The calling vcpu's counters; EPERM off a vcpu.
pub fn stats() -> Result<Stats, Errno> {
    let v = on_vcpu()?;
    // SAFETY: this OS thread's live vcpu; no switch here.
    unsafe {
        Ok(Stats {
            vcpu_id: (*v).id,
            // The main thread counts as alive; the idle thread does not.
            threads_alive: (*v).threads.len() as u64 + 1,
            threads_runnable: (*v).run_queue.len() as u64,
            switches: Arc::as_ref(&(*v).remote).switches.load(Relaxed),
            counters: (*v).stats,
        })
    }
}

/// `photon_thread_set_name`: `name` (at most [`NAME_MAX`] bytes are kept;
/// empty clears it) for thread `h`, which must live on the calling vcpu.
pub fn set_name(h: Handle, name: &[u8]) -> Result<(), Errno> {
    let v = on_vcpu()?;
    let (vid, th) = super::handle::resolve(h)?;
    // SAFETY: live vcpu; `th` is dereferenced only if it is one of its threads.
    unsafe {
        if vid != (*v).id || th.is_null() {
            return Err(Errno::EINVAL);
        }
        let n = name.len().min(NAME_MAX);
        let buf = &mut (*th).name;
        *buf = [0; NAME_MAX + 1];
        buf[..n].copy_from_slice(&name[..n]);
    }
    Ok(())
}

/// The name of `th` as text.
///
/// # Safety
/// `th` is a live TCB.
unsafe fn name_of(th: *const ThreadCtl) -> String {
    // SAFETY: per the contract; copied before use.
    let raw = unsafe { core::ptr::read_volatile(&raw const (*th).name) };
    let n = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..n]).into_owned()
}

fn describe_wait(w: Wait) -> String {
    match w {
        Wait::Sleep => "sleep".into(),
        Wait::Io { what, fd } => format!("{what} on fd {fd}"),
        Wait::Unet { what, fd } => format!("{what} on unet fd {fd}"),
        Wait::Lock(what) => what.into(),
        Wait::Join => "join".into(),
        Wait::Call => "call on another thread".into(),
        Wait::Other => "event".into(),
    }
}

/// One line per thread of vcpu `v`: id, name, state, what it waits for and
/// for how long.
///
/// # Safety
/// `v` is the calling OS thread's vcpu; no switch happens while this runs.
unsafe fn render(v: *mut Vcpu) -> String {
    let now = now_us();
    let wait_now = super::thread::wait_clock_us();
    let mut out = String::new();
    // SAFETY: per the contract: the vcpu's own threads, none running but
    // the caller (or none, from the idle thread).
    unsafe {
        let _ = writeln!(
            out,
            "photon: vcpu {} ({} engine): {} threads",
            (*v).id,
            (*v).engine.name(),
            (*v).threads.len() + 1
        );
        let mut th = (*v).main;
        let mut first = true;
        while !th.is_null() {
            let id = (*th).handle.0;
            let name = name_of(th);
            let role = if first { " (main)" } else { "" };
            let state = match (*th).state {
                _ if th == (*v).current => "running".to_string(),
                State::Runnable => "runnable".to_string(),
                State::Blocked => {
                    let for_ms = wait_now.saturating_sub((*th).wait_since) as f64 / 1000.0;
                    let limit = match (*th).deadline {
                        u64::MAX => String::new(),
                        d => format!(", timeout in {:.1} ms", d.saturating_sub(now) as f64 / 1000.0),
                    };
                    format!("blocked: {} for {for_ms:.1} ms{limit}", describe_wait((*th).wait))
                }
                State::Migrating => "migrating".to_string(),
                State::Dead => "ended".to_string(),
            };
            let _ = writeln!(out, "  thread {id:#x}{role} \"{name}\": {state}");
            th = if first { (*v).threads.head() } else { (*th).all_next };
            first = false;
        }
    }
    out
}

/// Writes all of `text` to `fd` with raw syscalls (never a coroutine wait,
/// never the preload shim).
fn write_all(fd: i32, text: &[u8]) -> Result<(), Errno> {
    let mut rest = text;
    while !rest.is_empty() {
        // SAFETY: writes from a live slice.
        let n = unsafe { crate::sys::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n < 0 {
            let e = Errno::last_os_error();
            if e.0 == libc::EINTR {
                continue;
            }
            if e.0 == libc::EAGAIN {
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one live pollfd.
                unsafe { crate::sys::poll(&mut p, 1, 100) };
                continue;
            }
            return Err(e);
        }
        rest = &rest[n as usize..];
    }
    Ok(())
}

/// `photon_dump_threads(fd)`: the calling vcpu's threads, written to `fd`.
pub fn dump(fd: i32) -> Result<(), Errno> {
    if fd < 0 {
        return Err(Errno(libc::EBADF));
    }
    let v = on_vcpu()?;
    // SAFETY: this OS thread's live vcpu; rendering does not switch.
    let text = unsafe { render(v) };
    write_all(fd, text.as_bytes())
}

/// A [`Msg::Dump`] arrived: dump to stderr.
///
/// # Safety
/// `v` is the calling OS thread's vcpu.
pub(super) unsafe fn dump_on_request(v: *mut Vcpu) {
    // SAFETY: per the contract.
    let text = unsafe { render(v) };
    let _ = write_all(2, text.as_bytes());
}

// ---------------------------------------------------------------------------
// The monitor thread: PHOTON_DUMP_SIGNAL and PHOTON_STALL_MS
// ---------------------------------------------------------------------------

/// Write end of the pipe the dump signal's handler writes to.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_dump_signal(_sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(Relaxed);
    if fd >= 0 {
        let b = 1u8;
        // SAFETY: write(2) is async-signal-safe; errno is saved around it.
        unsafe {
            let e = *libc::__errno_location();
            crate::sys::write(fd, (&raw const b).cast(), 1);
            *libc::__errno_location() = e;
        }
    }
}

/// A signal number from `SIGUSR2`, `USR2` or `12`.
fn parse_signal(s: &str) -> Option<libc::c_int> {
    let s = s.trim();
    if let Ok(n) = s.parse::<libc::c_int>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    Some(match name {
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "HUP" => libc::SIGHUP,
        "QUIT" => libc::SIGQUIT,
        "WINCH" => libc::SIGWINCH,
        "PWR" => libc::SIGPWR,
        "URG" => libc::SIGURG,
        _ => return None,
    })
}

/// The stall warning's threshold when `PHOTON_STALL_MS` is unset: a vcpu
/// whose thread runs a second without yielding is stuck in a computation
/// or in a blocking call that is not a photon wait (a libc call made
/// without the preload shim, a plain pthread lock), and says so.
const DEFAULT_STALL_MS: u64 = 1000;

/// The stall threshold from `PHOTON_STALL_MS` (unset: [`DEFAULT_STALL_MS`];
/// `0` or `off`: no stall warnings).
fn stall_threshold() -> Option<u64> {
    let Ok(s) = std::env::var("PHOTON_STALL_MS") else {
        return Some(DEFAULT_STALL_MS);
    };
    match s.trim().parse::<u64>() {
        Ok(0) => None,
        Ok(ms) => Some(ms),
        Err(_) if s.trim().eq_ignore_ascii_case("off") => None,
        Err(_) => {
            log::warn!(
                "photon: PHOTON_STALL_MS={s} is not a number of milliseconds: the default ({DEFAULT_STALL_MS}) applies"
            );
            Some(DEFAULT_STALL_MS)
        }
    }
}

/// Starts the monitor once per process (called by `photon_init`): it warns
/// about stalls unless `PHOTON_STALL_MS=0`, and dumps threads on
/// `PHOTON_DUMP_SIGNAL`.
pub(crate) fn start_monitor() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let signal = std::env::var("PHOTON_DUMP_SIGNAL").ok().and_then(|s| {
            let sig = parse_signal(&s);
            if sig.is_none() {
                log::warn!("photon: PHOTON_DUMP_SIGNAL={s} is not a signal name or number: ignored");
            }
            sig
        });
        let stall_ms = stall_threshold();
        if signal.is_none() && stall_ms.is_none() {
            return;
        }
        let mut pipe_rd = -1;
        if let Some(sig) = signal {
            let mut fds = [0; 2];
            // SAFETY: a fresh pipe into a live array.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
                log::warn!("photon: PHOTON_DUMP_SIGNAL: no pipe: {}", Errno::last_os_error());
            } else {
                pipe_rd = fds[0];
                SIGNAL_PIPE.store(fds[1], Relaxed);
                // SAFETY: installs a handler that only writes to a pipe.
                unsafe {
                    let mut sa: libc::sigaction = core::mem::zeroed();
                    sa.sa_sigaction = on_dump_signal as *const () as usize;
                    sa.sa_flags = libc::SA_RESTART;
                    libc::sigemptyset(&mut sa.sa_mask);
                    if libc::sigaction(sig, &sa, core::ptr::null_mut()) != 0 {
                        log::warn!("photon: PHOTON_DUMP_SIGNAL: sigaction: {}", Errno::last_os_error());
                    }
                }
                log::debug!("photon: thread dumps on signal {sig}");
            }
        }
        // The monitor takes its own fd table (see private_fds), holding
        // only the pipe's read end and a pidfd: the program's table then
        // stays unshared while a vcpu is its only thread. This thread waits
        // until it has, then closes what the monitor took from the shared
        // table.
        let pidfd = private_fds::prepare();
        let pidfd_raw = pidfd.as_ref().map(|p| p.raw());
        let (entered_tx, entered_rx) = std::sync::mpsc::sync_channel(1);
        let spawned = crate::sys::spawn_service_thread("photon-monitor", 256 << 10, move || {
            let mut keep = [pipe_rd];
            let own = pidfd.and_then(|p| PrivateFds::enter(p, &mut keep));
            let _ = entered_tx.send(own.is_some());
            monitor(keep[0], stall_ms, own)
        });
        match spawned {
            Err(e) => log::warn!("photon: cannot start the monitor thread: {e}"),
            Ok(()) if entered_rx.recv() == Ok(true) && pipe_rd >= 0 => {
                // SAFETY: the pipe end this function made; the monitor has
                // its own copy now.
                unsafe { crate::sys::close(pipe_rd) };
            }
            Ok(()) => {}
        }
        if let Some(fd) = pidfd_raw {
            // SAFETY: the pidfd `prepare` made; the monitor has its own
            // copy, or does not use it.
            unsafe { crate::sys::close(fd) };
        }
    });
}

/// What the monitor remembers of a vcpu between two looks.
struct Seen {
    switches: u64,
    since: u64,
    warned: bool,
}

/// The monitor's loop; `own`: its own fd table, if it has one (standard
/// error is then fetched for each warning).
fn monitor(pipe_rd: i32, stall_ms: Option<u64>, own: Option<PrivateFds>) {
    let period_ms = stall_ms.map_or(-1, |ms| (ms / 4).clamp(1, 1000) as i32);
    let mut seen: HashMap<u32, Seen> = HashMap::new();
    loop {
        if pipe_rd >= 0 {
            let mut p = libc::pollfd {
                fd: pipe_rd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one live pollfd.
            let r = unsafe { crate::sys::poll(&mut p, 1, period_ms) };
            if r > 0 {
                let mut buf = [0u8; 64];
                // SAFETY: drains into a live buffer.
                while unsafe { crate::sys::read(pipe_rd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
                for (_, r) in remote::all() {
                    match &own {
                        Some(own) => r.post_via(Msg::Dump, |n| own.notify(n)),
                        None => r.post(Msg::Dump),
                    }
                }
            }
        } else {
            std::thread::sleep(Duration::from_millis(period_ms as u64));
        }
        if let Some(ms) = stall_ms {
            check_stalls(ms, &mut seen, own.as_ref());
        }
    }
}

/// Warns once per episode about every vcpu whose running thread has not
/// yielded for `stall_ms`.
fn check_stalls(stall_ms: u64, seen: &mut HashMap<u32, Seen>, own: Option<&PrivateFds>) {
    let now = now_us();
    let all = remote::all();
    seen.retain(|id, _| all.iter().any(|(i, _)| i == id));
    for (id, r) in &all {
        let switches = r.switches.load(Relaxed);
        let s = seen.entry(*id).or_insert(Seen {
            switches,
            since: now,
            warned: false,
        });
        if switches != s.switches || r.is_sleeping() {
            *s = Seen {
                switches,
                since: now,
                warned: false,
            };
            continue;
        }
        let ran_ms = now.saturating_sub(s.since) / 1000;
        if ran_ms >= stall_ms && !s.warned {
            s.warned = true;
            let (tid, name) = running_thread(r, switches);
            let warn = || {
                log::warn!(
                    "photon: stall: thread {tid:#x} \"{name}\" on vcpu {id} has run for {ran_ms} ms without yielding: \
                 it computes, or blocks the vcpu's OS thread in a call that is not a photon wait (a libc call \
                 without the LD_PRELOAD shim, a plain lock); the vcpu's other threads wait meanwhile \
                 (PHOTON_STALL_MS={stall_ms}; 0 turns this warning off)"
                )
            };
            match own {
                Some(own) => own.with_stderr(warn),
                None => warn(),
            }
        }
    }
}

/// Id and name of the thread a stalled vcpu runs. The TCB is read from
/// another OS thread: it stays put while its thread keeps the CPU, and the
/// switch count is checked again afterwards (a changed one means the stall
/// ended meanwhile and the name may be stale). A vcpu's main thread (the
/// OS thread's own context, the only one without an entry function) is
/// called "main" unless it was given a name.
fn running_thread(r: &Remote, switches: u64) -> (u64, String) {
    let th = r.running.load(Relaxed) as *const ThreadCtl;
    if th.is_null() {
        return (0, String::new());
    }
    // SAFETY: see above: the stalled thread's TCB is live while it runs.
    let (id, mut name, is_main) = unsafe { ((*th).handle.0, name_of(th), (*th).entry.is_none()) };
    if name.is_empty() && is_main {
        name = String::from("main");
    }
    if r.switches.load(Relaxed) != switches {
        return (id, String::from("?"));
    }
    (id, name)
}
