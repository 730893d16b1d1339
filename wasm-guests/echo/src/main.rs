//! Backend test function that returns the request it received, one `name=value` line each:
//! method, path, query, the `x-echo` header, `GREETING` from the WASI environment and from the
//! host's `env_get`, and the body's length and text. It also adds the header
//! `x-function: echo`.
//!
//! Query `status=NNN` sets the status to NNN, any u16 (so `status=0` tests how edgefn treats an
//! invalid status), and `stderr=1` writes one line to stderr.

use edgefn_guest::cgi::{self, Request, Response};
use edgefn_guest::env;

fn main() {
    cgi::run(echo);
}

fn echo(request: &Request) -> Response {
    if request.query_param("stderr") == Some("1") {
        eprintln!("echo: this line is on stderr because the query has stderr=1");
    }

    let status = match request.query_param("status") {
        None => 200,
        Some(text) => match text.parse::<u16>() {
            Ok(status) => status,
            Err(_) => {
                let message = format!("invalid query status={text}: expected a number 0-65535\n");
                return Response::text(400, message).header("x-function", "echo");
            }
        },
    };

    let body = request.body();
    let lines = [
        format!("method={}", request.method()),
        format!("path={}", request.path()),
        format!("query={}", request.query()),
        format!("x-echo={}", request.header("x-echo").unwrap_or_default()),
        format!("greeting={}", std::env::var("GREETING").unwrap_or_default()),
        format!("greeting-host={}", env::get("GREETING").unwrap_or_default()),
        format!("body-length={}", body.len()),
        format!("body={}", String::from_utf8_lossy(body)),
    ];
    Response::text(status, lines.join("\n") + "\n").header("x-function", "echo")
}
