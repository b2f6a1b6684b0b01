//! What the I/O layers (`net`, `fs`, and the preload shim through them)
//! remember per fd number, process-wide: whether it is a socket or
//! storage, and whether O_NONBLOCK was ensured. It sits below those layers,
//! beside `sys`, so none of them reaches sideways into another. One byte per fd in a table
//! that only grows. Reset whenever photon creates or closes an fd; an fd
//! closed behind photon's back and reused keeps stale facts, which is why
//! fds given to photon functions are to be closed with `photon_close`.

use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicU64, Ordering::*};

const UNKNOWN: u8 = 0;
const KNOWN: u8 = 1;
const SOCKET: u8 = 2;
const NONBLOCK: u8 = 4;
/// A regular file or block device: transfers may block on storage.
const STORAGE: u8 = 8;
/// A pipe or FIFO.
const FIFO: u8 = 16;
/// Opened with O_DIRECT.
const DIRECT: u8 = 32;
/// A SOCK_STREAM socket: a read shorter than asked drained it.
const STREAM: u8 = 64;
/// A socket photon made (photon_socket, photon_accept): its number's
/// lifetime is photon's to see (io_uring registers such sockets).
const CREATED: u8 = 128;

/// True if socket `fd` is of type SOCK_STREAM.
fn stream_type(fd: i32) -> bool {
    let mut ty: libc::c_int = 0;
    let mut len = core::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: valid out pointers of the sizes given.
    let r = unsafe { crate::sys::getsockopt(fd, libc::SOL_SOCKET, libc::SO_TYPE, (&raw mut ty).cast(), &mut len) };
    r == 0 && ty == libc::SOCK_STREAM
}

const CHUNK: usize = 4096;
const CHUNKS: usize = 1024; // fds below 4M are cached; others are looked up each time
/// Fds below this have their facts cached.
const CACHED: usize = CHUNK * CHUNKS;
/// The facts of fds below [`CACHED`], a byte each, in one anonymous
/// `MAP_NORESERVE` mapping made at first use (4 MiB of address space, of
/// which only the pages of fds in use are ever touched): every I/O call
/// reads it several times, so a lookup is one bounds check and one load.
static FACTS: AtomicPtr<AtomicU8> = AtomicPtr::new(core::ptr::null_mut());
/// Per fd, the vcpus that waited on it (bit `id % 64`), so `photon_close`
/// can wake their threads too.
static VCPUS: [AtomicPtr<AtomicU64>; CHUNKS] = [const { AtomicPtr::new(core::ptr::null_mut()) }; CHUNKS];

#[inline]
fn cell(fd: i32) -> Option<&'static AtomicU8> {
    let i = fd as u32 as usize; // a negative fd lands far beyond the table
    if i >= CACHED {
        return None;
    }
    let mut base = FACTS.load(Acquire);
    if base.is_null() {
        base = facts_table()?;
    }
    // SAFETY: the mapping holds CACHED zero-initialised bytes (UNKNOWN)
    // and is never unmapped.
    Some(unsafe { &*base.add(i) })
}

/// Maps [`FACTS`] (once; None if the mapping fails: then nothing is
/// cached and each call asks the kernel).
#[cold]
#[inline(never)]
fn facts_table() -> Option<*mut AtomicU8> {
    // SAFETY: a fresh private anonymous mapping; no memory of ours is touched.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            CACHED,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    let p = p.cast::<AtomicU8>();
    match FACTS.compare_exchange(core::ptr::null_mut(), p, AcqRel, Acquire) {
        Ok(_) => Some(p),
        Err(winner) => {
            // SAFETY: our own unpublished mapping.
            unsafe { libc::munmap(p.cast(), CACHED) };
            Some(winner)
        }
    }
}

/// The cell of `fd` in a table of lazily allocated chunks.
fn cell_in<T>(table: &'static [AtomicPtr<T>; CHUNKS], fd: i32, init: fn() -> T) -> Option<&'static T> {
    let fd = usize::try_from(fd).ok()?;
    let slot = table.get(fd / CHUNK)?;
    let mut chunk = slot.load(Acquire);
    if chunk.is_null() {
        let fresh: Box<[T]> = (0..CHUNK).map(|_| init()).collect();
        let p = Box::into_raw(fresh).cast::<T>();
        chunk = match slot.compare_exchange(core::ptr::null_mut(), p, AcqRel, Acquire) {
            Ok(_) => p,
            Err(winner) => {
                // SAFETY: our unpublished allocation of CHUNK cells.
                drop(unsafe { Box::from_raw(core::ptr::slice_from_raw_parts_mut(p, CHUNK)) });
                winner
            }
        };
    }
    // SAFETY: chunks hold CHUNK cells and are never freed.
    Some(unsafe { &*chunk.add(fd % CHUNK) })
}

#[inline]
fn facts(fd: i32) -> u8 {
    let cached = cell(fd).map_or(UNKNOWN, |c| c.load(Relaxed));
    if cached & KNOWN != 0 {
        return cached;
    }
    learn(fd)
}

/// Asks the kernel what `fd` is, and caches the answer.
#[cold]
#[inline(never)]
fn learn(fd: i32) -> u8 {
    // SAFETY: fstat into a zeroed struct.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: valid out pointer.
    let mut f = KNOWN;
    if unsafe { crate::sys::fstat(fd, &mut st) } == 0 {
        match st.st_mode & libc::S_IFMT {
            libc::S_IFSOCK => {
                f |= SOCKET;
                if stream_type(fd) {
                    f |= STREAM;
                }
            }
            libc::S_IFREG | libc::S_IFBLK => {
                f |= STORAGE;
                // SAFETY: F_GETFL has no memory effects.
                if unsafe { crate::sys::fcntl(fd, libc::F_GETFL, 0) } & libc::O_DIRECT != 0 {
                    f |= DIRECT;
                }
            }
            libc::S_IFIFO => f |= FIFO,
            _ => {}
        }
    }
    if let Some(c) = cell(fd) {
        c.store(f, Relaxed);
    }
    f
}

/// True if `fd` is a socket.
pub(crate) fn is_socket(fd: i32) -> bool {
    facts(fd) & SOCKET != 0
}

/// True if `fd` is a SOCK_STREAM socket.
pub(crate) fn is_stream(fd: i32) -> bool {
    facts(fd) & STREAM != 0
}

/// True if `fd` is a regular file or block device.
pub(crate) fn is_storage(fd: i32) -> bool {
    facts(fd) & STORAGE != 0
}

/// True if `fd` is a file opened with O_DIRECT (as of its first use here).
pub(crate) fn is_direct(fd: i32) -> bool {
    facts(fd) & DIRECT != 0
}

/// What positioned file I/O asks of an fd, from one lookup
/// ([`file_facts`]): a read or write checks both on every call.
#[derive(Clone, Copy)]
pub(crate) struct FileFacts(u8);

impl FileFacts {
    /// True if the fd cannot seek (socket, pipe, FIFO): positioned I/O is
    /// ESPIPE.
    pub(crate) fn unseekable(self) -> bool {
        self.0 & (SOCKET | FIFO) != 0
    }

    /// As [`is_direct`].
    pub(crate) fn direct(self) -> bool {
        self.0 & DIRECT != 0
    }
}

/// The [`FileFacts`] of `fd`.
#[inline]
pub(crate) fn file_facts(fd: i32) -> FileFacts {
    FileFacts(facts(fd))
}

/// True if `fd` is a pipe or FIFO.
pub(crate) fn is_fifo(fd: i32) -> bool {
    facts(fd) & FIFO != 0
}

/// Makes sure `fd` has O_NONBLOCK set (once), so a syscall on it cannot
/// block the vcpu.
#[inline]
pub(crate) fn ensure_nonblocking(fd: i32) -> Result<(), crate::Errno> {
    let f = facts(fd);
    if f & NONBLOCK != 0 {
        return Ok(());
    }
    set_nonblocking(fd, f)
}

/// Sets O_NONBLOCK on `fd` (whose facts are `f`) and notes it.
#[cold]
#[inline(never)]
fn set_nonblocking(fd: i32, f: u8) -> Result<(), crate::Errno> {
    let fl = crate::errno::syscall!(fcntl(fd, libc::F_GETFL, 0))?;
    if fl & libc::O_NONBLOCK == 0 {
        crate::errno::syscall!(fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK))?;
    }
    if let Some(c) = cell(fd) {
        c.store(f | NONBLOCK, Relaxed);
    }
    Ok(())
}

/// Records a socket photon just created (already non-blocking), of type
/// SOCK_STREAM if `stream`.
pub(crate) fn new_socket(fd: i32, stream: bool) {
    if let Some(c) = cell(fd) {
        c.store(
            KNOWN | SOCKET | NONBLOCK | CREATED | if stream { STREAM } else { 0 },
            Relaxed,
        );
    }
}

/// True if `fd` is a socket photon made ([`new_socket`]) and has not seen
/// closed since.
pub(crate) fn is_created_socket(fd: i32) -> bool {
    cell(fd).is_some_and(|c| c.load(Relaxed) & (SOCKET | CREATED) == SOCKET | CREATED)
}

/// Notes that vcpu `id` has a thread waiting on `fd` (cheap when noted
/// before: one load).
#[inline]
pub(crate) fn note_vcpu(fd: i32, id: u32) {
    let bit = 1u64 << (id % 64);
    if let Some(c) = cell_in(&VCPUS, fd, || AtomicU64::new(0))
        && c.load(Relaxed) & bit == 0
    {
        c.fetch_or(bit, Relaxed);
    }
}

/// The vcpus noted for `fd` (bit `id % 64`) since the last
/// [`take_vcpus`], left as they are; fds beyond the table answer "all".
pub(crate) fn vcpus(fd: i32) -> u64 {
    match cell_in(&VCPUS, fd, || AtomicU64::new(0)) {
        Some(c) => c.load(Relaxed),
        None => u64::MAX,
    }
}

/// The vcpus noted for `fd` since the last call (bit `id % 64`), clearing
/// them; fds beyond the table answer "all".
pub(crate) fn take_vcpus(fd: i32) -> u64 {
    match cell_in(&VCPUS, fd, || AtomicU64::new(0)) {
        Some(c) => c.swap(0, AcqRel),
        None => u64::MAX,
    }
}

/// Forgets what was known about `fd` (it is being closed).
pub(crate) fn forget(fd: i32) {
    if let Some(c) = cell(fd) {
        c.store(UNKNOWN, Relaxed);
    }
}
