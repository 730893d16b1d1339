//! Builds the C trampoline library (`csrc/gohost.c`) as a shared object that the cdylib embeds.
//!
//! `cc::Build` only produces static archives, so this script asks it for the configured C
//! compiler and links the shared object itself.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "csrc/gohost.c";
    println!("cargo:rerun-if-changed={source}");

    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let output = out_dir.join("libedgefn_gohost.so");
    let compiler = cc::Build::new().opt_level(2).get_compiler();

    let status = Command::new(compiler.path())
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o"])
        .arg(&output)
        .arg(source)
        .status()
        .unwrap_or_else(|error| panic!("failed to run C compiler {:?}: {error}", compiler.path()));
    assert!(
        status.success(),
        "C compiler failed to build {source} (exit status {status})"
    );
}
