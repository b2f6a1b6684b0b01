//! The userspace network stack (`photon_netstack_*`) over a TAP device.
//!
//! Each test re-runs this binary inside a fresh network namespace
//! (`unshare -n`, as root), once per event engine. There a TAP interface
//! `utap0` is created with the kernel side at 10.77.0.1/24; libphoton's
//! stack takes 10.77.0.2/24. Kernel-side peers are plain OS threads with
//! `std::net` sockets (the kernel's stack). Skipped with a notice where
//! namespaces, `ip` or `/dev/net/tun` are unavailable.

mod common;

use core::ffi::{c_int, c_void};
use std::ffi::CString;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use photon::ffi::*;

const KERNEL_IP: &str = "10.77.0.1";
const STACK_IP: &str = "10.77.0.2";
const TAP: &str = "utap0";
const KERNEL_IP6: &str = "fd00:77::1";
const STACK_IP6: &str = "fd00:77::2";

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Runs scenario `name` in a new network namespace under each engine.
fn in_netns(name: &str) {
    in_netns_with(name, &[]);
}

/// [`in_netns`] with extra environment for the child.
fn in_netns_with(name: &str, env: &[(&str, &std::path::Path)]) {
    if std::env::var_os("UNET_SCENARIO").is_some() {
        return; // the child runs only `child`
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        println!("SKIPPED {name}: /dev/net/tun is missing");
        return;
    }
    let probe = Command::new("unshare").args(["-n", "ip", "link"]).output();
    if !probe.map(|o| o.status.success()).unwrap_or(false) {
        println!("SKIPPED {name}: cannot create a network namespace (unshare -n, ip: iproute2, root)");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    for engine in ["epoll", "io_uring"] {
        let out = Command::new("timeout")
            .args(["120", "unshare", "-n"])
            .arg(&exe)
            .args([
                "--exact",
                "child",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("UNET_SCENARIO", name)
            .env("PHOTON_ENGINE", engine)
            .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() && text.contains(&format!("SCENARIO {name} SKIPPED")) {
            // A device this machine or build lacks: say why, with the
            // library's own log lines (rte's error for DPDK).
            println!("SKIPPED {name} (PHOTON_ENGINE={engine}):");
            for l in text
                .lines()
                .filter(|l| l.contains("SKIPPED") || l.contains("photon: netstack"))
            {
                println!("  {l}");
            }
            continue;
        }
        assert!(
            out.status.success() && text.contains(&format!("SCENARIO {name} PASSED")),
            "scenario {name} under {engine} failed ({}):\n{text}",
            out.status
        );
        println!("{name} (PHOTON_ENGINE={engine}): passed");
    }
}

fn sh(args: &[&str]) {
    let st = Command::new("ip").args(args).status().unwrap();
    assert!(st.success(), "ip {args:?} failed");
}

/// The namespace's network: lo up, utap0 with the kernel's address.
fn setup_net() {
    sh(&["link", "set", "lo", "up"]);
    sh(&["tuntap", "add", "dev", TAP, "mode", "tap"]);
    sh(&["addr", "add", &format!("{KERNEL_IP}/24"), "dev", TAP]);
    sh(&["link", "set", TAP, "up"]);
}

/// The scenario runner (the child process).
#[test]
#[ignore = "run by the other tests inside a network namespace"]
fn child() {
    let Ok(name) = std::env::var("UNET_SCENARIO") else {
        return;
    };
    if name.starts_with("dpdk_") {
        sh(&["link", "set", "lo", "up"]);
        dpdk_scenario(&name);
        return;
    }
    if name.starts_with("xdp_") {
        xdp_scenario(&name);
        return;
    }
    setup_net();
    if name == "c_echo" {
        c_echo();
        println!("SCENARIO {name} PASSED");
        return;
    }
    if name == "cpp_wrapper" {
        let exe = std::env::var("UNET_CPP_PROGRAM").unwrap();
        let o = Command::new(&exe)
            .env_remove(common::CARGO_LIBRARY_PATH)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        println!("{text}");
        assert!(
            o.status.success() && text.contains("passed"),
            "{exe} failed ({}): {text}",
            o.status
        );
        println!("SCENARIO {name} PASSED");
        return;
    }
    assert_eq!(photon_init(PHOTON_EVENT_DEFAULT, 0), 0);
    let dev = CString::new(format!("tap:{TAP}")).unwrap();
    // The ipv6 scenario: both families on one stack.
    let cidr = if name == "ipv6" {
        sh(&["-6", "addr", "add", &format!("{KERNEL_IP6}/64"), "dev", TAP, "nodad"]);
        CString::new(format!("{STACK_IP}/24,{STACK_IP6}/64")).unwrap()
    } else {
        CString::new(format!("{STACK_IP}/24")).unwrap()
    };
    let stack = photon_netstack_new(dev.as_ptr(), cidr.as_ptr(), core::ptr::null());
    assert!(!stack.is_null(), "photon_netstack_new: errno {}", errno());
    match name.as_str() {
        "ipv6" => ipv6(stack),
        "echo_200" => echo_200(stack),
        "client_to_kernel" => client_to_kernel(stack),
        "udp" => udp(stack),
        "refused_and_timeouts" => refused_and_timeouts(stack),
        "sequential_10k" => sequential_10k(stack),
        "misuse" => misuse(stack),
        other => panic!("unknown scenario {other}"),
    }
    assert_eq!(
        photon_netstack_free(stack),
        0,
        "photon_netstack_free: errno {}",
        errno()
    );
    assert_eq!(photon_fini(), 0);
    println!("SCENARIO {name} PASSED");
}

/// EAL arguments for the DPDK scenarios: no hugepages, no PCI scan, no
/// shared files in /var/run, one lcore, and the TAP PMD's interface
/// `dtap0` in this namespace as the port.
const DPDK_EAL: &str = "--no-huge -m 128 --no-pci --no-shconf --no-telemetry -l 0 --log-level=lib.eal:warning \
                        --vdev=net_tap0,iface=dtap0";

/// A stack on a DPDK port (the TAP PMD: the kernel side is `dtap0`,
/// given the kernel's address once the port exists); skipped, with the
/// library's reason, when libphoton was built without libdpdk or the EAL
/// does not start here.
fn dpdk_scenario(name: &str) {
    assert_eq!(photon_init(PHOTON_EVENT_DEFAULT, 0), 0);
    let dev = CString::new(format!("dpdk:{DPDK_EAL}")).unwrap();
    let cidr = CString::new(format!("{STACK_IP}/24")).unwrap();
    let stack = photon_netstack_new(dev.as_ptr(), cidr.as_ptr(), core::ptr::null());
    if stack.is_null() {
        assert_eq!(errno(), libc::ENODEV, "photon_netstack_new(dpdk:)");
        assert_eq!(photon_fini(), 0);
        println!("SCENARIO {name} SKIPPED: no DPDK port (libphoton's log line above says why)");
        return;
    }
    sh(&["addr", "add", &format!("{KERNEL_IP}/24"), "dev", "dtap0"]);
    sh(&["link", "set", "dtap0", "up"]);
    match name {
        "dpdk_echo" => echo_200(stack),
        other => panic!("unknown scenario {other}"),
    }
    let s = stats(stack);
    assert!(
        s.rx_frames > 1000 && s.tx_frames > 1000,
        "frames over the port: {} in, {} out",
        s.rx_frames,
        s.tx_frames
    );
    println!(
        "dpdk: {} frames in, {} out, {} empty polls, {} rounds, {} sleeps",
        s.rx_frames, s.tx_frames, s.rx_empty_polls, s.poll_rounds, s.poll_sleeps
    );
    assert_eq!(
        photon_netstack_free(stack),
        0,
        "photon_netstack_free: errno {}",
        errno()
    );
    assert_eq!(photon_fini(), 0);
    println!("SCENARIO {name} PASSED");
}

/// A stack on an AF_XDP socket: a veth pair, the kernel's address on
/// `xv0`, the stack on queue 0 of `xv1` (the XDP program in driver mode
/// where veth has it, generic otherwise); skipped, with the library's
/// reason, when the kernel refuses AF_XDP, BPF or the attachment.
fn xdp_scenario(name: &str) {
    sh(&["link", "set", "lo", "up"]);
    sh(&["link", "add", "xv0", "type", "veth", "peer", "name", "xv1"]);
    sh(&["addr", "add", &format!("{KERNEL_IP}/24"), "dev", "xv0"]);
    sh(&["link", "set", "xv0", "up"]);
    sh(&["link", "set", "xv1", "up"]);
    assert_eq!(photon_init(PHOTON_EVENT_DEFAULT, 0), 0);
    // xdp_echo: the default (driver mode, which veth has); xdp_skb_echo:
    // generic mode asked for.
    let dev = CString::new(if name == "xdp_skb_echo" {
        "xdp:xv1:0:skb"
    } else {
        "xdp:xv1:0"
    })
    .unwrap();
    let cidr = CString::new(format!("{STACK_IP}/24")).unwrap();
    let stack = photon_netstack_new(dev.as_ptr(), cidr.as_ptr(), core::ptr::null());
    if stack.is_null() {
        let e = errno();
        assert!(
            e == libc::ENODEV || e == libc::EPERM,
            "photon_netstack_new(xdp:): errno {e}"
        );
        assert_eq!(photon_fini(), 0);
        println!(
            "SCENARIO {name} SKIPPED: the kernel refused AF_XDP here (errno {e}; libphoton's log line above says why)"
        );
        return;
    }
    let attached = Command::new("ip").args(["link", "show", "xv1"]).output().unwrap();
    let attached = String::from_utf8_lossy(&attached.stdout).into_owned();
    let mode = if name == "xdp_skb_echo" { "xdpgeneric" } else { "xdp " };
    assert!(attached.contains(mode), "no XDP program ({mode}) on xv1: {attached}");
    match name {
        "xdp_echo" | "xdp_skb_echo" => echo_200(stack),
        other => panic!("unknown scenario {other}"),
    }
    let s = stats(stack);
    assert!(
        s.rx_frames > 1000 && s.tx_frames > 1000,
        "frames over the socket: {} in, {} out",
        s.rx_frames,
        s.tx_frames
    );
    println!(
        "xdp: {} frames in, {} out, {} dropped, {} empty polls, {} rounds, {} sleeps",
        s.rx_frames, s.tx_frames, s.tx_dropped, s.rx_empty_polls, s.poll_rounds, s.poll_sleeps
    );
    assert_eq!(
        photon_netstack_free(stack),
        0,
        "photon_netstack_free: errno {}",
        errno()
    );
    // The link closed with the stack: the program is gone.
    let after = Command::new("ip").args(["link", "show", "xv1"]).output().unwrap();
    let after = String::from_utf8_lossy(&after.stdout).into_owned();
    assert!(
        !after.contains("prog/xdp"),
        "the XDP program outlived the stack: {after}"
    );
    assert_eq!(photon_fini(), 0);
    println!("SCENARIO {name} PASSED");
}

fn sockaddr6(ip: &str, port: u16) -> libc::sockaddr_in6 {
    // SAFETY: a zeroed sockaddr_in6 is valid.
    let mut sin6: libc::sockaddr_in6 = unsafe { core::mem::zeroed() };
    sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    sin6.sin6_port = port.to_be();
    sin6.sin6_addr.s6_addr = ip.parse::<std::net::Ipv6Addr>().unwrap().octets();
    sin6
}

const SIN6_LEN: libc::socklen_t = core::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;

fn addr6_of(sin6: &libc::sockaddr_in6) -> (std::net::Ipv6Addr, u16) {
    assert_eq!(i32::from(sin6.sin6_family), libc::AF_INET6);
    (
        std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr),
        u16::from_be(sin6.sin6_port),
    )
}

/// Joins an OS thread from a photon thread without blocking the vcpu
/// (whose stack must keep running for the thread to finish).
fn join_photon<T>(h: std::thread::JoinHandle<T>) -> T {
    while !h.is_finished() {
        photon_thread_usleep(1000);
    }
    h.join().unwrap()
}

/// Reads until EOF, writes it all back, closes.
fn echo_until_eof(fd: i32) -> usize {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = photon_recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0, 10_000_000);
        assert!(n >= 0, "recv: errno {}", errno());
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n as usize]);
    }
    assert_eq!(
        photon_write_full(fd, all.as_ptr().cast(), all.len(), 10_000_000),
        all.len() as isize
    );
    assert_eq!(photon_close(fd), 0);
    all.len()
}

/// IPv6 beside IPv4 on one stack ("10.77.0.2/24,fd00:77::2/64"): an
/// AF_INET6 listener on :: serves kernel clients over IPv6 and, dual-stack
/// as Linux's default, over IPv4 (the peer a v4-mapped address); an
/// AF_INET listener hears only IPv4; an AF_INET6 client reaches a kernel
/// server; UDP over IPv6 both ways. Every byte verified.
fn ipv6(stack: *mut photon_netstack) {
    let l = photon_netstack_socket(stack, libc::AF_INET6, libc::SOCK_STREAM, 0);
    assert!(l >= PHOTON_NETSTACK_FD_BASE, "socket(AF_INET6): errno {}", errno());
    let any = sockaddr6("::", 7010);
    assert_eq!(
        photon_bind(l, (&raw const any).cast(), SIN6_LEN),
        0,
        "bind: errno {}",
        errno()
    );
    assert_eq!(photon_listen(l, 64), 0);
    let mut dom = 0i32;
    let mut dlen = 4 as libc::socklen_t;
    assert_eq!(
        photon_getsockopt(l, libc::SOL_SOCKET, libc::SO_DOMAIN, (&raw mut dom).cast(), &mut dlen),
        0
    );
    assert_eq!(dom, libc::AF_INET6);
    // 20 clients over IPv6, then one over IPv4, each its own pattern.
    let clients = std::thread::spawn(|| {
        for i in 0..21usize {
            let host = if i < 20 { STACK_IP6 } else { STACK_IP };
            let mut c = TcpStream::connect((host, 7010)).unwrap_or_else(|e| panic!("connect {host}: {e}"));
            c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let data = pattern(i, 5000 + i * 311);
            c.write_all(&data).unwrap();
            c.shutdown(std::net::Shutdown::Write).unwrap();
            let mut back = Vec::new();
            c.read_to_end(&mut back).unwrap();
            assert!(back == data, "client {i} over {host}: bytes differ");
        }
    });
    for i in 0..21usize {
        let mut peer: libc::sockaddr_in6 = sockaddr6("::", 0);
        let mut plen = SIN6_LEN;
        let fd = photon_accept(l, (&raw mut peer).cast(), &mut plen, 20_000_000);
        assert!(fd >= PHOTON_NETSTACK_FD_BASE, "accept: errno {}", errno());
        assert_eq!(plen, SIN6_LEN);
        let (ip, _) = addr6_of(&peer);
        let want: std::net::Ipv6Addr = if i < 20 {
            KERNEL_IP6.parse().unwrap()
        } else {
            KERNEL_IP.parse::<std::net::Ipv4Addr>().unwrap().to_ipv6_mapped()
        };
        assert_eq!(ip, want, "peer of connection {i}");
        let mut me = sockaddr6("::", 0);
        let mut mlen = SIN6_LEN;
        assert_eq!(photon_getsockname(fd, (&raw mut me).cast(), &mut mlen), 0);
        let (mine, port) = addr6_of(&me);
        assert_eq!(port, 7010);
        let want_me: std::net::Ipv6Addr = if i < 20 {
            STACK_IP6.parse().unwrap()
        } else {
            STACK_IP.parse::<std::net::Ipv4Addr>().unwrap().to_ipv6_mapped()
        };
        assert_eq!(mine, want_me);
        assert_eq!(echo_until_eof(fd), 5000 + i * 311);
    }
    join_photon(clients);
    assert_eq!(photon_close(l), 0);
    // An AF_INET listener hears IPv4 only: an IPv6 SYN to its port is reset.
    let l4 = photon_netstack_socket(stack, libc::AF_INET, libc::SOCK_STREAM, 0);
    let any4 = sockaddr("0.0.0.0", 7012);
    assert_eq!(photon_bind(l4, (&raw const any4).cast(), SIN_LEN), 0);
    assert_eq!(photon_listen(l4, 8), 0);
    let refused = std::thread::spawn(|| TcpStream::connect((STACK_IP6, 7012)).map(|_| ()));
    let r = join_photon(refused);
    assert!(r.is_err(), "an IPv6 connection reached an AF_INET listener");
    let v4ok = std::thread::spawn(|| TcpStream::connect((STACK_IP, 7012)).map(|_| ()));
    let fd = photon_accept(l4, core::ptr::null_mut(), core::ptr::null_mut(), 10_000_000);
    assert!(fd >= PHOTON_NETSTACK_FD_BASE, "accept (IPv4): errno {}", errno());
    join_photon(v4ok).unwrap();
    assert_eq!(photon_close(fd), 0);
    assert_eq!(photon_close(l4), 0);
    // An AF_INET6 client to a kernel server over IPv6.
    let kl = TcpListener::bind((KERNEL_IP6, 7011)).unwrap();
    let ks = std::thread::spawn(move || {
        let (mut c, from) = kl.accept().unwrap();
        let mut all = Vec::new();
        c.read_to_end(&mut all).unwrap();
        c.write_all(&all).unwrap();
        from
    });
    let fd = photon_netstack_socket(stack, libc::AF_INET6, libc::SOCK_STREAM, 0);
    let to = sockaddr6(KERNEL_IP6, 7011);
    assert_eq!(
        photon_connect(fd, (&raw const to).cast(), SIN6_LEN, 10_000_000),
        0,
        "connect: errno {}",
        errno()
    );
    let data = pattern(77, 100_000);
    assert_eq!(
        photon_write_full(fd, data.as_ptr().cast(), data.len(), 10_000_000),
        data.len() as isize
    );
    assert_eq!(photon_shutdown(fd, libc::SHUT_WR), 0);
    let mut back = vec![0u8; data.len()];
    assert_eq!(
        photon_read_full(fd, back.as_mut_ptr().cast(), back.len(), 10_000_000),
        data.len() as isize
    );
    assert!(back == data, "IPv6 client: bytes differ");
    let mut pa = sockaddr6("::", 0);
    let mut plen = SIN6_LEN;
    assert_eq!(photon_getpeername(fd, (&raw mut pa).cast(), &mut plen), 0);
    assert_eq!(addr6_of(&pa), (KERNEL_IP6.parse().unwrap(), 7011));
    let from = join_photon(ks);
    assert_eq!(from.ip(), STACK_IP6.parse::<std::net::IpAddr>().unwrap());
    assert_eq!(photon_close(fd), 0);
    // UDP over IPv6, both ways.
    let k = UdpSocket::bind((KERNEL_IP6, 7013)).unwrap();
    let kt = std::thread::spawn(move || {
        let mut kb = [0u8; 2048];
        for i in 0..5usize {
            let (kn, kfrom) = k.recv_from(&mut kb).unwrap();
            assert_eq!(&kb[..kn], &pattern(i, 200 + i * 250)[..]);
            assert_eq!(kfrom, std::net::SocketAddr::new(STACK_IP6.parse().unwrap(), 7014));
            k.send_to(&kb[..kn], kfrom).unwrap();
        }
    });
    let u = photon_netstack_socket(stack, libc::AF_INET6, libc::SOCK_DGRAM, 0);
    let me = sockaddr6("::", 7014);
    assert_eq!(photon_bind(u, (&raw const me).cast(), SIN6_LEN), 0);
    let to = sockaddr6(KERNEL_IP6, 7013);
    for i in 0..5usize {
        let data = pattern(i, 200 + i * 250);
        let n = photon_sendto(
            u,
            data.as_ptr().cast(),
            data.len(),
            0,
            (&raw const to).cast(),
            SIN6_LEN,
            1_000_000,
        );
        assert_eq!(n, data.len() as isize, "sendto: errno {}", errno());
        let mut buf = [0u8; 2048];
        let mut from = sockaddr6("::", 0);
        let mut flen = SIN6_LEN;
        let n = photon_recvfrom(
            u,
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
            (&raw mut from).cast(),
            &mut flen,
            5_000_000,
        );
        assert_eq!(n, data.len() as isize, "recvfrom: errno {}", errno());
        assert_eq!(&buf[..data.len()], &data[..]);
        assert_eq!(addr6_of(&from), (KERNEL_IP6.parse().unwrap(), 7013));
    }
    join_photon(kt);
    // One frame: 1452 bytes of payload over IPv6 (1472 over IPv4).
    let big = vec![7u8; 1453];
    assert_eq!(
        photon_sendto(
            u,
            big.as_ptr().cast(),
            big.len(),
            0,
            (&raw const to).cast(),
            SIN6_LEN,
            1_000_000
        ),
        -1
    );
    assert_eq!(errno(), libc::EMSGSIZE);
    // An IPv4 sockaddr on an AF_INET6 socket is refused, as by Linux.
    let v4 = sockaddr(KERNEL_IP, 7013);
    assert_eq!(
        photon_sendto(
            u,
            big.as_ptr().cast(),
            10,
            0,
            (&raw const v4).cast(),
            SIN_LEN,
            1_000_000
        ),
        -1
    );
    assert_eq!(errno(), libc::EAFNOSUPPORT);
    assert_eq!(photon_close(u), 0);
    println!(
        "ipv6: 20 IPv6 + 1 IPv4 (v4-mapped) connections on an AF_INET6 listener, AF_INET listener IPv4-only, IPv6 client, UDP both ways"
    );
}

/// Waits as a photon thread until `done` reaches `n`.
fn wait_count(done: &AtomicUsize, n: usize, what: &str) {
    let start = std::time::Instant::now();
    while done.load(Acquire) < n {
        assert!(start.elapsed() < Duration::from_secs(60), "{what}: timed out");
        photon_thread_usleep(1000);
    }
}

fn sockaddr(ip: &str, port: u16) -> libc::sockaddr_in {
    // SAFETY: a zeroed sockaddr_in is valid.
    let mut sin: libc::sockaddr_in = unsafe { core::mem::zeroed() };
    sin.sin_family = libc::AF_INET as libc::sa_family_t;
    sin.sin_port = port.to_be();
    sin.sin_addr.s_addr = u32::from(ip.parse::<std::net::Ipv4Addr>().unwrap()).to_be();
    sin
}

const SIN_LEN: libc::socklen_t = core::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;

unsafe extern "C" fn echo_handler(_u: *mut c_void, fd: c_int) -> c_int {
    let mut buf = [0u8; 4096];
    loop {
        let n = photon_recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0, 10_000_000);
        if n <= 0 {
            break;
        }
        if photon_write_full(fd, buf.as_ptr().cast(), n as usize, 10_000_000) != n {
            break;
        }
    }
    photon_close(fd)
}

struct Served {
    server: *mut photon_server,
}

unsafe extern "C" fn serve_main(arg: *mut c_void) -> *mut c_void {
    // SAFETY: a live Served of the spawning frame.
    let s = unsafe { &*arg.cast::<Served>() };
    let rc = photon_server_serve(s.server, Some(echo_handler), core::ptr::null_mut());
    rc as isize as *mut c_void
}

fn start_server(server: *mut photon_server) -> (*mut photon_thread, Box<Served>) {
    let served = Box::new(Served { server });
    let th = photon_thread_create(Some(serve_main), (&raw const *served).cast_mut().cast(), 0);
    assert!(!th.is_null());
    assert_eq!(photon_thread_enable_join(th), 0);
    (th, served)
}

fn stop_server(th: *mut photon_thread, served: &Served) {
    assert_eq!(photon_server_stop(served.server), 0);
    let mut rv = core::ptr::null_mut();
    assert_eq!(photon_thread_join(th, &mut rv), 0);
    assert_eq!(rv as isize, 0, "serve failed");
    photon_server_free(served.server);
}

fn pattern(conn: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + conn * 7 + i / 251) as u8).collect()
}

/// A userspace echo server, 200 concurrent kernel-side connections, every
/// byte verified; meanwhile a kernel-socket echo server on the same vcpu
/// serves a kernel client over loopback.
fn echo_200(stack: *mut photon_netstack) {
    let server = photon_server_new_tcp_on(stack, core::ptr::null(), 7000, 256);
    assert!(!server.is_null(), "photon_server_new_tcp_on: errno {}", errno());
    assert_eq!(photon_server_port(server), 7000);
    let (th, served) = start_server(server);
    let kserver = photon_server_new_tcp(c"127.0.0.1".as_ptr(), 0, 64);
    let kport = photon_server_port(kserver) as u16;
    let (kth, kserved) = start_server(kserver);

    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut joins = Vec::new();
    for t in 0..4 {
        let (done, failures) = (done.clone(), failures.clone());
        joins.push(std::thread::spawn(move || {
            let mut conns: Vec<TcpStream> = (0..50)
                .map(|_| TcpStream::connect((STACK_IP, 7000)).expect("connect to the userspace stack"))
                .collect();
            for (i, c) in conns.iter_mut().enumerate() {
                c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let data = pattern(t * 50 + i, 3000 + i * 97);
                c.write_all(&data).unwrap();
            }
            for (i, c) in conns.iter_mut().enumerate() {
                let data = pattern(t * 50 + i, 3000 + i * 97);
                let mut back = vec![0u8; data.len()];
                match c.read_exact(&mut back) {
                    Ok(()) if back == data => {}
                    Ok(()) => failures.lock().unwrap().push(format!("conn {t}/{i}: bytes differ")),
                    Err(e) => failures.lock().unwrap().push(format!("conn {t}/{i}: {e}")),
                }
            }
            done.fetch_add(1, Release);
        }));
    }
    // The kernel-socket server on the same vcpu, at the same time.
    let kdone = Arc::new(AtomicUsize::new(0));
    let kd = kdone.clone();
    joins.push(std::thread::spawn(move || {
        for i in 0..50 {
            let mut c = TcpStream::connect(("127.0.0.1", kport)).unwrap();
            let data = pattern(1000 + i, 2000);
            c.write_all(&data).unwrap();
            let mut back = vec![0u8; data.len()];
            c.read_exact(&mut back).unwrap();
            assert_eq!(back, data);
        }
        kd.fetch_add(1, Release);
    }));
    wait_count(&done, 4, "200 userspace-stack connections");
    wait_count(&kdone, 1, "kernel-socket connections");
    for j in joins {
        j.join().unwrap();
    }
    let f = failures.lock().unwrap();
    assert!(f.is_empty(), "echo failures: {f:?}");
    println!("200 connections echoed and verified; 50 kernel-socket connections on the same vcpu");
    stop_server(th, &served);
    stop_server(kth, &kserved);
    // Connections closed by the handlers finish in the background.
    photon_thread_usleep(100_000);
}

/// A userspace client and a kernel server: connect, echo, half-close
/// (the server sees EOF and answers after it), getsockname/getpeername.
fn client_to_kernel(stack: *mut photon_netstack) {
    let l = TcpListener::bind((KERNEL_IP, 7001)).unwrap();
    let srv = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut all = Vec::new();
        c.read_to_end(&mut all).unwrap(); // until the client's FIN
        c.write_all(&all).unwrap();
        c.write_all(b"END").unwrap();
    });
    let fd = photon_netstack_socket(stack, libc::AF_INET, libc::SOCK_STREAM, 0);
    assert!(fd >= PHOTON_NETSTACK_FD_BASE, "socket: {fd} errno {}", errno());
    let sin = sockaddr(KERNEL_IP, 7001);
    assert_eq!(
        photon_connect(fd, (&raw const sin).cast(), SIN_LEN, 5_000_000),
        0,
        "connect: errno {}",
        errno()
    );
    let mut name: libc::sockaddr_in = sockaddr("0.0.0.0", 0);
    let mut len = SIN_LEN;
    assert_eq!(photon_getpeername(fd, (&raw mut name).cast(), &mut len), 0);
    assert_eq!(u16::from_be(name.sin_port), 7001);
    assert_eq!(photon_getsockname(fd, (&raw mut name).cast(), &mut len), 0);
    assert_eq!(
        u32::from_be(name.sin_addr.s_addr),
        u32::from(STACK_IP.parse::<std::net::Ipv4Addr>().unwrap())
    );
    let data = pattern(5, 200_000); // larger than the socket buffers
    assert_eq!(
        photon_write_full(fd, data.as_ptr().cast(), data.len(), 10_000_000),
        data.len() as isize
    );
    assert_eq!(photon_shutdown(fd, libc::SHUT_WR), 0);
    let mut back = vec![0u8; data.len() + 3];
    let n = photon_read_full(fd, back.as_mut_ptr().cast(), back.len(), 10_000_000);
    assert_eq!(n, back.len() as isize, "read_full: errno {}", errno());
    assert_eq!(&back[..data.len()], &data[..]);
    assert_eq!(&back[data.len()..], b"END");
    let mut one = [0u8; 1];
    assert_eq!(
        photon_read(fd, one.as_mut_ptr().cast(), 1, 5_000_000),
        0,
        "EOF after the server closed"
    );
    assert_eq!(photon_close(fd), 0);
    srv.join().unwrap();
    println!("userspace client: 200000 bytes both ways, half-close, EOF");
}

/// UDP both ways.
fn udp(stack: *mut photon_netstack) {
    // Userspace client, kernel echo.
    let k = UdpSocket::bind((KERNEL_IP, 7002)).unwrap();
    let kt = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        for _ in 0..10 {
            let (n, from) = k.recv_from(&mut buf).unwrap();
            k.send_to(&buf[..n], from).unwrap();
        }
    });
    let fd = photon_netstack_socket(stack, libc::AF_INET, libc::SOCK_DGRAM, 0);
    assert!(fd >= PHOTON_NETSTACK_FD_BASE);
    let to = sockaddr(KERNEL_IP, 7002);
    for i in 0..10 {
        let data = pattern(i, 100 + i * 100);
        let n = photon_sendto(
            fd,
            data.as_ptr().cast(),
            data.len(),
            0,
            (&raw const to).cast(),
            SIN_LEN,
            1_000_000,
        );
        assert_eq!(n, data.len() as isize, "sendto: errno {}", errno());
        let mut buf = [0u8; 2048];
        let mut from = sockaddr("0.0.0.0", 0);
        let mut flen = SIN_LEN;
        let n = photon_recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
            (&raw mut from).cast(),
            &mut flen,
            5_000_000,
        );
        assert_eq!(n, data.len() as isize, "recvfrom: errno {}", errno());
        assert_eq!(&buf[..data.len()], &data[..]);
        assert_eq!(u16::from_be(from.sin_port), 7002);
    }
    kt.join().unwrap();
    // Too big for one frame (no fragmentation).
    let big = vec![0u8; 2000];
    assert_eq!(
        photon_sendto(
            fd,
            big.as_ptr().cast(),
            big.len(),
            0,
            (&raw const to).cast(),
            SIN_LEN,
            1_000_000
        ),
        -1
    );
    assert_eq!(errno(), libc::EMSGSIZE);
    assert_eq!(photon_close(fd), 0);

    // Kernel client, userspace echo.
    let fd = photon_netstack_socket(stack, libc::AF_INET, libc::SOCK_DGRAM, 0);
    let me = sockaddr("0.0.0.0", 7003);
    assert_eq!(
        photon_bind(fd, (&raw const me).cast(), SIN_LEN),
        0,
        "bind: errno {}",
        errno()
    );
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    let kt = std::thread::spawn(move || {
        let k = UdpSocket::bind((KERNEL_IP, 0)).unwrap();
        k.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        for i in 0..10 {
            let data = pattern(100 + i, 50 + i * 50);
            k.send_to(&data, (STACK_IP, 7003)).unwrap();
            let mut buf = [0u8; 2048];
            let (n, _) = k.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &data[..]);
        }
        d.fetch_add(1, Release);
    });
    for _ in 0..10 {
        let mut buf = [0u8; 2048];
        let mut from = sockaddr("0.0.0.0", 0);
        let mut flen = SIN_LEN;
        let n = photon_recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
            (&raw mut from).cast(),
            &mut flen,
            5_000_000,
        );
        assert!(n > 0, "recvfrom: errno {}", errno());
        let m = photon_sendto(
            fd,
            buf.as_ptr().cast(),
            n as usize,
            0,
            (&raw const from).cast(),
            flen,
            1_000_000,
        );
        assert_eq!(m, n);
    }
    wait_count(&done, 1, "kernel UDP client");
    kt.join().unwrap();
    assert_eq!(photon_close(fd), 0);
    println!("UDP: 10 datagrams each way verified; EMSGSIZE over one frame");
}

struct Blocked {
    fd: c_int,
    result: isize,
    errno: i32,
}

unsafe extern "C" fn blocked_recv(arg: *mut c_void) -> *mut c_void {
    // SAFETY: a live Blocked of the spawning frame.
    let b = unsafe { &mut *arg.cast::<Blocked>() };
    let mut buf = [0u8; 16];
    b.result = photon_recv(b.fd, buf.as_mut_ptr().cast(), buf.len(), 0, PHOTON_FOREVER);
    b.errno = errno();
    core::ptr::null_mut()
}

/// A closed port (RST: ECONNREFUSED), a host that never answers
/// (ETIMEDOUT), a peer that vanishes (recv times out), an interrupt,
/// close waking a waiter, and the thread dump.
fn refused_and_timeouts(stack: *mut photon_netstack) {
    let fd = photon_netstack_socket(stack, libc::AF_INET, libc::SOCK_STREAM, 0);
    let closed = sockaddr(KERNEL_IP, 7999);
    assert_eq!(photon_connect(fd, (&raw const closed).cast(), SIN_LEN, 5_000_000), -1);
    assert_eq!(errno(), libc::ECONNREFUSED, "connect to a closed port");
    assert_eq!(photon_close(fd), 0);

    let fd = photon_netstack_socket(stack, libc::AF_INET, libc::SOCK_STREAM, 0);
    let nobody = sockaddr("10.77.0.99", 7000);
    let t0 = photon_now_us();
    assert_eq!(photon_connect(fd, (&raw const nobody).cast(), SIN_LEN, 300_000), -1);
    assert_eq!(errno(), libc::ETIMEDOUT, "connect to a silent host");
    assert!(photon_now_us() - t0 >= 290_000);
    assert_eq!(photon_close(fd), 0);

    // A peer that vanishes: connected, then its interface goes down.
    let l = TcpListener::bind((KERNEL_IP, 7004)).unwrap();
    let held = std::thread::spawn(move || l.accept().unwrap().0);
    let fd = photon_netstack_socket(stack, libc::AF_INET, libc::SOCK_STREAM, 0);
    let peer = sockaddr(KERNEL_IP, 7004);
    assert_eq!(photon_connect(fd, (&raw const peer).cast(), SIN_LEN, 5_000_000), 0);
    let _conn = held.join().unwrap();
    sh(&["link", "set", TAP, "down"]);
    let mut buf = [0u8; 16];
    let t0 = photon_now_us();
    assert_eq!(photon_write(fd, b"lost".as_ptr().cast(), 4, 1_000_000), 4);
    assert_eq!(photon_recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0, 200_000), -1);
    assert_eq!(errno(), libc::ETIMEDOUT, "recv from a vanished peer");
    assert!(photon_now_us() - t0 >= 190_000);
    assert_eq!(photon_wait_fd(fd, PHOTON_READABLE, 100_000), -1);
    assert_eq!(errno(), libc::ETIMEDOUT, "wait_fd on a vanished peer");

    // A waiter blocked forever: the dump names it, close wakes it.
    let mut b = Blocked {
        fd,
        result: 0,
        errno: 0,
    };
    let th = photon_thread_create(Some(blocked_recv), (&raw mut b).cast(), 0);
    assert_eq!(photon_thread_enable_join(th), 0);
    photon_thread_usleep(20_000);
    let dump_path = std::env::temp_dir().join(format!("unet-dump-{}", std::process::id()));
    let path = CString::new(dump_path.to_str().unwrap()).unwrap();
    // SAFETY: a C string path.
    let dfd = unsafe { libc::open(path.as_ptr(), libc::O_CREAT | libc::O_TRUNC | libc::O_RDWR, 0o600) };
    assert_eq!(photon_dump_threads(dfd), 0);
    // SAFETY: our fd.
    unsafe { libc::close(dfd) };
    let dump = std::fs::read_to_string(path.to_str().unwrap()).unwrap();
    let _ = std::fs::remove_file(path.to_str().unwrap());
    assert!(dump.contains(&format!("recv on unet fd {fd}")), "thread dump:\n{dump}");
    assert_eq!(photon_close(fd), 0);
    assert_eq!(photon_thread_join(th, core::ptr::null_mut()), 0);
    assert_eq!((b.result, b.errno), (-1, libc::ECANCELED), "close wakes the waiter");

    // An interrupt.
    let fd = photon_netstack_socket(stack, libc::AF_INET, libc::SOCK_DGRAM, 0);
    let me = sockaddr("0.0.0.0", 0);
    assert_eq!(photon_bind(fd, (&raw const me).cast(), SIN_LEN), 0);
    let mut b = Blocked {
        fd,
        result: 0,
        errno: 0,
    };
    let th = photon_thread_create(Some(blocked_recv), (&raw mut b).cast(), 0);
    assert_eq!(photon_thread_enable_join(th), 0);
    photon_thread_usleep(10_000);
    assert_eq!(photon_thread_interrupt(th, libc::EINTR), 0);
    assert_eq!(photon_thread_join(th, core::ptr::null_mut()), 0);
    assert_eq!((b.result, b.errno), (-1, libc::EINTR), "interrupt wakes the waiter");
    assert_eq!(photon_close(fd), 0);
    sh(&["link", "set", TAP, "up"]);
    println!("ECONNREFUSED, connect and recv timeouts, close and interrupt wake waiters, dump names the fd");
}

fn rss_kib() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn stats(stack: *mut photon_netstack) -> photon_netstack_stats {
    // SAFETY: a zeroed stats struct is valid.
    let mut s: photon_netstack_stats = unsafe { core::mem::zeroed() };
    s.size = core::mem::size_of::<photon_netstack_stats>() as u32;
    assert_eq!(photon_netstack_stats_get(stack, &mut s), 0);
    s
}

/// 10,000 sequential connections: no descriptor or memory grows.
fn sequential_10k(stack: *mut photon_netstack) {
    let server = photon_server_new_tcp_on(stack, core::ptr::null(), 7005, 64);
    assert!(!server.is_null());
    let (th, served) = start_server(server);
    let run = |n: usize| {
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let t = std::thread::spawn(move || {
            for i in 0..n {
                let mut c = TcpStream::connect((STACK_IP, 7005)).unwrap();
                let data = pattern(i, 64);
                c.write_all(&data).unwrap();
                let mut back = [0u8; 64];
                c.read_exact(&mut back).unwrap();
                assert_eq!(&back[..], &data[..]);
            }
            d.fetch_add(1, Release);
        });
        wait_count(&done, 1, "sequential connections");
        t.join().unwrap();
        photon_thread_usleep(200_000); // the last closes finish
    };
    run(1000); // warm up: pools, tables
    let (rss0, s0) = (rss_kib(), stats(stack));
    let probe0 = photon_netstack_socket(stack, libc::AF_INET, libc::SOCK_STREAM, 0);
    assert_eq!(photon_close(probe0), 0);
    run(10_000);
    let (rss1, s1) = (rss_kib(), stats(stack));
    let probe1 = photon_netstack_socket(stack, libc::AF_INET, libc::SOCK_STREAM, 0);
    assert_eq!(photon_close(probe1), 0);
    println!(
        "10000 connections: descriptors open {} -> {}, smoltcp sockets {} -> {}, RSS {rss0} -> {rss1} KiB, next fd {probe0} -> {probe1}",
        s0.sockets_open, s1.sockets_open, s0.sockets_alive, s1.sockets_alive
    );
    assert_eq!(s1.sockets_open, 1, "only the listener stays open");
    assert_eq!(probe0, probe1, "the lowest free descriptor is the same: none leaked");
    assert!(s1.sockets_alive <= s0.sockets_alive + 2, "smoltcp sockets leaked");
    assert!(rss1 < rss0 + 4096, "memory grew by {} KiB", rss1 - rss0);
    stop_server(th, &served);
}

/// Calls without a userspace meaning fail with a clear errno; wrong
/// arguments fail; free refuses while a descriptor is open.
fn misuse(stack: *mut photon_netstack) {
    let fd = photon_netstack_socket(stack, libc::AF_INET, libc::SOCK_STREAM, 0);
    assert!(fd >= PHOTON_NETSTACK_FD_BASE);
    let mut b = [0u8; 4];
    assert_eq!(photon_pread(fd, b.as_mut_ptr().cast(), 4, 0), -1);
    assert_eq!(errno(), libc::ESPIPE);
    assert_eq!(photon_fsync(fd), -1);
    assert_eq!(errno(), libc::EINVAL);
    assert_eq!(photon_fd_forget(fd), -1);
    assert_eq!(errno(), libc::EINVAL);
    assert_eq!(photon_read(fd, b.as_mut_ptr().cast(), 4, 1000), -1);
    assert_eq!(errno(), libc::ENOTCONN);
    assert_eq!(photon_netstack_free(stack), -1);
    assert_eq!(errno(), libc::EBUSY);
    let other = sockaddr("10.77.0.3", 80);
    assert_eq!(photon_bind(fd, (&raw const other).cast(), SIN_LEN), -1);
    assert_eq!(errno(), libc::EADDRNOTAVAIL);
    assert_eq!(photon_netstack_socket(stack, libc::AF_UNIX, libc::SOCK_STREAM, 0), -1);
    assert_eq!(errno(), libc::EAFNOSUPPORT);
    assert_eq!(photon_close(fd), 0);
    assert_eq!(photon_close(fd), -1);
    assert_eq!(errno(), libc::EBADF);
    // The kernel never saw these numbers.
    // SAFETY: read(2) on a number the kernel never gave out.
    assert_eq!(unsafe { libc::read(fd, b.as_mut_ptr().cast(), 4) }, -1);
    assert_eq!(errno(), libc::EBADF);
    let bad = CString::new("eth:x").unwrap();
    let cidr = CString::new("10.0.0.2/24").unwrap();
    assert!(photon_netstack_new(bad.as_ptr(), cidr.as_ptr(), core::ptr::null()).is_null());
    assert_eq!(errno(), libc::ENODEV);
    // No such interface; EAL arguments it refuses (rte_eal_init fails).
    for kind in ["xdp:eth0:0", "dpdk:--no-such-eal-option"] {
        let d = CString::new(kind).unwrap();
        assert!(photon_netstack_new(d.as_ptr(), cidr.as_ptr(), core::ptr::null()).is_null());
        assert_eq!(errno(), libc::ENODEV, "{kind}");
    }
    let dev = CString::new("tap:utap9").unwrap();
    for bad in [
        "10.0.0.2",
        "10.0.0.2/24,10.0.0.3/24",
        "fd00::2/129",
        "fd00::2/64,fd00::3/64",
        "::ffff:10.0.0.2/96",
    ] {
        let c = CString::new(bad).unwrap();
        assert!(
            photon_netstack_new(dev.as_ptr(), c.as_ptr(), core::ptr::null()).is_null(),
            "{bad}"
        );
        assert_eq!(errno(), libc::EINVAL, "{bad}");
    }
    let gw = CString::new("10.0.0.1,10.0.0.9").unwrap();
    assert!(photon_netstack_new(dev.as_ptr(), cidr.as_ptr(), gw.as_ptr()).is_null());
    assert_eq!(errno(), libc::EINVAL);
    println!("misuse: ESPIPE, EINVAL, ENOTCONN, EBUSY, EADDRNOTAVAIL, EAFNOSUPPORT, EBADF, ENODEV");
}

/// The C programs: `c-examples/echo_server --netstack` serving 200
/// connections of `c-examples/echo_client` (kernel sockets), which
/// verifies every byte and exits non-zero on any error; ping-pong then
/// streaming.
fn c_echo() {
    let server = std::env::var("UNET_ECHO_SERVER").unwrap();
    let client = std::env::var("UNET_ECHO_CLIENT").unwrap();
    let engine = std::env::var("PHOTON_ENGINE").unwrap();
    let mut srv = Command::new(&server)
        .env_remove(common::CARGO_LIBRARY_PATH)
        .args(["--netstack", &format!("tap:{TAP},{STACK_IP}/24"), "--port", "7100"])
        .args(["--engine", &engine, "--quiet"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A failed check kills the server: left running, it would keep the
    // parent's output pipe open and hang the test instead of failing it.
    struct KillOnPanic(i32);
    impl Drop for KillOnPanic {
        fn drop(&mut self) {
            if std::thread::panicking() {
                // SAFETY: our child's pid.
                unsafe { libc::kill(self.0, libc::SIGKILL) };
            }
        }
    }
    let _kill = KillOnPanic(srv.id() as i32);
    let mut out = std::io::BufReader::new(srv.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert!(line.contains("on the userspace stack"), "server: {line}");
    for (mode, size) in [("pingpong", "1000"), ("stream", "4096")] {
        let o = Command::new(&client)
            .env_remove(common::CARGO_LIBRARY_PATH)
            .args(["--host", STACK_IP, "--port", "7100", "--conns", "200"])
            .args(["--size", size, "--mode", mode, "--duration", "1", "--warmup", "0.2"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        println!("echo_client {mode}: {text}");
        assert!(
            o.status.success() && text.contains("errors=0"),
            "echo_client {mode} failed ({}): {text}{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // SAFETY: our child's pid.
    unsafe { libc::kill(srv.id() as i32, libc::SIGINT) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let st = srv.wait().unwrap();
    println!("echo_server: {rest}");
    assert!(st.success(), "echo_server exited with {st}");
    assert!(
        rest.contains("served 400 connections") && rest.contains(" 0 failed"),
        "{rest}"
    );
}

#[test]
fn unet_c_echo_server_200_c_clients() {
    if std::env::var_os("UNET_SCENARIO").is_some() {
        return;
    }
    let dir = common::profile_dir().join("unet-tests");
    let flags = &["-std=c11", "-Wall", "-Wextra", "-Werror"];
    let root = common::manifest_dir();
    let server = common::compile_c(
        &root.join("c-examples/echo_server.c"),
        &dir.join("echo_server"),
        flags,
        &[],
        &[],
    );
    let client = common::compile_c(
        &root.join("c-examples/echo_client.c"),
        &dir.join("echo_client"),
        flags,
        &[],
        &[],
    );
    in_netns_with(
        "c_echo",
        &[
            ("UNET_ECHO_SERVER", server.as_path()),
            ("UNET_ECHO_CLIENT", client.as_path()),
        ],
    );
}

/// The C++ wrapper's sockets on the userspace stack (tests/cpp/unet_socket.cpp).
#[test]
fn unet_cpp_wrapper_sockets() {
    if std::env::var_os("UNET_SCENARIO").is_some() {
        return;
    }
    let root = common::manifest_dir();
    let dir = common::profile_dir().join("unet-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("unet_socket_cpp");
    let lib = common::lib_dir();
    let mut cmd = cc::Build::new()
        .cpp(true)
        .target(common::TARGET)
        .host(common::TARGET)
        .opt_level(1)
        .out_dir(&dir)
        .cargo_metadata(false)
        .get_compiler()
        .to_command();
    cmd.args(["-std=c++14", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(root.join("cpp-wrapper"))
        .arg("-I")
        .arg(common::include_dir())
        .arg("-I")
        .arg(root.join("tests/cpp"))
        .arg(root.join("tests/cpp/unet_socket.cpp"))
        .arg("-o")
        .arg(&exe)
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-lphoton", "-lpthread"]);
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "compiling unet_socket.cpp: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    in_netns_with("cpp_wrapper", &[("UNET_CPP_PROGRAM", exe.as_path())]);
}

#[test]
fn unet_echo_200_kernel_clients_and_kernel_sockets_on_the_same_vcpu() {
    in_netns("echo_200");
}

#[test]
fn unet_client_to_kernel_server_half_close() {
    in_netns("client_to_kernel");
}

#[test]
fn unet_udp_both_ways() {
    in_netns("udp");
}

#[test]
fn unet_refused_timeouts_close_interrupt_dump() {
    in_netns("refused_and_timeouts");
}

#[test]
fn unet_sequential_10k_no_leaks() {
    in_netns("sequential_10k");
}

#[test]
fn unet_dpdk_echo_200_kernel_clients() {
    in_netns("dpdk_echo");
}

#[test]
fn unet_xdp_echo_200_kernel_clients() {
    in_netns("xdp_echo");
}

#[test]
fn unet_xdp_generic_mode_echo_200_kernel_clients() {
    in_netns("xdp_skb_echo");
}

#[test]
fn unet_ipv6_beside_ipv4() {
    in_netns("ipv6");
}

#[test]
fn unet_misuse() {
    in_netns("misuse");
}
