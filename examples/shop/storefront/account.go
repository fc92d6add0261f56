package main

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Registration, sign-in and sign-out: forms posted to the storefront, which calls
// accounts through the gateway (where sign-in is rate limited per client) and
// keeps the token in an HttpOnly cookie.

// maxFormBody bounds a posted form.
const maxFormBody = 64 << 10

// formPage is the data of the sign-in and registration forms.
type formPage struct {
	Next  string
	Name  string
	Email string
	Error string // shown in #form-error
	Note  string // shown in #form-note
}

func (s *server) signinForm(w http.ResponseWriter, r *http.Request) {
	q := s.begin(w, r)
	st := s.newSite(w, r, q.sess, "Sign in")
	p := formPage{Next: localPath(r.URL.Query().Get("next"))}
	if r.URL.Query().Get("registered") != "" {
		p.Note = "Your account was created. Please sign in."
	}
	s.pages.render(w, http.StatusOK, "signin", st, p, noCache)
}

func (s *server) registerForm(w http.ResponseWriter, r *http.Request) {
	q := s.begin(w, r)
	st := s.newSite(w, r, q.sess, "Create an account")
	s.pages.render(w, http.StatusOK, "register", st, formPage{Next: localPath(r.URL.Query().Get("next"))}, noCache)
}

// parseForm reads a posted form of at most maxFormBody bytes.
func parseForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form: "+err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func (s *server) signin(w http.ResponseWriter, r *http.Request) {
	if !parseForm(w, r) {
		return
	}
	q := s.begin(w, r)
	p := formPage{Next: localPath(r.PostForm.Get("next")), Email: strings.TrimSpace(r.PostForm.Get("email"))}
	password := r.PostForm.Get("password")
	var res signin
	err := withTimeout(r.Context(), s.cfg.APITimeout, func(ctx context.Context) (err error) {
		res, err = s.gw.signin(ctx, q.who, p.Email, password)
		return err
	})
	if err == nil {
		s.startSession(w, r, res.Token, p.Next)
		return
	}
	status := statusOf(err)
	switch status {
	case http.StatusUnauthorized, http.StatusBadRequest:
		p.Error = "Wrong email or password."
		status = http.StatusUnauthorized
	case http.StatusTooManyRequests:
		p.Error = "Too many sign-in attempts. Please wait a moment and try again."
	default:
		s.log.WarnContext(r.Context(), "sign-in failed", "error", err)
		p.Error = "Signing in is not possible right now. Please try again in a moment."
		status = http.StatusServiceUnavailable
	}
	s.pages.render(w, status, "signin", s.newSite(w, r, q.sess, "Sign in"), p, noCache)
}

// startSession sets the cookie with the token and sends the shopper on to next.
func (s *server) startSession(w http.ResponseWriter, r *http.Request, token, next string) {
	exp := time.Now().Add(time.Hour)
	if ss, ok := parseToken(token); ok {
		exp = ss.Exp
	}
	setSession(w, r, token, exp)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *server) register(w http.ResponseWriter, r *http.Request) {
	if !parseForm(w, r) {
		return
	}
	q := s.begin(w, r)
	p := formPage{
		Next:  localPath(r.PostForm.Get("next")),
		Name:  strings.TrimSpace(r.PostForm.Get("name")),
		Email: strings.TrimSpace(r.PostForm.Get("email")),
	}
	password := r.PostForm.Get("password")
	err := withTimeout(r.Context(), s.cfg.APITimeout, func(ctx context.Context) error {
		_, err := s.gw.register(ctx, q.who, p.Name, p.Email, password)
		return err
	})
	if err == nil {
		// Signed in at once with the same credentials.
		var res signin
		err = withTimeout(r.Context(), s.cfg.APITimeout, func(ctx context.Context) (err error) {
			res, err = s.gw.signin(ctx, q.who, p.Email, password)
			return err
		})
		if err != nil {
			s.log.WarnContext(r.Context(), "sign-in after registration failed", "error", err)
			http.Redirect(w, r, "/signin?registered=1&next="+url.QueryEscape(p.Next), http.StatusSeeOther)
			return
		}
		s.startSession(w, r, res.Token, p.Next)
		return
	}
	status := statusOf(err)
	switch status {
	case http.StatusConflict:
		p.Error = "An account with this email exists already. Sign in instead?"
	case http.StatusBadRequest:
		p.Error = "Please check your entries: a valid email and a password of at least 8 characters."
		if ae := (*apiError)(nil); errors.As(err, &ae) && ae.Msg != "" {
			p.Error = capitalize(ae.Msg) + "."
		}
	case http.StatusTooManyRequests:
		p.Error = "Too many attempts. Please wait a moment and try again."
	default:
		s.log.WarnContext(r.Context(), "registration failed", "error", err)
		p.Error = "Registering is not possible right now. Please try again in a moment."
		status = http.StatusServiceUnavailable
	}
	s.pages.render(w, status, "register", s.newSite(w, r, q.sess, "Create an account"), p, noCache)
}

func (s *server) signout(w http.ResponseWriter, r *http.Request) {
	clearSession(w, r)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// capitalize upper-cases the first letter of an API's error message.
func capitalize(s string) string {
	s = strings.TrimRight(strings.TrimSpace(s), ".")
	if s == "" {
		return s
	}
	if c := s[0]; c >= 'a' && c <= 'z' {
		return string(c-'a'+'A') + s[1:]
	}
	return s
}
