package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
)

// listen opens the client and admin listeners and starts serving them.
func (p *Proxy) listen() error {
	ln, err := net.Listen("tcp", p.cfg.Listen)
	if err != nil {
		return fmt.Errorf("proxy: listen: %w", err)
	}
	p.ln = ln
	p.srv = p.newFastServer()

	// Shutdown goes in this order: stop classifying new connections, then drain.
	var fastLn net.Listener = ln
	if p.cfg.TLSCert != "" || p.cfg.H2C {
		d, err := p.newDispatcher(ln)
		if err != nil {
			ln.Close()
			return err
		}
		fastLn = d.http1
		p.servers = append(p.servers, d)
	} else if !p.cfg.Goroutines {
		// The event loops serve the listener; fasthttp gets the connections they
		// hand over. The loops stop first, then fasthttp drains what it was given.
		handoff := &chanListener{addr: ln.Addr(), ch: make(chan net.Conn), done: make(chan struct{})}
		e, err := newEngine(p, ln, handoff)
		switch {
		case err == nil:
			ln.Close() // the loops hold their own descriptor of the socket
			fastLn = handoff
			p.servers = append(p.servers, e)
		case errors.Is(err, errEngineUnsupported):
		default:
			ln.Close()
			return fmt.Errorf("proxy: event loop: %w", err)
		}
	}
	p.servers = append(p.servers, fastShutdown{p.srv})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := p.srv.Serve(fastLn); err != nil && !errors.Is(err, net.ErrClosed) {
			p.log.Error("gateway listener stopped", "error", err)
		}
	}()

	if p.cfg.AdminListen != "" {
		aln, err := net.Listen("tcp", p.cfg.AdminListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("proxy: admin listen: %w", err)
		}
		p.adminLn = aln
		admin := &http.Server{Handler: p.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
		p.servers = append(p.servers, admin)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if err := admin.Serve(aln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				p.log.Error("admin listener stopped", "error", err)
			}
		}()
	}
	return nil
}

// fastShutdown gives fasthttp's ShutdownWithContext the shape of net/http's.
type fastShutdown struct{ s *fasthttp.Server }

func (f fastShutdown) Shutdown(ctx context.Context) error { return f.s.ShutdownWithContext(ctx) }

// dispatcher sorts connections by protocol: HTTP/1.1 goes to fasthttp, HTTP/2 (by
// ALPN over TLS, or by its connection preface in cleartext) to golang.org/x/net's
// HTTP/2 server with an adapter onto the same handler.
type dispatcher struct {
	p      *Proxy
	ln     net.Listener
	tls    *tls.Config
	h2     *http2.Server
	h2base *http.Server // carries the HTTP/2 connections' graceful shutdown (GOAWAY)
	h2h    http.Handler
	http1  *chanListener
	mu     sync.Mutex
	conns  map[net.Conn]struct{} // HTTP/2 connections, closed on shutdown
	wg     sync.WaitGroup
	closed chan struct{}
}

func (p *Proxy) newDispatcher(ln net.Listener) (*dispatcher, error) {
	d := &dispatcher{
		p: p, ln: ln, h2: &http2.Server{IdleTimeout: p.cfg.ClientIdleTimeout},
		h2h:    http.HandlerFunc(p.serveHTTP),
		http1:  &chanListener{addr: ln.Addr(), ch: make(chan net.Conn), done: make(chan struct{})},
		conns:  map[net.Conn]struct{}{},
		closed: make(chan struct{}),
	}
	d.h2base = &http.Server{Handler: d.h2h}
	if err := http2.ConfigureServer(d.h2base, d.h2); err != nil {
		return nil, fmt.Errorf("proxy: http2: %w", err)
	}
	if p.cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(p.cfg.TLSCert, p.cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("proxy: tls: %w", err)
		}
		d.tls = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12}
	}
	go d.acceptLoop()
	return d, nil
}

func (d *dispatcher) acceptLoop() {
	for {
		c, err := d.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			d.http1.close()
			return
		}
		go d.classify(c)
	}
}

var h2Preface = []byte(http2.ClientPreface)

func (d *dispatcher) classify(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if d.tls != nil {
		tc := tls.Server(c, d.tls)
		if err := tc.HandshakeContext(context.Background()); err != nil {
			c.Close()
			return
		}
		c.SetReadDeadline(time.Time{})
		if tc.ConnectionState().NegotiatedProtocol == "h2" {
			d.serveH2(tc)
			return
		}
		d.http1.deliver(tc)
		return
	}
	br := bufio.NewReaderSize(c, len(h2Preface))
	head, err := br.Peek(len(h2Preface))
	c.SetReadDeadline(time.Time{})
	pc := &peekedConn{Conn: c, r: br}
	if err == nil && bytes.Equal(head, h2Preface) {
		d.serveH2(pc)
		return
	}
	if err != nil && len(head) == 0 {
		c.Close()
		return
	}
	d.http1.deliver(pc)
}

func (d *dispatcher) serveH2(c net.Conn) {
	d.mu.Lock()
	select {
	case <-d.closed:
		d.mu.Unlock()
		c.Close()
		return
	default:
	}
	d.conns[c] = struct{}{}
	d.wg.Add(1)
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.conns, c)
		d.mu.Unlock()
		d.wg.Done()
	}()
	d.h2.ServeConn(c, &http2.ServeConnOpts{Handler: d.h2h, BaseConfig: d.h2base})
}

// Shutdown stops accepting and waits for HTTP/2 connections to finish their
// streams; the HTTP/1.1 ones are fasthttp's to drain.
func (d *dispatcher) Shutdown(ctx context.Context) error {
	d.mu.Lock()
	select {
	case <-d.closed:
	default:
		close(d.closed)
	}
	d.mu.Unlock()
	d.ln.Close()
	// Shutting down the base server sends GOAWAY on every HTTP/2 connection: clients
	// finish their streams and open no new ones. What remains at the deadline is cut.
	d.h2base.Shutdown(ctx)
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		d.mu.Lock()
		for c := range d.conns {
			c.Close()
		}
		d.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// chanListener hands connections accepted elsewhere to fasthttp.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
}

func (l *chanListener) deliver(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) close()         { l.once.Do(func() { close(l.done) }) }
func (l *chanListener) Close() error   { l.close(); return nil }
func (l *chanListener) Addr() net.Addr { return l.addr }

// serveHTTP adapts a net/http request (HTTP/2) onto the fasthttp handler. The
// request body is read whole, as fasthttp would, bounded by MaxRequestBodySize; the
// response streams back with a flush per chunk, so server-sent events work.
func (p *Proxy) serveHTTP(w http.ResponseWriter, r *http.Request) {
	var fr fasthttp.Request
	fr.Header.SetMethod(r.Method)
	fr.SetRequestURI(r.URL.RequestURI())
	fr.Header.SetHost(r.Host)
	for k, vs := range r.Header {
		for _, v := range vs {
			fr.Header.Add(k, v)
		}
	}
	if r.Body != nil {
		body, err := io.ReadAll(io.LimitReader(r.Body, int64(p.cfg.MaxRequestBodySize)+1))
		if err != nil {
			http.Error(w, `{"error":"reading request body failed"}`, http.StatusBadRequest)
			return
		}
		if len(body) > p.cfg.MaxRequestBodySize {
			http.Error(w, `{"error":"request body too large"}`, http.StatusRequestEntityTooLarge)
			return
		}
		fr.SetBodyRaw(body)
	}
	remote, _ := net.ResolveTCPAddr("tcp", r.RemoteAddr)
	var ctx fasthttp.RequestCtx
	ctx.Init(&fr, remote, fastLogger{p.log})
	p.serveCtx(&ctx, r.TLS != nil)

	resp := &ctx.Response
	h := w.Header()
	for k, v := range resp.Header.All() {
		switch string(k) {
		case "Connection", "Transfer-Encoding", "Content-Length":
			continue
		}
		h.Add(string(k), string(v))
	}
	if cl := resp.Header.ContentLength(); cl >= 0 && resp.BodyStream() == nil {
		h.Set("Content-Length", fmt.Sprint(len(resp.Body())))
	}
	w.WriteHeader(resp.StatusCode())
	if stream := resp.BodyStream(); stream != nil {
		defer resp.CloseBodyStream()
		buf := make([]byte, 32<<10)
		rc := http.NewResponseController(w)
		for {
			n, err := stream.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				rc.Flush()
			}
			if err != nil {
				return
			}
		}
	}
	w.Write(resp.Body())
}
