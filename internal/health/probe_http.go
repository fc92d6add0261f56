package health

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// httpProbe is an HTTP check: 2xx passing, 429 warning, anything else or a
// transport error critical. Output is Consul's
// "HTTP GET <url>: 200 OK Output: <first OutputMaxSize bytes of the body>".
type httpProbe struct {
	def       Definition
	method    string
	maxOutput int
	client    *http.Client
	transport *http.Transport
}

var _ prober = (*httpProbe)(nil)

func newHTTPProbe(def Definition, base *tls.Config) *httpProbe {
	// Keep-alives off, as in Consul: a check must open a fresh connection
	// each run, and nothing lingers between runs.
	tr := &http.Transport{
		Proxy:               nil, // never route a health check through a proxy
		DialContext:         (&net.Dialer{Timeout: def.effectiveTimeout(), KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsConfig(base, def),
		TLSHandshakeTimeout: def.effectiveTimeout(),
		DisableKeepAlives:   true,
		ForceAttemptHTTP2:   true,
	}
	client := &http.Client{Transport: tr}
	if def.DisableRedirects {
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return &httpProbe{def: def, method: def.method(), maxOutput: def.outputMaxSize(), client: client, transport: tr}
}

func (p *httpProbe) probe(ctx context.Context) result {
	var body io.Reader
	if p.def.Body != "" {
		body = strings.NewReader(p.def.Body)
	}
	req, err := http.NewRequestWithContext(ctx, p.method, p.def.HTTP, body)
	if err != nil {
		return critical(truncate(err.Error(), p.maxOutput))
	}
	req.Header = make(http.Header, len(p.def.Header)+2)
	for k, v := range p.def.Header {
		req.Header[http.CanonicalHeaderKey(k)] = append([]string(nil), v...)
	}
	if host := req.Header.Get("Host"); host != "" {
		req.Host = host
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", UserAgent)
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "text/plain, text/*, */*")
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return critical(truncate(err.Error(), p.maxOutput))
	}
	defer resp.Body.Close()
	// Keep the first maxOutput bytes; a read error after some bytes still
	// leaves the status code to judge by.
	out, _ := io.ReadAll(io.LimitReader(resp.Body, int64(p.maxOutput)))
	text := fmt.Sprintf("HTTP %s %s: %s Output: %s", p.method, p.def.HTTP, resp.Status, out)
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode <= 299:
		return passing(text)
	case resp.StatusCode == http.StatusTooManyRequests:
		return warning(text)
	default:
		return critical(text)
	}
}

func (p *httpProbe) close() { p.transport.CloseIdleConnections() }

// tlsConfig derives a check's TLS client config from the agent's base
// config (CA roots, client certificate) and the check's own fields.
func tlsConfig(base *tls.Config, def Definition) *tls.Config {
	var c *tls.Config
	if base != nil {
		c = base.Clone()
	} else {
		c = &tls.Config{}
	}
	if def.TLSServerName != "" {
		c.ServerName = def.TLSServerName
	}
	if def.TLSSkipVerify {
		c.InsecureSkipVerify = true //nolint:gosec // the check owner asked for it (TLSSkipVerify)
	}
	return c
}
