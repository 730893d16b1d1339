//! Sends edgefn's `tracing` events to Envoy's log (`dynamic_modules` logger), at the level
//! Envoy's log is set to when the event happens.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// Counts one occurrence of an event that can repeat on every request and returns its number
/// when it should be logged: the 1st, 10th, 100th and so on, so a misbehaving plugin cannot
/// flood Envoy's log.
pub fn sampled(counter: &AtomicU64) -> Option<u64> {
    let occurrence = counter.fetch_add(1, Ordering::Relaxed) + 1;
    is_power_of_ten(occurrence).then_some(occurrence)
}

fn is_power_of_ten(mut value: u64) -> bool {
    while value >= 10 && value.is_multiple_of(10) {
        value /= 10;
    }
    value == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampled_logs_powers_of_ten() {
        let counter = AtomicU64::new(0);
        let logged: Vec<u64> = (0..1000).filter_map(|_| sampled(&counter)).collect();
        assert_eq!(logged, [1, 10, 100, 1000]);
    }
}
