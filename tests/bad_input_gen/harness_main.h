/*
 * harness_main.h: runs the CASES[] the generated file defined (after
 * harness.h), each in a forked child with a deadline, so that a crash or a
 * hang is reported by case. One line per case:
 *
 *   #N C call -> ret errno=E ok|WRONG (want W)
 *   #N C call -> CRASH signal S (name)      (the parent's line)
 *   #N C call -> HANG killed after D s      (the parent's line)
 *
 * where C is the context letter (see harness.h). Then a SUMMARY line.
 * Exit status 0 only if every case was ok.
 *
 * Arguments: [first [end]] to run a range of case numbers.
 */
#ifndef PHOTON_BAD_INPUT_GEN_MAIN_H
#define PHOTON_BAD_INPUT_GEN_MAIN_H

#define NCASES ((int)(sizeof CASES / sizeof CASES[0]))
#define CASE_DEADLINE_S 5

static const char CTX_LETTER[] = "VTPNF";
static struct res got_res;

static const char *errno_name(int e) {
    const char *n = e ? strerrorname_np(e) : "0";
    return n ? n : "?";
}

static void run_call(const struct case_def *c) {
    errno = 0;
    c->call(&got_res);
    got_res.done = 1;
}

static void *call_in_photon_thread(void *arg) {
    run_call((const struct case_def *)arg);
    return NULL;
}

static void *call_in_pthread(void *arg) {
    run_call((const struct case_def *)arg);
    /* a pthread that became a vcpu (photon_init) ends it */
    if (on_vcpu()) (void)photon_fini();
    return NULL;
}

static void must_init(void) {
    if (photon_init(PHOTON_EVENT_DEFAULT, 0) != 0) fx_fail("photon_init");
}

static int errno_in(const struct case_def *c, int e) {
    for (int i = 0; i < c->nerrs; i++)
        if (c->errs[i] == e) return 1;
    return 0;
}

static int failed(const struct case_def *c, long ret) {
    return c->ret_kind == RET_PTR ? ret == 0 : ret == -1;
}

static int check(const struct case_def *c, const struct res *got, const struct res *want) {
    switch (c->exp_kind) {
    case EXP_OK:
        if (c->ret_kind == RET_PTR) return got->ret != 0;
        if (c->ret_kind == RET_INT) return got->ret >= 0;
        return 1;
    case EXP_VAL: return got->ret == c->val;
    case EXP_VAL_KEEP: return got->ret == c->val && got->err == 0;
    case EXP_ERR: return failed(c, got->ret) && errno_in(c, got->err);
    case EXP_ERR_ANY: return failed(c, got->ret);
    case EXP_ANY: return 1;
    case EXP_LIBC:
        return got->ret == want->ret && (want->ret != -1 || got->err == want->err);
    }
    return 0;
}

static int child_main(int i, const char *base) {
    const struct case_def *c = &CASES[i];
    struct res want = {0, 0, 0};
    pthread_t pt;
    photon_thread *th;
    int cleanup_err = 0;

    setvbuf(stdout, NULL, _IONBF, 0);
    snprintf(fx.dir, sizeof fx.dir, "%s/c%d", base, i);
    if (mkdir(fx.dir, 0700) != 0) fx_fail("mkdir case dir");
    alarm(CASE_DEADLINE_S);

    switch (c->ctx) {
    case CTX_V:
        must_init();
        c->setup();
        if (c->libc) {
            errno = 0;
            c->libc(&want);
        }
        run_call(c);
        break;
    case CTX_T:
        must_init();
        c->setup();
        th = photon_thread_create(call_in_photon_thread, (void *)(uintptr_t)c, 0);
        if (!th || photon_thread_enable_join(th) != 0 || photon_thread_join(th, NULL) != 0)
            fx_fail("photon thread for the call");
        break;
    case CTX_P:
        must_init();
        c->setup();
        if (pthread_create(&pt, NULL, call_in_pthread, (void *)(uintptr_t)c) != 0 ||
            pthread_join(pt, NULL) != 0)
            fx_fail("pthread for the call");
        break;
    case CTX_N:
        c->setup();
        run_call(c);
        break;
    case CTX_F:
        must_init();
        c->setup();
        if (photon_fini() != 0) fx_fail("photon_fini before the call");
        run_call(c);
        break;
    }
    /* the vcpu (main's, or one the call made) must still end cleanly */
    if (on_vcpu() && photon_fini() != 0) cleanup_err = errno;

    int ok = got_res.done && check(c, &got_res, &want) && !cleanup_err;
    printf("#%d %c %s -> %ld errno=%s %s (want %s", i, CTX_LETTER[c->ctx], c->text, got_res.ret,
           errno_name(got_res.err), ok ? "ok" : "WRONG", c->want);
    if (c->exp_kind == EXP_LIBC)
        printf(": libc gave %ld errno=%s", want.ret, errno_name(want.err));
    printf(")");
    if (!got_res.done) printf(" [the call did not return]");
    if (cleanup_err) printf(" [photon_fini after the call: errno %s]", errno_name(cleanup_err));
    printf("\n");
    return ok ? 0 : 1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(int argc, char **argv) {
    int first = argc > 1 ? atoi(argv[1]) : 0;
    int end = argc > 2 ? atoi(argv[2]) : NCASES;
    int n_ok = 0, n_wrong = 0, n_crash = 0, n_hang = 0;
    char base[] = "/tmp/photon-bad-input.XXXXXX";

    setvbuf(stdout, NULL, _IONBF, 0);
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 2;
    }
    if (end > NCASES) end = NCASES;
    printf("== bad_input_gen: cases %d..%d of %d (PHOTON_ENGINE=%s, libphoton %s)\n", first, end,
           NCASES, getenv("PHOTON_ENGINE") ? getenv("PHOTON_ENGINE") : "(unset)", photon_version());
    for (int i = first; i < end; i++) {
        const struct case_def *c = &CASES[i];
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 2;
        }
        if (pid == 0) _exit(child_main(i, base));
        struct timespec start, now, nap = {0, 200000};
        int status = 0, hung = 0;
        clock_gettime(CLOCK_MONOTONIC, &start);
        while (waitpid(pid, &status, WNOHANG) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec - start.tv_sec > CASE_DEADLINE_S + 1) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                hung = 1;
                break;
            }
            nanosleep(&nap, NULL);
        }
        if (hung || (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)) {
            printf("#%d %c %s -> HANG killed after %d s (want %s)\n", i, CTX_LETTER[c->ctx], c->text,
                   CASE_DEADLINE_S, c->want);
            n_hang++;
        } else if (WIFSIGNALED(status)) {
            printf("#%d %c %s -> CRASH signal %d (%s) (want %s)\n", i, CTX_LETTER[c->ctx], c->text,
                   WTERMSIG(status), strsignal(WTERMSIG(status)), c->want);
            n_crash++;
        } else if (WEXITSTATUS(status) == 0) {
            n_ok++;
        } else {
            if (WEXITSTATUS(status) != 1)
                printf("#%d %c %s -> EXIT %d (want %s)\n", i, CTX_LETTER[c->ctx], c->text,
                       WEXITSTATUS(status), c->want);
            n_wrong++;
        }
    }
    nftw(base, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    printf("SUMMARY cases=%d ok=%d wrong=%d crash=%d hang=%d\n", end - first, n_ok, n_wrong, n_crash,
           n_hang);
    return n_ok == end - first ? 0 : 1;
}

#endif /* PHOTON_BAD_INPUT_GEN_MAIN_H */
