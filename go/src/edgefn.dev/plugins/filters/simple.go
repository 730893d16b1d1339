package filters

import (
	"google.golang.org/protobuf/types/known/anypb"

	"edgefn.dev/envoygo/api"
)

// Plugins without settings: trailers, buffer-all, reflect-headers and noop.

const (
	trailersName       = "trailers"
	bufferAllName      = "buffer-all"
	reflectHeadersName = "reflect-headers"
	noopName           = "noop"
)

// trailersFilter copies request trailer x-checksum into x-checksum-seen (when present) and
// sets response trailer x-edgefn-trailer: seen whenever the response has trailers.
type trailersFilter struct {
	api.PassThroughStreamFilter
}

func (*trailersFilter) DecodeTrailers(trailers api.RequestTrailerMap) api.StatusType {
	if checksum, ok := trailers.Get("x-checksum"); ok {
		trailers.Set("x-checksum-seen", checksum)
	}
	return api.Continue
}

func (*trailersFilter) EncodeTrailers(trailers api.ResponseTrailerMap) api.StatusType {
	trailers.Set("x-edgefn-trailer", "seen")
	return api.Continue
}

func trailersFactory(interface{}, api.FilterCallbackHandler) api.StreamFilter {
	return &trailersFilter{}
}

// bufferAllFilter returns StopAndBuffer from DecodeHeaders and EncodeHeaders even when the
// headers end the stream, and Continue from the data calls. Envoy's Go SDK treats
// StopAndBuffer at end of stream as a plugin bug: it panics inside OnHttpHeader, calls
// envoyGoFilterHttpSendPanicReply and returns 0 (Running). This plugin lets a host test that case.
type bufferAllFilter struct {
	api.PassThroughStreamFilter
}

func (*bufferAllFilter) DecodeHeaders(api.RequestHeaderMap, bool) api.StatusType {
	return api.StopAndBuffer
}

func (*bufferAllFilter) EncodeHeaders(api.ResponseHeaderMap, bool) api.StatusType {
	return api.StopAndBuffer
}

func bufferAllFactory(interface{}, api.FilterCallbackHandler) api.StreamFilter {
	return &bufferAllFilter{}
}

// reflectHeadersFilter rejects every request with 403 "rejected" and passes all request
// headers, pseudo-headers and repeated keys included, as the local reply's headers.
type reflectHeadersFilter struct {
	api.PassThroughStreamFilter
	callbacks api.FilterCallbackHandler
}

func (f *reflectHeadersFilter) DecodeHeaders(header api.RequestHeaderMap, _ bool) api.StatusType {
	f.callbacks.DecoderFilterCallbacks().SendLocalReply(403, "rejected", header.GetAllHeaders(), 0, "")
	return api.LocalReply
}

func reflectHeadersFactory(_ interface{}, callbacks api.FilterCallbackHandler) api.StreamFilter {
	return &reflectHeadersFilter{callbacks: callbacks}
}

// noopFilter continues everywhere. Its parser accepts any config.
type noopFilter struct {
	api.PassThroughStreamFilter
}

func noopFactory(interface{}, api.FilterCallbackHandler) api.StreamFilter {
	return &noopFilter{}
}

type anyConfigParser struct {
	childWins
}

func (anyConfigParser) Parse(config *anypb.Any, _ api.ConfigCallbackHandler) (interface{}, error) {
	return config, nil
}
