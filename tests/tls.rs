//! TLS on photon sockets: `include/photon_ssl.h` (C, over the program's own
//! OpenSSL) and `cpp-wrapper/photon/net/security-context/tls-stream.h`
//! (C++, PhotonLibOS's names), each test under both engines.
//!
//! Certificates are made here with the `openssl` CLI into a directory of
//! this run: a CA and a server certificate it signs (localhost,
//! 127.0.0.1), and another CA with a server certificate of its own (the
//! "wrong" one). The peers are `openssl s_server`, `openssl s_client` and
//! `curl --cacert` (scripts/setup.sh installs them).
//!
//! - `tls_local`: one program, one vcpu: handshake and read timeouts (the
//!   connection survives a read timeout), resets mid-handshake on either
//!   side, a certificate of another CA (EPROTO, the verify error on the
//!   queue, no hang), close_notify and truncation, the OpenSSL error queue
//!   per photon thread.
//! - `tls_client_against_openssl_s_server`: 200 concurrent connections from
//!   one vcpu to `openssl s_server -rev`, every line's answer checked.
//! - `tls_server_for_curl_and_s_client`: one vcpu serving 200 parallel
//!   `curl` downloads (each body checked byte for byte) and 20 concurrent
//!   `openssl s_client` sessions.
//! - `tls_ktls`: kernel TLS; skipped with a notice where the kernel has no
//!   TLS ULP.
//! - `tls_cpp_echo`: the Photon-style TLS echo client and server (C++).
//! - `tls_cpp_tls_in_tls`: TLS streams over TLS streams (the BIO over a
//!   stream's recv/send rather than an fd).
//! - `tls_local_under_the_shim`: `tls_local` with libphoton_preload.so.
//! - `tls_header_compiles`: the header alone and twice, C99/C11/C++11.

mod common;

use common::*;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn out_dir() -> PathBuf {
    let dir = profile_dir().join("tls-tests");
    fs::create_dir_all(&dir).expect("create target/<profile>/tls-tests");
    dir
}

fn tool_present(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
        || Command::new(tool)
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run the openssl CLI (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The certificates of this run (made once per test binary).
fn certs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = out_dir().join(format!("certs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the certificate directory");
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        for ca in ["ca", "other"] {
            let (key, pem, subj) = (
                format!("{ca}.key"),
                format!("{ca}.pem"),
                format!("/CN=photon test {ca}"),
            );
            let mut args = vec!["req", "-x509"];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj]);
            openssl(&args, &dir);
        }
        fs::write(dir.join("leaf.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("write leaf.ext");
        for (leaf, ca) in [("server", "ca"), ("wrong", "other")] {
            let (key, csr, pem) = (format!("{leaf}.key"), format!("{leaf}.csr"), format!("{leaf}.pem"));
            let mut args = vec!["req"];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"]);
            openssl(&args, &dir);
            let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
            openssl(
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    &ca_pem,
                    "-CAkey",
                    &ca_key,
                    "-CAcreateserial",
                    "-out",
                    &pem,
                    "-days",
                    "2",
                    "-extfile",
                    "leaf.ext",
                ],
                &dir,
            );
        }
        dir
    })
}

fn cert(name: &str) -> String {
    certs().join(name).to_str().expect("a UTF-8 path").to_string()
}

/// tests/tls/tls_test.c, built once.
fn c_program() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let src = manifest_dir().join("tests/tls/tls_test.c");
        compile_c(
            &src,
            &out_dir().join("tls_test"),
            C11_FLAGS,
            &[],
            &["-lssl", "-lcrypto"],
        )
    })
}

fn check_run(run: &Run, what: &str) {
    assert!(run.passed(), "{what} failed: {}", run.describe());
    println!("{what}: passed in {:.2?}", run.elapsed);
    print!("{}", run.stdout);
}

#[test]
fn tls_local() {
    let exe = c_program();
    for engine in ENGINES {
        let args = [
            "local",
            &cert("ca.pem"),
            &cert("server.pem"),
            &cert("server.key"),
            &cert("wrong.pem"),
            &cert("wrong.key"),
        ];
        let run = run_program(exe, &args, engine, &[], RUN_TIMEOUT);
        check_run(&run, &format!("tls_test local (PHOTON_ENGINE={engine})"));
        assert!(run.stdout.contains("ok OpenSSL error queue per photon thread"));
    }
}

/// A port free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

fn wait_listening(port: u16, child: &mut Child) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            child.try_wait().expect("poll the server").is_none(),
            "the server on port {port} exited before listening"
        );
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nothing listens on port {port}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn tls_client_against_openssl_s_server() {
    assert!(tool_present("openssl"), "the openssl CLI is missing (scripts/setup.sh)");
    let exe = c_program();
    for engine in ENGINES {
        let port = free_port();
        // The probe connection of wait_listening counts as one accept.
        let mut server = Command::new("openssl")
            .args(["s_server", "-quiet", "-rev", "-naccept", "201"])
            .args(["-accept", &format!("127.0.0.1:{port}")])
            .args(["-cert", &cert("server.pem"), "-key", &cert("server.key")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start openssl s_server");
        wait_listening(port, &mut server);
        let run = run_program(
            exe,
            &["sclient", &port.to_string(), &cert("ca.pem"), "200", "20"],
            engine,
            &[],
            RUN_TIMEOUT,
        );
        let _ = server.kill();
        let _ = server.wait();
        check_run(
            &run,
            &format!("200 connections to openssl s_server (PHOTON_ENGINE={engine})"),
        );
        assert!(run.stdout.contains("200 connections x 20 lines verified"));
    }
}

/// The body GET /ID/SIZE returns (tls_test.c's body_byte).
fn body(id: usize, size: usize) -> Vec<u8> {
    (0..size).map(|i| b'A' + ((id * 7 + i) % 26) as u8).collect()
}

#[test]
fn tls_server_for_curl_and_s_client() {
    assert!(tool_present("curl"), "curl is missing (scripts/setup.sh)");
    assert!(tool_present("openssl"), "the openssl CLI is missing (scripts/setup.sh)");
    let exe = c_program();
    const DOWNLOADS: usize = 200;
    const SESSIONS: usize = 20;
    for engine in ENGINES {
        let mut server = Command::new(exe)
            .env_remove(CARGO_LIBRARY_PATH)
            .args(["server", &cert("server.pem"), &cert("server.key")])
            .arg((DOWNLOADS + SESSIONS).to_string())
            .env("PHOTON_ENGINE", engine)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tls_test server");
        let mut out = BufReader::new(server.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("read the port line");
        let port: u16 = line
            .strip_prefix("port ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("the server said {line:?}, not its port"));
        let rest = drain(out);
        let err = drain(server.stderr.take().expect("stderr"));

        // 200 parallel downloads, one connection each.
        let dir = out_dir().join(format!("curl-{engine}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the download directory");
        let mut curl = Command::new("curl");
        curl.args(["-sS", "--fail", "--cacert", &cert("ca.pem")])
            .args(["--parallel", "--parallel-max", "200"]);
        let size = |id: usize| 1000 + id * 97;
        for id in 0..DOWNLOADS {
            curl.arg(format!("https://localhost:{port}/{id}/{}", size(id)))
                .arg("-o")
                .arg(dir.join(id.to_string()));
        }
        let started = Instant::now();
        let curl_out = curl.output().expect("run curl");
        assert!(
            curl_out.status.success(),
            "curl failed ({}): {}",
            curl_out.status,
            String::from_utf8_lossy(&curl_out.stderr)
        );
        for id in 0..DOWNLOADS {
            let got = fs::read(dir.join(id.to_string())).unwrap_or_else(|e| panic!("download {id}: {e}"));
            assert!(
                got == body(id, size(id)),
                "download {id}: {} bytes, content differs",
                got.len()
            );
        }
        println!(
            "{DOWNLOADS} parallel curl downloads verified in {:.2?} (PHOTON_ENGINE={engine})",
            started.elapsed()
        );
        let _ = fs::remove_dir_all(&dir);

        // 20 concurrent s_client sessions: lines echoed, then QUIT.
        let clients: Vec<_> = (0..SESSIONS)
            .map(|i| {
                let mut c = Command::new("openssl")
                    .args(["s_client", "-quiet", "-ign_eof", "-verify_return_error"])
                    .args(["-connect", &format!("127.0.0.1:{port}"), "-CAfile", &cert("ca.pem")])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("start openssl s_client");
                let input: String = (0..50)
                    .map(|j| format!("session {i} line {j} {}\n", "x".repeat(j * 7)))
                    .collect();
                let mut stdin = c.stdin.take().expect("stdin");
                stdin.write_all(input.as_bytes()).expect("feed s_client");
                stdin.write_all(b"QUIT\n").expect("feed s_client");
                drop(stdin);
                (c, input)
            })
            .collect();
        for (i, (c, input)) in clients.into_iter().enumerate() {
            let out = c.wait_with_output().expect("wait for s_client");
            assert!(
                out.status.success(),
                "s_client {i}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.stdout == input.as_bytes(),
                "s_client {i}: echo differs ({} bytes, want {})",
                out.stdout.len(),
                input.len()
            );
        }
        println!("{SESSIONS} concurrent s_client sessions echoed (PHOTON_ENGINE={engine})");
        let status = wait_with_timeout(&mut server, Instant::now(), Duration::from_secs(30));
        let (rest, err) = (rest.join().unwrap(), err.join().unwrap());
        assert!(
            status.is_some_and(|s| s.success()),
            "the server ended with {status:?}\n--- stdout\n{rest}--- stderr\n{err}"
        );
        print!("{rest}");
    }
}

#[test]
fn tls_ktls() {
    let exe = c_program();
    let ulp = fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp").unwrap_or_default();
    for engine in ENGINES {
        let args = ["ktls", &cert("ca.pem"), &cert("server.pem"), &cert("server.key")];
        let run = run_program(exe, &args, engine, &[], RUN_TIMEOUT);
        if run.status.and_then(|s| s.code()) == Some(77) {
            println!(
                "NOTICE: kTLS test skipped: the kernel has no TLS ULP (tcp_available_ulp: {:?}; `modprobe tls` adds it)",
                ulp.trim()
            );
            return;
        }
        check_run(&run, &format!("kTLS (PHOTON_ENGINE={engine})"));
    }
}

/// tests/tls/NAME.cpp against the wrapper (C++14, warnings as errors).
fn cpp_program(name: &str) -> PathBuf {
    let src = manifest_dir().join(format!("tests/tls/{name}.cpp"));
    let exe = out_dir().join(name);
    let tmp = private_name(&exe);
    let lib = lib_dir();
    let mut cmd = cc::Build::new()
        .cpp(true)
        .target(TARGET)
        .host(TARGET)
        .opt_level(1)
        .out_dir(out_dir())
        .cargo_metadata(false)
        .get_compiler()
        .to_command();
    cmd.args(["-std=c++14", "-Wall", "-Wextra", "-Werror", "-pedantic"])
        .arg("-I")
        .arg(include_dir())
        .arg("-I")
        .arg(manifest_dir().join("cpp-wrapper"))
        .arg(&src)
        .arg("-o")
        .arg(&tmp)
        .arg("-L")
        .arg(lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-lphoton", "-lssl", "-lcrypto", "-pthread"]);
    let out = cmd.output().expect("run the C++ compiler");
    assert!(
        out.status.success(),
        "compiling {} failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    fs::rename(&tmp, &exe).expect("rename the program into place");
    exe
}

#[test]
fn tls_cpp_echo() {
    let exe = cpp_program("tls_echo");
    for engine in ENGINES {
        let run = run_program(
            &exe,
            &[&cert("server.pem"), &cert("server.key")],
            engine,
            &[],
            RUN_TIMEOUT,
        );
        check_run(&run, &format!("Photon-style TLS echo (PHOTON_ENGINE={engine})"));
        assert!(run.stdout.contains("33 connections verified, 0 failed"));
    }
}

#[test]
fn tls_cpp_tls_in_tls() {
    let exe = cpp_program("tls_in_tls");
    for engine in ENGINES {
        let args = [cert("server.pem"), cert("server.key")];
        let args = [args[0].as_str(), args[1].as_str()];
        let run = run_program(&exe, &args, engine, &[], Duration::from_secs(30));
        check_run(&run, &format!("TLS in TLS (PHOTON_ENGINE={engine})"));
        assert!(run.stdout.contains("8 connections verified, 0 failed"));
    }
}

/// The same checks with the preload shim loaded: its pthread keys make
/// OpenSSL's queue per photon thread on their own, and photon_ssl.h's
/// hand-over at waits must not disturb that (nor the hooked calls).
#[test]
fn tls_local_under_the_shim() {
    let exe = c_program();
    let shim = preload_lib().to_path_buf();
    let shim = shim.to_str().expect("a UTF-8 path");
    for engine in ENGINES {
        let args = [
            "local",
            &cert("ca.pem"),
            &cert("server.pem"),
            &cert("server.key"),
            &cert("wrong.pem"),
            &cert("wrong.key"),
        ];
        let run = run_program(exe, &args, engine, &[("LD_PRELOAD", shim)], RUN_TIMEOUT);
        check_run(&run, &format!("tls_test local under the shim (PHOTON_ENGINE={engine})"));
        assert!(run.stdout.contains("ok OpenSSL error queue per photon thread"));
    }
}

/// include/photon_ssl.h alone and twice, as C99, C11 and C++11 (gcc and
/// clang), warnings as errors, also with OpenSSL's deprecated API hidden.
#[test]
fn tls_header_compiles() {
    let dir = out_dir().join(format!("header-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("create the header test directory");
    let src =
        "#include <photon_ssl.h>\n#include <photon_ssl.h>\nint main(void) { return photon_ssl_bio_method() == 0; }\n";
    fs::write(dir.join("h.c"), src).expect("write h.c");
    fs::write(dir.join("h.cpp"), src).expect("write h.cpp");
    let mut failures = Vec::new();
    for (compiler, file, std) in [
        ("gcc", "h.c", "-std=c99"),
        ("gcc", "h.c", "-std=c11"),
        ("clang", "h.c", "-std=c99"),
        ("g++", "h.cpp", "-std=c++11"),
        ("clang++", "h.cpp", "-std=c++11"),
    ] {
        for hidden in [false, true] {
            let mut cmd = Command::new(compiler);
            cmd.args([std, "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only", "-I"])
                .arg(include_dir())
                .arg(dir.join(file));
            if hidden {
                cmd.args(["-DOPENSSL_API_COMPAT=30000", "-DOPENSSL_NO_DEPRECATED"]);
            }
            let out = cmd.output().unwrap_or_else(|e| panic!("run {compiler}: {e}"));
            if !out.status.success() {
                failures.push(format!(
                    "{compiler} {std}{}: {}",
                    if hidden { " (no deprecated API)" } else { "" },
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    let _ = fs::remove_dir_all(&dir);
    assert!(
        failures.is_empty(),
        "photon_ssl.h does not compile:\n{}",
        failures.join("\n")
    );
}
