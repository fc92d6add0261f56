package httpapi

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/wolke-platform/wolke/internal/command"
	"github.com/wolke-platform/wolke/internal/state"
)

// Sessions is what the session endpoints need beyond the store: a Backend that
// implements it gets /v1/session/*. The leader's TTL timers live behind it.
type Sessions interface {
	// SessionNode returns the node a session created through r belongs to by default:
	// the agent the client talked to, even when the request was forwarded.
	SessionNode(r *http.Request) string
	// CheckSessionNode validates that node exists and the checks bound to it do.
	CheckSessionNode(node string, nodeChecks, serviceChecks []string) error
	// SessionCreated, SessionRenewed and SessionDestroyed keep the leader's TTL timers.
	SessionCreated(id string, ttl time.Duration)
	SessionRenewed(id string, ttl time.Duration)
	SessionDestroyed(id string)
	// SessionTTLMin is the shortest TTL accepted (Consul: 10s).
	SessionTTLMin() time.Duration
}

const (
	maxSessionTTL   = 24 * time.Hour
	maxLockDelay    = 60 * time.Second
	defaultLockWait = 15 * time.Second
	serfHealth      = "serfHealth"
)

// sessionEntry is Consul's SessionEntry JSON.
type sessionEntry struct {
	ID            string
	Name          string
	Node          string
	LockDelay     time.Duration
	Behavior      string
	TTL           string
	NodeChecks    []string
	ServiceChecks []serviceCheck
	Checks        []string
	CreateIndex   uint64
	ModifyIndex   uint64
}

type serviceCheck struct {
	ID        string
	Namespace string
}

func toEntry(s *state.Session) sessionEntry {
	e := sessionEntry{ID: s.ID, Name: s.Name, Node: s.Node, LockDelay: s.LockDelay, Behavior: s.Behavior,
		TTL: s.TTL, NodeChecks: s.NodeChecks, CreateIndex: s.CreateIndex, ModifyIndex: s.ModifyIndex}
	e.Checks = append(e.Checks, s.NodeChecks...)
	for _, c := range s.ServiceChecks {
		e.ServiceChecks = append(e.ServiceChecks, serviceCheck{ID: c})
		e.Checks = append(e.Checks, c)
	}
	return e
}

func (s *Server) sessions(w http.ResponseWriter) (Sessions, bool) {
	ss, ok := s.backend.(Sessions)
	if !ok {
		writeError(w, notFound("this agent has no sessions"))
	}
	return ss, ok
}

// session routes /v1/session/<rest>.
func (s *Server) session(w http.ResponseWriter, r *http.Request, rest string) {
	ss, ok := s.sessions(w)
	if !ok {
		return
	}
	verb, arg, _ := strings.Cut(rest, "/")
	switch verb {
	case "create", "destroy", "renew":
		if r.Method != http.MethodPut && r.Method != http.MethodPost {
			methodNotAllowed(w, r.Method, "PUT")
			return
		}
	case "info", "node", "list":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed(w, r.Method, "GET")
			return
		}
	}
	var err error
	switch {
	case verb == "create" && arg == "":
		err = s.sessionCreate(w, r, ss)
	case verb == "destroy" && arg != "":
		err = s.sessionDestroy(w, r, ss, arg)
	case verb == "renew" && arg != "":
		err = s.sessionRenew(w, r, ss, arg)
	case verb == "info" && arg != "":
		err = s.sessionRead(w, r, func(ws *state.WatchSet) (uint64, []*state.Session, error) {
			idx, sess, err := s.backend.Store().SessionGet(ws, arg)
			if sess == nil {
				return idx, nil, err
			}
			return idx, []*state.Session{sess}, err
		})
	case verb == "node" && arg != "":
		err = s.sessionRead(w, r, func(ws *state.WatchSet) (uint64, []*state.Session, error) {
			return s.backend.Store().SessionList(ws, arg)
		})
	case verb == "list" && arg == "":
		err = s.sessionRead(w, r, func(ws *state.WatchSet) (uint64, []*state.Session, error) {
			return s.backend.Store().SessionList(ws, "")
		})
	case arg == "" && (verb == "destroy" || verb == "renew" || verb == "info" || verb == "node"):
		err = badRequest("Missing session ID")
	default:
		err = notFound("Invalid URL path: not a recognized HTTP API endpoint")
	}
	if err != nil && r.Context().Err() == nil {
		writeError(w, err)
	}
}

// createRequest is Consul's session create body. LockDelay arrives as a duration
// string ("15s"), as nanoseconds (consul/api), or as small numbers meaning seconds.
type createRequest struct {
	ID            string // refused: the server picks IDs
	Name          string
	Node          string
	LockDelay     json.RawMessage
	Behavior      string
	TTL           string
	Checks        []string
	NodeChecks    []string
	ServiceChecks []serviceCheck
}

func parseLockDelay(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return defaultLockWait, nil
	}
	var str string
	if err := json.Unmarshal(raw, &str); err == nil {
		d, err := time.ParseDuration(str)
		if err != nil {
			return 0, badRequest("Invalid LockDelay %q: %v", str, err)
		}
		return d, nil
	}
	var num float64
	if err := json.Unmarshal(raw, &num); err != nil {
		return 0, badRequest("Invalid LockDelay: want a duration like \"15s\" or nanoseconds")
	}
	// Consul's rule: a number under 1000 is seconds, otherwise nanoseconds.
	if num < 1000 {
		return time.Duration(num * float64(time.Second)), nil
	}
	return time.Duration(num), nil
}

func (s *Server) sessionCreate(w http.ResponseWriter, r *http.Request, ss Sessions) error {
	var req createRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10+1))
	if err != nil {
		return badRequest("Failed to read the request body: %v", err)
	}
	if len(body) > 64<<10 {
		return tooLarge("Session request body too large")
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			return badRequest("Request decode failed: %v", err)
		}
	}
	sess := state.Session{Name: req.Name, Node: req.Node, Behavior: req.Behavior, TTL: req.TTL}
	if sess.Node == "" {
		sess.Node = ss.SessionNode(r)
	}
	switch sess.Behavior {
	case "":
		sess.Behavior = state.BehaviorRelease
	case state.BehaviorRelease, state.BehaviorDelete:
	default:
		return badRequest("Invalid Behavior setting '%s'", sess.Behavior)
	}
	var ttl time.Duration
	if sess.TTL != "" {
		ttl, err = time.ParseDuration(sess.TTL)
		if err != nil {
			return badRequest("Request decode failed: invalid TTL %q: %v", sess.TTL, err)
		}
		if ttl != 0 && (ttl < ss.SessionTTLMin() || ttl > maxSessionTTL) {
			return badRequest("Invalid Session TTL '%s', must be between [%v=%v]", sess.TTL, ss.SessionTTLMin(), maxSessionTTL)
		}
		if ttl == 0 {
			sess.TTL = ""
		}
	}
	if sess.LockDelay, err = parseLockDelay(req.LockDelay); err != nil {
		return err
	}
	if sess.LockDelay < 0 || sess.LockDelay > maxLockDelay {
		return badRequest("Invalid LockDelay %v: must be between 0 and %v", sess.LockDelay, maxLockDelay)
	}
	switch {
	case req.NodeChecks != nil || req.ServiceChecks != nil:
		sess.NodeChecks = req.NodeChecks
		for _, c := range req.ServiceChecks {
			sess.ServiceChecks = append(sess.ServiceChecks, c.ID)
		}
	case req.Checks != nil:
		sess.NodeChecks = req.Checks // the older field, all node-level
	default:
		sess.NodeChecks = []string{serfHealth}
	}
	if err := ss.CheckSessionNode(sess.Node, sess.NodeChecks, sess.ServiceChecks); err != nil {
		return err
	}
	sess.ID = newID()
	cmd, err := command.Encode(command.Session, &command.SessionRequest{Op: command.SessionCreate, Session: sess})
	if err != nil {
		return err
	}
	if _, _, err := s.backend.Apply(r.Context(), cmd); err != nil {
		return err
	}
	ss.SessionCreated(sess.ID, ttl)
	writeJSONValue(w, map[string]string{"ID": sess.ID})
	return nil
}

func (s *Server) sessionDestroy(w http.ResponseWriter, r *http.Request, ss Sessions, id string) error {
	cmd, err := command.Encode(command.Session, &command.SessionRequest{
		Op: command.SessionDestroy, Session: state.Session{ID: id}, Now: time.Now().UnixNano()})
	if err != nil {
		return err
	}
	if _, _, err := s.backend.Apply(r.Context(), cmd); err != nil {
		return err
	}
	ss.SessionDestroyed(id)
	writeJSON(w, []byte("true"))
	return nil
}

func (s *Server) sessionRenew(w http.ResponseWriter, r *http.Request, ss Sessions, id string) error {
	if err := s.readBarrier(r.Context(), Default); err != nil {
		return err
	}
	idx, sess, err := s.backend.Store().SessionGet(nil, id)
	if err != nil {
		return err
	}
	if sess == nil {
		return notFound("Session id '%s' not found", id)
	}
	ttl, _ := time.ParseDuration(sess.TTL)
	ss.SessionRenewed(id, ttl)
	s.setMeta(w, idx, Default)
	writeJSONValue(w, []sessionEntry{toEntry(sess)})
	return nil
}

func (s *Server) sessionRead(w http.ResponseWriter, r *http.Request, read func(*state.WatchSet) (uint64, []*state.Session, error)) error {
	opts, err := s.parseQuery(queryOf(r))
	if err != nil {
		return err
	}
	var out []*state.Session
	idx, err := s.blockingQuery(r.Context(), opts, func(ws *state.WatchSet) (uint64, error) {
		i, list, err := read(ws)
		out = list
		return i, err
	})
	if err != nil {
		return err
	}
	s.setMeta(w, idx, opts.mode)
	entries := make([]sessionEntry, 0, len(out))
	for _, sess := range out {
		entries = append(entries, toEntry(sess))
	}
	writeJSONValue(w, entries)
	return nil
}

// newID returns a random UUID, the form Consul's session IDs have.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
