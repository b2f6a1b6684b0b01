//! The I/O features that an engine uses when the kernel has them, and the
//! switch that turns any of them off: `PHOTON_IO_OFF=name,name,...` (read
//! once per process) makes the engines behave as on a kernel that lacks
//! them. Tests use it to exercise every fallback; benchmarks use it for
//! A/B rows. A feature that measured worse than going without it is off
//! unless `PHOTON_IO_ON=name,...` asks for it ([`DEFAULT_OFF`]); OFF wins
//! over ON. Unknown names are logged and ignored.

use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// An optional I/O feature.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub(crate) enum Feature {
    /// epoll: each fd's readiness is kept, so a read whose socket was seen
    /// drained waits for the next event instead of calling into an EAGAIN.
    Readiness = 1 << 0,
    /// io_uring: a receive on a socket seen drained is queued with
    /// `IORING_RECVSEND_POLL_FIRST` (5.19+), skipping the kernel's doomed
    /// first attempt.
    PollFirst = 1 << 1,
    /// io_uring: every send is a ring operation, queued with the others of
    /// the scheduler turn and submitted in the turn's one `io_uring_enter`;
    /// off, a send first tries a `MSG_DONTWAIT` send on the vcpu (one
    /// syscall per send, no park) and queues a ring send only when the
    /// socket buffer is full. Measured on bench echo (64 connections x 512
    /// B ping-pong): 0.6 instead of 1.3 syscalls per request, CPU per request
    /// even within noise.
    BatchedSend = 1 << 2,
    /// io_uring: a buffered file read (`photon_pread`, `photon_preadv`, and
    /// `photon_read` at the file position) first tries `preadv2(RWF_NOWAIT)`
    /// on the vcpu (a page-cache hit costs one syscall, no park) before
    /// queuing a ring read. (epoll always does: its other way is a helper
    /// thread.)
    CachedRead = 1 << 3,
    /// io_uring: a poll that must not sleep (the scheduler's every-64th-
    /// decision poll, an I/O budget's end) enters the kernel only if no
    /// `io_uring_enter` ran since the poll before it; otherwise it takes the
    /// completions already in the ring and leaves the queued submissions
    /// to the turn's sleeping wait. Off, each such poll submits whatever is
    /// queued at once (one more `io_uring_enter` per turn of 64 threads).
    LazySubmit = 1 << 4,
    /// io_uring: an accept without a peer address is served by one
    /// multishot accept per listening socket (5.19+), holding at most 16
    /// accepted-but-unclaimed connections (engine/uring/accept.rs).
    MultishotAccept = 1 << 5,
    /// io_uring: sockets are put in the ring's sparse file table (5.19+) on
    /// first use and named by their slot (`IOSQE_FIXED_FILE`), sparing the
    /// kernel a file lookup and reference per operation (engine/uring/fixed.rs).
    FixedFiles = 1 << 6,
    /// io_uring: O_DIRECT reads and writes are handed to the kernel four at
    /// a time as they are queued, not only at the scheduler turn's end
    /// (engine/uring.rs, `EAGER_DIRECT_BATCH`).
    EagerDirect = 1 << 10,
    /// Offload (epoll, and io_uring without a read opcode): O_DIRECT
    /// positioned reads go to kernel AIO with `RWF_NOWAIT`, into the
    /// caller's buffer, instead of to a helper thread
    /// (engine/offload/aio.rs).
    Aio = 1 << 11,
    /// Scheduler: a thread that blocks with nothing else runnable, as it
    /// also did the last time the vcpu went idle (one busy connection),
    /// polls and sleeps on its own stack (when it has 64 KiB left) instead
    /// of switching to the vcpu's idle thread, and goes on without any
    /// switch when its own wait is what ends the sleep (sched/idle.rs,
    /// `poll_in_place`; the rule in sched/wait.rs, `block_inline`).
    PollInPlace = 1 << 12,
    /// io_uring, opt-in (`PHOTON_IO_ON=batched_read`): a buffered file read
    /// made while other threads of the vcpu are ready to run, or while
    /// submissions are queued, skips the `preadv2(RWF_NOWAIT)` attempt and
    /// goes on the ring, so the turn's reads reach the kernel in one
    /// `io_uring_enter` (each served at once from the page cache at
    /// submission). A read made alone keeps the `preadv2` (sched/cached.rs,
    /// `read_cached`). bench files, against a `preadv2` each: on an AMD
    /// EPYC host 1-3% less CPU per read with 64 readers, 0-9% with 16; on
    /// an Intel Xeon host (same kernel, 2026-12-05 quiet run, 3 reps, no
    /// overlap between the ranges) 11% fewer reads per second with 16
    /// readers (884,585 vs 989,231) and 7% with 64 (899,704 vs 964,017),
    /// where `preadv2` each kept pace with a plain `pread` loop (0.99x).
    /// The losses outweigh the gains, so it is off unless asked for.
    BatchedRead = 1 << 13,
    /// io_uring, opt-in (`PHOTON_IO_ON=multishot_recv`): a TCP socket
    /// photon made, received on by one vcpu, gets a multishot receive
    /// (6.0+) into its own ring of 4 provided 16 KiB buffers; receives copy
    /// out of the buffers it holds (engine/uring/recv.rs). Off by default:
    /// on bench echo (streaming 64 x 4 KiB) it cost 12-29% more server CPU
    /// per 4 KiB than a ring receive per call (the copy out of the buffers,
    /// and re-arming), with no gain in MiB/s; ping-pong even.
    MultishotRecv = 1 << 14,
    /// io_uring: a receive (`photon_recv` without flags, `photon_read` on a
    /// socket) whose last ring receive came back with bytes still
    /// queued (`IORING_CQE_F_SOCK_NONEMPTY`, 5.19+; older kernels never
    /// set it) is a non-blocking `recv` on the vcpu: one syscall and no
    /// park, as epoll's kept readiness gives, instead of a ring receive,
    /// its share of the turn's `io_uring_enter` and a wake-up; so is the
    /// next one while receives fill their buffers. EAGAIN goes the ring's
    /// way.
    DirectRecv = 1 << 15,
    /// io_uring: a receive (`photon_recv` without flags, `photon_read` on a
    /// socket) on a stream socket whose last receive drained at least 8 KiB
    /// (several of the peer's writes had piled up: bulk streaming) waits
    /// for readiness (a ring poll) and then receives with a non-blocking
    /// `recv` on the vcpu when the thread runs, as an epoll thread does,
    /// instead of a ring receive, which copies only what is queued when the
    /// ring is entered at the turn's start. A receive of less goes back to
    /// ring receives, so ping-pong sizes keep theirs (the one
    /// `io_uring_enter` of a turn carries them). The choice is per fd, in
    /// the engine's per-fd receive state. Measured on bench echo (quiet,
    /// 5 reps x 3 s, 2026-12-06), with `direct_big_send`: streaming 64 x 4
    /// KiB 1,241 MiB/s against 1,136 without it (1,141 without both; epoll
    /// 1,240, tokio 1,213); ping-pong 64 x 512 3,859 against 3,987 ns per
    /// request, 1 x 512 31,959 against 31,640 with both off (7 reps; noise):
    /// the small receives stay ring receives. Without `direct_big_send` it
    /// gained 1-6% (three runs). Requiring other threads ready in the
    /// turn ([`crate::sched::turn_has_batch`]) left it unused: a streaming
    /// server's turns are short (two sends per `io_uring_enter`).
    ReadinessRecv = 1 << 16,
    /// io_uring: a send of at least 8 KiB tries a direct `MSG_DONTWAIT`
    /// send on the vcpu first even when it could join the turn's batch (as
    /// a lone send does, see `batched_send`): its syscall costs little
    /// beside the copy, and its thread goes on at once instead of parking
    /// until the turn's `io_uring_enter` ran it. With `readiness_recv`
    /// (above) it is what closes the streaming gap: 1,241 MiB/s against
    /// 1,096 without it (the same run); alone it measured 1,168 against
    /// 1,116 with neither.
    DirectBigSend = 1 << 17,
    /// Both engines: `photon_fstat` of an fd whose attributes are in memory
    /// (a socket, a pipe, a file on a local file system: `fdinfo`,
    /// `fstype`) is an `fstat` system call on the vcpu, instead of a statx
    /// on the ring (which io_uring always hands to an `iou-wrk` worker
    /// thread) or on the offload pool's helper thread under epoll. A file
    /// on a file system whose getattr may ask a server or daemon (NFS,
    /// FUSE, ...) and an fd photon cannot classify keep that way.
    /// bench/c/fstat_calls.c: a regular file's `photon_fstat` 1,758 -> 129
    /// ns under io_uring, 1,933 -> 136 under epoll (libc's `fstat` about
    /// 140); with a cached 4 KiB `photon_pread`, 2,126 -> 340 and 3,377 ->
    /// 354 (bench/README.md).
    InlineFstat = 1 << 18,
}

const NAMES: &[(&str, Feature)] = &[
    ("readiness", Feature::Readiness),
    ("poll_first", Feature::PollFirst),
    ("batched_send", Feature::BatchedSend),
    ("cached_read", Feature::CachedRead),
    ("lazy_submit", Feature::LazySubmit),
    ("multishot_accept", Feature::MultishotAccept),
    ("fixed_files", Feature::FixedFiles),
    ("eager_direct", Feature::EagerDirect),
    ("aio", Feature::Aio),
    ("poll_in_place", Feature::PollInPlace),
    ("batched_read", Feature::BatchedRead),
    ("multishot_recv", Feature::MultishotRecv),
    ("direct_recv", Feature::DirectRecv),
    ("readiness_recv", Feature::ReadinessRecv),
    ("direct_big_send", Feature::DirectBigSend),
    ("inline_fstat", Feature::InlineFstat),
];

/// Features that are off unless `PHOTON_IO_ON` names them.
const DEFAULT_OFF: u32 = Feature::MultishotRecv as u32 | Feature::BatchedRead as u32;

fn parse(var: &str, list: &str) -> u32 {
    let mut off = 0;
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match NAMES.iter().find(|(n, _)| *n == name) {
            Some(&(_, f)) => off |= f as u32,
            None => log::warn!("photon: {var}: unknown feature {name:?} ignored"),
        }
    }
    off
}

/// The features wanted, decided once per process from `PHOTON_IO_OFF` and
/// `PHOTON_IO_ON`; [`UNDECIDED`] until the first [`wanted`] (hot paths ask
/// per call: one load and a bit test).
static WANTED: AtomicU32 = AtomicU32::new(UNDECIDED);
/// No feature uses the top bit.
const UNDECIDED: u32 = 1 << 31;

#[cold]
#[inline(never)]
fn decide_once() -> u32 {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let set = |var: &str| std::env::var(var).map_or(0, |v| parse(var, &v));
        let (off, on) = (set("PHOTON_IO_OFF"), set("PHOTON_IO_ON"));
        WANTED.store(decided(off, on), Relaxed);
    });
    // call_once's return orders the store before this load.
    WANTED.load(Relaxed)
}

/// The wanted set: every feature but those `off` names and those off by
/// default that `on` does not name.
fn decided(off: u32, on: u32) -> u32 {
    !off & (!DEFAULT_OFF | on) & !UNDECIDED
}

/// True unless `PHOTON_IO_OFF` names `f`, or `f` is off by default
/// ([`DEFAULT_OFF`]) and `PHOTON_IO_ON` does not name it (whether the
/// kernel has it is the engine's own probe).
#[inline]
pub(crate) fn wanted(f: Feature) -> bool {
    let mut set = WANTED.load(Relaxed);
    if set == UNDECIDED {
        set = decide_once();
    }
    set & f as u32 != 0
}

/// True if `yes` is wanted and `no` (another feature) is not, from one
/// load; false while the set is undecided (the caller's general path, through [`wanted`],
/// then decides it).
#[inline]
pub(crate) fn wanted_without(yes: Feature, no: Feature) -> bool {
    set_has_without(WANTED.load(Relaxed), yes, no)
}

/// [`wanted_without`] of the wanted set `set` (or [`UNDECIDED`]).
#[inline(always)]
fn set_has_without(set: u32, yes: Feature, no: Feature) -> bool {
    set & (yes as u32 | no as u32) == yes as u32
}

/// [`wanted`] given the `PHOTON_IO_OFF` and `PHOTON_IO_ON` sets, one
/// feature at a time: the rule [`decided`] applies to all at once, kept as
/// the tests' reference.
#[cfg(test)]
fn decide(off: u32, on: u32, f: Feature) -> bool {
    let f = f as u32;
    off & f == 0 && (DEFAULT_OFF & f == 0 || on & f != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!(parse("PHOTON_IO_OFF", ""), 0);
        assert_eq!(parse("PHOTON_IO_OFF", "readiness"), Feature::Readiness as u32);
        assert_eq!(
            parse("PHOTON_IO_OFF", " poll_first , readiness,nonsense"),
            Feature::Readiness as u32 | Feature::PollFirst as u32
        );
    }

    /// A default-off feature needs PHOTON_IO_ON; PHOTON_IO_OFF wins; the
    /// others are on unless switched off.
    #[test]
    fn default_off_needs_on() {
        let m = Feature::MultishotRecv;
        assert!(!decide(0, 0, m));
        assert!(decide(0, parse("PHOTON_IO_ON", "multishot_recv"), m));
        assert!(!decide(
            parse("PHOTON_IO_ON", "multishot_recv"),
            parse("PHOTON_IO_ON", "multishot_recv"),
            m
        ));
        assert!(decide(0, 0, Feature::PollFirst));
        assert!(!decide(parse("PHOTON_IO_OFF", "poll_first"), 0, Feature::PollFirst));
    }

    /// `wanted_without` is false while the set is undecided, and otherwise
    /// says what two `wanted` questions say, for every OFF and ON list of
    /// one name and every pair of two features.
    #[test]
    fn wanted_without_is_two_wanted() {
        for &(_, yes) in NAMES {
            for &(_, no) in NAMES {
                assert!(!set_has_without(UNDECIDED, yes, no));
            }
        }
        let mut lists = vec![0];
        lists.extend(NAMES.iter().map(|&(_, f)| f as u32));
        for &off in &lists {
            for &on in &lists {
                let set = decided(off, on);
                for &(_, yes) in NAMES {
                    for &(_, no) in NAMES.iter().filter(|&&(_, no)| no != yes) {
                        let want = decide(off, on, yes) && !decide(off, on, no);
                        assert_eq!(set_has_without(set, yes, no), want, "{yes:?} without {no:?}");
                    }
                }
            }
        }
    }

    /// The set `wanted` reads holds exactly the features `decide` wants,
    /// for every OFF and ON list of one or two names.
    #[test]
    fn decided_set_is_decide() {
        let mut lists = vec![0];
        for &(_, a) in NAMES {
            for &(_, b) in NAMES {
                lists.push(a as u32 | b as u32);
            }
        }
        for &off in &lists {
            for &on in &lists {
                let set = decided(off, on);
                assert_eq!(set & UNDECIDED, 0);
                for &(name, f) in NAMES {
                    assert_eq!(
                        set & f as u32 != 0,
                        decide(off, on, f),
                        "{name} off={off:#x} on={on:#x}"
                    );
                }
            }
        }
    }
}
