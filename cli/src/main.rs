//! `edgefn`: publishes Go filter plugins to OCI registries in the layout edgefn and Apoxy pull,
//! pulls them into the edgefn cache ahead of time, and serves backend wasm functions.

mod run;

use std::io::{IsTerminal, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use edgefn_loader::oci::{push, PushOptions};
use edgefn_loader::{fetch_blocking, FetchOptions, OciCredentials, OciSource, Secret, Source};

#[derive(Parser)]
#[command(
    name = "edgefn",
    version,
    about = "Publish and fetch edgefn Go filter plugins, and serve backend wasm functions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Push plugin libraries to a registry and print the digest the tag now names. One file
    /// becomes an image manifest; several, one per architecture, become an image index.
    Push {
        /// Target reference: [host[:port]/]path[:tag]; the tag defaults to `latest`.
        reference: String,
        /// Plugin libraries built with `go build -buildmode=c-shared`; the architecture is
        /// read from each ELF header.
        #[arg(required = true, value_name = "FILE.so")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Pull a plugin into the cache, so Envoy finds it there, and print its digest and path.
    Pull {
        /// Reference: [host[:port]/]path[:tag] or [host[:port]/]path@sha256:<hex>.
        reference: String,
        /// Cache directory. Default: $EDGEFN_CACHE_DIR, else $XDG_CACHE_HOME/edgefn, else
        /// $HOME/.cache/edgefn, the same directory edgefn uses inside Envoy.
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Compile a wasm module into the code edgefn loads, as edgefn does inside Envoy when this
    /// command is installed beside libedgefn.so (or named by $EDGEFN_COMPILER).
    Compile {
        /// The .wasm module.
        #[arg(value_name = "MODULE.wasm")]
        module: PathBuf,
        /// Output file for the compiled code.
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Serve a backend wasm function (an EdgeFunctionRevision file, YAML or JSON) over HTTP,
    /// on 127.0.0.1 at spec.runtime.port (default 8080), until interrupted.
    Run {
        /// The revision file.
        #[arg(value_name = "REVISION")]
        file: PathBuf,
        /// Address to listen on instead, such as 0.0.0.0:8080.
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Cache directory for fetched and compiled modules; the same default as `pull`.
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
        /// Requests run at once; more get 503.
        #[arg(long, value_name = "N", default_value_t = 64)]
        max_concurrent: usize,
    },
}

#[derive(Args)]
struct RegistryArgs {
    /// User name for the registry.
    #[arg(long, short = 'u')]
    username: Option<String>,
    /// Read the password or token from standard input (one line; a trailing newline is
    /// removed). Needs --username.
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// Reach the registry over plain HTTP instead of https.
    #[arg(long)]
    insecure: bool,
    /// Time limit for the whole operation, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    timeout: u64,
}

impl RegistryArgs {
    fn password(&self) -> Result<Option<Secret>, String> {
        if !self.password_stdin {
            return Ok(None);
        }
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|error| format!("cannot read the password from standard input: {error}"))?;
        let password = text.strip_suffix('\n').unwrap_or(&text);
        let password = password.strip_suffix('\r').unwrap_or(password);
        if password.is_empty() {
            return Err("--password-stdin read an empty password".to_owned());
        }
        Ok(Some(Secret::new(password)))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` is a server, so its log shows each failed request; push and pull show warnings.
    let level = match cli.command {
        Command::Run { .. } => tracing_subscriber::filter::LevelFilter::INFO,
        _ => tracing_subscriber::filter::LevelFilter::WARN,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .init();

    let result = match cli.command {
        Command::Push {
            reference,
            files,
            registry,
        } => run_push(&reference, &files, &registry),
        Command::Pull {
            reference,
            cache_dir,
            registry,
        } => run_pull(&reference, cache_dir, &registry),
        Command::Compile { module, output } => {
            edgefn_wasm::engine::compile_to_file(&module, &output).map_err(|e| e.to_string())
        }
        Command::Run {
            file,
            listen,
            cache_dir,
            max_concurrent,
        } => run::run(
            &file,
            listen,
            &cache_dir.unwrap_or_else(default_cache_dir),
            max_concurrent,
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("edgefn: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Prints progress lines to standard error when it is a terminal, and nothing otherwise.
fn progress_printer() -> impl FnMut(&str) {
    let on_terminal = std::io::stderr().is_terminal();
    move |line: &str| {
        if on_terminal {
            eprintln!("{line}");
        }
    }
}

fn run_push(reference: &str, files: &[PathBuf], registry: &RegistryArgs) -> Result<(), String> {
    let options = PushOptions {
        username: registry.username.clone(),
        password: registry.password()?,
        insecure: registry.insecure,
        timeout: Duration::from_secs(registry.timeout),
        ..PushOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    let mut progress = progress_printer();
    let pushed = runtime
        .block_on(push(reference, files, &options, &mut progress))
        .map_err(|error| error.to_string())?;

    progress(&format!(
        "pushed {} ({}) as {}",
        pushed.reference,
        pushed.platforms.join(", "),
        pushed.digest
    ));
    println!("{}", pushed.digest);
    Ok(())
}

fn run_pull(
    reference: &str,
    cache_dir: Option<PathBuf>,
    registry: &RegistryArgs,
) -> Result<(), String> {
    let mut source = OciSource::from_reference(reference);
    if let Some(username) = &registry.username {
        source.credentials = Some(OciCredentials::Password {
            username: username.clone(),
            password: registry.password()?.unwrap_or_default(),
        });
    }

    let mut options = FetchOptions {
        timeout: Duration::from_secs(registry.timeout),
        ..FetchOptions::default()
    };
    options.cache_dir = cache_dir.unwrap_or_else(default_cache_dir);
    if registry.insecure {
        let host = source.registry().map_err(|error| error.to_string())?;
        options.insecure_registries.push(host);
    }

    let mut progress = progress_printer();
    progress(&format!(
        "pulling {source} into {}",
        options.cache_dir.display()
    ));
    let artifact = fetch_blocking(&Source::Oci(source), &options).map_err(|e| e.to_string())?;
    println!("sha256:{}\t{}", artifact.sha256, artifact.path.display());
    Ok(())
}

/// Returns the cache directory edgefn uses inside Envoy: `$EDGEFN_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/edgefn`, else `$HOME/.cache/edgefn`, else the loader's default.
fn default_cache_dir() -> PathBuf {
    let non_empty = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    if let Some(dir) = non_empty("EDGEFN_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = non_empty("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("edgefn");
    }
    if let Some(home) = non_empty("HOME") {
        return PathBuf::from(home).join(".cache").join("edgefn");
    }
    FetchOptions::default().cache_dir
}
