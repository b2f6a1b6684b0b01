//! What the shim knows per fd: the program's view of O_NONBLOCK, whether
//! the fd is non-blocking underneath, its kind, and its SO_RCVTIMEO /
//! SO_SNDTIMEO.
//!
//! A photon thread may only wait on an fd that is non-blocking underneath
//! (under epoll libphoton makes it so), while the program may believe it is
//! blocking. The table keeps the program's view: `fcntl(F_GETFL)` reports
//! it, a blocking read on a plain thread is emulated (non-blocking read plus
//! poll), and an fd the program made non-blocking gets EAGAIN. Entries are
//! learnt on first use in a photon thread (one fstat and one F_GETFL) or at
//! creation by a hooked call, and reset by close, dup2/dup3 and creation.
//!
//! The table is an anonymous mapping of [`MAX_FDS`] entries made on first
//! use; pages are touched only for fds in use. Higher fds are not tracked:
//! their calls pass straight through to libc.

use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering::*};

/// The entry holds what follows; else nothing is known yet.
pub const KNOWN: u32 = 1;
/// The program sees O_NONBLOCK set.
pub const USER_NB: u32 = 2;
/// O_NONBLOCK is set underneath.
pub const UNDER_NB: u32 = 4;
/// The shim set O_NONBLOCK underneath on an fd it did not create (stdio):
/// cleared again at exit.
pub const FORCED: u32 = 8;
/// A regular file or block device: never waits for readiness.
pub const REGULAR: u32 = 16;
/// A socket.
pub const SOCKET: u32 = 32;
/// Made by dup or has duplicates: O_NONBLOCK is shared with them (it is
/// a flag of the open file description, not of the fd number).
pub const DUPED: u32 = 64;

/// A stream socket whose last read returned all it asked for: it probably
/// holds more (see `io::direct_first`).
pub const MORE: u32 = 128;

/// Entries in the table (Linux's default `fs.nr_open`).
pub const MAX_FDS: usize = 1 << 20;

pub struct Entry {
    pub flags: AtomicU32,
    /// SO_RCVTIMEO / SO_SNDTIMEO in microseconds, 0 for none.
    pub rcv_us: AtomicU64,
    pub snd_us: AtomicU64,
}

static TABLE: AtomicPtr<Entry> = AtomicPtr::new(core::ptr::null_mut());
/// The highest fd ever marked [`DUPED`] (bounds the search for duplicates).
static MAX_DUPED: AtomicU32 = AtomicU32::new(0);

#[cold]
fn map_table() -> *mut Entry {
    let len = MAX_FDS * core::mem::size_of::<Entry>();
    // SAFETY: a fresh private anonymous mapping, zero-filled (all entries unknown).
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return core::ptr::null_mut();
    }
    let p = p.cast::<Entry>();
    match TABLE.compare_exchange(core::ptr::null_mut(), p, AcqRel, Acquire) {
        Ok(_) => p,
        Err(winner) => {
            // SAFETY: our unpublished mapping.
            unsafe { libc::munmap(p.cast(), len) };
            winner
        }
    }
}

/// The entry of `fd`, or None for fds outside the table.
#[inline]
pub fn entry(fd: i32) -> Option<&'static Entry> {
    let i = usize::try_from(fd).ok().filter(|&i| i < MAX_FDS)?;
    let mut t = TABLE.load(Acquire);
    if t.is_null() {
        t = map_table();
        if t.is_null() {
            return None;
        }
    }
    // SAFETY: i < MAX_FDS entries, mapped forever; all-zero is a valid Entry.
    Some(unsafe { &*t.add(i) })
}

/// The flags of `fd` if known, without learning them.
#[inline]
pub fn known(fd: i32) -> u32 {
    entry(fd).map_or(0, |e| e.flags.load(Relaxed))
}

/// Sets or clears [`MORE`] on a known `fd`.
#[inline]
pub fn set_more(fd: i32, more: bool) {
    if let Some(e) = entry(fd) {
        let f = e.flags.load(Relaxed);
        if f & KNOWN != 0 && (f & MORE != 0) != more {
            e.flags.store(if more { f | MORE } else { f & !MORE }, Relaxed);
        }
    }
}

/// Forgets `fd` (closed, or about to name a new file).
pub fn reset(fd: i32) {
    if let Some(e) = entry(fd) {
        e.flags.store(0, Relaxed);
        e.rcv_us.store(0, Relaxed);
        e.snd_us.store(0, Relaxed);
    }
}

/// Records a file the shim created: `flags` (KNOWN is added).
pub fn set(fd: i32, flags: u32) {
    if let Some(e) = entry(fd) {
        e.rcv_us.store(0, Relaxed);
        e.snd_us.store(0, Relaxed);
        e.flags.store(flags | KNOWN, Relaxed);
    }
}

/// `to` is a duplicate of `from`: the same open file, the same view.
pub fn copy(from: i32, to: i32) {
    let (Some(a), Some(b)) = (entry(from), entry(to)) else {
        reset(to);
        return;
    };
    b.rcv_us.store(a.rcv_us.load(Relaxed), Relaxed);
    b.snd_us.store(a.snd_us.load(Relaxed), Relaxed);
    let f = a.flags.load(Relaxed);
    if f & KNOWN != 0 {
        a.flags.fetch_or(DUPED, Relaxed);
        b.flags.store((f & !FORCED) | DUPED, Relaxed);
        MAX_DUPED.fetch_max(from.max(to) as u32, Relaxed);
    } else {
        b.flags.store(0, Relaxed);
    }
}

/// True if `a` and `b` name the same open file description.
fn same_file(a: i32, b: i32) -> bool {
    // SAFETY: kcmp on our own process; no memory arguments.
    unsafe {
        let pid = libc::getpid() as libc::c_long;
        libc::syscall(
            libc::SYS_kcmp,
            pid,
            pid,
            0 as libc::c_long, // KCMP_FILE
            a as libc::c_long,
            b as libc::c_long,
        ) == 0
    }
}

/// The program changed O_NONBLOCK of `fd` (`user_nb`), and with it, when
/// `under` says so, the flag underneath. Every tracked duplicate of the
/// same open file description sees the change too.
pub fn set_nonblock(fd: i32, user_nb: bool, under: Option<bool>) {
    let apply = |e: &Entry| {
        let mut f = e.flags.load(Relaxed);
        if f & KNOWN == 0 {
            return;
        }
        f = if user_nb { f | USER_NB } else { f & !USER_NB };
        match under {
            Some(true) => f |= UNDER_NB,
            Some(false) => f &= !UNDER_NB,
            None => {}
        }
        e.flags.store(f, Relaxed);
    };
    let Some(e) = entry(fd) else { return };
    apply(e);
    if e.flags.load(Relaxed) & DUPED == 0 {
        return;
    }
    for other in 0..=MAX_DUPED.load(Relaxed) as i32 {
        if other != fd
            && let Some(o) = entry(other)
            && o.flags.load(Relaxed) & (KNOWN | DUPED) == KNOWN | DUPED
            && same_file(fd, other)
        {
            apply(o);
        }
    }
}

/// What a photon thread needs to know before waiting on `fd`.
pub enum Probe {
    /// Flags of a tracked fd, learnt now if they were not known.
    Known(u32),
    /// Not tracked (outside the table): pass through.
    Untracked,
    /// fstat failed with this errno (EBADF for a closed fd).
    Bad(i32),
}

/// The flags of `fd`, learnt now if needed: its kind from fstat, the
/// program's O_NONBLOCK from F_GETFL. A non-regular fd the program sees as
/// blocking is made non-blocking underneath.
pub fn probe(fd: i32) -> Probe {
    let Some(e) = entry(fd) else { return Probe::Untracked };
    let f = e.flags.load(Relaxed);
    if f & KNOWN != 0 {
        return Probe::Known(f);
    }
    probe_slow(fd, e)
}

#[cold]
fn probe_slow(fd: i32, e: &Entry) -> Probe {
    // SAFETY: an all-zero stat is a valid value.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: a valid out pointer; the raw syscall, never hooked.
    if unsafe { libc::syscall(libc::SYS_fstat, fd as libc::c_long, &raw mut st) } < 0 {
        return Probe::Bad(crate::errno());
    }
    // SAFETY: as above.
    let fl = unsafe { libc::syscall(libc::SYS_fcntl, fd as libc::c_long, libc::F_GETFL as libc::c_long) } as i32;
    if fl < 0 {
        return Probe::Bad(crate::errno());
    }
    let mut f = KNOWN;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG | libc::S_IFBLK => f |= REGULAR,
        libc::S_IFSOCK => f |= SOCKET,
        _ => {}
    }
    if fl & libc::O_NONBLOCK != 0 {
        f |= USER_NB | UNDER_NB;
    } else if f & REGULAR == 0 {
        // SAFETY: sets a flag on an fd the program is using; raw syscall.
        let r = unsafe {
            libc::syscall(
                libc::SYS_fcntl,
                fd as libc::c_long,
                libc::F_SETFL as libc::c_long,
                (fl | libc::O_NONBLOCK) as libc::c_long,
            )
        };
        if r == 0 {
            f |= UNDER_NB | FORCED;
        }
    }
    e.flags.store(f, Relaxed);
    Probe::Known(f)
}

/// Puts O_NONBLOCK back off the standard fds the shim made non-blocking
/// (they may be shared with the shell that started the program).
pub fn restore_stdio() {
    for fd in 0..3 {
        let f = known(fd);
        if f & FORCED != 0 && f & USER_NB == 0 {
            // SAFETY: raw fcntl on our own process's fd.
            unsafe {
                let fl = libc::syscall(libc::SYS_fcntl, fd as libc::c_long, libc::F_GETFL as libc::c_long);
                if fl >= 0 {
                    libc::syscall(
                        libc::SYS_fcntl,
                        fd as libc::c_long,
                        libc::F_SETFL as libc::c_long,
                        fl & !(libc::O_NONBLOCK as libc::c_long),
                    );
                }
            }
        }
    }
}
