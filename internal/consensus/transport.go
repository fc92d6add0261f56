package consensus

import (
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// NewTCPTransport listens for Raft traffic on bind ("ip:port"; port 0 picks one) and
// advertises advertise (empty: the listener's own address).
func NewTCPTransport(bind, advertise string, logger *slog.Logger) (*raft.NetworkTransport, error) {
	var adv net.Addr
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			return nil, fmt.Errorf("consensus: advertise address %q: %w", advertise, err)
		}
		adv = a
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t, err := raft.NewTCPTransportWithLogger(bind, adv, 3, 10*time.Second, hclogFor(logger, "raft-net"))
	if err != nil {
		return nil, fmt.Errorf("consensus: listen %s: %w", bind, err)
	}
	return t, nil
}

// NewInmemTransport returns a transport for a single in-memory server (dev mode); addr
// is only the name it reports.
func NewInmemTransport(addr string) raft.Transport {
	_, t := raft.NewInmemTransport(raft.ServerAddress(addr))
	return t
}

// NewMuxTransport runs Raft over a stream layer (the server port's multiplexer).
func NewMuxTransport(layer raft.StreamLayer, logger *slog.Logger) raft.Transport {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  layer,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  hclogFor(logger, "raft-net"),
	})
}
