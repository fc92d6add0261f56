package proxy

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// accessLog writes one JSON line per request. Lines are built without allocating
// and buffered, with a flush at least every flushEvery, so that logging costs a
// fraction of a microsecond per request instead of a write syscall.
type accessLog struct {
	mu   sync.Mutex
	w    *bufio.Writer
	buf  []byte
	stop chan struct{}
	done chan struct{}
}

const flushEvery = 200 * time.Millisecond

func newAccessLog(w io.Writer) *accessLog {
	a := &accessLog{w: bufio.NewWriterSize(w, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go a.flusher()
	return a
}

func (a *accessLog) flusher() {
	defer close(a.done)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			a.mu.Lock()
			a.w.Flush()
			a.mu.Unlock()
		case <-a.stop:
			a.mu.Lock()
			a.w.Flush()
			a.mu.Unlock()
			return
		}
	}
}

func (a *accessLog) close() {
	close(a.stop)
	<-a.done
}

func (a *accessLog) log(ctx *fasthttp.RequestCtx, info *reqInfo, d time.Duration) {
	a.write(ctx.RemoteIP(), ctx.Method(), ctx.Host(), ctx.Response.Header.ContentLength(), info, d)
}

// write logs a request of either engine; size is the response's Content-Length
// (-1 when it has none).
func (a *accessLog) write(remote net.IP, method, host []byte, size int, info *reqInfo, d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.buf[:0]
	b = append(b, `{"time":"`...)
	b = info.start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, `","remote":"`...)
	b = appendIP(b, remote)
	b = append(b, `","method":`...)
	b = appendJSONString(b, method)
	b = append(b, `,"host":`...)
	b = appendJSONString(b, host)
	b = append(b, `,"uri":`...)
	b = appendJSONString(b, info.uri)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(info.status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, int64(size), 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(d.Microseconds())/1000, 'f', 3, 64)
	if info.route != nil {
		b = append(b, `,"service":"`...)
		b = append(b, info.route.svc.name...)
		b = append(b, '"')
	}
	if info.ep != nil {
		b = append(b, `,"upstream":"`...)
		b = append(b, info.ep.bal.Addr...)
		b = append(b, `","attempts":`...)
		b = strconv.AppendInt(b, int64(info.attempts), 10)
	}
	if info.cacheStatus != "" {
		b = append(b, `,"cache":`...)
		b = appendJSONString(b, []byte(info.cacheStatus))
	}
	if info.rejected != "" {
		b = append(b, `,"rejected_by":"`...)
		b = append(b, info.rejected...)
		b = append(b, '"')
	}
	b = append(b, `,"request_id":`...)
	b = appendJSONString(b, info.reqID)
	if len(info.traceID) > 0 {
		b = append(b, `,"trace_id":"`...)
		b = append(b, info.traceID...)
		b = append(b, '"')
	}
	b = append(b, "}\n"...)
	a.w.Write(b)
	a.buf = b
}

// appendJSONString appends s as a JSON string. Request lines are mostly plain
// ASCII, so the common case is a copy; anything else is escaped.
func appendJSONString(b, s []byte) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c >= 0x7f:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
