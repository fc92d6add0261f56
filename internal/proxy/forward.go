package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wolke-platform/wolke/internal/adaptive"
	"github.com/wolke-platform/wolke/internal/balance"
	"github.com/wolke-platform/wolke/internal/breaker"
)

// outcome classifies one try, deciding retries, ejection and the status a client
// sees when every try failed.
type outcome uint8

const (
	okResponse   outcome = iota // any response; its status is judged separately
	connectError                // the request never reached the instance: safe to retry for any method
	resetError                  // the connection broke after the request was (maybe) sent
	timeoutError                // no answer in time
)

func classify(err error) outcome {
	if err == nil {
		return okResponse
	}
	var op *net.OpError
	switch {
	case errors.Is(err, fasthttp.ErrDialTimeout), errors.Is(err, fasthttp.ErrNoFreeConns), errors.Is(err, syscall.ECONNREFUSED):
		return connectError
	case errors.As(err, &op) && op.Op == "dial":
		return connectError
	case errors.Is(err, fasthttp.ErrTimeout):
		return timeoutError
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return timeoutError
	}
	return resetError
}

// idempotent reports whether a request may be sent twice (RFC 9110 §9.2.2), or the
// client said so with an Idempotency-Key.
func idempotent(req *fasthttp.Request) bool {
	return idempotentMethod(req.Header.Method()) || len(req.Header.Peek("Idempotency-Key")) > 0
}

func idempotentMethod(m []byte) bool {
	switch string(m) {
	case fasthttp.MethodGet, fasthttp.MethodHead, fasthttp.MethodOptions, fasthttp.MethodTrace,
		fasthttp.MethodPut, fasthttp.MethodDelete:
		return true
	}
	return false
}

// retryableStatus: the gateway errors, and 500, which a service answers for most
// transient faults (a lost database connection, a panic in one instance); only ever
// for idempotent requests, and within the retry budget.
func retryableStatus(code int) bool {
	return code == fasthttp.StatusInternalServerError || code == fasthttp.StatusBadGateway || code == fasthttp.StatusServiceUnavailable ||
		code == fasthttp.StatusGatewayTimeout
}

// failurePenalty is the latency a failed try reports to the balancer; the balancer
// caps how far one sample moves an estimate, so this means "as slow as allowed".
const failurePenalty = time.Minute

// Header names in fasthttp's canonical form, so setting them skips normalization.
var (
	hdrRequestID   = []byte("X-Request-Id")
	hdrTraceparent = []byte("Traceparent")
	hdrXFF         = []byte("X-Forwarded-For")
	hdrXFProto     = []byte("X-Forwarded-Proto")
	hdrXFHost      = []byte("X-Forwarded-Host")
	hdrForwarded   = []byte("Forwarded")
	hdrRLLimit     = []byte("Ratelimit-Limit")
	hdrRLRemaining = []byte("Ratelimit-Remaining")
	hdrRLReset     = []byte("Ratelimit-Reset")
	protoHTTP      = []byte("http")
	protoHTTPS     = []byte("https")
	http11         = []byte("HTTP/1.1")
)

// hopHeaders are meaningful for one connection only and never forwarded (RFC 9110
// §7.6.1). Connection itself is handled by fasthttp.
var hopHeaders = []string{"Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Upgrade"}

// isHop reports which hop-by-hop header a canonical name is, as a bit.
func isHop(k []byte) uint8 {
	for i, h := range hopHeaders {
		if len(k) == len(h) && string(k) == h {
			return 1 << i
		}
	}
	return 0
}

// fieldSet is what fasthttp's request and response headers share.
type fieldSet interface {
	All() iter.Seq2[[]byte, []byte]
	Peek(key string) []byte
	Del(key string)
	DelBytes(key []byte)
	ConnectionClose() bool
	SetConnectionClose()
}

// delHopHeaders removes hop-by-hop headers in one pass over the headers; most
// messages have none, and a Del per name would scan them seven times. Fields that
// a Connection header names go too, and the header itself: fasthttp keeps only
// "close" of it, as a flag, and writes its own.
func delHopHeaders(h fieldSet) {
	var found uint8
	for k := range h.All() {
		if len(k) >= 2 && (k[0] == 'K' || k[0] == 'P' || k[0] == 'T' || k[0] == 'U') {
			found |= isHop(k)
		}
	}
	for i, name := range hopHeaders {
		if found&(1<<i) != 0 {
			h.Del(name)
		}
	}
	if v := h.Peek(fasthttp.HeaderConnection); len(v) > 0 && !bytes.EqualFold(v, strClose) && !bytes.EqualFold(v, strKeepAlive) {
		// Rare, so a copy: the deletions below rearrange what v points into.
		for _, name := range connectionNames(bytes.Clone(v)) {
			h.DelBytes(name)
		}
		closing := h.ConnectionClose()
		h.Del(fasthttp.HeaderConnection)
		if closing {
			h.SetConnectionClose()
		}
	}
}

var strClose, strKeepAlive = []byte("close"), []byte("keep-alive")

// connectionNames returns the fields a Connection value names besides the
// connection options close and keep-alive. Rare: it may allocate.
func connectionNames(v []byte) [][]byte {
	var names [][]byte
	for _, tok := range bytes.Split(v, []byte(",")) {
		tok = trimOWS(tok)
		if len(tok) > 0 && !bytes.EqualFold(tok, strClose) && !bytes.EqualFold(tok, strKeepAlive) {
			names = append(names, tok)
		}
	}
	return names
}

// reqInfo is what the access log and metrics need after a request is done.
type reqInfo struct {
	start    time.Time
	route    *route
	ep       *endpoint
	attempts int
	status   int
	err      outcome
	rejected string
	reqID    []byte
	uri      []byte // as the client sent it, for the access log
	identity string // the authenticated client, if the route has auth
	claims   map[string]any
	traceID  []byte
	rl       rateInfo
	// cacheStatus is the Cache-Status the shared cache answered with ("" if not cached).
	cacheStatus string
}

// rateInfo holds the RateLimit-* header values of a rate-limited request.
type rateInfo struct {
	set              bool
	limit, remaining int
	reset            time.Duration
}

// appendFields appends the RateLimit-* fields as header lines.
func (r *rateInfo) appendFields(b []byte) []byte {
	b = append(b, "Ratelimit-Limit: "...)
	b = strconv.AppendInt(b, int64(r.limit), 10)
	b = append(b, "\r\nRatelimit-Remaining: "...)
	b = strconv.AppendInt(b, int64(r.remaining), 10)
	b = append(b, "\r\nRatelimit-Reset: "...)
	b = strconv.AppendInt(b, int64((r.reset+time.Second-1)/time.Second), 10)
	return append(b, "\r\n"...)
}

func (r *rateInfo) write(h *fasthttp.ResponseHeader, b []byte) {
	b = strconv.AppendInt(b[:0], int64(r.limit), 10)
	h.SetCanonical(hdrRLLimit, b)
	b = strconv.AppendInt(b[:0], int64(r.remaining), 10)
	h.SetCanonical(hdrRLRemaining, b)
	b = strconv.AppendInt(b[:0], int64((r.reset+time.Second-1)/time.Second), 10)
	h.SetCanonical(hdrRLReset, b)
}

// claim returns a JWT claim of the authenticated client as text ("" if none).
func (i *reqInfo) claim(name string) string {
	switch v := i.claims[name].(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

// scratch is the per-request working memory of the hot path, pooled so that a
// request allocates nothing of its own (buffers passed to interface methods would
// otherwise escape to the heap).
type scratch struct {
	info  reqInfo
	cands [32]*balance.Endpoint
	tried [10]*endpoint
	id    [32]byte
	tp    [55]byte
	uri   [256]byte
	fw    [256]byte
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// serve is the gateway's request handler on the fasthttp hot path.
func (p *Proxy) serve(ctx *fasthttp.RequestCtx) { p.serveCtx(ctx, ctx.IsTLS()) }

func (p *Proxy) serveCtx(ctx *fasthttp.RequestCtx, isTLS bool) {
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	sc.info = reqInfo{start: time.Now()}
	info := &sc.info
	p.inflight.Add(1)
	defer p.inflight.Add(-1)
	req := &ctx.Request

	if p.access != nil {
		info.uri = append(sc.uri[:0], req.Header.RequestURI()...)
	}
	info.reqID = req.Header.Peek("X-Request-Id")
	if !validRequestID(info.reqID) {
		info.reqID = newRequestID(sc.id[:0])
		req.Header.SetCanonical(hdrRequestID, info.reqID)
	}
	ctx.Response.Header.SetCanonical(hdrRequestID, info.reqID)

	r := p.table.Load().match(ctx.Host(), ctx.Path())
	if r == nil {
		info.status = fasthttp.StatusNotFound
		jsonError(ctx, info.status, "no route for this host and path")
		p.finish(ctx, info)
		return
	}
	info.route = r
	svc := r.svc
	st := svc.state.Load()

	tp := traceparent(req.Header.Peek("Traceparent"), sc.tp[:0])
	req.Header.SetCanonical(hdrTraceparent, tp)
	info.traceID = tp[3:35]

	if f := st.policy.Fault; f != nil && p.injectFault(ctx, svc, f, info) {
		return
	}
	if !p.guard(ctx, r, st, info) {
		return
	}
	if st.limiter != nil && !p.allowRate(ctx, svc, st, info, sc) {
		return
	}

	p.rewrite(ctx, r, isTLS, sc.fw[:0])

	if req.Header.ConnectionUpgrade() && len(req.Header.Peek("Upgrade")) > 0 {
		stripPrefix(req, r)
		p.serveUpgrade(ctx, st, info)
		return
	}
	delHopHeaders(&req.Header)

	if st.cache != nil && (req.Header.IsGet() || req.Header.IsHead()) {
		p.serveCached(ctx, st, info)
		return
	}
	p.upstream(st, req, &ctx.Response, sc)
	if info.rl.set {
		info.rl.write(&ctx.Response.Header, sc.fw[:0])
	}
	p.finish(ctx, info)
}

// upstream sends a request to the service through its breaker and concurrency
// limit, filling resp with the answer or the gateway's refusal. sc.info says what
// happened. It does not touch a RequestCtx: the cache also calls it, sometimes after
// the client's request has been answered.
func (p *Proxy) upstream(st *serviceState, req *fasthttp.Request, resp *fasthttp.Response, sc *scratch) {
	info := &sc.info
	stripPrefix(req, info.route)
	adm, cause := p.admit(st, healthCheck(req.URI().Path(), req.Header.UserAgent()))
	if cause != "" {
		msg, retry := st.refusal(cause)
		retryAfterResp(resp, retry)
		p.refuse(resp, st.svc, info, fasthttp.StatusServiceUnavailable, cause, msg)
		return
	}
	p.forward(st, req, resp, sc)
	p.release(st, adm, info)
}

// admission is what a request holds of its service while it is forwarded.
type admission struct {
	ticket  breaker.Ticket
	tok     adaptive.Token
	limited bool
}

// admit passes a request through the service's breaker and concurrency limit; a
// refusal is named by its cause ("breaker", "concurrency"). health marks requests
// that load shedding lets through.
func (p *Proxy) admit(st *serviceState, health bool) (admission, string) {
	var adm admission
	var ok bool
	if adm.ticket, ok = st.breaker.Allow(); !ok {
		return adm, "breaker"
	}
	// The adaptive limit sheds what the service cannot take now, at once, instead of
	// letting it queue into timeouts; health checks are never shed.
	adm.limited = st.conc != nil && !health
	if adm.limited {
		if adm.tok, ok = st.conc.Acquire(); !ok {
			st.breaker.Done(adm.ticket, true) // nothing was sent: no verdict on the service
			return adm, "concurrency"
		}
	}
	st.svc.inflight.Inc()
	return adm, ""
}

// release ends an admitted request, giving its outcome to the limit and breaker.
func (p *Proxy) release(st *serviceState, adm admission, info *reqInfo) {
	st.svc.inflight.Dec()
	if adm.limited {
		overload := info.err == timeoutError || info.status == fasthttp.StatusServiceUnavailable
		st.conc.Release(adm.tok, time.Since(info.start), overload)
	}
	st.breaker.Done(adm.ticket, info.err == okResponse && info.status < 500)
}

// refusal returns the message and Retry-After of a refusal by admit.
func (st *serviceState) refusal(cause string) (string, time.Duration) {
	if cause == "breaker" {
		return "circuit breaker open for service " + st.svc.name, st.breaker.RetryAfter()
	}
	return "over the adaptive concurrency limit of service " + st.svc.name, time.Second
}

// serveCached answers a GET or HEAD through the shared cache; misses, revalidations
// and background refreshes go upstream with scratch space of their own.
func (p *Proxy) serveCached(ctx *fasthttp.RequestCtx, st *serviceState, info *reqInfo) {
	res := &fetchResult{}
	info.cacheStatus = p.cache.Serve(ctx, func(req *fasthttp.Request, resp *fasthttp.Response) error {
		fsc := scratchPool.Get().(*scratch)
		fsc.info = reqInfo{start: time.Now(), route: info.route, reqID: req.Header.Peek("X-Request-Id")}
		p.upstream(st, req, resp, fsc)
		res.set(&fsc.info)
		scratchPool.Put(fsc)
		return nil
	})
	if ep, attempts, rejected, ok := res.get(); ok {
		info.ep, info.attempts, info.rejected = ep, attempts, rejected
	}
	info.status = ctx.Response.StatusCode()
	ctx.Response.Header.SetCanonical(hdrRequestID, info.reqID)
	if info.rl.set {
		var b [32]byte
		info.rl.write(&ctx.Response.Header, b[:0])
	}
	p.finish(ctx, info)
}

// fetchResult carries what a cache fetch did back to the request that caused it; a
// background refresh may write it after that request is gone, hence the lock.
type fetchResult struct {
	mu       sync.Mutex
	done     bool
	ep       *endpoint
	attempts int
	rejected string
}

func (r *fetchResult) set(i *reqInfo) {
	r.mu.Lock()
	r.done, r.ep, r.attempts, r.rejected = true, i.ep, i.attempts, i.rejected
	r.mu.Unlock()
}

func (r *fetchResult) get() (*endpoint, int, string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ep, r.attempts, r.rejected, r.done
}

// healthCheck reports requests that load shedding must let through: health checks,
// by path or by the checkers' User-Agent.
func healthCheck(path, ua []byte) bool {
	switch string(path) {
	case "/health", "/healthz", "/health/live", "/health/ready", "/ready", "/live":
		return true
	}
	return bytes.HasPrefix(ua, []byte("wolke Health Check")) || bytes.HasPrefix(ua, []byte("Consul Health Check"))
}

// allowRate takes a token from the route's bucket for this client, setting the
// RateLimit-* headers; over the limit it answers 429 itself.
func (p *Proxy) allowRate(ctx *fasthttp.RequestCtx, svc *service, st *serviceState, info *reqInfo, sc *scratch) bool {
	var ip, hv []byte
	switch st.limitKey.kind {
	case 'i':
		ip = appendIP(sc.fw[:0], ctx.RemoteIP())
	case 'h':
		hv = ctx.Request.Header.PeekBytes(st.limitKey.name)
	}
	ok, retry := st.takeToken(ip, hv, info)
	if !ok {
		info.rl.write(&ctx.Response.Header, sc.fw[:0])
		retryAfter(ctx, retry)
		p.reject(ctx, svc, info, fasthttp.StatusTooManyRequests, "rate-limit", "rate limit exceeded for service "+svc.name)
	}
	return ok
}

// takeToken takes a token from the bucket of the request's key (the client's IP
// and the keyed header's value are the caller's to find) and notes the RateLimit-*
// values in info; without one it says how long until the next.
func (st *serviceState) takeToken(ip, header []byte, info *reqInfo) (bool, time.Duration) {
	var ok bool
	var limit, remaining int
	var reset, retry time.Duration
	switch st.limitKey.kind {
	case 'i':
		ok, limit, remaining, reset, retry = st.limiter.AllowBytes(ip)
	case 'h':
		ok, limit, remaining, reset, retry = st.limiter.AllowBytes(header)
	case 'd':
		ok, limit, remaining, reset, retry = st.limiter.Allow(info.identity)
	case 'c':
		ok, limit, remaining, reset, retry = st.limiter.Allow(info.claim(string(st.limitKey.name)))
	default:
		ok, limit, remaining, reset, retry = st.limiter.Allow("")
	}
	info.rl = rateInfo{set: true, limit: limit, remaining: remaining, reset: reset}
	return ok, retry
}

// injectFault applies a route's fault rule; it reports whether it answered the
// request itself.
func (p *Proxy) injectFault(ctx *fasthttp.RequestCtx, svc *service, f *FaultPolicy, info *reqInfo) bool {
	if f.DelayPercent > 0 && rand.Float64()*100 < f.DelayPercent {
		time.Sleep(time.Duration(f.Delay))
	}
	if f.AbortPercent > 0 && rand.Float64()*100 < f.AbortPercent {
		status := f.AbortStatus
		if status == 0 {
			status = fasthttp.StatusServiceUnavailable
		}
		p.reject(ctx, svc, info, status, "fault", "fault injected by the gateway's policy for "+svc.name)
		return true
	}
	return false
}

// reject answers a request the gateway refuses itself, naming the cause in
// X-Wolke-Rejected-By and in the rejected-requests metric.
func (p *Proxy) reject(ctx *fasthttp.RequestCtx, svc *service, info *reqInfo, status int, cause, msg string) {
	p.refuse(&ctx.Response, svc, info, status, cause, msg)
	p.finish(ctx, info)
}

// rejected records a refusal whose answer is already written.
func (p *Proxy) rejected(ctx *fasthttp.RequestCtx, svc *service, info *reqInfo, status int, cause string) {
	p.countRefusal(&ctx.Response, svc, info, status, cause)
	p.finish(ctx, info)
}

// refuse writes a refusal into resp and counts it, without finishing the request.
func (p *Proxy) refuse(resp *fasthttp.Response, svc *service, info *reqInfo, status int, cause, msg string) {
	jsonErrorResp(resp, status, msg)
	p.countRefusal(resp, svc, info, status, cause)
}

func (p *Proxy) countRefusal(resp *fasthttp.Response, svc *service, info *reqInfo, status int, cause string) {
	svc.rejected.WithLabelValues(cause).Inc()
	info.status, info.rejected = status, cause
	resp.Header.Set("X-Wolke-Rejected-By", cause)
}

// attempts is one request's retry state across its tries. forward drives it in a
// loop; the event-loop engine drives it one event at a time.
type attempts struct {
	st       *serviceState
	sc       *scratch
	deadline time.Time
	idem     bool
	key      uint64
	tried    []*endpoint
	cands    []*balance.Endpoint
	t0       time.Time
}

func (a *attempts) init(st *serviceState, sc *scratch, idem bool, key uint64) {
	*a = attempts{st: st, sc: sc, idem: idem, key: key, t0: sc.info.start,
		deadline: sc.info.start.Add(time.Duration(st.policy.Timeout)), tried: sc.tried[:0]}
	st.budget.Request()
	a.cands = st.candidates(sc.cands[:0], nil)
}

// next picks the instance of the next try, nil when there is none.
func (a *attempts) next() *endpoint {
	if len(a.cands) == 0 {
		return nil
	}
	e := a.st.endpointOf(a.st.lb.Pick(a.cands, a.key))
	a.tried = append(a.tried, e)
	info := &a.sc.info
	info.ep, info.attempts = e, info.attempts+1
	e.bal.Start()
	return e
}

// done records the outcome of a try on e and reports whether to try again.
func (a *attempts) done(e *endpoint, err outcome, status int, now time.Time) bool {
	info := &a.sc.info
	e.reqs.Inc()
	e.latency.Observe(now.Sub(a.t0).Seconds())
	info.err, info.status = err, status
	failed := err != okResponse || status >= 500
	// A failure counts as a very slow answer for balancing (the estimate rises by
	// the most one sample may move it), so that an instance answering errors fast
	// does not attract more traffic than the healthy ones.
	rtt := now.Sub(a.t0)
	if failed {
		rtt = failurePenalty
	}
	e.bal.Finish(rtt, now)
	if failed {
		e.errs.Inc()
		a.st.outlier.Failure(&e.host)
	} else {
		a.st.outlier.Success(&e.host)
	}
	retry := err == connectError ||
		(a.idem && (err == resetError || err == timeoutError || (err == okResponse && retryableStatus(status))))
	if !retry || len(a.tried) >= a.st.policy.Attempts || len(a.tried) == len(a.sc.tried) || !now.Before(a.deadline) {
		return false
	}
	// The answer in hand is kept unless there is somewhere else to try: with no
	// other instance the client gets the service's own error, not an empty reply.
	next := a.st.candidates(a.sc.cands[:0], a.tried)
	if len(next) == 0 || !a.st.budget.TryRetry() {
		return false
	}
	a.cands = next
	a.st.svc.retries.Inc()
	a.t0 = now
	return true
}

// failure returns the status and message the gateway answers itself when no try
// produced a response to pass on (status 0: the last response stands).
func (a *attempts) failure() (int, string) {
	info := &a.sc.info
	switch {
	case info.attempts == 0:
		info.status, info.err = fasthttp.StatusServiceUnavailable, connectError
		return info.status, "no healthy instance of service " + a.st.svc.name
	case info.err == timeoutError:
		info.status = fasthttp.StatusGatewayTimeout
		return info.status, "upstream timed out"
	case info.err != okResponse:
		info.status = fasthttp.StatusBadGateway
		return info.status, "upstream unreachable"
	}
	return 0, ""
}

// forward tries instances until one answers acceptably or the retry rules say stop.
func (p *Proxy) forward(st *serviceState, req *fasthttp.Request, resp *fasthttp.Response, sc *scratch) {
	info := &sc.info
	var a attempts
	a.init(st, sc, idempotent(req), st.hashKey(req))
	for e := a.next(); e != nil; e = a.next() {
		err := e.client.DoDeadline(req, resp, a.deadline)
		if !a.done(e, classify(err), resp.StatusCode(), time.Now()) {
			break
		}
		if info.err == okResponse {
			// A small error body is read so that the connection can be reused; closing
			// an unread stream would cost a new connection per retried 5xx.
			if cl := resp.Header.ContentLength(); cl >= 0 && cl <= 64<<10 {
				if bs := resp.BodyStream(); bs != nil {
					io.Copy(io.Discard, bs)
				}
			}
			resp.CloseBodyStream()
		}
		resp.Reset()
	}
	if status, msg := a.failure(); status != 0 {
		jsonErrorResp(resp, status, msg)
	} else {
		delHopHeaders(&resp.Header)
		// The gateway speaks HTTP/1.1 to its client whatever the instance spoke: an
		// HTTP/1.0 instance's close-delimited body goes out chunked, which 1.0 lacks.
		resp.Header.SetProtocol(http11)
	}
	// The upstream's answer replaced the response: the gateway's headers go on now.
	resp.Header.SetCanonical(hdrRequestID, info.reqID)
}

// rewrite adds the forwarding headers and strips the route's prefix. buf is
// scratch space for the header values.
func (p *Proxy) rewrite(ctx *fasthttp.RequestCtx, r *route, isTLS bool, buf []byte) {
	req := &ctx.Request
	ip := appendIP(buf[:0], ctx.RemoteIP())
	buf = ip[len(ip):] // the rest of the scratch space
	if prior := req.Header.Peek("X-Forwarded-For"); len(prior) > 0 {
		v := append(append(append(buf[:0], prior...), ", "...), ip...)
		req.Header.SetCanonical(hdrXFF, v)
		buf = v[len(v):]
	} else {
		req.Header.SetCanonical(hdrXFF, ip)
	}
	proto := protoHTTP
	if isTLS {
		proto = protoHTTPS
	}
	req.Header.SetCanonical(hdrXFProto, proto)
	host := ctx.Host()
	req.Header.SetCanonical(hdrXFHost, host)
	// Forwarded (RFC 7239) says the same in one header; IPv6 must be quoted.
	fw := buf[:0]
	if prior := req.Header.Peek("Forwarded"); len(prior) > 0 {
		fw = append(append(fw, prior...), ", "...)
	}
	fw = append(fw, "for="...)
	if bytes.IndexByte(ip, ':') >= 0 {
		fw = append(append(append(fw, "\"["...), ip...), "]\""...)
	} else {
		fw = append(fw, ip...)
	}
	fw = append(fw, ";host="...)
	fw = appendQuoted(fw, host)
	fw = append(append(fw, ";proto="...), proto...)
	req.Header.SetCanonical(hdrForwarded, fw)

	// Instances speak plain HTTP, whatever the client used.
	req.URI().SetSchemeBytes(protoHTTP)
}

// stripPrefix removes the route's prefix from the path, just before the request
// goes upstream: the cache keys objects by the path the client asked for, so
// /a/x and /b/x of two services stay apart.
func stripPrefix(req *fasthttp.Request, r *route) {
	if r == nil || !r.spec.StripPrefix || r.spec.Prefix == "/" {
		return
	}
	uri := req.URI()
	path := uri.Path()
	if !prefixMatch(path, r.spec.Prefix) {
		return // already stripped (a retry's copy), or not this route's
	}
	rest := path[len(r.spec.Prefix):]
	if len(rest) == 0 {
		uri.SetPath("/")
	} else {
		uri.SetPathBytes(rest)
	}
}

// appendQuoted appends s as an RFC 9110 quoted-string.
func appendQuoted(dst, s []byte) []byte {
	dst = append(dst, '"')
	for _, c := range s {
		if c == '"' || c == '\\' {
			dst = append(dst, '\\')
		}
		dst = append(dst, c)
	}
	return append(dst, '"')
}

func (st *serviceState) hashKey(req *fasthttp.Request) uint64 {
	switch {
	case len(st.hashHeader) > 0:
		if v := req.Header.PeekBytes(st.hashHeader); len(v) > 0 {
			return balance.HashKey(v)
		}
	case len(st.hashCookie) > 0:
		if v := req.Header.CookieBytes(st.hashCookie); len(v) > 0 {
			return balance.HashKey(v)
		}
	}
	return 0
}

func jsonError(ctx *fasthttp.RequestCtx, status int, msg string) {
	jsonErrorResp(&ctx.Response, status, msg)
}

func jsonErrorResp(resp *fasthttp.Response, status int, msg string) {
	resp.SetStatusCode(status)
	resp.Header.SetContentType("application/json")
	resp.SetBodyRaw(appendJSONError(nil, msg))
}

func appendJSONError(b []byte, msg string) []byte {
	b = append(append(b, `{"error":`...), strconv.Quote(msg)...)
	return append(b, "}\n"...)
}

func retryAfter(ctx *fasthttp.RequestCtx, d time.Duration) { retryAfterResp(&ctx.Response, d) }

func retryAfterResp(resp *fasthttp.Response, d time.Duration) {
	secs := int((d + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	resp.Header.Set("Retry-After", strconv.Itoa(secs))
}

// finish records metrics and the access log line of a finished request.
func (p *Proxy) finish(ctx *fasthttp.RequestCtx, info *reqInfo) {
	d := time.Since(info.start)
	p.metrics.observe(info, d)
	if p.access != nil {
		p.access.log(ctx, info, d)
	}
}
