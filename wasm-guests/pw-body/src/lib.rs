//! A proxy-wasm filter for edgefn's tests, which also runs in Envoy's wasm filter.
//!
//! It holds the response body until the end of the stream and replaces it with its ASCII
//! upper case (removing `content-length`, since a filter may change the length), and adds the
//! size of every complete request body to the counter `pw_body.request_body_bytes`.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};

/// The counter of request body bytes.
const REQUEST_BYTES_METRIC: &str = "pw_body.request_body_bytes";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(BodyRoot { request_bytes: 0 })
    });
}}

struct BodyRoot {
    request_bytes: u32,
}

impl Context for BodyRoot {}

impl RootContext for BodyRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        match hostcalls::define_metric(MetricType::Counter, REQUEST_BYTES_METRIC) {
            Ok(id) => {
                self.request_bytes = id;
                true
            }
            Err(status) => {
                let message = format!("cannot define {REQUEST_BYTES_METRIC}: {status:?}");
                let _ = hostcalls::log(LogLevel::Error, &message);
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(BodyFilter {
            request_bytes: self.request_bytes,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct BodyFilter {
    request_bytes: u32,
}

impl Context for BodyFilter {}

impl HttpContext for BodyFilter {
    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if end_of_stream && body_size > 0 {
            let size = i64::try_from(body_size).unwrap_or(i64::MAX);
            let _ = hostcalls::increment_metric(self.request_bytes, size);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.set_http_response_header("content-length", None);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        if let Some(body) = self.get_http_response_body(0, body_size) {
            self.set_http_response_body(0, body_size, &body.to_ascii_uppercase());
        }
        Action::Continue
    }
}
