package httpapi

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/wolke-platform/wolke/internal/command"
	"github.com/wolke-platform/wolke/internal/state"
)

// kv serves /v1/kv/<key>: GET (one key, ?recurse, ?keys, ?raw), PUT and DELETE.
func (s *Server) kv(w http.ResponseWriter, r *http.Request, key string) {
	q := queryOf(r)
	token := tokenOf(r, q)
	var err error
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if key != "" {
			err = s.validKey(key)
		}
		if err == nil && !s.auth.KeyRead(token, key) {
			err = errPermissionDenied
		}
		if err == nil {
			if has(q, "keys") {
				err = s.kvKeys(w, r, q, key)
			} else {
				err = s.kvGet(w, r, q, key)
			}
		}
	case http.MethodPut:
		err = s.kvPut(w, r, q, key, token)
	case http.MethodDelete:
		err = s.kvDelete(w, r, q, key, token)
	default:
		methodNotAllowed(w, r.Method, "GET", "PUT", "DELETE")
		return
	}
	if err != nil && r.Context().Err() == nil {
		writeError(w, err)
	}
}

// tokenOf returns the ACL token from X-Consul-Token, a bearer token, or ?token.
func tokenOf(r *http.Request, q url.Values) string {
	if t := r.Header.Get("X-Consul-Token"); t != "" {
		return t
	}
	if a := r.Header.Get("Authorization"); len(a) > 7 && a[:7] == "Bearer " {
		return a[7:]
	}
	return q.Get("token")
}

// validKey enforces the key rules: not empty, no leading "/", at most MaxKeyBytes,
// valid UTF-8 without NUL (NUL would collide with the index's terminator).
func (s *Server) validKey(key string) error {
	switch {
	case key == "":
		return badRequest("Missing key name")
	case key[0] == '/':
		return badRequest("Invalid key: must not begin with a '/'")
	case len(key) > s.cfg.MaxKeyBytes:
		return badRequest("Invalid key: %d bytes, more than the %d byte limit", len(key), s.cfg.MaxKeyBytes)
	case !utf8.ValidString(key):
		return badRequest("Invalid key: not valid UTF-8")
	}
	for i := 0; i < len(key); i++ {
		if key[i] == 0 {
			return badRequest("Invalid key: contains a NUL byte")
		}
	}
	return nil
}

// conflicting rejects flags that cannot be combined, with Consul's message.
func conflicting(q url.Values, flags ...string) error {
	found := ""
	for _, f := range flags {
		if has(q, f) {
			if found != "" {
				return badRequest("Conflicting flags: ?%s and ?%s cannot be combined", found, f)
			}
			found = f
		}
	}
	return nil
}

func parseUintParam(q url.Values, name string) (uint64, bool, error) {
	if !has(q, name) {
		return 0, false, nil
	}
	v := q.Get(name)
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, true, badRequest("Invalid %s: %q is not an unsigned integer", name, v)
	}
	return n, true, nil
}

func (s *Server) kvGet(w http.ResponseWriter, r *http.Request, q url.Values, key string) error {
	recurse := has(q, "recurse")
	if !recurse && key == "" {
		return badRequest("Missing key name")
	}
	opts, err := s.parseQuery(q)
	if err != nil {
		return err
	}
	store := s.backend.Store()
	var entries []*state.KVEntry
	if opts.index > 0 {
		s.metrics.blocking.Inc()
		defer s.metrics.blocking.Dec()
	}
	idx, err := s.blockingQuery(r.Context(), opts, func(ws *state.WatchSet) (uint64, error) {
		if recurse {
			i, es, err := store.KVList(ws, key)
			entries = es
			return i, err
		}
		i, e, err := store.KVGet(ws, key)
		entries = entries[:0]
		if e != nil {
			entries = append(entries, e)
		}
		return i, err
	})
	if err != nil {
		return err
	}
	s.setMeta(w, idx, opts.mode)
	if len(entries) == 0 {
		w.WriteHeader(http.StatusNotFound)
		return nil
	}
	if has(q, "raw") && !recurse {
		h := w.Header()
		h.Set("Content-Type", "text/plain")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "sandbox")
		h.Set("Content-Length", strconv.Itoa(len(entries[0].Value)))
		w.Write(entries[0].Value)
		return nil
	}
	buf := bufPool.Get().(*[]byte)
	b := appendKVJSON((*buf)[:0], entries)
	writeJSON(w, b)
	*buf = b
	bufPool.Put(buf)
	return nil
}

func (s *Server) kvKeys(w http.ResponseWriter, r *http.Request, q url.Values, prefix string) error {
	sep := q.Get("separator")
	if !has(q, "separator") {
		sep = q.Get("seperator") // Consul still honours its historic misspelling
	}
	opts, err := s.parseQuery(q)
	if err != nil {
		return err
	}
	store := s.backend.Store()
	var keys []string
	if opts.index > 0 {
		s.metrics.blocking.Inc()
		defer s.metrics.blocking.Dec()
	}
	idx, err := s.blockingQuery(r.Context(), opts, func(ws *state.WatchSet) (uint64, error) {
		i, ks, err := store.KVKeys(ws, prefix, sep)
		keys = ks
		return i, err
	})
	if err != nil {
		return err
	}
	s.setMeta(w, idx, opts.mode)
	// Consul answers an empty root with [] but a missing prefix with 404.
	if len(keys) == 0 && prefix != "" {
		w.WriteHeader(http.StatusNotFound)
		return nil
	}
	b := append(make([]byte, 0, 64), '[')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
	}
	writeJSON(w, append(b, ']'))
	return nil
}

// readValue reads a KV value, refusing one over the limit without reading it whole.
func (s *Server) readValue(r *http.Request) ([]byte, error) {
	max := s.cfg.MaxValueBytes
	if r.ContentLength > max {
		return nil, tooLarge("Request body (%d bytes) too large, max size: %d bytes", r.ContentLength, max)
	}
	var body []byte
	if r.ContentLength >= 0 {
		body = make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return nil, badRequest("Failed to read the request body: %v", err)
		}
		return body, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		return nil, badRequest("Failed to read the request body: %v", err)
	}
	if int64(len(body)) > max {
		return nil, tooLarge("Request body too large, max size: %d bytes", max)
	}
	return body, nil
}

func (s *Server) kvPut(w http.ResponseWriter, r *http.Request, q url.Values, key, token string) error {
	if err := s.validKey(key); err != nil {
		return err
	}
	if err := conflicting(q, "cas", "acquire", "release"); err != nil {
		return err
	}
	if !s.auth.KeyWrite(token, key) {
		return errPermissionDenied
	}
	req := command.KVSRequest{Op: command.KVSet, Entry: state.KVEntry{Key: key}}
	for _, l := range []struct {
		param string
		op    command.KVSOp
	}{{"acquire", command.KVLock}, {"release", command.KVUnlock}} {
		if has(q, l.param) {
			id := q.Get(l.param)
			if id == "" {
				return badRequest("Missing session ID for ?%s", l.param)
			}
			// The leader's clock decides lock-delay; the stamp travels in the entry
			// so every server decides the same.
			req.Op, req.Entry.Session, req.Now = l.op, id, time.Now().UnixNano()
		}
	}
	flags, _, err := parseUintParam(q, "flags")
	if err != nil {
		return err
	}
	req.Entry.Flags = flags
	cas, isCAS, err := parseUintParam(q, "cas")
	if err != nil {
		return err
	}
	if isCAS {
		req.Op, req.Entry.ModifyIndex = command.KVCAS, cas
	}
	if req.Entry.Value, err = s.readValue(r); err != nil {
		return err
	}
	return s.applyBool(w, r, command.KVS, &req)
}

func (s *Server) kvDelete(w http.ResponseWriter, r *http.Request, q url.Values, key, token string) error {
	if key != "" {
		if err := s.validKey(key); err != nil {
			return err
		}
	}
	if err := conflicting(q, "recurse", "cas"); err != nil {
		return err
	}
	req := command.KVSRequest{Op: command.KVDelete, Entry: state.KVEntry{Key: key}}
	if has(q, "recurse") {
		req.Op = command.KVDeleteTree
	} else if key == "" {
		return badRequest("Missing key name")
	}
	cas, isCAS, err := parseUintParam(q, "cas")
	if err != nil {
		return err
	}
	if isCAS {
		req.Op, req.Entry.ModifyIndex = command.KVDeleteCAS, cas
	}
	if !s.auth.KeyWrite(token, key) {
		return errPermissionDenied
	}
	return s.applyBool(w, r, command.KVS, &req)
}

// applyBool replicates a command and answers its boolean result, as Consul's KV
// writes do ("true" or "false").
func (s *Server) applyBool(w http.ResponseWriter, r *http.Request, t command.Type, req any) error {
	cmd, err := command.Encode(t, req)
	if err != nil {
		return err
	}
	res, _, err := s.backend.Apply(r.Context(), cmd)
	if err != nil {
		return err
	}
	ok, isBool := res.(bool)
	if !isBool {
		return fmt.Errorf("unexpected result %T from the state machine", res)
	}
	if ok {
		writeJSON(w, []byte("true"))
	} else {
		writeJSON(w, []byte("false"))
	}
	return nil
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func writeJSON(w http.ResponseWriter, b []byte) { writeJSONBody(w, b, nil) }

// appendKVJSON writes entries in Consul's KVPair shape, by hand: this is the hottest
// read path and reflection-based encoding costs several times more.
func appendKVJSON(b []byte, entries []*state.KVEntry) []byte {
	b = append(b, '[')
	for i, e := range entries {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"LockIndex":`...)
		b = strconv.AppendUint(b, e.LockIndex, 10)
		b = append(b, `,"Key":`...)
		b = appendJSONString(b, e.Key)
		b = append(b, `,"Flags":`...)
		b = strconv.AppendUint(b, e.Flags, 10)
		b = append(b, `,"Value":`...)
		if len(e.Value) == 0 {
			b = append(b, "null"...)
		} else {
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, e.Value)
			b = append(b, '"')
		}
		if e.Session != "" {
			b = append(b, `,"Session":`...)
			b = appendJSONString(b, e.Session)
		}
		b = append(b, `,"CreateIndex":`...)
		b = strconv.AppendUint(b, e.CreateIndex, 10)
		b = append(b, `,"ModifyIndex":`...)
		b = strconv.AppendUint(b, e.ModifyIndex, 10)
		b = append(b, '}')
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, escaped as encoding/json does for valid
// UTF-8 (keys are validated as UTF-8 on write).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == '\u2028' || r == '\u2029' || r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			if r == utf8.RuneError {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			}
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
