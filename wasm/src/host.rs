//! The `edgefn` import module: `env_get` always, the key-value functions with the `kv`
//! capability, and the outbound HTTP functions with the `fetchAPI` capability. Signatures and
//! error codes are documented in `docs/wasm.md`.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::{Caller, Linker};

use crate::fetch::{self, FetchError, FetchRequest, FetchResponse};
use crate::kv::{KvScope, PutError};
use crate::memory;
use crate::settings::FunctionSettings;

/// The import module name.
pub const MODULE: &str = "edgefn";

/// Error codes the functions return.
pub mod code {
    pub const NOT_FOUND: i32 = -1;
    pub const INVALID: i32 = -2;
    pub const TOO_LARGE: i32 = -3;
    pub const FAILED: i32 = -4;
    pub const TIMED_OUT: i32 = -5;
    pub const DENIED: i32 = -6;
}

/// Maximum responses a function keeps open at once.
pub const MAX_OPEN_RESPONSES: usize = 16;

/// Functions linked when the `kv` capability is on.
pub const KV_FUNCTIONS: &[&str] = &["kv_get", "kv_put", "kv_delete", "kv_list"];
/// Functions linked when the `fetchAPI` capability is on.
pub const FETCH_FUNCTIONS: &[&str] = &[
    "fetch",
    "response_status",
    "response_headers",
    "response_body",
    "response_close",
];

/// The host state of one instance.
pub struct HostCtx {
    settings: Arc<FunctionSettings>,
    kv: Option<KvScope>,
    deadline: Instant,
    responses: Vec<Option<FetchResponse>>,
}

impl HostCtx {
    /// Creates the state for a call that must end by `deadline` (which also bounds fetches).
    pub fn new(settings: Arc<FunctionSettings>, kv: Option<KvScope>, deadline: Instant) -> Self {
        Self {
            settings,
            kv,
            deadline,
            responses: Vec::new(),
        }
    }

    /// Moves the deadline, for an instance that serves several calls.
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
    }
}

/// The `edgefn` function groups to link.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    pub kv: bool,
    pub fetch: bool,
}

/// Adds the `edgefn` functions that `capabilities` allow to `linker`.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    capabilities: Capabilities,
    get: fn(&mut T) -> &mut HostCtx,
) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "env_get",
        move |mut caller: Caller<'_, T>, name_ptr: i32, name_len: i32, buf: i32, cap: i32| {
            let Some(name) = read_text(&mut caller, name_ptr, name_len) else {
                return code::INVALID;
            };
            let value = get(caller.data_mut())
                .settings
                .env_value(&name)
                .map(|value| value.as_bytes().to_vec());
            match value {
                Some(value) => copy_out(&mut caller, &value, buf, cap),
                None => code::NOT_FOUND,
            }
        },
    )?;
    if capabilities.kv {
        add_kv(linker, get)?;
    }
    if capabilities.fetch {
        add_fetch(linker, get)?;
    }
    Ok(())
}

/// Returns the import of `module` that names an `edgefn` function a disabled capability
/// would link, with the capability's field name.
pub fn disabled_import(
    module: &wasmtime::Module,
    capabilities: Capabilities,
) -> Option<(String, &'static str)> {
    module
        .imports()
        .filter(|import| import.module() == MODULE)
        .find_map(|import| {
            let name = import.name();
            if !capabilities.kv && KV_FUNCTIONS.contains(&name) {
                return Some((name.to_owned(), "spec.runtime.capabilities.kv"));
            }
            if !capabilities.fetch && FETCH_FUNCTIONS.contains(&name) {
                return Some((name.to_owned(), "spec.runtime.capabilities.fetchAPI"));
            }
            None
        })
}

fn add_kv<T: 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut HostCtx,
) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "kv_get",
        move |mut caller: Caller<'_, T>, key_ptr: i32, key_len: i32, buf: i32, cap: i32| {
            let Some(key) = memory::read(&mut caller, key_ptr, key_len) else {
                return code::INVALID;
            };
            let value = get(caller.data_mut())
                .kv
                .as_ref()
                .and_then(|kv| kv.get(&key));
            match value {
                Some(value) => copy_out(&mut caller, &value, buf, cap),
                None => code::NOT_FOUND,
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "kv_put",
        move |mut caller: Caller<'_, T>, key_ptr: i32, key_len: i32, ptr: i32, len: i32| {
            let (Some(key), Some(value)) = (
                memory::read(&mut caller, key_ptr, key_len),
                memory::read(&mut caller, ptr, len),
            ) else {
                return code::INVALID;
            };
            let Some(kv) = get(caller.data_mut()).kv.as_ref() else {
                return code::NOT_FOUND;
            };
            match kv.put(&key, &value) {
                Ok(()) => 0,
                Err(PutError::TooLarge) => code::TOO_LARGE,
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "kv_delete",
        move |mut caller: Caller<'_, T>, key_ptr: i32, key_len: i32| {
            let Some(key) = memory::read(&mut caller, key_ptr, key_len) else {
                return code::INVALID;
            };
            let deleted = get(caller.data_mut())
                .kv
                .as_ref()
                .is_some_and(|kv| kv.delete(&key));
            if deleted {
                0
            } else {
                code::NOT_FOUND
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "kv_list",
        move |mut caller: Caller<'_, T>, prefix_ptr: i32, prefix_len: i32, buf: i32, cap: i32| {
            let Some(prefix) = memory::read(&mut caller, prefix_ptr, prefix_len) else {
                return code::INVALID;
            };
            let keys = get(caller.data_mut())
                .kv
                .as_ref()
                .map(|kv| kv.list(&prefix))
                .unwrap_or_default();
            let mut encoded = Vec::new();
            for key in keys {
                encoded.extend_from_slice(&(key.len() as u32).to_le_bytes());
                encoded.extend_from_slice(&key);
            }
            copy_out(&mut caller, &encoded, buf, cap)
        },
    )?;
    Ok(())
}

fn add_fetch<T: 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut HostCtx,
) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "fetch",
        move |mut caller: Caller<'_, T>,
              method_ptr: i32,
              method_len: i32,
              url_ptr: i32,
              url_len: i32,
              headers_ptr: i32,
              headers_len: i32,
              body_ptr: i32,
              body_len: i32| {
            let method = (method_ptr, method_len);
            let url = (url_ptr, url_len);
            let headers = (headers_ptr, headers_len);
            let body = (body_ptr, body_len);
            let Some(request) = read_request(&mut caller, method, url, headers, body) else {
                return code::INVALID;
            };
            let ctx = get(caller.data_mut());
            let open = ctx.responses.iter().filter(|slot| slot.is_some()).count();
            if open >= MAX_OPEN_RESPONSES {
                return code::TOO_LARGE;
            }
            let url = request.url.clone();
            match fetch::fetch(request, ctx.deadline) {
                Ok(response) => store_response(ctx, response),
                Err(error) => {
                    tracing::debug!(revision = %ctx.settings.revision, %url, ?error, "fetch failed");
                    fetch_error_code(&error)
                }
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "response_status",
        move |mut caller: Caller<'_, T>, handle: i32| {
            response(get(caller.data_mut()), handle)
                .map_or(code::NOT_FOUND, |r| i32::from(r.status))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "response_headers",
        move |mut caller: Caller<'_, T>, handle: i32, buf: i32, cap: i32| {
            let Some(found) = response(get(caller.data_mut()), handle) else {
                return code::NOT_FOUND;
            };
            let mut text = Vec::new();
            for (name, value) in &found.headers {
                text.extend_from_slice(name.as_bytes());
                text.extend_from_slice(b": ");
                text.extend_from_slice(value);
                text.push(b'\n');
            }
            copy_out(&mut caller, &text, buf, cap)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "response_body",
        move |mut caller: Caller<'_, T>, handle: i32, buf: i32, cap: i32| {
            let Some(found) = response(get(caller.data_mut()), handle) else {
                return code::NOT_FOUND;
            };
            let body = found.body.clone();
            copy_out(&mut caller, &body, buf, cap)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "response_close",
        move |mut caller: Caller<'_, T>, handle: i32| {
            let ctx = get(caller.data_mut());
            match usize::try_from(handle)
                .ok()
                .and_then(|index| ctx.responses.get_mut(index))
            {
                Some(slot @ Some(_)) => {
                    *slot = None;
                    0
                }
                _ => code::NOT_FOUND,
            }
        },
    )?;
    Ok(())
}

fn read_request<T>(
    caller: &mut Caller<'_, T>,
    method: (i32, i32),
    url: (i32, i32),
    headers: (i32, i32),
    body: (i32, i32),
) -> Option<FetchRequest> {
    let method = read_text(caller, method.0, method.1)?;
    let url = read_text(caller, url.0, url.1)?;
    let header_text = read_text(caller, headers.0, headers.1)?;
    let body = memory::read(caller, body.0, body.1)?;
    let mut parsed = Vec::new();
    for line in header_text.lines().filter(|line| !line.trim().is_empty()) {
        let (name, value) = line.split_once(':')?;
        parsed.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    Some(FetchRequest {
        method,
        url,
        headers: parsed,
        body,
    })
}

fn store_response(ctx: &mut HostCtx, response: FetchResponse) -> i32 {
    let index = match ctx.responses.iter().position(Option::is_none) {
        Some(index) => index,
        None => {
            ctx.responses.push(None);
            ctx.responses.len() - 1
        }
    };
    ctx.responses[index] = Some(response);
    index as i32
}

fn response(ctx: &mut HostCtx, handle: i32) -> Option<&FetchResponse> {
    let index = usize::try_from(handle).ok()?;
    ctx.responses.get(index)?.as_ref()
}

fn fetch_error_code(error: &FetchError) -> i32 {
    match error {
        FetchError::Invalid(_) => code::INVALID,
        FetchError::Denied(_) => code::DENIED,
        FetchError::TooLarge => code::TOO_LARGE,
        FetchError::Failed(_) => code::FAILED,
        FetchError::TimedOut => code::TIMED_OUT,
    }
}

fn read_text<T>(caller: &mut Caller<'_, T>, ptr: i32, len: i32) -> Option<String> {
    String::from_utf8(memory::read(caller, ptr, len)?).ok()
}

/// Copies `value` to the guest's buffer when it fits, and returns its full length.
fn copy_out<T>(caller: &mut Caller<'_, T>, value: &[u8], buf: i32, cap: i32) -> i32 {
    let Ok(len) = i32::try_from(value.len()) else {
        return code::TOO_LARGE;
    };
    if len <= cap && !memory::write(caller, buf, value) {
        return code::INVALID;
    }
    len
}
