//! Echo server as a hand-written mio 1 event loop (epoll, edge-triggered, no
//! runtime, one thread): a peer of libphoton's `c-examples/echo_server.c`
//! for the `echo` benchmark, and the floor for what an epoll server costs.
//!
//! `echo_mio [--port N]`: listens on 0.0.0.0:N (0 = any free port), prints
//! `listening on PORT` and flushes, then serves until killed. Each connection
//! is registered once for READABLE | WRITABLE (mio is edge-triggered) and has
//! a 64 KiB buffer: read up to 64 KiB, write it all back, until EOF.
//! TCP_NODELAY. A read that returns less than the buffer means the socket is
//! drained, so the loop waits for the next edge instead of reading again to
//! see `WouldBlock` (tokio does the same on epoll), unless the event said the
//! peer has closed its side (EPOLLRDHUP): that read may have consumed the FIN,
//! and no edge would follow, so the loop reads on to see the 0. A write that
//! would block keeps the rest and waits for the writable edge, reading
//! nothing meanwhile.

use std::io::{ErrorKind, Read, Write};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const BUF: usize = 64 * 1024;
const LISTENER: Token = Token(usize::MAX);

fn port_arg() -> u16 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => 9527,
        [flag, n] if flag == "--port" => n.parse().unwrap_or_else(|_| usage()),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: echo_mio [--port N]");
    std::process::exit(2)
}

struct Conn {
    stream: TcpStream,
    buf: Box<[u8]>,
    /// Bytes of `buf[start..end]` are read but not yet written back.
    start: usize,
    end: usize,
}

enum Next {
    /// Wait for the next event on this connection.
    Wait,
    /// EOF or an error: drop the connection.
    Close,
}

impl Conn {
    /// Makes all the progress possible until the socket would block.
    /// `read_closed`: the event reported the peer's FIN (EPOLLRDHUP).
    fn drive(&mut self, read_closed: bool) -> Next {
        loop {
            // Write back what is pending first.
            while self.start < self.end {
                match self.stream.write(&self.buf[self.start..self.end]) {
                    Ok(n) => self.start += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Wait,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        eprintln!("echo_mio: write: {e}");
                        return Next::Close;
                    }
                }
            }
            match self.stream.read(&mut self.buf) {
                Ok(0) => return Next::Close,
                Ok(n) => {
                    self.start = 0;
                    self.end = n;
                    if n < self.buf.len() && !read_closed {
                        // Drained: write it back, then wait for the next edge.
                        while self.start < self.end {
                            match self.stream.write(&self.buf[self.start..self.end]) {
                                Ok(w) => self.start += w,
                                Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Wait,
                                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                                Err(e) => {
                                    eprintln!("echo_mio: write: {e}");
                                    return Next::Close;
                                }
                            }
                        }
                        return Next::Wait;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Wait,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    eprintln!("echo_mio: read: {e}");
                    return Next::Close;
                }
            }
        }
    }
}

fn main() {
    let port = port_arg();
    let mut poll = Poll::new().expect("epoll");
    let addr = std::net::SocketAddr::from(([0, 0, 0, 0], port));
    let mut listener = TcpListener::bind(addr).unwrap_or_else(|e| {
        eprintln!("echo_mio: bind port {port}: {e}");
        std::process::exit(1)
    });
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .expect("register listener");
    let port = listener.local_addr().expect("local_addr").port();
    println!("listening on {port}");
    std::io::stdout().flush().expect("flush stdout");

    // Connections by token; free slots are reused.
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(1024);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            panic!("echo_mio: epoll_wait: {e}");
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            if let Err(e) = stream.set_nodelay(true) {
                                eprintln!("echo_mio: TCP_NODELAY: {e}");
                            }
                            let slot = free.pop().unwrap_or_else(|| {
                                conns.push(None);
                                conns.len() - 1
                            });
                            poll.registry()
                                .register(&mut stream, Token(slot), Interest::READABLE | Interest::WRITABLE)
                                .expect("register connection");
                            // Registering reports the current readiness as
                            // a first event: no edge is lost.
                            conns[slot] = Some(Conn {
                                stream,
                                buf: vec![0u8; BUF].into_boxed_slice(),
                                start: 0,
                                end: 0,
                            });
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => {
                            eprintln!("echo_mio: accept: {e}");
                            break;
                        }
                    }
                }
                continue;
            }
            let slot = ev.token().0;
            let close = match conns.get_mut(slot).and_then(|c| c.as_mut()) {
                Some(c) => matches!(c.drive(ev.is_read_closed()), Next::Close),
                None => false, // a stale event of a connection closed in this batch
            };
            if close {
                // Dropping the stream closes the fd, which leaves the epoll set.
                conns[slot] = None;
                free.push(slot);
            }
        }
    }
}
