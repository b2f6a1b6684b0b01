/* Shared helpers of the preload shim's benchmark programs (bench/c/preload_*.c,
 * driven by `cargo run --release --bin preload`; header-only).
 *
 * Besides bench_common.h's output protocol, every program says whether
 * libphoton_preload.so is loaded (`shim=1` or `shim=0` on its RESULT line),
 * so the driver can check that each contender ran as labelled. */
#ifndef PHOTON_BENCH_PRELOAD_COMMON_H
#define PHOTON_BENCH_PRELOAD_COMMON_H

#include "bench_common.h"

#include <dlfcn.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

/* 1 when the `read` every call in this process resolves to is the shim's
 * (LD_PRELOAD=libphoton_preload.so), 0 when it is libc's. */
static inline int preload_shim_loaded(void) {
    void *sym = dlsym(RTLD_DEFAULT, "read");
    Dl_info info;
    if (sym == NULL || dladdr(sym, &info) == 0 || info.dli_fname == NULL) {
        errno = ENOENT;
        BENCH_DIE("cannot find which object defines read()");
    }
    return strstr(info.dli_fname, "libphoton_preload") != NULL;
}

/* User + system CPU seconds of this whole process (all its threads). */
static inline double preload_self_cpu_s(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) BENCH_DIE("getrusage");
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec * 1e-6;
}

/* User + system CPU seconds of process `pid` from /proc/PID/stat (fields 14
 * and 15, in clock ticks); -1 when pid is 0 or the file cannot be read. */
static inline double preload_proc_cpu_s(long pid) {
    if (pid <= 0) return -1.0;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return -1.0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (p == NULL) return -1.0;
    unsigned long long utime = 0, stime = 0;
    /* after ')': state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2) return -1.0;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* Busy CPU seconds of the whole machine (all CPUs: user, nice, system, irq,
 * softirq) from /proc/stat; -1 when it cannot be read. */
static inline double preload_machine_busy_s(void) {
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL) return -1.0;
    unsigned long long user = 0, nice = 0, sys = 0, idle = 0, iowait = 0, irq = 0, softirq = 0;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu", &user, &nice, &sys, &idle, &iowait, &irq, &softirq);
    fclose(f);
    if (n != 7) return -1.0;
    return (double)(user + nice + sys + irq + softirq) / (double)sysconf(_SC_CLK_TCK);
}

#endif
