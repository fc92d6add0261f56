package accountssvc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/wolke-platform/wolke/pkg/chassis"
)

// Limits of the registration.
const (
	MinPassword = 8   // characters
	MaxPassword = 72  // bytes: bcrypt ignores the rest
	MaxName     = 100 // characters
)

type handler struct {
	cfg   Config
	users *users
	key   *signingKey
	pub   *publisher
	now   func() time.Time
	// bcryptSlots bounds concurrent bcrypt computations to the CPUs: a burst of
	// sign-ins queues here instead of slowing every request of the process down.
	bcryptSlots chan struct{}
	// dummyHash is compared against when the user does not exist, so that an unknown
	// address takes as long as a wrong password.
	dummyHash []byte
}

func newHandler(cfg Config, u *users, key *signingKey, pub *publisher) (*handler, error) {
	dummy, err := bcrypt.GenerateFromPassword([]byte("not a password of anyone"), cfg.BcryptCost)
	if err != nil {
		return nil, err
	}
	return &handler{
		cfg: cfg, users: u, key: key, pub: pub, now: time.Now,
		bcryptSlots: make(chan struct{}, runtime.GOMAXPROCS(0)),
		dummyHash:   dummy,
	}, nil
}

func (h *handler) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /register", h.register)
	mux.HandleFunc("POST /signin", h.signin)
	mux.HandleFunc("GET /.well-known/jwks.json", h.jwks)
	mux.HandleFunc("/", chassis.NotFound)
	return mux
}

// publicUser is a user as the API shows it.
type publicUser struct {
	ID    string `json:"id"`
	Email string `json:"email"`
	Name  string `json:"name"`
}

func (h *handler) register(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Email    string `json:"email"`
		Name     string `json:"name"`
		Password string `json:"password"`
	}
	if err := chassis.DecodeJSON(r, &req); err != nil {
		chassis.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	email, err := normalizeEmail(req.Email)
	if err != nil {
		chassis.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	name := strings.TrimSpace(req.Name)
	if name == "" {
		name, _, _ = strings.Cut(email, "@")
	}
	if utf8.RuneCountInString(name) > MaxName || !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl) {
		chassis.WriteError(w, http.StatusBadRequest, fmt.Sprintf("name: at most %d printable characters", MaxName))
		return
	}
	if utf8.RuneCountInString(req.Password) < MinPassword {
		chassis.WriteError(w, http.StatusBadRequest, fmt.Sprintf("password: at least %d characters", MinPassword))
		return
	}
	if len(req.Password) > MaxPassword {
		chassis.WriteError(w, http.StatusBadRequest, fmt.Sprintf("password: at most %d bytes", MaxPassword))
		return
	}
	// Spare the bcrypt when the address is known to be taken (the CAS below decides).
	if u, err := h.users.get(r.Context(), email); err != nil {
		chassis.WriteError(w, http.StatusServiceUnavailable, err.Error())
		return
	} else if u != nil {
		chassis.WriteError(w, http.StatusConflict, errEmailTaken.Error())
		return
	}
	var hash []byte
	if err := h.withBcrypt(r.Context(), func() (err error) {
		hash, err = bcrypt.GenerateFromPassword([]byte(req.Password), h.cfg.BcryptCost)
		return err
	}); err != nil {
		chassis.WriteError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	u := user{ID: newUserID(), Email: email, Name: name, PasswordHash: string(hash), Created: h.now().UTC()}
	switch err := h.users.create(r.Context(), u); {
	case errors.Is(err, errEmailTaken):
		chassis.WriteError(w, http.StatusConflict, err.Error())
	case err != nil:
		chassis.WriteError(w, http.StatusServiceUnavailable, err.Error())
	default:
		chassis.WriteJSON(w, http.StatusCreated, publicUser{ID: u.ID, Email: u.Email, Name: u.Name})
	}
}

func (h *handler) signin(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if err := chassis.DecodeJSON(r, &req); err != nil {
		chassis.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	var u *user
	if email, err := normalizeEmail(req.Email); err == nil {
		if u, err = h.users.get(r.Context(), email); err != nil {
			chassis.WriteError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
	}
	hash := h.dummyHash
	if u != nil {
		hash = []byte(u.PasswordHash)
	}
	var match bool
	if err := h.withBcrypt(r.Context(), func() error {
		match = bcrypt.CompareHashAndPassword(hash, []byte(req.Password)) == nil
		return nil
	}); err != nil {
		chassis.WriteError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if u == nil || !match {
		chassis.WriteError(w, http.StatusUnauthorized, "wrong email or password")
		return
	}
	token, exp, err := h.issue(u)
	if err != nil {
		chassis.WriteError(w, http.StatusInternalServerError, err.Error())
		return
	}
	chassis.WriteJSON(w, http.StatusOK, struct {
		Token     string     `json:"token"`
		ExpiresAt time.Time  `json:"expires_at"`
		User      publicUser `json:"user"`
	}{token, exp, publicUser{ID: u.ID, Email: u.Email, Name: u.Name}})
}

// claims are a token's claims.
type claims struct {
	Email string `json:"email"`
	Name  string `json:"name"`
	Role  string `json:"role"`
	jwt.RegisteredClaims
}

// issue signs a token for u and returns it with its expiry.
func (h *handler) issue(u *user) (string, time.Time, error) {
	now := h.now().UTC().Truncate(time.Second)
	exp := now.Add(h.cfg.TokenTTL)
	var jti [12]byte
	rand.Read(jti[:])
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims{
		Email: u.Email, Name: u.Name, Role: Role,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    Issuer,
			Subject:   u.ID,
			Audience:  jwt.ClaimStrings{Audience},
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
			ID:        hex.EncodeToString(jti[:]),
		},
	})
	t.Header["kid"] = h.key.kid
	s, err := t.SignedString(h.key.priv)
	return s, exp, err
}

func (h *handler) jwks(w http.ResponseWriter, r *http.Request) {
	b := h.pub.document()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=60")
	w.Write(b)
}

// withBcrypt runs fn in one of the bcrypt slots, waiting for one while ctx lasts.
func (h *handler) withBcrypt(ctx context.Context, fn func() error) error {
	select {
	case h.bcryptSlots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("busy: %w", ctx.Err())
	}
	defer func() { <-h.bcryptSlots }()
	return fn()
}
