//go:build linux

package proxy

import (
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"

	"github.com/wolke-platform/wolke/internal/balance"
)

// The event-loop engine serves plain HTTP/1.1 the way nginx does: one loop per
// processor, each an OS thread waiting in epoll on its share of the client and
// upstream connections, with no goroutine per connection and no goroutine switch per
// request. A request costs the loop four system calls (read it, write it upstream,
// read the answer, write it back) and a few microseconds of its own; the goroutine
// engine spent twice that on scheduling, deadlines and fasthttp's generality.
//
// The loop forwards the requests every proxy reads alike (see reqHead) to routes
// whose policy needs nothing but balancing, retries, outlier detection, the breaker
// and the concurrency limit. Any other connection (HTTP/1.0, a WebSocket upgrade, a
// route with auth, validation, a rate limit, a fault rule or the cache, a body too
// large to hold, anything malformed) is handed over to fasthttp with the bytes read
// so far, and served by the goroutine engine from then on; so every feature and
// every error answer keeps one implementation.

const (
	loopBufSize = 16 << 10 // a connection's read buffer: the largest head, and a request with its body
	// maxClientPending bounds the response bytes queued for a slow client before the
	// loop stops reading the upstream.
	maxClientPending = 256 << 10
	maxDrain         = 64 << 10 // a retried error response is read to reuse its connection up to this size
	idleUpstream     = 90 * time.Second
	drainTimeout     = 10 * time.Second
)

const epollET = 1 << 31

var errEngineUnsupported = errors.New("proxy: event loop unavailable")

type engine struct {
	p         *Proxy
	lfd       int
	loops     []*evloop
	handoff   *chanListener // connections for fasthttp
	closing   atomic.Bool
	abort     atomic.Bool
	wg        sync.WaitGroup
	lfdClose  sync.Once
	procsFree sync.Once
}

func newEngine(p *Proxy, ln net.Listener, handoff *chanListener) (*engine, error) {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil, errEngineUnsupported
	}
	raw, err := tl.SyscallConn()
	if err != nil {
		return nil, err
	}
	lfd := -1
	var derr error
	raw.Control(func(fd uintptr) { lfd, derr = unix.Dup(int(fd)) })
	if derr != nil {
		return nil, derr
	}
	unix.CloseOnExec(lfd)
	if err := unix.SetNonblock(lfd, true); err != nil {
		unix.Close(lfd)
		return nil, err
	}
	e := &engine{p: p, lfd: lfd, handoff: handoff}
	n := holdProcs()
	for range n {
		l, err := e.newLoop()
		if err != nil {
			e.closeLoops()
			releaseProcs(n)
			unix.Close(lfd)
			return nil, err
		}
		e.loops = append(e.loops, l)
	}
	for _, l := range e.loops {
		e.wg.Add(1)
		go l.run()
	}
	return e, nil
}

func (e *engine) closeLoops() {
	for _, l := range e.loops {
		unix.Close(l.epfd)
		unix.Close(l.wakefd)
	}
}

func (e *engine) wake() {
	var one = [8]byte{1}
	for _, l := range e.loops {
		unix.Write(l.wakefd, one[:])
	}
}

// Shutdown stops accepting, closes idle connections, lets requests in flight finish
// and closes their connections after their responses; at ctx's end it cuts the
// rest.
func (e *engine) Shutdown(ctx context.Context) error {
	e.closing.Store(true)
	// Refuse new connections at once, as closing a listener would, while the loops
	// still hold the descriptor (closing it under them could hand its number to
	// another socket mid-accept).
	unix.Shutdown(e.lfd, unix.SHUT_RDWR)
	e.wake()
	done := make(chan struct{})
	go func() {
		e.wg.Wait()
		e.procsFree.Do(func() { releaseProcs(len(e.loops)) })
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		e.abort.Store(true)
		e.wake()
		<-done
		err = ctx.Err()
	}
	e.lfdClose.Do(func() { unix.Close(e.lfd) })
	return err
}

// evloop is one loop: its epoll instance and every connection registered there.
type evloop struct {
	e      *engine
	p      *Proxy
	epfd   int
	wakefd int
	conns  []any // by file descriptor: *cconn or *uconn
	idle   map[*endpoint][]*uconn
	bufs   [][]byte // free read buffers
	exFree []*exchange
	events [256]unix.EpollEvent

	clients   atomic.Int64 // written by the loop, read by others choosing where a connection goes
	inboxMu   sync.Mutex
	inbox     []*cconn // accepted by another loop for this one
	listening bool
	hot       atomic.Bool // events came within hotWait: the loop waits holding its P
	hotUntil  int64       // unix ns: the loop waits holding its P until then
	now       time.Time
	nowNano   int64
	next      int64 // the earliest deadline that may be set, unix ns; 0: none
}

func (e *engine) newLoop() (*evloop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	l := &evloop{e: e, p: e.p, epfd: epfd, wakefd: wfd, idle: map[*endpoint][]*uconn{}, listening: true}
	add := func(fd int, ev uint32) error {
		return unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: ev, Fd: int32(fd)})
	}
	err = add(wfd, unix.EPOLLIN)
	if err == nil {
		// EPOLLEXCLUSIVE: a new connection wakes one loop, not all of them.
		err = add(e.lfd, unix.EPOLLIN|unix.EPOLLEXCLUSIVE)
	}
	if err != nil {
		unix.Close(epfd)
		unix.Close(wfd)
		return nil, err
	}
	return l, nil
}

// run is the loop. It holds its OS thread, and while busy its P (see poll).
func (l *evloop) run() {
	defer l.e.wg.Done()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer l.exit()
	for !l.serve() {
	}
}

// serve runs the loop until it has drained at shutdown (true). A panic, a bug by
// definition, ends only the connections of this loop: it is logged, they are
// closed, and the loop starts over (false), instead of taking the gateway down.
func (l *evloop) serve() (drained bool) {
	defer func() {
		if r := recover(); r != nil {
			buf := make([]byte, 16<<10)
			l.p.log.Error("gateway event loop panicked; closing its connections", "panic", r, "stack", string(buf[:runtime.Stack(buf, false)]))
			l.reset()
		}
	}()
	for {
		n := l.poll(l.waitMillis())
		l.now = time.Now()
		l.nowNano = l.now.UnixNano()
		if n > 0 {
			l.hotUntil = l.nowNano + hotWait
			if !l.hot.Load() {
				l.hot.Store(true)
			}
		}
		for i := range n {
			ev := &l.events[i]
			fd := int(ev.Fd)
			switch {
			case fd == l.e.lfd:
				l.accept()
			case fd == l.wakefd:
				var b [8]byte
				unix.Read(l.wakefd, b[:])
				l.takeInbox()
			case fd < len(l.conns):
				switch c := l.conns[fd].(type) {
				case *cconn:
					l.clientEvent(c, ev.Events)
				case *uconn:
					l.upstreamEvent(c, ev.Events)
				}
			}
		}
		if l.next != 0 && l.nowNano >= l.next {
			l.sweep()
		}
		if l.e.closing.Load() {
			if l.drain() {
				return true
			}
		}
	}
}

// reset closes every connection of the loop and forgets its state, after a panic
// left it in an unknown one.
func (l *evloop) reset() {
	for fd, x := range l.conns {
		switch c := x.(type) {
		case *cconn:
			unix.Close(c.fd)
			l.clients.Add(-1)
		case *uconn:
			unix.Close(c.fd)
			c.ep.loopConns.Add(-1)
		}
		l.conns[fd] = nil
	}
	clear(l.idle)
	l.exFree, l.next = nil, 0
}

// hotWait is how long a loop goes on waiting for events without telling the
// runtime (see holdProcs) after its last event; then it waits in a system call the
// runtime knows of, which gives its P back, so that an idle gateway costs nothing.
// Going idle costs the runtime's monitor some work: it takes the P once the wait
// has lasted 10 ms and then checks every 20 µs for a while, about 25 context
// switches per idle spell. A hot wait costs a preemption every 10 ms (the runtime's
// time slice; four context switches). 50 ms keeps sparse traffic hot: at 100
// requests/s this took the gateway from 40 to 14 CPU ticks in 8 s (nginx: 8), and
// at 1,000/s from 45 to 34 (nginx: 32).
const hotWait = 50 * int64(time.Millisecond)

// poll waits up to msec milliseconds (-1: until an event) for events.
// Not inlined: its prologue is where the goroutine stops when the runtime preempts
// it (for a collection, say) with a signal that interrupts the wait.
//
//go:noinline
func (l *evloop) poll(msec int) int {
	if left := l.hotUntil - l.nowNano; left > 0 {
		wait := int((left + 1e6 - 1) / 1e6)
		if msec >= 0 && msec < wait {
			wait = msec
		}
		return l.rawWait(wait)
	}
	if l.hot.Load() {
		l.hot.Store(false)
	}
	n, _ := unix.EpollWait(l.epfd, l.events[:], msec)
	return max(n, 0)
}

// rawWait is epoll_wait without telling the runtime. It returns 0 on EINTR, the
// runtime's signal to preempt this goroutine, which it does at the next call.
func (l *evloop) rawWait(msec int) int {
	r, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(l.epfd),
		uintptr(unsafe.Pointer(&l.events[0])), uintptr(len(l.events)), uintptr(msec), 0, 0)
	if errno != 0 {
		return 0
	}
	return int(r)
}

func (l *evloop) waitMillis() int {
	if l.next == 0 {
		return -1
	}
	d := (l.next - time.Now().UnixNano() + int64(time.Millisecond) - 1) / int64(time.Millisecond)
	return int(max(d, 1))
}

// rawRead and rawWrite are read(2) and write(2) on non-blocking sockets, which
// never block, made without telling the runtime: a system call it knows of leaves
// the loop's P in a state that the runtime's monitor takes away if the thread is
// descheduled inside the call (the kernel preempts the writer when it wakes the
// reader), and handing it to another thread and back costs more context switches.
func rawRead(fd int, b []byte) (int, error)  { return rawIO(syscall.SYS_READ, fd, b) }
func rawWrite(fd int, b []byte) (int, error) { return rawIO(syscall.SYS_WRITE, fd, b) }

func rawIO(trap uintptr, fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	r, _, errno := syscall.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

// deadline returns now+d as unix ns, noting it for the timer; a d that is not
// positive has passed already.
func (l *evloop) deadline(d time.Duration) int64 {
	t := l.nowNano + int64(max(d, 1))
	if l.next == 0 || t < l.next {
		l.next = t
	}
	return t
}

// clientDeadline is deadline for the client timeouts, where 0 means none.
func (l *evloop) clientDeadline(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return l.deadline(d)
}

func (l *evloop) setConn(fd int, c any) {
	if fd >= len(l.conns) {
		n := max(2*len(l.conns), fd+1, 1024)
		grown := make([]any, n)
		copy(grown, l.conns)
		l.conns = grown
	}
	l.conns[fd] = c
}

func (l *evloop) register(fd int) error {
	return unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd,
		&unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | epollET, Fd: int32(fd)})
}

func (l *evloop) getBuf() []byte {
	if n := len(l.bufs); n > 0 {
		b := l.bufs[n-1]
		l.bufs = l.bufs[:n-1]
		return b[:0]
	}
	return make([]byte, 0, loopBufSize)
}

func (l *evloop) putBuf(b []byte) {
	if cap(b) == loopBufSize && len(l.bufs) < 1024 {
		l.bufs = append(l.bufs, b[:0])
	}
}

// ---- clients ----

// cconn is a client connection.
type cconn struct {
	fd       int
	ip       net.IP
	ipText   []byte
	rbuf     []byte // bytes read and not yet consumed; nil when there are none
	wbuf     []byte // bytes to write; nil when there are none
	ex       *exchange
	deadline int64 // read or idle deadline while no exchange runs
	readable bool  // edge-triggered: bytes may be waiting in the socket
	hup      bool  // the peer hung up (or the socket failed): read on to the end
	eof      bool  // the client closed its side
	closing  bool  // close once wbuf is written
	closed   bool
}

func (l *evloop) accept() {
	for !l.e.closing.Load() {
		fd, sa, err := unix.Accept4(l.e.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			if err == unix.EINTR || err == unix.ECONNABORTED {
				continue
			}
			if err == unix.EMFILE || err == unix.ENFILE {
				l.p.log.Error("gateway cannot accept: out of file descriptors")
			}
			return
		}
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		c := &cconn{fd: fd}
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			c.ip = net.IP(append([]byte(nil), a.Addr[:]...))
		case *unix.SockaddrInet6:
			c.ip = net.IP(append([]byte(nil), a.Addr[:]...))
		}
		c.ipText = appendIP(nil, c.ip)
		// The loop that woke for the connection need not be the one to serve it:
		// connections go to the loop with the fewest, so that a burst of them does
		// not pile onto one loop (measured: 180 against 76 of wrk's 256).
		to := l
		for _, o := range l.e.loops {
			if o.clients.Load() < to.clients.Load() {
				to = o
			}
		}
		if to != l {
			to.clients.Add(1)
			to.inboxMu.Lock()
			to.inbox = append(to.inbox, c)
			to.inboxMu.Unlock()
			var one = [8]byte{1}
			unix.Write(to.wakefd, one[:])
			continue
		}
		l.adopt(c, false)
	}
}

// adopt registers a client connection with this loop; counted says whether
// another loop has counted it already.
func (l *evloop) adopt(c *cconn, counted bool) {
	if !counted {
		l.clients.Add(1)
	}
	if err := l.register(c.fd); err != nil {
		unix.Close(c.fd)
		l.clients.Add(-1)
		return
	}
	l.setConn(c.fd, c)
	c.deadline = l.clientDeadline(l.p.cfg.ClientReadTimeout)
}

// takeInbox adopts the connections other loops accepted for this one.
func (l *evloop) takeInbox() {
	l.inboxMu.Lock()
	in := l.inbox
	l.inbox = nil
	l.inboxMu.Unlock()
	for _, c := range in {
		l.adopt(c, true)
	}
}

func (l *evloop) clientEvent(c *cconn, ev uint32) {
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.readable = true
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.hup = true
	}
	if ev&unix.EPOLLOUT != 0 && len(c.wbuf) > 0 {
		l.flushClient(c)
		return
	}
	if c.ex == nil && len(c.wbuf) == 0 {
		l.serveClient(c)
	}
}

// serveClient reads and starts the client's next request, if it has one.
func (l *evloop) serveClient(c *cconn) {
	for !c.closed && c.ex == nil && len(c.wbuf) == 0 {
		if len(c.rbuf) > 0 {
			ex := l.newExchange(c)
			n, st := parseRequestHead(c.rbuf, &ex.head)
			if st == h1OK {
				total := n + ex.head.contentLength
				if total > cap(c.rbuf) {
					l.freeExchange(ex)
					l.handOff(c)
					return
				}
				if len(c.rbuf) >= total {
					ex.headLen, ex.reqLen = n, total
					if !l.start(ex) {
						l.freeExchange(ex)
						l.handOff(c)
					}
					continue
				}
			}
			l.freeExchange(ex)
			if st == h1Other || len(c.rbuf) == cap(c.rbuf) {
				l.handOff(c)
				return
			}
		}
		if c.closing || c.eof {
			l.closeClient(c)
			return
		}
		if !c.readable {
			if len(c.rbuf) == 0 {
				l.putBuf(c.rbuf)
				c.rbuf = nil
				if l.e.closing.Load() {
					l.closeClient(c)
					return
				}
				c.deadline = l.clientDeadline(l.p.cfg.ClientIdleTimeout)
			}
			return
		}
		if c.rbuf == nil {
			c.rbuf = l.getBuf()
			c.deadline = l.clientDeadline(l.p.cfg.ClientReadTimeout)
		}
		n, err := rawRead(c.fd, c.rbuf[len(c.rbuf):cap(c.rbuf)])
		switch {
		case n > 0:
			if len(c.rbuf)+n < cap(c.rbuf) && !c.hup {
				// A short read emptied the socket. Not after a hang-up: its edge has
				// been reported, and only reading on finds the end.
				c.readable = false
			}
			c.rbuf = c.rbuf[:len(c.rbuf)+n]
		case n == 0 && err == nil:
			c.eof, c.readable = true, false
		case err == unix.EAGAIN:
			c.readable = false
		case err == unix.EINTR:
		default:
			l.closeClient(c)
			return
		}
	}
}

// handOff gives the connection and the bytes read from it to fasthttp.
func (l *evloop) handOff(c *cconn) {
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	l.conns[c.fd] = nil
	l.clients.Add(-1)
	c.closed = true
	pending := append([]byte(nil), c.rbuf...)
	l.putBuf(c.rbuf)
	c.rbuf = nil
	f := os.NewFile(uintptr(c.fd), "client")
	nc, err := net.FileConn(f) // a duplicate, in the runtime's poller
	f.Close()
	if err != nil {
		return
	}
	go l.e.handoff.deliver(&prefixConn{Conn: nc, pending: pending})
}

// prefixConn reads bytes already taken from the socket before the socket's own.
type prefixConn struct {
	net.Conn
	pending []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// flushClient writes what the client takes and, once all is written, goes on:
// with the relay that waited for the client, or with its next request.
func (l *evloop) flushClient(c *cconn) {
	l.writeClient(c)
	if c.closed || len(c.wbuf) > 0 {
		return
	}
	if ex := c.ex; ex != nil {
		if u := ex.u; u != nil && ex.state == exRelay {
			// Resume a relay that waited for the client: what is buffered, then the socket.
			l.relay(u)
			if u.ex == ex && !u.closed {
				l.readUpstream(u)
			}
		}
		return
	}
	if c.closing {
		l.closeClient(c)
		return
	}
	l.serveClient(c)
}

// send queues b for the client and writes what the socket takes.
func (l *evloop) send(c *cconn, b []byte) {
	if c.closed {
		return
	}
	if c.wbuf == nil {
		if len(b) > loopBufSize {
			c.wbuf = make([]byte, 0, len(b))
		} else {
			c.wbuf = l.getBuf()
		}
	}
	c.wbuf = append(c.wbuf, b...)
}

func (l *evloop) closeClient(c *cconn) {
	if c.closed {
		return
	}
	c.closed = true
	l.conns[c.fd] = nil
	unix.Close(c.fd) // also leaves the epoll set
	l.clients.Add(-1)
	l.putBuf(c.rbuf)
	l.putBuf(c.wbuf)
	c.rbuf, c.wbuf = nil, nil
	if ex := c.ex; ex != nil {
		l.abort(ex)
	}
}

// ---- exchanges ----

const (
	exConnecting = iota
	exSending
	exWaitHead
	exRelay
)

// exchange is one request being forwarded by a loop.
type exchange struct {
	c        *cconn
	u        *uconn
	sc       *scratch
	st       *serviceState
	e        *endpoint
	adm      admission
	a        attempts
	head     reqHead
	headLen  int
	reqLen   int // head and body, dropped from c.rbuf when done
	out      []byte
	state    uint8
	isHEAD   bool
	close    bool // the client asked to close, or the response ends with the connection
	stale    bool // a stale pooled connection was already replaced once
	admitted bool // holds an admission to release
	upClose  bool // the upstream closes the connection after this response
	respSize int  // the response's Content-Length for the access log, -1 if none
	deadline int64
	resp     respHead
	bodyLeft int64
	untilEOF bool
	chunks   chunkScanner
}

func (l *evloop) newExchange(c *cconn) *exchange {
	var ex *exchange
	if n := len(l.exFree); n > 0 {
		ex = l.exFree[n-1]
		l.exFree = l.exFree[:n-1]
	} else {
		ex = &exchange{}
	}
	ex.c = c
	return ex
}

func (l *evloop) freeExchange(ex *exchange) {
	out := ex.out[:0]
	*ex = exchange{out: out}
	if len(l.exFree) < 4096 {
		l.exFree = append(l.exFree, ex)
	}
}

// testStartHook, when set by a test, sees every request the loop starts.
var testStartHook atomic.Pointer[func(path []byte)]

// start begins forwarding a parsed request; false leaves it to fasthttp.
func (l *evloop) start(ex *exchange) bool {
	p, h := l.p, &ex.head
	if hook := testStartHook.Load(); hook != nil {
		(*hook)(h.path)
	}
	r := p.table.Load().match(h.host, h.path)
	if r == nil {
		return false
	}
	st := r.svc.state.Load()
	if st == nil || !st.loopOK {
		return false
	}
	c := ex.c
	sc := scratchPool.Get().(*scratch)
	sc.info = reqInfo{start: l.now, route: r}
	info := &sc.info
	ex.sc, ex.st = sc, st
	p.inflight.Add(1)
	if p.access != nil {
		info.uri = append(sc.uri[:0], h.uri...)
	}
	info.reqID = field(h.fields, "x-request-id")
	if !validRequestID(info.reqID) {
		info.reqID = newRequestID(sc.id[:0])
	}
	tp := traceparent(field(h.fields, "traceparent"), sc.tp[:0])
	info.traceID = tp[3:35]
	ex.isHEAD = string(h.method) == "HEAD"
	ex.close = h.close || l.e.closing.Load()

	u := upstreamRequest{reqID: info.reqID, tp: tp, ip: c.ipText, proto: "http"}
	if r.spec.StripPrefix && r.spec.Prefix != "/" && prefixMatch(h.path, r.spec.Prefix) {
		u.stripPrefix = len(r.spec.Prefix)
	}
	ex.out = appendUpstreamRequest(ex.out[:0], h, &u)
	ex.out = append(ex.out, c.rbuf[ex.headLen:ex.reqLen]...)

	c.ex = ex
	path := h.path[u.stripPrefix:]
	if len(path) == 0 {
		path = slash
	}
	if st.limiter != nil {
		var hv []byte
		if st.limitKey.kind == 'h' {
			hv = fieldBytes(h.fields, st.limitKey.name)
		}
		if ok, retry := st.takeToken(c.ipText, hv, info); !ok {
			l.answer(ex, 429, "rate limit exceeded for service "+st.svc.name, "rate-limit", retry)
			return true
		}
	}
	adm, cause := p.admit(st, healthCheck(path, field(h.fields, "user-agent")))
	if cause != "" {
		msg, retry := st.refusal(cause)
		l.answer(ex, 503, msg, cause, retry)
		return true
	}
	ex.adm, ex.admitted = adm, true
	idem := idempotentMethod(h.method) || len(field(h.fields, "idempotency-key")) > 0
	var key uint64
	if len(st.hashHeader) > 0 {
		if v := fieldBytes(h.fields, st.hashHeader); len(v) > 0 {
			key = balance.HashKey(v)
		}
	}
	ex.a.init(st, sc, idem, key)
	l.tryNext(ex)
	return true
}

// tryNext sends the request to the next instance, or answers when none is left.
func (l *evloop) tryNext(ex *exchange) {
	for {
		e := ex.a.next()
		if e == nil {
			l.giveUp(ex)
			return
		}
		ex.e = e
		u, err := l.upstream(e)
		if err != nil {
			if ex.a.done(e, connectError, 0, l.now) {
				continue
			}
			l.giveUp(ex)
			return
		}
		l.attach(ex, u)
		return
	}
}

func (l *evloop) attach(ex *exchange, u *uconn) {
	u.ex, ex.u = ex, u
	u.pend = ex.out
	if u.connecting {
		ex.state = exConnecting
		ex.deadline = l.deadline(min(time.Duration(ex.st.policy.ConnectTimeout), ex.a.deadline.Sub(l.now)))
		return
	}
	l.sendUpstream(u)
}

// giveUp answers with the gateway's own error after the last failed try, or passes
// on the last response when there is one (a retried status with nowhere to retry).
func (l *evloop) giveUp(ex *exchange) {
	status, msg := ex.a.failure()
	if status == 0 {
		status = 502 // unreachable: a response in hand is passed on by relay
		msg = "upstream unreachable"
	}
	l.answer(ex, status, msg, "", 0)
}

// answer writes the gateway's own JSON response to an exchange and ends it.
func (l *evloop) answer(ex *exchange, status int, msg, cause string, retryAfter time.Duration) {
	info := &ex.sc.info
	info.status = status
	if cause != "" {
		ex.st.svc.rejected.WithLabelValues(cause).Inc()
		info.rejected = cause
	}
	b := l.getBuf()
	b = appendStatusLine(b, status, []byte(fasthttp.StatusMessage(status)))
	b = append(b, "Content-Type: application/json\r\nX-Request-Id: "...)
	b = append(b, info.reqID...)
	if cause != "" {
		b = append(append(b, "\r\nX-Wolke-Rejected-By: "...), cause...)
	}
	if info.rl.set {
		b = append(b, "\r\n"...)
		b = info.rl.appendFields(b)
		b = b[:len(b)-2]
	}
	if retryAfter > 0 {
		secs := max(int64((retryAfter+time.Second-1)/time.Second), 1)
		b = append(b, "\r\nRetry-After: "...)
		b = strconv.AppendInt(b, secs, 10)
	}
	body := appendJSONError(nil, msg)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	if ex.close {
		b = append(b, "\r\nConnection: close"...)
	}
	b = append(b, "\r\n\r\n"...)
	if !ex.isHEAD {
		b = append(b, body...)
	}
	ex.respSize = len(body)
	l.send(ex.c, b)
	l.putBuf(b)
	l.finish(ex)
}

// ---- upstream connections ----

// uconn is a connection to an instance.
type uconn struct {
	fd         int
	ep         *endpoint
	rbuf       []byte
	pend       []byte // request bytes not yet written
	ex         *exchange
	connecting bool
	reused     bool
	gotBytes   bool
	hup        bool  // the instance hung up: read on to the end
	drain      int64 // bytes of a retried response still to read before reuse
	idleSince  int64
	closed     bool
}

// upstream returns a pooled connection to e or starts a new one.
func (l *evloop) upstream(e *endpoint) (*uconn, error) {
	pool := l.idle[e]
	for n := len(pool); n > 0; n = len(pool) {
		u := pool[n-1]
		pool = pool[:n-1]
		l.idle[e] = pool
		if !u.closed {
			u.reused, u.gotBytes = true, false
			return u, nil
		}
	}
	if e.loopConns.Load() >= int64(l.p.cfg.MaxConnsPerInstance) {
		return nil, errNoFreeConns
	}
	var sa unix.Sockaddr
	domain := unix.AF_INET
	if a := e.ap.Addr(); a.Is4() || a.Is4In6() {
		sa = &unix.SockaddrInet4{Port: int(e.ap.Port()), Addr: a.Unmap().As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(e.ap.Port()), Addr: a.As16()}
		domain = unix.AF_INET6
	}
	fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	u := &uconn{fd: fd, ep: e, drain: -1}
	if err := l.register(fd); err != nil {
		unix.Close(fd)
		return nil, err
	}
	err = unix.Connect(fd, sa)
	if err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		return nil, err
	}
	u.connecting = err != nil
	e.loopConns.Add(1)
	l.setConn(fd, u)
	return u, nil
}

var errNoFreeConns = errors.New("no free connections to the instance")

func (l *evloop) closeUpstream(u *uconn) {
	if u.closed {
		return
	}
	u.closed = true
	l.conns[u.fd] = nil
	unix.Close(u.fd)
	u.ep.loopConns.Add(-1)
	l.putBuf(u.rbuf)
	u.rbuf = nil
}

// release returns a connection whose response was read whole to the pool.
func (l *evloop) release(u *uconn) {
	u.ex, u.pend = nil, nil
	if len(u.rbuf) > 0 || u.ep.gone.Load() || l.e.closing.Load() {
		l.closeUpstream(u) // bytes nobody asked for: the connection cannot be trusted
		return
	}
	l.putBuf(u.rbuf)
	u.rbuf = nil
	u.drain = -1
	u.idleSince = l.nowNano
	l.deadline(idleUpstream)
	l.idle[u.ep] = append(l.idle[u.ep], u)
}

func (l *evloop) upstreamEvent(u *uconn, ev uint32) {
	ex := u.ex
	if ex == nil && u.drain < 0 {
		// An idle connection has nothing to say: the instance closed it.
		if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			l.closeUpstream(u)
		}
		return
	}
	if u.connecting {
		if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		if errno, err := unix.GetsockoptInt(u.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || errno != 0 {
			l.tryFailed(ex, connectError)
			return
		}
		u.connecting = false
		l.sendUpstream(u)
		return
	}
	if ev&unix.EPOLLOUT != 0 && len(u.pend) > 0 {
		l.sendUpstream(u)
		return
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		u.hup = true
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		l.readUpstream(u)
	}
}

func (l *evloop) sendUpstream(u *uconn) {
	ex := u.ex
	ex.state = exSending
	for len(u.pend) > 0 {
		n, err := rawWrite(u.fd, u.pend)
		if n > 0 {
			u.pend = u.pend[n:]
			continue
		}
		if err == unix.EAGAIN {
			if ex.deadline == 0 {
				ex.deadline = l.headerDeadline(ex)
			}
			return
		}
		if err == unix.EINTR {
			continue
		}
		// Nothing was answered; a pooled connection the instance had closed is
		// replaced once, as if it had never been picked.
		if u.reused && !ex.stale {
			l.replaceStale(ex)
			return
		}
		l.tryFailed(ex, resetError)
		return
	}
	ex.state = exWaitHead
	ex.deadline = l.headerDeadline(ex)
}

func (l *evloop) headerDeadline(ex *exchange) int64 {
	return l.deadline(min(time.Duration(ex.st.policy.HeaderTimeout), ex.a.deadline.Sub(l.now)))
}

func (l *evloop) replaceStale(ex *exchange) {
	ex.stale = true
	l.closeUpstream(ex.u)
	ex.u = nil
	u, err := l.upstream(ex.e)
	if err != nil {
		l.tryFailed(ex, connectError)
		return
	}
	l.attach(ex, u)
}

// tryFailed ends a try that got no response and retries or gives up.
func (l *evloop) tryFailed(ex *exchange, o outcome) {
	if u := ex.u; u != nil {
		l.closeUpstream(u)
		ex.u = nil
	}
	ex.deadline = 0
	if ex.a.done(ex.e, o, 0, l.now) {
		l.tryNext(ex)
		return
	}
	l.giveUp(ex)
}

func (l *evloop) readUpstream(u *uconn) {
	for !u.closed {
		if u.ex == nil && u.drain < 0 {
			return
		}
		if u.ex != nil && u.ex.state == exRelay && len(u.ex.c.wbuf) >= maxClientPending {
			return // the client is slow; its EPOLLOUT resumes the relay
		}
		if u.rbuf == nil {
			u.rbuf = l.getBuf()
		}
		if len(u.rbuf) == cap(u.rbuf) {
			// Only a head can fill the buffer: the body is passed on as it comes.
			l.badResponse(u)
			return
		}
		n, err := rawRead(u.fd, u.rbuf[len(u.rbuf):cap(u.rbuf)])
		switch {
		case n > 0:
			short := len(u.rbuf)+n < cap(u.rbuf)
			u.gotBytes = true
			u.rbuf = u.rbuf[:len(u.rbuf)+n]
			l.consume(u)
			if short && !u.hup {
				// A short read emptied the socket; the next bytes bring an edge. A
				// hang-up's edge came already: read on to the end.
				return
			}
		case n == 0 && err == nil:
			l.upstreamEOF(u)
			return
		case err == unix.EAGAIN:
			return
		case err == unix.EINTR:
		default:
			l.upstreamEOF(u)
			return
		}
	}
}

// upstreamEOF handles the instance closing the connection (or resetting it).
func (l *evloop) upstreamEOF(u *uconn) {
	ex := u.ex
	if ex == nil {
		l.closeUpstream(u)
		return
	}
	switch ex.state {
	case exRelay:
		if ex.untilEOF {
			ex.close = true
			l.closeUpstream(u)
			ex.u = nil
			l.finish(ex)
			return
		}
		l.abortClient(ex) // the body was cut short: the client must not take it as whole
	default:
		if u.reused && !u.gotBytes && ex.a.idem && !ex.stale {
			l.replaceStale(ex)
			return
		}
		l.tryFailed(ex, resetError)
	}
}

// consume processes the bytes read from an upstream connection.
func (l *evloop) consume(u *uconn) {
	if u.ex == nil { // draining a retried response
		take := min(int64(len(u.rbuf)), u.drain)
		u.drain -= take
		u.rbuf = u.rbuf[:copy(u.rbuf, u.rbuf[take:])]
		if u.drain == 0 {
			l.release(u)
		}
		return
	}
	ex := u.ex
	if ex.state != exRelay {
		for {
			n, st := parseResponseHead(u.rbuf, &ex.resp)
			if st == h1More {
				return
			}
			if st == h1Other || ex.resp.status == 101 {
				l.badResponse(u)
				return
			}
			if ex.resp.status < 200 { // an interim response: not passed on
				u.rbuf = u.rbuf[:copy(u.rbuf, u.rbuf[n:])]
				continue
			}
			if l.onResponseHead(ex, n) {
				return
			}
			break
		}
	}
	l.relay(u)
}

func (l *evloop) badResponse(u *uconn) {
	ex := u.ex
	if ex == nil || ex.state == exRelay {
		l.closeUpstream(u)
		if ex != nil {
			l.abortClient(ex)
		}
		return
	}
	l.tryFailed(ex, resetError)
}

// onResponseHead judges a response; it reports true when the exchange moved on
// (a retry) and the connection's bytes are no longer this exchange's.
func (l *evloop) onResponseHead(ex *exchange, n int) bool {
	u, rh := ex.u, &ex.resp
	ex.deadline = 0
	if ex.a.done(ex.e, okResponse, rh.status, l.now) {
		// Retry: read a small error body to keep the connection, else close it.
		body := u.rbuf[n:]
		ex.u = nil
		switch {
		case !rh.hasBody(ex.isHEAD) && !rh.close:
			u.rbuf = u.rbuf[:copy(u.rbuf, body)]
			l.release(u)
		case rh.contentLength >= 0 && rh.contentLength <= maxDrain && !rh.close:
			u.ex = nil
			u.drain = rh.contentLength
			u.idleSince = l.nowNano
			l.deadline(drainTimeout)
			u.rbuf = u.rbuf[:copy(u.rbuf, body)]
			l.consume(u)
		default:
			l.closeUpstream(u)
		}
		l.tryNext(ex)
		return true
	}
	ex.sc.info.status = rh.status
	switch {
	case !rh.hasBody(ex.isHEAD):
		ex.bodyLeft = 0
	case rh.chunked:
		ex.bodyLeft = -1
		ex.chunks = chunkScanner{}
	case rh.contentLength >= 0:
		ex.bodyLeft = rh.contentLength
	default:
		ex.untilEOF, ex.close, ex.bodyLeft = true, true, -1
	}
	ex.respSize = int(rh.contentLength)
	ex.upClose = rh.close
	var hb [1024]byte
	var extra []byte
	if rl := &ex.sc.info.rl; rl.set {
		extra = rl.appendFields(ex.sc.fw[:0])
	}
	b := appendClientResponse(hb[:0], rh, ex.sc.info.reqID, ex.close, extra)
	l.send(ex.c, b)
	u.rbuf = u.rbuf[:copy(u.rbuf, u.rbuf[n:])]
	ex.state = exRelay
	ex.deadline = l.deadline(time.Duration(ex.st.policy.HeaderTimeout))
	return false
}

// relay passes body bytes from the upstream connection to the client.
func (l *evloop) relay(u *uconn) {
	ex := u.ex
	if ex == nil || ex.state != exRelay {
		return
	}
	c := ex.c
	var take int
	done := false
	switch {
	case ex.untilEOF:
		take = len(u.rbuf)
	case ex.bodyLeft >= 0:
		take = int(min(int64(len(u.rbuf)), ex.bodyLeft))
		ex.bodyLeft -= int64(take)
		done = ex.bodyLeft == 0
	default:
		n, end, err := ex.chunks.scan(u.rbuf)
		if err != nil {
			l.closeUpstream(u)
			ex.u = nil
			l.abortClient(ex)
			return
		}
		take, done = n, end
	}
	if take > 0 {
		l.send(c, u.rbuf[:take])
		u.rbuf = u.rbuf[:copy(u.rbuf, u.rbuf[take:])]
		if !done {
			ex.deadline = l.deadline(time.Duration(ex.st.policy.HeaderTimeout))
		}
	}
	if done {
		ex.u = nil
		if ex.upClose {
			l.closeUpstream(u)
		} else {
			l.release(u)
		}
		l.finish(ex)
		return
	}
	if len(c.wbuf) > 0 {
		l.writeClient(c)
	}
}

// writeClient writes what the client's socket takes, closing it on an error.
func (l *evloop) writeClient(c *cconn) {
	for len(c.wbuf) > 0 {
		n, err := rawWrite(c.fd, c.wbuf)
		if n > 0 {
			if n == len(c.wbuf) {
				l.putBuf(c.wbuf)
				c.wbuf = nil
				return
			}
			c.wbuf = c.wbuf[:copy(c.wbuf, c.wbuf[n:])]
			continue
		}
		if err == unix.EINTR {
			continue
		}
		if err != unix.EAGAIN {
			l.closeClient(c)
		}
		return
	}
}

// finish ends an exchange whose response is queued whole for the client.
func (l *evloop) finish(ex *exchange) {
	p, c, info := l.p, ex.c, &ex.sc.info
	if ex.admitted {
		p.release(ex.st, ex.adm, info)
	}
	d := l.now.Sub(info.start)
	p.metrics.observe(info, d)
	if p.access != nil {
		p.access.write(c.ip, ex.head.method, ex.head.host, ex.respSize, info, d)
	}
	p.inflight.Add(-1)
	scratchPool.Put(ex.sc)
	if !c.closed {
		c.rbuf = c.rbuf[:copy(c.rbuf, c.rbuf[ex.reqLen:])]
		if ex.close {
			c.closing = true
		}
		c.ex = nil
		c.deadline = l.clientDeadline(l.p.cfg.ClientReadTimeout)
	}
	l.freeExchange(ex)
	if !c.closed {
		if len(c.wbuf) > 0 {
			l.flushClient(c)
		} else if c.closing {
			l.closeClient(c)
		} else {
			l.serveClient(c)
		}
	}
}

// abortClient ends an exchange whose response cannot be completed: the client's
// connection is closed, so that a cut body is not taken for a whole one.
func (l *evloop) abortClient(ex *exchange) {
	c := ex.c
	c.ex = nil
	l.closeClient(c)
	l.abort(ex)
}

// abort ends an exchange without a response (its client is gone).
func (l *evloop) abort(ex *exchange) {
	if ex.sc == nil {
		return // already ended
	}
	if u := ex.u; u != nil {
		l.closeUpstream(u)
		ex.u = nil
	}
	if ex.sc.info.status == 0 {
		ex.sc.info.status = 499 // as nginx logs a client that left
	}
	l.finishAborted(ex)
}

func (l *evloop) finishAborted(ex *exchange) {
	p, info := l.p, &ex.sc.info
	if ex.admitted {
		p.release(ex.st, ex.adm, info)
	}
	d := l.now.Sub(info.start)
	p.metrics.observe(info, d)
	if p.access != nil {
		p.access.write(ex.c.ip, ex.head.method, ex.head.host, ex.respSize, info, d)
	}
	p.inflight.Add(-1)
	scratchPool.Put(ex.sc)
	l.freeExchange(ex)
}

// ---- timers and shutdown ----

// sweep fires the deadlines that passed and notes the earliest that did not.
func (l *evloop) sweep() {
	now := l.nowNano
	next := int64(0)
	note := func(t int64) {
		if t > now && (next == 0 || t < next) {
			next = t
		}
	}
	for _, x := range l.conns {
		switch c := x.(type) {
		case *cconn:
			if c.ex != nil {
				ex := c.ex
				if ex.deadline != 0 && ex.deadline <= now {
					l.expire(ex)
				} else if ex.deadline != 0 {
					note(ex.deadline)
				}
				continue
			}
			if c.deadline != 0 && c.deadline <= now {
				l.closeClient(c)
				continue
			}
			note(c.deadline)
		case *uconn:
			if c.ex == nil {
				limit := int64(idleUpstream)
				if c.drain >= 0 {
					limit = int64(drainTimeout)
				}
				if c.ep.gone.Load() || c.idleSince+limit <= now {
					l.closeUpstream(c)
					continue
				}
				note(c.idleSince + limit)
			}
		}
	}
	l.next = next
}

// expire handles an exchange whose current deadline passed.
func (l *evloop) expire(ex *exchange) {
	ex.deadline = 0
	switch ex.state {
	case exConnecting:
		l.tryFailed(ex, connectError)
	case exSending, exWaitHead:
		l.tryFailed(ex, timeoutError)
	case exRelay:
		if u := ex.u; u != nil {
			l.closeUpstream(u)
			ex.u = nil
		}
		l.abortClient(ex)
	}
}

// drain runs while the gateway shuts down: it stops accepting, closes idle client
// connections, and reports true when no client connection is left.
func (l *evloop) drain() bool {
	if l.listening {
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, l.e.lfd, nil)
		l.listening = false
	}
	abort := l.e.abort.Load()
	for _, x := range l.conns {
		if c, ok := x.(*cconn); ok && (abort || c.ex == nil && len(c.wbuf) == 0 && len(c.rbuf) == 0) {
			l.closeClient(c)
		}
	}
	return l.clients.Load() == 0
}

func (l *evloop) exit() {
	l.inboxMu.Lock()
	for _, c := range l.inbox {
		unix.Close(c.fd)
	}
	l.inbox = nil
	l.inboxMu.Unlock()
	for _, x := range l.conns {
		switch c := x.(type) {
		case *cconn:
			l.closeClient(c)
		case *uconn:
			l.closeUpstream(c)
		}
	}
	unix.Close(l.epfd)
	unix.Close(l.wakefd)
}
