package http

import (
	"fmt"

	"edgefn.dev/envoygo/api"
)

// protocolNames maps the host's protocol ids (value id 3) to the SDK's protocol strings.
var protocolNames = map[uint64]string{
	0: "HTTP/1.0",
	1: "HTTP/1.1",
	2: "HTTP/2.0",
	3: "HTTP/3.0",
}

// streamInfo implements api.StreamInfo on top of GetStringValue and GetIntegerValue.
type streamInfo struct {
	request *httpRequest
}

func (s *streamInfo) GetRouteName() string {
	name, _ := capiGetStringValue(s.request, valueRouteName)
	return name
}

func (s *streamInfo) FilterChainName() string {
	name, _ := capiGetStringValue(s.request, valueFilterChainName)
	return name
}

// Protocol panics on an id outside 0-3, as Envoy's SDK does.
func (s *streamInfo) Protocol() (string, bool) {
	id, ok := capiGetIntegerValue(s.request, valueProtocol)
	if !ok {
		return "", false
	}
	name, known := protocolNames[id]
	if !known {
		panic(fmt.Sprintf("invalid protocol id %d from host, expected 0-3", id))
	}
	return name, true
}

func (s *streamInfo) ResponseCode() (uint32, bool) {
	code, ok := capiGetIntegerValue(s.request, valueResponseCode)
	return uint32(code), ok
}

func (s *streamInfo) ResponseCodeDetails() (string, bool) {
	return capiGetStringValue(s.request, valueResponseCodeDetails)
}

func (s *streamInfo) AttemptCount() uint32 {
	count, _ := capiGetIntegerValue(s.request, valueAttemptCount)
	return uint32(count)
}

func (s *streamInfo) DynamicMetadata() api.DynamicMetadata {
	return &dynamicMetadata{request: s.request}
}

func (s *streamInfo) DownstreamLocalAddress() string {
	address, _ := capiGetStringValue(s.request, valueDownstreamLocalAddress)
	return address
}

func (s *streamInfo) DownstreamRemoteAddress() string {
	address, _ := capiGetStringValue(s.request, valueDownstreamRemoteAddress)
	return address
}

func (s *streamInfo) UpstreamLocalAddress() (string, bool) {
	return capiGetStringValue(s.request, valueUpstreamLocalAddress)
}

func (s *streamInfo) UpstreamRemoteAddress() (string, bool) {
	return capiGetStringValue(s.request, valueUpstreamRemoteAddress)
}

func (s *streamInfo) UpstreamClusterName() (string, bool) {
	return capiGetStringValue(s.request, valueUpstreamClusterName)
}

func (s *streamInfo) VirtualClusterName() (string, bool) {
	return capiGetStringValue(s.request, valueVirtualClusterName)
}

func (s *streamInfo) FilterState() api.FilterState {
	return &filterState{request: s.request}
}

// WorkerID reads worker_id from the host's httpRequest struct; it makes no host call.
func (s *streamInfo) WorkerID() uint32 {
	return uint32(s.request.req.worker_id)
}

type dynamicMetadata struct {
	request *httpRequest
}

func (d *dynamicMetadata) Get(filterName string) map[string]interface{} {
	return capiGetDynamicMetadata(d.request, filterName)
}

func (d *dynamicMetadata) Set(filterName string, key string, value interface{}) {
	capiSetDynamicMetadata(d.request, filterName, key, value)
}

type filterState struct {
	request *httpRequest
}

func (f *filterState) SetString(key, value string, stateType api.StateType, lifeSpan api.LifeSpan, streamSharing api.StreamSharing) {
	capiSetStringFilterState(f.request, key, value, stateType, lifeSpan, streamSharing)
}

func (f *filterState) GetString(key string) string {
	return capiGetStringFilterState(f.request, key)
}
