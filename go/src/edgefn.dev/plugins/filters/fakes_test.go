package filters

import (
	"sort"
	"strings"
	"sync"

	"edgefn.dev/envoygo/api"
)

// Fakes of the plugin-facing API, so filter logic runs without a cgo host.

type fakeHeaders struct {
	m map[string][]string
}

func newFakeHeaders(pairs ...string) *fakeHeaders {
	h := &fakeHeaders{m: map[string][]string{}}
	for i := 0; i+1 < len(pairs); i += 2 {
		h.Add(pairs[i], pairs[i+1])
	}
	return h
}

func (h *fakeHeaders) GetRaw(key string) string { v, _ := h.Get(key); return v }

func (h *fakeHeaders) Get(key string) (string, bool) {
	values := h.m[strings.ToLower(key)]
	if len(values) == 0 {
		return "", false
	}
	return values[0], true
}

func (h *fakeHeaders) Values(key string) []string { return h.m[strings.ToLower(key)] }

func (h *fakeHeaders) Set(key, value string) { h.m[strings.ToLower(key)] = []string{value} }

func (h *fakeHeaders) Add(key, value string) {
	key = strings.ToLower(key)
	h.m[key] = append(h.m[key], value)
}

func (h *fakeHeaders) Del(key string) { delete(h.m, strings.ToLower(key)) }

func (h *fakeHeaders) Range(f func(key, value string) bool) {
	keys := make([]string, 0, len(h.m))
	for k := range h.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range h.m[k] {
			if !f(k, v) {
				return
			}
		}
	}
}

func (h *fakeHeaders) RangeWithCopy(f func(key, value string) bool) { h.Range(f) }

func (h *fakeHeaders) GetAllHeaders() map[string][]string {
	copied := map[string][]string{}
	for k, v := range h.m {
		copied[k] = append([]string(nil), v...)
	}
	return copied
}

func (h *fakeHeaders) Scheme() string      { v, _ := h.Get(":scheme"); return v }
func (h *fakeHeaders) Method() string      { v, _ := h.Get(":method"); return v }
func (h *fakeHeaders) Host() string        { v, _ := h.Get(":authority"); return v }
func (h *fakeHeaders) Path() string        { v, _ := h.Get(":path"); return v }
func (h *fakeHeaders) SetMethod(m string)  { h.Set(":method", m) }
func (h *fakeHeaders) SetHost(v string)    { h.Set(":authority", v) }
func (h *fakeHeaders) SetPath(p string)    { h.Set(":path", p) }
func (h *fakeHeaders) Status() (int, bool) { return 200, true }

type fakeBuffer struct {
	data []byte
}

func (b *fakeBuffer) Write(p []byte) (int, error)       { b.data = append(b.data, p...); return len(p), nil }
func (b *fakeBuffer) WriteString(s string) (int, error) { return b.Write([]byte(s)) }
func (b *fakeBuffer) WriteByte(p byte) error            { _, err := b.Write([]byte{p}); return err }
func (b *fakeBuffer) WriteUint16(uint16) error          { return nil }
func (b *fakeBuffer) WriteUint32(uint32) error          { return nil }
func (b *fakeBuffer) WriteUint64(uint64) error          { return nil }
func (b *fakeBuffer) Bytes() []byte                     { return b.data }
func (b *fakeBuffer) Drain(n int)                       { b.data = b.data[min(n, len(b.data)):] }
func (b *fakeBuffer) Len() int                          { return len(b.data) }
func (b *fakeBuffer) Reset()                            { b.data = nil }
func (b *fakeBuffer) String() string                    { return string(b.data) }
func (b *fakeBuffer) Append(p []byte) error             { _, err := b.Write(p); return err }
func (b *fakeBuffer) Set(p []byte) error                { b.data = append([]byte(nil), p...); return nil }
func (b *fakeBuffer) SetString(s string) error          { return b.Set([]byte(s)) }
func (b *fakeBuffer) Prepend(p []byte) error {
	b.data = append(append([]byte(nil), p...), b.data...)
	return nil
}
func (b *fakeBuffer) PrependString(s string) error { return b.Prepend([]byte(s)) }
func (b *fakeBuffer) AppendString(s string) error  { return b.Append([]byte(s)) }

type localReply struct {
	code       int
	body       string
	headers    map[string][]string
	grpcStatus int64
	details    string
}

// fakeProcess records Continue and SendLocalReply of one direction.
type fakeProcess struct {
	mutex     sync.Mutex
	continued []api.StatusType
	replies   []localReply
	done      chan struct{}
}

func newFakeProcess() *fakeProcess {
	return &fakeProcess{done: make(chan struct{}, 8)}
}

func (p *fakeProcess) Continue(status api.StatusType) {
	p.mutex.Lock()
	p.continued = append(p.continued, status)
	p.mutex.Unlock()
	p.done <- struct{}{}
}

func (p *fakeProcess) SendLocalReply(code int, body string, headers map[string][]string, grpcStatus int64, details string) {
	p.mutex.Lock()
	defer p.mutex.Unlock()
	p.replies = append(p.replies, localReply{code, body, headers, grpcStatus, details})
}

func (p *fakeProcess) RecoverPanic() {
	if recover() != nil {
		p.done <- struct{}{}
	}
}

func (p *fakeProcess) AddData([]byte, bool)                       {}
func (p *fakeProcess) InjectData([]byte)                          {}
func (p *fakeProcess) SetUpstreamOverrideHost(string, bool) error { return nil }

type fakeCallbacks struct {
	decoder *fakeProcess
	encoder *fakeProcess
}

func newFakeCallbacks() *fakeCallbacks {
	return &fakeCallbacks{decoder: newFakeProcess(), encoder: newFakeProcess()}
}

func (c *fakeCallbacks) StreamInfo() api.StreamInfo                         { return nil }
func (c *fakeCallbacks) ClearRouteCache()                                   {}
func (c *fakeCallbacks) RefreshRouteCache()                                 {}
func (c *fakeCallbacks) Log(api.LogType, string)                            {}
func (c *fakeCallbacks) LogLevel() api.LogType                              { return api.Trace }
func (c *fakeCallbacks) GetProperty(string) (string, error)                 { return "", api.ErrValueNotFound }
func (c *fakeCallbacks) SecretManager() api.SecretManager                   { return nil }
func (c *fakeCallbacks) SetDrainConnectionUponCompletion()                  {}
func (c *fakeCallbacks) DecoderFilterCallbacks() api.DecoderFilterCallbacks { return c.decoder }
func (c *fakeCallbacks) EncoderFilterCallbacks() api.EncoderFilterCallbacks { return c.encoder }
