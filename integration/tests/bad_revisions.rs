//! Revisions whose plugin cannot be used. An Envoy already serving rejects them as LDS updates
//! and keeps its listener. Files that are not loadable plugins are rejected with an error
//! naming the revision and the URL, before `dlopen` wherever the ELF headers tell.
//!
//! Needs `libedgefn.so` (`cargo build --release -p edgefn-filter`), the Go test plugins
//! (`scripts/setup.sh`) and a C compiler (`cc`).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use edgefn_integration::{
    free_port, tools, Client, EchoUpstream, Envoy, FileServer, Protocol, Request, Revision,
};
use support::{lines_with, plugin_path, sha256_hex, tail, wait_until};

const PLUGIN_FILE: &str = "addheader.so";
const PLUGIN_NAME: &str = "add-header";
/// Makes add-header set `x-hello: world` on requests and `x-edgefn: serving` on responses.
const PLUGIN_CONFIG: &str = r#"{"requestHeader": {"name": "x-hello", "value": "world"},
 "responseHeader": {"name": "x-edgefn", "value": "serving"}}"#;

const LDS_FILE: &str = "lds.yaml";
const REJECTED_STAT: &str = "listener_manager.lds.update_rejected";
const SUCCESS_STAT: &str = "listener_manager.lds.update_success";
/// Polls of the LDS stats, 100 ms apart, while Envoy reloads the LDS file and builds the
/// listener (which fetches the plugin).
const LDS_POLLS: u32 = 300;

/// The message edgefn logs when it rejects a filter config.
const REJECTED_CONFIG: &str = "edgefn refused the filter config";
/// The start of the loader's error when `dlopen` itself failed.
const DLOPEN_FAILED: &str = "dlopen of plugin file";

// === Rejected LDS updates ===

/// The LDS file of one Envoy: `lds.yaml` in a temporary directory that Envoy watches, and the
/// port its listener uses.
struct LdsFile {
    dir: tempfile::TempDir,
    listen_port: u16,
}

impl LdsFile {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            listen_port: free_port().unwrap(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join(LDS_FILE)
    }

    fn listen_addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.listen_port).into()
    }

    /// Writes listener `main` running `revision` as LDS version `version`. The file is written
    /// under another name and renamed onto `lds.yaml`, the event Envoy's directory watch
    /// reacts to, so Envoy never reads a half-written file.
    fn publish(&self, version: u32, revision: &Revision) {
        let listener = Envoy::builder("edgefn-lds-listener.yaml")
            .var("VERSION", version)
            .revision(revision)
            .render(self.listen_port, 0)
            .unwrap_or_else(|error| panic!("{error}"));
        let staging = self.dir.path().join(format!(".{LDS_FILE}.{version}"));
        std::fs::write(&staging, listener).unwrap();
        std::fs::rename(&staging, self.path()).unwrap();
    }
}

async fn stat(envoy: &Envoy, name: &str) -> u64 {
    let value = envoy
        .stat(name)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    value.unwrap_or(0)
}

/// Checks that the listener still runs the first revision: the plugin set its request and
/// response headers, over both protocols.
async fn assert_still_serving(lds: &LdsFile, envoy: &Envoy, context: &str) {
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let response = Client::new(lds.listen_addr(), protocol)
            .send(Request::get("/still-serving"))
            .await
            .unwrap_or_else(|error| panic!("{context}, {protocol:?}: {error}"));

        let context = format!("{context}, {protocol:?}");
        assert_eq!(
            response.status,
            200,
            "{context}:\n{}",
            tail(&envoy.log_text())
        );
        assert_eq!(response.header_values("x-edgefn"), ["serving"], "{context}");
        let echoed = response.echoed().unwrap();
        assert_eq!(echoed.header_values("x-hello"), ["world"], "{context}");
    }
}

/// A revision for an LDS update and the texts its error line must contain.
struct BadUpdate {
    revision: Revision,
    details: Vec<String>,
}

fn bad_updates(files: &FileServer, plugin_digest: &str) -> Vec<BadUpdate> {
    let wrong_digest = sha256_hex(b"not the plugin");
    let json_list = Revision::new("lds-config-list", PLUGIN_NAME, &files.url(PLUGIN_FILE))
        .plugin_config("[1, 2]");
    let not_found = Revision::new("lds-not-found", PLUGIN_NAME, &files.url("missing.so"))
        .plugin_config(PLUGIN_CONFIG);
    let truncated = Revision::new("lds-truncated", PLUGIN_NAME, &files.url("truncated.so"))
        .plugin_config(PLUGIN_CONFIG);
    let wrong_pin = Revision::new("lds-wrong-pin", PLUGIN_NAME, &files.url(PLUGIN_FILE))
        .plugin_config(PLUGIN_CONFIG)
        .sha256(&wrong_digest);
    let unloadable = |name: &str, file_name: &str, detail: &str| {
        let revision =
            Revision::new(name, PLUGIN_NAME, &files.url(file_name)).plugin_config(PLUGIN_CONFIG);
        BadUpdate {
            details: vec![detail.to_owned(), revision.url.clone()],
            revision,
        }
    };

    vec![
        BadUpdate {
            details: vec!["pluginConfig".to_owned(), "found a list".to_owned()],
            revision: json_list,
        },
        BadUpdate {
            details: vec!["404".to_owned(), not_found.url.clone()],
            revision: not_found,
        },
        BadUpdate {
            details: vec!["truncated".to_owned(), truncated.url.clone()],
            revision: truncated,
        },
        BadUpdate {
            details: vec![
                "sha256 mismatch".to_owned(),
                wrong_digest.clone(),
                plugin_digest.to_owned(),
                wrong_pin.url.clone(),
            ],
            revision: wrong_pin,
        },
        unloadable("lds-mach-o", "mach-o.so", "Mach-O"),
        unloadable("lds-aarch64", "aarch64.so", "aarch64"),
        unloadable("lds-empty", "empty.so", "is empty"),
    ]
}

#[tokio::test]
async fn lds_update_with_bad_revision_keeps_listener() {
    let plugin = std::fs::read(plugin_path(PLUGIN_FILE)).unwrap();
    let served = tempfile::tempdir().unwrap();
    std::fs::write(served.path().join(PLUGIN_FILE), &plugin).unwrap();
    std::fs::write(
        served.path().join("truncated.so"),
        &plugin[..plugin.len() / 2],
    )
    .unwrap();
    std::fs::write(served.path().join("mach-o.so"), mach_o_file()).unwrap();
    std::fs::write(served.path().join("aarch64.so"), aarch64_plugin()).unwrap();
    std::fs::write(served.path().join("empty.so"), b"").unwrap();
    let files = FileServer::start(served.path()).unwrap();
    let upstream = EchoUpstream::start().unwrap();

    let lds = LdsFile::new();
    let good = Revision::new("lds-good-v1", PLUGIN_NAME, &files.url(PLUGIN_FILE))
        .plugin_config(PLUGIN_CONFIG);
    lds.publish(1, &good);
    let module_dir = tools::module_dir().unwrap_or_else(|error| panic!("{error}"));
    let envoy = Envoy::builder("edgefn-lds.yaml")
        .var("UPSTREAM_PORT", upstream.port())
        .var("LDS_PATH", lds.path().display())
        .var("LDS_DIR", lds.dir.path().display())
        .env(
            "ENVOY_DYNAMIC_MODULES_SEARCH_PATH",
            &module_dir.display().to_string(),
        )
        .concurrency(2)
        .start()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    // The listener is added during Envoy's initialisation, so it is ready with Envoy.
    assert_still_serving(&lds, &envoy, "before any update").await;
    let successes = stat(&envoy, SUCCESS_STAT).await;

    let updates = bad_updates(&files, &sha256_hex(&plugin));
    for (index, update) in updates.iter().enumerate() {
        let version = u32::try_from(index).unwrap() + 2;
        let name = &update.revision.name;
        let rejected_before = stat(&envoy, REJECTED_STAT).await;
        let log_start = envoy.log_text().len();

        lds.publish(version, &update.revision);
        let settled = wait_until(LDS_POLLS, async || {
            stat(&envoy, REJECTED_STAT).await > rejected_before
                || stat(&envoy, SUCCESS_STAT).await > successes
        })
        .await;

        let full_log = envoy.log_text();
        let log = full_log.get(log_start..).unwrap_or(full_log.as_str());
        assert!(
            settled,
            "LDS version {version} ({name}) never applied or rejected"
        );
        assert_eq!(
            stat(&envoy, REJECTED_STAT).await,
            rejected_before + 1,
            "{name}:\n{}",
            tail(log)
        );
        assert_eq!(stat(&envoy, SUCCESS_STAT).await, successes, "{name}");
        let error_lines = lines_with(log, &[REJECTED_CONFIG, name]);
        assert!(
            !error_lines.is_empty(),
            "no rejection line for {name}:\n{}",
            tail(log)
        );
        for detail in &update.details {
            let found = error_lines
                .iter()
                .any(|line| line.contains(detail.as_str()));
            assert!(
                found,
                "the rejection of {name} does not mention {detail:?}: {error_lines:#?}"
            );
        }
        assert_still_serving(&lds, &envoy, &format!("after rejecting {name}")).await;
    }
}

#[tokio::test]
async fn list_plugin_config_error_names_revision() {
    let upstream = EchoUpstream::start().unwrap();
    let revision = Revision::new(
        "config-list-v1",
        PLUGIN_NAME,
        "http://127.0.0.1:9/unused.so",
    )
    .plugin_config("[1, 2]");

    let outcome = Envoy::builder("edgefn.yaml")
        .var("UPSTREAM_PORT", upstream.port())
        .revision(&revision)
        .validate()
        .await
        .unwrap_or_else(|error| panic!("{error}"));

    assert!(!outcome.status.success(), "{}", tail(&outcome.output));
    let error_lines = lines_with(&outcome.output, &[REJECTED_CONFIG, &revision.name]);
    assert!(
        !error_lines.is_empty(),
        "no rejection line names {}:\n{}",
        revision.name,
        tail(&outcome.output)
    );
}

// === Files that are not loadable plugins ===

/// A test file served under `file_name`, and texts its rejection must contain besides the
/// revision name and the URL.
struct BadFile {
    file_name: &'static str,
    details: &'static [&'static str],
    /// Whether the ELF check can tell from the bytes, so `dlopen` must never run.
    caught_before_dlopen: bool,
}

/// Returns a copy of a real Go plugin whose ELF header says aarch64 (`e_machine` 183).
fn aarch64_plugin() -> Vec<u8> {
    /// Offset of the 16-bit `e_machine` field in an ELF header.
    const E_MACHINE_OFFSET: usize = 18;
    const EM_AARCH64: u16 = 183;
    let mut bytes = std::fs::read(plugin_path(PLUGIN_FILE)).unwrap();
    bytes[E_MACHINE_OFFSET..E_MACHINE_OFFSET + 2].copy_from_slice(&EM_AARCH64.to_le_bytes());
    bytes
}

/// Returns the start of a 64-bit Mach-O file: its magic number `0xfeedfacf` (little-endian),
/// CPU type x86-64, and zeros.
fn mach_o_file() -> Vec<u8> {
    let mut bytes = vec![0xcf, 0xfa, 0xed, 0xfe, 0x07, 0x00, 0x00, 0x01];
    bytes.resize(4096, 0);
    bytes
}

fn run_cc(args: &[&str], dir: &Path) {
    let output = Command::new("cc")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running cc; install gcc");
    assert!(
        output.status.success(),
        "cc {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Builds, in `dir`, a C shared library that exports the ten functions of a Go filter plugin
/// (so the ELF check passes) and needs symbol version `GLIBC_9.99` of `libc.so.6`, newer than
/// any glibc. Returns its file name.
///
/// A `.symver` directive alone cannot make this: `ld` rejects a versioned reference to a
/// version that the linked libc does not define. So the library links against a stub with
/// soname `libc.so.6` whose version script defines `GLIBC_9.99`, and the real libc fails the
/// version check at `dlopen`.
fn build_future_glibc_library(dir: &Path) -> &'static str {
    std::fs::create_dir(dir.join("stub")).unwrap();
    std::fs::write(
        dir.join("stub/future.c"),
        "int edgefn_future_symbol(void) { return 1; }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("stub/future.map"),
        "GLIBC_9.99 { global: edgefn_future_symbol; local: *; };\n",
    )
    .unwrap();
    run_cc(
        &[
            "-shared",
            "-fPIC",
            "-Wl,-soname,libc.so.6",
            "-Wl,--version-script=stub/future.map",
            "-o",
            "stub/libc.so.6",
            "stub/future.c",
        ],
        dir,
    );

    let mut source = String::from("int edgefn_future_symbol(void);\n");
    for export in GO_PLUGIN_EXPORTS {
        source.push_str(&format!(
            "int {export}(void) {{ return edgefn_future_symbol(); }}\n"
        ));
    }
    std::fs::write(dir.join("future.c"), source).unwrap();
    run_cc(
        &[
            "-shared",
            "-fPIC",
            "-o",
            "future-glibc.so",
            "future.c",
            "stub/libc.so.6",
        ],
        dir,
    );
    "future-glibc.so"
}

/// The functions Envoy's golang filter looks up in a plugin library.
const GO_PLUGIN_EXPORTS: [&str; 10] = [
    "envoyGoFilterNewHttpPluginConfig",
    "envoyGoFilterMergeHttpPluginConfig",
    "envoyGoFilterDestroyHttpPluginConfig",
    "envoyGoFilterOnHttpHeader",
    "envoyGoFilterOnHttpData",
    "envoyGoFilterOnHttpLog",
    "envoyGoFilterOnHttpStreamComplete",
    "envoyGoFilterOnHttpDestroy",
    "envoyGoRequestSemaDec",
    "envoyGoFilterCleanUp",
];

/// Checks that Envoy (`--mode validate`) rejects a revision whose plugin is `file`, with an
/// error line that names the revision, the URL and each of the file's details.
async fn assert_file_rejected(upstream: &EchoUpstream, files: &FileServer, file: &BadFile) {
    let name = format!("bad-file-{}", file.file_name.trim_end_matches(".so"));
    let revision =
        Revision::new(&name, PLUGIN_NAME, &files.url(file.file_name)).plugin_config(PLUGIN_CONFIG);
    let outcome = Envoy::builder("edgefn.yaml")
        .var("UPSTREAM_PORT", upstream.port())
        .revision(&revision)
        .validate()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let output = &outcome.output;

    assert!(
        !outcome.status.success(),
        "validate accepted {name}:\n{}",
        tail(output)
    );
    let error_lines = lines_with(output, &[REJECTED_CONFIG, &name, &revision.url]);
    assert!(
        !error_lines.is_empty(),
        "no rejection line names {name} and {}:\n{}",
        revision.url,
        tail(output)
    );
    for detail in file.details {
        let found = error_lines.iter().any(|line| line.contains(detail));
        assert!(
            found,
            "the rejection of {name} does not mention {detail:?}: {error_lines:#?}"
        );
    }
    let reached_dlopen = error_lines.iter().any(|line| line.contains(DLOPEN_FAILED));
    assert_eq!(
        reached_dlopen, !file.caught_before_dlopen,
        "whether {name} reached dlopen: {error_lines:#?}"
    );
}

#[tokio::test]
async fn unloadable_files_rejected_naming_url() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mach-o.so"), mach_o_file()).unwrap();
    std::fs::write(dir.path().join("aarch64.so"), aarch64_plugin()).unwrap();
    std::fs::write(dir.path().join("empty.so"), b"").unwrap();
    let future_glibc = build_future_glibc_library(dir.path());
    let files = FileServer::start(dir.path()).unwrap();
    let upstream = EchoUpstream::start().unwrap();

    let bad_files = [
        BadFile {
            file_name: "mach-o.so",
            details: &["not an ELF file", "Mach-O"],
            caught_before_dlopen: true,
        },
        BadFile {
            file_name: "aarch64.so",
            details: &["aarch64", std::env::consts::ARCH],
            caught_before_dlopen: true,
        },
        BadFile {
            file_name: "empty.so",
            details: &["is empty"],
            caught_before_dlopen: true,
        },
        BadFile {
            file_name: future_glibc,
            details: &["GLIBC_9.99"],
            caught_before_dlopen: false,
        },
    ];
    for file in &bad_files {
        assert_file_rejected(&upstream, &files, file).await;
    }
}
