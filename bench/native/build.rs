//! Records the compiler's version at build time, for `machine` to fall back on when no
//! `rustc` is on PATH where the benchmark runs.
use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=GSW_BUILD_RUSTC_VERSION={version}");
    println!("cargo:rerun-if-env-changed=RUSTC");
}
