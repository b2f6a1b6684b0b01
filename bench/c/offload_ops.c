/* libphoton: N offloaded file operations from one photon thread, for
 * instruction counts under callgrind (bench/README.md, "Offloaded
 * operations without allocations"). Run it with PHOTON_ENGINE=epoll, where
 * every file write and every O_DIRECT read goes to the offload pool (under
 * Valgrind kernel AIO is off, so O_DIRECT reads always do), at two N and
 * take the difference: instructions per operation without the start-up.
 *
 *   offload_ops pread  PATH N   4 KiB O_DIRECT preads of PATH (>= 64 KiB)
 *   offload_ops pwrite PATH N   4 KiB buffered pwrites into a new file PATH
 *   offload_ops open   PATH N   photon_open(PATH, O_RDONLY) + photon_close
 *   offload_ops fstat  PATH N   photon_fstat of PATH opened once
 *
 * Output: RESULT ops=N */
#define _GNU_SOURCE
#include <photon.h>

#include "files_common.h"

int main(int argc, char** argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s pread|pwrite|open|fstat PATH N\n", argv[0]);
        return 2;
    }
    int rd = strcmp(argv[1], "pread") == 0;
    long n = atol(argv[3]);
    if (photon_init(PHOTON_EVENT_DEFAULT, 0) != 0) BENCH_DIE("photon_init");
    if (strcmp(argv[1], "open") == 0) {
        for (long i = 0; i < n; i++) {
            int fd = photon_open(argv[2], O_RDONLY | O_CLOEXEC, 0);
            if (fd < 0) BENCH_DIE("photon_open(%s) %ld", argv[2], i);
            if (photon_close(fd) != 0) BENCH_DIE("photon_close");
        }
        printf("RESULT ops=%ld engine=%s\n", n, photon_engine_name());
        if (photon_fini() != 0) BENCH_DIE("photon_fini");
        return 0;
    }
    if (strcmp(argv[1], "fstat") == 0) {
        int fd = photon_open(argv[2], O_RDONLY | O_CLOEXEC, 0);
        if (fd < 0) BENCH_DIE("photon_open(%s)", argv[2]);
        for (long i = 0; i < n; i++) {
            struct stat st;
            if (photon_fstat(fd, &st) != 0 || st.st_size <= 0) BENCH_DIE("photon_fstat %ld", i);
        }
        if (photon_close(fd) != 0) BENCH_DIE("photon_close");
        printf("RESULT ops=%ld engine=%s\n", n, photon_engine_name());
        if (photon_fini() != 0) BENCH_DIE("photon_fini");
        return 0;
    }
    int fd = rd ? photon_open(argv[2], O_RDONLY | O_DIRECT | O_CLOEXEC, 0)
                : photon_open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) BENCH_DIE("photon_open(%s)", argv[2]);
    unsigned char* buf = files_aligned(FILES_BLOCK);
    memset(buf, 0x5A, FILES_BLOCK);
    for (long i = 0; i < n; i++) {
        off_t off = (off_t)(i % 16) * FILES_BLOCK;
        ssize_t r = rd ? photon_pread(fd, buf, FILES_BLOCK, off) : photon_pwrite(fd, buf, FILES_BLOCK, off);
        if (r != FILES_BLOCK) BENCH_DIE("%s %ld returned %zd", argv[1], i, r);
    }
    free(buf);
    if (photon_close(fd) != 0) BENCH_DIE("photon_close");
    printf("RESULT ops=%ld engine=%s\n", n, photon_engine_name());
    if (photon_fini() != 0) BENCH_DIE("photon_fini");
    return 0;
}
