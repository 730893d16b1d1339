//! Links the integration tests with `--export-dynamic`, so that a library they open with
//! `RTLD_LOCAL` binds to the `envoyGo*` host callbacks the tests define, as a plugin binds to
//! edgefn's in Envoy. Only test binaries are affected.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-tests=-Wl,--export-dynamic");
    }
}
