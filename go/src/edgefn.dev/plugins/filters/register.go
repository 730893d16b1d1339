package filters

import "edgefn.dev/envoygo/api"

// Plugin is one test plugin: the name it is registered under, its filter factory and its
// config parser. Main packages pass these to http.RegisterHttpFilterFactoryAndConfigParser;
// this package imports only the plugin API, so its tests need no cgo host.
type Plugin struct {
	Name    string
	Factory api.StreamFilterFactory
	Parser  api.StreamFilterConfigParser
}

// AddHeader returns add-header for a library; library names the plugin library in the
// x-edgefn-library response header.
func AddHeader(library string) Plugin {
	return Plugin{addHeaderName, addHeaderFactory(library), addHeaderParser{}}
}

// All returns every test plugin, add-header included.
func All(library string) []Plugin {
	return []Plugin{
		AddHeader(library),
		{requireHeaderName, requireHeaderFactory, requireHeaderParser{}},
		{bodyRewriteName, bodyRewriteFactory, bodyRewriteParser{}},
		{asyncContinueName, asyncContinueFactory, asyncContinueParser{}},
		{trailersName, trailersFactory, noConfigParser{plugin: trailersName}},
		{panicName, panicFactory, panicParser{}},
		{bufferAllName, bufferAllFactory, noConfigParser{plugin: bufferAllName}},
		{localReplyName, localReplyFactory, localReplyParser{}},
		{reflectHeadersName, reflectHeadersFactory, noConfigParser{plugin: reflectHeadersName}},
		{loggerName, loggerFactory, noConfigParser{plugin: loggerName}},
		{destroyCounterName, destroyCounterFactory, noConfigParser{plugin: destroyCounterName}},
		{structConfigName, greetingFactory, structConfigParser{}},
		{typedStructConfigName, greetingFactory, typedStructConfigParser{}},
		{streamInfoName, streamInfoFactory, noConfigParser{plugin: streamInfoName}},
		{noopName, noopFactory, anyConfigParser{}},
		{copyHeaderName, copyHeaderFactory, copyHeaderParser{}},
	}
}
