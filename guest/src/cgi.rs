//! The request and response of a backend function, which edgefn runs as a CGI program over
//! WASI: the request arrives as environment variables and stdin, and the response leaves as
//! header lines, an empty line and the body on stdout.

use std::io::{self, Read, Write};

/// Reads the request, calls `handler` and writes the response it returns to stdout, which is
/// the whole life of a typical backend function. When reading stdin or writing stdout fails,
/// it writes the error to stderr and exits with status 1, so edgefn responds with a 500.
pub fn run(handler: impl FnOnce(&Request) -> Response) {
    let request = match Request::from_env() {
        Ok(request) => request,
        Err(error) => exit_with_error("reading the request body from stdin failed", &error),
    };

    let response = handler(&request);

    if let Err(error) = response.send() {
        exit_with_error("writing the response to stdout failed", &error);
    }
}

fn exit_with_error(action: &str, error: &io::Error) -> ! {
    eprintln!("{action}: {error}");
    std::process::exit(1)
}

/// The request to a backend function, read from the CGI variables and stdin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    /// Reads the request from the process environment and the whole of stdin. Environment
    /// entries that are not UTF-8 are converted with U+FFFD in place of the bad bytes.
    pub fn from_env() -> io::Result<Request> {
        let variables = std::env::vars_os().map(|(name, value)| {
            (
                name.to_string_lossy().into_owned(),
                value.to_string_lossy().into_owned(),
            )
        });

        let mut body = Vec::new();
        io::stdin().lock().read_to_end(&mut body)?;

        Ok(Request::from_parts(variables, body))
    }

    /// Builds the request from CGI variables and a body. `REQUEST_METHOD`, `PATH_INFO` and
    /// `QUERY_STRING` give the method, path and query. `CONTENT_TYPE`, `CONTENT_LENGTH` and
    /// every `HTTP_<NAME>` variable become headers, named in lower case with `-` for `_`.
    /// Other variables are ignored.
    pub fn from_parts(
        variables: impl IntoIterator<Item = (String, String)>,
        body: Vec<u8>,
    ) -> Request {
        let mut request = Request {
            body,
            ..Request::default()
        };
        for (name, value) in variables {
            match name.as_str() {
                "REQUEST_METHOD" => request.method = value,
                "PATH_INFO" => request.path = value,
                "QUERY_STRING" => request.query = value,
                "CONTENT_TYPE" => request.headers.push(("content-type".into(), value)),
                "CONTENT_LENGTH" => request.headers.push(("content-length".into(), value)),
                _ => {
                    if let Some(header) = name.strip_prefix("HTTP_") {
                        let header = header.to_ascii_lowercase().replace('_', "-");
                        request.headers.push((header, value));
                    }
                }
            }
        }
        request
    }

    /// Returns the method, such as `GET`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// Returns the path without the query, as sent (not percent-decoded).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Returns the query without the leading `?`, as sent (not percent-decoded).
    pub fn query(&self) -> &str {
        &self.query
    }

    /// Returns the value of the first `name=value` pair in the query whose name is `name`,
    /// as sent (not percent-decoded). A pair without `=` has the empty value.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(pair_name, _)| *pair_name == name)
            .map(|(_, value)| value)
    }

    /// Returns the value of the header `name`, compared without case. edgefn joins repeated
    /// headers with `, `. CGI names cannot tell `-` from `_`, so `x_a` and `x-a` both arrive
    /// as `x-a`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Returns the headers as `(name, value)` pairs, with names in lower case.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// Returns the body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// The response of a backend function, written to stdout by [`Response::send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// Creates a response with no headers and an empty body.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Creates a response with a `text/plain; charset=utf-8` body.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(body.into())
    }

    /// Appends a header. Repeating a name sends the header several times. edgefn drops the
    /// hop-by-hop headers `connection`, `transfer-encoding`, `keep-alive` and `upgrade`.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }

    /// Writes the response in CGI form: a `Status:` line, the header lines, an empty line
    /// and the body.
    ///
    /// Fails with [`io::ErrorKind::InvalidInput`], before writing anything, for a header that
    /// cannot be written as one line: an empty name, a name with `:` or whitespace, or a line
    /// break in the value. A header named `Status` fails too, because [`Response::new`] sets
    /// the status.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        for (name, value) in &self.headers {
            validate_header(name, value)?;
        }

        let mut head = format!("Status: {}\n", self.status);
        for (name, value) in &self.headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push('\n');
        }
        head.push('\n');

        out.write_all(head.as_bytes())?;
        out.write_all(&self.body)?;
        out.flush()
    }

    /// Writes the response to stdout. Call it once, as the function's whole output.
    pub fn send(&self) -> io::Result<()> {
        self.write_to(&mut io::stdout().lock())
    }
}

fn validate_header(name: &str, value: &str) -> io::Result<()> {
    let invalid = |reason: &str| {
        let message = format!("response header {name:?}: {value:?} is invalid: {reason}");
        Err(io::Error::new(io::ErrorKind::InvalidInput, message))
    };

    if name.is_empty() || name.contains(|c: char| c == ':' || c.is_whitespace()) {
        return invalid("a name must be non-empty, without `:` or whitespace");
    }
    if value.contains(['\r', '\n']) {
        return invalid("a value must not contain a line break");
    }
    if name.eq_ignore_ascii_case("status") {
        return invalid("set the status with Response::new");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(variables: &[(&str, &str)]) -> Request {
        let variables = variables
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()));
        Request::from_parts(variables, b"payload".to_vec())
    }

    fn written(response: &Response) -> io::Result<String> {
        let mut out = Vec::new();
        response.write_to(&mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn from_parts_reads_request_line() {
        let request = request(&[
            ("REQUEST_METHOD", "POST"),
            ("PATH_INFO", "/a%20b"),
            ("QUERY_STRING", "x=1"),
        ]);
        assert_eq!(request.method(), "POST");
        assert_eq!(request.path(), "/a%20b");
        assert_eq!(request.query(), "x=1");
        assert_eq!(request.body(), b"payload");
    }

    #[test]
    fn from_parts_maps_http_variables_to_headers() {
        let request = request(&[
            ("HTTP_X_ECHO", "hello"),
            ("HTTP_ACCEPT", "a, b"),
            ("CONTENT_TYPE", "text/plain"),
            ("CONTENT_LENGTH", "7"),
            ("GREETING", "not a header"),
            ("SERVER_NAME", "localhost"),
        ]);
        let expected = [
            ("x-echo", "hello"),
            ("accept", "a, b"),
            ("content-type", "text/plain"),
            ("content-length", "7"),
        ];
        let headers: Vec<(&str, &str)> = request
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        assert_eq!(headers, expected);
    }

    #[test]
    fn header_lookup_ignores_case() {
        let request = request(&[("HTTP_X_ECHO", "hello")]);
        assert_eq!(request.header("X-Echo"), Some("hello"));
        assert_eq!(request.header("x-missing"), None);
    }

    #[test]
    fn missing_variables_are_empty() {
        let request = request(&[]);
        assert_eq!(request.method(), "");
        assert_eq!(request.path(), "");
        assert_eq!(request.query(), "");
    }

    #[test]
    fn query_param_finds_pairs() {
        let request = request(&[("QUERY_STRING", "status=404&flag&kind=oob&kind=stack")]);
        assert_eq!(request.query_param("status"), Some("404"));
        assert_eq!(request.query_param("flag"), Some(""));
        assert_eq!(request.query_param("kind"), Some("oob"));
        assert_eq!(request.query_param("stat"), None);
    }

    #[test]
    fn query_param_on_empty_query() {
        assert_eq!(request(&[]).query_param("status"), None);
    }

    #[test]
    fn write_to_formats_cgi_output() {
        let response = Response::new(404).header("x-function", "echo").body("gone");
        assert_eq!(
            written(&response).unwrap(),
            "Status: 404\nx-function: echo\n\ngone"
        );
    }

    #[test]
    fn text_sets_content_type() {
        let output = written(&Response::text(200, "ok")).unwrap();
        assert_eq!(
            output,
            "Status: 200\ncontent-type: text/plain; charset=utf-8\n\nok"
        );
    }

    #[test]
    fn write_to_rejects_bad_headers() {
        let cases = [
            ("", "v"),
            ("a:b", "v"),
            ("a b", "v"),
            ("a", "v\r\nx: y"),
            ("Status", "500"),
        ];
        for (name, value) in cases {
            let mut out = Vec::new();
            let response = Response::new(200).header(name, value).body("body");
            let error = response.write_to(&mut out).unwrap_err();
            assert_eq!(
                error.kind(),
                io::ErrorKind::InvalidInput,
                "{name:?}: {value:?}"
            );
            assert!(out.is_empty(), "wrote output for {name:?}: {value:?}");
        }
    }
}
