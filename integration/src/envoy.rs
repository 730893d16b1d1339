//! Runs the real Envoy binary on a config rendered from `envoy-configs/`.

use std::fs::OpenOptions;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use hyper::StatusCode;
use tempfile::TempDir;

use crate::client::{Client, ClientError, Request};
use crate::config::{self, free_port, ConfigError, Revision};
use crate::tools::{self, ToolError};

/// Time Envoy gets to become ready (`start`), or to exit (`start_expecting_failure`,
/// `validate`). It is generous because fetching and loading a Go plugin on a loaded machine can
/// take seconds.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(90);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Attempts at starting Envoy when a port picked by [`free_port`] was taken in the meantime.
const BIND_ATTEMPTS: usize = 3;
/// Log lines kept in error messages.
const LOG_TAIL_LINES: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum EnvoyError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{action} failed: {source}")]
    Io { action: String, source: io::Error },
    #[error("Envoy exited with {status} before it became ready; log tail:\n{log_tail}")]
    Exited {
        status: ExitStatus,
        log_tail: String,
    },
    #[error("Envoy did not {expected} within {timeout:?}; log tail:\n{log_tail}")]
    Timeout {
        expected: &'static str,
        timeout: Duration,
        log_tail: String,
    },
    #[error(
        "Envoy became ready but the test expected it to reject the config; log tail:\n{log_tail}"
    )]
    UnexpectedlyReady { log_tail: String },
    #[error("Envoy admin request {path} failed: {source}")]
    Admin { path: String, source: ClientError },
    #[error("Envoy admin request {path} returned {status}: {body}")]
    AdminStatus {
        path: String,
        status: StatusCode,
        body: String,
    },
    #[error("reading {path} failed: {reason}")]
    Proc { path: String, reason: String },
}

fn io_error(action: impl Into<String>) -> impl FnOnce(io::Error) -> EnvoyError {
    let action = action.into();
    move |source| EnvoyError::Io { action, source }
}

/// The result of `envoy --mode validate`.
#[derive(Debug)]
pub struct ValidateOutcome {
    pub status: ExitStatus,
    /// Everything Envoy wrote to stdout and stderr.
    pub output: String,
}

/// An Envoy that exited before it became ready, as a test expected.
#[derive(Debug)]
pub struct FailedStart {
    pub status: ExitStatus,
    /// Everything Envoy wrote to stdout and stderr.
    pub log: String,
}

/// Settings for one Envoy run: the template under `envoy-configs/`, its placeholder values and
/// the command line. `{{LISTEN_PORT}}` and `{{ADMIN_PORT}}` are filled in with free ports.
#[derive(Debug, Clone)]
pub struct EnvoyBuilder {
    template: String,
    vars: Vec<(String, String)>,
    concurrency: u32,
    log_level: String,
    env: Vec<(String, String)>,
}

impl EnvoyBuilder {
    /// Starts settings for template `envoy-configs/<template>`, with `--concurrency 1` and
    /// `--log-level info`.
    pub fn new(template: &str) -> Self {
        Self {
            template: template.to_owned(),
            vars: Vec::new(),
            concurrency: 1,
            log_level: "info".to_owned(),
            env: Vec::new(),
        }
    }

    /// Sets placeholder `{{name}}` to `value`.
    pub fn var(mut self, name: &str, value: impl ToString) -> Self {
        self.vars.push((name.to_owned(), value.to_string()));
        self
    }

    /// Sets `{{REVISION}}` to `revision` as JSON.
    pub fn revision(self, revision: &Revision) -> Self {
        self.var("REVISION", revision.to_template_value())
    }

    /// Sets `--concurrency`, the number of worker threads.
    pub fn concurrency(mut self, workers: u32) -> Self {
        self.concurrency = workers;
        self
    }

    /// Sets `--log-level` (trace, debug, info, warning, error, critical, off).
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_owned();
        self
    }

    /// Adds an environment variable for the Envoy process.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Renders the template with the given ports for `{{LISTEN_PORT}}` and `{{ADMIN_PORT}}`.
    pub fn render(&self, listen_port: u16, admin_port: u16) -> Result<String, EnvoyError> {
        let template = config::load_template(&self.template)?;
        let mut vars = vec![
            ("LISTEN_PORT".to_owned(), listen_port.to_string()),
            ("ADMIN_PORT".to_owned(), admin_port.to_string()),
        ];
        vars.extend(self.vars.iter().cloned());
        Ok(config::render(&self.template, &template, &vars)?)
    }

    /// Starts Envoy and waits until its admin `/ready` returns 200.
    pub async fn start(self) -> Result<Envoy, EnvoyError> {
        let mut attempt = 1;
        loop {
            let run = Run::prepare(&self)?;
            let listen_addr = SocketAddr::from(([127, 0, 0, 1], run.listen_port));
            let admin_addr = SocketAddr::from(([127, 0, 0, 1], run.admin_port));
            let child = run.spawn(&self, &[])?;
            let mut envoy = Envoy {
                child,
                run,
                listen_addr,
                admin_addr,
            };

            match envoy.wait_ready().await {
                Ok(()) => {
                    tracing::debug!(pid = envoy.pid(), %listen_addr, "Envoy is ready");
                    return Ok(envoy);
                }
                Err(EnvoyError::Exited { log_tail, .. })
                    if attempt < BIND_ATTEMPTS && log_tail.contains("Address already in use") =>
                {
                    tracing::debug!(attempt, "a picked port was taken; starting Envoy again");
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Starts Envoy on a config it is expected to reject, and returns its exit status and log.
    /// Fails if Envoy becomes ready instead.
    pub async fn start_expecting_failure(self) -> Result<FailedStart, EnvoyError> {
        let run = Run::prepare(&self)?;
        let admin_addr = SocketAddr::from(([127, 0, 0, 1], run.admin_port));
        let mut child = run.spawn(&self, &[])?;
        let deadline = Instant::now() + PROCESS_TIMEOUT;

        while Instant::now() < deadline {
            if let Some(status) = try_wait(&mut child)? {
                return Ok(FailedStart {
                    status,
                    log: run.log_text(),
                });
            }
            if admin_ready(admin_addr).await {
                stop(&mut child);
                return Err(EnvoyError::UnexpectedlyReady {
                    log_tail: run.log_tail(),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }

        stop(&mut child);
        Err(EnvoyError::Timeout {
            expected: "exit",
            timeout: PROCESS_TIMEOUT,
            log_tail: run.log_tail(),
        })
    }

    /// Renders the config and runs `envoy --mode validate` on it.
    pub async fn validate(self) -> Result<ValidateOutcome, EnvoyError> {
        let run = Run::prepare(&self)?;
        run_validate(&self, run).await
    }
}

async fn run_validate(builder: &EnvoyBuilder, run: Run) -> Result<ValidateOutcome, EnvoyError> {
    let mut child = run.spawn(builder, &["--mode", "validate"])?;
    let deadline = Instant::now() + PROCESS_TIMEOUT;

    while Instant::now() < deadline {
        if let Some(status) = try_wait(&mut child)? {
            return Ok(ValidateOutcome {
                status,
                output: run.log_text(),
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }

    stop(&mut child);
    Err(EnvoyError::Timeout {
        expected: "finish validating",
        timeout: PROCESS_TIMEOUT,
        log_tail: run.log_tail(),
    })
}

/// The files of one Envoy run, in a temporary directory removed on drop: `envoy.yaml`,
/// `envoy.log` (stdout and stderr) and `cache/` (`EDGEFN_CACHE_DIR`).
#[derive(Debug)]
struct Run {
    dir: TempDir,
    listen_port: u16,
    admin_port: u16,
    uses_edgefn: bool,
}

impl Run {
    fn prepare(builder: &EnvoyBuilder) -> Result<Self, EnvoyError> {
        let listen_port = free_port()?;
        let admin_port = free_port()?;
        let config = builder.render(listen_port, admin_port)?;
        Self::create(&config, listen_port, admin_port)
    }

    fn create(config: &str, listen_port: u16, admin_port: u16) -> Result<Self, EnvoyError> {
        let dir = tempfile::Builder::new()
            .prefix("edgefn-envoy-")
            .tempdir()
            .map_err(io_error("creating a temporary directory for Envoy"))?;
        let config_path = dir.path().join("envoy.yaml");
        std::fs::write(&config_path, config)
            .map_err(io_error(format!("writing {}", config_path.display())))?;
        let cache_dir = dir.path().join("cache");
        std::fs::create_dir(&cache_dir)
            .map_err(io_error(format!("creating {}", cache_dir.display())))?;

        let uses_edgefn = config.contains("envoy.filters.http.dynamic_modules");
        Ok(Self {
            dir,
            listen_port,
            admin_port,
            uses_edgefn,
        })
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("envoy.log")
    }

    fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn log_text(&self) -> String {
        read_lossy(&self.log_path())
    }

    fn log_tail(&self) -> String {
        log_tail(&self.log_text(), LOG_TAIL_LINES).to_owned()
    }

    fn spawn(&self, builder: &EnvoyBuilder, extra_args: &[&str]) -> Result<Child, EnvoyError> {
        let envoy = tools::envoy_binary()?;
        let log_path = self.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_error(format!("opening {}", log_path.display())))?;
        let log_for_stderr = log
            .try_clone()
            .map_err(io_error(format!("duplicating {}", log_path.display())))?;

        let mut command = Command::new(&envoy);
        command
            .arg("--config-path")
            .arg(self.dir.path().join("envoy.yaml"))
            .arg("--concurrency")
            .arg(builder.concurrency.to_string())
            .arg("--log-level")
            .arg(&builder.log_level)
            .arg("--component-log-level")
            .arg("dynamic_modules:debug")
            // Several Envoys run at once in tests; hot restart would make them share memory.
            .arg("--disable-hot-restart")
            .args(extra_args)
            .env("EDGEFN_CACHE_DIR", self.cache_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_for_stderr));
        if self.uses_edgefn {
            command.env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", tools::module_dir()?);
        }
        for (name, value) in &builder.env {
            command.env(name, value);
        }

        let child = command
            .spawn()
            .map_err(io_error(format!("starting {}", envoy.display())))?;
        tracing::debug!(
            pid = child.id(),
            template = %builder.template,
            run_dir = %self.dir.path().display(),
            "started Envoy"
        );
        Ok(child)
    }
}

/// A running Envoy. Dropping it kills the process and removes its run directory.
#[derive(Debug)]
pub struct Envoy {
    child: Child,
    run: Run,
    listen_addr: SocketAddr,
    admin_addr: SocketAddr,
}

impl Envoy {
    /// Starts settings for template `envoy-configs/<template>`; see [`EnvoyBuilder`].
    pub fn builder(template: &str) -> EnvoyBuilder {
        EnvoyBuilder::new(template)
    }

    /// Runs `envoy --mode validate` on an already rendered config, with `--concurrency 1` and
    /// `--log-level info`.
    pub async fn validate(config_yaml: &str) -> Result<ValidateOutcome, EnvoyError> {
        let run = Run::create(config_yaml, 0, 0)?;
        run_validate(&EnvoyBuilder::new("(inline config)"), run).await
    }

    /// Returns the address of the listener on `{{LISTEN_PORT}}`.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    /// Returns the admin address on `{{ADMIN_PORT}}`.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Returns this run's `EDGEFN_CACHE_DIR`.
    pub fn cache_dir(&self) -> PathBuf {
        self.run.cache_dir()
    }

    pub fn log_path(&self) -> PathBuf {
        self.run.log_path()
    }

    /// Returns everything Envoy has logged so far.
    pub fn log_text(&self) -> String {
        self.run.log_text()
    }

    /// Returns the admin `/stats` text, one `name: value` a line.
    pub async fn stats_text(&self) -> Result<String, EnvoyError> {
        self.admin_get("/stats").await
    }

    /// Returns the value of counter or gauge `name`, or `None` when Envoy has no such stat.
    pub async fn stat(&self, name: &str) -> Result<Option<u64>, EnvoyError> {
        let text = self.stats_text().await?;
        let value = text.lines().find_map(|line| {
            let (stat_name, value) = line.split_once(": ")?;
            (stat_name == name)
                .then(|| value.trim().parse::<u64>().ok())
                .flatten()
        });
        Ok(value)
    }

    /// Returns the resident set size from `/proc/<pid>/status` (`VmRSS`).
    pub fn rss_bytes(&self) -> Result<u64, EnvoyError> {
        let path = format!("/proc/{}/status", self.pid());
        let status = read_proc(&path)?;
        let kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|number| number.trim().parse::<u64>().ok())
            .ok_or_else(|| EnvoyError::Proc {
                path: path.clone(),
                reason: "no `VmRSS: N kB` line".to_owned(),
            })?;
        Ok(kib * 1024)
    }

    /// Returns the user plus system CPU time of all Envoy threads, from `/proc/<pid>/stat`.
    pub fn cpu_time(&self) -> Result<Duration, EnvoyError> {
        let path = format!("/proc/{}/stat", self.pid());
        let stat = read_proc(&path)?;
        let invalid = || EnvoyError::Proc {
            path: path.clone(),
            reason: "expected utime and stime in fields 14 and 15".to_owned(),
        };
        // The command name in field 2 may contain spaces, so count fields after its `)`.
        let after_name = stat.rsplit_once(')').ok_or_else(invalid)?.1;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |index: usize| {
            fields
                .get(index)
                .and_then(|field| field.parse::<u64>().ok())
        };
        let (user, system) = ticks(11).zip(ticks(12)).ok_or_else(invalid)?;
        Ok(Duration::from_secs_f64(
            (user + system) as f64 / clock_ticks_per_second() as f64,
        ))
    }

    async fn wait_ready(&mut self) -> Result<(), EnvoyError> {
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = try_wait(&mut self.child)? {
                return Err(EnvoyError::Exited {
                    status,
                    log_tail: self.run.log_tail(),
                });
            }
            if admin_ready(self.admin_addr).await {
                return Ok(());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Err(EnvoyError::Timeout {
            expected: "report ready on admin /ready",
            timeout: PROCESS_TIMEOUT,
            log_tail: self.run.log_tail(),
        })
    }

    async fn admin_get(&self, path: &str) -> Result<String, EnvoyError> {
        let response = Client::http1(self.admin_addr)
            .send(Request::get(path))
            .await
            .map_err(|source| EnvoyError::Admin {
                path: path.to_owned(),
                source,
            })?;
        if response.status != StatusCode::OK {
            return Err(EnvoyError::AdminStatus {
                path: path.to_owned(),
                status: response.status,
                body: response.body_text(),
            });
        }
        Ok(response.body_text())
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Returns the last `lines` lines of `log`, for error messages: Envoy's start-up lines (its
/// extension list alone is about 100 lines) rarely matter.
pub fn log_tail(log: &str, lines: usize) -> &str {
    let trimmed = log.trim_end_matches('\n');
    let start = trimmed
        .rmatch_indices('\n')
        .nth(lines.saturating_sub(1))
        .map_or(0, |(newline, _)| newline + 1);
    if lines == 0 {
        ""
    } else {
        &trimmed[start..]
    }
}

async fn admin_ready(admin_addr: SocketAddr) -> bool {
    let response = Client::http1(admin_addr).send(Request::get("/ready")).await;
    matches!(response, Ok(response) if response.status == StatusCode::OK)
}

fn try_wait(child: &mut Child) -> Result<Option<ExitStatus>, EnvoyError> {
    child
        .try_wait()
        .map_err(io_error(format!("waiting for Envoy (pid {})", child.id())))
}

/// Kills the process with SIGKILL and reaps it. Errors are ignored: the process may be gone.
fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn read_lossy(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(error) => format!("(reading {} failed: {error})", path.display()),
    }
}

fn read_proc(path: &str) -> Result<String, EnvoyError> {
    std::fs::read_to_string(path).map_err(|error| EnvoyError::Proc {
        path: path.to_owned(),
        reason: error.to_string(),
    })
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a system constant; it takes no pointers and has no side effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // USER_HZ, the unit of CPU times in /proc, is 100 on Linux x86-64 and aarch64.
    u64::try_from(ticks)
        .ok()
        .filter(|ticks| *ticks > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::log_tail;

    #[test]
    fn log_tail_keeps_last_lines() {
        assert_eq!(log_tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(log_tail("a\nb\nc", 5), "a\nb\nc");
        assert_eq!(log_tail("a\nb", 0), "");
    }
}
