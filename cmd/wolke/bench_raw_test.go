package main

import (
	"bufio"
	"strings"
	"testing"
)

func TestReadResponse(t *testing.T) {
	cases := []struct {
		name      string
		in        string
		status    int
		body      string
		keepAlive bool
		err       bool
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ntrueNEXT", 200, "true", true, false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\ntr\r\n2\r\nue\r\n0\r\n\r\nNEXT", 200, "true", true, false},
		{"close", "HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 404, "", false, false},
		{"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", 200, "x", false, false},
		{"no length", "HTTP/1.1 500 Internal Server Error\r\n\r\nboom", 500, "boom", false, false},
		{"header case", "HTTP/1.1 200 OK\r\ncontent-LENGTH: 2\r\n\r\nokNEXT", 200, "ok", true, false},
		{"garbage", "SSH-2.0-OpenSSH\r\n", 0, "", false, true},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n", 0, "", false, true},
		{"truncated", "HTTP/1.1 200 OK\r\nContent-Len", 0, "", false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tc.in))
			status, body, keep, err := readResponse(br)
			if tc.err {
				if err == nil {
					t.Fatalf("accepted %q", tc.in)
				}
				return
			}
			if err != nil || status != tc.status || string(body) != tc.body || keep != tc.keepAlive {
				t.Fatalf("got %d %q keep=%v err=%v", status, body, keep, err)
			}
			// The next response on the connection starts right after this one.
			if rest, _ := br.Peek(br.Buffered()); tc.keepAlive && string(rest) != "NEXT" {
				t.Fatalf("left %q in the buffer", rest)
			}
		})
	}
}
