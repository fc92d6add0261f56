package health

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestTCPProbe(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	tlsSrv := newQuietTLSServer(t, http.NotFoundHandler())
	defer tlsSrv.Close()
	tlsAddr := strings.TrimPrefix(tlsSrv.URL, "https://")
	down := closedAddr(t)

	tests := []struct {
		name   string
		def    Definition
		status string
		output string // exact for passing, substring for critical
	}{
		{"up", Definition{TCP: l.Addr().String()}, StatusPassing, "TCP connect " + l.Addr().String() + ": Success"},
		{"down", Definition{TCP: down}, StatusCritical, "connection refused"},
		{"tls up", Definition{TCP: tlsAddr, TCPUseTLS: true, TLSSkipVerify: true}, StatusPassing, "TCP+TLS connect " + tlsAddr + ": Success"},
		{"tls unverified", Definition{TCP: tlsAddr, TCPUseTLS: true}, StatusCritical, "certificate"},
		{"tls to plain listener", Definition{TCP: l.Addr().String(), TCPUseTLS: true, TLSSkipVerify: true}, StatusCritical, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runProbe(t, newTCPProbe(tt.def, nil), 5*time.Second)
			if got.status != tt.status {
				t.Fatalf("status %s, want %s (output %q)", got.status, tt.status, got.output)
			}
			if tt.status == StatusPassing && got.output != tt.output || !strings.Contains(got.output, tt.output) {
				t.Errorf("output %q, want %q", got.output, tt.output)
			}
		})
	}
}
