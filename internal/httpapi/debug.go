package httpapi

import (
	"net/http"
	"net/http/pprof"
	"strings"
)

// servePprof serves Go's profiler; only mounted with Config.EnableDebug, since profiles
// expose internals and cost CPU.
func servePprof(w http.ResponseWriter, r *http.Request) {
	switch strings.TrimPrefix(r.URL.Path, "/debug/pprof/") {
	case "profile":
		pprof.Profile(w, r)
	case "trace":
		pprof.Trace(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "cmdline":
		pprof.Cmdline(w, r)
	default:
		pprof.Index(w, r)
	}
}
