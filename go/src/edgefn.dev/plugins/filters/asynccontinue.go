package filters

import (
	"time"

	"google.golang.org/protobuf/types/known/anypb"

	"edgefn.dev/envoygo/api"
)

// async-continue returns Running from one phase. A goroutine then sleeps delayMs, sets
// x-async: done and calls Continue. x-async is a request header for the decode phases and a
// response header for encodeHeaders.
//
// Config: {"delayMs": 100, "phase": "decodeHeaders" | "decodeData" | "encodeHeaders"};
// phase is required, delayMs defaults to 100 and must be within 0-60000.
//
// For decodeData, DecodeHeaders returns StopAndBuffer so the request headers can still be
// changed in the data phase. A request whose headers end the stream has no data phase and
// gets no x-async header.

const asyncContinueName = "async-continue"

const (
	phaseDecodeHeaders = "decodeHeaders"
	phaseDecodeData    = "decodeData"
	phaseEncodeHeaders = "encodeHeaders"
)

type asyncContinueConfig struct {
	delay time.Duration
	phase string
}

type asyncContinueParser struct {
	childWins
}

func (asyncContinueParser) Parse(config *anypb.Any, _ api.ConfigCallbackHandler) (interface{}, error) {
	s, err := decodeStruct(asyncContinueName, config)
	if err != nil {
		return nil, err
	}
	top := newFields(asyncContinueName, s)
	if err := top.onlyKeys("delayMs", "phase"); err != nil {
		return nil, err
	}

	delayMs, err := top.optionalInt("delayMs", 100, 0, 60000)
	if err != nil {
		return nil, err
	}
	phase, err := top.requiredChoice("phase", phaseDecodeHeaders, phaseDecodeData, phaseEncodeHeaders)
	if err != nil {
		return nil, err
	}
	return &asyncContinueConfig{delay: time.Duration(delayMs) * time.Millisecond, phase: phase}, nil
}

type asyncContinueFilter struct {
	api.PassThroughStreamFilter
	callbacks api.FilterCallbackHandler
	config    *asyncContinueConfig

	requestHeaders api.RequestHeaderMap
	dataStarted    bool
}

// resumeLater sleeps, sets x-async on header and continues the direction of callbacks.
func (f *asyncContinueFilter) resumeLater(header api.HeaderMap, callbacks api.FilterProcessCallbacks) {
	go func() {
		defer callbacks.RecoverPanic()

		time.Sleep(f.config.delay)
		header.Set("x-async", "done")
		callbacks.Continue(api.Continue)
	}()
}

func (f *asyncContinueFilter) DecodeHeaders(header api.RequestHeaderMap, endStream bool) api.StatusType {
	switch f.config.phase {
	case phaseDecodeHeaders:
		f.resumeLater(header, f.callbacks.DecoderFilterCallbacks())
		return api.Running
	case phaseDecodeData:
		if endStream {
			return api.Continue
		}
		f.requestHeaders = header
		return api.StopAndBuffer
	}
	return api.Continue
}

func (f *asyncContinueFilter) DecodeData(_ api.BufferInstance, _ bool) api.StatusType {
	if f.config.phase != phaseDecodeData || f.dataStarted {
		return api.Continue
	}
	f.dataStarted = true
	f.resumeLater(f.requestHeaders, f.callbacks.DecoderFilterCallbacks())
	return api.Running
}

func (f *asyncContinueFilter) EncodeHeaders(header api.ResponseHeaderMap, _ bool) api.StatusType {
	if f.config.phase != phaseEncodeHeaders {
		return api.Continue
	}
	f.resumeLater(header, f.callbacks.EncoderFilterCallbacks())
	return api.Running
}

func asyncContinueFactory(config interface{}, callbacks api.FilterCallbackHandler) api.StreamFilter {
	return &asyncContinueFilter{callbacks: callbacks, config: config.(*asyncContinueConfig)}
}
