package httpapi

import (
	"context"
	"net/http"

	"github.com/wolke-platform/wolke/internal/membership"
)

// Cluster is what the membership and operator endpoints need; a Backend that also
// implements it gets /v1/agent/members|join|leave|force-leave and /v1/operator/raft.
type Cluster interface {
	Members() []membership.Member
	Join(ctx context.Context, addr string) error
	// RequestLeave starts a graceful leave and shutdown of the agent and returns at once.
	RequestLeave()
	ForceLeave(node string, prune bool) error
	RaftConfiguration() (RaftConfiguration, error)
	RemovePeer(id, address string) error
}

// RaftConfiguration is Consul's /v1/operator/raft/configuration answer.
type RaftConfiguration struct {
	Servers []RaftServer
	Index   uint64
}

// RaftServer is one entry of RaftConfiguration.
type RaftServer struct {
	ID              string
	Node            string
	Address         string
	Leader          bool
	ProtocolVersion string
	Voter           bool
}

func (s *Server) cluster(w http.ResponseWriter) (Cluster, bool) {
	c, ok := s.backend.(Cluster)
	if !ok {
		writeError(w, notFound("this agent has no cluster membership"))
	}
	return c, ok
}

func (s *Server) agentMembers(w http.ResponseWriter, r *http.Request) {
	c, ok := s.cluster(w)
	if !ok {
		return
	}
	members := c.Members()
	if members == nil {
		members = []membership.Member{}
	}
	writeJSONValue(w, members)
}

func (s *Server) agentJoin(w http.ResponseWriter, r *http.Request, addr string) {
	if r.Method != http.MethodPut && r.Method != http.MethodPost {
		methodNotAllowed(w, r.Method, "PUT")
		return
	}
	c, ok := s.cluster(w)
	if !ok {
		return
	}
	if addr == "" {
		writeError(w, badRequest("Missing address to join"))
		return
	}
	if err := c.Join(r.Context(), addr); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) agentLeave(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut && r.Method != http.MethodPost {
		methodNotAllowed(w, r.Method, "PUT")
		return
	}
	c, ok := s.cluster(w)
	if !ok {
		return
	}
	c.RequestLeave()
	w.WriteHeader(http.StatusOK)
}

func (s *Server) agentForceLeave(w http.ResponseWriter, r *http.Request, node string) {
	if r.Method != http.MethodPut && r.Method != http.MethodPost {
		methodNotAllowed(w, r.Method, "PUT", "POST")
		return
	}
	c, ok := s.cluster(w)
	if !ok {
		return
	}
	if node == "" {
		writeError(w, badRequest("Missing node name"))
		return
	}
	if err := c.ForceLeave(node, has(queryOf(r), "prune")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) operatorRaft(w http.ResponseWriter, r *http.Request, rest string) {
	c, ok := s.cluster(w)
	if !ok {
		return
	}
	switch rest {
	case "configuration":
		if r.Method != http.MethodGet {
			methodNotAllowed(w, r.Method, "GET")
			return
		}
		conf, err := c.RaftConfiguration()
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSONValue(w, conf)
	case "peer":
		if r.Method != http.MethodDelete {
			methodNotAllowed(w, r.Method, "DELETE")
			return
		}
		q := queryOf(r)
		id, addr := q.Get("id"), q.Get("address")
		if (id == "") == (addr == "") {
			writeError(w, badRequest("Must specify exactly one of ?id or ?address"))
			return
		}
		if err := c.RemovePeer(id, addr); err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusOK)
	default:
		writeError(w, notFound("Invalid URL path: not a recognized HTTP API endpoint"))
	}
}
