package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestRaftLayerRoundTrip(t *testing.T) {
	m, err := Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	layer := m.RaftLayer(nil)
	go func() {
		c, err := layer.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c) // echo
		c.Close()
	}()
	c, err := layer.Dial(rpcAddr(m), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q %v", buf, err)
	}
}

func rpcAddr(m *Mux) raft.ServerAddress { return raft.ServerAddress(m.Addr().String()) }

func TestForwardManyRequestsOverOneConnection(t *testing.T) {
	m, err := Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var mu sync.Mutex
	remotes := map[string]bool{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		remotes[r.RemoteAddr] = true
		mu.Unlock()
		fmt.Fprintf(w, "%s %s %s %s", r.Method, r.URL.RequestURI(), b, r.Header.Get("X-Consul-Token"))
	})}
	go srv.Serve(m.ForwardListener())
	defer srv.Close()

	f := NewForwarder(NewPool(time.Second))
	defer f.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			in, _ := http.NewRequest("PUT", fmt.Sprintf("http://client/v1/kv/k%d?cas=3", i), nil)
			in.Header.Set("X-Consul-Token", "tok")
			in.Header.Set("Connection", "close")
			resp, err := f.Do(context.Background(), m.Addr().String(), in, []byte(fmt.Sprintf("v%d", i)))
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("PUT /v1/kv/k%d?cas=3 v%d tok", i, i); string(b) != want {
				errs <- fmt.Errorf("got %q, want %q", b, want)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	f.pool.mu.Lock()
	n := len(f.pool.sessions)
	f.pool.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d sessions to one server, want 1", n)
	}
}

func TestForwardRedialsAfterServerRestart(t *testing.T) {
	m, err := Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := m.Addr().String()
	serve := func(m *Mux) *http.Server {
		s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
		go s.Serve(m.ForwardListener())
		return s
	}
	s1 := serve(m)
	f := NewForwarder(NewPool(time.Second))
	defer f.Close()
	get := func() error {
		in, _ := http.NewRequest("GET", "http://x/", nil)
		resp, err := f.Do(context.Background(), addr, in, nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "ok" {
			return fmt.Errorf("body %q", b)
		}
		return nil
	}
	if err := get(); err != nil {
		t.Fatal(err)
	}
	s1.Close()
	m.Close()
	m2, err := Listen(addr, nil)
	if err != nil {
		t.Skipf("port %s not reusable at once: %v", addr, err)
	}
	defer m2.Close()
	s2 := serve(m2)
	defer s2.Close()
	// The first request may fail on the dead stream; a retry must reach the new server.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := get()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery after restart: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestUnknownProtocolByteIsRejected(t *testing.T) {
	m, err := Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c, err := net.Dial("tcp", m.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("connection with an unknown protocol byte not closed: %v", err)
	}
}

// TestForwardTellsNotSent: a write that never reached a server (its stream was dead,
// the redial refused) is marked NotSentError, so the agent may send it to another
// server; one the server received is not, so it is never applied twice.
func TestForwardTellsNotSent(t *testing.T) {
	m, err := Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := m.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		if r.URL.Path == "/abort" {
			panic(http.ErrAbortHandler) // received, then the connection breaks
		}
		io.WriteString(w, "true")
	})}
	go srv.Serve(m.ForwardListener())
	f := NewForwarder(NewPool(time.Second))
	defer f.Close()
	put := func(path string) error {
		in, _ := http.NewRequest("PUT", "http://x"+path, nil)
		resp, err := f.Do(context.Background(), addr, in, []byte("v"))
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	if err := put("/ok"); err != nil {
		t.Fatal(err)
	}
	var notSent *NotSentError
	if err := put("/abort"); err == nil || errors.As(err, &notSent) {
		t.Fatalf("a write the server received: %v, want an error that is not NotSentError", err)
	}
	srv.Close()
	m.Close()
	// Once the session has seen the server go (a killed process's connections close at
	// once), a write finds its pooled stream dead without writing, and the redial is
	// refused: nothing was sent. (Written into the session before it noticed, a write
	// ends in EOF: it may have been received, and is not NotSentError.)
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.pool.mu.Lock()
		s := f.pool.sessions[addr]
		f.pool.mu.Unlock()
		if s == nil || s.IsClosed() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the session did not notice that the server stopped")
		}
		time.Sleep(time.Millisecond)
	}
	for i := 0; i < 3; i++ {
		if err := put("/ok"); !errors.As(err, &notSent) {
			t.Fatalf("write %d to a stopped server: %v, want NotSentError", i, err)
		}
	}
}
