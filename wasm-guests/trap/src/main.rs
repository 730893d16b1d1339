//! Backend test function that fails the way query `kind` names, to test that edgefn responds
//! to each failure with a 500 for that request only:
//! - `kind=oob` reads a byte far past the end of linear memory;
//! - `kind=unreachable` executes the `unreachable` instruction;
//! - `kind=stack` recurses until the stack overflows;
//! - `kind=exit` exits with status 3.
//!
//! Any other query returns 200 `ok`. A failure that does not happen returns 200 with a body
//! that says so, so a test expecting a 500 shows what went wrong.

use std::hint::black_box;

use edgefn_guest::cgi::{self, Request, Response};

/// The size of a WebAssembly memory page in bytes.
const PAGE_SIZE: usize = 65_536;

fn main() {
    cgi::run(handle);
}

fn handle(request: &Request) -> Response {
    match request.query_param("kind") {
        Some("oob") => read_past_memory_end(),
        Some("unreachable") => core::arch::wasm32::unreachable(),
        Some("stack") => {
            let result = recurse(0);
            Response::text(
                200,
                format!("recursion returned {result} instead of trapping\n"),
            )
        }
        Some("exit") => std::process::exit(3),
        _ => Response::text(200, "ok"),
    }
}

fn read_past_memory_end() -> Response {
    let memory_end = core::arch::wasm32::memory_size(0) * PAGE_SIZE;
    // 1 GiB past the end. A wasm32 address is below 4 GiB, and edgefn's memory cap (128 MiB
    // unless raised) keeps the memory far below that, so the address is out of bounds.
    let address = memory_end.saturating_add(1 << 30);

    let pointer = std::ptr::with_exposed_provenance::<u8>(address);
    // SAFETY: none; this read is out of bounds on purpose. A wasm32 load outside linear memory
    // traps, and the trap ends the instance before the value reaches any Rust code.
    let value = unsafe { pointer.read_volatile() };

    let message = format!("read {value} at {address:#x}, past memory end {memory_end:#x}\n");
    Response::text(200, message)
}

/// Recurses until the call stack overflows. The `black_box` calls hide the depth from the
/// optimizer, and the addition after the inner call returns keeps it from becoming a tail call
/// or a loop.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return depth;
    }
    recurse(black_box(depth + 1)).wrapping_add(black_box(depth))
}
