package http

/*
#include "api.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"edgefn.dev/envoygo/api"
)

// ErrDupRequestKey is the error behind the panic when the host enters Go twice with a new
// stream but the same httpRequest pointer.
var ErrDupRequestKey = errors.New("httpRequest pointer already has a Go request")

// Requests holds the live requests, one plain map per host worker. Each map is used only
// from its worker's thread, so the maps take no lock.
var Requests = &requestMap{}

var (
	concurrencyInitialized bool
	envoyConcurrency       uint32
)

// EnvoyConcurrency returns the host's worker count from the first config. It panics before
// the first config, so do not call it from an init function.
func EnvoyConcurrency() uint32 {
	if !concurrencyInitialized {
		panic("EnvoyConcurrency: no plugin config has been created yet; do not call it from init")
	}
	return envoyConcurrency
}

type requestMap struct {
	initOnce sync.Once
	requests []map[*C.httpRequest]*httpRequest
}

// initialize sizes the per-worker maps. Only the first call has an effect.
func (m *requestMap) initialize(concurrency uint32) {
	m.initOnce.Do(func() {
		concurrencyInitialized = true
		envoyConcurrency = concurrency
		m.requests = make([]map[*C.httpRequest]*httpRequest, concurrency)
		for i := range m.requests {
			m.requests[i] = map[*C.httpRequest]*httpRequest{}
		}
	})
}

// The lookups index by key.worker_id and panic if it is not below the concurrency.
func (m *requestMap) store(key *C.httpRequest, req *httpRequest) error {
	worker := m.requests[key.worker_id]
	if _, ok := worker[key]; ok {
		return ErrDupRequestKey
	}
	worker[key] = req
	return nil
}

func (m *requestMap) get(key *C.httpRequest) *httpRequest {
	return m.requests[key.worker_id][key]
}

func (m *requestMap) remove(key *C.httpRequest) {
	delete(m.requests[key.worker_id], key)
}

func finalizeRequest(r *httpRequest) {
	r.Finalize(api.NormalFinalize)
}

// createRequest registers a Go request for r and builds the plugin's filter with the
// config r.configId. It panics, unrecovered, on a duplicate r or an unknown config id.
func createRequest(r *C.httpRequest) *httpRequest {
	req := &httpRequest{req: r}
	req.decodingState.request = req
	req.encodingState.request = req
	req.streamInfo.request = req
	req.cond.L = &req.waitingLock
	runtime.SetFinalizer(req, finalizeRequest)

	if err := Requests.store(r, req); err != nil {
		panic(fmt.Sprintf("createRequest: %v", err))
	}

	factory, config := getFactoryAndConfig(req.pluginName(), uint64(r.configId))
	req.httpFilter = factory(config, req)
	return req
}

func getRequest(r *C.httpRequest) *httpRequest {
	return Requests.get(r)
}

// getOrCreateState returns the Go state of the direction s belongs to, creating the request
// on first entry. The first processState pointer seen per direction is kept and used for
// every later callback in that direction.
func getOrCreateState(s *C.processState) *processState {
	r := s.req
	req := getRequest(r)
	if req == nil {
		req = createRequest(r)
	}

	state := &req.decodingState
	if s.is_encoding != 0 {
		state = &req.encodingState
	}
	if state.processState == nil {
		state.processState = s
	}
	return state
}

// getState is getOrCreateState for OnHttpData: it neither creates the request nor records s.
func getState(s *C.processState) *processState {
	req := getRequest(s.req)
	if s.is_encoding == 0 {
		return &req.decodingState
	}
	return &req.encodingState
}

// envoyGoFilterOnHttpHeader runs DecodeHeaders, EncodeHeaders, DecodeTrailers or
// EncodeTrailers, picked by s.is_encoding and s.state. headerNum and headerBytes size the
// later CopyHeaders/CopyTrailers call. A panic is recovered (Go calls
// envoyGoFilterHttpSendPanicReply), and the call then returns 0 (Running) because the
// result is not a named return value.
//
//export envoyGoFilterOnHttpHeader
func envoyGoFilterOnHttpHeader(s *C.processState, endStream, headerNum, headerBytes uint64) uint64 {
	state := getOrCreateState(s)
	req := state.request
	if req.pInfo.panicked {
		state.sendPanicReply(req.pInfo.details)
		return uint64(api.LocalReply)
	}
	defer state.RecoverPanic()

	f := req.httpFilter
	var status api.StatusType
	switch state.Phase() {
	case api.DecodeHeaderPhase:
		status = f.DecodeHeaders(newRequestHeaderMap(state, headerNum, headerBytes), endStream == 1)
	case api.DecodeTrailerPhase:
		status = f.DecodeTrailers(newRequestTrailerMap(state, headerNum, headerBytes))
	case api.EncodeHeaderPhase:
		status = f.EncodeHeaders(newResponseHeaderMap(state, headerNum, headerBytes), endStream == 1)
	case api.EncodeTrailerPhase:
		status = f.EncodeTrailers(newResponseTrailerMap(state, headerNum, headerBytes))
	}

	// With end of stream there is no body left to wait for, so asking to buffer it is a
	// plugin bug. Trailers always arrive with endStream 1. The panic text is the one Envoy's
	// Go SDK uses: hosts recognise it in the panic reply (edgefn continues the stream).
	if endStream == 1 && (status == api.StopAndBuffer || status == api.StopAndBufferWatermark) {
		panic("received wait data status when there is no data, please fix the returned status")
	}
	return uint64(status)
}

// envoyGoFilterOnHttpData runs DecodeData or EncodeData on the chunk whose host handle is
// buffer and whose size is length.
//
//export envoyGoFilterOnHttpData
func envoyGoFilterOnHttpData(s *C.processState, endStream, buffer, length uint64) uint64 {
	state := getState(s)
	req := state.request
	if req.pInfo.panicked {
		state.sendPanicReply(req.pInfo.details)
		return uint64(api.LocalReply)
	}
	defer state.RecoverPanic()

	f := req.httpFilter
	chunk := &httpBuffer{state: state, handle: buffer, length: length}
	var status api.StatusType
	if state.Phase() == api.DecodeDataPhase {
		status = f.DecodeData(chunk, endStream == 1)
	} else {
		status = f.EncodeData(chunk, endStream == 1)
	}
	return uint64(status)
}

// envoyGoFilterOnHttpLog runs an access-log callback. The counts size the header and
// trailer copies; a zero count gives the plugin a nil map (request headers excepted).
//
//export envoyGoFilterOnHttpLog
func envoyGoFilterOnHttpLog(r *C.httpRequest, logType uint64,
	decodingStateWrapper *C.processState, encodingStateWrapper *C.processState,
	reqHeaderNum, reqHeaderBytes, reqTrailerNum, reqTrailerBytes,
	respHeaderNum, respHeaderBytes, respTrailerNum, respTrailerBytes uint64) {

	decodingState := getOrCreateState(decodingStateWrapper)
	encodingState := getOrCreateState(encodingStateWrapper)
	req := getRequest(r)
	if req == nil {
		req = createRequest(r)
	}
	defer req.recoverPanic()

	reqHeader := newRequestHeaderMap(decodingState, reqHeaderNum, reqHeaderBytes)

	var reqTrailer api.RequestTrailerMap
	if reqTrailerNum != 0 {
		reqTrailer = newRequestTrailerMap(decodingState, reqTrailerNum, reqTrailerBytes)
	}
	var respHeader api.ResponseHeaderMap
	if respHeaderNum != 0 {
		respHeader = newResponseHeaderMap(encodingState, respHeaderNum, respHeaderBytes)
	}
	var respTrailer api.ResponseTrailerMap
	if respTrailerNum != 0 {
		respTrailer = newResponseTrailerMap(encodingState, respTrailerNum, respTrailerBytes)
	}

	f := req.httpFilter
	switch api.AccessLogType(logType) {
	case api.AccessLogDownstreamEnd:
		f.OnLog(reqHeader, reqTrailer, respHeader, respTrailer)
	case api.AccessLogDownstreamPeriodic:
		f.OnLogDownstreamPeriodic(reqHeader, reqTrailer, respHeader, respTrailer)
	case api.AccessLogDownstreamStart:
		f.OnLogDownstreamStart(reqHeader)
	default:
		api.LogErrorf("access log type %d is not supported", logType)
	}
}

// envoyGoFilterOnHttpStreamComplete runs OnStreamComplete. Without a Go request the nil
// dereference is recovered and logged at error level, as in Envoy's SDK.
//
//export envoyGoFilterOnHttpStreamComplete
func envoyGoFilterOnHttpStreamComplete(r *C.httpRequest) {
	req := getRequest(r)
	defer req.recoverPanic()

	req.httpFilter.OnStreamComplete()
}

// envoyGoFilterOnHttpDestroy wakes a goroutine waiting for a yielded host call, runs
// OnDestroy and removes the request from Requests. The host frees its httpRequest only when the Go
// request's finalizer calls envoyGoFilterHttpFinalize.
//
//export envoyGoFilterOnHttpDestroy
func envoyGoFilterOnHttpDestroy(r *C.httpRequest, reason uint64) {
	req := getRequest(r)
	defer req.recoverPanic()

	req.resumeWaitCallback()
	req.httpFilter.OnDestroy(api.DestroyReason(reason))

	// The filter usually references the request; dropping it lets the finalizer run.
	req.httpFilter = nil
	Requests.remove(r)
}

// envoyGoRequestSemaDec wakes the goroutine waiting for the result of a yielded host call.
//
//export envoyGoRequestSemaDec
func envoyGoRequestSemaDec(r *C.httpRequest) {
	req := getRequest(r)
	defer req.recoverPanic()

	req.resumeWaitCallback()
}

// asanTestEnabled makes every config destroy force a GC and wait for finalizers.
var asanTestEnabled = false

// envoyGoFilterCleanUp exists for Envoy's sanitizer tests: it forces a GC so that request
// and config finalizers run.
//
//export envoyGoFilterCleanUp
func envoyGoFilterCleanUp() {
	asanTestEnabled = true
	forceGCFinalizer()
}

// forceGCFinalizer runs a GC and waits until the finalizer of a fresh unreachable object
// has run. Finalizers queued by the same GC usually have run by then, but Go does not
// promise an order.
func forceGCFinalizer() {
	var wg sync.WaitGroup
	wg.Add(1)
	{
		marker := &httpRequest{}
		runtime.SetFinalizer(marker, func(*httpRequest) { wg.Done() })
	}

	api.LogWarn("golang filter: forcing a GC")
	runtime.GC()
	wg.Wait()
}
