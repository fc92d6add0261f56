package consensus

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// hclogFor gives hashicorp libraries (which log through hclog) a logger that writes
// into our slog handler, so all of the agent's logs share one format and level.
func hclogFor(logger *slog.Logger, name string) hclog.Logger {
	l := hclog.NewInterceptLogger(&hclog.LoggerOptions{Name: name, Output: io.Discard, Level: hclog.Debug})
	l.RegisterSink(slogSink{logger: logger.With("component", name)})
	return l
}

type slogSink struct{ logger *slog.Logger }

func (s slogSink) Accept(_ string, level hclog.Level, msg string, args ...any) {
	var l slog.Level
	switch {
	case level <= hclog.Debug:
		l = slog.LevelDebug
	case level == hclog.Info:
		l = slog.LevelInfo
	case level == hclog.Warn:
		l = slog.LevelWarn
	default:
		l = slog.LevelError
	}
	if !s.logger.Enabled(context.Background(), l) {
		return
	}
	for i, a := range args {
		// hclog.Fmt defers formatting to the logger; do it here.
		if f, ok := a.(hclog.Format); ok && len(f) > 0 {
			if format, ok := f[0].(string); ok {
				args[i] = fmt.Sprintf(format, f[1:]...)
			}
		}
	}
	s.logger.Log(context.Background(), l, msg, args...)
}
