// Package accountssvc is the shop's accounts service (examples/shop/README.md):
//
//	POST /register  {"email","name","password"} -> 201 {"id","email","name"}; 409 taken; 400
//	POST /signin    {"email","password"} -> {"token","expires_at","user":{"id","email","name"}}; 401
//	GET  /.well-known/jwks.json -> the public keys
//
// Users live in the KV store, one key per user named by the email address
// (shop/accounts/users/<email>, created with a CAS so that an address is taken once),
// with a bcrypt hash of the password. Email addresses are compared in lowercase and
// limited to the usual characters (letters, digits, ". _ + -" before the @); a
// missing name becomes the part before the @.
//
// Tokens are RS256 JWTs with iss "wolke-shop", aud ["shop"], sub the user ID, email,
// name, role "customer", iat, exp (TOKEN_TTL, 1 h) and a random jti, and the key's
// kid in the header. The signing key is one RSA-2048 key for all instances: the first
// instance creates it in the KV store (shop/accounts/signing-key, a CAS on "absent"),
// the others read it. Its public half is published as a JWKS document at
// wolke/gateway/jwks, where the gateway's JWT policy (internal/authn) reads it, and
// kept there: an instance puts its key back (merged with the keys already there)
// whenever the document changes without it.
//
// The private key sits in the KV store in clear: good enough for a demo, not for
// production (use a secret store, and rotate).
package accountssvc

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/wolke-platform/wolke/pkg/chassis"
)

// Name is the service's name in the catalog.
const Name = "accounts"

// KV keys.
const (
	KeySigningKey  = "shop/accounts/signing-key"
	KeyUsersPrefix = "shop/accounts/users/"
	KeyJWKS        = "wolke/gateway/jwks"
)

// Token claims that the gateway's JWT policy checks.
const (
	Issuer   = "wolke-shop"
	Audience = "shop"
	Role     = "customer"
)

// Config is the service's own configuration, from the environment.
type Config struct {
	// BcryptCost is the work factor of new password hashes: each step doubles the
	// time of a registration and a sign-in (10: about 50-80 ms of one core). Tests
	// use 4, the minimum.
	BcryptCost int `env:"BCRYPT_COST" default:"10" help:"bcrypt work factor of new password hashes (4-14)"`
	// TokenTTL is how long a token is valid.
	TokenTTL time.Duration `env:"TOKEN_TTL" default:"1h" help:"lifetime of the tokens issued"`
}

// Validate implements the chassis's config validation.
func (c *Config) Validate() error {
	if c.BcryptCost < 4 || c.BcryptCost > 14 {
		return &chassis.VarError{Var: "BCRYPT_COST", Value: fmt.Sprint(c.BcryptCost), Err: fmt.Errorf("want 4 to 14")}
	}
	if c.TokenTTL < time.Minute || c.TokenTTL > 24*time.Hour {
		return &chassis.VarError{Var: "TOKEN_TTL", Value: c.TokenTTL.String(), Err: fmt.Errorf("want 1m to 24h")}
	}
	return nil
}

// Service returns the accounts service, for chassis.Main (or chassis.Run in a test).
func Service() chassis.Service {
	cfg := &Config{}
	return chassis.Service{
		Name:    Name,
		Version: "1.0.0",
		Tags:    []string{"wolke.http.path=/api/accounts"},
		Config:  cfg,
		Setup: func(ctx context.Context, in *chassis.Instance) (http.Handler, error) {
			return setup(ctx, in, *cfg)
		},
	}
}

// setup loads (or creates) the signing key, publishes the JWKS document, starts
// keeping it published and returns the API.
func setup(ctx context.Context, in *chassis.Instance, cfg Config) (http.Handler, error) {
	kv := in.Consul().KV()
	key, err := loadOrCreateKey(ctx, kv)
	if err != nil {
		return nil, err
	}
	pub := newPublisher(kv, key, in.Logger())
	if err := pub.publish(ctx); err != nil {
		return nil, err
	}
	in.Go(pub.keepPublished)
	h, err := newHandler(cfg, &users{kv: kv}, key, pub)
	if err != nil {
		return nil, err
	}
	return h.routes(), nil
}
