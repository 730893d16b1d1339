package http

/*
#include "api.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"edgefn.dev/envoygo/api"
)

var (
	lastConfigID uint64
	// configCache maps a config id (uint64) to the parsed config (interface{}).
	configCache sync.Map
	// mergedConfigDeleteDelay is how long a replaced merged config id stays usable, because
	// another worker may still enter Go with the id it cached.
	mergedConfigDeleteDelay = 2 * time.Second
)

// httpConfig is the config callbacks handle for one filter-level config. Its finalizer
// notifies the host that it may free the httpConfig memory.
type httpConfig struct {
	config *C.httpConfig
}

func finalizeConfig(c *httpConfig) {
	capiFinalizeConfig(c)
}

func newHTTPConfig(c *C.httpConfig) *httpConfig {
	config := &httpConfig{config: c}
	runtime.SetFinalizer(config, finalizeConfig)
	return config
}

func (c *httpConfig) DefineCounterMetric(name string) api.CounterMetric {
	return &metric{config: c, id: capiDefineMetric(c, api.Counter, name)}
}

func (c *httpConfig) DefineGaugeMetric(name string) api.GaugeMetric {
	return &metric{config: c, id: capiDefineMetric(c, api.Gauge, name)}
}

// metric implements api.CounterMetric and api.GaugeMetric. The id encodes the metric type
// for the host.
type metric struct {
	config *httpConfig
	id     uint32
}

func (m *metric) Increment(offset int64) { capiIncrementMetric(m.config, m.id, offset) }

func (m *metric) Get() uint64 { return capiGetMetric(m.config, m.id) }

func (m *metric) Record(value uint64) { capiRecordMetric(m.config, m.id, value) }

// hostBytes views host memory as a byte slice without copying.
func hostBytes(address, length uint64) []byte {
	return unsafe.Slice((*byte)(hostPointer(address)), int(length))
}

// hostText views host memory as a string without copying.
func hostText(address, length uint64) string {
	return unsafe.String((*byte)(hostPointer(address)), int(length))
}

// envoyGoFilterNewHttpPluginConfig parses one plugin config and returns its id, or 0 when
// the plugin's parser rejects it. The first call sizes the per-worker request maps from
// c.concurrency. For a filter-level config (is_route_config 0) Go keeps c until the
// config handle is garbage collected and then calls envoyGoConfigHttpFinalize(c).
//
//export envoyGoFilterNewHttpPluginConfig
func envoyGoFilterNewHttpPluginConfig(c *C.httpConfig) uint64 {
	var anyConfig anypb.Any
	// Bytes that do not decode leave anyConfig empty for the parser to judge, as in Envoy's SDK.
	_ = proto.Unmarshal(hostBytes(uint64(c.config_ptr), uint64(c.config_len)), &anyConfig)

	Requests.initialize(uint32(c.concurrency))

	id := atomic.AddUint64(&lastConfigID, 1)

	name := hostText(uint64(c.plugin_name_ptr), uint64(c.plugin_name_len))
	parser := getConfigParser(name)

	var parsed interface{}
	var err error
	if c.is_route_config == 1 {
		parsed, err = parser.Parse(&anyConfig, nil)
	} else {
		parsed, err = parser.Parse(&anyConfig, newHTTPConfig(c))
	}
	if err != nil {
		capiLog(api.Error, fmt.Sprintf("failed to parse golang plugin config: %v", err))
		return 0
	}

	configCache.Store(id, parsed)
	return id
}

// envoyGoFilterDestroyHttpPluginConfig drops a config id. needDelay 1 keeps it usable for
// mergedConfigDeleteDelay; any other value deletes it now.
//
//export envoyGoFilterDestroyHttpPluginConfig
func envoyGoFilterDestroyHttpPluginConfig(id uint64, needDelay int) {
	if needDelay == 1 {
		time.AfterFunc(mergedConfigDeleteDelay, func() { deleteConfig(id) })
	} else {
		deleteConfig(id)
	}

	if asanTestEnabled {
		forceGCFinalizer()
	}
}

func deleteConfig(id uint64) {
	parsed, ok := configCache.LoadAndDelete(id)
	if !ok {
		return
	}
	if c, ok := parsed.(api.Config); ok {
		c.Destroy()
	}
}

// envoyGoFilterMergeHttpPluginConfig stores parser.Merge(parent, child) under a new id. An
// unknown id panics, and nothing recovers it.
//
//export envoyGoFilterMergeHttpPluginConfig
func envoyGoFilterMergeHttpPluginConfig(namePtr, nameLen, parentID, childID uint64) uint64 {
	name := hostText(namePtr, nameLen)
	parser := getConfigParser(name)

	parent, ok := configCache.Load(parentID)
	if !ok {
		panic(fmt.Sprintf("merge config: parent config id %d not found", parentID))
	}
	child, ok := configCache.Load(childID)
	if !ok {
		panic(fmt.Sprintf("merge config: child config id %d not found", childID))
	}

	merged := parser.Merge(parent, child)
	id := atomic.AddUint64(&lastConfigID, 1)
	configCache.Store(id, merged)
	return id
}
