package filters

import (
	"google.golang.org/protobuf/types/known/anypb"

	"edgefn.dev/envoygo/api"
)

// require-header replies 403 with the configured body and content-type: text/plain when the
// configured request header is missing, and continues otherwise.
//
// Config: {"header": "x-api-key", "body": "missing api key"}; header is required, body
// defaults to "missing required header".

const requireHeaderName = "require-header"

type requireHeaderConfig struct {
	header string
	body   string
}

type requireHeaderParser struct {
	childWins
}

func (requireHeaderParser) Parse(config *anypb.Any, _ api.ConfigCallbackHandler) (interface{}, error) {
	s, err := decodeStruct(requireHeaderName, config)
	if err != nil {
		return nil, err
	}
	top := newFields(requireHeaderName, s)
	if err := top.onlyKeys("header", "body"); err != nil {
		return nil, err
	}

	header, err := top.requiredNonEmptyString("header")
	if err != nil {
		return nil, err
	}
	body, ok, err := top.optionalString("body")
	if err != nil {
		return nil, err
	}
	if !ok {
		body = "missing required header"
	}
	return &requireHeaderConfig{header: header, body: body}, nil
}

type requireHeaderFilter struct {
	api.PassThroughStreamFilter
	callbacks api.FilterCallbackHandler
	config    *requireHeaderConfig
}

func (f *requireHeaderFilter) DecodeHeaders(header api.RequestHeaderMap, _ bool) api.StatusType {
	if _, ok := header.Get(f.config.header); ok {
		return api.Continue
	}
	headers := map[string][]string{"content-type": {"text/plain"}}
	f.callbacks.DecoderFilterCallbacks().SendLocalReply(403, f.config.body, headers, -1, "edgefn_required_header_missing")
	return api.LocalReply
}

func requireHeaderFactory(config interface{}, callbacks api.FilterCallbackHandler) api.StreamFilter {
	return &requireHeaderFilter{callbacks: callbacks, config: config.(*requireHeaderConfig)}
}
