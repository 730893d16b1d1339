package http

import (
	"fmt"
	"sync"

	"google.golang.org/protobuf/types/known/anypb"

	"edgefn.dev/envoygo/api"
)

type factoryAndParser struct {
	factory api.StreamFilterFactory
	parser  api.StreamFilterConfigParser
}

// registry maps a plugin name (string) to its *factoryAndParser.
var registry sync.Map

// RegisterHttpFilterFactoryAndConfigParser registers a plugin under name, the plugin_name
// the host passes in httpConfig and httpRequest. Call it from an init function. Neither
// argument may be nil; use NullParser for a plugin without config.
func RegisterHttpFilterFactoryAndConfigParser(name string, factory api.StreamFilterFactory, parser api.StreamFilterConfigParser) {
	if factory == nil {
		panic("RegisterHttpFilterFactoryAndConfigParser: filter factory is nil")
	}
	if parser == nil {
		panic("RegisterHttpFilterFactoryAndConfigParser: config parser is nil; use NullParser")
	}
	registry.Store(name, &factoryAndParser{factory: factory, parser: parser})
}

// nullParser returns the Any unchanged and merges by taking the child.
type nullParser struct{}

func (*nullParser) Parse(any *anypb.Any, _ api.ConfigCallbackHandler) (interface{}, error) {
	return any, nil
}

func (*nullParser) Merge(_ interface{}, child interface{}) interface{} {
	return child
}

// NullParser is the parser used for unregistered plugin names.
var NullParser api.StreamFilterConfigParser = &nullParser{}

type passThroughFilter struct {
	api.PassThroughStreamFilter
}

// PassThroughFactory is the factory used for unregistered plugin names.
func PassThroughFactory(interface{}, api.FilterCallbackHandler) api.StreamFilter {
	return &passThroughFilter{}
}

func getConfigParser(name string) api.StreamFilterConfigParser {
	if v, ok := registry.Load(name); ok {
		return v.(*factoryAndParser).parser
	}
	return NullParser
}

// getFactoryAndConfig panics when configID is not in the config cache. An unregistered
// name logs an error and falls back to PassThroughFactory.
func getFactoryAndConfig(name string, configID uint64) (api.StreamFilterFactory, interface{}) {
	config, ok := configCache.Load(configID)
	if !ok {
		panic(fmt.Sprintf("config id %d of plugin %q not found", configID, name))
	}

	if v, ok := registry.Load(name); ok {
		return v.(*factoryAndParser).factory, config
	}

	// The wording is the one Envoy's Go SDK logs: hosts recognise it (edgefn returns 500
	// instead of letting requests pass through a filter that does not exist).
	api.LogErrorf("plugin %s not found, pass through by default", name)
	return PassThroughFactory, config
}
