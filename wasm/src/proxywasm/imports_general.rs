//! Host functions that do not touch the HTTP stream: logging, time, timers, properties,
//! contexts, shared data, metrics, and the calls edgefn does not offer (shared queues, HTTP
//! and gRPC calls, foreign functions), which return `UNIMPLEMENTED` or `NOT_FOUND`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker};

use super::abi::{self, MetricType, Status};
use super::imports_http::MODULE;
use super::shared::SetError;
use super::state::{Guest, VmData};

type Result<T> = wasmtime::Result<T>;

pub(crate) fn add_to_linker(linker: &mut Linker<VmData>) -> Result<()> {
    add_logging_and_time(linker)?;
    add_properties(linker)?;
    add_contexts(linker)?;
    add_shared_data(linker)?;
    add_metrics(linker)?;
    add_unimplemented(linker)?;
    Ok(())
}

fn add_logging_and_time(linker: &mut Linker<VmData>) -> Result<()> {
    linker.func_wrap(
        MODULE,
        "proxy_log",
        |mut caller: Caller<'_, VmData>, level: i32, ptr: i32, size: i32| -> i32 {
            if !(0..=abi::MAX_LOG_LEVEL).contains(&level) {
                return Status::BadArgument.code();
            }
            let Some(message) = Guest::read(&mut caller, ptr, size) else {
                return Status::InvalidMemoryAccess.code();
            };
            let abi = &caller.data().abi;
            log_plugin_message(&abi.plugin.revision, abi.effective_context, level, &message);
            Status::Ok.code()
        },
    )?;

    linker.func_wrap(
        MODULE,
        "proxy_get_log_level",
        |mut caller: Caller<'_, VmData>, level_ptr: i32| -> i32 {
            let level = abi::current_log_level() as u32;
            if Guest::write_u32(&mut caller, level_ptr, level) {
                Status::Ok.code()
            } else {
                Status::InvalidMemoryAccess.code()
            }
        },
    )?;

    linker.func_wrap(
        MODULE,
        "proxy_get_current_time_nanoseconds",
        |mut caller: Caller<'_, VmData>, time_ptr: i32| -> i32 {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|elapsed| u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
                .unwrap_or(0);
            if Guest::write_u64(&mut caller, time_ptr, nanos) {
                Status::Ok.code()
            } else {
                Status::InvalidMemoryAccess.code()
            }
        },
    )?;

    // The period is stored for the filter to drive `ProxyWasmVm::on_tick`; 0 stops the timer.
    linker.func_wrap(
        MODULE,
        "proxy_set_tick_period_milliseconds",
        |mut caller: Caller<'_, VmData>, period: i32| -> i32 {
            let period = Duration::from_millis(u64::from(period as u32));
            caller.data_mut().abi.tick_period = (!period.is_zero()).then_some(period);
            Status::Ok.code()
        },
    )?;
    Ok(())
}

fn log_plugin_message(revision: &str, context_id: u32, level: i32, message: &[u8]) {
    let message = String::from_utf8_lossy(message);
    match level {
        0 => tracing::trace!(revision, context_id, "wasm log: {message}"),
        1 => tracing::debug!(revision, context_id, "wasm log: {message}"),
        2 => tracing::info!(revision, context_id, "wasm log: {message}"),
        3 => tracing::warn!(revision, context_id, "wasm log: {message}"),
        // Error and critical: `tracing` has no level above error.
        _ => tracing::error!(revision, context_id, "wasm log: {message}"),
    }
}

/// Most bytes of paths and values one context stores with `proxy_set_property`.
const MAX_PROPERTY_BYTES: usize = 1 << 20;

/// Returns the properties the host provides itself: the plugin's name, root id and VM id.
fn plugin_property(caller: &Caller<'_, VmData>, path: &[&str]) -> Option<Vec<u8>> {
    let plugin = &caller.data().abi.plugin;
    match path {
        ["plugin_name"] | ["plugin_vm_id"] => Some(plugin.revision.as_bytes().to_vec()),
        ["plugin_root_id"] => Some(plugin.root_id.as_bytes().to_vec()),
        _ => None,
    }
}

/// Looks up a property by its serialized path (segments separated by NUL bytes): the plugin
/// properties, then what the plugin set on this context, then the stream's properties.
fn find_property(caller: &mut Caller<'_, VmData>, raw_path: &[u8]) -> Option<Vec<u8>> {
    let segments: Vec<&str> = raw_path
        .split(|&byte| byte == 0)
        .map(std::str::from_utf8)
        .collect::<std::result::Result<_, _>>()
        .ok()?;

    if let Some(value) = plugin_property(caller, &segments) {
        return Some(value);
    }
    let abi = &mut caller.data_mut().abi;
    if let Some(value) = abi
        .effective()
        .and_then(|context| context.properties.get(raw_path).cloned())
    {
        return Some(value);
    }
    abi.http_host()?.property(&segments)
}

fn add_properties(linker: &mut Linker<VmData>) -> Result<()> {
    linker.func_wrap(
        MODULE,
        "proxy_get_property",
        |mut caller: Caller<'_, VmData>,
         path_ptr: i32,
         path_size: i32,
         ptr_ptr: i32,
         size_ptr: i32|
         -> Result<i32> {
            let Some(path) = Guest::read(&mut caller, path_ptr, path_size) else {
                return Ok(Status::InvalidMemoryAccess.code());
            };
            match find_property(&mut caller, &path) {
                Some(value) => {
                    Ok(Guest::return_bytes(&mut caller, &value, ptr_ptr, size_ptr)?.code())
                }
                None => Ok(Status::NotFound.code()),
            }
        },
    )?;

    linker.func_wrap(
        MODULE,
        "proxy_set_property",
        |mut caller: Caller<'_, VmData>,
         path_ptr: i32,
         path_size: i32,
         value_ptr: i32,
         value_size: i32|
         -> i32 {
            let path = Guest::read(&mut caller, path_ptr, path_size);
            let value = Guest::read(&mut caller, value_ptr, value_size);
            let (Some(path), Some(value)) = (path, value) else {
                return Status::InvalidMemoryAccess.code();
            };
            let abi = &mut caller.data_mut().abi;
            // Envoy keeps these in the stream's filter state, so the root context has none.
            if !abi.effective_is_stream() {
                return Status::NotFound.code();
            }
            match abi.effective() {
                Some(context) => {
                    let stored: usize = context
                        .properties
                        .iter()
                        .filter(|(key, _)| **key != path)
                        .map(|(key, old)| key.len() + old.len())
                        .sum();
                    if stored + path.len() + value.len() > MAX_PROPERTY_BYTES {
                        return Status::BadArgument.code();
                    }
                    context.properties.insert(path, value);
                    Status::Ok.code()
                }
                None => Status::NotFound.code(),
            }
        },
    )?;
    Ok(())
}

fn add_contexts(linker: &mut Linker<VmData>) -> Result<()> {
    linker.func_wrap(
        MODULE,
        "proxy_set_effective_context",
        |mut caller: Caller<'_, VmData>, context_id: i32| -> i32 {
            let abi = &mut caller.data_mut().abi;
            let context_id = context_id as u32;
            if !abi.contexts.contains_key(&context_id) {
                return Status::BadArgument.code();
            }
            abi.effective_context = context_id;
            Status::Ok.code()
        },
    )?;

    linker.func_wrap(
        MODULE,
        "proxy_done",
        |mut caller: Caller<'_, VmData>| -> i32 {
            match caller.data_mut().abi.effective() {
                Some(context) if context.done_pending => {
                    context.done_pending = false;
                    Status::Ok.code()
                }
                _ => Status::NotFound.code(),
            }
        },
    )?;
    Ok(())
}

fn add_shared_data(linker: &mut Linker<VmData>) -> Result<()> {
    linker.func_wrap(
        MODULE,
        "proxy_get_shared_data",
        |mut caller: Caller<'_, VmData>,
         key_ptr: i32,
         key_size: i32,
         ptr_ptr: i32,
         size_ptr: i32,
         cas_ptr: i32|
         -> Result<i32> {
            let Some(key) = Guest::read(&mut caller, key_ptr, key_size) else {
                return Ok(Status::InvalidMemoryAccess.code());
            };
            let Some((value, cas)) = caller.data().abi.plugin.shared_data.get(&key) else {
                return Ok(Status::NotFound.code());
            };
            let status = Guest::return_bytes(&mut caller, &value, ptr_ptr, size_ptr)?;
            if status != Status::Ok {
                return Ok(status.code());
            }
            if !Guest::write_u32(&mut caller, cas_ptr, cas) {
                return Ok(Status::InvalidMemoryAccess.code());
            }
            Ok(Status::Ok.code())
        },
    )?;

    linker.func_wrap(
        MODULE,
        "proxy_set_shared_data",
        |mut caller: Caller<'_, VmData>,
         key_ptr: i32,
         key_size: i32,
         value_ptr: i32,
         value_size: i32,
         cas: i32|
         -> i32 {
            let key = Guest::read(&mut caller, key_ptr, key_size);
            let value = Guest::read(&mut caller, value_ptr, value_size);
            let (Some(key), Some(value)) = (key, value) else {
                return Status::InvalidMemoryAccess.code();
            };
            match caller
                .data()
                .abi
                .plugin
                .shared_data
                .set(&key, &value, cas as u32)
            {
                Ok(()) => Status::Ok.code(),
                Err(SetError::CasMismatch) => Status::CasMismatch.code(),
                Err(SetError::Full) => Status::InternalFailure.code(),
            }
        },
    )?;
    Ok(())
}

/// Returns the metric type a metric id encodes in its low two bits, as Envoy assigns them.
fn metric_type_of(metric_id: u32) -> Option<MetricType> {
    MetricType::from_raw((metric_id & 0b11) as i32)
}

fn add_metrics(linker: &mut Linker<VmData>) -> Result<()> {
    linker.func_wrap(
        MODULE,
        "proxy_define_metric",
        |mut caller: Caller<'_, VmData>,
         metric_type: i32,
         name_ptr: i32,
         name_size: i32,
         id_ptr: i32|
         -> i32 {
            let Some(kind) = MetricType::from_raw(metric_type) else {
                return Status::BadArgument.code();
            };
            let Some(name) = Guest::read(&mut caller, name_ptr, name_size) else {
                return Status::InvalidMemoryAccess.code();
            };
            let abi = &mut caller.data_mut().abi;
            let Some(cell) = abi.plugin.metrics.define(&String::from_utf8_lossy(&name)) else {
                return Status::InternalFailure.code();
            };
            // Ids count up by 4 per type, with the type in the low two bits.
            let index = abi.metrics_defined[kind as usize];
            let Some(id) = index.checked_mul(4).map(|base| base | kind as u32) else {
                return Status::InternalFailure.code();
            };
            abi.metrics_defined[kind as usize] = index + 1;
            abi.metrics.insert(id, cell);
            if Guest::write_u32(&mut caller, id_ptr, id) {
                Status::Ok.code()
            } else {
                Status::InvalidMemoryAccess.code()
            }
        },
    )?;

    linker.func_wrap(
        MODULE,
        "proxy_increment_metric",
        |caller: Caller<'_, VmData>, metric_id: i32, delta: i64| -> i32 {
            let metric_id = metric_id as u32;
            let cell = caller.data().abi.metrics.get(&metric_id);
            match (metric_type_of(metric_id), cell) {
                // Counters only go up.
                (Some(MetricType::Counter), Some(_)) if delta <= 0 => Status::BadArgument.code(),
                (Some(MetricType::Counter | MetricType::Gauge), Some(cell)) => {
                    cell.add(delta);
                    Status::Ok.code()
                }
                (Some(MetricType::Counter | MetricType::Gauge), None) => Status::NotFound.code(),
                _ => Status::BadArgument.code(),
            }
        },
    )?;

    linker.func_wrap(
        MODULE,
        "proxy_record_metric",
        |caller: Caller<'_, VmData>, metric_id: i32, value: i64| -> i32 {
            let metric_id = metric_id as u32;
            let value = value as u64;
            let Some(cell) = caller.data().abi.metrics.get(&metric_id) else {
                return Status::NotFound.code();
            };
            match metric_type_of(metric_id) {
                // Envoy adds a recorded value to a counter.
                Some(MetricType::Counter) => cell.add(i64::try_from(value).unwrap_or(i64::MAX)),
                // A histogram keeps only the last value here: edgefn has no distributions.
                Some(MetricType::Gauge | MetricType::Histogram) => cell.set(value),
                None => return Status::NotFound.code(),
            }
            Status::Ok.code()
        },
    )?;

    linker.func_wrap(
        MODULE,
        "proxy_get_metric",
        |mut caller: Caller<'_, VmData>, metric_id: i32, value_ptr: i32| -> i32 {
            let metric_id = metric_id as u32;
            if !matches!(
                metric_type_of(metric_id),
                Some(MetricType::Counter | MetricType::Gauge)
            ) {
                return Status::BadArgument.code();
            }
            let Some(value) = caller
                .data()
                .abi
                .metrics
                .get(&metric_id)
                .map(|cell| cell.value())
            else {
                return Status::NotFound.code();
            };
            if Guest::write_u64(&mut caller, value_ptr, value) {
                Status::Ok.code()
            } else {
                Status::InvalidMemoryAccess.code()
            }
        },
    )?;
    Ok(())
}

const UNIMPLEMENTED: i32 = Status::Unimplemented as i32;

// NOTE: shared queues, HTTP and gRPC calls need callbacks (`proxy_on_queue_ready`,
// `proxy_on_http_call_response`, `proxy_on_grpc_*`) that only the Envoy filter could
// deliver, so they return UNIMPLEMENTED. The Rust SDK panics on that status, which traps.
fn add_unimplemented(linker: &mut Linker<VmData>) -> Result<()> {
    linker.func_wrap(
        MODULE,
        "proxy_register_shared_queue",
        |_: i32, _: i32, _: i32| UNIMPLEMENTED,
    )?;
    linker.func_wrap(
        MODULE,
        "proxy_resolve_shared_queue",
        |_: i32, _: i32, _: i32, _: i32, _: i32| UNIMPLEMENTED,
    )?;
    linker.func_wrap(
        MODULE,
        "proxy_enqueue_shared_queue",
        |_: i32, _: i32, _: i32| UNIMPLEMENTED,
    )?;
    linker.func_wrap(
        MODULE,
        "proxy_dequeue_shared_queue",
        |_: i32, _: i32, _: i32| UNIMPLEMENTED,
    )?;

    // `proxy_http_call` is the 0.2.1 name; the Go SDK imports `proxy_dispatch_http_call`.
    for name in ["proxy_http_call", "proxy_dispatch_http_call"] {
        linker.func_wrap(
            MODULE,
            name,
            |_: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| {
                UNIMPLEMENTED
            },
        )?;
    }
    linker.func_wrap(
        MODULE,
        "proxy_grpc_call",
        |_: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32| UNIMPLEMENTED,
    )?;
    linker.func_wrap(
        MODULE,
        "proxy_grpc_stream",
        |_: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| UNIMPLEMENTED,
    )?;
    linker.func_wrap(
        MODULE,
        "proxy_grpc_send",
        |_: i32, _: i32, _: i32, _: i32| UNIMPLEMENTED,
    )?;
    linker.func_wrap(MODULE, "proxy_grpc_cancel", |_: i32| UNIMPLEMENTED)?;
    linker.func_wrap(MODULE, "proxy_grpc_close", |_: i32| UNIMPLEMENTED)?;
    linker.func_wrap(MODULE, "proxy_get_status", |_: i32, _: i32, _: i32| {
        UNIMPLEMENTED
    })?;

    // edgefn registers no foreign functions, so every name is NOT_FOUND.
    linker.func_wrap(
        MODULE,
        "proxy_call_foreign_function",
        |mut caller: Caller<'_, VmData>,
         name_ptr: i32,
         name_size: i32,
         args_ptr: i32,
         args_size: i32,
         _results_ptr: i32,
         _results_size_ptr: i32|
         -> i32 {
            let name = Guest::read(&mut caller, name_ptr, name_size);
            let args = Guest::read(&mut caller, args_ptr, args_size);
            if name.is_none() || args.is_none() {
                return Status::InvalidMemoryAccess.code();
            }
            Status::NotFound.code()
        },
    )?;
    Ok(())
}

/// Every `env` function [`add_to_linker`] and the HTTP host functions define, which a
/// module may import.
pub(crate) const HOST_FUNCTIONS: &[&str] = &[
    "proxy_log",
    "proxy_get_log_level",
    "proxy_get_current_time_nanoseconds",
    "proxy_set_tick_period_milliseconds",
    "proxy_get_property",
    "proxy_set_property",
    "proxy_set_effective_context",
    "proxy_done",
    "proxy_get_shared_data",
    "proxy_set_shared_data",
    "proxy_define_metric",
    "proxy_increment_metric",
    "proxy_record_metric",
    "proxy_get_metric",
    "proxy_register_shared_queue",
    "proxy_resolve_shared_queue",
    "proxy_enqueue_shared_queue",
    "proxy_dequeue_shared_queue",
    "proxy_http_call",
    "proxy_dispatch_http_call",
    "proxy_grpc_call",
    "proxy_grpc_stream",
    "proxy_grpc_send",
    "proxy_grpc_cancel",
    "proxy_grpc_close",
    "proxy_get_status",
    "proxy_call_foreign_function",
    "proxy_get_header_map_pairs",
    "proxy_get_header_map_value",
    "proxy_get_header_map_size",
    "proxy_add_header_map_value",
    "proxy_replace_header_map_value",
    "proxy_remove_header_map_value",
    "proxy_set_header_map_pairs",
    "proxy_get_buffer_bytes",
    "proxy_get_buffer_status",
    "proxy_set_buffer_bytes",
    "proxy_send_local_response",
    "proxy_continue_stream",
    "proxy_close_stream",
];
