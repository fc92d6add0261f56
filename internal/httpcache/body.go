package httpcache

import (
	"errors"
	"io"
	"sync"

	"github.com/valyala/fasthttp"
)

// errTooLarge says a body exceeds MaxObjectSize; the response then passes through.
var errTooLarge = errors.New("httpcache: body larger than MaxObjectSize")

// readBody reads the body of up, at most limit bytes, into a slice the cache
// owns. When the body is larger it returns errTooLarge and the prefix it read,
// leaving the rest in up's body stream; any other error means the body broke off,
// and the caller closes the stream.
func readBody(up *fasthttp.Response, limit int) ([]byte, error) {
	stream := up.BodyStream()
	if stream == nil {
		b := up.Body()
		if len(b) > limit {
			return nil, errTooLarge
		}
		return append(make([]byte, 0, len(b)), b...), nil
	}
	cl := up.Header.ContentLength()
	if cl > limit {
		return nil, errTooLarge
	}
	size := 32 << 10
	if cl >= 0 {
		size = cl + 1 // one more to see EOF without growing
	}
	buf := make([]byte, 0, min(size, limit+1))
	for {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(2*cap(buf), limit+1))
			copy(grown, buf)
			buf = grown
		}
		n, err := stream.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case len(buf) > limit:
			return buf, errTooLarge
		case err == io.EOF:
			up.CloseBodyStream() //nolint:errcheck // fully read: the connection goes back to the pool
			if cap(buf)-len(buf) > len(buf)/4 {
				buf = append(make([]byte, 0, len(buf)), buf...)
			}
			return buf, nil
		case err != nil:
			return nil, err
		}
	}
}

// closeStream closes an upstream body stream the way fasthttp does, telling it
// why reading stopped.
func closeStream(r io.Reader, err error) error {
	var cerr error
	if c, ok := r.(io.Closer); ok {
		cerr = c.Close()
	}
	if c, ok := r.(fasthttp.ReadCloserWithError); ok {
		if e := c.CloseWithError(err); cerr == nil {
			cerr = e
		}
	}
	return cerr
}

// stitched is the body of a response too large to store: the prefix the cache
// read, then the rest of the upstream stream, never held whole. Closing it closes
// the upstream stream.
type stitched struct {
	prefix []byte
	rest   io.Reader
	// up, when set, is the upstream response rest belongs to; it goes back to
	// fasthttp's pool once the body is done, instead of to the garbage collector.
	up   *fasthttp.Response
	once sync.Once
}

var _ fasthttp.ReadCloserWithError = (*stitched)(nil)

func (s *stitched) Read(p []byte) (int, error) {
	if len(s.prefix) > 0 {
		n := copy(p, s.prefix)
		s.prefix = s.prefix[n:]
		return n, nil
	}
	return s.rest.Read(p)
}

// CloseWithError is what fasthttp calls once it has written (or failed to write)
// the body; it is not an io.Closer so that it is called exactly once.
func (s *stitched) CloseWithError(err error) error {
	var cerr error
	s.once.Do(func() {
		s.prefix = nil
		if s.up == nil {
			cerr = closeStream(s.rest, err)
			return
		}
		// Closing through up clears its stream, so releasing it does not close the
		// stream a second time. fasthttp drops the upstream connection unless the body
		// was read to its end, with or without err.
		cerr = s.up.CloseBodyStream()
		fasthttp.ReleaseResponse(s.up)
		s.up = nil
	})
	return cerr
}
