//! x86-64 System V.
//!
//! Callee-saved by the ABI: rbx, rbp, r12-r15, rsp, the MXCSR control bits
//! and the x87 control word. rbx and rbp cannot be inline-asm operands, so
//! they are pushed by hand; r12-r15 and every caller-saved register are
//! declared clobbered, so the compiler spills only what is live.
//!
//! The FP control state is saved on every switch, and loaded only when the
//! control bits of the context being resumed differ from the leaving
//! context's (`ldmxcsr`/`fldcw` are slow, and the state almost never
//! differs between coroutines). The leaving side compares its freshly saved
//! word with the one the resumed context saved, before it jumps, so the
//! resumed side only pops. MXCSR's status flags (bits 0-5) are caller-saved
//! and take no part: comparing them made every switch reload MXCSR once two
//! coroutines had raised different exception flags (60-90 ns a switch
//! instead of 5).
//!
//! A suspended context's stack, growing down:
//!
//! ```text
//!   | ...caller frames...   |
//!   | saved rbp             |
//!   | saved rbx             |
//!   | x87 CW  | MXCSR       |  8 bytes: [sp+8] MXCSR, [sp+12] FPU control word
//!   | resume address        |  <- saved StackPointer
//! ```
//!
//! A fresh stack made by [`init_stack`] has the same FP word, the creator's:
//!
//! ```text
//!   top ->                       (16-byte aligned, exclusive)
//!   | entry function        |  top-8
//!   | data                  |  top-16
//!   | x87 CW  | MXCSR       |  top-24
//!   | start_trampoline      |  top-32   <- StackPointer returned
//! ```

use super::{EntryFn, StackPointer};
use core::arch::{asm, naked_asm};

/// Switches from the running context to `to`.
///
/// Saves the running context, writes its stack pointer to `*from`, resumes
/// `to` and passes it `arg`. Returns the `arg` of the switch that later
/// resumes this context.
///
/// # Safety
/// `to` must be a context suspended by `switch` or made by [`init_stack`],
/// on memory that stays valid; `from` must be writable and stay valid until
/// the context is resumed.
#[inline(always)]
pub unsafe fn switch(from: *mut StackPointer, to: StackPointer, arg: usize) -> usize {
    let ret: usize;
    // SAFETY: the caller guarantees both contexts; every register the other
    // side may change is an operand or clobber, rbx/rbp are saved by hand.
    unsafe {
        asm!(
            "push rbp",                // rbp cannot be a clobber: save it
            "push rbx",                // rbx likewise (LLVM's base register)
            "sub rsp, 8",              // room for the FP control state
            "stmxcsr [rsp]",           // MXCSR (rounding, exception masks)
            "fnstcw [rsp + 4]",        // x87 control word
            "lea rax, [rip + 2f]",     // where this context resumes
            "push rax",
            "mov [rdi], rsp",          // publish our stack pointer
            "mov eax, [rsi + 8]",      // the resumed context's MXCSR...
            "xor eax, [rsp + 8]",      // ...against ours
            "test eax, 0xffc0",        // control bits only: the status flags (0-5) are caller-saved
            "jnz 4f",                  // rare: MXCSR control differs
            "3:",
            "mov ax, [rsi + 12]",      // the x87 control words
            "cmp ax, [rsp + 12]",
            "jne 5f",                  // rare: they differ
            "6:",
            "mov rsp, rsi",            // adopt the other context's stack
            "pop rax",                 // its resume address
            "jmp rax",                 // jmp, not ret: keeps the return stack buffer in step
            "4:",
            "ldmxcsr [rsi + 8]",
            "jmp 3b",
            "5:",
            "fldcw [rsi + 12]",
            "jmp 6b",
            "2:",                      // back on our stack, FP control already ours
            "add rsp, 8",
            "pop rbx",
            "pop rbp",
            inout("rdi") from => _,
            inout("rsi") to => _,
            inout("rdx") arg => ret,   // arg travels in rdx both ways
            out("r12") _,
            out("r13") _,
            out("r14") _,
            out("r15") _,
            clobber_abi("C"),
        );
    }
    ret
}

/// Resumes `to` from a context that never runs again (a photon thread that
/// ended): nothing of the leaving context is saved, and the resumed
/// context's FP control state is loaded as it stands (`ldmxcsr` costs a
/// fraction of the `stmxcsr` a comparison would need; the x87 word is
/// compared first, `fldcw` being the slower one).
///
/// # Safety
/// As [`switch`]'s `to`; the calling context must never be resumed (its
/// stack may be reused as soon as `to` runs).
#[inline(always)]
pub unsafe fn switch_final(to: StackPointer, arg: usize) -> ! {
    // SAFETY: per the contract: `to` is a suspended context; we never return.
    unsafe {
        asm!(
            "ldmxcsr [rsi + 8]",       // MXCSR: control bits and (caller-saved) flags
            "sub rsp, 8",              // room on the dying stack (still ours until the jump)
            "fnstcw [rsp]",
            "mov ax, [rsi + 12]",
            "cmp ax, [rsp]",
            "je 2f",
            "fldcw [rsi + 12]",        // rare: the x87 control words differ
            "2:",
            "mov rsp, rsi",            // adopt the other context's stack
            "pop rax",                 // its resume address
            "jmp rax",
            in("rsi") to,
            in("rdx") arg,
            options(noreturn),
        );
    }
}

/// Lays out a fresh stack whose exclusive, 16-byte aligned top is `top`, so
/// that the first [`switch`] to the returned pointer calls
/// `entry(arg, data)` on it.
///
/// # Safety
/// `top` must be the top of writable memory with at least 32 bytes below it
/// and room for everything `entry` will run.
pub unsafe fn init_stack(top: *mut u8, entry: EntryFn, data: *mut u8) -> StackPointer {
    debug_assert_eq!(top as usize % 16, 0);
    let top = top.cast::<usize>();
    // SAFETY: the caller guarantees the four words below `top` are ours;
    // the FP word is the creator's control state, stored there.
    unsafe {
        top.sub(1).write(entry as *const () as usize);
        top.sub(2).write(data as usize);
        let fp = top.sub(3).cast::<u8>();
        asm!(
            "stmxcsr [{fp}]",
            "fnstcw [{fp} + 4]",
            fp = in(reg) fp,
            options(nostack, preserves_flags),
        );
        top.sub(4).write(start_trampoline as *const () as usize);
        top.sub(4).cast()
    }
}

/// First code run on a fresh stack: `rdx` holds the switch's `arg`, `rsp`
/// points at the FP word (already in force), `data` and `entry` above it.
#[unsafe(naked)]
unsafe extern "C" fn start_trampoline() -> ! {
    naked_asm!(
        "add rsp, 8",     // past the FP word: rsp -> data (16-byte aligned)
        "mov rdi, rdx",   // entry's first argument: the switch's arg
        "mov rsi, [rsp]", // second: data
        "xor ebp, ebp",   // end the frame-pointer chain here
        "call [rsp + 8]", // entry(arg, data); pushes a return address, so entry sees rsp = 8 mod 16
        "ud2",            // entry never returns
    )
}

// The vcpu pointer of the calling OS thread (a hidden symbol: shared by this
// crate's codegen units, never exported), in the initial-exec TLS model:
// one `fs:`-relative load, where a Rust `thread_local!` in a shared library
// costs a call to `__tls_get_addr`. (A library with initial-exec TLS can
// still be dlopen'ed: glibc reserves static TLS room for such small uses.)
core::arch::global_asm!(
    ".pushsection .tbss,\"awT\",@nobits",
    ".p2align 3",
    ".globl photon_current_vcpu",
    ".hidden photon_current_vcpu",
    "photon_current_vcpu:",
    ".zero 8",
    ".popsection",
);

/// A Valgrind client request (`request` and up to five arguments): the
/// documented no-op instruction sequence Valgrind recognises. Natively it
/// does nothing and returns `default`.
#[inline(never)]
pub fn valgrind_request(default: usize, args: &[usize; 6]) -> usize {
    let mut result = default;
    // SAFETY: the rotations add up to 128 bits (rdi unchanged) and
    // `xchg rbx, rbx` is a no-op; Valgrind reads args through rax and
    // writes the result into rdx.
    unsafe {
        asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            in("rax") args.as_ptr(),
            inout("rdx") result,
            out("rdi") _,
            options(nostack),
        );
    }
    result
}

/// System call `nr` with six arguments, made here rather than through
/// libc's generic `syscall()` (a call, seven arguments moved down one
/// register and one onto the stack, and errno set on failure): the kernel's
/// result, `-errno` on failure, errno untouched.
///
/// # Safety
/// As the system call's own contract.
#[inline(always)]
pub unsafe fn syscall6(nr: usize, a: [usize; 6]) -> isize {
    let r: isize;
    // SAFETY: per the contract. `syscall` clobbers rcx (return address)
    // and r11 (the flags, restored by sysret) and leaves the stack alone.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr as isize => r,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack, preserves_flags),
        );
    }
    r
}

/// Reads the calling OS thread's vcpu pointer.
#[inline(always)]
pub fn tls_get() -> *mut u8 {
    let p: *mut u8;
    // SAFETY: reads this thread's TLS slot; no other effect.
    unsafe {
        asm!(
            "mov {p}, qword ptr [rip + photon_current_vcpu@GOTTPOFF]", // offset from the thread pointer
            "mov {p}, qword ptr fs:[{p}]",
            p = out(reg) p,
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
            "mov {t}, qword ptr [rip + photon_current_vcpu@GOTTPOFF]",
            "mov qword ptr fs:[{t}], {v}",
            t = out(reg) _,
            v = in(reg) v,
            options(nostack, preserves_flags),
        );
    }
}
