package health

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// grpcProbe is a gRPC check: grpc.health.v1.Health/Check on "host:port" or
// "host:port/service". SERVING is passing; any other status or an RPC error
// (connection refused, Unimplemented, deadline) is critical.
type grpcProbe struct {
	target    string // as registered, for the output
	addr      string
	service   string
	creds     credentials.TransportCredentials
	maxOutput int
}

var _ prober = (*grpcProbe)(nil)

func newGRPCProbe(def Definition, base *tls.Config) *grpcProbe {
	addr, service, _ := strings.Cut(def.GRPC, "/")
	p := &grpcProbe{target: def.GRPC, addr: addr, service: service, maxOutput: def.outputMaxSize()}
	if def.GRPCUseTLS {
		p.creds = credentials.NewTLS(tlsConfig(base, def))
	} else {
		p.creds = insecure.NewCredentials()
	}
	return p
}

func (p *grpcProbe) probe(ctx context.Context) result {
	// A fresh connection per run, as in Consul: nothing is kept between runs.
	// passthrough: dial the address as given, without DNS resolver state.
	conn, err := grpc.NewClient("passthrough:///"+p.addr, grpc.WithTransportCredentials(p.creds))
	if err != nil {
		return critical(truncate(err.Error(), p.maxOutput))
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: p.service})
	if err != nil {
		return critical(truncate(err.Error(), p.maxOutput))
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return critical(fmt.Sprintf("gRPC %s serving status: %s", p.target, resp.GetStatus()))
	}
	return passing(fmt.Sprintf("gRPC check %s: success", p.target))
}
