package proxy

import (
	"bytes"
	"errors"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wolke-platform/wolke/internal/balance"
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
	switch string(req.Header.Method()) {
	case fasthttp.MethodGet, fasthttp.MethodHead, fasthttp.MethodOptions, fasthttp.MethodTrace,
		fasthttp.MethodPut, fasthttp.MethodDelete:
		return true
	}
	return len(req.Header.Peek("Idempotency-Key")) > 0
}

// retryableStatus: the gateway errors, and 500, which a service answers for most
// transient faults (a lost database connection, a panic in one instance); only ever
// for idempotent requests, and within the retry budget.
func retryableStatus(code int) bool {
	return code == fasthttp.StatusInternalServerError || code == fasthttp.StatusBadGateway || code == fasthttp.StatusServiceUnavailable ||
		code == fasthttp.StatusGatewayTimeout
}

var schemeHTTP = []byte("http")

// hopHeaders are meaningful for one connection only and never forwarded (RFC 9110
// §7.6.1). Connection itself is handled by fasthttp.
var hopHeaders = []string{"Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Upgrade"}

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
	traceID  []byte
}

// serve is the gateway's request handler on the fasthttp hot path.
func (p *Proxy) serve(ctx *fasthttp.RequestCtx) { p.serveCtx(ctx, ctx.IsTLS()) }

func (p *Proxy) serveCtx(ctx *fasthttp.RequestCtx, isTLS bool) {
	info := reqInfo{start: time.Now()}
	p.inflight.Add(1)
	defer p.inflight.Add(-1)
	req := &ctx.Request

	var idBuf [32]byte
	var uriBuf [256]byte
	if p.access != nil {
		info.uri = append(uriBuf[:0], req.Header.RequestURI()...)
	}
	info.reqID = req.Header.Peek("X-Request-ID")
	if !validRequestID(info.reqID) {
		info.reqID = newRequestID(idBuf[:0])
		req.Header.SetBytesV("X-Request-ID", info.reqID)
	}
	ctx.Response.Header.SetBytesV("X-Request-ID", info.reqID)

	r := p.table.Load().match(ctx.Host(), ctx.Path())
	if r == nil {
		info.status = fasthttp.StatusNotFound
		jsonError(ctx, info.status, "no route for this host and path")
		p.finish(ctx, &info)
		return
	}
	info.route = r
	svc := r.svc
	st := svc.state.Load()

	var tpBuf [55]byte
	tp := traceparent(req.Header.Peek("traceparent"), tpBuf[:0])
	req.Header.SetBytesV("traceparent", tp)
	info.traceID = tp[3:35]

	p.rewrite(ctx, r, isTLS)

	if req.Header.ConnectionUpgrade() && len(req.Header.Peek("Upgrade")) > 0 {
		p.serveUpgrade(ctx, st, &info)
		return
	}
	for _, h := range hopHeaders {
		req.Header.Del(h)
	}

	ticket, ok := st.breaker.Allow()
	if !ok {
		svc.rejected.WithLabelValues("breaker").Inc()
		info.status, info.rejected = fasthttp.StatusServiceUnavailable, "breaker"
		retryAfter(ctx, st.breaker.RetryAfter())
		ctx.Response.Header.Set("X-Wolke-Rejected-By", "breaker")
		jsonError(ctx, info.status, "circuit breaker open for service "+svc.name)
		p.finish(ctx, &info)
		return
	}

	svc.inflight.Inc()
	p.forward(ctx, st, &info)
	svc.inflight.Dec()
	st.breaker.Done(ticket, info.err == okResponse && info.status < 500)
	p.finish(ctx, &info)
}

// forward tries instances until one answers acceptably or the retry rules say stop.
func (p *Proxy) forward(ctx *fasthttp.RequestCtx, st *serviceState, info *reqInfo) {
	req, resp := &ctx.Request, &ctx.Response
	pol := &st.policy
	deadline := info.start.Add(time.Duration(pol.Timeout))
	idem := idempotent(req)
	key := st.hashKey(req)
	st.budget.Request()

	var triedBuf [10]*endpoint
	var candBuf [32]*balance.Endpoint
	tried := triedBuf[:0]
	for {
		cands := st.candidates(candBuf[:0], tried)
		if len(cands) == 0 {
			break
		}
		e := st.endpointOf(st.lb.Pick(cands, key))
		tried = append(tried, e)
		info.ep, info.attempts = e, info.attempts+1

		e.bal.Start()
		t0 := time.Now()
		err := e.client.DoDeadline(req, resp, deadline)
		now := time.Now()
		e.bal.Finish(now.Sub(t0), now)
		e.reqs.Inc()
		e.latency.Observe(now.Sub(t0).Seconds())

		info.err = classify(err)
		info.status = resp.StatusCode()
		failed := info.err != okResponse || info.status >= 500
		if failed {
			e.errs.Inc()
			st.outlier.Failure(&e.host)
		} else {
			st.outlier.Success(&e.host)
		}
		retry := info.err == connectError ||
			(idem && (info.err == resetError || info.err == timeoutError || (info.err == okResponse && retryableStatus(info.status))))
		if !retry || len(tried) >= pol.Attempts || len(tried) == cap(triedBuf) || !now.Before(deadline) || !st.budget.TryRetry() {
			break
		}
		info.route.svc.retries.Inc()
		if info.err == okResponse {
			resp.CloseBodyStream()
		}
		resp.Reset()
		ctx.Response.Header.SetBytesV("X-Request-ID", info.reqID)
	}

	switch {
	case info.attempts == 0:
		info.status, info.err = fasthttp.StatusServiceUnavailable, connectError
		jsonError(ctx, info.status, "no healthy instance of service "+info.route.svc.name)
	case info.err == timeoutError:
		info.status = fasthttp.StatusGatewayTimeout
		jsonError(ctx, info.status, "upstream timed out")
	case info.err != okResponse:
		info.status = fasthttp.StatusBadGateway
		jsonError(ctx, info.status, "upstream unreachable")
	default:
		for _, h := range hopHeaders {
			resp.Header.Del(h)
		}
		ctx.Response.Header.SetBytesV("X-Request-ID", info.reqID)
	}
}

// rewrite adds the forwarding headers and strips the route's prefix.
func (p *Proxy) rewrite(ctx *fasthttp.RequestCtx, r *route, isTLS bool) {
	req := &ctx.Request
	var buf [128]byte
	ip := appendIP(buf[:0], ctx.RemoteIP())
	if prior := req.Header.Peek("X-Forwarded-For"); len(prior) > 0 {
		v := append(append(append([]byte(nil), prior...), ", "...), ip...)
		req.Header.SetBytesV("X-Forwarded-For", v)
	} else {
		req.Header.SetBytesV("X-Forwarded-For", ip)
	}
	proto := "http"
	if isTLS {
		proto = "https"
	}
	req.Header.Set("X-Forwarded-Proto", proto)
	host := ctx.Host()
	req.Header.SetBytesV("X-Forwarded-Host", host)
	// Forwarded (RFC 7239) says the same in one header; IPv6 must be quoted.
	fw := buf[len(ip):len(ip)]
	if prior := req.Header.Peek("Forwarded"); len(prior) > 0 {
		fw = append(append(fw, prior...), ", "...)
	}
	fw = append(fw, "for="...)
	if bytes.IndexByte(ip, ':') >= 0 {
		fw = append(append(append(fw, "\"["...), ip...), "]\""...)
	} else {
		fw = append(fw, ip...)
	}
	fw = append(append(fw, ";host="...), strconv.Quote(string(host))...)
	fw = append(append(fw, ";proto="...), proto...)
	req.Header.SetBytesV("Forwarded", fw)

	// Instances speak plain HTTP, whatever the client used.
	uri := req.URI()
	uri.SetSchemeBytes(schemeHTTP)
	if r.spec.StripPrefix && r.spec.Prefix != "/" {
		path := uri.Path()
		rest := path[len(r.spec.Prefix):]
		if len(rest) == 0 {
			uri.SetPath("/")
		} else {
			uri.SetPathBytes(rest)
		}
	}
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
	ctx.Response.SetStatusCode(status)
	ctx.Response.Header.SetContentType("application/json")
	b := append([]byte(`{"error":`), strconv.Quote(msg)...)
	ctx.Response.SetBodyRaw(append(b, "}\n"...))
}

func retryAfter(ctx *fasthttp.RequestCtx, d time.Duration) {
	secs := int((d + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	ctx.Response.Header.Set("Retry-After", strconv.Itoa(secs))
}

// finish records metrics and the access log line of a finished request.
func (p *Proxy) finish(ctx *fasthttp.RequestCtx, info *reqInfo) {
	d := time.Since(info.start)
	p.metrics.observe(info, d)
	if p.access != nil {
		p.access.log(ctx, info, d)
	}
}
