//! A server killed with SIGKILL in the middle of a burst of creates loses none that it
//! acknowledged, and restarts on the same file.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::process::{request, Server};
use common::{url_revision, COLLECTION};

const WRITERS: usize = 4;
const CREATES_PER_WRITER: usize = 200;
/// The server is killed once this many creates were acknowledged.
const KILL_AFTER: usize = 40;

#[test]
fn killed_server_keeps_every_acknowledged_create() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let data = dir.path().join("revisions.jsonl");
    let data = data.to_str().expect("UTF-8 path");
    let mut server = Server::start(&["--data", data, "--ingest", "none"]);
    let address = server.address;

    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let acknowledged = Arc::clone(&acknowledged);
            std::thread::spawn(move || {
                for index in 0..CREATES_PER_WRITER {
                    let name = format!("w{writer}-{index}");
                    let body = url_revision(&name).to_string();
                    match request(address, "POST", COLLECTION, Some("application/json"), &body) {
                        Ok(response) if response.status == 201 => {
                            acknowledged.lock().expect("list").push(name)
                        }
                        Ok(response) => panic!("create {name} failed: {response:?}"),
                        // The server was killed: this and later creates are not acknowledged.
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();

    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.lock().expect("list").len() < KILL_AFTER && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    server.kill();
    for writer in writers {
        writer.join().expect("writer thread");
    }
    let acknowledged = acknowledged.lock().expect("list").clone();
    assert!(
        acknowledged.len() >= KILL_AFTER,
        "only {} creates acknowledged",
        acknowledged.len()
    );
    assert!(
        acknowledged.len() < WRITERS * CREATES_PER_WRITER,
        "the burst finished before the kill, so the test proved nothing"
    );

    let restarted = Server::start(&["--data", data, "--ingest", "none"]);
    for name in &acknowledged {
        let response = request(
            restarted.address,
            "GET",
            &format!("{COLLECTION}/{name}"),
            None,
            "",
        )
        .expect("get after restart");
        assert_eq!(
            response.status, 200,
            "acknowledged create {name} is lost: {}",
            response.body
        );
    }
}
