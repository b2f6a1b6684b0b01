// The second pass over I/O and helpers: photon/io/fd-events.h (readable,
// writable, error, timeouts, init/fini visible); photon/common/
// lockfree_queue.h (MPMC across OS threads, SPSC, batch, Flex queues,
// RingChannel waking a sleeping receiver); photon/net/utils.h
// (gethostbyname of localhost, gethostbypeer, Base64, parse_address_list,
// EndPoint::parse); fs::new_localfs_adaptor (open, stat, rename, mkdir,
// unlink under a root).
#include <photon/common/io-alloc.h>
#include <photon/common/iovector.h>
#include <photon/common/lockfree_queue.h>
#include <photon/fs/filecopy.h>
#include <photon/fs/localfs.h>
#include <photon/io/aio-wrapper.h>
#include <photon/io/fd-events.h>
#include <photon/net/basic_socket.h>
#include <photon/net/datagram_socket.h>
#include <photon/net/utils.h>
#include <photon/thread/thread11.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "check.h"

int main() {
    CHECK_OK(photon::init());  // photon::init is visible through fd-events.h

    SAY("wait_for_fd_readable / writable / error");
    int sv[2];
    CHECK_OK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv));
    CHECK_OK(photon::wait_for_fd_writable(sv[0], 1000 * 1000));
    CHECK_ERRNO(photon::wait_for_fd_readable(sv[1], 2000), ETIMEDOUT);
    photon::thread_create11([&] {
        photon::thread_usleep(2000);
        CHECK(::write(sv[0], "x", 1) == 1, "write");
    });
    const uint64_t t0 = photon::now;
    CHECK_OK(photon::wait_for_fd_readable(sv[1], 1000 * 1000));
    CHECK(photon::now - t0 >= 1000, "woke when the data came");
    char c;
    CHECK(::read(sv[1], &c, 1) == 1 && c == 'x', "read");
    ::close(sv[0]);
    CHECK_OK(photon::wait_for_fd_error(sv[1], 1000 * 1000));
    ::close(sv[1]);
    SAY("CascadingEventEngine: many fds, reported by their data");
    {
        photon::CascadingEventEngine* eng = photon::new_default_cascading_engine();
        CHECK(eng != nullptr, "engine");
        int a[2], b[2];
        CHECK_OK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a));
        CHECK_OK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b));
        CHECK_OK(eng->add_interest({a[1], photon::EVENT_READ, &a}));
        CHECK_OK(eng->add_interest({b[1], photon::EVENT_READ, &b}));
        void* data[4];
        CHECK(eng->wait_for_events(data, 4, 2000) == 0, "nothing ready: 0 at the timeout");
        photon::thread_create11([&] {
            photon::thread_usleep(2000);
            CHECK(::write(b[0], "y", 1) == 1, "write");
        });
        CHECK(eng->wait_for_events(data, 4, 1000 * 1000) == 1 && data[0] == &b, "b is ready");
        CHECK_OK(eng->rm_interest({b[1], photon::EVENT_READ, &b}));
        CHECK(eng->wait_for_events(data, 4, 2000) == 0, "b no longer watched");
        delete eng;
        for (int fd : {a[0], a[1], b[0], b[1]}) ::close(fd);
    }
    CHECK_OK(photon::fd_events_init());
    CHECK_OK(photon::fd_events_fini());

    SAY("lockfree queues: push/pop, full/empty, MPMC across OS threads");
    {
        LockfreeMPMCRingQueue<int, 8> q;
        CHECK(q.empty() && q.capacity == 8, "empty, capacity %zu", q.capacity);
        for (int i = 0; i < 8; i++) CHECK(q.push(i), "push %d", i);
        CHECK(q.full() && !q.push(99) && q.read_available() == 8, "full");
        int x;
        for (int i = 0; i < 8; i++) CHECK(q.pop(x) && x == i, "pop %d got %d", i, x);
        CHECK(!q.pop(x), "empty again");

        static LockfreeMPMCRingQueue<long, 1024> mq;
        std::atomic<long> sum{0};
        std::vector<std::thread> ts;
        const int per = 20000;
        for (int p = 0; p < 2; p++)
            ts.emplace_back([&] {
                for (int i = 1; i <= per; i++) mq.send<ThreadPause>(i);
            });
        for (int r = 0; r < 2; r++)
            ts.emplace_back([&] {
                for (int i = 0; i < per; i++) sum += mq.recv<ThreadPause>();
            });
        for (auto& t : ts) t.join();
        CHECK(sum == 2L * per * (per + 1) / 2, "sum %ld", sum.load());

        LockfreeSPSCRingQueue<int, 4> sq;
        int in[3] = {1, 2, 3}, out[5] = {0};
        CHECK(sq.push_batch(in, 3) == 3 && sq.pop_batch(out, 5) == 3 && out[2] == 3, "SPSC batch");
        LockfreeBatchMPMCRingQueue<int, 16> bq;
        CHECK(bq.push_batch(in, 3) == 3 && bq.pop_batch(out, 2) == 2 && out[1] == 2, "batch MPMC");

        auto* fq = FlexLockfreeMPMCRingQueue<int>::create(5);
        CHECK(fq->capacity == 8, "flex capacity rounds up: %zu", fq->capacity);
        CHECK(fq->push(7) && fq->pop(x) && x == 7, "flex push/pop");
        FlexLockfreeMPMCRingQueue<int>::destroy(fq);

        SAY("RingChannel: a receiver sleeps and is woken by send");
        static photon::common::RingChannel<LockfreeMPMCRingQueue<int, 64>> ch(4, 100);
        int got = 0;
        photon::thread* rx = photon::thread_create11([&] { got = ch.recv(); });
        photon::thread_enable_join(rx);
        photon::thread_usleep(5000);
        CHECK(got == 0, "still waiting");
        ch.send(77);
        photon::thread_join(reinterpret_cast<photon::join_handle*>(rx));
        CHECK(got == 77, "got %d", got);
        using Flex = photon::common::FlexRingChannel<FlexLockfreeMPMCRingQueue<int>>;
        Flex* fch = Flex::create(16);
        CHECK(fch != nullptr && fch->empty() && !fch->full(), "flex channel");
        for (int i = 1; i <= 10; i++) fch->send(i);
        CHECK(fch->read_available() == 10, "available %zu", fch->read_available());
        for (int i = 1; i <= 10; i++) CHECK(fch->recv() == i, "in order");
        Flex::destroy(fch);
    }

    SAY("net/utils.h: gethostbyname, gethostbypeer, Base64, address lists");
    {
        using namespace photon::net;
        IPAddr lo = photon::net::gethostbyname("localhost");  // (unqualified, ::gethostbyname wins)
        CHECK(lo.is_loopback(), "localhost -> %s", lo.to_string().c_str());
        std::vector<IPAddr> all;
        CHECK(gethostbyname(std::string("localhost"), all) >= 1 && all[0].is_loopback(), "vector form");
        IPAddr buf[4];
        CHECK(gethostbyname("127.0.0.1", buf, 4) == 1 && buf[0] == IPAddr("127.0.0.1"), "numeric");
        CHECK(photon::net::gethostbyname("no-such-host.invalid").undefined(), "unknown name");
        CHECK(gethostbypeer(IPAddr("127.0.0.1")).is_loopback(), "gethostbypeer");
        std::string enc, dec;
        Base64Encode("hello world", enc);
        CHECK(enc == "aGVsbG8gd29ybGQ=", "encode %s", enc.c_str());
        CHECK(Base64Decode(enc, dec) && dec == "hello world", "decode %s", dec.c_str());
        CHECK(!Base64Decode("a*==", dec), "bad base64");
        EndPoint ep = EndPoint::parse("10.0.0.1:8080", 80);
        CHECK(ep.port == 8080 && ep.addr == IPAddr("10.0.0.1"), "parse with port");
        ep = EndPoint::parse("10.0.0.2", 80);
        CHECK(ep.port == 80 && ep.addr == IPAddr("10.0.0.2"), "parse with the default port");
        ep = EndPoint::parse("[::1]:9", 0);
        CHECK(ep.port == 9 && ep.addr.is_loopback() && !ep.addr.is_ipv4(), "v6");
        CHECK(EndPoint::parse("nonsense", 1).undefined(), "nonsense");
        std::vector<EndPoint> list;
        CHECK_OK(parse_address_list("1.2.3.4:5, 6.7.8.9", &list, 11));
        CHECK(list.size() == 2 && list[0].port == 5 && list[1].port == 11, "list");
        CHECK_ERRNO(parse_address_list("1.2.3.4:5,zzz", &list, 0), EINVAL);
    }

    SAY("net/basic_socket.h: socket, bind via sockaddr_storage, accept, read_n/write_n, writev_n");
    {
        namespace net = photon::net;
        const int lfd = net::socket(AF_INET, SOCK_STREAM, 0);
        CHECK(lfd >= 0, "socket");
        int one = 1;
        CHECK_OK(net::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
        net::sockaddr_storage any(net::EndPoint(net::IPAddr("127.0.0.1"), 0));
        CHECK_OK(::bind(lfd, any.get_sockaddr(), any.get_socklen()));
        CHECK_OK(::listen(lfd, 4));
        net::sockaddr_storage bound;
        socklen_t blen = bound.get_max_socklen();
        CHECK_OK(::getsockname(lfd, bound.get_sockaddr(), &blen));
        const net::EndPoint ep = bound.to_endpoint();
        CHECK(ep.port != 0 && ep.addr == net::IPAddr("127.0.0.1"), "bound to %s", ep.to_string().c_str());
        photon::thread* srv = photon::thread_create11([&] {
            net::sockaddr_storage peer;
            socklen_t plen = peer.get_max_socklen();
            const int c = net::accept(lfd, peer.get_sockaddr(), &plen, 1000 * 1000);
            CHECK(c >= 0, "accept");
            char buf[10];
            CHECK(net::read_n(c, buf, 10, 1000 * 1000) == 10 && std::memcmp(buf, "0123456789", 10) == 0, "read_n");
            CHECK(net::write_n(c, "ok", 2) == 2, "write_n");
            photon_close(c);
        });
        photon::thread_enable_join(srv);
        const int cfd = net::socket(AF_INET, SOCK_STREAM, 0);
        net::sockaddr_storage to(ep);
        CHECK_OK(net::connect(cfd, to.get_sockaddr(), to.get_socklen(), 1000 * 1000));
        char a[] = "01234", b[] = "56789";
        struct iovec iov[2] = {{a, 5}, {b, 5}};
        CHECK(net::writev_n(cfd, iov, 2) == 10, "writev_n");
        char reply[2];
        CHECK(net::read_n(cfd, reply, 2, 1000 * 1000) == 2 && reply[0] == 'o', "reply");
        photon::thread_join(reinterpret_cast<photon::join_handle*>(srv));
        CHECK(net::read(cfd, reply, 1, 1000 * 1000) == 0, "end of stream after the server closed");
        photon_close(cfd);
        photon_close(lfd);
    }

    SAY("datagram_socket.h: UDP and Unix datagrams, the timeout");
    {
        using namespace photon::net;
        UDPSocket* a = new_udp_socket();
        UDPSocket* b = new_udp_socket();
        CHECK(a != nullptr && b != nullptr, "sockets");
        CHECK_OK(a->bind_v4localhost());
        const EndPoint ep = a->getsockname();
        CHECK(ep.port != 0, "bound");
        CHECK(b->sendto("Hello", 6, ep) == 6, "sendto");
        char buf[64];
        EndPoint from;
        CHECK(a->recvfrom(buf, sizeof buf, &from) == 6 && std::strcmp(buf, "Hello") == 0, "recvfrom");
        CHECK(from.port == b->getsockname().port && from.addr.is_loopback(), "from %s", from.to_string().c_str());
        CHECK_OK(b->connect(ep));
        CHECK(b->send("Hi", 3) == 3 && a->recv(buf, sizeof buf) == 3 && std::strcmp(buf, "Hi") == 0, "connected");
        a->timeout(3000);
        const uint64_t t0 = photon::now;
        CHECK_ERRNO(a->recvfrom(buf, sizeof buf, &from), ETIMEDOUT);
        CHECK(photon::now - t0 >= 2000, "waited the timeout");
        CHECK(a->timeout() == 3000, "timeout()");
        delete a;
        delete b;

        char path[] = "/tmp/photon-cpp-uds-dgram-XXXXXX";
        CHECK(::mkdtemp(path) != nullptr, "mkdtemp");
        const std::string sock = std::string(path) + "/s";
        UDS_DatagramSocket* u = new_uds_datagram_socket();
        UDS_DatagramSocket* v = new_uds_datagram_socket();
        CHECK_OK(u->bind(sock.c_str()));
        char name[128];
        CHECK_OK(u->getsockname(name, sizeof name));
        CHECK(sock == name, "name %s", name);
        CHECK(v->sendto("uds", 4, sock.c_str()) == 4, "uds sendto");
        CHECK(u->recvfrom(buf, sizeof buf, name, sizeof name) == 4 && std::strcmp(buf, "uds") == 0, "uds recvfrom");
        delete u;
        delete v;
        ::unlink(sock.c_str());
        ::rmdir(path);
    }

    SAY("iovector.h: IOVector for writev");
    {
        char a[] = "abc", b[] = "defg";
        IOVector iov;
        CHECK(iov.empty() && iov.iovcnt() == 0, "empty");
        iov.push_back(b, 4);
        iov.push_front(a, 3);
        CHECK(iov.iovcnt() == 2 && iov.sum() == 7 && iov[0].iov_base == a, "push");
        int p[2];
        CHECK_OK(::pipe(p));
        CHECK(::writev(p[1], iov.iovec(), iov.iovcnt()) == 7, "writev");
        char out[8] = {0};
        CHECK(::read(p[0], out, 7) == 7 && std::strcmp(out, "abcdefg") == 0, "read %s", out);
        ::close(p[0]);
        ::close(p[1]);
        iovector_view v = iov.view();
        CHECK(v.sum() == 7 && v.iovcnt == 2, "view");
        CHECK(iov.pop_front().iov_len == 3 && iov.sum() == 4, "pop_front");
        iov.clear();
        CHECK(iov.empty(), "clear");
    }

    SAY("io-alloc.h: IOAlloc and AlignedAlloc");
    {
        IOAlloc plain;
        void* p = plain.alloc(100);
        CHECK(p != nullptr, "alloc");
        CHECK_OK(plain.dealloc(p));
        CHECK(plain.alloc(0) == nullptr && errno == EINVAL, "alloc(0)");
        AlignedAlloc aligned(4096);
        void* q = aligned.alloc(8192);
        CHECK(q != nullptr && reinterpret_cast<uintptr_t>(q) % 4096 == 0, "aligned %p", q);
        CHECK_OK(aligned.dealloc(q));
        aligned.reset();
        q = aligned.alloc(10);
        CHECK(q != nullptr && reinterpret_cast<uintptr_t>(q) % 4096 == 0, "aligned after reset");
        aligned.dealloc(q);
    }

    SAY("fs::new_localfs_adaptor under a root");
    {
        char root[] = "/tmp/photon-cpp-localfs-XXXXXX";
        CHECK(::mkdtemp(root) != nullptr, "mkdtemp");
        photon::fs::IFileSystem* fs = photon::fs::new_localfs_adaptor(root, photon::fs::ioengine_psync);
        CHECK(fs != nullptr, "adaptor");
        CHECK_OK(fs->mkdir("d", 0755));
        photon::fs::IFile* f = fs->open("d/f", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        CHECK(f != nullptr, "open");
        CHECK(f->write("abcdef", 6) == 6, "write");
        delete f;
        struct stat st;
        CHECK_OK(fs->stat("/d/f", &st));
        CHECK(st.st_size == 6, "size %ld", (long)st.st_size);
        CHECK_OK(fs->access("d/f", R_OK));
        CHECK_OK(fs->rename("d/f", "d/g"));
        CHECK_ERRNO(fs->stat("d/f", &st), ENOENT);
        f = fs->open("d/g", O_RDONLY);
        char buf[8] = {0};
        CHECK(f != nullptr && f->pread(buf, 3, 2) == 3 && std::memcmp(buf, "cde", 3) == 0, "pread");
        delete f;
        SAY("fs::filecopy, and aio-wrapper.h's calls");
        CHECK_OK(photon::libaio_wrapper_init());
        photon::fs::IFile* big = fs->open("d/big", O_RDWR | O_CREAT | O_TRUNC, 0644);
        std::string data;
        for (int i = 0; i < 30000; i++) data += static_cast<char>('a' + i % 26);
        CHECK(big != nullptr && big->pwrite(data.data(), data.size(), 0) == static_cast<ssize_t>(data.size()), "big");
        photon::fs::IFile* copy = fs->open("d/copy", O_RDWR | O_CREAT | O_TRUNC, 0644);
        CHECK(photon::fs::filecopy(big, copy, 4096) == static_cast<ssize_t>(data.size()), "filecopy");
        std::string back(data.size(), '\0');
        CHECK(photon::libaio_pread(copy->get_underlay_fd(), &back[0], back.size(), 0) ==
                      static_cast<ssize_t>(data.size()) && back == data,
              "copied bytes");
        CHECK(photon::posixaio_pwrite(copy->get_underlay_fd(), "Z", 1, 5) == 1 && photon::libaio_fsync(copy->get_underlay_fd()) == 0,
              "posixaio_pwrite");
        delete copy;
        delete big;
        CHECK_OK(fs->unlink("d/big"));
        CHECK_OK(fs->unlink("d/copy"));
        CHECK_OK(photon::libaio_wrapper_fini());
        CHECK_OK(fs->truncate("d/g", 1));
        CHECK_OK(fs->unlink("d/g"));
        CHECK_OK(fs->rmdir("d"));
        CHECK(fs->open("missing", O_RDONLY) == nullptr && errno == ENOENT, "missing file");
        delete fs;
        ::rmdir(root);
    }

    CHECK_OK(photon::fini());
    std::printf("io_extras: all checks passed\n");
    return 0;
}
