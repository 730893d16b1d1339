package filters

import (
	"strconv"
	"strings"
	"sync/atomic"

	"google.golang.org/protobuf/types/known/anypb"

	"edgefn.dev/envoygo/api"
)

// Plugins that end requests themselves: panic, local-reply and destroy-counter.

const (
	panicName          = "panic"
	localReplyName     = "local-reply"
	destroyCounterName = "destroy-counter"
)

// panic panics where configured. Config: {"where": "decodeHeaders" | "decodeData" |
// "goroutine"}. decodeData panics in the first DecodeData call, so a request without a
// body does not panic. goroutine returns Running from DecodeHeaders; the goroutine defers
// RecoverPanic and panics before it would call Continue.

const (
	panicInDecodeHeaders = "decodeHeaders"
	panicInDecodeData    = "decodeData"
	panicInGoroutine     = "goroutine"
)

type panicParser struct {
	childWins
}

func (panicParser) Parse(config *anypb.Any, _ api.ConfigCallbackHandler) (interface{}, error) {
	s, err := decodeStruct(panicName, config)
	if err != nil {
		return nil, err
	}
	top := newFields(panicName, s)
	if err := top.onlyKeys("where"); err != nil {
		return nil, err
	}
	return top.requiredChoice("where", panicInDecodeHeaders, panicInDecodeData, panicInGoroutine)
}

type panicFilter struct {
	api.PassThroughStreamFilter
	callbacks api.FilterCallbackHandler
	where     string
}

func (f *panicFilter) DecodeHeaders(api.RequestHeaderMap, bool) api.StatusType {
	switch f.where {
	case panicInDecodeHeaders:
		panic("edgefn panic plugin: panic in DecodeHeaders")
	case panicInGoroutine:
		decoder := f.callbacks.DecoderFilterCallbacks()
		go func() {
			defer decoder.RecoverPanic()
			panic("edgefn panic plugin: panic in a goroutine before Continue")
		}()
		return api.Running
	}
	return api.Continue
}

func (f *panicFilter) DecodeData(api.BufferInstance, bool) api.StatusType {
	if f.where == panicInDecodeData {
		panic("edgefn panic plugin: panic in DecodeData")
	}
	return api.Continue
}

func panicFactory(config interface{}, callbacks api.FilterCallbackHandler) api.StreamFilter {
	return &panicFilter{callbacks: callbacks, where: config.(string)}
}

// local-reply replies with SendLocalReply: 403 from DecodeHeaders (phase "decode") or 503
// from EncodeHeaders (phase "encode"), body "denied", headers x-reason: policy and two
// set-cookie values, gRPC status -1, details "test". With crlf true the x-reason value is
// "policy\r\nx-injected: 1", to test that the host does not split it into a second header.
//
// Config: {"phase": "decode" | "encode", "crlf": false}; phase is required.

type localReplyConfig struct {
	encode bool
	crlf   bool
}

type localReplyParser struct {
	childWins
}

func (localReplyParser) Parse(config *anypb.Any, _ api.ConfigCallbackHandler) (interface{}, error) {
	s, err := decodeStruct(localReplyName, config)
	if err != nil {
		return nil, err
	}
	top := newFields(localReplyName, s)
	if err := top.onlyKeys("phase", "crlf"); err != nil {
		return nil, err
	}

	phase, err := top.requiredChoice("phase", "decode", "encode")
	if err != nil {
		return nil, err
	}
	crlf, err := top.optionalBool("crlf", false)
	if err != nil {
		return nil, err
	}
	return &localReplyConfig{encode: phase == "encode", crlf: crlf}, nil
}

type localReplyFilter struct {
	api.PassThroughStreamFilter
	callbacks api.FilterCallbackHandler
	config    *localReplyConfig
}

func (f *localReplyFilter) replyHeaders() map[string][]string {
	reason := "policy"
	if f.config.crlf {
		reason = "policy\r\nx-injected: 1"
	}
	return map[string][]string{
		"x-reason":   {reason},
		"set-cookie": {"a=1", "b=2"},
	}
}

func (f *localReplyFilter) DecodeHeaders(api.RequestHeaderMap, bool) api.StatusType {
	if f.config.encode {
		return api.Continue
	}
	f.callbacks.DecoderFilterCallbacks().SendLocalReply(403, "denied", f.replyHeaders(), -1, "test")
	return api.LocalReply
}

func (f *localReplyFilter) EncodeHeaders(api.ResponseHeaderMap, bool) api.StatusType {
	if !f.config.encode {
		return api.Continue
	}
	f.callbacks.EncoderFilterCallbacks().SendLocalReply(503, "denied", f.replyHeaders(), -1, "test")
	return api.LocalReply
}

func localReplyFactory(config interface{}, callbacks api.FilterCallbackHandler) api.StreamFilter {
	return &localReplyFilter{callbacks: callbacks, config: config.(*localReplyConfig)}
}

// destroy-counter replies 403 when the request path (query excluded) ends in an odd digit
// and continues otherwise. It counts OnDestroy calls process-wide; a request to
// /destroy-count gets 200 with the count of destroys before it as the body.

var destroyCount atomic.Int64

type destroyCounterFilter struct {
	api.PassThroughStreamFilter
	callbacks api.FilterCallbackHandler
}

func (f *destroyCounterFilter) DecodeHeaders(header api.RequestHeaderMap, _ bool) api.StatusType {
	path, _, _ := strings.Cut(header.Path(), "?")
	decoder := f.callbacks.DecoderFilterCallbacks()
	textPlain := map[string][]string{"content-type": {"text/plain"}}

	if path == "/destroy-count" {
		count := strconv.FormatInt(destroyCount.Load(), 10)
		decoder.SendLocalReply(200, count, textPlain, -1, "edgefn_destroy_count")
		return api.LocalReply
	}
	if path != "" && strings.ContainsRune("13579", rune(path[len(path)-1])) {
		decoder.SendLocalReply(403, "odd path", textPlain, -1, "edgefn_odd_path")
		return api.LocalReply
	}
	return api.Continue
}

func (*destroyCounterFilter) OnDestroy(api.DestroyReason) {
	destroyCount.Add(1)
}

func destroyCounterFactory(_ interface{}, callbacks api.FilterCallbackHandler) api.StreamFilter {
	return &destroyCounterFilter{callbacks: callbacks}
}
