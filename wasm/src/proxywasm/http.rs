//! The stream interface a plugin uses ([`HttpHost`]), and the result of a callback for the
//! filter ([`Outcome`]).

use std::ops::Range;

use super::abi::{BodyKind, HeaderMapKind};
use super::pairs::HeaderPairs;

/// Error for a header map or body that the stream does not have in the current phase, such
/// as response headers while the request is processed. The plugin gets `BAD_ARGUMENT` for a
/// header map and `NOT_FOUND` for a body, as in Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the header map or body is not available in this phase of the stream")]
pub struct Unavailable;

/// One HTTP stream as a plugin reaches it, implemented by the Envoy filter (and by fakes in
/// tests). Header names passed in are lower case already; values are raw bytes.
///
/// Every method is called from inside a plugin callback, on the thread that called the VM.
pub trait HttpHost {
    /// Returns the pairs of `map` in order, or `None` when the stream has no such map now.
    fn header_pairs(&self, map: HeaderMapKind) -> Option<HeaderPairs>;

    /// Returns the first value of `name` in `map` (`Ok(None)` when the name is absent).
    fn header_value(&self, map: HeaderMapKind, name: &[u8])
        -> Result<Option<Vec<u8>>, Unavailable>;

    /// Appends `name: value` to `map`, keeping existing values of `name`.
    fn add_header(
        &mut self,
        map: HeaderMapKind,
        name: &[u8],
        value: &[u8],
    ) -> Result<(), Unavailable>;

    /// Sets `name` to the single value `value`, adding it when absent.
    fn replace_header(
        &mut self,
        map: HeaderMapKind,
        name: &[u8],
        value: &[u8],
    ) -> Result<(), Unavailable>;

    /// Removes every value of `name`; removing an absent name succeeds.
    fn remove_header(&mut self, map: HeaderMapKind, name: &[u8]) -> Result<(), Unavailable>;

    /// Replaces all of `map` with `pairs`.
    fn set_header_pairs(
        &mut self,
        map: HeaderMapKind,
        pairs: HeaderPairs,
    ) -> Result<(), Unavailable>;

    /// Returns the body bytes of `kind` the filter has now: the current chunk, or everything
    /// buffered so far while the plugin keeps the body (`DataAction::StopIterationAndBuffer`).
    /// `None` outside the body phase of that direction.
    fn body(&mut self, kind: BodyKind) -> Option<&[u8]>;

    /// Replaces `range` of the body of `kind` with `bytes`. The range lies within the body
    /// [`HttpHost::body`] returns (an empty range at its end appends).
    fn replace_body(
        &mut self,
        kind: BodyKind,
        range: Range<usize>,
        bytes: &[u8],
    ) -> Result<(), Unavailable>;

    /// Returns a stream property such as `["request", "method"]`, serialized as Envoy does:
    /// strings and bytes as they are, integers as 8-byte little-endian values. `None` when
    /// the stream has no such property.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
}

/// A response the plugin asked the filter to send instead of continuing the stream
/// (`proxy_send_local_response`). The filter sends it after the callback returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// HTTP status code, as the plugin gave it.
    pub status: u32,
    /// Headers to add to the reply, names in lower case.
    pub headers: HeaderPairs,
    pub body: Vec<u8>,
    /// Response code details for the access log (UTF-8, invalid bytes replaced).
    pub details: String,
    /// gRPC status to send, `None` when the plugin passed -1 (not a gRPC reply).
    pub grpc_status: Option<i32>,
}

/// The result of one callback, as the filter acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome<A> {
    /// The plugin's action, already forced to a stop when it sent a local reply.
    pub action: A,
    /// The first local reply the plugin sent during the callback.
    pub local_reply: Option<LocalReply>,
    /// The plugin resumed the request (`proxy_continue_stream(HTTP_REQUEST)`); the filter
    /// continues decoding after the callback even though the action stops.
    pub continue_request: bool,
    /// The plugin resumed the response (`proxy_continue_stream(HTTP_RESPONSE)`).
    pub continue_response: bool,
    /// The plugin closed the stream (`proxy_close_stream` on the request or response); the
    /// filter resets it.
    pub reset_stream: bool,
}

/// Stream requests the plugin made during one callback.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallEffects {
    pub(crate) local_reply: Option<LocalReply>,
    pub(crate) continue_request: bool,
    pub(crate) continue_response: bool,
    pub(crate) reset_stream: bool,
}

impl CallEffects {
    pub(crate) fn into_outcome<A>(self, action: A) -> Outcome<A> {
        Outcome {
            action,
            local_reply: self.local_reply,
            continue_request: self.continue_request,
            continue_response: self.continue_response,
            reset_stream: self.reset_stream,
        }
    }
}
