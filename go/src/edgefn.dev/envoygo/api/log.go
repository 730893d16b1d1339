package api

import "fmt"

// CommonCAPI is the logging backend. The http package installs the cgo implementation in
// its init, before any plugin code runs.
type CommonCAPI interface {
	Log(level LogType, message string)
	// LogLevel returns the host's log level as last synchronised, without a host call.
	LogLevel() LogType
}

type discardLogger struct{}

func (discardLogger) Log(LogType, string) {}

func (discardLogger) LogLevel() LogType { return Critical }

var commonCAPI CommonCAPI = discardLogger{}

// SetCommonCAPI replaces the logging backend.
func SetCommonCAPI(c CommonCAPI) {
	commonCAPI = c
}

// GetLogLevel returns the cached host log level.
func GetLogLevel() LogType {
	return commonCAPI.LogLevel()
}

// logAt sends message to the host unless the cached host level is above level. Messages
// carry no prefix.
func logAt(level LogType, message string) {
	if commonCAPI.LogLevel() > level {
		return
	}
	commonCAPI.Log(level, message)
}

func logfAt(level LogType, format string, v []any) {
	if commonCAPI.LogLevel() > level {
		return
	}
	commonCAPI.Log(level, fmt.Sprintf(format, v...))
}

func LogTrace(message string)    { logAt(Trace, message) }
func LogDebug(message string)    { logAt(Debug, message) }
func LogInfo(message string)     { logAt(Info, message) }
func LogWarn(message string)     { logAt(Warn, message) }
func LogError(message string)    { logAt(Error, message) }
func LogCritical(message string) { logAt(Critical, message) }

func LogTracef(format string, v ...any)    { logfAt(Trace, format, v) }
func LogDebugf(format string, v ...any)    { logfAt(Debug, format, v) }
func LogInfof(format string, v ...any)     { logfAt(Info, format, v) }
func LogWarnf(format string, v ...any)     { logfAt(Warn, format, v) }
func LogErrorf(format string, v ...any)    { logfAt(Error, format, v) }
func LogCriticalf(format string, v ...any) { logfAt(Critical, format, v) }
