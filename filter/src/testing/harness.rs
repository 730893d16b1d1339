//! Drives one stream through the module's hooks the way Envoy would, with the fake Envoy and
//! the fake Go plugin installed on the current thread.

use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::abi::header_type;
use crate::config::{GoFilterConfig, ModuleConfig};
use crate::envoy::HeaderList;
use crate::hooks;
use crate::shared::{DECODE, ENCODE};
use crate::testing::envoy::{self, FilterToken};
use crate::testing::go;

/// Upper bound on the scheduler events delivered by one [`Harness::run_scheduled`].
const MAX_EVENTS: usize = 64;

/// One stream of a fresh filter config, with its own fake Envoy and fake Go plugin.
pub struct Harness {
    /// The test's own reference to the config, until [`Harness::release_config`]; the
    /// module and the fake Envoy hold others.
    config: Option<Arc<GoFilterConfig>>,
    /// The reference Envoy holds from `config_new` until `config_destroy`.
    envoy_config: Cell<Option<*const c_void>>,
    token: Box<FilterToken>,
    module: *const c_void,
    destroyed: Cell<bool>,
}

/// Converts header pairs given as text.
pub fn header_list(pairs: &[(&str, &str)]) -> HeaderList {
    pairs
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

/// Key and value bytes of a header list, as Envoy's `byteSize` counts them.
pub fn header_bytes(pairs: &[(&str, &str)]) -> u64 {
    pairs.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
}

impl Harness {
    /// Installs the fakes on this thread and creates a stream (`on_http_filter_new`).
    pub fn new() -> Self {
        envoy::install();
        go::install();
        let config = go::fake_config();
        let module_config = Box::new(ModuleConfig::Inline(Arc::clone(&config)));
        let envoy_config = Box::into_raw(module_config) as *const c_void;
        let token = FilterToken::for_current_thread();
        let filter = &*token as *const FilterToken as *mut c_void;
        let module = hooks::envoy_dynamic_module_on_http_filter_new(envoy_config, filter);
        Self {
            config: Some(config),
            envoy_config: Cell::new(Some(envoy_config)),
            token,
            module,
            destroyed: Cell::new(false),
        }
    }

    /// Returns the test's reference to the config.
    pub fn config(&self) -> &Arc<GoFilterConfig> {
        self.config
            .as_ref()
            .expect("the test released its config reference")
    }

    /// Drops the test's reference to the config, so only the module and Envoy keep it alive.
    pub fn release_config(&mut self) {
        self.config = None;
    }

    /// Returns the `filter_envoy_ptr` of the stream.
    pub fn filter(&self) -> *mut c_void {
        &*self.token as *const FilterToken as *mut c_void
    }

    /// Returns the module's stream pointer (NULL when `on_http_filter_new` failed).
    pub fn module(&self) -> *const c_void {
        self.module
    }

    pub fn request_headers(&self, headers: &[(&str, &str)], end_stream: bool) -> u32 {
        self.headers(DECODE, headers, end_stream)
    }

    pub fn response_headers(&self, headers: &[(&str, &str)], end_stream: bool) -> u32 {
        self.headers(ENCODE, headers, end_stream)
    }

    pub fn request_body(&self, chunk: &[u8], end_stream: bool) -> u32 {
        self.body(DECODE, chunk, end_stream)
    }

    pub fn response_body(&self, chunk: &[u8], end_stream: bool) -> u32 {
        self.body(ENCODE, chunk, end_stream)
    }

    pub fn request_trailers(&self, trailers: &[(&str, &str)]) -> u32 {
        self.trailers(DECODE, trailers)
    }

    /// Delivers the header hook of one direction and applies Envoy's reaction to its status.
    fn headers(&self, dir: usize, headers: &[(&str, &str)], end_stream: bool) -> u32 {
        let (kind, hook) = if dir == DECODE {
            (header_type::REQUEST_HEADER, "request_headers")
        } else {
            (header_type::RESPONSE_HEADER, "response_headers")
        };
        envoy::with(|fake| {
            fake.maps[kind as usize] = Some(header_list(headers));
            fake.hook = Some(hook);
        });

        let (filter, module) = (self.filter(), self.module);
        let status = if dir == DECODE {
            hooks::envoy_dynamic_module_on_http_filter_request_headers(filter, module, end_stream)
        } else {
            hooks::envoy_dynamic_module_on_http_filter_response_headers(filter, module, end_stream)
        };

        envoy::with(|fake| {
            fake.hook = None;
            fake.dirs[dir].after_headers(status);
        });
        status
    }

    /// Delivers one body chunk and applies Envoy's reaction to the status.
    fn body(&self, dir: usize, chunk: &[u8], end_stream: bool) -> u32 {
        let hook = if dir == DECODE {
            "request_body"
        } else {
            "response_body"
        };
        envoy::with(|fake| {
            fake.dirs[dir].received = Some(chunk.to_vec());
            fake.hook = Some(hook);
        });

        let (filter, module) = (self.filter(), self.module);
        let status = if dir == DECODE {
            hooks::envoy_dynamic_module_on_http_filter_request_body(filter, module, end_stream)
        } else {
            hooks::envoy_dynamic_module_on_http_filter_response_body(filter, module, end_stream)
        };

        envoy::with(|fake| {
            fake.hook = None;
            fake.dirs[dir].after_body(status);
        });
        status
    }

    /// Delivers trailers and applies Envoy's reaction to the status.
    fn trailers(&self, dir: usize, trailers: &[(&str, &str)]) -> u32 {
        let (kind, hook) = if dir == DECODE {
            (header_type::REQUEST_TRAILER, "request_trailers")
        } else {
            (header_type::RESPONSE_TRAILER, "response_trailers")
        };
        envoy::with(|fake| {
            fake.maps[kind as usize] = Some(header_list(trailers));
            fake.hook = Some(hook);
        });

        let (filter, module) = (self.filter(), self.module);
        let status = if dir == DECODE {
            hooks::envoy_dynamic_module_on_http_filter_request_trailers(filter, module)
        } else {
            hooks::envoy_dynamic_module_on_http_filter_response_trailers(filter, module)
        };

        envoy::with(|fake| {
            fake.hook = None;
            fake.dirs[dir].after_trailers(status);
        });
        status
    }

    /// Delivers pending scheduler events (`on_http_filter_scheduled`), one per commit, until
    /// none is left; returns how many ran.
    pub fn run_scheduled(&self) -> usize {
        let mut delivered = 0;
        for _ in 0..MAX_EVENTS {
            let ready = envoy::with(|fake| {
                let ready = fake.take_event();
                if ready {
                    fake.hook = Some("scheduled");
                }
                ready
            });
            if !ready {
                break;
            }
            hooks::envoy_dynamic_module_on_http_filter_scheduled(self.filter(), self.module, 0);
            envoy::with(|fake| fake.hook = None);
            delivered += 1;
        }
        delivered
    }

    /// Runs `on_http_filter_stream_complete`.
    pub fn stream_complete(&self) {
        envoy::with(|fake| fake.hook = Some("stream_complete"));
        hooks::envoy_dynamic_module_on_http_filter_stream_complete(self.filter(), self.module);
        envoy::with(|fake| fake.hook = None);
    }

    /// Runs `on_http_filter_destroy`; a second call repeats it, as a faulty host would.
    pub fn destroy(&self) {
        self.destroyed.set(true);
        envoy::with(|fake| fake.hook = Some("destroy"));
        hooks::envoy_dynamic_module_on_http_filter_destroy(self.module);
        envoy::with(|fake| fake.hook = None);
    }

    /// Runs `on_http_filter_config_destroy`, dropping Envoy's reference to the config.
    pub fn destroy_config(&self) {
        if let Some(raw) = self.envoy_config.take() {
            hooks::envoy_dynamic_module_on_http_filter_config_destroy(raw);
        }
    }

    /// Everything the fakes flagged: stream callbacks off the worker thread, callbacks the
    /// fake Envoy could not serve, continues from inside a stopping hook, scheduler commits
    /// after deletion, and the fake Go plugin's own findings.
    pub fn violations(&self) -> Vec<String> {
        let mut found = Vec::new();
        let off_thread = self.token.off_thread_calls.load(Ordering::Relaxed);
        if off_thread > 0 {
            found.push(format!(
                "{off_thread} stream callbacks off the worker thread"
            ));
        }
        let failed = self.token.failed_calls.load(Ordering::Relaxed);
        if failed > 0 {
            found.push(format!("{failed} callbacks the fake Envoy could not serve"));
        }
        let (continues, late_commits) = envoy::with(|fake| {
            let inside = fake
                .continues()
                .iter()
                .filter(|(_, hook)| *hook != Some("scheduled"))
                .count();
            (inside, fake.scheduler_commits().1)
        });
        if continues > 0 {
            found.push(format!("{continues} continue calls outside on_scheduled"));
        }
        if late_commits > 0 {
            found.push(format!("{late_commits} scheduler commits after deletion"));
        }
        let log = go::log();
        let log = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        found.extend(log.violations.iter().cloned());
        found
    }
}

impl Drop for Harness {
    /// Ends the stream and releases the config the way Envoy and Go would, so tests leak
    /// nothing whatever they stopped at.
    fn drop(&mut self) {
        if !self.destroyed.get() {
            hooks::envoy_dynamic_module_on_http_filter_destroy(self.module);
        }
        go::finalize_destroyed();
        self.destroy_config();
    }
}
