package chassis

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/wolke-platform/wolke/internal/balance"
	"github.com/wolke-platform/wolke/internal/servicewatch"
)

// transport is the RoundTripper of the instance's clients.
type transport struct {
	core *clientCore
	opts ClientOptions
	base http.RoundTripper // the core's pool for opts.Timeout (benchmarks swap it)
}

var _ http.RoundTripper = (*transport)(nil)

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" || !isServiceHost(req.URL.Host) {
		return t.direct(req)
	}
	core := t.core
	m := core.in.metrics
	name := req.URL.Host
	tg := core.target(name)
	ctx := req.Context()
	start := time.Now()

	ctx, span := core.in.tracer.Start(ctx, req.Method, clientSpan...)
	defer span.End()
	if span.IsRecording() {
		span.SetName(req.Method + " " + name)
		span.SetAttributes(attribute.String("http.request.method", req.Method), attribute.String("server.address", name))
	}

	ticket, ok := tg.breaker.Allow()
	if !ok {
		closeBody(req)
		m.clientRejected.WithLabelValues(name, "breaker_open").Inc()
		return t.fail(req, span, &ClientError{Service: name, Err: ErrCircuitOpen, RetryAfter: tg.breaker.RetryAfter()})
	}
	// The first lookup of a service waits for the watcher's first answer, within the
	// attempt timeout; later ones answer from memory.
	var list []servicewatch.Instance
	var err error
	if tg.watched.Load() {
		list, err = core.watch.Service(ctx, name)
	} else {
		lctx, cancel := context.WithTimeout(ctx, t.opts.Timeout)
		list, err = core.watch.Service(lctx, name)
		cancel()
		if err == nil {
			tg.watched.Store(true)
		}
	}
	eps, bal := tg.sync(list)
	ep := tg.pick(eps, bal, nil)
	if ep == nil {
		closeBody(req)
		tg.breaker.Done(ticket, true) // the service was not asked: no verdict on it
		m.clientRejected.WithLabelValues(name, "no_instances").Inc()
		cerr := ErrNoInstances
		if err != nil {
			cerr = errors.Join(ErrNoInstances, err)
		}
		return t.fail(req, span, &ClientError{Service: name, Err: cerr})
	}
	tg.budget.Request()

	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	idempotent := replayable && isIdempotent(req)
	var triedBuf [4]*endpoint
	tried := triedBuf[:0]
	var resp *http.Response
	attempts := 0
	for {
		attempts++
		tried = append(tried, ep)
		resp, err = t.attempt(ctx, req, name, ep, attempts)
		if err == nil && resp.StatusCode < 500 {
			tg.outlier.Success(&ep.host)
			break
		}
		tg.outlier.Failure(&ep.host)
		retry := attempts < t.opts.MaxAttempts && ctx.Err() == nil &&
			(err != nil && (idempotent || replayable && isDialError(err)) ||
				err == nil && idempotent && gatewayError(resp.StatusCode))
		if !retry {
			break
		}
		next := tg.pick(eps, bal, tried)
		if next == nil || !tg.budget.TryRetry() {
			break
		}
		if req.Body != nil && req.Body != http.NoBody {
			body, gerr := req.GetBody()
			if gerr != nil {
				break
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
		if resp != nil {
			drain(resp)
			resp = nil
		}
		tg.retries.Inc()
		ep = next
	}

	success := resp != nil && resp.StatusCode < 500
	// A request the caller gave up on says nothing about the service.
	tg.breaker.Done(ticket, success || ctx.Err() != nil)
	tg.duration.Observe(time.Since(start).Seconds())
	if resp == nil {
		tg.countCode(m, 0)
		return t.fail(req, span, &ClientError{Service: name, Attempts: attempts, Err: err})
	}
	tg.countCode(m, resp.StatusCode)
	if !success {
		span.SetStatus(codes.Error, resp.Status)
		if t.opts.Fallback != nil {
			drain(resp)
			return t.fail(req, span, &ClientError{Service: name, Attempts: attempts, StatusCode: resp.StatusCode, Err: ErrUpstreamStatus})
		}
	}
	return resp, nil
}

// attempt sends one attempt to ep: the caller's request with the instance's address,
// the trace context, request ID and remaining time budget. The pool's
// ResponseHeaderTimeout bounds the wait for the response headers.
func (t *transport) attempt(ctx context.Context, req *http.Request, service string, ep *endpoint, n int) (*http.Response, error) {
	out := req.Clone(ctx)
	out.URL.Host = ep.bal.Addr
	if out.Host == "" {
		out.Host = service
	}
	t.decorate(ctx, out, t.opts.Timeout)
	if n > 1 {
		out.Header["X-Retry-Attempt"] = []string{strconv.Itoa(n)}
	}
	begin := time.Now()
	ep.bal.Start()
	resp, err := t.base.RoundTrip(out)
	now := time.Now()
	rtt := now.Sub(begin)
	if err != nil || resp.StatusCode >= 500 {
		// A failure counts as slow, so that p2c steers away from an instance that
		// fails fast (a dead port answers "refused" in microseconds).
		rtt = max(rtt, t.opts.Timeout)
	}
	ep.bal.Finish(rtt, now)
	return resp, err
}

// decorate sets the headers every outgoing request carries.
func (t *transport) decorate(ctx context.Context, out *http.Request, attemptTimeout time.Duration) {
	inject(ctx, out.Header)
	if id := RequestID(ctx); id != "" && out.Header.Get(HeaderRequestID) == "" {
		out.Header.Set(HeaderRequestID, id)
	}
	budget := attemptTimeout
	if dl, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(dl))
	}
	if budget > 0 {
		out.Header[HeaderTimeout] = []string{strconv.FormatInt(budget.Milliseconds(), 10) + "ms"}
	}
}

// direct sends a request to a URL that is not a service: as it is, with the trace
// context and request ID.
func (t *transport) direct(req *http.Request) (*http.Response, error) {
	ctx, span := t.core.in.tracer.Start(req.Context(), req.Method+" "+req.URL.Host, clientSpan...)
	defer span.End()
	out := req.Clone(ctx)
	inject(ctx, out.Header)
	if id := RequestID(ctx); id != "" && out.Header.Get(HeaderRequestID) == "" {
		out.Header.Set(HeaderRequestID, id)
	}
	resp, err := t.base.RoundTrip(out)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	return resp, err
}

// fail ends a request without a usable response: the fallback answers, or the error
// is returned.
func (t *transport) fail(req *http.Request, span trace.Span, cerr *ClientError) (*http.Response, error) {
	span.SetStatus(codes.Error, cerr.Error())
	if t.opts.Fallback == nil {
		return nil, cerr
	}
	t.core.in.metrics.clientFallback.WithLabelValues(cerr.Service).Inc()
	if span.IsRecording() {
		span.SetAttributes(attribute.Bool("chassis.fallback", true))
	}
	return t.opts.Fallback(req, cerr)
}

// pick chooses an instance that is not ejected and was not tried yet.
func (tg *target) pick(eps []*endpoint, bal []*balance.Endpoint, tried []*endpoint) *endpoint {
	cands := bal
	filtered := len(tried) > 0
	if !filtered {
		for _, e := range eps {
			if tg.outlier.Ejected(&e.host) {
				filtered = true
				break
			}
		}
	}
	if filtered {
		cands = make([]*balance.Endpoint, 0, len(eps))
	next:
		for _, e := range eps {
			for _, x := range tried {
				if x == e {
					continue next
				}
			}
			if !tg.outlier.Ejected(&e.host) {
				cands = append(cands, e.bal)
			}
		}
	}
	b := tg.policy.Pick(cands, 0)
	if b == nil {
		return nil
	}
	for _, e := range eps {
		if e.bal == b {
			return e
		}
	}
	return nil
}

// isServiceHost reports whether a URL host names a service: no port, no dot, a valid
// service name (and not localhost). nameRE's rule, without the regexp's cost.
func isServiceHost(h string) bool {
	if len(h) == 0 || len(h) > 63 || h == "localhost" || !isLetter(h[0]) {
		return false
	}
	for i := 1; i < len(h); i++ {
		if c := h[i]; !isLetter(c) && !(c >= '0' && c <= '9') && c != '-' {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func isIdempotent(r *http.Request) bool {
	switch r.Method {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return r.Header.Get("Idempotency-Key") != "" || r.Header.Get("X-Idempotency-Key") != ""
}

// isDialError reports whether err is a failure to connect: the request was not sent.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// closeBody closes the body of a request that is not sent (a RoundTripper must).
func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// drain discards and closes a response body that will not be used, so that its
// connection can be reused.
func drain(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	resp.Body.Close()
}

// gatewayError reports the statuses worth another instance, as Envoy's
// "gateway-error" retry policy counts them: 502, 503 and 504 (the instance's own
// deadline answer, which can win the race with this attempt's timeout).
func gatewayError(code int) bool {
	return code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout
}
