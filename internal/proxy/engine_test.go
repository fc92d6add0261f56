package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The gateway has two engines for plain HTTP/1.1: the event loops (the default on
// Linux) and a goroutine per connection (fasthttp). These tests hold both to the
// same behaviour at the protocol's edges.

func forEachEngine(t *testing.T, f func(t *testing.T, e *env)) {
	for _, goroutines := range []bool{false, true} {
		name := "loop"
		if goroutines {
			name = "goroutines"
		}
		t.Run(name, func(t *testing.T) {
			f(t, newEnv(t, func(c *Config) { c.Goroutines = goroutines }))
		})
	}
}

// rawConn is a client connection that writes raw requests and reads responses.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func (e *env) dialRaw(t *testing.T) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", e.proxy.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatal(err)
	}
}

// read reads one response whole; method is the request's (HEAD has no body).
func (r *rawConn) read(method string) (*http.Response, string) {
	r.t.Helper()
	resp, err := http.ReadResponse(r.br, &http.Request{Method: method})
	if err != nil {
		r.t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatalf("reading body: %v", err)
	}
	resp.Body.Close()
	return resp, string(b)
}

func TestEnginesKeepAliveAndPipelining(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.RequestURI(), len(body))
		})
		e.register("s", b)
		e.waitInstances("s", 1)
		c := e.dialRaw(t)
		// Three requests in one write, one with a body; answers come back in order.
		c.send("GET /s/a?x=1 HTTP/1.1\r\nHost: gw\r\n\r\n" +
			"POST /s/b HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhello" +
			"HEAD /s/c HTTP/1.1\r\nHost: gw\r\n\r\n")
		for _, want := range []struct{ method, body string }{{"GET", "GET /a?x=1 0"}, {"POST", "POST /b 5"}, {"HEAD", ""}} {
			resp, body := c.read(want.method)
			if resp.StatusCode != 200 || body != want.body {
				t.Errorf("%s: %d %q, want 200 %q", want.method, resp.StatusCode, body, want.body)
			}
			if resp.Header.Get("X-Request-Id") == "" {
				t.Errorf("%s: no X-Request-Id", want.method)
			}
		}
		// The same connection goes on serving, one request at a time.
		for i := range 50 {
			c.send(fmt.Sprintf("GET /s/%d HTTP/1.1\r\nHost: gw\r\n\r\n", i))
			if resp, body := c.read("GET"); resp.StatusCode != 200 || body != fmt.Sprintf("GET /%d 0", i) {
				t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
			}
		}
		// Connection: close is honoured after the answer.
		c.send("GET /s/last HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
		resp, _ := c.read("GET")
		if !resp.Close {
			t.Errorf("no Connection: close in the answer to a closing request")
		}
		if n, err := c.br.ReadByte(); err != io.EOF {
			t.Errorf("connection still open after Connection: close (%v %v)", n, err)
		}
		// A request and the client's hang-up in one go: the request is answered.
		c2 := e.dialRaw(t)
		c2.send("GET /s/bye HTTP/1.1\r\nHost: gw\r\n\r\n")
		c2.c.(*net.TCPConn).CloseWrite()
		c2.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if resp, body := c2.read("GET"); resp.StatusCode != 200 || body != "GET /bye 0" {
			t.Errorf("request sent with a hang-up: %d %q", resp.StatusCode, body)
		}
	})
}

func TestEnginesRelayBodies(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	sum := sha256.Sum256(big)
	forEachEngine(t, func(t *testing.T, e *env) {
		b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/length":
				w.Header().Set("Content-Length", strconv.Itoa(len(big)))
				w.Write(big)
			case "/chunked":
				fl := w.(http.Flusher)
				for i := 0; i < len(big); i += 100_000 {
					w.Write(big[i:min(i+100_000, len(big))])
					fl.Flush()
				}
			case "/echo":
				body, _ := io.ReadAll(r.Body)
				w.Write(body)
			case "/empty":
				w.WriteHeader(204)
			}
		})
		e.register("s", b)
		e.waitInstances("s", 1)
		for _, path := range []string{"/s/length", "/s/chunked"} {
			resp, body := e.get(path)
			if resp.StatusCode != 200 || sha256.Sum256([]byte(body)) != sum {
				t.Errorf("%s: %d, %d bytes, want the 1 MiB body intact", path, resp.StatusCode, len(body))
			}
		}
		// A slow reader: the gateway must hold back, not drop or reorder.
		c := e.dialRaw(t)
		c.send("GET /s/length HTTP/1.1\r\nHost: gw\r\n\r\nGET /s/empty HTTP/1.1\r\nHost: gw\r\n\r\n")
		time.Sleep(50 * time.Millisecond) // let the gateway fill the socket's buffers
		resp, body := c.read("GET")
		if resp.StatusCode != 200 || sha256.Sum256([]byte(body)) != sum {
			t.Errorf("slow reader: %d, %d bytes", resp.StatusCode, len(body))
		}
		if resp, _ := c.read("GET"); resp.StatusCode != 204 {
			t.Errorf("request after a large answer: %d", resp.StatusCode)
		}
		// Request bodies: one that fits the loop's buffer and one that does not.
		for _, n := range []int{10 << 10, 300 << 10} {
			in := strings.Repeat("z", n)
			resp, body := e.do("POST", "/s/echo", in)
			if resp.StatusCode != 200 || body != in {
				t.Errorf("echo of %d bytes: %d, %d bytes back", n, resp.StatusCode, len(body))
			}
		}
	})
}

// rawBackend serves each connection with a function of its own.
func rawBackend(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) *backend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	closed := false
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		closed = true
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed { // accepted as the test ended: nobody would close it
				mu.Unlock()
				c.Close()
				continue
			}
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				serve(c, bufio.NewReader(c))
			}()
		}
	}()
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	b := &backend{name: "raw", host: host}
	b.port, _ = strconv.Atoi(port)
	return b
}

// readRequest reads one request head and body from a raw backend's connection.
func readRequest(br *bufio.Reader) (*http.Request, error) {
	r, err := http.ReadRequest(br)
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, r.Body)
	return r, nil
}

func TestEnginesUpstreamFraming(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		// An HTTP/1.0 instance ends its body by closing; one sends 103 Early Hints
		// first; one keeps connections but closes each after it idles a moment.
		closer := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
			if _, err := readRequest(br); err == nil {
				io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
			}
		})
		hints := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
			for {
				if _, err := readRequest(br); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nfinal")
			}
		})
		served := make(chan struct{}, 10)
		fickle := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
			defer func() { served <- struct{}{} }()
			if _, err := readRequest(br); err == nil {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nfickle")
			}
			// and closes the kept-alive connection right after
		})
		e.register("closer", closer)
		e.register("hints", hints)
		e.register("fickle", fickle)
		e.waitInstances("closer", 1)
		e.waitInstances("hints", 1)
		e.waitInstances("fickle", 1)
		c := e.dialRaw(t)
		c.send("GET /hints/ HTTP/1.1\r\nHost: gw\r\n\r\n")
		if resp, body := c.read("GET"); resp.StatusCode != 200 || body != "final" {
			t.Errorf("after an interim response: %d %q", resp.StatusCode, body)
		}
		c.send("GET /closer/ HTTP/1.1\r\nHost: gw\r\n\r\n")
		// The end of the body is the instance's hang-up, which comes with the bytes:
		// well before the 15 s header timeout would end the relay.
		c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, body := c.read("GET")
		if resp.StatusCode != 200 || body != "until the end" {
			t.Errorf("close-delimited body: %d %q", resp.StatusCode, body)
		}
		for i := range 5 {
			// Each try finds the pooled connection closed by the instance: the
			// gateway must notice or retry, never answer an error.
			resp, body := e.get("/fickle/")
			if resp.StatusCode != 200 || body != "fickle" {
				t.Fatalf("request %d to an instance closing idle connections: %d %q", i, resp.StatusCode, body)
			}
			<-served // closed: the next request finds a dead pooled connection
		}
	})
}

func TestEnginesHandOverWhatTheLoopDoesNotServe(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s %s", r.Proto, r.Method, r.URL.EscapedPath())
		})
		e.register("s", b)
		e.waitInstances("s", 1)
		c := e.dialRaw(t)
		// A plain request first, so the loop has the connection; then requests it
		// passes to fasthttp mid-connection, which must serve them and the rest.
		c.send("GET /s/plain HTTP/1.1\r\nHost: gw\r\n\r\n")
		if resp, body := c.read("GET"); resp.StatusCode != 200 || body != "HTTP/1.1 GET /plain" {
			t.Fatalf("plain: %d %q", resp.StatusCode, body)
		}
		c.send("GET /s/a%2Fb HTTP/1.1\r\nHost: gw\r\n\r\n")
		if resp, body := c.read("GET"); resp.StatusCode != 200 || !strings.HasPrefix(body, "HTTP/1.1 GET /a") {
			t.Errorf("escaped path: %d %q", resp.StatusCode, body)
		}
		c.send("GET /nowhere HTTP/1.1\r\nHost: gw\r\n\r\n")
		if resp, body := c.read("GET"); resp.StatusCode != 404 || !strings.Contains(body, "no route") {
			t.Errorf("unknown route: %d %q", resp.StatusCode, body)
		}
		c.send("GET /s/after HTTP/1.1\r\nHost: gw\r\n\r\n")
		if resp, body := c.read("GET"); resp.StatusCode != 200 || body != "HTTP/1.1 GET /after" {
			t.Errorf("after the hand-over: %d %q", resp.StatusCode, body)
		}
		// HTTP/1.0 from the start.
		c2 := e.dialRaw(t)
		c2.send("GET /s/old HTTP/1.0\r\nHost: gw\r\n\r\n")
		if resp, body := c2.read("GET"); resp.StatusCode != 200 || !strings.HasSuffix(body, "GET /old") {
			t.Errorf("HTTP/1.0: %d %q", resp.StatusCode, body)
		}
	})
}

func TestEnginesUpstreamFailures(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		good := newBackend(t, "good", nil)
		// An instance that accepts and resets every request without answering.
		resetter := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
			readRequest(br)
			c.(*net.TCPConn).SetLinger(0)
		})
		// A port nobody listens on.
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		deadPort := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		dead := &backend{name: "dead", host: "127.0.0.1", port: deadPort}
		e.register("s", good)
		e.register("s", resetter)
		e.register("s", dead)
		e.register("gone", dead)
		e.waitInstances("s", 3)
		e.waitInstances("gone", 1)
		for i := range 30 {
			if resp, body := e.get("/s/x"); resp.StatusCode != 200 || body != "good /x" {
				t.Fatalf("request %d: %d %q: retries should reach the good instance", i, resp.StatusCode, body)
			}
		}
		resp, body := e.get("/gone/")
		if resp.StatusCode != 502 || !strings.Contains(body, "unreachable") || resp.Header.Get("X-Request-Id") == "" {
			t.Errorf("only instance refuses connections: %d %q", resp.StatusCode, body)
		}
		// A POST is not retried after it may have reached the resetting instance, but
		// a refused connection is retried for any method.
		got := map[int]int{}
		for range 30 {
			resp, _ := e.do("POST", "/s/p", "data")
			got[resp.StatusCode]++
		}
		if got[200] == 0 || got[200]+got[502] != 30 {
			t.Errorf("POSTs: %v, want 200s and 502s only", got)
		}
	})
}

func TestEnginesConcurrentClients(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		answer := func(w http.ResponseWriter, r *http.Request) {
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			w.Write(bytes.Repeat([]byte(r.URL.Query().Get("c")), n))
		}
		// 100 clients at once start above the adaptive limit's first guess, and a
		// slow (-race) run looks like an overload to it: this test is about framing.
		e.register("s", newBackend(t, "b1", answer), "wolke.concurrency=off")
		e.register("s", newBackend(t, "b2", answer), "wolke.concurrency=off")
		e.waitInstances("s", 2)
		tr := &http.Transport{MaxIdleConnsPerHost: 100}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for g := range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 30 {
					n := (g*31 + i*977) % 40000 // up to ~40 KB: bodies that take several reads
					c := string(rune('a' + (g+i)%26))
					resp, err := client.Get(fmt.Sprintf("%s/s/x?n=%d&c=%s", e.base, n, c))
					if err != nil {
						errs <- err
						return
					}
					body, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil || resp.StatusCode != 200 || string(body) != strings.Repeat(c, n) {
						errs <- fmt.Errorf("client %d request %d: %d, %d bytes (want %d of %q), %v", g, i, resp.StatusCode, len(body), n, c, err)
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
	})
}

// RFC 9110 §7.6.1: the fields a Connection header names belong to that hop, and a
// proxy removes them, in requests and in responses alike.
func TestEnginesDropFieldsNamedByConnection(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		seen := make(chan http.Header, 1)
		b := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
			for {
				r, err := readRequest(br)
				if err != nil {
					return
				}
				seen <- r.Header
				io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: X-Secret, keep-alive\r\nX-Secret: upstream hop\r\nX-Kept: 1\r\nContent-Length: 2\r\n\r\nok")
			}
		})
		e.register("s", b)
		e.waitInstances("s", 1)
		c := e.dialRaw(t)
		for _, req := range []string{
			// Connection naming a field of its own: the loop hands such requests over.
			"GET /s/ HTTP/1.1\r\nHost: gw\r\nConnection: keep-alive, X-Hop\r\nX-Hop: client hop\r\nX-End: 1\r\n\r\n",
			"GET /s/ HTTP/1.1\r\nHost: gw\r\n\r\n",
		} {
			c.send(req)
			resp, body := c.read("GET")
			if resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
			if v := resp.Header.Get("X-Secret"); v != "" {
				t.Errorf("the client got the instance's hop-by-hop X-Secret: %q", v)
			}
			if resp.Header.Get("X-Kept") != "1" {
				t.Errorf("X-Kept, an end-to-end field, was dropped: %v", resp.Header)
			}
			h := <-seen
			if v := h.Get("X-Hop"); v != "" {
				t.Errorf("the instance got the client's hop-by-hop X-Hop: %q", v)
			}
			if v := h.Get("Connection"); v != "" {
				t.Errorf("the instance got the client's Connection field: %q", v)
			}
			if strings.Contains(req, "X-End") && h.Get("X-End") != "1" {
				t.Errorf("X-End, an end-to-end field, was dropped: %v", h)
			}
		}
	})
}
