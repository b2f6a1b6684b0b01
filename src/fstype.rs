//! Which kind of file system an fd's file lives on, as far as blocking
//! goes: the one classification behind two per-fd facts `fdinfo` keeps.
//!
//! - Attributes in memory ([`FsFacts::attrs_local`]): `fstat`/`statx` of the
//!   open fd never waits, so `photon_fstat` makes it on the vcpu (`fs`).
//!   True of sockets, and of files on a mount whose type is not a blocking
//!   one ([`is_blocking_fs_type`]: ext4, xfs, btrfs, tmpfs, overlay, proc,
//!   ...), or on one of the kernel's internal mounts (pipes, eventfds and
//!   other anonymous inodes, memfds: [`is_internal_dev`]). False for a
//!   blocking file system, whose getattr may ask its server or daemon, and
//!   for a mount photon cannot find (another mount namespace's, a lazily
//!   unmounted one): those keep the engine's way.
//! - Data that may block inside `io_uring_enter` ([`FsFacts::data_blocking`]):
//!   a regular file, block device or directory on a blocking file system;
//!   the io_uring engine queues its transfers with `IOSQE_ASYNC`.
//!
//! The mount is looked up in /proc/self/mountinfo by the fd's mount id
//! (`STATX_MNT_ID`, 5.8+: right for btrfs subvolumes and overlay files,
//! whose `st_dev` is not their mount's) or else by its device, once per
//! mount and device in the process ([`mount_class`]). The fd's own type,
//! device and mount come from a `statx` with `AT_STATX_DONT_SYNC` and no
//! attribute that needs revalidation, which NFS, FUSE and CIFS answer from
//! their cache (asking the file system itself, with `fstatfs`, could block
//! on the very server this is meant to avoid).
//!
//! A device or mount number reused by a later mount keeps the class of the
//! earlier one (as the io_uring engine's per-engine cache did before).
//! An overlay counts as local whatever its layers are.

use std::sync::Mutex;

/// What [`classify`] tells of an fd.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct FsFacts {
    /// `fstat` of the fd never waits for a server or daemon.
    pub(crate) attrs_local: bool,
    /// Its transfers may block inside `io_uring_enter` (module doc).
    pub(crate) data_blocking: bool,
}

/// What a mount is, for [`FsFacts`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mount {
    /// A file system whose getattr and I/O never wait for another party.
    Local,
    /// [`is_blocking_fs_type`].
    Blocking,
    /// Not in this process's mount table, nor one of the kernel's own.
    Unknown,
}

/// File systems whose operations can block the submitting thread even
/// when io_uring asks for a non-blocking attempt, and whose getattr may
/// ask a server or daemon (FUSE waits for its daemon, virtiofs for the
/// host's; network and cluster file systems for their servers or locks).
pub(crate) fn is_blocking_fs_type(t: &str) -> bool {
    (t.starts_with("fuse") && t != "fusectl")
        || (t.starts_with("nfs") && t != "nfsd")
        || matches!(
            t,
            "cifs"
                | "smb3"
                | "smbfs"
                | "ceph"
                | "9p"
                | "afs"
                | "coda"
                | "ocfs2"
                | "gfs2"
                | "glusterfs"
                | "virtiofs"
                | "lustre"
                | "gpfs"
                | "beegfs"
                | "orangefs"
                | "pvfs2"
                | "vboxsf"
                | "davfs"
                | "ncpfs"
        )
}

/// The type of the mount with id `mnt` (else the one with device `dev`)
/// in the mountinfo text `info`.
fn mount_type(info: &str, mnt: Option<u64>, dev: libc::dev_t) -> Option<&str> {
    let want_dev = format!("{}:{}", libc::major(dev), libc::minor(dev));
    info.lines().find_map(|l| {
        let mut fields = l.split(' ');
        let id = fields.next()?;
        let found = match mnt {
            Some(m) => id.parse::<u64>().ok() == Some(m),
            None => fields.nth(1)? == want_dev,
        };
        if !found {
            return None;
        }
        l.split(" - ").nth(1)?.split(' ').next()
    })
}

/// The class of a mount type found in the mount table (None: not found).
fn class_of(fs_type: Option<&str>) -> Option<Mount> {
    fs_type.map(|t| {
        if is_blocking_fs_type(t) {
            Mount::Blocking
        } else {
            Mount::Local
        }
    })
}

/// Whether `dev` is the device of one of the kernel's internal mounts that
/// hold a process's anonymous files: the pipe file system, anonymous
/// inodes (eventfd, epoll, timerfd, signalfd, io_uring...), the internal
/// tmpfs of memfds. None of them is in the mount table; all keep their
/// attributes in memory. The devices are learnt once by making one of each
/// and closing it; as with [`mount_class`]'s table, the lock is only tried
/// (a child forked while another thread held it learns them again on each
/// call instead of waiting forever).
fn is_internal_dev(dev: libc::dev_t) -> bool {
    let mut kept = crate::sync::try_guard(&INTERNAL_DEVS);
    if let Some(devs) = kept.as_ref().and_then(|k| k.as_ref()) {
        return devs.contains(&dev);
    }
    let devs = learn_internal_devs();
    let internal = devs.contains(&dev);
    if let Some(k) = kept.as_mut() {
        **k = Some(devs);
    }
    internal
}

/// What [`is_internal_dev`] has learnt (None: nothing yet).
static INTERNAL_DEVS: Mutex<Option<Vec<libc::dev_t>>> = Mutex::new(None);

/// The devices [`is_internal_dev`] knows, from one pipe, one eventfd and
/// one memfd, made and closed.
fn learn_internal_devs() -> Vec<libc::dev_t> {
    let mut fds = Vec::new();
    let mut p = [-1; 2];
    // SAFETY: a valid array of two ints; the fds are ours.
    if unsafe { crate::sys::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } == 0 {
        fds.extend(p);
    }
    // SAFETY: plain fd-making calls; a NUL-terminated name.
    fds.push(unsafe { crate::sys::eventfd(0, libc::EFD_CLOEXEC) });
    // SAFETY: as above.
    fds.push(unsafe { crate::sys::memfd_create(c"photon-probe".as_ptr(), libc::MFD_CLOEXEC) });
    let mut devs = Vec::new();
    for fd in fds.into_iter().filter(|&fd| fd >= 0) {
        // SAFETY: a zeroed stat is valid; our own fd, then closed.
        unsafe {
            let mut st: libc::stat = core::mem::zeroed();
            if crate::sys::fstat(fd, &mut st) == 0 && !devs.contains(&st.st_dev) {
                devs.push(st.st_dev);
            }
            crate::sys::close(fd);
        }
    }
    devs
}

/// The class of the mount with id `mnt` (if the kernel said) and device
/// `dev`: looked up once per pair in the process, kept for its life.
///
/// The table's lock is only tried, never waited for: a child forked while
/// another thread held it would otherwise wait forever at its first new
/// fd (and a vcpu never waits for another's lookup); without the lock the
/// class is worked out again and not kept.
fn mount_class(mnt: Option<u64>, dev: libc::dev_t) -> Mount {
    static KNOWN: Mutex<Vec<(Option<u64>, libc::dev_t, Mount)>> = Mutex::new(Vec::new());
    let known = || crate::sync::try_guard(&KNOWN);
    if let Some(m) = known().and_then(|k| k.iter().find(|&&(i, d, _)| i == mnt && d == dev).map(|e| e.2)) {
        return m;
    }
    let info = crate::sys::read_proc_file(c"/proc/self/mountinfo").unwrap_or_else(|| {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            log::info!(
                "photon: /proc/self/mountinfo cannot be read: files' mounts are unknown (photon_fstat of \
                 them goes through the engine, and none is taken for a blocking file system)"
            );
        });
        String::new()
    });
    let m = class_of(mount_type(&info, mnt, dev)).unwrap_or_else(|| {
        if is_internal_dev(dev) {
            Mount::Local
        } else {
            Mount::Unknown
        }
    });
    if let Some(mut k) = known() {
        k.push((mnt, dev, m));
    }
    m
}

/// The type, device and mount id (if the kernel has it) of `fd`'s file,
/// asked so that no file system needs its server: None if `fd` is not open.
fn identify(fd: i32) -> Option<(u32, libc::dev_t, Option<u64>)> {
    // SAFETY: a zeroed statx is valid.
    let mut x: libc::statx = unsafe { core::mem::zeroed() };
    let flags = libc::AT_EMPTY_PATH | libc::AT_STATX_DONT_SYNC;
    let mask = libc::STATX_TYPE | libc::STATX_MNT_ID;
    // SAFETY: a NUL-terminated empty path and a valid out pointer.
    if unsafe { crate::sys::statx(fd, c"".as_ptr(), flags, mask, &mut x) } == 0 {
        let dev = libc::makedev(x.stx_dev_major, x.stx_dev_minor);
        let mnt = (x.stx_mask & libc::STATX_MNT_ID != 0).then_some(x.stx_mnt_id);
        if mnt.is_none() {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                log::info!(
                    "photon: statx gives no mount id here (before 5.8): files' mounts are found by device \
                     (btrfs subvolumes and some overlay files are then of an unknown mount: photon_fstat \
                     of them goes through the engine)"
                );
            });
        }
        return Some((u32::from(x.stx_mode), dev, mnt));
    }
    let e = crate::errno::Errno::last_os_error();
    if e.0 != libc::EBADF {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| log::info!("photon: statx of an fd failed ({e}): fds are classified with fstat"));
    }
    // No statx (before 4.11, or refused by a filter): fstat.
    // SAFETY: a zeroed stat is valid; a valid out pointer.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: as above.
    (unsafe { crate::sys::fstat(fd, &mut st) } == 0).then_some((st.st_mode, st.st_dev, None))
}

/// The file type and mode (`st_mode`) of `fd` and its [`FsFacts`]: None
/// if it is not an open fd.
pub(crate) fn classify(fd: i32) -> Option<(u32, FsFacts)> {
    let (mode, dev, mnt) = identify(fd)?;
    let ty = mode & libc::S_IFMT;
    if ty == libc::S_IFSOCK {
        // Sockets live in the kernel's socket file system whatever path
        // a Unix socket was bound to.
        let local = FsFacts {
            attrs_local: true,
            data_blocking: false,
        };
        return Some((mode, local));
    }
    let m = mount_class(mnt, dev);
    let facts = FsFacts {
        attrs_local: m == Mount::Local,
        // What moves data through the file system (a FIFO's or a device
        // node's transfers do not).
        data_blocking: m == Mount::Blocking && matches!(ty, libc::S_IFREG | libc::S_IFBLK | libc::S_IFDIR),
    };
    Some((mode, facts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_types() {
        for t in [
            "nfs",
            "nfs4",
            "fuse",
            "fuse.sshfs",
            "fuseblk",
            "cifs",
            "smb3",
            "ceph",
            "9p",
            "virtiofs",
            "lustre",
        ] {
            assert!(is_blocking_fs_type(t), "{t}");
        }
        for t in [
            "ext4", "xfs", "btrfs", "tmpfs", "overlay", "proc", "sysfs", "nfsd", "fusectl", "devtmpfs",
        ] {
            assert!(!is_blocking_fs_type(t), "{t}");
        }
    }

    const INFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 22 0:40 / /mnt/a rw,relatime shared:20 - nfs4 srv:/a rw,vers=4.2
41 22 0:41 / /mnt/b rw,nosuid master:3 - fuse.sshfs me@h:/ rw,user_id=0
45 22 0:45 / /var/lib/x rw - overlay overlay rw,lowerdir=/l,upperdir=/u";

    #[test]
    fn mountinfo_lookup() {
        let dev = |a, b| libc::makedev(a, b);
        assert_eq!(mount_type(INFO, None, dev(254, 0)), Some("ext4"));
        assert_eq!(mount_type(INFO, None, dev(0, 40)), Some("nfs4"));
        assert_eq!(
            mount_type(INFO, Some(41), dev(0, 99)),
            Some("fuse.sshfs"),
            "by mount id"
        );
        assert_eq!(
            mount_type(INFO, Some(45), dev(0, 40)),
            Some("overlay"),
            "the id, not the device"
        );
        assert_eq!(mount_type(INFO, Some(7), dev(254, 0)), None, "an id not in the table");
        assert_eq!(mount_type(INFO, None, dev(0, 9)), None);
        assert_eq!(class_of(mount_type(INFO, None, dev(0, 40))), Some(Mount::Blocking));
        assert_eq!(class_of(mount_type(INFO, Some(41), 0)), Some(Mount::Blocking));
        assert_eq!(class_of(mount_type(INFO, Some(45), 0)), Some(Mount::Local));
        assert_eq!(class_of(mount_type(INFO, Some(22), 0)), Some(Mount::Local));
        assert_eq!(class_of(None), None);
    }

    /// Sockets, pipes, eventfds, memfds and a file in the build directory
    /// (on the test machine's local file system) have local attributes
    /// and no blocking data; what is not an fd has no facts.
    #[test]
    fn classify_fds() {
        let local = Some(FsFacts {
            attrs_local: true,
            data_blocking: false,
        });
        // SAFETY: plain fd-making calls; the fds are closed below.
        let (s, e, m) = unsafe {
            (
                libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0),
                libc::eventfd(0, libc::EFD_CLOEXEC),
                libc::memfd_create(c"t".as_ptr(), libc::MFD_CLOEXEC),
            )
        };
        let mut p = [-1; 2];
        // SAFETY: two ints.
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // Beside the test binary (the target directory, wherever it is): a
        // disk file system like the ones the library meets, not a tmpfs.
        let path = std::env::current_exe()
            .unwrap()
            .with_file_name(format!("photon-fstype-{}.dat", std::process::id()));
        let f = std::fs::File::create(&path).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        for (what, x) in [
            ("socket", s),
            ("eventfd", e),
            ("memfd", m),
            ("pipe", p[0]),
            ("file", fd),
        ] {
            assert!(x >= 0, "{what}");
            assert_eq!(classify(x).map(|(_, k)| k), local, "{what}");
        }
        for x in [s, e, m, p[0], p[1]] {
            // SAFETY: our own fds.
            unsafe { libc::close(x) };
        }
        assert!(classify(-1).is_none(), "not an fd");
        drop(f);
        let _ = std::fs::remove_file(&path);
    }

    /// The internal mounts' devices are known with their lock free, and
    /// also while it is held, as in a child forked while another thread
    /// held it: then they are learnt again instead of waited for.
    #[test]
    fn internal_devs_without_waiting() {
        let mut p = [-1; 2];
        // SAFETY: two ints.
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: a zeroed stat is valid; our fd.
        let mut st: libc::stat = unsafe { core::mem::zeroed() };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::fstat(p[0], &mut st) }, 0);
        // SAFETY: a zeroed stat is valid.
        let mut file: libc::stat = unsafe { core::mem::zeroed() };
        // SAFETY: a NUL-terminated path, a valid out pointer.
        assert_eq!(unsafe { libc::stat(c"Cargo.toml".as_ptr(), &mut file) }, 0);
        assert!(is_internal_dev(st.st_dev), "a pipe");
        assert!(!is_internal_dev(file.st_dev), "a file of the source tree");
        assert!(
            INTERNAL_DEVS.lock().unwrap_or_else(|e| e.into_inner()).is_some(),
            "kept"
        );
        let held = INTERNAL_DEVS.lock().unwrap_or_else(|e| e.into_inner());
        assert!(is_internal_dev(st.st_dev), "a pipe, with the lock held");
        assert!(!is_internal_dev(file.st_dev), "a file, with the lock held");
        drop(held);
        for x in p {
            // SAFETY: our own fds.
            unsafe { libc::close(x) };
        }
    }
}
