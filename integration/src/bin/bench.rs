//! Compares Envoy with no filter, Envoy's Lua filter, edgefn running a Go plugin, edgefn
//! running a proxy-wasm plugin, and the same .wasm on Envoy's own wasm filter (V8), all doing
//! the same job: read one request header and add one response header.
//!
//! ```text
//! bench [--rounds N] [--duration SECONDS] [--connections N]
//! ```
//!
//! Five Envoys (`--concurrency 1`) proxy to one echo upstream on 127.0.0.1. `wrk` loads them
//! in turn, interleaved round by round, so a change in the machine's load affects every
//! configuration alike. For each configuration it prints requests per second and p50/p99
//! latency (medians over the rounds), and Envoy's CPU time per request. That is its user+system
//! time over all rounds divided by the requests, the steadiest figure on a shared machine. It
//! also prints Envoy's RSS after the last round and the ratios to no filter. It asserts nothing.

use std::process::{Command, ExitCode};
use std::time::Duration;

use edgefn_integration::{tools, Client, EchoUpstream, Envoy, Request, Revision, WasmRevision};

const USAGE: &str = "usage: bench [--rounds N] [--duration SECONDS] [--connections N]";

/// One configuration under test.
struct Subject {
    label: &'static str,
    envoy: Envoy,
    rounds: Vec<WrkResult>,
    cpu: Duration,
}

/// What one `wrk` run reported.
#[derive(Clone, Copy, Debug)]
struct WrkResult {
    requests: u64,
    requests_per_second: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
}

struct Settings {
    rounds: usize,
    duration: u64,
    connections: u32,
}

fn main() -> ExitCode {
    let settings = match parse_args(std::env::args().skip(1)) {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("bench: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a Tokio runtime starts");
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("bench: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> Result<(), String> {
    let upstream = EchoUpstream::start().map_err(|e| format!("echo upstream failed: {e}"))?;
    let plugin = tools::plugin_path("testplugins.so").map_err(|e| e.to_string())?;
    let revision = Revision::new(
        "copy-header-bench",
        "copy-header",
        &format!("file://{}", plugin.display()),
    )
    .plugin_config(r#"{"from": "x-input", "to": "x-saw"}"#);
    let wasm_file = tools::wasm_path("pw_copy_header.wasm").map_err(|e| e.to_string())?;
    let wasm_file = wasm_file.display().to_string();
    let wasm_revision = WasmRevision::new("copy-header-wasm-bench", "filter", wasm_file.clone());

    let mut subjects = vec![
        start(
            "no filter",
            Envoy::builder("no-filter.yaml"),
            upstream.port(),
        )
        .await?,
        start("lua", Envoy::builder("lua.yaml"), upstream.port()).await?,
        start(
            "edgefn+go",
            Envoy::builder("edgefn.yaml").revision(&revision),
            upstream.port(),
        )
        .await?,
        start(
            "edgefn+wasm",
            Envoy::builder("edgefn.yaml").var("REVISION", wasm_revision.to_template_value()),
            upstream.port(),
        )
        .await?,
        start(
            "envoy wasm",
            Envoy::builder("envoy-wasm.yaml")
                .var("WASM_FILE", &wasm_file)
                .var("WASM_NAME", "copy-header-wasm-bench")
                .var("WASM_ROOT_ID", "\"\"")
                .var("WASM_CONFIGURATION", "\"\""),
            upstream.port(),
        )
        .await?,
    ];
    check_jobs(&subjects).await?;

    println!(
        "rounds={} duration={}s connections={} (wrk -t1), Envoy --concurrency 1, machine: {}",
        settings.rounds,
        settings.duration,
        settings.connections,
        machine_description()
    );
    for round in 1..=settings.rounds {
        for subject in &mut subjects {
            let before = subject.envoy.cpu_time().map_err(|e| e.to_string())?;
            let result = run_wrk(&subject.envoy, &settings)?;
            let after = subject.envoy.cpu_time().map_err(|e| e.to_string())?;
            subject.cpu += after.saturating_sub(before);
            eprintln!(
                "round {round} {:<12} {:>9.0} req/s p50 {:>7.1} µs p99 {:>7.1} µs",
                subject.label,
                result.requests_per_second,
                micros(result.p50),
                micros(result.p99)
            );
            subject.rounds.push(result);
        }
    }

    print_report(&subjects)
}

async fn start(
    label: &'static str,
    builder: edgefn_integration::EnvoyBuilder,
    upstream_port: u16,
) -> Result<Subject, String> {
    let envoy = builder
        .var("UPSTREAM_PORT", upstream_port)
        .concurrency(1)
        .log_level("warn")
        .start()
        .await
        .map_err(|e| format!("{label}: Envoy did not start: {e}"))?;
    Ok(Subject {
        label,
        envoy,
        rounds: Vec::new(),
        cpu: Duration::ZERO,
    })
}

/// Sends one request through each Envoy and checks that the filter did its job, so the
/// benchmark never compares a configuration that silently does nothing.
async fn check_jobs(subjects: &[Subject]) -> Result<(), String> {
    let expected = [
        (None, ""),
        (Some("x-lua-saw"), "hi"),
        (Some("x-saw"), "hi"),
        (Some("x-saw"), "hi"),
        (Some("x-saw"), "hi"),
    ];
    for (subject, (header, value)) in subjects.iter().zip(expected) {
        let client = Client::http1(subject.envoy.listen_addr());
        let request = Request::get("/")
            .header("x-input", "hi")
            .header("x-lua-input", "hi");
        let response = client
            .send(request)
            .await
            .map_err(|e| format!("{}: {e}", subject.label))?;
        if response.status != 200 {
            return Err(format!(
                "{}: status {} instead of 200",
                subject.label, response.status
            ));
        }
        if let Some(header) = header {
            if response.header(header) != Some(value) {
                return Err(format!(
                    "{}: response header {header} missing",
                    subject.label
                ));
            }
        }
    }
    Ok(())
}

fn run_wrk(envoy: &Envoy, settings: &Settings) -> Result<WrkResult, String> {
    let url = format!("http://{}/", envoy.listen_addr());
    let output = Command::new("wrk")
        .args(["-t1", &format!("-c{}", settings.connections)])
        .arg(format!("-d{}s", settings.duration))
        .args([
            "--latency",
            "-H",
            "x-input: hi",
            "-H",
            "x-lua-input: hi",
            &url,
        ])
        .output()
        .map_err(|e| format!("failed to run wrk (install it with scripts/setup.sh): {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    parse_wrk(&text).ok_or_else(|| format!("could not read wrk's output:\n{text}"))
}

/// Reads the request count, rate and latency percentiles from `wrk --latency` output.
fn parse_wrk(text: &str) -> Option<WrkResult> {
    let mut result = WrkResult {
        requests: 0,
        requests_per_second: 0.0,
        p50: Duration::ZERO,
        p99: Duration::ZERO,
        errors: 0,
    };
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("50%"), Some(value)) => result.p50 = parse_latency(value)?,
            (Some("99%"), Some(value)) => result.p99 = parse_latency(value)?,
            (Some("Requests/sec:"), Some(value)) => {
                result.requests_per_second = value.parse().ok()?
            }
            (Some(count), Some("requests")) => result.requests = count.parse().ok()?,
            (Some("Non-2xx"), _) => {
                result.errors += line.rsplit(' ').next()?.parse::<u64>().ok()?;
            }
            (Some("Socket"), Some("errors:")) => result.errors += 1,
            _ => {}
        }
    }
    (result.requests > 0).then_some(result)
}

fn parse_latency(value: &str) -> Option<Duration> {
    let (number, unit) = value.split_at(value.find(|c: char| c.is_ascii_alphabetic())?);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

fn print_report(subjects: &[Subject]) -> Result<(), String> {
    println!(
        "\n{:<12} {:>10} {:>9} {:>9} {:>10} {:>8} | {:>7} {:>7} {:>11} {:>9}",
        "config",
        "req/s",
        "p50 µs",
        "p99 µs",
        "CPU µs/req",
        "RSS MiB",
        "rps ×",
        "p99 ×",
        "CPU +µs/req",
        "RSS +MiB"
    );
    let baseline = summarize(&subjects[0])?;
    for subject in subjects {
        let summary = summarize(subject)?;
        println!(
            "{:<12} {:>10.0} {:>9.1} {:>9.1} {:>10.2} {:>8.1} | {:>7.3} {:>7.3} {:>11.2} {:>9.1}",
            subject.label,
            summary.rps,
            summary.p50,
            summary.p99,
            summary.cpu_per_request,
            summary.rss_mib,
            summary.rps / baseline.rps,
            summary.p99 / baseline.p99,
            summary.cpu_per_request - baseline.cpu_per_request,
            summary.rss_mib - baseline.rss_mib
        );
        if summary.errors > 0 {
            println!(
                "  {}: {} non-2xx responses or socket errors",
                subject.label, summary.errors
            );
        }
    }
    Ok(())
}

struct Summary {
    rps: f64,
    p50: f64,
    p99: f64,
    cpu_per_request: f64,
    rss_mib: f64,
    errors: u64,
}

fn summarize(subject: &Subject) -> Result<Summary, String> {
    let requests: u64 = subject.rounds.iter().map(|r| r.requests).sum();
    let rss = subject.envoy.rss_bytes().map_err(|e| e.to_string())?;
    Ok(Summary {
        rps: median(subject.rounds.iter().map(|r| r.requests_per_second)),
        p50: median(subject.rounds.iter().map(|r| micros(r.p50))),
        p99: median(subject.rounds.iter().map(|r| micros(r.p99))),
        cpu_per_request: subject.cpu.as_secs_f64() * 1e6 / requests.max(1) as f64,
        rss_mib: rss as f64 / (1024.0 * 1024.0),
        errors: subject.rounds.iter().map(|r| r.errors).sum(),
    })
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn micros(value: Duration) -> f64 {
    value.as_secs_f64() * 1e6
}

fn machine_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Settings, String> {
    let mut settings = Settings {
        rounds: 3,
        duration: 5,
        connections: 16,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number: u64 = value
            .parse()
            .map_err(|_| format!("{flag}: {value:?} is not a number"))?;
        match flag.as_str() {
            "--rounds" => settings.rounds = number.max(1) as usize,
            "--duration" => settings.duration = number.max(1),
            "--connections" => settings.connections = number.max(1) as u32,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(settings)
}
