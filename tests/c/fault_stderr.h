/*
 * fault_stderr.h: capture what the library logs. libphoton logs to fd 2
 * with plain write(2) calls (src/lib.rs, PHOTON_LOG, default level warn),
 * so pointing fd 2 at a temporary file with dup2 captures every line.
 */
#ifndef PHOTON_TEST_FAULT_STDERR_H
#define PHOTON_TEST_FAULT_STDERR_H

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

struct captured {
    int saved;    /* the real stderr */
    int file;     /* the temporary file */
    char text[16384];
};

/* From now on fd 2 writes to a temporary file. */
static inline void capture_start(struct captured *c) {
    char path[] = "/tmp/photon-fault-stderr-XXXXXX";
    c->file = mkstemp(path);
    CHECK(c->file >= 0, "mkstemp: %s", strerror(errno));
    CHECK_OK(unlink(path));
    c->saved = dup(2);
    CHECK(c->saved >= 0, "dup(2): %s", strerror(errno));
    CHECK(dup2(c->file, 2) == 2, "dup2: %s", strerror(errno));
    c->text[0] = '\0';
}

/* Restores fd 2; c->text holds what was written meanwhile, which is also
 * echoed to stdout (so a test run shows it). */
static inline const char *capture_stop(struct captured *c) {
    CHECK(dup2(c->saved, 2) == 2, "dup2 back: %s", strerror(errno));
    close(c->saved);
    ssize_t n = pread(c->file, c->text, sizeof c->text - 1, 0);
    close(c->file);
    c->text[n > 0 ? n : 0] = '\0';
    printf("  --- captured stderr (%zd bytes)\n%s  ---\n", n > 0 ? n : 0, c->text);
    return c->text;
}

/* How many lines of `text` contain `needle`. */
static inline int count_lines_with(const char *text, const char *needle) {
    int n = 0;
    const char *line = text;
    while (*line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[2048];
        size_t l = len < sizeof buf - 1 ? len : sizeof buf - 1;
        memcpy(buf, line, l);
        buf[l] = '\0';
        if (strstr(buf, needle) != NULL) n++;
        line += len + (end ? 1 : 0);
    }
    return n;
}

#endif /* PHOTON_TEST_FAULT_STDERR_H */
