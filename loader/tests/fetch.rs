//! Fetching from local files and from HTTP(S) servers on 127.0.0.1, and the error for each
//! kind of failure.

mod common;

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use common::server::{Route, TestServer, TestTls};
use common::{entry_names, fetch_error, leftover_temp_files, options_in, sha256_hex, TestDir};
use edgefn_loader::{fetch, fetch_blocking, FetchError, FetchOptions, Source};

const PLUGIN_BYTES: &[u8] = b"\x7fELF pretend plugin bytes for fetch tests";

#[test]
fn http_fetch_stores_artifact() {
    let dir = TestDir::new("http-ok");
    let server = TestServer::start_http();
    server.set_route("/plugin.so", Route::Bytes(PLUGIN_BYTES.to_vec()));
    let options = options_in(&dir);
    let source = Source::Url(server.url("/plugin.so"));

    let artifact = fetch_blocking(&source, &options).expect("fetch succeeds");

    let digest = sha256_hex(PLUGIN_BYTES);
    assert_eq!(artifact.sha256, digest);
    assert_eq!(artifact.size, PLUGIN_BYTES.len() as u64);
    assert_eq!(
        artifact.path,
        options.cache_dir.join("sha256").join(&digest)
    );
    assert_eq!(artifact.source, source);
    assert_eq!(
        fs::read(&artifact.path).expect("read the artifact"),
        PLUGIN_BYTES
    );
    assert_eq!(entry_names(&options.cache_dir.join("sha256")), vec![digest]);
    assert_eq!(server.request_count(), 1);
}

#[test]
fn http_404_is_not_found() {
    let dir = TestDir::new("http-404");
    let server = TestServer::start_http();
    let url = server.url("/missing.so");

    let error = fetch_error(&Source::Url(url.clone()), &options_in(&dir));

    assert!(matches!(error, FetchError::NotFound { .. }), "{error:?}");
    assert!(error.to_string().contains(&url), "{error}");
}

#[test]
fn http_500_shows_status_and_sanitised_body() {
    let dir = TestDir::new("http-500");
    let server = TestServer::start_http();
    let body = b"upstream \x1b[31mfailed\r\nInjected-Header: x\r\n".to_vec();
    server.set_route("/plugin.so", Route::Status(500, body));

    let error = fetch_error(&Source::Url(server.url("/plugin.so")), &options_in(&dir));

    let FetchError::HttpStatus { status, body, .. } = &error else {
        panic!("expected an HTTP status error, got {error:?}");
    };
    assert_eq!(*status, 500);
    assert_eq!(body, "upstream [31mfailed Injected-Header: x");
}

#[test]
fn http_403_is_status_error() {
    let dir = TestDir::new("http-403");
    let server = TestServer::start_http();
    server.set_route("/plugin.so", Route::Status(403, b"forbidden".to_vec()));

    let error = fetch_error(&Source::Url(server.url("/plugin.so")), &options_in(&dir));

    assert!(
        matches!(error, FetchError::HttpStatus { status: 403, .. }),
        "{error:?}"
    );
}

#[test]
fn slow_body_times_out() {
    let dir = TestDir::new("http-slow");
    let server = TestServer::start_http();
    let slow = Route::SlowBody {
        length: 40,
        delay: Duration::from_millis(100),
    };
    server.set_route("/plugin.so", slow);
    let options = FetchOptions {
        timeout: Duration::from_millis(500),
        ..options_in(&dir)
    };

    let error = fetch_error(&Source::Url(server.url("/plugin.so")), &options);

    assert!(matches!(error, FetchError::Timeout { .. }), "{error:?}");
    assert!(leftover_temp_files(&options.cache_dir).is_empty());
}

#[test]
fn streamed_body_over_limit_is_too_large() {
    let dir = TestDir::new("http-stream-large");
    let server = TestServer::start_http();
    server.set_route("/plugin.so", Route::Unsized(vec![7; 5000]));
    let options = FetchOptions {
        max_size: 1000,
        ..options_in(&dir)
    };

    let error = fetch_error(&Source::Url(server.url("/plugin.so")), &options);

    let FetchError::TooLarge {
        observed, limit, ..
    } = &error
    else {
        panic!("expected a size error, got {error:?}");
    };
    assert_eq!(*limit, 1000);
    assert!(observed.contains("streaming"), "{observed}");
    assert!(entry_names(&options.cache_dir.join("sha256")).is_empty());
}

#[test]
fn content_length_over_limit_is_too_large() {
    let dir = TestDir::new("http-length-large");
    let server = TestServer::start_http();
    server.set_route("/plugin.so", Route::DeclaredLength(10_000_000));
    let options = FetchOptions {
        max_size: 1000,
        ..options_in(&dir)
    };

    let error = fetch_error(&Source::Url(server.url("/plugin.so")), &options);

    let FetchError::TooLarge { observed, .. } = &error else {
        panic!("expected a size error, got {error:?}");
    };
    assert!(
        observed.contains("Content-Length is 10000000"),
        "{observed}"
    );
}

#[test]
fn early_close_is_incomplete_body() {
    let dir = TestDir::new("http-truncated");
    let server = TestServer::start_http();
    let truncated = Route::Truncated {
        declared: 1000,
        sent: vec![1; 100],
    };
    server.set_route("/plugin.so", truncated);
    let options = options_in(&dir);

    let error = fetch_error(&Source::Url(server.url("/plugin.so")), &options);

    assert!(
        matches!(error, FetchError::IncompleteBody { received: 100, .. }),
        "{error:?}"
    );
    assert!(entry_names(&options.cache_dir.join("sha256")).is_empty());
}

#[test]
fn refused_connection_is_connection_error() {
    let dir = TestDir::new("http-refused");
    let port = {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1");
        listener.local_addr().expect("read the address").port()
    };

    let source = Source::Url(format!("http://127.0.0.1:{port}/plugin.so"));
    let error = fetch_error(&source, &options_in(&dir));

    assert!(matches!(error, FetchError::Connection { .. }), "{error:?}");
}

#[test]
fn credentials_never_appear_in_errors() {
    let dir = TestDir::new("http-redact");
    let server = TestServer::start_http();
    let url = server
        .url("/missing.so")
        .replace("http://", "http://user:s3cret@")
        + "?token=s3cret";

    let error = fetch_error(&Source::Url(url), &options_in(&dir));

    assert!(matches!(error, FetchError::NotFound { .. }), "{error:?}");
    assert!(!error.to_string().contains("s3cret"), "{error}");
}

#[test]
fn https_rejects_unknown_ca() {
    let dir = TestDir::new("https-unknown-ca");
    let tls = TestTls::new();
    let server = TestServer::start_https(tls.server_config.clone());
    server.set_route("/plugin.so", Route::Bytes(PLUGIN_BYTES.to_vec()));

    let error = fetch_error(&Source::Url(server.url("/plugin.so")), &options_in(&dir));

    assert!(matches!(error, FetchError::Tls { .. }), "{error:?}");
}

#[test]
fn https_accepts_extra_ca_file() {
    let dir = TestDir::new("https-extra-ca");
    let tls = TestTls::new();
    let ca_file = dir.join("ca.pem");
    tls.write_ca(&ca_file);
    let server = TestServer::start_https(tls.server_config.clone());
    server.set_route("/plugin.so", Route::Bytes(PLUGIN_BYTES.to_vec()));
    let options = FetchOptions {
        extra_ca_file: Some(ca_file),
        ..options_in(&dir)
    };

    let artifact = fetch_blocking(&Source::Url(server.url("/plugin.so")), &options)
        .expect("fetch with the extra CA succeeds");

    assert_eq!(artifact.sha256, sha256_hex(PLUGIN_BYTES));
}

#[test]
fn extra_ca_file_without_certificate_is_rejected() {
    let dir = TestDir::new("https-bad-ca");
    let ca_file = dir.join("ca.pem");
    fs::write(&ca_file, "not a certificate\n").expect("write the CA file");
    let server = TestServer::start_http();
    server.set_route("/plugin.so", Route::Bytes(PLUGIN_BYTES.to_vec()));
    let options = FetchOptions {
        extra_ca_file: Some(ca_file),
        ..options_in(&dir)
    };

    let error = fetch_error(&Source::Url(server.url("/plugin.so")), &options);

    assert!(matches!(error, FetchError::ExtraCa { .. }), "{error:?}");
    assert_eq!(server.request_count(), 0);
}

#[test]
fn local_file_forms_give_same_artifact() {
    let dir = TestDir::new("local-forms");
    let plugin = dir.join("my plugin.so");
    fs::write(&plugin, PLUGIN_BYTES).expect("write the plugin");
    let options = options_in(&dir);
    let plain = plugin.to_str().expect("UTF-8 path").to_owned();
    let file_url = format!("file://{}", plain.replace(' ', "%20"));

    let from_path = fetch_blocking(&Source::Url(plain), &options).expect("fetch by path");
    let from_url = fetch_blocking(&Source::Url(file_url), &options).expect("fetch by file URL");

    assert_eq!(from_path.sha256, sha256_hex(PLUGIN_BYTES));
    assert_eq!(from_url.path, from_path.path);
    assert_eq!(
        fs::read(&from_path.path).expect("read the artifact"),
        PLUGIN_BYTES
    );
}

#[test]
fn missing_local_file_is_not_found() {
    let dir = TestDir::new("local-missing");
    let missing = dir.join("absent.so");
    let source = Source::Url(missing.to_str().expect("UTF-8 path").to_owned());

    let error = fetch_error(&source, &options_in(&dir));

    assert!(matches!(error, FetchError::NotFound { .. }), "{error:?}");
    assert!(error.to_string().contains("absent.so"), "{error}");
}

#[test]
fn local_file_over_limit_is_too_large() {
    let dir = TestDir::new("local-large");
    let plugin = dir.join("big.so");
    fs::write(&plugin, vec![0_u8; 2048]).expect("write the plugin");
    let options = FetchOptions {
        max_size: 1024,
        ..options_in(&dir)
    };
    let source = Source::Url(plugin.to_str().expect("UTF-8 path").to_owned());

    let error = fetch_error(&source, &options);

    assert!(
        matches!(error, FetchError::TooLarge { limit: 1024, .. }),
        "{error:?}"
    );
    assert!(leftover_temp_files(&options.cache_dir).is_empty());
}

#[test]
fn relative_path_is_invalid_source() {
    let dir = TestDir::new("relative");

    let error = fetch_error(&Source::Url("plugins/a.so".to_owned()), &options_in(&dir));

    assert!(
        matches!(error, FetchError::InvalidSource { .. }),
        "{error:?}"
    );
}

#[test]
fn blocking_fetch_inside_runtime() {
    let dir = TestDir::new("inside-runtime");
    let server = TestServer::start_http();
    server.set_route("/plugin.so", Route::Bytes(PLUGIN_BYTES.to_vec()));
    let options = options_in(&dir);
    let source = Source::Url(server.url("/plugin.so"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build a runtime");

    let result = runtime.block_on(async { fetch_blocking(&source, &options) });

    assert_eq!(
        result.expect("fetch succeeds").sha256,
        sha256_hex(PLUGIN_BYTES)
    );
}

#[test]
fn async_fetch_in_caller_runtime() {
    let dir = TestDir::new("async");
    let server = TestServer::start_http();
    server.set_route("/plugin.so", Route::Bytes(PLUGIN_BYTES.to_vec()));
    let options = options_in(&dir);
    let source = Source::Url(server.url("/plugin.so"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build a runtime");

    let result = runtime.block_on(fetch(&source, &options));

    assert_eq!(
        result.expect("fetch succeeds").sha256,
        sha256_hex(PLUGIN_BYTES)
    );
}
