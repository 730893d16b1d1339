//! The content-addressed cache: atomic writes, pinned cache hits, and the fallback to the last
//! good artifact when the server is unavailable.

mod common;

use std::fs;

use common::server::{Route, TestServer};
use common::{entry_names, fetch_error, leftover_temp_files, options_in, sha256_hex, TestDir};
use edgefn_loader::{fetch_blocking, FetchError, FetchOptions, Source};

const PLUGIN_BYTES: &[u8] = b"\x7fELF pretend plugin bytes for cache tests";
const OTHER_BYTES: &[u8] = b"\x7fELF different bytes served later";

fn pinned(options: &FetchOptions, bytes: &[u8]) -> FetchOptions {
    FetchOptions {
        expected_sha256: Some(sha256_hex(bytes)),
        ..options.clone()
    }
}

#[test]
fn no_temp_files_after_success_or_failure() {
    let dir = TestDir::new("cache-temp");
    let server = TestServer::start_http();
    server.set_route("/ok.so", Route::Bytes(PLUGIN_BYTES.to_vec()));
    server.set_route(
        "/cut.so",
        Route::Truncated {
            declared: 500,
            sent: vec![1; 50],
        },
    );
    server.set_route("/big.so", Route::Unsized(vec![2; 4096]));
    let options = FetchOptions {
        max_size: 1024,
        ..options_in(&dir)
    };

    let fetched = fetch_blocking(&Source::Url(server.url("/ok.so")), &options);
    let cut = fetch_blocking(&Source::Url(server.url("/cut.so")), &options);
    let big = fetch_blocking(&Source::Url(server.url("/big.so")), &options);
    let mismatch = fetch_blocking(
        &Source::Url(server.url("/ok.so")),
        &pinned(&options, OTHER_BYTES),
    );

    assert!(fetched.is_ok(), "{fetched:?}");
    assert!(cut.is_err(), "{cut:?}");
    assert!(big.is_err(), "{big:?}");
    assert!(mismatch.is_err(), "{mismatch:?}");
    assert_eq!(
        leftover_temp_files(&options.cache_dir),
        Vec::<String>::new()
    );
    assert_eq!(
        entry_names(&options.cache_dir.join("sha256")),
        vec![sha256_hex(PLUGIN_BYTES)]
    );
}

#[test]
fn pinned_cache_hit_sends_no_request() {
    let dir = TestDir::new("cache-pin-hit");
    let server = TestServer::start_http();
    server.set_route("/plugin.so", Route::Bytes(PLUGIN_BYTES.to_vec()));
    let options = pinned(&options_in(&dir), PLUGIN_BYTES);
    let source = Source::Url(server.url("/plugin.so"));

    let first = fetch_blocking(&source, &options).expect("first fetch succeeds");
    let second = fetch_blocking(&source, &options).expect("second fetch succeeds");

    assert_eq!(server.request_count(), 1);
    assert_eq!(second, first);
}

#[test]
fn pinned_cache_hit_needs_no_server() {
    let dir = TestDir::new("cache-pin-offline");
    let server = TestServer::start_http();
    server.set_route("/plugin.so", Route::Bytes(PLUGIN_BYTES.to_vec()));
    let options = pinned(&options_in(&dir), PLUGIN_BYTES);
    let source = Source::Url(server.url("/plugin.so"));
    fetch_blocking(&source, &options).expect("first fetch succeeds");
    server.set_route("/plugin.so", Route::Status(404, Vec::new()));

    let again = fetch_blocking(&source, &options).expect("cache hit succeeds");

    assert_eq!(again.sha256, sha256_hex(PLUGIN_BYTES));
    assert_eq!(server.request_count(), 1);
}

#[test]
fn unpinned_fetch_asks_server_each_time() {
    let dir = TestDir::new("cache-unpinned");
    let server = TestServer::start_http();
    server.set_route("/plugin.so", Route::Bytes(PLUGIN_BYTES.to_vec()));
    let options = options_in(&dir);
    let source = Source::Url(server.url("/plugin.so"));
    fetch_blocking(&source, &options).expect("first fetch succeeds");
    server.set_route("/plugin.so", Route::Bytes(OTHER_BYTES.to_vec()));

    let second = fetch_blocking(&source, &options).expect("second fetch succeeds");

    assert_eq!(second.sha256, sha256_hex(OTHER_BYTES));
    assert_eq!(server.request_count(), 2);
}

#[test]
fn pin_mismatch_shows_both_digests_and_caches_nothing() {
    let dir = TestDir::new("cache-pin-mismatch");
    let server = TestServer::start_http();
    server.set_route("/plugin.so", Route::Bytes(PLUGIN_BYTES.to_vec()));
    let options = pinned(&options_in(&dir), OTHER_BYTES);

    let error = fetch_error(&Source::Url(server.url("/plugin.so")), &options);

    let message = error.to_string();
    assert!(
        matches!(error, FetchError::DigestMismatch { .. }),
        "{error:?}"
    );
    assert!(message.contains(&sha256_hex(OTHER_BYTES)), "{message}");
    assert!(message.contains(&sha256_hex(PLUGIN_BYTES)), "{message}");
    assert_eq!(
        entry_names(&options.cache_dir.join("sha256")),
        Vec::<String>::new()
    );
    assert_eq!(
        entry_names(&options.cache_dir.join("urls")),
        Vec::<String>::new()
    );
}

#[test]
fn malformed_pin_rejected_before_request() {
    let dir = TestDir::new("cache-bad-pin");
    let server = TestServer::start_http();
    server.set_route("/plugin.so", Route::Bytes(PLUGIN_BYTES.to_vec()));
    let upper_case = sha256_hex(PLUGIN_BYTES).to_uppercase();
    let options = FetchOptions {
        expected_sha256: Some(upper_case),
        ..options_in(&dir)
    };

    let error = fetch_error(&Source::Url(server.url("/plugin.so")), &options);

    assert!(
        matches!(error, FetchError::InvalidSha256 { .. }),
        "{error:?}"
    );
    assert_eq!(server.request_count(), 0);
}

#[test]
fn corrupted_cache_entry_is_fetched_again() {
    let dir = TestDir::new("cache-corrupt");
    let server = TestServer::start_http();
    server.set_route("/plugin.so", Route::Bytes(PLUGIN_BYTES.to_vec()));
    let options = pinned(&options_in(&dir), PLUGIN_BYTES);
    let source = Source::Url(server.url("/plugin.so"));
    let first = fetch_blocking(&source, &options).expect("first fetch succeeds");
    fs::write(&first.path, OTHER_BYTES).expect("corrupt the cached file");

    let second = fetch_blocking(&source, &options).expect("second fetch succeeds");

    assert_eq!(server.request_count(), 2);
    assert_eq!(
        fs::read(&second.path).expect("read the artifact"),
        PLUGIN_BYTES
    );
}

#[test]
fn falls_back_when_server_down() {
    let dir = TestDir::new("cache-fallback-down");
    let server = TestServer::start_http();
    server.set_route("/plugin.so", Route::Bytes(PLUGIN_BYTES.to_vec()));
    let options = options_in(&dir);
    let source = Source::Url(server.url("/plugin.so"));
    let first = fetch_blocking(&source, &options).expect("first fetch succeeds");
    server.stop();

    let fallback = fetch_blocking(&source, &options).expect("fallback succeeds");

    assert_eq!(fallback, first);
}

#[test]
fn falls_back_on_server_error() {
    let dir = TestDir::new("cache-fallback-503");
    let server = TestServer::start_http();
    server.set_route("/plugin.so", Route::Bytes(PLUGIN_BYTES.to_vec()));
    let options = options_in(&dir);
    let source = Source::Url(server.url("/plugin.so"));
    fetch_blocking(&source, &options).expect("first fetch succeeds");
    server.set_route("/plugin.so", Route::Status(503, b"maintenance".to_vec()));

    let fallback = fetch_blocking(&source, &options).expect("fallback succeeds");

    assert_eq!(fallback.sha256, sha256_hex(PLUGIN_BYTES));
    assert_eq!(server.request_count(), 2);
}

#[test]
fn no_fallback_on_client_errors() {
    let dir = TestDir::new("cache-no-fallback");
    let server = TestServer::start_http();
    server.set_route("/plugin.so", Route::Bytes(PLUGIN_BYTES.to_vec()));
    let options = options_in(&dir);
    let source = Source::Url(server.url("/plugin.so"));
    fetch_blocking(&source, &options).expect("first fetch succeeds");

    server.set_route("/plugin.so", Route::Status(404, Vec::new()));
    let not_found = fetch_error(&source, &options);
    server.set_route("/plugin.so", Route::Status(403, b"denied".to_vec()));
    let forbidden = fetch_error(&source, &options);

    assert!(
        matches!(not_found, FetchError::NotFound { .. }),
        "{not_found:?}"
    );
    assert!(
        matches!(forbidden, FetchError::HttpStatus { status: 403, .. }),
        "{forbidden:?}"
    );
}

#[test]
fn no_fallback_for_another_url() {
    let dir = TestDir::new("cache-fallback-other-url");
    let server = TestServer::start_http();
    server.set_route("/a.so", Route::Bytes(PLUGIN_BYTES.to_vec()));
    let options = options_in(&dir);
    fetch_blocking(&Source::Url(server.url("/a.so")), &options).expect("first fetch succeeds");
    let other_url = Source::Url(server.url("/b.so"));
    server.stop();

    let error = fetch_error(&other_url, &options);

    assert!(matches!(error, FetchError::Connection { .. }), "{error:?}");
}

#[test]
fn cache_writable_by_others_rejected() {
    use std::os::unix::fs::PermissionsExt;

    let dir = TestDir::new("cache-unsafe");
    let options = options_in(&dir);
    fs::create_dir_all(&options.cache_dir).unwrap();
    fs::set_permissions(&options.cache_dir, fs::Permissions::from_mode(0o777)).unwrap();
    let server = TestServer::start_http();
    server.set_route("/plugin.so", Route::Bytes(PLUGIN_BYTES.to_vec()));

    let error = fetch_error(&Source::Url(server.url("/plugin.so")), &options);

    assert!(
        matches!(error, FetchError::UnsafeCacheDir { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("EDGEFN_CACHE_DIR"), "{error}");
}
