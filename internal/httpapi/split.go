package httpapi

import (
	"bytes"
	"net"
	"sync"
	"time"
)

// splitListener sorts the connections of one listener by protocol: those that open
// with the HTTP/2 connection preface (h2c with prior knowledge, RFC 9113 §3.3) go to
// h2, all others to h1. The first bytes are read on a goroutine of their own, so a
// client that connects and says nothing holds up no one else.
type splitListener struct {
	ln     net.Listener
	h1, h2 *queueListener
}

// h2Preface starts the HTTP/2 connection preface; no HTTP/1 method is "PRI".
var h2Preface = []byte("PRI ")

// splitSniffTimeout bounds the wait for a new connection's first bytes.
const splitSniffTimeout = 10 * time.Second

func newSplitListener(ln net.Listener) *splitListener {
	s := &splitListener{ln: ln, h1: newQueueListener(ln), h2: newQueueListener(ln)}
	go s.run()
	return s
}

func (s *splitListener) run() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			s.h1.fail(err)
			s.h2.fail(err)
			return
		}
		go s.sort(c)
	}
}

func (s *splitListener) sort(c net.Conn) {
	var buf [len("PRI ")]byte
	c.SetReadDeadline(time.Now().Add(splitSniffTimeout))
	n := 0
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		n += m
		if err != nil {
			break
		}
		if !bytes.HasPrefix(h2Preface, buf[:n]) {
			break // not the preface: HTTP/1
		}
	}
	c.SetReadDeadline(time.Time{})
	if n == 0 {
		c.Close()
		return
	}
	pc := &prefixConn{Conn: c, pre: append([]byte(nil), buf[:n]...)}
	if bytes.Equal(buf[:n], h2Preface) {
		s.h2.push(pc)
	} else {
		s.h1.push(pc)
	}
}

// Close closes the underlying listener; both halves then fail their Accept.
func (s *splitListener) Close() error { return s.ln.Close() }

// queueListener is a net.Listener fed with connections by a splitListener.
type queueListener struct {
	addr net.Addr
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
	mu   sync.Mutex
	err  error
}

func newQueueListener(parent net.Listener) *queueListener {
	return &queueListener{addr: parent.Addr(), ch: make(chan net.Conn), done: make(chan struct{})}
}

func (q *queueListener) push(c net.Conn) {
	select {
	case q.ch <- c:
	case <-q.done:
		c.Close()
	}
}

func (q *queueListener) fail(err error) {
	q.mu.Lock()
	if q.err == nil {
		q.err = err
	}
	q.mu.Unlock()
	q.once.Do(func() { close(q.done) })
}

func (q *queueListener) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		q.mu.Lock()
		defer q.mu.Unlock()
		return nil, q.err
	}
}

// Close stops this half; the other half and the parent listener keep running.
func (q *queueListener) Close() error {
	q.fail(net.ErrClosed)
	return nil
}

func (q *queueListener) Addr() net.Addr { return q.addr }

// prefixConn gives back the bytes read to sort the connection before the rest.
type prefixConn struct {
	net.Conn
	pre  []byte
	strs connStrings // serveFast's strings of this connection's requests
}

func (c *prefixConn) connStrings() *connStrings { return &c.strs }

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(b, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// NetConn returns the connection underneath, for watchHangup.
func (c *prefixConn) NetConn() net.Conn { return c.Conn }
