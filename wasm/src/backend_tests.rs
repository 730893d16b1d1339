use std::time::Duration;

use super::*;
use crate::engine::engine;

/// Wraps `body` (the code of `_start`) in a module with memory, fd_write and a `$print`
/// helper that writes `len` bytes at `ptr` to stdout. Data goes from offset 64 on.
fn command(imports: &str, data: &str, body: &str) -> Module {
    let text = format!(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write"
            (func $fd_write (param i32 i32 i32 i32) (result i32)))
          {imports}
          (memory (export "memory") 1)
          (data (i32.const 64) "{data}")
          (func $print (param $ptr i32) (param $len i32)
            (i32.store (i32.const 0) (local.get $ptr))
            (i32.store (i32.const 4) (local.get $len))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
          (func (export "_start") {body}))"#
    );
    Module::new(engine(), wat::parse_str(text).unwrap()).unwrap()
}

fn settings(timeout: Duration) -> FunctionSettings {
    let mut settings = FunctionSettings::new("backend-test");
    settings.timeout = timeout;
    settings
}

fn run(module: &Module, settings: FunctionSettings) -> Result<CgiResponse, RunError> {
    BackendFunction::load(module, settings)
        .unwrap()
        .run(&CgiRequest::default())
}

#[test]
fn output_sets_status_headers_and_body() {
    let output = "Status: 201 Created\\nX-Thing: one\\nConnection: close\\n\\nhello";
    let module = command("", output, "(call $print (i32.const 64) (i32.const 57))");
    let response = run(&module, settings(Duration::from_secs(5))).unwrap();
    assert_eq!(response.status, 201);
    assert_eq!(
        response.headers,
        vec![("x-thing".to_owned(), "one".to_owned())]
    );
    assert_eq!(response.body, b"hello");
}

#[test]
fn endless_loop_times_out() {
    let module = command("", "", "(loop $again (br $again))");
    let error = run(&module, settings(Duration::from_millis(100))).unwrap_err();
    assert!(matches!(error, RunError::TimedOut(_)), "{error:?}");
    assert_eq!(error.status(), 504);
}

#[test]
fn traps_become_500() {
    let bodies = [
        ("unreachable", "unreachable".to_owned()),
        (
            "out of bounds",
            "(drop (i32.load (i32.const 0x7ffffff0)))".to_owned(),
        ),
        (
            "divide by zero",
            "(drop (i32.div_u (i32.const 1) (i32.const 0)))".to_owned(),
        ),
    ];
    for (name, body) in bodies {
        let module = command("", "", &body);
        let error = run(&module, settings(Duration::from_secs(5))).unwrap_err();
        assert!(matches!(error, RunError::Trap(_)), "{name}: {error:?}");
        assert_eq!(error.status(), 500, "{name}");
    }
}

#[test]
fn stack_overflow_traps() {
    let text = r#"(module
      (memory (export "memory") 1)
      (func $down (param i32) (result i32)
        (i32.add (call $down (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
      (func (export "_start") (drop (call $down (i32.const 0)))))"#;
    let module = Module::new(engine(), wat::parse_str(text).unwrap()).unwrap();
    let error = run(&module, settings(Duration::from_secs(5))).unwrap_err();
    let RunError::Trap(message) = &error else {
        panic!("expected a trap, got {error:?}");
    };
    assert!(message.contains("stack"), "{message}");
}

#[test]
fn exit_code_decides() {
    let imports = r#"(import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))"#;
    let ok = command(
        imports,
        "\\nok",
        "(call $print (i32.const 64) (i32.const 3)) (call $exit (i32.const 0))",
    );
    assert_eq!(
        run(&ok, settings(Duration::from_secs(5))).unwrap().body,
        b"ok"
    );

    let failed = command(imports, "", "(call $exit (i32.const 3))");
    let error = run(&failed, settings(Duration::from_secs(5))).unwrap_err();
    assert!(matches!(error, RunError::Exit(3)), "{error:?}");
}

#[test]
fn env_get_reads_spec_env() {
    let imports = r#"(import "edgefn" "env_get"
        (func $env_get (param i32 i32 i32 i32) (result i32)))"#;
    // "GREETING" at 64 (8 bytes); the value goes to 256, after the "\n" written first.
    let body = r#"
        (i32.store8 (i32.const 255) (i32.const 10))
        (call $print (i32.const 255)
          (i32.add (i32.const 1)
            (call $env_get (i32.const 64) (i32.const 8) (i32.const 256) (i32.const 100))))"#;
    let module = command(imports, "GREETING", body);
    let mut with_env = settings(Duration::from_secs(5));
    with_env.env = vec![("GREETING".to_owned(), "hello there".to_owned())];
    let response = run(&module, with_env).unwrap();
    assert_eq!(response.body, b"hello there");
}

#[test]
fn disabled_capability_rejects_import() {
    let imports = r#"(import "edgefn" "kv_get"
        (func $kv_get (param i32 i32 i32 i32) (result i32)))"#;
    let module = command(imports, "", "");
    let mut no_kv = settings(Duration::from_secs(5));
    no_kv.kv = false;
    let error = BackendFunction::load(&module, no_kv).err().unwrap();
    let message = error.to_string();
    assert!(message.contains("edgefn.kv_get"), "{message}");
    assert!(
        message.contains("spec.runtime.capabilities.kv"),
        "{message}"
    );
}

#[test]
fn unknown_import_rejects_module() {
    let imports = r#"(import "env" "mystery" (func $mystery))"#;
    let module = command(imports, "", "");
    let error = BackendFunction::load(&module, settings(Duration::from_secs(5)))
        .err()
        .unwrap();
    let message = error.to_string();
    assert!(message.contains("mystery"), "{message}");
}

#[test]
fn missing_start_rejects_module() {
    let text = r#"(module (memory (export "memory") 1))"#;
    let module = Module::new(engine(), wat::parse_str(text).unwrap()).unwrap();
    let error = BackendFunction::load(&module, settings(Duration::from_secs(5)))
        .err()
        .unwrap();
    assert!(error.to_string().contains("`_start`"), "{error}");
}

#[test]
fn unsupported_wasi_returns_enosys() {
    // path_open returns an errno; the module prints "\n" then the errno as one byte + 48.
    let imports = r#"(import "wasi_snapshot_preview1" "path_open"
        (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))"#;
    let body = r#"
        (i32.store8 (i32.const 300) (i32.const 10))
        (i32.store8 (i32.const 301)
          (call $open (i32.const 3) (i32.const 0) (i32.const 64) (i32.const 1)
                      (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 400)))
        (call $print (i32.const 300) (i32.const 2))"#;
    let module = command(imports, "x", body);
    let response = run(&module, settings(Duration::from_secs(5))).unwrap();
    assert_eq!(response.body, [52]);
}

#[test]
fn memory_cap_fails_grow() {
    // Grows by 4 pages (256 KiB) under a 128 KiB cap; prints "\n" and "F" when grow fails.
    let body = r#"
        (i32.store8 (i32.const 300) (i32.const 10))
        (i32.store8 (i32.const 301)
          (select (i32.const 70) (i32.const 83)
            (i32.eq (memory.grow (i32.const 4)) (i32.const -1))))
        (call $print (i32.const 300) (i32.const 2))"#;
    let module = command("", "", body);
    let mut capped = settings(Duration::from_secs(5));
    capped.max_memory = 2 * 65536;
    let response = run(&module, capped).unwrap();
    assert_eq!(response.body, b"F");
}

#[test]
fn output_without_header_block_is_rejected() {
    let error = parse_output(b"just a body").unwrap_err();
    assert!(matches!(error, RunError::BadOutput(_)), "{error:?}");
}

#[test]
fn output_parsing_cases() {
    let crlf = parse_output(b"Content-Type: text/plain\r\n\r\nbody").unwrap();
    assert_eq!(crlf.status, 200);
    assert_eq!(
        crlf.headers,
        vec![("content-type".to_owned(), "text/plain".to_owned())]
    );
    assert_eq!(crlf.body, b"body");

    let redirect = parse_output(b"Location: /elsewhere\n\n").unwrap();
    assert_eq!(redirect.status, 302);

    let no_headers = parse_output(b"\nonly body").unwrap();
    assert_eq!(no_headers.body, b"only body");

    assert!(parse_output(b"Status: 99\n\n").is_err());
    assert!(parse_output(b"Status: abc\n\n").is_err());
    assert!(parse_output(b"Bad Name: x\n\n").is_err());
    assert!(parse_output(b"no colon\n\n").is_err());
}

#[test]
fn environment_has_cgi_variables() {
    let mut with_env = settings(Duration::from_secs(1));
    with_env.env = vec![
        ("GREETING".to_owned(), "hi".to_owned()),
        ("REQUEST_METHOD".to_owned(), "overwritten".to_owned()),
    ];
    let request = CgiRequest {
        method: "POST".to_owned(),
        path: "/a/b?x=1&y=2".to_owned(),
        scheme: "http".to_owned(),
        protocol: "HTTP/1.1".to_owned(),
        headers: vec![
            ("host".to_owned(), b"example.test:8000".to_vec()),
            ("x-echo".to_owned(), b"one".to_vec()),
            ("x-echo".to_owned(), b"two".to_vec()),
            ("content-type".to_owned(), b"text/plain".to_vec()),
        ],
        body: b"abc".to_vec(),
        remote_addr: Some("127.0.0.1:5555".to_owned()),
    };
    let env = cgi_environment(&with_env, &request);
    let get = |name: &str| {
        env.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    assert_eq!(get("GREETING"), Some("hi"));
    assert_eq!(get("REQUEST_METHOD"), Some("POST"));
    assert_eq!(get("PATH_INFO"), Some("/a/b"));
    assert_eq!(get("QUERY_STRING"), Some("x=1&y=2"));
    assert_eq!(get("SERVER_NAME"), Some("example.test"));
    assert_eq!(get("SERVER_PORT"), Some("8000"));
    assert_eq!(get("HTTP_X_ECHO"), Some("one, two"));
    assert_eq!(get("CONTENT_TYPE"), Some("text/plain"));
    assert_eq!(get("CONTENT_LENGTH"), Some("3"));
    assert_eq!(get("HTTP_CONTENT_TYPE"), None);
    assert_eq!(
        get("X_FULL_URL"),
        Some("http://example.test:8000/a/b?x=1&y=2")
    );
    assert_eq!(get("REMOTE_ADDR"), Some("127.0.0.1:5555"));
    assert_eq!(
        env.iter()
            .filter(|(key, _)| key == "REQUEST_METHOD")
            .count(),
        1
    );
}

#[test]
fn compiled_file_is_loaded_from_cache() {
    let dir = std::env::temp_dir().join(format!("edgefn-compile-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("module.wasm");
    let text = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;
    std::fs::write(&source, wat::parse_str(text).unwrap()).unwrap();
    let sha256 = "0".repeat(64);
    let cached = dir.join(format!("{sha256}-wasmtime-48.0.10.cwasm"));
    crate::engine::compile_to_file(&source, &cached).unwrap();

    // The source is gone, so only the cache entry can produce the module.
    std::fs::remove_file(&source).unwrap();
    let module = crate::engine::compile(&source, &sha256, Some(&dir), None).unwrap();
    assert!(module.get_export("_start").is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn output_rejects_injected_bytes() {
    let carriage_return = parse_output(b"X-A: a\rX-Injected: yes\n\nbody").unwrap_err();
    assert!(
        matches!(carriage_return, RunError::BadOutput(_)),
        "{carriage_return:?}"
    );
    let nul = parse_output(b"X-A: a\0b\n\nbody").unwrap_err();
    assert!(matches!(nul, RunError::BadOutput(_)), "{nul:?}");
}

#[test]
fn no_content_drops_body() {
    let response = parse_output(b"Status: 204\n\nHTTP/1.1 200 OK\r\n\r\nforged").unwrap();
    assert_eq!(response.status, 204);
    assert!(response.body.is_empty());
    let not_modified = parse_output(b"Status: 304\n\nbody").unwrap();
    assert!(not_modified.body.is_empty());
}

#[test]
fn random_get_rejects_huge_length_without_allocating() {
    // random_get(0, 0x7fffffff) must fail on the bounds check, before any host allocation.
    let imports = r#"(import "wasi_snapshot_preview1" "random_get"
        (func $random (param i32 i32) (result i32)))"#;
    let body = r#"
        (i32.store8 (i32.const 300) (i32.const 10))
        (i32.store8 (i32.const 301) (call $random (i32.const 0) (i32.const 0x7fffffff)))
        (call $print (i32.const 300) (i32.const 2))"#;
    let module = command(imports, "", body);
    let response = run(&module, settings(Duration::from_secs(5))).unwrap();
    assert_eq!(response.body, [21], "expected EFAULT");
}

#[test]
fn table_growth_is_capped() {
    // Grows a table by far more than the cap; table.grow returns -1, printed as "F".
    let text = r#"(module
      (import "wasi_snapshot_preview1" "fd_write"
        (func $fd_write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (table 1 funcref)
      (func (export "_start")
        (i32.store8 (i32.const 300) (i32.const 10))
        (i32.store8 (i32.const 301)
          (select (i32.const 70) (i32.const 83)
            (i32.eq (table.grow (ref.null func) (i32.const 150000000)) (i32.const -1))))
        (i32.store (i32.const 0) (i32.const 300))
        (i32.store (i32.const 4) (i32.const 2))
        (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;
    let module = Module::new(engine(), wat::parse_str(text).unwrap()).unwrap();
    let response = run(&module, settings(Duration::from_secs(5))).unwrap();
    assert_eq!(response.body, b"F");
}

#[test]
fn corrupted_cache_entry_is_compiled_again() {
    let dir = std::env::temp_dir().join(format!("edgefn-corrupt-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("module.wasm");
    let text = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;
    std::fs::write(&source, wat::parse_str(text).unwrap()).unwrap();
    let sha256 = "1".repeat(64);
    let cached = dir.join(format!("{sha256}-wasmtime-48.0.10.cwasm"));
    crate::engine::compile_to_file(&source, &cached).unwrap();
    let good = std::fs::read(&cached).unwrap();

    let mut corrupted = good.clone();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0xff;
    std::fs::write(&cached, &corrupted).unwrap();
    let module = crate::engine::compile(&source, &sha256, Some(&dir), None).unwrap();
    assert!(module.get_export("_start").is_some());
    assert_eq!(
        std::fs::read(&cached).unwrap(),
        good,
        "the entry was not written again"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
