package filters

import (
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/anypb"

	"edgefn.dev/envoygo/api"
)

// body-rewrite buffers the whole request body (StopAndBuffer from DecodeHeaders unless the
// headers end the stream), replaces every "from" with "to" and fixes content-length if the
// request has one. With responseFrom/responseTo it does the same to the response.
//
// Config: {"from": F, "to": T, "responseFrom": F2, "responseTo": T2}; from and to are
// required, the response pair is optional but goes together. from strings must not be empty.
//
// The rewrite runs on the first DecodeData (EncodeData) call. After StopAndBuffer that call
// holds the whole body: at end of stream, or just before the trailers when trailers follow.

const bodyRewriteName = "body-rewrite"

type replacement struct {
	from string
	to   string
}

type bodyRewriteConfig struct {
	request  replacement
	response *replacement
}

type bodyRewriteParser struct {
	childWins
}

func (bodyRewriteParser) Parse(config *anypb.Any, _ api.ConfigCallbackHandler) (interface{}, error) {
	s, err := decodeStruct(bodyRewriteName, config)
	if err != nil {
		return nil, err
	}
	top := newFields(bodyRewriteName, s)
	if err := top.onlyKeys("from", "to", "responseFrom", "responseTo"); err != nil {
		return nil, err
	}

	parsed := &bodyRewriteConfig{}
	if parsed.request.from, err = top.requiredNonEmptyString("from"); err != nil {
		return nil, err
	}
	if parsed.request.to, err = top.requiredString("to"); err != nil {
		return nil, err
	}

	_, hasFrom := s.GetFields()["responseFrom"]
	_, hasTo := s.GetFields()["responseTo"]
	if hasFrom || hasTo {
		response := &replacement{}
		if response.from, err = top.requiredNonEmptyString("responseFrom"); err != nil {
			return nil, err
		}
		if response.to, err = top.requiredString("responseTo"); err != nil {
			return nil, err
		}
		parsed.response = response
	}
	return parsed, nil
}

type bodyRewriteFilter struct {
	api.PassThroughStreamFilter
	config *bodyRewriteConfig

	requestHeaders  api.RequestHeaderMap
	responseHeaders api.ResponseHeaderMap
}

func (f *bodyRewriteFilter) DecodeHeaders(header api.RequestHeaderMap, endStream bool) api.StatusType {
	if endStream {
		return api.Continue
	}
	f.requestHeaders = header
	return api.StopAndBuffer
}

func (f *bodyRewriteFilter) DecodeData(buffer api.BufferInstance, _ bool) api.StatusType {
	rewriteBody(buffer, f.config.request, f.requestHeaders)
	return api.Continue
}

func (f *bodyRewriteFilter) EncodeHeaders(header api.ResponseHeaderMap, endStream bool) api.StatusType {
	if endStream || f.config.response == nil {
		return api.Continue
	}
	f.responseHeaders = header
	return api.StopAndBuffer
}

func (f *bodyRewriteFilter) EncodeData(buffer api.BufferInstance, _ bool) api.StatusType {
	if f.config.response != nil {
		rewriteBody(buffer, *f.config.response, f.responseHeaders)
	}
	return api.Continue
}

// rewriteBody replaces the whole chunk and, when the body changed and the headers (still
// held by StopAndBuffer) carry content-length, sets it to the new size.
func rewriteBody(buffer api.BufferInstance, r replacement, headers api.HeaderMap) {
	body := buffer.String()
	rewritten := strings.ReplaceAll(body, r.from, r.to)
	if rewritten == body {
		return
	}
	_ = buffer.SetString(rewritten)

	if headers == nil {
		return
	}
	if _, ok := headers.Get("content-length"); ok {
		headers.Set("content-length", strconv.Itoa(len(rewritten)))
	}
}

func bodyRewriteFactory(config interface{}, _ api.FilterCallbackHandler) api.StreamFilter {
	return &bodyRewriteFilter{config: config.(*bodyRewriteConfig)}
}
