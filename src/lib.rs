//! # libphoton
//!
//! Stackful coroutines ("photon threads") for C and C++ programs, exported
//! as a stable C ABI (`libphoton.so`, `libphoton.a`, `include/photon.h`).
//! The vocabulary is PhotonLibOS's: a *thread* is a coroutine, a *vcpu* is
//! an OS thread that called `photon_init` and runs a scheduler, an *event
//! engine* is what an idle vcpu sleeps on (io_uring or epoll).
//!
//! ## Layers (data flows down, never up)
//!
//! ```text
//!  ffi/      the only extern "C" code: NULL checks, panic boundary, errno
//!  net/, fs/ coroutine-blocking sockets, fds and files; the server loop
//!  sync/     mutex, condition variable, semaphore, rwlock (across vcpus)
//!  sched/    vcpu: run queue, timers, join, interrupt, keys, handles, remote queue
//!  engine/   epoll (mio) and io_uring, one trait
//!  stack/    mmap'd stacks with guard pages, pooling, overflow reports
//!  arch/     the context switch (inline assembly)
//! ```
//!
//! `unsafe` lives in `arch/`, `stack/`, `engine/`, `sched/` (raw TCB
//! pointers owned by one vcpu) and `ffi/`, each block with a `// SAFETY:`.
//!
//! ## From C
//!
//! ```c
//! #include <photon.h>
//! static void* hello(void* arg) { photon_thread_usleep(1000); return arg; }
//! int main(void) {
//!     photon_init(PHOTON_EVENT_DEFAULT, 0);
//!     photon_thread* th = photon_thread_create(hello, (void*)42, 0);
//!     photon_thread_enable_join(th);
//!     void* ret;
//!     photon_thread_join(th, &ret);          /* ret == (void*)42 */
//!     return photon_fini();
//! }
//! ```
//!
//! ## From Rust
//!
//! The same functions are callable from Rust:
//!
//! ```
//! use photon::ffi::*;
//! use core::ffi::c_void;
//! unsafe extern "C" fn hello(arg: *mut c_void) -> *mut c_void { arg }
//! unsafe {
//!     assert_eq!(photon_init(PHOTON_EVENT_DEFAULT, 0), 0);
//!     let th = photon_thread_create(Some(hello), 42 as *mut c_void, 0);
//!     assert_eq!(photon_thread_enable_join(th), 0);
//!     let mut ret = core::ptr::null_mut();
//!     assert_eq!(photon_thread_join(th, &mut ret), 0);
//!     assert_eq!(ret as usize, 42);
//!     assert_eq!(photon_fini(), 0);
//! }
//! ```

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod arch;
pub(crate) mod engine;
pub mod errno;
pub(crate) mod fdinfo;
pub mod ffi;
pub(crate) mod fs;
pub(crate) mod fstype;
pub(crate) mod net;
pub(crate) mod sched;
pub mod stack;
pub mod sync;
pub(crate) mod sys;
pub(crate) mod time;
pub(crate) mod unet;

pub use errno::Errno;

/// Starts `env_logger` once, filtered by `PHOTON_LOG` (default: warn).
pub(crate) fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let env = env_logger::Env::new().filter_or("PHOTON_LOG", "warn");
        let _ = env_logger::Builder::from_env(env)
            .target(env_logger::Target::Pipe(Box::new(RawStderr)))
            .try_init();
    });
}

/// Standard error written with raw `write(2)` syscalls: a log line from a
/// photon thread must not go through libc's `write`, which the preload shim
/// turns into a coroutine wait (a switch in the middle of the logger).
struct RawStderr;

impl std::io::Write for RawStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            // SAFETY: writes from a live slice.
            let n = unsafe { sys::write(2, buf.as_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
