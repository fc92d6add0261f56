package rpc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func listenCalls(t *testing.T, h CallHandler) *Mux {
	t.Helper()
	m, err := Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if h != nil {
		m.HandleCalls(h)
	}
	return m
}

func TestCallsPipelineOverOneConnection(t *testing.T) {
	var mu sync.Mutex
	remotes := map[string]bool{}
	var m *Mux
	m = listenCalls(t, func(_ context.Context, req []byte) []byte {
		mu.Lock()
		m.mu.Lock()
		for c := range m.conns {
			if tc, ok := c.(*trackedConn); ok {
				remotes[tc.RemoteAddr().String()] = true
			}
		}
		m.mu.Unlock()
		mu.Unlock()
		return append([]byte("re:"), req...)
	})
	p := NewCallPool(time.Second)
	defer p.Close()
	addr := m.Addr().String()

	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				req := fmt.Appendf(nil, "g%d-i%d", g, i)
				got, err := p.Call(context.Background(), addr, req)
				if err != nil {
					errs <- err
					return
				}
				if want := "re:" + string(req); string(got) != want {
					errs <- fmt.Errorf("answer %q to %q", got, req)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	big := bytes.Repeat([]byte("x"), 3<<20)
	got, err := p.Call(context.Background(), addr, big)
	if err != nil || len(got) != len(big)+3 {
		t.Fatalf("big call: %d bytes, %v", len(got), err)
	}
	if len(remotes) != 1 {
		t.Errorf("calls came over %d connections, want 1: %v", len(remotes), remotes)
	}
}

func TestCallToServerWithoutCallsIsNotSent(t *testing.T) {
	m := listenCalls(t, nil) // a server that predates calls
	p := NewCallPool(time.Second)
	defer p.Close()
	addr := m.Addr().String()
	if p.Supported(context.Background(), addr) {
		t.Fatal("Supported = true for a server without calls")
	}
	_, err := p.Call(context.Background(), addr, []byte("x"))
	var ns *NotSentError
	if !errors.As(err, &ns) || !errors.Is(err, ErrCallsUnsupported) {
		t.Fatalf("err = %v, want NotSentError wrapping ErrCallsUnsupported", err)
	}
}

func TestCallToNobodyIsNotSent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := NewCallPool(time.Second)
	defer p.Close()
	_, err = p.Call(context.Background(), addr, []byte("x"))
	var ns *NotSentError
	if !errors.As(err, &ns) {
		t.Fatalf("err = %v, want NotSentError", err)
	}
	if errors.Is(err, ErrCallsUnsupported) {
		t.Fatalf("a refused dial counted as a server without calls: %v", err)
	}
}

func TestCallLostWhenServerGoesAway(t *testing.T) {
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	defer close(release)
	m := listenCalls(t, func(context.Context, []byte) []byte {
		started <- struct{}{}
		<-release // the server goes away with the call in progress
		return nil
	})
	p := NewCallPool(time.Second)
	defer p.Close()
	done := make(chan error, 1)
	go func() {
		_, err := p.Call(context.Background(), m.Addr().String(), []byte("x"))
		done <- err
	}()
	<-started
	m.Close()
	select {
	case err := <-done:
		var ns *NotSentError
		if !errors.Is(err, ErrCallLost) || errors.As(err, &ns) {
			t.Fatalf("err = %v, want ErrCallLost and not NotSentError", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not end when the server closed")
	}
}

func TestCallGivesUpWithItsContextAndConnectionStaysUsable(t *testing.T) {
	release := make(chan struct{})
	m := listenCalls(t, func(_ context.Context, req []byte) []byte {
		if string(req) == "slow" {
			<-release
		}
		return req
	})
	defer close(release)
	p := NewCallPool(time.Second)
	defer p.Close()
	addr := m.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := p.Call(ctx, addr, []byte("slow")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow call: %v, want deadline exceeded", err)
	}
	got, err := p.Call(context.Background(), addr, []byte("fast"))
	if err != nil || string(got) != "fast" {
		t.Fatalf("next call: %q %v", got, err)
	}
}

func TestCallServerRejectsBadHandshakeAndOversizedFrame(t *testing.T) {
	m := listenCalls(t, func(_ context.Context, req []byte) []byte { return req })
	addr := m.Addr().String()
	tests := []struct {
		name  string
		hello []byte
		frame []byte
	}{
		{"wrong magic", []byte{protoCall, 'n', 'o', 'p', 'e'}, nil},
		{"oversized frame", append([]byte{protoCall}, callMagic[:]...),
			binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(nil, maxCallFrame+1), 7)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Write(tt.hello)
			if tt.frame != nil {
				var magic [4]byte
				if _, err := io.ReadFull(c, magic[:]); err != nil {
					t.Fatalf("handshake: %v", err)
				}
				c.Write(tt.frame)
			}
			rest, err := io.ReadAll(c)
			if err != nil && !strings.Contains(err.Error(), "reset") {
				t.Fatalf("server did not close the connection: %v", err)
			}
			if len(rest) != 0 {
				t.Fatalf("server answered %q", rest)
			}
		})
	}
}
