package filters

import (
	"google.golang.org/protobuf/types/known/anypb"

	"edgefn.dev/envoygo/api"
)

// copy-header reads one request header and returns its value in one response header
// ("none" when the request lacks it): the job the benchmark compares with Envoy's Lua filter.
//
// Config: {"from": request header name, "to": response header name}.

const copyHeaderName = "copy-header"

type copyHeaderConfig struct {
	from string
	to   string
}

type copyHeaderParser struct {
	childWins
}

func (copyHeaderParser) Parse(config *anypb.Any, _ api.ConfigCallbackHandler) (interface{}, error) {
	s, err := decodeStruct(copyHeaderName, config)
	if err != nil {
		return nil, err
	}
	top := newFields(copyHeaderName, s)
	if err := top.onlyKeys("from", "to"); err != nil {
		return nil, err
	}
	from, err := top.requiredNonEmptyString("from")
	if err != nil {
		return nil, err
	}
	to, err := top.requiredNonEmptyString("to")
	if err != nil {
		return nil, err
	}
	return &copyHeaderConfig{from: from, to: to}, nil
}

type copyHeaderFilter struct {
	api.PassThroughStreamFilter
	config *copyHeaderConfig
	value  string
}

func (f *copyHeaderFilter) DecodeHeaders(header api.RequestHeaderMap, _ bool) api.StatusType {
	value, ok := header.Get(f.config.from)
	if !ok {
		value = "none"
	}
	f.value = value
	return api.Continue
}

func (f *copyHeaderFilter) EncodeHeaders(header api.ResponseHeaderMap, _ bool) api.StatusType {
	header.Set(f.config.to, f.value)
	return api.Continue
}

func copyHeaderFactory(config interface{}, _ api.FilterCallbackHandler) api.StreamFilter {
	return &copyHeaderFilter{config: config.(*copyHeaderConfig)}
}
