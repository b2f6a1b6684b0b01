//! Echo server on tokio 1, one thread (`current_thread` runtime): a peer of
//! libphoton's `c-examples/echo_server.c` for the `echo` benchmark.
//!
//! `echo_tokio [--port N]`: listens on 0.0.0.0:N (0 = any free port), prints
//! `listening on PORT` and flushes, then serves until killed. One task per
//! connection: read up to 64 KiB, write it all back, until EOF. TCP_NODELAY.

use std::io::Write;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BUF: usize = 64 * 1024;

fn port_arg() -> u16 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => 9527,
        [flag, n] if flag == "--port" => n.parse().unwrap_or_else(|_| usage()),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: echo_tokio [--port N]");
    std::process::exit(2)
}

async fn echo(mut stream: TcpStream) {
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) => {
                eprintln!("echo_tokio: read: {e}");
                return;
            }
        };
        if let Err(e) = stream.write_all(&buf[..n]).await {
            eprintln!("echo_tokio: write: {e}");
            return;
        }
    }
}

fn main() {
    let port = port_arg();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(("0.0.0.0", port)).await.unwrap_or_else(|e| {
            eprintln!("echo_tokio: bind port {port}: {e}");
            std::process::exit(1)
        });
        let port = listener.local_addr().expect("local_addr").port();
        println!("listening on {port}");
        std::io::stdout().flush().expect("flush stdout");
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    if let Err(e) = stream.set_nodelay(true) {
                        eprintln!("echo_tokio: TCP_NODELAY: {e}");
                    }
                    tokio::spawn(echo(stream));
                }
                Err(e) => eprintln!("echo_tokio: accept: {e}"),
            }
        }
    });
}
