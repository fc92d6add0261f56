package proxy

import (
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
	want := before + 2*runtime.GOMAXPROCS(0) + 4
	deadline := time.Now().Add(5 * time.Second)
	for openFDs(t) > want {
		if time.Now().After(deadline) {
			t.Fatalf("open descriptors: %d before, %d after every client left (want <= %d)", before, openFDs(t), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
