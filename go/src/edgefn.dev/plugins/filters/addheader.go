package filters

import (
	"google.golang.org/protobuf/types/known/anypb"

	"edgefn.dev/envoygo/api"
)

// add-header sets one configured request header (seen by the upstream) and one configured
// response header, and marks every response with x-edgefn-plugin and x-edgefn-library.
//
// Config: {"requestHeader": {"name": N, "value": V}, "responseHeader": {"name": N, "value": V}},
// both optional.

const addHeaderName = "add-header"

type headerSetting struct {
	name  string
	value string
}

type addHeaderConfig struct {
	request  *headerSetting
	response *headerSetting
}

type addHeaderParser struct {
	childWins
}

func (addHeaderParser) Parse(config *anypb.Any, _ api.ConfigCallbackHandler) (interface{}, error) {
	s, err := decodeStruct(addHeaderName, config)
	if err != nil {
		return nil, err
	}
	top := newFields(addHeaderName, s)
	if err := top.onlyKeys("requestHeader", "responseHeader"); err != nil {
		return nil, err
	}

	parsed := &addHeaderConfig{}
	if parsed.request, err = parseHeaderSetting(top, "requestHeader"); err != nil {
		return nil, err
	}
	if parsed.response, err = parseHeaderSetting(top, "responseHeader"); err != nil {
		return nil, err
	}
	return parsed, nil
}

func parseHeaderSetting(top fields, key string) (*headerSetting, error) {
	object, ok, err := top.optionalObject(key)
	if err != nil || !ok {
		return nil, err
	}
	if err := object.onlyKeys("name", "value"); err != nil {
		return nil, err
	}
	name, err := object.requiredNonEmptyString("name")
	if err != nil {
		return nil, err
	}
	value, err := object.requiredString("value")
	if err != nil {
		return nil, err
	}
	return &headerSetting{name: name, value: value}, nil
}

type addHeaderFilter struct {
	api.PassThroughStreamFilter
	config  *addHeaderConfig
	library string
}

func (f *addHeaderFilter) DecodeHeaders(header api.RequestHeaderMap, _ bool) api.StatusType {
	if f.config.request != nil {
		header.Set(f.config.request.name, f.config.request.value)
	}
	return api.Continue
}

func (f *addHeaderFilter) EncodeHeaders(header api.ResponseHeaderMap, _ bool) api.StatusType {
	if f.config.response != nil {
		header.Set(f.config.response.name, f.config.response.value)
	}
	header.Set("x-edgefn-plugin", addHeaderName)
	header.Set("x-edgefn-library", f.library)
	return api.Continue
}

// addHeaderFactory returns the factory for a library; library is sent back in
// x-edgefn-library so a test can tell which plugin library served a response.
func addHeaderFactory(library string) api.StreamFilterFactory {
	return func(config interface{}, _ api.FilterCallbackHandler) api.StreamFilter {
		return &addHeaderFilter{config: config.(*addHeaderConfig), library: library}
	}
}
