//! The State Threads API (`include/st.h`, `libphoton_st.so`): C programs
//! in `tests/st/`, written here from what State Threads' reference and its
//! unit tests (ossrs/state-threads `utest/`, SRS's `st-srs/utest`) check,
//! and the behaviour of its example programs (a proxy, a DNS lookup
//! client, a multi-process server) over loopback.
//!
//! Each program is built twice: against our header and `libphoton_st.so`,
//! run under both engines, and against Debian's State Threads 1.9
//! (`libst-dev`: `/usr/include/st.h`, `/usr/lib/libst.so`), run once. All
//! runs must pass and print the same lines: the same program gives the
//! same results on both libraries. Programs that test what only libphoton
//! does (io_uring) run on ours alone.

mod common;

use common::{ENGINES, Run, profile_dir, run_program};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);
const C_FLAGS: &[&str] = &["-std=c11", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE", "-O2", "-g"];

/// Debian's State Threads, when installed (scripts/setup.sh installs it).
const DEBIAN_HEADER: &str = "/usr/include/st.h";
const DEBIAN_LIB: &str = "/usr/lib/libst.so";

fn src_dir() -> PathBuf {
    common::manifest_dir().join("tests").join("st")
}

/// A copy of libphoton.so and libphoton_st.so (with the link libst.so) in
/// `target/<profile>/photon-lib/`, which the programs link and load.
fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = common::lib_dir().to_path_buf();
        let soname = "libphoton_st.so.0";
        let built = profile_dir().join(soname);
        assert!(built.is_file(), "build.rs did not build {}", built.display());
        let copy = dir.join(soname);
        let tmp = common::private_name(&copy);
        fs::copy(&built, &tmp).expect("copy libphoton_st.so.0");
        fs::rename(&tmp, &copy).expect("rename libphoton_st.so.0");
        let link = dir.join("libst.so");
        let link_tmp = common::private_name(&link);
        let _ = fs::remove_file(&link_tmp);
        std::os::unix::fs::symlink(soname, &link_tmp)
            .and_then(|()| fs::rename(&link_tmp, &link))
            .expect("symlink libst.so");
        dir
    })
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Lib {
    Photon,
    Debian,
}

fn compile(name: &str, lib: Lib) -> PathBuf {
    let src = src_dir().join(format!("{name}.c"));
    let out = profile_dir().join("st-tests");
    fs::create_dir_all(&out).expect("create target/<profile>/st-tests");
    let exe = out.join(format!(
        "{name}-{}",
        if lib == Lib::Photon { "photon" } else { "debian" }
    ));
    let tmp = common::private_name(&exe);
    let mut cmd = cc::Build::new()
        .target(common::TARGET)
        .host(common::TARGET)
        .opt_level(2)
        .out_dir(&out)
        .cargo_metadata(false)
        .get_compiler()
        .to_command();
    cmd.args(C_FLAGS);
    match lib {
        Lib::Photon => {
            let dir = lib_dir();
            cmd.arg("-I")
                .arg(common::include_dir())
                .arg("-I")
                .arg(src_dir())
                .arg(&src)
                .arg("-L")
                .arg(dir)
                .arg(format!("-Wl,-rpath,{}", dir.display()))
                .arg("-lst");
        }
        Lib::Debian => {
            // the system header and library only: not our include/
            cmd.arg("-I").arg(src_dir()).arg(&src).arg(DEBIAN_LIB);
        }
    }
    cmd.arg("-o").arg(&tmp).arg("-lpthread");
    let output = cmd.output().expect("run the C compiler");
    assert!(
        output.status.success(),
        "compiling {} for {lib:?} failed:\n{}{}",
        src.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    fs::rename(&tmp, &exe).expect("rename the program into place");
    exe
}

fn debian_available() -> bool {
    Path::new(DEBIAN_HEADER).is_file() && Path::new(DEBIAN_LIB).exists()
}

fn run_passing(exe: &Path, engine: &str, what: &str) -> Run {
    let run = run_program(exe, &[], engine, &[], TIMEOUT);
    assert!(run.passed(), "{what} failed: {}", run.describe());
    run
}

/// Runs `tests/st/<name>.c` on libphoton_st under each engine and on
/// Debian's State Threads; every run passes and prints the same.
fn side_by_side(name: &str) {
    let ours = compile(name, Lib::Photon);
    let mut outputs = Vec::new();
    for engine in ENGINES {
        let run = run_passing(
            &ours,
            engine,
            &format!("{name} on libphoton_st (PHOTON_ENGINE={engine})"),
        );
        println!("{name} on libphoton_st ({engine}): passed in {:.2?}", run.elapsed);
        outputs.push((format!("libphoton_st, {engine}"), run.stdout));
    }
    if debian_available() {
        let theirs = compile(name, Lib::Debian);
        let run = run_passing(&theirs, "", &format!("{name} on Debian's State Threads"));
        println!("{name} on Debian's State Threads: passed in {:.2?}", run.elapsed);
        outputs.push(("Debian's State Threads".to_string(), run.stdout));
    } else {
        println!("{name}: Debian's libst-dev is not installed (scripts/setup.sh): no side-by-side run");
    }
    let (first_name, first) = &outputs[0];
    print!("{first}");
    for (other_name, other) in &outputs[1..] {
        assert_eq!(
            first, other,
            "{name}: {first_name} and {other_name} printed different results"
        );
    }
}

/// Runs a program that tests a libphoton extension on ours only, under
/// each engine and with PHOTON_ENGINE empty (the program's choice).
fn ours_only(name: &str) {
    let ours = compile(name, Lib::Photon);
    for engine in ENGINES.into_iter().chain([""]) {
        let run = run_passing(&ours, engine, &format!("{name} (PHOTON_ENGINE={engine})"));
        print!("{}", run.stdout);
    }
}

#[test]
fn st_sched() {
    side_by_side("sched");
}

#[test]
fn st_sync() {
    side_by_side("sync");
}

#[test]
fn st_io() {
    side_by_side("io");
}

#[test]
fn st_example_proxy() {
    side_by_side("proxy");
}

#[test]
fn st_example_lookupdns() {
    side_by_side("lookupdns");
}

#[test]
fn st_example_multiprocess_server() {
    side_by_side("mpserver");
}

#[test]
fn st_main_exit_waits() {
    side_by_side("main_exit");
}

#[test]
fn st_eventsys_alt_is_io_uring() {
    ours_only("eventsys");
}

#[test]
fn st_bad_input() {
    ours_only("bad_input");
}
