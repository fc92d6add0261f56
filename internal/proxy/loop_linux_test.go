package proxy

import (
	"context"
	"net/http"
	"os"
	"runtime"
	"testing"
	"time"
)

func TestLoopSurvivesAPanic(t *testing.T) {
	e := newEnv(t)
	e.register("s", newBackend(t, "b", nil))
	e.waitInstances("s", 1)
	hook := func(path []byte) {
		if string(path) == "/s/boom" {
			panic("boom")
		}
	}
	testStartHook.Store(&hook)
	t.Cleanup(func() { testStartHook.Store(nil) })
	c := e.dialRaw(t)
	c.send("GET /s/boom HTTP/1.1\r\nHost: gw\r\n\r\n")
	if _, err := http.ReadResponse(c.br, nil); err == nil {
		t.Fatal("a request whose handling panicked got an answer")
	}
	// The loop goes on serving: new connections, and every request after.
	for i := range 20 {
		if resp, body := e.get("/s/ok"); resp.StatusCode != 200 || body != "b /ok" {
			t.Fatalf("request %d after the panic: %d %q", i, resp.StatusCode, body)
		}
	}
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// The loop closes every descriptor it opens, whatever the clients and instances do.
func TestLoopClosesWhatItOpens(t *testing.T) {
	e := newEnv(t)
	e.register("s", newBackend(t, "b", nil))
	e.waitInstances("s", 1)
	e.get("/s/warm")
	e.client.Transport.(*http.Transport).CloseIdleConnections()
	before := openFDs(t)
	for i := range 20 {
		c := e.dialRaw(t)
		switch i % 4 {
		case 0: // a whole request, then the client hangs up
			c.send("GET /s/x HTTP/1.1\r\nHost: gw\r\n\r\n")
			c.read("GET")
		case 1: // half a request
			c.send("GET /s/x HTTP/1.1\r\nHo")
		case 2: // handed over to fasthttp
			c.send("GET /s/x HTTP/1.0\r\nHost: gw\r\n\r\n")
			c.read("GET")
		case 3: // pipelined, hanging up before reading
			c.send("GET /s/a HTTP/1.1\r\nHost: gw\r\n\r\nGET /s/b HTTP/1.1\r\nHost: gw\r\n\r\n")
		}
		c.c.Close()
	}
	// Idle pooled connections to the instance may remain, one per loop, with the
	// in-process instance's end of each; the agent in this process may hold a few
	// descriptors more or less from moment to moment. A leak is one per client.
	want := before + 2*len(engineOf(t, e.proxy).loops) + 4
	deadline := time.Now().Add(5 * time.Second)
	for openFDs(t) > want {
		if time.Now().After(deadline) {
			t.Fatalf("open descriptors: %d before, %d after every client left (want <= %d)", before, openFDs(t), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func engineOf(t *testing.T, p *Proxy) *engine {
	t.Helper()
	for _, s := range p.servers {
		if e, ok := s.(*engine); ok {
			return e
		}
	}
	t.Fatal("the gateway runs no event loops")
	return nil
}

// Each loop's P comes on top of the program's, and goes back when the gateway
// stops; a second gateway in the process runs as many loops as the first.
func TestLoopsAddTheirProcs(t *testing.T) {
	base := runtime.GOMAXPROCS(0)
	e1, e2 := newEnv(t), newEnv(t)
	n1, n2 := len(engineOf(t, e1.proxy).loops), len(engineOf(t, e2.proxy).loops)
	if n1 != base || n2 != base {
		t.Fatalf("loops: %d and %d, want one per P the program had (%d)", n1, n2, base)
	}
	if got := runtime.GOMAXPROCS(0); got != base+n1+n2 {
		t.Fatalf("GOMAXPROCS with two gateways running: %d, want %d", got, base+n1+n2)
	}
	for _, e := range []*env{e1, e2} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		e.proxy.Shutdown(ctx)
		cancel()
	}
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Fatalf("GOMAXPROCS after both stopped: %d, want %d", got, base)
	}
}

// A busy loop waits for events holding its P, in a system call the runtime does not
// know of: the collector must still stop it promptly, and once traffic ends every
// loop must give its P back rather than keep waking.
func TestLoopsHotAndCold(t *testing.T) {
	e := newEnv(t)
	e.register("s", newBackend(t, "b", nil))
	e.waitInstances("s", 1)
	eng := engineOf(t, e.proxy)
	anyHot := func() bool {
		for _, l := range eng.loops {
			if l.hot.Load() {
				return true
			}
		}
		return false
	}

	stop := e.loadUntilStopped(4, "/s/x", func(status int, err error) bool {
		switch {
		case err != nil:
			t.Errorf("under load: %v", err)
			return false
		case status != 200:
			t.Errorf("status %d under load", status)
			return false
		}
		return true
	})
	deadline := time.Now().Add(5 * time.Second)
	for !anyHot() {
		if time.Now().After(deadline) {
			stop()
			t.Fatal("no loop waits holding its P while requests keep coming")
		}
		time.Sleep(time.Millisecond)
	}
	var slowest time.Duration
	for range 20 {
		start := time.Now()
		runtime.GC()
		slowest = max(slowest, time.Since(start))
	}
	stop()
	if slowest > time.Second {
		t.Fatalf("a collection took %v with the loops busy", slowest)
	}

	deadline = time.Now().Add(2 * time.Second)
	for anyHot() {
		if time.Now().After(deadline) {
			t.Fatal("loops still hold their Ps 2 s after the last request")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
