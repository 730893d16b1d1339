package filters

import (
	"strconv"

	"edgefn.dev/envoygo/api"
)

// stream-info reads the stream info in EncodeHeaders and returns each value in a response
// header x-stream-<name>. Every value id of GetStringValue (1-2, 5, 7-12) and
// GetIntegerValue (3, 4, 6) is read once, and worker_id comes from the httpRequest struct.
// An empty string is sent as "(empty)" and a value the host reports as not found as
// "(not found)", because a header value cannot be empty on every host.

const streamInfoName = "stream-info"

const (
	emptyMarker    = "(empty)"
	notFoundMarker = "(not found)"
)

func shown(value string, found bool) string {
	if !found {
		return notFoundMarker
	}
	if value == "" {
		return emptyMarker
	}
	return value
}

type streamInfoFilter struct {
	api.PassThroughStreamFilter
	callbacks api.FilterCallbackHandler
}

func (f *streamInfoFilter) EncodeHeaders(header api.ResponseHeaderMap, _ bool) api.StatusType {
	info := f.callbacks.StreamInfo()
	set := func(name, value string) {
		header.Set("x-stream-"+name, value)
	}

	set("worker-id", strconv.FormatUint(uint64(info.WorkerID()), 10))
	set("protocol", shown(info.Protocol()))
	set("route-name", shown(info.GetRouteName(), true))
	set("filter-chain-name", shown(info.FilterChainName(), true))
	set("downstream-local-address", shown(info.DownstreamLocalAddress(), true))
	set("downstream-remote-address", shown(info.DownstreamRemoteAddress(), true))

	code, found := info.ResponseCode()
	set("response-code", shown(strconv.FormatUint(uint64(code), 10), found))
	set("response-code-details", shown(info.ResponseCodeDetails()))
	set("attempt-count", strconv.FormatUint(uint64(info.AttemptCount()), 10))

	set("upstream-local-address", shown(info.UpstreamLocalAddress()))
	set("upstream-remote-address", shown(info.UpstreamRemoteAddress()))
	set("upstream-cluster-name", shown(info.UpstreamClusterName()))
	set("virtual-cluster-name", shown(info.VirtualClusterName()))
	return api.Continue
}

func streamInfoFactory(_ interface{}, callbacks api.FilterCallbackHandler) api.StreamFilter {
	return &streamInfoFilter{callbacks: callbacks}
}
