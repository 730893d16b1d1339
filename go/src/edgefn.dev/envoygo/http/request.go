package http

/*
#include "api.h"
*/
import "C"

import (
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"edgefn.dev/envoygo/api"
)

// Values of C processState.state while the host is waiting for Go.
const (
	stateProcessingHeader  = 1
	stateProcessingData    = 4
	stateProcessingTrailer = 6
)

// Values of httpRequest.waitingCallback.
const (
	noWaitingCallback  = 0
	mayWaitingCallback = 1
)

// panicInfo records a panic whose reply could not be sent at once, because the host was not
// waiting for Go (CAPINotInGo). The next OnHttpHeader/OnHttpData sends the panic reply.
type panicInfo struct {
	panicked bool
	details  string
}

// httpRequest is Go's state for one host httpRequest. It implements
// api.FilterCallbackHandler. The processStates and streamInfo are fields, not separate
// objects, so they form no reference cycle that would stop the finalizer.
type httpRequest struct {
	req        *C.httpRequest
	httpFilter api.StreamFilter
	pInfo      panicInfo

	// waitingLock guards the wait in checkOrWaitCallback against resumeWaitCallback.
	waitingLock     sync.Mutex
	cond            sync.Cond
	waitingCallback int32

	// mutex serialises the calls that read the host's per-request result buffer, and with it
	// the yield protocol (one outstanding yield per request).
	mutex sync.Mutex

	decodingState processState
	encodingState processState
	streamInfo    streamInfo
}

// processState is one direction of a request. It implements the decoder and encoder
// callbacks and caches the host's processState pointer for that direction.
type processState struct {
	request      *httpRequest
	processState *C.processState
}

// Phase maps the host's (is_encoding, state) pair to the callback being run. Any state
// other than ProcessingHeader, ProcessingData or ProcessingTrailer panics.
func (s *processState) Phase() api.EnvoyRequestPhase {
	encoding := s.processState.is_encoding != 0
	switch int(s.processState.state) {
	case stateProcessingHeader:
		if encoding {
			return api.EncodeHeaderPhase
		}
		return api.DecodeHeaderPhase
	case stateProcessingData:
		if encoding {
			return api.EncodeDataPhase
		}
		return api.DecodeDataPhase
	case stateProcessingTrailer:
		if encoding {
			return api.EncodeTrailerPhase
		}
		return api.DecodeTrailerPhase
	}
	panic(fmt.Errorf("unexpected processState: is_encoding %d, state %d",
		s.processState.is_encoding, s.processState.state))
}

func (s *processState) Continue(status api.StatusType) {
	capiContinue(s, status)
}

func (s *processState) SendLocalReply(responseCode int, bodyText string, headers map[string][]string, grpcStatus int64, details string) {
	capiSendLocalReply(s, responseCode, bodyText, headers, grpcStatus, details)
}

func (s *processState) AddData(data []byte, isStreaming bool) {
	capiAddData(s, data, isStreaming)
}

func (s *processState) InjectData(data []byte) {
	capiInjectData(s, data)
}

func (s *processState) SetUpstreamOverrideHost(host string, strict bool) error {
	return capiSetUpstreamOverrideHost(s, host, strict)
}

func (s *processState) sendPanicReply(details string) {
	defer s.RecoverPanic()
	capiSendPanicReply(s, details)
}

// RecoverPanic must be deferred directly. It logs the panic and then:
//   - request finished or filter destroyed: nothing more;
//   - host not waiting for Go: remembers the panic for the next entry into Go;
//   - anything else: calls envoyGoFilterHttpSendPanicReply (a 500 reply) now.
func (s *processState) RecoverPanic() {
	e := recover()
	if e == nil {
		return
	}

	stack := debug.Stack()
	if e == errRequestFinished || e == errFilterDestroyed {
		api.LogInfof("http: panic serving: %v (the client may have left early)\n%s", e, stack)
	} else {
		api.LogErrorf("http: panic serving: %v\n%s", e, stack)
	}

	switch e {
	case errRequestFinished, errFilterDestroyed:
	case errNotInGo:
		s.request.pInfo = panicInfo{panicked: true, details: fmt.Sprint(e)}
	default:
		// sendPanicReply can only panic with the three values above, so this cannot recurse.
		s.sendPanicReply(fmt.Sprint(e))
	}
}

// recoverPanic is the request-level recovery of OnHttpLog, OnHttpStreamComplete,
// OnHttpDestroy and envoyGoRequestSemaDec: it only logs.
func (r *httpRequest) recoverPanic() {
	e := recover()
	if e == nil {
		return
	}

	stack := debug.Stack()
	if e == errRequestFinished || e == errFilterDestroyed {
		api.LogInfof("http: panic serving: %v (the client may have left early)\n%s", e, stack)
	} else {
		api.LogErrorf("http: panic serving: %v\n%s", e, stack)
	}
}

// markMayWaitingCallback is called with r.mutex held, before a host call that may yield.
func (r *httpRequest) markMayWaitingCallback() {
	if !atomic.CompareAndSwapInt32(&r.waitingCallback, noWaitingCallback, mayWaitingCallback) {
		panic("markMayWaitingCallback: a host callback is already awaited")
	}
}

// markNoWaitingCallback does not assert the old state, because OnHttpDestroy may have reset it.
func (r *httpRequest) markNoWaitingCallback() {
	atomic.StoreInt32(&r.waitingCallback, noWaitingCallback)
}

// checkOrWaitCallback blocks until envoyGoRequestSemaDec or OnHttpDestroy, unless one of
// them already ran.
func (r *httpRequest) checkOrWaitCallback() {
	r.cond.L.Lock()
	defer r.cond.L.Unlock()

	for atomic.LoadInt32(&r.waitingCallback) != noWaitingCallback {
		r.cond.Wait()
	}
}

// resumeWaitCallback wakes a goroutine blocked in checkOrWaitCallback, if any.
func (r *httpRequest) resumeWaitCallback() {
	r.cond.L.Lock()
	defer r.cond.L.Unlock()

	if atomic.CompareAndSwapInt32(&r.waitingCallback, mayWaitingCallback, noWaitingCallback) {
		r.cond.Broadcast()
	}
}

// pluginName copies the plugin name out of the host's httpRequest.
func (r *httpRequest) pluginName() string {
	return C.GoStringN(r.req.plugin_name.data, C.int(r.req.plugin_name.len))
}

func (r *httpRequest) StreamInfo() api.StreamInfo {
	return &r.streamInfo
}

func (r *httpRequest) DecoderFilterCallbacks() api.DecoderFilterCallbacks {
	return &r.decodingState
}

func (r *httpRequest) EncoderFilterCallbacks() api.EncoderFilterCallbacks {
	return &r.encodingState
}

func (r *httpRequest) ClearRouteCache() {
	capiClearRouteCache(r, false)
}

func (r *httpRequest) RefreshRouteCache() {
	capiClearRouteCache(r, true)
}

// Log sends message with the "[http][<plugin name>] " prefix. It does not check the log level.
func (r *httpRequest) Log(level api.LogType, message string) {
	capiLog(level, fmt.Sprintf("[http][%v] %v", r.pluginName(), message))
}

func (r *httpRequest) LogLevel() api.LogType {
	return api.GetLogLevel()
}

func (r *httpRequest) GetProperty(key string) (string, error) {
	return capiGetStringProperty(r, key)
}

func (r *httpRequest) SecretManager() api.SecretManager {
	return &secretManager{request: r}
}

func (r *httpRequest) SetDrainConnectionUponCompletion() {
	capiSetDrainConnectionUponCompletion(r)
}

// Finalize notifies the host that Go holds no more references to its httpRequest.
func (r *httpRequest) Finalize(reason int) {
	capiFinalizeRequest(r, reason)
}

type secretManager struct {
	request *httpRequest
}

func (m *secretManager) GetGenericSecret(name string) (string, bool) {
	return capiGetStringSecret(m.request, name)
}
