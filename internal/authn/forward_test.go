package authn_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wolke-platform/wolke/internal/authn"
)

// authService is a forward-auth service deciding by the Authorization header, and
// recording what it was sent.
type authService struct {
	*httptest.Server
	mu   sync.Mutex
	last *http.Request
	body string
}

func newAuthService(t *testing.T) *authService {
	s := &authService{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.last, s.body = r, string(b)
		s.mu.Unlock()
		switch r.Header.Get("Authorization") {
		case "Bearer good":
			w.Header().Set("X-Wolke-Identity", "bob")
			w.Header().Set("X-User-Email", "bob@example.com")
			w.Header().Add("X-User-Groups", "a")
			w.Header().Add("X-User-Groups", "b")
			w.Header().Set("X-Secret-Internal", "not copied")
		case "Bearer anonymous":
		case "Bearer denied":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"error":"not your order"}`)
		case "Bearer broken":
			w.WriteHeader(http.StatusInternalServerError)
		case "Bearer redirect":
			http.Redirect(w, r, "/login", http.StatusFound)
		case "Bearer slow":
			time.Sleep(300 * time.Millisecond)
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="sso"`)
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, "log in first")
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *authService) lastRequest() (*http.Request, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.body
}

func TestForward(t *testing.T) {
	svc := newAuthService(t)
	pol := func(url string) authn.Policy {
		return authn.Policy{Forward: &authn.ForwardPolicy{URL: url, Timeout: authn.Duration(100 * time.Millisecond),
			CopyHeaders: []string{"X-User-Email", "X-User-Groups"}}}
	}
	a := newAuth(t, pol(svc.URL+"/check"), authn.Deps{})

	// A dead service: a port that was listening a moment ago.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String() + "/check"
	ln.Close()
	down := newAuth(t, pol(dead), authn.Deps{})

	tests := []struct {
		name        string
		a           *authn.Authenticator
		auth        string
		status      int
		identity    string
		body        string
		challenge   string
		contentType string
	}{
		{name: "allow", a: a, auth: "Bearer good", status: 200, identity: "bob"},
		{name: "allow without identity", a: a, auth: "Bearer anonymous", status: 200},
		{name: "deny 403 with the service's body", a: a, auth: "Bearer denied", status: 403, body: `{"error":"not your order"}`, contentType: "application/json"},
		{name: "deny 401 with the service's challenge", a: a, auth: "Bearer nope", status: 401, body: "log in first", challenge: `Bearer realm="sso"`},
		{name: "no credentials: the service decides", a: a, auth: "", status: 401, body: "log in first", challenge: `Bearer realm="sso"`},
		{name: "service error: 503", a: a, auth: "Bearer broken", status: 503},
		{name: "service redirect: 503", a: a, auth: "Bearer redirect", status: 503},
		{name: "service too slow: 503", a: a, auth: "Bearer slow", status: 503},
		{name: "service down: 503", a: down, auth: "Bearer good", status: 503},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lines := []string{"X-Wolke-Identity: forged", "X-User-Email: forged@example.com", "X-User_Groups: admins",
				"Content-Type: text/plain"}
			if tc.auth != "" {
				lines = append(lines, "Authorization: "+tc.auth)
			}
			req := parseReq(t, lines...)
			req.SetBody([]byte("body"))
			req.Header.SetMethod("POST")
			res := tc.a.Authenticate(req)
			status := res.Status
			if res.OK {
				status = 200
			}
			if status != tc.status {
				t.Fatalf("status %d (%s), want %d", status, res.Reason, tc.status)
			}
			if string(res.Body) != tc.body || res.Challenge != tc.challenge || (tc.contentType != "" && res.ContentType != tc.contentType) {
				t.Errorf("body %q, challenge %q, content type %q; want %q, %q, %q", res.Body, res.Challenge, res.ContentType, tc.body, tc.challenge, tc.contentType)
			}
			ids := identities(req)
			switch {
			case res.OK && tc.identity == "" && len(ids) != 0:
				t.Errorf("identity %q, want none", ids)
			case res.OK && tc.identity != "" && (len(ids) != 1 || ids[0] != tc.identity):
				t.Errorf("identity %q, want [%s]", ids, tc.identity)
			case !res.OK && len(ids) != 0:
				t.Errorf("refused request carries identity %q", ids)
			}
			email, groups := string(req.Header.Peek("X-User-Email")), req.Header.PeekAll("X-User-Groups")
			if tc.identity == "bob" {
				if email != "bob@example.com" || len(groups) != 2 || string(groups[0]) != "a" || string(groups[1]) != "b" {
					t.Errorf("copied headers: email %q, groups %q", email, groups)
				}
				if len(req.Header.Peek("X-Secret-Internal")) != 0 || len(req.Header.Peek("X-User_Groups")) != 0 {
					t.Error("a header not in copy_headers was copied, or a client's copy_header survived")
				}
			} else if email != "" || len(groups) != 0 || len(req.Header.Peek("X-User_Groups")) != 0 {
				t.Errorf("client-sent copy header survived: email %q, groups %q", email, groups)
			}
		})
	}

	// What the service was sent: method, URI and headers, no body, no forged headers.
	a.Authenticate(parseReq(t, "Authorization: Bearer good", "Cookie: session=1", "X-Wolke-Identity: forged"))
	got, body := svc.lastRequest()
	switch {
	case got.Method != "GET", got.URL.Path != "/check", body != "":
		t.Errorf("service got %s %s with body %q", got.Method, got.URL, body)
	case got.Header.Get("X-Forwarded-Uri") != "/orders/7?x=1", got.Header.Get("X-Forwarded-Host") != "shop.example",
		got.Header.Get("X-Forwarded-Method") != "GET", got.Header.Get("X-Forwarded-Proto") != "http":
		t.Errorf("forwarded headers %v", got.Header)
	case got.Header.Get("Cookie") != "session=1", got.Header.Get("X-Wolke-Identity") != "":
		t.Errorf("headers %v", got.Header)
	}
	// The method is the client's.
	req := parseReq(t, "Authorization: Bearer good")
	req.Header.SetMethod("DELETE")
	a.Authenticate(req)
	if got, _ := svc.lastRequest(); got.Method != "DELETE" || got.ContentLength > 0 {
		t.Errorf("service got %s with length %d", got.Method, got.ContentLength)
	}
	if !strings.HasPrefix(svc.URL, "http://") {
		t.Fatal(svc.URL)
	}
}
