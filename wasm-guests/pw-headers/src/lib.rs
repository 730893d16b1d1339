//! A proxy-wasm filter for edgefn's tests, which also runs in Envoy's wasm filter.
//!
//! The plugin configuration is a UTF-8 string V. On request headers it adds
//! `x-wasm-request: V`, removes `x-remove-me`, and adds `x-wasm-path` (the `:path` header) and
//! `x-wasm-method` (the `request.method` property). A request with an `x-wasm-deny` header
//! gets a local 403 reply instead. On response headers it adds `x-wasm-response: V` and
//! replaces `x-upstream` with `replaced`.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(HeadersRoot { value: Rc::from("") })
    });
}}

struct HeadersRoot {
    value: Rc<str>,
}

impl Context for HeadersRoot {}

impl RootContext for HeadersRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let configuration = self.get_plugin_configuration().unwrap_or_default();
        match String::from_utf8(configuration) {
            Ok(value) => {
                self.value = Rc::from(value);
                true
            }
            Err(_) => {
                let _ = hostcalls::log(LogLevel::Error, "the configuration is not UTF-8");
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(HeadersFilter {
            context_id,
            value: self.value.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct HeadersFilter {
    context_id: u32,
    value: Rc<str>,
}

impl Context for HeadersFilter {}

impl HttpContext for HeadersFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.add_http_request_header("x-wasm-request", &self.value);
        self.remove_http_request_header("x-remove-me");

        let path = self.get_http_request_header(":path").unwrap_or_default();
        self.add_http_request_header("x-wasm-path", &path);
        let method = self
            .get_property(vec!["request", "method"])
            .map(|method| String::from_utf8_lossy(&method).into_owned())
            .unwrap_or_default();
        self.add_http_request_header("x-wasm-method", &method);

        let denied = self.get_http_request_header("x-wasm-deny").is_some();
        let message = format!(
            "pw-headers: context {} {method} {path} denied={denied}",
            self.context_id
        );
        let _ = hostcalls::log(LogLevel::Info, &message);

        if denied {
            self.send_http_response(
                403,
                vec![("x-wasm-denied", "yes")],
                Some(b"denied by wasm\n"),
            );
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.add_http_response_header("x-wasm-response", &self.value);
        self.set_http_response_header("x-upstream", Some("replaced"));
        Action::Continue
    }
}
