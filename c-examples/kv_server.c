/*
 * kv_server: a small key-value server, the example of README's "Porting a
 * pthread server to libphoton (C)". It was a thread-per-connection pthread
 * server (a pthread per connection, a global pthread_mutex, an expiry
 * thread that sleep()s, one outbound connection per SET to a replica);
 * ported, each of those became its libphoton counterpart:
 *
 *   pthread per connection + accept loop -> photon_server_serve_on (one
 *                                           photon thread per connection,
 *                                           accept loops on N vcpus)
 *   pthread_mutex_lock/unlock            -> photon_mutex_lock/unlock
 *   pthread_create (expiry thread)       -> photon_thread_create
 *   sleep(1)                             -> photon_thread_sleep(1)
 *   recv / send / connect / close        -> photon_recv / photon_write_full /
 *                                           photon_connect / photon_close
 *   setsockopt(TCP_NODELAY) per conn     -> photon_server_set_sockopt, once
 *   signal handler + self-pipe           -> photon_server_stop_on_signal
 *
 *   kv_server [--port N] [--ip ADDR] [--vcpus N] [--replica PORT]
 *
 * Protocol, one command per line, one reply line each:
 *   SET key value [ttl_seconds]  -> OK        (also sent to the replica)
 *   GET key                      -> VALUE v   or NOTFOUND
 *   DEL key                      -> DELETED   or NOTFOUND
 *   STATS                        -> KEYS k SETS s GETS g EXPIRED e VCPUS v
 *   anything else                -> ERROR ...
 * Keys and values are words of at most 255 bytes.
 *
 * It prints "kv_server: listening on PORT (N vcpus, ENGINE engine)" and
 * flushes stdout, so a script can start it with --port 0. SIGTERM or SIGINT
 * stop it: the accept loops end, the connections of the other vcpus are
 * ended, the expiry thread is interrupted, the table is freed, and it
 * prints its counters and exits 0.
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "photon.h"

#define BUCKETS 4096
#define WORD_MAX 255
#define LINE_MAX_LEN 1024
#define IO_TIMEOUT_US (30ULL * 1000 * 1000) /* for writes and the replica */

struct entry {
    struct entry *next;
    uint64_t expires_us; /* 0: never */
    char key[WORD_MAX + 1];
    char value[WORD_MAX + 1];
};

/* The table and its counters: one photon_mutex, correct across vcpus (it
 * was a pthread_mutex_t; a plain pthread mutex would block a whole vcpu
 * when contended). */
static struct entry *table[BUCKETS];
static photon_mutex *table_lock;
static unsigned long n_keys, n_sets, n_gets, n_expired;
static unsigned vcpus = 2;
static uint16_t replica_port; /* 0: no replica */

static unsigned bucket_of(const char *key) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) h = (h ^ *p) * 16777619u;
    return h % BUCKETS;
}

/* Finds key's link in its bucket (the caller holds table_lock). */
static struct entry **find(const char *key) {
    struct entry **e = &table[bucket_of(key)];
    while (*e && strcmp((*e)->key, key) != 0) e = &(*e)->next;
    return e;
}

static void table_set(const char *key, const char *value, uint64_t ttl_s) {
    photon_mutex_lock(table_lock, PHOTON_FOREVER);
    struct entry **e = find(key);
    if (!*e) {
        struct entry *n = calloc(1, sizeof *n);
        if (!n) {
            photon_mutex_unlock(table_lock);
            return;
        }
        snprintf(n->key, sizeof n->key, "%s", key);
        *e = n;
        n_keys++;
    }
    snprintf((*e)->value, sizeof (*e)->value, "%s", value);
    (*e)->expires_us = ttl_s ? photon_now_us() + ttl_s * 1000000ULL : 0;
    n_sets++;
    photon_mutex_unlock(table_lock);
}

/* Copies key's value into out; 1 if found. */
static int table_get(const char *key, char *out, size_t cap) {
    photon_mutex_lock(table_lock, PHOTON_FOREVER);
    struct entry *e = *find(key);
    if (e) snprintf(out, cap, "%s", e->value);
    n_gets++;
    photon_mutex_unlock(table_lock);
    return e != NULL;
}

static int table_del(const char *key) {
    photon_mutex_lock(table_lock, PHOTON_FOREVER);
    struct entry **e = find(key);
    struct entry *gone = *e;
    if (gone) {
        *e = gone->next;
        n_keys--;
    }
    photon_mutex_unlock(table_lock);
    free(gone);
    return gone != NULL;
}

/* The expiry thread: wakes every second and drops expired keys. It was a
 * pthread calling sleep(1); photon_thread_sleep waits without holding up
 * the vcpu. photon_thread_interrupt ends it. */
static void *expiry_main(void *arg) {
    (void)arg;
    while (photon_thread_sleep(1) == 0) {
        uint64_t now = photon_now_us();
        photon_mutex_lock(table_lock, PHOTON_FOREVER);
        for (unsigned b = 0; b < BUCKETS; b++) {
            struct entry **e = &table[b];
            while (*e) {
                if ((*e)->expires_us && (*e)->expires_us <= now) {
                    struct entry *gone = *e;
                    *e = gone->next;
                    free(gone);
                    n_keys--;
                    n_expired++;
                } else {
                    e = &(*e)->next;
                }
            }
        }
        photon_mutex_unlock(table_lock);
    }
    return NULL;
}

/* One outbound connection per SET, to the replica (as the original did
 * with connect/send/recv/close). Returns 0 when the replica said OK. */
static int replicate(const char *key, const char *value, uint64_t ttl_s) {
    struct sockaddr_in a;
    char line[LINE_MAX_LEN];
    int fd = photon_socket(AF_INET, SOCK_STREAM, 0);
    int ok = -1;
    if (fd < 0) return -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(replica_port);
    if (photon_connect(fd, (struct sockaddr *)&a, sizeof a, IO_TIMEOUT_US) == 0) {
        int k = snprintf(line, sizeof line, "SET %s %s %llu\n", key, value, (unsigned long long)ttl_s);
        ssize_t n;
        if (photon_write_full(fd, line, (size_t)k, IO_TIMEOUT_US) == k &&
            (n = photon_recv(fd, line, sizeof line - 1, 0, IO_TIMEOUT_US)) > 0) {
            line[n] = '\0';
            ok = strncmp(line, "OK", 2) == 0 ? 0 : -1;
        }
    }
    photon_close(fd);
    return ok;
}

/* Runs one command line; writes the reply (with its newline) into out. */
static void command(char *line, char *out, size_t cap) {
    char *save = NULL;
    char *verb = strtok_r(line, " \t\r", &save);
    char *key = strtok_r(NULL, " \t\r", &save);
    char *value = strtok_r(NULL, " \t\r", &save);
    char *ttl = strtok_r(NULL, " \t\r", &save);
    if (verb && strcmp(verb, "STATS") == 0) {
        photon_mutex_lock(table_lock, PHOTON_FOREVER);
        snprintf(out, cap, "KEYS %lu SETS %lu GETS %lu EXPIRED %lu VCPUS %u\n", n_keys, n_sets, n_gets, n_expired,
                 vcpus);
        photon_mutex_unlock(table_lock);
    } else if (!verb || !key || strlen(key) > WORD_MAX) {
        snprintf(out, cap, "ERROR want SET key value [ttl], GET key, DEL key or STATS\n");
    } else if (strcmp(verb, "SET") == 0 && value && strlen(value) <= WORD_MAX) {
        uint64_t ttl_s = ttl ? strtoull(ttl, NULL, 10) : 0;
        table_set(key, value, ttl_s);
        if (replica_port && replicate(key, value, ttl_s) != 0)
            snprintf(out, cap, "ERROR stored here, the replica did not answer\n");
        else
            snprintf(out, cap, "OK\n");
    } else if (strcmp(verb, "GET") == 0) {
        char v[WORD_MAX + 1];
        if (table_get(key, v, sizeof v))
            snprintf(out, cap, "VALUE %s\n", v);
        else
            snprintf(out, cap, "NOTFOUND\n");
    } else if (strcmp(verb, "DEL") == 0) {
        snprintf(out, cap, "%s", table_del(key) ? "DELETED\n" : "NOTFOUND\n");
    } else {
        snprintf(out, cap, "ERROR unknown command or bad arguments\n");
    }
}

/* One connection, in its own photon thread (it was a pthread). Reads what
 * has arrived (photon_recv waits once), runs every complete line in it,
 * replies. The handler owns fd. */
static int connection(void *userdata, int fd) {
    char in[LINE_MAX_LEN], out[LINE_MAX_LEN];
    size_t have = 0;
    (void)userdata;
    for (;;) {
        /* No timeout: an idle client may stay; at shutdown photon_fini (and
         * the end of serve_on's extra vcpus) fails this wait with ECANCELED. */
        ssize_t n = photon_recv(fd, in + have, sizeof in - 1 - have, 0, PHOTON_FOREVER);
        if (n <= 0) break; /* closed, or ended by the shutdown */
        have += (size_t)n;
        char *start = in, *nl;
        while ((nl = memchr(start, '\n', have - (size_t)(start - in))) != NULL) {
            *nl = '\0';
            command(start, out, sizeof out);
            if (photon_write_full(fd, out, strlen(out), IO_TIMEOUT_US) < 0) goto done;
            start = nl + 1;
        }
        have -= (size_t)(start - in);
        memmove(in, start, have);
        if (have == sizeof in - 1) break; /* a line too long */
    }
done:
    photon_close(fd);
    return 0;
}

static int usage(const char *me) {
    fprintf(stderr, "usage: %s [--port N] [--ip ADDR] [--vcpus N] [--replica PORT]\n", me);
    return 2;
}

int main(int argc, char **argv) {
    const char *ip = "127.0.0.1";
    unsigned long port = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return usage(argv[0]);
        if (strcmp(argv[i], "--port") == 0)
            port = strtoul(v, NULL, 10);
        else if (strcmp(argv[i], "--ip") == 0)
            ip = v;
        else if (strcmp(argv[i], "--vcpus") == 0)
            vcpus = (unsigned)strtoul(v, NULL, 10);
        else if (strcmp(argv[i], "--replica") == 0)
            replica_port = (uint16_t)strtoul(v, NULL, 10);
        else
            return usage(argv[0]);
        i++;
    }
    if (port > 65535 || vcpus < 1 || vcpus > 1024) return usage(argv[0]);

    /* This OS thread becomes a vcpu; photon_server_serve_on adds vcpus-1. */
    if (photon_init(PHOTON_EVENT_DEFAULT, 0) != 0) {
        perror("photon_init");
        return 1;
    }
    table_lock = photon_mutex_new();
    photon_server *server = photon_server_new_tcp(ip, (uint16_t)port, 0);
    if (!table_lock || !server) {
        perror("kv_server: setup");
        return 1;
    }
    int one = 1;
    if (photon_server_set_sockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
        photon_server_set_stack_size(server, 64 * 1024) != 0 || /* small handlers: small stacks */
        photon_server_stop_on_signal(server, SIGTERM) != 0 || photon_server_stop_on_signal(server, SIGINT) != 0) {
        perror("kv_server: server options");
        return 1;
    }
    photon_thread *expiry = photon_thread_create(expiry_main, NULL, 0);
    if (!expiry || photon_thread_enable_join(expiry) != 0) {
        perror("kv_server: expiry thread");
        return 1;
    }
    printf("kv_server: listening on %d (%u vcpus, %s engine)\n", photon_server_port(server), vcpus,
           photon_engine_name());
    fflush(stdout);

    int rc = photon_server_serve_on(server, vcpus, connection, NULL); /* until SIGTERM/SIGINT */
    if (rc != 0) perror("kv_server: serve");

    photon_thread_interrupt(expiry, ECANCELED);
    photon_thread_join(expiry, NULL);
    photon_server_free(server);
    /* Connections still open on this vcpu end here: photon_fini interrupts
     * their waits with ECANCELED and waits for them (they use the table). */
    if (photon_fini() != 0) perror("photon_fini");
    printf("kv_server: stopped: %lu keys, %lu sets, %lu gets, %lu expired\n", n_keys, n_sets, n_gets, n_expired);
    for (unsigned b = 0; b < BUCKETS; b++) {
        while (table[b]) {
            struct entry *gone = table[b];
            table[b] = gone->next;
            free(gone);
        }
    }
    photon_mutex_free(table_lock);
    return rc == 0 ? 0 : 1;
}
