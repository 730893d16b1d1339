//! Outbound HTTP requests, through the host functions `fetch`, `response_status`,
//! `response_headers`, `response_body` and `response_close`.
//!
//! edgefn links these functions only for backend functions, and only when
//! `spec.runtime.capabilities.fetchAPI` is true (the default). A call blocks the function
//! until the whole response body has arrived or the function's deadline passes. A function
//! can have at most 16 open responses, and each response body is capped at 16 MiB.

use crate::error::{check, Error};
use crate::sys;

/// An outbound HTTP request, built step by step and sent with [`Request::send`].
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    /// Creates a request with no headers and an empty body. The URL's scheme must be `http` or
    /// `https`.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Request {
        Request {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Creates a `GET` request.
    pub fn get(url: impl Into<String>) -> Request {
        Request::new("GET", url)
    }

    /// Appends a header. Repeating a name sends the header several times.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sends the request and waits for the whole response.
    ///
    /// Errors:
    /// - [`Error::Invalid`]: a bad method, URL or header;
    /// - [`Error::Denied`]: a scheme other than `http` or `https`;
    /// - [`Error::Failed`]: the connection or the protocol failed;
    /// - [`Error::TimedOut`]: the function's deadline passed;
    /// - [`Error::TooLarge`]: the request or response is over its limit.
    ///
    /// NOTE: edgefn's contract does not say which error a 17th open response gets.
    pub fn send(&self) -> Result<Response, Error> {
        let headers = encode_headers(&self.headers)?;
        let handle = check(sys::fetch(&self.method, &self.url, &headers, &self.body))?;
        let handle = i32::try_from(handle).expect("check returns values that came from an i32");

        // The response owns the handle from here on, so an error below still closes it.
        let mut response = Response { handle, status: 0 };
        let status = check(sys::response_status(handle))?;
        response.status = u16::try_from(status).map_err(|_| {
            Error::Malformed(format!(
                "response_status returned {status}, which is not a u16"
            ))
        })?;
        Ok(response)
    }
}

/// A response to [`Request::send`]. Dropping it closes its host handle.
#[derive(Debug)]
pub struct Response {
    handle: i32,
    status: u16,
}

impl Response {
    /// Returns the status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Reads the headers as `(name, value)` pairs in the order the host returns them. Bytes
    /// that are not UTF-8 become U+FFFD.
    pub fn headers(&self) -> Result<Vec<(String, String)>, Error> {
        let text = sys::read_value(|buffer| sys::response_headers(self.handle, buffer))?;
        parse_headers(&String::from_utf8_lossy(&text))
    }

    /// Reads the body.
    pub fn body(&self) -> Result<Vec<u8>, Error> {
        sys::read_value(|buffer| sys::response_body(self.handle, buffer))
    }
}

impl Drop for Response {
    fn drop(&mut self) {
        // The handle came from `fetch` and is closed only here, so closing cannot fail.
        sys::response_close(self.handle);
    }
}

/// Encodes headers as the `fetch` import expects them: `Name: value` lines separated by `\n`.
///
/// Fails with [`Error::Invalid`] for a header the encoding cannot carry: an empty name, a name
/// with `:` or whitespace, or a line break in the name or value.
fn encode_headers(headers: &[(String, String)]) -> Result<String, Error> {
    let mut encoded = String::new();
    for (name, value) in headers {
        let bad_name = name.is_empty() || name.contains(|c: char| c == ':' || c.is_whitespace());
        if bad_name || value.contains(['\r', '\n']) {
            return Err(Error::Invalid);
        }

        if !encoded.is_empty() {
            encoded.push('\n');
        }
        encoded.push_str(name);
        encoded.push_str(": ");
        encoded.push_str(value);
    }
    Ok(encoded)
}

/// Parses the output of `response_headers`: `name: value` lines, each ending in `\n`. A `\r`
/// before the `\n` and the whitespace around the value are dropped.
fn parse_headers(text: &str) -> Result<Vec<(String, String)>, Error> {
    let mut headers = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(Error::Malformed(format!(
                "response_headers line {} has no `:`: {line:?}",
                index + 1
            )));
        };
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn parse_headers_lines() {
        let parsed = parse_headers("content-type: text/plain\nx-echo: a, b\n").unwrap();
        assert_eq!(
            parsed,
            pairs(&[("content-type", "text/plain"), ("x-echo", "a, b")])
        );
    }

    #[test]
    fn parse_headers_keeps_colon_in_value() {
        let parsed = parse_headers("location: http://127.0.0.1:8080/x\n").unwrap();
        assert_eq!(parsed, pairs(&[("location", "http://127.0.0.1:8080/x")]));
    }

    #[test]
    fn parse_headers_accepts_crlf_and_no_final_newline() {
        let parsed = parse_headers("a: 1\r\nb:2").unwrap();
        assert_eq!(parsed, pairs(&[("a", "1"), ("b", "2")]));
    }

    #[test]
    fn parse_headers_keeps_empty_value() {
        let parsed = parse_headers("x-empty: \n").unwrap();
        assert_eq!(parsed, pairs(&[("x-empty", "")]));
    }

    #[test]
    fn parse_headers_empty_text() {
        assert_eq!(parse_headers(""), Ok(Vec::new()));
    }

    #[test]
    fn parse_headers_rejects_line_without_colon() {
        let error = parse_headers("a: 1\nbroken\n").unwrap_err();
        assert!(error.to_string().contains("line 2"), "{error}");
    }

    #[test]
    fn encode_headers_joins_lines() {
        let encoded = encode_headers(&pairs(&[("X-Echo", "hi"), ("Accept", "*/*")])).unwrap();
        assert_eq!(encoded, "X-Echo: hi\nAccept: */*");
    }

    #[test]
    fn encode_headers_empty() {
        assert_eq!(encode_headers(&[]), Ok(String::new()));
    }

    #[test]
    fn encode_headers_rejects_unencodable() {
        let cases = [
            ("", "v"),
            ("a:b", "v"),
            ("a b", "v"),
            ("a\n", "v"),
            ("a", "v\nb: c"),
        ];
        for (name, value) in cases {
            let result = encode_headers(&pairs(&[(name, value)]));
            assert_eq!(result, Err(Error::Invalid), "header {name:?}: {value:?}");
        }
    }

    #[test]
    #[cfg(not(target_arch = "wasm32"))]
    fn send_without_host_is_unsupported() {
        let result = Request::get("http://127.0.0.1:1/").send();
        assert_eq!(result.unwrap_err(), Error::Unsupported);
    }
}
