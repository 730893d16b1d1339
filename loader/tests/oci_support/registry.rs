//! The CNCF distribution registry (Debian's `docker-registry`), started on 127.0.0.1 with a
//! temporary storage folder and a free port, without auth or with htpasswd basic auth.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::TestDir;

/// Overrides the registry binary (default `/usr/bin/docker-registry`).
pub const REGISTRY_BIN_ENV: &str = "EDGEFN_REGISTRY_BIN";
const DEFAULT_REGISTRY_BIN: &str = "/usr/bin/docker-registry";
/// Overrides the htpasswd binary (default `/usr/bin/htpasswd`).
pub const HTPASSWD_BIN_ENV: &str = "EDGEFN_HTPASSWD_BIN";
const DEFAULT_HTPASSWD_BIN: &str = "/usr/bin/htpasswd";

/// Time a registry gets to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A user that the basic-auth registry accepts.
pub const USERNAME: &str = "edgefn";
pub const PASSWORD: &str = "s3cret-Pa55word";

/// How the registry authenticates clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    None,
    Basic,
}

/// A running registry process. Dropping it kills the process.
pub struct Registry {
    dir: TestDir,
    port: u16,
    auth: Auth,
    child: Option<Child>,
}

fn binary(env: &str, default: &str, package: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .filter(|value| !value.is_empty())
        .map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.is_file(),
        "{} not found; install the Debian package `{package}` (scripts/setup.sh does), or set \
         {env}",
        path.display()
    );
    path
}

impl Registry {
    /// Starts a registry with `auth`. Fails the test when the binaries are missing.
    pub fn start(auth: Auth) -> Self {
        let dir = TestDir::new("registry");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("pick a free port")
            .port();
        if auth == Auth::Basic {
            write_htpasswd(&dir.join("htpasswd"));
        }
        let mut registry = Self {
            dir,
            port,
            auth,
            child: None,
        };
        registry.spawn();
        registry
    }

    /// Returns `127.0.0.1:<port>`, the registry host of references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Returns `host/repository`.
    pub fn repo(&self, repository: &str) -> String {
        format!("{}/{repository}", self.host())
    }

    /// Kills the registry; its storage is kept for a restart.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the registry again on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        let config = self.dir.join("config.yml");
        std::fs::write(&config, self.config()).expect("write the registry config");
        let log = std::fs::File::create(self.dir.join("registry.log")).expect("create the log");
        let log_err = log.try_clone().expect("duplicate the log file");
        let child = Command::new(binary(
            REGISTRY_BIN_ENV,
            DEFAULT_REGISTRY_BIN,
            "docker-registry",
        ))
        .arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .expect("start docker-registry");
        self.child = Some(child);
        self.wait_listening();
    }

    fn wait_listening(&mut self) {
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("docker-registry exited with {status}:\n{}", self.log());
                }
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        panic!(
            "docker-registry did not listen within {START_TIMEOUT:?}:\n{}",
            self.log()
        );
    }

    /// Returns the registry's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    fn config(&self) -> String {
        let storage = self.dir.join("storage");
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{}\n  secret: edgefn-test-secret\n",
            storage.display(),
            self.port
        );
        if self.auth == Auth::Basic {
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: edgefn-test\n    path: {}\n",
                self.dir.join("htpasswd").display()
            ));
        }
        config
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_htpasswd(path: &Path) {
    let output = Command::new(binary(
        HTPASSWD_BIN_ENV,
        DEFAULT_HTPASSWD_BIN,
        "apache2-utils",
    ))
    .args(["-Bbn", USERNAME, PASSWORD])
    .output()
    .expect("run htpasswd");
    assert!(output.status.success(), "htpasswd failed: {output:?}");
    std::fs::write(path, &output.stdout).expect("write the htpasswd file");
}
