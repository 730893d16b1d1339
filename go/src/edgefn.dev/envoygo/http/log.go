package http

import (
	"os"
	"sync/atomic"
	"time"

	"edgefn.dev/envoygo/api"
)

// logLevelSyncIntervalEnv overrides how often the host log level is read, as a Go duration
// of at least 1ms. The default is 1s.
const logLevelSyncIntervalEnv = "ENVOY_GOLANG_LOG_LEVEL_SYNC_INTERVAL"

var cachedLogLevel atomic.Int32

// hostLogger sends api.Log* messages to envoyGoFilterLog and returns the cached level, so
// a level check makes no host call.
type hostLogger struct{}

func (hostLogger) Log(level api.LogType, message string) {
	capiLog(level, message)
}

func (hostLogger) LogLevel() api.LogType {
	return api.LogType(cachedLogLevel.Load())
}

// init reads the host log level once and starts a goroutine that reads it again every
// interval for the life of the process. A c-shared library runs package init on a Go
// runtime thread that its constructor starts during dlopen, so the first
// envoyGoFilterLogLevel call can come before or just after dlopen returns, and always
// before the first exported call returns. The callback must therefore be defined before the
// library is loaded and be callable from any thread.
func init() {
	api.SetCommonCAPI(hostLogger{})

	interval := time.Second
	if text := os.Getenv(logLevelSyncIntervalEnv); text != "" {
		parsed, err := time.ParseDuration(text)
		if err == nil && parsed >= time.Millisecond {
			interval = parsed
		} else {
			api.LogErrorf("invalid %s=%q: expected a Go duration of at least 1ms; using %v",
				logLevelSyncIntervalEnv, text, interval)
		}
	}

	cachedLogLevel.Store(int32(capiLogLevel()))
	ticker := time.NewTicker(interval)
	go func() {
		for range ticker.C {
			cachedLogLevel.Store(int32(capiLogLevel()))
		}
	}()
}
