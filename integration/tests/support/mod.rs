//! Helpers shared by the robustness tests: plugin files, log checks, and raw HTTP/1.1 and
//! HTTP/2 clients that break off a request in ways hyper's client never does.
//!
//! Each test binary uses only some of these, so unused ones are allowed here.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use edgefn_integration::{log_tail, tools, Client, Envoy, Request};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Log lines shown when an assertion fails.
pub const TAIL: usize = 60;

/// Time a raw client waits for Envoy to respond before it reports a failure.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Log text that only a crash prints: Envoy's fatal signal handler ("Caught Segmentation fault,
/// suspect faulting address 0x0", then "Backtrace (use tools/stack_decode.py ...)") and the Go
/// runtime's "SIGSEGV: segmentation violation".
pub const CRASH_MARKERS: [&str; 3] = ["suspect faulting address", "Backtrace (use", "SIGSEGV"];

/// Line starts that only a crash of the Go runtime prints: "fatal error: ..." and, for a panic
/// nothing recovered, "panic: ...". A recovered panic's stack trace (from the SDK's
/// `RecoverPanic`) has neither, because its frames read `panic({...})`.
pub const CRASH_LINE_STARTS: [&str; 2] = ["fatal error:", "panic: "];

/// The message edgefn logs for each panic it caught inside one of its hooks.
pub const EDGEFN_PANIC_MARKER: &str = "edgefn panicked";

pub fn plugin_path(file_name: &str) -> PathBuf {
    tools::plugin_path(file_name).unwrap_or_else(|error| panic!("{error}"))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

pub fn tail(log: &str) -> &str {
    log_tail(log, TAIL)
}

/// Returns the log lines that contain every one of `needles`.
pub fn lines_with<'a>(log: &'a str, needles: &[&str]) -> Vec<&'a str> {
    log.lines()
        .filter(|line| needles.iter().all(|needle| line.contains(needle)))
        .collect()
}

/// Returns the log lines that show Envoy or the Go runtime crashing.
pub fn crash_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| {
            CRASH_MARKERS.iter().any(|marker| line.contains(marker))
                || CRASH_LINE_STARTS
                    .iter()
                    .any(|start| line.starts_with(start))
        })
        .collect()
}

/// Checks that Envoy still responds on its admin interface: `/ready` returns 200, which a
/// crashed process (a zombie until the harness reaps it) cannot do.
pub async fn assert_admin_ready(envoy: &Envoy) {
    let response = Client::http1(envoy.admin_addr())
        .send(Request::get("/ready"))
        .await;
    let status = response.as_ref().map(|response| response.status.as_u16());
    assert_eq!(
        status.ok(),
        Some(200),
        "admin /ready: {response:?}\n{}",
        tail(&envoy.log_text())
    );
}

/// Polls `read` every 100 ms until it returns true, at most `attempts` times. Returns whether
/// it did.
pub async fn wait_until(attempts: u32, mut read: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..attempts {
        if read().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

// === Raw HTTP/1.1 ===

/// Connects to `addr`, writes `bytes`, waits `linger` and closes the connection without
/// reading anything.
pub async fn write_and_close(addr: SocketAddr, bytes: &[u8], linger: Duration) {
    let mut stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|error| panic!("connecting to {addr}: {error}"));
    stream
        .write_all(bytes)
        .await
        .unwrap_or_else(|error| panic!("writing to {addr}: {error}"));
    tokio::time::sleep(linger).await;
    drop(stream);
}

/// Connects to `addr`, writes `bytes`, reads until the HTTP/1.1 status line is complete and
/// closes the connection. Returns the status line without its CRLF.
pub async fn write_and_read_status_line(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|error| panic!("connecting to {addr}: {error}"));
    stream
        .write_all(bytes)
        .await
        .unwrap_or_else(|error| panic!("writing to {addr}: {error}"));

    let mut received = Vec::new();
    let read_line = async {
        let mut chunk = [0u8; 512];
        while !received.windows(2).any(|pair| pair == b"\r\n") {
            let read = stream.read(&mut chunk).await?;
            if read == 0 {
                break;
            }
            received.extend_from_slice(&chunk[..read]);
        }
        Ok::<(), std::io::Error>(())
    };
    match tokio::time::timeout(READ_TIMEOUT, read_line).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => panic!("reading from {addr}: {error}"),
        Err(_) => panic!("{addr} sent no status line within {READ_TIMEOUT:?}"),
    }
    let text = String::from_utf8_lossy(&received);
    text.split("\r\n").next().unwrap_or_default().to_owned()
}

// === Raw HTTP/2 (prior knowledge, RFC 9113) ===

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADERS: u8 = 0x1;
const FRAME_RST_STREAM: u8 = 0x3;
const FRAME_SETTINGS: u8 = 0x4;
const FRAME_PING: u8 = 0x6;
const FRAME_GOAWAY: u8 = 0x7;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
/// RST_STREAM error code CANCEL: the client no longer wants the stream.
const ERROR_CANCEL: u32 = 0x8;
const PING_PAYLOAD: [u8; 8] = *b"edgefn!!";

fn h2_frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).expect("test frames are small");
    let mut frame = Vec::with_capacity(9 + payload.len());
    frame.extend_from_slice(&length.to_be_bytes()[1..]);
    frame.push(kind);
    frame.push(flags);
    frame.extend_from_slice(&stream_id.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Appends an HPACK "literal header field without indexing" whose name is entry
/// `name_index` of the static table, with a plain (not Huffman-coded) value of at most 126
/// bytes.
fn hpack_literal(block: &mut Vec<u8>, name_index: u8, value: &str) {
    let length = u8::try_from(value.len())
        .ok()
        .filter(|length| *length < 127)
        .expect("test header values are shorter than 127 bytes");
    block.push(name_index);
    block.push(length);
    block.extend_from_slice(value.as_bytes());
}

/// Returns the HPACK block of a `POST` request headers frame for `path`.
fn post_headers_block(authority: &str, path: &str) -> Vec<u8> {
    // Static table (RFC 7541 appendix A): 3 is `:method: POST`, 6 is `:scheme: http`,
    // 1 is the name `:authority` and 4 the name `:path`.
    let mut block = vec![0x80 | 3, 0x80 | 6];
    hpack_literal(&mut block, 1, authority);
    hpack_literal(&mut block, 4, path);
    block
}

/// Opens an HTTP/2 connection and sends the headers of a `POST` to `path` on stream 1 without
/// ending the stream, so a body is still due. Then waits `delay`, resets the stream with
/// CANCEL, and checks with a PING that the connection still works.
///
/// Panics if Envoy sends GOAWAY or closes the connection before it acknowledges the PING.
pub async fn h2_reset_after(addr: SocketAddr, path: &str, delay: Duration) {
    let mut stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|error| panic!("connecting to {addr}: {error}"));

    let mut opening = H2_PREFACE.to_vec();
    opening.extend(h2_frame(FRAME_SETTINGS, 0, 0, &[]));
    let block = post_headers_block(&addr.to_string(), path);
    opening.extend(h2_frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &block));
    stream.write_all(&opening).await.unwrap();

    tokio::time::sleep(delay).await;

    let mut closing = h2_frame(FRAME_RST_STREAM, 0, 1, &ERROR_CANCEL.to_be_bytes());
    closing.extend(h2_frame(FRAME_PING, 0, 0, &PING_PAYLOAD));
    stream.write_all(&closing).await.unwrap();

    let outcome = tokio::time::timeout(READ_TIMEOUT, read_until_ping_ack(&mut stream)).await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(error)) => panic!("HTTP/2 connection to {addr} after RST_STREAM: {error}"),
        Err(_) => panic!("{addr} did not acknowledge the PING within {READ_TIMEOUT:?}"),
    }
}

/// Reads frames until the acknowledgement of our PING, acknowledging the server's SETTINGS on
/// the way.
async fn read_until_ping_ack(stream: &mut TcpStream) -> Result<(), String> {
    loop {
        let mut header = [0u8; 9];
        stream
            .read_exact(&mut header)
            .await
            .map_err(|error| format!("reading a frame header failed: {error}"))?;
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let (kind, flags) = (header[3], header[4]);
        let mut payload = vec![0u8; length];
        stream
            .read_exact(&mut payload)
            .await
            .map_err(|error| format!("reading a frame payload failed: {error}"))?;

        match kind {
            FRAME_SETTINGS if flags & FLAG_ACK == 0 => {
                let ack = h2_frame(FRAME_SETTINGS, FLAG_ACK, 0, &[]);
                stream
                    .write_all(&ack)
                    .await
                    .map_err(|error| format!("acknowledging SETTINGS failed: {error}"))?;
            }
            FRAME_PING if flags & FLAG_ACK != 0 && payload == PING_PAYLOAD => return Ok(()),
            FRAME_GOAWAY => {
                let code = payload
                    .get(4..8)
                    .map(|bytes| u32::from_be_bytes(bytes.try_into().unwrap()));
                return Err(format!("the server sent GOAWAY with error code {code:?}"));
            }
            _ => {}
        }
    }
}
