//! The runtime's clock, and deadlines on it.

/// The absolute deadline for a relative `timeout_us`: `u64::MAX`
/// (`PHOTON_FOREVER`) stays `u64::MAX`, no deadline.
pub fn deadline(timeout_us: u64) -> u64 {
    if timeout_us == u64::MAX {
        u64::MAX
    } else {
        now_us().saturating_add(timeout_us)
    }
}

/// Monotonic microseconds (CLOCK_MONOTONIC, through the vDSO).
pub fn now_us() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}
