//! Build script: link the `peon` binary with packed relative relocations (DT_RELR) on Linux
//! with glibc.
//!
//! A position-independent executable carries one relocation record per pointer in its
//! read-only data (24 bytes each, about 1.1 MiB for peon), all read at every start and so
//! resident for the daemon's whole life. Packed, they take about 20 KiB; the executable keeps
//! its address randomisation. Needs glibc 2.36+ at run time (the linker records the
//! `GLIBC_ABI_DT_RELR` version, so an older glibc refuses to load the binary with a clear
//! message) and GNU ld 2.38+ or lld 15+ (older linkers ignore the flag with a warning).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
