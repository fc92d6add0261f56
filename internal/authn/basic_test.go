package authn_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/wolke-platform/wolke/internal/authn"
)

func bcryptHash(t testing.TB, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func basicHeader(user, pw string) string {
	return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

func TestBasic(t *testing.T) {
	a := newAuth(t, authn.Policy{Basic: &authn.BasicPolicy{Realm: "ops", Users: map[string]string{
		"alice": bcryptHash(t, "s3cret:with:colons"),
		"bob":   bcryptHash(t, "hunter2"),
	}}}, authn.Deps{})
	tests := []struct {
		name     string
		headers  []string
		status   int
		identity string
	}{
		{"ok", []string{basicHeader("bob", "hunter2")}, 200, "bob"},
		{"ok, password with colons", []string{basicHeader("alice", "s3cret:with:colons")}, 200, "alice"},
		{"ok again (remembered)", []string{basicHeader("bob", "hunter2")}, 200, "bob"},
		{"wrong password", []string{basicHeader("bob", "hunter3")}, 401, ""},
		{"another user's password", []string{basicHeader("alice", "hunter2")}, 401, ""},
		{"unknown user", []string{basicHeader("mallory", "hunter2")}, 401, ""},
		{"empty password", []string{basicHeader("bob", "")}, 401, ""},
		{"user name case matters", []string{basicHeader("Bob", "hunter2")}, 401, ""},
		{"not base64", []string{"Authorization: Basic !!!"}, 401, ""},
		{"no colon", []string{"Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("bob"))}, 401, ""},
		{"missing", nil, 401, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := parseReq(t, append(tc.headers, "X-Wolke-Identity: root")...)
			res := a.Authenticate(req)
			status := res.Status
			if res.OK {
				status = 200
			}
			if status != tc.status {
				t.Fatalf("status %d (%s), want %d", status, res.Reason, tc.status)
			}
			ids := identities(req)
			if res.OK && (len(ids) != 1 || ids[0] != tc.identity) || !res.OK && len(ids) != 0 {
				t.Fatalf("identity header %q, want [%s] on success and none otherwise", ids, tc.identity)
			}
			if !res.OK && res.Challenge != `Basic realm="ops", charset="UTF-8"` {
				t.Errorf("challenge %q", res.Challenge)
			}
			if strings.Contains(res.Reason, "hunter") {
				t.Errorf("reason %q shows the password", res.Reason)
			}
		})
	}
	// The reason does not tell an unknown user from a wrong password.
	r1 := a.Authenticate(parseReq(t, basicHeader("bob", "x")))
	r2 := a.Authenticate(parseReq(t, basicHeader("nobody", "x")))
	if r1.Reason != r2.Reason {
		t.Errorf("reasons differ: %q vs %q", r1.Reason, r2.Reason)
	}
}
