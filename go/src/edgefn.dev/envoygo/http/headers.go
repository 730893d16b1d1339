package http

import (
	"strconv"
	"strings"
	"sync"

	"edgefn.dev/envoygo/api"
)

// headerOps are the host calls behind one kind of map: headers or trailers.
type headerOps struct {
	copyAll func(s *processState, num, bytes uint64) map[string][]string
	set     func(s *processState, key, value string, add bool)
	remove  func(s *processState, key string)
}

var (
	headerMapOps  = headerOps{copyAll: capiCopyHeaders, set: capiSetHeader, remove: capiRemoveHeader}
	trailerMapOps = headerOps{copyAll: capiCopyTrailers, set: capiSetTrailer, remove: capiRemoveTrailer}
)

// headerMap implements api.HeaderMap. The first access copies the whole map from the host
// with the count and byte size the host passed to OnHttpHeader (or OnHttpLog). After that
// Go reads only its own copy: Set, Add and Del change the copy first and then call the host.
type headerMap struct {
	state       *processState
	ops         *headerOps
	headerNum   uint64
	headerBytes uint64

	mutex   sync.Mutex
	headers map[string][]string
}

func (h *headerMap) init(state *processState, ops *headerOps, num, bytes uint64) {
	h.state = state
	h.ops = ops
	h.headerNum = num
	h.headerBytes = bytes
}

// load copies the map from the host on first use. The caller holds h.mutex.
func (h *headerMap) load() {
	if h.headers == nil {
		h.headers = h.ops.copyAll(h.state, h.headerNum, h.headerBytes)
	}
}

// GetRaw always reads request or response headers with envoyGoFilterHttpGetHeader, also on
// a trailer map, as Envoy's SDK does.
func (h *headerMap) GetRaw(key string) string {
	return capiGetHeader(h.state, key)
}

func (h *headerMap) Get(key string) (string, bool) {
	key = strings.ToLower(key)
	h.mutex.Lock()
	defer h.mutex.Unlock()
	h.load()

	values, ok := h.headers[key]
	if !ok {
		return "", false
	}
	return values[0], true
}

func (h *headerMap) Values(key string) []string {
	key = strings.ToLower(key)
	h.mutex.Lock()
	defer h.mutex.Unlock()
	h.load()

	return h.headers[key]
}

// Set loads the map before changing it, because a change made from a goroutine reaches the
// host's map later, and a later first load would miss it.
func (h *headerMap) Set(key, value string) {
	key = strings.ToLower(key)
	h.mutex.Lock()
	defer h.mutex.Unlock()
	h.load()

	h.headers[key] = []string{value}
	h.ops.set(h.state, key, value, false)
}

func (h *headerMap) Add(key, value string) {
	key = strings.ToLower(key)
	h.mutex.Lock()
	defer h.mutex.Unlock()
	h.load()

	h.headers[key] = append(h.headers[key], value)
	h.ops.set(h.state, key, value, true)
}

func (h *headerMap) Del(key string) {
	key = strings.ToLower(key)
	h.mutex.Lock()
	defer h.mutex.Unlock()
	h.load()

	delete(h.headers, key)
	h.ops.remove(h.state, key)
}

func (h *headerMap) Range(f func(key, value string) bool) {
	h.mutex.Lock()
	defer h.mutex.Unlock()
	h.load()

	for key, values := range h.headers {
		for _, value := range values {
			if !f(key, value) {
				return
			}
		}
	}
}

func (h *headerMap) RangeWithCopy(f func(key, value string) bool) {
	h.mutex.Lock()
	h.load()
	snapshot := make(map[string][]string, len(h.headers))
	for key, values := range h.headers {
		snapshot[key] = values
	}
	h.mutex.Unlock()

	for key, values := range snapshot {
		for _, value := range values {
			if !f(key, value) {
				return
			}
		}
	}
}

func (h *headerMap) GetAllHeaders() map[string][]string {
	h.mutex.Lock()
	defer h.mutex.Unlock()
	h.load()

	copied := make(map[string][]string, len(h.headers))
	for key, values := range h.headers {
		copied[key] = append([]string(nil), values...)
	}
	return copied
}

type requestHeaderMap struct {
	headerMap
}

var _ api.RequestHeaderMap = (*requestHeaderMap)(nil)

func newRequestHeaderMap(state *processState, num, bytes uint64) *requestHeaderMap {
	m := &requestHeaderMap{}
	m.init(state, &headerMapOps, num, bytes)
	return m
}

func (h *requestHeaderMap) Scheme() string {
	v, _ := h.Get(":scheme")
	return v
}

func (h *requestHeaderMap) Method() string {
	v, _ := h.Get(":method")
	return v
}

func (h *requestHeaderMap) Path() string {
	v, _ := h.Get(":path")
	return v
}

func (h *requestHeaderMap) Host() string {
	v, _ := h.Get(":authority")
	return v
}

func (h *requestHeaderMap) SetMethod(method string) { h.Set(":method", method) }

func (h *requestHeaderMap) SetPath(path string) { h.Set(":path", path) }

func (h *requestHeaderMap) SetHost(host string) { h.Set(":authority", host) }

type responseHeaderMap struct {
	headerMap
}

var _ api.ResponseHeaderMap = (*responseHeaderMap)(nil)

func newResponseHeaderMap(state *processState, num, bytes uint64) *responseHeaderMap {
	m := &responseHeaderMap{}
	m.init(state, &headerMapOps, num, bytes)
	return m
}

func (h *responseHeaderMap) Status() (int, bool) {
	text, ok := h.Get(":status")
	if !ok {
		return 0, false
	}
	code, _ := strconv.Atoi(text)
	return code, true
}

type requestTrailerMap struct {
	headerMap
}

var _ api.RequestTrailerMap = (*requestTrailerMap)(nil)

func newRequestTrailerMap(state *processState, num, bytes uint64) *requestTrailerMap {
	m := &requestTrailerMap{}
	m.init(state, &trailerMapOps, num, bytes)
	return m
}

type responseTrailerMap struct {
	headerMap
}

var _ api.ResponseTrailerMap = (*responseTrailerMap)(nil)

func newResponseTrailerMap(state *processState, num, bytes uint64) *responseTrailerMap {
	m := &responseTrailerMap{}
	m.init(state, &trailerMapOps, num, bytes)
	return m
}
