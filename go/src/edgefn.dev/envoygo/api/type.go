// Package api holds the types and interfaces a Go HTTP filter plugin uses. They follow the
// plugin-facing API of Envoy's Go SDK (contrib/golang/common/go/api, Envoy 1.40 era), so a
// plugin written for that SDK reads the same against this one. The cgo side lives in
// edgefn.dev/envoygo/http.
package api

import "errors"

// StatusType is the value a filter callback returns. The host receives it unchanged as the
// uint64 result of envoyGoFilterOnHttpHeader or envoyGoFilterOnHttpData.
type StatusType int

const (
	// Running means the filter went asynchronous: the host stops iteration until a goroutine
	// calls Continue or SendLocalReply.
	Running StatusType = 0
	// LocalReply means the filter already called SendLocalReply.
	LocalReply StatusType = 1
	// Continue lets the stream go on to the next filter.
	Continue StatusType = 2
	// StopAndBuffer makes the host buffer the whole body and hand it over at end of stream.
	StopAndBuffer StatusType = 3
	// StopAndBufferWatermark buffers with flow control and keeps handing chunks to the filter.
	StopAndBufferWatermark StatusType = 4
	// StopNoBuffer stops iteration without keeping the current chunk. Valid from data only.
	StopNoBuffer StatusType = 5
)

// Header, data and trailer status values that mirror Envoy's C++ filter statuses. Envoy's
// golang filter host rejects them (it handles 0-5 only); they exist for API compatibility.
const (
	HeaderContinue                     StatusType = 100
	HeaderStopIteration                StatusType = 101
	HeaderContinueAndDontEndStream     StatusType = 102
	HeaderStopAllIterationAndBuffer    StatusType = 103
	HeaderStopAllIterationAndWatermark StatusType = 104

	DataContinue                  StatusType = 200
	DataStopIterationAndBuffer    StatusType = 201
	DataStopIterationAndWatermark StatusType = 202
	DataStopIterationNoBuffer     StatusType = 203

	TrailerContinue      StatusType = 300
	TrailerStopIteration StatusType = 301
)

// LogType is a log level, numbered as Envoy's spdlog levels (0 trace ... 5 critical).
type LogType int

const (
	Trace    LogType = 0
	Debug    LogType = 1
	Info     LogType = 2
	Warn     LogType = 3
	Error    LogType = 4
	Critical LogType = 5
)

// String returns the lower-case level name used in Envoy's log output.
func (l LogType) String() string {
	switch l {
	case Trace:
		return "trace"
	case Debug:
		return "debug"
	case Info:
		return "info"
	case Warn:
		return "warn"
	case Error:
		return "error"
	case Critical:
		return "critical"
	}
	return "unknown"
}

// HeaderMap is a request or response header (or trailer) map. The first read copies the
// whole map from the host, and later reads use that copy. Writes update the copy before
// they are sent to the host.
type HeaderMap interface {
	// GetRaw reads the first value of key from the host, case-sensitively, without copying.
	// The returned string points into host memory.
	GetRaw(key string) string
	// Get returns the first value of key (case-insensitive) and whether the key exists.
	Get(key string) (string, bool)
	// Values returns every value of key, or nil. The slice is not a copy.
	Values(key string) []string
	// Set replaces all values of key with value.
	Set(key, value string)
	// Add appends value to the values of key.
	Add(key, value string)
	// Del removes key and all its values.
	Del(key string)
	// Range calls f once per key and value until f returns false. Methods of the same map
	// must not be called from f, because the map is locked while Range runs.
	Range(f func(key, value string) bool)
	// RangeWithCopy is Range over a snapshot, so f may call the map's methods.
	RangeWithCopy(f func(key, value string) bool)
	// GetAllHeaders returns a deep copy of the map.
	GetAllHeaders() map[string][]string
}

// RequestHeaderMap is the request header map, with accessors for the pseudo-headers.
type RequestHeaderMap interface {
	HeaderMap
	Scheme() string
	Method() string
	Host() string
	Path() string
	SetMethod(method string)
	SetHost(host string)
	SetPath(path string)
}

// RequestTrailerMap is the request trailer map.
type RequestTrailerMap interface {
	HeaderMap
}

// ResponseHeaderMap is the response header map.
type ResponseHeaderMap interface {
	HeaderMap
	// Status returns the :status pseudo-header as a number.
	Status() (int, bool)
}

// ResponseTrailerMap is the response trailer map.
type ResponseTrailerMap interface {
	HeaderMap
}

// BufferAction selects how SetBufferHelper changes a body chunk. The values are the C enum
// bufferAction.
type BufferAction int

const (
	SetBuffer     BufferAction = 0
	AppendBuffer  BufferAction = 1
	PrependBuffer BufferAction = 2
)

// DataBufferBase is the read/write part of a body chunk.
type DataBufferBase interface {
	Write(p []byte) (n int, err error)
	WriteString(s string) (n int, err error)
	WriteByte(p byte) error
	// WriteUint16, WriteUint32 and WriteUint64 append the decimal text of the number.
	WriteUint16(p uint16) error
	WriteUint32(p uint32) error
	WriteUint64(p uint64) error
	// Bytes copies the whole chunk out of the host.
	Bytes() []byte
	// Drain removes up to offset bytes from the front of the chunk.
	Drain(offset int)
	Len() int
	Reset()
	String() string
	Append(data []byte) error
}

// BufferInstance is one body chunk that the host handed to DecodeData or EncodeData. It is
// valid only during that call, or until the filter continues if it returned Running.
type BufferInstance interface {
	DataBufferBase
	Set(data []byte) error
	SetString(s string) error
	Prepend(data []byte) error
	PrependString(s string) error
	AppendString(s string) error
}

// DestroyReason is the reason argument of envoyGoFilterOnHttpDestroy.
type DestroyReason int

const (
	// Normal means the stream ended while Go was not processing it.
	Normal DestroyReason = 0
	// Terminate means the stream ended while Go was still processing it.
	Terminate DestroyReason = 1
)

// AccessLogType is the log_type argument of envoyGoFilterOnHttpLog, numbered as Envoy's
// AccessLog::AccessLogType.
type AccessLogType int

const (
	AccessLogNotSet                                  AccessLogType = 0
	AccessLogTcpUpstreamConnected                    AccessLogType = 1
	AccessLogTcpPeriodic                             AccessLogType = 2
	AccessLogTcpConnectionEnd                        AccessLogType = 3
	AccessLogDownstreamStart                         AccessLogType = 4
	AccessLogDownstreamPeriodic                      AccessLogType = 5
	AccessLogDownstreamEnd                           AccessLogType = 6
	AccessLogUpstreamPoolReady                       AccessLogType = 7
	AccessLogUpstreamPeriodic                        AccessLogType = 8
	AccessLogUpstreamEnd                             AccessLogType = 9
	AccessLogDownstreamTunnelSuccessfullyEstablished AccessLogType = 10
)

// Finalize reasons, passed as the reason argument of envoyGoFilterHttpFinalize.
const (
	NormalFinalize int = 0
	GCFinalize     int = 1
)

// EnvoyRequestPhase is the callback a processState is in, derived from its is_encoding and
// state fields.
type EnvoyRequestPhase int

const (
	DecodeHeaderPhase EnvoyRequestPhase = iota + 1
	DecodeDataPhase
	DecodeTrailerPhase
	EncodeHeaderPhase
	EncodeDataPhase
	EncodeTrailerPhase
)

// String returns the phase name used in logs.
func (p EnvoyRequestPhase) String() string {
	switch p {
	case DecodeHeaderPhase:
		return "DecodeHeader"
	case DecodeDataPhase:
		return "DecodeData"
	case DecodeTrailerPhase:
		return "DecodeTrailer"
	case EncodeHeaderPhase:
		return "EncodeHeader"
	case EncodeDataPhase:
		return "EncodeData"
	case EncodeTrailerPhase:
		return "EncodeTrailer"
	}
	return "unknown phase"
}

// Errors returned by getters whose host call ended in a non-panicking failure status.
var (
	ErrInternalFailure      = errors.New("internal failure")
	ErrValueNotFound        = errors.New("value not found")
	ErrSerializationFailure = errors.New("serialization failure")
	ErrInvalidIPAddress     = errors.New("invalid IP address")
)
