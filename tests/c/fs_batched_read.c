/*
 * Buffered reads served from the page cache, alone and in a batch. A
 * photon_pread made while no other photon thread of the vcpu is ready is
 * served on the vcpu (preadv2 with RWF_NOWAIT: nothing goes to the engine).
 * Reads made by threads that are ready in the same scheduler turn go, under
 * io_uring with PHOTON_IO_ON=batched_read (opt-in), on the ring, and reach
 * the kernel together in one io_uring_enter; by default (or with
 * PHOTON_IO_OFF=batched_read, which wins) each stays on the vcpu, and
 * PHOTON_IO_OFF=cached_read puts every read on the ring. Under epoll every
 * read is served on the vcpu. The vcpu's io_submitted counter (operations
 * the engine had to be waited for) tells which way each phase went; every
 * read's bytes are checked.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

#define NTHREADS 8
#define BLOCK 4096
#define NBLOCKS 64

static int g_fd;

static unsigned char byte_at(off_t pos) {
    uint64_t x = (uint64_t)pos * 0x9E3779B97F4A7C15ULL;
    return (unsigned char)(x ^ (x >> 29));
}

static void read_block(int b, const char *who) {
    unsigned char buf[BLOCK];
    memset(buf, 0xEE, sizeof buf);
    ssize_t n = photon_pread(g_fd, buf, BLOCK, (off_t)b * BLOCK);
    CHECK(n == BLOCK, "%s: photon_pread of block %d returned %zd (%s)", who, b, n,
          strerror(errno));
    for (int i = 0; i < BLOCK; i++) {
        off_t at = (off_t)b * BLOCK + i;
        CHECK(buf[i] == byte_at(at), "%s: byte %lld is 0x%02x, want 0x%02x", who,
              (long long)at, buf[i], byte_at(at));
    }
}

static void *reader(void *arg) {
    read_block((int)(intptr_t)arg * 5 + 3, "batched reader");
    return NULL;
}

int main(void) {
    test_start("fs_batched_read");
    test_init();
    int ring = engine_is("io_uring");
    int cached_off = io_feature_listed("PHOTON_IO_OFF", "cached_read");
    int batched_off = io_feature_listed("PHOTON_IO_OFF", "batched_read") ||
                      !io_feature_listed("PHOTON_IO_ON", "batched_read");

    char dir[] = "/tmp/photon_fs_batch_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    char path[128];
    snprintf(path, sizeof path, "%s/data", dir);
    g_fd = photon_open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(g_fd >= 0, "photon_open: %s", strerror(errno));
    unsigned char *all = malloc((size_t)NBLOCKS * BLOCK);
    CHECK(all != NULL, "malloc");
    for (off_t i = 0; i < (off_t)NBLOCKS * BLOCK; i++) all[i] = byte_at(i);
    CHECK(photon_pwrite(g_fd, all, (size_t)NBLOCKS * BLOCK, 0) == (ssize_t)NBLOCKS * BLOCK,
          "photon_pwrite: %s", strerror(errno));
    free(all);
    /* Written through the page cache: every block is there now. */

    /* Alone: nothing else is ready, so each read is served on the vcpu. */
    uint64_t s0 = io_submitted();
    for (int b = 0; b < NTHREADS; b++) read_block(b, "main alone");
    uint64_t alone = io_submitted() - s0;
    uint64_t want_alone = ring && cached_off ? NTHREADS : 0;
    CHECK(alone == want_alone, "%d reads made alone: %llu went to the engine, want %llu",
          NTHREADS, (unsigned long long)alone, (unsigned long long)want_alone);

    /* Together: NTHREADS threads ready in one turn, one read each. */
    photon_thread *th[NTHREADS];
    s0 = io_submitted();
    for (int i = 0; i < NTHREADS; i++) th[i] = spawn_joinable(reader, (void *)(intptr_t)i, 0);
    for (int i = 0; i < NTHREADS; i++) CHECK_OK(photon_thread_join(th[i], NULL));
    uint64_t together = io_submitted() - s0;
    if (ring && cached_off) {
        CHECK(together == NTHREADS, "cached_read off: %llu of %d reads went to the engine",
              (unsigned long long)together, NTHREADS);
    } else if (ring && !batched_off) {
        /* Every thread but the last finds others ready; the last joins the
         * queued reads, unless a scheduler poll (every 64 decisions) handed
         * them to the kernel just before it ran: then it reads alone. */
        CHECK(together >= NTHREADS - 1 && together <= NTHREADS,
              "%d reads made by threads ready together: %llu went to the engine, want %d (or %d)",
              NTHREADS, (unsigned long long)together, NTHREADS, NTHREADS - 1);
    } else {
        CHECK(together == 0, "%d reads made by threads ready together: %llu went to the engine, want 0",
              NTHREADS, (unsigned long long)together);
    }
    printf("engine %s, PHOTON_IO_OFF=%s, PHOTON_IO_ON=%s: alone %llu, together %llu on the engine\n",
           photon_engine_name(), getenv("PHOTON_IO_OFF") ? getenv("PHOTON_IO_OFF") : "",
           getenv("PHOTON_IO_ON") ? getenv("PHOTON_IO_ON") : "",
           (unsigned long long)alone, (unsigned long long)together);

    CHECK_OK(photon_close(g_fd));
    CHECK_OK(unlink(path));
    CHECK_OK(rmdir(dir));
    test_fini();
    SAY("fs_batched_read: OK");
    return 0;
}
