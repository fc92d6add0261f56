//go:build !linux

package proxy

import (
	"context"
	"errors"
	"net"
)

var errEngineUnsupported = errors.New("proxy: event loop unavailable on this system")

// engine is the event-loop engine, Linux only; elsewhere the goroutine engine
// serves every connection.
type engine struct{}

func newEngine(*Proxy, net.Listener, *chanListener) (*engine, error) {
	return nil, errEngineUnsupported
}

func (*engine) Shutdown(context.Context) error { return nil }
