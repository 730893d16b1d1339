//! Numeric values of the proxy-wasm ABI 0.2.1, and how a callback's result maps to the
//! action the filter takes.
//!
//! The status, map, buffer, stream and log level numbers are the ones the ABI specification
//! (`proxy-wasm/spec`, `abi-versions/v0.2.1`) defines. The action mappings follow
//! proxy-wasm-cpp-host, the host library inside Envoy's wasm filter, so that a plugin's result
//! means the same thing here as there.

/// The result every proxy-wasm host function returns (`proxy_status_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
// The whole ABI list, though no host function here returns 3, 4 or 7.
#[allow(dead_code)]
pub enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    SerializationFailure = 3,
    ParseFailure = 4,
    InvalidMemoryAccess = 6,
    Empty = 7,
    CasMismatch = 8,
    InternalFailure = 10,
    Unimplemented = 12,
}

impl Status {
    /// Returns the value the guest receives.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// The header maps of `proxy_map_type_t` that an HTTP stream has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderMapKind {
    RequestHeaders,
    RequestTrailers,
    ResponseHeaders,
    ResponseTrailers,
}

/// The meaning of a `proxy_map_type_t` value from the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MapType {
    Http(HeaderMapKind),
    /// gRPC metadata and HTTP call response maps (4 to 7), which exist only in callbacks this
    /// host never makes.
    Unavailable,
}

impl MapType {
    /// Parses the guest's map type; values above 7 are not map types.
    pub(crate) fn from_raw(raw: i32) -> Option<Self> {
        match raw {
            0 => Some(Self::Http(HeaderMapKind::RequestHeaders)),
            1 => Some(Self::Http(HeaderMapKind::RequestTrailers)),
            2 => Some(Self::Http(HeaderMapKind::ResponseHeaders)),
            3 => Some(Self::Http(HeaderMapKind::ResponseTrailers)),
            4..=7 => Some(Self::Unavailable),
            _ => None,
        }
    }
}

/// The two HTTP bodies of `proxy_buffer_type_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyKind {
    Request,
    Response,
}

/// The meaning of a `proxy_buffer_type_t` value from the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BufferType {
    Body(BodyKind),
    VmConfiguration,
    PluginConfiguration,
    /// TCP data, HTTP call and gRPC responses, foreign function arguments: buffers of
    /// callbacks this host never makes.
    Unavailable,
}

impl BufferType {
    /// Parses the guest's buffer type; values above 8 are not buffer types.
    pub(crate) fn from_raw(raw: i32) -> Option<Self> {
        match raw {
            0 => Some(Self::Body(BodyKind::Request)),
            1 => Some(Self::Body(BodyKind::Response)),
            6 => Some(Self::VmConfiguration),
            7 => Some(Self::PluginConfiguration),
            2..=5 | 8 => Some(Self::Unavailable),
            _ => None,
        }
    }
}

/// `proxy_stream_type_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamType {
    HttpRequest,
    HttpResponse,
    Downstream,
    Upstream,
}

impl StreamType {
    pub(crate) fn from_raw(raw: i32) -> Option<Self> {
        match raw {
            0 => Some(Self::HttpRequest),
            1 => Some(Self::HttpResponse),
            2 => Some(Self::Downstream),
            3 => Some(Self::Upstream),
            _ => None,
        }
    }
}

/// The highest `proxy_log_level_t` (critical).
pub(crate) const MAX_LOG_LEVEL: i32 = 5;

/// Returns the `proxy_log_level_t` of the most verbose level `tracing` currently records:
/// trace 0, debug 1, info 2, warn 3, error 4, and critical 5 when logging is off.
pub(crate) fn current_log_level() -> i32 {
    use tracing::level_filters::LevelFilter;

    match LevelFilter::current() {
        LevelFilter::TRACE => 0,
        LevelFilter::DEBUG => 1,
        LevelFilter::INFO => 2,
        LevelFilter::WARN => 3,
        LevelFilter::ERROR => 4,
        _ => MAX_LOG_LEVEL,
    }
}

/// `proxy_metric_type_t`, kept in the low two bits of a metric id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetricType {
    Counter = 0,
    Gauge = 1,
    Histogram = 2,
}

impl MetricType {
    pub(crate) fn from_raw(raw: i32) -> Option<Self> {
        match raw {
            0 => Some(Self::Counter),
            1 => Some(Self::Gauge),
            2 => Some(Self::Histogram),
            _ => None,
        }
    }
}

/// What the filter does after `proxy_on_request_headers` or `proxy_on_response_headers`
/// (Envoy's `FilterHeadersStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadersAction {
    /// 0: pass the headers on.
    Continue,
    /// 2: pass the headers on and end the stream in this direction.
    ContinueAndEndStream,
    /// 3: stop, and buffer the body until the plugin continues the stream.
    StopAllIterationAndBuffer,
    /// 4: stop, and apply flow control to the body until the plugin continues the stream.
    StopAllIterationAndWatermark,
}

impl HeadersAction {
    /// Maps a callback result the way proxy-wasm-cpp-host does: 1 (the SDK's `Pause`) and any
    /// value above 4 stop all iteration with watermark, and so does any result of a call in
    /// which the plugin sent a local reply.
    pub(crate) fn from_result(result: u32, local_reply_sent: bool) -> Self {
        if local_reply_sent {
            return Self::StopAllIterationAndWatermark;
        }
        match result {
            0 => Self::Continue,
            2 => Self::ContinueAndEndStream,
            3 => Self::StopAllIterationAndBuffer,
            _ => Self::StopAllIterationAndWatermark,
        }
    }
}

/// What the filter does after `proxy_on_request_body` or `proxy_on_response_body`
/// (Envoy's `FilterDataStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataAction {
    /// 0: pass the data on.
    Continue,
    /// 1 (the SDK's `Pause`): keep the data and buffer what follows, so the next body call
    /// sees the whole body so far.
    StopIterationAndBuffer,
    /// 2: keep the data, and apply flow control to what follows.
    StopIterationAndWatermark,
    /// 3: hold the data without buffering what follows.
    StopIterationNoBuffer,
}

impl DataAction {
    /// Maps a callback result the way proxy-wasm-cpp-host does: values above 3, and any result
    /// of a call in which the plugin sent a local reply, stop without buffering.
    pub(crate) fn from_result(result: u32, local_reply_sent: bool) -> Self {
        if local_reply_sent {
            return Self::StopIterationNoBuffer;
        }
        match result {
            0 => Self::Continue,
            1 => Self::StopIterationAndBuffer,
            2 => Self::StopIterationAndWatermark,
            _ => Self::StopIterationNoBuffer,
        }
    }
}

/// What the filter does after `proxy_on_request_trailers` or `proxy_on_response_trailers`
/// (Envoy's `FilterTrailersStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailersAction {
    /// 0: pass the trailers on.
    Continue,
    /// 1, any higher value, or a call that sent a local reply: hold the trailers.
    StopIteration,
}

impl TrailersAction {
    pub(crate) fn from_result(result: u32, local_reply_sent: bool) -> Self {
        if result == 0 && !local_reply_sent {
            Self::Continue
        } else {
            Self::StopIteration
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_action_maps_pause_to_watermark() {
        assert_eq!(
            HeadersAction::from_result(1, false),
            HeadersAction::StopAllIterationAndWatermark
        );
        assert_eq!(
            HeadersAction::from_result(0, false),
            HeadersAction::Continue
        );
        assert_eq!(
            HeadersAction::from_result(2, false),
            HeadersAction::ContinueAndEndStream
        );
        assert_eq!(
            HeadersAction::from_result(3, false),
            HeadersAction::StopAllIterationAndBuffer
        );
        assert_eq!(
            HeadersAction::from_result(99, false),
            HeadersAction::StopAllIterationAndWatermark
        );
    }

    #[test]
    fn local_reply_stops_every_action() {
        assert_eq!(
            HeadersAction::from_result(0, true),
            HeadersAction::StopAllIterationAndWatermark
        );
        assert_eq!(
            DataAction::from_result(0, true),
            DataAction::StopIterationNoBuffer
        );
        assert_eq!(
            TrailersAction::from_result(0, true),
            TrailersAction::StopIteration
        );
    }

    #[test]
    fn data_action_maps_pause_to_buffer() {
        assert_eq!(DataAction::from_result(0, false), DataAction::Continue);
        assert_eq!(
            DataAction::from_result(1, false),
            DataAction::StopIterationAndBuffer
        );
        assert_eq!(
            DataAction::from_result(2, false),
            DataAction::StopIterationAndWatermark
        );
        assert_eq!(
            DataAction::from_result(7, false),
            DataAction::StopIterationNoBuffer
        );
    }

    #[test]
    fn map_and_buffer_types_parse() {
        assert_eq!(
            MapType::from_raw(2),
            Some(MapType::Http(HeaderMapKind::ResponseHeaders))
        );
        assert_eq!(MapType::from_raw(6), Some(MapType::Unavailable));
        assert_eq!(MapType::from_raw(8), None);
        assert_eq!(MapType::from_raw(-1), None);
        assert_eq!(
            BufferType::from_raw(0),
            Some(BufferType::Body(BodyKind::Request))
        );
        assert_eq!(
            BufferType::from_raw(7),
            Some(BufferType::PluginConfiguration)
        );
        assert_eq!(BufferType::from_raw(9), None);
    }
}
