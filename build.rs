//! Generates the C header from `src/ffi` with the pinned cbindgen, and gives
//! `libphoton.so` its soname and its symbol versions (`abi/libphoton.map`).
//!
//! The fresh header goes to `$OUT_DIR/photon.h`; the test `header_is_fresh`
//! (tests/c_api.rs) compares it with the checked-in `include/photon.h` in
//! every run. build.rs writes `include/photon.h` only when asked to
//! (`PHOTON_UPDATE_HEADER=1 cargo build`), so a header that was not
//! regenerated and committed fails the tests everywhere, not only in CI.
//! A stale header is also reported as a cargo warning.
//!
//! It also builds libphoton_st.so from st/ (st/build_library.rs).

use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap();
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libphoton.so.{major}");
    // Symbol versions (PHOTON_0.1, PHOTON_0.2, ...; everything else local):
    // the cdylib only, the staticlib and rlib have no dynamic symbols.
    let map = crate_dir.join("abi/libphoton.map");
    assert!(map.is_file(), "{} is missing", map.display());
    version_script(&map, &out_dir);
    println!("cargo:rerun-if-changed=abi/libphoton.map");
    // The soname is what programs record; put the matching name beside the
    // library in target/<profile>/ so programs linked there run in place.
    // (OUT_DIR is target/<profile>/build/photon-<hash>/out.)
    if let Some(profile_dir) = out_dir.ancestors().nth(3) {
        let link = profile_dir.join(format!("libphoton.so.{major}"));
        if std::fs::symlink_metadata(&link).is_err() {
            let _ = std::os::unix::fs::symlink("libphoton.so", &link);
        }
    }
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=PHOTON_UPDATE_HEADER");
    // Compared below: an edited or updated header is checked again.
    println!("cargo:rerun-if-changed=include/photon.h");

    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let generated = out_dir.join("photon.h");
    cbindgen::Builder::new()
        .with_src(crate_dir.join("src/ffi/mod.rs"))
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header")
        .write_to_file(&generated);
    println!("cargo:rustc-env=PHOTON_GENERATED_HEADER={}", generated.display());
    let header = std::fs::read_to_string(&generated).unwrap();
    check_versioned(&map, &photon_functions(&header), "src/ffi (the generated header)");

    build_st_library(&crate_dir, &out_dir, &header, &major);
    build_dpdk_device(&crate_dir, &out_dir);

    let checked_in = crate_dir.join("include/photon.h");
    let fresh = std::fs::read(&generated).unwrap();
    if std::fs::read(&checked_in).ok().as_deref() != Some(&fresh[..]) {
        // Written when asked, or when there is none (a fresh export of the tree).
        if !checked_in.exists() || std::env::var_os("PHOTON_UPDATE_HEADER").is_some_and(|v| v == "1") {
            std::fs::create_dir_all(crate_dir.join("include")).unwrap();
            std::fs::write(&checked_in, fresh).unwrap();
        } else {
            println!(
                "cargo:warning=include/photon.h differs from what src/ffi generates: \
                 run `PHOTON_UPDATE_HEADER=1 cargo build` and commit include/photon.h"
            );
        }
    }
}

// version_script(), photon_functions(), check_versioned(): shared with
// preload/build.rs.
include!("abi/version_script.rs");
// build_st_library(): libphoton_st.so, the State Threads API.
include!("st/build_library.rs");
// build_dpdk_device(): libphoton_dpdk.so when libdpdk is installed.
include!("src/unet/dpdk/build.rs");
