//! A proxy-wasm filter with the benchmark's header job, the same as the Lua filter and the Go
//! plugin there: it reads request header `x-input` and adds its value to the response as
//! `x-saw`.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_http_context(|_context_id, _root_context_id| -> Box<dyn HttpContext> {
        Box::new(CopyHeader { input: None })
    });
}}

struct CopyHeader {
    /// The request's `x-input` value, kept for the response.
    input: Option<String>,
}

impl Context for CopyHeader {}

impl HttpContext for CopyHeader {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.input = self.get_http_request_header("x-input");
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(input) = &self.input {
            self.add_http_response_header("x-saw", input);
        }
        Action::Continue
    }
}
