package health

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
)

// tcpProbe is a TCP check: passing when a connection (and, with TCPUseTLS,
// a TLS handshake) to the address succeeds, critical with the error otherwise.
type tcpProbe struct {
	addr      string
	tls       *tls.Config // nil for plain TCP
	maxOutput int
}

var _ prober = (*tcpProbe)(nil)

func newTCPProbe(def Definition, base *tls.Config) *tcpProbe {
	p := &tcpProbe{addr: def.TCP, maxOutput: def.outputMaxSize()}
	if def.TCPUseTLS {
		p.tls = tlsConfig(base, def)
	}
	return p
}

func (p *tcpProbe) probe(ctx context.Context) result {
	kind := "TCP"
	var conn net.Conn
	var err error
	if p.tls == nil {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", p.addr)
	} else {
		kind = "TCP+TLS"
		conn, err = (&tls.Dialer{Config: p.tls}).DialContext(ctx, "tcp", p.addr)
	}
	if err != nil {
		return critical(truncate(err.Error(), p.maxOutput))
	}
	conn.Close()
	return passing(fmt.Sprintf("%s connect %s: Success", kind, p.addr))
}
