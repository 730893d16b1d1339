//! Passwords stay out of the logs of a pull against the real registry with basic auth, at
//! every level. This is the only test in its binary, because it installs the global `tracing`
//! subscriber: a scoped one can miss events whose callsites another test thread registered.

mod common;
mod oci_support;

use std::sync::{Arc, Mutex};

use common::TestDir;
use edgefn_loader::{OciCredentials, OciSource, Secret};
use oci_client::secrets::RegistryAuth;
use oci_support::registry::{Auth, Registry, PASSWORD, USERNAME};
use oci_support::*;

const WRONG_PASSWORD: &str = "wrong-Pa55word-xyz";

fn password(password: &str) -> OciCredentials {
    OciCredentials::Password {
        username: USERNAME.to_owned(),
        password: Secret::new(password),
    }
}

/// A `tracing` writer that appends to a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").write(bytes)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn secrets_stay_out_of_logs_and_debug() {
    let registry = Registry::start(Auth::Basic);
    let library = fake_library(host_and_other_machine().0, "logs");
    let repo = registry.repo("plugins/logs");
    let auth = RegistryAuth::Basic(USERNAME.to_owned(), PASSWORD.to_owned());
    Publisher::new(&registry.host(), auth).publish_library(
        &format!("{repo}:v1"),
        &library,
        APOXY_CONTENT,
    );
    let dir = TestDir::new("auth-logs");
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("install the log subscriber");
    let options = options(&dir, &registry.host());
    let good = OciSource::new(&repo, "v1").with_credentials(password(PASSWORD));
    let bad = OciSource::new(&repo, "v1").with_credentials(password(WRONG_PASSWORD));

    let good_result = pull(&good, &options);
    let bad_result = pull(&bad, &options);
    let log = String::from_utf8_lossy(&captured.0.lock().expect("log buffer")).into_owned();

    assert!(good_result.is_ok(), "{good_result:?}");
    assert!(!log.is_empty(), "nothing was logged");
    assert!(!log.contains(PASSWORD), "the password was logged:\n{log}");
    assert!(
        !log.contains(WRONG_PASSWORD),
        "the wrong password was logged:\n{log}"
    );
    assert!(!format!("{bad_result:?}").contains(WRONG_PASSWORD));
    assert!(!format!("{good:?}").contains(PASSWORD));
}
