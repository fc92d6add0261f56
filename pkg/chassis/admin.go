package chassis

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// adminHandler serves the diagnostic interface on the admin port:
//
//	/health/live   200 while the process runs (a liveness probe: restart me if not)
//	/health/ready  200 when the instance should get traffic, else 503 with the reasons
//	               (the agent's check of this instance probes it)
//	/metrics       the instance's Prometheus registry
//	/info          name, version, ID, addresses, state, uptime, dynamic configuration
//	/debug/pprof/  the Go profiler
func (in *Instance) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health/live", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "live"})
	})
	mux.HandleFunc("GET /health/ready", func(w http.ResponseWriter, r *http.Request) {
		ok, failing := in.Ready(r.Context())
		if ok {
			in.metrics.ready.Set(1)
			writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
			return
		}
		in.metrics.ready.Set(0)
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "failing": failing})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(in.reg, promhttp.HandlerOpts{Registry: in.reg}))
	mux.HandleFunc("GET /info", func(w http.ResponseWriter, r *http.Request) {
		state := map[int32]string{stateStarting: "starting", stateReady: "ready", stateDraining: "draining"}[in.state.Load()]
		in.mu.Lock()
		info := map[string]any{
			"name": in.svc.Name, "version": in.svc.Version, "id": in.id, "addr": in.addr,
			"admin_addr": in.adminAddr, "state": state, "started": in.started.UTC().Format(time.RFC3339Nano),
			"uptime_s": time.Since(in.started).Seconds(),
		}
		in.mu.Unlock()
		info["dynamic_config"] = in.dyn.snapshot()
		writeJSON(w, http.StatusOK, info)
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
