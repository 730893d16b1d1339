//! Sends edgefn's `tracing` events to Envoy's log (`dynamic_modules` logger), at the level
//! Envoy's log is set to when the event happens.

use std::io::Write;

use tracing::{Level, Metadata};

use crate::abi::log_level;
use crate::envoy;

/// Installs the global subscriber once; a host that already installed one keeps it.
pub fn install() {
    let subscriber = tracing_subscriber::fmt()
        .with_writer(EnvoyLogWriter)
        .with_ansi(false)
        .without_time()
        .with_level(false)
        .with_max_level(Level::TRACE)
        .finish();
    let subscriber = tracing_subscriber::layer::SubscriberExt::with(
        subscriber,
        tracing_subscriber::filter::filter_fn(enabled),
    );
    let _ = tracing::subscriber::set_global_default(subscriber);
}

fn envoy_level(level: &Level) -> u32 {
    match *level {
        Level::TRACE => log_level::TRACE,
        Level::DEBUG => log_level::DEBUG,
        Level::INFO => log_level::INFO,
        Level::WARN => log_level::WARN,
        Level::ERROR => log_level::ERROR,
    }
}

fn enabled(metadata: &Metadata<'_>) -> bool {
    envoy_level(metadata.level()) >= envoy::log_level()
}

/// Collects one formatted event and hands it to Envoy when dropped.
pub struct EventWriter {
    level: u32,
    buffer: Vec<u8>,
}

impl Write for EventWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let message = self.buffer.strip_suffix(b"\n").unwrap_or(&self.buffer);
        if !message.is_empty() {
            envoy::log(self.level, message);
        }
    }
}

struct EnvoyLogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for EnvoyLogWriter {
    type Writer = EventWriter;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter {
            level: log_level::INFO,
            buffer: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, metadata: &Metadata<'_>) -> Self::Writer {
        EventWriter {
            level: envoy_level(metadata.level()),
            buffer: Vec::new(),
        }
    }
}
