package membership

import (
	"context"
	"log"
	"log/slog"
	"strings"
)

// stdLogger gives serf and memberlist (which log through *log.Logger with "[LEVEL]
// lib: message" lines) a logger that writes into our slog handler: the level prefix
// becomes the slog level and the "serf: " or "memberlist: " prefix the component.
func stdLogger(logger *slog.Logger) *log.Logger {
	return log.New(logWriter{logger: logger}, "", 0)
}

type logWriter struct{ logger *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	for line := range strings.SplitSeq(strings.TrimRight(string(p), "\r\n"), "\n") {
		if line != "" {
			w.line(line)
		}
	}
	return len(p), nil
}

func (w logWriter) line(s string) {
	level := slog.LevelInfo
	if rest, ok := strings.CutPrefix(s, "["); ok {
		if tag, msg, ok := strings.Cut(rest, "]"); ok {
			switch tag {
			case "TRACE", "DEBUG":
				level = slog.LevelDebug
			case "INFO":
				level = slog.LevelInfo
			case "WARN", "WARNING":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			}
			s = strings.TrimSpace(msg)
		}
	}
	ctx := context.Background()
	if !w.logger.Enabled(ctx, level) {
		return
	}
	component := "membership"
	for _, lib := range [...]string{"memberlist", "serf"} {
		if rest, ok := strings.CutPrefix(s, lib+": "); ok {
			component, s = lib, rest
			break
		}
	}
	w.logger.Log(ctx, level, s, "component", component)
}
