//! Captures what `imgclass_build_info` reports: the compiler's version
//! (rustc_version runs `$RUSTC --version`) and the target triple.

fn main() {
    let rustc = rustc_version::version()
        .map(|v| v.to_string())
        .unwrap_or_else(|_| "unknown".to_string());
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_string());
    println!("cargo:rustc-env=IMGCLASS_BUILD_RUSTC={rustc}");
    println!("cargo:rustc-env=IMGCLASS_BUILD_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
