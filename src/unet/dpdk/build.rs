// Included by build.rs: the `dpdk:` device of the userspace network stack
// (src/unet/dpdk). When pkg-config finds libdpdk, compiles shim.c into
// libphoton_dpdk.so beside libphoton.so in target/<profile>/ and sets the
// cfg `photon_dpdk`; otherwise `dpdk:` stacks fail with ENODEV.
// PHOTON_NO_DPDK=1 builds without it where libdpdk is installed.

fn build_dpdk_device(crate_dir: &std::path::Path, out_dir: &std::path::Path) {
    use std::process::Command;
    println!("cargo:rustc-check-cfg=cfg(photon_dpdk)");
    println!("cargo:rerun-if-changed=src/unet/dpdk/shim.c");
    println!("cargo:rerun-if-env-changed=PHOTON_NO_DPDK");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    if std::env::var_os("PHOTON_NO_DPDK").is_some_and(|v| v == "1") {
        return;
    }
    let flags = match Command::new("pkg-config").args(["--cflags", "--libs", "libdpdk"]).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => return, // no libdpdk: built without the device
    };
    let dir = out_dir.join("dpdk");
    std::fs::create_dir_all(&dir).unwrap();
    let soname = "libphoton_dpdk.so";
    let built = dir.join(soname);
    let compiler = cc::Build::new().cargo_metadata(false).get_compiler();
    let out = Command::new(compiler.path())
        .args(["-shared", "-fPIC", "-O2", "-g", "-std=gnu11", "-pthread", "-fvisibility=hidden"])
        .args(["-Wall", "-Wextra", "-Werror"])
        .arg(crate_dir.join("src/unet/dpdk/shim.c"))
        .arg("-o")
        .arg(&built)
        .args(flags.split_ascii_whitespace())
        .args([&format!("-Wl,-soname,{soname}"), "-Wl,-z,defs"])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            println!(
                "cargo:warning=libdpdk found but {soname} did not build (dpdk: devices disabled): {}",
                String::from_utf8_lossy(&o.stderr).lines().next().unwrap_or("")
            );
            return;
        }
        Err(e) => {
            println!("cargo:warning=cannot run the C compiler for {soname} (dpdk: devices disabled): {e}");
            return;
        }
    }
    // Beside libphoton.so (OUT_DIR is target/<profile>/build/photon-<hash>/
    // out), replaced atomically: running tests may have it loaded.
    let mut at = built.clone();
    if let Some(profile_dir) = out_dir.ancestors().nth(3) {
        let dest = profile_dir.join(soname);
        let tmp = profile_dir.join(format!("{soname}.{}.tmp", std::process::id()));
        if std::fs::copy(&built, &tmp).is_ok() && std::fs::rename(&tmp, &dest).is_ok() {
            at = dest;
        }
    }
    println!("cargo:rustc-cfg=photon_dpdk");
    println!("cargo:rustc-env=PHOTON_DPDK_SHIM={}", at.display());
}
