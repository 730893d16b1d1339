//! Backend test function for the host's key-value store. The path picks the call:
//! - `/incr/<key>` adds 1 to the decimal counter under the key (a missing key counts as 0)
//!   and returns the new value;
//! - `/get/<key>` returns the value, or 404;
//! - `/delete/<key>` deletes the key, or returns 404 when it is missing;
//! - `/list/<prefix>` returns the keys that start with the prefix, one a line.
//!
//! The key is the rest of the path as sent, `/` included and not percent-decoded. A failed
//! host call gets a 500 whose body is the error's text.

use edgefn_guest::cgi::{self, Request, Response};
use edgefn_guest::{kv, Error};

const USAGE: &str = "expected a path /incr/<key>, /get/<key>, /delete/<key> or /list/<prefix>\n";

fn main() {
    cgi::run(handle);
}

fn handle(request: &Request) -> Response {
    let route = request
        .path()
        .strip_prefix('/')
        .and_then(|path| path.split_once('/'));
    let Some((operation, key)) = route else {
        return Response::text(404, USAGE);
    };

    let result = match operation {
        "incr" => increment(key),
        "get" => get(key),
        "delete" => delete(key),
        "list" => list(key),
        _ => return Response::text(404, USAGE),
    };
    result.unwrap_or_else(|error| Response::text(500, format!("{error}\n")))
}

/// Adds 1 to the counter under `key`. Two concurrent requests can both read the old value, so
/// one increment can be lost: the store has no compare-and-swap.
fn increment(key: &str) -> Result<Response, Error> {
    let current = match kv::get(key)? {
        None => 0,
        Some(value) => match std::str::from_utf8(&value)
            .ok()
            .and_then(|t| t.parse().ok())
        {
            Some(counter) => counter,
            None => {
                let message = format!("the value under {key:?} is not a decimal u64 counter\n");
                return Ok(Response::text(409, message));
            }
        },
    };
    let Some(next) = u64::checked_add(current, 1) else {
        return Ok(Response::text(
            409,
            format!("the counter under {key:?} is at u64::MAX\n"),
        ));
    };

    kv::put(key, next.to_string().as_bytes())?;
    Ok(Response::text(200, next.to_string()))
}

fn get(key: &str) -> Result<Response, Error> {
    let response = match kv::get(key)? {
        Some(value) => Response::new(200)
            .header("content-type", "application/octet-stream")
            .body(value),
        None => Response::text(404, format!("no key {key:?}\n")),
    };
    Ok(response)
}

fn delete(key: &str) -> Result<Response, Error> {
    let response = if kv::delete(key)? {
        Response::text(200, "deleted\n")
    } else {
        Response::text(404, format!("no key {key:?}\n"))
    };
    Ok(response)
}

fn list(prefix: &str) -> Result<Response, Error> {
    let mut text = String::new();
    for key in kv::list(prefix)? {
        text.push_str(&key);
        text.push('\n');
    }
    Ok(Response::text(200, text))
}
