//! Helpers shared by the loader's integration tests: scratch directories, C compilation, and
//! a small HTTP(S) server on 127.0.0.1.

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of these helpers"
)]

pub mod server;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::Duration;

use edgefn_loader::{fetch_blocking, FetchError, FetchOptions, LoadError, Source};
use sha2::{Digest, Sha256};

/// A scratch directory under the system temporary directory, removed on drop.
pub struct TestDir {
    path: PathBuf,
}

static TEST_DIR_SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl TestDir {
    pub fn new(label: &str) -> Self {
        let sequence = TEST_DIR_SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir()
            .join("edgefn-loader-tests")
            .join(format!("{label}-{}-{sequence}", std::process::id()));
        // A directory left by an earlier run with the same process id would mix old files in.
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create the test directory");
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Returns fetch options with the cache in `dir` and a 10 s timeout.
pub fn options_in(dir: &TestDir) -> FetchOptions {
    FetchOptions {
        cache_dir: dir.join("cache"),
        timeout: Duration::from_secs(10),
        ..FetchOptions::default()
    }
}

/// Fetches `source` and returns the fetch error, failing the test on any other outcome.
pub fn fetch_error(source: &Source, options: &FetchOptions) -> FetchError {
    match fetch_blocking(source, options) {
        Err(LoadError::Fetch(error)) => error,
        other => panic!("expected a fetch error, got {other:?}"),
    }
}

/// Returns the lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Lists the names of the entries in `dir`, sorted. A missing directory has none.
pub fn entry_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Lists temporary files (`.tmp-*`) left in the cache's two directories.
pub fn leftover_temp_files(cache_dir: &Path) -> Vec<String> {
    ["sha256", "urls"]
        .iter()
        .flat_map(|sub| entry_names(&cache_dir.join(sub)))
        .filter(|name| name.starts_with(".tmp-"))
        .collect()
}

/// Compiles `source` with `cc` and the given arguments into `dir/output`.
pub fn compile_c(dir: &Path, output: &str, source: &str, args: &[&str]) -> PathBuf {
    let source_path = dir.join(format!("{output}.c"));
    fs::write(&source_path, source).expect("write the C source");
    let output_path = dir.join(output);

    let result = Command::new("cc")
        .args(args)
        .arg("-o")
        .arg(&output_path)
        .arg(&source_path)
        .output()
        .expect("run `cc`; these tests need a C compiler on PATH");
    assert!(
        result.status.success(),
        "cc {args:?} failed for {output}:\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    output_path
}

/// Compiles `source` into a shared library with `cc -shared -fPIC`.
pub fn compile_shared_library(dir: &Path, output: &str, source: &str) -> PathBuf {
    compile_c(dir, output, source, &["-shared", "-fPIC"])
}

/// C source of a library that exports the ten functions Envoy's golang filter requires, with
/// `envoyGoFilterNewHttpPluginConfig` returning `config_id`, followed by `extra`.
pub fn fake_plugin_source(config_id: u64, extra: &str) -> String {
    format!(
        r#"#include <stdint.h>

uint64_t envoyGoFilterNewHttpPluginConfig(void *config) {{ (void)config; return {config_id}u; }}
uint64_t envoyGoFilterMergeHttpPluginConfig(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {{
    return a + b + c + d;
}}
void envoyGoFilterDestroyHttpPluginConfig(uint64_t id, int64_t need_delay) {{
    (void)id; (void)need_delay;
}}
uint64_t envoyGoFilterOnHttpHeader(void *s, uint64_t e, uint64_t n, uint64_t b) {{
    (void)s; (void)e; (void)n; (void)b; return 2;
}}
uint64_t envoyGoFilterOnHttpData(void *s, uint64_t e, uint64_t b, uint64_t l) {{
    (void)s; (void)e; (void)b; (void)l; return 2;
}}
void envoyGoFilterOnHttpLog(void *r, uint64_t t, void *dec, void *enc, uint64_t a, uint64_t b,
                            uint64_t c, uint64_t d, uint64_t e, uint64_t f, uint64_t g,
                            uint64_t h) {{
    (void)r; (void)t; (void)dec; (void)enc;
    (void)a; (void)b; (void)c; (void)d; (void)e; (void)f; (void)g; (void)h;
}}
void envoyGoFilterOnHttpStreamComplete(void *r) {{ (void)r; }}
void envoyGoFilterOnHttpDestroy(void *r, uint64_t reason) {{ (void)r; (void)reason; }}
void envoyGoRequestSemaDec(void *r) {{ (void)r; }}
void envoyGoFilterCleanUp(void) {{}}

{extra}
"#
    )
}

/// Offset of `e_type` in an ELF header.
pub const E_TYPE_OFFSET: usize = 16;

/// Offset of `e_machine` in an ELF header.
pub const E_MACHINE_OFFSET: usize = 18;

/// Writes a copy of `original` to `copy` with the 16-bit header field at `offset` set to
/// `value`, in this host's byte order.
pub fn patch_u16(original: &Path, copy: &Path, offset: usize, value: u16) {
    let mut bytes = fs::read(original).expect("read the library to patch");
    bytes[offset..offset + 2].copy_from_slice(&value.to_ne_bytes());
    fs::write(copy, bytes).expect("write the patched copy");
}
