package proxy

import (
	"io"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wolke-platform/wolke/internal/balance"
)

// serveUpgrade passes a protocol upgrade (WebSocket) through: it dials an
// instance, sends the request head, and then copies bytes both ways until one side
// closes. The instance's answer, 101 or a refusal, reaches the client unchanged.
func (p *Proxy) serveUpgrade(ctx *fasthttp.RequestCtx, st *serviceState, info *reqInfo) {
	req := &ctx.Request
	req.Header.SetRequestURIBytes(req.URI().RequestURI())
	head := append([]byte(nil), req.Header.Header()...)
	body := append([]byte(nil), req.Body()...)

	var triedBuf [10]*endpoint
	var candBuf [32]*balance.Endpoint
	tried := triedBuf[:0]
	var up net.Conn
	for len(tried) < st.policy.Attempts {
		cands := st.candidates(candBuf[:0], tried)
		if len(cands) == 0 {
			break
		}
		e := st.endpointOf(st.lb.Pick(cands, st.hashKey(req)))
		tried = append(tried, e)
		info.ep, info.attempts = e, info.attempts+1
		c, err := net.DialTimeout("tcp", e.bal.Addr, time.Duration(st.policy.ConnectTimeout))
		if err != nil {
			e.errs.Inc()
			st.outlier.Failure(&e.host)
			continue
		}
		st.outlier.Success(&e.host)
		up = c
		break
	}
	if up == nil {
		info.status = fasthttp.StatusBadGateway
		jsonError(ctx, info.status, "no instance of service "+info.route.svc.name+" accepted the connection")
		p.finish(ctx, info)
		return
	}
	info.status = fasthttp.StatusSwitchingProtocols
	p.finish(ctx, info)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		defer up.Close()
		if _, err := up.Write(append(head, body...)); err != nil {
			return
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.Copy(up, c)
			// The client is done sending: tell the instance, keep reading its side.
			if tc, ok := up.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
		}()
		io.Copy(c, up)
		c.Close()
		up.Close()
		wg.Wait()
	})
}
