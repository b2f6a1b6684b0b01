//! Generates `include/photon.h` from `src/ffi` with the pinned cbindgen,
//! and gives `libphoton.so` its versioned soname.
//!
//! The fresh header always goes to `$OUT_DIR/photon.h` (tests compare it
//! with the checked-in copy, so a stale header fails CI). Outside CI
//! (`CI` unset) the checked-in `include/photon.h` is also updated, so a
//! local `cargo build` keeps it current; commit it with the code.

use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap();
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libphoton.so.{major}");
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
    println!("cargo:rerun-if-env-changed=CI");

    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let generated = out_dir.join("photon.h");
    cbindgen::Builder::new()
        .with_src(crate_dir.join("src/ffi/mod.rs"))
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header")
        .write_to_file(&generated);
    println!("cargo:rustc-env=PHOTON_GENERATED_HEADER={}", generated.display());

    if std::env::var_os("CI").is_none() {
        let checked_in = crate_dir.join("include/photon.h");
        let fresh = std::fs::read(&generated).unwrap();
        if std::fs::read(&checked_in).ok().as_deref() != Some(&fresh[..]) {
            std::fs::create_dir_all(crate_dir.join("include")).unwrap();
            std::fs::write(&checked_in, fresh).unwrap();
        }
    }
}
