//! Opening plugin libraries: C libraries built at test time stand in for Go plugins. Each one
//! exports the ten golang filter functions, and its constructor calls the host's log
//! callbacks during `dlopen`, as a Go plugin's package initialisers do.

mod common;

use std::ffi::{c_int, c_void};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{compile_shared_library, fake_plugin_source, sha256_hex, TestDir};
use edgefn_loader::{
    ElfError, GoPluginLibrary, HostCallbacks, LoadError, OpenError, SecondRuntimePolicy,
};

static LOG_LEVEL_CALLS: AtomicUsize = AtomicUsize::new(0);
static LOG_MESSAGES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Host callback: returns the log level (2, info). Counts its calls.
#[no_mangle]
#[allow(non_snake_case, reason = "the golang filter ABI fixes this name")]
pub extern "C" fn envoyGoFilterLogLevel() -> u32 {
    LOG_LEVEL_CALLS.fetch_add(1, Ordering::SeqCst);
    2
}

/// Host callback: records a log message.
///
/// # Safety
///
/// `message` points to `length` readable bytes.
#[no_mangle]
#[allow(non_snake_case, reason = "the golang filter ABI fixes this name")]
pub unsafe extern "C" fn envoyGoFilterLog(_level: u32, message: *const c_void, length: c_int) {
    let Ok(length) = usize::try_from(length) else {
        return;
    };
    // SAFETY: the caller passes `length` readable bytes at `message`.
    let bytes = unsafe { std::slice::from_raw_parts(message.cast::<u8>(), length) };
    let text = String::from_utf8_lossy(bytes).into_owned();
    LOG_MESSAGES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(text);
}

const DEFINED_CALLBACKS: &[&str] = &["envoyGoFilterLog", "envoyGoFilterLogLevel"];

fn host_callbacks() -> HostCallbacks {
    // SAFETY: this test binary defines both callbacks above with the golang filter's
    // signatures, and build.rs links it with --export-dynamic so they are in the global
    // scope. Both are thread-safe. The libraries opened are the tests' own.
    unsafe { HostCallbacks::assume_installed(DEFINED_CALLBACKS) }
}

/// Returns how many times a constructor logged `marker`.
fn marker_count(marker: &str) -> usize {
    let messages = LOG_MESSAGES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    messages
        .iter()
        .filter(|message| message.as_str() == marker)
        .count()
}

/// Builds a fake plugin whose `envoyGoFilterNewHttpPluginConfig` returns `config_id` and
/// whose constructor logs `marker` at the level the host reports.
fn build_fake_plugin(dir: &TestDir, config_id: u64, marker: &str) -> PathBuf {
    let constructor = format!(
        r#"extern uint32_t envoyGoFilterLogLevel(void);
extern void envoyGoFilterLog(uint32_t level, void *message, int length);

__attribute__((constructor)) static void edgefn_test_init(void) {{
    static char message[] = "{marker}";
    envoyGoFilterLog(envoyGoFilterLogLevel(), message, (int)(sizeof(message) - 1));
}}
"#
    );
    let source = fake_plugin_source(config_id, &constructor);
    compile_shared_library(dir.path(), &format!("lib{marker}.so"), &source)
}

fn open_error(result: Result<Arc<GoPluginLibrary>, LoadError>) -> LoadError {
    match result {
        Err(error) => error,
        Ok(library) => panic!("expected an error, got {library:?}"),
    }
}

#[test]
fn open_runs_initialisers_and_resolves_exports() {
    let dir = TestDir::new("open-ok");
    let path = build_fake_plugin(&dir, 4242, "open-ok");
    let level_calls_before = LOG_LEVEL_CALLS.load(Ordering::SeqCst);

    let library = GoPluginLibrary::open(&path, &host_callbacks(), SecondRuntimePolicy::Allow)
        .expect("the fake plugin opens");

    assert_eq!(marker_count("open-ok"), 1);
    assert!(LOG_LEVEL_CALLS.load(Ordering::SeqCst) > level_calls_before);
    // SAFETY: the fake plugin's function ignores its argument and returns a constant.
    let config_id = unsafe { (library.exports().new_http_plugin_config)(std::ptr::null_mut()) };
    assert_eq!(config_id, 4242);
    assert_eq!(
        library.sha256(),
        sha256_hex(&std::fs::read(&path).expect("read the library"))
    );
    assert_eq!(library.elf_info().host_imports, DEFINED_CALLBACKS);
}

#[test]
fn same_bytes_open_once() {
    let dir = TestDir::new("open-same-bytes");
    let first_path = build_fake_plugin(&dir, 5151, "same-bytes");
    let second_path = dir.join("copy-of-same-bytes.so");
    std::fs::copy(&first_path, &second_path).expect("copy the library");

    let first = GoPluginLibrary::open(&first_path, &host_callbacks(), SecondRuntimePolicy::Allow)
        .expect("the first path opens");
    let second =
        GoPluginLibrary::open(&second_path, &host_callbacks(), SecondRuntimePolicy::Refuse)
            .expect("the second path gives the open library");

    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(marker_count("same-bytes"), 1);
}

#[test]
fn second_library_refused_by_policy() {
    let dir = TestDir::new("open-refuse");
    let first_path = build_fake_plugin(&dir, 6161, "refuse-first");
    let second_path = build_fake_plugin(&dir, 6262, "refuse-second");
    let first = GoPluginLibrary::open(&first_path, &host_callbacks(), SecondRuntimePolicy::Allow)
        .expect("the first library opens");

    let result =
        GoPluginLibrary::open(&second_path, &host_callbacks(), SecondRuntimePolicy::Refuse);

    let error = open_error(result);
    let message = error.to_string();
    assert!(
        matches!(
            error,
            LoadError::Open(OpenError::SecondRuntimeRefused { .. })
        ),
        "{error:?}"
    );
    assert!(message.contains(first.sha256()), "{message}");
    let second_sha256 = sha256_hex(&std::fs::read(&second_path).expect("read the library"));
    assert!(message.contains(&second_sha256), "{message}");
    assert!(
        message.contains("EDGEFN_GO_LIBRARIES=multiple"),
        "{message}"
    );
    assert_eq!(marker_count("refuse-second"), 0);
}

#[test]
fn second_library_allowed_by_policy() {
    let dir = TestDir::new("open-allow");
    let first_path = build_fake_plugin(&dir, 7171, "allow-first");
    let second_path = build_fake_plugin(&dir, 7272, "allow-second");

    let first = GoPluginLibrary::open(&first_path, &host_callbacks(), SecondRuntimePolicy::Allow)
        .expect("the first library opens");
    let second = GoPluginLibrary::open(&second_path, &host_callbacks(), SecondRuntimePolicy::Allow)
        .expect("the second library opens");

    assert_ne!(first.sha256(), second.sha256());
    // SAFETY: the fake plugin's function ignores its argument and returns a constant.
    let config_id = unsafe { (second.exports().new_http_plugin_config)(std::ptr::null_mut()) };
    assert_eq!(config_id, 7272);
}

#[test]
fn missing_host_callback_named_before_dlopen() {
    let dir = TestDir::new("open-missing-callback");
    let constructor = r#"extern void envoyGoFilterLog(uint32_t level, void *message, int length);
extern int envoyGoFilterHttpContinue(void *s, int status);

__attribute__((constructor)) static void edgefn_test_init(void) {
    static char message[] = "missing-callback";
    envoyGoFilterLog(2, message, (int)(sizeof(message) - 1));
}

int edgefn_test_resume(void *s) { return envoyGoFilterHttpContinue(s, 2); }
"#;
    let source = fake_plugin_source(8181, constructor);
    let path = compile_shared_library(dir.path(), "libmissing.so", &source);

    let result = GoPluginLibrary::open(&path, &host_callbacks(), SecondRuntimePolicy::Allow);

    let error = open_error(result);
    let LoadError::Open(OpenError::MissingHostCallbacks { missing, .. }) = &error else {
        panic!("expected a missing-callback error, got {error:?}");
    };
    assert_eq!(missing, &["envoyGoFilterHttpContinue"]);
    assert_eq!(marker_count("missing-callback"), 0);
}

#[test]
fn unresolved_symbol_reports_linker_message() {
    let dir = TestDir::new("open-unresolved");
    let extra = "extern int edgefn_test_absent_symbol(void);\n\
                 int edgefn_test_call_absent(void) { return edgefn_test_absent_symbol(); }\n";
    let path = compile_shared_library(
        dir.path(),
        "libunresolved.so",
        &fake_plugin_source(1, extra),
    );

    let result = GoPluginLibrary::open(&path, &host_callbacks(), SecondRuntimePolicy::Allow);

    let error = open_error(result);
    let LoadError::Open(OpenError::DlOpen { message, .. }) = &error else {
        panic!("expected a dlopen error, got {error:?}");
    };
    assert!(message.contains("edgefn_test_absent_symbol"), "{message}");
    assert!(error.to_string().contains("libunresolved.so"), "{error}");
}

#[test]
fn non_plugin_rejected_before_dlopen() {
    let dir = TestDir::new("open-not-plugin");
    let source = r#"#include <stdint.h>
extern void envoyGoFilterLog(uint32_t level, void *message, int length);

__attribute__((constructor)) static void edgefn_test_init(void) {
    static char message[] = "not-a-plugin";
    envoyGoFilterLog(2, message, (int)(sizeof(message) - 1));
}
"#;
    let path = compile_shared_library(dir.path(), "libnotplugin.so", source);

    let result = GoPluginLibrary::open(&path, &host_callbacks(), SecondRuntimePolicy::Allow);

    let error = open_error(result);
    assert!(
        matches!(error, LoadError::Elf(ElfError::NotGoPlugin { .. })),
        "{error:?}"
    );
    assert_eq!(marker_count("not-a-plugin"), 0);
}
