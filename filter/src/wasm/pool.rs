//! The threads backend functions run on, so that a running function does not block an Envoy
//! worker.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};

/// Environment variable that sets the number of function threads.
pub const THREADS_ENV: &str = "EDGEFN_WASM_THREADS";

type Job = Box<dyn FnOnce() + Send>;

/// Jobs waiting for a function thread, over all revisions; past this, requests get 503.
pub const MAX_QUEUED: usize = 1024;

/// Jobs queued and not yet started.
static QUEUED: AtomicUsize = AtomicUsize::new(0);

/// Error for a job that was not queued.
#[derive(Debug)]
pub struct QueueFull;

/// Runs `job` on a function thread. Jobs queue when every thread is busy, up to
/// [`MAX_QUEUED`].
pub fn spawn(job: impl FnOnce() + Send + 'static) -> Result<(), QueueFull> {
    static QUEUE: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
    if QUEUED.fetch_add(1, Ordering::AcqRel) >= MAX_QUEUED {
        QUEUED.fetch_sub(1, Ordering::AcqRel);
        return Err(QueueFull);
    }
    let queue = QUEUE.get_or_init(|| Mutex::new(start_threads(thread_count())));
    let sender = queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let job = Box::new(move || {
        QUEUED.fetch_sub(1, Ordering::AcqRel);
        job();
    });
    if sender.send(job).is_err() {
        QUEUED.fetch_sub(1, Ordering::AcqRel);
        tracing::error!("every wasm function thread has exited; the request is dropped");
        return Err(QueueFull);
    }
    Ok(())
}

/// Returns `$EDGEFN_WASM_THREADS`, or twice the CPU count with at least 4.
fn thread_count() -> usize {
    let configured = std::env::var(THREADS_ENV)
        .ok()
        .and_then(|value| value.parse::<usize>().ok())
        .filter(|count| (1..=1024).contains(count));
    configured.unwrap_or_else(|| {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        (cpus * 2).max(4)
    })
}

fn start_threads(count: usize) -> Sender<Job> {
    let (sender, receiver) = channel::<Job>();
    let receiver = Arc::new(Mutex::new(receiver));
    for index in 0..count {
        let receiver = Arc::clone(&receiver);
        let spawned = std::thread::Builder::new()
            .name(format!("edgefn-wasm-{index}"))
            .spawn(move || run_jobs(&receiver));
        if let Err(error) = spawned {
            tracing::error!(index, "cannot start a wasm function thread: {error}");
        }
    }
    sender
}

fn run_jobs(receiver: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let receiver = receiver
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match receiver.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        if let Err(payload) = catch_unwind(AssertUnwindSafe(job)) {
            crate::hooks::report_panic("wasm function thread", payload.as_ref());
        }
    }
}
