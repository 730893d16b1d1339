//! Backend test function for the host's `fetch`: it sends `GET` to the URL in the environment
//! variable `UPSTREAM_URL` (a trailing `/` dropped) followed by the request's path, forwarding
//! the request's `x-echo` header. It returns `fetched-status=<code>` and `fetched-body=<body>`
//! lines, or a 502 whose body is the fetch error's text.

use edgefn_guest::cgi::{self, Request, Response};
use edgefn_guest::{fetch, Error};

fn main() {
    cgi::run(fetch_upstream);
}

fn fetch_upstream(request: &Request) -> Response {
    let Ok(upstream) = std::env::var("UPSTREAM_URL") else {
        return Response::text(
            500,
            "UPSTREAM_URL is not set; add it to the revision's spec.env\n",
        );
    };
    let url = format!("{}{}", upstream.trim_end_matches('/'), request.path());

    let mut outbound = fetch::Request::get(url);
    if let Some(value) = request.header("x-echo") {
        outbound = outbound.header("x-echo", value);
    }

    match send(&outbound) {
        Ok((status, body)) => {
            let text = format!(
                "fetched-status={status}\nfetched-body={}\n",
                String::from_utf8_lossy(&body)
            );
            Response::text(200, text)
        }
        Err(error) => Response::text(502, error.to_string()),
    }
}

/// Sends the request and returns the status and body.
fn send(request: &fetch::Request) -> Result<(u16, Vec<u8>), Error> {
    let response = request.send()?;
    let body = response.body()?;
    Ok((response.status(), body))
}
