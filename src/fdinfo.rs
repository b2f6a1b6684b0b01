//! What the I/O layers (`net`, `fs`, the engines, and the preload shim
//! through them) remember per fd number, process-wide: whether it is a
//! socket or storage, whether O_NONBLOCK was ensured, and what its file
//! system is as far as blocking goes (`fstype`). It sits below those
//! layers, beside `sys`, so none of them reaches sideways into another.
//! Two bytes per fd in a table that only grows. Reset whenever photon
//! creates or closes an fd; an fd closed behind photon's back and reused
//! keeps stale facts, which is why fds given to photon functions are to be
//! closed with `photon_close` (or announced with `photon_fd_forget`).

use std::sync::atomic::{AtomicPtr, AtomicU16, AtomicU64, Ordering::*};

const UNKNOWN: u16 = 0;
const KNOWN: u16 = 1;
const SOCKET: u16 = 2;
const NONBLOCK: u16 = 4;
/// A regular file or block device: transfers may block on storage.
const STORAGE: u16 = 8;
/// A pipe or FIFO.
const FIFO: u16 = 16;
/// Opened with O_DIRECT.
const DIRECT: u16 = 32;
/// A SOCK_STREAM socket: a read shorter than asked drained it.
const STREAM: u16 = 64;
/// A socket photon made (photon_socket, photon_accept): its number's
/// lifetime is photon's to see (io_uring registers such sockets).
const CREATED: u16 = 128;
/// `fstat` of it never waits (`fstype::FsFacts::attrs_local`).
const ATTRS_LOCAL: u16 = 256;
/// Its transfers may block inside `io_uring_enter`
/// (`fstype::FsFacts::data_blocking`).
const DATA_BLOCKING: u16 = 512;

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
/// The facts of fds below [`CACHED`], two bytes each, in one anonymous
/// `MAP_NORESERVE` mapping made at first use (8 MiB of address space, of
/// which only the pages of fds in use are ever touched): every I/O call
/// reads it several times, so a lookup is one bounds check and one load.
static FACTS: AtomicPtr<AtomicU16> = AtomicPtr::new(core::ptr::null_mut());
/// Per fd, the vcpus that waited on it (bit `id % 64`), so `photon_close`
/// can wake their threads too.
static VCPUS: [AtomicPtr<AtomicU64>; CHUNKS] = [const { AtomicPtr::new(core::ptr::null_mut()) }; CHUNKS];

#[inline]
fn cell(fd: i32) -> Option<&'static AtomicU16> {
    let i = fd as u32 as usize; // a negative fd lands far beyond the table
    if i >= CACHED {
        return None;
    }
    let mut base = FACTS.load(Acquire);
    if base.is_null() {
        base = facts_table()?;
    }
    // SAFETY: the mapping holds CACHED zero-initialised cells (UNKNOWN)
    // and is never unmapped.
    Some(unsafe { &*base.add(i) })
}

/// Maps [`FACTS`] (once; None if the mapping fails: then nothing is
/// cached and each call asks the kernel).
#[cold]
#[inline(never)]
fn facts_table() -> Option<*mut AtomicU16> {
    // SAFETY: a fresh private anonymous mapping; no memory of ours is touched.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            CACHED * core::mem::size_of::<AtomicU16>(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    let p = p.cast::<AtomicU16>();
    match FACTS.compare_exchange(core::ptr::null_mut(), p, AcqRel, Acquire) {
        Ok(_) => Some(p),
        Err(winner) => {
            // SAFETY: our own unpublished mapping.
            unsafe { libc::munmap(p.cast(), CACHED * core::mem::size_of::<AtomicU16>()) };
            Some(winner)
        }
    }
}

/// The cell of `fd` in a table of lazily allocated chunks, if its chunk
/// exists (never allocates: for lookups on hot paths).
#[inline]
fn cell_present<T>(table: &'static [AtomicPtr<T>; CHUNKS], fd: i32) -> Option<&'static T> {
    let fd = usize::try_from(fd).ok()?;
    let chunk = table.get(fd / CHUNK)?.load(Acquire);
    // SAFETY: a published chunk holds CHUNK cells and is never freed.
    (!chunk.is_null()).then(|| unsafe { &*chunk.add(fd % CHUNK) })
}

/// The cell of `fd` in a table of lazily allocated chunks.
fn cell_in<T>(table: &'static [AtomicPtr<T>; CHUNKS], fd: i32, init: fn() -> T) -> Option<&'static T> {
    if let Some(c) = cell_present(table, fd) {
        return Some(c);
    }
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
fn facts(fd: i32) -> u16 {
    let cached = cached(fd);
    if cached & KNOWN != 0 {
        return cached;
    }
    learn(fd)
}

/// What is cached of `fd` ([`UNKNOWN`] if nothing): one load, never a
/// system call or the table's mapping (an fd beyond the table, negative
/// ones among them, or a table not mapped yet: nothing).
#[inline]
fn cached(fd: i32) -> u16 {
    let i = fd as u32 as usize; // a negative fd lands far beyond the table
    if i >= CACHED {
        return UNKNOWN;
    }
    let base = FACTS.load(Acquire);
    if base.is_null() {
        return UNKNOWN;
    }
    // SAFETY: as in `cell`: CACHED cells, never unmapped.
    unsafe { &*base.add(i) }.load(Relaxed)
}

/// Asks the kernel what `fd` is and what its file system is (`fstype`:
/// a statx that no file system needs its server for, and the mount table
/// once per mount), and caches the answer.
#[cold]
#[inline(never)]
fn learn(fd: i32) -> u16 {
    let mut f = KNOWN;
    if let Some((mode, fs)) = crate::fstype::classify(fd) {
        if fs.attrs_local {
            f |= ATTRS_LOCAL;
        }
        if fs.data_blocking {
            f |= DATA_BLOCKING;
        }
        match mode & libc::S_IFMT {
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
    file_facts(fd).stream()
}

/// True if `fd` is a regular file or block device.
pub(crate) fn is_storage(fd: i32) -> bool {
    file_facts(fd).storage()
}

/// True if `fd` is a file opened with O_DIRECT (as of its first use here).
pub(crate) fn is_direct(fd: i32) -> bool {
    file_facts(fd).direct()
}

/// What the I/O paths ask of an fd, from one lookup ([`file_facts`]): a
/// positioned read checks two facts on every call, a socket transfer three.
#[derive(Clone, Copy)]
pub(crate) struct FileFacts(u16);

impl FileFacts {
    /// As [`is_storage`].
    #[inline]
    pub(crate) fn storage(self) -> bool {
        self.0 & STORAGE != 0
    }

    /// As [`is_stream`].
    #[inline]
    pub(crate) fn stream(self) -> bool {
        self.0 & STREAM != 0
    }

    /// As [`is_fifo`].
    #[inline]
    pub(crate) fn fifo(self) -> bool {
        self.0 & FIFO != 0
    }

    /// True if O_NONBLOCK is known set ([`ensure_nonblocking`] has nothing to do).
    #[inline]
    pub(crate) fn nonblocking(self) -> bool {
        self.0 & NONBLOCK != 0
    }

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

/// True if `fd`'s facts are known (cached) and say it can seek and was not
/// opened with O_DIRECT: a positioned read of it may be served from the
/// page cache. One load, no system call: an fd not known yet, or beyond the
/// table (negative ones and the userspace stack's, `unet::FD_BASE` and up,
/// among them), answers false and goes the general way, which learns it.
#[inline]
pub(crate) fn known_buffered_seekable(fd: i32) -> bool {
    // Known, and neither `FileFacts::unseekable` nor `FileFacts::direct`,
    // in one compare.
    cached(fd) & (KNOWN | SOCKET | FIFO | DIRECT) == KNOWN
}

/// True if `fd`'s facts are known (cached) and say it is storage (a regular
/// file or block device) not opened with O_DIRECT: what read(2) of it may
/// serve from the page cache. One load, no system call, as
/// [`known_buffered_seekable`].
#[inline]
pub(crate) fn known_buffered_storage(fd: i32) -> bool {
    // Known, `FileFacts::storage` and not `FileFacts::direct`, in one
    // compare (storage is never a socket or a FIFO).
    cached(fd) & (KNOWN | STORAGE | DIRECT) == KNOWN | STORAGE
}

/// True if `fd`'s facts are known (cached) and say it is a SOCK_STREAM
/// socket: one load, no system call, as [`known_buffered_seekable`].
#[inline]
pub(crate) fn known_stream(fd: i32) -> bool {
    cached(fd) & (KNOWN | STREAM) == KNOWN | STREAM
}

// The fast lookups above leave the userspace stack's fds out by size.
const _: () = assert!(CACHED <= crate::unet::FD_BASE as usize);

/// True if `fd` is a pipe or FIFO.
pub(crate) fn is_fifo(fd: i32) -> bool {
    file_facts(fd).fifo()
}

/// Makes sure `fd` has O_NONBLOCK set (once), so a syscall on it cannot
/// block the vcpu.
#[inline]
pub(crate) fn ensure_nonblocking(fd: i32) -> Result<(), crate::Errno> {
    ensure_nonblocking_with(fd, file_facts(fd))
}

/// [`ensure_nonblocking`] given the fd's facts, looked up by the caller.
#[inline]
pub(crate) fn ensure_nonblocking_with(fd: i32, f: FileFacts) -> Result<(), crate::Errno> {
    if f.nonblocking() {
        return Ok(());
    }
    set_nonblocking(fd, f.0)
}

/// Sets O_NONBLOCK on `fd` (whose facts are `f`) and notes it.
#[cold]
#[inline(never)]
fn set_nonblocking(fd: i32, f: u16) -> Result<(), crate::Errno> {
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
/// SOCK_STREAM if `stream` (a socket's attributes are in memory).
pub(crate) fn new_socket(fd: i32, stream: bool) {
    if let Some(c) = cell(fd) {
        c.store(
            KNOWN | SOCKET | NONBLOCK | CREATED | ATTRS_LOCAL | if stream { STREAM } else { 0 },
            Relaxed,
        );
    }
}

/// True if `fstat` of `fd` never waits: a socket, a pipe, a file on a
/// local file system (`fstype`). False for a file system whose getattr may
/// ask a server or daemon, one photon cannot classify, and a closed fd.
/// One load once known.
#[inline]
pub(crate) fn attrs_local(fd: i32) -> bool {
    facts(fd) & ATTRS_LOCAL != 0
}

/// True if `fd` is a file on a file system whose transfers may block
/// inside `io_uring_enter` (FUSE, network file systems: `fstype`).
/// One load once known.
#[inline]
pub(crate) fn on_blocking_fs(fd: i32) -> bool {
    facts(fd) & DATA_BLOCKING != 0
}

/// True if `fd` is a socket photon made ([`new_socket`]) and has not seen
/// closed since.
pub(crate) fn is_created_socket(fd: i32) -> bool {
    cell(fd).is_some_and(|c| c.load(Relaxed) & (SOCKET | CREATED) == SOCKET | CREATED)
}

/// Notes that vcpu `id` has a thread waiting on `fd` (cheap when noted
/// before: a table lookup and one load, inlined into every wait).
#[inline]
pub(crate) fn note_vcpu(fd: i32, id: u32) {
    let bit = 1u64 << (id % 64);
    if cell_present(&VCPUS, fd).is_none_or(|c| c.load(Relaxed) & bit == 0) {
        note_vcpu_first(fd, bit);
    }
}

/// [`note_vcpu`] for a vcpu not noted yet (or an fd whose chunk is new).
#[cold]
#[inline(never)]
fn note_vcpu_first(fd: i32, bit: u64) {
    if let Some(c) = cell_in(&VCPUS, fd, || AtomicU64::new(0)) {
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
    held_forget(fd);
}

/// Per fd, who may hold bytes of its stream outside the kernel (io_uring
/// multishot receive, engine/uring/recv.rs): bits 0-15 the vcpu id + 1
/// whose engine has receive state for it (0: none), [`SPILLED`] bytes
/// handed over by such a vcpu and not yet read (see [`spill_put`]).
static HELD: [AtomicPtr<core::sync::atomic::AtomicU32>; CHUNKS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; CHUNKS];
/// Set once any fd had receive state: until then readers skip the table.
static HELD_USED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
/// [`HELD`] bit: bytes of the fd wait in the spill.
pub(crate) const SPILLED: u32 = 1 << 16;
const OWNER: u32 = 0xffff;

fn held_cell(fd: i32) -> Option<&'static core::sync::atomic::AtomicU32> {
    cell_in(&HELD, fd, || core::sync::atomic::AtomicU32::new(0))
}

/// The [`HELD`] word of `fd` (0 when no fd ever had receive state).
#[inline]
pub(crate) fn held(fd: i32) -> u32 {
    if !held_used() {
        return 0;
    }
    held_cell(fd).map_or(0, |c| c.load(SeqCst))
}

/// False until some fd had receive state (an opt-in multishot receive):
/// until then no fd's [`held`] word needs a look.
#[inline]
pub(crate) fn held_used() -> bool {
    HELD_USED.load(Relaxed)
}

/// The vcpu (id) whose engine has receive state for `fd`, if any.
pub(crate) fn held_owner(word: u32) -> Option<u32> {
    match word & OWNER {
        0 => None,
        o => Some(o - 1),
    }
}

/// Makes vcpu `id` the owner of `fd`'s receive state: false if another
/// vcpu owns it, or if another vcpu has waited on `fd` (the caller then
/// keeps to plain receives). The store comes before the look at
/// [`vcpus`], as a reader's [`note_vcpu`] comes before its look at
/// [`held`]: one of the two sees the other.
pub(crate) fn claim_held(fd: i32, id: u32) -> bool {
    let Some(c) = held_cell(fd) else { return false };
    HELD_USED.store(true, SeqCst);
    let me = (id & OWNER) + 1;
    let mut cur = c.load(SeqCst);
    loop {
        if cur & OWNER == me {
            break;
        }
        if cur & OWNER != 0 {
            return false;
        }
        match c.compare_exchange(cur, cur | me, SeqCst, SeqCst) {
            Ok(_) => break,
            Err(x) => cur = x,
        }
    }
    core::sync::atomic::fence(SeqCst);
    if vcpus(fd) & !(1u64 << (id % 64)) != 0 {
        release_held(fd, id);
        return false;
    }
    true
}

/// Vcpu `id` no longer has receive state for `fd`.
pub(crate) fn release_held(fd: i32, id: u32) {
    if let Some(c) = held_cell(fd) {
        let me = (id & OWNER) + 1;
        let _ = c.fetch_update(SeqCst, SeqCst, |w| (w & OWNER == me).then_some(w & !OWNER));
    }
}

/// Clears `fd`'s owner whoever it is (its vcpu is gone).
pub(crate) fn drop_owner(fd: i32, word: u32) {
    if let Some(c) = held_cell(fd) {
        let _ = c.compare_exchange(word, word & !OWNER, SeqCst, SeqCst);
    }
}

/// Bytes of an fd's stream handed over by the vcpu that held them, and the
/// end of the stream (0) or error (-errno) that came after them.
struct Spill {
    fd: i32,
    bytes: Vec<u8>,
    at: usize,
    end: Option<i32>,
}

static SPILLS: std::sync::Mutex<Vec<Spill>> = std::sync::Mutex::new(Vec::new());

/// Hands `bytes` (then `end`) of `fd` to whichever vcpu reads it next.
pub(crate) fn spill_put(fd: i32, bytes: Vec<u8>, end: Option<i32>) {
    if bytes.is_empty() && end.is_none() {
        return;
    }
    let mut s = SPILLS.lock().unwrap_or_else(|e| e.into_inner());
    match s.iter_mut().find(|x| x.fd == fd) {
        Some(x) => {
            x.bytes.extend_from_slice(&bytes);
            if end.is_some() {
                x.end = end;
            }
        }
        None => s.push(Spill { fd, bytes, at: 0, end }),
    }
    if let Some(c) = held_cell(fd) {
        HELD_USED.store(true, SeqCst);
        c.fetch_or(SPILLED, SeqCst);
    }
}

/// Takes up to `want` spilled bytes of `fd` through `copy` (which gets
/// them as one slice and returns how many it took; `consume` false: they
/// stay, as for MSG_PEEK). Returns what `copy` returned, or the end of
/// the stream / error once the bytes are gone; None if nothing is spilled.
pub(crate) fn spill_take(fd: i32, consume: bool, copy: impl FnOnce(&[u8]) -> usize) -> Option<i64> {
    let mut s = SPILLS.lock().unwrap_or_else(|e| e.into_inner());
    let i = s.iter().position(|x| x.fd == fd)?;
    let x = &mut s[i];
    let r = if x.at < x.bytes.len() {
        let n = copy(&x.bytes[x.at..]);
        if consume {
            x.at += n;
        }
        n as i64
    } else {
        let e = x.end.unwrap_or(0);
        if e < 0 && consume {
            x.end = None;
        }
        e as i64
    };
    let x = &s[i];
    if x.at >= x.bytes.len() && x.end.is_none_or(|e| e == 0) && consume {
        // Only a clean end is left (read again and again, as the kernel
        // would): the kernel says it from now on.
        s.swap_remove(i);
        if let Some(c) = held_cell(fd) {
            c.fetch_and(!SPILLED, SeqCst);
        }
    }
    Some(r)
}

/// True if spilled bytes (or an error after them) of `fd` wait.
pub(crate) fn spill_has_data(fd: i32) -> Option<bool> {
    let s = SPILLS.lock().unwrap_or_else(|e| e.into_inner());
    s.iter()
        .find(|x| x.fd == fd)
        .map(|x| x.at < x.bytes.len() || x.end.is_some())
}

/// `fd` is being closed (or its number reused): its spill and owner go.
pub(crate) fn held_forget(fd: i32) {
    if held(fd) == 0 {
        return;
    }
    if let Some(c) = held_cell(fd) {
        c.fetch_and(OWNER, SeqCst);
    }
    let mut s = SPILLS.lock().unwrap_or_else(|e| e.into_inner());
    s.retain(|x| x.fd != fd);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file-system facts are learnt with the others, once per fd (a
    /// pipe: local attributes, no blocking data), go with [`forget`], and
    /// come with [`new_socket`].
    #[test]
    fn fs_facts_follow_the_fd() {
        let mut p = [-1; 2];
        // SAFETY: two ints; the fds are ours and closed below.
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        let fd = p[0];
        forget(fd);
        assert_eq!(cached(fd), UNKNOWN);
        assert!(attrs_local(fd));
        assert!(!on_blocking_fs(fd));
        let want = KNOWN | ATTRS_LOCAL | FIFO;
        assert_eq!(cached(fd) & (want | DATA_BLOCKING), want);
        forget(fd);
        assert_eq!(cached(fd), UNKNOWN);
        new_socket(fd, true);
        assert_eq!(cached(fd) & (ATTRS_LOCAL | DATA_BLOCKING), ATTRS_LOCAL);
        forget(fd);
        for x in p {
            // SAFETY: our own fds.
            unsafe { libc::close(x) };
        }
        assert!(!attrs_local(-1), "not an fd");
    }
}
