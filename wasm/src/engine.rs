//! The process-wide wasmtime engine and module compilation.
//!
//! One engine serves every revision: compiled code is tied to the engine's settings, and the
//! epoch counter that enforces `spec.runtime.timeout` is per engine. A background thread
//! advances the epoch every [`EPOCH_TICK`]; a call sets its deadline in ticks.
//!
//! Signal-based traps are off. Envoy and the Go runtime install their own SIGSEGV handlers in
//! the same process, so wasmtime checks bounds, stack and division explicitly instead of
//! catching faults. That costs some speed in generated code, and spares every wasm trap from
//! depending on the order the three runtimes installed their handlers.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use thiserror::Error;
use wasmtime::{Config, Engine, Module, OptLevel};

/// How often the epoch advances, so also the granularity of timeouts.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Maximum wasm stack of one call, in bytes. Deeper recursion traps with a stack overflow.
const MAX_WASM_STACK: usize = 1 << 20;

/// The wasmtime version compiled code in the cache was made by, part of the cache file name.
const WASMTIME_VERSION: &str = "48.0.10";

/// Error that rejects a module.
#[derive(Debug, Error)]
pub enum CompileError {
    #[error("cannot read the wasm module {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "{path} is not a WebAssembly binary (it does not start with \"\\0asm\"); \
         spec.code.wasmSource.url must point at a .wasm file"
    )]
    NotWasm { path: PathBuf },
    #[error("the wasm module {path} is invalid: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Returns the shared engine, creating it and starting the epoch ticker on first use.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let engine = Engine::new(&engine_config()).unwrap_or_else(|error| {
            panic!("edgefn's fixed wasmtime settings were rejected: {error}")
        });
        start_epoch_ticker(engine.clone());
        engine
    })
}

fn engine_config() -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.signals_based_traps(false);
    config.max_wasm_stack(MAX_WASM_STACK);
    config.cranelift_opt_level(OptLevel::Speed);
    // SAFETY: wasmtime requires these Cranelift flags off when signal-based traps are off,
    // because its Spectre mitigations rely on faulting loads.
    unsafe {
        config.cranelift_flag_set("enable_heap_access_spectre_mitigation", "false");
        config.cranelift_flag_set("enable_table_access_spectre_mitigation", "false");
    }
    config
}

fn start_epoch_ticker(engine: Engine) {
    let spawned = std::thread::Builder::new()
        .name("edgefn-wasm-epoch".to_owned())
        .spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            engine.increment_epoch();
        });
    if let Err(error) = spawned {
        // Without the ticker no deadline ever passes, so a looping function would hold its
        // thread forever; there is no safe way to run without it.
        panic!("cannot start the wasm epoch thread: {error}");
    }
}

/// Returns the epoch deadline, in ticks, for a call that may run for `timeout`.
pub fn deadline_ticks(timeout: Duration) -> u64 {
    let ticks = timeout.as_nanos() / EPOCH_TICK.as_nanos();
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
}

/// How long a compiler child process may run before it is stopped and the module is compiled
/// in this process instead.
const CHILD_COMPILE_TIMEOUT: Duration = Duration::from_secs(120);

/// Compiles the module at `path`, whose SHA-256 is `sha256`.
///
/// The compiled code is cached in `<compiled_dir>/<sha256>-wasmtime-<version>.cwasm` when
/// `compiled_dir` is given, and later calls load it from there instead of compiling. A cache
/// entry wasmtime does not accept (another engine setting or version) is compiled again.
///
/// With `compiler`, the path of the `edgefn` command, a cache miss is compiled by a child
/// process (`edgefn compile`) into the cache. Cranelift allocates tens of MiB while it
/// compiles, and an allocator such as Envoy's tcmalloc keeps those pages after they are freed,
/// so compiling in a child keeps them out of the proxy's resident memory. When the child fails,
/// the module is compiled in this process.
pub fn compile(
    path: &Path,
    sha256: &str,
    compiled_dir: Option<&Path>,
    compiler: Option<&Path>,
) -> Result<Module, CompileError> {
    let cached =
        compiled_dir.map(|dir| dir.join(format!("{sha256}-wasmtime-{WASMTIME_VERSION}.cwasm")));
    if let Some(cached) = &cached {
        if let Some(module) = load_compiled(cached) {
            return Ok(module);
        }
    }

    let bytes = read_wasm(path)?;
    if let (Some(cached), Some(compiler)) = (&cached, compiler) {
        if compile_in_child(compiler, path, cached) {
            if let Some(module) = load_compiled(cached) {
                return Ok(module);
            }
        }
    }

    let module = Module::new(engine(), &bytes).map_err(|error| CompileError::Invalid {
        path: path.to_owned(),
        message: format!("{error:#}"),
    })?;
    if let Some(cached) = &cached {
        match module.serialize() {
            Ok(compiled) => store_compiled(&compiled, cached),
            Err(error) => tracing::warn!("cannot serialize compiled wasm code: {error}"),
        }
    }
    Ok(module)
}

/// Compiles the module at `path` and writes the compiled code to `output`, which [`compile`]
/// loads as a cache entry. This is what `edgefn compile` runs.
pub fn compile_to_file(path: &Path, output: &Path) -> Result<(), CompileError> {
    let bytes = read_wasm(path)?;
    let compiled = engine()
        .precompile_module(&bytes)
        .map_err(|error| CompileError::Invalid {
            path: path.to_owned(),
            message: format!("{error:#}"),
        })?;
    store_compiled(&compiled, output);
    if output.is_file() {
        Ok(())
    } else {
        Err(CompileError::Read {
            path: output.to_owned(),
            error: std::io::Error::other("the compiled code could not be written"),
        })
    }
}

fn read_wasm(path: &Path) -> Result<Vec<u8>, CompileError> {
    let bytes = fs::read(path).map_err(|error| CompileError::Read {
        path: path.to_owned(),
        error,
    })?;
    if !bytes.starts_with(b"\0asm") {
        return Err(CompileError::NotWasm {
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

/// Runs `<compiler> compile --output <output> <path>`; returns whether it succeeded in time.
fn compile_in_child(compiler: &Path, path: &Path, output: &Path) -> bool {
    // The child's stderr goes to a file, not a pipe, so a child that writes much cannot block
    // on a full pipe while this side waits for it to exit.
    let stderr_path = output.with_extension(format!("stderr{}", std::process::id()));
    let stderr_file = output
        .parent()
        .map_or(Ok(()), fs::create_dir_all)
        .and_then(|()| fs::File::create(&stderr_path));
    let stderr = match stderr_file {
        Ok(file) => Stdio::from(file),
        Err(_) => Stdio::null(),
    };
    let spawned = Command::new(compiler)
        .arg("compile")
        .arg("--output")
        .arg(output)
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn();
    let succeeded = wait_for_compiler(compiler, spawned, &stderr_path);
    let _ = fs::remove_file(&stderr_path);
    succeeded
}

fn wait_for_compiler(
    compiler: &Path,
    spawned: std::io::Result<std::process::Child>,
    stderr_path: &Path,
) -> bool {
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            tracing::warn!(compiler = %compiler.display(), "compiling in this process: cannot start the compiler: {error}");
            return false;
        }
    };

    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return true,
            Ok(Some(status)) => {
                let mut message = String::new();
                if let Ok(file) = fs::File::open(stderr_path) {
                    let _ = file.take(4096).read_to_string(&mut message);
                }
                tracing::warn!(compiler = %compiler.display(), %status, "compiling in this process: the compiler failed: {}", message.trim());
                return false;
            }
            Ok(None) if started.elapsed() < CHILD_COMPILE_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                tracing::warn!(compiler = %compiler.display(), "compiling in this process: the compiler did not finish in {CHILD_COMPILE_TIMEOUT:?}");
                return false;
            }
        }
    }
}

/// Loads a cache entry, after checking its bytes against the SHA-256 that `store_compiled`
/// wrote beside it. The entry is read into memory, not mapped, so a file changed or truncated
/// on disk later cannot reach the loaded code.
fn load_compiled(path: &Path) -> Option<Module> {
    let bytes = fs::read(path).ok()?;
    let expected = fs::read_to_string(digest_path(path)).ok();
    if expected.as_deref().map(str::trim) != Some(hex_sha256(&bytes).as_str()) {
        tracing::warn!(path = %path.display(), "compiling again: cached code does not match its digest");
        return None;
    }
    // SAFETY: the bytes match the digest recorded when `store_compiled` wrote them, from a
    // module compiled with this engine's settings, in edgefn's cache directory, which the
    // loader requires to be owned by this user and writable by no one else. wasmtime checks
    // the version and settings they were built with and returns an error when they differ.
    match unsafe { Module::deserialize(engine(), &bytes) } {
        Ok(module) => Some(module),
        Err(error) => {
            tracing::warn!(path = %path.display(), "compiling again: cached code rejected: {error}");
            None
        }
    }
}

/// Writes a cache entry and, beside it, the SHA-256 of its bytes.
fn store_compiled(bytes: &[u8], path: &Path) {
    let write_atomically = |target: &Path, contents: &[u8]| -> std::io::Result<()> {
        if let Some(dir) = target.parent() {
            fs::create_dir_all(dir)?;
        }
        let temporary = target.with_extension(format!("tmp{}", std::process::id()));
        let mut file = fs::File::create(&temporary)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&temporary, target)
    };
    let result = write_atomically(path, bytes)
        .and_then(|()| write_atomically(&digest_path(path), hex_sha256(bytes).as_bytes()));
    if let Err(error) = result {
        tracing::warn!(path = %path.display(), "cannot cache compiled wasm code: {error}");
    }
}

fn digest_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
