package rpc

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"time"
)

// Forwarder sends API requests to another server over the pool's yamux sessions.
type Forwarder struct {
	pool   *Pool
	client *http.Client
}

// NewForwarder returns a forwarder using pool.
func NewForwarder(pool *Pool) *Forwarder {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			c, err := pool.Open(ctx, addr)
			if err != nil {
				return nil, &NotSentError{Err: err}
			}
			return c, nil
		},
		// Streams are cheap; keep enough idle ones for a busy follower.
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ResponseHeaderTimeout: 0, // blocking queries legitimately take minutes
	}
	return &Forwarder{pool: pool, client: &http.Client{Transport: tr}}
}

// NotSentError is the error of a forwarded request that did not leave this server:
// its last attempt could not open a stream to the target. Go's transport replays a
// PUT, POST or DELETE only when nothing of it was written (its earlier attempt found
// a pooled stream dead, for example), so no attempt of such a request reached the
// target either, and the caller may send it elsewhere. (Go also replays a request
// with an Idempotency-Key header after writing it: its sender declared it safe to
// repeat.) httptrace's WroteRequest cannot say this: it fires once the request is in
// the transport's buffer, before the flush that may fail.
type NotSentError struct{ Err error }

func (e *NotSentError) Error() string { return e.Err.Error() }
func (e *NotSentError) Unwrap() error { return e.Err }

// hopHeaders are per-connection and must not be forwarded (RFC 9110, 7.6.1).
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// Do sends r (whose body has been read into body) to the server at addr ("ip:port")
// and returns its response; the caller copies it to the client and closes it.
func (f *Forwarder) Do(ctx context.Context, addr string, r *http.Request, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, r.Method, "http://"+addr+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header = r.Header.Clone()
	for _, h := range hopHeaders {
		req.Header.Del(h)
	}
	req.ContentLength = int64(len(body))
	if body == nil {
		req.Body = http.NoBody
	}
	return f.client.Do(req)
}

// DoStream is Do with a body that is streamed rather than held in memory (a snapshot
// restore); it cannot be retried by the caller.
func (f *Forwarder) DoStream(ctx context.Context, addr string, r *http.Request, body io.Reader, length int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, r.Method, "http://"+addr+r.URL.RequestURI(), body)
	if err != nil {
		return nil, err
	}
	req.Header = r.Header.Clone()
	for _, h := range hopHeaders {
		req.Header.Del(h)
	}
	req.ContentLength = length
	return f.client.Do(req)
}

// Close drops idle streams and sessions.
func (f *Forwarder) Close() {
	f.client.CloseIdleConnections()
	f.pool.Close()
}
