//! Stack overflow in a photon thread: the guard page faults, and a SIGSEGV /
//! SIGBUS handler running on an alternate signal stack prints one clear line
//! naming the thread and its stack size, then aborts. Faults that are not a
//! photon guard page go to whatever handler was installed before ours (or
//! the default action), unchanged.

use core::mem::MaybeUninit;
use core::ptr;
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Stack;

/// Tells whether a faulting address is the guard page of the photon thread
/// running on this OS thread, and if so its id and usable stack size.
/// Called in signal context: must not allocate or lock.
pub type GuardLookup = fn(fault_addr: usize) -> Option<(u64, usize)>;

static LOOKUP: AtomicUsize = AtomicUsize::new(0);
static mut OLD_SEGV: MaybeUninit<libc::sigaction> = MaybeUninit::zeroed();
static mut OLD_BUS: MaybeUninit<libc::sigaction> = MaybeUninit::zeroed();

/// Installs the process-wide SIGSEGV/SIGBUS handler once.
pub fn install_overflow_handler(lookup: GuardLookup) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        LOOKUP.store(lookup as usize, Ordering::Release);
        // SAFETY: sigaction with a fully initialised struct; the OLD_* statics
        // are written once here, before the handler can run, and only read after.
        unsafe {
            let mut sa: libc::sigaction = core::mem::zeroed();
            sa.sa_sigaction = on_fault as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGSEGV, &sa, (&raw mut OLD_SEGV).cast());
            libc::sigaction(libc::SIGBUS, &sa, (&raw mut OLD_BUS).cast());
        }
    });
}

extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    let lookup = LOOKUP.load(Ordering::Acquire);
    if lookup != 0 {
        // SAFETY: LOOKUP only ever holds a GuardLookup stored above.
        let lookup: GuardLookup = unsafe { core::mem::transmute::<usize, GuardLookup>(lookup) };
        if let Some((id, size)) = lookup(addr) {
            report_and_abort(id, size);
        }
    }
    // Not ours: chain to the previous disposition.
    // SAFETY: OLD_* were filled by sigaction before our handler was installed.
    let old = unsafe {
        if sig == libc::SIGBUS {
            (&raw const OLD_BUS).cast::<libc::sigaction>().read()
        } else {
            (&raw const OLD_SEGV).cast::<libc::sigaction>().read()
        }
    };
    if old.sa_sigaction == libc::SIG_DFL || old.sa_sigaction == libc::SIG_IGN {
        // Restore the default and return: the faulting instruction runs again
        // and the process dies of the original signal, as without us.
        // SAFETY: resetting a disposition is async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = core::mem::zeroed();
            sa.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &sa, ptr::null_mut());
        }
    } else if old.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous handler was registered as a three-argument handler.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { core::mem::transmute(old.sa_sigaction) };
        f(sig, info, ctx);
    } else {
        // SAFETY: the previous handler was registered as a one-argument handler.
        let f: extern "C" fn(libc::c_int) = unsafe { core::mem::transmute(old.sa_sigaction) };
        f(sig);
    }
}

/// Writes the message with write(2) only (async-signal-safe) and aborts.
fn report_and_abort(id: u64, size: usize) -> ! {
    let mut buf = [0u8; 160];
    let mut n = 0;
    for part in [
        &b"photon: stack overflow in photon thread "[..],
        fmt_u64(id, &mut [0; 20]),
        b" (stack size ",
        fmt_u64(size as u64, &mut [0; 20]),
        b" bytes); raise the stack_size given to photon_thread_create. Aborting.\n",
    ] {
        let m = part.len().min(buf.len() - n);
        buf[n..n + m].copy_from_slice(&part[..m]);
        n += m;
    }
    // SAFETY: write and abort are async-signal-safe.
    unsafe {
        crate::sys::write(2, buf.as_ptr().cast(), n);
        libc::abort();
    }
}

fn fmt_u64(mut v: u64, out: &mut [u8; 20]) -> &[u8] {
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &out[i..] // the digits, right-aligned in `out`
}

/// An alternate signal stack for the calling OS thread, installed only if it
/// had none; removed again on drop (if it is still the one in place).
pub struct AltStack {
    stack: Option<Stack>,
}

impl AltStack {
    /// Makes sure the calling thread can run the overflow handler.
    pub fn install() -> AltStack {
        // SAFETY: querying the current alternate stack into a zeroed struct.
        let mut cur: libc::stack_t = unsafe { core::mem::zeroed() };
        // SAFETY: a valid out pointer.
        unsafe { libc::sigaltstack(ptr::null(), &mut cur) };
        if cur.ss_flags & libc::SS_DISABLE == 0 {
            return AltStack { stack: None }; // the thread already has one (e.g. Rust's std)
        }
        let Ok(stack) = Stack::new(64 << 10) else {
            log::warn!("photon: no alternate signal stack: stack overflows will not be reported clearly");
            return AltStack { stack: None };
        };
        let ss = libc::stack_t {
            ss_sp: stack.guard().1 as *mut libc::c_void,
            ss_flags: 0,
            ss_size: stack.size(),
        };
        // SAFETY: ss describes memory we own for as long as it is installed.
        unsafe { libc::sigaltstack(&ss, ptr::null_mut()) };
        AltStack { stack: Some(stack) }
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        if let Some(stack) = &self.stack {
            // SAFETY: query, then disable only if ours is still installed.
            unsafe {
                let mut cur: libc::stack_t = core::mem::zeroed();
                libc::sigaltstack(ptr::null(), &mut cur);
                if cur.ss_sp as usize == stack.guard().1 {
                    let off = libc::stack_t {
                        ss_sp: ptr::null_mut(),
                        ss_flags: libc::SS_DISABLE,
                        ss_size: 0,
                    };
                    libc::sigaltstack(&off, ptr::null_mut());
                }
            }
        }
    }
}
