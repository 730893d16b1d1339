//! Runs the integration tests' echo upstream, or their file server, until killed.
//!
//! ```text
//! echo-upstream [--port PORT]                   # echo each request back as JSON
//! echo-upstream [--port PORT] --serve-dir DIR   # serve the files under DIR
//! ```
//!
//! Both listen on 127.0.0.1 (port 0, the default, picks a free one) and print one line with
//! the URL once they accept connections.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use edgefn_integration::{EchoUpstream, FileServer};

const USAGE: &str = "usage: echo-upstream [--port PORT] [--serve-dir DIR]";

fn main() -> ExitCode {
    let (port, serve_dir) = match parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("echo-upstream: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    // Each server stops when its value is dropped, so keep it alive until the process ends.
    let (_server, line) = match serve_dir {
        None => match EchoUpstream::start_on_port(port) {
            Ok(echo) => {
                let line = format!("echo upstream listening on http://{}", echo.addr());
                (Box::new(echo) as Box<dyn std::any::Any>, line)
            }
            Err(error) => return fail(port, &error),
        },
        Some(dir) => match FileServer::start_on_port(&dir, port) {
            Ok(files) => {
                let line = format!("serving {} on http://{}", dir.display(), files.addr());
                (Box::new(files) as Box<dyn std::any::Any>, line)
            }
            Err(error) => return fail(port, &error),
        },
    };
    println!("{line}");
    let _ = std::io::stdout().flush();

    loop {
        std::thread::park();
    }
}

fn fail(port: u16, error: &std::io::Error) -> ExitCode {
    eprintln!("echo-upstream: listening on 127.0.0.1:{port} failed: {error}");
    ExitCode::FAILURE
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<(u16, Option<PathBuf>), String> {
    let mut port = 0;
    let mut serve_dir = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                let value = args.next().ok_or("--port needs a value")?;
                port = value
                    .parse()
                    .map_err(|_| format!("--port: invalid port {value:?}"))?;
            }
            "--serve-dir" => {
                let value = args.next().ok_or("--serve-dir needs a directory")?;
                let dir = PathBuf::from(value);
                if !dir.is_dir() {
                    return Err(format!("--serve-dir: {} is not a directory", dir.display()));
                }
                serve_dir = Some(dir);
            }
            "-h" | "--help" => return Err("help requested".to_owned()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok((port, serve_dir))
}
