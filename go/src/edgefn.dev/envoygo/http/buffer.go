package http

import (
	"strconv"
	"unsafe"

	"edgefn.dev/envoygo/api"
)

// httpBuffer implements api.BufferInstance for one body chunk. handle is the opaque host
// value from OnHttpData. Go tracks the chunk length itself: it starts from OnHttpData's
// length and changes with each edit, and no host call reads it.
type httpBuffer struct {
	state  *processState
	handle uint64
	length uint64
}

var _ api.BufferInstance = (*httpBuffer)(nil)

func (b *httpBuffer) setBytes(data []byte, action api.BufferAction) {
	capiSetBuffer(b.state, b.handle, bytesData(data), len(data), action)
}

func (b *httpBuffer) setString(data string, action api.BufferAction) {
	capiSetBuffer(b.state, b.handle, stringData(data), len(data), action)
}

func (b *httpBuffer) Write(p []byte) (int, error) {
	b.setBytes(p, api.AppendBuffer)
	b.length += uint64(len(p))
	return len(p), nil
}

func (b *httpBuffer) WriteString(s string) (int, error) {
	b.setString(s, api.AppendBuffer)
	b.length += uint64(len(s))
	return len(s), nil
}

func (b *httpBuffer) WriteByte(p byte) error {
	_, err := b.Write([]byte{p})
	return err
}

func (b *httpBuffer) WriteUint16(p uint16) error {
	_, err := b.WriteString(strconv.FormatUint(uint64(p), 10))
	return err
}

func (b *httpBuffer) WriteUint32(p uint32) error {
	_, err := b.WriteString(strconv.FormatUint(uint64(p), 10))
	return err
}

func (b *httpBuffer) WriteUint64(p uint64) error {
	_, err := b.WriteString(strconv.FormatUint(p, 10))
	return err
}

// Bytes makes no host call for an empty chunk.
func (b *httpBuffer) Bytes() []byte {
	if b.length == 0 {
		return nil
	}
	return capiGetBuffer(b.state, b.handle, b.length)
}

// Drain clamps offset to the tracked length and makes no host call for offset <= 0 or an
// empty chunk.
func (b *httpBuffer) Drain(offset int) {
	if offset <= 0 || b.length == 0 {
		return
	}

	size := uint64(offset)
	if size > b.length {
		size = b.length
	}
	capiDrainBuffer(b.state, b.handle, size)
	b.length -= size
}

func (b *httpBuffer) Len() int {
	return int(b.length)
}

func (b *httpBuffer) Reset() {
	b.Drain(b.Len())
}

func (b *httpBuffer) String() string {
	if b.length == 0 {
		return ""
	}
	data := capiGetBuffer(b.state, b.handle, b.length)
	return unsafe.String(unsafe.SliceData(data), len(data))
}

func (b *httpBuffer) Append(data []byte) error {
	_, err := b.Write(data)
	return err
}

func (b *httpBuffer) AppendString(s string) error {
	_, err := b.WriteString(s)
	return err
}

func (b *httpBuffer) Prepend(data []byte) error {
	b.setBytes(data, api.PrependBuffer)
	b.length += uint64(len(data))
	return nil
}

func (b *httpBuffer) PrependString(s string) error {
	b.setString(s, api.PrependBuffer)
	b.length += uint64(len(s))
	return nil
}

func (b *httpBuffer) Set(data []byte) error {
	b.setBytes(data, api.SetBuffer)
	b.length = uint64(len(data))
	return nil
}

func (b *httpBuffer) SetString(s string) error {
	b.setString(s, api.SetBuffer)
	b.length = uint64(len(s))
	return nil
}
