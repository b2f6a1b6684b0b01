/*
 * libphoton_dpdk.so: the DPDK side of the userspace stack's `dpdk:` device.
 *
 * DPDK's receive, transmit and mbuf calls are inline functions of its
 * headers, so Rust cannot call them directly: this shim wraps them in
 * plain functions. It is its own shared library, built by build.rs only
 * when pkg-config finds libdpdk, and loaded by libphoton (dlopen) only when
 * a `dpdk:` stack is created, so programs that never ask for DPDK do not
 * load it (nor need it to link libphoton.a).
 *
 * One EAL per process (DPDK cannot start it twice): the first `dpdk:`
 * stack starts it with its arguments; each stack takes the next port not
 * taken by another stack. A port is stopped when its stack is freed and
 * can be taken again; the EAL stays up until the process ends.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#define UNET_EXPORT __attribute__((visibility("default")))

#define RX_DESC 512
#define TX_DESC 512
#define POOL_MBUFS 4095
#define POOL_CACHE 128

/* What libphoton keeps per open port (shared layout with src/unet/dpdk). */
struct unet_dpdk_port {
    uint16_t port;
    uint16_t mtu;
    uint8_t mac[6];
    int intr_fd; /* the queue's Rx interrupt fd, or -1 (polled) */
    struct rte_mempool *pool;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int eal_running;
static uint8_t taken[RTE_MAX_ETHPORTS];
static struct rte_mempool *pools[RTE_MAX_ETHPORTS];

static void say(char *err, size_t errlen, const char *what, int e) {
    snprintf(err, errlen, "%s: %s", what, rte_strerror(e < 0 ? -e : e));
}

/* Starts the EAL once (the calling thread keeps its CPU affinity: the EAL
 * would pin it to the main lcore). 0, or a negative errno and `err`. */
UNET_EXPORT int unet_dpdk_eal_init(int argc, char **argv, char *err, size_t errlen) {
    int rc = 0;
    pthread_mutex_lock(&lock);
    if (!eal_running) {
        cpu_set_t saved;
        int have = pthread_getaffinity_np(pthread_self(), sizeof saved, &saved) == 0;
        if (rte_eal_init(argc, argv) < 0) {
            int e = rte_errno ? rte_errno : EINVAL;
            say(err, errlen, "rte_eal_init", e);
            rc = -e;
        } else {
            eal_running = 1;
        }
        if (have)
            pthread_setaffinity_np(pthread_self(), sizeof saved, &saved);
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

/* Takes the first free port and starts it with one Rx and one Tx queue. */
UNET_EXPORT int unet_dpdk_open(struct unet_dpdk_port *p, char *err, size_t errlen) {
    int rc;
    uint16_t port;
    pthread_mutex_lock(&lock);
    RTE_ETH_FOREACH_DEV(port) {
        if (!taken[port])
            break;
    }
    if (port >= RTE_MAX_ETHPORTS || !rte_eth_dev_is_valid_port(port)) {
        snprintf(err, errlen, "no free DPDK port (%u available, all taken; give the EAL a --vdev or a device)",
                 (unsigned)rte_eth_dev_count_avail());
        rc = -ENODEV;
        goto out;
    }
    int socket = rte_eth_dev_socket_id(port);
    if (socket < 0)
        socket = 0;
    if (!pools[port]) {
        char name[RTE_MEMPOOL_NAMESIZE];
        snprintf(name, sizeof name, "photon_unet%u", (unsigned)port);
        pools[port] = rte_pktmbuf_pool_create(name, POOL_MBUFS, POOL_CACHE, 0, RTE_MBUF_DEFAULT_BUF_SIZE, socket);
        if (!pools[port]) {
            say(err, errlen, "rte_pktmbuf_pool_create", rte_errno);
            rc = -ENOMEM;
            goto out;
        }
    }
    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof conf);
    /* Rx interrupts give an fd to sleep on where the driver has them. */
    conf.intr_conf.rxq = 1;
    rc = rte_eth_dev_configure(port, 1, 1, &conf);
    if (rc < 0) {
        conf.intr_conf.rxq = 0;
        rc = rte_eth_dev_configure(port, 1, 1, &conf);
    }
    if (rc < 0) {
        say(err, errlen, "rte_eth_dev_configure", rc);
        goto out;
    }
    uint16_t nrx = RX_DESC, ntx = TX_DESC;
    rte_eth_dev_adjust_nb_rx_tx_desc(port, &nrx, &ntx);
    rc = rte_eth_rx_queue_setup(port, 0, nrx, socket, NULL, pools[port]);
    if (rc < 0) {
        say(err, errlen, "rte_eth_rx_queue_setup", rc);
        goto out;
    }
    rc = rte_eth_tx_queue_setup(port, 0, ntx, socket, NULL);
    if (rc < 0) {
        say(err, errlen, "rte_eth_tx_queue_setup", rc);
        goto out;
    }
    rc = rte_eth_dev_start(port);
    if (rc < 0) {
        say(err, errlen, "rte_eth_dev_start", rc);
        goto out;
    }
    struct rte_ether_addr mac;
    if (rte_eth_macaddr_get(port, &mac) < 0)
        memset(&mac, 0, sizeof mac);
    uint16_t mtu = 1500;
    if (rte_eth_dev_get_mtu(port, &mtu) < 0 || mtu < 576)
        mtu = 1500;
    p->port = port;
    p->mtu = mtu;
    memcpy(p->mac, mac.addr_bytes, 6);
    p->pool = pools[port];
    p->intr_fd = conf.intr_conf.rxq ? rte_eth_dev_rx_intr_ctl_q_get_fd(port, 0) : -1;
    taken[port] = 1;
    rc = 0;
out:
    pthread_mutex_unlock(&lock);
    return rc;
}

/* Stops the port and gives it back (its pool stays for the next user). */
UNET_EXPORT void unet_dpdk_close(struct unet_dpdk_port *p) {
    pthread_mutex_lock(&lock);
    rte_eth_dev_stop(p->port);
    taken[p->port] = 0;
    pthread_mutex_unlock(&lock);
}

UNET_EXPORT uint16_t unet_dpdk_rx(uint16_t port, struct rte_mbuf **bufs, uint16_t n) {
    return rte_eth_rx_burst(port, 0, bufs, n);
}

UNET_EXPORT uint16_t unet_dpdk_tx(uint16_t port, struct rte_mbuf **bufs, uint16_t n) {
    return rte_eth_tx_burst(port, 0, bufs, n);
}

/* The frame in `m`: in place when it is one segment, else copied into
 * `scratch` (`cap` bytes). NULL when it does not fit. */
UNET_EXPORT const void *unet_dpdk_frame(struct rte_mbuf *m, void *scratch, uint32_t cap, uint32_t *len) {
    *len = rte_pktmbuf_pkt_len(m);
    if (m->nb_segs == 1)
        return rte_pktmbuf_mtod(m, const void *);
    if (*len > cap)
        return NULL;
    return rte_pktmbuf_read(m, 0, *len, scratch);
}

/* A new one-segment mbuf holding `len` bytes at `*data`, or NULL. */
UNET_EXPORT struct rte_mbuf *unet_dpdk_alloc(struct rte_mempool *pool, uint16_t len, void **data) {
    struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
    if (!m)
        return NULL;
    *data = rte_pktmbuf_append(m, len);
    if (!*data) {
        rte_pktmbuf_free(m);
        return NULL;
    }
    return m;
}

UNET_EXPORT void unet_dpdk_free(struct rte_mbuf **bufs, uint16_t n) {
    rte_pktmbuf_free_bulk(bufs, n);
}

/* Arms (1) or disarms (0) the Rx interrupt before and after a sleep on
 * intr_fd. Drivers without the call (the TAP PMD: its fd is the queue's
 * own, readable while frames wait) return -ENOTSUP, which is fine. */
UNET_EXPORT int unet_dpdk_intr(uint16_t port, int on) {
    return on ? rte_eth_dev_rx_intr_enable(port, 0) : rte_eth_dev_rx_intr_disable(port, 0);
}
