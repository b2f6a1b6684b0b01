//! Registered (fixed) files for sockets (`PHOTON_IO_OFF=fixed_files`).
//!
//! The ring keeps a sparse file table (`IORING_REGISTER_FILES` sparse,
//! 5.19+) indexed by fd number: a socket photon made (`photon_socket`,
//! `photon_accept`: fdinfo knows when its number is closed or reused) is
//! put in slot `fd` the first time it is used for a ring operation, and its receives, sends and polls then
//! name the slot (`IOSQE_FIXED_FILE`), so the kernel skips looking the fd
//! up and taking a reference on the file for each operation. The slot holds
//! a reference of its own: it is emptied by `cancel_fd` (`photon_close`,
//! `photon_fd_forget`) after the fd's queued operations were submitted with
//! their cancels, and by `forget_fd` when photon makes a new file with that
//! number (an fd closed with plain close(2) would otherwise stay open in
//! the table). An fd beyond the table, one the kernel refuses, or a ring
//! without a table uses plain fd numbers.

use super::UringEngine;

/// Most slots per ring (fds at or above go as plain numbers): 8 bytes of
/// kernel memory each.
const MAX_SLOTS: u32 = 16384;

/// Per-fd state.
const UNSEEN: u8 = 0;
const _: () = assert!(UNSEEN == 0, "what fd_cell fills a grown table with");
const REGISTERED: u8 = 1;
/// Not a socket, or refused: plain fd until the number is forgotten.
const PLAIN: u8 = 2;

pub(super) struct FixedFiles {
    /// Slots in the ring's table (0: no table).
    slots: u32,
    state: Vec<u8>,
}

impl FixedFiles {
    /// Sets up the sparse table on `ring` when `wanted`; one info line when
    /// the kernel refuses it.
    pub(super) fn new(ring: &io_uring::IoUring, wanted: bool) -> FixedFiles {
        let off = FixedFiles {
            slots: 0,
            state: Vec::new(),
        };
        if !wanted {
            return off;
        }
        // The kernel refuses a table larger than RLIMIT_NOFILE.
        // SAFETY: an all-zero rlimit is a valid value.
        let mut r: libc::rlimit = unsafe { core::mem::zeroed() };
        // SAFETY: a valid out pointer.
        let nofile = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 {
            r.rlim_cur.min(MAX_SLOTS as u64) as u32
        } else {
            1024
        };
        match ring.submitter().register_files_sparse(nofile) {
            Ok(()) => FixedFiles {
                slots: nofile,
                state: Vec::new(),
            },
            Err(e) => {
                log_absent(&e);
                off
            }
        }
    }

    /// Number of slots (0: registered files are off).
    #[cfg(test)]
    pub(super) fn slots(&self) -> u32 {
        self.slots
    }

    /// True if `fd` is in the table.
    #[cfg(test)]
    pub(super) fn is_registered(&self, fd: i32) -> bool {
        usize::try_from(fd).is_ok_and(|i| self.state.get(i) == Some(&REGISTERED))
    }
}

fn log_absent(e: &std::io::Error) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        log::info!("photon: io_uring sparse file table refused ({e}; 5.19+); sockets go as plain fds");
    });
}

impl UringEngine {
    /// The table slot for a ring operation on socket `fd`, registering it
    /// on first use; None: use the plain fd.
    #[inline]
    pub(super) fn fixed_slot(&mut self, fd: i32) -> Option<u32> {
        // A negative fd turns into an index past any table.
        match self.fixed.state.get(fd as u32 as usize) {
            Some(&REGISTERED) => Some(fd as u32),
            Some(&PLAIN) => None,
            _ => self.fixed_first_use(fd),
        }
    }

    /// [`UringEngine::fixed_slot`] for an fd not looked at yet.
    #[cold]
    #[inline(never)]
    fn fixed_first_use(&mut self, fd: i32) -> Option<u32> {
        let ff = &mut self.fixed;
        let i = u32::try_from(fd).ok().filter(|&i| i < ff.slots)? as usize;
        match *super::fd_cell(&mut ff.state, fd)? {
            REGISTERED => return Some(i as u32),
            PLAIN => return None,
            _ => {}
        }
        if !crate::fdinfo::is_created_socket(fd) {
            ff.state[i] = PLAIN;
            return None;
        }
        match self.ring.submitter().register_files_update(i as u32, &[fd]) {
            Ok(1) => {
                self.fixed.state[i] = REGISTERED;
                Some(i as u32)
            }
            Ok(_) | Err(_) => {
                self.fixed.state[i] = PLAIN;
                None
            }
        }
    }

    /// Empties `fd`'s slot (if it has one) and forgets what was known.
    pub(super) fn fixed_release(&mut self, fd: i32) {
        let Ok(i) = usize::try_from(fd) else { return };
        let Some(s) = self.fixed.state.get_mut(i) else { return };
        let was = core::mem::replace(s, UNSEEN);
        if was == REGISTERED
            && let Err(e) = self.ring.submitter().register_files_update(i as u32, &[-1])
        {
            log::error!("photon: io_uring could not empty file slot {i}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{complete, socketpair};
    use super::*;
    use crate::engine::{Engine, Op, Submitted, Waiter};

    fn run(e: &mut UringEngine, op: Op) -> i64 {
        // SAFETY: the buffers of the callers' ops outlive the wait.
        match unsafe { e.submit(op, 1 as Waiter) }.unwrap() {
            Submitted::Pending(id) => complete(e, id),
            Submitted::Done(r) => r,
        }
    }

    /// Receives and sends on a registered socket move the data; closing it
    /// through `cancel_fd` empties its slot, so the peer sees end-of-file
    /// (the slot's own reference would keep the socket open otherwise).
    /// With the table off (the fallback, as on a kernel before 5.19) the
    /// same holds and nothing is registered.
    #[test]
    fn registered_socket_io_and_close() {
        for wanted in [true, false] {
            let Ok(mut e) = UringEngine::new(false) else {
                println!("registered_socket_io_and_close: no io_uring here, skipped");
                return;
            };
            if !wanted {
                e.fixed = FixedFiles {
                    slots: 0,
                    state: Vec::new(),
                };
            } else if e.fixed.slots() == 0 {
                println!(
                    "registered_socket_io_and_close: this kernel has no sparse file table; the fallback is tested"
                );
            }
            let on = e.fixed.slots() > 0;
            let (a, b) = socketpair();
            crate::fdinfo::new_socket(a, true); // as photon_socket would
            // SAFETY: 5 bytes from a live buffer.
            assert_eq!(unsafe { libc::write(b, b"hello".as_ptr().cast(), 5) }, 5);
            let mut buf = [0u8; 16];
            let r = run(
                &mut e,
                Op::Recv {
                    fd: a,
                    buf: buf.as_mut_ptr(),
                    len: 16,
                    flags: 0,
                },
            );
            assert_eq!(r, 5, "table {on}");
            assert_eq!(&buf[..5], b"hello");
            assert_eq!(e.fixed.is_registered(a), on, "registered on first use");
            let r = run(
                &mut e,
                Op::Send {
                    fd: a,
                    buf: b"back".as_ptr(),
                    len: 4,
                    flags: 0,
                },
            );
            assert_eq!(r, 4);
            let r = run(
                &mut e,
                Op::Poll {
                    fd: a,
                    events: crate::engine::WRITABLE,
                },
            );
            assert_eq!(r as u32 & crate::engine::WRITABLE, crate::engine::WRITABLE);
            let mut got = [0u8; 8];
            // SAFETY: valid buffer.
            assert_eq!(unsafe { libc::read(b, got.as_mut_ptr().cast(), 8) }, 4);
            assert_eq!(&got[..4], b"back");
            let mut out = Vec::new();
            e.cancel_fd(a, &mut out);
            assert!(!e.fixed.is_registered(a), "the slot is emptied at close");
            // SAFETY: our fds.
            unsafe { libc::close(a) };
            crate::fdinfo::forget(a);
            // SAFETY: valid buffer; b is non-blocking.
            let n = unsafe { libc::read(b, got.as_mut_ptr().cast(), 8) };
            assert_eq!(n, 0, "table {on}: the peer sees end-of-file after close");
            // SAFETY: ours.
            unsafe { libc::close(b) };
        }
    }
}
