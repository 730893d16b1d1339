package api

import "google.golang.org/protobuf/types/known/anypb"

// StreamDecoderFilter handles the request direction.
type StreamDecoderFilter interface {
	DecodeHeaders(header RequestHeaderMap, endStream bool) StatusType
	DecodeData(buffer BufferInstance, endStream bool) StatusType
	DecodeTrailers(trailers RequestTrailerMap) StatusType
}

// StreamEncoderFilter handles the response direction.
type StreamEncoderFilter interface {
	EncodeHeaders(header ResponseHeaderMap, endStream bool) StatusType
	EncodeData(buffer BufferInstance, endStream bool) StatusType
	EncodeTrailers(trailers ResponseTrailerMap) StatusType
}

// StreamFilter is one filter instance, created per request by a StreamFilterFactory.
type StreamFilter interface {
	StreamDecoderFilter
	StreamEncoderFilter

	// OnLog runs for the downstream-end access log. Maps the host reported as absent are nil.
	OnLog(RequestHeaderMap, RequestTrailerMap, ResponseHeaderMap, ResponseTrailerMap)
	OnLogDownstreamStart(RequestHeaderMap)
	OnLogDownstreamPeriodic(RequestHeaderMap, RequestTrailerMap, ResponseHeaderMap, ResponseTrailerMap)

	// OnDestroy runs once when the host destroys the stream.
	OnDestroy(DestroyReason)
	OnStreamComplete()
}

// PassThroughStreamDecoderFilter continues every request callback.
type PassThroughStreamDecoderFilter struct{}

func (*PassThroughStreamDecoderFilter) DecodeHeaders(RequestHeaderMap, bool) StatusType {
	return Continue
}

func (*PassThroughStreamDecoderFilter) DecodeData(BufferInstance, bool) StatusType {
	return Continue
}

func (*PassThroughStreamDecoderFilter) DecodeTrailers(RequestTrailerMap) StatusType {
	return Continue
}

// PassThroughStreamEncoderFilter continues every response callback.
type PassThroughStreamEncoderFilter struct{}

func (*PassThroughStreamEncoderFilter) EncodeHeaders(ResponseHeaderMap, bool) StatusType {
	return Continue
}

func (*PassThroughStreamEncoderFilter) EncodeData(BufferInstance, bool) StatusType {
	return Continue
}

func (*PassThroughStreamEncoderFilter) EncodeTrailers(ResponseTrailerMap) StatusType {
	return Continue
}

// PassThroughStreamFilter implements StreamFilter with no-op callbacks. Embed it and
// override only the callbacks a plugin needs.
type PassThroughStreamFilter struct {
	PassThroughStreamDecoderFilter
	PassThroughStreamEncoderFilter
}

func (*PassThroughStreamFilter) OnLog(RequestHeaderMap, RequestTrailerMap, ResponseHeaderMap, ResponseTrailerMap) {
}

func (*PassThroughStreamFilter) OnLogDownstreamStart(RequestHeaderMap) {}

func (*PassThroughStreamFilter) OnLogDownstreamPeriodic(RequestHeaderMap, RequestTrailerMap, ResponseHeaderMap, ResponseTrailerMap) {
}

func (*PassThroughStreamFilter) OnDestroy(DestroyReason) {}

func (*PassThroughStreamFilter) OnStreamComplete() {}

// StreamFilterConfigParser turns the plugin_config Any into a plugin config value.
type StreamFilterConfigParser interface {
	// Parse decodes a config. A non-nil error rejects it, and the host then rejects the
	// filter config. callbacks is nil for per-route configs.
	Parse(any *anypb.Any, callbacks ConfigCallbackHandler) (interface{}, error)
	// Merge combines a parent config (filter or virtual host level) with a more specific
	// child config, and returns the config used for the request.
	Merge(parentConfig interface{}, childConfig interface{}) interface{}
}

// Config is implemented by parsed configs that hold resources. Destroy runs when the host
// destroys the config id.
type Config interface {
	Destroy()
}

// StreamFilterFactory creates the filter instance for one request.
type StreamFilterFactory func(config interface{}, callbacks FilterCallbackHandler) StreamFilter

// StreamInfo reads per-request facts from the host's stream info.
type StreamInfo interface {
	GetRouteName() string
	FilterChainName() string
	// Protocol returns "HTTP/1.0", "HTTP/1.1", "HTTP/2.0" or "HTTP/3.0".
	Protocol() (string, bool)
	ResponseCode() (uint32, bool)
	ResponseCodeDetails() (string, bool)
	AttemptCount() uint32
	DynamicMetadata() DynamicMetadata
	DownstreamLocalAddress() string
	DownstreamRemoteAddress() string
	UpstreamLocalAddress() (string, bool)
	UpstreamRemoteAddress() (string, bool)
	UpstreamClusterName() (string, bool)
	FilterState() FilterState
	VirtualClusterName() (string, bool)
	// WorkerID returns the host's worker index for this request, read from the C struct.
	WorkerID() uint32
}

// StreamFilterCallbacks are the request-wide callbacks, usable in any phase.
type StreamFilterCallbacks interface {
	StreamInfo() StreamInfo
	// ClearRouteCache clears the cached route; the next filter picks it again.
	ClearRouteCache()
	// RefreshRouteCache clears the cached route and picks it again at once.
	RefreshRouteCache()
	// Log sends a message prefixed with "[http][<plugin name>] " to the host, at any level.
	Log(level LogType, msg string)
	LogLevel() LogType
	// GetProperty reads an Envoy attribute such as "request.path" as text.
	GetProperty(key string) (string, error)
	SecretManager() SecretManager
	// SetDrainConnectionUponCompletion closes the downstream connection after this response.
	SetDrainConnectionUponCompletion()
}

// FilterProcessCallbacks are the callbacks of one direction (decode or encode).
type FilterProcessCallbacks interface {
	// Continue resumes the direction after the filter returned Running.
	Continue(status StatusType)
	// SendLocalReply sends a response generated by the filter instead of the upstream's.
	// headers may repeat a key.
	SendLocalReply(responseCode int, bodyText string, headers map[string][]string, grpcStatus int64, details string)
	// RecoverPanic recovers a panic and turns it into a 500 reply. Defer it directly in every
	// goroutine that calls the host.
	RecoverPanic()
	// AddData adds body data while processing headers or trailers.
	AddData(data []byte, isStreaming bool)
	// InjectData sends body data onwards from a goroutine while processing data.
	InjectData(data []byte)
}

// DecoderFilterCallbacks are the request-direction callbacks.
type DecoderFilterCallbacks interface {
	FilterProcessCallbacks
	// SetUpstreamOverrideHost picks the upstream host by IP address.
	SetUpstreamOverrideHost(host string, strict bool) error
}

// EncoderFilterCallbacks are the response-direction callbacks.
type EncoderFilterCallbacks interface {
	FilterProcessCallbacks
}

// FilterCallbackHandler is the per-request callbacks argument of a StreamFilterFactory.
type FilterCallbackHandler interface {
	StreamFilterCallbacks
	// DecoderFilterCallbacks may be used only in Decode* phases.
	DecoderFilterCallbacks() DecoderFilterCallbacks
	// EncoderFilterCallbacks may be used only in Encode* phases.
	EncoderFilterCallbacks() EncoderFilterCallbacks
}

// DynamicMetadata reads and writes the request's dynamic metadata.
type DynamicMetadata interface {
	Get(filterName string) map[string]interface{}
	Set(filterName string, key string, value interface{})
}

// SecretManager reads generic secrets configured for the filter.
type SecretManager interface {
	GetGenericSecret(name string) (string, bool)
}

// StateType, LifeSpan and StreamSharing are the arguments of FilterState.SetString, passed
// to the host as ints.
type StateType int

const (
	StateTypeReadOnly StateType = 0
	StateTypeMutable  StateType = 1
)

type LifeSpan int

const (
	LifeSpanFilterChain LifeSpan = 0
	LifeSpanRequest     LifeSpan = 1
	LifeSpanConnection  LifeSpan = 2
	LifeSpanTopSpan     LifeSpan = 3
)

type StreamSharing int

const (
	None                             StreamSharing = 0
	SharedWithUpstreamConnection     StreamSharing = 1
	SharedWithUpstreamConnectionOnce StreamSharing = 2
)

// FilterState reads and writes string filter state objects.
type FilterState interface {
	SetString(key, value string, stateType StateType, lifeSpan LifeSpan, streamSharing StreamSharing)
	GetString(key string) string
}

// MetricType is the metric_type argument of envoyGoFilterHttpDefineMetric.
type MetricType uint32

const (
	Counter   MetricType = 0
	Gauge     MetricType = 1
	Histogram MetricType = 2
)

// ConfigCallbacks define metrics while a filter-level config is parsed.
type ConfigCallbacks interface {
	DefineCounterMetric(name string) CounterMetric
	DefineGaugeMetric(name string) GaugeMetric
}

// ConfigCallbackHandler is the callbacks argument of StreamFilterConfigParser.Parse.
type ConfigCallbackHandler interface {
	ConfigCallbacks
}

type CounterMetric interface {
	Increment(offset int64)
	Get() uint64
	Record(value uint64)
}

type GaugeMetric interface {
	Increment(offset int64)
	Get() uint64
	Record(value uint64)
}
