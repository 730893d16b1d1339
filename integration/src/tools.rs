//! Finds the programs and files the integration tests run: the Envoy binary, the Go test
//! plugins and `libedgefn.so`. An environment variable overrides each default location.

use std::path::{Path, PathBuf};

/// Overrides the Envoy binary (default `<repo>/.work/bin/envoy`).
pub const ENVOY_ENV: &str = "EDGEFN_ENVOY";
/// Overrides the Go test plugins directory (default `<repo>/.work/plugins`).
pub const PLUGINS_DIR_ENV: &str = "EDGEFN_PLUGINS_DIR";
/// Overrides the `edgefn` command (default `<target dir>/debug/edgefn`).
pub const CLI_ENV: &str = "EDGEFN_CLI";
/// Overrides the wasm test modules directory (default `<repo>/.work/wasm`).
pub const WASM_DIR_ENV: &str = "EDGEFN_WASM_DIR";
/// Overrides the directory that contains `libedgefn.so` (default `<repo>/target/release`).
pub const MODULE_DIR_ENV: &str = "EDGEFN_MODULE_DIR";
/// File name Envoy looks for under `ENVOY_DYNAMIC_MODULES_SEARCH_PATH` for module `edgefn`.
pub const MODULE_FILE_NAME: &str = "libedgefn.so";

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(
        "Envoy binary not found at {path} (from {source_of_path}); run scripts/setup.sh, or set \
         {ENVOY_ENV} to an Envoy 1.40 binary"
    )]
    EnvoyMissing {
        path: PathBuf,
        source_of_path: &'static str,
    },
    #[error(
        "Go test plugin {path} not found (plugins directory from {source_of_path}); run \
         scripts/setup.sh, which builds the plugins with scripts/build-go-plugins.sh, or set \
         {PLUGINS_DIR_ENV}"
    )]
    PluginMissing {
        path: PathBuf,
        source_of_path: &'static str,
    },
    #[error("edgefn command {path} not found; run `cargo build -p edgefn-cli`, or set {CLI_ENV}")]
    CliMissing { path: PathBuf },
    #[error(
        "wasm test module {path} not found (directory from {source_of_path}); run \
         scripts/setup.sh, which builds the modules with scripts/build-wasm-guests.sh, or set \
         {WASM_DIR_ENV}"
    )]
    WasmMissing {
        path: PathBuf,
        source_of_path: &'static str,
    },
    #[error(
        "edgefn module {path} not found (module directory from {source_of_path}); run `cargo \
         build --release -p edgefn-filter`, or set {MODULE_DIR_ENV} to the directory that \
         contains {MODULE_FILE_NAME}"
    )]
    ModuleMissing {
        path: PathBuf,
        source_of_path: &'static str,
    },
}

/// Returns the repository root (the parent of this crate's directory).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the integration crate sits inside the repository")
}

/// Returns the Envoy binary, checking that it exists.
pub fn envoy_binary() -> Result<PathBuf, ToolError> {
    let (path, source_of_path) = from_env_or(ENVOY_ENV, ".work/bin/envoy");
    if path.is_file() {
        Ok(path)
    } else {
        Err(ToolError::EnvoyMissing {
            path,
            source_of_path,
        })
    }
}

/// Returns the path of Go test plugin `file_name` (for example `addheader.so`), checking that
/// it exists.
pub fn plugin_path(file_name: &str) -> Result<PathBuf, ToolError> {
    let (dir, source_of_path) = from_env_or(PLUGINS_DIR_ENV, ".work/plugins");
    let path = dir.join(file_name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ToolError::PluginMissing {
            path,
            source_of_path,
        })
    }
}

/// Returns the `edgefn` command, checking that it exists.
pub fn cli_binary() -> Result<PathBuf, ToolError> {
    let path = match std::env::var_os(CLI_ENV).filter(|value| !value.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .filter(|value| !value.is_empty())
            .map_or_else(|| repo_root().join("target"), PathBuf::from)
            .join("debug")
            .join("edgefn"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(ToolError::CliMissing { path })
    }
}

/// Returns the path of wasm test module `file_name` (for example `echo.wasm`), checking that
/// it exists.
pub fn wasm_path(file_name: &str) -> Result<PathBuf, ToolError> {
    let (dir, source_of_path) = from_env_or(WASM_DIR_ENV, ".work/wasm");
    let path = dir.join(file_name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ToolError::WasmMissing {
            path,
            source_of_path,
        })
    }
}

/// Returns the directory that contains `libedgefn.so`, checking that the file exists. Envoy gets it
/// as `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
pub fn module_dir() -> Result<PathBuf, ToolError> {
    let (dir, source_of_path) = from_env_or(MODULE_DIR_ENV, "target/release");
    let path = dir.join(MODULE_FILE_NAME);
    if path.is_file() {
        Ok(dir)
    } else {
        Err(ToolError::ModuleMissing {
            path,
            source_of_path,
        })
    }
}

/// Returns the path from environment variable `name` when it is set and not empty, otherwise
/// `default` under the repository root, with a description of where it came from.
fn from_env_or(name: &'static str, default: &str) -> (PathBuf, &'static str) {
    match std::env::var_os(name) {
        Some(value) if !value.is_empty() => (PathBuf::from(value), name),
        _ => (repo_root().join(default), "the default location"),
    }
}
