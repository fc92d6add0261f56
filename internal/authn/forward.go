package authn

import (
	"bytes"
	"errors"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// forwardAuth asks an auth service about each request: it gets the request's method
// and headers (never the body) at its own URL, with the original URI, host and scheme
// in X-Forwarded-Uri, X-Forwarded-Host, X-Forwarded-Proto and X-Forwarded-Method (the
// names Traefik and oauth2-proxy use). Its answer decides:
//
//	2xx      allowed; copy_headers are copied to the upstream request, and the identity
//	         is the answer's identity header (X-Wolke-Identity by default), if any
//	401/403  refused with that status, the answer's body and its WWW-Authenticate
//	other    503: the gateway fails closed, as it does when the service is down or slow
type forwardAuth struct {
	url      string
	timeout  time.Duration
	copy     []string
	idHeader string
	doer     ForwardDoer
}

// forwardBodyMax caps the auth service's answer passed to the client.
const forwardBodyMax = 64 << 10

func newForwardAuth(p ForwardPolicy, d Deps, idHeader string) *forwardAuth {
	f := &forwardAuth{url: p.URL, timeout: time.Duration(p.Timeout), copy: p.CopyHeaders, idHeader: idHeader, doer: d.HTTP}
	if f.timeout == 0 {
		f.timeout = DefaultForwardTimeout
	}
	if f.doer == nil {
		f.doer = &fasthttp.Client{
			Name:                     "wolke-gateway",
			NoDefaultUserAgentHeader: true,
			ReadTimeout:              f.timeout,
			WriteTimeout:             f.timeout,
			MaxResponseBodySize:      forwardBodyMax,
			MaxIdleConnDuration:      30 * time.Second,
		}
	}
	return f
}

func (f *forwardAuth) challenge() string { return "" }

// notForwarded are headers that describe the original request's body or connection,
// not its credentials.
var notForwarded = map[string]bool{
	"Host": true, "Content-Length": true, "Transfer-Encoding": true, "Connection": true,
	"Keep-Alive": true, "Proxy-Connection": true, "Te": true, "Trailer": true, "Upgrade": true,
	"Expect": true,
}

func (f *forwardAuth) authenticate(req *fasthttp.Request) (Result, bool) {
	areq, aresp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(areq)
	defer fasthttp.ReleaseResponse(aresp)

	areq.SetRequestURI(f.url)
	areq.Header.SetMethodBytes(req.Header.Method())
	for k, v := range req.Header.All() {
		if !notForwarded[string(k)] {
			areq.Header.AddBytesKV(k, v)
		}
	}
	areq.Header.SetBytesV("X-Forwarded-Method", req.Header.Method())
	areq.Header.SetBytesV("X-Forwarded-Uri", req.Header.RequestURI())
	areq.Header.SetBytesV("X-Forwarded-Host", req.Host())
	areq.Header.SetBytesV("X-Forwarded-Proto", req.URI().Scheme())

	if err := f.doer.DoTimeout(areq, aresp, f.timeout); err != nil {
		// The reason may reach the client: it names no internal address.
		reason := "auth service unreachable"
		if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout) {
			reason = "auth service timed out"
		}
		return Result{Status: fasthttp.StatusServiceUnavailable, Reason: reason}, true
	}
	code := aresp.StatusCode()
	switch {
	case code >= 200 && code < 300:
		for _, h := range f.copy {
			req.Header.Del(h) // Authenticate stripped it already; no client copy survives
			for _, v := range aresp.Header.PeekAll(h) {
				req.Header.AddBytesV(h, v)
			}
		}
		return Result{OK: true, Identity: string(aresp.Header.Peek(f.idHeader))}, true
	case code == fasthttp.StatusUnauthorized || code == fasthttp.StatusForbidden:
		res := Result{
			Status:    code,
			Challenge: string(aresp.Header.Peek(fasthttp.HeaderWWWAuthenticate)),
			Reason:    "auth service answered " + strconv.Itoa(code),
		}
		if body := aresp.Body(); len(body) > 0 { // else the gateway answers with its own error
			res.Body = bytes.Clone(body[:min(len(body), forwardBodyMax)])
			res.ContentType = string(aresp.Header.ContentType())
		}
		return res, true
	}
	return Result{Status: fasthttp.StatusServiceUnavailable, Reason: "auth service answered " + strconv.Itoa(code)}, true
}
