package accountssvc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// user is a registered user as stored at KeyUsersPrefix + email.
type user struct {
	ID           string    `json:"id"`
	Email        string    `json:"email"`
	Name         string    `json:"name"`
	PasswordHash string    `json:"password_hash"` // bcrypt
	Created      time.Time `json:"created"`
}

// errEmailTaken: a user with the address exists.
var errEmailTaken = errors.New("accounts: email already registered")

// users is the user store in the KV store.
type users struct{ kv *api.KV }

// create stores u unless its email is taken (errEmailTaken): a CAS on index 0, so of
// two registrations of one address exactly one succeeds.
func (s *users) create(ctx context.Context, u user) error {
	b, err := json.Marshal(u)
	if err != nil {
		return err
	}
	ok, _, err := s.kv.CAS(&api.KVPair{Key: KeyUsersPrefix + u.Email, Value: b}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("accounts: storing the user: %w", err)
	}
	if !ok {
		return errEmailTaken
	}
	return nil
}

// get returns the user with the (normalized) email, or nil.
func (s *users) get(ctx context.Context, email string) (*user, error) {
	pair, _, err := s.kv.Get(KeyUsersPrefix+email, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil || pair == nil {
		return nil, err
	}
	var u user
	if err := json.Unmarshal(pair.Value, &u); err != nil {
		return nil, fmt.Errorf("accounts: user %s: %v", email, err)
	}
	return &u, nil
}

// newUserID returns a random user ID: 16 hex digits.
func newUserID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// normalizeEmail returns the address in lowercase, or an error for one that is not
// a plain address: a local part of letters, digits and ". _ + -", an @, and a domain
// of at least two labels of letters, digits and dashes. (The address names a KV key,
// so nothing else gets in.)
func normalizeEmail(s string) (string, error) {
	e := strings.ToLower(strings.TrimSpace(s))
	bad := func(why string) (string, error) { return "", fmt.Errorf("email: %s", why) }
	if e == "" {
		return bad("missing")
	}
	if len(e) > 254 {
		return bad("too long")
	}
	local, domain, ok := strings.Cut(e, "@")
	if !ok || strings.Contains(domain, "@") {
		return bad("want one @")
	}
	if local == "" || len(local) > 64 || local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return bad("not a valid address")
	}
	for _, c := range local {
		if !isAlnum(c) && !strings.ContainsRune("._+-", c) {
			return bad("not a valid address")
		}
	}
	labels := strings.Split(domain, ".")
	if len(labels) < 2 {
		return bad("not a valid domain")
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return bad("not a valid domain")
		}
		for _, c := range l {
			if !isAlnum(c) && c != '-' {
				return bad("not a valid domain")
			}
		}
	}
	return e, nil
}

func isAlnum(c rune) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
