package httpcache

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// patternStream is an upstream body stream of size bytes, made as it is read; it
// counts what was read and how often it was closed.
type patternStream struct {
	size, read int
	failAt     int // with failAt > 0, Read fails there
	closed     int
}

func pattern(i int) byte { return byte(i % 251) }

func (s *patternStream) Read(p []byte) (int, error) {
	if s.failAt > 0 && s.read >= s.failAt {
		return 0, errors.New("connection reset by peer")
	}
	if s.read >= s.size {
		return 0, io.EOF
	}
	n := min(len(p), s.size-s.read)
	for i := range n {
		p[i] = pattern(s.read + i)
	}
	s.read += n
	return n, nil
}

func (s *patternStream) Close() error { s.closed++; return nil }

func checkPattern(tb testing.TB, b string, size int) {
	tb.Helper()
	if len(b) != size {
		tb.Fatalf("body of %d bytes, want %d", len(b), size)
	}
	for i := range len(b) {
		if b[i] != pattern(i) {
			tb.Fatalf("body differs at byte %d", i)
		}
	}
}

func streamOrigin(s *patternStream, contentLength int) *origin {
	return &origin{handle: func(_ int64, _ *fasthttp.Request, resp *fasthttp.Response) error {
		resp.Header.Set("Cache-Control", "max-age=60")
		resp.SetBodyStream(s, contentLength)
		return nil
	}}
}

func TestStreamTooLargePassesThroughUnbuffered(t *testing.T) {
	const limit, size = 4 << 10, 1 << 20
	for _, cl := range []int{-1, size} {
		c, _ := newTestCache(t, func(cfg *Config) { cfg.MaxObjectSize = limit })
		s := &patternStream{size: size}
		ctx, st := get(t, c, streamOrigin(s, cl).fetch, url)
		if st != "wolke; fwd=miss" {
			t.Fatalf("Content-Length %d: %s", cl, st)
		}
		if s.read > limit+1 {
			t.Fatalf("Content-Length %d: the cache read %d bytes before passing the response on", cl, s.read)
		}
		if ctx.Response.BodyStream() == nil {
			t.Fatalf("Content-Length %d: body not streamed", cl)
		}
		if got := ctx.Response.Header.ContentLength(); got != cl {
			t.Fatalf("Content-Length %d: client gets %d", cl, got)
		}
		checkPattern(t, bodyOf(t, ctx), size)
		if s.closed != 1 {
			t.Fatalf("Content-Length %d: upstream stream closed %d times", cl, s.closed)
		}
		if st := c.Stats(); st.Objects != 0 {
			t.Fatalf("stored %d objects", st.Objects)
		}
	}
}

func TestStreamSmallIsStored(t *testing.T) {
	c, _ := newTestCache(t, func(cfg *Config) { cfg.MaxObjectSize = 4 << 10 })
	for _, size := range []int{0, 100, 4 << 10} {
		s := &patternStream{size: size}
		u := url + "&size=" + string(rune('a'+size%26))
		ctx, st := get(t, c, streamOrigin(s, -1).fetch, u)
		if st != "wolke; fwd=miss; stored" || s.closed != 1 {
			t.Fatalf("size %d: %s, closed %d", size, st, s.closed)
		}
		checkPattern(t, bodyOf(t, ctx), size)
		ctx, st = get(t, c, streamOrigin(&patternStream{}, -1).fetch, u)
		if st != statusHit {
			t.Fatalf("size %d: second request %s", size, st)
		}
		checkPattern(t, bodyOf(t, ctx), size)
	}
}

func TestStreamBrokenBody(t *testing.T) {
	c, _ := newTestCache(t, nil)
	s := &patternStream{size: 1000, failAt: 100}
	ctx, st := get(t, c, streamOrigin(s, -1).fetch, url)
	if st != "wolke; fwd=miss" || ctx.Response.StatusCode() != 502 || s.closed != 1 {
		t.Fatalf("%s %d, closed %d", st, ctx.Response.StatusCode(), s.closed)
	}
}

// End to end through fasthttp's client with StreamResponseBody, as the gateway
// forwards. The client allows one connection, so a body stream the cache failed
// to close would make the next request fail with ErrNoFreeConns.
func TestStreamThroughHostClient(t *testing.T) {
	const limit = 64 << 10
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Cache-Control", "max-age=60")
		size := limit / 2
		if bytes.HasPrefix(ctx.Path(), []byte("/big")) {
			size = 4 * limit
		}
		if bytes.HasSuffix(ctx.Path(), []byte("-cl")) {
			b := make([]byte, size)
			for i := range b {
				b[i] = pattern(i)
			}
			ctx.SetBody(b)
			return
		}
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			for i := 0; i < size; i += 1000 {
				for j := i; j < min(i+1000, size); j++ {
					w.WriteByte(pattern(j)) //nolint:errcheck
				}
				w.Flush() //nolint:errcheck
			}
		})
	}}
	go srv.Serve(ln)                     //nolint:errcheck
	t.Cleanup(func() { srv.Shutdown() }) //nolint:errcheck
	hc := &fasthttp.HostClient{
		Addr:               "upstream",
		Dial:               func(string) (net.Conn, error) { return ln.Dial() },
		StreamResponseBody: true,
		MaxConns:           1,
	}
	c, _ := newTestCache(t, func(cfg *Config) { cfg.MaxObjectSize = limit })
	fetch := func(req *fasthttp.Request, resp *fasthttp.Response) error { return hc.Do(req, resp) }

	for _, tc := range []struct {
		path   string
		size   int
		stored bool
	}{
		{"/small", limit / 2, true},
		{"/small-cl", limit / 2, true},
		{"/big", 4 * limit, false},
		{"/big-cl", 4 * limit, false},
	} {
		for i := range 3 {
			ctx, st := get(t, c, fetch, "http://shop.example"+tc.path)
			if want := tc.stored && i > 0; (st == statusHit) != want {
				t.Fatalf("%s #%d: %s", tc.path, i, st)
			}
			if ctx.Response.StatusCode() != 200 {
				t.Fatalf("%s #%d: status %d", tc.path, i, ctx.Response.StatusCode())
			}
			checkPattern(t, bodyOf(t, ctx), tc.size)
		}
	}
}
