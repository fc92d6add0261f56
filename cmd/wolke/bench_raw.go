package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/wolke-platform/wolke/pkg/benchkv"
)

// rawKV drives Consul's KV API with a minimal HTTP/1.1 client: one keep-alive
// connection per request in flight, requests written with one write and responses
// parsed in place. The load generator shares the machine's cores with the server it
// measures, so every microsecond it spends is one the server does not get; net/http's
// Transport costs about 40 µs per request here (its own goroutines and header maps),
// this about a third of that. It speaks plain HTTP/1.1 and handles what real servers
// send: Content-Length or chunked bodies, and "Connection: close".
//
// With several addresses (the servers of a cluster), each new connection goes to the
// next address in turn, so the workers' connections spread evenly; a dial that fails
// moves on to the next address at once. A connection that fails is closed and its
// request reported as failed, and the worker's next request dials anew: the clients of
// a server that died move to the others within one request each.
type rawKV struct {
	addrs []string
	next  atomic.Uint64
	conns chan *rawConn
}

var _ benchkv.Driver = (*rawKV)(nil)

type rawConn struct {
	c    net.Conn
	br   *bufio.Reader
	req  []byte
	host string // the address dialled, sent as Host
}

// newRawKV keeps up to maxConns idle connections to addrs (host:port each, at least one).
func newRawKV(addrs []string, maxConns int) *rawKV {
	return &rawKV{addrs: addrs, conns: make(chan *rawConn, maxConns)}
}

func (d *rawKV) get(ctx context.Context) (*rawConn, error) {
	select {
	case c := <-d.conns:
		return c, nil
	default:
	}
	var dialer net.Dialer
	var err error
	first := d.next.Add(1) - 1
	for i := range uint64(len(d.addrs)) {
		addr := d.addrs[(first+i)%uint64(len(d.addrs))]
		var c net.Conn
		if c, err = dialer.DialContext(ctx, "tcp", addr); err == nil {
			return &rawConn{c: c, br: bufio.NewReaderSize(c, 8192), req: make([]byte, 0, 1024), host: addr}, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

func (d *rawKV) put(c *rawConn) {
	select {
	case d.conns <- c:
	default:
		c.c.Close()
	}
}

// do sends one request and returns the status and up to 128 bytes of the body.
func (d *rawKV) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	c, err := d.get(ctx)
	if err != nil {
		return 0, nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.c.SetDeadline(dl)
	} else {
		c.c.SetDeadline(time.Time{})
	}
	r := append(c.req[:0], method...)
	r = append(r, ' ')
	r = append(r, path...)
	r = append(r, " HTTP/1.1\r\nHost: "...)
	r = append(r, c.host...)
	if body != nil {
		r = append(r, "\r\nContent-Length: "...)
		r = strconv.AppendInt(r, int64(len(body)), 10)
	}
	r = append(r, "\r\n\r\n"...)
	r = append(r, body...)
	c.req = r
	if _, err := c.c.Write(r); err != nil {
		c.c.Close()
		return 0, nil, err
	}
	status, snippet, keep, err := readResponse(c.br)
	if err != nil {
		c.c.Close()
		return 0, nil, err
	}
	if keep {
		d.put(c)
	} else {
		c.c.Close()
	}
	return status, snippet, nil
}

var errMalformed = errors.New("malformed HTTP response")

// readResponse parses a response and consumes its body, keeping at most 128 bytes.
func readResponse(br *bufio.Reader) (status int, snippet []byte, keepAlive bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, nil, false, err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, nil, false, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, false, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	keepAlive = line[7] == '1'
	length, chunked := int64(-1), false
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return 0, nil, false, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return 0, nil, false, fmt.Errorf("%w: header %q", errMalformed, h)
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "Content-Length"):
			if length, err = strconv.ParseInt(string(value), 10, 64); err != nil || length < 0 {
				return 0, nil, false, fmt.Errorf("%w: Content-Length %q", errMalformed, value)
			}
		case asciiEqualFold(name, "Transfer-Encoding"):
			chunked = asciiEqualFold(value, "chunked")
		case asciiEqualFold(name, "Connection"):
			if asciiEqualFold(value, "close") {
				keepAlive = false
			} else if asciiEqualFold(value, "keep-alive") {
				keepAlive = true
			}
		}
	}
	var body io.Reader
	switch {
	case chunked:
		body = httputil.NewChunkedReader(br)
	case length >= 0:
		body = io.LimitReader(br, length)
	case status == 204 || status == 304 || status/100 == 1:
		body = bytes.NewReader(nil)
	default:
		body, keepAlive = br, false // read until the server closes
	}
	var buf [128]byte
	n, _ := io.ReadFull(body, buf[:])
	if _, err := io.Copy(io.Discard, body); err != nil {
		return 0, nil, false, err
	}
	if chunked {
		// The chunked reader stops at the last chunk; trailers and the final empty
		// line belong to this response too.
		for {
			l, err := br.ReadSlice('\n')
			if err != nil {
				return 0, nil, false, err
			}
			if len(bytes.TrimRight(l, "\r\n")) == 0 {
				break
			}
		}
	}
	return status, buf[:n], keepAlive, nil
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i]|0x20, s[i]|0x20
		if x != y {
			return false
		}
	}
	return true
}

var rawReadQuery = map[benchkv.ReadMode]string{
	benchkv.ReadDefault:    "",
	benchkv.ReadConsistent: "?consistent",
	benchkv.ReadStale:      "?stale",
}

// Put writes with PUT /v1/kv/<key>; the API answers true.
func (d *rawKV) Put(ctx context.Context, key string, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	status, body, err := d.do(ctx, "PUT", kvPath(key), value)
	if err != nil {
		return err
	}
	if status != 200 {
		return fmt.Errorf("%w: PUT %d %s: %s", errAnswer, status, http.StatusText(status), firstLine(body))
	}
	if string(bytes.TrimSpace(body)) != "true" {
		return fmt.Errorf("%w: PUT answered %q", errAnswer, body)
	}
	return nil
}

// Get reads with GET /v1/kv/<key>; 404 is benchkv.ErrNotFound.
func (d *rawKV) Get(ctx context.Context, key string, mode benchkv.ReadMode) error {
	status, body, err := d.do(ctx, "GET", kvPath(key)+rawReadQuery[mode], nil)
	if err != nil {
		return err
	}
	switch status {
	case 200:
		return nil
	case 404:
		return benchkv.ErrNotFound
	}
	return fmt.Errorf("%w: GET %d %s: %s", errAnswer, status, http.StatusText(status), firstLine(body))
}

// kvPath is the request path of a key, percent-encoded only when it has to be.
func kvPath(key string) string {
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c <= ' ' || c >= 0x7f || c == '%' || c == '?' || c == '#' {
			return (&url.URL{Path: "/v1/kv/" + key}).EscapedPath()
		}
	}
	return "/v1/kv/" + key
}

func firstLine(b []byte) []byte {
	line, _, _ := bytes.Cut(bytes.TrimSpace(b), []byte("\n"))
	return line
}

// Close closes idle connections.
func (d *rawKV) Close() error {
	for {
		select {
		case c := <-d.conns:
			c.c.Close()
		default:
			return nil
		}
	}
}
