//! Functions in `backend` mode: a WASI command that handles one request over CGI. The request
//! arrives in CGI environment variables and on stdin; the response leaves on stdout as CGI
//! header lines, an empty line and the body. `docs/wasm.md` documents the contract.

use std::sync::Arc;
use std::time::Instant;

use thiserror::Error;
use wasmtime::{InstancePre, Linker, Module, Store, StoreLimits, StoreLimitsBuilder, Trap};

use crate::engine::{deadline_ticks, engine};
use crate::host::{self, Capabilities, HostCtx};
use crate::kv::KvScope;
use crate::settings::FunctionSettings;
use crate::wasi::{self, ProcExit, WasiCtx};

/// Maximum stdout a function may write, in bytes.
pub const MAX_OUTPUT: usize = 16 << 20;
/// Maximum elements of one wasm table; host memory for tables is not covered by the memory
/// cap. Toolchains need a few thousand for indirect calls.
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// Maximum request body passed on stdin, in bytes.
pub const MAX_REQUEST_BODY: usize = 16 << 20;

/// Error that rejects a backend module at load.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error(
        "revision {revision:?}: the wasm module does not export `{export}`; a backend function \
         must be a WASI command (built for wasm32-wasip1 with a `main`)"
    )]
    MissingExport {
        revision: String,
        export: &'static str,
    },
    #[error(
        "revision {revision:?}: the wasm module imports edgefn.{import}, but {capability} is \
         false; set it to true or remove the import"
    )]
    CapabilityDisabled {
        revision: String,
        import: String,
        capability: &'static str,
    },
    #[error("revision {revision:?}: cannot link the wasm module: {message}")]
    Link { revision: String, message: String },
}

/// A request as a backend function receives it.
#[derive(Debug, Clone, Default)]
pub struct CgiRequest {
    pub method: String,
    /// The path with its query, as sent (`:path`).
    pub path: String,
    /// `http` or `https`.
    pub scheme: String,
    /// `HTTP/1.1` or `HTTP/2`.
    pub protocol: String,
    /// Header names in lower case, in arrival order; pseudo-headers are not included.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The client's address, when known.
    pub remote_addr: Option<String>,
}

/// A function's response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgiResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Error of a call that produced no response. [`RunError::status`] is the status the client
/// gets.
#[derive(Debug, Error)]
pub enum RunError {
    #[error("the function ran longer than spec.runtime.timeout ({0:?}) and was stopped")]
    TimedOut(std::time::Duration),
    #[error("the function trapped: {0}")]
    Trap(String),
    #[error("the function exited with code {0}")]
    Exit(i32),
    #[error("the function wrote more than {MAX_OUTPUT} bytes to stdout")]
    OutputTooLarge,
    #[error("the function's output is not a CGI response: {0}")]
    BadOutput(String),
    #[error("cannot instantiate the function: {0}")]
    Instantiate(String),
}

impl RunError {
    /// Returns the HTTP status the client gets for this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::TimedOut(_) => 504,
            _ => 500,
        }
    }
}

/// The state of one backend instance.
struct BackendState {
    wasi: WasiCtx,
    host: HostCtx,
    limits: StoreLimits,
}

/// A loaded backend function: its module linked once, instantiated per request.
pub struct BackendFunction {
    settings: Arc<FunctionSettings>,
    pre: InstancePre<BackendState>,
    kv: Option<KvScope>,
}

impl BackendFunction {
    /// Links `module` with WASI and the `edgefn` functions the settings allow, and checks that
    /// it is a WASI command.
    pub fn load(module: &Module, settings: FunctionSettings) -> Result<Self, LoadError> {
        let revision = settings.revision.clone();
        for export in ["_start", "memory"] {
            if module.get_export(export).is_none() {
                return Err(LoadError::MissingExport { revision, export });
            }
        }
        let capabilities = Capabilities {
            kv: settings.kv,
            fetch: settings.fetch,
        };
        if let Some((import, capability)) = host::disabled_import(module, capabilities) {
            return Err(LoadError::CapabilityDisabled {
                revision,
                import,
                capability,
            });
        }

        let link_error = |error: wasmtime::Error| LoadError::Link {
            revision: revision.clone(),
            message: format!("{error:#}"),
        };
        let mut linker: Linker<BackendState> = Linker::new(engine());
        wasi::add_to_linker(&mut linker, module, |state| &mut state.wasi).map_err(link_error)?;
        host::add_to_linker(&mut linker, capabilities, |state| &mut state.host)
            .map_err(link_error)?;
        let pre = linker.instantiate_pre(module).map_err(link_error)?;

        let kv = settings.kv.then(|| KvScope::open(&settings.revision));
        Ok(Self {
            settings: Arc::new(settings),
            pre,
            kv,
        })
    }

    /// Returns the revision's settings.
    pub fn settings(&self) -> &FunctionSettings {
        &self.settings
    }

    /// Runs the function for `request` on the calling thread, which it blocks for up to the
    /// revision's timeout.
    pub fn run(&self, request: &CgiRequest) -> Result<CgiResponse, RunError> {
        self.run_until(request, Instant::now() + self.settings.timeout)
    }

    /// Runs the function like [`BackendFunction::run`], but stops it at `deadline`, for a
    /// request that already waited for a thread.
    pub fn run_until(
        &self,
        request: &CgiRequest,
        deadline: Instant,
    ) -> Result<CgiResponse, RunError> {
        let timeout = self.settings.timeout;
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(RunError::TimedOut(timeout));
        }
        let env = cgi_environment(&self.settings, request);
        let state = BackendState {
            wasi: WasiCtx::new(
                &self.settings.revision,
                vec![self.settings.revision.clone()],
                &env,
                request.body.clone(),
                MAX_OUTPUT,
            ),
            host: HostCtx::new(Arc::clone(&self.settings), self.kv.clone(), deadline),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.settings.max_memory)
                .table_elements(MAX_TABLE_ELEMENTS)
                .instances(1)
                .build(),
        };
        let mut store = Store::new(engine(), state);
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(deadline_ticks(remaining));
        store.epoch_deadline_trap();

        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|error| RunError::Instantiate(format!("{error:#}")))?;
        let outcome = instance
            .get_typed_func::<(), ()>(&mut store, "_start")
            .and_then(|start| start.call(&mut store, ()));
        store.data_mut().wasi.flush_stderr();
        if let Err(error) = outcome {
            // `classify` returns None for proc_exit(0), which sends the response.
            if let Some(error) = classify(&error, timeout) {
                return Err(error);
            }
        }

        let stdout = store
            .data_mut()
            .wasi
            .take_stdout()
            .ok_or(RunError::OutputTooLarge)?;
        parse_output(&stdout)
    }
}

/// Maps a failed call to its [`RunError`]; `None` for `proc_exit(0)`.
fn classify(error: &wasmtime::Error, timeout: std::time::Duration) -> Option<RunError> {
    if let Some(exit) = error.downcast_ref::<ProcExit>() {
        return (exit.0 != 0).then_some(RunError::Exit(exit.0));
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        if *trap == Trap::Interrupt {
            return Some(RunError::TimedOut(timeout));
        }
        return Some(RunError::Trap(trap.to_string()));
    }
    Some(RunError::Trap(format!("{error:#}")))
}

/// Builds the environment of one call: `spec.env`, then the CGI variables.
fn cgi_environment(settings: &FunctionSettings, request: &CgiRequest) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = settings.env.clone();
    let mut set = |name: &str, value: String| {
        env.retain(|(key, _)| key != name);
        env.push((name.to_owned(), value));
    };

    let (path, query) = request
        .path
        .split_once('?')
        .unwrap_or((request.path.as_str(), ""));
    let authority = header_text(request, "host").unwrap_or_default();
    let (server_name, server_port) = split_authority(&authority, &request.scheme);
    set("REQUEST_METHOD", request.method.clone());
    set("PATH_INFO", path.to_owned());
    set("X_RAW_PATH_INFO", path.to_owned());
    set("QUERY_STRING", query.to_owned());
    set("SCRIPT_NAME", String::new());
    set(
        "X_FULL_URL",
        format!("{}://{}{}", request.scheme, authority, request.path),
    );
    set("SERVER_NAME", server_name);
    set("SERVER_PORT", server_port);
    set("SERVER_PROTOCOL", request.protocol.clone());
    set("SERVER_SOFTWARE", "edgefn".to_owned());
    set("GATEWAY_INTERFACE", "CGI/1.1".to_owned());
    if let Some(remote) = &request.remote_addr {
        set("REMOTE_ADDR", remote.clone());
    }
    if let Some(length) = header_text(request, "content-length") {
        set("CONTENT_LENGTH", length);
    } else if !request.body.is_empty() {
        set("CONTENT_LENGTH", request.body.len().to_string());
    }
    if let Some(content_type) = header_text(request, "content-type") {
        set("CONTENT_TYPE", content_type);
    }

    let mut joined: Vec<(String, String)> = Vec::new();
    for (name, value) in &request.headers {
        if matches!(name.as_str(), "content-length" | "content-type") || name.starts_with(':') {
            continue;
        }
        let variable = format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_"));
        let value = String::from_utf8_lossy(value).into_owned();
        match joined.iter_mut().find(|(key, _)| *key == variable) {
            Some((_, existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            None => joined.push((variable, value)),
        }
    }
    for (name, value) in joined {
        set(&name, value);
    }
    env
}

/// Returns the request header `name` as text, repeated values joined with `, `.
fn header_text(request: &CgiRequest, name: &str) -> Option<String> {
    let values: Vec<String> = request
        .headers
        .iter()
        .filter(|(key, _)| key == name)
        .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// Splits `host[:port]` (or `[v6]:port`), defaulting the port from the scheme.
fn split_authority(authority: &str, scheme: &str) -> (String, String) {
    let default_port = if scheme == "https" { "443" } else { "80" };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (host, port)
        }
        _ => (authority, default_port),
    };
    (host.to_owned(), port.to_owned())
}

/// Hop-by-hop headers a function may not set.
const HOP_BY_HOP: &[&str] = &["connection", "transfer-encoding", "keep-alive", "upgrade"];

/// Parses CGI output: header lines, an empty line, the body.
pub fn parse_output(output: &[u8]) -> Result<CgiResponse, RunError> {
    let (head, body) = split_head(output).ok_or_else(|| {
        RunError::BadOutput(
            "no empty line after the header lines; print headers, an empty line, then the body"
                .to_owned(),
        )
    })?;
    let head = std::str::from_utf8(head)
        .map_err(|_| RunError::BadOutput("the header lines are not UTF-8".to_owned()))?;

    let mut status = None;
    let mut headers = Vec::new();
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| RunError::BadOutput(format!("header line {line:?} has no ':'")))?;
        let name = name.trim();
        let value = value.trim();
        if value.bytes().any(|b| matches!(b, b'\r' | b'\0')) {
            return Err(RunError::BadOutput(format!(
                "the value of header {name:?} contains CR or NUL"
            )));
        }
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid_name {
            return Err(RunError::BadOutput(format!("invalid header name {name:?}")));
        }
        if name.eq_ignore_ascii_case("status") {
            status = Some(parse_status(value)?);
            continue;
        }
        let lower = name.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&lower.as_str()) {
            continue;
        }
        headers.push((lower, value.to_owned()));
    }

    let has_location = headers.iter().any(|(name, _)| name == "location");
    let status = status.unwrap_or(if has_location { 302 } else { 200 });
    // A 204 or 304 response has no body in HTTP, so bytes after the headers are dropped.
    let body = if matches!(status, 204 | 304) {
        Vec::new()
    } else {
        body.to_vec()
    };
    Ok(CgiResponse {
        status,
        headers,
        body,
    })
}

/// Splits output at the first empty line (`\n\n` or `\r\n\r\n`). Output that starts with an
/// empty line has no headers.
fn split_head(output: &[u8]) -> Option<(&[u8], &[u8])> {
    if let Some(body) = output
        .strip_prefix(b"\r\n")
        .or_else(|| output.strip_prefix(b"\n"))
    {
        return Some((&[], body));
    }
    let mut index = 0;
    while index < output.len() {
        if output[index] == b'\n' {
            let rest = &output[index + 1..];
            if let Some(body) = rest
                .strip_prefix(b"\r\n")
                .or_else(|| rest.strip_prefix(b"\n"))
            {
                return Some((&output[..index], body));
            }
        }
        index += 1;
    }
    None
}

fn parse_status(value: &str) -> Result<u16, RunError> {
    let code = value.split_whitespace().next().unwrap_or_default();
    match code.parse::<u16>() {
        Ok(status) if (200..=599).contains(&status) => Ok(status),
        _ => Err(RunError::BadOutput(format!(
            "Status {value:?} is not a code from 200 to 599"
        ))),
    }
}

#[cfg(test)]
#[path = "backend_tests.rs"]
mod tests;
