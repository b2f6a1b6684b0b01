"""An unmodified program that never calls photon_init: run under
libphoton_preload.so it must print exactly what it prints without it.
It touches every kind of hooked call: sockets (blocking, non-blocking,
timeouts), select/poll/epoll, pipes, dup, fcntl, ioctl-backed flags, files
with pread/pwrite/fsync, sleeps, name lookup, a subprocess."""

import errno
import fcntl
import os
import select
import socket
import subprocess
import tempfile
import threading
import time


def tcp_echo():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve():
        for _ in range(2):
            c, _ = srv.accept()
            with c:
                while True:
                    d = c.recv(65536)
                    if not d:
                        break
                    c.sendall(d)

    t = threading.Thread(target=serve)
    t.start()
    for size in (1000, 1 << 20):
        with socket.create_connection(srv.getsockname()) as c:
            data = bytes(i % 251 for i in range(size))
            sender = threading.Thread(target=lambda: (c.sendall(data), c.shutdown(socket.SHUT_WR)))
            sender.start()
            got = b""
            while True:
                d = c.recv(65536)
                if not d:
                    break
                got += d
            sender.join()
            print("tcp echo", size, got == data)
    t.join()
    srv.close()


def nonblocking_and_timeouts():
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        a.recv(10)
        print("nonblocking recv: data?")
    except BlockingIOError as e:
        print("nonblocking recv:", errno.errorcode[e.errno])
    print("O_NONBLOCK visible:", bool(fcntl.fcntl(a.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK))
    a.setblocking(True)
    print("O_NONBLOCK cleared:", not fcntl.fcntl(a.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK)
    a.settimeout(0.05)
    t0 = time.monotonic()
    try:
        a.recv(10)
    except socket.timeout:
        print("timeout recv: timed out, waited enough:", time.monotonic() - t0 >= 0.04)
    b.send(b"xyz")
    print("recv after send:", a.recv(10))
    a.close()
    b.close()
    try:
        os.read(a.fileno() if a.fileno() >= 0 else 999, 1)
    except OSError as e:
        print("read closed fd:", errno.errorcode[e.errno])


def waits():
    r, w = os.pipe()
    print("select empty:", select.select([r], [], [], 0.02))
    os.write(w, b"ping")
    print("select ready:", select.select([r], [], [], 1)[0] == [r])
    p = select.poll()
    p.register(r, select.POLLIN)
    print("poll ready:", p.poll(1000) == [(r, select.POLLIN)])
    ep = select.epoll()
    ep.register(r, select.EPOLLIN)
    print("epoll ready:", ep.poll(1) == [(r, select.EPOLLIN)])
    print("read pipe:", os.read(r, 100))
    print("epoll empty:", ep.poll(0.02))
    ep.close()
    d = os.dup(w)
    os.write(d, b"dup")
    print("read via dup:", os.read(r, 100))
    d2 = os.dup2(w, 100)
    os.write(d2, b"dup2")
    print("read via dup2:", os.read(r, 100))
    for fd in (r, w, d, d2):
        os.close(fd)


def files():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "f")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.pwrite(fd, b"hello world", 0)
        os.fsync(fd)
        os.fdatasync(fd)
        print("pread:", os.pread(fd, 5, 6))
        os.write(fd, b"HELLO")
        os.lseek(fd, 0, os.SEEK_SET)
        print("read:", os.read(fd, 100))
        os.close(fd)


def misc():
    t0 = time.monotonic()
    time.sleep(0.03)
    print("slept enough:", time.monotonic() - t0 >= 0.03)
    addrs = {a[4][0] for a in socket.getaddrinfo("localhost", 80, socket.AF_INET, socket.SOCK_STREAM)}
    print("getaddrinfo localhost:", sorted(addrs))
    print("gethostbyname:", socket.gethostbyname("localhost"))
    out = subprocess.run(["sh", "-c", "echo child; sleep 0.01; echo done"], capture_output=True, text=True)
    print("subprocess:", out.returncode, out.stdout.split())


tcp_echo()
nonblocking_and_timeouts()
waits()
files()
misc()
print("end")
