//! The context switch (and the few other things that need assembly: the
//! TLS slot, Valgrind requests, a raw system call): one module per CPU,
//! the only place with assembly.
//!
//! Contract, the same on every CPU:
//! - A suspended context is represented by its saved stack pointer
//!   ([`StackPointer`]). Everything else it needs to resume (callee-saved
//!   registers the compiler could not keep elsewhere, the floating-point
//!   control state, the resume address) sits on its own stack just below
//!   that pointer.
//! - [`switch`] saves the current context, stores its stack pointer into
//!   `*from`, resumes `to`, and hands `arg` across: the resumed side sees it
//!   as the return value of its own `switch` (or as the first argument of
//!   its entry function, for a fresh stack). The scheduler uses `arg` to pass
//!   "run this after you are on your stack" work, such as recycling the stack
//!   of the thread that just ended.
//! - The switch is inline assembly whose clobber list names every register
//!   the ABI lets a callee change, so the compiler saves only the registers
//!   that are live at each call site; the registers inline assembly may not
//!   name (frame pointer and base register) are saved by hand.
//! - [`switch_final`] resumes a context from one that never runs again
//!   (saves nothing of it).
//! - [`init_stack`] lays out a fresh stack so that the first switch to it
//!   calls `entry(arg, data)` there. `entry` must never return.

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::{init_stack, switch, switch_final, syscall6, tls_get, tls_set, valgrind_request};

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
pub use aarch64::{init_stack, switch, syscall6, tls_get, tls_set, valgrind_request};

/// Resumes `to` from a context that never runs again (a thread that
/// ended): [`switch`] with the leaving context's save thrown away.
///
/// # Safety
/// As [`switch`]'s `to`; the calling context is never resumed.
#[cfg(target_arch = "aarch64")]
pub unsafe fn switch_final(to: StackPointer, arg: usize) -> ! {
    let mut unused: StackPointer = core::ptr::null_mut();
    // SAFETY: per the contract.
    unsafe { switch(&mut unused, to, arg) };
    unreachable!("an ended context was resumed");
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("libphoton supports x86-64 and aarch64 only");

/// Saved stack pointer of a suspended context.
pub type StackPointer = *mut u8;

/// The entry function of a fresh context: `arg` is what the first switch to
/// it passed, `data` what [`init_stack`] was given.
pub type EntryFn = unsafe extern "C" fn(arg: usize, data: *mut u8) -> !;

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::stack::Stack;
    use core::arch::asm;

    fn mxcsr() -> u32 {
        let mut v: u32 = 0;
        // SAFETY: stores MXCSR into a local.
        unsafe { asm!("stmxcsr [{}]", in(reg) &mut v, options(nostack)) };
        v
    }

    fn set_mxcsr(v: u32) {
        // SAFETY: loads a valid MXCSR value from a local.
        unsafe { asm!("ldmxcsr [{}]", in(reg) &v, options(nostack)) };
    }

    static mut MAIN_SP: StackPointer = core::ptr::null_mut();
    static mut CHILD_SP: StackPointer = core::ptr::null_mut();

    unsafe extern "C" fn child(_arg: usize, _data: *mut u8) -> ! {
        // Round toward zero here (control bits 13-14), and raise a status flag.
        set_mxcsr((mxcsr() | 0x6000) | 0x20);
        loop {
            // SAFETY: main is suspended in its own switch.
            unsafe { switch(&raw mut CHILD_SP, MAIN_SP, mxcsr() as usize) };
        }
    }

    #[test]
    fn each_context_keeps_its_fp_control_bits() {
        let stack = Stack::new(64 << 10).unwrap();
        let before = mxcsr();
        // SAFETY: a fresh stack; the statics are touched by this test only.
        unsafe {
            CHILD_SP = init_stack(stack.top(), child, core::ptr::null_mut());
            let child_mxcsr = switch(&raw mut MAIN_SP, CHILD_SP, 0) as u32;
            assert_eq!(
                child_mxcsr & 0x6000,
                0x6000,
                "the child runs with its own rounding mode"
            );
            assert_eq!(mxcsr() & 0xffc0, before & 0xffc0, "main's control bits come back");
            let again = switch(&raw mut MAIN_SP, CHILD_SP, 0) as u32;
            assert_eq!(again & 0x6000, 0x6000, "the child's control bits come back too");
        }
        set_mxcsr(before);
    }

    static mut MAIN2_SP: StackPointer = core::ptr::null_mut();

    unsafe extern "C" fn ending_child(_arg: usize, _data: *mut u8) -> ! {
        // Round toward +inf (control bits 13-14 = 10) and a different x87
        // precision control, then end: main must get its own state back.
        set_mxcsr((mxcsr() & !0x6000) | 0x4000);
        let cw: u16 = 0x027f;
        // SAFETY: loads a valid x87 control word from a local.
        unsafe { asm!("fldcw [{}]", in(reg) &cw, options(nostack)) };
        // SAFETY: main is suspended in its own switch; we never run again.
        unsafe { switch_final(MAIN2_SP, 7) }
    }

    #[test]
    fn an_ending_context_hands_back_the_resumed_ones_fp_state() {
        let stack = Stack::new(64 << 10).unwrap();
        let before = mxcsr();
        let mut cw_before: u16 = 0;
        // SAFETY: stores the x87 control word into a local.
        unsafe { asm!("fnstcw [{}]", in(reg) &mut cw_before, options(nostack)) };
        // SAFETY: a fresh stack; the statics are touched by this test only.
        let r = unsafe {
            let sp = init_stack(stack.top(), ending_child, core::ptr::null_mut());
            switch(&raw mut MAIN2_SP, sp, 0)
        };
        assert_eq!(r, 7, "switch_final passes its argument");
        assert_eq!(mxcsr() & 0xffc0, before & 0xffc0, "main's MXCSR control bits come back");
        let mut cw: u16 = 0;
        // SAFETY: as above.
        unsafe { asm!("fnstcw [{}]", in(reg) &mut cw, options(nostack)) };
        assert_eq!(cw, cw_before, "main's x87 control word comes back");
        set_mxcsr(before);
    }
}
