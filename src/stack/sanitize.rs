//! Telling AddressSanitizer and Valgrind about photon stacks.
//!
//! - AddressSanitizer (a C or C++ program built with `-fsanitize=address`
//!   loads its runtime): every switch from one stack to another is
//!   announced with `__sanitizer_start_switch_fiber` and confirmed on the
//!   new stack with `__sanitizer_finish_switch_fiber`, so ASan knows which
//!   stack it is on (no false reports when a C++ exception or `longjmp`
//!   unwinds a photon stack, and fake stacks follow their thread). The two
//!   functions are looked up once (`dlsym`); without ASan the switch pays
//!   one predictable branch.
//! - Valgrind: every photon stack is registered (`VALGRIND_STACK_REGISTER`)
//!   while it is mapped, so memcheck treats a switch as a stack change and
//!   not as a huge stack-pointer move.

use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use crate::arch;

type StartFn = unsafe extern "C" fn(fake_stack_save: *mut *mut c_void, bottom: *const c_void, size: usize);
type FinishFn =
    unsafe extern "C" fn(fake_stack_save: *mut c_void, bottom_old: *mut *const c_void, size_old: *mut usize);

static ASAN: AtomicBool = AtomicBool::new(false);
static START: AtomicUsize = AtomicUsize::new(0);
static FINISH: AtomicUsize = AtomicUsize::new(0);

/// Looks for AddressSanitizer's fiber interface in the process (once per
/// vcpu start; cheap).
pub fn detect() {
    // SAFETY: dlsym with NUL-terminated names.
    let (s, f) = unsafe {
        (
            libc::dlsym(libc::RTLD_DEFAULT, c"__sanitizer_start_switch_fiber".as_ptr()) as usize,
            libc::dlsym(libc::RTLD_DEFAULT, c"__sanitizer_finish_switch_fiber".as_ptr()) as usize,
        )
    };
    if s != 0 && f != 0 {
        START.store(s, Relaxed);
        FINISH.store(f, Relaxed);
        if !ASAN.swap(true, Relaxed) {
            log::debug!("photon: AddressSanitizer found: stack switches are announced to it");
        }
    }
}

/// True when switches must be announced to AddressSanitizer.
#[inline(always)]
pub fn asan() -> bool {
    ASAN.load(Relaxed)
}

/// Before switching to the stack `[bottom, bottom + size)`. `save` is
/// where the leaving context keeps its fake stack (NULL when the leaving
/// context ends for good).
///
/// # Safety
/// [`asan`] is true; a switch follows at once.
#[cold]
pub unsafe fn start_switch(save: *mut *mut c_void, bottom: *const u8, size: usize) {
    // SAFETY: the function detect() found, with its documented signature.
    unsafe {
        let f: StartFn = core::mem::transmute(START.load(Relaxed));
        f(save, bottom.cast(), size);
    }
}

/// First thing on the stack switched to; `save` is what this context
/// stored when it left (NULL for a fresh stack).
///
/// # Safety
/// [`asan`] is true; called right after a switch.
#[cold]
pub unsafe fn finish_switch(save: *mut c_void) {
    // SAFETY: as in start_switch.
    unsafe {
        let f: FinishFn = core::mem::transmute(FINISH.load(Relaxed));
        f(save, core::ptr::null_mut(), core::ptr::null_mut());
    }
}

const RUNNING_ON_VALGRIND: usize = 0x1001;
const STACK_REGISTER: usize = 0x1501;
const STACK_DEREGISTER: usize = 0x1502;

/// True when the process runs under Valgrind.
pub fn on_valgrind() -> bool {
    static CACHED: AtomicUsize = AtomicUsize::new(usize::MAX);
    let c = CACHED.load(Relaxed);
    if c != usize::MAX {
        return c != 0;
    }
    let n = arch::valgrind_request(0, &[RUNNING_ON_VALGRIND, 0, 0, 0, 0, 0]);
    CACHED.store(n, Relaxed);
    n != 0
}

/// Registers `[lo, hi)` as a stack with Valgrind: its id (0 natively).
pub fn register_stack(lo: *const u8, hi: *const u8) -> usize {
    if !on_valgrind() {
        return 0;
    }
    arch::valgrind_request(0, &[STACK_REGISTER, lo as usize, hi as usize, 0, 0, 0])
}

/// Tells memcheck that `[lo, hi)` is writable memory with undefined
/// contents: a reused stack's top, about to get a fresh TCB and first frame
/// (memcheck marks what lies below a stack's last stack pointer as
/// inaccessible).
pub fn make_undefined(lo: *const u8, hi: *const u8) {
    const MAKE_MEM_UNDEFINED: usize = 0x4d43_0001; // ('M' << 24) | ('C' << 16) | 1
    if on_valgrind() {
        arch::valgrind_request(
            0,
            &[MAKE_MEM_UNDEFINED, lo as usize, hi as usize - lo as usize, 0, 0, 0],
        );
    }
}

/// Tells memcheck that `[p, p + len)` now holds defined data (written by the
/// kernel in a way memcheck cannot follow, such as process_vm_writev).
pub fn make_defined(p: *const u8, len: usize) {
    const MAKE_MEM_DEFINED: usize = 0x4d43_0002; // ('M' << 24) | ('C' << 16) | 2
    if len != 0 && on_valgrind() {
        arch::valgrind_request(0, &[MAKE_MEM_DEFINED, p as usize, len, 0, 0, 0]);
    }
}

/// Forgets a stack registered by [`register_stack`].
pub fn deregister_stack(id: usize) {
    if id != 0 {
        arch::valgrind_request(0, &[STACK_DEREGISTER, id, 0, 0, 0, 0]);
    }
}
