//! C structs, enums and status codes shared with Go plugins built with Envoy's Go SDK
//! (`contrib/golang/common/go/api/api.h` and the golang filter's C++ host, Envoy 1.40).
//! The `const _` assertions pin each layout to the offsets the SDK reads.

use std::ffi::c_void;
use std::mem::{offset_of, size_of};
use std::sync::atomic::AtomicI32;

/// `Cstring`: a pointer and a length, not NUL-terminated.
#[repr(C)]
pub struct CString {
    pub data: *const u8,
    pub len: u64,
}

/// `httpRequest`: the stream-wide handle (`r`) Go keeps as a map key until it calls
/// `envoyGoFilterHttpFinalize`. Go reads `plugin_name`, `config_id` and `worker_id`.
#[repr(C)]
pub struct HttpRequest {
    pub plugin_name: CString,
    pub config_id: u64,
    pub worker_id: u32,
    pub is_golang_processing_log: AtomicI32,
}

const _: () = assert!(size_of::<HttpRequest>() == 32);
const _: () = assert!(offset_of!(HttpRequest, config_id) == 16);
const _: () = assert!(offset_of!(HttpRequest, worker_id) == 24);
const _: () = assert!(offset_of!(HttpRequest, is_golang_processing_log) == 28);

/// `processState`: the per-direction handle (`s`). Go reads `is_encoding` and `state` at the
/// start of each call to pick the phase, and caches the pointer per direction.
#[repr(C)]
pub struct ProcessState {
    pub req: *mut HttpRequest,
    pub is_encoding: i32,
    /// A [`FilterState`] value. Atomic because Go threads may read it while the worker
    /// thread changes it.
    pub state: AtomicI32,
}

const _: () = assert!(size_of::<ProcessState>() == 16);
const _: () = assert!(offset_of!(ProcessState, is_encoding) == 8);
const _: () = assert!(offset_of!(ProcessState, state) == 12);

/// `httpConfig`: handed to `envoyGoFilterNewHttpPluginConfig`; Go keeps the pointer until it
/// calls `envoyGoConfigHttpFinalize`.
#[repr(C)]
pub struct HttpConfig {
    pub plugin_name_ptr: u64,
    pub plugin_name_len: u64,
    pub config_ptr: u64,
    pub config_len: u64,
    pub is_route_config: i32,
    pub concurrency: u32,
}

const _: () = assert!(size_of::<HttpConfig>() == 40);
const _: () = assert!(offset_of!(HttpConfig, is_route_config) == 32);
const _: () = assert!(offset_of!(HttpConfig, concurrency) == 36);

/// `GoString`, the element type of the arrays in `CopyHeaders` and `SendLocalReply`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GoString {
    pub p: *const u8,
    pub n: isize,
}

const _: () = assert!(size_of::<GoString>() == 16);

/// The C++ host's `FilterState` values, written to `ProcessState::state`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(i32)]
pub enum FilterState {
    #[default]
    WaitingHeader = 0,
    ProcessingHeader = 1,
    WaitingData = 2,
    WaitingAllData = 3,
    ProcessingData = 4,
    WaitingTrailer = 5,
    ProcessingTrailer = 6,
    Done = 7,
}

impl FilterState {
    /// Whether Go owns this direction now, which is when its callbacks are allowed.
    pub fn is_processing(self) -> bool {
        matches!(
            self,
            Self::ProcessingHeader | Self::ProcessingData | Self::ProcessingTrailer
        )
    }
}

/// `CAPIStatus` values returned to Go. Go panics on `FILTER_IS_GONE`, `FILTER_IS_DESTROY`,
/// `NOT_IN_GO`, `INVALID_PHASE` and `INVALID_SCENE`, and recovers from that panic inside its
/// own entry points, so those are returned exactly where Envoy's golang filter returns them.
pub mod capi {
    pub const OK: i32 = 0;
    pub const FILTER_IS_GONE: i32 = -1;
    pub const FILTER_IS_DESTROY: i32 = -2;
    pub const NOT_IN_GO: i32 = -3;
    pub const INVALID_PHASE: i32 = -4;
    pub const VALUE_NOT_FOUND: i32 = -5;
    pub const INTERNAL_FAILURE: i32 = -7;
    pub const INVALID_SCENE: i32 = -9;
}

/// `api.StatusType` values returned from Go's `OnHttpHeader` and `OnHttpData`, and passed to
/// `envoyGoFilterHttpContinue`.
pub mod go_status {
    pub const RUNNING: u64 = 0;
    pub const LOCAL_REPLY: u64 = 1;
    pub const CONTINUE: u64 = 2;
    pub const STOP_AND_BUFFER: u64 = 3;
    pub const STOP_AND_BUFFER_WATERMARK: u64 = 4;
    pub const STOP_NO_BUFFER: u64 = 5;
}

/// Reasons passed to `envoyGoFilterOnHttpDestroy`.
pub mod destroy_reason {
    pub const NORMAL: u64 = 0;
    pub const TERMINATE: u64 = 1;
}

/// `api.AccessLogType` value for the log written when the stream ends.
pub const ACCESS_LOG_DOWNSTREAM_END: u64 = 6;

/// `headerAction`: 0 replaces every value, 1 appends one.
pub const HEADER_ACTION_ADD: i32 = 1;

/// `bufferAction`.
pub mod buffer_action {
    pub const SET: i32 = 0;
    pub const APPEND: i32 = 1;
    pub const PREPEND: i32 = 2;
}

/// Raw pointer that may cross threads. Every user states why the pointee outlives the use.
#[derive(Clone, Copy, Debug)]
pub struct SendPtr(pub *mut c_void);

// SAFETY: the wrapper only moves an address between threads; each dereference is covered by
// the invariant documented where it happens.
unsafe impl Send for SendPtr {}
// SAFETY: as above; the wrapper itself has no interior state.
unsafe impl Sync for SendPtr {}
