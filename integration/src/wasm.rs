//! EdgeFunctionRevisions of wasm modules, for the tests of edgefn's wasm runtime.

use serde_json::{json, Value};

use crate::tools;

/// Returns the path of wasm test module `file` as text, panicking with the set-up hint when it
/// is missing.
pub fn wasm_module(file: &str) -> String {
    let path = tools::wasm_path(file).unwrap_or_else(|error| panic!("{error}"));
    path.to_str()
        .expect("the repository path is UTF-8")
        .to_owned()
}

/// A revision whose code is `spec.code.wasmSource`.
#[derive(Debug, Clone)]
pub struct WasmRevision {
    pub name: String,
    /// `spec.mode`: `backend` or `filter`.
    pub mode: String,
    /// `spec.code.wasmSource.url`: a path or URL.
    pub url: String,
    pub env: Vec<(String, String)>,
    /// `spec.runtime.timeout`, such as `300ms`.
    pub timeout: Option<String>,
    pub fetch_api: Option<bool>,
    pub kv: Option<bool>,
    /// `spec.code.metadata.name`, the proxy-wasm root id, left out when `None`.
    pub code_name: Option<String>,
    /// `spec.runtime.port`, left out when `None`.
    pub port: Option<u16>,
    /// The `edgefn.dev/proxy-wasm-configuration` annotation, left out when `None`.
    pub configuration: Option<String>,
}

impl WasmRevision {
    /// Starts a revision in `mode` for the module at `url`.
    pub fn new(name: &str, mode: &str, url: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            mode: mode.to_owned(),
            url: url.into(),
            env: Vec::new(),
            timeout: None,
            fetch_api: None,
            kv: None,
            code_name: None,
            port: None,
            configuration: None,
        }
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the plugin configuration a proxy-wasm filter reads.
    pub fn configuration(mut self, configuration: &str) -> Self {
        self.configuration = Some(configuration.to_owned());
        self
    }

    pub fn timeout(mut self, timeout: &str) -> Self {
        self.timeout = Some(timeout.to_owned());
        self
    }

    pub fn capabilities(mut self, fetch_api: bool, kv: bool) -> Self {
        self.fetch_api = Some(fetch_api);
        self.kv = Some(kv);
        self
    }

    /// Builds the revision object as JSON.
    pub fn to_json(&self) -> Value {
        let mut runtime = json!({});
        if let Some(timeout) = &self.timeout {
            runtime["timeout"] = json!(timeout);
        }
        if let Some(port) = self.port {
            runtime["port"] = json!(port);
        }
        if self.fetch_api.is_some() || self.kv.is_some() {
            runtime["capabilities"] = json!({ "fetchAPI": self.fetch_api, "kv": self.kv });
        }
        let env: Vec<Value> = self
            .env
            .iter()
            .map(|(name, value)| json!({ "name": name, "value": value }))
            .collect();
        let mut code = json!({ "wasmSource": { "url": self.url } });
        if let Some(code_name) = &self.code_name {
            code["metadata"] = json!({ "name": code_name });
        }
        let mut metadata = json!({ "name": self.name });
        if let Some(configuration) = &self.configuration {
            metadata["annotations"] =
                json!({ "edgefn.dev/proxy-wasm-configuration": configuration });
        }
        json!({
            "apiVersion": "extensions.apoxy.dev/v1alpha2",
            "kind": "EdgeFunctionRevision",
            "metadata": metadata,
            "spec": {
                "mode": self.mode,
                "code": code,
                "env": env,
                "runtime": runtime,
            },
        })
    }

    /// Returns the revision as one line of JSON, for a `{{REVISION}}` placeholder.
    pub fn to_template_value(&self) -> String {
        self.to_json().to_string()
    }
}
