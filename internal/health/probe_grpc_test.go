package health

import (
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// startGRPC serves on 127.0.0.1; with hs nil it has no health service.
func startGRPC(t *testing.T, hs *health.Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	if hs != nil {
		healthpb.RegisterHealthServer(s, hs)
	}
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return l.Addr().String()
}

func TestGRPCProbe(t *testing.T) {
	hs := health.NewServer() // "" is SERVING by default
	hs.SetServingStatus("up", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("down", healthpb.HealthCheckResponse_NOT_SERVING)
	addr := startGRPC(t, hs)
	bare := startGRPC(t, nil)
	down := closedAddr(t)

	tests := []struct {
		name, target, status, output string // output: exact for passing, substring otherwise
	}{
		{"server SERVING", addr, StatusPassing, "gRPC check " + addr + ": success"},
		{"service SERVING", addr + "/up", StatusPassing, "gRPC check " + addr + "/up: success"},
		{"service NOT_SERVING", addr + "/down", StatusCritical, "gRPC " + addr + "/down serving status: NOT_SERVING"},
		{"unknown service", addr + "/nope", StatusCritical, "code = NotFound"},
		{"health service unimplemented", bare, StatusCritical, "code = Unimplemented"},
		{"connection refused", down, StatusCritical, "code = Unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runProbe(t, newGRPCProbe(Definition{GRPC: tt.target}, nil), 5*time.Second)
			if got.status != tt.status {
				t.Fatalf("status %s, want %s (output %q)", got.status, tt.status, got.output)
			}
			if tt.status == StatusPassing && got.output != tt.output || !strings.Contains(got.output, tt.output) {
				t.Errorf("output %q, want %q", got.output, tt.output)
			}
		})
	}

	t.Run("status change", func(t *testing.T) {
		hs.SetServingStatus("flip", healthpb.HealthCheckResponse_SERVING)
		p := newGRPCProbe(Definition{GRPC: addr + "/flip"}, nil)
		if got := runProbe(t, p, 5*time.Second); got.status != StatusPassing {
			t.Fatalf("before: %+v", got)
		}
		hs.SetServingStatus("flip", healthpb.HealthCheckResponse_NOT_SERVING)
		if got := runProbe(t, p, 5*time.Second); got.status != StatusCritical {
			t.Fatalf("after: %+v", got)
		}
	})
}
