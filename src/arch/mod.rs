//! The context switch: one module per CPU, the only place with assembly.
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
//! - [`init_stack`] lays out a fresh stack so that the first switch to it
//!   calls `entry(arg, data)` there. `entry` must never return.

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::{init_stack, switch, tls_get, tls_set};

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
pub use aarch64::{init_stack, switch, tls_get, tls_set};

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("libphoton supports x86-64 and aarch64 only");

/// Saved stack pointer of a suspended context.
pub type StackPointer = *mut u8;

/// The entry function of a fresh context: `arg` is what the first switch to
/// it passed, `data` what [`init_stack`] was given.
pub type EntryFn = unsafe extern "C" fn(arg: usize, data: *mut u8) -> !;
