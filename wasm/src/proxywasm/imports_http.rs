//! Host functions that act on the HTTP stream: header maps, bodies, local replies and stream
//! control. Status codes and edge cases follow Envoy's wasm filter. Header names are lower
//! cased. A missing map reads as empty pairs, but every other access to it gets
//! `BAD_ARGUMENT`. A body can only be prepended to, replaced whole, or appended to.

use wasmtime::{Caller, Linker};

use super::abi::{BodyKind, BufferType, HeaderMapKind, MapType, Status, StreamType};
use super::http::{HttpHost, LocalReply, Unavailable};
use super::pairs::{self, HeaderPairs};
use super::state::{Guest, VmData};

/// The module proxy-wasm host functions are imported from.
pub(crate) const MODULE: &str = "env";

type Result<T> = wasmtime::Result<T>;

pub(crate) fn add_to_linker(linker: &mut Linker<VmData>) -> Result<()> {
    add_header_reads(linker)?;
    add_header_writes(linker)?;
    add_buffers(linker)?;
    add_stream_control(linker)?;
    Ok(())
}

/// Runs `op` on header map `map` of the callback's stream. `BAD_ARGUMENT` when the map type
/// is not an HTTP one, the callback has no stream, or the stream lacks the map now.
fn on_map<R>(
    caller: &mut Caller<'_, VmData>,
    map: MapType,
    op: impl FnOnce(&mut dyn HttpHost, HeaderMapKind) -> std::result::Result<R, Unavailable>,
) -> std::result::Result<R, Status> {
    let MapType::Http(kind) = map else {
        return Err(Status::BadArgument);
    };
    let host = caller
        .data_mut()
        .abi
        .http_host()
        .ok_or(Status::BadArgument)?;
    op(host, kind).map_err(|Unavailable| Status::BadArgument)
}

fn status_of(result: std::result::Result<(), Status>) -> i32 {
    match result {
        Ok(()) => Status::Ok.code(),
        Err(status) => status.code(),
    }
}

fn parse_pairs(data: &[u8]) -> std::result::Result<HeaderPairs, Status> {
    let mut parsed = pairs::deserialize(data).map_err(|_| Status::BadArgument)?;
    for (name, _) in &mut parsed {
        name.make_ascii_lowercase();
    }
    Ok(parsed)
}

fn add_header_reads(linker: &mut Linker<VmData>) -> Result<()> {
    linker.func_wrap(
        MODULE,
        "proxy_get_header_map_pairs",
        |mut caller: Caller<'_, VmData>, map: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            let Some(map) = MapType::from_raw(map) else {
                return Ok(Status::BadArgument.code());
            };
            // Envoy returns an empty map, not an error, for a map the stream lacks.
            let pairs = on_map(&mut caller, map, |host, kind| {
                host.header_pairs(kind).ok_or(Unavailable)
            })
            .unwrap_or_default();
            let bytes = if pairs.is_empty() {
                Vec::new()
            } else {
                pairs::serialize(&pairs)
            };
            Ok(Guest::return_bytes(&mut caller, &bytes, ptr_ptr, size_ptr)?.code())
        },
    )?;

    linker.func_wrap(
        MODULE,
        "proxy_get_header_map_value",
        |mut caller: Caller<'_, VmData>,
         map: i32,
         key_ptr: i32,
         key_size: i32,
         ptr_ptr: i32,
         size_ptr: i32|
         -> Result<i32> {
            let Some(map) = MapType::from_raw(map) else {
                return Ok(Status::BadArgument.code());
            };
            let Some(key) = Guest::read(&mut caller, key_ptr, key_size) else {
                return Ok(Status::InvalidMemoryAccess.code());
            };
            let key = key.to_ascii_lowercase();
            let value = match on_map(&mut caller, map, |host, kind| host.header_value(kind, &key)) {
                Ok(Some(value)) => value,
                Ok(None) => return Ok(Status::NotFound.code()),
                Err(status) => return Ok(status.code()),
            };
            Ok(Guest::return_bytes(&mut caller, &value, ptr_ptr, size_ptr)?.code())
        },
    )?;

    linker.func_wrap(
        MODULE,
        "proxy_get_header_map_size",
        |mut caller: Caller<'_, VmData>, map: i32, size_ptr: i32| -> i32 {
            let Some(map) = MapType::from_raw(map) else {
                return Status::BadArgument.code();
            };
            let pairs = match on_map(&mut caller, map, |host, kind| {
                host.header_pairs(kind).ok_or(Unavailable)
            }) {
                Ok(pairs) => pairs,
                Err(status) => return status.code(),
            };
            // Envoy returns the map's byte size: the lengths of all names and values.
            let size: usize = pairs
                .iter()
                .map(|(name, value)| name.len() + value.len())
                .sum();
            let size = u32::try_from(size).unwrap_or(u32::MAX);
            if Guest::write_u32(&mut caller, size_ptr, size) {
                Status::Ok.code()
            } else {
                Status::InvalidMemoryAccess.code()
            }
        },
    )?;
    Ok(())
}

/// Reads the key and value of an add or replace call.
fn read_key_value(
    caller: &mut Caller<'_, VmData>,
    key: (i32, i32),
    value: (i32, i32),
) -> std::result::Result<(Vec<u8>, Vec<u8>), Status> {
    let name = Guest::read(caller, key.0, key.1).ok_or(Status::InvalidMemoryAccess)?;
    let value = Guest::read(caller, value.0, value.1).ok_or(Status::InvalidMemoryAccess)?;
    Ok((name.to_ascii_lowercase(), value))
}

fn add_header_writes(linker: &mut Linker<VmData>) -> Result<()> {
    linker.func_wrap(
        MODULE,
        "proxy_add_header_map_value",
        |mut caller: Caller<'_, VmData>, map: i32, kp: i32, ks: i32, vp: i32, vs: i32| -> i32 {
            let Some(map) = MapType::from_raw(map) else {
                return Status::BadArgument.code();
            };
            status_of(
                read_key_value(&mut caller, (kp, ks), (vp, vs)).and_then(|(name, value)| {
                    on_map(&mut caller, map, |host, kind| {
                        host.add_header(kind, &name, &value)
                    })
                }),
            )
        },
    )?;

    linker.func_wrap(
        MODULE,
        "proxy_replace_header_map_value",
        |mut caller: Caller<'_, VmData>, map: i32, kp: i32, ks: i32, vp: i32, vs: i32| -> i32 {
            let Some(map) = MapType::from_raw(map) else {
                return Status::BadArgument.code();
            };
            status_of(
                read_key_value(&mut caller, (kp, ks), (vp, vs)).and_then(|(name, value)| {
                    on_map(&mut caller, map, |host, kind| {
                        host.replace_header(kind, &name, &value)
                    })
                }),
            )
        },
    )?;

    linker.func_wrap(
        MODULE,
        "proxy_remove_header_map_value",
        |mut caller: Caller<'_, VmData>, map: i32, key_ptr: i32, key_size: i32| -> i32 {
            let Some(map) = MapType::from_raw(map) else {
                return Status::BadArgument.code();
            };
            let Some(name) = Guest::read(&mut caller, key_ptr, key_size) else {
                return Status::InvalidMemoryAccess.code();
            };
            let name = name.to_ascii_lowercase();
            status_of(on_map(&mut caller, map, |host, kind| {
                host.remove_header(kind, &name)
            }))
        },
    )?;

    linker.func_wrap(
        MODULE,
        "proxy_set_header_map_pairs",
        |mut caller: Caller<'_, VmData>, map: i32, data_ptr: i32, data_size: i32| -> i32 {
            let Some(map) = MapType::from_raw(map) else {
                return Status::BadArgument.code();
            };
            let Some(data) = Guest::read(&mut caller, data_ptr, data_size) else {
                return Status::InvalidMemoryAccess.code();
            };
            status_of(parse_pairs(&data).and_then(|pairs| {
                on_map(&mut caller, map, |host, kind| {
                    host.set_header_pairs(kind, pairs)
                })
            }))
        },
    )?;
    Ok(())
}

/// Returns a copy of the bytes of buffer `buffer`, or the status the guest gets instead.
fn buffer_bytes(
    caller: &mut Caller<'_, VmData>,
    buffer: BufferType,
) -> std::result::Result<Vec<u8>, Status> {
    let abi = &mut caller.data_mut().abi;
    match buffer {
        BufferType::VmConfiguration => Ok(abi.plugin.vm_configuration.clone()),
        BufferType::PluginConfiguration if abi.configuring => {
            Ok(abi.plugin.plugin_configuration.clone())
        }
        BufferType::PluginConfiguration | BufferType::Unavailable => Err(Status::NotFound),
        BufferType::Body(kind) => abi
            .http_host()
            .and_then(|host| host.body(kind).map(<[u8]>::to_vec))
            .ok_or(Status::NotFound),
    }
}

/// Maps a `proxy_set_buffer_bytes` range onto the three edits Envoy supports on a body of
/// `len` bytes: prepend (`start` 0, `size` 0), replace all (`start` 0, `size` covering the
/// body) and append (`start` at or past the end). Any other range is `None`.
fn body_edit_range(len: usize, start: u32, size: u32) -> Option<std::ops::Range<usize>> {
    let start = start as usize;
    let size = size as usize;
    if start == 0 && size == 0 {
        Some(0..0)
    } else if start == 0 && size >= len {
        Some(0..len)
    } else if start >= len {
        Some(len..len)
    } else {
        None
    }
}

fn set_body(
    caller: &mut Caller<'_, VmData>,
    kind: BodyKind,
    (start, size): (u32, u32),
    (data_ptr, data_size): (i32, i32),
) -> std::result::Result<(), Status> {
    let len = caller
        .data_mut()
        .abi
        .http_host()
        .and_then(|host| host.body(kind).map(<[u8]>::len))
        .ok_or(Status::NotFound)?;
    let data = Guest::read(caller, data_ptr, data_size).ok_or(Status::InvalidMemoryAccess)?;
    let range = body_edit_range(len, start, size).ok_or(Status::BadArgument)?;
    let host = caller.data_mut().abi.http_host().ok_or(Status::NotFound)?;
    host.replace_body(kind, range, &data)
        .map_err(|Unavailable| Status::NotFound)
}

fn add_buffers(linker: &mut Linker<VmData>) -> Result<()> {
    linker.func_wrap(
        MODULE,
        "proxy_get_buffer_bytes",
        |mut caller: Caller<'_, VmData>,
         buffer: i32,
         start: i32,
         max_size: i32,
         ptr_ptr: i32,
         size_ptr: i32|
         -> Result<i32> {
            let Some(buffer) = BufferType::from_raw(buffer) else {
                return Ok(Status::BadArgument.code());
            };
            let bytes = match buffer_bytes(&mut caller, buffer) {
                Ok(bytes) => bytes,
                Err(status) => return Ok(status.code()),
            };
            let start = start as u32 as usize;
            if start > bytes.len() {
                return Ok(Status::BadArgument.code());
            }
            let end = start
                .saturating_add(max_size as u32 as usize)
                .min(bytes.len());
            if end == start {
                // Envoy returns OK without writing the result pointers for an empty range.
                return Ok(Status::Ok.code());
            }
            Ok(Guest::return_bytes(&mut caller, &bytes[start..end], ptr_ptr, size_ptr)?.code())
        },
    )?;

    linker.func_wrap(
        MODULE,
        "proxy_get_buffer_status",
        |mut caller: Caller<'_, VmData>, buffer: i32, size_ptr: i32, flags_ptr: i32| -> i32 {
            let Some(buffer) = BufferType::from_raw(buffer) else {
                return Status::BadArgument.code();
            };
            let len = match buffer_bytes(&mut caller, buffer) {
                Ok(bytes) => u32::try_from(bytes.len()).unwrap_or(u32::MAX),
                Err(status) => return status.code(),
            };
            if Guest::write_u32(&mut caller, size_ptr, len)
                && Guest::write_u32(&mut caller, flags_ptr, 0)
            {
                Status::Ok.code()
            } else {
                Status::InvalidMemoryAccess.code()
            }
        },
    )?;

    linker.func_wrap(
        MODULE,
        "proxy_set_buffer_bytes",
        |mut caller: Caller<'_, VmData>,
         buffer: i32,
         start: i32,
         size: i32,
         data_ptr: i32,
         data_size: i32|
         -> i32 {
            let range = (start as u32, size as u32);
            match BufferType::from_raw(buffer) {
                None => Status::BadArgument.code(),
                Some(BufferType::Body(kind)) => {
                    status_of(set_body(&mut caller, kind, range, (data_ptr, data_size)))
                }
                // Configuration buffers are read-only.
                Some(BufferType::VmConfiguration | BufferType::PluginConfiguration) => {
                    Status::BadArgument.code()
                }
                Some(BufferType::Unavailable) => Status::NotFound.code(),
            }
        },
    )?;
    Ok(())
}

/// Reads a local reply's parts from guest memory.
fn read_local_reply(
    caller: &mut Caller<'_, VmData>,
    status: u32,
    details: (i32, i32),
    body: (i32, i32),
    headers: (i32, i32),
    grpc_status: i32,
) -> std::result::Result<LocalReply, Status> {
    let details = Guest::read(caller, details.0, details.1).ok_or(Status::InvalidMemoryAccess)?;
    let body = Guest::read(caller, body.0, body.1).ok_or(Status::InvalidMemoryAccess)?;
    let headers = Guest::read(caller, headers.0, headers.1).ok_or(Status::InvalidMemoryAccess)?;
    Ok(LocalReply {
        status,
        headers: parse_pairs(&headers)?,
        body,
        details: String::from_utf8_lossy(&details).into_owned(),
        grpc_status: (grpc_status >= 0).then_some(grpc_status),
    })
}

fn add_stream_control(linker: &mut Linker<VmData>) -> Result<()> {
    linker.func_wrap(
        MODULE,
        "proxy_send_local_response",
        |mut caller: Caller<'_, VmData>,
         status: i32,
         details_ptr: i32,
         details_size: i32,
         body_ptr: i32,
         body_size: i32,
         headers_ptr: i32,
         headers_size: i32,
         grpc_status: i32|
         -> i32 {
            let reply = read_local_reply(
                &mut caller,
                status as u32,
                (details_ptr, details_size),
                (body_ptr, body_size),
                (headers_ptr, headers_size),
                grpc_status,
            );
            match reply {
                Ok(reply) => {
                    // Envoy sends only the first reply, because the stream has a response after it.
                    let effects = &mut caller.data_mut().abi.effects;
                    effects.local_reply.get_or_insert(reply);
                    Status::Ok.code()
                }
                Err(status) => status.code(),
            }
        },
    )?;

    linker.func_wrap(
        MODULE,
        "proxy_continue_stream",
        |mut caller: Caller<'_, VmData>, stream: i32| -> i32 {
            let effects = &mut caller.data_mut().abi.effects;
            match StreamType::from_raw(stream) {
                Some(StreamType::HttpRequest) => effects.continue_request = true,
                Some(StreamType::HttpResponse) => effects.continue_response = true,
                // An HTTP filter has no TCP streams to resume; Envoy rejects these too.
                Some(StreamType::Downstream | StreamType::Upstream) | None => {
                    return Status::BadArgument.code()
                }
            }
            Status::Ok.code()
        },
    )?;

    linker.func_wrap(
        MODULE,
        "proxy_close_stream",
        |mut caller: Caller<'_, VmData>, stream: i32| -> i32 {
            let effects = &mut caller.data_mut().abi.effects;
            match StreamType::from_raw(stream) {
                Some(StreamType::HttpRequest | StreamType::HttpResponse) => {
                    effects.reset_stream = true;
                }
                // Envoy accepts closing a TCP stream from an HTTP filter and does nothing.
                Some(StreamType::Downstream | StreamType::Upstream) => {}
                None => return Status::BadArgument.code(),
            }
            Status::Ok.code()
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::body_edit_range;

    #[test]
    fn body_edit_supports_prepend_replace_append() {
        assert_eq!(body_edit_range(10, 0, 0), Some(0..0));
        assert_eq!(body_edit_range(10, 0, 10), Some(0..10));
        assert_eq!(body_edit_range(10, 0, u32::MAX), Some(0..10));
        assert_eq!(body_edit_range(10, 10, 0), Some(10..10));
        assert_eq!(body_edit_range(10, u32::MAX, 5), Some(10..10));
    }

    #[test]
    fn body_edit_rejects_middle_ranges() {
        assert_eq!(body_edit_range(10, 0, 4), None);
        assert_eq!(body_edit_range(10, 3, 2), None);
    }
}
