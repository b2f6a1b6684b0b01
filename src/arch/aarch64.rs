//! AArch64 (AAPCS64). Written to the same contract as x86-64; not yet
//! measured, and compiled only where an aarch64 toolchain is at hand.
//!
//! Callee-saved by the ABI: x19-x29, x30 (lr), sp, the low halves of
//! v8-v15, FPCR. x19 and x29 cannot be inline-asm operands, so they are
//! stored by hand; the rest are clobbers, so the compiler saves what is live.
//!
//! A suspended context's stack, growing down (sp stays 16-byte aligned):
//!
//! ```text
//!   | x19      | x29 (fp)   |
//!   | FPCR     | resume pc  |  <- saved StackPointer
//! ```
//!
//! A fresh stack: `[top-16] data, [top-8] entry`, below them
//! `[top-32] start_trampoline, [top-24] FPCR = 0`.

use super::{EntryFn, StackPointer};
use core::arch::{asm, naked_asm};

/// Switches from the running context to `to`; see the module contract.
///
/// # Safety
/// As for the x86-64 version: `to` is a suspended or fresh context, `from`
/// stays valid until this context is resumed.
#[inline(always)]
pub unsafe fn switch(from: *mut StackPointer, to: StackPointer, arg: usize) -> usize {
    let ret: usize;
    // SAFETY: the caller guarantees both contexts; every register the other
    // side may change is an operand or clobber, x19/x29 are saved by hand.
    unsafe {
        asm!(
            "stp x29, x19, [sp, #-16]!", // registers asm may not name
            "adr x10, 2f",               // resume address
            "mrs x11, fpcr",             // FP control
            "stp x10, x11, [sp, #-16]!",
            "mov x11, sp",
            "str x11, [x0]",             // publish our stack pointer
            "mov sp, x1",                // adopt the other stack
            "ldp x10, x11, [sp], #16",   // its resume address and FPCR
            "msr fpcr, x11",
            "br x10",
            "2:",
            "ldp x29, x19, [sp], #16",
            inout("x0") from => _,
            inout("x1") to => _,
            inout("x2") arg => ret,
            out("x20") _, out("x21") _, out("x22") _, out("x23") _, out("x24") _,
            out("x25") _, out("x26") _, out("x27") _, out("x28") _, out("lr") _,
            out("v8") _, out("v9") _, out("v10") _, out("v11") _,
            out("v12") _, out("v13") _, out("v14") _, out("v15") _,
            clobber_abi("C"),
        );
    }
    ret
}

/// Lays out a fresh stack; see the module contract.
///
/// # Safety
/// `top` is the 16-byte aligned top of writable memory large enough for `entry`.
pub unsafe fn init_stack(top: *mut u8, entry: EntryFn, data: *mut u8) -> StackPointer {
    let top = top.cast::<usize>();
    // SAFETY: the caller guarantees the four words below `top` are ours.
    unsafe {
        top.sub(1).write(entry as *const () as usize);
        top.sub(2).write(data as usize);
        top.sub(3).write(0); // FPCR: round to nearest, no traps
        top.sub(4).write(start_trampoline as *const () as usize);
        top.sub(4).cast()
    }
}

/// First code on a fresh stack: x2 holds the switch's arg, sp points at data.
#[unsafe(naked)]
unsafe extern "C" fn start_trampoline() -> ! {
    naked_asm!(
        "mov x0, x2",       // entry's arg
        "ldp x1, x9, [sp]", // data, entry
        "mov x29, xzr",     // end the frame chain
        "mov x30, xzr",
        "blr x9",
        "brk #1", // entry never returns
    )
}

// The vcpu pointer of the calling OS thread, initial-exec TLS (see x86_64.rs).
core::arch::global_asm!(
    ".pushsection .tbss,\"awT\",@nobits",
    ".p2align 3",
    ".globl photon_current_vcpu",
    ".hidden photon_current_vcpu",
    "photon_current_vcpu:",
    ".zero 8",
    ".popsection",
);

/// Reads the calling OS thread's vcpu pointer.
#[inline(always)]
pub fn tls_get() -> *mut u8 {
    let p: *mut u8;
    // SAFETY: reads this thread's TLS slot; no other effect.
    unsafe {
        asm!(
            "mrs {t}, tpidr_el0",
            "adrp {o}, :gottprel:photon_current_vcpu",
            "ldr {o}, [{o}, #:gottprel_lo12:photon_current_vcpu]",
            "ldr {p}, [{t}, {o}]",
            t = out(reg) _, o = out(reg) _, p = out(reg) p,
            options(nostack, preserves_flags, readonly),
        );
    }
    p
}

/// Sets the calling OS thread's vcpu pointer.
#[inline(always)]
pub fn tls_set(v: *mut u8) {
    // SAFETY: writes this thread's TLS slot only.
    unsafe {
        asm!(
            "mrs {t}, tpidr_el0",
            "adrp {o}, :gottprel:photon_current_vcpu",
            "ldr {o}, [{o}, #:gottprel_lo12:photon_current_vcpu]",
            "str {v}, [{t}, {o}]",
            t = out(reg) _, o = out(reg) _, v = in(reg) v,
            options(nostack, preserves_flags),
        );
    }
}

/// System call `nr` with six arguments, made here rather than through
/// libc's generic `syscall()`: the kernel's result, `-errno` on failure,
/// errno untouched.
///
/// # Safety
/// As the system call's own contract.
#[inline(always)]
pub unsafe fn syscall6(nr: usize, a: [usize; 6]) -> isize {
    let r: isize;
    // SAFETY: per the contract. `svc` changes only x0 (the result).
    unsafe {
        asm!(
            "svc 0",
            in("x8") nr,
            inlateout("x0") a[0] as isize => r,
            in("x1") a[1], in("x2") a[2], in("x3") a[3], in("x4") a[4], in("x5") a[5],
            options(nostack, preserves_flags),
        );
    }
    r
}

/// A Valgrind client request (`request` and up to five arguments): the
/// documented no-op instruction sequence Valgrind recognises. Natively it
/// does nothing and returns `default`.
#[inline(never)]
pub fn valgrind_request(default: usize, args: &[usize; 6]) -> usize {
    let mut result = default;
    // SAFETY: the rotations add up to 128 bits (x12 unchanged) and
    // `orr x10, x10, x10` is a no-op; Valgrind reads args through x4 and
    // writes the result into x3.
    unsafe {
        core::arch::asm!(
            "ror x12, x12, #3",
            "ror x12, x12, #13",
            "ror x12, x12, #51",
            "ror x12, x12, #61",
            "orr x10, x10, x10",
            in("x4") args.as_ptr(),
            inout("x3") result,
            out("x12") _,
            options(nostack),
        );
    }
    result
}
