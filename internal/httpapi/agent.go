package httpapi

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

func writeJSONValue(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, b)
}

// statusLeader answers the leader's Raft address as a JSON string ("" when none).
func (s *Server) statusLeader(w http.ResponseWriter, _ *http.Request) {
	writeJSONValue(w, s.backend.LeaderInfo().Address)
}

// statusPeers answers the Raft voters' addresses.
func (s *Server) statusPeers(w http.ResponseWriter, _ *http.Request) {
	servers, err := s.backend.Servers()
	if err != nil {
		writeError(w, err)
		return
	}
	peers := []string{}
	for _, sv := range servers {
		if sv.Voter {
			peers = append(peers, sv.Address)
		}
	}
	writeJSONValue(w, peers)
}

// agentSelf answers the parts of Consul's /v1/agent/self that clients read: Config
// (NodeName, Datacenter, ...) and Member.
func (s *Server) agentSelf(w http.ResponseWriter, _ *http.Request) {
	self := s.backend.Self()
	role := "node"
	if self.Server {
		role = "consul"
	}
	writeJSONValue(w, map[string]any{
		"Config": map[string]any{
			"Datacenter":        self.Datacenter,
			"PrimaryDatacenter": self.Datacenter,
			"NodeName":          self.NodeName,
			"NodeID":            self.NodeID,
			"Server":            self.Server,
			"Revision":          "",
			"Version":           self.Version,
		},
		"DebugConfig": map[string]any{},
		"Coord":       nil,
		"Member": map[string]any{
			"Name": self.NodeName,
			"Addr": self.Addr,
			"Port": self.Port,
			"Tags": map[string]string{
				"role": role, "dc": self.Datacenter, "id": self.NodeID, "build": self.Version,
			},
			"Status":      1,
			"ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
			"DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4,
		},
		"Stats": self.Stats,
		"Meta":  map[string]string{},
		"xDS":   nil,
	})
}

// agentMetrics serves Prometheus text with ?format=prometheus (and on /metrics), and
// otherwise Consul's JSON summary of gauges and counters.
func (s *Server) agentMetrics(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/metrics" || queryOf(r).Get("format") == "prometheus" {
		promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}).ServeHTTP(w, r)
		return
	}
	families, err := s.registry.Gather()
	if err != nil {
		writeError(w, err)
		return
	}
	type point struct {
		Name   string
		Value  float64
		Labels map[string]string
	}
	gauges, counters := []point{}, []point{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch f.GetType() {
			case dto.MetricType_GAUGE:
				gauges = append(gauges, point{f.GetName(), m.GetGauge().GetValue(), labels})
			case dto.MetricType_COUNTER:
				counters = append(counters, point{f.GetName(), m.GetCounter().GetValue(), labels})
			}
		}
	}
	writeJSONValue(w, map[string]any{
		"Timestamp": time.Now().UTC().Format("2006-01-02 15:04:05 +0000 UTC"),
		"Gauges":    gauges,
		"Counters":  counters,
		"Samples":   []point{},
		"Points":    []point{},
	})
}
