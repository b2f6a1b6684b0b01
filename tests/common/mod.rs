//! What the integration tests that build C and C++ programs share: where
//! the library cargo built is, a stable copy of it to link and load, the
//! target triple, and pipe draining.

#![allow(dead_code)] // each test binary uses its own subset

use std::env;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

/// Every program runs under each engine (io_uring may fall back to epoll
/// with a warning where the kernel lacks it).
pub const ENGINES: [&str; 2] = ["epoll", "io_uring"];

/// The triple the C/C++ compiler targets: the tests' own target.
pub const TARGET: &str = if cfg!(all(target_arch = "x86_64", target_env = "musl")) {
    "x86_64-unknown-linux-musl"
} else if cfg!(target_arch = "x86_64") {
    "x86_64-unknown-linux-gnu"
} else if cfg!(all(target_arch = "aarch64", target_env = "musl")) {
    "aarch64-unknown-linux-musl"
} else if cfg!(target_arch = "aarch64") {
    "aarch64-unknown-linux-gnu"
} else {
    panic!("tests/common: add this target's triple")
};

pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn include_dir() -> PathBuf {
    manifest_dir().join("include")
}

/// `target/<profile>/deps/`, where the test executable lives. Being found
/// from the executable, it honours `CARGO_TARGET_DIR` and `--target`.
pub fn deps_dir() -> PathBuf {
    let exe = env::current_exe().expect("current_exe");
    exe.parent().expect("test executable has a directory").to_path_buf()
}

/// `target/<profile>/`.
pub fn profile_dir() -> PathBuf {
    deps_dir()
        .parent()
        .expect("target/<profile>/deps has a parent")
        .to_path_buf()
}

/// `path` with this process's id and a per-process sequence number added:
/// the name a build writes an artifact under before renaming it into place,
/// so that builds at the same time never see each other's half-written
/// files. The sequence number matters as much as the process id: the tests
/// of one binary run on several threads, and two of them may build the same
/// program at once (c_io_sqpoll and c_io_features_off both build
/// net_echo_many). With one shared name, one rename took the other's file
/// while its linker still wrote it, and the other's exec failed with ETXTBSY.
pub fn private_name(path: &Path) -> PathBuf {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().expect("a file name").to_os_string();
    name.push(format!(".{}.{seq}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Removed from the environment of every program the tests run against
/// libphoton: `cargo test` sets `LD_LIBRARY_PATH` to `target/<profile>/`
/// (and `deps/`), which the loader searches before a program's RUNPATH, and
/// build.rs puts a `libphoton.so.0` link there to the `libphoton.so` that
/// the last `cargo build` copied: after an edit and a `cargo test` without
/// `cargo build`, every program ran the old library instead of the one in
/// [`lib_dir`] (a test of a change passed without the change).
pub const CARGO_LIBRARY_PATH: &str = "LD_LIBRARY_PATH";

/// `target/<profile>/photon-lib/`: a copy of the `libphoton.so` cargo built,
/// under its soname (`libphoton.so.<major>`, what a linked program asks the
/// loader for), and `libphoton.so` linking to it. A copy, not a symlink into
/// `deps/`: cargo replaces that file whenever the library is rebuilt (another
/// `cargo` run at the same time), and a program linked or started in that
/// moment would not find it. Made once per test binary.
pub fn lib_dir() -> &'static Path {
    static LIB_DIR: OnceLock<PathBuf> = OnceLock::new();
    LIB_DIR.get_or_init(|| {
        let built = find_built_library();
        let dir = profile_dir().join("photon-lib");
        fs::create_dir_all(&dir).expect("create target/<profile>/photon-lib");
        let soname = format!("libphoton.so.{}", env!("CARGO_PKG_VERSION_MAJOR"));
        let copy = dir.join(&soname);
        let tmp = private_name(&copy);
        let mut tries = 0;
        loop {
            // A file being rewritten by cargo reads short or fails: try again.
            let copied = fs::copy(&built, &tmp).ok();
            let whole = copied.is_some() && fs::read(&tmp).is_ok_and(|b| b.len() > 4096 && b.starts_with(b"\x7fELF"));
            if whole && fs::metadata(&built).is_ok_and(|m| Some(m.len()) == copied) {
                break;
            }
            tries += 1;
            assert!(tries < 50, "cannot copy {}", built.display());
            thread::sleep(Duration::from_millis(200));
        }
        fs::rename(&tmp, &copy).unwrap_or_else(|e| panic!("rename {} -> {}: {e}", tmp.display(), copy.display()));
        let link = dir.join("libphoton.so");
        let link_tmp = private_name(&link);
        let _ = fs::remove_file(&link_tmp);
        std::os::unix::fs::symlink(&soname, &link_tmp)
            .and_then(|()| fs::rename(&link_tmp, &link))
            .unwrap_or_else(|e| panic!("symlink {} -> {soname}: {e}", link.display()));
        dir
    })
}

/// The `libphoton.so` cargo built: in `deps/`, else in `target/<profile>/`,
/// else built there now by `cargo build --lib`.
fn find_built_library() -> PathBuf {
    for dir in [deps_dir(), profile_dir()] {
        let lib = dir.join("libphoton.so");
        if lib.is_file() {
            return lib;
        }
    }
    let profile_dir = profile_dir();
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("profile directory name");
    let profile = if profile == "debug" { "dev" } else { profile };
    let mut target_dir = profile_dir.parent().expect("target dir").to_path_buf();
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(manifest_dir())
        .args(["build", "--lib", "--profile", profile]);
    if target_dir.file_name().and_then(|n| n.to_str()) == Some(TARGET) {
        // target/<triple>/<profile>: a `cargo test --target` run
        cmd.args(["--target", TARGET]);
        target_dir.pop();
    }
    cmd.arg("--target-dir").arg(&target_dir);
    let status = cmd.status().expect("run cargo build");
    assert!(status.success(), "cargo build failed: {status}");
    let lib = profile_dir.join("libphoton.so");
    assert!(lib.is_file(), "`cargo build` did not produce {}", lib.display());
    lib
}

/// Reads a pipe to its end on a thread of its own.
pub fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// What one run of a program did.
pub struct Run {
    /// None: killed at the timeout.
    pub status: Option<std::process::ExitStatus>,
    pub elapsed: Duration,
    pub stdout: String,
    pub stderr: String,
    timeout: Duration,
}

impl Run {
    /// Exited with status 0.
    pub fn passed(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// How it ended, with its output, for a failure message.
    pub fn describe(&self) -> String {
        use std::os::unix::process::ExitStatusExt;
        let status = match self.status {
            None => format!("killed after the {:?} timeout", self.timeout),
            Some(s) => match (s.code(), s.signal()) {
                (Some(code), _) => format!("exit status {code}"),
                (None, Some(sig)) => format!("killed by signal {sig}"),
                _ => format!("{s}"),
            },
        };
        format!(
            "{status} after {:.2?}\n--- stdout\n{}--- stderr\n{}",
            self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Runs `exe args` with `PHOTON_ENGINE=engine` and `envs`, killing it after
/// `timeout`. Runs are serialized: the programs measure time, and one
/// program hogging both cores would make another's timing checks flaky.
pub fn run_program(exe: &Path, args: &[&str], engine: &str, envs: &[(&str, &str)], timeout: Duration) -> Run {
    use std::process::Stdio;
    static RUN_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = RUN_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let start = std::time::Instant::now();
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env("PHOTON_ENGINE", engine)
        .env_remove(CARGO_LIBRARY_PATH)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    let stdout = drain(child.stdout.take().expect("stdout"));
    let stderr = drain(child.stderr.take().expect("stderr"));
    let status = wait_with_timeout(&mut child, start, timeout);
    Run {
        status,
        elapsed: start.elapsed(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
        timeout,
    }
}

/// Waits for `child` until `timeout` after `start`; None if it had to be killed.
pub fn wait_with_timeout(
    child: &mut std::process::Child,
    start: std::time::Instant,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().expect("wait for a program") {
            return Some(status);
        }
        if start.elapsed() > timeout {
            child.kill().expect("kill a program at its timeout");
            child.wait().expect("reap a killed program");
            return None;
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// The flags of the C test programs: C11, warnings as errors.
pub const C11_FLAGS: &[&str] = &["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-D_GNU_SOURCE"];

// ------------------------------------------------------------- compiling

/// The command line of `cmd` (program and arguments; Command's Debug would
/// also list the environment), for messages.
pub fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion; Err with its command line and output if it
/// cannot start or does not succeed.
pub fn run_to_success(mut cmd: Command, what: &str) -> Result<(), String> {
    let line = command_line(&cmd);
    let out = cmd.output().map_err(|e| format!("{what}: cannot run {line}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}):\n{line}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// The one way the tests build C and C++ programs: a compiler (the `cc`
/// crate's for this target, honouring `CC`, `CXX`, `CFLAGS` and friends, or
/// another program such as clang with sanitizers), flags, include
/// directories (include/ always), and the link: the stable copy of
/// libphoton.so with an rpath to it (unless `without_photon`), libraries
/// before it (`first`) and after it (`libs`), then `-pthread`.
///
/// ```text
/// Compiler::cc(false).flags(C11_FLAGS).include(dir).libs(["-lm"]).build(&src, &exe)
/// ```
pub struct Compiler {
    cmd: Command,
    includes: Vec<PathBuf>,
    first: Vec<String>,
    libs: Vec<String>,
    photon: bool,
}

impl Compiler {
    /// The `cc` crate's C (or, with `cpp`, C++) compiler for this target,
    /// -O2 with debug info.
    pub fn cc(cpp: bool) -> Compiler {
        Compiler::cc_opt(cpp, 2, true)
    }

    /// The same at optimisation level `opt`, with debug info if `debug`.
    pub fn cc_opt(cpp: bool, opt: u32, debug: bool) -> Compiler {
        let tool = cc::Build::new()
            .cpp(cpp)
            .target(TARGET)
            .host(TARGET)
            .opt_level(opt)
            .debug(debug)
            .out_dir(env::temp_dir())
            .cargo_metadata(false)
            .get_compiler();
        Compiler::program(tool.to_command())
    }

    /// Another compiler command (its own flags already in it).
    pub fn program(cmd: Command) -> Compiler {
        Compiler {
            cmd,
            includes: Vec::new(),
            first: Vec::new(),
            libs: Vec::new(),
            photon: true,
        }
    }

    /// Compiler flags (before the source).
    pub fn flags<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(mut self, flags: I) -> Compiler {
        self.cmd.args(flags);
        self
    }

    /// An include directory (after include/).
    pub fn include(mut self, dir: impl AsRef<Path>) -> Compiler {
        self.includes.push(dir.as_ref().to_path_buf());
        self
    }

    /// Link arguments before libphoton (a library that must come first).
    pub fn first<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, args: I) -> Compiler {
        self.first.extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    /// Link arguments after libphoton.
    pub fn libs<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, args: I) -> Compiler {
        self.libs.extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    /// Does not link libphoton (a plain program, a library of its own).
    pub fn without_photon(mut self) -> Compiler {
        self.photon = false;
        self
    }

    fn command(mut self, src: &Path) -> Command {
        self.cmd.arg("-I").arg(include_dir());
        for dir in &self.includes {
            self.cmd.arg("-I").arg(dir);
        }
        self.cmd.arg(src);
        self.cmd
    }

    /// Compiles and links `src` into `exe`: written under a private name and
    /// renamed into place, so concurrent test runs never run a half-written
    /// program. Err with the compiler's output if it fails.
    pub fn try_build(self, src: &Path, exe: &Path) -> Result<PathBuf, String> {
        let out = exe.parent().expect("exe has a directory");
        fs::create_dir_all(out).map_err(|e| format!("create {}: {e}", out.display()))?;
        let tmp = private_name(exe);
        let (first, libs, photon) = (self.first.clone(), self.libs.clone(), self.photon);
        let mut cmd = self.command(src);
        cmd.arg("-o").arg(&tmp);
        if photon {
            let lib = lib_dir();
            cmd.arg("-L").arg(lib).arg(format!("-Wl,-rpath,{}", lib.display()));
        }
        cmd.args(&first);
        if photon {
            cmd.arg("-lphoton");
        }
        cmd.args(&libs).arg("-pthread");
        run_to_success(cmd, &format!("compiling {}", src.display()))?;
        fs::rename(&tmp, exe).map_err(|e| format!("rename {} into place: {e}", exe.display()))?;
        Ok(exe.to_path_buf())
    }

    /// [`Compiler::try_build`], failing the test if it does not compile.
    pub fn build(self, src: &Path, exe: &Path) -> PathBuf {
        self.try_build(src, exe).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Compiles `src` for its diagnostics only (`-fsyntax-only`).
    pub fn syntax_only(self, src: &Path, what: &str) -> Result<(), String> {
        run_to_success(self.flags(["-fsyntax-only"]).command(src), what)
    }
}

/// Compiles the C program `src` into `exe` with the `cc` crate's compiler
/// (-O2 -g), `flags`, `includes`, linked to libphoton.so, then `libs`: the
/// common case of [`Compiler`]. Fails the test if it does not compile.
pub fn compile_c(src: &Path, exe: &Path, flags: &[&str], includes: &[&Path], libs: &[&str]) -> PathBuf {
    let mut c = Compiler::cc(false).flags(flags);
    for dir in includes {
        c = c.include(dir);
    }
    c.libs(libs).build(src, exe)
}

/// `libphoton_preload.so` as cargo built it, built now if cargo has not
/// (a test binary may run before the shim's crate was built).
pub fn built_preload_lib() -> PathBuf {
    let built = profile_dir().join("libphoton_preload.so");
    if !built.is_file() {
        let profile = profile_dir().file_name().unwrap().to_string_lossy().into_owned();
        let profile = if profile == "debug" { "dev".to_string() } else { profile };
        let status = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(manifest_dir())
            .args(["build", "-p", "photon-preload", "--profile", &profile])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building photon-preload failed");
    }
    built
}

/// The shim copied beside the stable copy of libphoton.so.0 in
/// [`lib_dir`] (once per test binary), so it finds that copy.
#[allow(dead_code)] // not every test binary uses the shim
pub fn preload_lib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let built = built_preload_lib();
        let dest = lib_dir().join("libphoton_preload.so");
        let tmp = private_name(&dest);
        fs::copy(&built, &tmp).unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
        fs::rename(&tmp, &dest).expect("rename the preload copy");
        dest
    })
}
