package rpc

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Calls are small request/response exchanges between servers (a follower passing an
// encoded Raft command to the leader) on one plain TCP connection per peer, pipelined:
// any number of calls are in flight at once, each frame carries the call's ID, and
// frames queued while a write is in progress go out together in the next one. Under
// load that is one write and one read system call for many calls, where an HTTP
// request per call over a yamux stream costs a stream, its window updates and a full
// HTTP exchange at each end.
//
// A connection opens with protoCall and callMagic; the server answers callMagic. A
// server that predates calls closes the connection on the unknown protocol byte,
// which the client remembers for a while (ErrCallsUnsupported), so a caller can
// fall back to forwarding whole HTTP requests.
//
// Frame: uint32 payload length, uint64 call ID, payload (big endian).

var callMagic = [4]byte{'w', 'c', 'l', '1'}

const (
	callHeader   = 12
	maxCallFrame = 64 << 20
	// How long to believe that a server does not accept calls before asking again
	// (it may have been upgraded since).
	unsupportedFor = 30 * time.Second
	writeTimeout   = 10 * time.Second
)

// CallHandler answers one call. Each call runs on its own goroutine; ctx ends when
// the connection or the mux closes.
type CallHandler func(ctx context.Context, req []byte) []byte

// ErrCallsUnsupported means the server does not accept calls (it is older than this
// protocol, or serves no handler); nothing was sent.
var ErrCallsUnsupported = errors.New("rpc: server does not accept calls")

// ErrCallLost means the connection broke after the call was written: the server may
// or may not have carried it out.
var ErrCallLost = errors.New("rpc: connection lost after the call was sent")

// HandleCalls sets the handler for calls; until it is set (and after it is set to
// nil) the server port refuses new call connections as an older server would.
func (m *Mux) HandleCalls(h CallHandler) {
	if h == nil {
		m.calls.Store(nil)
		return
	}
	m.calls.Store(&h)
}

func (m *Mux) serveCalls(c net.Conn, h CallHandler) {
	tc := &trackedConn{Conn: c, m: m}
	if !m.track(tc) {
		tc.Close()
		return
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var magic [4]byte
	if _, err := io.ReadFull(c, magic[:]); err != nil || magic != callMagic {
		tc.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	c.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := c.Write(callMagic[:]); err != nil {
		tc.Close()
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-m.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	w := newFrameWriter(tc)
	var wg sync.WaitGroup
	r := bufio.NewReaderSize(c, 32<<10)
	for {
		id, payload, err := readFrame(r)
		if err != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.append(id, h(ctx, payload))
		}()
	}
	cancel()
	tc.Close()
	wg.Wait()
	w.stop()
}

func readFrame(r *bufio.Reader) (uint64, []byte, error) {
	var hdr [callHeader]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n > maxCallFrame {
		return 0, nil, fmt.Errorf("rpc: call frame of %d bytes exceeds %d", n, maxCallFrame)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	return binary.BigEndian.Uint64(hdr[4:]), payload, nil
}

// frameWriter queues frames and writes whatever has queued up in one write, from one
// goroutine, so concurrent callers never wait for each other's system calls.
type frameWriter struct {
	c    net.Conn
	kick chan struct{}
	done chan struct{}
	exit chan struct{}

	mu     sync.Mutex
	buf    []byte
	spare  []byte
	nextID uint64 // for a client: the ID of the next call
	taken  uint64 // the highest ID handed to a write
	last   uint64 // the highest ID queued
	failed bool
}

func newFrameWriter(c net.Conn) *frameWriter {
	w := &frameWriter{c: c, kick: make(chan struct{}, 1), done: make(chan struct{}), exit: make(chan struct{}), nextID: 1}
	go w.run()
	return w
}

func appendFrame(b []byte, id uint64, p []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
	b = binary.BigEndian.AppendUint64(b, id)
	return append(b, p...)
}

// append queues a frame; it reports false once the connection has failed.
func (w *frameWriter) append(id uint64, p []byte) bool {
	w.mu.Lock()
	if w.failed {
		w.mu.Unlock()
		return false
	}
	w.buf = appendFrame(w.buf, id, p)
	w.last = id
	w.mu.Unlock()
	w.wake()
	return true
}

// call queues a new call under the next ID; register runs under the writer's lock
// before the frame is queued, so the answer cannot arrive before the caller waits
// for it.
func (w *frameWriter) call(p []byte, register func(id uint64)) (uint64, bool) {
	w.mu.Lock()
	if w.failed {
		w.mu.Unlock()
		return 0, false
	}
	id := w.nextID
	w.nextID++
	register(id)
	w.buf = appendFrame(w.buf, id, p)
	w.last = id
	w.mu.Unlock()
	w.wake()
	return id, true
}

func (w *frameWriter) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *frameWriter) run() {
	defer close(w.exit)
	for {
		select {
		case <-w.kick:
		case <-w.done:
			return
		}
		w.mu.Lock()
		out := w.buf
		w.buf = w.spare[:0]
		w.spare = nil
		w.taken = w.last
		w.mu.Unlock()
		if len(out) == 0 {
			continue
		}
		w.c.SetWriteDeadline(time.Now().Add(writeTimeout))
		_, err := w.c.Write(out)
		w.mu.Lock()
		if cap(out) <= 1<<20 { // keep a buffer for the next batch, not a huge one
			w.spare = out[:0]
		}
		if err != nil {
			w.failed = true
		}
		w.mu.Unlock()
		if err != nil {
			w.c.Close() // the reader sees it and fails what is pending
			return
		}
	}
}

// fail stops further frames and returns the highest ID handed to a write: calls
// above it never left this process.
func (w *frameWriter) fail() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failed = true
	return w.taken
}

func (w *frameWriter) stop() {
	close(w.done)
	<-w.exit
}

// CallPool keeps one call connection per server.
type CallPool struct {
	timeout time.Duration

	mu          sync.Mutex
	conns       map[string]*callConn
	dialing     map[string]chan struct{}
	unsupported map[string]time.Time
	closed      bool
}

// NewCallPool returns an empty pool; dialTimeout bounds connecting to a server.
func NewCallPool(dialTimeout time.Duration) *CallPool {
	return &CallPool{
		timeout:     dialTimeout,
		conns:       map[string]*callConn{},
		dialing:     map[string]chan struct{}{},
		unsupported: map[string]time.Time{},
	}
}

type callResult struct {
	body []byte
	err  error
}

type callConn struct {
	addr string
	c    net.Conn
	w    *frameWriter

	mu      sync.Mutex
	pending map[uint64]chan callResult // nil once the connection broke
}

// Supported reports whether the server at addr accepts calls, connecting to it if
// needed. A server that cannot be reached counts as not supporting them.
func (p *CallPool) Supported(ctx context.Context, addr string) bool {
	_, err := p.conn(ctx, addr)
	return err == nil
}

// Call sends req to the server at addr and returns its answer. An error wrapped in
// NotSentError means the call never left this process (it may be sent elsewhere);
// ErrCallLost means it may have been carried out.
func (p *CallPool) Call(ctx context.Context, addr string, req []byte) ([]byte, error) {
	if len(req) > maxCallFrame {
		return nil, &NotSentError{Err: fmt.Errorf("rpc: call of %d bytes exceeds %d", len(req), maxCallFrame)}
	}
	cc, err := p.conn(ctx, addr)
	if err != nil {
		return nil, &NotSentError{Err: err}
	}
	ch := make(chan callResult, 1)
	id, ok := cc.w.call(req, func(id uint64) {
		cc.mu.Lock()
		cc.pending[id] = ch
		cc.mu.Unlock()
	})
	if !ok {
		return nil, &NotSentError{Err: fmt.Errorf("rpc: call connection to %s closed", addr)}
	}
	select {
	case res := <-ch:
		return res.body, res.err
	case <-ctx.Done():
		cc.mu.Lock()
		delete(cc.pending, id)
		cc.mu.Unlock()
		return nil, ctx.Err()
	}
}

func (p *CallPool) conn(ctx context.Context, addr string) (*callConn, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		if cc := p.conns[addr]; cc != nil {
			p.mu.Unlock()
			return cc, nil
		}
		if until, ok := p.unsupported[addr]; ok {
			if time.Now().Before(until) {
				p.mu.Unlock()
				return nil, ErrCallsUnsupported
			}
			delete(p.unsupported, addr)
		}
		if wait, ok := p.dialing[addr]; ok {
			p.mu.Unlock()
			select {
			case <-wait:
				p.mu.Lock()
				cc, unsupported := p.conns[addr], p.unsupported[addr]
				p.mu.Unlock()
				if cc == nil && unsupported.IsZero() {
					// The other dial failed; fail this call too rather than dial again.
					return nil, fmt.Errorf("rpc: dial %s failed", addr)
				}
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		done := make(chan struct{})
		p.dialing[addr] = done
		p.mu.Unlock()

		cc, err := p.dial(ctx, addr)
		p.mu.Lock()
		delete(p.dialing, addr)
		switch {
		case err == nil && p.closed:
			cc.c.Close()
			err = ErrClosed
		case err == nil:
			p.conns[addr] = cc
			go p.read(cc)
		case errors.Is(err, ErrCallsUnsupported):
			p.unsupported[addr] = time.Now().Add(unsupportedFor)
		}
		close(done)
		p.mu.Unlock()
		return cc, err
	}
}

func (p *CallPool) dial(ctx context.Context, addr string) (*callConn, error) {
	d := net.Dialer{Timeout: p.timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("rpc: dial %s: %w", addr, err)
	}
	c.SetDeadline(time.Now().Add(p.timeout))
	hello := append([]byte{protoCall}, callMagic[:]...)
	if _, err := c.Write(hello); err != nil {
		c.Close()
		return nil, fmt.Errorf("rpc: call handshake with %s: %w", addr, err)
	}
	var magic [4]byte
	if _, err := io.ReadFull(c, magic[:]); err != nil {
		c.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, fmt.Errorf("rpc: call handshake with %s: %w", addr, err)
		}
		// Closed on the protocol byte: a server that predates calls.
		return nil, fmt.Errorf("%w (%s: %v)", ErrCallsUnsupported, addr, err)
	}
	if magic != callMagic {
		c.Close()
		return nil, fmt.Errorf("%w (%s answered %q)", ErrCallsUnsupported, addr, magic[:])
	}
	c.SetDeadline(time.Time{})
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	return &callConn{addr: addr, c: c, w: newFrameWriter(c), pending: map[uint64]chan callResult{}}, nil
}

// read delivers answers until the connection breaks, then fails every pending call
// and forgets the connection.
func (p *CallPool) read(cc *callConn) {
	r := bufio.NewReaderSize(cc.c, 32<<10)
	var err error
	for {
		var id uint64
		var body []byte
		id, body, err = readFrame(r)
		if err != nil {
			break
		}
		cc.mu.Lock()
		ch := cc.pending[id]
		delete(cc.pending, id)
		cc.mu.Unlock()
		if ch != nil {
			ch <- callResult{body: body}
		}
	}
	cc.c.Close()
	p.mu.Lock()
	if p.conns[cc.addr] == cc {
		delete(p.conns, cc.addr)
	}
	p.mu.Unlock()
	taken := cc.w.fail()
	cc.w.stop()
	cc.mu.Lock()
	pending := cc.pending
	cc.pending = nil
	cc.mu.Unlock()
	for id, ch := range pending {
		if id > taken {
			ch <- callResult{err: &NotSentError{Err: fmt.Errorf("rpc: call connection to %s broke before the call was sent: %w", cc.addr, err)}}
		} else {
			ch <- callResult{err: fmt.Errorf("%w (%s: %v)", ErrCallLost, cc.addr, err)}
		}
	}
}

// Close closes every connection; pending calls fail.
func (p *CallPool) Close() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = map[string]*callConn{}
	p.mu.Unlock()
	for _, cc := range conns {
		cc.c.Close()
	}
}
