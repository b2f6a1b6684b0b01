//! TLS echo server on tokio 1 (one thread, `current_thread` runtime) with
//! tokio-rustls (rustls, ring provider): the peer of libphoton + OpenSSL in
//! the `tls_echo` benchmark.
//!
//! `echo_tokio_rustls --port N --cert CERT.pem --key KEY.pem`: listens on
//! 127.0.0.1:N (0 = any), prints `listening on PORT`, serves until killed.
//! One task per connection: handshake, then read up to 16 KiB and write it
//! all back, until EOF or close_notify. TCP_NODELAY.

use std::io::Write;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

const BUF: usize = 16 * 1024;

fn usage() -> ! {
    eprintln!("usage: echo_tokio_rustls --port N --cert CERT.pem --key KEY.pem");
    std::process::exit(2)
}

async fn echo(acceptor: TlsAcceptor, stream: TcpStream) {
    let mut tls = match acceptor.accept(stream).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("echo_tokio_rustls: handshake: {e}");
            return;
        }
    };
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match tls.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::UnexpectedEof {
                    eprintln!("echo_tokio_rustls: read: {e}");
                }
                return;
            }
        };
        if let Err(e) = tls.write_all(&buf[..n]).await {
            eprintln!("echo_tokio_rustls: write: {e}");
            return;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut port, mut cert, mut key) = (0u16, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--port" => port = v.parse().unwrap_or_else(|_| usage()),
            "--cert" => cert = Some(v.clone()),
            "--key" => key = Some(v.clone()),
            _ => usage(),
        }
    }
    let (Some(cert), Some(key)) = (cert, key) else { usage() };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .and_then(|i| i.collect::<Result<_, _>>())
        .unwrap_or_else(|e| panic!("{cert}: {e}"));
    let key = PrivateKeyDer::from_pem_file(&key).unwrap_or_else(|e| panic!("{key}: {e}"));
    // ring's provider is deprecated only for lacking post-quantum key
    // exchange, which the OpenSSL 3.0 client does not offer anyway.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("certificate and key");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap_or_else(|e| {
            eprintln!("echo_tokio_rustls: bind port {port}: {e}");
            std::process::exit(1)
        });
        let port = listener.local_addr().expect("local_addr").port();
        println!("listening on {port}");
        std::io::stdout().flush().expect("flush stdout");
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(echo(acceptor.clone(), stream));
                }
                Err(e) => eprintln!("echo_tokio_rustls: accept: {e}"),
            }
        }
    });
}
