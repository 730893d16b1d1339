package filters

import (
	"fmt"
	"strings"

	"edgefn.dev/envoygo/api"
)

// logger logs at every level from DecodeHeaders and again from a goroutine, including one
// 10 KiB message and one with invalid UTF-8. DecodeHeaders returns Running, and the
// goroutine continues the request. Every message starts with "edgefn-logger level=<level>". It uses
// the SDK's package-level log functions, which add no prefix and skip messages below the
// host level that Go last read with envoyGoFilterLogLevel.

const loggerName = "logger"

// loggerBigMessageSize is the exact byte size of the long message.
const loggerBigMessageSize = 10 * 1024

var logFuncs = []struct {
	level api.LogType
	log   func(string)
}{
	{api.Trace, api.LogTrace},
	{api.Debug, api.LogDebug},
	{api.Info, api.LogInfo},
	{api.Warn, api.LogWarn},
	{api.Error, api.LogError},
	{api.Critical, api.LogCritical},
}

func logEveryLevel(where string) {
	for _, l := range logFuncs {
		l.log(fmt.Sprintf("edgefn-logger level=%s where=%s", l.level, where))
	}

	big := fmt.Sprintf("edgefn-logger level=info where=%s size=%d ", where, loggerBigMessageSize)
	api.LogInfo(big + strings.Repeat("x", loggerBigMessageSize-len(big)))

	api.LogWarn(fmt.Sprintf("edgefn-logger level=warn where=%s invalid-utf8=\xff\xfe\xc3(", where))
}

type loggerFilter struct {
	api.PassThroughStreamFilter
	callbacks api.FilterCallbackHandler
}

func (f *loggerFilter) DecodeHeaders(api.RequestHeaderMap, bool) api.StatusType {
	logEveryLevel("decodeHeaders")

	decoder := f.callbacks.DecoderFilterCallbacks()
	go func() {
		defer decoder.RecoverPanic()
		logEveryLevel("goroutine")
		decoder.Continue(api.Continue)
	}()
	return api.Running
}

func loggerFactory(_ interface{}, callbacks api.FilterCallbackHandler) api.StreamFilter {
	return &loggerFilter{callbacks: callbacks}
}
