// Package rpc is the server-to-server port (8300 by default). One TCP listener carries
// three protocols, told apart by the first byte of each connection, the way Consul
// multiplexes its server port: Raft's own transport; forwarded API requests, which
// travel as HTTP/1.1 over yamux streams so that one TCP connection per peer carries any
// number of concurrent requests; and pipelined calls (call.go), which carry encoded
// Raft commands from followers to the leader.
package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hashicorp/yamux"
)

// Protocol bytes, sent first on every connection. ONLY APPEND TO THIS LIST.
const (
	protoRaft    byte = 0x01
	protoForward byte = 0x02
	protoCall    byte = 0x03
)

// ErrClosed is returned once the mux is shut down.
var ErrClosed = errors.New("rpc: closed")

// Mux accepts connections on the server port and hands each to its protocol.
type Mux struct {
	ln      net.Listener
	raft    *connQueue
	forward *connQueue
	calls   atomic.Pointer[CallHandler]
	logger  *slog.Logger

	closeOnce sync.Once
	closed    chan struct{}
	wg        sync.WaitGroup

	mu    sync.Mutex
	conns map[io.Closer]struct{} // accepted connections and sessions, closed with the mux
}

// track remembers c so Close can end it; it reports false if the mux is closing.
func (m *Mux) track(c io.Closer) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.conns == nil {
		return false
	}
	m.conns[c] = struct{}{}
	return true
}

func (m *Mux) untrack(c io.Closer) {
	m.mu.Lock()
	delete(m.conns, c)
	m.mu.Unlock()
}

// Listen opens the server port at addr ("ip:port"; port 0 picks one).
func Listen(addr string, logger *slog.Logger) (*Mux, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("rpc: listen %s: %w", addr, err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &Mux{
		ln:     ln,
		logger: logger.With("component", "rpc"),
		closed: make(chan struct{}),
		conns:  map[io.Closer]struct{}{},
	}
	m.raft = newConnQueue(16, m.closed, ln.Addr())
	m.forward = newConnQueue(64, m.closed, ln.Addr())
	m.wg.Add(1)
	go m.accept()
	return m, nil
}

// Addr is the listener's address.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

func (m *Mux) accept() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.closed:
				return
			default:
			}
			m.logger.Warn("accept failed", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go m.handshake(c)
	}
}

// handshake reads the protocol byte (bounded in time, so an idle port scanner cannot
// hold a goroutine) and routes the connection.
func (m *Mux) handshake(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	switch b[0] {
	case protoRaft:
		tc := &trackedConn{Conn: c, m: m}
		if !m.track(tc) || !m.raft.push(tc) {
			tc.Close()
		}
	case protoForward:
		sess, err := yamux.Server(c, yamuxConfig())
		if err != nil {
			c.Close()
			return
		}
		if !m.track(sess) {
			sess.Close()
			return
		}
		defer m.untrack(sess)
		// Each stream of the session is one forwarded HTTP connection.
		for {
			s, err := sess.Accept()
			if err != nil {
				sess.Close()
				return
			}
			if !m.forward.push(s) {
				s.Close()
				sess.Close()
				return
			}
		}
	case protoCall:
		h := m.calls.Load()
		if h == nil {
			c.Close()
			return
		}
		m.serveCalls(c, *h)
	default:
		m.logger.Warn("unknown protocol on server port", "byte", b[0], "remote", c.RemoteAddr().String())
		c.Close()
	}
}

// ForwardListener yields the streams of forwarded API requests; serve the API on it.
func (m *Mux) ForwardListener() net.Listener { return m.forward }

// RaftLayer returns the stream layer for Raft's network transport.
func (m *Mux) RaftLayer(advertise net.Addr) raft.StreamLayer {
	if advertise == nil {
		advertise = m.ln.Addr()
	}
	return &raftLayer{connQueue: m.raft, advertise: advertise}
}

// Close stops accepting and closes the protocol listeners.
func (m *Mux) Close() error {
	var err error
	m.closeOnce.Do(func() {
		close(m.closed)
		err = m.ln.Close()
		m.wg.Wait()
		m.mu.Lock()
		conns := m.conns
		m.conns = nil
		m.mu.Unlock()
		for c := range conns {
			c.Close()
		}
	})
	return err
}

func yamuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.LogOutput = io.Discard
	// Forwarded requests include blocking queries that hold a stream for minutes.
	c.StreamOpenTimeout = 10 * time.Second
	c.ConnectionWriteTimeout = 10 * time.Second
	c.MaxStreamWindowSize = 1 << 20
	return c
}

// connQueue is a net.Listener fed by the mux. Closing it stops its Accept (an
// http.Server waits for that) but not the mux, which owns the socket.
type connQueue struct {
	ch        chan net.Conn
	closed    chan struct{} // the mux's
	done      chan struct{} // this listener's
	closeOnce sync.Once
	addr      net.Addr
}

func newConnQueue(size int, muxClosed chan struct{}, addr net.Addr) *connQueue {
	return &connQueue{ch: make(chan net.Conn, size), closed: muxClosed, done: make(chan struct{}), addr: addr}
}

func (q *connQueue) push(c net.Conn) bool {
	// A closed listener must not buffer a connection that nobody will accept.
	select {
	case <-q.closed:
		return false
	case <-q.done:
		return false
	default:
	}
	select {
	case q.ch <- c:
		return true
	case <-q.closed:
		return false
	case <-q.done:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.closed:
		return nil, ErrClosed
	case <-q.done:
		return nil, ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.closeOnce.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// trackedConn leaves the mux's table when closed.
type trackedConn struct {
	net.Conn
	m    *Mux
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.m.untrack(c) })
	return c.Conn.Close()
}

// raftLayer is raft.StreamLayer over the mux: it accepts Raft connections and dials
// peers with the Raft protocol byte.
type raftLayer struct {
	*connQueue
	advertise net.Addr
}

var _ raft.StreamLayer = (*raftLayer)(nil)

func (l *raftLayer) Addr() net.Addr { return l.advertise }

func (l *raftLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte{protoRaft}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Pool keeps one yamux session per server and opens streams on it for forwarded
// requests; a broken session is replaced on the next open.
type Pool struct {
	mu       sync.Mutex
	sessions map[string]*yamux.Session
	dialing  map[string]chan struct{}
	timeout  time.Duration
}

// NewPool returns an empty pool; dialTimeout bounds connecting to a server.
func NewPool(dialTimeout time.Duration) *Pool {
	return &Pool{sessions: map[string]*yamux.Session{}, dialing: map[string]chan struct{}{}, timeout: dialTimeout}
}

// Open returns a new stream to the server at addr.
func (p *Pool) Open(ctx context.Context, addr string) (net.Conn, error) {
	for attempt := 0; ; attempt++ {
		p.mu.Lock()
		if s := p.sessions[addr]; s != nil && !s.IsClosed() {
			p.mu.Unlock()
			st, err := s.OpenStream()
			if err == nil {
				return st, nil
			}
			// The peer restarted or the connection broke: redial once.
			p.drop(addr, s)
			if attempt > 0 {
				return nil, fmt.Errorf("rpc: open stream to %s: %w", addr, err)
			}
			continue
		}
		if wait, ok := p.dialing[addr]; ok {
			// Someone else is dialing; wait for them rather than opening a second
			// connection to the same server.
			p.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		done := make(chan struct{})
		p.dialing[addr] = done
		p.mu.Unlock()

		s, err := p.dial(ctx, addr)
		p.mu.Lock()
		delete(p.dialing, addr)
		if err == nil {
			p.sessions[addr] = s
		}
		close(done)
		p.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
}

func (p *Pool) dial(ctx context.Context, addr string) (*yamux.Session, error) {
	d := net.Dialer{Timeout: p.timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("rpc: dial %s: %w", addr, err)
	}
	if _, err := c.Write([]byte{protoForward}); err != nil {
		c.Close()
		return nil, fmt.Errorf("rpc: handshake %s: %w", addr, err)
	}
	s, err := yamux.Client(c, yamuxConfig())
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("rpc: session %s: %w", addr, err)
	}
	return s, nil
}

func (p *Pool) drop(addr string, s *yamux.Session) {
	p.mu.Lock()
	if p.sessions[addr] == s {
		delete(p.sessions, addr)
	}
	p.mu.Unlock()
	s.Close()
}

// Close closes every session.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for a, s := range p.sessions {
		s.Close()
		delete(p.sessions, a)
	}
}
