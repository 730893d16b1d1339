package http

/*
#cgo linux LDFLAGS: -Wl,-unresolved-symbols=ignore-all

#include <stdlib.h>
#include <string.h>

#include "api.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"strings"
	"unsafe"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"edgefn.dev/envoygo/api"
)

// Every host callback is called from this file, each in the form Envoy's Go SDK calls it.
// The LDFLAGS above leave the callbacks unresolved in the plugin library, as the SDK does,
// so the process that dlopens the library must define them.

// Panic values raised when the host returns a status that means "this call cannot happen
// now". RecoverPanic compares against them.
const (
	errRequestFinished = "the request is already finished (host returned CAPIFilterIsGone)"
	errFilterDestroyed = "the filter is already destroyed (host returned CAPIFilterIsDestroy)"
	errNotInGo         = "the host is not waiting for Go on this stream (host returned CAPINotInGo)"
	errInvalidPhase    = "the call is invalid in this phase, for example headers already continued (host returned CAPIInvalidPhase)"
	errInvalidScene    = "the call is invalid from this thread or state (host returned CAPIInvalidScene)"
)

// StreamInfo value ids of envoyGoFilterHttpGetStringValue and envoyGoFilterHttpGetIntegerValue.
const (
	valueRouteName               = 1
	valueFilterChainName         = 2
	valueProtocol                = 3
	valueResponseCode            = 4
	valueResponseCodeDetails     = 5
	valueAttemptCount            = 6
	valueDownstreamLocalAddress  = 7
	valueDownstreamRemoteAddress = 8
	valueUpstreamLocalAddress    = 9
	valueUpstreamRemoteAddress   = 10
	valueUpstreamClusterName     = 11
	valueVirtualClusterName      = 12
)

// minCopySlots is the minimum number of string slots handed to CopyHeaders/CopyTrailers:
// 16 headers, key and value each. Larger maps get exactly 2*N slots.
const minCopySlots = 32

// handleCAPIStatus panics on the statuses that mean the call was not allowed. Other
// statuses are left to the caller.
func handleCAPIStatus(status C.CAPIStatus) {
	switch status {
	case C.CAPIFilterIsGone:
		panic(errRequestFinished)
	case C.CAPIFilterIsDestroy:
		panic(errFilterDestroyed)
	case C.CAPINotInGo:
		panic(errNotInGo)
	case C.CAPIInvalidPhase:
		panic(errInvalidPhase)
	case C.CAPIInvalidScene:
		panic(errInvalidScene)
	}
}

func capiStatusToErr(status C.CAPIStatus) error {
	switch status {
	case C.CAPIValueNotFound:
		return api.ErrValueNotFound
	case C.CAPIInternalFailure:
		return api.ErrInternalFailure
	case C.CAPISerializationFailure:
		return api.ErrSerializationFailure
	case C.CAPIInvalidIPAddress:
		return api.ErrInvalidIPAddress
	}
	return fmt.Errorf("unexpected host status %d", int(status))
}

// stringData returns the address of s's bytes for a (pointer, length) argument pair.
func stringData(s string) unsafe.Pointer {
	return unsafe.Pointer(unsafe.StringData(s))
}

func bytesData(b []byte) unsafe.Pointer {
	return unsafe.Pointer(unsafe.SliceData(b))
}

// hostPointer turns an address the host returned as an integer into a pointer. go vet
// reports the conversion as a possible misuse, but the address is host memory outside Go's
// heap, so the garbage collector never moves or frees it.
func hostPointer(address uint64) unsafe.Pointer {
	return unsafe.Pointer(uintptr(address))
}

// hostString views host memory as a Go string without copying.
func hostString(data C.uint64_t, length C.int) string {
	return unsafe.String((*byte)(hostPointer(uint64(data))), int(length))
}

// === per-direction callbacks (processState) ===

func capiContinue(s *processState, status api.StatusType) {
	res := C.envoyGoFilterHttpContinue(unsafe.Pointer(s.processState), C.int(status))
	handleCAPIStatus(res)
}

// capiSendLocalReply passes headers as an array of Go strings {p, n}: key, value, key,
// value, ..., with a key repeated once per value and headers_num = 2 * pairs. The string
// bytes are pinned only for the duration of the call, so the host must copy them.
// NOTE: this layout was checked against a plugin built from Envoy's July 2026 SDK. Older SDK
// versions passed NUL-terminated C strings (char*) in this array instead.
func capiSendLocalReply(s *processState, code int, body string, headers map[string][]string, grpcStatus int64, details string) {
	var pinner runtime.Pinner
	defer pinner.Unpin()

	strs := make([]string, 0, len(headers)*2)
	for key, values := range headers {
		for _, value := range values {
			strs = append(strs, key, value)
			pinString(&pinner, key)
			pinString(&pinner, value)
		}
	}

	res := C.envoyGoFilterHttpSendLocalReply(unsafe.Pointer(s.processState), C.int(code),
		stringData(body), C.int(len(body)),
		unsafe.Pointer(unsafe.SliceData(strs)), C.int(len(strs)),
		C.longlong(grpcStatus), stringData(details), C.int(len(details)))
	handleCAPIStatus(res)
}

func pinString(pinner *runtime.Pinner, s string) {
	if len(s) > 0 {
		pinner.Pin(unsafe.StringData(s))
	}
}

func capiSendPanicReply(s *processState, details string) {
	res := C.envoyGoFilterHttpSendPanicReply(unsafe.Pointer(s.processState), stringData(details), C.int(len(details)))
	handleCAPIStatus(res)
}

func capiAddData(s *processState, data []byte, isStreaming bool) {
	res := C.envoyGoFilterHttpAddData(unsafe.Pointer(s.processState), bytesData(data), C.int(len(data)), C.bool(isStreaming))
	handleCAPIStatus(res)
}

func capiInjectData(s *processState, data []byte) {
	res := C.envoyGoFilterHttpInjectData(unsafe.Pointer(s.processState), bytesData(data), C.int(len(data)))
	handleCAPIStatus(res)
}

func capiSetUpstreamOverrideHost(s *processState, host string, strict bool) error {
	res := C.envoyGoFilterHttpSetUpstreamOverrideHost(unsafe.Pointer(s.processState), stringData(host), C.int(len(host)), C.bool(strict))
	if res == C.CAPIInvalidIPAddress {
		return capiStatusToErr(res)
	}
	handleCAPIStatus(res)
	return nil
}

// capiGetHeader returns the first value of key. The result points into host memory and is
// not copied; the host must keep it unchanged while the plugin may hold it.
func capiGetHeader(s *processState, key string) string {
	var valueData C.uint64_t
	var valueLen C.int
	res := C.envoyGoFilterHttpGetHeader(unsafe.Pointer(s.processState), stringData(key), C.int(len(key)), &valueData, &valueLen)
	handleCAPIStatus(res)
	return hostString(valueData, valueLen)
}

// copySlots allocates the key/value string slots and the byte buffer the host fills.
func copySlots(num, bytes uint64) ([]string, []byte) {
	slots := num * 2
	if slots < minCopySlots {
		slots = minCopySlots
	}
	return make([]string, slots), make([]byte, bytes)
}

// collectPairs builds the header map from the first num key/value pairs; repeated keys
// collect their values in order.
func collectPairs(strs []string, num uint64) map[string][]string {
	m := make(map[string][]string, num)
	for i := uint64(0); i < num*2; i += 2 {
		key := strs[i]
		m[key] = append(m[key], strs[i+1])
	}
	return m
}

// capiCopyHeaders copies the whole header map. num and bytes are the header count and the
// total key+value size the host passed to OnHttpHeader.
func capiCopyHeaders(s *processState, num, bytes uint64) map[string][]string {
	strs, buf := copySlots(num, bytes)
	res := C.envoyGoFilterHttpCopyHeaders(unsafe.Pointer(s.processState), unsafe.Pointer(unsafe.SliceData(strs)), bytesData(buf))
	handleCAPIStatus(res)
	m := collectPairs(strs, num)
	runtime.KeepAlive(buf)
	return m
}

func headerAction(add bool) C.headerAction {
	if add {
		return C.HeaderAdd
	}
	return C.HeaderSet
}

func capiSetHeader(s *processState, key, value string, add bool) {
	res := C.envoyGoFilterHttpSetHeaderHelper(unsafe.Pointer(s.processState), stringData(key), C.int(len(key)),
		stringData(value), C.int(len(value)), headerAction(add))
	handleCAPIStatus(res)
}

func capiRemoveHeader(s *processState, key string) {
	res := C.envoyGoFilterHttpRemoveHeader(unsafe.Pointer(s.processState), stringData(key), C.int(len(key)))
	handleCAPIStatus(res)
}

// capiGetBuffer copies length bytes (Go's own count of the chunk size) out of the chunk.
func capiGetBuffer(s *processState, buffer, length uint64) []byte {
	buf := make([]byte, length)
	res := C.envoyGoFilterHttpGetBuffer(unsafe.Pointer(s.processState), C.uint64_t(buffer), bytesData(buf))
	handleCAPIStatus(res)
	return buf
}

func capiDrainBuffer(s *processState, buffer, length uint64) {
	res := C.envoyGoFilterHttpDrainBuffer(unsafe.Pointer(s.processState), C.uint64_t(buffer), C.uint64_t(length))
	handleCAPIStatus(res)
}

func capiSetBuffer(s *processState, buffer uint64, data unsafe.Pointer, length int, action api.BufferAction) {
	var act C.bufferAction
	switch action {
	case api.SetBuffer:
		act = C.Set
	case api.AppendBuffer:
		act = C.Append
	case api.PrependBuffer:
		act = C.Prepend
	}
	res := C.envoyGoFilterHttpSetBufferHelper(unsafe.Pointer(s.processState), C.uint64_t(buffer), data, C.int(length), act)
	handleCAPIStatus(res)
}

func capiCopyTrailers(s *processState, num, bytes uint64) map[string][]string {
	strs, buf := copySlots(num, bytes)
	res := C.envoyGoFilterHttpCopyTrailers(unsafe.Pointer(s.processState), unsafe.Pointer(unsafe.SliceData(strs)), bytesData(buf))
	handleCAPIStatus(res)
	m := collectPairs(strs, num)
	runtime.KeepAlive(buf)
	return m
}

func capiSetTrailer(s *processState, key, value string, add bool) {
	res := C.envoyGoFilterHttpSetTrailer(unsafe.Pointer(s.processState), stringData(key), C.int(len(key)),
		stringData(value), C.int(len(value)), headerAction(add))
	handleCAPIStatus(res)
}

func capiRemoveTrailer(s *processState, key string) {
	res := C.envoyGoFilterHttpRemoveTrailer(unsafe.Pointer(s.processState), stringData(key), C.int(len(key)))
	handleCAPIStatus(res)
}

// === request-wide callbacks (httpRequest) ===

func capiClearRouteCache(r *httpRequest, refresh bool) {
	res := C.envoyGoFilterHttpClearRouteCache(unsafe.Pointer(r.req), C.bool(refresh))
	handleCAPIStatus(res)
}

// capiGetStringValue holds r.mutex because the host returns the value in one per-request
// buffer that a concurrent call would overwrite; the value is copied before unlocking.
func capiGetStringValue(r *httpRequest, id int) (string, bool) {
	r.mutex.Lock()
	defer r.mutex.Unlock()

	var valueData C.uint64_t
	var valueLen C.int
	res := C.envoyGoFilterHttpGetStringValue(unsafe.Pointer(r.req), C.int(id), &valueData, &valueLen)
	if res == C.CAPIValueNotFound {
		return "", false
	}
	handleCAPIStatus(res)
	return strings.Clone(hostString(valueData, valueLen)), true
}

func capiGetIntegerValue(r *httpRequest, id int) (uint64, bool) {
	var value C.uint64_t
	res := C.envoyGoFilterHttpGetIntegerValue(unsafe.Pointer(r.req), C.int(id), &value)
	if res == C.CAPIValueNotFound {
		return 0, false
	}
	handleCAPIStatus(res)
	return uint64(value), true
}

// callMayYield runs a host call that may return CAPIYield. After a yield the host fills the
// output variables later from its worker thread and then calls envoyGoRequestSemaDec (or
// OnHttpDestroy runs), which wakes Go. The caller holds r.mutex. The result is the status
// of the call itself.
func (r *httpRequest) callMayYield(call func() C.CAPIStatus) C.CAPIStatus {
	r.markMayWaitingCallback()
	res := call()
	if res == C.CAPIYield {
		r.checkOrWaitCallback()
		return res
	}
	r.markNoWaitingCallback()
	handleCAPIStatus(res)
	return res
}

func capiGetDynamicMetadata(r *httpRequest, filterName string) map[string]interface{} {
	r.mutex.Lock()
	defer r.mutex.Unlock()

	var valueData C.uint64_t
	var valueLen C.int
	r.callMayYield(func() C.CAPIStatus {
		return C.envoyGoFilterHttpGetDynamicMetadata(unsafe.Pointer(r.req),
			stringData(filterName), C.int(len(filterName)), &valueData, &valueLen)
	})

	buf := hostBytes(uint64(valueData), uint64(valueLen))
	var meta structpb.Struct
	// An undecodable value reads as empty metadata, as in Envoy's SDK.
	_ = proto.Unmarshal(buf, &meta)
	return meta.AsMap()
}

func capiSetDynamicMetadata(r *httpRequest, filterName, key string, value interface{}) {
	v, err := structpb.NewValue(value)
	if err != nil {
		panic(err)
	}
	buf, err := proto.Marshal(v)
	if err != nil {
		panic(err)
	}
	res := C.envoyGoFilterHttpSetDynamicMetadata(unsafe.Pointer(r.req),
		stringData(filterName), C.int(len(filterName)),
		stringData(key), C.int(len(key)),
		bytesData(buf), C.int(len(buf)))
	handleCAPIStatus(res)
}

func capiSetStringFilterState(r *httpRequest, key, value string, stateType api.StateType, lifeSpan api.LifeSpan, sharing api.StreamSharing) {
	res := C.envoyGoFilterHttpSetStringFilterState(unsafe.Pointer(r.req),
		stringData(key), C.int(len(key)), stringData(value), C.int(len(value)),
		C.int(stateType), C.int(lifeSpan), C.int(sharing))
	handleCAPIStatus(res)
}

func capiGetStringFilterState(r *httpRequest, key string) string {
	r.mutex.Lock()
	defer r.mutex.Unlock()

	var valueData C.uint64_t
	var valueLen C.int
	r.callMayYield(func() C.CAPIStatus {
		return C.envoyGoFilterHttpGetStringFilterState(unsafe.Pointer(r.req),
			stringData(key), C.int(len(key)), &valueData, &valueLen)
	})
	return strings.Clone(hostString(valueData, valueLen))
}

// capiGetStringProperty reads a CEL attribute. After a yield the real status arrives in rc.
func capiGetStringProperty(r *httpRequest, key string) (string, error) {
	r.mutex.Lock()
	defer r.mutex.Unlock()

	var valueData C.uint64_t
	var valueLen C.int
	var rc C.int
	res := r.callMayYield(func() C.CAPIStatus {
		return C.envoyGoFilterHttpGetStringProperty(unsafe.Pointer(r.req),
			stringData(key), C.int(len(key)), &valueData, &valueLen, &rc)
	})
	if res == C.CAPIYield {
		res = C.CAPIStatus(rc)
	}
	if res == C.CAPIOK {
		return strings.Clone(hostString(valueData, valueLen)), nil
	}
	return "", capiStatusToErr(res)
}

// capiGetStringSecret reads a generic secret. The host reports "not found" by setting the
// length to -1; a zero length is an empty secret.
func capiGetStringSecret(r *httpRequest, name string) (string, bool) {
	r.mutex.Lock()
	defer r.mutex.Unlock()

	var valueData C.uint64_t
	var valueLen C.int
	r.callMayYield(func() C.CAPIStatus {
		return C.envoyGoFilterHttpGetStringSecret(unsafe.Pointer(r.req),
			stringData(name), C.int(len(name)), &valueData, &valueLen)
	})
	if valueLen == -1 {
		return "", false
	}
	return strings.Clone(hostString(valueData, valueLen)), true
}

func capiSetDrainConnectionUponCompletion(r *httpRequest) {
	res := C.envoyGoFilterHttpSetDrainConnectionUponCompletion(unsafe.Pointer(r.req))
	handleCAPIStatus(res)
}

func capiFinalizeRequest(r *httpRequest, reason int) {
	C.envoyGoFilterHttpFinalize(unsafe.Pointer(r.req), C.int(reason))
}

// === config callbacks (httpConfig) ===

func capiFinalizeConfig(c *httpConfig) {
	C.envoyGoConfigHttpFinalize(unsafe.Pointer(c.config))
}

func capiDefineMetric(c *httpConfig, metricType api.MetricType, name string) uint32 {
	var id C.uint32_t
	res := C.envoyGoFilterHttpDefineMetric(unsafe.Pointer(c.config), C.uint32_t(metricType),
		stringData(name), C.int(len(name)), &id)
	handleCAPIStatus(res)
	return uint32(id)
}

func capiIncrementMetric(c *httpConfig, id uint32, offset int64) {
	res := C.envoyGoFilterHttpIncrementMetric(unsafe.Pointer(c.config), C.uint32_t(id), C.int64_t(offset))
	handleCAPIStatus(res)
}

func capiGetMetric(c *httpConfig, id uint32) uint64 {
	var value C.uint64_t
	res := C.envoyGoFilterHttpGetMetric(unsafe.Pointer(c.config), C.uint32_t(id), &value)
	handleCAPIStatus(res)
	return uint64(value)
}

func capiRecordMetric(c *httpConfig, id uint32, value uint64) {
	res := C.envoyGoFilterHttpRecordMetric(unsafe.Pointer(c.config), C.uint32_t(id), C.uint64_t(value))
	handleCAPIStatus(res)
}

// === process-wide callbacks ===

func capiLog(level api.LogType, message string) {
	C.envoyGoFilterLog(C.uint32_t(level), stringData(message), C.int(len(message)))
}

func capiLogLevel() api.LogType {
	return api.LogType(C.envoyGoFilterLogLevel())
}
