//! Finds the C and C++ compilers (and their flags) with the `cc` crate and
//! hands them to the benchmark binaries, which compile the programs of `c/`
//! at run time: those link against libphoton.so, which the binary builds
//! first (`cargo build --release` of the library), so they always test the
//! current library.  Also records the versions of the Rust peers.

use std::env;
use std::fs;
use std::path::Path;

fn tool(cpp: bool) -> (String, String) {
    let t = cc::Build::new()
        .cpp(cpp)
        .opt_level(2)
        .debug(false)
        .warnings(false)
        .get_compiler();
    let args: Vec<String> = t.args().iter().map(|a| a.to_string_lossy().into_owned()).collect();
    (t.path().to_string_lossy().into_owned(), args.join("\x1f"))
}

/// Version of package `name` in this crate's Cargo.lock ("?" if not found).
fn locked_version(lock: &str, name: &str) -> String {
    let key = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l.trim() == key
            && let Some(v) = lines.next().and_then(|v| v.trim().strip_prefix("version = "))
        {
            return v.trim_matches('"').to_string();
        }
    }
    "?".to_string()
}

fn main() {
    let (cc_path, cc_args) = tool(false);
    let (cxx_path, cxx_args) = tool(true);
    println!("cargo:rustc-env=BENCH_CC={cc_path}");
    println!("cargo:rustc-env=BENCH_CC_ARGS={cc_args}");
    println!("cargo:rustc-env=BENCH_CXX={cxx_path}");
    println!("cargo:rustc-env=BENCH_CXX_ARGS={cxx_args}");

    let dir = env::var("CARGO_MANIFEST_DIR").unwrap();
    let lock = fs::read_to_string(Path::new(&dir).join("Cargo.lock")).unwrap_or_default();
    for name in ["corosensei", "may"] {
        let var = format!("BENCH_VERSION_{}", name.to_uppercase());
        println!("cargo:rustc-env={var}={}", locked_version(&lock, name));
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.lock");
    for var in ["CC", "CXX", "CFLAGS", "CXXFLAGS"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
}
