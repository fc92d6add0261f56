package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/wolke-platform/wolke/internal/httpapi"
	"github.com/wolke-platform/wolke/internal/rpc"
)

// hopHeader counts how often a request was forwarded, so that two servers that each
// think the other leads cannot pass a request back and forth forever.
const hopHeader = "X-Wolke-Forwarded"

const maxHops = 2

// Local implements httpapi.Backend: the leader answers everything it can; any server
// answers stale reads from its own state; a client agent answers nothing itself.
func (a *Agent) Local(write bool, mode httpapi.Consistency) bool {
	if a.node == nil {
		return false
	}
	if !write && mode == httpapi.Stale {
		return true
	}
	return a.node.IsLeader()
}

// Forward implements httpapi.Backend. It passes the request to the leader (from a
// client agent: to any server), waiting out an election for up to LeaderWait, and
// retries on another attempt when the request provably never reached the target or is a
// read. The answer, status and headers included, is copied back unchanged.
func (a *Agent) Forward(w http.ResponseWriter, r *http.Request) {
	write := r.Method != http.MethodGet && r.Method != http.MethodHead
	mode := httpapi.Default
	if q := r.URL.Query(); q.Has("stale") {
		mode = httpapi.Stale
	} else if q.Has("consistent") {
		mode = httpapi.Consistent
	}
	hops, _ := strconv.Atoi(r.Header.Get(hopHeader))
	if hops >= maxHops {
		httpError(w, http.StatusInternalServerError, "No cluster leader")
		return
	}
	if r.Method == http.MethodPut && r.URL.Path == "/v1/snapshot" {
		a.forwardStream(w, r, hops)
		return
	}
	limit := a.cfg.HTTP.MaxValueBytes + 64<<10
	if r.ContentLength > limit {
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("Request body (%d bytes) too large, max size: %d bytes", r.ContentLength, limit))
		return
	}
	if r.Body == nil { // a request built inside the agent rather than received
		r.Body = http.NoBody
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		httpError(w, http.StatusBadRequest, "Failed to read the request body: "+err.Error())
		return
	}
	if int64(len(body)) > limit {
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("Request body too large, max size: %d bytes", limit))
		return
	}
	ctx := r.Context()
	giveUp := time.Now().Add(a.cfg.LeaderWait)
	var lastErr error
	for attempt := 0; ; attempt++ {
		if a.Local(write, mode) {
			// This server became leader while we waited: answer here.
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
			a.http.Handler().ServeHTTP(w, r)
			return
		}
		target := a.forwardTarget()
		if target != "" {
			// Set on the transport's goroutine, read here. Go calls WroteRequest also
			// when the write failed (and then retries on a new connection), so only a
			// write without error counts as sent. Even that one only reached the
			// transport's buffer: when the flush then fails with nothing written, Go
			// retries, and if that attempt cannot connect the error says so
			// (rpc.NotSentError): nothing was sent after all.
			var sent atomic.Bool
			trace := &httptrace.ClientTrace{WroteRequest: func(info httptrace.WroteRequestInfo) {
				if info.Err == nil {
					sent.Store(true)
				}
			}}
			fr := r.Clone(httptrace.WithClientTrace(ctx, trace))
			fr.Header.Set(hopHeader, strconv.Itoa(hops+1))
			if fr.Header.Get(originHeader) == "" {
				fr.Header.Set(originHeader, a.cfg.NodeName)
			}
			resp, err := a.forwarder.Do(fr.Context(), target, fr, body)
			if err == nil {
				copyResponse(w, resp)
				return
			}
			lastErr = err
			var notSent *rpc.NotSentError
			if sent.Load() && write && !errors.As(err, &notSent) {
				// The leader may have applied it; retrying could apply it twice.
				httpError(w, http.StatusInternalServerError, "Forwarding to the leader failed after the request was sent: "+err.Error())
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		if time.Now().After(giveUp) {
			msg := "No cluster leader"
			if lastErr != nil && a.node == nil {
				msg = "No known server answered: " + lastErr.Error()
			}
			httpError(w, http.StatusInternalServerError, msg)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-a.stopCh:
			httpError(w, http.StatusServiceUnavailable, "Agent is shutting down")
			return
		case <-time.After(time.Duration(10+rand.IntN(20)) * time.Millisecond):
		}
	}
}

// forwardStream forwards a request whose body is too large to hold (a snapshot
// restore) by streaming it, once: it waits for a leader like Forward, but cannot retry
// after it started sending.
func (a *Agent) forwardStream(w http.ResponseWriter, r *http.Request, hops int) {
	ctx := r.Context()
	giveUp := time.Now().Add(a.cfg.LeaderWait)
	for {
		if a.Local(true, httpapi.Default) {
			a.http.Handler().ServeHTTP(w, r)
			return
		}
		if target := a.forwardTarget(); target != "" {
			fr := r.Clone(ctx)
			fr.Header.Set(hopHeader, strconv.Itoa(hops+1))
			resp, err := a.forwarder.DoStream(ctx, target, fr, r.Body, r.ContentLength)
			if err != nil {
				httpError(w, http.StatusInternalServerError, "Forwarding to the leader failed: "+err.Error())
				return
			}
			copyResponse(w, resp)
			return
		}
		if time.Now().After(giveUp) {
			httpError(w, http.StatusInternalServerError, "No cluster leader")
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// forwardTarget is the server-port address to send a request to: the leader's for a
// server, a random alive server's for a client agent ("" when none is known).
func (a *Agent) forwardTarget() string {
	if a.node != nil {
		addr, _ := a.node.Leader()
		return addr
	}
	return a.randomServer()
}

func copyResponse(w http.ResponseWriter, resp *http.Response) {
	defer resp.Body.Close()
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	if f, ok := w.(http.Flusher); ok && resp.ContentLength < 0 {
		// Unknown length (a snapshot stream): pass chunks on as they arrive.
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				w.Write(buf[:n])
				f.Flush()
			}
			if err != nil {
				return
			}
		}
	}
	io.Copy(w, resp.Body)
}

func httpError(w http.ResponseWriter, code int, reason string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	io.WriteString(w, reason+"\n")
}

var errNoServers = errors.New("no known servers")
