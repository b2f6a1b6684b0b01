/* File opening and metadata calls in photon threads under
 * libphoton_preload.so: open, openat, fstat, unlink, rename, fallocate,
 * ftruncate.
 *
 * 1. An open that waits (a FIFO opened for reading before any writer) is a
 *    photon wait: the writer, a photon thread of the same vcpu, runs and
 *    opens the other end, and a ticker keeps running meanwhile. Without the
 *    hook the vcpu blocks in open forever (a watchdog fails the run).
 * 2. Results and errno are libc's: the same calls made from a photon thread
 *    and from a plain pthread give the same answers (mode bits after the
 *    umask, sizes, EEXIST, ENOENT, EBADF, openat relative to a directory).
 * Usage: fsmeta DIR (an existing, empty scratch directory).
 * Exit status 0 when every check passed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <photon.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int failures;
static const char *dir;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);           \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
            __atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);            \
        }                                                                  \
    } while (0)

/* ---- 1. a FIFO open waits as a photon wait ---- */

static char fifo[512];
static volatile int fifo_done, ticks;

static void *ticker(void *arg) {
    (void)arg;
    while (!fifo_done) {
        usleep(1000);
        ticks++;
    }
    return NULL;
}

static void *fifo_reader(void *arg) {
    (void)arg;
    int fd = open(fifo, O_RDONLY);
    CHECK(fd >= 0, "open fifo for reading: %s", strerror(errno));
    char buf[8] = {0};
    if (fd >= 0) {
        CHECK(read(fd, buf, 2) == 2 && memcmp(buf, "hi", 2) == 0, "fifo read");
        close(fd);
    }
    fifo_done = 1;
    return NULL;
}

static void *fifo_writer(void *arg) {
    (void)arg;
    usleep(50000);
    int fd = openat(AT_FDCWD, fifo, O_WRONLY);
    CHECK(fd >= 0, "open fifo for writing: %s", strerror(errno));
    if (fd >= 0) {
        CHECK(write(fd, "hi", 2) == 2, "fifo write");
        close(fd);
    }
    return NULL;
}

static void *watchdog(void *arg) {
    (void)arg;
    for (int i = 0; i < 500 && !fifo_done; i++)
        usleep(10000);
    if (!fifo_done) {
        fprintf(stderr, "FAIL: the FIFO open blocked the vcpu (no photon wait)\n");
        _exit(3);
    }
    return NULL;
}

/* ---- 2. the same answers as libc on a plain pthread ---- */

struct answers {
    int create_fd, create_errno, excl_errno, missing_errno, bad_fstat_errno, unlink_missing_errno,
        rename_missing_errno, bad_fallocate_errno, bad_ftruncate_errno, at_fd;
    mode_t mode;
    off_t size_after_truncate, size_after_fallocate;
    int same_ino_at, renamed_ok, unlinked_ok;
};

static void semantics(const char *tag, struct answers *a) {
    char path[600], path2[600], sub[600], rel[64];
    snprintf(path, sizeof path, "%s/%s.f", dir, tag);
    snprintf(path2, sizeof path2, "%s/%s.g", dir, tag);
    snprintf(sub, sizeof sub, "%s/%s.d", dir, tag);
    snprintf(rel, sizeof rel, "%s.in", tag);
    memset(a, 0, sizeof *a);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    a->create_fd = fd >= 0;
    a->create_errno = fd >= 0 ? 0 : errno;
    struct stat st;
    if (fd >= 0) {
        CHECK(fstat(fd, &st) == 0, "%s fstat", tag);
        a->mode = st.st_mode;
        CHECK(ftruncate(fd, 12345) == 0, "%s ftruncate", tag);
        fstat(fd, &st);
        a->size_after_truncate = st.st_size;
        CHECK(fallocate(fd, 0, 0, 65536) == 0, "%s fallocate: %s", tag, strerror(errno));
        fstat(fd, &st);
        a->size_after_fallocate = st.st_size;
        close(fd);
    }
    errno = 0;
    a->excl_errno = open(path, O_RDWR | O_CREAT | O_EXCL, 0666) < 0 ? errno : 0;
    errno = 0;
    a->missing_errno = open("/nonexistent/photon/x", O_RDONLY) < 0 ? errno : 0;
    errno = 0;
    a->bad_fstat_errno = fstat(9999, &st) < 0 ? errno : 0;
    errno = 0;
    a->bad_fallocate_errno = fallocate(9999, 0, 0, 10) < 0 ? errno : 0;
    errno = 0;
    a->bad_ftruncate_errno = ftruncate(9999, 10) < 0 ? errno : 0;
    /* openat relative to a directory fd */
    mkdir(sub, 0755);
    int dfd = open(sub, O_RDONLY | O_DIRECTORY);
    int afd = dfd >= 0 ? openat(dfd, rel, O_RDWR | O_CREAT, 0600) : -1;
    a->at_fd = afd >= 0;
    if (afd >= 0) {
        struct stat s1, s2;
        char full[700];
        snprintf(full, sizeof full, "%s/%s", sub, rel);
        fstat(afd, &s1);
        a->same_ino_at = stat(full, &s2) == 0 && s1.st_ino == s2.st_ino;
        close(afd);
        unlink(full);
    }
    if (dfd >= 0)
        close(dfd);
    rmdir(sub);
    a->renamed_ok = rename(path, path2) == 0 && access(path2, F_OK) == 0 && access(path, F_OK) != 0;
    errno = 0;
    a->rename_missing_errno = rename(path, path2) < 0 ? errno : 0;
    a->unlinked_ok = unlink(path2) == 0 && access(path2, F_OK) != 0;
    errno = 0;
    a->unlink_missing_errno = unlink(path2) < 0 ? errno : 0;
}

static struct answers in_photon, in_pthread;

static void *photon_semantics(void *arg) {
    (void)arg;
    semantics("photon", &in_photon);
    return NULL;
}

static void *pthread_semantics(void *arg) {
    (void)arg;
    semantics("pthread", &in_pthread);
    return NULL;
}

static photon_thread *spawn(photon_entry f) {
    photon_thread *t = photon_thread_create(f, NULL, 0);
    if (!t || photon_thread_enable_join(t) != 0) {
        perror("photon_thread_create");
        exit(2);
    }
    return t;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    umask(022);
    if (photon_init(0, 0) != 0) {
        perror("photon_init");
        return 2;
    }
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    unlink(fifo);
    if (mkfifo(fifo, 0600) != 0) {
        perror("mkfifo");
        return 2;
    }
    pthread_t wd;
    pthread_create(&wd, NULL, watchdog, NULL);
    photon_thread *t1 = spawn(ticker), *t2 = spawn(fifo_reader), *t3 = spawn(fifo_writer);
    photon_thread_join(t2, NULL);
    photon_thread_join(t3, NULL);
    photon_thread_join(t1, NULL);
    pthread_join(wd, NULL);
    CHECK(ticks >= 10, "the ticker ran %d times while the FIFO open waited", ticks);
    unlink(fifo);

    photon_thread *t = spawn(photon_semantics);
    photon_thread_join(t, NULL);
    pthread_t pt;
    pthread_create(&pt, NULL, pthread_semantics, NULL);
    pthread_join(pt, NULL);
    CHECK(in_pthread.create_fd && in_pthread.mode == (S_IFREG | 0644), "libc baseline: create");
    CHECK(memcmp(&in_photon, &in_pthread, sizeof in_photon) == 0,
          "photon thread and plain pthread differ: create %d/%d errno %d/%d mode %o/%o excl %d/%d "
          "missing %d/%d badfstat %d/%d badfalloc %d/%d badtrunc %d/%d at %d/%d ino %d/%d size %ld/%ld "
          "%ld/%ld renamed %d/%d rename-missing %d/%d unlinked %d/%d unlink-missing %d/%d",
          in_photon.create_fd, in_pthread.create_fd, in_photon.create_errno, in_pthread.create_errno,
          in_photon.mode, in_pthread.mode, in_photon.excl_errno, in_pthread.excl_errno,
          in_photon.missing_errno, in_pthread.missing_errno, in_photon.bad_fstat_errno,
          in_pthread.bad_fstat_errno, in_photon.bad_fallocate_errno, in_pthread.bad_fallocate_errno,
          in_photon.bad_ftruncate_errno, in_pthread.bad_ftruncate_errno, in_photon.at_fd, in_pthread.at_fd,
          in_photon.same_ino_at, in_pthread.same_ino_at, (long)in_photon.size_after_truncate,
          (long)in_pthread.size_after_truncate, (long)in_photon.size_after_fallocate,
          (long)in_pthread.size_after_fallocate, in_photon.renamed_ok, in_pthread.renamed_ok,
          in_photon.rename_missing_errno, in_pthread.rename_missing_errno, in_photon.unlinked_ok,
          in_pthread.unlinked_ok, in_photon.unlink_missing_errno, in_pthread.unlink_missing_errno);
    photon_fini();
    if (failures) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    printf("fsmeta: FIFO open waited as a photon wait (%d ticks); open/openat/fstat/unlink/rename/"
           "fallocate/ftruncate give libc's answers\n",
           ticks);
    return 0;
}
