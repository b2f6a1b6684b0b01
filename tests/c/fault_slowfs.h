/*
 * fault_slowfs.h: a tiny FUSE file system served by a pthread of the test
 * itself (the raw /dev/fuse protocol, no libfuse), so that a test can hold
 * a file read in the kernel for as long as it likes: a file whose pread
 * really blocks, wherever the kernel runs it (the epoll engine's offload
 * helper thread; for io_uring, an io-wq worker, an async page-cache wait,
 * or the submitting thread itself), until the test answers it.
 *
 * The mount point holds one file, "slow", of SLOWFS_SIZE bytes whose byte at
 * offset i is slowfs_byte(i) (made up on the fly). slowfs_mount's flags say
 * how the kernel reads it: FUSE_ASYNC_READ (page-cache readahead without
 * waiting, what libfuse daemons offer) and FOPEN_DIRECT_IO (every read goes
 * to the daemon, as sshfs or s3fs do).
 *
 * Read modes (slowfs_set_mode):
 *  - SLOWFS_FAST: reads are answered at once;
 *  - SLOWFS_HOLD: one read at a time is held (slowfs_wait_held waits for
 *    it) until slowfs_release answers it, or until a FUSE_INTERRUPT for it
 *    arrives (the kernel sends one when the reading thread gets a signal),
 *    which the daemon honours by failing the read with EINTR, as a FUSE
 *    daemon that supports interrupts does.
 *
 * Mounting needs CAP_SYS_ADMIN and /dev/fuse: slowfs_mount returns -1 with
 * errno (and the caller skips what needs it) where they are missing.
 *
 * A process must never end while a read of its own daemon is pending (its
 * exiting threads would wait for the dead daemon in state D for good): an
 * exit handler, and slowfs_abort for watchdogs, abort the connection.
 */
#ifndef PHOTON_TEST_SLOWFS_H
#define PHOTON_TEST_SLOWFS_H

#include <fcntl.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define SLOWFS_SIZE (64ull << 20) /* made up on the fly: costs no memory */
#define SLOWFS_FILE_NODE 2

enum slowfs_mode { SLOWFS_FAST, SLOWFS_HOLD };

struct slowfs {
    int fd; /* /dev/fuse */
    char dir[64];
    char path[96]; /* dir + "/slow" */
    pthread_t daemon;
    atomic_int mode;
    /* the held read: its unique id (0: none), offset and size */
    atomic_ullong held_unique;
    uint64_t held_off;
    uint32_t held_size;
    atomic_int reads;      /* FUSE_READ requests seen */
    atomic_int interrupts; /* FUSE_INTERRUPT requests seen */
    atomic_int honoured;   /* reads failed with EINTR for an interrupt */
    atomic_int ended;      /* the daemon's loop is over */
    uint32_t init_flags;   /* FUSE_* flags the daemon accepts at FUSE_INIT */
    uint32_t open_flags;   /* FOPEN_* of the file */
    char abort_path[96];   /* fusectl's abort file of this connection ("" if none) */
};

/* The mounted slowfs, for the exit handler. */
static struct slowfs *slowfs_active;

static inline unsigned char slowfs_byte(uint64_t off) {
    return (unsigned char)(off * 7 + (off >> 12) + 3);
}

/* One reply: header + payload in one writev(2) (the kernel wants it whole). */
static inline void slowfs_reply(struct slowfs *fs, uint64_t unique, int error, const void *data,
                                size_t len) {
    struct fuse_out_header h;
    if (error) len = 0;
    h.len = (uint32_t)(sizeof h + len);
    h.error = error ? -error : 0;
    h.unique = unique;
    struct iovec iov[2] = {{&h, sizeof h}, {(void *)data, len}};
    /* ENOENT: the request is gone (interrupted and answered already) */
    ssize_t w = writev(fs->fd, iov, len ? 2 : 1);
    (void)w;
}

#define SLOWFS_MAX_READ (1u << 20)

static inline void slowfs_answer_read(struct slowfs *fs, uint64_t unique, uint64_t off,
                                      uint32_t size) {
    /* the daemon and a releasing thread may answer two reads at once */
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static unsigned char data[SLOWFS_MAX_READ];
    if (off >= SLOWFS_SIZE) size = 0;
    else if (size > SLOWFS_SIZE - off) size = (uint32_t)(SLOWFS_SIZE - off);
    if (size > sizeof data) size = sizeof data;
    pthread_mutex_lock(&lock);
    for (uint32_t i = 0; i < size; i++) data[i] = slowfs_byte(off + i);
    slowfs_reply(fs, unique, 0, data, size);
    pthread_mutex_unlock(&lock);
}

static inline void slowfs_attr(struct fuse_attr *a, uint64_t node) {
    memset(a, 0, sizeof *a);
    a->ino = node;
    if (node == FUSE_ROOT_ID) {
        a->mode = S_IFDIR | 0755;
        a->nlink = 2;
    } else {
        a->mode = S_IFREG | 0644;
        a->nlink = 1;
        a->size = SLOWFS_SIZE;
        a->blocks = SLOWFS_SIZE / 512;
    }
    a->blksize = 4096;
}

static inline void *slowfs_daemon(void *arg) {
    struct slowfs *fs = arg;
    static unsigned char buf[FUSE_MIN_READ_BUFFER + 65536 + 4096];
    for (;;) {
        ssize_t n = read(fs->fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            atomic_store(&fs->ended, 1); /* ENODEV: unmounted */
            return NULL;
        }
        if ((size_t)n < sizeof(struct fuse_in_header)) continue;
        struct fuse_in_header in;
        memcpy(&in, buf, sizeof in);
        const unsigned char *body = buf + sizeof in;
        switch (in.opcode) {
        case FUSE_INIT: {
            struct fuse_init_in ii;
            memcpy(&ii, body, sizeof ii);
            struct fuse_init_out o;
            memset(&o, 0, sizeof o);
            o.major = FUSE_KERNEL_VERSION;
            o.minor = FUSE_KERNEL_MINOR_VERSION;
            o.max_readahead = ii.max_readahead;
            o.max_background = 16;
            o.congestion_threshold = 12;
            o.max_write = 65536;
            o.time_gran = 1;
            o.flags = ii.flags & fs->init_flags;
            slowfs_reply(fs, in.unique, 0, &o, sizeof o);
            break;
        }
        case FUSE_LOOKUP: {
            if (in.nodeid != FUSE_ROOT_ID || strcmp((const char *)body, "slow") != 0) {
                slowfs_reply(fs, in.unique, ENOENT, NULL, 0);
                break;
            }
            struct fuse_entry_out e;
            memset(&e, 0, sizeof e);
            e.nodeid = SLOWFS_FILE_NODE;
            e.generation = 1;
            e.entry_valid = 3600;
            e.attr_valid = 3600;
            slowfs_attr(&e.attr, SLOWFS_FILE_NODE);
            slowfs_reply(fs, in.unique, 0, &e, sizeof e);
            break;
        }
        case FUSE_GETATTR: {
            struct fuse_attr_out a;
            memset(&a, 0, sizeof a);
            a.attr_valid = 3600;
            slowfs_attr(&a.attr, in.nodeid);
            slowfs_reply(fs, in.unique, 0, &a, sizeof a);
            break;
        }
        case FUSE_OPEN: {
            struct fuse_open_out o;
            memset(&o, 0, sizeof o);
            o.fh = 1;
            o.open_flags = fs->open_flags;
            slowfs_reply(fs, in.unique, 0, &o, sizeof o);
            break;
        }
        case FUSE_READ: {
            struct fuse_read_in r;
            memcpy(&r, body, sizeof r);
            atomic_fetch_add(&fs->reads, 1);
            if (atomic_load(&fs->mode) == SLOWFS_FAST || atomic_load(&fs->held_unique) != 0) {
                slowfs_answer_read(fs, in.unique, r.offset, r.size);
                break;
            }
            fs->held_off = r.offset;
            fs->held_size = r.size;
            atomic_store(&fs->held_unique, in.unique);
            break;
        }
        case FUSE_INTERRUPT: {
            struct fuse_interrupt_in ii;
            memcpy(&ii, body, sizeof ii);
            atomic_fetch_add(&fs->interrupts, 1);
            /* no reply to FUSE_INTERRUPT itself */
            if (atomic_load(&fs->mode) == SLOWFS_HOLD) {
                unsigned long long want = ii.unique;
                if (atomic_compare_exchange_strong(&fs->held_unique, &want, 0)) {
                    atomic_fetch_add(&fs->honoured, 1);
                    slowfs_reply(fs, ii.unique, EINTR, NULL, 0);
                }
            }
            break;
        }
        case FUSE_FORGET:
        case FUSE_BATCH_FORGET:
            break; /* no reply */
        case FUSE_FLUSH:
        case FUSE_RELEASE:
        case FUSE_RELEASEDIR:
            slowfs_reply(fs, in.unique, 0, NULL, 0);
            break;
        case FUSE_DESTROY:
            slowfs_reply(fs, in.unique, 0, NULL, 0);
            break;
        default:
            slowfs_reply(fs, in.unique, ENOSYS, NULL, 0);
            break;
        }
    }
}

/* Aborts the connection: every request waiting on the daemon fails with
 * ENOTCONN at once. A process must never exit with a read of its own
 * daemon pending: the exiting threads close their files, FUSE waits for the
 * daemon's answer uninterruptibly, and the daemon thread is gone already
 * (the process would hang in state D for good). */
static inline void slowfs_abort(struct slowfs *fs) {
    if (fs->abort_path[0] == '\0') return;
    int a = open(fs->abort_path, O_WRONLY | O_CLOEXEC);
    if (a >= 0) {
        ssize_t w = write(a, "1", 1);
        (void)w;
        close(a);
    }
}

/* atexit: a failed CHECK exits with the mount still there. */
static inline void slowfs_at_exit(void) {
    struct slowfs *fs = slowfs_active;
    if (fs == NULL) return;
    slowfs_abort(fs);
    umount2(fs->dir, MNT_DETACH);
    rmdir(fs->dir);
}

/* Finds (mounting fusectl if needed) the abort file of the connection
 * mounted at fs->dir: /sys/fs/fuse/connections/<device number>/abort. The
 * device comes from /proc/self/mountinfo: a stat of the mount point would
 * be a request to the daemon, which may be the thing that is stuck. */
static inline void slowfs_find_abort(struct slowfs *fs) {
    fs->abort_path[0] = '\0';
    FILE *mi = fopen("/proc/self/mountinfo", "r");
    if (mi == NULL) return;
    char line[1024];
    unsigned major = 0, minor = 0;
    int found = 0;
    while (!found && fgets(line, sizeof line, mi) != NULL) {
        unsigned id, parent, ma, mi_;
        char root[256], point[256];
        if (sscanf(line, "%u %u %u:%u %255s %255s", &id, &parent, &ma, &mi_, root, point) == 6 &&
            strcmp(point, fs->dir) == 0) {
            major = ma;
            minor = mi_;
            found = 1;
        }
    }
    fclose(mi);
    if (!found) return;
    /* the kernel's dev_t: 12 bits of major above 20 bits of minor */
    snprintf(fs->abort_path, sizeof fs->abort_path, "/sys/fs/fuse/connections/%u/abort",
             (major << 20) | minor);
    if (access(fs->abort_path, W_OK) != 0) {
        mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, NULL);
    }
    if (access(fs->abort_path, W_OK) != 0) fs->abort_path[0] = '\0';
}

/* Mounts a slowfs under /tmp, its daemon accepting the FUSE_* `init_flags`
 * the kernel offers and opening the file with the FOPEN_* `open_flags`; -1
 * with errno if this host does not allow it. */
static inline int slowfs_mount(struct slowfs *fs, uint32_t init_flags, uint32_t open_flags) {
    memset(fs, 0, sizeof *fs);
    fs->fd = -1;
    fs->init_flags = init_flags;
    fs->open_flags = open_flags;
    snprintf(fs->dir, sizeof fs->dir, "/tmp/photon-slowfs-XXXXXX");
    if (mkdtemp(fs->dir) == NULL) return -1;
    snprintf(fs->path, sizeof fs->path, "%s/slow", fs->dir);
    fs->fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fs->fd < 0) {
        int e = errno;
        rmdir(fs->dir);
        errno = e;
        return -1;
    }
    char opts[128];
    snprintf(opts, sizeof opts, "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other",
             fs->fd);
    if (mount("photon-slowfs", fs->dir, "fuse", MS_NOSUID | MS_NODEV, opts) != 0) {
        int e = errno;
        close(fs->fd);
        rmdir(fs->dir);
        errno = e;
        return -1;
    }
    CHECK(pthread_create(&fs->daemon, NULL, slowfs_daemon, fs) == 0, "pthread_create slowfs");
    slowfs_find_abort(fs);
    static int registered;
    if (!registered) {
        registered = 1;
        atexit(slowfs_at_exit);
    }
    slowfs_active = fs;
    return 0;
}

static inline void slowfs_set_mode(struct slowfs *fs, enum slowfs_mode m) {
    atomic_store(&fs->mode, (int)m);
}

/* Waits (plain OS sleeps: call it from a pthread, or briefly) until a read
 * is held; 1 if one is, 0 after `ms` milliseconds. */
static inline int slowfs_wait_held(struct slowfs *fs, int ms) {
    for (int i = 0; i < ms; i++) {
        if (atomic_load(&fs->held_unique) != 0) return 1;
        struct timespec t = {0, 1000000};
        nanosleep(&t, NULL);
    }
    return atomic_load(&fs->held_unique) != 0;
}

/* Answers the held read, if any, with its data; 1 if there was one. */
static inline int slowfs_release(struct slowfs *fs) {
    unsigned long long u = atomic_exchange(&fs->held_unique, 0);
    if (u == 0) return 0;
    slowfs_answer_read(fs, u, fs->held_off, fs->held_size);
    return 1;
}

/* Unmounts (lazily: an abandoned read may still hold the file), aborts the
 * connection and ends the daemon. */
static inline void slowfs_unmount(struct slowfs *fs) {
    slowfs_active = NULL;
    slowfs_set_mode(fs, SLOWFS_FAST);
    slowfs_release(fs);
    CHECK(umount2(fs->dir, MNT_DETACH) == 0, "umount2 %s: %s", fs->dir, strerror(errno));
    /* with the mount gone and no file open, the kernel aborts the
     * connection: the daemon's read fails with ENODEV */
    for (int i = 0; i < 2000 && !atomic_load(&fs->ended); i++) {
        struct timespec t = {0, 1000000};
        nanosleep(&t, NULL);
    }
    if (!atomic_load(&fs->ended)) {
        slowfs_abort(fs);
        for (int i = 0; i < 2000 && !atomic_load(&fs->ended); i++) {
            struct timespec t = {0, 1000000};
            nanosleep(&t, NULL);
        }
    }
    if (atomic_load(&fs->ended)) {
        pthread_join(fs->daemon, NULL);
        close(fs->fd);
    } else {
        /* a file is still open somewhere: the connection lives on until
         * the process exits; leave the daemon serving it */
        pthread_detach(fs->daemon);
    }
    rmdir(fs->dir);
}

#endif /* PHOTON_TEST_SLOWFS_H */
