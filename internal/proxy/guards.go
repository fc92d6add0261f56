package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/valyala/fasthttp"

	"github.com/wolke-platform/wolke/internal/authn"
	"github.com/wolke-platform/wolke/internal/reqvalidate"
)

// buildGuards builds a service's authenticator and validator, keeping the old ones
// when their policy did not change (an authenticator holds a JWT cache and a JWKS
// watch). p.mu is not held; s.mu is.
func (p *Proxy) buildGuards(name string, old, st *serviceState) {
	var problems []string
	if a := st.policy.Auth; a != nil {
		if old != nil && old.auth != nil && sameJSON(old.policy.Auth, a) {
			st.auth = old.auth
		} else {
			deps := p.authDeps
			deps.Service = name
			auth, err := authn.New(*a, deps)
			if err != nil {
				problems = append(problems, fmt.Sprintf("auth: %v", err))
			} else {
				st.auth = auth
			}
		}
	}
	if old != nil && old.auth != nil && old.auth != st.auth {
		old.auth.Close()
	}
	if v := st.policy.Validation; v != nil {
		var doc []byte
		if v.OpenAPI != "" {
			p.mu.Lock()
			doc = p.kvDocs[v.OpenAPI]
			p.mu.Unlock()
		}
		val, err := reqvalidate.New(*v, doc)
		if err != nil {
			problems = append(problems, fmt.Sprintf("validation: %v", err))
		} else {
			st.validator = val
		}
	}
	if len(problems) > 0 {
		st.broken = problems[0]
		p.log.Error("a route's protection could not be built; it refuses requests until fixed", "service", name, "problems", problems)
	}
	p.bodyLimits.Store(p.bodyLimits.Load() || (st.validator != nil && st.validator.MaxBodySize() > 0))
}

func sameJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// guard runs authentication and validation; it reports whether the request may go
// on, having answered it otherwise.
func (p *Proxy) guard(ctx *fasthttp.RequestCtx, r *route, st *serviceState, info *reqInfo) bool {
	svc := r.svc
	if st.broken != "" {
		p.reject(ctx, svc, info, fasthttp.StatusServiceUnavailable, "config", "the gateway's policy for "+svc.name+" is broken: "+st.broken)
		return false
	}
	req := &ctx.Request
	if st.auth == nil {
		// No auth here, but a service may still trust the header: nobody names himself.
		authn.StripIdentity(req, "")
	} else {
		res := st.auth.Authenticate(req)
		if !res.OK {
			if res.Challenge != "" {
				ctx.Response.Header.Set("WWW-Authenticate", res.Challenge)
			}
			if res.Body != nil {
				ctx.Response.SetStatusCode(res.Status)
				if res.ContentType != "" {
					ctx.Response.Header.SetContentType(res.ContentType)
				}
				ctx.Response.SetBodyRaw(res.Body)
				p.rejected(ctx, svc, info, res.Status, "auth")
				return false
			}
			p.reject(ctx, svc, info, res.Status, "auth", res.Reason)
			return false
		}
		info.identity, info.claims = res.Identity, res.Claims
	}
	if st.validator != nil {
		path := req.URI().Path()
		if r.spec.StripPrefix && r.spec.Prefix != "/" {
			if path = path[len(r.spec.Prefix):]; len(path) == 0 {
				path = slash
			}
		}
		if v := st.validator.Check(req, path); v != nil {
			v.Write(&ctx.Response)
			p.rejected(ctx, svc, info, v.Status, "validation")
			return false
		}
	}
	return true
}

var slash = []byte("/")

// headerReceived applies a route's body-size limit before the body is read, so an
// oversized upload is refused without being received.
func (p *Proxy) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if !p.bodyLimits.Load() {
		return fasthttp.RequestConfig{}
	}
	uri := h.RequestURI()
	if i := bytes.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	r := p.table.Load().match(h.Host(), uri)
	if r == nil {
		return fasthttp.RequestConfig{}
	}
	if st := r.svc.state.Load(); st != nil && st.validator != nil {
		if n := st.validator.MaxBodySize(); n > 0 {
			return fasthttp.RequestConfig{MaxRequestBodySize: n}
		}
	}
	return fasthttp.RequestConfig{}
}
