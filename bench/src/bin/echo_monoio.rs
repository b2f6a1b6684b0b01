//! Echo server on monoio 0.2, one thread: a peer of libphoton's
//! `c-examples/echo_server.c` for the `echo` benchmark.
//!
//! `echo_monoio [--port N] [--epoll]`: the io_uring driver by default,
//! `--epoll` for monoio's legacy (mio/epoll) driver; the driver is chosen
//! with `RuntimeBuilder::<IoUringDriver>` / `RuntimeBuilder::<LegacyDriver>`
//! (both compiled in by monoio's default features), so no fallback happens
//! silently. Listens on 0.0.0.0:N (0 = any free port), prints
//! `listening on PORT` and flushes, then serves until killed. One task per
//! connection: read up to 64 KiB (monoio's owned-buffer I/O), write it all
//! back, until EOF. TCP_NODELAY.

use std::io::Write;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};

const BUF: usize = 64 * 1024;

struct Args {
    port: u16,
    epoll: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        port: 9527,
        epoll: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--port" => args.port = it.next().and_then(|n| n.parse().ok()).unwrap_or_else(|| usage()),
            "--epoll" => args.epoll = true,
            _ => usage(),
        }
    }
    args
}

fn usage() -> ! {
    eprintln!("usage: echo_monoio [--port N] [--epoll]");
    std::process::exit(2)
}

async fn echo(mut stream: TcpStream) {
    let mut buf: Vec<u8> = Vec::with_capacity(BUF);
    loop {
        // A read fills the buffer from its start, up to its capacity.
        let (res, b) = stream.read(buf).await;
        buf = b;
        match res {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                eprintln!("echo_monoio: read: {e}");
                return;
            }
        }
        let (res, b) = stream.write_all(buf).await;
        buf = b;
        if let Err(e) = res {
            eprintln!("echo_monoio: write: {e}");
            return;
        }
    }
}

async fn serve(port: u16) {
    let listener = TcpListener::bind(("0.0.0.0", port)).unwrap_or_else(|e| {
        eprintln!("echo_monoio: bind port {port}: {e}");
        std::process::exit(1)
    });
    let port = listener.local_addr().expect("local_addr").port();
    println!("listening on {port}");
    std::io::stdout().flush().expect("flush stdout");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                if let Err(e) = stream.set_nodelay(true) {
                    eprintln!("echo_monoio: TCP_NODELAY: {e}");
                }
                monoio::spawn(echo(stream));
            }
            Err(e) => eprintln!("echo_monoio: accept: {e}"),
        }
    }
}

fn main() {
    let args = parse_args();
    if args.epoll {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap_or_else(|e| {
                eprintln!("echo_monoio: legacy (epoll) driver: {e}");
                std::process::exit(1)
            });
        rt.block_on(serve(args.port));
    } else {
        let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .build()
            .unwrap_or_else(|e| {
                eprintln!("echo_monoio: io_uring driver: {e}");
                std::process::exit(1)
            });
        rt.block_on(serve(args.port));
    }
}
